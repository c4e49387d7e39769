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
            circuit,
            cover,
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
            print!("{}", circuit_lines(&circuit));
            if let Some(c) = cover {
                println!("{}", cover_line(&c));
            }
        }
        Response::Error { message } => anyhow::bail!("the daemon refused: {message}"),
        _ => anyhow::bail!("the daemon answered something this version does not know"),
    }
    Ok(())
}

/// The cover traffic line: profile, budget and state, and the padding so far.
fn cover_line(c: &admin::CoverStatus) -> String {
    let budget = match c.profile.as_str() {
        "idle" => String::new(),
        _ => format!(
            " at most {}.{} % padding",
            c.budget_permille / 10,
            c.budget_permille % 10
        ),
    };
    let delayed = if c.delayed > 0 {
        format!("; {} batches delayed", c.delayed)
    } else {
        String::new()
    };
    format!(
        "cover:      {}{budget}, {}; padding {} out, {} in{delayed}",
        c.profile, c.state, c.padding_out, c.padding_in
    )
}

/// The circuit's hops, one line each, entry first: role, name, address, carrier, state.
fn circuit_lines(hops: &[admin::HopStatus]) -> String {
    let mut out = String::new();
    let width = |f: fn(&admin::HopStatus) -> usize| hops.iter().map(f).max().unwrap_or(0);
    let (name_w, addr_w) = (width(|h| h.name.len()), width(|h| h.address.len()));
    for (i, h) in hops.iter().enumerate() {
        let role = match i {
            0 => "entry",
            _ if i + 1 == hops.len() => "exit",
            _ => "middle",
        };
        let label = if i == 0 { "circuit:" } else { "" };
        out.push_str(&format!(
            "{label:<12}{}. {role:<7}{:<name_w$}  {:<addr_w$}  {:<4}  {}\n",
            i + 1,
            h.name,
            h.address,
            h.carrier,
            h.state
        ));
    }
    out
}

#[cfg(test)]
mod circuit_tests {
    use super::*;

    #[test]
    fn the_cover_line_names_profile_budget_and_state() {
        let mut c = admin::CoverStatus {
            state: "granted".into(),
            profile: "https".into(),
            budget_permille: 305,
            padding_out: 12,
            padding_in: 40,
            delayed: 0,
        };
        assert_eq!(
            cover_line(&c),
            "cover:      https at most 30.5 % padding, granted; padding 12 out, 40 in"
        );
        c.profile = "idle".into();
        c.state = "refused".into();
        assert_eq!(
            cover_line(&c),
            "cover:      idle, refused; padding 12 out, 40 in"
        );
        c.profile = "bursts".into();
        c.delayed = 3;
        assert!(cover_line(&c).ends_with("40 in; 3 batches delayed"));
    }

    #[test]
    fn circuit_lines_align_and_name_each_role() {
        let hop = |name: &str, address: &str, state: &str| admin::HopStatus {
            name: name.into(),
            address: address.into(),
            carrier: "udp".into(),
            state: state.into(),
        };
        assert_eq!(circuit_lines(&[]), "");
        let text = circuit_lines(&[
            hop("entry.example", "10.200.1.1:443", "up"),
            hop("mid.example", "192.0.2.10:8443", "up"),
            hop("exit.example", "198.18.1.2:8443", "down"),
        ]);
        assert_eq!(
            text,
            "circuit:    1. entry  entry.example  10.200.1.1:443   udp   up\n\
             \x20           2. middle mid.example    192.0.2.10:8443  udp   up\n\
             \x20           3. exit   exit.example   198.18.1.2:8443  udp   down\n"
        );
    }
}
