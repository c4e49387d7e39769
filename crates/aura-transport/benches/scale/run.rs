//! One run: a server child, N clients, the three phases, and what they measured.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aura_testkit::TestPki;
use aura_transport::Carrier;

use crate::child::{Perf, ServerChild};
use crate::clients::{Creds, connect_all, traffic};
use crate::sys::memory_kib;

/// What one run measured.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) carrier: &'static str,
    pub(crate) n: usize,
    pub(crate) concurrency: usize,
    pub(crate) connected: usize,
    pub(crate) failed: usize,
    pub(crate) first_error: String,
    pub(crate) connect_secs: f64,
    pub(crate) handshakes_per_s: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) server_cpu_us_per_handshake: f64,
    /// CPU of this whole process (all clients, the harness) per handshake.
    pub(crate) client_cpu_us_per_handshake: f64,
    pub(crate) rss_before_kib: u64,
    pub(crate) rss_idle_kib: u64,
    pub(crate) hwm_idle_kib: u64,
    pub(crate) kib_per_client: f64,
    pub(crate) packets_sent: u64,
    pub(crate) packets_received: u64,
    pub(crate) client_drops: u64,
    pub(crate) send_secs: f64,
    pub(crate) packets_per_s: f64,
    pub(crate) mb_per_s: f64,
    pub(crate) loss_pct: f64,
    pub(crate) rss_after_traffic_kib: u64,
    pub(crate) hwm_after_traffic_kib: u64,
    pub(crate) server_closed: u64,
    /// Connections the server accepted (fewer than `connected` if the server closed
    /// clients it had confirmed).
    pub(crate) accepted: u64,
    /// This (client) process's VmRSS once all are connected.
    pub(crate) client_rss_kib: u64,
    /// Handshakes each server worker completed in the handshake phase.
    pub(crate) worker_handshakes: Vec<u64>,
    /// CPU time each server runtime thread spent in the handshake phase, ms.
    pub(crate) thread_cpu_ms: Vec<f64>,
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

pub(crate) async fn run(
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
    let start = server.lock().unwrap().stats();
    let cpu0 = start.cpu_us;
    let (clients, latencies, errors, span, client_cpu) =
        connect_all(carrier, &ids[..n], &creds, addr, concurrency).await;
    let end = server.lock().unwrap().stats();
    let cpu1 = end.cpu_us;
    drop(perf);
    out.thread_cpu_ms = end
        .thread_cpu_us
        .iter()
        .zip(start.thread_cpu_us.iter().chain(std::iter::repeat(&0)))
        .map(|(b, a)| b.saturating_sub(*a) as f64 / 1e3)
        .collect();
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
    // Read after the idle wait: the workers publish their counters once a second.
    out.worker_handshakes = idle_stats
        .worker_handshakes
        .iter()
        .zip(start.worker_handshakes.iter().chain(std::iter::repeat(&0)))
        .map(|(b, a)| b.saturating_sub(*a))
        .collect();
    eprintln!(
        "  per worker: handshakes {:?}; server threads' CPU in the handshake phase (ms; the workers', then the main thread's) {:?}",
        out.worker_handshakes, out.thread_cpu_ms
    );
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
