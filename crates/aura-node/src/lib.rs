//! Aura's daemons: the multi-client server (IP pool, dispatch by tunnel address,
//! anti-spoofing, NAT) and the client (dial, TUN, routes, reconnect), with the admin
//! socket. The only crate that knows the async runtime.
//!
//! - [`server::run`]: `aura server`;
//! - [`client::run`]: `aura client`;
//! - [`router`]: the server's data path, over any [`aura_tun::PacketDevice`];
//! - [`pool`], [`admin`], [`creds`]: the IP pool, the admin socket, credentials.

pub mod admin;
pub mod client;
pub mod creds;
mod error;
pub mod packet;
pub mod pool;
pub mod router;
pub mod server;

use std::time::Duration;

pub use error::DaemonError;

/// Protocol timers of both daemons. Keepalives every 3 s of silence mean a live peer is
/// heard at least every 3 s, so 8 s without a packet is a dead peer: a client notices a
/// server that went away within 8 s and dials again (the defaults, 10 s and 30 s, would
/// keep a client on a dead session for half a minute).
pub fn daemon_timers() -> aura_proto::Timers {
    aura_proto::Timers {
        keepalive: Duration::from_secs(3),
        dead_peer: Duration::from_secs(8),
        ..aura_proto::Timers::default()
    }
}

/// The error for a configuration key whose feature this version does not have: the
/// daemon refuses to start rather than ignore it.
pub(crate) fn not_built(key: &str, feature: &str, fix: &str) -> DaemonError {
    DaemonError::Setup(format!(
        "{key}: {feature} is not available in this version; {fix}"
    ))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Hides client ids and addresses from log lines when `no_logs` is set.
#[derive(Debug, Clone, Copy)]
pub struct Redact(pub bool);

impl Redact {
    /// A client id, or `[redacted]`.
    pub fn id<'a>(&self, id: &'a str) -> &'a str {
        if self.0 { "[redacted]" } else { id }
    }

    /// An address, or `[redacted]`.
    pub fn addr(&self, addr: &impl std::fmt::Display) -> String {
        if self.0 {
            "[redacted]".into()
        } else {
            addr.to_string()
        }
    }
}

/// The shutdown future the daemons take, boxed so callers can name it.
pub type ShutdownSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Resolves on SIGINT or SIGTERM.
///
/// # Errors
/// When the signal handlers cannot be installed.
#[cfg(unix)]
pub fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send, DaemonError> {
    use tokio::signal::unix::{SignalKind, signal};
    let setup = |e: std::io::Error| DaemonError::Setup(format!("cannot handle signals: {e}"));
    let mut int = signal(SignalKind::interrupt()).map_err(setup)?;
    let mut term = signal(SignalKind::terminate()).map_err(setup)?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

/// Resolves on Ctrl-C (systems without Unix signals).
///
/// # Errors
/// Never; the signature matches the Unix one.
#[cfg(not(unix))]
pub fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send, DaemonError> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
