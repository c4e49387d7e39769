//! The TLS-over-TCP carrier on loopback: datagram exchange, ALPN, SNI, and the ways a
//! server must close bad or idle connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use std::net::SocketAddr;
use std::time::Duration;

use aura_testkit::TestPki;
use aura_transport::carrier::tls::{self, OuterIdentity, TlsOptions};
use aura_transport::{Carrier, DatagramLink, TransportError};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

/// Upper bound for any single test.
const TEST_LIMIT: Duration = Duration::from_secs(60);
/// Slack added to server-side timeouts before a test gives up.
const SLACK: Duration = Duration::from_millis(1500);

fn outer() -> OuterIdentity {
    let pki = TestPki::new(7).unwrap();
    OuterIdentity {
        cert_chain: vec![pki.server().cert()],
        key: pki.server().key(),
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn server(opts: TlsOptions) -> (SocketAddr, mpsc::Receiver<DatagramLink>) {
    let (tx, rx) = mpsc::channel(16);
    let addr = tls::listen(loopback(), outer(), opts, tx).await.unwrap();
    (addr, rx)
}

/// A datagram that looks like an Aura packet (first byte a packet type) of `len` bytes.
fn datagram(seed: usize, len: usize) -> Vec<u8> {
    let mut d: Vec<u8> = (0..len)
        .map(|j| (j.wrapping_mul(131) ^ seed) as u8)
        .collect();
    d[0] = (seed % 6) as u8 + 1;
    d
}

fn size_of(i: usize) -> usize {
    1 + (i * 7919) % 1500
}

/// Sends `count` datagrams in windows no larger than the link queue, waiting for the other
/// side to drain each window, so the (dropping) inbound queue never overflows.
async fn pump(tx: mpsc::Sender<BytesMut>, acks: mpsc::Receiver<usize>, count: usize, seed: usize) {
    const WINDOW: usize = 256;
    let mut acks = acks;
    let mut sent = 0;
    while sent < count {
        let end = (sent + WINDOW).min(count);
        for i in sent..end {
            tx.send(BytesMut::from(&datagram(seed + i, size_of(i))[..]))
                .await
                .unwrap();
        }
        sent = end;
        while acks.recv().await.unwrap() < sent {}
    }
}

async fn drain(
    rx: &mut mpsc::Receiver<BytesMut>,
    acks: mpsc::Sender<usize>,
    count: usize,
    seed: usize,
) {
    for i in 0..count {
        let d = rx.recv().await.expect("link ended early");
        assert_eq!(d, datagram(seed + i, size_of(i)), "datagram {i}");
        if (i + 1) % 256 == 0 || i + 1 == count {
            acks.send(i + 1).await.unwrap();
        }
    }
}

/// Connects a client and returns both ends (the server end appears after the first frame).
async fn pair(
    opts: &TlsOptions,
    addr: SocketAddr,
    accepted: &mut mpsc::Receiver<DatagramLink>,
    sni: &str,
) -> (DatagramLink, DatagramLink) {
    let mut client = tls::connect(addr, sni, opts).await.unwrap();
    client
        .outbound
        .send(BytesMut::from(&[1, 2, 3u8][..]))
        .await
        .unwrap();
    let mut srv = accepted.recv().await.unwrap();
    assert_eq!(srv.inbound.recv().await.unwrap(), vec![1, 2, 3]);
    srv.outbound
        .send(BytesMut::from(&[2, 9u8][..]))
        .await
        .unwrap();
    assert_eq!(client.inbound.recv().await.unwrap(), vec![2, 9]);
    assert_eq!(client.peer, addr);
    assert_eq!(srv.peer.ip(), addr.ip());
    (client, srv)
}

/// A raw tokio-rustls client with the carrier's own client configuration.
async fn raw_tls(addr: SocketAddr, alpn: &[Vec<u8>]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let cfg = tls::client_config(alpn).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(
            ServerName::try_from("www.example.com").unwrap().to_owned(),
            tcp,
        )
        .await
        .unwrap()
}

/// Reads until the peer closes; returns the application bytes received and how long it took.
async fn read_until_closed<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    limit: Duration,
) -> (Vec<u8>, Duration) {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match timeout(limit, r.read(&mut buf))
            .await
            .expect("server did not close the connection in time")
        {
            Ok(0) | Err(_) => return (got, t0.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn exchange_ten_thousand_each_way() {
    timeout(TEST_LIMIT, async {
        let opts = TlsOptions::default();
        let (addr, mut accepted) = server(opts.clone()).await;
        let (mut client, mut srv) = pair(&opts, addr, &mut accepted, tls_sni()).await;
        const N: usize = 10_000;
        let (c_ack_tx, c_ack_rx) = mpsc::channel(64);
        let (s_ack_tx, s_ack_rx) = mpsc::channel(64);
        let up = tokio::spawn(pump(client.outbound.clone(), s_ack_rx, N, 100));
        let down = tokio::spawn(pump(srv.outbound.clone(), c_ack_rx, N, 200));
        let s_drain = async { drain(&mut srv.inbound, s_ack_tx, N, 100).await };
        let c_drain = async { drain(&mut client.inbound, c_ack_tx, N, 200).await };
        tokio::join!(s_drain, c_drain);
        up.await.unwrap();
        down.await.unwrap();

        // The client drops its link: the server's inbound ends.
        drop(client);
        assert!(srv.inbound.recv().await.is_none());
    })
    .await
    .unwrap();
}

fn tls_sni() -> &'static str {
    aura_testkit::TEST_SERVER_NAME
}

#[tokio::test]
async fn sni_not_matching_certificate_connects() {
    timeout(TEST_LIMIT, async {
        let opts = TlsOptions::default();
        let (addr, mut accepted) = server(opts.clone()).await;
        let (_client, _srv) = pair(&opts, addr, &mut accepted, "www.example.com").await;
        // An IP address as the name (no SNI sent) works too.
        let (_c2, _s2) = pair(&opts, addr, &mut accepted, "127.0.0.1").await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn alpn_negotiated() {
    timeout(TEST_LIMIT, async {
        // Default: a browser-like client gets h2.
        let (addr, _accepted) = server(TlsOptions::default()).await;
        let default_alpn: Vec<Vec<u8>> = tls::DEFAULT_TLS_ALPN.iter().map(|p| p.to_vec()).collect();
        let s = raw_tls(addr, &default_alpn).await;
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(
            s.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        let s = raw_tls(addr, &[b"http/1.1".to_vec()]).await;
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

        // Custom ALPN is honoured by both ends.
        let opts = TlsOptions {
            alpn: vec![b"custom/1".to_vec()],
            ..TlsOptions::default()
        };
        let (addr, mut accepted) = server(opts.clone()).await;
        let s = raw_tls(addr, &[b"h2".to_vec(), b"custom/1".to_vec()]).await;
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"custom/1"[..]));
        let (_c, _s) = pair(&opts, addr, &mut accepted, tls_sni()).await;
        // A client offering none of the server's protocols is refused.
        assert!(
            tls::connect(addr, tls_sni(), &TlsOptions::default())
                .await
                .is_err()
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn http_get_is_closed_without_reply() {
    timeout(TEST_LIMIT, async {
        let opts = TlsOptions::default();
        let (addr, mut accepted) = server(opts.clone()).await;
        let mut s = raw_tls(addr, &[b"http/1.1".to_vec()]).await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: test\r\n\r\n")
            .await
            .unwrap();
        let (got, took) = read_until_closed(&mut s, opts.handshake_timeout + SLACK).await;
        assert!(
            got.is_empty(),
            "server sent {} application bytes",
            got.len()
        );
        // Not an Aura packet type: closed at once, not at the handshake timeout.
        assert!(took < Duration::from_secs(2), "took {took:?}");
        assert!(accepted.try_recv().is_err(), "no link for an HTTP client");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn stalled_first_frame_is_closed_at_handshake_timeout() {
    timeout(TEST_LIMIT, async {
        let opts = TlsOptions {
            handshake_timeout: Duration::from_millis(500),
            ..TlsOptions::default()
        };
        let (addr, mut accepted) = server(opts.clone()).await;
        let mut s = raw_tls(addr, &[]).await;
        // "GE": a length of 18245 that never completes.
        s.write_all(b"GE").await.unwrap();
        s.flush().await.unwrap();
        let (got, took) = read_until_closed(&mut s, opts.handshake_timeout + SLACK).await;
        assert!(got.is_empty());
        assert!(
            took >= Duration::from_millis(400),
            "closed too early: {took:?}"
        );
        assert!(accepted.try_recv().is_err());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn zero_length_frame_closes_link() {
    timeout(TEST_LIMIT, async {
        let opts = TlsOptions::default();
        let (addr, mut accepted) = server(opts.clone()).await;
        let mut s = raw_tls(addr, &[]).await;
        s.write_all(&[0, 2, 1, 7]).await.unwrap();
        s.flush().await.unwrap();
        let mut srv = accepted.recv().await.unwrap();
        assert_eq!(srv.inbound.recv().await.unwrap(), vec![1, 7]);
        s.write_all(&[0, 0]).await.unwrap();
        s.flush().await.unwrap();
        assert!(srv.inbound.recv().await.is_none());
        let (got, _) = read_until_closed(&mut s, SLACK).await;
        assert!(got.is_empty());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn garbage_bytes_are_closed() {
    timeout(TEST_LIMIT, async {
        let opts = TlsOptions::default();
        let (addr, _accepted) = server(opts.clone()).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut x: u32 = 0x1234_5678;
        let garbage: Vec<u8> = (0..2000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        // Not starting with a TLS handshake record.
        tcp.write_all(&[0x42]).await.unwrap();
        let _ = tcp.write_all(&garbage).await;
        let (_, took) = read_until_closed(&mut tcp, opts.handshake_timeout + SLACK).await;
        assert!(took < Duration::from_secs(2), "took {took:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn half_open_tcp_is_closed_at_handshake_timeout() {
    timeout(TEST_LIMIT, async {
        let opts = TlsOptions {
            handshake_timeout: Duration::from_millis(500),
            ..TlsOptions::default()
        };
        let (addr, _accepted) = server(opts.clone()).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let (got, took) = read_until_closed(&mut tcp, opts.handshake_timeout + SLACK).await;
        assert!(got.is_empty());
        assert!(
            took >= Duration::from_millis(400),
            "closed too early: {took:?}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn excess_handshakes_per_source_are_dropped() {
    timeout(TEST_LIMIT, async {
        let opts = TlsOptions {
            max_handshakes_per_ip: 2,
            ..TlsOptions::default()
        };
        let (addr, mut accepted) = server(opts.clone()).await;
        let held1 = TcpStream::connect(addr).await.unwrap();
        let held2 = TcpStream::connect(addr).await.unwrap();
        let mut third = TcpStream::connect(addr).await.unwrap();
        let (_, took) = read_until_closed(&mut third, SLACK).await;
        assert!(took < Duration::from_secs(1), "took {took:?}");
        // Releasing the held slots lets a real client in again.
        drop((held1, held2));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_c, _s) = pair(&opts, addr, &mut accepted, tls_sni()).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn idle_link_is_closed_on_both_sides() {
    timeout(TEST_LIMIT, async {
        let opts = TlsOptions {
            idle_timeout: Duration::from_millis(500),
            ..TlsOptions::default()
        };
        let (addr, mut accepted) = server(opts.clone()).await;
        let (mut client, mut srv) = pair(&opts, addr, &mut accepted, tls_sni()).await;
        let t0 = Instant::now();
        assert!(
            timeout(SLACK * 2, srv.inbound.recv())
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            timeout(SLACK * 2, client.inbound.recv())
                .await
                .unwrap()
                .is_none()
        );
        assert!(t0.elapsed() >= Duration::from_millis(400));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn traffic_keeps_link_alive() {
    timeout(TEST_LIMIT, async {
        let opts = TlsOptions {
            idle_timeout: Duration::from_millis(400),
            ..TlsOptions::default()
        };
        let (addr, mut accepted) = server(opts.clone()).await;
        let (client, mut srv) = pair(&opts, addr, &mut accepted, tls_sni()).await;
        for i in 0..10 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            client
                .outbound
                .send(BytesMut::from(&datagram(i, 100)[..]))
                .await
                .unwrap();
            assert_eq!(srv.inbound.recv().await.unwrap(), datagram(i, 100));
        }
        // Unframeable datagrams are dropped, not fatal.
        client.outbound.send(BytesMut::new()).await.unwrap();
        client
            .outbound
            .send(BytesMut::from(&vec![1u8; 70_000][..]))
            .await
            .unwrap();
        client
            .outbound
            .send(BytesMut::from(&vec![5u8; 65_535][..]))
            .await
            .unwrap();
        assert_eq!(srv.inbound.recv().await.unwrap(), vec![5; 65_535]);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn bind_in_use_is_reported() {
    timeout(TEST_LIMIT, async {
        let (addr, _accepted) = server(TlsOptions::default()).await;
        let (tx, _rx) = mpsc::channel(1);
        match tls::listen(addr, outer(), TlsOptions::default(), tx).await {
            Err(TransportError::Bind {
                carrier, addr: a, ..
            }) => {
                assert_eq!(carrier, Carrier::Tls);
                assert_eq!(a, addr);
            }
            other => panic!("expected a bind error, got {other:?}"),
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn bad_outer_key_is_a_tls_error() {
    let mut id = outer();
    id.key = TestPki::new(8).unwrap().alice().key();
    let (tx, _rx) = mpsc::channel(1);
    assert!(matches!(
        tls::listen(loopback(), id, TlsOptions::default(), tx).await,
        Err(TransportError::Tls(_))
    ));
}
