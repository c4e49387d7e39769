//! `aura server` and `aura client`: load and validate the configuration, set up logging,
//! and run the daemon in the foreground until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

/// Arguments of `aura server` and `aura client`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The configuration file (server.toml or client.toml).
    #[arg(long, short)]
    config: PathBuf,
}

/// Logs to stderr; `RUST_LOG` overrides the default level (info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs `daemon` (built from the loaded configuration and the shutdown signal) on a
/// multi-threaded runtime.
fn run_daemon<F>(daemon: impl FnOnce(aura_node::ShutdownSignal) -> F) -> Result<()>
where
    F: std::future::Future<Output = Result<(), aura_node::DaemonError>>,
{
    init_logging();
    runtime()?.block_on(async {
        let shutdown = aura_node::shutdown_signal()?;
        daemon(Box::pin(shutdown)).await
    })?;
    Ok(())
}

/// `aura server --config server.toml`.
pub fn server(a: DaemonArgs) -> Result<()> {
    let cfg = aura_config::load_server(&a.config)?;
    run_daemon(|stop| aura_node::server::run(cfg, stop))
}

/// `aura client --config client.toml`.
pub fn client(a: DaemonArgs) -> Result<()> {
    let cfg = aura_config::load_client(&a.config)?;
    run_daemon(|stop| aura_node::client::run(cfg, stop))
}
