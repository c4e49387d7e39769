//! The metrics endpoints of whole daemons in memory (`aura server` and `aura client`
//! through their real `run_on`, in-memory TUN devices, host and carrier; the endpoints on
//! real loopback sockets): the counters move with a transfer by at least what crossed, a
//! refused handshake is counted under its reason, and a metrics address already in use
//! stops either daemon before it changes anything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use aura_node::DaemonError;
use aura_node::options::{ClientOptions, ServerOptions};
use aura_testkit::{TestPki, ipv4_packet};
use aura_transport::MemNetwork;
use support::{
    INTERNET, T, client_options_of, deliver, host_resolving, pinned, server_options_of, start,
    write_pem, write_pki,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// The hosts' resolver file: one nameserver.
const RESOLV: &str = "nameserver 192.0.2.53\n";

/// The server's options, its metrics endpoint on `metrics`.
fn server_options(dir: &Path, server_id: &str, metrics: SocketAddr) -> ServerOptions {
    let mut opts = server_options_of(
        dir,
        server_id,
        &format!("[server.metrics]\nlisten = \"{metrics}\"\n"),
    );
    // Two workers whatever this machine has, so each has its samples.
    opts.workers = 2;
    opts
}

/// Alice's options, her metrics endpoint on `metrics`.
fn client_options(dir: &Path, metrics: SocketAddr) -> ClientOptions {
    client_options_of(
        dir,
        "alice",
        &format!("[client.metrics]\nlisten = \"{metrics}\"\n"),
    )
}

/// A loopback address with a port free a moment ago.
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `GET /metrics` at `addr`: the body.
async fn scrape(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: aura\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    timeout(T, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    body.to_owned()
}

/// Every sample of a metrics text: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, i128> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

fn value(s: &HashMap<String, i128>, key: &str) -> i128 {
    *s.get(key).unwrap_or_else(|| panic!("no {key} in {s:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counters_move_with_a_transfer() {
    let pki = TestPki::new(61).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_pki(d, &pki);
    let net = MemNetwork::new();
    let (s_metrics, c_metrics) = (free_port(), free_port());

    let (s_host, _s_memory, mut s_tuns) = host_resolving(&net, RESOLV);
    let opts = server_options(d, &pki.server().id, s_metrics);
    let server = start(|stop| aura_node::server::run_on(opts, s_host, stop));
    let (_, mut s_tun) = timeout(T, s_tuns.recv()).await.unwrap().unwrap();
    let (a_host, _a_memory, mut a_tuns) = host_resolving(&net, RESOLV);
    let opts = client_options(d, c_metrics);
    let alice = start(|stop| aura_node::client::run_on(opts, a_host, stop));
    let (a_addr, mut a_tun) = timeout(T, a_tuns.recv()).await.unwrap().unwrap();
    // The tunnel carries a first packet each way.
    let hello = b"hello";
    deliver(
        &a_tun,
        &mut s_tun,
        &ipv4_packet(a_addr, INTERNET, hello),
        hello,
    )
    .await;
    deliver(
        &s_tun,
        &mut a_tun,
        &ipv4_packet(INTERNET, a_addr, hello),
        hello,
    )
    .await;

    let server_before = samples(&scrape(s_metrics).await);
    let client_before = samples(&scrape(c_metrics).await);
    assert_eq!(
        value(&server_before, "aura_peers_connected{carrier=\"mem\"}"),
        1
    );
    assert!(
        value(
            &server_before,
            "aura_handshakes_completed_total{carrier=\"mem\"}"
        ) >= 1
    );
    assert_eq!(
        value(&server_before, "aura_pool_addresses_used{family=\"ipv4\"}"),
        1
    );
    // The handshake was one worker's; neither handed anything to the other.
    let per_worker: Vec<i128> = (0..2)
        .map(|w| {
            value(
                &server_before,
                &format!("aura_worker_handshakes_completed_total{{worker=\"{w}\"}}"),
            )
        })
        .collect();
    assert_eq!(
        per_worker.iter().sum::<i128>(),
        value(
            &server_before,
            "aura_handshakes_completed_total{carrier=\"mem\"}"
        ),
        "{per_worker:?}"
    );
    for w in 0..2 {
        let moved = format!("aura_worker_handed_over_total{{worker=\"{w}\"}}");
        assert_eq!(value(&server_before, &moved), 0);
    }
    assert_eq!(
        value(&server_before, "aura_pool_addresses{family=\"ipv4\"}"),
        253
    );
    assert_eq!(
        value(&client_before, "aura_client_state{state=\"connected\"}"),
        1
    );
    assert_eq!(
        value(&client_before, "aura_client_state{state=\"connecting\"}"),
        0
    );

    // 40 packets of 1000 bytes each way, each delivered at least once.
    const PACKETS: i128 = 40;
    let size = ipv4_packet(a_addr, INTERNET, &[0; 980]).len();
    assert_eq!(size, 1000);
    for i in 0..PACKETS {
        let mut payload = [0u8; 980];
        payload[..16].copy_from_slice(&i.to_be_bytes());
        let up = ipv4_packet(a_addr, INTERNET, &payload);
        deliver(&a_tun, &mut s_tun, &up, &payload).await;
        let down = ipv4_packet(INTERNET, a_addr, &payload);
        deliver(&s_tun, &mut a_tun, &down, &payload).await;
    }
    let bytes = PACKETS * 1000;

    let server_after = samples(&scrape(s_metrics).await);
    let client_after = samples(&scrape(c_metrics).await);
    let moved = |before: &HashMap<String, i128>, after: &HashMap<String, i128>, key: &str| {
        value(after, key) - value(before, key)
    };
    let mem = |name: &str| format!("{name}{{carrier=\"mem\"}}");
    for (before, after, side) in [
        (&server_before, &server_after, "server"),
        (&client_before, &client_after, "client"),
    ] {
        for (name, at_least) in [
            ("aura_tunnel_received_bytes_total", bytes),
            ("aura_tunnel_sent_bytes_total", bytes),
            ("aura_tunnel_received_packets_total", PACKETS),
            ("aura_tunnel_sent_packets_total", PACKETS),
        ] {
            let m = moved(before, after, &mem(name));
            assert!(m >= at_least, "{side} {name} moved by {m}, not {at_least}");
        }
        assert!(value(after, "aura_uptime_seconds") >= 0);
    }
    // What crossed one way arrived the other: neither side counts far more than the
    // other (a few keepalives and control messages aside).
    let up_sent = moved(
        &client_before,
        &client_after,
        &mem("aura_tunnel_sent_bytes_total"),
    );
    let up_received = moved(
        &server_before,
        &server_after,
        &mem("aura_tunnel_received_bytes_total"),
    );
    assert!(up_received <= up_sent, "{up_received} > {up_sent}");

    // The client goes: its traffic stays in the server's counters, the gauge drops.
    alice.stop().await.unwrap();
    let gone = timeout(T, async {
        loop {
            let s = samples(&scrape(s_metrics).await);
            if value(&s, "aura_peers_connected{carrier=\"mem\"}") == 0 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the server still counts alice as connected");
    let key = mem("aura_tunnel_received_bytes_total");
    assert!(value(&gone, &key) >= value(&server_after, &key));
    assert_eq!(value(&gone, "aura_pool_addresses_used{family=\"ipv4\"}"), 0);
    // The client's endpoint went with it.
    assert!(tokio::net::TcpStream::connect(c_metrics).await.is_err());
    server.stop().await.unwrap();
    assert!(tokio::net::TcpStream::connect(s_metrics).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_address_in_use_stops_the_server_before_any_change() {
    let pki = TestPki::new(62).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_pki(d, &pki);
    let net = MemNetwork::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (s_host, s_memory, mut s_tuns) = host_resolving(&net, RESOLV);
    let before = s_memory.snapshot();
    let opts = server_options(d, &pki.server().id, addr);
    let end = timeout(
        T,
        aura_node::server::run_on(opts, s_host, std::future::pending()),
    )
    .await
    .expect("the server started anyway");
    let e = end.unwrap_err();
    assert!(matches!(e, DaemonError::Metrics { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "server.metrics.listen: cannot serve metrics on {addr}: "
        )),
        "{text}"
    );
    assert!(text.contains("another process listens there"), "{text}");
    // Nothing was done: no TUN, no admin socket, the host as it was.
    assert!(s_tuns.try_recv().is_err(), "a TUN device was created");
    assert!(!d.join("server.sock").exists(), "the admin socket was left");
    let after = s_memory.snapshot();
    assert_eq!(after.ip_forward, before.ip_forward);
    assert!(after.nft_table.is_none());

    // The same for a client.
    let (c_host, c_memory, mut c_tuns) = host_resolving(&net, RESOLV);
    let before = c_memory.snapshot();
    let opts = client_options(d, addr);
    let end = timeout(
        T,
        aura_node::client::run_on(opts, c_host, std::future::pending()),
    )
    .await
    .expect("the client started anyway");
    let text = end.unwrap_err().to_string();
    assert!(
        text.starts_with(&format!(
            "client.metrics.listen: cannot serve metrics on {addr}: "
        )),
        "{text}"
    );
    assert!(c_tuns.try_recv().is_err(), "a TUN device was created");
    assert!(!d.join("alice.sock").exists(), "the admin socket was left");
    assert_eq!(c_memory.snapshot(), before);
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_handshake_is_counted_by_reason() {
    let mut pki = TestPki::new(63).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_pki(d, &pki);
    // The server's CRL revokes bob from the start; bob's own CRL does not know it.
    let crl = pki.revoke("bob").unwrap();
    write_pem(d, "crl.pem", "X509 CRL", &crl);
    let this_update = pki.verifier().unwrap().crl_this_update().unix_timestamp();
    let net = MemNetwork::new();
    let s_metrics = free_port();
    let (s_host, _s_memory, mut s_tuns) = host_resolving(&net, RESOLV);
    let opts = server_options(d, &pki.server().id, s_metrics);
    let server = start(|stop| aura_node::server::run_on(opts, s_host, stop));
    // Kept: the server stops when its device goes away.
    let (_, _s_tun) = timeout(T, s_tuns.recv()).await.unwrap().unwrap();
    let before = samples(&scrape(s_metrics).await);
    let revoked = "aura_handshakes_failed_total{reason=\"certificate_revoked\"}";
    assert_eq!(value(&before, revoked), 0);

    let (b_host, _b_memory, _b_tuns) = host_resolving(&net, RESOLV);
    let opts = client_options_of(d, "bob", "");
    let end = timeout(
        T,
        aura_node::client::run_on(opts, b_host, std::future::pending()),
    )
    .await
    .expect("bob kept dialling");
    assert!(matches!(end, Err(DaemonError::Refused(_))), "{end:?}");
    // The worker publishes the count at the end of the turn that sent bob the refusal,
    // on its own thread: bob may hear the refusal first.
    let mut after = samples(&scrape(s_metrics).await);
    let deadline = tokio::time::Instant::now() + T;
    while value(&after, revoked) < 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = samples(&scrape(s_metrics).await);
    }
    assert!(value(&after, revoked) >= 1, "{after:?}");
    assert_eq!(
        value(&after, "aura_handshakes_completed_total{carrier=\"mem\"}"),
        0
    );
    assert_eq!(value(&after, "aura_peers_connected{carrier=\"mem\"}"), 0);
    // The CRL's age is the server's clock less the thisUpdate of the CRL it loaded.
    let now = i128::from(pinned().as_secs());
    assert_eq!(
        value(&after, "aura_crl_age_seconds"),
        now - i128::from(this_update)
    );
    assert_eq!(
        value(&after, "aura_crl_this_update_timestamp_seconds"),
        i128::from(this_update)
    );
    server.stop().await.unwrap();
}
