//! The daemons' errors: each names what failed and why, for a one-line message, and says
//! whether trying again can help ([`DaemonError::is_recoverable`]).

use std::time::Duration;

use aura_transport::TransportError;

/// Why a daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// A credential file (CA certificate, CRL, certificate, key) is missing or unusable;
    /// the message names the file and the problem.
    #[error("{0}")]
    Credentials(String),
    /// A configuration value cannot be used as it stands; the message names the key.
    #[error("{key}: {problem}")]
    Config {
        /// The key, as written in the file (`pki.ca_key`).
        key: &'static str,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// A server or bridge name does not resolve.
    #[error("{what} {host:?} {problem}")]
    Resolve {
        /// The key that names it.
        what: &'static str,
        /// The name.
        host: String,
        /// Why it does not resolve.
        problem: String,
    },
    /// The server completed the handshake but assigned no tunnel address in time.
    #[error("the server assigned no address within {0:?}")]
    NoAddress(Duration),
    /// Signal handlers could not be installed.
    #[error("cannot handle signals: {0}")]
    Signals(std::io::Error),
    /// The TUN device.
    #[error("TUN device: {0}")]
    Tun(#[from] aura_tun::TunError),
    /// Forwarding, NAT or routes.
    #[error("host network configuration: {0}")]
    Netcfg(#[from] aura_netcfg::NetcfgError),
    /// A split-tunnel rule's route (the message names the rule).
    #[error("split tunnelling: {0}")]
    Routes(String),
    /// DNS for the tunnel cannot be served or set.
    #[error("DNS: {0}")]
    Dns(String),
    /// The carriers.
    #[error("{0}")]
    Transport(#[from] TransportError),
    /// The admin socket.
    #[error("{0}")]
    Admin(#[from] crate::admin::AdminError),
    /// The metrics endpoint cannot listen where its key says.
    #[error(
        "{key}: cannot serve metrics on {addr}: {source}{}",
        in_use_hint(source)
    )]
    Metrics {
        /// The key, as written in the file (`server.metrics.listen`).
        key: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A data-path task (TUN reader or writer) ended: the daemon stops so that its host
    /// changes are undone and a supervisor restarts it.
    #[error("data path stopped: {0}")]
    DataPath(String),
    /// The server refused this client, or this client refused the server: retrying
    /// cannot help.
    #[error("{0}")]
    Refused(String),
}

/// What to do about an address in use.
fn in_use_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another process listens there: stop it or choose another port)"
        }
        std::io::ErrorKind::AddrNotAvailable => " (no interface of this host has that address)",
        _ => "",
    }
}

impl DaemonError {
    /// Whether a client should dial again after a session ended with this error: true
    /// for what the network or the server's load can cause and the next session can
    /// escape; false for refusals, local configuration and host failures.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, Self::NoAddress(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_errors_are_recoverable() {
        assert!(DaemonError::NoAddress(Duration::from_secs(10)).is_recoverable());
        assert!(!DaemonError::Refused("revoked".into()).is_recoverable());
        assert!(!DaemonError::Credentials("bad key".into()).is_recoverable());
    }
}
