//! `aura server` and `aura client`: load and validate the configuration, set up logging,
//! and run the daemon in the foreground until SIGINT or SIGTERM; `aura client keygen`
//! makes a device's own key and certificate request.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

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

/// Arguments of `aura client`: run the daemon, or one of the device-side subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ClientArgs {
    /// The configuration file (client.toml).
    #[arg(long, short, required = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<ClientCommand>,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Make this device's private key (client.key, 0600) and a certificate request
    /// (client.csr) for the CA: the key never leaves the device.
    Keygen(KeygenArgs),
    /// Lift a kill switch left in place after the client stopped (lockdown, or a crash):
    /// traffic leaves outside the tunnel again. Refused while a client runs.
    Unlock,
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// Where to write client.key and client.csr (the directory client.toml will live in).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The client id to propose to the CA; a random UUIDv4 when absent. The CA operator
    /// may assign another.
    #[arg(long)]
    id: Option<String>,
    /// Replace an existing client.key. The certificate issued for the old key stops
    /// matching.
    #[arg(long)]
    force: bool,
}

/// `aura client --config client.toml` or `aura client keygen`.
pub fn client(a: ClientArgs) -> Result<()> {
    match (a.command, a.config) {
        (Some(ClientCommand::Keygen(k)), _) => keygen(k),
        (Some(ClientCommand::Unlock), _) => unlock(),
        (None, Some(config)) => {
            let cfg = aura_config::load_client(&config)?;
            run_daemon(|stop| aura_node::client::run(cfg, stop))
        }
        // clap requires --config without a subcommand; kept as an error, not a panic.
        (None, None) => {
            bail!("aura client needs --config FILE (or a subcommand: keygen, unlock)")
        }
    }
}

/// `aura client unlock`: deletes the kill switch's table in this network namespace, once
/// the client's instance lock shows no client runs.
fn unlock() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut host = aura_netcfg::HostConfig::system();
        host.claim(aura_netcfg::Role::Client)
            .context("a client is running: stop it first (its kill switch goes with it)")?;
        if host.remove_kill_switch().await? {
            println!("kill switch lifted: traffic may leave outside the tunnel");
        } else {
            println!("no kill switch in place");
        }
        Ok(())
    })
}

fn keygen(k: KeygenArgs) -> Result<()> {
    let id = match k.id {
        Some(id) => id,
        None => aura_pki::names::random_client_id(&mut aura_crypto::OsRng),
    };
    let key_path = k.dir.join("client.key");
    let csr_path = k.dir.join("client.csr");
    if key_path.exists() && !k.force {
        bail!(
            "{} already exists: refusing to replace this device's key (use --force)",
            key_path.display()
        );
    }
    let made = aura_pki::new_client_key(&id).with_context(|| format!("bad client id {id:?}"))?;
    std::fs::create_dir_all(&k.dir)
        .with_context(|| format!("cannot create {}", k.dir.display()))?;
    // The request first: a key without its request is useless, a request without its
    // key is harmless.
    aura_pki::write_atomic(&csr_path, made.request_pem.as_bytes(), 0o644)?;
    aura_pki::write_atomic(&key_path, made.key_pem.as_bytes(), 0o600)?;
    println!(
        "key for client {id} written to {} (it stays on this device)\n\
         request: {}\n\
         next: on the CA host, `aura provision-client --dir DEPLOYMENT --csr client.csr` \
         (or `aura pki sign --csr client.csr`), then put the bundle's files beside client.key",
        key_path.display(),
        csr_path.display()
    );
    Ok(())
}
