//! Circuits on loopback: the entry (127.0.0.1) and the exit (127.0.0.2, same ports) on
//! each carrier, a stand-in relay that bridges to the exit over the carrier the client
//! asks for (UDP with the camouflage on the nested datagrams, QUIC and TLS as links), a
//! hop not reached on one carrier reached on the next; a relay's refusal and a server
//! that is no relay give their errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::BytesMut;
use std::net::SocketAddr;
use std::time::Duration;

use aura_proto::control::{
    AddressAssign, CircuitFailed, CircuitReady, ControlMessage, Via, is_control,
};
use aura_testkit::{TEST_SERVER_NAME, TestPki};
use aura_transport::circuit::{Hop, OnwardDial, dial_circuit};
use aura_transport::dial::DialConfig;
use aura_transport::listen::Listeners;
use aura_transport::{Carrier, PacketConn, TransportError};
use common::{dial_config, masks, packet, server_config, wall};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(30);

/// How the stand-in entry answers an extension.
#[derive(Clone, Copy)]
enum Answer {
    Bridge,
    Refuse,
    AssignAddress,
}

/// The stand-in relay: answers each `ExtendBridge` of a session as told and, when
/// bridging, moves every data packet to the hop over the carrier asked for and back. It
/// hands the test every datagram it relays up, so the test can look for its payload.
async fn relay(
    masks: aura_transport::camo::mask::MaskSeed,
    mut conn: PacketConn,
    answer: Answer,
    seen: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
) {
    let first = conn.recv().await.unwrap();
    let (mut to, mut via) = match ControlMessage::decode(&first).unwrap() {
        ControlMessage::ExtendBridge(e) => (e.addr, e.via),
        other => panic!("expected an extension, got {other:?}"),
    };
    loop {
        let reply: ControlMessage<'_> = match answer {
            Answer::Bridge => CircuitReady.into(),
            Answer::Refuse => CircuitFailed {
                reason: format!("{to} is not in this relay's allow_extend_to"),
            }
            .into(),
            Answer::AssignAddress => AddressAssign {
                address: "10.77.0.2".parse().unwrap(),
                prefix_len: 24,
                gateway: "10.77.0.1".parse().unwrap(),
                mtu: 1280,
            }
            .into(),
        };
        conn.send(reply.encode().unwrap()).await.unwrap();
        if !matches!(answer, Answer::Bridge) {
            return;
        }
        // Bridged until the session ends or the client extends again (it rebuilt its
        // circuit, and the server's one session per client brought it here).
        match bridge(&masks, &mut conn, to, via, &seen).await {
            Some((t, v)) => (to, via) = (t, v),
            None => return,
        }
    }
}

/// Moves packets between `conn` and the hop until the session ends (`None`) or a new
/// extension arrives on it (its target).
async fn bridge(
    masks: &aura_transport::camo::mask::MaskSeed,
    conn: &mut PacketConn,
    to: SocketAddr,
    via: Via,
    seen: &tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
) -> Option<(SocketAddr, Via)> {
    let again = |p: &[u8]| match ControlMessage::decode(p) {
        Ok(ControlMessage::ExtendBridge(e)) => Some((e.addr, e.via)),
        _ => None,
    };
    if via != Via::Udp {
        let onward = OnwardDial {
            tls: Default::default(),
            quic: Default::default(),
            masks: masks.clone(),
            wall_clock: wall,
        };
        let mut link = onward.connect(via, to).await.ok()?;
        loop {
            tokio::select! {
                p = conn.recv() => {
                    let p = p?;
                    if is_control(&p) {
                        if let Some(next) = again(&p) {
                            return Some(next);
                        }
                        continue;
                    }
                    let _ = seen.send(p.clone());
                    link.outbound.send(BytesMut::from(&p[..])).await.ok()?;
                }
                d = link.inbound.recv() => conn.send(d?.to_vec()).await.ok()?,
            }
        }
    }
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(to).await.unwrap();
    let mut buf = vec![0u8; 65_536];
    loop {
        tokio::select! {
            p = conn.recv() => {
                let p = p?;
                if is_control(&p) {
                    if let Some(next) = again(&p) {
                        return Some(next);
                    }
                    continue;
                }
                let _ = seen.send(p.clone());
                let _ = socket.send(&p).await;
            }
            n = socket.recv(&mut buf) => {
                let Ok(n) = n else { continue };
                conn.send(buf[..n].to_vec()).await.ok()?;
            }
        }
    }
}

/// The exit at 127.0.0.2 on `carriers` at the entry's ports, echoing every packet back
/// with its first byte set to 0x46.
async fn exit(pki: &TestPki, ports: &DialConfig, carriers: &[Carrier]) -> std::net::IpAddr {
    let ip: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let mut cfg = server_config(pki, ip, pki.verifier().unwrap());
    let at = |c: Carrier, port: u16| carriers.contains(&c).then(|| SocketAddr::new(ip, port));
    cfg.udp = at(Carrier::Udp, ports.udp_port);
    cfg.quic = at(Carrier::Quic, ports.quic_port);
    cfg.tls = at(Carrier::Tls, ports.tls_port);
    let mut l = Listeners::bind(cfg).await.unwrap();
    tokio::spawn(async move {
        while let Some(mut c) = l.accept().await {
            tokio::spawn(async move {
                while let Some(mut p) = c.recv().await {
                    p[0] = 0x46;
                    if c.send(p).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    ip
}

/// The entry on every carrier at 127.0.0.1, each session handed to the stand-in relay;
/// a dial configuration to it (only its ports are read) for alice.
async fn entry(
    pki: &TestPki,
    answer: Answer,
) -> (DialConfig, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let cfg = server_config(pki, "127.0.0.1".parse().unwrap(), pki.verifier().unwrap());
    let mut l = Listeners::bind(cfg).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let dial = dial_config(pki, pki.alice(), &l, &[Carrier::Udp]);
    let seed = masks(pki);
    tokio::spawn(async move {
        while let Some(c) = l.accept().await {
            tokio::spawn(relay(seed.clone(), c, answer, tx.clone()));
        }
    });
    (dial, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_hop_circuit_on_every_carrier_and_a_fallback_past_the_entry() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut pki = TestPki::new(61).unwrap();
    let ids = [
        pki.alice().clone(),
        pki.bob().clone(),
        pki.issue_client("carol").unwrap(),
        pki.issue_client("dave").unwrap(),
    ];
    let (ports, mut seen) = entry(&pki, Answer::Bridge).await;
    let exit_ip = exit(&pki, &ports, &[Carrier::Udp, Carrier::Quic, Carrier::Tls]).await;
    let hops = [Hop {
        ip: exit_ip,
        name: TEST_SERVER_NAME.into(),
    }];
    // Both legs on one carrier, one client each.
    for (carrier, id) in [Carrier::Udp, Carrier::Tls, Carrier::Quic]
        .into_iter()
        .zip(&ids)
    {
        let mut cfg = ports.clone();
        cfg.carriers = vec![carrier];
        cfg.credentials.identity = common::identity(id);
        let (mut d, built) = timeout(T, dial_circuit(&cfg, &hops, &mut rand_core::OsRng))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.carrier, carrier);
        assert_eq!(d.addr.ip(), exit_ip);
        assert_eq!(d.conn.peer().id, TEST_SERVER_NAME, "the exit authenticated");
        let kinds: Vec<Carrier> = built.iter().map(|h| h.carrier).collect();
        assert_eq!(kinds, [carrier, carrier]);
        // Packets up to a 2-hop circuit's largest MTU (1441 - 31) make the round trip.
        for (i, len) in [40usize, 600, 1280, 1410].into_iter().enumerate() {
            let p = packet(1, i as u32, len);
            d.conn.send(p.clone()).await.unwrap();
            let back = timeout(T, d.conn.recv()).await.unwrap().unwrap();
            assert_eq!(back[0], 0x46);
            assert_eq!(back[1..], p[1..], "{carrier} {len}");
        }
        // The relay saw only the nested session's datagrams: never the packet.
        let marker = packet(1, 3, 1410);
        let mut relayed = 0;
        while let Ok(p) = seen.try_recv() {
            relayed += 1;
            assert!(
                !p.windows(64).any(|w| w == &marker[8..72]),
                "the relay saw the payload in clear"
            );
        }
        assert!(relayed >= 5, "{carrier}: {relayed} datagrams relayed");
        d.conn.close().await;
    }

    // An exit with TLS only: UDP first gets no answer past the relay, then TLS works.
    let mut pki2 = TestPki::new(63).unwrap();
    let erin = pki2.issue_client("erin").unwrap();
    let (ports2, _) = entry(&pki2, Answer::Bridge).await;
    let exit2 = exit(&pki2, &ports2, &[Carrier::Tls]).await;
    let mut cfg = ports2.clone();
    cfg.carriers = vec![Carrier::Udp, Carrier::Tls];
    cfg.credentials.identity = common::identity(&erin);
    cfg.attempt_timeout = Duration::from_secs(2);
    let hops2 = [Hop {
        ip: exit2,
        name: TEST_SERVER_NAME.into(),
    }];
    let (mut d, built) = timeout(T, dial_circuit(&cfg, &hops2, &mut rand_core::OsRng))
        .await
        .unwrap()
        .unwrap();
    let kinds: Vec<Carrier> = built.iter().map(|h| h.carrier).collect();
    assert_eq!(kinds, [Carrier::Udp, Carrier::Tls]);
    assert!(
        d.failures
            .iter()
            .any(|f| f.carrier == Carrier::Udp && f.addr.ip() == exit2),
        "{:?}",
        d.failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    d.conn.send(packet(1, 9, 500)).await.unwrap();
    assert_eq!(timeout(T, d.conn.recv()).await.unwrap().unwrap()[0], 0x46);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_relay_and_a_server_that_is_no_relay_give_their_errors() {
    let pki = TestPki::new(62).unwrap();
    let hops = [Hop {
        ip: "127.0.0.2".parse().unwrap(),
        name: TEST_SERVER_NAME.into(),
    }];
    let (cfg, _) = entry(&pki, Answer::Refuse).await;
    match timeout(T, dial_circuit(&cfg, &hops, &mut rand_core::OsRng))
        .await
        .unwrap()
    {
        Err(TransportError::CircuitFailed { to, reason, .. }) => {
            assert_eq!(to, SocketAddr::new(hops[0].ip, cfg.udp_port));
            assert!(reason.contains("allow_extend_to"), "{reason}");
        }
        other => panic!("expected CircuitFailed, got {:?}", other.map(|_| ())),
    }
    let (cfg, _) = entry(&pki, Answer::AssignAddress).await;
    let e = timeout(T, dial_circuit(&cfg, &hops, &mut rand_core::OsRng))
        .await
        .unwrap()
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, TransportError::NotARelay { .. }), "{e}");
    assert!(
        e.to_string().contains("[server.relay] is not enabled"),
        "{e}"
    );
}
