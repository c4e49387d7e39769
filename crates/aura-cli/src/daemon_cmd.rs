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
    /// Log lines on stderr as text or as JSON objects, one per line.
    #[arg(long, value_name = "text|json", default_value = "text")]
    log_format: aura_node::log::LogFormat,
}

/// The daemon's async runtime: one thread, for either role. The client's carries one
/// session, whose data path moves each batch from task to task (device reader, driver,
/// session); on one thread those hand-overs are plain polls, where a pool of threads paid
/// a wake-up across threads for each (docs/adr/0022-client-on-one-thread.md). The server
/// runs each protocol worker's data path on a thread of its own
/// (`aura_node::server::threads`), and keeps only the accept loop, the QUIC and TLS
/// listeners and the upkeep on this one (docs/adr/0023-server-thread-per-worker.md).
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Drops privileges as `privilege` plans (while this process is one thread), then runs
/// `daemon` (built from the loaded configuration and the shutdown signal) on the role's
/// runtime ([`runtime`]).
fn run_daemon<F>(
    log: (aura_node::log::LogFormat, bool),
    privilege: Option<aura_node::privilege::Plan>,
    role: Role,
    daemon: impl FnOnce(aura_node::ShutdownSignal) -> F,
) -> Result<()>
where
    F: std::future::Future<Output = Result<(), aura_node::DaemonError>>,
{
    aura_node::log::init(log.0, log.1);
    if let Some(plan) = privilege {
        plan.apply()?;
    }
    aura_node::memory::one_allocator_arena();
    runtime()?.block_on(async {
        let shutdown: aura_node::ShutdownSignal = match role {
            Role::Server => Box::pin(aura_node::server_signals()?),
            Role::Client => Box::pin(aura_node::shutdown_signal()?),
        };
        daemon(shutdown).await
    })?;
    Ok(())
}

/// Which daemon runs: the server reloads on SIGHUP, the client stops.
#[derive(Debug, Clone, Copy)]
enum Role {
    Server,
    Client,
}

/// `aura server --config server.toml`.
pub fn server(a: DaemonArgs) -> Result<()> {
    let cfg = aura_config::load_server(&a.config)?;
    let privilege = aura_node::privilege::Plan::server(&cfg)?;
    // A server that drops privileges makes its TUN device first, as root.
    let tun = match &privilege {
        Some(_) => Some(aura_node::server::prepare_tun(&cfg)?),
        None => None,
    };
    let log = (a.log_format, cfg.server.no_logs);
    run_daemon(log, privilege, Role::Server, |stop| {
        aura_node::server::run_with(cfg, tun, stop)
    })
}

/// Arguments of `aura client`: run the daemon, or one of the device-side subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ClientArgs {
    /// The configuration file (client.toml).
    #[arg(long, short, required = true)]
    config: Option<PathBuf>,
    /// Log lines on stderr as text or as JSON objects, one per line.
    #[arg(long, value_name = "text|json", default_value = "text")]
    log_format: aura_node::log::LogFormat,
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
    /// Install a client bundle on this device: an aura://import/v1/ URI (from
    /// `aura provision-client --uri` or its QR code) with its one-time code, a file holding
    /// the URI, or a bundle directory. Writes every file with its mode, or nothing.
    Import(crate::import_cmd::ImportArgs),
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
        (Some(ClientCommand::Import(i)), _) => crate::import_cmd::run(i),
        (None, Some(config)) => {
            let cfg = aura_config::load_client(&config)?;
            let resolv_conf = std::path::Path::new(aura_netcfg::dns::RESOLV_CONF);
            let privilege = aura_node::privilege::Plan::client(&cfg, resolv_conf)?;
            let tun = match &privilege {
                Some(_) => Some(aura_node::client::prepare_tun(&cfg)?),
                None => None,
            };
            let log = (a.log_format, cfg.client.no_logs);
            run_daemon(log, privilege, Role::Client, |stop| {
                aura_node::client::run_with(cfg, tun, stop)
            })
        }
        // clap requires --config without a subcommand; kept as an error, not a panic.
        (None, None) => {
            bail!("aura client needs --config FILE (or a subcommand: keygen, import, unlock)")
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
