//! The daemons' errors: each names what failed and why, for a one-line message.

use aura_transport::TransportError;

/// Why a daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// Setting up failed (files, names, a feature this build lacks); the message says
    /// which and why.
    #[error("{0}")]
    Setup(String),
    /// The TUN device.
    #[error("TUN device: {0}")]
    Tun(#[from] aura_tun::TunError),
    /// Forwarding, NAT or routes.
    #[error("host network configuration: {0}")]
    Netcfg(#[from] aura_netcfg::NetcfgError),
    /// The carriers.
    #[error("{0}")]
    Transport(#[from] TransportError),
    /// The admin socket.
    #[error("{0}")]
    Admin(#[from] crate::admin::AdminError),
    /// The server refused this client, or this client refused the server: retrying
    /// cannot help.
    #[error("{0}")]
    Refused(String),
}
