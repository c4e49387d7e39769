//! `aura`: the one binary of the Aura VPN.
//!
//! Human-facing edge of the workspace: argument parsing (clap), error reporting with the
//! whole cause chain, and exit codes: 0 success, 1 runtime error, 2 usage error.

mod bench_crypto;
mod daemon_cmd;
mod demo;
mod deploy_cmd;
mod generate_cmd;
mod import_cmd;
mod mask_cmd;
mod pki_cmd;
mod qr;
mod route_cmd;
mod status_cmd;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Aura: a self-hosted, post-quantum, censorship-resistant VPN.
#[derive(Debug, Parser)]
#[command(name = "aura", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage the deployment's certificate authority, certificates and revocation list.
    Pki(pki_cmd::PkiArgs),
    /// Create a deployment: CA, server certificate and a ready server.toml.
    ServerInit(deploy_cmd::ServerInitArgs),
    /// Issue a client certificate and write a bundle (ca.crt, crl.pem, client.crt,
    /// client.key, client.toml) to move to a device; with --csr, for the device's own key
    /// and without client.key.
    ProvisionClient(deploy_cmd::ProvisionClientArgs),
    /// Run the server in the foreground (TUN, carriers, NAT) until SIGINT or SIGTERM.
    Server(daemon_cmd::DaemonArgs),
    /// Run the client in the foreground (dial, TUN, routes) until SIGINT or SIGTERM;
    /// `aura client keygen` makes this device's key and certificate request.
    Client(daemon_cmd::ClientArgs),
    /// The deployment's daily masks (outer SNI, ALPN order, UDP padding) by date.
    Mask(mask_cmd::MaskArgs),
    /// Show a running daemon's state and peers (over its admin socket).
    Status(status_cmd::StatusArgs),
    /// The running client's split-tunnel rules: list, add or remove them live.
    Route(route_cmd::RouteArgs),
    /// Measure the hybrid KEM and the AEAD suites on this machine.
    BenchCrypto {
        /// Seconds to spend on each measurement.
        #[arg(long, default_value_t = 1.0, value_parser = parse_seconds)]
        seconds: f64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// See Aura work: a server, a client and an "internet" host in network namespaces,
    /// traffic through the tunnel over each carrier (Linux, root; removes everything).
    Demo(demo::DemoArgs),
    /// Write shell completions or man pages (for packaging).
    #[command(hide = true)]
    Generate(generate_cmd::GenerateArgs),
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("not a number: {e}"))?;
    if !(0.01..=60.0).contains(&v) {
        return Err("must be between 0.01 and 60".into());
    }
    Ok(v)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Pki(args) => pki_cmd::run(args),
        Command::ServerInit(args) => deploy_cmd::server_init(args),
        Command::ProvisionClient(args) => deploy_cmd::provision_client(args),
        Command::Server(args) => daemon_cmd::server(args),
        Command::Client(args) => daemon_cmd::client(args),
        Command::Mask(args) => mask_cmd::run(args),
        Command::Status(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(status_cmd::run(args)),
        Command::Route(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(route_cmd::run(args)),
        Command::BenchCrypto { seconds, json } => {
            let figures = bench_crypto::run(Duration::from_secs_f64(seconds))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&figures)?);
            } else {
                print!("{}", bench_crypto::render(&figures));
            }
            Ok(())
        }
        Command::Demo(args) => demo::run(args),
        Command::Generate(args) => generate_cmd::run(args),
    }
}

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with status 2; --help and --version exit 0.
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
