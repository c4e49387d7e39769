//! The QUIC carrier with the knock: a knocked client reaches Aura; a stranger's QUIC
//! connection presents the decoy's certificate and gets the decoy's pages over HTTP/3;
//! without a served decoy strangers get silence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aura_crypto::kdf::Secret;
use aura_testkit::TestPki;
use aura_transport::DatagramLink;
use aura_transport::camo::QuicCamo;
use aura_transport::camo::decoy::{self, Site};
use aura_transport::camo::quic_knock::QuicKnock;
use aura_transport::carrier::quic::{self, QuicListener, QuicOptions};
use bytes::Buf;
use tokio::sync::mpsc;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(20);

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn key() -> Secret {
    Secret::from_bytes([0x24; 32])
}

async fn server(
    site: Option<Arc<Site>>,
) -> (QuicListener, mpsc::Receiver<DatagramLink>, Arc<QuicKnock>) {
    server_with(key(), site, None).await
}

async fn server_with(
    key: Secret,
    site: Option<Arc<Site>>,
    forward: Option<String>,
) -> (QuicListener, mpsc::Receiver<DatagramLink>, Arc<QuicKnock>) {
    let knock = QuicKnock::new(&key, now);
    let (l, rx) = listen(knock.clone(), site, forward).await.unwrap();
    (l, rx, knock)
}

/// A QUIC listener on loopback with the test server's certificate and this camouflage.
async fn listen(
    knock: Arc<QuicKnock>,
    site: Option<Arc<Site>>,
    forward: Option<String>,
) -> Result<(QuicListener, mpsc::Receiver<DatagramLink>), aura_transport::TransportError> {
    let pki = TestPki::new(12).unwrap();
    let opts = QuicOptions {
        camo: Some(QuicCamo {
            knock,
            site,
            forward,
        }),
        ..QuicOptions::default()
    };
    let (tx, rx) = mpsc::channel(16);
    let l = quic::listen(
        "127.0.0.1:0".parse().unwrap(),
        vec![pki.server().cert()],
        pki.server().key(),
        opts,
        tx,
    )
    .await?;
    Ok((l, rx))
}

/// A stranger's HTTP/3 GET /: the server's certificate subject and the response body.
async fn h3_get(addr: SocketAddr, sni: &str) -> (String, u16, String) {
    #[derive(Debug)]
    struct Any;
    impl rustls::client::danger::ServerCertVerifier for Any {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(Any))
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = timeout(T, ep.connect(addr, sni).unwrap())
        .await
        .unwrap()
        .unwrap();
    let der = conn
        .peer_identity()
        .unwrap()
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .unwrap()[0]
        .to_vec();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let subject = cert.subject().to_string();
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let req = hyper::Request::get(format!("https://{sni}/"))
        .body(())
        .unwrap();
    let mut stream = send.send_request(req).await.unwrap();
    stream.finish().await.unwrap();
    let resp = timeout(T, stream.recv_response()).await.unwrap().unwrap();
    let mut body = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await.unwrap() {
        while chunk.has_remaining() {
            let c = chunk.chunk();
            body.extend_from_slice(c);
            let n = c.len();
            chunk.advance(n);
        }
    }
    (
        subject,
        resp.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// A client with the knock key connects to `addr` and its first packet arrives on the
/// server's side of the link.
async fn member_reaches_aura(addr: SocketAddr, links: &mut mpsc::Receiver<DatagramLink>) {
    let client = QuicOptions {
        camo: Some(QuicCamo {
            knock: QuicKnock::new(&key(), now),
            site: None,
            forward: None,
        }),
        ..QuicOptions::default()
    };
    let link = quic::connect(addr, "www.example.org", &client)
        .await
        .unwrap();
    link.outbound
        .send(BytesMut::from(&[1, 4, 4u8][..]))
        .await
        .unwrap();
    let mut s = timeout(T, links.recv()).await.unwrap().unwrap();
    assert_eq!(
        timeout(T, s.inbound.recv()).await.unwrap(),
        Some(BytesMut::from(&[1, 4, 4u8][..]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knocked_client_reaches_aura_and_a_stranger_gets_http3_pages() {
    let (chain, k) = decoy::self_signed(&["www.example.org".to_owned()]).unwrap();
    let site = Site::new(chain, k, None).unwrap();
    let (listener, mut links, knock) = server(Some(site)).await;
    let addr = listener.local_addr();
    member_reaches_aura(addr, &mut links).await;

    let (subject, status, body) = h3_get(addr, "www.example.org").await;
    assert!(subject.contains("www.example.org"), "{subject}");
    assert_eq!(status, 200);
    assert!(body.contains("It works"), "{body}");
    assert_eq!(
        knock.refused().0,
        1,
        "the stranger's connection id had no knock"
    );
    assert!(
        timeout(Duration::from_millis(300), links.recv())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_forwarded_decoy_strangers_reach_the_upstream_site_over_http3() {
    // The "real site": another QUIC server (another deployment's key, so it serves its
    // own HTTP/3 page to everyone here), with its own certificate.
    let (chain, k) = decoy::self_signed(&["upstream.example.net".to_owned()]).unwrap();
    let upstream_site = Site::new(chain, k, None).unwrap();
    let (upstream, _up_links, _) =
        server_with(Secret::from_bytes([0x77; 32]), Some(upstream_site), None).await;
    let (listener, mut links, knock) =
        server_with(key(), None, Some(upstream.local_addr().to_string())).await;
    let addr = listener.local_addr();

    // Two strangers, one after the other, each see the upstream's certificate and page.
    for _ in 0..2 {
        let (subject, status, body) = h3_get(addr, "www.example.org").await;
        assert!(subject.contains("upstream.example.net"), "{subject}");
        assert_eq!(status, 200);
        assert!(body.contains("It works"), "{body}");
    }
    assert!(knock.refused().0 >= 2, "{:?}", knock.refused());

    // A member, meanwhile, reaches Aura on the same port.
    member_reaches_aura(addr, &mut links).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_decoy_that_does_not_resolve_is_a_clear_error() {
    // Not a host:port (the config refuses that earlier; here it stands for a name that
    // does not resolve, without asking a resolver).
    let forward = Some("no-port".to_owned());
    let err = listen(QuicKnock::new(&key(), now), None, forward)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("server.decoy.upstream"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_served_decoy_strangers_get_silence() {
    let (listener, _links, knock) = server(None).await;
    let plain = QuicOptions {
        handshake_timeout: Duration::from_secs(2),
        ..QuicOptions::default()
    };
    let r = quic::connect(listener.local_addr(), "www.example.org", &plain).await;
    assert!(r.is_err(), "a stranger got a connection");
    assert!(knock.refused().0 >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_flight_is_a_quic_initial_with_the_knocked_id() {
    // A socket that only listens: the client's first datagram is what a censor sees first.
    let sink = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sink.local_addr().unwrap();
    let knock = QuicKnock::new(&key(), now);
    let client = QuicOptions {
        camo: Some(QuicCamo {
            knock: knock.clone(),
            site: None,
            forward: None,
        }),
        handshake_timeout: Duration::from_secs(2),
        ..QuicOptions::default()
    };
    let dial = tokio::spawn(async move { quic::connect(addr, "www.example.org", &client).await });
    let mut buf = vec![0u8; 2048];
    let (n, _) = timeout(T, sink.recv_from(&mut buf)).await.unwrap().unwrap();
    let first = &buf[..n];
    assert!(
        !aura_testkit::fet::blocked(first),
        "a QUIC v1 long header is exempt"
    );
    assert_eq!(first[0] & 0xf0, 0xc0, "long header, Initial");
    assert_eq!(&first[1..5], &[0, 0, 0, 1], "QUIC version 1");
    assert_eq!(first[5], 20, "a 20-byte destination connection id");
    assert!(
        knock.check(&first[6..26]).is_ok(),
        "the id is a valid knock"
    );
    let _ = dial.await;
}
