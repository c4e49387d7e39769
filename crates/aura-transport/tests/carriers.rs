//! Every carrier through the multi-carrier server and `dial`: handshake and 10,000
//! packets each way, many concurrent clients, refusals, outer SNI mismatch, fallback when
//! UDP is blackholed, bridges when the primary is down, and a garbage flood against every
//! listener while established clients keep exchanging packets. Loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::BytesMut;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aura_proto::EndpointConfig;
use aura_testkit::TestPki;
use aura_transport::carrier::quic::QuicOptions;
use aura_transport::carrier::tls::{OuterIdentity, TlsOptions};
use aura_transport::dial::dial;
use aura_transport::listen::{ListenConfig, Listeners};
use aura_transport::{Carrier, PacketBatch, PacketConn};
use common::{dial_config, identity, packet, server_config};
use rand_core::OsRng;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(60);
const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

async fn server(pki: &TestPki, ip: IpAddr, crl: Option<Vec<u8>>) -> Listeners {
    let verifier = match crl {
        Some(c) => aura_pki::Verifier::new(pki.ca_der(), [c]).unwrap(),
        None => pki.verifier().unwrap(),
    };
    Listeners::bind(server_config(pki, ip, verifier))
        .await
        .unwrap()
}

/// The test PKI is valid in 2030; servers and dials here pin their wall clock there.
fn pki() -> TestPki {
    TestPki::new(11).unwrap()
}

async fn exchange(c: &mut PacketConn, s: &mut PacketConn, n: u32) {
    let mut got_s = 0u32;
    let mut got_c = 0u32;
    for base in (0..n).step_by(50) {
        let size = |i: u32| 64 + (i as usize * 13 % 1100);
        c.send_batch((base..base + 50).map(|i| packet(0, i, size(i))).collect())
            .await
            .unwrap();
        s.send_batch((base..base + 50).map(|i| packet(1, i, size(i))).collect())
            .await
            .unwrap();
        for _ in 0..50 {
            let p = timeout(T, s.recv()).await.unwrap().unwrap();
            assert_eq!(
                p,
                packet(0, got_s, size(got_s)),
                "client→server packet {got_s}"
            );
            got_s += 1;
            let p = timeout(T, c.recv()).await.unwrap().unwrap();
            assert_eq!(
                p,
                packet(1, got_c, size(got_c)),
                "server→client packet {got_c}"
            );
            got_c += 1;
        }
    }
}

/// Session version 2 on both ends: packets whose checksum is left to the peer arrive
/// flagged (type 7), the others not, in order, each way.
async fn offload_flags_cross(c: &mut PacketConn, s: &mut PacketConn) {
    assert!(c.offload() && s.offload(), "both ends negotiated version 2");
    one_way_flags(c, s, 0).await;
    one_way_flags(s, c, 1).await;
}

async fn one_way_flags(from: &PacketConn, to: &mut PacketConn, side: u8) {
    let flags: Vec<bool> = (0..20).map(|i| i % 3 == 0).collect();
    let want: Vec<(Vec<u8>, bool)> = flags
        .iter()
        .enumerate()
        .map(|(i, f)| (packet(side + 2, i as u32, 200 + i), *f))
        .collect();
    let mut batch = PacketBatch::default();
    for (p, f) in &want {
        batch.push_with(p, *f);
    }
    from.send_packets(batch).await.unwrap();
    let mut got = Vec::new();
    while got.len() < want.len() {
        let b = timeout(T, to.recv_packets()).await.unwrap().unwrap();
        got.extend(b.iter_with_offload().map(|(p, o)| (p.to_vec(), o)));
        b.recycle();
    }
    assert_eq!(got, want, "side {side}");
}

async fn per_carrier(carrier: Carrier) {
    let pki = pki();
    let mut s = server(&pki, LOCALHOST, None).await;
    let started = Instant::now();
    let d = timeout(
        T,
        dial(&dial_config(&pki, pki.alice(), &s, &[carrier]), &mut OsRng),
    )
    .await
    .unwrap()
    .unwrap();
    let connect_time = started.elapsed();
    assert_eq!(d.carrier, carrier);
    assert!(connect_time < Duration::from_secs(5), "{connect_time:?}");
    let mut c = d.conn;
    let mut sc = timeout(T, s.accept()).await.unwrap().unwrap();
    assert_eq!(sc.carrier(), carrier);
    assert_eq!(sc.peer().id, "alice");
    // QUIC and TLS sessions are bound to their outer session and encrypted once by it;
    // UDP keeps Aura's own encryption (docs/adr/0024).
    let bound = carrier != Carrier::Udp;
    assert_eq!((c.bound(), sc.bound()), (bound, bound), "{carrier:?}");
    exchange(&mut c, &mut sc, 10_000).await;
    offload_flags_cross(&mut c, &mut sc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_carrier_end_to_end() {
    per_carrier(Carrier::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_carrier_end_to_end() {
    per_carrier(Carrier::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_carrier_end_to_end() {
    per_carrier(Carrier::Tls).await;
}

async fn many_clients(carrier: Carrier, n: usize) {
    let mut pki = pki();
    let mut s = server(&pki, LOCALHOST, None).await;
    let mut tasks = Vec::new();
    // All test clients share 127.0.0.1, and the listeners cap handshakes in flight per
    // source address (20), so at most 16 dial at once; all 200 stay connected together.
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    for i in 0..n {
        let id = pki.issue_client(&format!("c{i}")).unwrap();
        let cfg = dial_config(&pki, &id, &s, &[carrier]);
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            dial(&cfg, &mut OsRng).await
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(timeout(T, t).await.unwrap().unwrap().unwrap().conn);
    }
    let mut servers = std::collections::HashMap::new();
    for _ in 0..n {
        let sc = timeout(T, s.accept()).await.unwrap().unwrap();
        servers.insert(sc.peer().id.clone(), sc);
    }
    for (i, c) in clients.iter().enumerate() {
        c.send(format!("\x45c{i}").into_bytes()).await.unwrap();
    }
    for (id, sc) in servers.iter_mut() {
        let p = timeout(T, sc.recv()).await.unwrap().unwrap();
        assert_eq!(p, format!("\x45{id}").into_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients_per_carrier() {
    for carrier in [Carrier::Udp, Carrier::Quic, Carrier::Tls] {
        many_clients(carrier, 200).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_on_every_carrier() {
    let mut pki = pki();
    let crl = pki.revoke("bob").unwrap();
    let s = server(&pki, LOCALHOST, Some(crl)).await;
    let other = pki.other_deployment().unwrap();
    for carrier in [Carrier::Udp, Carrier::Quic, Carrier::Tls] {
        // Revoked: the server says so and the dial stops at once.
        let err = timeout(
            T,
            dial(&dial_config(&pki, pki.bob(), &s, &[carrier]), &mut OsRng),
        )
        .await
        .unwrap()
        .unwrap_err();
        assert!(err.to_string().contains("revoked"), "{carrier}: {err}");
        // Another deployment's client: no answer, the attempt times out.
        let mut cfg = dial_config(&other, other.alice(), &s, &[carrier]);
        cfg.attempt_timeout = Duration::from_secs(2);
        let err = timeout(T, dial(&cfg, &mut OsRng))
            .await
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("no answer"), "{carrier}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_tls_when_udp_is_blackholed() {
    let pki = pki();
    let mut s = server(&pki, LOCALHOST, None).await;
    // A UDP socket that reads and never answers stands in for a blocked port (same for
    // QUIC): the client must end up on TLS over TCP by itself.
    let hole = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let hole_port = hole.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut b = [0u8; 2048];
        while hole.recv_from(&mut b).await.is_ok() {}
    });
    let mut cfg = dial_config(
        &pki,
        pki.alice(),
        &s,
        &[Carrier::Udp, Carrier::Quic, Carrier::Tls],
    );
    cfg.udp_port = hole_port;
    cfg.quic_port = hole_port;
    cfg.attempt_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let d = timeout(T, dial(&cfg, &mut OsRng)).await.unwrap().unwrap();
    assert_eq!(d.carrier, Carrier::Tls);
    assert_eq!(d.failures.len(), 2, "{:?}", d.failures);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let mut c = d.conn;
    let mut sc = timeout(T, s.accept()).await.unwrap().unwrap();
    exchange(&mut c, &mut sc, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridges_are_used_when_the_primary_is_down() {
    let pki = pki();
    let bridge_ip: IpAddr = "127.0.0.2".parse().unwrap();
    let mut s = server(&pki, bridge_ip, None).await;
    let mut cfg = dial_config(&pki, pki.alice(), &s, &[Carrier::Udp, Carrier::Tls]);
    // Nothing listens on 127.0.0.3 (the primary is down); the bridge answers.
    cfg.server = "127.0.0.3".parse().unwrap();
    cfg.bridges = vec![bridge_ip];
    cfg.attempt_timeout = Duration::from_secs(2);
    let d = timeout(T, dial(&cfg, &mut OsRng)).await.unwrap().unwrap();
    assert_eq!(d.addr.ip(), bridge_ip);
    let mut c = d.conn;
    let mut sc = timeout(T, s.accept()).await.unwrap().unwrap();
    exchange(&mut c, &mut sc, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_flood_does_not_disturb_established_clients() {
    let mut pki = pki();
    let mut s = server(&pki, LOCALHOST, None).await;
    let mut pairs = Vec::new();
    for carrier in [Carrier::Udp, Carrier::Quic, Carrier::Tls] {
        // One identity per carrier: a second connection of the same client replaces the
        // first on the server (one connection per client identity).
        let id = pki.issue_client(&format!("flood-{carrier}")).unwrap();
        let cfg = dial_config(&pki, &id, &s, &[carrier]);
        let d = timeout(T, dial(&cfg, &mut OsRng)).await.unwrap().unwrap();
        let sc = timeout(T, s.accept()).await.unwrap().unwrap();
        pairs.push((d.conn, sc));
    }
    let (udp, quic, tls) = (
        s.udp_addr.unwrap(),
        s.quic_addr.unwrap(),
        s.tls_addr.unwrap(),
    );
    let flood = tokio::spawn(async move {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let until = Instant::now() + Duration::from_secs(3);
        let mut i = 0u32;
        while Instant::now() < until {
            let junk: Vec<u8> = (0..(i % 1400 + 1)).map(|j| (j ^ i) as u8).collect();
            let _ = sock.send_to(&junk, udp).await;
            let _ = sock.send_to(&junk, quic).await;
            if i.is_multiple_of(20)
                && let Ok(Ok(mut t)) = timeout(
                    Duration::from_millis(200),
                    tokio::net::TcpStream::connect(tls),
                )
                .await
            {
                use tokio::io::AsyncWriteExt;
                let _ = t.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
            }
            i += 1;
        }
        i
    });
    for (c, sc) in &mut pairs {
        exchange(c, sc, 1_000).await;
    }
    assert!(flood.await.unwrap() > 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_that_cannot_bind_is_a_startup_error_naming_it() {
    let pki = pki();
    let first = server(&pki, LOCALHOST, None).await;
    for (carrier, taken) in [
        ("udp", first.udp_addr.unwrap()),
        ("quic", first.quic_addr.unwrap()),
        ("tls", first.tls_addr.unwrap()),
    ] {
        let endpoint = EndpointConfig::new(
            pki.ca_der().to_vec(),
            identity(pki.server()),
            pki.verifier().unwrap(),
            true,
        );
        let free = SocketAddr::new(LOCALHOST, 0);
        let pick = |c: &str| {
            if c == carrier {
                Some(taken)
            } else {
                Some(free)
            }
        };
        let err = Listeners::bind(ListenConfig {
            endpoint,
            seed: [8; 32],
            udp: pick("udp"),
            quic: pick("quic"),
            tls: pick("tls"),
            outer: Some(Arc::new(OuterIdentity {
                cert_chain: vec![pki.server().cert()],
                key: pki.server().key(),
            })),
            tls_options: TlsOptions::default(),
            quic_options: QuicOptions::default(),
            masks: common::masks(&pki),
            mem: None,
            wall_clock: common::wall,
            workers: 1,
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(carrier) && err.contains(&taken.to_string()),
            "{err}"
        );
    }
}

/// Links that never complete an Aura handshake (an insider holding the outer TLS open
/// with a frame of the right type and nothing more) are closed by the server after
/// about 10 s, not before, while a real client from the same source gets in and stays.
/// (Which link a full table gives up is the driver's unit tests' matter.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_links_are_closed_after_the_timeout() {
    use aura_transport::carrier::tls;
    use aura_transport::driver::UNAUTHENTICATED_LINK_TIMEOUT;
    let pki = pki();
    let mut s = server(&pki, LOCALHOST, None).await;
    let addr = s.tls_addr.unwrap();
    let opts = TlsOptions::default();
    let started = Instant::now();
    let mut links = Vec::new();
    for _ in 0..12 {
        let link = timeout(T, tls::connect(addr, aura_testkit::TEST_SERVER_NAME, &opts))
            .await
            .unwrap()
            .unwrap();
        // A frame of an Aura type (Init) that is no Init: the listener makes it a link.
        link.outbound
            .send(BytesMut::from(&[1, 0, 0, 0u8][..]))
            .await
            .unwrap();
        links.push(link);
    }
    let cfg = dial_config(&pki, pki.alice(), &s, &[Carrier::Tls]);
    let mut d = timeout(T, dial(&cfg, &mut OsRng)).await.unwrap().unwrap();
    let mut sc = timeout(T, s.accept()).await.unwrap().unwrap();
    exchange(&mut d.conn, &mut sc, 50).await;
    for l in &mut links {
        let left = (UNAUTHENTICATED_LINK_TIMEOUT + Duration::from_secs(3))
            .saturating_sub(started.elapsed());
        match timeout(left, l.inbound.recv()).await {
            Ok(None) => {}
            other => panic!("a link still open after the timeout: {other:?}"),
        }
    }
    let took = started.elapsed();
    assert!(
        took >= UNAUTHENTICATED_LINK_TIMEOUT - Duration::from_secs(1),
        "{took:?}"
    );
    // The authenticated client's link outlives them.
    exchange(&mut d.conn, &mut sc, 50).await;
}

/// A reload's new certificate: every dial from then on, on every carrier, meets it in the
/// Aura handshake, and QUIC and TLS present it outside; the session made before goes on.
/// A key that does not match its certificate is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_certificate_takes_over_new_handshakes_and_old_sessions_go_on() {
    let mut pki = pki();
    let mut s = server(&pki, LOCALHOST, None).await;
    // One client per dial: a second dial of the same client would take over its session.
    let dial_on = |s: &Listeners, pki: &TestPki, id: &aura_testkit::Identity, carrier| {
        let cfg = dial_config(pki, id, s, &[carrier]);
        async move { timeout(T, dial(&cfg, &mut OsRng)).await.unwrap().unwrap() }
    };
    let before = dial_on(&s, &pki, pki.alice(), Carrier::Tls).await;
    let mut old_c = before.conn;
    let mut old_s = timeout(T, s.accept()).await.unwrap().unwrap();
    let old_serial = old_c.peer().serial.clone();
    assert_eq!(s.outer_certificate(), Some(pki.server().cert()));

    let renewed = pki.issue_server(aura_testkit::TEST_SERVER_NAME).unwrap();
    let stranger = pki.issue_server("other.test").unwrap();
    // The wrong key: refused, nothing changes.
    let bad = OuterIdentity {
        cert_chain: vec![renewed.cert()],
        key: stranger.key(),
    };
    assert!(s.set_identity(identity(&renewed), bad).await.is_err());
    assert_eq!(s.outer_certificate(), Some(pki.server().cert()));

    let good = OuterIdentity {
        cert_chain: vec![renewed.cert()],
        key: renewed.key(),
    };
    s.set_identity(identity(&renewed), good).await.unwrap();
    assert_eq!(s.outer_certificate(), Some(renewed.cert()));
    for carrier in [Carrier::Udp, Carrier::Quic, Carrier::Tls] {
        let id = pki.issue_client(&format!("after-{carrier:?}")).unwrap();
        let d = dial_on(&s, &pki, &id, carrier).await;
        assert_ne!(
            d.conn.peer().serial,
            old_serial,
            "{carrier:?}: the old certificate"
        );
        let mut sc = timeout(T, s.accept()).await.unwrap().unwrap();
        let mut c = d.conn;
        exchange(&mut c, &mut sc, 100).await;
    }
    // The session from before the reload still carries packets both ways.
    exchange(&mut old_c, &mut old_s, 200).await;
}
