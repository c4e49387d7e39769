//! `aura status`: ask a running daemon over its admin socket.
//!
//! The human form is laid out like `wg show`: a block per daemon and, on a server, one
//! per peer, each an aligned `key: value` list with human units (KiB, MiB, GiB) and
//! relative times ("3 minutes, 4 seconds ago"). `--json` prints the daemon's answer as it
//! is; docs/OPERATIONS.md ("Status JSON") documents it and a test pins its field names.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use aura_node::admin::{self, PeerStatus, Request, RequestOptions, Response};
use aura_node::redact::REDACTED;
use clap::Args;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The daemon's admin socket.
    #[arg(long, default_value = aura_config::DEFAULT_SERVER_ADMIN_SOCKET)]
    socket: PathBuf,
    /// Print the daemon's answer as JSON (the schema is in docs/OPERATIONS.md).
    #[arg(long)]
    json: bool,
    /// With no_logs on, show client ids and addresses instead of [redacted] (the daemon
    /// logs that they were shown; only root and the daemon's user reach the socket).
    #[arg(long)]
    show_identities: bool,
}

pub async fn run(a: StatusArgs) -> Result<()> {
    let options = RequestOptions {
        show_identities: a.show_identities,
    };
    let resp = admin::request_with(&a.socket, &Request::Status, options)
        .await
        .with_context(|| format!("no Aura daemon answers on {}", a.socket.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
        return Ok(());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match &resp {
        Response::Server { .. } | Response::Client { .. } => print!("{}", render(&resp, now)),
        Response::Error { message } => anyhow::bail!("the daemon refused: {message}"),
        _ => anyhow::bail!("the daemon answered something this version does not know"),
    }
    Ok(())
}

/// A byte count in binary units: `512 B`, `1.20 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2} {}", UNITS[unit])
}

/// How long ago Unix time `t` was at `now`: `3 minutes, 4 seconds ago`; `never` for 0.
fn ago(t: u64, now: u64) -> String {
    if t == 0 {
        return "never".into();
    }
    let mut left = now.saturating_sub(t);
    if left == 0 {
        return "now".into();
    }
    let mut parts = Vec::new();
    for (unit, secs) in [
        ("year", 365 * 86_400),
        ("day", 86_400),
        ("hour", 3_600),
        ("minute", 60),
        ("second", 1),
    ] {
        let n = left / secs;
        left %= secs;
        if n > 0 {
            parts.push(format!("{n} {unit}{}", if n == 1 { "" } else { "s" }));
        }
    }
    format!("{} ago", parts.join(", "))
}

/// A `title: value` line and its `key: value` lines, values aligned.
struct Block {
    title: String,
    rows: Vec<(&'static str, String)>,
}

impl Block {
    fn new(key: &str, value: impl Into<String>) -> Self {
        Self {
            title: format!("{key}: {}", value.into()),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, key: &'static str, value: impl Into<String>) {
        self.rows.push((key, value.into()));
    }

    /// The block; a value of several lines continues at its column.
    fn render(&self, out: &mut String) {
        out.push_str(&self.title);
        out.push('\n');
        let width = self
            .rows
            .iter()
            .map(|(k, _)| k.len() + 1)
            .max()
            .unwrap_or(0);
        for (key, value) in &self.rows {
            for (i, line) in value.lines().enumerate() {
                let label = if i == 0 {
                    format!("{key}:")
                } else {
                    String::new()
                };
                out.push_str(&format!("  {label:<width$}  {line}\n"));
            }
        }
    }
}

/// `10.77.0.2, fd61:7572:6100::2`, or the IPv4 address alone.
fn addresses(v4: &str, v6: &str) -> String {
    if v6.is_empty() {
        v4.to_owned()
    } else {
        format!("{v4}, {v6}")
    }
}

/// The status's `encryption` value in words (an unknown value as it is).
fn encryption_value(e: &str) -> String {
    match e {
        "aura" => "Aura's AEAD".into(),
        "aura+outer" => "Aura's AEAD inside the carrier's TLS".into(),
        "outer-bound" => "the carrier's TLS, bound to the Aura handshake".into(),
        other => other.into(),
    }
}

fn transfer(received: u64, sent: u64) -> String {
    format!("{} received, {} sent", bytes(received), bytes(sent))
}

fn peer_block(p: &PeerStatus, now: u64) -> Block {
    let mut b = Block::new("peer", &p.id);
    b.row("carrier", &p.carrier);
    if !p.encryption.is_empty() {
        b.row("encryption", encryption_value(&p.encryption));
    }
    b.row("endpoint", &p.remote);
    b.row(
        "tunnel addresses",
        addresses(&p.tunnel_address, &p.tunnel_address6),
    );
    b.row("connected", ago(p.connected_since, now));
    b.row("latest handshake", ago(p.last_handshake, now));
    b.row("transfer", transfer(p.bytes_in, p.bytes_out));
    if p.padding_in > 0 || p.padding_out > 0 {
        b.row(
            "cover padding",
            format!("{} packets sent, {} received", p.padding_out, p.padding_in),
        );
    }
    b
}

/// Whether any identity in `resp` is hidden.
fn redacted(resp: &Response) -> bool {
    let hidden = |s: &String| s == REDACTED;
    match resp {
        Response::Server { peers, .. } => peers.iter().any(|p| hidden(&p.id)),
        Response::Client {
            server, address, ..
        } => hidden(server) || hidden(address),
        _ => false,
    }
}

/// The human form of a status answer at Unix time `now`.
fn render(resp: &Response, now: u64) -> String {
    let mut out = String::new();
    match resp {
        Response::Server { peers, warnings } => {
            let n = peers.len();
            let mut b = Block::new(
                "server",
                format!("{n} peer{} connected", if n == 1 { "" } else { "s" }),
            );
            for w in warnings {
                b.row("warning", w);
            }
            b.render(&mut out);
            let mut peers: Vec<&PeerStatus> = peers.iter().collect();
            // The latest handshake first, as `wg show` lists them.
            peers.sort_by(|a, b| {
                b.last_handshake
                    .cmp(&a.last_handshake)
                    .then_with(|| a.id.cmp(&b.id))
            });
            for p in peers {
                out.push('\n');
                peer_block(p, now).render(&mut out);
            }
        }
        Response::Client {
            state,
            server,
            carrier,
            encryption,
            address,
            address6,
            bytes_in,
            bytes_out,
            last_handshake,
            circuit,
            cover,
        } => {
            let mut b = Block::new("client", state);
            b.row("server", server);
            b.row("carrier", carrier);
            if !encryption.is_empty() {
                b.row("encryption", encryption_value(encryption));
            }
            b.row("tunnel addresses", addresses(address, address6));
            b.row("latest handshake", ago(*last_handshake, now));
            b.row("transfer", transfer(*bytes_in, *bytes_out));
            if let Some(c) = cover {
                b.row("cover", cover_value(c));
            }
            if !circuit.is_empty() {
                b.row("circuit", circuit_value(circuit));
            }
            b.render(&mut out);
        }
        _ => {}
    }
    if redacted(resp) {
        out.push_str(
            "\nidentities are hidden (no_logs): `aura status --show-identities` shows them\n",
        );
    }
    out
}

/// The cover traffic: profile, state and budget, and the padding so far.
fn cover_value(c: &admin::CoverStatus) -> String {
    let budget = match c.profile.as_str() {
        "idle" => String::new(),
        _ => format!(
            ", at most {}.{} % padding",
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
        "{}, {}{budget}; {} padding packets sent, {} received{delayed}",
        c.profile, c.state, c.padding_out, c.padding_in
    )
}

/// The circuit's hops, one line each, entry first: role, name, address, carrier, state.
fn circuit_value(hops: &[admin::HopStatus]) -> String {
    let width = |f: fn(&admin::HopStatus) -> usize| hops.iter().map(f).max().unwrap_or(0);
    let (name_w, addr_w) = (width(|h| h.name.len()), width(|h| h.address.len()));
    let mut lines = Vec::new();
    for (i, h) in hops.iter().enumerate() {
        let role = match i {
            0 => "entry",
            _ if i + 1 == hops.len() => "exit",
            _ => "middle",
        };
        lines.push(format!(
            "{}. {role:<7}{:<name_w$}  {:<addr_w$}  {:<4}  {}",
            i + 1,
            h.name,
            h.address,
            h.carrier,
            h.state
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn sizes_are_in_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.00 KiB");
        assert_eq!(bytes(1_258_291), "1.20 MiB");
        assert_eq!(bytes(3_650_722_202), "3.40 GiB");
        assert_eq!(bytes(u64::MAX), "16384.00 PiB");
    }

    #[test]
    fn times_are_relative_and_spelled_out() {
        assert_eq!(ago(0, NOW), "never");
        assert_eq!(ago(NOW, NOW), "now");
        assert_eq!(ago(NOW + 5, NOW), "now", "a clock ahead is not the future");
        assert_eq!(ago(NOW - 1, NOW), "1 second ago");
        assert_eq!(ago(NOW - 12, NOW), "12 seconds ago");
        assert_eq!(ago(NOW - 184, NOW), "3 minutes, 4 seconds ago");
        assert_eq!(ago(NOW - 3_600, NOW), "1 hour ago");
        assert_eq!(
            ago(NOW - 86_400 - 7_260, NOW),
            "1 day, 2 hours, 1 minute ago"
        );
    }

    fn peer(id: &str, last_handshake: u64) -> PeerStatus {
        PeerStatus {
            id: id.into(),
            carrier: "udp".into(),
            encryption: String::new(),
            remote: "192.0.2.1:4000".into(),
            tunnel_address: "10.77.0.2".into(),
            tunnel_address6: "fd61:7572:6100::2".into(),
            bytes_in: 1_258_291,
            bytes_out: 3_565_158,
            last_handshake,
            connected_since: NOW - 184,
            padding_out: 0,
            padding_in: 0,
        }
    }

    #[test]
    fn a_server_shows_a_block_per_peer_latest_first() {
        let mut bob = peer("bob", NOW - 40);
        bob.carrier = "tls".into();
        bob.encryption = "outer-bound".into();
        bob.tunnel_address6 = String::new();
        bob.padding_out = 3;
        bob.padding_in = 4;
        let resp = Response::Server {
            peers: vec![bob, peer("alice", NOW - 12)],
            warnings: vec!["the CRL expires in 9 days".into()],
        };
        assert_eq!(
            render(&resp, NOW),
            "server: 2 peers connected\n\
             \x20 warning:  the CRL expires in 9 days\n\
             \n\
             peer: alice\n\
             \x20 carrier:           udp\n\
             \x20 endpoint:          192.0.2.1:4000\n\
             \x20 tunnel addresses:  10.77.0.2, fd61:7572:6100::2\n\
             \x20 connected:         3 minutes, 4 seconds ago\n\
             \x20 latest handshake:  12 seconds ago\n\
             \x20 transfer:          1.20 MiB received, 3.40 MiB sent\n\
             \n\
             peer: bob\n\
             \x20 carrier:           tls\n\
             \x20 encryption:        the carrier's TLS, bound to the Aura handshake\n\
             \x20 endpoint:          192.0.2.1:4000\n\
             \x20 tunnel addresses:  10.77.0.2\n\
             \x20 connected:         3 minutes, 4 seconds ago\n\
             \x20 latest handshake:  40 seconds ago\n\
             \x20 transfer:          1.20 MiB received, 3.40 MiB sent\n\
             \x20 cover padding:     3 packets sent, 4 received\n"
        );
        let none = Response::Server {
            peers: Vec::new(),
            warnings: Vec::new(),
        };
        assert_eq!(render(&none, NOW), "server: 0 peers connected\n");
    }

    #[test]
    fn hidden_identities_are_pointed_out() {
        let mut resp = Response::Server {
            peers: vec![peer("alice", NOW)],
            warnings: Vec::new(),
        };
        admin::redact_identities(&mut resp);
        let text = render(&resp, NOW);
        assert!(text.contains("peer: [redacted]\n"), "{text}");
        assert!(
            text.contains("  tunnel addresses:  [redacted], [redacted]\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "\nidentities are hidden (no_logs): `aura status --show-identities` shows them\n"
            ),
            "{text}"
        );
    }

    fn client(circuit: Vec<admin::HopStatus>, cover: Option<admin::CoverStatus>) -> Response {
        Response::Client {
            state: "connected".into(),
            server: "198.18.1.2:8443".into(),
            carrier: "udp".into(),
            encryption: String::new(),
            address: "10.77.0.5".into(),
            address6: String::new(),
            bytes_in: 2048,
            bytes_out: 512,
            last_handshake: NOW - 65,
            circuit,
            cover,
        }
    }

    #[test]
    fn a_client_shows_one_block_with_its_cover_and_circuit() {
        assert_eq!(
            render(&client(Vec::new(), None), NOW),
            "client: connected\n\
             \x20 server:            198.18.1.2:8443\n\
             \x20 carrier:           udp\n\
             \x20 tunnel addresses:  10.77.0.5\n\
             \x20 latest handshake:  1 minute, 5 seconds ago\n\
             \x20 transfer:          2.00 KiB received, 512 B sent\n"
        );
        let hop = |name: &str, address: &str, state: &str| admin::HopStatus {
            name: name.into(),
            address: address.into(),
            carrier: "udp".into(),
            state: state.into(),
        };
        let cover = admin::CoverStatus {
            state: "granted".into(),
            profile: "https".into(),
            budget_permille: 305,
            padding_out: 12,
            padding_in: 40,
            delayed: 0,
        };
        let text = render(
            &client(
                vec![
                    hop("entry.example", "10.200.1.1:443", "up"),
                    hop("mid.example", "192.0.2.10:8443", "up"),
                    hop("exit.example", "198.18.1.2:8443", "down"),
                ],
                Some(cover),
            ),
            NOW,
        );
        assert!(
            text.ends_with(
                "  cover:             https, granted, at most 30.5 % padding; 12 padding \
                 packets sent, 40 received\n\
                 \x20 circuit:           1. entry  entry.example  10.200.1.1:443   udp   up\n\
                 \x20                    2. middle mid.example    192.0.2.10:8443  udp   up\n\
                 \x20                    3. exit   exit.example   198.18.1.2:8443  udp   down\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_cover_value_names_profile_state_and_budget() {
        let mut c = admin::CoverStatus {
            state: "refused".into(),
            profile: "idle".into(),
            budget_permille: 1000,
            padding_out: 0,
            padding_in: 0,
            delayed: 0,
        };
        assert_eq!(
            cover_value(&c),
            "idle, refused; 0 padding packets sent, 0 received"
        );
        c.profile = "bursts".into();
        c.state = "granted".into();
        c.budget_permille = 200;
        c.delayed = 3;
        assert_eq!(
            cover_value(&c),
            "bursts, granted, at most 20.0 % padding; 0 padding packets sent, 0 received; 3 \
             batches delayed"
        );
    }
}
