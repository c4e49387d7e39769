//! The TLS carrier with the knock: a knocked client reaches Aura; strangers, replays and
//! stale knocks meet the decoy web server (served here, or forwarded to a real site),
//! and never the Aura certificate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aura_crypto::kdf::Secret;
use aura_testkit::TestPki;
use aura_transport::DatagramLink;
use aura_transport::camo::TlsCamo;
use aura_transport::camo::decoy::{self, Decoy, Site};
use aura_transport::camo::tls_knock::TlsKnock;
use aura_transport::carrier::tls::{self, OuterIdentity, TlsOptions};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(20);

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn ten_minutes_ago() -> u64 {
    now() - 600
}

fn key() -> Secret {
    Secret::from_bytes([0x42; 32])
}

fn site(name: &str) -> Arc<Site> {
    let (chain, key) = decoy::self_signed(&[name.to_owned()]).unwrap();
    Site::new(chain, key, None).unwrap()
}

/// A TLS listener of the carrier with the knock and `decoy`.
async fn server(decoy: Decoy) -> (SocketAddr, mpsc::Receiver<DatagramLink>, Arc<TlsKnock>) {
    server_with(decoy, TlsOptions::default()).await
}

async fn server_with(
    decoy: Decoy,
    base: TlsOptions,
) -> (SocketAddr, mpsc::Receiver<DatagramLink>, Arc<TlsKnock>) {
    let pki = TestPki::new(11).unwrap();
    let outer = OuterIdentity {
        cert_chain: vec![pki.server().cert()],
        key: pki.server().key(),
    };
    let knock = TlsKnock::new(&key(), now);
    let opts = TlsOptions {
        camo: Some(TlsCamo {
            knock: knock.clone(),
            decoy: Some(decoy),
        }),
        ..base
    };
    let (tx, rx) = mpsc::channel(16);
    let addr = tls::listen("127.0.0.1:0".parse().unwrap(), outer, opts, tx)
        .await
        .unwrap();
    (addr, rx, knock)
}

fn client_opts(clock: fn() -> u64) -> TlsOptions {
    TlsOptions {
        camo: Some(TlsCamo {
            knock: TlsKnock::new(&key(), clock),
            decoy: None,
        }),
        ..TlsOptions::default()
    }
}

/// Records the certificate a server presents; accepts any.
#[derive(Debug, Default)]
struct Record(Mutex<Option<Vec<u8>>>);

impl ServerCertVerifier for Record {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What a browser-like stranger gets: the certificate's subject and the HTTP response to
/// `GET /` over HTTP/1.1.
async fn browse(addr: SocketAddr, sni: &str) -> (String, String) {
    let record = Arc::new(Record::default());
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(record.clone())
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(format!("GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = Vec::new();
    let _ = timeout(T, tls.read_to_end(&mut body)).await;
    let der = record.0.lock().unwrap().clone().unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    (
        cert.subject().to_string(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knocked_client_reaches_aura_and_a_browser_gets_the_decoy_site() {
    let (addr, mut links, knock) = server(Decoy::Serve(site("www.example.org"))).await;
    // A knocked client: its first frame reaches the carrier's link queue.
    let link = tls::connect(addr, "www.example.org", &client_opts(now))
        .await
        .unwrap();
    link.outbound
        .send(BytesMut::from(&[1, 2, 3u8][..]))
        .await
        .unwrap();
    let mut server_side = timeout(T, links.recv()).await.unwrap().unwrap();
    assert_eq!(
        timeout(T, server_side.inbound.recv()).await.unwrap(),
        Some(BytesMut::from(&[1, 2, 3u8][..]))
    );
    // A browser: the decoy's certificate and page, not Aura's.
    let (subject, response) = browse(addr, "www.example.org").await;
    assert!(subject.contains("www.example.org"), "{subject}");
    assert!(!subject.contains("CA"), "{subject}");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("It works"), "{response}");
    assert_eq!(knock.refused().0, 1, "the browser's hello had no knock");
    assert!(
        timeout(Duration::from_millis(300), links.recv())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_or_stale_knock_meets_the_decoy() {
    let (addr, mut links, knock) = server(Decoy::Serve(site("www.example.org"))).await;
    // Record a knocked client's first flight through a relay.
    let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let first = Arc::new(Mutex::new(Vec::new()));
    let rec = first.clone();
    tokio::spawn(async move {
        let (mut c, _) = relay.accept().await.unwrap();
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut buf = vec![0u8; 65536];
        let n = c.read(&mut buf).await.unwrap();
        rec.lock().unwrap().extend_from_slice(&buf[..n]);
        s.write_all(&buf[..n]).await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
    });
    let link = tls::connect(relay_addr, "www.example.org", &client_opts(now))
        .await
        .unwrap();
    link.outbound
        .send(BytesMut::from(&[1, 9u8][..]))
        .await
        .unwrap();
    let _accepted = timeout(T, links.recv()).await.unwrap().unwrap();
    let captured = first.lock().unwrap().clone();
    assert!(aura_transport::camo::hello::parse(&captured).is_ok());
    assert!(
        !aura_testkit::fet::blocked(&captured),
        "a TLS record header is exempt"
    );

    // The same bytes from another connection: refused as a replay, answered by the decoy.
    let mut replay = TcpStream::connect(addr).await.unwrap();
    replay.write_all(&captured).await.unwrap();
    let mut answer = [0u8; 5];
    timeout(T, replay.read_exact(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        answer[0], 0x16,
        "a TLS handshake record: the decoy's ServerHello"
    );
    assert_eq!(knock.refused().2, 1, "one replay refused");

    // A client whose clock is ten minutes behind: stale, decoy.
    let r = tls::connect(addr, "www.example.org", &client_opts(ten_minutes_ago)).await;
    if let Ok(l) = r {
        let _ = l.outbound.send(BytesMut::from(&[1, 1u8][..])).await;
    }
    assert!(
        timeout(Duration::from_millis(500), links.recv())
            .await
            .is_err()
    );
    assert_eq!(knock.refused().1, 1, "one stale knock refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_mode_shows_the_real_site_and_a_dead_upstream_gets_a_502() {
    // The "real site": a TLS server of the test's own with its own certificate.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let site = site("upstream.example.net");
    tokio::spawn(async move {
        loop {
            let (tcp, _) = upstream.accept().await.unwrap();
            let site = site.clone();
            tokio::spawn(async move { Decoy::Serve(site).serve(Vec::new(), tcp).await });
        }
    });
    let (addr, _links, _) = server(Decoy::Forward {
        upstream: up_addr.to_string(),
        down: None,
    })
    .await;
    let (subject, response) = browse(addr, "upstream.example.net").await;
    assert!(subject.contains("upstream.example.net"), "{subject}");
    assert!(response.contains("It works"), "{response}");

    // An upstream that is down: the stranger's connection is closed, nothing else.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let (addr, _links, _) = server(Decoy::Forward {
        upstream: dead_addr.to_string(),
        down: None,
    })
    .await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"\x16\x03\x01\x00\x05hello").await.unwrap();
    let mut buf = [0u8; 16];
    let n = timeout(T, tcp.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    // With a fallback site, what a reverse proxy gives while its backend is down.
    let (chain, key) = decoy::self_signed(&["upstream.example.net".to_owned()]).unwrap();
    let (addr, _links, _) = server(Decoy::Forward {
        upstream: dead_addr.to_string(),
        down: Some(Site::bad_gateway(chain, key).unwrap()),
    })
    .await;
    let (subject, response) = browse(addr, "upstream.example.net").await;
    assert!(subject.contains("upstream.example.net"), "{subject}");
    assert!(
        response.starts_with("HTTP/1.1 502 Bad Gateway"),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_held_by_the_decoy_count_against_the_caps() {
    let base = TlsOptions {
        max_handshakes_per_ip: 3,
        ..TlsOptions::default()
    };
    let (addr, _links, _) = server_with(Decoy::Serve(site("www.example.org")), base).await;
    // Three strangers complete TLS with the decoy and then idle (no request yet).
    let mut held = Vec::new();
    for _ in 0..3 {
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Record::default()))
        .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("www.example.org").unwrap(), tcp)
            .await
            .unwrap();
        held.push(tls);
    }
    // A fourth from the same address is closed at once, without a byte.
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    let _ = fourth.write_all(b"\x16\x03\x01").await;
    let mut buf = [0u8; 8];
    let n = timeout(T, fourth.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    // Once one leaves, a new stranger is served again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (subject, response) = browse(addr, "www.example.org").await;
    assert!(subject.contains("www.example.org") && response.contains("It works"));
}
