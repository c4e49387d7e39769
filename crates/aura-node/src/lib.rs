//! Aura's daemons: the multi-client server (IP pool, dispatch by tunnel address,
//! anti-spoofing, NAT, CRL reload and push) and the client (dial, TUN, routes,
//! reconnect), with the admin socket. The composition root: it turns a configuration
//! into options for the layers below and owns the tasks that connect them.
//!
//! # Rooms
//!
//! - [`server`]: `aura server` ([`server::run`]), with its data path ([`server::router`]),
//!   IP pool ([`server::pool`]) and CRL upkeep;
//! - [`client`]: `aura client` ([`client::run`]), with its tunnel and session;
//! - [`options`]: the one place where configuration keys become transport and daemon
//!   options, and where keys of features not built are refused;
//! - [`host`] and [`device`]: the host edges a daemon runs on (TUN factory, host network
//!   configuration, network, clock) and the shared batched TUN writer;
//! - [`admin`], [`creds`], [`redact`], [`packet`]: the admin socket, credentials, what
//!   `no_logs` hides, the IP header fields the daemons read;
//! - [`metrics`]: the Prometheus text endpoint both daemons can serve.
//!
//! # Guarantees
//!
//! - Start-up is all or nothing: a failure undoes every host change made so far and names
//!   its cause; every host change is undone on stop.
//! - A configuration key is used or refused at start with a message naming it.
//! - Whole daemons run over in-memory edges ([`server::run_on`], [`client::run_on`]), so
//!   tests drive a server and its clients without root.
//!
//! # Example
//!
//! ```no_run
//! # async fn f() -> Result<(), aura_node::DaemonError> {
//! let cfg = aura_config::load_server("/etc/aura/server.toml").map_err(|e| {
//!     aura_node::DaemonError::Config { key: "config", problem: e.to_string() }
//! })?;
//! aura_node::server::run(cfg, aura_node::shutdown_signal()?).await
//! # }
//! ```

pub mod admin;
pub mod client;
pub mod creds;
pub mod device;
pub mod dns;
mod error;
pub mod host;
pub mod log;
pub mod memory;
pub mod metrics;
pub mod options;
pub mod packet;
pub mod privilege;
pub mod redact;
pub mod server;
pub mod service;

pub use error::DaemonError;
pub use redact::Redact;

/// The shutdown future the daemons take, boxed so callers can name it.
pub type ShutdownSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Resolves on SIGINT, SIGTERM, SIGHUP or SIGQUIT: each stops the daemon the same way,
/// host changes undone (left to their default action, SIGHUP and SIGQUIT would end the
/// process with the host still changed until the next start).
///
/// # Errors
/// When the signal handlers cannot be installed.
#[cfg(unix)]
pub fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send, DaemonError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let mut quit = signal(SignalKind::quit()).map_err(DaemonError::Signals)?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = hup.recv() => tracing::info!("SIGHUP received"),
            _ = quit.recv() => tracing::info!("SIGQUIT received"),
        }
    })
}

/// The server's signals: resolves on SIGINT, SIGTERM or SIGQUIT (stop, host changes
/// undone); each SIGHUP asks for a reload ([`service::Reload::process`]: the CRL at once,
/// without dropping sessions) and the wait goes on.
///
/// # Errors
/// When the signal handlers cannot be installed.
#[cfg(unix)]
pub fn server_signals() -> Result<impl std::future::Future<Output = ()> + Send, DaemonError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let mut quit = signal(SignalKind::quit()).map_err(DaemonError::Signals)?;
    let reload = service::Reload::process();
    Ok(async move {
        loop {
            tokio::select! {
                _ = int.recv() => { tracing::info!("SIGINT received"); break }
                _ = term.recv() => { tracing::info!("SIGTERM received"); break }
                _ = quit.recv() => { tracing::info!("SIGQUIT received"); break }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP received: reloading");
                    reload.request();
                }
            }
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
