//! `aura client`: dial, bring the TUN up with the address the server assigns, route all
//! traffic into it (the server's own addresses stay on their current path), and keep it
//! that way: when the session dies (no packet for [`crate::options::daemon_timers`]'s
//! dead-peer time, a closed carrier), dial again with exponential backoff and jitter.
//! Routes stay in place while reconnecting, so nothing leaks around the tunnel meanwhile.
//!
//! A refusal (revoked or expired certificate, wrong CA, wrong server name) ends the client
//! with an error: retrying cannot fix it.
//!
//! While the tunnel is up the system resolves through it (`dns`, `[client] dns`).
//!
//! On `shutdown` the resolver file is put back, the routes are removed and the TUN
//! deleted: the host is as it was before.
//!
//! - this file: start-up and the reconnect loop;
//! - `state`: what one run keeps across sessions, and what `aura status` and the
//!   metrics endpoint (`[client.metrics]`) show;
//! - `session`: one connected session: the address, control messages, packets;
//! - `tunnel`: the TUN device and routes for the current address assignment.
//!
//! Imports run one way: this file over `session` over `state` over `tunnel`.

mod dns;
mod routes;
mod session;
mod state;
mod tunnel;

pub use routes::{RouteBook, SharedRouteBook};

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aura_config::ClientConfig;
use aura_proto::HandshakeError;
use aura_proto::control::CrlAssembler;
use aura_transport::circuit::{Hop, dial_circuit};
use aura_transport::dial::{Dialed, dial};
use aura_transport::{PacketSender, TransportError};
use rand_core::{OsRng, RngCore};

use crate::admin::{self, Response};
use crate::device::TunFactory;
use crate::host::Host;
use crate::options::ClientOptions;
use crate::{DaemonError, creds};
pub use state::ClientState;
use state::{Client, Status, lock};

/// First wait after a failed dial; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest wait between dials.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A session that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);
/// How often learnt addresses of domain rules are checked for expiry.
const EXPIRY_SWEEP: Duration = Duration::from_secs(30);

async fn resolve(what: &'static str, host: &str) -> Result<IpAddr, DaemonError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let problem = |problem: String| DaemonError::Resolve {
        what,
        host: host.to_owned(),
        problem,
    };
    let mut addrs = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| problem(format!("does not resolve: {e}")))?;
    addrs
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| problem("has no address".into()))
}

/// Exponential backoff with ±20 % jitter.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self { next: BACKOFF_MIN }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    fn wait(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        // 0.8 .. 1.2 times the base.
        let permille = 800 + OsRng.next_u32() % 401;
        base * permille / 1000
    }
}

/// Runs the client on this host until `shutdown` resolves.
///
/// # Errors
/// Start-up failures and refusals (each names its cause); routes are restored first.
pub async fn run(
    cfg: ClientConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    run_with(cfg, None, shutdown).await
}

/// Makes the client's TUN device ahead of start-up, for a client about to drop its
/// privileges (`run_as`): it may need root to open `/dev/net/tun`. The device is kept for
/// the client's whole life and fitted to each address assignment. Call outside the
/// runtime; pass the result to [`run_with`].
///
/// # Errors
/// The configuration's options, or the device (named).
pub fn prepare_tun(cfg: &ClientConfig) -> Result<aura_tun::PreparedTun, DaemonError> {
    let opts = ClientOptions::from_config(cfg)?;
    Ok(aura_tun::Tun::prepare(&aura_tun::TunConfig {
        mtu: opts.mtu,
        ..aura_tun::TunConfig::new(opts.tun_name.clone())
    })?)
}

/// [`run`], with the TUN device made by [`prepare_tun`] when given.
///
/// # Errors
/// Start-up failures and refusals (each names its cause); routes are restored first.
pub async fn run_with(
    cfg: ClientConfig,
    tun: Option<aura_tun::PreparedTun>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    let opts = ClientOptions::from_config(&cfg)?;
    let dry_run = opts.routing.dry_run;
    match tun {
        Some(t) => {
            let host = Host::system_with(crate::device::KeptTun::new(t), dry_run);
            run_on(opts, host, shutdown).await
        }
        None => run_on(opts, Host::system(dry_run), shutdown).await,
    }
}

/// Runs the client with `opts` on `host` until `shutdown` resolves.
///
/// # Errors
/// Start-up failures and refusals (each names its cause); routes are restored first.
pub async fn run_on<T: TunFactory>(
    opts: ClientOptions,
    mut host: Host<T>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    // First: a second client in this network namespace stops here, touching nothing.
    host.netcfg.claim(aura_netcfg::Role::Client)?;
    let (creds, verifier) = opts.files.load()?;
    // What `no_logs` keeps out of every line: who this is and whom it dials.
    if let Ok(me) = verifier.verify_client(&creds.cert_der, (host.wall_clock)()) {
        crate::log::hide(&me.id);
    }
    crate::log::hide(&opts.server);
    crate::log::hide(&opts.server_name);
    for b in &opts.bridges {
        crate::log::hide(b);
    }
    if let Some(c) = &opts.circuit {
        crate::log::hide(&c.entry.0);
        crate::log::hide(&c.entry.1);
        for (address, name) in &c.middle {
            crate::log::hide(address);
            crate::log::hide(name);
        }
    }
    let server = resolve("client.server", &opts.server).await?;
    let mut bridges = Vec::new();
    for b in &opts.bridges {
        bridges.push(resolve("client.bridges", b).await?);
    }
    // Through a circuit the client dials the entry (its bridges are the entry's other
    // addresses); each relay reaches the next hop on the same carriers, in the same
    // order, at the same ports.
    let mut hops = Vec::new();
    let first = match &opts.circuit {
        None => server,
        Some(c) => {
            let entry = resolve("client.circuit.entry", &c.entry.0).await?;
            for (address, name) in &c.middle {
                let ip = resolve("client.circuit.middle", address).await?;
                hops.push(Hop {
                    ip,
                    name: name.clone(),
                });
            }
            hops.push(Hop {
                ip: server,
                name: opts.server_name.clone(),
            });
            entry
        }
    };
    let peers: Vec<IpAddr> = std::iter::once(first)
        .chain(bridges.iter().copied())
        .collect();
    let mut dial_cfg = opts.dial_config(&creds, first, bridges, &host.network, host.wall_clock);
    if let Some(c) = &opts.circuit {
        dial_cfg.server_name = c.entry.1.clone();
        tracing::info!(
            hops = c.hops(),
            entry = %opts.redact.id(&c.entry.0),
            "reaching the server through a circuit"
        );
    }
    let status = Status::default();
    let _metrics = state::serve_metrics(&opts, &host.network, &status).await?;
    let shown = status.clone();
    let book: SharedRouteBook = Arc::new(tokio::sync::Mutex::new(RouteBook::new(
        &opts.routing,
        host.netcfg.sibling(),
        peers.clone(),
        opts.kill_switch,
    )));
    let rules = book.clone();
    let admin_task = admin::serve_redacting(
        &opts.admin_socket,
        opts.redact,
        Arc::new(move |req| {
            let shown = shown.clone();
            let rules = rules.clone();
            Box::pin(async move { answer(req, &shown, &rules).await })
        }),
    )
    .await?;
    let socket_path = opts.admin_socket.clone();
    // Only this role's leftovers: a server in the same namespace keeps its NAT. A kill
    // switch left in place (lockdown, a crash) stays until the new one replaces it.
    if opts.kill_switch {
        host.netcfg.keep_leftover_kill_switch();
    }
    if let Err(e) = host.netcfg.cleanup_leftovers().await {
        admin_task.abort();
        let _ = std::fs::remove_file(&socket_path);
        return Err(e.into());
    }
    // The kill switch first: from here until the client stops, nothing leaves outside
    // the tunnel but the carriers (and DHCP, IPv6 on the link, DIRECT networks).
    if opts.kill_switch {
        let plan = aura_netcfg::KillSwitchPlan {
            tun: opts.tun_name.clone(),
            peers,
            direct: opts.routing.direct.clone(),
        };
        if let Err(e) = host.netcfg.apply_kill_switch(&plan).await {
            admin_task.abort();
            let _ = std::fs::remove_file(&socket_path);
            return Err(e.into());
        }
        tracing::info!(
            "kill switch on: nothing leaves outside the tunnel but the carriers to the \
             server, DHCP and DIRECT networks"
        );
    }
    let mut dns = dns::Dns::new(opts.dns.clone(), &host.netcfg);
    // The stub needs sockets: on the in-memory network the system is pointed at the
    // resolvers themselves.
    if matches!(host.network, crate::host::Network::System)
        && let Err(e) = dns.start_stub(book.clone()).await
    {
        admin_task.abort();
        let _ = std::fs::remove_file(&socket_path);
        return Err(e);
    }
    // Learnt addresses of domain rules lose their routes when their hold runs out.
    let expiry_book = book.clone();
    let expiry = tokio::spawn(async move {
        let mut tick = tokio::time::interval(EXPIRY_SWEEP);
        loop {
            tick.tick().await;
            expiry_book
                .lock()
                .await
                .expire(tokio::time::Instant::now())
                .await;
        }
    });
    let mut client = Client {
        dns,
        crl_number: creds::crl_number(&verifier),
        routes: book,
        opts,
        dial: dial_cfg,
        hops,
        hop_drivers: Vec::new(),
        circuit_entry: None,
        host,
        tunnel: None,
        status,
        crl: CrlAssembler::new(),
    };
    // Ready once started: connecting may take as long as the network does, and the
    // admin socket answers meanwhile. The watchdog is fed while the runtime runs.
    crate::service::ready("connecting");
    let watchdog = crate::service::watchdog_interval().map(|every| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                crate::service::watchdog();
            }
        })
    });
    let result = tokio::select! {
        r = client.keep_connected() => r,
        () = shutdown => {
            crate::service::stopping();
            tracing::info!("stopping");
            Ok(())
        }
    };
    admin_task.abort();
    expiry.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    let _ = std::fs::remove_file(&socket_path);
    let current = client
        .tunnel
        .as_ref()
        .and_then(|t| t.current.borrow().clone());
    if let Some(s) = current {
        s.close().await;
    }
    if let Err(e) = client.dns.undo().await {
        tracing::error!(error = %e, "could not restore the resolver configuration");
    }
    client.routes.lock().await.uninstall().await;
    if client.opts.lockdown && client.host.netcfg.release_kill_switch() {
        tracing::warn!(
            "lockdown: the kill switch stays in place until `aura client` runs again or \
             `aura client unlock` lifts it"
        );
    }
    let undo = client.host.netcfg.undo().await;
    client.tunnel = None;
    if let Err(e) = undo {
        tracing::error!(error = %e, "could not restore every route");
        if result.is_ok() {
            return Err(e.into());
        }
    }
    result
}

/// The admin socket's answer to `req`.
async fn answer(req: admin::Request, status: &Status, book: &SharedRouteBook) -> Response {
    let changed = match req {
        admin::Request::Status => {
            let s = lock(status);
            let live = s
                .current
                .as_ref()
                .map(PacketSender::stats)
                .unwrap_or_default();
            return Response::Client {
                state: s.state.name().into(),
                server: s.server.clone(),
                carrier: s.carrier.clone(),
                encryption: s
                    .current
                    .as_ref()
                    .map(PacketSender::encryption)
                    .unwrap_or_default()
                    .into(),
                address: s.address.clone(),
                address6: s.address6.clone(),
                bytes_in: s.bytes_in + live.bytes_in,
                bytes_out: s.bytes_out + live.bytes_out,
                last_handshake: s.last_handshake.max(live.last_handshake),
                circuit: s.circuit.clone(),
                cover: s.cover.clone().map(|mut c| {
                    let counts = s
                        .current
                        .as_ref()
                        .map(PacketSender::cover_stats)
                        .unwrap_or_default();
                    c.padding_out = counts.padding_out;
                    c.padding_in = counts.padding_in;
                    c.delayed = counts.delayed;
                    c
                }),
            };
        }
        admin::Request::RouteList => Ok(()),
        admin::Request::RouteAdd { kind, rule } => book.lock().await.add(&kind, &rule).await,
        admin::Request::RouteRemove { rule } => book.lock().await.remove(&rule).await,
    };
    match changed {
        Ok(()) => Response::Routes {
            rules: book.lock().await.list(),
        },
        Err(message) => Response::Error { message },
    }
}

impl<T: TunFactory> Client<T> {
    /// Dials the server, directly or through the circuit.
    async fn dial(&mut self) -> Result<Dialed, TransportError> {
        if self.hops.is_empty() {
            return dial(&self.dial, &mut OsRng).await;
        }
        let (d, built) = dial_circuit(&self.dial, &self.hops, &mut OsRng).await?;
        self.hop_drivers = built.iter().map(|h| h.driver.clone()).collect();
        self.circuit_entry = built.first().map(|h| h.addr);
        lock(&self.status).circuit = built
            .iter()
            // Kept whole: the admin socket hides them under `no_logs`.
            .map(|h| crate::admin::HopStatus {
                name: h.name.clone(),
                address: h.addr.to_string(),
                carrier: h.carrier.name().into(),
                state: "up".into(),
            })
            .collect();
        Ok(d)
    }

    async fn keep_connected(&mut self) -> Result<(), DaemonError> {
        let mut backoff = Backoff::new();
        loop {
            match self.dial().await {
                Ok(d) => {
                    let started = Instant::now();
                    let outcome = self.session(d).await;
                    self.hop_drivers.clear();
                    for h in &mut lock(&self.status).circuit {
                        h.state = "down".into();
                    }
                    if let Some(t) = &self.tunnel {
                        t.current.send_replace(None);
                    }
                    {
                        let mut s = lock(&self.status);
                        if let Some(c) = s.current.take() {
                            s.tally.settle_conn(0, &c);
                            let st = c.stats();
                            s.bytes_in += st.bytes_in;
                            s.bytes_out += st.bytes_out;
                        }
                        s.state = ClientState::Reconnecting;
                    }
                    match outcome {
                        Ok(()) => tracing::warn!("session ended: dialling again"),
                        Err(e) if e.is_recoverable() => {
                            tracing::warn!(error = %e, "session ended: dialling again");
                        }
                        Err(e) => return Err(e),
                    }
                    if started.elapsed() >= STABLE {
                        backoff.reset();
                    }
                    tokio::time::sleep(backoff.wait() / 4).await;
                }
                Err(TransportError::Handshake {
                    carrier,
                    addr,
                    error,
                }) if !matches!(error, HandshakeError::Timeout) => {
                    return Err(DaemonError::Refused(format!(
                        "handshake with {} over {carrier} refused: {error}",
                        self.opts.redact.addr(&addr)
                    )));
                }
                // A relay that refuses the next hop, or is no relay: dialling again meets
                // the same answer. One that cannot reach it now (the hop is down) may
                // later: that is retried below.
                Err(TransportError::CircuitFailed { relay, to, reason })
                    if !reason.starts_with(aura_transport::circuit::UNREACHABLE) =>
                {
                    return Err(DaemonError::Refused(format!(
                        "relay {} refused to extend the circuit to {}: {reason}",
                        self.opts.redact.addr(&relay),
                        self.opts.redact.addr(&to)
                    )));
                }
                Err(TransportError::NotARelay { relay, what }) => {
                    return Err(DaemonError::Refused(format!(
                        "{} is not a relay: {what}",
                        self.opts.redact.addr(&relay)
                    )));
                }
                Err(e) => {
                    let wait = backoff.wait();
                    tracing::warn!(error = %e, retry_in = ?wait, "cannot reach the server");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn circuit_keys_are_used_or_refused_by_name() {
        let config = |extra: &str| -> ClientConfig {
            toml::from_str(&format!(
                "[client]\nserver = \"192.0.2.1\"\n{extra}\n[pki]\nca_cert = \"a\"\ncert = \"b\"\nkey = \"c\"\ncrl = \"d\"\nknock_key = \"e\"\n"
            ))
            .unwrap()
        };
        // Relays without an enabled circuit are refused.
        let e = ClientOptions::from_config(&config(
            "[client.circuit]\nenabled = false\nentry = \"192.0.2.7\"",
        ))
        .unwrap_err();
        assert!(e.to_string().starts_with("client.circuit.entry: "), "{e}");
        let o = ClientOptions::from_config(&config(
            "[client.circuit]\nhops = 3\nenabled = true\nentry = \"192.0.2.7\"\n\
             middle = [{ address = \"192.0.2.8\", name = \"middle.example\" }]",
        ))
        .unwrap();
        let c = o.circuit.unwrap();
        assert_eq!(c.entry, ("192.0.2.7".into(), "192.0.2.7".into()));
        assert_eq!(
            c.middle,
            vec![("192.0.2.8".into(), "middle.example".into())]
        );
        assert_eq!(c.hops(), 3);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let mut b = Backoff::new();
        let mut base = BACKOFF_MIN;
        for _ in 0..12 {
            let w = b.wait();
            assert!(
                w >= base * 8 / 10 && w <= base * 12 / 10,
                "{w:?} vs {base:?}"
            );
            base = (base * 2).min(BACKOFF_MAX);
        }
        assert!(b.wait() <= BACKOFF_MAX * 12 / 10);
        b.reset();
        assert!(b.wait() <= BACKOFF_MIN * 12 / 10);
    }
}
