//! The clients' phases: connect all (phase 1) and send under a shared window (phase 3).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aura_pki::Verifier;
use aura_proto::{Endpoint, EndpointConfig};
use aura_testkit::TEST_SERVER_NAME;
use aura_transport::dial::{ClientCredentials, DialConfig, dial};
use aura_transport::{BatchPool, Carrier, Driver, DriverHandle, PacketConn, PacketSender};
use rand_core::{OsRng, RngCore};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::child::ServerChild;
use crate::common;
use crate::sys::cpu_us;
use crate::{
    BATCH, CONNECT_MAX, DRAIN_MAX, DRAIN_QUIET, FIRST_SOURCE, LINE_MAX, PACKET, PHASE_MAX, STALL,
    WINDOW,
};

/// What a client needs from the PKI.
#[derive(Clone)]
pub(crate) struct Creds {
    pub(crate) ca: Arc<Vec<u8>>,
    pub(crate) crl: Arc<Vec<u8>>,
}

/// A connected client: its connection and driver (dropping both ends the driver).
pub(crate) struct Client {
    pub(crate) conn: PacketConn,
    pub(crate) _driver: DriverHandle,
}

/// A UDP client's endpoint, built before the timed phase.
pub(crate) fn udp_endpoint(creds: &Creds, id: &aura_testkit::Identity) -> Endpoint {
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

pub(crate) fn dial_config(
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
            secret: aura_proto::DeploymentSecret::from_ca(&creds.ca),
        },
        server_name: TEST_SERVER_NAME.into(),
        server: addr.ip(),
        bridges: vec![],
        carriers: vec![carrier],
        udp_port: addr.port(),
        quic_port: addr.port(),
        tls_port: addr.port(),
        attempt_timeout: Duration::from_secs(20),
        timers: aura_proto::Timers::default(),
        tls_options: aura_transport::carrier::tls::TlsOptions::default(),
        quic_options: aura_transport::carrier::quic::QuicOptions::default(),
        masks: aura_transport::camo::mask::MaskSeed::for_ca(&creds.ca),
        mem: None,
        wall_clock: common::wall,
    }
}

pub(crate) type ConnectResult = (Result<(PacketConn, DriverHandle), String>, Instant, Instant);

/// Phase 1: connects all clients, at most `concurrency` at once.
pub(crate) async fn connect_all(
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
            let socket =
                aura_transport::carrier::udp::bind(SocketAddr::new(IpAddr::V4(ip), 0)).unwrap();
            // The driver (and its batch socket) is set up here too: quinn-udp's socket
            // setup toggles a kernel static key (text patching with IPIs to every CPU),
            // which cost the client process ~18 % of its CPU when done inside the timed
            // phase.
            let (handle, _accept) = Driver::spawn(
                udp_endpoint(creds, id),
                Some(socket),
                aura_transport::camo::mask::MaskSeed::for_ca(&creds.ca),
            );
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
pub(crate) struct StopFlag(Arc<AtomicBool>);

impl Drop for StopFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Phase 3: every client sends for `send_time` under a shared window. Returns (sent,
/// received, seconds from the first send to the last arrival, bytes received).
pub(crate) async fn traffic(
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
