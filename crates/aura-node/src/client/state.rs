//! What one run of the client keeps across sessions, and what `aura status` shows of it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aura_proto::control::CrlAssembler;
use aura_transport::PacketSender;
use aura_transport::dial::DialConfig;

use super::tunnel::Tunnel;
use crate::device::TunFactory;
use crate::host::Host;
use crate::options::ClientOptions;

/// Where the client stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientState {
    /// Dialling for the first time.
    #[default]
    Connecting,
    /// A session is up and the tunnel carries traffic.
    Connected,
    /// The session ended; dialling again (routes stay, so nothing leaks).
    Reconnecting,
}

impl ClientState {
    /// The name `aura status` shows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
        }
    }
}

/// What `aura status` shows.
#[derive(Debug, Default)]
pub(super) struct ClientStatus {
    pub(super) state: ClientState,
    pub(super) server: String,
    pub(super) carrier: String,
    pub(super) address: String,
    /// The IPv6 tunnel address ("" without one).
    pub(super) address6: String,
    pub(super) last_handshake: u64,
    /// Bytes of sessions that ended.
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) current: Option<PacketSender>,
    /// The circuit's hops, entry first (empty: direct).
    pub(super) circuit: Vec<crate::admin::HopStatus>,
    /// This session's cover traffic (the counts are read live from `current`).
    pub(super) cover: Option<crate::admin::CoverStatus>,
    /// Every session's traffic by carrier, for the metrics (`current` is key 0, settled
    /// when its session ends).
    pub(super) tally: crate::metrics::Tally,
}

pub(super) type Status = Arc<Mutex<ClientStatus>>;

pub(super) fn lock(status: &Status) -> MutexGuard<'_, ClientStatus> {
    status.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts the endpoint of `[client.metrics]`, when set, serving `status`'s metrics. Call
/// it before any host change: an address in use is an error naming
/// `client.metrics.listen`.
///
/// # Errors
/// [`crate::DaemonError::Metrics`] when the address cannot be bound.
pub(super) async fn serve_metrics(
    opts: &ClientOptions,
    network: &crate::host::Network,
    status: &Status,
) -> Result<Option<crate::metrics::Endpoint>, crate::DaemonError> {
    let Some(addr) = opts.metrics else {
        return Ok(None);
    };
    let carriers: Vec<&'static str> = match network {
        crate::host::Network::Memory(_) => vec!["mem"],
        crate::host::Network::System => opts.carriers.iter().map(|c| c.name()).collect(),
    };
    let status = status.clone();
    let started = std::time::Instant::now();
    let render: crate::metrics::Render =
        Arc::new(move || render_metrics(&mut lock(&status), &carriers, started));
    crate::metrics::serve("client.metrics.listen", addr, render)
        .await
        .map(Some)
}

/// The client's metrics text: `s` (the current session's counts added to the tally
/// first), a sample for each of `carriers` in every per-carrier family.
fn render_metrics(
    s: &mut ClientStatus,
    carriers: &[&'static str],
    started: std::time::Instant,
) -> String {
    use crate::metrics::{Exposition, Kind};
    let mut m = Exposition::default();
    crate::metrics::basics(&mut m, "client", started);
    let mut last_handshake = s.last_handshake;
    if let Some(c) = &s.current {
        s.tally.observe_conn(0, c);
        last_handshake = last_handshake.max(c.stats().last_handshake);
    }
    let name = "aura_client_state";
    m.family(
        name,
        Kind::Gauge,
        "1 for the state the client is in (connecting, connected, reconnecting), 0 for the others.",
    );
    for state in [
        ClientState::Connecting,
        ClientState::Connected,
        ClientState::Reconnecting,
    ] {
        m.sample(name, &[("state", state.name())], u8::from(s.state == state));
    }
    m.single(
        "aura_client_last_handshake_timestamp_seconds",
        Kind::Gauge,
        "Unix time of the last completed handshake (0: none yet).",
        last_handshake,
    );
    let totals = s.tally.totals();
    crate::metrics::traffic(&mut m, &totals, carriers);
    m.family(
        "aura_dropped_packets_total",
        Kind::Counter,
        "Tunnel IP packets dropped, by reason.",
    );
    let connection: u64 = totals.values().map(|t| t.drops).sum();
    m.sample(
        "aura_dropped_packets_total",
        &[("reason", "connection")],
        connection,
    );
    m.finish()
}

/// Everything one run of the client keeps across sessions.
pub(super) struct Client<T: TunFactory> {
    pub(super) opts: ClientOptions,
    /// The split-tunnel rules and their routes (shared with the admin socket).
    pub(super) routes: super::SharedRouteBook,
    pub(super) dial: DialConfig,
    /// The hops past the entry, exit last, when the client uses a circuit (`dial` then
    /// reaches the entry); empty: `dial` reaches the server.
    pub(super) hops: Vec<aura_transport::circuit::Hop>,
    /// The drivers of the current circuit's hops (a pushed CRL goes to each).
    pub(super) hop_drivers: Vec<aura_transport::DriverHandle>,
    /// The current circuit's entry address (what stays outside the tunnel).
    pub(super) circuit_entry: Option<std::net::SocketAddr>,
    pub(super) host: Host<T>,
    pub(super) tunnel: Option<Tunnel<T::Device>>,
    pub(super) status: Status,
    pub(super) crl: CrlAssembler,
    pub(super) crl_number: u64,
    /// The system's resolvers.
    pub(super) dns: super::dns::Dns,
}
