//! Carrier benchmark on loopback, through the real multi-carrier [`Listeners`] and [`dial`].
//!
//! For each carrier (UDP, QUIC, TLS over TCP):
//! - **connect**: from the start of `dial` until the server has received the client's
//!   first packet (dial, send one packet, accept, receive), median of [`DIALS`] dials;
//! - **throughput**, one way client → server, [`PAYLOAD`]-byte packets sent in batches of
//!   [`BATCH`] (`send_batch`) for [`SEND_TIME`] while a receiver task drains the server's
//!   connection, in two modes: *open loop* (the sender pushes as fast as `send_batch`
//!   takes batches: overload, so datagram carriers drop) and *windowed* (at most
//!   [`WINDOW`] packets sent but not yet received: what the pipeline sustains without
//!   overload). The delivered rate counts what arrived, from the first send to the last
//!   arrival (so the queues' drain time is included). Loss is split into drops at the
//!   client (link queue full), in the carrier (socket buffers, QUIC datagram buffers, the
//!   TLS reader's queue) and at the server (connection queue full: the receiver did not
//!   keep up). Median of [`RUNS`] runs, by delivered rate.
//!
//! Extra rows: UDP with the `Jitter` padding profile (sizes vary per datagram, so UDP GSO
//! cannot coalesce them), and QUIC with 1300-byte packets: a 1400-byte packet makes a
//! 1429-byte Aura datagram, above QUIC's DATAGRAM limit on loopback (1414 after MTU
//! discovery), so the 1400-byte QUIC row measures the stream fallback.
//!
//! The server side (server, receiving task) runs on a one-worker tokio runtime, the client
//! side (dial, sending loop) on a current-thread runtime: one core each.
//! A plain harness (criterion's statistics do not suit throughput with loss): it prints
//! markdown tables. MB/s are 10^6 bytes of IP payload per second.
//!
//! Run: `cargo bench -p aura-transport --bench carriers`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aura_testkit::TestPki;
use aura_transport::camo::shape::Profile;
use aura_transport::dial::{DialConfig, Dialed, dial};
use aura_transport::listen::Listeners;
use aura_transport::{Carrier, DriverHandle, PacketConn};
use rand_core::OsRng;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::timeout;

/// IP packet size of the throughput runs, bytes.
const PAYLOAD: usize = 1400;
/// Packets per `send_batch`.
const BATCH: usize = 64;
/// Dials per carrier for the connect time.
const DIALS: usize = 10;
/// Sending time of one throughput run.
const SEND_TIME: Duration = Duration::from_secs(2);
/// Packets in flight in the windowed runs: well below every queue on the path (link
/// queues hold 1024 datagrams, connection queues 4096; a window of 1024 still overflowed
/// the link queues now and then).
const WINDOW: u64 = 512;
/// Throughput runs per row.
const RUNS: usize = 3;
/// The receiver stops after this long without a packet once the sender is done.
const IDLE: Duration = Duration::from_millis(300);
/// Deadline for any single step.
const T: Duration = Duration::from_secs(30);
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Starts the server on the server runtime.
async fn server(pki: &TestPki, rt: &Handle) -> Listeners {
    let cfg = common::server_config(pki, LOCALHOST, pki.verifier().unwrap());
    rt.spawn(Listeners::bind(cfg)).await.unwrap().unwrap()
}

/// A dial configuration for a fresh client identity: the server treats a second
/// connection of the same identity as a reconnect of the first (no new accept).
fn dial_config(pki: &mut TestPki, s: &Listeners, carrier: Carrier) -> DialConfig {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!("bench{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let id = pki.issue_client(&name).unwrap();
    common::dial_config(pki, &id, s, &[carrier])
}

/// Dials, sends one packet and waits until the server has it. Returns the time taken, the
/// client's driver (kept alive by the caller) and both ends.
async fn connect(
    cfg: &DialConfig,
    s: &mut Listeners,
) -> (Duration, DriverHandle, PacketConn, PacketConn) {
    let started = Instant::now();
    let Dialed { conn, driver, .. } = timeout(T, dial(cfg, &mut OsRng)).await.unwrap().unwrap();
    conn.send(common::packet(0, 0, 64)).await.unwrap();
    let mut sc = timeout(T, s.accept()).await.unwrap().unwrap();
    timeout(T, sc.recv()).await.unwrap().unwrap();
    (started.elapsed(), driver, conn, sc)
}

struct Run {
    sent: u64,
    delivered: u64,
    client_drops: u64,
    server_drops: u64,
    secs: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.delivered as f64 / self.secs
    }
}

/// One throughput run. With `window`, the sender keeps at most that many packets in
/// flight (sent, not yet received): the rate the pipeline sustains without overload.
async fn throughput(
    rt: &Handle,
    c: &PacketConn,
    mut sc: PacketConn,
    size: usize,
    window: Option<u64>,
) -> (Run, PacketConn) {
    let done = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Notify::new());
    let receiver = {
        let (done, received, progress) = (done.clone(), received.clone(), progress.clone());
        rt.spawn(async move {
            let mut buf = Vec::with_capacity(256);
            let mut n = 0u64;
            let mut last = Instant::now();
            loop {
                buf.clear();
                match timeout(IDLE, sc.recv_batch(&mut buf, 256)).await {
                    Ok(0) => break,
                    Ok(k) => {
                        n += k as u64;
                        last = Instant::now();
                        received.store(n, Ordering::Release);
                        progress.notify_one();
                    }
                    Err(_) if done.load(Ordering::Acquire) => break,
                    Err(_) => {}
                }
            }
            (n, last, sc)
        })
    };
    let before = c.stats().drops;
    let template = vec![0x45u8; size];
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < SEND_TIME {
        if let Some(w) = window {
            while sent.saturating_sub(received.load(Ordering::Acquire)) > w {
                // A lost packet would hold the window forever: give up waiting after IDLE.
                if timeout(IDLE, progress.notified()).await.is_err() {
                    break;
                }
            }
        }
        let batch: Vec<Vec<u8>> = (0..BATCH).map(|_| template.clone()).collect();
        c.send_batch(batch).await.unwrap();
        sent += BATCH as u64;
    }
    done.store(true, Ordering::Release);
    let (delivered, last, sc) = receiver.await.unwrap();
    // The client's driver may still be dropping queued packets: wait until its drop
    // counter stands still.
    let mut drops = c.stats().drops;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = c.stats().drops;
        if now == drops {
            break;
        }
        drops = now;
    }
    let run = Run {
        sent,
        delivered,
        client_drops: drops - before,
        server_drops: sc.stats().drops,
        secs: last.duration_since(started).as_secs_f64(),
    };
    (run, sc)
}

struct Row {
    name: &'static str,
    size: usize,
    run: Run,
}

fn print_table(title: &str, rows: &[Row]) {
    println!();
    println!("{title}");
    println!();
    println!(
        "| carrier | packet B | sent | delivered | loss % (client / carrier / server) | delivered pkt/s | MB/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        let run = &r.run;
        let carrier = run
            .sent
            .saturating_sub(run.delivered + run.client_drops + run.server_drops);
        let pct = |n: u64| 100.0 * n as f64 / run.sent.max(1) as f64;
        println!(
            "| {} | {} | {} | {} | {:.1} ({:.1} / {:.1} / {:.1}) | {:.0} | {:.1} |",
            r.name,
            r.size,
            run.sent,
            run.delivered,
            pct(run.sent.saturating_sub(run.delivered)),
            pct(run.client_drops),
            pct(carrier),
            pct(run.server_drops),
            run.rate(),
            run.rate() * r.size as f64 / 1e6,
        );
    }
}

async fn bench(rt: Handle) {
    let mut pki = TestPki::new(11).unwrap();
    let mut s = server(&pki, &rt).await;

    let mut connects = Vec::new();
    for carrier in [Carrier::Udp, Carrier::Quic, Carrier::Tls] {
        let mut times = Vec::new();
        for _ in 0..DIALS {
            let cfg = dial_config(&mut pki, &s, carrier);
            let (t, _d, c, sc) = connect(&cfg, &mut s).await;
            times.push(t);
            c.close().await;
            sc.close().await;
        }
        times.sort();
        connects.push((carrier, times));
    }

    let cases: [(&str, Carrier, Option<Profile>, usize); 5] = [
        ("UDP", Carrier::Udp, None, PAYLOAD),
        (
            "UDP, Jitter profile",
            Carrier::Udp,
            Some(Profile::Jitter),
            PAYLOAD,
        ),
        ("QUIC (stream fallback)", Carrier::Quic, None, PAYLOAD),
        ("QUIC, DATAGRAM frames", Carrier::Quic, None, 1300),
        ("TLS", Carrier::Tls, None, PAYLOAD),
    ];
    let mut tables = Vec::new();
    for window in [None, Some(WINDOW)] {
        let mut rows = Vec::new();
        for (name, carrier, profile, size) in cases {
            let mut runs = Vec::new();
            for _ in 0..RUNS {
                let cfg = dial_config(&mut pki, &s, carrier);
                let (_, d, c, sc) = connect(&cfg, &mut s).await;
                if let Some(p) = profile {
                    d.set_udp_profile(Some(p)).await.unwrap();
                }
                let (run, sc) = throughput(&rt, &c, sc, size, window).await;
                eprintln!(
                    "{name} (window {window:?}): sent {} delivered {} in {:.2} s",
                    run.sent, run.delivered, run.secs
                );
                runs.push(run);
                c.close().await;
                sc.close().await;
                drop(d);
                // Let the closed connections' queues and sockets drain before the next run.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
            let run = runs.swap_remove(runs.len() / 2);
            rows.push(Row { name, size, run });
        }
        tables.push((window, rows));
    }

    println!();
    println!("Connect (dial start to first packet received by the server), {DIALS} dials:");
    println!();
    println!("| carrier | median | min | max |");
    println!("|---|---|---|---|");
    for (carrier, times) in &connects {
        let ms = |d: &Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
        println!(
            "| {carrier} | {} | {} | {} |",
            ms(&times[times.len() / 2]),
            ms(&times[0]),
            ms(&times[times.len() - 1])
        );
    }
    for (window, rows) in &tables {
        let title = match window {
            None => format!(
                "Throughput, open loop (batches of {BATCH} as fast as `send_batch` takes them), median of {RUNS} runs of {SEND_TIME:?}:"
            ),
            Some(w) => format!(
                "Throughput, at most {w} packets in flight (sender waits for the receiver), median of {RUNS} runs of {SEND_TIME:?}:"
            ),
        };
        print_table(&title, rows);
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // Two "processes" on one core each, as a client and a server on separate machines
    // would be: the server (its driver, carriers and the receiving task) on a one-worker
    // runtime; the client (its driver, carriers and the sending loop) on a current-thread
    // runtime driven by this thread. Sharing one runtime instead lets a fast sender starve
    // the receiving side of CPU and measures the scheduler more than the carriers.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("server")
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    client_rt.block_on(bench(server_rt.handle().clone()));
}
