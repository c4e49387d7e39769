//! The UDP carrier end to end on loopback: handshake, 10,000 packets each way with
//! contents checked, many clients on one socket, wrong CA and revoked clients refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use aura_testkit::{TEST_SERVER_NAME, TestPki};
use aura_transport::carrier::udp;
use aura_transport::{Carrier, Driver, DriverHandle, PacketConn};
use common::{client_config, client_endpoint, masks, packet, server_endpoint, wall};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(30);

/// A server and a client driver on loopback UDP with alice connected: (server driver,
/// client driver, client side, server side).
async fn udp_pair(pki: &TestPki, seed: u8) -> (DriverHandle, DriverHandle, PacketConn, PacketConn) {
    udp_pair_with(pki, client_endpoint(pki, pki.alice(), seed)).await
}

/// As `udp_pair`, with the client's endpoint given.
async fn udp_pair_with(
    pki: &TestPki,
    client_ep: aura_proto::Endpoint,
) -> (DriverHandle, DriverHandle, PacketConn, PacketConn) {
    let sock = udp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let server_addr = sock.local_addr().unwrap();
    let (server, mut accept) = Driver::spawn(server_endpoint(pki), Some(sock), masks(pki));
    let (client, _) = Driver::spawn(
        client_ep,
        Some(udp::bind("127.0.0.1:0".parse().unwrap()).unwrap()),
        masks(pki),
    );
    let c = timeout(T, client.connect(server_addr, TEST_SERVER_NAME))
        .await
        .unwrap()
        .unwrap();
    let s = timeout(T, accept.recv()).await.unwrap().unwrap();
    (server, client, c, s)
}

/// A client that speaks only session version 1 (an older build) against this server:
/// version 1 is negotiated, neither side offers checksum offload, and a batch flagged
/// for it anyway loses exactly its flagged packets (never sealed as type 7), counted as
/// drops, while the rest arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_peer_gets_no_checksum_offload() {
    let pki = TestPki::new(1).unwrap();
    let mut cfg = client_config(&pki, pki.alice());
    cfg.versions = vec![1];
    let ep = aura_proto::Endpoint::new(cfg, [3; 32], std::time::Instant::now(), wall()).unwrap();
    let (_server, _client, c, mut s) = udp_pair_with(&pki, ep).await;
    assert!(!c.offload() && !s.offload());
    {
        let (from, to, side) = (&c, &mut s, 0u8);
        let mut batch = aura_transport::PacketBatch::default();
        for i in 0..6u32 {
            batch.push_with(&packet(side, i, 300), i % 2 == 1);
        }
        from.send_packets(batch).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            let b = timeout(T, to.recv_packets()).await.unwrap().unwrap();
            got.extend(b.iter_with_offload().map(|(p, o)| (p.to_vec(), o)));
            b.recycle();
        }
        let want: Vec<(Vec<u8>, bool)> = [0u32, 2, 4]
            .iter()
            .map(|&i| (packet(side, i, 300), false))
            .collect();
        assert_eq!(got, want);
        assert_eq!(from.stats().drops, 3);
    }
    c.close().await;
    // And a configuration naming no version, or one this build does not speak, is refused.
    for versions in [vec![], vec![1, 9]] {
        let mut cfg = client_config(&pki, pki.alice());
        cfg.versions = versions;
        let e =
            aura_proto::Endpoint::new(cfg, [3; 32], std::time::Instant::now(), wall()).unwrap_err();
        assert!(e.to_string().contains("session versions"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_packets_each_way() {
    let pki = TestPki::new(1).unwrap();
    let (_server, _client, mut c, mut s) = udp_pair(&pki, 2).await;
    assert_eq!(c.carrier(), Carrier::Udp);
    assert_eq!(c.peer().id, TEST_SERVER_NAME);
    assert_eq!(s.peer().id, "alice");

    const N: u32 = 10_000;
    // Send in batches, waiting for the receiver so loopback buffers never overflow.
    let mut got_s = 0u32;
    let mut got_c = 0u32;
    for base in (0..N).step_by(100) {
        let batch: Vec<Vec<u8>> = (base..base + 100)
            .map(|i| packet(0, i, 64 + (i as usize % 1300)))
            .collect();
        c.send_batch(batch).await.unwrap();
        let batch: Vec<Vec<u8>> = (base..base + 100)
            .map(|i| packet(1, i, 64 + (i as usize % 1300)))
            .collect();
        s.send_batch(batch).await.unwrap();
        for _ in 0..100 {
            let p = timeout(T, s.recv()).await.unwrap().unwrap();
            assert_eq!(p, packet(0, got_s, 64 + (got_s as usize % 1300)));
            got_s += 1;
            let p = timeout(T, c.recv()).await.unwrap().unwrap();
            assert_eq!(p, packet(1, got_c, 64 + (got_c as usize % 1300)));
            got_c += 1;
        }
    }
    assert_eq!((got_s, got_c), (N, N));
    let st = c.stats();
    assert_eq!(st.packets_out, u64::from(N));
    assert_eq!(st.packets_in, u64::from(N));
    assert!(st.bytes_in > 0 && st.bytes_out > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_is_met_with_silence_and_revoked_client_is_refused() {
    let mut pki = TestPki::new(3).unwrap();
    let sock = udp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let server_addr = sock.local_addr().unwrap();
    let crl = pki.revoke("bob").unwrap();
    let mut server_ep_cfg = aura_proto::EndpointConfig::new(
        pki.ca_der().to_vec(),
        common::identity(pki.server()),
        aura_pki::Verifier::new(pki.ca_der(), [&crl]).unwrap(),
        true,
    );
    server_ep_cfg.cookie_threshold = 256;
    let server_ep = aura_proto::Endpoint::new(
        server_ep_cfg,
        [9; 32],
        std::time::Instant::now(),
        common::wall(),
    )
    .unwrap();
    let (_server, _accept) = Driver::spawn(server_ep, Some(sock), masks(&pki));

    // Bob is revoked: the server says so (sealed alert), the client reports it.
    let (client, _) = Driver::spawn(
        client_endpoint(&pki, pki.bob(), 4),
        Some(udp::bind("127.0.0.1:0".parse().unwrap()).unwrap()),
        masks(&pki),
    );
    let err = timeout(T, client.connect(server_addr, TEST_SERVER_NAME))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");

    // A client of another deployment gets no answer at all.
    let other = pki.other_deployment().unwrap();
    let (stranger, _) = Driver::spawn(
        client_endpoint(&other, other.alice(), 5),
        Some(udp::bind("127.0.0.1:0".parse().unwrap()).unwrap()),
        masks(&other),
    );
    let r = timeout(
        Duration::from_secs(3),
        stranger.connect(server_addr, TEST_SERVER_NAME),
    )
    .await;
    assert!(r.is_err(), "a stranger got an answer: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_on_one_socket() {
    let mut pki = TestPki::new(5).unwrap();
    let sock = udp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let server_addr = sock.local_addr().unwrap();
    let (_server, mut accept) = Driver::spawn(server_endpoint(&pki), Some(sock), masks(&pki));
    let mut clients = Vec::new();
    for i in 0..200u32 {
        let id = pki.issue_client(&format!("client-{i}")).unwrap();
        let (d, _) = Driver::spawn(
            client_endpoint(&pki, &id, (i % 250) as u8),
            Some(udp::bind("127.0.0.1:0".parse().unwrap()).unwrap()),
            masks(&pki),
        );
        clients.push(d);
    }
    let mut conns = Vec::new();
    for d in &clients {
        conns.push(tokio::spawn({
            let d = d.clone();
            async move { d.connect(server_addr, TEST_SERVER_NAME).await }
        }));
    }
    let mut client_conns = Vec::new();
    for c in conns {
        client_conns.push(timeout(T, c).await.unwrap().unwrap().unwrap());
    }
    let mut server_conns = std::collections::HashMap::new();
    for _ in 0..200 {
        let s = timeout(T, accept.recv()).await.unwrap().unwrap();
        server_conns.insert(s.peer().id.clone(), s);
    }
    assert_eq!(server_conns.len(), 200);
    // Each client sends one packet naming itself; the server sees it on that client's
    // connection and echoes it back.
    for (i, c) in client_conns.iter().enumerate() {
        c.send(format!("\x45client-{i}").into_bytes())
            .await
            .unwrap();
    }
    for (id, s) in server_conns.iter_mut() {
        let p = timeout(T, s.recv()).await.unwrap().unwrap();
        assert_eq!(p, format!("\x45{id}").into_bytes());
        s.send(p).await.unwrap();
    }
    for (i, c) in client_conns.iter_mut().enumerate() {
        let p = timeout(T, c.recv()).await.unwrap().unwrap();
        assert_eq!(p, format!("\x45client-{i}").into_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn padding_profile_changes_at_run_time_without_dropping_the_session() {
    let pki = TestPki::new(6).unwrap();
    let (server, client, mut c, mut s) = udp_pair(&pki, 7).await;
    for (i, profile) in [3u8, 1, 2, 0].into_iter().enumerate() {
        let p = aura_transport::camo::shape::Profile::from_index(profile).unwrap();
        client.set_udp_profile(Some(p)).await.unwrap();
        server.set_udp_profile(Some(p)).await.unwrap();
        for j in 0..50u32 {
            let seq = i as u32 * 100 + j;
            c.send(packet(0, seq, 200)).await.unwrap();
            assert_eq!(
                timeout(T, s.recv()).await.unwrap().unwrap(),
                packet(0, seq, 200)
            );
            s.send(packet(1, seq, 900)).await.unwrap();
            assert_eq!(
                timeout(T, c.recv()).await.unwrap().unwrap(),
                packet(1, seq, 900)
            );
        }
    }
}

/// A censor's probes against the UDP carrier: a client's captured first flight replayed
/// from another address, random bytes, and an empty datagram all get silence, while the
/// client itself connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_first_flights_and_random_bytes_get_silence() {
    let pki = TestPki::new(8).unwrap();
    let sock = udp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let server_addr = sock.local_addr().unwrap();
    let (_server, mut accept) = Driver::spawn(server_endpoint(&pki), Some(sock), masks(&pki));

    // An on-path recorder: forwards the client's datagrams to the server and back,
    // keeping a copy of everything the client sends.
    let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let upstream = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    upstream.connect(server_addr).await.unwrap();
    let captured = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let cap = captured.clone();
    let recorder = tokio::spawn(async move {
        let mut client = None;
        let mut a = vec![0u8; 65536];
        let mut b = vec![0u8; 65536];
        loop {
            tokio::select! {
                Ok((n, from)) = relay.recv_from(&mut a) => {
                    client = Some(from);
                    cap.lock().unwrap().push(a[..n].to_vec());
                    let _ = upstream.send(&a[..n]).await;
                }
                Ok(n) = upstream.recv(&mut b) => {
                    if let Some(c) = client {
                        let _ = relay.send_to(&b[..n], c).await;
                    }
                }
            }
        }
    });
    let (client, _) = Driver::spawn(
        client_endpoint(&pki, pki.alice(), 9),
        Some(udp::bind("127.0.0.1:0".parse().unwrap()).unwrap()),
        masks(&pki),
    );
    let _c = timeout(T, client.connect(relay_addr, TEST_SERVER_NAME))
        .await
        .unwrap()
        .unwrap();
    let _s = timeout(T, accept.recv()).await.unwrap().unwrap();
    recorder.abort();
    let flights = captured.lock().unwrap().clone();
    assert!(
        flights.len() >= 2,
        "the handshake took {} datagrams",
        flights.len()
    );
    // The first flight passes the censor's fully-encrypted-traffic rules.
    assert!(!aura_testkit::fet::blocked(&flights[0]));
    // The first burst is four datagrams: three of the day's first-flight size, then a
    // runt, too short for its byte entropy to read as random (nDPI judges by the fourth).
    assert!(flights.len() >= 4, "{} datagrams", flights.len());
    let sizes: Vec<usize> = flights.iter().take(4).map(Vec::len).collect();
    assert!(sizes[..3].iter().all(|n| *n >= 1100), "sizes {sizes:?}");
    assert!((14..=30).contains(&sizes[3]), "sizes {sizes:?}");
    assert!(entropy(&flights[3]) < 4.941, "{:?}", flights[3]);
    assert!(
        entropy(&flights[0]) > 4.941,
        "the handshake itself is random bytes"
    );

    let prober = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut probes: Vec<Vec<u8>> = flights.clone();
    probes.push(vec![]);
    probes.push(
        (0..1200u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
    );
    probes.push(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec());
    for p in &probes {
        prober.send_to(p, server_addr).await.unwrap();
    }
    let mut buf = vec![0u8; 2048];
    let answer = timeout(Duration::from_secs(2), prober.recv_from(&mut buf)).await;
    assert!(answer.is_err(), "a probe got an answer: {answer:?}");
    assert!(
        timeout(Duration::from_millis(200), accept.recv())
            .await
            .is_err()
    );
}

/// Shannon entropy in bits per byte, as nDPI computes it per packet.
fn entropy(d: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for b in d {
        counts[usize::from(*b)] += 1;
    }
    let n = d.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum()
}

/// An insider (it holds the knock key) sends an Init from an address it does not own:
/// whatever it sends, the whole Init and then forty retransmissions of its first
/// fragment, the server sends that address no more bytes than it received from it,
/// counted on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unproven_address_is_sent_no_more_than_it_sent() {
    use aura_transport::camo::datagram::{CLIENT_MAX_HANDSHAKE_DATAGRAM, DatagramCamo, Side};
    use aura_transport::camo::knock::KnockKeys;
    use std::time::Instant;

    let pki = TestPki::new(8).unwrap();
    let sock = udp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let server_addr = sock.local_addr().unwrap();
    let (_server, _accept) = Driver::spawn(server_endpoint(&pki), Some(sock), masks(&pki));

    let mut cfg = aura_proto::EndpointConfig::new(
        pki.ca_der().to_vec(),
        common::identity(pki.alice()),
        pki.verifier().unwrap(),
        false,
    );
    cfg.max_datagram = CLIENT_MAX_HANDSHAKE_DATAGRAM;
    let mut ep = aura_proto::Endpoint::new(cfg, [3; 32], Instant::now(), common::wall()).unwrap();
    ep.connect(Instant::now(), server_addr, TEST_SERVER_NAME)
        .unwrap();
    let init: Vec<Vec<u8>> = std::iter::from_fn(|| ep.poll_transmit())
        .map(|t| t.data)
        .collect();
    assert!(init.len() >= 2, "the Init is {} fragments", init.len());
    let unix = ep.wall_time(Instant::now()).as_secs();
    let mask = masks(&pki).mask_at(i64::try_from(unix).unwrap());
    let mut camo = DatagramCamo::new(Side::Client, KnockKeys::new(ep.secret()), &[4; 32], unix);

    let victim = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut sent = 0usize;
    let mut triggers: Vec<&[u8]> = init.iter().map(Vec::as_slice).collect();
    triggers.extend(std::iter::repeat_n(init[0].as_slice(), 40));
    for d in triggers {
        // Each one sealed afresh: a fresh knock, not a replay.
        let mut w = Vec::new();
        camo.append(d, &mask, unix, &mut w);
        victim.send_to(&w, server_addr).await.unwrap();
        sent += w.len();
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut got = 0usize;
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok((n, _))) =
        timeout(Duration::from_millis(1500), victim.recv_from(&mut buf)).await
    {
        got += n;
    }
    assert!(got > 0, "the server never answered the Init");
    assert!(
        got <= sent,
        "the server sent {got} bytes to an address that sent {sent} ({:.2}x)",
        got as f64 / sent as f64
    );
    eprintln!(
        "amplification: {sent} bytes in, {got} out ({:.2}x)",
        got as f64 / sent as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_does_not_read_holds_at_most_the_inbound_byte_limit() {
    use aura_transport::driver::INBOUND_QUEUE_BYTES;
    let pki = TestPki::new(1).unwrap();
    let (_server, _client, c, mut s) = udp_pair(&pki, 5).await;
    // 3x the limit toward a server side that reads nothing, paced so loopback's socket
    // buffers keep up.
    const LEN: usize = 1200;
    let n = (3 * INBOUND_QUEUE_BYTES / LEN) as u32;
    for base in (0..n).step_by(200) {
        let batch: Vec<Vec<u8>> = (base..(base + 200).min(n))
            .map(|i| packet(0, i, LEN))
            .collect();
        c.send_batch(batch).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The excess is dropped, and counted.
    timeout(T, async {
        while s.stats().packets_in < u64::from(n) * 9 / 10 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the server saw most packets");
    let drops = s.stats().drops;
    assert!(drops > 0, "nothing dropped past the limit");
    // What waits is at most the limit, in order from the first packet.
    let mut held = 0usize;
    let mut next = 0u32;
    while let Ok(Some(b)) = timeout(Duration::from_millis(300), s.recv_packets()).await {
        for p in b.iter() {
            if next == 0 {
                assert_eq!(p, &packet(0, 0, LEN)[..]);
            }
            held += p.len();
            next += 1;
        }
        b.recycle();
    }
    assert!(held > 0);
    assert!(
        held <= INBOUND_QUEUE_BYTES,
        "{held} bytes waited, past the {INBOUND_QUEUE_BYTES}-byte limit"
    );
    assert_eq!(u64::from(next) + drops, s.stats().packets_in);
}
