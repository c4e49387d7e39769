//! Circuits on loopback: the entry reached on each carrier, a stand-in relay that bridges
//! to the exit's real UDP carrier, the exit's session nested inside the entry's with the
//! UDP camouflage on the nested datagrams; a relay's refusal and a server that is no
//! relay give their errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use aura_proto::control::{AddressAssign, CircuitFailed, CircuitReady, ControlMessage, is_control};
use aura_testkit::{TEST_SERVER_NAME, TestPki};
use aura_transport::circuit::{Hop, dial_circuit};
use aura_transport::dial::DialConfig;
use aura_transport::listen::Listeners;
use aura_transport::{Carrier, PacketConn, TransportError};
use common::{dial_config, packet, server_config};
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

/// The stand-in relay: answers the first `ExtendBridge` of each session as told and, when
/// bridging, moves every data packet to the hop over UDP and back. Also counts the bytes
/// it saw go up, and keeps them, so the test can look for its payload.
async fn relay(
    mut conn: PacketConn,
    answer: Answer,
    seen: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
) {
    let first = conn.recv().await.unwrap();
    let to = match ControlMessage::decode(&first).unwrap() {
        ControlMessage::ExtendBridge(e) => e.addr,
        other => panic!("expected an extension, got {other:?}"),
    };
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
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(to).await.unwrap();
    let mut buf = vec![0u8; 65_536];
    loop {
        tokio::select! {
            p = conn.recv() => {
                let Some(p) = p else { return };
                if is_control(&p) {
                    continue;
                }
                let _ = seen.send(p.clone());
                socket.send(&p).await.unwrap();
            }
            n = socket.recv(&mut buf) => {
                let Ok(n) = n else { continue };
                if conn.send(buf[..n].to_vec()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The exit: a server on loopback UDP only, echoing every packet back with its first
/// byte set to 0x46.
async fn exit(pki: &TestPki) -> SocketAddr {
    let mut cfg = server_config(pki, "127.0.0.1".parse().unwrap(), pki.verifier().unwrap());
    cfg.quic = None;
    cfg.tls = None;
    let mut l = Listeners::bind(cfg).await.unwrap();
    let addr = l.udp_addr.unwrap();
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
    addr
}

/// The entry on every carrier, each session handed to the stand-in relay; alice's dial
/// configuration to it for each carrier.
async fn entry(
    pki: &TestPki,
    answer: Answer,
    third: &aura_testkit::Identity,
) -> (
    Vec<(Carrier, DialConfig)>,
    tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let cfg = server_config(pki, "127.0.0.1".parse().unwrap(), pki.verifier().unwrap());
    let mut l = Listeners::bind(cfg).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // One client per carrier: a server keeps one session per client, and this stand-in
    // relay (unlike the real one) does not extend a session twice.
    let dials = [
        (Carrier::Udp, pki.alice()),
        (Carrier::Tls, pki.bob()),
        (Carrier::Quic, third),
    ]
    .into_iter()
    .map(|(c, id)| (c, dial_config(pki, id, &l, &[c])))
    .collect();
    tokio::spawn(async move {
        while let Some(c) = l.accept().await {
            tokio::spawn(relay(c, answer, tx.clone()));
        }
    });
    (dials, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_hop_circuit_on_every_entry_carrier() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut pki = TestPki::new(61).unwrap();
    let carol = pki.issue_client("carol").unwrap();
    let exit_addr = exit(&pki).await;
    let (dials, mut seen) = entry(&pki, Answer::Bridge, &carol).await;
    for (carrier, cfg) in dials {
        let hops = [Hop {
            addr: exit_addr,
            name: TEST_SERVER_NAME.into(),
        }];
        let r = timeout(T, dial_circuit(&cfg, &hops, &mut rand_core::OsRng))
            .await
            .unwrap();
        let (mut d, built) = r.unwrap();
        assert_eq!(d.carrier, carrier);
        assert_eq!(d.addr, exit_addr);
        assert_eq!(d.conn.peer().id, TEST_SERVER_NAME, "the exit authenticated");
        let kinds: Vec<Carrier> = built.iter().map(|h| h.carrier).collect();
        assert_eq!(kinds, [carrier, Carrier::Udp]);
        // Packets up to a 2-hop circuit's largest MTU (1441 - 31) make the round trip.
        for (i, len) in [40usize, 600, 1280, 1410].into_iter().enumerate() {
            let p = packet(1, i as u32, len);
            d.conn.send(p.clone()).await.unwrap();
            let back = timeout(T, d.conn.recv()).await.unwrap().unwrap();
            assert_eq!(back[0], 0x46);
            assert_eq!(back[1..], p[1..], "{carrier} {len}");
        }
        // The relay saw only the nested session's disguised datagrams: never the packet.
        let marker = packet(1, 3, 1410);
        let mut relayed = 0;
        while let Ok(p) = seen.try_recv() {
            relayed += 1;
            assert!(
                !p.windows(64).any(|w| w == &marker[8..72]),
                "the relay saw the payload in clear"
            );
        }
        assert!(relayed >= 5, "{relayed} datagrams relayed");
        d.conn.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_relay_and_a_server_that_is_no_relay_give_their_errors() {
    let mut pki = TestPki::new(62).unwrap();
    let carol = pki.issue_client("carol").unwrap();
    let exit_addr = exit(&pki).await;
    let hops = [Hop {
        addr: exit_addr,
        name: TEST_SERVER_NAME.into(),
    }];
    let (refusing, _) = entry(&pki, Answer::Refuse, &carol).await;
    let cfg = &refusing[0].1;
    match timeout(T, dial_circuit(cfg, &hops, &mut rand_core::OsRng))
        .await
        .unwrap()
    {
        Err(TransportError::CircuitFailed { to, reason, .. }) => {
            assert_eq!(to, exit_addr);
            assert!(reason.contains("allow_extend_to"), "{reason}");
        }
        other => panic!("expected CircuitFailed, got {:?}", other.map(|_| ())),
    }
    let (plain, _) = entry(&pki, Answer::AssignAddress, &carol).await;
    let cfg = &plain[0].1;
    let e = timeout(T, dial_circuit(cfg, &hops, &mut rand_core::OsRng))
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
