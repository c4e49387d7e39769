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
}

pub(super) type Status = Arc<Mutex<ClientStatus>>;

pub(super) fn lock(status: &Status) -> MutexGuard<'_, ClientStatus> {
    status.lock().unwrap_or_else(PoisonError::into_inner)
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
