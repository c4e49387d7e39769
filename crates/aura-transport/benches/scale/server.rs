//! The server child: the real listeners on one carrier, fed the PKI material on stdin,
//! answering `stats` lines with its memory, counts and CPU time.

use std::fmt::Write as _;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aura_pki::Verifier;
use aura_proto::{EcdsaP256Signer, EndpointConfig};
use aura_transport::listen::{ListenConfig, Listeners};
use aura_transport::{Carrier, PacketConn};
use rand_core::{OsRng, RngCore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::common;
use crate::sys::{cpu_us, memory_kib, raise_nofile, thread_cpu_us};

/// Bytes as lowercase hex, the form the PKI material crosses the child's stdin in.
pub(crate) fn hex(b: &[u8]) -> String {
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

#[derive(Default)]
struct Counts {
    accepted: AtomicU64,
    closed: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
}

/// The server process: reads the PKI material (4 hex lines: CA, CRL, server certificate,
/// server key) from stdin, serves, and answers `stats` lines until stdin closes.
pub(crate) fn server_main(carrier: Carrier) {
    raise_nofile();
    let mut lines = std::io::stdin().lines();
    let mut next = || unhex(&lines.next().unwrap().unwrap());
    let (ca, crl, cert, key) = (next(), next(), next(), next());
    // The daemon's layout (ADR 0023): each worker on a thread and current-thread
    // runtime of its own, the accept loop and listeners on the main thread's.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtimes = worker_threads(crate::workers());
    let counts = Arc::new(Counts::default());
    let (addr, listener_counters) = rt.block_on(async {
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
        let cfg = ListenConfig {
            endpoint,
            seed,
            udp: (carrier == Carrier::Udp).then_some(any),
            quic: (carrier == Carrier::Quic).then_some(any),
            tls: (carrier == Carrier::Tls).then_some(any),
            outer: Some(Arc::new(aura_transport::carrier::tls::OuterIdentity {
                cert_chain: vec![CertificateDer::from(cert.clone())],
                key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone())),
            })),
            tls_options: aura_transport::carrier::tls::TlsOptions::default(),
            quic_options: aura_transport::carrier::quic::QuicOptions::default(),
            masks: aura_transport::camo::mask::MaskSeed::for_ca(&ca),
            mem: None,
            wall_clock: common::wall,
            workers: crate::workers(),
        };
        let mut server = Listeners::bind_on(cfg, &runtimes).await.unwrap();
        let listener_counters = server.counters();
        let addr = match carrier {
            Carrier::Udp => server.udp_addr,
            Carrier::Quic => server.quic_addr,
            _ => server.tls_addr,
        }
        .unwrap();
        let counts = counts.clone();
        // Each connection served on its worker's thread, as `aura server` serves a client.
        tokio::spawn(async move {
            while let Some(conn) = server.accept().await {
                counts.accepted.fetch_add(1, Ordering::Relaxed);
                let w = aura_transport::carrier::udp::worker_of(conn.remote().ip(), runtimes.len());
                runtimes[w].spawn(serve(conn, counts.clone()));
            }
        });
        (addr, listener_counters)
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY {addr}").unwrap();
    out.flush().unwrap();
    // The main runtime runs (the accept loop, the listeners) while stdin is read, on a
    // thread listed after the workers' ("server-main").
    std::thread::Builder::new()
        .name("server-main".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))
        .unwrap();
    for line in lines {
        let Ok(line) = line else { break };
        match line.trim() {
            "stats" => {
                let (rss, hwm) = memory_kib();
                let list = |v: Vec<u64>| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
                let per_worker = listener_counters
                    .per_worker()
                    .iter()
                    .map(|w| w.handshakes.iter().sum())
                    .collect();
                writeln!(
                    out,
                    "STATS {rss} {hwm} {} {} {} {} {} {} {}",
                    counts.accepted.load(Ordering::Relaxed),
                    counts.closed.load(Ordering::Relaxed),
                    counts.packets.load(Ordering::Relaxed),
                    counts.bytes.load(Ordering::Relaxed),
                    cpu_us(),
                    list(per_worker),
                    list(thread_cpu_us("server")),
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

/// `count` threads (at least one), each running a current-thread runtime for ever (the
/// process exits without stopping them); their names start with "server".
fn worker_threads(count: usize) -> Vec<tokio::runtime::Handle> {
    (0..count.max(1))
        .map(|w| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name(format!("server-w{w}"))
                .spawn(move || rt.block_on(std::future::pending::<()>()))
                .unwrap();
            handle
        })
        .collect()
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
