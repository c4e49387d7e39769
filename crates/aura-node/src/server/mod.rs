//! `aura server`: the multi-client concentrator.
//!
//! Start-up is all or nothing, in this order: options from the configuration,
//! credentials, the metrics endpoint (`[server.metrics]`, when set), the admin socket,
//! leftovers of a crashed run removed, the TUN device
//! (with the server's tunnel address), the carriers, then forwarding and NAT. Any failure
//! undoes what was done and names the cause. Then it serves until `shutdown` resolves
//! (SIGINT or SIGTERM in `aura`), and undoes every host change on the way out.
//!
//! Every [`crl::CRL_RELOAD`] (by default) it re-reads the CRL file: a newer CRL closes the sessions it
//! revokes and is pushed to every connected client. The same tick keeps the CRL from
//! expiring ([`crl`]).
//!
//! - [`router`]: the data path (device reads dispatched by address, anti-spoofing);
//! - [`pool`]: tunnel addresses;
//! - [`crl`]: the CRL's reload, push and upkeep;
//! - [`metrics`]: what the Prometheus endpoint shows of the server;
//! - [`threads`]: a thread and runtime per protocol worker, where its data path runs.

pub mod crl;
pub mod metrics;
pub mod pool;
pub mod relay;
pub mod router;
pub mod threads;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use aura_config::ServerConfig;
use aura_netcfg::{L4, NatPlan};
use aura_pki::Verifier;
use aura_transport::PacketConn;
use aura_transport::camo::decoy::Decoy;
use aura_transport::listen::Listeners;
use aura_tun::{PacketDevice, TunConfig};
use rand_core::{OsRng, RngCore};

use crate::admin::{self, PeerStatus, Response};
use crate::creds::{self, Credentials};
use crate::device::TunFactory;
use crate::host::{Host, Network};
use crate::options::ServerOptions;
use crate::{DaemonError, Redact, dns};
use crl::{CrlLifetime, CrlUpkeep, Upkeep, crl_push, newer_crl};
use pool::IpPool;
use router::{Router, Welcome};

/// Runs the server on this host until `shutdown` resolves.
///
/// # Errors
/// Start-up failures (each names its cause); host changes are undone first.
pub async fn run(
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    run_with(cfg, None, shutdown).await
}

/// Makes the server's TUN device ahead of start-up, for a server about to drop its
/// privileges (`run_as`): it may need root to open `/dev/net/tun`. Call outside the
/// runtime; pass the result to [`run_with`].
///
/// # Errors
/// The configuration's options, or the device (named).
pub fn prepare_tun(cfg: &ServerConfig) -> Result<aura_tun::PreparedTun, DaemonError> {
    let opts = ServerOptions::from_config(cfg)?;
    Ok(aura_tun::Tun::prepare(&TunConfig {
        mtu: opts.mtu,
        queues: device_queues(&opts),
        ..TunConfig::new(opts.tun_name.clone())
    })?)
}

/// The server's TUN queues: one per worker, each with its own reader (clients write to
/// their worker's).
fn device_queues(opts: &ServerOptions) -> usize {
    opts.workers.clamp(1, aura_tun::MAX_QUEUES)
}

/// [`run`], with the TUN device made by [`prepare_tun`] when given.
///
/// # Errors
/// Start-up failures (each names its cause); host changes are undone first.
pub async fn run_with(
    cfg: ServerConfig,
    tun: Option<aura_tun::PreparedTun>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    let opts = ServerOptions::from_config(&cfg)?;
    let dry_run = opts.dry_run;
    match tun {
        Some(t) => {
            let host = Host::system_with(crate::device::KeptTun::new(t), dry_run);
            run_on(opts, host, shutdown).await
        }
        None => run_on(opts, Host::system(dry_run), shutdown).await,
    }
}

/// What the CRL looks like to `aura status`.
type CrlWarning = Arc<Mutex<Option<String>>>;

/// Runs the server with `opts` on `host` until `shutdown` resolves.
///
/// # Errors
/// Start-up failures (each names its cause); host changes are undone first.
pub async fn run_on<T: TunFactory>(
    opts: ServerOptions,
    mut host: Host<T>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    // First: a second server in this network namespace stops here, touching nothing.
    host.netcfg.claim(aura_netcfg::Role::Server)?;
    let (creds, verifier) = opts.files.load()?;
    // Before any host change: a decoy certificate that does not load stops the start here.
    let decoy = opts
        .carriers
        .decoy
        .as_ref()
        .map(|d| d.load(&opts.carriers.masks.palette))
        .transpose()?;
    let router = Router::new(IpPool::new(&opts.pool));
    let _metrics =
        metrics::start(&opts, &host.network, &router, &verifier, host.wall_clock).await?;
    let warning = CrlWarning::default();
    let admin_task = admin::serve_redacting(
        &opts.admin_socket,
        opts.redact,
        status_handler(&router, &warning),
    )
    .await?;
    let socket_path = opts.admin_socket.clone();
    // Only this role's leftovers: a client in the same namespace keeps its routes.
    if let Err(e) = host.netcfg.cleanup_leftovers().await {
        admin_task.abort();
        let _ = std::fs::remove_file(&socket_path);
        return Err(e.into());
    }
    let result = serve(
        &opts, creds, verifier, decoy, &mut host, router, warning, shutdown,
    )
    .await;
    admin_task.abort();
    let _ = std::fs::remove_file(&socket_path);
    if let Err(e) = host.netcfg.undo().await {
        tracing::error!(error = %e, "could not undo every host change");
        if result.is_ok() {
            return Err(e.into());
        }
    }
    result
}

/// The admin socket's answer: the connected peers and any CRL warning.
fn status_handler(router: &Arc<Router>, warning: &CrlWarning) -> admin::Handler {
    let router = router.clone();
    let warning = warning.clone();
    admin::sync_handler(move |req| {
        if !matches!(req, admin::Request::Status) {
            return Response::Error {
                message: "a server has no split-tunnel routes (route commands are for a client)"
                    .into(),
            };
        }
        status_response(&router, &warning)
    })
}

fn status_response(router: &Router, warning: &CrlWarning) -> Response {
    Response::Server {
        peers: router
            .peers()
            .into_iter()
            .map(|p| {
                let s = p.sender.stats();
                let cover = p.sender.cover_stats();
                PeerStatus {
                    id: p.id,
                    carrier: p.sender.carrier().name().into(),
                    encryption: p.sender.encryption().into(),
                    remote: p.sender.remote().to_string(),
                    tunnel_address: p.address.to_string(),
                    tunnel_address6: p.address6.map(|a| a.to_string()).unwrap_or_default(),
                    bytes_in: s.bytes_in,
                    bytes_out: s.bytes_out,
                    last_handshake: s.last_handshake,
                    connected_since: p.since,
                    padding_out: cover.padding_out,
                    padding_in: cover.padding_in,
                }
            })
            .collect(),
        warnings: warning
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect(),
    }
}

/// The CRL in use and what keeps it current.
struct CrlState {
    number: u64,
    der: Vec<u8>,
    lifetime: CrlLifetime,
    upkeep: CrlUpkeep,
    warning: CrlWarning,
}

#[allow(clippy::too_many_arguments)]
async fn serve<T: TunFactory>(
    opts: &ServerOptions,
    creds: Credentials,
    verifier: Verifier,
    decoy: Option<Decoy>,
    host: &mut Host<T>,
    router: Arc<Router>,
    warning: CrlWarning,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    let redact = opts.redact;
    let (gateway, prefix_len) = router.server_address();
    let gateway6 = router.server_address6();
    let threads = threads::WorkerThreads::start(opts.workers)?;
    let tun = Arc::new(
        host.tuns
            .create_on(
                &TunConfig {
                    address: Some((gateway, prefix_len)),
                    address6: gateway6,
                    mtu: opts.mtu,
                    queues: device_queues(opts),
                    ..TunConfig::new(opts.tun_name.clone())
                },
                threads.handles(),
            )
            .await?,
    );
    tracing::info!(
        tun = tun.name(),
        address = %gateway,
        prefix_len,
        mtu = tun.mtu(),
        offload = ?tun.offload_mode(),
        queues = tun.queue_count(),
        "TUN device up"
    );

    let mut crl = CrlState {
        number: creds::crl_number(&verifier),
        der: creds.crl_der.clone(),
        lifetime: CrlLifetime::of(&verifier),
        upkeep: CrlUpkeep::new(opts.crl.resign.clone()),
        warning,
    };
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let listen = opts.listen_config(
        &creds,
        verifier,
        seed,
        &host.network,
        host.wall_clock,
        decoy,
    );
    let mut listeners = Listeners::bind_on(listen, threads.handles()).await?;
    router.observed.listening(listeners.counters());

    // DNS: the resolvers named to clients, and the forwarder when they are our own.
    let mut firewall = opts.firewall.clone();
    let (dns_names, _forwarder) = match &opts.dns {
        Some(list) => (list.clone(), None),
        None if matches!(host.network, Network::Memory(_)) => {
            // The in-memory network has no sockets to answer on: name the address only.
            (vec![IpAddr::V4(gateway)], None)
        }
        None => {
            let upstreams = dns::host_upstreams(&opts.resolv_conf, IpAddr::V4(gateway))?;
            let count = upstreams.len();
            let forwarder = dns::Relay::start(
                SocketAddr::new(IpAddr::V4(gateway), dns::PORT),
                dns::Askers::Pool(opts.pool.cidr.network(), prefix_len),
                Arc::new(std::sync::RwLock::new(upstreams)),
                None,
            )
            .await
            .map_err(|e| match e {
                DaemonError::Dns(m) => DaemonError::Dns(format!(
                    "{m}: set [server] dns to the resolvers clients should use, or [] for none"
                )),
                other => other,
            })?;
            for rule in [(L4::Udp, dns::PORT), (L4::Tcp, dns::PORT)] {
                if !firewall.allow_host_ports.contains(&rule) {
                    firewall.allow_host_ports.push(rule);
                }
            }
            tracing::info!(
                listen = %forwarder.listen,
                upstreams = count,
                "DNS forwarder up: clients resolve through the tunnel"
            );
            (vec![IpAddr::V4(gateway)], Some(forwarder))
        }
    };

    if let Some(egress) = &opts.nat {
        let netcfg = &mut host.netcfg;
        netcfg.enable_forwarding().await?;
        let pool = opts.pool.cidr;
        netcfg
            .apply_nat(&NatPlan {
                pool: (pool.network(), pool.prefix_len()),
                tun: tun.name().to_owned(),
                egress: egress.clone(),
                firewall,
                pool6: router.network6(),
                nat66: opts.nat66,
                egress6: opts.egress6.clone(),
            })
            .await?;
        if netcfg.is_dry_run() {
            for cmd in netcfg.planned() {
                tracing::info!(command = %cmd, "dry run: would run");
            }
        }
    } else {
        tracing::info!("server.nat.auto is off: no forwarding or NAT set up");
    }

    // Per queue of the device, a reader on its worker's thread (each client's task
    // writes its own packets). These tasks are supervised: if one ends (a read error, a
    // panic), the server stops with an error, the host is undone and a supervisor can
    // restart it, instead of accepting clients while forwarding nothing.
    let queues = router::DeviceQueues::new(&tun);
    let mut data_path = tokio::task::JoinSet::new();
    for (w, queue) in queues.all().iter().enumerate() {
        let (reader, queue) = (router.clone(), queue.clone());
        let read = async move {
            match reader.device_loop(queue).await {
                Ok(()) => "the TUN reader ended".to_owned(),
                Err(e) => format!("reading the TUN device failed: {e}"),
            }
        };
        match threads.of(w) {
            Some(rt) => data_path.spawn_on(read, rt),
            None => data_path.spawn(read),
        };
    }
    // Dropped on every way out of `serve`: no way leaves the device tasks (and with them
    // the TUN device) behind.
    let mut data_path = AbortAllOnDrop(data_path);
    tracing::info!(
        name = %opts.name,
        udp = ?listeners.udp_addr,
        quic = ?listeners.quic_addr,
        tls = ?listeners.tls_addr,
        memory = ?listeners.mem_addr,
        workers = listeners.workers(),
        "server ready"
    );
    crate::service::ready("serving");

    match &opts.relay {
        Some(p) if p.allow.is_empty() => tracing::warn!(
            "relay on with an empty server.relay.allow_extend_to: clients may extend their \
             circuits to any address"
        ),
        Some(p) => tracing::info!(hops = p.allow.len(), "relay on"),
        None => {}
    }
    // In memory (tests) a relay reaches the next hops through the same network.
    let onward = match (&host.network, listeners.mem_addr) {
        (Network::Memory(net), Some(at)) => relay::Onward::Memory(net.clone(), at),
        _ => relay::Onward::Network(Some(std::sync::Arc::new(
            opts.onward_dial(&creds, host.wall_clock),
        ))),
    };
    let cover = opts.cover.map(|policy| {
        tracing::info!(
            max_budget_permille = policy.max_budget,
            total_budget_permille = policy.total_budget,
            "cover traffic granted to clients that ask"
        );
        router::ServerCover {
            policy,
            limit: aura_transport::CoverLimit::new(policy.total_budget),
        }
    });
    let mut reload = tokio::time::interval(opts.crl.reload);
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clients = tokio::task::JoinSet::new();
    let mut stopped = None;
    // The certificate in use, for reloads to compare with.
    let mut cert_der = creds.cert_der.clone();
    // The watchdog is fed from this loop: a loop that stalls stops feeding it.
    let mut watchdog = crate::service::watchdog_interval().map(tokio::time::interval);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = opts.reload.requested() => {
                crate::service::reloading();
                tracing::info!("reload: re-reading the CRL, the certificate and the key");
                let now = i64::try_from((host.wall_clock)().as_secs()).unwrap_or(i64::MAX);
                keep_crl_current(opts, &creds.ca_der, &mut crl, &listeners, &router, now).await?;
                reload_identity(opts, &creds.ca_der, &mut cert_der, &listeners, host.wall_clock)
                    .await?;
                crate::service::ready("serving");
            }
            () = tick(&mut watchdog) => crate::service::watchdog(),
            conn = listeners.accept() => {
                let Some(conn) = conn else { break };
                let welcome = Welcome {
                    mtu: opts.mtu,
                    dns: dns_names.clone(),
                    relay: opts.relay.clone(),
                    onward: onward.clone(),
                    extra: if opts.crl.push { crl_push(crl.number, &crl.der) } else { Vec::new() },
                    since: (host.wall_clock)().as_secs(),
                    cover: cover.clone(),
                };
                admit(&mut clients, &router, conn, (&queues, &threads), welcome, redact);
            }
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
            _ = reload.tick() => {
                let now = i64::try_from((host.wall_clock)().as_secs()).unwrap_or(i64::MAX);
                keep_crl_current(opts, &creds.ca_der, &mut crl, &listeners, &router, now).await?;
            }
            () = &mut shutdown => {
                crate::service::stopping();
                tracing::info!("stopping");
                break;
            }
            Some(r) = data_path.0.join_next() => {
                stopped = Some(match r {
                    Ok(why) => why,
                    Err(e) => format!("a TUN device task failed: {e}"),
                });
                break;
            }
        }
    }
    for p in router.peers() {
        p.sender.close().await;
    }
    clients.abort_all();
    data_path.0.abort_all();
    // Each worker drops its tasks (the device's queues and sockets with them) before
    // the host is undone.
    threads.stop().await;
    match stopped {
        Some(why) => {
            tracing::error!(reason = %why, "data path stopped: stopping the server");
            Err(DaemonError::DataPath(why))
        }
        None => Ok(()),
    }
}

/// The next tick of `interval`, or never without one.
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Aborts its tasks when dropped, so no way out of [`serve`] leaves the device tasks (and
/// with them the TUN device) behind.
struct AbortAllOnDrop<T: 'static>(tokio::task::JoinSet<T>);

impl<T: 'static> Drop for AbortAllOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort_all();
    }
}

/// Starts the task that serves one connected client, on the thread of its worker.
fn admit<D: PacketDevice + 'static>(
    clients: &mut tokio::task::JoinSet<()>,
    router: &Arc<Router>,
    conn: PacketConn,
    (queues, threads): (&router::DeviceQueues<D>, &threads::WorkerThreads),
    welcome: Welcome,
    redact: Redact,
) {
    let id = conn.peer().id.clone();
    crate::log::hide(&id);
    tracing::info!(
        client = redact.id(&id),
        carrier = conn.carrier().name(),
        remote = %redact.addr(&conn.remote()),
        "client connected"
    );
    let r = router.clone();
    let w = queues.index_for(&conn);
    let q = queues.for_client(&conn);
    let shown = redact.id(&id).to_owned();
    let serve = async move {
        match r.serve_client(conn, q, welcome).await {
            Ok(()) => tracing::info!(client = %shown, "client disconnected"),
            Err(e) => tracing::warn!(client = %shown, error = %e, "client refused"),
        }
    };
    match threads.of(w) {
        Some(rt) => clients.spawn_on(serve, rt),
        None => clients.spawn(serve),
    };
}

/// A reload's certificate step: when the certificate file holds another certificate
/// than `current`, and it and the key load, match, chain to the same CA and carry this
/// server's name, new handshakes use them (the Aura handshake, and QUIC and TLS where they
/// present the server's own certificate); sessions go on. Anything wrong is logged and
/// the certificate in use stays.
async fn reload_identity(
    opts: &ServerOptions,
    ca_der: &[u8],
    current: &mut Vec<u8>,
    listeners: &Listeners,
    wall_clock: fn() -> rustls_pki_types::UnixTime,
) -> Result<(), DaemonError> {
    let (fresh, verifier) = match opts.files.load() {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!(error = %e, "reload: the files do not load; nothing changed");
            return Ok(());
        }
    };
    if fresh.cert_der == *current {
        return Ok(());
    }
    if fresh.ca_der != ca_der {
        tracing::error!(
            "reload: the CA certificate changed; a new CA needs a restart. The certificate \
             in use stays"
        );
        return Ok(());
    }
    if let Err(e) = verifier.verify_server(&fresh.cert_der, &opts.name, wall_clock()) {
        tracing::error!(
            error = %e,
            "reload: the new certificate would be refused by clients; the one in use stays"
        );
        return Ok(());
    }
    match listeners
        .set_identity(fresh.identity.clone(), fresh.outer())
        .await
    {
        Ok(()) => {
            tracing::info!("reload: the new certificate and key are in use for new sessions");
            current.clone_from(&fresh.cert_der);
            Ok(())
        }
        Err(aura_transport::TransportError::Closed) => {
            Err(DaemonError::DataPath("the carriers' driver ended".into()))
        }
        Err(e) => {
            tracing::error!(error = %e, "reload: the new certificate is unusable; the one in use stays");
            Ok(())
        }
    }
}

/// One tick of CRL upkeep at `now`: re-sign or warn as the CRL's lifetime calls for,
/// then take a newer CRL from the file (re-checking sessions and pushing it).
async fn keep_crl_current(
    opts: &ServerOptions,
    ca_der: &[u8],
    crl: &mut CrlState,
    listeners: &Listeners,
    router: &Router,
    now: i64,
) -> Result<(), DaemonError> {
    match crl.upkeep.due(crl.lifetime, now) {
        Upkeep::Resign => {
            crl.upkeep.resign(now);
        }
        Upkeep::Warn(w) => tracing::warn!("{w}"),
        Upkeep::Nothing => {}
    }
    if let Some((number, der, v)) = newer_crl(&opts.files.crl, ca_der, crl.number, &crl.der) {
        tracing::info!(
            crl_number = number,
            "new CRL: re-checking sessions and pushing it to clients"
        );
        crl.lifetime = CrlLifetime::of(&v);
        router.observed.crl(crl.lifetime);
        listeners.set_verifier(v).await?;
        crl.number = number;
        crl.der = der;
        if opts.crl.push {
            let push = crl_push(number, &crl.der);
            for p in router.peers() {
                let _ = p.sender.send_batch(push.clone()).await;
            }
        }
    }
    *crl.warning.lock().unwrap_or_else(PoisonError::into_inner) =
        crl.upkeep.status(crl.lifetime, now);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(extra: &str, pki: &str) -> ServerConfig {
        toml::from_str(&format!(
            "[server]\nname = \"vpn.test\"\n{extra}\n[transport]\nknock = false\n\
             [pki]\nca_cert = \"a\"\ncert = \"b\"\nkey = \"c\"\ncrl = \"d\"\n{pki}"
        ))
        .unwrap()
    }

    #[test]
    fn run_as_with_a_ca_key_is_refused_by_name() {
        assert!(ServerOptions::from_config(&config("run_as = \"aura\"", "")).is_ok());
        let e = ServerOptions::from_config(&config("run_as = \"aura\"", "ca_key = \"pki/ca.key\""))
            .unwrap_err();
        assert!(e.to_string().starts_with("pki.ca_key: "), "{e}");
        assert!(e.to_string().contains("aura pki crl"), "{e}");
    }
}
