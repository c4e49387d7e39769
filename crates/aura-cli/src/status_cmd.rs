//! `aura status`: ask a running daemon over its admin socket.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use aura_node::admin::{self, Request, Response};
use clap::Args;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The daemon's admin socket.
    #[arg(long, default_value = "/run/aura/server.sock")]
    socket: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn ago(t: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if t == 0 {
        return "-".into();
    }
    let s = now.saturating_sub(t);
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}

pub async fn run(a: StatusArgs) -> Result<()> {
    let resp = admin::request(&a.socket, &Request::Status)
        .await
        .with_context(|| format!("no Aura daemon answers on {}", a.socket.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
        return Ok(());
    }
    match resp {
        Response::Server { peers, warnings } => {
            for w in &warnings {
                println!("warning: {w}");
            }
            println!(
                "{:<36}  {:<5}  {:<22}  {:<15}  {:>12}  {:>12}  {:<10}  CONNECTED",
                "PEER", "VIA", "REMOTE", "TUNNEL", "BYTES IN", "BYTES OUT", "HANDSHAKE"
            );
            for p in peers {
                println!(
                    "{:<36}  {:<5}  {:<22}  {:<15}  {:>12}  {:>12}  {:<10}  {}",
                    p.id,
                    p.carrier,
                    p.remote,
                    p.tunnel_address,
                    p.bytes_in,
                    p.bytes_out,
                    ago(p.last_handshake),
                    ago(p.connected_since)
                );
            }
        }
        Response::Client {
            state,
            server,
            carrier,
            address,
            address6,
            bytes_in,
            bytes_out,
            last_handshake,
        } => {
            let address = if address6.is_empty() {
                address
            } else {
                format!("{address}, {address6}")
            };
            println!(
                "state:      {state}\nserver:     {server} via {carrier}\naddress:    {address}\nbytes:      {bytes_in} in, {bytes_out} out\nhandshake:  {}",
                ago(last_handshake)
            );
        }
        Response::Error { message } => anyhow::bail!("the daemon refused: {message}"),
        _ => anyhow::bail!("the daemon answered something this version does not know"),
    }
    Ok(())
}
