//! The server's routing core over in-memory links: dispatch by destination address,
//! anti-spoofing, static and dynamic addresses, release on disconnect.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aura_node::server::pool::IpPool;
use aura_node::server::router::{Router, Welcome};
use aura_proto::control::{
    AddressAssign, AddressAssign6, AddressRequest, ControlMessage, CoverGrant, CoverProfile,
    CoverRequest, DnsAssign,
};
use aura_proto::{EcdsaP256Signer, Endpoint, EndpointConfig, Identity};
use aura_testkit::{SimClock, TEST_SERVER_NAME, TestPki, ipv4_packet, ipv6_packet};
use aura_transport::camo::mask::MaskSeed;
use aura_transport::{Carrier, Driver, PacketConn, mem_pair};
use aura_tun::MemTun;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(20);

/// The session versions this build speaks.
const ALL: &[u8] = aura_proto::wire::SUPPORTED_VERSIONS;

fn identity(id: &aura_testkit::Identity) -> Identity {
    Identity {
        cert_der: id.cert_der.clone(),
        signer: Arc::new(EcdsaP256Signer::from_pkcs8_der(&id.key_pkcs8_der).unwrap()),
    }
}

/// The pool's IPv6 twin of `v4` (same host number in fd61:7572:6100::/64).
fn six(v4: Ipv4Addr) -> Ipv6Addr {
    Ipv6Addr::from(
        u128::from("fd61:7572:6100::".parse::<Ipv6Addr>().unwrap()) | u128::from(v4.octets()[3]),
    )
}

/// The next packet that is not a control envelope (skips repeated address assignments).
async fn data(c: &mut PacketConn) -> Vec<u8> {
    loop {
        let p = timeout(T, c.recv()).await.unwrap().unwrap();
        if !aura_proto::control::is_control(&p) {
            return p;
        }
    }
}

/// The server's driver, in memory (clients come through `add_link`).
fn server_driver(
    pki: &TestPki,
) -> (
    aura_transport::DriverHandle,
    tokio::sync::mpsc::UnboundedReceiver<PacketConn>,
) {
    let wall = SimClock::new().wall();
    let cfg = EndpointConfig::new(
        pki.ca_der().to_vec(),
        identity(pki.server()),
        pki.verifier().unwrap(),
        true,
    );
    Driver::spawn(
        Endpoint::new(cfg, [9; 32], Instant::now(), wall).unwrap(),
        None,
        MaskSeed::for_ca(pki.ca_der()),
    )
}

/// Connects `id`, offering the session `versions` (`ALL` for this build's), to the server
/// driver over an in-memory link; returns (client side, server side).
async fn connect(
    pki: &TestPki,
    id: &aura_testkit::Identity,
    server: &aura_transport::DriverHandle,
    accept: &mut tokio::sync::mpsc::UnboundedReceiver<PacketConn>,
    n: u16,
    versions: &[u8],
) -> (PacketConn, PacketConn) {
    let wall = SimClock::new().wall();
    let mut cfg = EndpointConfig::new(
        pki.ca_der().to_vec(),
        identity(id),
        pki.verifier().unwrap(),
        false,
    );
    cfg.versions = versions.to_vec();
    let ep = Endpoint::new(cfg, [n as u8; 32], Instant::now(), wall).unwrap();
    let (client, _) = Driver::spawn(ep, None, MaskSeed::for_ca(pki.ca_der()));
    let a = SocketAddr::from(([192, 0, 2, 1], 1000 + n));
    let b = SocketAddr::from(([198, 51, 100, 1], 443));
    let (client_link, server_link) = mem_pair(a, b);
    server.add_link(server_link, Carrier::Mem).await.unwrap();
    let c_addr = client.add_link(client_link, Carrier::Mem).await.unwrap();
    let c = timeout(T, client.connect(c_addr, TEST_SERVER_NAME))
        .await
        .unwrap()
        .unwrap();
    let s = timeout(T, accept.recv()).await.unwrap().unwrap();
    // Keep the client driver alive as long as the connection.
    std::mem::forget(client);
    (c, s)
}

/// A router for `section` with an in-memory TUN: its device loop running. Returns the
/// router, the TUN's host side and the device (which the clients' tasks write to).
fn routing_core(
    section: &aura_config::PoolSection,
) -> (Arc<Router>, aura_tun::MemTunHost, Arc<MemTun>) {
    let router = Router::new(IpPool::new(section));
    let (device, host) = MemTun::pair("aura0", 1280, 1024);
    let device = Arc::new(device);
    tokio::spawn(router.clone().device_loop(device.clone()));
    (router, host, device)
}

/// Waits until `n` clients are registered with `router`.
async fn registered(router: &Router, n: usize) {
    timeout(T, async {
        while router.peers().len() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

/// The address `router` gave client `id`.
fn address_of(router: &Router, id: &str) -> Ipv4Addr {
    router
        .peers()
        .into_iter()
        .find(|p| p.id == id)
        .unwrap()
        .address
}

/// A UDP datagram from `src` to `dst` with a valid checksum, and the same with its
/// checksum left unfinished (the field zero), as an offloading kernel hands it over.
fn udp_pair_of(src: Ipv4Addr, dst: Ipv4Addr, marker: u8) -> (Vec<u8>, Vec<u8>) {
    let mut udp = vec![0u8; 8];
    udp[0..2].copy_from_slice(&5353u16.to_be_bytes());
    udp[2..4].copy_from_slice(&443u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(8u16 + 200).to_be_bytes());
    udp.extend((0..200u32).map(|i| (i as u8).wrapping_mul(marker)));
    let mut whole = ipv4_packet(src, dst, &udp);
    assert!(aura_tun::csum::complete_checksum(&mut whole));
    let mut unfinished = whole.clone();
    unfinished[26..28].fill(0);
    (whole, unfinished)
}

/// A checksum the server's kernel left unfinished goes to a version 2 client unfinished
/// (type 7, flagged) and to a version 1 client finished by the server; one a version 2
/// client left unfinished reaches the server's device finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_checksums_follow_each_client_s_session_version() {
    let pki = TestPki::new(4).unwrap();
    let (server, mut accept) = server_driver(&pki);
    let section = aura_config::PoolSection {
        cidr: "10.77.0.0/24".parse().unwrap(),
        ..aura_config::PoolSection::default()
    };
    let (router, mut host, queue) = routing_core(&section);
    let welcome = || Welcome {
        mtu: 1280,
        ..Welcome::default()
    };
    let (mut alice_c, alice_s) = connect(&pki, pki.alice(), &server, &mut accept, 1, ALL).await;
    let (mut bob_c, bob_s) = connect(&pki, pki.bob(), &server, &mut accept, 2, &[1]).await;
    assert!(alice_c.offload() && alice_s.offload());
    assert!(!bob_c.offload() && !bob_s.offload());
    for s in [alice_s, bob_s] {
        tokio::spawn(router.clone().serve_client(s, queue.clone(), welcome()));
    }
    registered(&router, 2).await;
    let addr_of = |id: &str| address_of(&router, id);
    let (alice_ip, bob_ip) = (addr_of("alice"), addr_of("bob"));
    let outside = Ipv4Addr::new(198, 18, 0, 2);

    /// The next data packet and its flag (control envelopes skipped).
    async fn data_flagged(c: &mut PacketConn) -> (Vec<u8>, bool) {
        loop {
            let b = timeout(T, c.recv_packets()).await.unwrap().unwrap();
            let found = b
                .iter_with_offload()
                .find(|(p, _)| !aura_proto::control::is_control(p))
                .map(|(p, o)| (p.to_vec(), o));
            b.recycle();
            if let Some(f) = found {
                return f;
            }
        }
    }

    let (whole, unfinished) = udp_pair_of(outside, alice_ip, 3);
    host.inject_unfinished(&unfinished).await.unwrap();
    let (got, flagged) = data_flagged(&mut alice_c).await;
    assert!(flagged, "a version 2 client gets it as type 7");
    assert_eq!(got, unfinished, "and unfinished: its own end finishes it");
    let (whole_b, unfinished_b) = udp_pair_of(outside, bob_ip, 5);
    host.inject_unfinished(&unfinished_b).await.unwrap();
    let (got, flagged) = data_flagged(&mut bob_c).await;
    assert!(!flagged);
    assert_eq!(got, whole_b, "a version 1 client gets it finished");
    assert_ne!(whole, unfinished);

    // From alice, unfinished: the device gets it finished.
    let (whole_up, unfinished_up) = udp_pair_of(alice_ip, outside, 7);
    let mut batch = aura_transport::PacketBatch::default();
    batch.push_with(&unfinished_up, true);
    alice_c.send_packets(batch).await.unwrap();
    let up = timeout(T, host.recv()).await.unwrap().unwrap();
    assert_eq!(up, whole_up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_antispoofing_and_release() {
    let pki = TestPki::new(4).unwrap();
    let wall = SimClock::new().wall();
    let mut cfg = EndpointConfig::new(
        pki.ca_der().to_vec(),
        identity(pki.server()),
        pki.verifier().unwrap(),
        true,
    );
    // A client that goes silent is dropped after 3 s (default 30 s) to keep the test short.
    cfg.timers.dead_peer = Duration::from_secs(3);
    let (server, mut accept) = Driver::spawn(
        Endpoint::new(cfg, [9; 32], Instant::now(), wall).unwrap(),
        None,
        MaskSeed::for_ca(pki.ca_der()),
    );

    let section = aura_config::PoolSection {
        cidr: "10.77.0.0/24".parse().unwrap(),
        static_map: [("bob".to_owned(), "10.77.0.50".parse().unwrap())].into(),
        ..aura_config::PoolSection::default()
    };
    let (router, mut host, queue) = routing_core(&section);
    let resolvers: Vec<std::net::IpAddr> = vec!["10.77.0.1".parse().unwrap()];
    let welcome = |extra: Vec<Vec<u8>>| Welcome {
        mtu: 1280,
        dns: resolvers.clone(),
        extra,
        since: 0,
        relay: None,
        onward: Default::default(),
        cover: None,
    };

    let (mut alice_c, alice_s) = connect(&pki, pki.alice(), &server, &mut accept, 1, ALL).await;
    let (mut bob_c, bob_s) = connect(&pki, pki.bob(), &server, &mut accept, 2, ALL).await;
    let a = tokio::spawn(router.clone().serve_client(
        alice_s,
        queue.clone(),
        welcome(vec![b"extra".to_vec()]),
    ));
    tokio::spawn(
        router
            .clone()
            .serve_client(bob_s, queue.clone(), welcome(vec![])),
    );
    // Wait until both are registered.
    registered(&router, 2).await;
    let addr_of = |id: &str| address_of(&router, id);
    let (alice_ip, bob_ip) = (addr_of("alice"), addr_of("bob"));
    assert_eq!(
        bob_ip,
        "10.77.0.50".parse::<Ipv4Addr>().unwrap(),
        "static entry honoured"
    );
    assert_ne!(alice_ip, bob_ip);
    // Each client is told its resolvers, then its address; alice then gets the extra
    // packet.
    for (c, ip) in [(&mut alice_c, alice_ip), (&mut bob_c, bob_ip)] {
        let dns = timeout(T, c.recv()).await.unwrap().unwrap();
        assert_eq!(
            ControlMessage::decode(&dns).unwrap(),
            ControlMessage::DnsAssign(DnsAssign {
                servers: resolvers.clone()
            })
        );
        // The dual-stack pool's IPv6 address has the IPv4 host number.
        let v6 = timeout(T, c.recv()).await.unwrap().unwrap();
        assert_eq!(
            ControlMessage::decode(&v6).unwrap(),
            ControlMessage::AddressAssign6(AddressAssign6 {
                address: six(ip),
                prefix_len: 64,
                gateway: "fd61:7572:6100::1".parse().unwrap(),
            })
        );
        let first = timeout(T, c.recv()).await.unwrap().unwrap();
        assert_eq!(
            ControlMessage::decode(&first).unwrap(),
            ControlMessage::AddressAssign(AddressAssign {
                address: ip,
                prefix_len: 24,
                gateway: "10.77.0.1".parse().unwrap(),
                mtu: 1280,
            })
        );
    }
    assert_eq!(
        timeout(T, alice_c.recv()).await.unwrap().unwrap(),
        b"extra".to_vec()
    );
    // Asking again (a reconnect the server took for a rekey) gets both again.
    alice_c
        .send(ControlMessage::from(AddressRequest).encode().unwrap())
        .await
        .unwrap();
    assert!(matches!(
        ControlMessage::decode(&timeout(T, alice_c.recv()).await.unwrap().unwrap()).unwrap(),
        ControlMessage::DnsAssign(d) if d.servers == resolvers
    ));
    assert!(matches!(
        ControlMessage::decode(&timeout(T, alice_c.recv()).await.unwrap().unwrap()).unwrap(),
        ControlMessage::AddressAssign6(a) if a.address == six(alice_ip)
    ));
    assert!(matches!(
        ControlMessage::decode(&timeout(T, alice_c.recv()).await.unwrap().unwrap()).unwrap(),
        ControlMessage::AddressAssign(a) if a.address == alice_ip
    ));
    assert_ne!(
        alice_ip,
        "10.77.0.1".parse::<Ipv4Addr>().unwrap(),
        "server address reserved"
    );

    // Client → device, from its own address: delivered.
    let internet: Ipv4Addr = "203.0.113.9".parse().unwrap();
    alice_c
        .send(ipv4_packet(alice_ip, internet, b"from alice"))
        .await
        .unwrap();
    let got = timeout(T, host.recv()).await.unwrap().unwrap();
    assert_eq!(got, ipv4_packet(alice_ip, internet, b"from alice"));
    // Spoofed source (bob's address from alice): dropped and counted.
    alice_c
        .send(ipv4_packet(bob_ip, internet, b"spoof"))
        .await
        .unwrap();
    bob_c
        .send(ipv4_packet(bob_ip, internet, b"from bob"))
        .await
        .unwrap();
    let got = timeout(T, host.recv()).await.unwrap().unwrap();
    assert_eq!(got, ipv4_packet(bob_ip, internet, b"from bob"));
    // Alice's and bob's packets are handled by different tasks: bob's may reach the
    // device before alice's spoofed one is counted.
    timeout(T, async {
        while router.spoofed.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(router.spoofed.load(Ordering::Relaxed), 1);

    // Device → client by destination.
    host.inject(&ipv4_packet(internet, bob_ip, b"to bob"))
        .await
        .unwrap();
    host.inject(&ipv4_packet(internet, alice_ip, b"to alice"))
        .await
        .unwrap();
    // Skip the repeated address assignments.
    assert_eq!(
        data(&mut bob_c).await,
        ipv4_packet(internet, bob_ip, b"to bob")
    );
    assert_eq!(
        data(&mut alice_c).await,
        ipv4_packet(internet, alice_ip, b"to alice")
    );

    // IPv6 both ways: from her own IPv6 address delivered, from bob's counted as spoofed;
    // to her IPv6 address, to her.
    let internet6: Ipv6Addr = "2001:db8::9".parse().unwrap();
    alice_c
        .send(ipv6_packet(six(bob_ip), internet6, b"spoof6"))
        .await
        .unwrap();
    alice_c
        .send(ipv6_packet(six(alice_ip), internet6, b"from alice6"))
        .await
        .unwrap();
    let got = timeout(T, host.recv()).await.unwrap().unwrap();
    assert_eq!(got, ipv6_packet(six(alice_ip), internet6, b"from alice6"));
    assert_eq!(router.spoofed.load(Ordering::Relaxed), 2);
    host.inject(&ipv6_packet(internet6, six(alice_ip), b"to alice6"))
        .await
        .unwrap();
    assert_eq!(
        data(&mut alice_c).await,
        ipv6_packet(internet6, six(alice_ip), b"to alice6")
    );
    assert_eq!(router.unroutable.load(Ordering::Relaxed), 0);

    // Alice disconnects: her address returns to the pool and her route is gone.
    alice_c.close().await;
    // The server notices by the dead-peer timer at the latest.
    assert!(timeout(T, a).await.is_ok());
    assert!(router.peers().iter().all(|p| p.id != "alice"));
    host.inject(&ipv4_packet(internet, alice_ip, b"nobody"))
        .await
        .unwrap();
    timeout(T, async {
        while router.unroutable.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

/// A relay: a first `ExtendBridge` to a listed hop turns the connection into a bridge
/// (`CircuitReady`, then datagrams both ways, no address taken); a hop not listed gets
/// `CircuitFailed` naming the list; a client that starts with an `AddressRequest` is
/// served as any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_bridges_a_first_extend_bridge_and_serves_the_rest() {
    use aura_node::server::relay::RelayPolicy;
    use aura_proto::control::ExtendBridge;
    let mut pki = TestPki::new(5).unwrap();
    let carol_id = pki.issue_client("carol").unwrap();
    let (server, mut accept) = server_driver(&pki);
    let router = Router::new(IpPool::new(&aura_config::PoolSection::default()));
    let (device, _host) = MemTun::pair("aura0", 1280, 1024);
    let queue = Arc::new(device);
    // The next hop: a UDP socket that echoes what it gets, prefixed.
    let hop = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let hop_addr = hop.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = hop.recv_from(&mut buf).await {
            let mut back = b"hop:".to_vec();
            back.extend_from_slice(&buf[..n]);
            let _ = hop.send_to(&back, from).await;
        }
    });
    let welcome = || Welcome {
        mtu: 1280,
        relay: Some(RelayPolicy {
            allow: vec![hop_addr],
        }),
        onward: aura_node::server::relay::Onward::Network(None),
        ..Welcome::default()
    };
    let extend = |to: SocketAddr| {
        ControlMessage::from(ExtendBridge {
            addr: to,
            via: aura_proto::control::Via::Udp,
        })
        .encode()
        .unwrap()
    };

    // Extended to the listed hop: a bridge.
    let (mut alice, alice_s) = connect(&pki, pki.alice(), &server, &mut accept, 1, ALL).await;
    tokio::spawn(
        router
            .clone()
            .serve_client(alice_s, queue.clone(), welcome()),
    );
    alice.send(extend(hop_addr)).await.unwrap();
    let ready = timeout(T, alice.recv()).await.unwrap().unwrap();
    assert!(matches!(
        ControlMessage::decode(&ready).unwrap(),
        ControlMessage::CircuitReady(_)
    ));
    for inner in [b"\x01first".to_vec(), vec![0x02; 1200]] {
        alice.send(inner.clone()).await.unwrap();
        let back = timeout(T, alice.recv()).await.unwrap().unwrap();
        assert_eq!(back, [b"hop:".as_slice(), &inner].concat());
    }
    assert!(
        router.peers().is_empty(),
        "a relayed client takes no address"
    );

    // A hop not listed: refused, with the reason.
    let (mut bob, bob_s) = connect(&pki, pki.bob(), &server, &mut accept, 2, ALL).await;
    tokio::spawn(router.clone().serve_client(bob_s, queue.clone(), welcome()));
    bob.send(extend("192.0.2.99:8443".parse().unwrap()))
        .await
        .unwrap();
    let failed = timeout(T, bob.recv()).await.unwrap().unwrap();
    match ControlMessage::decode(&failed).unwrap() {
        ControlMessage::CircuitFailed(f) => assert!(f.reason.contains("allow_extend_to"), "{f:?}"),
        other => panic!("expected CircuitFailed, got {other:?}"),
    }

    // A client that asks for its address first is served as usual.
    let (mut carol, carol_s) = connect(&pki, &carol_id, &server, &mut accept, 3, ALL).await;
    tokio::spawn(
        router
            .clone()
            .serve_client(carol_s, queue.clone(), welcome()),
    );
    carol
        .send(ControlMessage::from(AddressRequest).encode().unwrap())
        .await
        .unwrap();
    let got_address = timeout(T, async {
        loop {
            let p = carol.recv().await.unwrap();
            if let Ok(ControlMessage::AddressAssign(a)) = ControlMessage::decode(&p) {
                return a;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(router.peers().len(), 1);
    assert_eq!(router.peers()[0].address, got_address.address);

    // The same client comes back through a circuit (its new session lands on this
    // connection): its address is returned and the connection becomes a bridge.
    carol.send(extend(hop_addr)).await.unwrap();
    timeout(T, async {
        loop {
            let p = carol.recv().await.unwrap();
            if let Ok(ControlMessage::CircuitReady(_)) = ControlMessage::decode(&p) {
                return;
            }
        }
    })
    .await
    .unwrap();
    assert!(
        router.peers().is_empty(),
        "the address went back to the pool"
    );
    carol.send(b"\x03carol".to_vec()).await.unwrap();
    assert_eq!(
        timeout(T, carol.recv()).await.unwrap().unwrap(),
        b"hop:\x03carol"
    );

    // A bridged client that extends again (it rebuilt its circuit) is extended anew; to
    // a hop not listed, refused.
    alice.send(extend(hop_addr)).await.unwrap();
    let again = timeout(T, alice.recv()).await.unwrap().unwrap();
    assert!(matches!(
        ControlMessage::decode(&again).unwrap(),
        ControlMessage::CircuitReady(_)
    ));
    alice.send(b"\x04again".to_vec()).await.unwrap();
    assert_eq!(
        timeout(T, alice.recv()).await.unwrap().unwrap(),
        b"hop:\x04again"
    );
    alice
        .send(extend("192.0.2.99:8443".parse().unwrap()))
        .await
        .unwrap();
    match ControlMessage::decode(&timeout(T, alice.recv()).await.unwrap().unwrap()).unwrap() {
        ControlMessage::CircuitFailed(f) => assert!(f.reason.contains("allow_extend_to")),
        other => panic!("expected CircuitFailed, got {other:?}"),
    }
}

/// Reads `c` until a [`CoverGrant`] arrives (address assignments come first).
async fn grant(c: &mut PacketConn) -> CoverGrant {
    loop {
        let p = timeout(T, c.recv()).await.unwrap().unwrap();
        if let Ok(ControlMessage::CoverGrant(g)) = ControlMessage::decode(&p) {
            return g;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cover_is_granted_within_the_cap_and_padding_never_reaches_the_device() {
    use aura_node::options::CoverPolicy;
    use aura_node::server::router::ServerCover;
    let pki = TestPki::new(5).unwrap();
    let (server, mut accept) = server_driver(&pki);
    let router = Router::new(IpPool::new(&aura_config::PoolSection::default()));
    let (device, mut host) = MemTun::pair("aura0", 1280, 4096);
    let device = Arc::new(device);
    tokio::spawn(router.clone().device_loop(device.clone()));
    let queue = device.clone();
    // At most 10 % per client, and 30 % in total.
    let limit = aura_transport::CoverLimit::new(300);
    let welcome = |cover: Option<ServerCover>| Welcome {
        mtu: 1280,
        dns: vec![],
        extra: vec![],
        since: 0,
        relay: None,
        onward: Default::default(),
        cover,
    };
    let on = ServerCover {
        policy: CoverPolicy {
            max_budget: 100,
            total_budget: 300,
        },
        limit: limit.clone(),
    };
    let (mut alice, alice_s) = connect(&pki, pki.alice(), &server, &mut accept, 1, ALL).await;
    let (mut bob, bob_s) = connect(&pki, pki.bob(), &server, &mut accept, 2, ALL).await;
    tokio::spawn(
        router
            .clone()
            .serve_client(alice_s, queue.clone(), welcome(Some(on))),
    );
    tokio::spawn(
        router
            .clone()
            .serve_client(bob_s, queue.clone(), welcome(None)),
    );
    // A greedy client asks for every packet to be padding: it gets the cap.
    let ask = |budget| {
        ControlMessage::from(CoverRequest {
            profile: CoverProfile::Bursts,
            budget,
        })
        .encode()
        .unwrap()
    };
    alice.send(ask(1000)).await.unwrap();
    assert_eq!(
        grant(&mut alice).await.granted,
        Some((CoverProfile::Bursts, 100))
    );
    // A server without [server.cover] refuses.
    bob.send(ask(50)).await.unwrap();
    assert_eq!(grant(&mut bob).await.granted, None);
    assert_eq!(limit.connections(), 1);

    // Alice pads as much as she likes; the server's side pads within its grant.
    let engine = aura_transport::camo::cover::Cover::new(
        CoverProfile::Bursts,
        1000,
        1280,
        [3; 32],
        Instant::now(),
    )
    .unwrap();
    let _g = alice.sender().start_cover(engine, None);
    let alice_ip = router
        .peers()
        .into_iter()
        .find(|p| p.id == "alice")
        .unwrap()
        .address;
    let internet: Ipv4Addr = "198.18.0.2".parse().unwrap();
    let mut got = 0;
    for round in 0..40u32 {
        let batch: Vec<Vec<u8>> = (0..20u32)
            .map(|i| ipv4_packet(alice_ip, internet, &(round * 20 + i).to_be_bytes()))
            .collect();
        alice.send_batch(batch).await.unwrap();
        for i in 0..20u32 {
            host.inject(&ipv4_packet(
                internet,
                alice_ip,
                &(round * 20 + i).to_be_bytes(),
            ))
            .await
            .unwrap();
        }
        // What the device receives is exactly alice's packets, in order.
        for i in 0..20u32 {
            let p = timeout(T, host.recv()).await.unwrap().unwrap();
            assert_eq!(
                p,
                ipv4_packet(alice_ip, internet, &(round * 20 + i).to_be_bytes())
            );
            got += 1;
        }
        for i in 0..20u32 {
            let p = data(&mut alice).await;
            assert_eq!(
                p,
                ipv4_packet(internet, alice_ip, &(round * 20 + i).to_be_bytes())
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(got, 800);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        host.try_recv().is_none(),
        "something more reached the device"
    );
    let peer = router
        .peers()
        .into_iter()
        .find(|p| p.id == "alice")
        .unwrap();
    let server_side = peer.sender.cover_stats();
    let client_side = alice.cover_stats();
    // Both sides padded, and each received what the other sent.
    assert!(client_side.padding_out > 40, "{client_side:?}");
    assert!(server_side.padding_out > 0, "{server_side:?}");
    assert_eq!(server_side.padding_in, client_side.padding_out);
    assert_eq!(client_side.padding_in, server_side.padding_out);
    // The server keeps to the 10 % it granted, after maybenot's allowance of 16.
    let sent = peer.sender.stats().packets_out;
    assert!(
        server_side.padding_out <= 16 + (sent + server_side.padding_out) / 10 + 1,
        "{server_side:?} over {sent} real packets"
    );
    // No control message or padding counts as spoofed traffic.
    assert_eq!(router.spoofed.load(Ordering::Relaxed), 0);
}
