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
//! | `AURA_SCALE_WORKERS` | the CPUs (as `aura server`) | the server's protocol workers (`ListenConfig::workers`) |
//! | `AURA_SCALE_PERF` | unset | a directory: `perf record -g` the server child during the handshake phase into `perf-<carrier>-<N>.data` there |
//!
//! **The server** runs in a child process (this binary re-executed with
//! `AURA_SCALE_SERVER=<carrier>`), so its memory is its own: the real
//! [`Listeners`](aura_transport::Listeners) with the server's real defaults
//! (`EndpointConfig::new`, default timers, default QUIC and TLS options), the test PKI's
//! server identity and CRL (handed over on its stdin), the wall clock pinned to 2030 like
//! the test fixtures (the test PKI's certificates are valid 2029–2035). It binds the one
//! carrier of the run on 127.0.0.1 (port 0), prints its address, accepts every connection
//! and reads each with `recv_packets()` on its own task, counting packets and bytes and
//! recycling the batches. It has the daemon's layout (ADR 0023): each worker's driver,
//! socket and connection tasks on a thread of its own (`server-w0`, `server-w1`, …;
//! `Listeners::bind_on`), the accept loop and the QUIC and TLS listeners on the main
//! runtime's thread. A `stats` line on its stdin makes it
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
//! **Accept queue.** The server's driver hands each new connection to `Listeners::accept`
//! through an unbounded queue (`driver.rs`), so a connection already confirmed to its
//! client is not closed because the accept loop is slow; "confirmed / held by server"
//! shows whether every confirmed client is held.
//!
//! The code: `server` is the child, `child` the parent's handle on it, `clients` the
//! connect and packet phases, `run` one run of all phases, `report` the table and JSON,
//! `sys` this process's limits, memory and CPU time.
//!
//! Every wait has a timeout; a run whose handshakes do not all complete within
//! [`PHASE_MAX`] reports how many did and the first error.
//! Targets it is compared against: ≥ 3,000 handshakes/s on the 2-core machine, and
//! 10,000 idle UDP clients within 16 KB of server memory each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/common/mod.rs"]
mod common;

mod child;
mod clients;
mod report;
mod run;
mod server;
mod sys;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use aura_testkit::TestPki;
use aura_transport::Carrier;

use crate::run::{Outcome, run};
use crate::sys::{loadavg, raise_nofile};

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

/// The server child's workers: `AURA_SCALE_WORKERS`, else one per CPU, as the daemon.
fn workers() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    usize::try_from(env_u64("AURA_SCALE_WORKERS", cpus as u64)).unwrap_or(1)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn parse_carrier(s: &str) -> Carrier {
    match s {
        "udp" => Carrier::Udp,
        "quic" => Carrier::Quic,
        "tls" => Carrier::Tls,
        other => panic!("unknown carrier {other:?} (udp, quic, tls)"),
    }
}

fn main() {
    if let Ok(c) = std::env::var(SERVER_ENV) {
        server::server_main(parse_carrier(&c));
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
    report::print_table(&outcomes);
    let settings = format!(
        "{{\"packet_bytes\": {PACKET}, \"batch\": {BATCH}, \"window\": {WINDOW}, \"idle_secs\": {}, \"send_secs\": {}, \
\"udp_concurrency\": {udp_conc}, \"stream_concurrency\": {stream_conc}, \"nofile\": {soft}, \"issue_secs\": {issue_secs:.3}, \
\"load_start\": {}, \"load_end\": {}}}",
        idle.as_secs(),
        send_time.as_secs(),
        report::json_string(&load_start),
        report::json_string(&load_end)
    );
    let dir = std::env::var("CARGO_TARGET_DIR").map_or_else(
        |_| std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")),
        std::path::PathBuf::from,
    );
    report::write_json(&dir.join("scale.json"), &settings, &outcomes);
}
