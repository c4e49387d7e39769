//! Server-scale load generator: N concurrent clients against ONE server on loopback, no
//! TUN anywhere.
//!
//! Run: `cargo bench -p aura-transport --bench scale` (about 1.5–3 minutes with the
//! default sizes on the 2-core reference machine, depending on its load). Settings, all
//! optional, through the environment:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `AURA_SCALE_N` | `udp:1000,udp:10000,quic:100,quic:1000,tls:100,tls:1000` | runs, `carrier:N` each, in order |
//! | `AURA_SCALE_CONCURRENCY` | 128 | UDP handshakes in flight (each client from its own source address) |
//! | `AURA_SCALE_STREAM_CONCURRENCY` | 16 | QUIC/TLS dials in flight (all from 127.0.0.1, see below) |
//! | `AURA_SCALE_IDLE` | 5 | seconds the connected clients stay idle before the memory reading |
//! | `AURA_SCALE_SEND` | 5 | seconds every client sends in the packet phase |
//! | `AURA_SCALE_ACCEPT_TASK` | unset | set: the server child accepts in a task on the driver's runtime, as `aura-node` does (see "Accept queue" below) |
//! | `AURA_SCALE_PERF` | unset | a directory: `perf record -g` the server child during the handshake phase into `perf-<carrier>-<N>.data` there |
//!
//! **The server** runs in a child process (this binary re-executed with
//! `AURA_SCALE_SERVER=<carrier>`), so its memory is its own: the real [`Server`] with the
//! server's real defaults (`EndpointConfig::new`, default timers, default QUIC and TLS
//! options), the test PKI's server identity and CRL (handed over on its stdin), the wall
//! clock pinned to 2030 like the test fixtures (the test PKI's certificates are valid
//! 2029–2035). It binds the one carrier of the run on 127.0.0.1 (port 0), prints its
//! address, accepts every connection (on a thread of its own, see "Accept queue") and
//! reads each with `recv_packets()` on its own task (as the daemon does), counting
//! packets and bytes and recycling the batches. A `stats` line on its stdin makes it
//! print `VmRSS`, `VmHWM` (from /proc/self/status),
//! connections accepted and closed, packets and bytes received, and its CPU time
//! (getrusage). It exits when its stdin closes; the parent also kills it by PID on every
//! path (a guard that kills it on drop).
//!
//! **The clients** live in this process, on a 2-worker tokio runtime: N distinct client
//! identities (issued up front with `TestPki::issue_client`; the time is printed, it is
//! setup). Each client is its own `Endpoint` + `Driver` with its own socket:
//! - UDP: endpoints, sockets and drivers are built before the timed phase (setup); each
//!   socket is bound to its own loopback source address 127.16.0.1 + i, so the server's
//!   per-source cap on handshakes in progress (16) does not throttle the run;
//! - QUIC and TLS: the crate's `dial` path with the outer SNI. `quic::connect` and
//!   `tls::connect` bind the unspecified address, so every client comes from 127.0.0.1
//!   and the listeners' cap of 20 handshakes in flight per source applies: these runs
//!   keep 16 dials in flight.
//!
//! RLIMIT_NOFILE is raised to its hard limit at start (both processes): 10,000 UDP
//! clients hold 10,000 sockets. The client process re-executes itself once with a glibc
//! malloc tunable ([`CLIENT_TUNABLE`]); the server child gets the original environment.
//!
//! **Phases**, per run:
//! 1. *handshakes*: all N connect with bounded concurrency; from the first connect to the
//!    last completion (for UDP `DriverHandle::connect`, which returns at the server's
//!    confirmation; for QUIC/TLS `dial`, outer handshake included): handshakes/s, p50/p99
//!    per-client connect latency, and CPU time per handshake of the server (its getrusage
//!    over the phase; 10^6 / that is what its one driver core could do with the clients
//!    on other hardware) and of this client process (timed part only).
//! 2. *memory*: the server's VmRSS after all N are connected and have been idle for
//!    `AURA_SCALE_IDLE` s, minus its VmRSS before the first client, divided by the
//!    connections it holds; and VmHWM.
//! 3. *packets*: for `AURA_SCALE_SEND` s every client sends batches of [`BATCH`]
//!    [`PACKET`]-byte packets (`send_packets`), at most [`WINDOW`] packets in flight in
//!    all (sent, not yet counted by the server: the parent polls the server's counter
//!    every millisecond and a fair semaphore gives clients their turns), then waits until
//!    the server's count stands still. Server-received packets/s and MB/s (10^6 bytes of
//!    IP payload) from the first send to the last arrival, and loss.
//! 4. a markdown table of everything plus the settings, and JSON in
//!    `$CARGO_TARGET_DIR/scale.json` (`target/scale.json` without the variable).
//!
//! **Accept queue.** The server's driver hands each new connection to `Server::accept`
//! through a queue of 256 and *closes* the connection when that queue is full
//! (`driver.rs`, `accept.try_send`), after the client was already confirmed. With the
//! accept loop as a task on the driver's runtime (the `aura-node` layout,
//! `AURA_SCALE_ACCEPT_TASK=1`), the driver completes handshakes in bursts faster than that
//! task gets to run and most connections of a fast connect storm are closed this way
//! (reported as "confirmed / held by server"). By default the child accepts on a thread
//! of its own, so that the memory and packet figures are for N held connections.
//!
//! Every wait has a timeout; a run whose handshakes do not all complete within
//! [`PHASE_MAX`] reports how many did and the first error.
//! Targets it is compared against: ≥ 3,000 handshakes/s on the 2-core machine, and
//! 10,000 idle UDP clients within 16 KB of server memory each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use aura_pki::Verifier;
use aura_proto::{EcdsaP256Signer, Endpoint, EndpointConfig};
use aura_testkit::{TEST_SERVER_NAME, TestPki};
use aura_transport::dial::{ClientCredentials, DialConfig, dial};
use aura_transport::server::{Server, ServerConfig};
use aura_transport::{BatchPool, Carrier, Driver, DriverHandle, PacketConn, PacketSender};
use rand_core::{OsRng, RngCore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;

/// Environment variable that puts the binary in server mode (value: the carrier).
const SERVER_ENV: &str = "AURA_SCALE_SERVER";
/// Set once the client process has re-executed itself with [`CLIENT_TUNABLE`]; holds the
/// original `GLIBC_TUNABLES`, restored for the server child.
const REEXEC_ENV: &str = "AURA_SCALE_REEXEC";
/// glibc malloc tunable for the client process only. Each in-process client driver
/// allocates a 2 MiB zeroed receive buffer (plus a 320 KiB send queue); with glibc's
/// dynamic mmap threshold these end up in thread arenas where `calloc` memsets them, so
/// every client costs ~1 MiB of touched memory and the page clearing dominated the client
/// process's CPU (10,000 clients: ~10 GiB). A fixed threshold keeps them in fresh, lazily
/// zeroed mappings. The server child runs with the original environment.
const CLIENT_TUNABLE: &str = "glibc.malloc.mmap_threshold=131072";
/// IP packet size in the packet phase, bytes.
const PACKET: usize = 200;
/// Packets per `send_packets` in the packet phase.
const BATCH: usize = 16;
/// Packets in flight, all clients together, in the packet phase.
const WINDOW: usize = 2048;
/// Deadline of one client's connect.
const CONNECT_MAX: Duration = Duration::from_secs(30);
/// Deadline of a whole handshake phase.
const PHASE_MAX: Duration = Duration::from_secs(120);
/// Deadline of a line from the server child.
const LINE_MAX: Duration = Duration::from_secs(30);
/// Deadline for the server's packet count to stand still after the senders stop.
const DRAIN_MAX: Duration = Duration::from_secs(10);
/// The count is final once it has not moved for this long.
const DRAIN_QUIET: Duration = Duration::from_millis(300);
/// In flight with no progress for this long counts as lost (its window is given back).
const STALL: Duration = Duration::from_millis(100);
/// First UDP client source address (client i binds 127.16.0.1 + i).
const FIRST_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 16, 0, 1);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns (soft, hard) afterwards.
fn raise_nofile() -> (u64, u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    getrlimit(Resource::RLIMIT_NOFILE).unwrap()
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim().as_bytes();
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn parse_carrier(s: &str) -> Carrier {
    match s {
        "udp" => Carrier::Udp,
        "quic" => Carrier::Quic,
        "tls" => Carrier::Tls,
        other => panic!("unknown carrier {other:?} (udp, quic, tls)"),
    }
}

// ---------------------------------------------------------------------------------------
// Server child
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Counts {
    accepted: AtomicU64,
    closed: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
}

/// `VmRSS` and `VmHWM` of this process, KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User + system CPU time of this process, µs.
fn cpu_us() -> u64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let Ok(u) = getrusage(UsageWho::RUSAGE_SELF) else {
        return 0;
    };
    let us = |t: nix::sys::time::TimeVal| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec()).unwrap_or(0)
    };
    us(u.user_time()) + us(u.system_time())
}

/// The server process: reads the PKI material (4 hex lines: CA, CRL, server certificate,
/// server key) from stdin, serves, and answers `stats` lines until stdin closes.
fn server_main(carrier: Carrier) {
    raise_nofile();
    let mut lines = std::io::stdin().lines();
    let mut next = || unhex(&lines.next().unwrap().unwrap());
    let (ca, crl, cert, key) = (next(), next(), next(), next());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("server")
        .enable_all()
        .build()
        .unwrap();
    let counts = Arc::new(Counts::default());
    let addr = rt.block_on(async {
        let signer = EcdsaP256Signer::from_pkcs8_der(&key).unwrap();
        let endpoint = EndpointConfig::new(
            ca.clone(),
            aura_proto::Identity {
                cert_der: cert.clone(),
                signer: Arc::new(signer),
            },
            Verifier::new(&ca, [&crl]).unwrap(),
            true,
        );
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        let cfg = ServerConfig {
            endpoint,
            seed,
            udp: (carrier == Carrier::Udp).then_some(any),
            quic: (carrier == Carrier::Quic).then_some(any),
            tls: (carrier == Carrier::Tls).then_some(any),
            outer: Some(Arc::new(aura_transport::tls::OuterIdentity {
                cert_chain: vec![CertificateDer::from(cert.clone())],
                key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone())),
            })),
            tls_options: aura_transport::tls::TlsOptions::default(),
            quic_options: aura_transport::quic::QuicOptions::default(),
            wall_clock: common::wall,
        };
        let mut server = Server::bind(cfg).await.unwrap();
        let addr = match carrier {
            Carrier::Udp => server.udp_addr,
            Carrier::Quic => server.quic_addr,
            _ => server.tls_addr,
        }
        .unwrap();
        let counts = counts.clone();
        let rt = tokio::runtime::Handle::current();
        let accept_loop = async move {
            while let Some(conn) = server.accept().await {
                counts.accepted.fetch_add(1, Ordering::Relaxed);
                rt.spawn(serve(conn, counts.clone()));
            }
        };
        if std::env::var_os("AURA_SCALE_ACCEPT_TASK").is_none() {
            // Accept on a thread of its own, so that the accept queue is drained even
            // while the driver task keeps its worker busy (see the module docs).
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap()
                    .block_on(accept_loop);
            });
        } else {
            tokio::spawn(accept_loop);
        }
        addr
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY {addr}").unwrap();
    out.flush().unwrap();
    for line in lines {
        let Ok(line) = line else { break };
        match line.trim() {
            "stats" => {
                let (rss, hwm) = memory_kib();
                writeln!(
                    out,
                    "STATS {rss} {hwm} {} {} {} {} {}",
                    counts.accepted.load(Ordering::Relaxed),
                    counts.closed.load(Ordering::Relaxed),
                    counts.packets.load(Ordering::Relaxed),
                    counts.bytes.load(Ordering::Relaxed),
                    cpu_us()
                )
                .unwrap();
                out.flush().unwrap();
            }
            "quit" => break,
            _ => {}
        }
    }
    // stdin closed (the parent is gone) or asked to quit: leave at once.
    std::process::exit(0);
}

/// One accepted connection: count what arrives, recycle the batches.
async fn serve(mut conn: PacketConn, counts: Arc<Counts>) {
    while let Some(b) = conn.recv_packets().await {
        counts.packets.fetch_add(b.len() as u64, Ordering::Relaxed);
        counts.bytes.fetch_add(b.bytes() as u64, Ordering::Relaxed);
        b.recycle();
    }
    counts.closed.fetch_add(1, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------
// Parent: the server child's handle
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    rss_kib: u64,
    hwm_kib: u64,
    accepted: u64,
    closed: u64,
    packets: u64,
    bytes: u64,
    cpu_us: u64,
}

/// The server child. Killed (by its PID) and reaped on drop, whatever the path.
struct ServerChild {
    child: Child,
    stdin: ChildStdin,
    lines: std_mpsc::Receiver<String>,
    addr: SocketAddr,
}

impl ServerChild {
    fn spawn(carrier: Carrier, pki: &TestPki) -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = Command::new(exe);
        match std::env::var(REEXEC_ENV) {
            Ok(orig) if !orig.is_empty() => cmd.env("GLIBC_TUNABLES", orig),
            _ => cmd.env_remove("GLIBC_TUNABLES"),
        };
        let mut child = cmd
            .env_remove(REEXEC_ENV)
            .env(SERVER_ENV, carrier.name())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (tx, lines) = std_mpsc::channel();
        let mut s = ServerChild {
            child,
            stdin: stdin.unwrap(),
            lines,
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        };
        let stdout = stdout.unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        for part in [
            pki.ca_der(),
            pki.crl_der(),
            &pki.server().cert_der,
            &pki.server().key_pkcs8_der,
        ] {
            writeln!(s.stdin, "{}", hex(part)).unwrap();
        }
        s.stdin.flush().unwrap();
        let ready = s.line();
        s.addr = ready
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("server child said {ready:?}"))
            .parse()
            .unwrap();
        s
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(LINE_MAX)
            .unwrap_or_else(|e| panic!("no line from the server child within {LINE_MAX:?}: {e}"))
    }

    fn stats(&mut self) -> Stats {
        writeln!(self.stdin, "stats").unwrap();
        self.stdin.flush().unwrap();
        loop {
            let line = self.line();
            let Some(rest) = line.strip_prefix("STATS ") else {
                continue;
            };
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            return Stats {
                rss_kib: v[0],
                hwm_kib: v[1],
                accepted: v[2],
                closed: v[3],
                packets: v[4],
                bytes: v[5],
                cpu_us: v[6],
            };
        }
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        // `Child::kill` sends SIGKILL to this child's PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `perf record -g -p <server>` while alive; stopped with SIGINT (by PID) on drop.
struct Perf(Option<Child>);

impl Perf {
    fn start(server_pid: u32, carrier: Carrier, n: usize) -> Self {
        let Ok(dir) = std::env::var("AURA_SCALE_PERF") else {
            return Perf(None);
        };
        let out = format!("{dir}/perf-{carrier}-{n}.data");
        let child = Command::new("perf")
            .args(["record", "-g", "-o", &out, "-p", &server_pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(c) => {
                eprintln!("perf recording the server into {out}");
                // Let perf attach before the phase starts.
                std::thread::sleep(Duration::from_millis(500));
                Perf(Some(c))
            }
            Err(e) => {
                eprintln!("perf not started: {e}");
                Perf(None)
            }
        }
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        let Some(mut c) = self.0.take() else { return };
        let _ = Command::new("kill")
            .args(["-INT", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Parent: clients and phases
// ---------------------------------------------------------------------------------------

/// What a client needs from the PKI.
#[derive(Clone)]
struct Creds {
    ca: Arc<Vec<u8>>,
    crl: Arc<Vec<u8>>,
}

/// A connected client: its connection and driver (dropping both ends the driver).
struct Client {
    conn: PacketConn,
    _driver: DriverHandle,
}

#[derive(Debug, Default)]
struct Outcome {
    carrier: &'static str,
    n: usize,
    concurrency: usize,
    connected: usize,
    failed: usize,
    first_error: String,
    connect_secs: f64,
    handshakes_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    server_cpu_us_per_handshake: f64,
    /// CPU of this whole process (all clients, the harness) per handshake.
    client_cpu_us_per_handshake: f64,
    rss_before_kib: u64,
    rss_idle_kib: u64,
    hwm_idle_kib: u64,
    kib_per_client: f64,
    packets_sent: u64,
    packets_received: u64,
    client_drops: u64,
    send_secs: f64,
    packets_per_s: f64,
    mb_per_s: f64,
    loss_pct: f64,
    rss_after_traffic_kib: u64,
    hwm_after_traffic_kib: u64,
    server_closed: u64,
    /// Connections the server accepted (a client can be confirmed and still be dropped
    /// by the server when its accept queue is full).
    accepted: u64,
    /// This (client) process's VmRSS once all are connected.
    client_rss_kib: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// A UDP client's endpoint, built before the timed phase.
fn udp_endpoint(creds: &Creds, id: &aura_testkit::Identity) -> Endpoint {
    let cfg = EndpointConfig::new(
        creds.ca.to_vec(),
        common::identity(id),
        Verifier::new(&creds.ca, [&*creds.crl]).unwrap(),
        false,
    );
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    Endpoint::new(cfg, seed, Instant::now(), common::wall()).unwrap()
}

fn dial_config(
    creds: &Creds,
    id: &aura_testkit::Identity,
    carrier: Carrier,
    addr: SocketAddr,
) -> DialConfig {
    DialConfig {
        credentials: ClientCredentials {
            ca_der: creds.ca.to_vec(),
            crl_ders: vec![creds.crl.to_vec()],
            identity: common::identity(id),
        },
        server_name: TEST_SERVER_NAME.into(),
        server: addr.ip(),
        bridges: vec![],
        carriers: vec![carrier],
        udp_port: addr.port(),
        quic_port: addr.port(),
        tls_port: addr.port(),
        sni: "www.example.com".into(),
        attempt_timeout: Duration::from_secs(20),
        timers: aura_proto::Timers::default(),
        tls_options: aura_transport::tls::TlsOptions::default(),
        quic_options: aura_transport::quic::QuicOptions::default(),
        wall_clock: common::wall,
    }
}

type ConnectResult = (Result<(PacketConn, DriverHandle), String>, Instant, Instant);

/// Phase 1: connects all clients, at most `concurrency` at once.
async fn connect_all(
    carrier: Carrier,
    ids: &[aura_testkit::Identity],
    creds: &Creds,
    server: SocketAddr,
    concurrency: usize,
) -> (Vec<Client>, Vec<Duration>, Vec<String>, Duration, u64) {
    let sem = Arc::new(Semaphore::new(concurrency));
    let mut set: JoinSet<ConnectResult> = JoinSet::new();
    let setup = Instant::now();
    // This process's CPU time when the timed part starts (after the UDP clients' setup).
    let mut timed_cpu0 = cpu_us();
    if carrier == Carrier::Udp {
        let mut prepared = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let ip = Ipv4Addr::from(u32::from(FIRST_SOURCE) + i as u32);
            let socket = aura_transport::udp::bind(SocketAddr::new(IpAddr::V4(ip), 0)).unwrap();
            // The driver (and its batch socket) is set up here too: quinn-udp's socket
            // setup toggles a kernel static key (text patching with IPIs to every CPU),
            // which cost the client process ~18 % of its CPU when done inside the timed
            // phase.
            let (handle, _accept) = Driver::spawn(udp_endpoint(creds, id), Some(socket));
            prepared.push(handle);
        }
        eprintln!(
            "  {} client endpoints, sockets and drivers built in {:.2} s (setup)",
            ids.len(),
            setup.elapsed().as_secs_f64()
        );
        timed_cpu0 = cpu_us();
        for handle in prepared {
            let sem = sem.clone();
            set.spawn(async move {
                let _permit = sem.acquire_owned().await.unwrap();
                let start = Instant::now();
                let r = match timeout(CONNECT_MAX, handle.connect(server, TEST_SERVER_NAME)).await {
                    Ok(Ok(c)) => Ok((c, handle)),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no connection within {CONNECT_MAX:?}")),
                };
                (r, start, Instant::now())
            });
        }
    } else {
        for id in ids {
            let cfg = dial_config(creds, id, carrier, server);
            let sem = sem.clone();
            set.spawn(async move {
                let _permit = sem.acquire_owned().await.unwrap();
                let start = Instant::now();
                let r = match timeout(CONNECT_MAX, dial(&cfg, &mut OsRng)).await {
                    Ok(Ok(d)) => Ok((d.conn, d.driver)),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no connection within {CONNECT_MAX:?}")),
                };
                (r, start, Instant::now())
            });
        }
    }
    let mut clients = Vec::with_capacity(ids.len());
    let mut latencies = Vec::with_capacity(ids.len());
    let mut errors = Vec::new();
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    let collected = timeout(PHASE_MAX, async {
        while let Some(r) = set.join_next().await {
            let (r, start, end) = r.unwrap();
            first = Some(first.map_or(start, |f| f.min(start)));
            match r {
                Ok((conn, driver)) => {
                    last = Some(last.map_or(end, |l| l.max(end)));
                    latencies.push(end - start);
                    clients.push(Client {
                        conn,
                        _driver: driver,
                    });
                }
                Err(e) => errors.push(e),
            }
        }
    })
    .await;
    if collected.is_err() {
        let left = set.len();
        set.abort_all();
        errors.push(format!(
            "{left} connects still running after {PHASE_MAX:?}: aborted"
        ));
    }
    let span = match (first, last) {
        (Some(f), Some(l)) => l - f,
        _ => Duration::ZERO,
    };
    latencies.sort();
    let cpu = cpu_us() - timed_cpu0;
    (clients, latencies, errors, span, cpu)
}

/// Stops a background thread on drop.
struct StopFlag(Arc<AtomicBool>);

impl Drop for StopFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Phase 3: every client sends for `send_time` under a shared window. Returns (sent,
/// received, seconds from the first send to the last arrival, bytes received).
async fn traffic(
    clients: &[Client],
    server: &Arc<Mutex<ServerChild>>,
    send_time: Duration,
) -> (u64, u64, f64, u64) {
    let base = server.lock().unwrap().stats();
    let window = Arc::new(Semaphore::new(WINDOW));
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let received_bytes = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopFlag(stop.clone());
    let started = Instant::now();
    // Nanoseconds after `started` of the last increase of the server's count.
    let last_progress = Arc::new(AtomicU64::new(0));
    let poller = {
        let (window, sent, received, received_bytes, stop, last_progress, server) = (
            window.clone(),
            sent.clone(),
            received.clone(),
            received_bytes.clone(),
            stop.clone(),
            last_progress.clone(),
            server.clone(),
        );
        std::thread::spawn(move || {
            let mut seen = 0u64;
            let mut credited = 0u64;
            let mut progress_at = Instant::now();
            while !stop.load(Ordering::Acquire) {
                let s = server.lock().unwrap().stats();
                let now = s.packets - base.packets;
                if now > seen {
                    window.add_permits(usize::try_from(now - seen).unwrap_or(0));
                    seen = now;
                    progress_at = Instant::now();
                    last_progress.store(
                        u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
                        Ordering::Release,
                    );
                    received.store(now, Ordering::Release);
                    received_bytes.store(s.bytes - base.bytes, Ordering::Release);
                } else if progress_at.elapsed() > STALL {
                    // Whatever is still in flight after a pause is lost: give its window
                    // back so the senders do not stall for good.
                    let lost = sent.load(Ordering::Acquire).saturating_sub(seen + credited);
                    if lost > 0 {
                        window.add_permits(usize::try_from(lost).unwrap_or(0));
                        credited += lost;
                    }
                    progress_at = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let deadline = tokio::time::Instant::now() + send_time;
    let mut set = JoinSet::new();
    for c in clients {
        let sender: PacketSender = c.conn.sender();
        let (window, sent) = (window.clone(), sent.clone());
        set.spawn(async move {
            let pool = BatchPool::new();
            let packet = [0x45u8; PACKET];
            while tokio::time::Instant::now() < deadline {
                match tokio::time::timeout_at(deadline, window.acquire_many(BATCH as u32)).await {
                    Ok(Ok(p)) => p.forget(),
                    Ok(Err(_)) | Err(_) => break,
                }
                let mut b = pool.take();
                for _ in 0..BATCH {
                    b.push(&packet);
                }
                if sender.send_packets(b).await.is_err() {
                    break;
                }
                sent.fetch_add(BATCH as u64, Ordering::Release);
            }
        });
    }
    // The senders stop at the deadline; a driver that stopped taking commands would hold
    // one in `send_packets`, so their end is waited for with a deadline too.
    let joined = timeout(send_time + LINE_MAX, async {
        while set.join_next().await.is_some() {}
    })
    .await;
    if joined.is_err() {
        eprintln!("  some senders were still blocked {LINE_MAX:?} after the deadline: aborted");
        set.abort_all();
    }
    // Wait until the server's count stands still.
    let drain_start = Instant::now();
    let mut last = received.load(Ordering::Acquire);
    let mut quiet_since = Instant::now();
    while drain_start.elapsed() < DRAIN_MAX {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = received.load(Ordering::Acquire);
        if now != last {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= DRAIN_QUIET {
            break;
        }
    }
    stop.store(true, Ordering::Release);
    let _ = poller.join();
    let secs = Duration::from_nanos(last_progress.load(Ordering::Acquire)).as_secs_f64();
    (
        sent.load(Ordering::Acquire),
        received.load(Ordering::Acquire),
        secs,
        received_bytes.load(Ordering::Acquire),
    )
}

async fn run(
    carrier: Carrier,
    n: usize,
    pki: &TestPki,
    ids: &[aura_testkit::Identity],
    concurrency: usize,
    idle: Duration,
    send_time: Duration,
) -> Outcome {
    let creds = Creds {
        ca: Arc::new(pki.ca_der().to_vec()),
        crl: Arc::new(pki.crl_der().to_vec()),
    };
    let mut out = Outcome {
        carrier: carrier.name(),
        n,
        concurrency,
        ..Outcome::default()
    };
    eprintln!("== {carrier}, N = {n}, {concurrency} connects in flight");
    let server = ServerChild::spawn(carrier, pki);
    let addr = server.addr;
    let pid = server.pid();
    let server = Arc::new(Mutex::new(server));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = server.lock().unwrap().stats();
    out.rss_before_kib = before.rss_kib;

    // Phase 1: handshakes.
    let perf = Perf::start(pid, carrier, n);
    let cpu0 = server.lock().unwrap().stats().cpu_us;
    let (clients, latencies, errors, span, client_cpu) =
        connect_all(carrier, &ids[..n], &creds, addr, concurrency).await;
    let cpu1 = server.lock().unwrap().stats().cpu_us;
    drop(perf);
    out.connected = clients.len();
    out.client_rss_kib = memory_kib().0;
    out.failed = n - clients.len();
    out.first_error = errors.first().cloned().unwrap_or_default();
    out.connect_secs = span.as_secs_f64();
    out.handshakes_per_s = clients.len() as f64 / span.as_secs_f64().max(1e-9);
    out.p50_ms = percentile(&latencies, 0.50);
    out.p99_ms = percentile(&latencies, 0.99);
    out.max_ms = latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3);
    out.server_cpu_us_per_handshake = (cpu1 - cpu0) as f64 / clients.len().max(1) as f64;
    out.client_cpu_us_per_handshake = client_cpu as f64 / clients.len().max(1) as f64;
    eprintln!(
        "  connected {}/{n} in {:.2} s: {:.0} handshakes/s, p50 {:.2} ms, p99 {:.2} ms; CPU per handshake: server {:.0} µs, client process {:.0} µs{}",
        clients.len(),
        out.connect_secs,
        out.handshakes_per_s,
        out.p50_ms,
        out.p99_ms,
        out.server_cpu_us_per_handshake,
        out.client_cpu_us_per_handshake,
        if errors.is_empty() {
            String::new()
        } else {
            format!("; {} failed, first: {}", errors.len(), out.first_error)
        }
    );

    // Phase 2: memory, idle.
    tokio::time::sleep(idle).await;
    let idle_stats = server.lock().unwrap().stats();
    out.rss_idle_kib = idle_stats.rss_kib;
    out.hwm_idle_kib = idle_stats.hwm_kib;
    out.accepted = idle_stats.accepted;
    // Per connection the server holds.
    out.kib_per_client = idle_stats.rss_kib.saturating_sub(before.rss_kib) as f64
        / idle_stats.accepted.max(1) as f64;
    eprintln!(
        "  idle {idle:?}: server VmRSS {} KiB (before: {} KiB), VmHWM {} KiB, {:.2} KiB per accepted client; accepted {}; client process VmRSS {} KiB",
        idle_stats.rss_kib,
        before.rss_kib,
        idle_stats.hwm_kib,
        out.kib_per_client,
        idle_stats.accepted,
        out.client_rss_kib
    );

    // Phase 3: packets.
    if !clients.is_empty() {
        let (sent, received, secs, bytes) = traffic(&clients, &server, send_time).await;
        out.packets_sent = sent;
        out.packets_received = received;
        out.send_secs = secs;
        out.packets_per_s = received as f64 / secs.max(1e-9);
        out.mb_per_s = bytes as f64 / secs.max(1e-9) / 1e6;
        out.loss_pct = 100.0 * sent.saturating_sub(received) as f64 / sent.max(1) as f64;
        out.client_drops = clients.iter().map(|c| c.conn.stats().drops).sum();
        let after = server.lock().unwrap().stats();
        out.rss_after_traffic_kib = after.rss_kib;
        out.hwm_after_traffic_kib = after.hwm_kib;
        out.server_closed = after.closed;
        eprintln!(
            "  traffic: sent {sent}, server received {received} in {secs:.2} s: {:.0} packets/s, {:.1} MB/s, loss {:.2} % (client drops {}); VmRSS {} KiB, VmHWM {} KiB",
            out.packets_per_s,
            out.mb_per_s,
            out.loss_pct,
            out.client_drops,
            after.rss_kib,
            after.hwm_kib
        );
    }
    drop(clients);
    drop(server);
    // Let the dropped clients' drivers wind down before the next run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    out
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn json_string(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn write_json(path: &std::path::Path, settings: &str, outcomes: &[Outcome]) {
    let mut j = String::new();
    let _ = writeln!(j, "{{\n  \"settings\": {settings},\n  \"runs\": [");
    for (i, o) in outcomes.iter().enumerate() {
        let _ = writeln!(
            j,
            "    {{\"carrier\": {}, \"n\": {}, \"concurrency\": {}, \"connected\": {}, \"failed\": {}, \"first_error\": {}, \
\"connect_secs\": {:.3}, \"handshakes_per_s\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}, \
\"server_cpu_us_per_handshake\": {:.1}, \"client_cpu_us_per_handshake\": {:.1}, \"accepted\": {}, \"client_rss_kib\": {}, \"rss_before_kib\": {}, \"rss_idle_kib\": {}, \"hwm_idle_kib\": {}, \
\"kib_per_client\": {:.3}, \"packets_sent\": {}, \"packets_received\": {}, \"client_drops\": {}, \"send_secs\": {:.3}, \
\"packets_per_s\": {:.1}, \"mb_per_s\": {:.2}, \"loss_pct\": {:.3}, \"rss_after_traffic_kib\": {}, \
\"hwm_after_traffic_kib\": {}, \"server_closed\": {}}}{}",
            json_string(o.carrier),
            o.n,
            o.concurrency,
            o.connected,
            o.failed,
            json_string(&o.first_error),
            o.connect_secs,
            o.handshakes_per_s,
            o.p50_ms,
            o.p99_ms,
            o.max_ms,
            o.server_cpu_us_per_handshake,
            o.client_cpu_us_per_handshake,
            o.accepted,
            o.client_rss_kib,
            o.rss_before_kib,
            o.rss_idle_kib,
            o.hwm_idle_kib,
            o.kib_per_client,
            o.packets_sent,
            o.packets_received,
            o.client_drops,
            o.send_secs,
            o.packets_per_s,
            o.mb_per_s,
            o.loss_pct,
            o.rss_after_traffic_kib,
            o.hwm_after_traffic_kib,
            o.server_closed,
            if i + 1 == outcomes.len() { "" } else { "," }
        );
    }
    j.push_str("  ]\n}\n");
    match std::fs::write(path, j) {
        Ok(()) => println!("\nJSON: {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}

fn print_table(outcomes: &[Outcome]) {
    println!();
    println!(
        "| carrier | N | in flight | confirmed / held by server | handshakes/s | p50 ms | p99 ms | CPU µs/handshake server / clients | server RSS before → idle (MiB) | KiB/held client | VmHWM MiB | packets/s | MB/s | loss % |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in outcomes {
        println!(
            "| {} | {} | {} | {} / {} | {:.0} | {:.2} | {:.2} | {:.0} / {:.0} | {:.1} → {:.1} | {:.2} | {:.1} | {:.0} | {:.1} | {:.2} |",
            o.carrier,
            o.n,
            o.concurrency,
            o.connected,
            o.accepted,
            o.handshakes_per_s,
            o.p50_ms,
            o.p99_ms,
            o.server_cpu_us_per_handshake,
            o.client_cpu_us_per_handshake,
            o.rss_before_kib as f64 / 1024.0,
            o.rss_idle_kib as f64 / 1024.0,
            o.kib_per_client,
            o.hwm_idle_kib as f64 / 1024.0,
            o.packets_per_s,
            o.mb_per_s,
            o.loss_pct
        );
    }
    for o in outcomes.iter().filter(|o| o.failed > 0) {
        println!(
            "\n{} N = {}: {} of {} did not connect; first error: {}",
            o.carrier, o.n, o.failed, o.n, o.first_error
        );
    }
    for o in outcomes
        .iter()
        .filter(|o| (o.accepted as usize) < o.connected)
    {
        println!(
            "\n{} N = {}: {} clients were confirmed but the server does not hold them (closed by the server's driver: its accept queue was full)",
            o.carrier,
            o.n,
            o.connected - o.accepted as usize
        );
    }
    println!("\nTargets:");
    for o in outcomes {
        let hs = o.handshakes_per_s;
        println!(
            "- {} N = {}: {:.0} handshakes/s vs ≥ 3,000: {} ({:+.0} %)",
            o.carrier,
            o.n,
            hs,
            if hs >= 3000.0 { "met" } else { "missed" },
            100.0 * (hs / 3000.0 - 1.0)
        );
    }
    for o in outcomes
        .iter()
        .filter(|o| o.carrier == "udp" && o.n >= 10_000)
    {
        let kb = o.kib_per_client * 1.024;
        println!(
            "- udp N = {}: {:.2} KB ({:.2} KiB) of server memory per idle client vs ≤ 16 KB: {}",
            o.n,
            kb,
            o.kib_per_client,
            if kb <= 16.0 { "met" } else { "missed" }
        );
    }
}

fn main() {
    if let Ok(c) = std::env::var(SERVER_ENV) {
        server_main(parse_carrier(&c));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var_os(REEXEC_ENV).is_none() {
        use std::os::unix::process::CommandExt;
        let orig = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        let tunables = if orig.is_empty() {
            CLIENT_TUNABLE.to_owned()
        } else {
            format!("{orig}:{CLIENT_TUNABLE}")
        };
        let err = Command::new(std::env::current_exe().unwrap())
            .args(std::env::args_os().skip(1))
            .env("GLIBC_TUNABLES", tunables)
            .env(REEXEC_ENV, orig)
            .exec();
        panic!("cannot re-execute with GLIBC_TUNABLES: {err}");
    }
    let (soft, hard) = raise_nofile();
    let spec = std::env::var("AURA_SCALE_N")
        .unwrap_or_else(|_| "udp:1000,udp:10000,quic:100,quic:1000,tls:100,tls:1000".into());
    let runs: Vec<(Carrier, usize)> = spec
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let (c, n) = s
                .trim()
                .split_once(':')
                .unwrap_or_else(|| panic!("AURA_SCALE_N item {s:?} is not carrier:N"));
            (parse_carrier(c), n.parse().unwrap())
        })
        .collect();
    let udp_conc = usize::try_from(env_u64("AURA_SCALE_CONCURRENCY", 128)).unwrap_or(128);
    let stream_conc = usize::try_from(env_u64("AURA_SCALE_STREAM_CONCURRENCY", 16)).unwrap_or(16);
    let idle = Duration::from_secs(env_u64("AURA_SCALE_IDLE", 5));
    let send_time = Duration::from_secs(env_u64("AURA_SCALE_SEND", 5));
    let load_start = loadavg();
    println!("RLIMIT_NOFILE raised to {soft} (hard {hard}); load average at start: {load_start}");

    let max_n = runs.iter().map(|r| r.1).max().unwrap_or(0);
    let mut pki = TestPki::new(23).unwrap();
    let issuing = Instant::now();
    let ids: Vec<_> = (0..max_n)
        .map(|i| pki.issue_client(&format!("scale{i}")).unwrap())
        .collect();
    let issue_secs = issuing.elapsed().as_secs_f64();
    println!(
        "issued {max_n} client certificates in {issue_secs:.2} s ({:.0} µs each; setup, not measured)",
        issue_secs * 1e6 / max_n.max(1) as f64
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("clients")
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let outcomes: Vec<Outcome> = rt.block_on(async {
        let mut v = Vec::new();
        for &(carrier, n) in &runs {
            let conc = if carrier == Carrier::Udp {
                udp_conc
            } else {
                stream_conc
            };
            v.push(run(carrier, n, &pki, &ids, conc, idle, send_time).await);
        }
        v
    });
    let load_end = loadavg();
    println!(
        "\nSettings: {PACKET}-byte packets in batches of {BATCH}, window {WINDOW} packets, idle {idle:?}, sending {send_time:?}; \
UDP clients from 127.16.0.1 + i; QUIC/TLS via dial from 127.0.0.1. Load average {load_start} at start, {load_end} at end; \
total {:.0} s.",
        started.elapsed().as_secs_f64()
    );
    print_table(&outcomes);
    let settings = format!(
        "{{\"packet_bytes\": {PACKET}, \"batch\": {BATCH}, \"window\": {WINDOW}, \"idle_secs\": {}, \"send_secs\": {}, \
\"udp_concurrency\": {udp_conc}, \"stream_concurrency\": {stream_conc}, \"nofile\": {soft}, \"issue_secs\": {issue_secs:.3}, \
\"load_start\": {}, \"load_end\": {}}}",
        idle.as_secs(),
        send_time.as_secs(),
        json_string(&load_start),
        json_string(&load_end)
    );
    let dir = std::env::var("CARGO_TARGET_DIR").map_or_else(
        |_| std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")),
        std::path::PathBuf::from,
    );
    write_json(&dir.join("scale.json"), &settings, &outcomes);
}
