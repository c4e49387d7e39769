//! A server with several protocol workers on one UDP address: clients from different
//! sources meet different workers, a client that moves to an address another worker
//! reads keeps its session, a first flight replayed toward another worker is still a
//! replay, and a client connecting again through another worker replaces its session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aura_testkit::{TEST_SERVER_NAME, TestPki};
use aura_transport::carrier::udp;
use aura_transport::listen::{ListenConfig, Listeners};
use aura_transport::{Driver, DriverHandle, PacketConn};
use common::{client_endpoint, masks, packet, server_config};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(30);

/// The previous-session grace of the test servers: a superseded session closes this
/// long after the notice.
const GRACE: Duration = Duration::from_secs(2);

/// A UDP-only server configuration with `workers` workers on 127.0.0.1.
fn udp_only(pki: &TestPki, workers: usize) -> ListenConfig {
    let mut cfg = server_config(
        pki,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        pki.verifier().unwrap(),
    );
    cfg.endpoint.timers.previous_session_grace = GRACE;
    ListenConfig {
        quic: None,
        tls: None,
        outer: None,
        workers,
        ..cfg
    }
}

/// A UDP-only server with `workers` workers on 127.0.0.1.
async fn server(pki: &TestPki, workers: usize) -> Listeners {
    Listeners::bind(udp_only(pki, workers)).await.unwrap()
}

/// A two-worker server for a test seeded `seed`: its PKI, listeners, UDP address, and a
/// loopback source address that reaches each worker.
async fn two_workers(seed: u64) -> (TestPki, Listeners, SocketAddr, IpAddr, IpAddr) {
    let pki = TestPki::new(seed).unwrap();
    let listeners = server(&pki, 2).await;
    let addr = listeners.udp_addr.unwrap();
    (
        pki,
        listeners,
        addr,
        sources_of(0, 2, 1)[0],
        sources_of(1, 2, 1)[0],
    )
}

/// Loopback addresses (127.0.0.2 onward) that reach worker `w` of `count`, `n` of them.
fn sources_of(w: usize, count: usize, n: usize) -> Vec<IpAddr> {
    (2..=254u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
        .filter(|ip| udp::worker_of(*ip, count) == w)
        .take(n)
        .collect()
}

/// A client driver for `id` whose socket is bound at `ip`.
fn client_at(pki: &TestPki, id: &aura_testkit::Identity, seed: u8, ip: IpAddr) -> DriverHandle {
    let sock = udp::bind(SocketAddr::new(ip, 0)).unwrap();
    Driver::spawn(client_endpoint(pki, id, seed), Some(sock), masks(pki)).0
}

/// `client` connects to `to` and `listeners` accept it: (client side, server side).
async fn connect(
    listeners: &mut Listeners,
    client: &DriverHandle,
    to: SocketAddr,
) -> (PacketConn, PacketConn) {
    let c = timeout(T, client.connect(to, TEST_SERVER_NAME))
        .await
        .unwrap()
        .unwrap();
    let s = timeout(T, listeners.accept()).await.unwrap().unwrap();
    (c, s)
}

/// Sends `n` packets from `from` and reads them at `to`, contents checked.
async fn exchange(from: &PacketConn, to: &mut PacketConn, dir: u8, n: u32) {
    for i in 0..n {
        from.send(packet(dir, i, 200)).await.unwrap();
        let p = timeout(T, to.recv()).await.unwrap().unwrap();
        assert_eq!(p, packet(dir, i, 200));
    }
}

/// Relays datagrams between a client and `server`, leaving from an upstream socket that
/// can be switched to another address (the client moves), and records what the client
/// sends.
struct Mover {
    /// Where the client sends.
    addr: SocketAddr,
    /// The next upstream socket, and who waits until the relay uses it.
    switch: tokio::sync::mpsc::Sender<(UdpSocket, tokio::sync::oneshot::Sender<()>)>,
    captured: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Mover {
    async fn start(server: SocketAddr, first: IpAddr) -> Self {
        let near = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = near.local_addr().unwrap();
        let mut up = UdpSocket::bind(SocketAddr::new(first, 0)).await.unwrap();
        let (switch, mut next) =
            tokio::sync::mpsc::channel::<(UdpSocket, tokio::sync::oneshot::Sender<()>)>(1);
        let captured = Arc::new(Mutex::new(Vec::new()));
        let cap = captured.clone();
        let task = tokio::spawn(async move {
            let mut client = None;
            let mut a = vec![0u8; 65536];
            let mut b = vec![0u8; 65536];
            loop {
                tokio::select! {
                    Some((s, done)) = next.recv() => {
                        up = s;
                        let _ = done.send(());
                    }
                    Ok((n, from)) = near.recv_from(&mut a) => {
                        client = Some(from);
                        cap.lock().unwrap().push(a[..n].to_vec());
                        let _ = up.send_to(&a[..n], server).await;
                    }
                    Ok((n, _)) = up.recv_from(&mut b) => {
                        if let Some(c) = client {
                            let _ = near.send_to(&b[..n], c).await;
                        }
                    }
                }
            }
        });
        Self {
            addr,
            switch,
            captured,
            task,
        }
    }

    /// Moves the client to `ip`: returns once the relay sends from there (what the
    /// server sends to the old address afterwards is lost, as on a real move).
    async fn move_to(&self, ip: IpAddr) {
        let s = UdpSocket::bind(SocketAddr::new(ip, 0)).await.unwrap();
        let (done, switched) = tokio::sync::oneshot::channel();
        self.switch.send((s, done)).await.unwrap();
        switched.await.unwrap();
    }
}

impl Drop for Mover {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_from_different_sources_meet_their_workers() {
    let mut pki = TestPki::new(21).unwrap();
    let mut listeners = server(&pki, 2).await;
    assert_eq!(listeners.workers(), 2);
    let addr = listeners.udp_addr.unwrap();
    let mut conns = Vec::new();
    for (w, n) in [(0usize, 2usize), (1, 3)] {
        for (k, ip) in sources_of(w, 2, n).into_iter().enumerate() {
            let id = pki.issue_client(&format!("c{w}-{k}")).unwrap();
            let client = client_at(&pki, &id, 30 + conns.len() as u8, ip);
            let (c, mut s) = connect(&mut listeners, &client, addr).await;
            exchange(&c, &mut s, 0, 3).await;
            conns.push((client, c, s));
        }
    }
    let per_worker = listeners.counters().per_worker();
    let handshakes: Vec<u64> = per_worker
        .iter()
        .map(|s| s.handshakes_over(aura_transport::Carrier::Udp))
        .collect();
    assert_eq!(handshakes, vec![2, 3], "each source met its own worker");
    assert_eq!(
        listeners
            .counters()
            .snapshot()
            .driver
            .handshakes_over(aura_transport::Carrier::Udp),
        5
    );
    // Both ways, on every session, with no hand-over between workers.
    for (_, c, s) in &mut conns {
        exchange(s, c, 1, 3).await;
    }
    assert!(per_worker.iter().all(|s| s.handed_over == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_moves_to_another_workers_address_keeps_its_session() {
    let (pki, mut listeners, server_addr, first, second) = two_workers(22).await;
    let mover = Mover::start(server_addr, first).await;
    let client = client_at(&pki, pki.alice(), 40, IpAddr::V4(Ipv4Addr::LOCALHOST));
    let (mut c, mut s) = connect(&mut listeners, &client, mover.addr).await;
    exchange(&c, &mut s, 0, 5).await;
    exchange(&s, &mut c, 1, 5).await;
    let before = listeners.counters().per_worker();
    assert_eq!(before[0].handshakes_over(aura_transport::Carrier::Udp), 1);

    mover.move_to(second).await;
    // The first packet from the new address moves the session there (worker 1 reads it
    // and hands it to worker 0); from then on the server answers there too.
    for i in 0..20 {
        c.send(packet(2, i, 300)).await.unwrap();
        assert_eq!(
            timeout(T, s.recv()).await.unwrap().unwrap(),
            packet(2, i, 300)
        );
        s.send(packet(3, i, 300)).await.unwrap();
        assert_eq!(
            timeout(T, c.recv()).await.unwrap().unwrap(),
            packet(3, i, 300)
        );
    }
    // The counters are published once a second.
    let counters = listeners.counters();
    let after = timeout(T, async {
        loop {
            let w = counters.per_worker();
            if w[1].handed_over >= 20 {
                return w;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("worker 1 hands over what it reads for worker 0's session");
    assert_eq!(after[1].handover_drops, 0);
    assert_eq!(after[0].handed_over, 0);
    assert_eq!(
        s.remote().ip(),
        second,
        "the server answers at the new address"
    );
    // No second session: the handshake counts are what they were.
    assert_eq!(after[1].handshakes_over(aura_transport::Carrier::Udp), 0);
}

/// After a move, the client's next rekey (its Init from the new address) reaches the
/// new address's worker, which makes it a session of its own and closes the old one:
/// from then on nothing is handed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_clients_rekey_brings_its_session_to_the_new_worker() {
    let (pki, mut listeners, server_addr, first, second) = two_workers(26).await;
    let mover = Mover::start(server_addr, first).await;
    let mut cfg = common::client_config(&pki, pki.alice());
    cfg.timers.rekey_after_time = Duration::from_secs(3);
    let ep = aura_proto::Endpoint::new(cfg, [44; 32], std::time::Instant::now(), common::wall())
        .unwrap();
    let sock = udp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let (client, _) = Driver::spawn(ep, Some(sock), masks(&pki));
    let (mut c, mut old) = connect(&mut listeners, &client, mover.addr).await;
    exchange(&c, &mut old, 0, 3).await;
    mover.move_to(second).await;
    exchange(&c, &mut old, 1, 3).await;
    // The rekey, within a few seconds: a new session on worker 1, the old one closed.
    let mut s = timeout(T, listeners.accept()).await.unwrap().unwrap();
    assert_eq!(s.peer().id, "alice");
    assert!(timeout(T, old.recv()).await.unwrap().is_none());
    let counters = listeners.counters();
    let handed = |w: &[aura_transport::DriverStats]| w[1].handed_over;
    let at_rekey = timeout(T, async {
        loop {
            let w = counters.per_worker();
            if w[1].handshakes_over(aura_transport::Carrier::Udp) == 1 {
                return w;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("worker 1 completes the rekey");
    exchange(&c, &mut s, 2, 50).await;
    exchange(&s, &mut c, 3, 50).await;
    // Two publications later, still nothing more handed over.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = counters.per_worker();
    assert_eq!(handed(&later), handed(&at_rekey), "{later:?}");
    assert_eq!(later[0].handshakes_over(aura_transport::Carrier::Udp), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_flight_replayed_toward_another_worker_is_refused() {
    let (pki, mut listeners, server_addr, first, other) = two_workers(23).await;
    let mover = Mover::start(server_addr, first).await;
    let client = client_at(&pki, pki.alice(), 41, IpAddr::V4(Ipv4Addr::LOCALHOST));
    let (_c, _s) = connect(&mut listeners, &client, mover.addr).await;
    let flights = mover.captured.lock().unwrap().clone();
    drop(mover);

    let prober = UdpSocket::bind(SocketAddr::new(other, 0)).await.unwrap();
    for f in &flights {
        prober.send_to(f, server_addr).await.unwrap();
    }
    let mut buf = vec![0u8; 2048];
    let answer = timeout(Duration::from_secs(2), prober.recv_from(&mut buf)).await;
    assert!(answer.is_err(), "a replay got an answer: {answer:?}");
    let w = listeners.counters().per_worker();
    assert!(
        w[1].knock.replay >= 1,
        "worker 1 saw no replay: {:?}",
        w[1].knock
    );
    assert_eq!(w[1].handshakes_over(aura_transport::Carrier::Udp), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connecting_again_through_another_worker_replaces_its_session() {
    let (pki, mut listeners, addr, a, b) = two_workers(24).await;
    let old_client = client_at(&pki, pki.alice(), 42, a);
    let (_old, mut old) = connect(&mut listeners, &old_client, addr).await;
    // alice again, restarted on another network: a new session through worker 1.
    let new_client = client_at(&pki, pki.alice(), 43, b);
    let (mut c, mut s) = connect(&mut listeners, &new_client, addr).await;
    assert_eq!(s.peer().id, "alice");
    // Worker 0 closes the old session once the grace has passed, not at the dead-peer
    // timeout (30 s).
    let t0 = std::time::Instant::now();
    assert!(timeout(GRACE * 3, old.recv()).await.unwrap().is_none());
    assert!(
        t0.elapsed() >= GRACE / 2,
        "closed before the grace: {:?}",
        t0.elapsed()
    );
    exchange(&c, &mut s, 0, 3).await;
    exchange(&s, &mut c, 1, 3).await;
}

#[tokio::test]
async fn a_server_refuses_zero_or_too_many_workers() {
    let pki = TestPki::new(25).unwrap();
    for workers in [0, udp::MAX_WORKERS + 1] {
        let cfg = udp_only(&pki, workers);
        let e = Listeners::bind(cfg).await.unwrap_err();
        assert!(e.to_string().contains(&format!("{workers} workers")), "{e}");
    }
}

/// A runtime on a thread of its own, until its stop sender is used or dropped.
fn runtime_thread() -> (tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handle = rt.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = rt.block_on(stopped);
    });
    (handle, stop)
}

/// Each worker's driver runs on the runtime given for it: while worker 1's runtime
/// thread is held up, a client that meets worker 1 gets no answer and one that meets
/// worker 0 connects; once it is let go, worker 1 answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_workers_driver_runs_on_the_runtime_given_for_it() {
    let mut pki = TestPki::new(26).unwrap();
    let (carol, dave) = (
        pki.issue_client("carol").unwrap(),
        pki.issue_client("dave").unwrap(),
    );
    let (rt0, _stop0) = runtime_thread();
    let (rt1, _stop1) = runtime_thread();
    let mut listeners = Listeners::bind_on(udp_only(&pki, 2), &[rt0, rt1.clone()])
        .await
        .unwrap();
    let addr = listeners.udp_addr.unwrap();
    let at = |w: usize, n: usize| sources_of(w, 2, n)[n - 1];
    for (w, (id, seed)) in [(pki.alice(), 50), (pki.bob(), 51)].into_iter().enumerate() {
        let client = client_at(&pki, id, seed, at(w, 1));
        let (mut c, mut s) = connect(&mut listeners, &client, addr).await;
        exchange(&c, &mut s, 0, 2).await;
        exchange(&s, &mut c, 1, 2).await;
    }
    // Worker 1's thread blocks until told.
    let (let_go, held) = std::sync::mpsc::channel::<()>();
    rt1.spawn(async move {
        let _ = held.recv();
    });
    let late = client_at(&pki, &carol, 52, at(1, 2));
    let unanswered = timeout(Duration::from_secs(3), late.connect(addr, TEST_SERVER_NAME)).await;
    assert!(
        unanswered.is_err(),
        "worker 1 answered while its runtime's thread was held"
    );
    let other = client_at(&pki, &dave, 53, at(0, 2));
    connect(&mut listeners, &other, addr).await;
    let_go.send(()).unwrap();
    let (mut c, mut s) = connect(&mut listeners, &late, addr).await;
    exchange(&c, &mut s, 0, 2).await;
    exchange(&s, &mut c, 1, 2).await;
}

/// With a runtime per worker, each worker has a QUIC endpoint of its own on its
/// runtime: while the runtime of the worker a source meets is held, that source's outer
/// QUIC handshake gets no answer; once let go, it completes. (One endpoint on the
/// listener's runtime would answer at once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_workers_quic_endpoint_runs_on_its_runtime() {
    let pki = TestPki::new(27).unwrap();
    let (rt0, _stop0) = runtime_thread();
    let (rt1, _stop1) = runtime_thread();
    let runtimes = [rt0, rt1];
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let cfg = ListenConfig {
        udp: None,
        tls: None,
        workers: 2,
        ..server_config(&pki, localhost, pki.verifier().unwrap())
    };
    let listeners = Listeners::bind_on(cfg, &runtimes).await.unwrap();
    let addr = listeners.quic_addr.unwrap();
    let (let_go, held) = std::sync::mpsc::channel::<()>();
    runtimes[udp::worker_of(localhost, 2)].spawn(async move {
        let _ = held.recv();
    });
    let client = quinn::Endpoint::client(SocketAddr::new(localhost, 0)).unwrap();
    let quic = aura_transport::carrier::quic::client_config(&Default::default()).unwrap();
    let first = client
        .connect_with(quic.clone(), addr, "www.example.com")
        .unwrap();
    assert!(
        timeout(Duration::from_secs(2), first).await.is_err(),
        "the QUIC handshake completed while its worker's runtime was held"
    );
    let_go.send(()).unwrap();
    let again = client.connect_with(quic, addr, "www.example.com").unwrap();
    timeout(T, again).await.unwrap().unwrap();
}

/// A QUIC client that moves to an address another worker reads is told at once: that
/// worker's endpoint answers with a stateless reset whose token the client holds from
/// its own worker, so the connection ends with a reset (and the Aura client reconnects)
/// instead of waiting out its idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_client_moved_to_another_worker_is_reset_at_once() {
    let pki = TestPki::new(28).unwrap();
    let (rt0, _stop0) = runtime_thread();
    let (rt1, _stop1) = runtime_thread();
    let cfg = ListenConfig {
        udp: None,
        tls: None,
        workers: 2,
        ..server_config(
            &pki,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            pki.verifier().unwrap(),
        )
    };
    let listeners = Listeners::bind_on(cfg, &[rt0, rt1]).await.unwrap();
    let addr = listeners.quic_addr.unwrap();
    let (a, b) = (sources_of(0, 2, 1)[0], sources_of(1, 2, 1)[0]);
    let client = quinn::Endpoint::client(SocketAddr::new(a, 0)).unwrap();
    let quic = aura_transport::carrier::quic::client_config(&Default::default()).unwrap();
    let conn = timeout(
        T,
        client.connect_with(quic, addr, "www.example.com").unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    client
        .rebind(std::net::UdpSocket::bind(SocketAddr::new(b, 0)).unwrap())
        .unwrap();
    let _ = conn.send_datagram(bytes::Bytes::from_static(&[0u8; 100]));
    let closed = timeout(Duration::from_secs(3), conn.closed()).await;
    assert!(
        matches!(closed, Ok(quinn::ConnectionError::Reset)),
        "not reset at once: {closed:?}"
    );
}
