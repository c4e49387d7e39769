//! Two endpoints over the simulated network: handshake, lossy bulk transfer across
//! rekeys, roaming, eavesdropper replays, cookies, and every certificate failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use aura_pki::VerifyError;
use aura_proto::{
    AlertCode, CloseReason, DropReason, Event, HandshakeError, SEAL_HEADROOM, Timers,
};
use aura_testkit::{LinkConfig, TestPki};
use common::{Setup, World, addr};

fn pki() -> TestPki {
    TestPki::new(1).unwrap()
}

#[test]
fn handshake_then_data_both_ways() {
    let mut w = World::new(Setup::new(&pki()), 1);
    assert!(w.run_until(Duration::from_secs(2), |w| w.client_connected()));
    // One round trip (10 ms each way) before the client may send.
    assert_eq!(w.clock.elapsed(), Duration::from_millis(20));
    assert!(w.run_until(Duration::from_secs(2), |w| w.server_conn().is_some()));
    let peer = w.client.events.iter().find_map(|e| match e {
        Event::Connected { peer, .. } => Some(peer.clone()),
        _ => None,
    });
    assert_eq!(peer.unwrap().id, "server.test");
    assert!(w.send(true, b"\x45hello from the client"));
    w.run_for(Duration::from_millis(100));
    let got = &w.server.received;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, b"\x45hello from the client");
    let server_peer = w.server.events.iter().find_map(|e| match e {
        Event::Connected { peer, .. } => Some(peer.id.clone()),
        _ => None,
    });
    assert_eq!(server_peer.as_deref(), Some("alice"));
    assert!(w.send(false, b"\x45hello back"));
    w.run_for(Duration::from_millis(100));
    assert_eq!(w.client.received.len(), 1);
    assert_eq!(w.client.received[0].1, b"\x45hello back");
    assert!(w.server.drops.is_empty(), "{:?}", w.server.drops);
}

/// Over links bound to one outer session at both ends: the bound suite; a data packet
/// is the header and the payload as they are, which the other end takes (and its replay
/// window still refuses a copy). Links bound to two different outer sessions (a party
/// terminating the outer TLS on both sides) never connect.
#[test]
fn a_bound_link_carries_the_payload_as_it_is_and_two_outer_sessions_never_connect() {
    let mut setup = Setup::new(&pki());
    setup.bindings = Some(([1; 32], [1; 32]));
    let mut w = World::new(setup, 5);
    assert!(w.run_until(Duration::from_secs(2), |w| w.server_conn().is_some()));
    let conn = w.conn.unwrap();
    let info = w.client.ep.connection_info(conn).unwrap();
    assert_eq!(info.suite, Some(aura_crypto::aead::Suite::Bound));
    let now = w.clock.now();
    let body = b"\x45an inner packet";
    let mut buf = vec![0u8; SEAL_HEADROOM + body.len() + aura_proto::DATA_OVERHEAD];
    buf[SEAL_HEADROOM..SEAL_HEADROOM + body.len()].copy_from_slice(body);
    let (_, n) = w.client.ep.seal(now, conn, &mut buf, body.len()).unwrap();
    assert_eq!(n, SEAL_HEADROOM + body.len(), "no tag");
    assert_eq!(&buf[SEAL_HEADROOM..n], body, "not encrypted by Aura");
    let mut copy = buf[..n].to_vec();
    let got = w
        .server
        .ep
        .handle_datagram(now, addr(common::CLIENT), &mut buf[..n])
        .unwrap()
        .unwrap();
    assert_eq!(&buf[got.payload], body);
    assert_eq!(
        w.server
            .ep
            .handle_datagram(now, addr(common::CLIENT), &mut copy),
        Err(DropReason::Replay)
    );

    let mut setup = Setup::new(&pki());
    setup.bindings = Some(([1; 32], [2; 32]));
    let mut w = World::new(setup, 6);
    w.run_for(Duration::from_secs(3));
    assert!(!w.client_connected());
    assert!(w.server_conn().is_none());
    // Each Resp fails to open at the client (dropped, as a forged one would be).
    assert!(!w.client.drops.is_empty());
    assert!(
        w.client
            .drops
            .iter()
            .all(|d| *d == DropReason::Handshake(HandshakeError::Decrypt)),
        "{:?}",
        w.client.drops
    );
}

fn payload(dir: u8, seq: u32) -> Vec<u8> {
    let mut p = vec![0x45, dir];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend((0..64u32).map(|i| (seq.wrapping_mul(31).wrapping_add(i)) as u8));
    p
}

/// 100,000 packets each way over a lossy, reordering, duplicating path, across several
/// rekeys: nothing corrupted, nothing lost that the network did not lose.
#[test]
fn lossy_bulk_transfer_across_rekeys() {
    let mut setup = Setup::new(&pki());
    setup.timers = Timers {
        rekey_after_packets: 15_000,
        rekey_after_time: Duration::from_secs(60),
        ..Timers::default()
    };
    let mut w = World::new(setup, 7);
    w.net.set_link(LinkConfig {
        latency: Duration::from_millis(15),
        jitter: Duration::from_millis(4),
        loss: 0.01,
        duplicate: 0.01,
        ..LinkConfig::default()
    });
    assert!(w.run_until(Duration::from_secs(30), |w| w.client_connected()));
    assert!(w.run_until(Duration::from_secs(30), |w| w.server_conn().is_some()));

    const N: u32 = 100_000;
    let mut sent = [0u32; 2];
    // 100 packets each way per 10 ms: 100,000 in 10 s of virtual time, plus time-based
    // rekeys over a longer idle tail.
    while sent[0] < N || sent[1] < N {
        for _ in 0..100 {
            if sent[0] < N && w.send(true, &payload(0, sent[0])) {
                sent[0] += 1;
            }
            if sent[1] < N && w.send(false, &payload(1, sent[1])) {
                sent[1] += 1;
            }
        }
        w.run_for(Duration::from_millis(10));
    }
    w.run_for(Duration::from_secs(1));

    for (node, dir) in [(&w.server, 0u8), (&w.client, 1u8)] {
        let mut seen = HashSet::new();
        for (_, p) in &node.received {
            assert_eq!(p[1], dir);
            let seq = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
            assert_eq!(p, &payload(dir, seq), "corrupted packet {seq}");
            assert!(seen.insert(seq), "packet {seq} delivered twice");
        }
        // About 1 % loss: at least 97 % must arrive.
        assert!(
            seen.len() as u32 > N * 97 / 100,
            "dir {dir}: only {} of {N}",
            seen.len()
        );
        // Every drop is a network duplicate or a lost-then-retransmitted handshake piece:
        // never a decryption failure or an unknown session.
        for d in &node.drops {
            assert!(
                matches!(d, DropReason::Replay | DropReason::Unexpected),
                "dir {dir}: unexpected drop {d:?}"
            );
        }
    }
    let stats = w.net.stats();
    let replays = w
        .server
        .drops
        .iter()
        .chain(&w.client.drops)
        .filter(|d| **d == DropReason::Replay)
        .count();
    assert!(
        replays as u64 <= stats.duplicated,
        "{replays} replays but {} duplicates",
        stats.duplicated
    );
    let rekeys = w
        .client
        .events
        .iter()
        .filter(|e| matches!(e, Event::Rekeyed { .. }))
        .count();
    assert!(rekeys >= 5, "only {rekeys} rekeys");
    // Lost packets: exactly what the network lost is missing, nothing more. With loss,
    // received + lost data packets account for every packet sent.
    let received = w.server.received.len() + w.client.received.len();
    assert!(received as u64 + stats.lost >= 2 * u64::from(N));
}

/// A download: the server seals and the client only receives. The client still rekeys
/// once the current keys have opened `rekey_after_packets` packets (RFC 8446 §5.5's
/// limit applies to every key, the server's sending key included).
#[test]
fn the_client_rekeys_after_as_many_packets_received() {
    let mut setup = Setup::new(&pki());
    setup.timers = Timers {
        rekey_after_packets: 5_000,
        rekey_after_time: Duration::from_secs(600),
        ..Timers::default()
    };
    let mut w = World::new(setup, 11);
    assert!(w.run_until(Duration::from_secs(30), |w| w.client_connected()));
    assert!(w.run_until(Duration::from_secs(30), |w| w.server_conn().is_some()));
    let mut sent = 0u32;
    while sent < 20_000 {
        for _ in 0..200 {
            if w.send(false, &payload(1, sent)) {
                sent += 1;
            }
        }
        w.run_for(Duration::from_millis(10));
    }
    w.run_for(Duration::from_secs(1));
    let rekeys = w
        .client
        .events
        .iter()
        .filter(|e| matches!(e, Event::Rekeyed { .. }))
        .count();
    assert!(rekeys >= 3, "{rekeys} rekeys for 20,000 packets received");
    assert!(
        w.client.received.len() > 19_000,
        "{}",
        w.client.received.len()
    );
}

#[test]
fn client_changes_address_mid_stream() {
    let mut w = World::new(Setup::new(&pki()), 3);
    assert!(w.run_until(Duration::from_secs(2), |w| w.server_conn().is_some()));
    for i in 0..50 {
        assert!(w.send(true, &payload(0, i)));
    }
    w.run_for(Duration::from_millis(50));
    let new_addr = addr("203.0.113.77:5555");
    w.net.rebind(addr(common::CLIENT), new_addr);
    for i in 50..100 {
        assert!(w.send(true, &payload(0, i)));
    }
    w.run_for(Duration::from_millis(50));
    assert!(
        w.server
            .events
            .iter()
            .any(|e| matches!(e, Event::AddressChanged { remote, .. } if *remote == new_addr))
    );
    // The server's replies now reach the client at its new address.
    for i in 0..10 {
        assert!(w.send(false, &payload(1, i)));
    }
    w.run_for(Duration::from_millis(50));
    assert_eq!(w.server.received.len(), 100);
    assert_eq!(w.client.received.len(), 10);
}

#[test]
fn eavesdropper_replays_do_not_disturb_the_session() {
    let mut w = World::new(Setup::new(&pki()), 4);
    w.net.set_capture(true);
    assert!(w.run_until(Duration::from_secs(2), |w| w.server_conn().is_some()));
    for i in 0..20 {
        assert!(w.send(true, &payload(0, i)));
    }
    w.run_for(Duration::from_millis(50));
    let captured = w.net.take_captured();
    assert!(!captured.is_empty());
    let attacker = addr("203.0.113.66:666");
    let now = w.clock.now();
    for c in &captured {
        w.net.inject(now, attacker, c.to, &c.data);
    }
    let connected_before = w
        .server
        .events
        .iter()
        .filter(|e| matches!(e, Event::Connected { .. }))
        .count();
    w.run_for(Duration::from_millis(100));
    // Replayed data is dropped, the replayed Init never yields a session, and the
    // session's address did not move to the attacker.
    assert_eq!(w.server.received.len(), 20);
    let connected_after = w
        .server
        .events
        .iter()
        .filter(|e| matches!(e, Event::Connected { .. }))
        .count();
    assert_eq!(connected_before, connected_after);
    assert!(
        !w.server
            .events
            .iter()
            .any(|e| matches!(e, Event::AddressChanged { .. }))
    );
    assert!(w.server.drops.contains(&DropReason::Replay));
    for i in 20..40 {
        assert!(w.send(true, &payload(0, i)));
    }
    w.run_for(Duration::from_millis(100));
    assert_eq!(w.server.received.len(), 40);
}

#[test]
fn every_flipped_bit_in_handshake_datagrams_is_dropped_silently() {
    let mut w = World::new(Setup::new(&pki()), 5);
    // Step the handshake by hand: before each genuine handshake datagram arrives, deliver
    // every single-bit corruption of it; each must be dropped with no reply and no event.
    let deadline = w.clock.now() + Duration::from_secs(2);
    let mut flipped = 0;
    while !(w.client_connected() && w.server_conn().is_some()) {
        let timers = [w.server.ep.poll_timeout(), w.client.ep.poll_timeout()];
        let next = w.net.next_event(&timers).expect("handshake stalled");
        assert!(next <= deadline, "handshake stalled");
        w.clock.advance_to(next);
        let now = w.clock.now();
        let pending: Vec<_> = std::iter::from_fn(|| w.net.pop_due(now)).collect();
        for d in pending {
            let node = if d.to == w.server.addr {
                &mut w.server
            } else {
                &mut w.client
            };
            if d.data[0] != 5 {
                for i in 0..d.data.len() {
                    let mut bad = d.data.clone();
                    bad[i] ^= 1 << (i % 8);
                    assert!(
                        node.ep.handle_datagram(now, d.from, &mut bad).is_err(),
                        "byte {i} accepted"
                    );
                    assert!(
                        node.ep.poll_transmit().is_none(),
                        "reply to a corrupted datagram"
                    );
                    assert!(node.ep.poll_event().is_none());
                    flipped += 1;
                }
            }
            let mut buf = d.data.clone();
            let _ = node.ep.handle_datagram(now, d.from, &mut buf);
        }
        w.server.ep.handle_timeout(now);
        w.client.ep.handle_timeout(now);
        w.flush();
    }
    assert!(flipped > 3000, "only {flipped} corruptions tried");
}

#[test]
fn cookies_under_load() {
    let mut w = World::new(Setup::new(&pki()), 6);
    w.server.ep.set_force_cookies(true);
    // Garbage-free but cookie-less Inits from a spoofed source get only a cookie reply and
    // leave no state behind.
    assert!(w.run_until(Duration::from_secs(5), |w| w.server_conn().is_some()));
    assert!(w.server.drops.contains(&DropReason::CookieRequired));
    assert!(w.client_connected());
    assert_eq!(w.server.ep.pending_handshakes(), 0);
}

/// One cookie per sending of the Init (review M4): a cookie reply replayed fifty times
/// makes the client send nothing more (before, each copy made it send its whole Init).
#[test]
fn a_replayed_cookie_reply_makes_the_client_send_nothing() {
    let mut w = World::new(Setup::new(&pki()), 12);
    w.server.ep.set_force_cookies(true);
    w.net.set_capture(true);
    assert!(w.run_until(Duration::from_secs(2), |w| {
        w.net.captured().iter().any(|d| d.data[0] == 4)
    }));
    let reply = w
        .net
        .captured()
        .iter()
        .find(|d| d.data[0] == 4)
        .cloned()
        .unwrap();
    // From now on the server's answers are lost: the client stays in its handshake.
    w.net.set_path(
        addr(common::SERVER),
        addr(common::CLIENT),
        LinkConfig {
            loss: 1.0,
            ..LinkConfig::default()
        },
    );
    // The genuine reply arrives and the client sends its Init again, with the cookie.
    w.run_for(Duration::from_millis(100));
    let inits = |w: &World| {
        w.net
            .captured()
            .iter()
            .filter(|d| d.to == reply.from && d.data[0] == 1)
            .count()
    };
    assert!(inits(&w) >= 4, "the Init, then the Init with its cookie");
    w.net.take_captured();
    let now = w.clock.now();
    for _ in 0..50 {
        w.net.inject(now, reply.from, reply.to, &reply.data);
    }
    w.run_for(Duration::from_millis(300));
    assert_eq!(
        inits(&w),
        0,
        "Init datagrams sent for replayed cookie replies"
    );
}

#[test]
fn established_session_survives_an_init_flood() {
    let mut w = World::new(Setup::new(&pki()), 8);
    w.net.set_capture(true);
    assert!(w.run_until(Duration::from_secs(2), |w| w.server_conn().is_some()));
    let init: Vec<_> = w
        .net
        .captured()
        .iter()
        .filter(|d| d.data[0] == 1)
        .cloned()
        .collect();
    assert_eq!(init.len(), 2);
    let now = w.clock.now();
    // 2,000 replayed initiations from 1,000 spoofed addresses, plus random garbage.
    for i in 0..1000u32 {
        let from = std::net::SocketAddr::from(([203, 0, 113, (i % 250) as u8], 1000 + i as u16));
        for d in &init {
            w.net.inject(now, from, d.to, &d.data);
        }
        w.net
            .inject(now, from, addr(common::SERVER), &i.to_be_bytes().repeat(50));
    }
    for i in 0..100 {
        assert!(w.send(true, &payload(0, i)));
    }
    w.run_for(Duration::from_millis(200));
    assert_eq!(w.server.received.len(), 100);
    assert_eq!(
        w.server
            .events
            .iter()
            .filter(|e| matches!(e, Event::Connected { .. }))
            .count(),
        1
    );
}

fn client_failure(w: &World) -> Option<HandshakeError> {
    w.client.events.iter().find_map(|e| match e {
        Event::Closed {
            reason: CloseReason::HandshakeFailed(e),
            ..
        } => Some(e.clone()),
        _ => None,
    })
}

fn server_rejection(w: &World) -> Option<HandshakeError> {
    w.server.events.iter().find_map(|e| match e {
        Event::HandshakeRejected { error, .. } => Some(error.clone()),
        _ => None,
    })
}

#[test]
fn client_of_another_deployment_meets_silence() {
    let p = pki();
    let other = p.other_deployment().unwrap();
    let mut setup = Setup::new(&p);
    setup.client_id = other.alice().clone();
    setup.client_ca = other.ca_der().to_vec();
    setup.client_verifier = other.verifier().unwrap();
    let mut w = World::new(setup, 9);
    w.run_for(Duration::from_secs(25));
    assert_eq!(client_failure(&w), Some(HandshakeError::Timeout));
    assert!(w.server.drops.iter().all(|d| *d == DropReason::BadMac1));
    assert!(!w.server.drops.is_empty());
    assert_eq!(
        w.net.stats().sent - w.server.drops.len() as u64,
        0,
        "the server answered a stranger"
    );
}

#[test]
fn revoked_expired_foreign_and_wrong_role_clients_are_refused() {
    let mut p = pki();
    let cases: Vec<(aura_testkit::Identity, fn(&VerifyError) -> bool, AlertCode)> = vec![
        (
            p.expired_client().unwrap(),
            |e| matches!(e, VerifyError::Expired { .. }),
            AlertCode::Expired,
        ),
        (
            p.not_yet_valid_client().unwrap(),
            |e| matches!(e, VerifyError::NotYetValid { .. }),
            AlertCode::Expired,
        ),
        (
            p.foreign_client().unwrap(),
            |e| matches!(e, VerifyError::UnknownIssuer(..)),
            AlertCode::UnknownIssuer,
        ),
        (
            p.server_as_client(),
            |e| matches!(e, VerifyError::WrongRole { .. }),
            AlertCode::WrongRole,
        ),
    ];
    for (i, (id, check, alert)) in cases.into_iter().enumerate() {
        let mut setup = Setup::new(&p);
        setup.client_id = id;
        let mut w = World::new(setup, 20 + i as u64);
        w.run_for(Duration::from_secs(2));
        match server_rejection(&w) {
            Some(HandshakeError::PeerCertificate(e)) => assert!(check(&e), "case {i}: {e:?}"),
            other => panic!("case {i}: {other:?}"),
        }
        assert_eq!(
            client_failure(&w),
            Some(HandshakeError::Rejected(alert)),
            "case {i}"
        );
        assert!(w.server_conn().is_none());
    }

    // Revocation: alice is refused once the server's verifier has the new CRL.
    let crl = p.revoke("alice").unwrap();
    let mut setup = Setup::new(&p);
    setup.server_verifier = aura_pki::Verifier::new(p.ca_der(), [&crl]).unwrap();
    let mut w = World::new(setup, 30);
    w.run_for(Duration::from_secs(2));
    assert_eq!(
        server_rejection(&w),
        Some(HandshakeError::PeerCertificate(VerifyError::Revoked))
    );
    assert_eq!(
        client_failure(&w),
        Some(HandshakeError::Rejected(AlertCode::Revoked))
    );
}

#[test]
fn revocation_mid_session_closes_the_connection() {
    let mut p = pki();
    let mut w = World::new(Setup::new(&p), 31);
    assert!(w.run_until(Duration::from_secs(2), |w| w.server_conn().is_some()));
    let crl = p.revoke("alice").unwrap();
    let now = w.clock.now();
    w.server
        .ep
        .set_verifier(aura_pki::Verifier::new(p.ca_der(), [&crl]).unwrap(), now);
    w.flush();
    assert!(w.server.events.iter().any(|e| matches!(
        e,
        Event::Closed {
            reason: CloseReason::Revoked(VerifyError::Revoked),
            ..
        }
    )));
    assert!(!w.send(false, b"\x45after revocation"));
}

#[test]
fn wrong_server_certificates_are_refused_by_the_client() {
    let p = pki();
    // Wrong name.
    let mut setup = Setup::new(&p);
    setup.server_name = "other.test".into();
    let mut w = World::new(setup, 40);
    w.run_for(Duration::from_secs(2));
    assert!(
        matches!(
            client_failure(&w),
            Some(HandshakeError::PeerCertificate(
                VerifyError::NameMismatch { .. }
            ))
        ),
        "{:?}",
        client_failure(&w)
    );
    // A client certificate acting as a server.
    let mut setup = Setup::new(&p);
    setup.server_id = p.client_as_server();
    setup.server_name = "alice".into();
    let mut w = World::new(setup, 41);
    w.run_for(Duration::from_secs(2));
    assert!(
        matches!(
            client_failure(&w),
            Some(
                HandshakeError::PeerCertificate(VerifyError::WrongRole { .. })
                    | HandshakeError::PeerCertificate(VerifyError::InvalidServerName(_))
            )
        ),
        "{:?}",
        client_failure(&w)
    );
}

#[test]
fn handshake_survives_heavy_loss() {
    let mut w = World::new(Setup::new(&pki()), 50);
    w.net.set_link(LinkConfig {
        loss: 0.3,
        jitter: Duration::from_millis(20),
        duplicate: 0.2,
        ..LinkConfig::default()
    });
    assert!(
        w.run_until(Duration::from_secs(20), |w| w.client_connected()
            && w.server_conn().is_some())
    );
    // Retransmissions complete the handshake; the first client data confirms it.
    let mut delivered = false;
    for i in 0..200 {
        w.send(true, &payload(0, i));
        w.run_for(Duration::from_millis(20));
        if !w.server.received.is_empty() {
            delivered = true;
            break;
        }
    }
    assert!(delivered);
}

#[test]
fn dead_peer_is_detected_and_keepalives_flow_when_idle() {
    let mut w = World::new(Setup::new(&pki()), 60);
    assert!(w.run_until(Duration::from_secs(2), |w| w.server_conn().is_some()));
    // Idle for a minute: keepalives keep both sides alive.
    w.run_for(Duration::from_secs(60));
    assert!(
        !w.client
            .events
            .iter()
            .any(|e| matches!(e, Event::Closed { .. }))
    );
    assert!(
        !w.server
            .events
            .iter()
            .any(|e| matches!(e, Event::Closed { .. }))
    );
    // The server vanishes: the client notices within the dead-peer timeout.
    w.net.blackhole(addr(common::SERVER), true);
    w.run_for(Duration::from_secs(35));
    assert!(w.client.events.iter().any(|e| matches!(
        e,
        Event::Closed {
            reason: CloseReason::DeadPeer,
            ..
        }
    )));
}

/// A client endpoint of identity `id`, seeded with `seed`, connecting to the server.
fn connecting_client(
    p: &TestPki,
    id: &aura_testkit::Identity,
    seed: u8,
    w: &World,
) -> aura_proto::Endpoint {
    let cc = aura_proto::EndpointConfig::new(
        p.ca_der().to_vec(),
        common::identity(id),
        p.verifier().unwrap(),
        false,
    );
    let mut c = aura_proto::Endpoint::new(cc, [seed; 32], w.clock.now(), w.clock.wall()).unwrap();
    c.connect(w.clock.now(), addr(common::SERVER), "server.test")
        .unwrap();
    c
}

/// Review H1: 256 addresses of one IPv6 /64, and 40 TLS/QUIC links of one peer (their
/// stand-in addresses mapped to it), each hold at most one source's share of half-open
/// handshakes, and a fresh client still connects.
#[test]
fn a_64_and_the_links_of_one_peer_are_one_source_each() {
    let p = pki();
    let mut w = World::new(Setup::new(&p), 71);
    assert!(w.run_until(Duration::from_secs(2), |w| w.server_conn().is_some()));
    let half_open_from = |w: &mut World, froms: &[std::net::SocketAddr], seed: u8| {
        let now = w.clock.now();
        for (i, from) in froms.iter().enumerate() {
            let mut c = connecting_client(&p, p.alice(), seed ^ (i as u8), w);
            if let Some(t) = c.poll_transmit() {
                let mut buf = t.data.clone();
                let _ = w.server.ep.handle_datagram(now, *from, &mut buf);
            }
        }
    };
    let v6: Vec<_> = (0..256u16)
        .map(|n| std::net::SocketAddr::from(([0x2001, 0xdb8, 7, 7, n, 1, 2, 3], 4000)))
        .collect();
    half_open_from(&mut w, &v6, 1);
    // Senders that never answer a cookie get half of a source's share (16) at most.
    assert_eq!(w.server.ep.pending_handshakes(), 8, "one /64, half a share");
    // Links: the driver maps each stand-in address to the link's real peer.
    let links: Vec<_> = (0..40u16)
        .map(|n| std::net::SocketAddr::from(([127, 77, 0, 1], 1 + n)))
        .collect();
    for l in &links {
        w.server
            .ep
            .set_link_source(*l, Some("203.0.113.50".parse().unwrap()));
    }
    half_open_from(&mut w, &links, 2);
    assert_eq!(
        w.server.ep.pending_handshakes(),
        16,
        "one peer's links, half a share"
    );
    // A fresh client (another identity) from elsewhere still gets in.
    let before = w
        .server
        .events
        .iter()
        .filter(|e| matches!(e, Event::Connected { .. }))
        .count();
    let mut fresh = connecting_client(&p, p.bob(), 77, &w);
    let from = std::net::SocketAddr::from(([192, 0, 2, 200], 5555));
    for _ in 0..4 {
        let now = w.clock.now();
        while let Some(t) = fresh.poll_transmit() {
            let mut d = t.data;
            let _ = w.server.ep.handle_datagram(now, from, &mut d);
        }
        while let Some(t) = w.server.ep.poll_transmit() {
            if t.remote == from {
                let mut d = t.data;
                let _ = fresh.handle_datagram(now, addr(common::SERVER), &mut d);
            }
        }
        while let Some(e) = w.server.ep.poll_event() {
            w.server.events.push(e);
        }
    }
    let after = w
        .server
        .events
        .iter()
        .filter(|e| matches!(e, Event::Connected { .. }))
        .count();
    assert_eq!(after, before + 1, "the fresh client connected");
}

#[test]
fn one_source_cannot_fill_the_handshake_table() {
    let p = pki();
    let mut w = World::new(Setup::new(&p), 70);
    assert!(w.run_until(Duration::from_secs(2), |w| w.server_conn().is_some()));
    // 40 genuine clients behind one address each start a handshake and stop after the
    // first Init fragment, leaving it half-open on the server.
    let mut extra = Vec::new();
    for i in 0..40u16 {
        let c = connecting_client(&p, p.alice(), i as u8, &w);
        extra.push((std::net::SocketAddr::from(([192, 0, 2, 99], 2000 + i)), c));
    }
    let now = w.clock.now();
    for (from, c) in &mut extra {
        // Only the first Init fragment: the handshake stays half-open on the server.
        if let Some(t) = c.poll_transmit() {
            let mut buf = t.data.clone();
            let _ = w.server.ep.handle_datagram(now, *from, &mut buf);
        }
    }
    // 8 half-open handshakes from 192.0.2.99 (half its share: the rest needs cookies,
    // which these senders never answer); the established client is unharmed.
    assert_eq!(w.server.ep.pending_handshakes(), 8);
    assert!(w.send(true, &payload(0, 1)));
    w.run_for(Duration::from_millis(50));
    assert_eq!(w.server.received.len(), 1);
}

/// Review H1: a rekey (an Init from the address of an established connection) is held in
/// the reserve, apart from everyone else's half-open handshakes, and completes while the
/// shared table is full.
#[test]
fn a_rekey_goes_to_the_reserve_and_completes_under_a_full_table() {
    let p = pki();
    let mut setup = Setup::new(&p);
    setup.timers = Timers {
        rekey_after_time: Duration::from_secs(5),
        ..Timers::default()
    };
    let mut w = World::new(setup, 72);
    assert!(w.run_until(Duration::from_secs(2), |w| w.server_conn().is_some()));
    // Fill the shared table past its cookie threshold from many addresses (first
    // fragments only: the handshakes stay half-open).
    let now = w.clock.now();
    for i in 0..600u32 {
        let from = std::net::SocketAddr::from(([198, 18, (i >> 8) as u8, i as u8], 7));
        let mut c = connecting_client(&p, p.alice(), (i % 251) as u8, &w);
        if let Some(t) = c.poll_transmit() {
            let mut buf = t.data;
            let _ = w.server.ep.handle_datagram(now, from, &mut buf);
        }
    }
    let shared = w.server.ep.pending_handshakes();
    assert!(shared >= 256, "the shared table holds {shared}");
    assert_eq!(w.server.ep.pending_rekeys(), 0);
    // The client's time-based rekey: its Init goes to the reserve, without a cookie
    // round trip, and the rekey completes.
    let rekeyed = |w: &World| {
        w.server
            .events
            .iter()
            .any(|e| matches!(e, Event::Rekeyed { .. }))
    };
    let mut reserved = 0;
    let done = w.run_until(Duration::from_secs(10), |w| {
        reserved = reserved.max(w.server.ep.pending_rekeys());
        rekeyed(w)
    });
    assert!(done, "no rekey completed");
    assert_eq!(reserved, 1, "the rekey was held in the reserve");
    assert!(
        !w.server.drops.contains(&DropReason::CookieRequired),
        "the rekey was asked for a cookie"
    );
    assert_eq!(
        w.server.ep.pending_rekeys(),
        0,
        "the reserve is empty again"
    );
    assert!(w.send(true, &payload(0, 9)));
    w.run_for(Duration::from_millis(50));
    assert!(w.server.received.iter().any(|(_, d)| *d == payload(0, 9)));
}
