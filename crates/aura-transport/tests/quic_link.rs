//! The QUIC carrier as a `DatagramLink` producer, over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aura_testkit::{TEST_SERVER_NAME, TestPki};
use aura_transport::carrier::quic::{self, QuicCounters, QuicListener, QuicOptions};
use aura_transport::{Carrier, DatagramLink, TransportError};
use tokio::sync::mpsc;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(60);
const HANDSHAKE: u8 = 1;
const DATA: u8 = 5;

fn any_local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// An Aura-shaped datagram: type byte, sequence number, then a pattern; 8..=1300 bytes.
fn packet(kind: u8, seq: u32) -> Vec<u8> {
    let len = 8 + (seq as usize).wrapping_mul(7919) % 1293;
    sized_packet(kind, seq, len)
}

fn sized_packet(kind: u8, seq: u32, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(len);
    p.push(kind);
    p.extend_from_slice(&seq.to_be_bytes());
    while p.len() < len {
        p.push(fill(seq, p.len()));
    }
    p
}

fn fill(seq: u32, i: usize) -> u8 {
    (i as u32).wrapping_mul(31).wrapping_add(seq) as u8
}

/// Whether `p` is exactly `packet(p[0], seq_of(p))`, without building it.
fn intact(p: &[u8]) -> bool {
    let seq = seq_of(p);
    p.len() == 8 + (seq as usize).wrapping_mul(7919) % 1293
        && p.iter()
            .enumerate()
            .skip(5)
            .all(|(i, b)| *b == fill(seq, i))
}

fn seq_of(p: &[u8]) -> u32 {
    u32::from_be_bytes(p[1..5].try_into().unwrap())
}

async fn server(
    pki: &TestPki,
    opts: QuicOptions,
) -> (SocketAddr, mpsc::Receiver<DatagramLink>, QuicListener) {
    let (tx, rx) = mpsc::channel(64);
    let listener = quic::listen(
        any_local(),
        vec![pki.server().cert()],
        pki.server().key(),
        opts,
        tx,
    )
    .await
    .unwrap();
    (listener.local_addr(), rx, listener)
}

/// Connects with `sni` and returns (client, server) links, after one handshake-type
/// datagram from the client has opened the stream.
async fn pair(
    addr: SocketAddr,
    accepted: &mut mpsc::Receiver<DatagramLink>,
    sni: &str,
) -> (DatagramLink, DatagramLink) {
    pair_counted(addr, accepted, sni, Arc::default()).await
}

/// [`pair`], the client counting in `counters`.
async fn pair_counted(
    addr: SocketAddr,
    accepted: &mut mpsc::Receiver<DatagramLink>,
    sni: &str,
    counters: Arc<QuicCounters>,
) -> (DatagramLink, DatagramLink) {
    let mut client = quic::connect_counted(addr, sni, &QuicOptions::default(), counters)
        .await
        .unwrap();
    let hello = packet(HANDSHAKE, 0);
    client
        .outbound
        .send(BytesMut::from(&hello[..]))
        .await
        .unwrap();
    let mut server = accepted.recv().await.unwrap();
    assert_eq!(server.inbound.recv().await.unwrap(), hello);
    // And back.
    let reply = packet(HANDSHAKE + 1, 0);
    server
        .outbound
        .send(BytesMut::from(&reply[..]))
        .await
        .unwrap();
    assert_eq!(client.inbound.recv().await.unwrap(), reply);
    (client, server)
}

const COUNT: u32 = 10_000;
const END: u32 = u32::MAX;

fn kind_of(seq: u32) -> u8 {
    if seq.is_multiple_of(4) {
        HANDSHAKE
    } else {
        DATA
    }
}

async fn send_all(out: mpsc::Sender<BytesMut>) {
    for seq in 1..=COUNT {
        out.send(BytesMut::from(&packet(kind_of(seq), seq)[..]))
            .await
            .unwrap();
    }
    out.send(BytesMut::from(&packet(HANDSHAKE, END)[..]))
        .await
        .unwrap();
}

/// Receives one direction; returns the number of data datagrams that arrived.
async fn receive_all(mut inbound: mpsc::Receiver<BytesMut>) -> usize {
    let stream_expected: Vec<u32> = (1..=COUNT).filter(|s| kind_of(*s) == HANDSHAKE).collect();
    let data_expected = (COUNT as usize) - stream_expected.len();
    let mut stream_seen = Vec::new();
    let mut data_seen = vec![false; COUNT as usize + 1];
    let mut data_count = 0;
    let mut ended = false;
    loop {
        let next = if ended {
            // Datagrams sent before the end marker may still be in flight.
            match timeout(Duration::from_millis(500), inbound.recv()).await {
                Ok(p) => p,
                Err(_) => break,
            }
        } else {
            inbound.recv().await
        };
        let p = next.expect("link closed early");
        let seq = seq_of(&p);
        assert!(intact(&p), "content of {seq}");
        match p[0] {
            HANDSHAKE if seq == END => ended = true,
            HANDSHAKE => {
                assert!(!ended, "stream frame after the end marker");
                stream_seen.push(seq);
            }
            DATA => {
                assert!(!data_seen[seq as usize], "duplicate datagram {seq}");
                data_seen[seq as usize] = true;
                data_count += 1;
            }
            other => panic!("unexpected type {other}"),
        }
        if ended && data_count == data_expected {
            break;
        }
    }
    assert_eq!(
        stream_seen, stream_expected,
        "stream datagrams complete and in order"
    );
    data_count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_10k_datagrams_each_way() {
    timeout(LIMIT, async {
        let pki = TestPki::new(1).unwrap();
        let (addr, mut accepted, listener) = server(&pki, QuicOptions::default()).await;
        let client_counters = Arc::new(QuicCounters::default());
        let (client, server) =
            pair_counted(addr, &mut accepted, TEST_SERVER_NAME, client_counters.clone()).await;
        let c_send = tokio::spawn(send_all(client.outbound.clone()));
        let s_send = tokio::spawn(send_all(server.outbound.clone()));
        let c_recv = tokio::spawn(receive_all(client.inbound));
        let s_recv = tokio::spawn(receive_all(server.inbound));
        c_send.await.unwrap();
        s_send.await.unwrap();
        let to_client = c_recv.await.unwrap();
        let to_server = s_recv.await.unwrap();
        let data_sent = (1..=COUNT).filter(|s| kind_of(*s) == DATA).count();
        println!("server {:?}", listener.stats());
        println!("client {:?}", client_counters.stats());
        println!("data datagrams delivered: to server {to_server}/{data_sent}, to client {to_client}/{data_sent}");
        assert!(to_server * 100 >= data_sent * 99, "{to_server} of {data_sent}");
        assert!(to_client * 100 >= data_sent * 99, "{to_client} of {data_sent}");
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn oversize_data_datagram_falls_back_to_stream() {
    timeout(LIMIT, async {
        let pki = TestPki::new(2).unwrap();
        let (addr, mut accepted, listener) = server(&pki, QuicOptions::default()).await;
        let client_counters = Arc::new(QuicCounters::default());
        let (mut client, mut server) = pair_counted(
            addr,
            &mut accepted,
            TEST_SERVER_NAME,
            client_counters.clone(),
        )
        .await;
        // Both sides' counters: one fallback each way.
        let stream_fallbacks =
            || listener.stats().stream_fallbacks + client_counters.stats().stream_fallbacks;
        let before = stream_fallbacks();
        let big = sized_packet(DATA, 7, 3000);
        client
            .outbound
            .send(BytesMut::from(&big[..]))
            .await
            .unwrap();
        assert_eq!(server.inbound.recv().await.unwrap(), big);
        let big_back = sized_packet(DATA, 8, 3000);
        server
            .outbound
            .send(BytesMut::from(&big_back[..]))
            .await
            .unwrap();
        assert_eq!(client.inbound.recv().await.unwrap(), big_back);
        assert!(stream_fallbacks() >= before + 2);
        // The connection is still up and datagrams still flow.
        let small = packet(DATA, 9);
        client
            .outbound
            .send(BytesMut::from(&small[..]))
            .await
            .unwrap();
        assert_eq!(server.inbound.recv().await.unwrap(), small);
        let max = sized_packet(DATA, 10, 65_535);
        server
            .outbound
            .send(BytesMut::from(&max[..]))
            .await
            .unwrap();
        assert_eq!(client.inbound.recv().await.unwrap(), max);
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn sni_not_matching_the_certificate_still_connects() {
    timeout(LIMIT, async {
        let pki = TestPki::new(3).unwrap();
        let (addr, mut accepted, _) = server(&pki, QuicOptions::default()).await;
        let (mut client, server) = pair(addr, &mut accepted, "www.example.com").await;
        let p = packet(DATA, 1);
        server.outbound.send(BytesMut::from(&p[..])).await.unwrap();
        assert_eq!(client.inbound.recv().await.unwrap(), p);
        let _ = pair(addr, &mut accepted, "127.0.0.1").await;
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn binding_a_port_in_use_fails() {
    let pki = TestPki::new(4).unwrap();
    let taken = std::net::UdpSocket::bind(any_local()).unwrap();
    let addr = taken.local_addr().unwrap();
    let (tx, _rx) = mpsc::channel(1);
    let err = quic::listen(
        addr,
        vec![pki.server().cert()],
        pki.server().key(),
        QuicOptions::default(),
        tx,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, TransportError::Bind { carrier: Carrier::Quic, addr: a, .. } if a == addr),
        "{err:?}"
    );
}

#[tokio::test]
async fn closing_either_side_ends_the_other_inbound() {
    timeout(LIMIT, async {
        let pki = TestPki::new(5).unwrap();
        let (addr, mut accepted, _) = server(&pki, QuicOptions::default()).await;
        let (client, mut server) = pair(addr, &mut accepted, TEST_SERVER_NAME).await;
        drop(client);
        assert!(server.inbound.recv().await.is_none());
        let (mut client, server) = pair(addr, &mut accepted, TEST_SERVER_NAME).await;
        drop(server);
        assert!(client.inbound.recv().await.is_none());
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn non_quic_bytes_are_ignored() {
    timeout(LIMIT, async {
        let pki = TestPki::new(6).unwrap();
        let (addr, mut accepted, _) = server(&pki, QuicOptions::default()).await;
        let junk = tokio::net::UdpSocket::bind(any_local()).await.unwrap();
        for i in 0..200u32 {
            let len = [1usize, 20, 600, 1200, 1350][i as usize % 5];
            let mut d = sized_packet(0xc0 | (i as u8 & 0x3f), i, len.max(5));
            d.truncate(len);
            junk.send_to(&d, addr).await.unwrap();
        }
        let (mut client, server) = pair(addr, &mut accepted, TEST_SERVER_NAME).await;
        let p = packet(DATA, 3);
        server.outbound.send(BytesMut::from(&p[..])).await.unwrap();
        assert_eq!(client.inbound.recv().await.unwrap(), p);
    })
    .await
    .expect("timed out");
}

fn short_handshake() -> QuicOptions {
    QuicOptions {
        handshake_timeout: Duration::from_millis(1500),
        ..QuicOptions::default()
    }
}

#[tokio::test]
async fn connection_without_a_stream_is_closed() {
    timeout(LIMIT, async {
        let pki = TestPki::new(7).unwrap();
        let (addr, mut accepted, listener) = server(&pki, short_handshake()).await;
        // The link is never written to, so the server never sees the stream.
        let mut client = quic::connect(addr, TEST_SERVER_NAME, &QuicOptions::default())
            .await
            .unwrap();
        let closed = timeout(Duration::from_secs(10), client.inbound.recv()).await;
        assert!(matches!(closed, Ok(None)), "closed by the server");
        assert!(accepted.try_recv().is_err(), "no link handed out");
        assert!(listener.stats().handshake_timeouts >= 1);
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn bad_stream_frames_close_the_connection() {
    timeout(LIMIT, async {
        let pki = TestPki::new(8).unwrap();
        let (addr, mut accepted, listener) = server(&pki, QuicOptions::default()).await;

        // Not an Aura packet type, as the first frame: never handed out...
        let mut client = quic::connect(addr, TEST_SERVER_NAME, &QuicOptions::default()).await.unwrap();
        client.outbound.send(BytesMut::from(&[9, 1, 2, 3u8][..])).await.unwrap();
        assert!(client.inbound.recv().await.is_none());
        assert!(accepted.try_recv().is_err());
        // ...and after good ones.
        let (mut client, _server) = pair(addr, &mut accepted, TEST_SERVER_NAME).await;
        client.outbound.send(BytesMut::from(&[0, 1, 2, 3u8][..])).await.unwrap();
        assert!(client.inbound.recv().await.is_none());

        // A zero-length frame, written by hand.
        let endpoint = quinn::Endpoint::client(any_local()).unwrap();
        let conn = endpoint
            .connect_with(quic::client_config(&QuicOptions::default()).unwrap(), addr, TEST_SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(&[0, 0]).await.unwrap();
        let reason = conn.closed().await;
        assert!(
            matches!(&reason, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(0x106)),
            "{reason:?}"
        );
        assert!(listener.stats().bad_frames >= 3);
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn handshakes_in_flight_are_capped_per_source() {
    timeout(LIMIT, async {
        let pki = TestPki::new(9).unwrap();
        let (addr, mut accepted, _) = server(&pki, short_handshake()).await;
        let endpoint = quinn::Endpoint::client(any_local()).unwrap();
        let cfg = quic::client_config(&QuicOptions::default()).unwrap();
        let mut held = Vec::new();
        for _ in 0..quic::MAX_HANDSHAKES_PER_SOURCE {
            let conn = endpoint.connect_with(cfg.clone(), addr, TEST_SERVER_NAME).unwrap().await.unwrap();
            held.push(conn);
        }
        let refused = endpoint.connect_with(cfg.clone(), addr, TEST_SERVER_NAME).unwrap().await;
        assert!(
            matches!(&refused, Err(quinn::ConnectionError::ConnectionClosed(c)) if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED),
            "{refused:?}"
        );
        // The held connections open no stream and are closed at the deadline, freeing
        // their slots.
        for conn in &held {
            conn.closed().await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_client, _server) = pair(addr, &mut accepted, TEST_SERVER_NAME).await;
    })
    .await
    .expect("timed out");
}

/// Prints the datagram limit quinn reports with this carrier's transport parameters, at
/// once and after MTU discovery, and checks that a ~1300-byte packet fits from the start.
#[tokio::test]
async fn observed_max_datagram_size() {
    timeout(LIMIT, async {
        let pki = TestPki::new(10).unwrap();
        let opts = QuicOptions::default();
        let server_cfg =
            quic::server_config(vec![pki.server().cert()], pki.server().key(), &opts).unwrap();
        let server = quinn::Endpoint::server(server_cfg, any_local()).unwrap();
        let addr = server.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let conn = server.accept().await.unwrap().await.unwrap();
            conn.closed().await;
        });
        let client = quinn::Endpoint::client(any_local()).unwrap();
        let conn = client
            .connect_with(quic::client_config(&opts).unwrap(), addr, TEST_SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let first = conn.max_datagram_size().unwrap();
        let conn = Arc::new(conn);
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = conn.send_datagram(vec![DATA; 100].into());
        }
        let later = conn.max_datagram_size().unwrap();
        println!(
            "QUIC max_datagram_size on loopback: {first} after the handshake, {later} after 2 s"
        );
        assert!(first >= 1300, "{first}");
        assert!(later >= first);
        assert_eq!(first, quic::EARLY_DATAGRAM_MAX);
        conn.close(quinn::VarInt::from_u32(0), b"");
        accept.await.unwrap();
    })
    .await
    .expect("timed out");
}
