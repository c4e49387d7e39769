//! End-to-end tier for circuits: real `aura` processes in namespaces, the client in C1,
//! the entry relay in S, the exit in X (behind the internet host), the internet host I.
//!
//! ```text
//!   C1 10.200.1.2 ==== 10.200.1.1 S 198.18.0.1 ==== 198.18.0.2 I 198.18.1.1 ==== 198.18.1.2 X
//!   aura client                   aura server (relay)   (forwards)                aura server (exit)
//!   [client.circuit] entry S                                                       NAT toward x-i
//! ```
//!
//! The client's traffic reaches I only through the exit's NAT, so I sees X's address;
//! the exit sees the relay's address as the client's; the relay's captures on both its
//! links hold none of the payload in clear. Needs root, `ip`, `nft` and `tcpdump`;
//! otherwise the test prints why and passes without checking (CI runs as root).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use aura_lab::Procs;
use aura_lab::deploy::{self, toml_path};
use aura_lab::lab::{self, EXIT_IP, Lab, SERVER_INTERNET_IP};
use aura_lab::netns::{Netns, skip_reason};
use nix::sys::signal::Signal;
use serde_json::Value;
use support::{AURA, aura, serial};

/// Port of the test listener on the internet host.
const PORT: u16 = 5202;
const READY: Duration = Duration::from_secs(20);
const MB: usize = 1024 * 1024;

/// Field order is drop order: processes, then namespaces, then files.
struct World {
    procs: Procs,
    lab: Lab,
    dir: tempfile::TempDir,
    _serial: MutexGuard<'static, ()>,
}

impl World {
    fn p(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `aura <args>` in `ns`, its output in `<label>.log`.
    fn spawn(&mut self, label: &str, ns: Which, args: &[&str]) -> usize {
        let ns: &Netns = match ns {
            Which::Client => self.lab.client(1).unwrap(),
            Which::Relay => self.lab.server(),
            Which::Exit => self.lab.exit().unwrap(),
        };
        let mut cmd = ns.command(AURA);
        cmd.args(args)
            .env("RUST_LOG", "info")
            .env("RUST_BACKTRACE", "1");
        let log = self.dir.path().join(format!("{label}.log"));
        self.procs.spawn(label, &mut cmd, log).unwrap()
    }

    fn wait(&mut self, idx: usize, socket: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let socket = self.p(socket);
        support::wait_status(&mut self.procs, idx, &socket, READY, ok)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn server(&mut self, label: &str, ns: Which, config: &str, socket: &str) -> usize {
        let config = self.p(config);
        let idx = self.spawn(label, ns, &["server", "--config", &config]);
        self.wait(idx, socket, |v| v["kind"] == "server");
        idx
    }

    fn transfer(&self, bytes: usize, timeout: Duration) -> Result<lab::TransferReport, String> {
        lab::transfer(
            self.lab.client(1).unwrap(),
            self.lab.internet(),
            self.lab.internet_ip(),
            PORT,
            bytes,
            timeout,
        )
    }
}

#[derive(Clone, Copy)]
enum Which {
    Client,
    Relay,
    Exit,
}

/// The deployment: the exit `exit.test` (server.toml), the relay `entry.test`
/// (entry.toml, allowed to extend to the exit only), and clients `alice` (through the
/// relay to the exit) and `bob` (through the relay to the internet host, which the relay
/// does not allow).
fn deploy(w: &World) {
    let d = w.path("deploy");
    support::server_init(&d, "exit.test", None, &w.path("exit.sock"));
    let pki = w.p("deploy/pki");
    aura(&["pki", "--dir", &pki, "issue-server", "--name", "entry.test"]);
    let exit = std::fs::read_to_string(d.join("server.toml")).unwrap();
    let entry = exit
        .replace("name = \"exit.test\"", "name = \"entry.test\"")
        .replace("pki/servers/exit.test.", "pki/servers/entry.test.")
        .replace(
            &toml_path(&w.path("exit.sock")),
            &toml_path(&w.path("entry.sock")),
        );
    assert_ne!(entry, exit);
    let entry = format!(
        "{entry}\n[server.relay]\nenabled = true\n\
         allow_extend_to = [\"{EXIT_IP}:8443\", \"{EXIT_IP}:443\"]\n"
    );
    std::fs::write(d.join("entry.toml"), entry).unwrap();
    for (id, exit_ip) in [("alice", EXIT_IP), ("bob", lab::INTERNET_IP)] {
        let out = d.join(id);
        support::provision_client(&d, id, exit_ip, &out);
        let toml = out.join("client.toml");
        // Alice's circuit runs on TLS, both legs: the relay dials the exit's TLS carrier.
        let carrier = if id == "alice" { "tls" } else { "udp" };
        deploy::set_client_carrier(&toml, &w.path(&format!("{id}.sock")), carrier).unwrap();
        let mut text = std::fs::read_to_string(&toml).unwrap();
        text.push_str(&format!(
            "\n[client.circuit]\nenabled = true\nentry = \"{}\"\nentry_name = \"entry.test\"\n",
            w.lab.server_ip(1)
        ));
        std::fs::write(&toml, text).unwrap();
    }
    // Alice runs with the kill switch: only the carrier to the entry may leave C1.
    deploy::set_key_in(
        &d.join("alice/client.toml"),
        "[client]",
        "kill_switch",
        "true",
    )
    .unwrap();
}

/// Windows of the transfer's payload that a capture holding it in clear would contain.
fn payload_windows() -> Vec<Vec<u8>> {
    let payload = lab::payload_prefix(64 * 1024);
    [0usize, 1_000, 9_000, 30_000, 60_000]
        .iter()
        .map(|&at| payload[at..at + 24].to_vec())
        .collect()
}

/// Frames of `pcap` that contain any of `windows`, and the bytes captured.
fn leaks(pcap: &std::path::Path, windows: &[Vec<u8>]) -> (usize, u64) {
    let (_, frames) = support::pcap_frames(pcap);
    let bytes = frames.iter().map(|f| u64::from(f.len)).sum();
    let found = frames
        .iter()
        .filter(|f| {
            windows
                .iter()
                .any(|w| f.data.windows(w.len()).any(|x| x == w.as_slice()))
        })
        .count();
    (found, bytes)
}

#[test]
fn a_two_hop_circuit_carries_traffic_the_relay_cannot_read() {
    if let Some(why) = skip_reason(&["nft", "tcpdump"]) {
        eprintln!("skipping the circuit test: {why}");
        return;
    }
    let guard = serial();
    let mut lab = Lab::new("aura-cx", 1).unwrap();
    lab.add_exit("aura-cx").unwrap();
    let mut w = World {
        procs: Procs::reporting(),
        lab,
        dir: tempfile::tempdir().unwrap(),
        _serial: guard,
    };
    deploy(&w);
    let exit = w.server("exit", Which::Exit, "deploy/server.toml", "exit.sock");
    w.server("relay", Which::Relay, "deploy/entry.toml", "entry.sock");
    let alice_toml = w.p("deploy/alice/client.toml");
    let alice = w.spawn("alice", Which::Client, &["client", "--config", &alice_toml]);
    let st = w.wait(alice, "alice.sock", |v| v["state"] == "connected");
    assert_eq!(st["server"], format!("{EXIT_IP}:443"));
    let hops: Vec<String> = st["circuit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| format!("{} {} {}", h["name"], h["carrier"], h["state"]))
        .collect();
    assert_eq!(
        hops,
        [r#""entry.test" "tls" "up""#, r#""exit.test" "tls" "up""#]
    );

    let table = w
        .lab
        .client(1)
        .unwrap()
        .sh("nft list table inet aura_client");
    assert!(table.is_ok(), "the kill switch is on: {table:?}");

    // A transfer through the circuit, captured on both of the relay's links.
    let (c1, in_pcap) = support::start_capture_on(
        &mut w.procs,
        w.lab.server(),
        "s-c1",
        w.dir.path(),
        "relay-client-side",
    );
    let (c2, out_pcap) = support::start_capture_on(
        &mut w.procs,
        w.lab.server(),
        "s-i",
        w.dir.path(),
        "relay-exit-side",
    );
    // The control: past the exit the payload is in clear, and the search finds it.
    let (c3, clear_pcap) = support::start_capture_on(
        &mut w.procs,
        w.lab.internet(),
        "i-x",
        w.dir.path(),
        "exit-internet-side",
    );
    let r = w.transfer(2 * MB, Duration::from_secs(60)).unwrap();
    for c in [c1, c2, c3] {
        support::stop_capture(&mut w.procs, c);
    }
    eprintln!(
        "2 MiB through 2 hops: {:.1} Mbit/s in {:?}",
        r.mbit_per_s, r.duration
    );
    assert_eq!(r.peer_seen.ip(), EXIT_IP, "the internet host sees the exit");
    let windows = payload_windows();
    for pcap in [&in_pcap, &out_pcap] {
        let (found, bytes) = leaks(pcap, &windows);
        assert!(bytes >= 2 * MB as u64, "{}: {bytes} bytes", pcap.display());
        assert_eq!(found, 0, "{}: the relay saw the payload", pcap.display());
    }
    let (found, _) = leaks(&clear_pcap, &windows);
    assert!(
        found >= 3,
        "the search found the payload {found} times past the exit"
    );
    // The exit sees the relay as the client; the relay gave the client no address.
    let exit_view = support::status(&w.p("exit.sock")).unwrap();
    let peers = exit_view["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{exit_view}");
    assert_eq!(peers[0]["id"], "alice");
    let remote: std::net::SocketAddr = peers[0]["remote"].as_str().unwrap().parse().unwrap();
    assert_eq!(remote.ip(), SERVER_INTERNET_IP, "the exit sees the relay");
    assert_eq!(peers[0]["carrier"], "tls", "{exit_view}");
    let relay_view = support::status(&w.p("entry.sock")).unwrap();
    assert_eq!(
        relay_view["peers"].as_array().map(Vec::len),
        Some(0),
        "{relay_view}"
    );

    // The exit dies: the client sees the circuit down and builds it again once a new
    // exit runs.
    w.procs[exit].signal(Signal::SIGKILL).unwrap();
    assert!(w.procs[exit].wait_exit(Duration::from_secs(5)).is_some());
    w.wait(alice, "alice.sock", |v| v["state"] != "connected");
    let restart = Instant::now();
    w.server("exit-2", Which::Exit, "deploy/server.toml", "exit.sock");
    let st = w.wait(alice, "alice.sock", |v| {
        v["state"] == "connected" && v["circuit"][1]["state"] == "up"
    });
    eprintln!(
        "circuit rebuilt {:?} after the exit restarted",
        restart.elapsed()
    );
    assert_eq!(st["circuit"].as_array().map(Vec::len), Some(2));
    let r = w.transfer(MB, Duration::from_secs(30)).unwrap();
    assert_eq!(r.peer_seen.ip(), EXIT_IP);

    // Bob's exit is not one the relay may extend to: the client stops and says why.
    w.procs[alice].signal(Signal::SIGTERM).unwrap();
    assert!(w.procs[alice].wait_exit(Duration::from_secs(10)).is_some());
    let bob_toml = w.p("deploy/bob/client.toml");
    let bob = w.spawn("bob", Which::Client, &["client", "--config", &bob_toml]);
    let status = w.procs[bob]
        .wait_exit(Duration::from_secs(30))
        .expect("bob kept running");
    assert!(!status.success());
    let log = w.procs[bob].log();
    assert!(log.contains("refused to extend the circuit"), "{log}");
    assert!(log.contains("allow_extend_to"), "{log}");
    // Nothing of either client is left on C1: no TUN, no routes through it, no kill
    // switch.
    let c1 = w.lab.client(1).unwrap();
    let left = c1.sh("ip -o link; ip route").unwrap();
    assert!(!left.contains("aura0"), "{left}");
    assert!(c1.sh("nft list table inet aura_client").is_err());
}
