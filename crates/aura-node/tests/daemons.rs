//! Whole daemons in memory: one `aura server` and two `aura client`s, each run through
//! its real `run_on` over in-memory TUN devices, an in-memory host and the in-memory
//! carrier, without root. Traffic both ways, an address per client, a revoked client cut
//! off and refused, a server restart that the client rides through, and every host
//! change undone at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use aura_netcfg::HostConfig;
use aura_node::DaemonError;
use aura_node::options::{ClientOptions, ServerOptions};
use aura_testkit::{DEFAULT_WALL_START_SECS, TEST_SERVER_NAME, TestPki, ipv4_packet};
use aura_transport::MemNetwork;
use rustls_pki_types::UnixTime;
use support::{
    INTERNET, SERVER_IP, T, client_options_of, deliver, host, knock_key, pinned, server_options_of,
    start_client, start_server, write_identity, write_pem, write_pki,
};
use tokio::time::timeout;

/// The server's options: a pool with a static address for alice, the CRL re-read every
/// 50 ms, short [`timers`].
fn server_options(dir: &Path, server_id: &str) -> ServerOptions {
    knock_key(dir);
    let mut opts = server_options_of(
        dir,
        server_id,
        "[server.pool]\ncidr = \"10.77.0.0/24\"\n[server.pool.static]\nalice = \"10.77.0.10\"\n",
    );
    opts.crl.reload = Duration::from_millis(50);
    opts.timers = timers();
    opts
}

/// Short liveness timers, so a cut-off session is noticed in a second, not eight.
fn timers() -> aura_proto::Timers {
    aura_proto::Timers {
        keepalive: Duration::from_millis(250),
        dead_peer: Duration::from_millis(1_000),
        ..aura_node::options::daemon_timers()
    }
}

/// Client `id`'s options, with short [`timers`].
fn client_options(dir: &Path, id: &str) -> ClientOptions {
    knock_key(dir);
    let mut opts = client_options_of(dir, id, "");
    opts.timers = timers();
    opts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_tun_dies_stops_and_undoes_its_host() {
    let pki = TestPki::new(43).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_pem(d, "ca.crt", "CERTIFICATE", pki.ca_der());
    write_pem(d, "crl.pem", "X509 CRL", pki.crl_der());
    write_identity(d, pki.server());
    let net = MemNetwork::new();
    let (s_host, s_memory, mut s_tuns) = host(&net);
    let server = start_server(server_options(d, &pki.server().id), s_host);
    let (_, s_tun) = timeout(T, s_tuns.recv()).await.unwrap().unwrap();
    timeout(T, async {
        while s_memory.snapshot().nft_table.is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the server never set up NAT");
    // The device goes away under the server (as a TUN read error would).
    drop(s_tun);
    let end = timeout(T, server.task)
        .await
        .expect("the server kept running without its TUN")
        .unwrap();
    assert!(matches!(end, Err(DaemonError::DataPath(_))), "{end:?}");
    assert_eq!(s_memory.snapshot().ip_forward, "0", "forwarding undone");
    assert!(s_memory.snapshot().nft_table.is_none(), "NAT undone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_and_two_clients_run_whole_in_memory() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut pki = TestPki::new(41).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_pki(d, &pki);
    let server_id = pki.server().id.clone();
    let net = MemNetwork::new();

    // The server: its TUN carries the pool's first address.
    let (s_host, s_memory, mut s_tuns) = host(&net);
    let server = start_server(server_options(d, &server_id), s_host);
    let (gateway, mut s_tun) = timeout(T, s_tuns.recv()).await.unwrap().unwrap();
    assert_eq!(gateway, Ipv4Addr::new(10, 77, 0, 1));

    // Two clients, each with its own address.
    let (a_host, a_memory, mut a_tuns) = host(&net);
    let alice = start_client(client_options(d, "alice"), a_host);
    let (b_host, _b_memory, mut b_tuns) = host(&net);
    let bob = start_client(client_options(d, "bob"), b_host);
    let (a_addr, mut a_tun) = timeout(T, a_tuns.recv()).await.unwrap().unwrap();
    let (b_addr, mut b_tun) = timeout(T, b_tuns.recv()).await.unwrap().unwrap();
    assert_ne!(a_addr, b_addr, "each client gets its own address");
    for a in [a_addr, b_addr] {
        assert_eq!(&a.octets()[..3], &[10, 77, 0], "{a} is in the pool");
    }
    // The client routes everything into its TUN (right after creating it), and the
    // server NATs its pool.
    timeout(T, async {
        while a_memory.route_get(IpAddr::V4(INTERNET)).as_deref() != Some("aura0") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the client never routed through its TUN");
    // The system resolves with the server's tunnel address (the default `[server] dns`),
    // the file's other lines kept.
    let lan_resolv = Some("nameserver 192.0.2.53\nsearch lan\n".to_owned());
    timeout(T, async {
        while !a_memory
            .resolv_conf()
            .is_some_and(|t| t.contains("nameserver 10.77.0.1\n"))
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the client never pointed the system at the server's resolver");
    let resolv = a_memory.resolv_conf().unwrap();
    assert!(resolv.starts_with(aura_netcfg::dns::MARKER), "{resolv}");
    assert!(resolv.contains("search lan\n"), "{resolv}");
    assert!(
        !resolv.contains("192.0.2.53"),
        "the LAN resolver is gone: {resolv}"
    );
    assert_eq!(s_memory.snapshot().ip_forward, "1");
    assert!(s_memory.snapshot().nft_table.is_some());

    // Traffic both ways, for both clients.
    for (tun, addr, tag) in [
        (&mut a_tun, a_addr, b"alice".as_slice()),
        (&mut b_tun, b_addr, b"bob"),
    ] {
        let up = deliver(tun, &mut s_tun, &ipv4_packet(addr, INTERNET, tag), tag).await;
        assert_eq!(
            &up[12..16],
            &addr.octets(),
            "the source is the client's address"
        );
        let down = deliver(&s_tun, tun, &ipv4_packet(INTERNET, addr, tag), tag).await;
        assert_eq!(&down[16..20], &addr.octets());
    }

    // Bob is revoked: the server's CRL reload cuts him off, and his client, refused on
    // its next dial, stops with a refusal.
    let crl = pki.revoke("bob").unwrap();
    write_pem(d, "crl.pem.new", "X509 CRL", &crl);
    std::fs::rename(d.join("crl.pem.new"), d.join("crl.pem")).unwrap();
    let bob_end = timeout(T, bob.task)
        .await
        .expect("bob kept running")
        .unwrap();
    assert!(
        matches!(bob_end, Err(DaemonError::Refused(_))),
        "{bob_end:?}"
    );
    // Alice got the new CRL pushed and saved it.
    timeout(T, async {
        while pem::parse(std::fs::read(d.join("alice-crl.pem")).unwrap())
            .unwrap()
            .contents()
            != crl
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("alice never saved the pushed CRL");

    // The server restarts; alice rides through and traffic flows through the new one.
    server.stop().await.unwrap();
    assert_eq!(
        s_memory.snapshot().ip_forward,
        "0",
        "the server undid forwarding"
    );
    assert!(s_memory.snapshot().nft_table.is_none());
    let (s_host, _s_memory, mut s_tuns) = host(&net);
    let server = start_server(server_options(d, &server_id), s_host);
    let (_, mut s_tun) = timeout(T, s_tuns.recv()).await.unwrap().unwrap();
    let after = b"after restart";
    deliver(
        &a_tun,
        &mut s_tun,
        &ipv4_packet(a_addr, INTERNET, after),
        after,
    )
    .await;
    deliver(
        &s_tun,
        &mut a_tun,
        &ipv4_packet(INTERNET, a_addr, after),
        after,
    )
    .await;

    alice.stop().await.unwrap();
    assert_eq!(
        a_memory.route_get(IpAddr::V4(INTERNET)).as_deref(),
        Some("eth0"),
        "the client restored its routes"
    );
    assert_eq!(
        a_memory.resolv_conf(),
        lan_resolv,
        "the client restored the resolver file"
    );
    server.stop().await.unwrap();
}

/// A reload request (SIGHUP in `aura server`) takes a new CRL at once, long before the
/// periodic re-read would: the revoked client is cut off, the other's session and
/// traffic go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_request_takes_a_revocation_at_once() {
    let mut pki = TestPki::new(43).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_pki(d, &pki);
    let server_id = pki.server().id.clone();
    let net = MemNetwork::new();
    let mut opts = server_options(d, &server_id);
    // The periodic re-read would not come within this test.
    opts.crl.reload = Duration::from_secs(3600);
    let reload = aura_node::service::Reload::new();
    opts.reload = reload.clone();
    let (s_host, _s_memory, mut s_tuns) = host(&net);
    let server = start_server(opts, s_host);
    let (_, mut s_tun) = timeout(T, s_tuns.recv()).await.unwrap().unwrap();
    let (a_host, _a_memory, mut a_tuns) = host(&net);
    let alice = start_client(client_options(d, "alice"), a_host);
    let (b_host, _b_memory, mut b_tuns) = host(&net);
    let mut bob = start_client(client_options(d, "bob"), b_host);
    let (a_addr, a_tun) = timeout(T, a_tuns.recv()).await.unwrap().unwrap();
    let (b_addr, b_tun) = timeout(T, b_tuns.recv()).await.unwrap().unwrap();
    for (tun, addr) in [(&a_tun, a_addr), (&b_tun, b_addr)] {
        deliver(tun, &mut s_tun, &ipv4_packet(addr, INTERNET, b"up"), b"up").await;
    }

    let crl = pki.revoke("bob").unwrap();
    write_pem(d, "crl.pem.new", "X509 CRL", &crl);
    std::fs::rename(d.join("crl.pem.new"), d.join("crl.pem")).unwrap();
    // Without a request the file waits for the hourly re-read: bob stays.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!bob.task.is_finished(), "bob was cut off without a reload");
    reload.request();
    let bob_end = timeout(Duration::from_secs(5), &mut bob.task)
        .await
        .expect("the reload did not cut bob off")
        .unwrap();
    assert!(
        matches!(bob_end, Err(DaemonError::Refused(_))),
        "{bob_end:?}"
    );
    let again = b"after the reload";
    deliver(
        &a_tun,
        &mut s_tun,
        &ipv4_packet(a_addr, INTERNET, again),
        again,
    )
    .await;
    alice.stop().await.unwrap();
    server.stop().await.unwrap();
}

/// 160 days after the PKI directory of the next test was made: its CRL (180 days) has 20
/// days left.
fn near_crl_expiry() -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(DEFAULT_WALL_START_SECS + 160 * 86_400))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_holding_the_ca_key_renews_its_crl_and_pushes_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = aura_pki::PkiStore::new(d.join("pki"));
    let start =
        time::OffsetDateTime::from_unix_timestamp(i64::try_from(DEFAULT_WALL_START_SECS).unwrap())
            .unwrap();
    let mut rng = rand_core::OsRng;
    store
        .init(
            "Test CA",
            time::Duration::days(3650),
            false,
            start,
            &mut rng,
        )
        .unwrap();
    let server = store
        .issue_server(TEST_SERVER_NAME, &[], 365, start, &mut rng)
        .unwrap();
    let carol = store
        .issue_client(Some("carol"), 365, start, &mut rng)
        .unwrap();
    std::fs::copy(store.crl_path(), d.join("carol-crl.pem")).unwrap();
    std::fs::copy(&carol.cert_path, d.join("carol.crt")).unwrap();
    std::fs::write(d.join("carol.key"), carol.cert.key_pem.as_deref().unwrap()).unwrap();
    std::fs::copy(store.ca_cert_path(), d.join("ca.crt")).unwrap();
    std::fs::copy(store.knock_key_path(), d.join("knock.key")).unwrap();

    let text = format!(
        "[server]\nname = \"{TEST_SERVER_NAME}\"\nadmin_socket = \"{dir}/server.sock\"\n\
         [pki]\nca_cert = \"{ca}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n\
         crl = \"{crl}\"\nca_key = \"{ca_key}\"\nknock_key = \"{knock}\"\n",
        dir = d.display(),
        knock = store.knock_key_path().display(),
        ca = store.ca_cert_path().display(),
        cert = server.cert_path.display(),
        key = server.key_path.as_ref().unwrap().display(),
        crl = store.crl_path().display(),
        ca_key = store.ca_key_path().display(),
    );
    let cfg: aura_config::ServerConfig = toml::from_str(&text).unwrap();
    let mut opts = ServerOptions::from_config(&cfg).unwrap();
    opts.crl.reload = Duration::from_millis(50);
    opts.timers = timers();
    let net = MemNetwork::new();
    let (mut s_host, _, _s_tuns) = host(&net);
    s_host.wall_clock = near_crl_expiry;
    let server = start_server(opts, s_host);
    let (mut c_host, _, _c_tuns) = host(&net);
    c_host.wall_clock = near_crl_expiry;
    let carol = start_client(client_options(d, "carol"), c_host);

    // The server re-signs (CRL number 2, in the directory's index too) and the client
    // receives it and saves it over its own copy.
    let ca = store.ca_cert_der().unwrap();
    timeout(T, async {
        loop {
            let der = std::fs::read(d.join("carol-crl.pem"))
                .ok()
                .and_then(|t| pem::parse(t).ok())
                .map(|p| p.contents().to_vec());
            if let Some(der) = der
                && aura_pki::Verifier::new(&ca, [&der]).unwrap().crl_number() == [2]
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the client never got a renewed CRL");
    assert_eq!(store.crl_number().unwrap(), 2);
    let renewed = aura_pki::Verifier::new(&ca, [store.crl_der().unwrap()]).unwrap();
    let next = renewed.crl_next_update().unix_timestamp();
    let now = i64::try_from(near_crl_expiry().as_secs()).unwrap();
    assert!(next - now > 150 * 86_400, "a fresh lifetime from now");

    carol.stop().await.unwrap();
    server.stop().await.unwrap();
}

/// `[tunnel.os_routes]` and `[tunnel.split]` reach the host as configured: split rules
/// route a DIRECT network via the original path and a VPN carve-out into the TUN; with
/// routes off nothing is routed; a dry run plans and changes no route. Each client's
/// routes are gone after it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_options_reach_the_host_as_configured() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let pki = TestPki::new(43).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_pem(d, "ca.crt", "CERTIFICATE", pki.ca_der());
    write_pem(d, "crl.pem", "X509 CRL", pki.crl_der());
    write_pem(d, "alice-crl.pem", "X509 CRL", pki.crl_der());
    write_identity(d, pki.server());
    write_identity(d, pki.alice());
    let net = MemNetwork::new();
    let (s_host, _s_memory, mut s_tuns) = host(&net);
    let server = start_server(server_options(d, &pki.server().id), s_host);
    // The TUNs' far ends are kept: a closed device stops a daemon.
    let _s_tun = timeout(T, s_tuns.recv()).await.unwrap().unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();

    // Split rules: 198.51.100.0/24 DIRECT, 198.51.100.7 back into the tunnel.
    let (a_host, a_memory, mut a_tuns) = host(&net);
    let before = a_memory.snapshot();
    let mut opts = client_options(d, "alice");
    opts.routing.direct = vec![(ip("198.51.100.0"), 24)];
    opts.routing.vpn = vec![(ip("198.51.100.7"), 32)];
    let alice = start_client(opts, a_host);
    let _a_tun = timeout(T, a_tuns.recv()).await.unwrap().unwrap();
    timeout(T, async {
        // The tunnel's routes, then the split rules' (installed right after them).
        let installed = |prefix: &str| {
            a_memory
                .snapshot()
                .routes
                .iter()
                .any(|r| r.starts_with(prefix) && r.contains("proto 167"))
        };
        while a_memory.route_get(ip("8.8.8.8")).as_deref() != Some("aura0")
            || !installed("198.51.100.0/24")
            || !installed("198.51.100.7/32")
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the client never routed through its TUN");
    assert_eq!(
        a_memory.route_get(ip("198.51.100.9")).as_deref(),
        Some("eth0")
    );
    assert_eq!(
        a_memory.route_get(ip("198.51.100.7")).as_deref(),
        Some("aura0")
    );

    // Live changes over the admin socket (`aura route`).
    use aura_node::admin::{Request, Response};
    let socket = d.join("alice.sock");
    let ask = |req: Request| {
        let socket = socket.clone();
        async move { aura_node::admin::request(&socket, &req).await.unwrap() }
    };
    let add = Request::RouteAdd {
        kind: "direct".into(),
        rule: "8.8.8.0/24".into(),
    };
    let Response::Routes { rules } = ask(add.clone()).await else {
        panic!("not a route list")
    };
    assert_eq!(a_memory.route_get(ip("8.8.8.8")).as_deref(), Some("eth0"));
    let live = rules.iter().find(|r| r.rule == "8.8.8.0/24").unwrap();
    assert_eq!(
        (live.kind.as_str(), live.origin.as_str()),
        ("direct", "live")
    );
    assert!(live.via.contains("dev eth0"), "{live:?}");
    assert_eq!(rules.iter().filter(|r| r.origin == "config").count(), 2);
    // The same network twice, a VPN rule on the server's address, nonsense: refused.
    for (req, says) in [
        (add, "already has a direct rule"),
        (
            Request::RouteAdd {
                kind: "vpn".into(),
                rule: format!("{SERVER_IP}"),
            },
            "must stay outside the tunnel",
        ),
        (
            Request::RouteAdd {
                kind: "sideways".into(),
                rule: "10.0.0.0/8".into(),
            },
            "unknown rule kind",
        ),
        (
            Request::RouteRemove {
                rule: "9.9.9.0/24".into(),
            },
            "no rule for 9.9.9.0/24",
        ),
    ] {
        match ask(req).await {
            Response::Error { message } => assert!(message.contains(says), "{message}"),
            other => panic!("{other:?}"),
        }
    }
    let Response::Routes { rules } = ask(Request::RouteRemove {
        rule: "8.8.8.0/24".into(),
    })
    .await
    else {
        panic!("not a route list")
    };
    assert_eq!(rules.len(), 2);
    assert_eq!(a_memory.route_get(ip("8.8.8.8")).as_deref(), Some("aura0"));
    alice.stop().await.unwrap();
    assert_eq!(a_memory.snapshot(), before);

    // Routes off, then a dry run: the tunnel comes up, no route changes.
    for dry_run in [false, true] {
        let (mut a_host, a_memory, mut a_tuns) = host(&net);
        let mut opts = client_options(d, "alice");
        if dry_run {
            a_host.netcfg = HostConfig::in_memory(a_memory.clone()).with_dry_run(true);
        } else {
            opts.routing.enabled = false;
        }
        let alice = start_client(opts, a_host);
        let _a_tun = timeout(T, a_tuns.recv()).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            a_memory.route_get(ip("8.8.8.8")).as_deref(),
            Some("eth0"),
            "dry run {dry_run}: a route changed"
        );
        assert!(
            !a_memory
                .snapshot()
                .routes
                .iter()
                .any(|r| r.contains("proto 167")),
            "{:?}",
            a_memory.snapshot().routes
        );
        alice.stop().await.unwrap();
    }
    server.stop().await.unwrap();
}

/// A server of a circuit at `ip` in memory, named by `id`'s certificate, relaying to
/// `relay_to` when given (an empty list: anywhere).
fn circuit_server(
    dir: &Path,
    id: &str,
    ip: Ipv4Addr,
    relay_to: Option<&[String]>,
) -> ServerOptions {
    let relay = relay_to.map_or(String::new(), |to| {
        let list: Vec<String> = to.iter().map(|a| format!("\"{a}\"")).collect();
        format!(
            "[server.relay]\nenabled = true\nallow_extend_to = [{}]\n",
            list.join(", ")
        )
    });
    let text = format!(
        "[server]\nname = \"{id}\"\nlisten = \"{ip}\"\nadmin_socket = \"{dir}/{id}.sock\"\n\
         {relay}[server.pool]\ncidr = \"10.77.0.0/24\"\n\
         [server.pool.static]\nalice = \"10.77.0.10\"\nbob = \"10.77.0.11\"\n\
         [pki]\nca_cert = \"{dir}/ca.crt\"\ncert = \"{dir}/{id}.crt\"\n\
         key = \"{dir}/{id}.key\"\ncrl = \"{dir}/crl.pem\"\n\
         knock_key = \"{dir}/knock.key\"\n",
        dir = dir.display()
    );
    knock_key(dir);
    let cfg: aura_config::ServerConfig = toml::from_str(&text).unwrap();
    let mut opts = ServerOptions::from_config(&cfg).unwrap();
    opts.timers = timers();
    opts
}

/// A client reaching the exit (`SERVER_IP`) through `entry` and then `middle`.
fn circuit_client(dir: &Path, id: &str, entry: &str, middle: &[(&str, &str)]) -> ClientOptions {
    let mut opts = client_options(dir, id);
    let list: Vec<String> = middle
        .iter()
        .map(|(a, n)| format!("{{ address = \"{a}\", name = \"{n}\" }}"))
        .collect();
    let cfg: aura_config::CircuitSection = toml::from_str(&format!(
        "enabled = true\nhops = {}\nentry = \"{entry}\"\nentry_name = \"entry.test\"\nmiddle = [{}]\n",
        middle.len() + 2,
        list.join(", ")
    ))
    .unwrap();
    let mut client: aura_config::ClientConfig = toml::from_str(&format!(
        "[client]\nserver = \"{SERVER_IP}\"\n[pki]\nca_cert = \"a\"\ncert = \"b\"\nkey = \"c\"\n\
         crl = \"d\"\nknock_key = \"e\"\n"
    ))
    .unwrap();
    client.client.circuit = cfg;
    opts.circuit = ClientOptions::from_config(&client).unwrap().circuit;
    opts
}

/// The exit's view of client `id`: the address its traffic comes from.
async fn remote_seen_by(socket: &Path, id: &str) -> Option<String> {
    use aura_node::admin::{Request, Response};
    match aura_node::admin::request(socket, &Request::Status).await {
        Ok(Response::Server { peers, .. }) => {
            peers.into_iter().find(|p| p.id == id).map(|p| p.remote)
        }
        _ => None,
    }
}

/// The protocol simulation of circuits: whole daemons in memory, a 2-hop circuit (entry,
/// exit) and a 3-hop one (entry, middle, exit). Packets cross both ways; the exit sees
/// the last relay as the client's address; no relay gives the client an address; the
/// client's status lists the hops; a restarted exit is reached again through a rebuilt
/// circuit; a relay that may not extend to the exit stops the client with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuits_of_two_and_three_hops_in_memory() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut pki = TestPki::new(47).unwrap();
    let entry_id = pki.issue_server("entry.test").unwrap();
    let middle_id = pki.issue_server("middle.test").unwrap();
    let carol = pki.issue_client("carol").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_pem(d, "ca.crt", "CERTIFICATE", pki.ca_der());
    write_pem(d, "crl.pem", "X509 CRL", pki.crl_der());
    for (who, id) in [
        ("alice", pki.alice()),
        ("bob", pki.bob()),
        ("carol", &carol),
        ("server", pki.server()),
    ] {
        write_identity(d, id);
        if who != "server" {
            write_pem(d, &format!("{who}-crl.pem"), "X509 CRL", pki.crl_der());
        }
    }
    write_identity(d, &entry_id);
    write_identity(d, &middle_id);
    let net = MemNetwork::new();
    let exit_at = format!("{SERVER_IP}:8443");
    let (entry_ip, middle_ip) = (Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 3));
    let middle_at = format!("{middle_ip}:8443");

    let (x_host, _x_memory, mut x_tuns) = host(&net);
    let server_id = pki.server().id.clone();
    let exit_opts = || {
        let mut o = circuit_server(d, TEST_SERVER_NAME, Ipv4Addr::from([192, 0, 2, 1]), None);
        o.files = server_options(d, &server_id).files;
        // The exit grants cover traffic, 20 % at most; bob asks for 50 % through his circuit.
        o.cover = Some(aura_node::options::CoverPolicy {
            max_budget: 200,
            total_budget: 300,
        });
        o
    };
    let exit = start_server(exit_opts(), x_host);
    let (_, mut x_tun) = timeout(T, x_tuns.recv()).await.unwrap().unwrap();
    let (e_host, _e_memory, mut e_tuns) = host(&net);
    let entry = start_server(
        circuit_server(
            d,
            "entry.test",
            entry_ip,
            Some(&[exit_at.clone(), middle_at.clone()]),
        ),
        e_host,
    );
    let (_, mut e_tun) = timeout(T, e_tuns.recv()).await.unwrap().unwrap();
    let (m_host, _m_memory, mut m_tuns) = host(&net);
    let middle = start_server(
        circuit_server(
            d,
            "middle.test",
            middle_ip,
            Some(std::slice::from_ref(&exit_at)),
        ),
        m_host,
    );
    let (_, _m_tun) = timeout(T, m_tuns.recv()).await.unwrap().unwrap();

    // Alice: entry, exit. Bob: entry, middle, exit.
    let (a_host, _a_memory, mut a_tuns) = host(&net);
    let alice = start_client(
        circuit_client(d, "alice", &entry_ip.to_string(), &[]),
        a_host,
    );
    let (b_host, _b_memory, mut b_tuns) = host(&net);
    let mut bob_opts = circuit_client(
        d,
        "bob",
        &entry_ip.to_string(),
        &[(&middle_ip.to_string(), "middle.test")],
    );
    bob_opts.cover = Some((aura_proto::control::CoverProfile::Https, 500));
    let bob = start_client(bob_opts, b_host);
    let (a_addr, mut a_tun) = timeout(T, a_tuns.recv()).await.unwrap().unwrap();
    let (b_addr, mut b_tun) = timeout(T, b_tuns.recv()).await.unwrap().unwrap();
    assert_eq!(
        (a_addr, b_addr),
        (Ipv4Addr::new(10, 77, 0, 10), Ipv4Addr::new(10, 77, 0, 11))
    );
    for (tun, addr, tag) in [
        (&mut a_tun, a_addr, b"two hops".as_slice()),
        (&mut b_tun, b_addr, b"three hops"),
    ] {
        let up = deliver(tun, &mut x_tun, &ipv4_packet(addr, INTERNET, tag), tag).await;
        assert_eq!(&up[12..16], &addr.octets(), "the exit assigned the address");
        let down = deliver(&x_tun, tun, &ipv4_packet(INTERNET, addr, tag), tag).await;
        assert_eq!(&down[16..20], &addr.octets());
    }
    // The exit sees the last relay as each client's address.
    let x_sock = d.join(format!("{TEST_SERVER_NAME}.sock"));
    assert_eq!(
        remote_seen_by(&x_sock, "alice").await.as_deref(),
        Some(format!("{entry_ip}:8443").as_str())
    );
    assert_eq!(
        remote_seen_by(&x_sock, "bob").await.as_deref(),
        Some(middle_at.as_str())
    );
    // No relay gave a client an address, and none of their packets reached its TUN.
    for sock in ["entry.test.sock", "middle.test.sock"] {
        use aura_node::admin::{Request, Response};
        match aura_node::admin::request(&d.join(sock), &Request::Status)
            .await
            .unwrap()
        {
            Response::Server { peers, .. } => assert!(peers.is_empty(), "{sock}: {peers:?}"),
            other => panic!("{other:?}"),
        }
    }
    assert!(e_tun.try_recv().is_none(), "the entry's TUN saw a packet");
    // The client lists its hops.
    {
        use aura_node::admin::{Request, Response};
        match aura_node::admin::request(&d.join("bob.sock"), &Request::Status)
            .await
            .unwrap()
        {
            Response::Client {
                circuit,
                server,
                state,
                ..
            } => {
                assert_eq!(state, "connected");
                assert_eq!(server, exit_at);
                let names: Vec<&str> = circuit.iter().map(|h| h.name.as_str()).collect();
                assert_eq!(names, ["entry.test", "middle.test", TEST_SERVER_NAME]);
                assert!(circuit.iter().all(|h| h.state == "up"), "{circuit:?}");
            }
            other => panic!("{other:?}"),
        }
    }
    // Bob's cover traffic runs end to end with the exit, through both relays, at the
    // budget the exit granted; padding reaches neither TUN.
    let cover = timeout(T, async {
        use aura_node::admin::{Request, Response};
        loop {
            deliver(
                &b_tun,
                &mut x_tun,
                &ipv4_packet(b_addr, INTERNET, b"c"),
                b"c",
            )
            .await;
            deliver(
                &x_tun,
                &mut b_tun,
                &ipv4_packet(INTERNET, b_addr, b"d"),
                b"d",
            )
            .await;
            if let Ok(Response::Client { cover: Some(c), .. }) =
                aura_node::admin::request(&d.join("bob.sock"), &Request::Status).await
                && c.padding_in > 0
                && c.padding_out > 0
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("no padding crossed the circuit");
    assert_eq!(
        (cover.state.as_str(), cover.profile.as_str()),
        ("granted", "https")
    );
    assert_eq!(cover.budget_permille, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for tun in [&mut b_tun, &mut x_tun] {
        while let Some(p) = tun.try_recv() {
            assert!(
                !aura_proto::control::is_control(&p),
                "a control message reached a TUN"
            );
        }
    }
    assert!(e_tun.try_recv().is_none(), "the entry's TUN saw a packet");

    // The exit restarts: each client notices its dead session and builds its circuit
    // again (with the same static address, so its TUN stays).
    exit.stop().await.unwrap();
    let (x_host, _x_memory, mut x_tuns) = host(&net);
    let exit = start_server(exit_opts(), x_host);
    let (_, mut x_tun) = timeout(T, x_tuns.recv()).await.unwrap().unwrap();
    for (tun, addr, tag) in [
        (&mut a_tun, a_addr, b"rebuilt two".as_slice()),
        (&mut b_tun, b_addr, b"rebuilt three"),
    ] {
        deliver(tun, &mut x_tun, &ipv4_packet(addr, INTERNET, tag), tag).await;
    }

    // Carol's circuit goes through the middle relay to the entry, which it may not
    // extend to: the client stops with the relay's reason.
    let (c_host, c_memory, _c_tuns) = host(&net);
    let mut c_opts = circuit_client(d, "carol", &middle_ip.to_string(), &[]);
    if let Some(c) = &mut c_opts.circuit {
        c.entry.1 = "middle.test".into();
    }
    c_opts.server = entry_ip.to_string();
    c_opts.server_name = "entry.test".into();
    let end = timeout(T, start_client(c_opts, c_host).task)
        .await
        .unwrap()
        .unwrap();
    match end {
        Err(DaemonError::Refused(why)) => {
            assert!(why.contains("refused to extend the circuit"), "{why}");
            assert!(why.contains("allow_extend_to"), "{why}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let left = c_memory.snapshot();
    assert!(
        !left.routes.iter().any(|r| r.contains("aura0")),
        "{:?}",
        left.routes
    );
    assert!(left.nft_client_table.is_none());

    for r in [alice, bob] {
        r.stop().await.unwrap();
    }
    for s in [exit, entry, middle] {
        s.stop().await.unwrap();
    }
}

/// A bare server on an in-memory network, with the deployment's knock key, speaking the
/// session versions `versions`, that a test drives by hand; and alice's client daemon
/// (her credentials written to `d`) connecting to it: (listeners, client, its TUN
/// devices as the client makes them).
async fn hand_driven_server(
    pki: &TestPki,
    d: &Path,
    versions: &[u8],
) -> (
    aura_transport::Listeners,
    support::Running,
    tokio::sync::mpsc::UnboundedReceiver<(Ipv4Addr, aura_tun::MemTunHost)>,
    aura_netcfg::MemoryHost,
) {
    write_pem(d, "ca.crt", "CERTIFICATE", pki.ca_der());
    write_pem(d, "alice-crl.pem", "X509 CRL", pki.crl_der());
    write_identity(d, pki.alice());
    let net = MemNetwork::new();
    let mut cfg = aura_proto::EndpointConfig::new(
        pki.ca_der().to_vec(),
        aura_proto::Identity {
            cert_der: pki.server().cert_der.clone(),
            signer: std::sync::Arc::new(
                aura_proto::EcdsaP256Signer::from_pkcs8_der(&pki.server().key_pkcs8_der).unwrap(),
            ),
        },
        pki.verifier().unwrap(),
        true,
    );
    cfg.secret = aura_proto::DeploymentSecret::from_knock_key([0x5a; 32]);
    cfg.versions = versions.to_vec();
    // The client's short timers: its keepalives are answered well within its dead-peer
    // timeout, however slow the machine.
    cfg.timers = timers();
    let listeners = aura_transport::Listeners::bind(aura_transport::ListenConfig {
        endpoint: cfg,
        seed: [3; 32],
        udp: None,
        quic: None,
        tls: None,
        outer: None,
        tls_options: Default::default(),
        quic_options: Default::default(),
        masks: aura_transport::camo::mask::MaskSeed::for_ca(pki.ca_der()),
        mem: Some((net.clone(), std::net::SocketAddr::new(SERVER_IP, 8443))),
        wall_clock: pinned,
        workers: 1,
    })
    .await
    .unwrap();
    let (c_host, c_memory, c_tuns) = host(&net);
    let client = start_client(client_options(d, "alice"), c_host);
    (listeners, client, c_tuns, c_memory)
}

/// Assigns alice's tunnel address on `conn` (as the server's router would) and returns
/// her TUN device once the client made it.
async fn assign(
    conn: &aura_transport::PacketConn,
    address: Ipv4Addr,
    c_tuns: &mut tokio::sync::mpsc::UnboundedReceiver<(Ipv4Addr, aura_tun::MemTunHost)>,
) -> aura_tun::MemTunHost {
    use aura_proto::control::{AddressAssign, DnsAssign};
    let send = |m: aura_proto::control::ControlMessage<'static>| m.encode().unwrap();
    conn.send_batch(vec![
        send(DnsAssign { servers: vec![] }.into()),
        send(
            AddressAssign {
                address,
                prefix_len: 24,
                gateway: Ipv4Addr::new(10, 77, 0, 1),
                mtu: 1280,
            }
            .into(),
        ),
    ])
    .await
    .unwrap();
    timeout(T, c_tuns.recv()).await.unwrap().unwrap().1
}

/// A checksum the client's kernel left unfinished reaches a version 1 server finished by
/// the client (it cannot take type 7), and a version 2 server unfinished and flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_finishes_checksums_for_a_version_1_server() {
    let pki = TestPki::new(50).unwrap();
    for (versions, offload) in [(&[1u8][..], false), (&[2, 1][..], true)] {
        let dir = tempfile::tempdir().unwrap();
        let (mut listeners, client, mut c_tuns, _) =
            hand_driven_server(&pki, dir.path(), versions).await;
        let mut conn = timeout(T, listeners.accept()).await.unwrap().unwrap();
        assert_eq!(conn.offload(), offload);
        let address = Ipv4Addr::new(10, 77, 0, 2);
        let tun = assign(&conn, address, &mut c_tuns).await;
        let mut udp = vec![0u8; 8];
        udp[0..2].copy_from_slice(&5353u16.to_be_bytes());
        udp[2..4].copy_from_slice(&443u16.to_be_bytes());
        udp[4..6].copy_from_slice(&(8u16 + 100).to_be_bytes());
        udp.extend((0..100u8).map(|i| i.wrapping_mul(7)));
        let mut whole = ipv4_packet(address, INTERNET, &udp);
        assert!(aura_tun::csum::complete_checksum(&mut whole));
        let mut unfinished = whole.clone();
        unfinished[26..28].fill(0);
        // Injected once, as soon as the device exists: the client reads it into the
        // session from its first packet, while it still sets up routes and DNS.
        tun.inject_unfinished(&unfinished).await.unwrap();
        let (got, flagged) = timeout(T, async {
            loop {
                let b = conn
                    .recv_packets()
                    .await
                    .unwrap_or_else(|| panic!("closed, versions {versions:?}"));
                let found = b
                    .iter_with_offload()
                    .find(|(p, _)| !aura_proto::control::is_control(p))
                    .map(|(p, o)| (p.to_vec(), o));
                b.recycle();
                if let Some(f) = found {
                    return f;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(flagged, offload, "versions {versions:?}");
        let want = if offload { &unfinished } else { &whole };
        assert_eq!(&got, want, "versions {versions:?}");
        client.stop().await.unwrap();
    }
}

/// A server that answers an extension nobody asked for (`CircuitReady`, then
/// `CircuitFailed`) in the middle of a direct session: the client logs it, ignores it,
/// and keeps its tunnel: packets still arrive, nothing is torn down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unasked_circuit_answer_is_ignored_by_a_direct_client() {
    use aura_proto::control::{CircuitFailed, CircuitReady, ControlMessage};
    let pki = TestPki::new(49).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut listeners, client, mut c_tuns, c_memory) =
        hand_driven_server(&pki, d, aura_proto::wire::SUPPORTED_VERSIONS).await;
    let conn = timeout(T, listeners.accept()).await.unwrap().unwrap();
    let address = Ipv4Addr::new(10, 77, 0, 2);
    let send = |m: ControlMessage<'static>| m.encode().unwrap();
    let mut tun = assign(&conn, address, &mut c_tuns).await;
    conn.send_batch(vec![
        send(CircuitReady.into()),
        send(
            CircuitFailed {
                reason: "nobody asked".into(),
            }
            .into(),
        ),
        ipv4_packet(INTERNET, address, b"after the noise"),
    ])
    .await
    .unwrap();
    let got = timeout(T, async {
        loop {
            if let Some(p) = tun.try_recv() {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    assert!(got.ends_with(b"after the noise"));
    assert_eq!(
        c_memory.route_get(IpAddr::V4(INTERNET)).as_deref(),
        Some("aura0"),
        "the tunnel is still up"
    );
    assert!(!client.task.is_finished(), "the client is still running");
    client.stop().await.unwrap();
}
