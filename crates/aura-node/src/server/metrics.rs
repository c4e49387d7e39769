//! The server's metrics (`[server.metrics]`): what a scrape reads and how it is written.
//!
//! Everything comes from counters the server keeps anyway: the router's (peers, their
//! traffic through [`Router::scrape`], spoofed and unroutable packets, refused
//! admissions, the pool), the listeners' ([`ListenerCounters`]: handshakes, refusals,
//! drops by reason) and the CRL in use. docs/OPERATIONS.md lists every metric.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use aura_pki::Verifier;
use aura_transport::stats::{CARRIERS, DatagramDrop, HandshakeFailure};
use aura_transport::{ListenerCounters, ListenerStats};
use rustls_pki_types::UnixTime;

use super::crl::CrlLifetime;
use super::router::Router;
use crate::DaemonError;
use crate::host::Network;
use crate::metrics::{self, Endpoint, Exposition, Kind};
use crate::options::ServerOptions;

/// What the metrics read besides the router's own counters: when the server started,
/// its listeners' counters once they are up, the CRL in use.
#[derive(Debug)]
pub struct Observed {
    started: Instant,
    listeners: OnceLock<ListenerCounters>,
    crl: Mutex<Option<CrlLifetime>>,
}

impl Observed {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            listeners: OnceLock::new(),
            crl: Mutex::new(None),
        }
    }

    /// The listeners are up: their counters.
    pub fn listening(&self, counters: ListenerCounters) {
        let _ = self.listeners.set(counters);
    }

    /// The CRL now in use.
    pub fn crl(&self, lifetime: CrlLifetime) {
        *self.crl.lock().unwrap_or_else(PoisonError::into_inner) = Some(lifetime);
    }

    fn crl_lifetime(&self) -> Option<CrlLifetime> {
        *self.crl.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The carriers the server listens on, by the names the metrics use.
fn carriers(opts: &ServerOptions, network: &Network) -> Vec<&'static str> {
    match network {
        Network::Memory(_) => vec!["mem"],
        Network::System => [
            (opts.carriers.udp, "udp"),
            (opts.carriers.quic, "quic"),
            (opts.carriers.tls, "tls"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.map(|_| name))
        .collect(),
    }
}

/// Starts the endpoint of `[server.metrics]`, when set, serving `router`'s metrics; the
/// CRL `verifier` uses is the first in use. Call it before any host change: an address
/// in use is an error naming `server.metrics.listen`.
///
/// # Errors
/// [`DaemonError::Metrics`] when the address cannot be bound.
pub async fn start(
    opts: &ServerOptions,
    network: &Network,
    router: &Arc<Router>,
    verifier: &Verifier,
    wall_clock: fn() -> UnixTime,
) -> Result<Option<Endpoint>, DaemonError> {
    router.observed.crl(CrlLifetime::of(verifier));
    let Some(addr) = opts.metrics else {
        return Ok(None);
    };
    let carriers = carriers(opts, network);
    let router = router.clone();
    let render: metrics::Render = Arc::new(move || {
        let now = i64::try_from(wall_clock().as_secs()).unwrap_or(i64::MAX);
        render(&router, &carriers, now)
    });
    metrics::serve("server.metrics.listen", addr, render)
        .await
        .map(Some)
}

/// The metrics text of `router` at Unix time `now`, with a sample for each of `carriers`
/// (the configured ones) in every per-carrier family.
pub fn render(router: &Router, carriers: &[&'static str], now: i64) -> String {
    let mut m = Exposition::default();
    let o = &router.observed;
    metrics::basics(&mut m, "server", o.started);
    let scrape = router.scrape();
    let listeners = o
        .listeners
        .get()
        .map(ListenerCounters::snapshot)
        .unwrap_or_default();

    m.family(
        "aura_peers_connected",
        Kind::Gauge,
        "Clients connected now, by the carrier each uses.",
    );
    for c in metrics::with_seen(carriers, scrape.peers.keys().copied()) {
        let n = scrape.peers.get(c).copied().unwrap_or(0);
        m.sample("aura_peers_connected", &[("carrier", c)], n);
    }
    handshakes(&mut m, &listeners, carriers);
    workers(
        &mut m,
        &o.listeners
            .get()
            .map(ListenerCounters::per_worker)
            .unwrap_or_default(),
    );
    m.family(
        "aura_peers_refused_total",
        Kind::Counter,
        "Clients whose handshake completed but who got no tunnel address, by reason.",
    );
    for (reason, n) in [
        ("not_in_static_map", &router.refused_not_listed),
        ("pool_exhausted", &router.refused_exhausted),
    ] {
        let n = n.load(std::sync::atomic::Ordering::Relaxed);
        m.sample("aura_peers_refused_total", &[("reason", reason)], n);
    }
    metrics::traffic(&mut m, &scrape.traffic, carriers);
    drops(&mut m, router, &scrape.traffic, &listeners);
    refusals(&mut m, &listeners);
    m.single(
        "aura_control_messages_received_total",
        Kind::Counter,
        "Control messages (address requests, CRL acknowledgements, ...) received from clients.",
        router.control_in.load(std::sync::atomic::Ordering::Relaxed),
    );
    if let Some(crl) = o.crl_lifetime() {
        m.single(
            "aura_crl_age_seconds",
            Kind::Gauge,
            "Seconds since the thisUpdate of the CRL in use.",
            now.saturating_sub(crl.this_update),
        );
        m.single(
            "aura_crl_this_update_timestamp_seconds",
            Kind::Gauge,
            "thisUpdate of the CRL in use, in Unix seconds.",
            crl.this_update,
        );
        m.single(
            "aura_crl_next_update_timestamp_seconds",
            Kind::Gauge,
            "nextUpdate of the CRL in use, in Unix seconds: handshakes fail after it.",
            crl.next_update,
        );
    }
    let (used, capacity) = scrape.pool;
    let mut families = vec![("ipv4", used, capacity)];
    if scrape.dual_stack {
        families.push(("ipv6", scrape.pool6_used, capacity));
    }
    m.family(
        "aura_pool_addresses",
        Kind::Gauge,
        "Tunnel addresses the pool can hand to clients, by family.",
    );
    for (family, _, capacity) in &families {
        m.sample("aura_pool_addresses", &[("family", family)], *capacity);
    }
    m.family(
        "aura_pool_addresses_used",
        Kind::Gauge,
        "Tunnel addresses held by clients, by family.",
    );
    for (family, used, _) in &families {
        m.sample("aura_pool_addresses_used", &[("family", family)], *used);
    }
    m.finish()
}

fn handshakes(m: &mut Exposition, l: &ListenerStats, carriers: &[&'static str]) {
    let done: Vec<(&'static str, u64)> = CARRIERS
        .iter()
        .map(|c| (c.name(), l.driver.handshakes_over(*c)))
        .filter(|(name, n)| *n > 0 || carriers.contains(name))
        .collect();
    m.family(
        "aura_handshakes_completed_total",
        Kind::Counter,
        "Aura handshakes completed (new sessions; rekeys not counted), by carrier.",
    );
    for (c, n) in done {
        m.sample("aura_handshakes_completed_total", &[("carrier", c)], n);
    }
    m.family(
        "aura_handshakes_failed_total",
        Kind::Counter,
        "Aura handshakes the server refused, by reason.",
    );
    for r in HandshakeFailure::ALL {
        let n = l.driver.failures(r);
        m.sample("aura_handshakes_failed_total", &[("reason", r.name())], n);
    }
}

/// Each worker's share (docs/adr/0019): how the kernel and the links spread clients over
/// them, and what they hand each other.
fn workers(m: &mut Exposition, per_worker: &[aura_transport::DriverStats]) {
    m.family(
        "aura_worker_handshakes_completed_total",
        Kind::Counter,
        "Aura handshakes completed by each protocol worker, every carrier together.",
    );
    for (w, s) in per_worker.iter().enumerate() {
        let n = s.handshakes.iter().fold(0u64, |a, b| a.saturating_add(*b));
        m.sample(
            "aura_worker_handshakes_completed_total",
            &[("worker", &w.to_string())],
            n,
        );
    }
    m.family(
        "aura_worker_handed_over_total",
        Kind::Counter,
        "Datagrams a worker read for another worker's session (a client that moved) and \
         handed to it.",
    );
    for (w, s) in per_worker.iter().enumerate() {
        m.sample(
            "aura_worker_handed_over_total",
            &[("worker", &w.to_string())],
            s.handed_over,
        );
    }
    m.family(
        "aura_worker_handover_drops_total",
        Kind::Counter,
        "Datagrams a worker dropped because the worker holding their session had a full queue.",
    );
    for (w, s) in per_worker.iter().enumerate() {
        m.sample(
            "aura_worker_handover_drops_total",
            &[("worker", &w.to_string())],
            s.handover_drops,
        );
    }
}

fn drops(m: &mut Exposition, router: &Router, traffic: &metrics::Totals, l: &ListenerStats) {
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let connection: u64 = traffic.values().map(|t| t.drops).sum();
    let mut packets = vec![
        ("spoofed_source", load(&router.spoofed)),
        ("no_peer", load(&router.unroutable)),
        ("connection", connection),
    ];
    if let Some(q) = &l.quic {
        packets.push(("quic_unsendable", q.unsendable_drops));
    }
    m.family(
        "aura_dropped_packets_total",
        Kind::Counter,
        "Tunnel IP packets dropped, by reason.",
    );
    for (reason, n) in packets {
        m.sample("aura_dropped_packets_total", &[("reason", reason)], n);
    }
    m.family(
        "aura_dropped_datagrams_total",
        Kind::Counter,
        "Datagrams that reached the protocol and were dropped there, by reason.",
    );
    for r in DatagramDrop::ALL {
        let n = l.driver.drops(r);
        m.sample("aura_dropped_datagrams_total", &[("reason", r.name())], n);
    }
    if let Some(q) = &l.quic {
        let name = "aura_dropped_datagrams_total";
        m.sample(name, &[("reason", "quic_foreign")], q.foreign_datagrams);
    }
}

fn refusals(m: &mut Exposition, l: &ListenerStats) {
    let k = l.driver.knock;
    let mut rows = vec![("udp", (k.invalid, k.stale, k.replay))];
    rows.extend(l.tls_knock.map(|r| ("tls", r)));
    rows.extend(l.quic_knock.map(|r| ("quic", r)));
    let name = "aura_knock_refused_total";
    m.family(
        name,
        Kind::Counter,
        "First flights refused for their knock (strangers and probes meet the decoy or \
         silence), by carrier and reason.",
    );
    for (carrier, (invalid, stale, replay)) in rows {
        for (reason, n) in [("invalid", invalid), ("stale", stale), ("replay", replay)] {
            m.sample(name, &[("carrier", carrier), ("reason", reason)], n);
        }
    }
    let Some(q) = l.quic else { return };
    for (name, help, n) in [
        (
            "aura_quic_retries_total",
            "QUIC Retry packets sent (address validation under load).",
            q.retries,
        ),
        (
            "aura_quic_refused_connections_total",
            "QUIC connections refused by the handshake caps.",
            q.refused,
        ),
        (
            "aura_quic_handshake_timeouts_total",
            "QUIC connections closed for not completing their handshake in time.",
            q.handshake_timeouts,
        ),
        (
            "aura_quic_bad_frames_total",
            "QUIC connections closed for a malformed stream frame.",
            q.bad_frames,
        ),
        (
            "aura_quic_stream_fallback_packets_total",
            "Packets sent on the QUIC stream because they did not fit a DATAGRAM frame.",
            q.stream_fallbacks,
        ),
    ] {
        m.single(name, Kind::Counter, help, n);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::server::pool::IpPool;

    #[test]
    fn the_section_is_used_or_refused_by_name() {
        let options = |section: &str| {
            let cfg: aura_config::ServerConfig = toml::from_str(&format!(
                "[server]\nname = \"vpn.test\"\n[server.metrics]\n{section}\n\
                 [pki]\nca_cert = \"a\"\ncert = \"b\"\nkey = \"c\"\ncrl = \"d\"\n\
                 knock_key = \"e\"\n"
            ))
            .unwrap();
            ServerOptions::from_config(&cfg)
        };
        assert_eq!(options("").unwrap().metrics, None);
        assert_eq!(
            options("listen = \"[::1]:9587\"").unwrap().metrics,
            Some("[::1]:9587".parse().unwrap())
        );
        let e = options("listen = \"0.0.0.0:9587\"").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("server.metrics.listen: 0.0.0.0:9587 is not a loopback"),
            "{e}"
        );
        let e = options("allow_remote = true").unwrap_err();
        assert!(
            e.to_string().starts_with("server.metrics.allow_remote: "),
            "{e}"
        );
    }

    #[test]
    fn a_known_server_renders_exact_lines() {
        let pool: aura_config::PoolSection = toml::from_str("cidr = \"10.77.0.0/29\"").unwrap();
        let router = Router::new(IpPool::new(&pool));
        router
            .spoofed
            .fetch_add(3, std::sync::atomic::Ordering::Relaxed);
        router.observed.crl(CrlLifetime {
            this_update: 1_000,
            next_update: 9_000,
        });
        let text = render(&router, &["udp", "tls"], 1_600);
        for line in [
            "# HELP aura_build_info Always 1; the labels name the daemon's role and version.",
            "# TYPE aura_build_info gauge",
            "# TYPE aura_uptime_seconds gauge",
            "# HELP aura_peers_connected Clients connected now, by the carrier each uses.",
            "# TYPE aura_peers_connected gauge",
            "aura_peers_connected{carrier=\"udp\"} 0",
            "aura_peers_connected{carrier=\"tls\"} 0",
            "# TYPE aura_handshakes_completed_total counter",
            "aura_handshakes_completed_total{carrier=\"udp\"} 0",
            "aura_handshakes_failed_total{reason=\"certificate_revoked\"} 0",
            "aura_peers_refused_total{reason=\"pool_exhausted\"} 0",
            "aura_tunnel_received_bytes_total{carrier=\"tls\"} 0",
            "aura_tunnel_sent_packets_total{carrier=\"udp\"} 0",
            "aura_cover_padding_sent_packets_total{carrier=\"udp\"} 0",
            "# TYPE aura_dropped_packets_total counter",
            "aura_dropped_packets_total{reason=\"spoofed_source\"} 3",
            "aura_dropped_packets_total{reason=\"no_peer\"} 0",
            "aura_dropped_packets_total{reason=\"connection\"} 0",
            "aura_dropped_datagrams_total{reason=\"replay\"} 0",
            "aura_dropped_datagrams_total{reason=\"decrypt\"} 0",
            "aura_knock_refused_total{carrier=\"udp\",reason=\"stale\"} 0",
            "aura_control_messages_received_total 0",
            "# TYPE aura_crl_age_seconds gauge",
            "aura_crl_age_seconds 600",
            "aura_crl_this_update_timestamp_seconds 1000",
            "aura_crl_next_update_timestamp_seconds 9000",
            "aura_pool_addresses{family=\"ipv4\"} 5",
            "aura_pool_addresses{family=\"ipv6\"} 5",
            "aura_pool_addresses_used{family=\"ipv4\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(
            text.lines()
                .any(|l| l.starts_with("aura_build_info{role=\"server\",version=\"")),
            "{text}"
        );
        // No carrier that is not configured and never seen; no QUIC families without QUIC.
        assert!(!text.contains("carrier=\"mem\""), "{text}");
        assert!(!text.contains("aura_quic_"), "{text}");
        // Every sample's family has its HELP and TYPE before it.
        let mut typed = std::collections::HashSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(typed.contains(name), "{name} has no TYPE line before it");
            }
        }
    }
}
