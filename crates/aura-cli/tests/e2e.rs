//! End-to-end tier: real `aura server` and `aura client` processes in a lab of network
//! namespaces (`aura_lab::lab`), real TUN devices, real NAT, real TCP through the
//! tunnel.
//!
//! ```text
//!   C1 10.200.1.2 ==== 10.200.1.1 S 198.18.0.1 ==== 198.18.0.2 I
//!   C2 10.200.2.2 ==== 10.200.2.1 │                  (no route back to 10.200/16
//!   aura client --config ..       aura server        nor to the pool 10.77.0.0/24)
//!   aura0 10.77.0.x               aura0 10.77.0.1, NAT toward s-i
//! ```
//! A client's traffic can only get an answer from I if the server tunnelled and NATed
//! it, so every transfer to I checks the data path, the routes and the NAT at once.
//!
//! Needs root, `ip` and `nft`; otherwise each test prints why and passes without
//! checking (CI runs as root). The tests run one at a time (a lock), so the timing
//! assertions do not depend on how many other tests share the two cores. Every wait
//! is bounded; a guard ends every process (SIGTERM, then SIGKILL after 5 s) before the
//! namespaces are deleted, and each process's stderr is printed when a test fails.
//!
//! The `demo_*` tests run `aura demo` itself (which builds its own lab) and check that it
//! reports every carrier and leaves no namespace, file or process behind, also when
//! interrupted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs::File;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use aura_lab::deploy::{self, set_key, toml_path, toml_string};
use aura_lab::lab::{self, Lab, TransferReport};
use aura_lab::netns::{Netns, skip_reason};
use aura_lab::{Proc, Procs};
use nix::sys::signal::Signal;
use serde_json::Value;
use support::{AURA, aura, serial};

/// Port of the test listener on the internet host.
const PORT: u16 = 5201;
/// How long a daemon may take to answer on its admin socket.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a client may take to reach "connected".
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const MB: usize = 1024 * 1024;

/// One test's world. Field order is drop order: processes, then namespaces, then files.
struct World {
    procs: Procs,
    lab: Lab,
    dir: tempfile::TempDir,
    _serial: MutexGuard<'static, ()>,
}

/// Where a process runs.
#[derive(Clone, Copy)]
enum Host {
    Server,
    Client(usize),
}

/// A client of a test: its id and the host it runs on.
#[derive(Clone, Copy)]
struct ClientSpec<'a> {
    id: &'a str,
    host: usize,
    static_address: Option<&'a str>,
    revoked: bool,
    /// The device makes its own key (`aura client keygen`) and the deployment signs its
    /// request: no host but the client's ever holds the key.
    own_key: bool,
}

impl<'a> ClientSpec<'a> {
    fn new(id: &'a str, host: usize) -> Self {
        Self {
            id,
            host,
            static_address: None,
            revoked: false,
            own_key: false,
        }
    }
}

impl World {
    /// A lab with `hosts` client hosts and a deployment with `clients`, or `None` when
    /// this machine cannot run the tier.
    fn new(test: &str, hosts: usize, clients: &[ClientSpec<'_>], carrier: &str) -> Option<Self> {
        if let Some(why) = skip_reason(&["nft"]) {
            eprintln!("skipping {test}: {why}");
            return None;
        }
        let guard = serial();
        let lab = Lab::new("aura-e2e", hosts).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let w = Self {
            procs: Procs::reporting(),
            lab,
            dir,
            _serial: guard,
        };
        w.deploy(clients, carrier);
        Some(w)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn p(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    fn deploy(&self, clients: &[ClientSpec<'_>], carrier: &str) {
        let d = self.p("deploy");
        aura(&[
            "server-init",
            "--dir",
            &d,
            "--name",
            "aura-e2e.test",
            "--listen",
            "0.0.0.0",
        ]);
        let server_toml = self.path("deploy/server.toml");
        let text = std::fs::read_to_string(&server_toml).unwrap();
        let mut text = set_key(
            &text,
            "[server]",
            "admin_socket",
            &toml_path(&self.path("server.sock")),
        )
        .unwrap();
        let statics: Vec<(&str, &str)> = clients
            .iter()
            .filter_map(|c| c.static_address.map(|a| (c.id, a)))
            .collect();
        if !statics.is_empty() && !text.lines().any(|l| l.trim() == "[server.pool.static]") {
            text.push_str("\n[server.pool.static]\n");
        }
        for (id, address) in statics {
            text = set_key(&text, "[server.pool.static]", id, &toml_string(address)).unwrap();
        }
        std::fs::write(&server_toml, text).unwrap();
        for c in clients {
            let out = self.path(&format!("deploy/{}", c.id));
            if c.own_key {
                let o = out.display().to_string();
                aura(&["client", "keygen", "--dir", &o, "--id", c.id]);
                let server = self.lab.server_ip(c.host).to_string();
                aura(&[
                    "provision-client",
                    "--dir",
                    &d,
                    "--csr",
                    &format!("{o}/client.csr"),
                    "--server",
                    &server,
                    "--out",
                    &o,
                    "--force",
                ]);
            } else {
                let deploy = self.path("deploy");
                support::provision_client(&deploy, c.id, self.lab.server_ip(c.host), &out);
            }
            self.set_carrier(c.id, carrier);
        }
        for c in clients.iter().filter(|c| c.revoked) {
            aura(&["pki", "--dir", &self.p("deploy/pki"), "revoke", c.id]);
        }
    }

    /// Rewrites client `id`'s client.toml for `carrier` (and its admin socket).
    fn set_carrier(&self, id: &str, carrier: &str) {
        let path = self.path(&format!("deploy/{id}/client.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.lines().any(|l| l.trim_start().starts_with("carriers")),
            "no carriers line in {}:\n{text}",
            path.display()
        );
        deploy::set_client_carrier(&path, &self.path(&format!("{id}.sock")), carrier).unwrap();
    }

    /// Spawns `aura <args>` inside `host`, stdout and stderr to a log file.
    fn spawn(&mut self, label: &str, host: Host, args: &[String]) -> usize {
        let n = self.procs.len();
        let log = self.dir.path().join(format!("{label}-{n}.log"));
        let ns = match host {
            Host::Server => self.lab.server(),
            Host::Client(k) => self.lab.client(k).unwrap(),
        };
        let mut cmd = ns.command(AURA);
        cmd.args(args)
            .env("RUST_LOG", "info")
            .env("RUST_BACKTRACE", "1");
        self.procs
            .spawn(format!("{label} #{n}"), &mut cmd, log)
            .unwrap()
    }

    /// `aura status --json` on `socket`, if a daemon answers within 5 s.
    fn status(&self, socket: &str) -> Option<Value> {
        support::status(&self.p(socket))
    }

    /// Polls `socket` until `ok` holds for its status; an error when process `idx`
    /// exits first or `timeout` passes.
    fn wait_status(
        &mut self,
        idx: usize,
        socket: &str,
        timeout: Duration,
        ok: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let socket = self.p(socket);
        support::wait_status(&mut self.procs, idx, &socket, timeout, ok)
    }

    /// Starts `aura server` in S and waits until it answers on its admin socket.
    fn start_server(&mut self) -> usize {
        self.start_server_at("server.sock")
    }

    /// [`Self::start_server`] with the admin socket at `socket`.
    fn start_server_at(&mut self, socket: &str) -> usize {
        self.start_server_with(socket, &[])
    }

    /// [`Self::start_server_at`] with `extra` arguments.
    fn start_server_with(&mut self, socket: &str, extra: &[&str]) -> usize {
        let config = self.p("deploy/server.toml");
        let mut args: Vec<String> = vec!["server".into(), "--config".into(), config];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let idx = self.spawn("server", Host::Server, &args);
        let r = self.wait_status(idx, socket, READY_TIMEOUT, |v| v["kind"] == "server");
        if let Err(e) = r {
            panic!("server not ready: {e}");
        }
        idx
    }

    /// Starts `aura client` for `id` on host `k`; returns its index once connected and
    /// how long connecting took.
    fn start_client(&mut self, id: &str, k: usize) -> (usize, Duration, Value) {
        let idx = self.spawn_client(id, k);
        let t0 = Instant::now();
        match self.wait_status(idx, &format!("{id}.sock"), CONNECT_TIMEOUT, |v| {
            v["state"] == "connected"
        }) {
            Ok(v) => (idx, t0.elapsed(), v),
            Err(e) => panic!("{id} did not connect: {e}"),
        }
    }

    fn spawn_client(&mut self, id: &str, k: usize) -> usize {
        let config = self.p(&format!("deploy/{id}/client.toml"));
        self.spawn(
            id,
            Host::Client(k),
            &["client".into(), "--config".into(), config],
        )
    }

    /// A TCP transfer from client host `k` to the internet host.
    fn transfer(
        &self,
        k: usize,
        bytes: usize,
        timeout: Duration,
    ) -> Result<TransferReport, String> {
        lab::transfer(
            self.lab.client(k).unwrap(),
            self.lab.internet(),
            self.lab.internet_ip(),
            PORT,
            bytes,
            timeout,
        )
    }

    /// Sends `sig` to process `idx`.
    fn signal(&self, idx: usize, sig: Signal) {
        self.procs[idx].signal(sig).unwrap();
    }
}

fn in_pool(addr: &str) -> bool {
    addr.starts_with("10.77.0.") && addr != "10.77.0.1"
}

fn peers(v: &Value) -> Vec<Value> {
    v["peers"].as_array().cloned().unwrap_or_default()
}

/// One client over `carrier`: 50 MB to the internet host, NATed, counted, with cover
/// traffic ("https") on: the transfer arrives intact (SHA-256 on both sides) while padding
/// flows both ways.
fn carrier_transfer(carrier: &str) {
    let test = format!("carrier_{carrier}");
    let Some(mut w) = World::new(&test, 1, &[ClientSpec::new("alice", 1)], carrier) else {
        return;
    };
    let server_toml = w.path("deploy/server.toml");
    let mut text = std::fs::read_to_string(&server_toml).unwrap();
    text.push_str("\n[server.cover]\nenabled = true\n");
    std::fs::write(&server_toml, text).unwrap();
    let client_toml = w.path("deploy/alice/client.toml");
    let text = std::fs::read_to_string(&client_toml).unwrap();
    let text = set_key(&text, "[transport]", "cover", "\"https\"").unwrap();
    std::fs::write(&client_toml, text).unwrap();
    w.start_server();
    let (alice_idx, connect, st) = w.start_client("alice", 1);
    assert_eq!(st["carrier"], carrier, "{st}");
    let r = w.transfer(1, 50 * MB, Duration::from_secs(90)).unwrap();
    eprintln!(
        "{carrier}: connect {connect:?}, 50 MB in {:?} = {:.0} Mbit/s, seen from {}, sent from {}",
        r.duration, r.mbit_per_s, r.peer_seen, r.sender_local
    );
    assert_eq!(r.bytes, 50 * MB as u64);
    assert_eq!(r.peer_seen.ip(), w.lab.server_internet_ip(), "not NATed");
    let local = r.sender_local.ip().to_string();
    assert!(in_pool(&local), "sender's local address {local}");
    assert_eq!(st["address"], local.as_str(), "{st}");
    let s = w.status("server.sock").unwrap();
    let p = peers(&s);
    let alice = p
        .iter()
        .find(|p| p["id"] == "alice")
        .unwrap_or_else(|| panic!("{s}"));
    assert_eq!(alice["carrier"], carrier, "{alice}");
    // QUIC and TLS sessions are encrypted once, by the outer session they are bound to
    // (docs/adr/0024); UDP by Aura. Both ends say so.
    let encryption = if carrier == "udp" {
        "aura"
    } else {
        "outer-bound"
    };
    assert_eq!(alice["encryption"], encryption, "{alice}");
    assert_eq!(st["encryption"], encryption, "{st}");
    assert_eq!(alice["tunnel_address"], local.as_str(), "{alice}");
    assert!(
        alice["bytes_in"].as_u64().unwrap() >= 50 * MB as u64,
        "{alice}"
    );
    assert!(alice["bytes_out"].as_u64().unwrap() > 0, "{alice}");
    // Cover traffic was granted and ran both ways (the tail after the transfer's last
    // packets comes within 25 ms each way).
    let padded = |v: &Value| {
        v["cover"]["padding_out"].as_u64() > Some(0) && v["cover"]["padding_in"].as_u64() > Some(0)
    };
    let st = w
        .wait_status(alice_idx, "alice.sock", Duration::from_secs(5), padded)
        .unwrap_or_else(|e| panic!("no padding both ways: {e}"));
    let cover = &st["cover"];
    assert_eq!(cover["state"], "granted", "{st}");
    assert_eq!(cover["budget_permille"], 500, "{st}");
    let s = w.status("server.sock").unwrap();
    let alice = peers(&s).into_iter().find(|p| p["id"] == "alice").unwrap();
    assert!(alice["padding_in"].as_u64().unwrap() > 0, "{alice}");
    assert!(alice["padding_out"].as_u64().unwrap() > 0, "{alice}");
    eprintln!(
        "{carrier}: padding {} out and {} in at the client",
        cover["padding_out"], cover["padding_in"]
    );
}

#[test]
fn carrier_udp_50mb_through_the_tunnel() {
    carrier_transfer("udp");
}

#[test]
fn carrier_quic_50mb_through_the_tunnel() {
    carrier_transfer("quic");
}

#[test]
fn carrier_tls_50mb_through_the_tunnel() {
    carrier_transfer("tls");
}

#[test]
fn two_clients_at_once_with_a_static_address() {
    // Bob's device made its own key: it connects like any other client.
    let bob = ClientSpec {
        static_address: Some("10.77.0.50"),
        own_key: true,
        ..ClientSpec::new("bob", 2)
    };
    let Some(mut w) = World::new("two_clients", 2, &[ClientSpec::new("alice", 1), bob], "udp")
    else {
        return;
    };
    w.start_server();
    let (_, _, a) = w.start_client("alice", 1);
    let (_, _, b) = w.start_client("bob", 2);
    assert_eq!(b["address"], "10.77.0.50", "{b}");
    assert_ne!(a["address"], b["address"]);
    assert!(in_pool(a["address"].as_str().unwrap()), "{a}");
    // Both at the same time (different ports on I).
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| w.transfer(1, 10 * MB, Duration::from_secs(60)));
        let rb = lab::transfer(
            w.lab.client(2).unwrap(),
            w.lab.internet(),
            w.lab.internet_ip(),
            PORT + 1,
            10 * MB,
            Duration::from_secs(60),
        );
        (ta.join().unwrap(), rb)
    });
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        ra.sender_local.ip().to_string(),
        a["address"].as_str().unwrap()
    );
    assert_eq!(rb.sender_local.ip().to_string(), "10.77.0.50");
    for r in [&ra, &rb] {
        assert_eq!(r.bytes, 10 * MB as u64);
        assert_eq!(r.peer_seen.ip(), w.lab.server_internet_ip());
    }
    let s = w.status("server.sock").unwrap();
    let mut ids: Vec<String> = peers(&s)
        .iter()
        .map(|p| p["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["alice", "bob"], "{s}");
}

#[test]
fn client_recovers_within_10s_of_a_server_restart_after_sigkill() {
    let Some(mut w) = World::new("server_restart", 1, &[ClientSpec::new("alice", 1)], "udp") else {
        return;
    };
    let server = w.start_server();
    let (client, _, _) = w.start_client("alice", 1);
    w.transfer(1, MB, Duration::from_secs(20)).unwrap();
    w.signal(server, Signal::SIGKILL);
    assert!(w.procs[server].wait_exit(Duration::from_secs(5)).is_some());
    // The killed server left its NAT table behind; the next one must cope.
    assert!(w.lab.server().sh("nft list table inet aura").is_ok());
    std::thread::sleep(Duration::from_secs(1));
    let restart = Instant::now();
    w.start_server();
    eprintln!("server answering after {:?}", restart.elapsed());
    let deadline = restart + Duration::from_secs(10);
    let mut last = String::new();
    let recovered = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break None;
        }
        match w.transfer(1, MB, left.min(Duration::from_secs(3))) {
            Ok(r) => break Some(r),
            Err(e) => last = e,
        }
        if let Some(s) = w.procs[client].exited() {
            panic!("the client exited ({s}) while the server was away");
        }
    };
    let took = restart.elapsed();
    eprintln!("back after {took:?} (last error before: {last:?})");
    let r = recovered.unwrap_or_else(|| panic!("no transfer within 10 s of the restart: {last}"));
    assert_eq!(r.peer_seen.ip(), w.lab.server_internet_ip());
    assert!(took <= Duration::from_secs(10), "{took:?}");
}

/// A [`snapshot`] without the link's IPv6 link-local address, which may come up (after
/// DAD) while a test runs.
fn settled(snapshot: &str) -> String {
    snapshot
        .lines()
        .filter(|l| !l.contains("local fe80::"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Everything the server or a client may change in a namespace.
fn snapshot(ns: &Netns, with_nft: bool) -> String {
    let nft = if with_nft { "nft list ruleset" } else { "true" };
    ns.sh(&format!(
        "{nft}; echo ---; ip route show table all; echo ---; ip -6 route show table all; \
         echo ---; ip rule; echo ---; sysctl -n net.ipv4.ip_forward; echo ---; ip -o link; \
         echo ---; cat /etc/resolv.conf"
    ))
    .unwrap()
}

#[test]
fn sigterm_restores_server_and_client_hosts_exactly() {
    stop_restores_hosts("sigterm_restores", Signal::SIGTERM, Signal::SIGTERM);
}

/// SIGQUIT stops the server and SIGHUP the client as SIGTERM does: host changes undone,
/// exit 0. (A server takes SIGHUP as a reload: `daemons_run_as_an_unprivileged_user`.)
#[test]
fn sigquit_and_a_clients_sighup_restore_hosts_too() {
    stop_restores_hosts("sigquit_sighup", Signal::SIGQUIT, Signal::SIGHUP);
}

/// Runs a server and a client, moves data, stops the server with `server_sig` and the
/// client with `client_sig`: each exits 0 and leaves its host as it found it.
fn stop_restores_hosts(test: &str, server_sig: Signal, client_sig: Signal) {
    let Some(mut w) = World::new(test, 1, &[ClientSpec::new("alice", 1)], "udp") else {
        return;
    };
    let s_before = snapshot(w.lab.server(), true);
    let c_before = snapshot(w.lab.client(1).unwrap(), false);
    let server = w.start_server();
    let (client, _, _) = w.start_client("alice", 1);
    w.transfer(1, MB, Duration::from_secs(20)).unwrap();
    let table = w.lab.server().sh("nft list table inet aura").unwrap();
    assert!(table.contains("masquerade"), "{table}");
    assert_eq!(
        w.lab
            .server()
            .sh("sysctl -n net.ipv4.ip_forward")
            .unwrap()
            .trim(),
        "1"
    );
    assert_ne!(
        snapshot(w.lab.client(1).unwrap(), false),
        c_before,
        "no client routes?"
    );

    w.signal(server, server_sig);
    let st = w.procs[server].wait_exit(Duration::from_secs(10));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "server exit: {st:?}");
    assert_eq!(
        snapshot(w.lab.server(), true),
        s_before,
        "server host not restored"
    );

    w.signal(client, client_sig);
    let st = w.procs[client].wait_exit(Duration::from_secs(10));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "client exit: {st:?}");
    assert_eq!(
        snapshot(w.lab.client(1).unwrap(), false),
        c_before,
        "client host not restored"
    );
}

#[test]
fn a_revoked_client_is_refused() {
    let bob = ClientSpec {
        revoked: true,
        ..ClientSpec::new("bob", 1)
    };
    let Some(mut w) = World::new("revoked_client", 1, &[bob], "udp") else {
        return;
    };
    let server = w.start_server();
    let idx = w.spawn_client("bob", 1);
    let r = w.wait_status(idx, "bob.sock", Duration::from_secs(8), |v| {
        v["state"] == "connected"
    });
    assert!(r.is_err(), "a revoked client connected: {r:?}");
    let s = w.status("server.sock").unwrap();
    assert!(!peers(&s).iter().any(|p| p["id"] == "bob"), "{s}");
    // A refusal ends the client with status 1 (docs/adr/0006).
    let st = w.procs[idx].wait_exit(Duration::from_secs(5));
    assert_eq!(st.and_then(|s| s.code()), Some(1), "{st:?}");
    let log = w.procs[idx].log();
    eprintln!("bob ({st:?}):\n{log}");
    let log = log.to_lowercase();
    assert!(
        log.contains("revoked") || log.contains("refused") || log.contains("rejected"),
        "bob's log does not say why:\n{log}"
    );
    // The server says so too, once per source per interval: bob trying again from the
    // same address adds no line.
    let again = w.spawn_client("bob", 1);
    let st = w.procs[again].wait_exit(Duration::from_secs(15));
    assert_eq!(st.and_then(|s| s.code()), Some(1), "{st:?}");
    let log = w.procs[server].log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused a handshake"))
        .collect();
    assert_eq!(lines.len(), 1, "server log:\n{log}");
    assert!(lines[0].contains("revoked"), "{}", lines[0]);
}

/// Lines of the running process's stdout, as they come.
fn lines_of(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Namespaces still listed whose name has the demo run's `-<pid>-`.
fn demo_leftovers(pid: u32) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("aura-demo-") && l.contains(&format!("-{pid}-")))
        .map(str::to_owned)
        .collect()
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{}: {cmd}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// Runs `aura demo` with a guard; returns the child and its stdout lines.
fn start_demo(
    test: &str,
) -> Option<(
    MutexGuard<'static, ()>,
    Proc,
    std::sync::mpsc::Receiver<String>,
)> {
    if let Some(why) = skip_reason(&["nft"]) {
        eprintln!("skipping {test}: {why}");
        return None;
    }
    let guard = serial();
    let log = std::env::temp_dir().join(format!("aura-e2e-{test}-{}.log", std::process::id()));
    let mut child = Command::new(AURA)
        .arg("demo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    Some((guard, Proc::new("demo", child, log), lines))
}

#[test]
fn demo_reports_every_carrier_and_leaves_nothing_behind() {
    let Some((_serial, proc, lines)) = start_demo("demo_runs") else {
        return;
    };
    let mut procs = Procs::reporting();
    procs.push(proc);
    let pid = procs[0].id();
    let status = procs[0].wait_exit(Duration::from_secs(120));
    let out: Vec<String> = lines.try_iter().collect();
    let out = out.join("\n");
    eprintln!("{out}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{out}");
    for carrier in ["udp", "quic", "tls"] {
        let row = out
            .lines()
            .find(|l| l.starts_with(carrier) && l.contains("ok, SHA-256 match"))
            .unwrap_or_else(|| panic!("no {carrier} row:\n{out}"));
        assert!(row.contains("198.18.0.1"), "{row}");
        assert!(row.contains("10.77.0."), "{row}");
    }
    assert!(demo_leftovers(pid).is_empty(), "{:?}", demo_leftovers(pid));
    let dir = std::env::temp_dir().join(format!("aura-demo-{pid}"));
    assert!(!dir.exists(), "{} left behind", dir.display());
    let _ = std::fs::remove_file(procs[0].log_path());
}

#[test]
fn demo_removes_everything_when_interrupted() {
    let Some((_serial, proc, lines)) = start_demo("demo_sigterm") else {
        return;
    };
    let mut procs = Procs::reporting();
    procs.push(proc);
    let pid = procs[0].id();
    // Interrupt once the server runs and a client is on its way.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match lines.recv_timeout(Duration::from_millis(200)) {
            Ok(l) => {
                let go = l.contains("udp: connecting");
                seen.push(l);
                if go {
                    break;
                }
            }
            Err(_) if procs[0].exited().is_some() => break,
            Err(_) => {}
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("udp: connecting")),
        "the demo never got to the first carrier: {seen:?}"
    );
    procs[0].signal(Signal::SIGTERM).unwrap();
    let status = procs[0].wait_exit(Duration::from_secs(20));
    let log = procs[0].log();
    eprintln!("stdout: {seen:?}\nstderr: {log}");
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{status:?}");
    assert!(log.contains("interrupted"), "{log}");
    assert!(demo_leftovers(pid).is_empty(), "{:?}", demo_leftovers(pid));
    let dir = std::env::temp_dir().join(format!("aura-demo-{pid}"));
    assert!(!dir.exists(), "{} left behind", dir.display());
    let left = processes_mentioning(&dir.display().to_string());
    assert!(left.is_empty(), "processes left: {left:?}");
    let _ = std::fs::remove_file(procs[0].log_path());
}

#[test]
fn demo_without_root_says_what_it_needs() {
    if nix::unistd::geteuid().is_root() && !aura_lab::netns::have("setpriv") {
        eprintln!("skipping demo_without_root: root without setpriv to drop privileges");
        return;
    }
    let mut cmd = if nix::unistd::geteuid().is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            AURA,
        ]);
        c
    } else {
        Command::new(AURA)
    };
    let out = cmd.arg("demo").stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.starts_with("setpriv:") {
        eprintln!("skipping demo_without_root: {err}");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("needs root"), "{err}");
    assert!(err.contains("network namespaces"), "{err}");
}

/// A client that comes back over another carrier while the server still holds its
/// previous session (a client stopped with SIGTERM is only dropped by the server after
/// the 8 s dead-peer timeout) must be listed with the new carrier.
#[test]
fn a_client_back_over_another_carrier_is_listed_with_it() {
    let Some(mut w) = World::new("carrier_switch", 1, &[ClientSpec::new("alice", 1)], "udp") else {
        return;
    };
    w.start_server();
    let (first, _, _) = w.start_client("alice", 1);
    w.signal(first, Signal::SIGTERM);
    assert!(w.procs[first].wait_exit(Duration::from_secs(10)).is_some());
    w.set_carrier("alice", "quic");
    let (_, connect, st) = w.start_client("alice", 1);
    eprintln!("connect over quic with a stale udp session on the server: {connect:?}");
    let r = w.transfer(1, MB, Duration::from_secs(20)).unwrap();
    assert_eq!(
        r.sender_local.ip().to_string(),
        st["address"].as_str().unwrap()
    );
    let s = w.status("server.sock").unwrap();
    let p = peers(&s);
    assert_eq!(p.len(), 1, "{s}");
    assert_eq!(p[0]["carrier"], "quic", "{s}");
    assert_eq!(p[0]["tunnel_address"], st["address"], "{s}");
}

/// A server with two workers and a client whose host moves to an address the kernel
/// steers to the other worker: the session goes on (the worker that reads the new
/// address hands its datagrams to the one holding the session), with no new handshake,
/// and the server answers the new address.
#[test]
fn a_client_that_moves_to_another_workers_address_keeps_its_session() {
    let Some(mut w) = World::new("worker_move", 1, &[ClientSpec::new("alice", 1)], "udp") else {
        return;
    };
    let server_toml = w.path("deploy/server.toml");
    let text = std::fs::read_to_string(&server_toml).unwrap();
    std::fs::write(
        &server_toml,
        set_key(&text, "[server]", "workers", "2").unwrap(),
    )
    .unwrap();
    w.start_server();
    w.start_client("alice", 1);
    let before = w.status("server.sock").unwrap();
    let p = peers(&before);
    let old: std::net::SocketAddr = p[0]["remote"].as_str().unwrap().parse().unwrap();
    assert_eq!(old.ip(), IpAddr::V4(w.lab.client_ip(1)), "{before}");
    let queues = w.lab.server().sh("ls /sys/class/net/aura0/queues").unwrap();
    let rx: Vec<&str> = queues
        .split_whitespace()
        .filter(|q| q.starts_with("rx-"))
        .collect();
    assert_eq!(rx, ["rx-0", "rx-1"], "one TUN queue per worker: {queues}");
    // The server's TUN device has a queue per worker, each with its reader: flows the
    // server host opens toward the client land on either queue (the kernel hashes them),
    // and every one gets through.
    let tunnel: std::net::Ipv4Addr = p[0]["tunnel_address"].as_str().unwrap().parse().unwrap();
    for port in 7100..7108 {
        let r = lab::transfer(
            w.lab.server(),
            w.lab.client(1).unwrap(),
            tunnel,
            port,
            64 * 1024,
            Duration::from_secs(3),
        );
        assert!(r.is_ok(), "server host to the client, port {port}: {r:?}");
    }
    let worker = |ip: IpAddr| aura_transport::carrier::udp::worker_of(ip, 2);
    let new_ip = (3..=250u8)
        .map(|i| IpAddr::V4(std::net::Ipv4Addr::new(10, 200, 1, i)))
        .find(|ip| worker(*ip) != worker(old.ip()))
        .unwrap();
    // The client host gets a second address and reaches the server from it (the route
    // the client daemon made to the server, given that source).
    let server_ip = w.lab.server_ip(1);
    w.lab
        .client(1)
        .unwrap()
        .sh(&format!(
            "ip addr add {new_ip}/24 dev c1-s
             ip route replace {server_ip}/32 dev c1-s proto 167 src {new_ip}"
        ))
        .unwrap();
    let r = w.transfer(1, MB, Duration::from_secs(10));
    assert!(r.is_ok(), "no transfer after the move: {r:?}");
    let after = w.status("server.sock").unwrap();
    let p = peers(&after);
    assert_eq!(p.len(), 1, "{after}");
    let now: std::net::SocketAddr = p[0]["remote"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        now.ip(),
        new_ip,
        "the server answers the new address: {after}"
    );
    // The same session: neither a new handshake nor a new connection.
    let before_p = &peers(&before)[0];
    assert_eq!(
        p[0]["connected_since"], before_p["connected_since"],
        "{after}"
    );
    assert_eq!(
        p[0]["last_handshake"], before_p["last_handshake"],
        "{after}"
    );
}

/// What client `alice` (on C1) reaches through the tunnel: the internet host, the server
/// host's own service on its tunnel address, client `bob` (on C2) and host C3 (a LAN of
/// the server's, not behind its egress). Each probe is a short TCP transfer.
fn reachable(w: &World) -> [bool; 4] {
    const SERVICE_PORT: u16 = 7001;
    let probe = |to: &Netns, addr: std::net::Ipv4Addr, port: u16| {
        lab::transfer(
            w.lab.client(1).unwrap(),
            to,
            addr,
            port,
            64 * 1024,
            Duration::from_secs(3),
        )
        .is_ok()
    };
    [
        probe(w.lab.internet(), w.lab.internet_ip(), PORT),
        probe(w.lab.server(), "10.77.0.1".parse().unwrap(), SERVICE_PORT),
        probe(
            w.lab.client(2).unwrap(),
            "10.77.0.20".parse().unwrap(),
            PORT,
        ),
        probe(w.lab.client(3).unwrap(), w.lab.client_ip(3), PORT),
    ]
}

/// By default a client reaches the internet and nothing else (ping to the server's
/// tunnel address excepted); `[server.firewall]` opens other clients, a subnet and a
/// host port, each on its own.
#[test]
fn clients_reach_the_internet_and_what_the_firewall_opens() {
    let clients = [
        ClientSpec {
            static_address: Some("10.77.0.10"),
            ..ClientSpec::new("alice", 1)
        },
        ClientSpec {
            static_address: Some("10.77.0.20"),
            ..ClientSpec::new("bob", 2)
        },
    ];
    let opened = "\n[server.firewall]\nclient_to_client = true\n\
                  allow_subnets = [\"10.200.3.0/24\"]\nallow_host_ports = [\"7001/tcp\"]\n";
    for (section, expected) in [
        ("", [true, false, false, false]),
        (opened, [true, true, true, true]),
    ] {
        let Some(mut w) = World::new("firewall", 3, &clients, "udp") else {
            return;
        };
        let server_toml = w.path("deploy/server.toml");
        let mut text = std::fs::read_to_string(&server_toml).unwrap();
        text.push_str(section);
        std::fs::write(&server_toml, text).unwrap();
        w.start_server();
        w.start_client("alice", 1);
        w.start_client("bob", 2);
        let ping = w.lab.client(1).unwrap().sh("ping -c 1 -W 2 10.77.0.1");
        assert!(
            ping.is_ok(),
            "ping to the server's tunnel address: {ping:?}"
        );
        assert_eq!(
            reachable(&w),
            expected,
            "[internet, server service, other client, server LAN] with {section:?}"
        );
    }
}

/// The reply times (Unix seconds) in the log of `ping -D`.
fn ping_replies(log: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect()
}

/// Revocation end to end: bob is revoked on the CA host while both clients send; bob's
/// traffic stops within 5 s, alice's goes on.
#[test]
fn a_client_revoked_mid_session_is_cut_off_within_5s_and_only_it() {
    let clients = [ClientSpec::new("alice", 1), ClientSpec::new("bob", 2)];
    let Some(mut w) = World::new("revoke_live", 2, &clients, "udp") else {
        return;
    };
    w.start_server();
    w.start_client("alice", 1);
    w.start_client("bob", 2);
    let internet = w.lab.internet_ip().to_string();
    let mut pings = Vec::new();
    for (k, label) in [(1, "ping-alice"), (2, "ping-bob")] {
        let mut cmd = w.lab.client(k).unwrap().command("ping");
        cmd.args(["-D", "-n", "-i", "0.1", "-W", "1", "-w", "14", &internet]);
        let log = w.dir.path().join(format!("{label}.log"));
        pings.push(w.procs.spawn(label, &mut cmd, log).unwrap());
    }
    std::thread::sleep(Duration::from_secs(3));
    let revoked_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    aura(&["pki", "--dir", &w.p("deploy/pki"), "revoke", "bob"]);
    for &p in &pings {
        w.procs[p].wait_exit(Duration::from_secs(20));
    }
    let alice = ping_replies(&w.procs[pings[0]].log());
    let bob = ping_replies(&w.procs[pings[1]].log());
    let bob_last = *bob.last().expect("bob never got a reply");
    assert!(
        bob_last > revoked_at - 1.0,
        "bob's traffic stopped before the revocation"
    );
    let cut_after = bob_last - revoked_at;
    eprintln!("bob's last reply came {cut_after:.2} s after the revocation");
    assert!(
        cut_after <= 5.0,
        "bob still reached the internet {cut_after:.2} s after"
    );
    let alice_later = alice.iter().filter(|t| **t > revoked_at + 5.0).count();
    assert!(
        alice_later >= 30,
        "alice got {alice_later} replies in the 6 s after bob's cut"
    );
}

/// Split tunnelling: a DIRECT network (the internet host's 198.18.0.0/24) goes outside the
/// tunnel along the client's original path, a VPN carve-out inside it (198.18.0.3) and
/// everything else go through the tunnel, and a LAN host behind the client stays on its
/// link. Which way each flow went shows in the address the far end saw: the client's own
/// address for the direct ones, the server's (NAT) for the tunnelled one. The host's
/// routes are exactly as before once the client stops.
#[test]
fn split_rules_send_direct_networks_outside_the_tunnel() {
    let Some(mut w) = World::new("split", 1, &[ClientSpec::new("alice", 1)], "udp") else {
        return;
    };
    let before = snapshot(w.lab.client(1).unwrap(), false);
    // The internet host answers the client's own address too (for the direct flows),
    // and has a second address that stays behind the tunnel.
    w.lab
        .internet()
        .sh(&format!(
            "ip addr add 198.18.0.3/24 dev i-s\nip route add 10.200.0.0/16 via {}",
            w.lab.server_internet_ip()
        ))
        .unwrap();
    // A LAN host behind the client.
    let lan = Netns::new("aura-e2e-lan").unwrap();
    w.lab
        .client(1)
        .unwrap()
        .sh(&format!(
            "ip link add c1-lan type veth peer name lan-c1 netns {}\n\
             ip addr add 192.168.77.1/24 dev c1-lan\nip link set c1-lan up",
            lan.name()
        ))
        .unwrap();
    lan.sh("ip addr add 192.168.77.2/24 dev lan-c1\nip link set lan-c1 up")
        .unwrap();
    let toml = w.path("deploy/alice/client.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(
        "\n[[tunnel.split.direct]]\ncidr = \"198.18.0.0/24\"\n\
         [[tunnel.split.vpn]]\ncidr = \"198.18.0.3\"\n",
    );
    std::fs::write(&toml, text).unwrap();

    w.start_server();
    let (client, _, st) = w.start_client("alice", 1);
    let client_ns = w.lab.client(1).unwrap();
    let tunnel_ip = st["address"].as_str().unwrap().to_owned();
    let routes = client_ns.sh("ip route").unwrap();
    assert!(
        routes.contains("198.18.0.0/24 via 10.200.1.1 dev c1-s proto 167"),
        "{routes}"
    );
    assert!(
        routes.contains("198.18.0.3 dev aura0 proto 167"),
        "{routes}"
    );

    let to = |addr: &str, port: u16| {
        lab::transfer(
            client_ns,
            w.lab.internet(),
            addr.parse::<std::net::Ipv4Addr>().unwrap(),
            port,
            2 * MB,
            Duration::from_secs(30),
        )
        .unwrap()
    };
    let direct = to("198.18.0.2", PORT);
    assert_eq!(
        direct.peer_seen.ip().to_string(),
        "10.200.1.2",
        "{direct:?}"
    );
    assert_eq!(direct.sender_local.ip().to_string(), "10.200.1.2");
    let tunnelled = to("198.18.0.3", PORT + 1);
    assert_eq!(
        tunnelled.peer_seen.ip(),
        w.lab.server_internet_ip(),
        "{tunnelled:?}"
    );
    assert_eq!(tunnelled.sender_local.ip().to_string(), tunnel_ip);
    let on_lan = lab::transfer(
        client_ns,
        &lan,
        "192.168.77.2".parse::<std::net::Ipv4Addr>().unwrap(),
        PORT + 2,
        2 * MB,
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(on_lan.peer_seen.ip().to_string(), "192.168.77.1");
    for r in [&direct, &tunnelled, &on_lan] {
        assert_eq!(r.bytes, 2 * MB as u64);
    }

    w.signal(client, Signal::SIGTERM);
    let st = w.procs[client].wait_exit(Duration::from_secs(10));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{st:?}");
    let client_ns = w.lab.client(1).unwrap();
    client_ns.sh("ip link del c1-lan").unwrap();
    assert_eq!(snapshot(client_ns, false), before);
}

/// The IPv4 packets of an Ethernet capture: (source, destination, protocol, destination
/// port for TCP and UDP).
fn ipv4_packets(pcap: &std::path::Path) -> Vec<(std::net::Ipv4Addr, std::net::Ipv4Addr, u8, u16)> {
    let (_, frames) = support::pcap_frames(pcap);
    frames
        .iter()
        .filter_map(|f| {
            let d = f.data.as_slice();
            if d.len() < 34 || d[12..14] != [0x08, 0x00] {
                return None;
            }
            let ip = &d[14..];
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let src = std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            let port = match ip[9] {
                6 | 17 => ip
                    .get(ihl + 2..ihl + 4)
                    .map_or(0, |p| u16::from_be_bytes([p[0], p[1]])),
                _ => 0,
            };
            Some((src, dst, ip[9], port))
        })
        .collect()
}

/// From inside the client host: a ping, a TCP connection and a UDP datagram toward the
/// internet host (none of which may leave in the clear under the kill switch).
fn try_the_internet(ns: &Netns, to: std::net::Ipv4Addr) {
    let _ = ns.sh(&format!("ping -c 2 -W 1 {to} || true"));
    ns.run(|| {
        let _ = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from((to, PORT)),
            Duration::from_secs(1),
        );
        if let Ok(u) = std::net::UdpSocket::bind("0.0.0.0:0") {
            let _ = u.send_to(b"a query", (to, 53));
        }
    })
    .unwrap();
}

/// Kill switch: a client that cannot reach its server (not started yet) lets nothing
/// out but its carriers' attempts to the server, where the same host without it sends
/// to the internet host in the clear; once the server runs, the tunnel works through
/// the kill switch; when the client stops, the host (nftables included) is as before.
#[test]
fn the_kill_switch_lets_only_the_carriers_out_while_the_server_is_down() {
    let Some(mut w) = World::new("kill_switch", 1, &[ClientSpec::new("alice", 1)], "udp") else {
        return;
    };
    if let Some(why) = skip_reason(&["tcpdump", "ping"]) {
        eprintln!("skipping the_kill_switch_lets_only_the_carriers_out: {why}");
        return;
    }
    let toml = w.path("deploy/alice/client.toml");
    aura_lab::deploy::set_key_in(&toml, "[client]", "kill_switch", "true").unwrap();
    let client_ip = w.lab.client_ip(1);
    let server_ip = w.lab.server_ip(1);
    let internet = w.lab.internet_ip();
    let before = snapshot(w.lab.client(1).unwrap(), true);
    let dir = w.dir.path().to_owned();

    // Without a client: the host sends to the internet host in the clear (the control
    // that shows the capture sees a leak).
    let (cap, pcap) = support::start_capture(&mut w.procs, &w.lab, 1, &dir, "control");
    try_the_internet(w.lab.client(1).unwrap(), internet);
    support::stop_capture(&mut w.procs, cap);
    let leaked = ipv4_packets(&pcap)
        .into_iter()
        .filter(|p| p.0 == client_ip && p.1 == internet)
        .count();
    assert!(
        leaked >= 3,
        "the control saw {leaked} packets to {internet}"
    );

    // The client, its server down: only carrier attempts to the server leave.
    let client = w.spawn_client("alice", 1);
    support::wait_log(&mut w.procs, client, Duration::from_secs(10), |l| {
        l.contains("kill switch on")
    });
    let (cap, pcap) = support::start_capture(&mut w.procs, &w.lab, 1, &dir, "kill_switch");
    try_the_internet(w.lab.client(1).unwrap(), internet);
    std::thread::sleep(Duration::from_secs(2));
    support::stop_capture(&mut w.procs, cap);
    let out: Vec<_> = ipv4_packets(&pcap)
        .into_iter()
        .filter(|p| p.0 == client_ip)
        .collect();
    let carrier_ports = [8443, 443];
    let strays: Vec<_> = out
        .iter()
        .filter(|p| !(p.1 == server_ip && carrier_ports.contains(&p.3)))
        .collect();
    assert!(
        strays.is_empty(),
        "left the host outside the carriers: {strays:?}"
    );
    assert!(
        out.iter().any(|p| p.1 == server_ip),
        "no carrier attempt seen: {out:?}"
    );

    // The server comes up: the client connects through the kill switch and the tunnel
    // carries traffic.
    w.start_server();
    w.wait_status(client, "alice.sock", CONNECT_TIMEOUT, |v| {
        v["state"] == "connected"
    })
    .unwrap();
    let r = w.transfer(1, MB, Duration::from_secs(30)).unwrap();
    assert_eq!(r.peer_seen.ip(), w.lab.server_internet_ip());
    // A DIRECT rule added live passes the kill switch at once (its set follows the rules):
    // the internet host then sees the client's own address.
    w.lab
        .internet()
        .sh(&format!(
            "ip addr add 198.18.0.3/24 dev i-s\nip route add 10.200.0.0/16 via {}",
            w.lab.server_internet_ip()
        ))
        .unwrap();
    let out = std::process::Command::new(AURA)
        .args(["route", "add", "--direct", "198.18.0.3", "--socket"])
        .arg(w.p("alice.sock"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = w
        .lab
        .client(1)
        .unwrap()
        .sh("nft list set inet aura_client direct4")
        .unwrap();
    assert!(table.contains("198.18.0.3"), "{table}");
    let r = lab::transfer(
        w.lab.client(1).unwrap(),
        w.lab.internet(),
        "198.18.0.3".parse::<std::net::Ipv4Addr>().unwrap(),
        PORT + 1,
        MB,
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(r.peer_seen.ip(), client_ip, "{r:?}");
    // `aura client unlock` refuses while the client runs.
    let out = w
        .lab
        .client(1)
        .unwrap()
        .command(AURA)
        .args(["client", "unlock"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("a client is running"), "{said}");
    w.lab.internet().sh("ip route del 10.200.0.0/16").unwrap();

    w.signal(client, Signal::SIGTERM);
    let st = w.procs[client].wait_exit(Duration::from_secs(10));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{st:?}");
    assert_eq!(
        settled(&snapshot(w.lab.client(1).unwrap(), true)),
        settled(&before)
    );
}

/// `aura route`: a DIRECT rule added while a transfer runs takes effect at once (the new
/// flow leaves outside the tunnel, the running one finishes intact through it), shows in
/// `aura route list --json`, is written to client.toml with `--persist`, and goes again
/// with `remove --persist`.
#[test]
fn aura_route_changes_the_running_client() {
    let Some(mut w) = World::new("route_cmd", 1, &[ClientSpec::new("alice", 1)], "udp") else {
        return;
    };
    w.lab
        .internet()
        .sh(&format!(
            "ip addr add 198.18.0.3/24 dev i-s\nip route add 10.200.0.0/16 via {}",
            w.lab.server_internet_ip()
        ))
        .unwrap();
    w.start_server();
    let (client, _, _) = w.start_client("alice", 1);
    let socket = w.p("alice.sock");
    let config = w.p("deploy/alice/client.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let (running, added) = std::thread::scope(|s| {
        let running = s.spawn(|| w.transfer(1, 40 * MB, Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(200));
        let added = aura(&[
            "route",
            "add",
            "--direct",
            "198.18.0.3",
            "--socket",
            &socket,
            "--persist",
            "--config",
            &config,
        ]);
        (running.join().unwrap(), added)
    });
    let running = running.unwrap();
    assert_eq!(running.bytes, 40 * MB as u64);
    assert_eq!(
        running.peer_seen.ip(),
        w.lab.server_internet_ip(),
        "{running:?}"
    );
    let shown = String::from_utf8_lossy(&added.stdout).to_string();
    assert!(
        shown.contains("198.18.0.3/32") && shown.contains("live"),
        "{shown}"
    );
    // 1 MiB from the client host to 198.18.0.3 on `port`.
    let to_second = |port: u16| {
        lab::transfer(
            w.lab.client(1).unwrap(),
            w.lab.internet(),
            "198.18.0.3".parse::<std::net::Ipv4Addr>().unwrap(),
            port,
            MB,
            Duration::from_secs(30),
        )
        .unwrap()
    };
    let direct = to_second(PORT + 1);
    assert_eq!(
        direct.peer_seen.ip().to_string(),
        "10.200.1.2",
        "{direct:?}"
    );
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.ends_with("\n[[tunnel.split.direct]]\ncidr = \"198.18.0.3\"\n"),
        "{text}"
    );
    let listed = aura(&["route", "list", "--json", "--socket", &socket]);
    let rules: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(rules[0]["rule"], "198.18.0.3/32", "{rules}");
    assert_eq!(rules[0]["kind"], "direct");
    assert!(
        rules[0]["via"].as_str().unwrap().contains("dev c1-s"),
        "{rules}"
    );
    aura(&[
        "route",
        "remove",
        "198.18.0.3/32",
        "--socket",
        &socket,
        "--persist",
        "--config",
        &config,
    ]);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
    let back = to_second(PORT + 2);
    assert_eq!(back.peer_seen.ip(), w.lab.server_internet_ip(), "{back:?}");
    w.signal(client, Signal::SIGTERM);
    let st = w.procs[client].wait_exit(Duration::from_secs(10));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{st:?}");
}

/// The first line of a resolver file the client wrote.
const DNS_MARKER: &str =
    "# aura: written while the tunnel is up; the previous file is restored when the client stops";

/// A real resolver (dnsmasq) in `ns` on `ip`, answering `www.aura.test` with `answer`
/// and refusing to recurse anywhere else.
fn dnsmasq(w: &mut World, on_internet: bool, ip: &str, answer: &str, label: &str) -> usize {
    let address = format!("--address=/www.aura.test/{answer}");
    dnsmasq_with(w, on_internet, ip, &address, label)
}

/// dnsmasq in `ns` on `ip` with one more option `answers` saying what it answers.
fn dnsmasq_with(w: &mut World, on_internet: bool, ip: &str, answers: &str, label: &str) -> usize {
    let ns = if on_internet {
        w.lab.internet()
    } else {
        w.lab.server()
    };
    let dir = w.dir.path().to_owned();
    let listen = format!("--listen-address={ip}");
    let idx = support::spawn(
        &mut w.procs,
        ns,
        &dir,
        &dir,
        label,
        "dnsmasq",
        &[
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &listen,
            answers,
            "--pid-file=",
            "--user=root",
            "--log-facility=-",
            "--log-queries",
        ],
    );
    support::wait_listen(&mut w.procs, idx, ns, 53);
    idx
}

/// What `www.aura.test` resolves to inside client host 1, as any program there sees it
/// (glibc, `/etc/resolv.conf`).
fn resolve_test_name(w: &World) -> String {
    w.lab
        .client(1)
        .unwrap()
        .sh("getent ahostsv4 www.aura.test | head -n 1 | cut -d ' ' -f 1")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// DNS while the tunnel is up: the client's host resolves through the server (its
/// forwarder, which asks the resolver on the internet host) and not through the LAN
/// resolver it had; no DNS packet crosses the physical link; the resolver file comes
/// back exactly on SIGTERM, and after a SIGKILL on the next start.
#[test]
fn dns_goes_through_the_tunnel_and_nowhere_else() {
    let Some(mut w) = World::new("dns", 1, &[ClientSpec::new("alice", 1)], "udp") else {
        return;
    };
    if let Some(why) = skip_reason(&["tcpdump", "dnsmasq", "getent"]) {
        eprintln!("skipping dns_goes_through_the_tunnel_and_nowhere_else: {why}");
        return;
    }
    let lan_resolver = w.lab.server_ip(1).to_string();
    let before = snapshot(w.lab.client(1).unwrap(), false);
    let original = std::fs::read_to_string(w.lab.client(1).unwrap().resolv_conf()).unwrap();
    assert_eq!(original, format!("nameserver {lan_resolver}\n"));
    // The LAN's resolver (on the client's gateway) gives a different answer from the
    // internet's, so the answer tells which one was asked.
    dnsmasq(&mut w, false, &lan_resolver, "192.0.2.66", "lan-dns");
    let internet = w.lab.internet_ip().to_string();
    dnsmasq(&mut w, true, &internet, &internet, "internet-dns");
    let dir = w.dir.path().to_owned();

    // Without the tunnel: the LAN resolver answers, and the capture sees the query.
    let (cap, pcap) = support::start_capture(&mut w.procs, &w.lab, 1, &dir, "dns-control");
    assert_eq!(resolve_test_name(&w), "192.0.2.66");
    support::stop_capture(&mut w.procs, cap);
    let dns_packets = |pcap: &std::path::Path| {
        ipv4_packets(pcap)
            .into_iter()
            .filter(|p| (p.2 == 17 || p.2 == 6) && p.3 == 53)
            .count()
    };
    assert!(dns_packets(&pcap) >= 1, "the control saw no DNS query");

    // With it: the system asks the client's stub, which asks the server's resolver
    // through the tunnel; nothing on the link.
    w.start_server();
    let (client, _, _) = w.start_client("alice", 1);
    let resolv = std::fs::read_to_string(w.lab.client(1).unwrap().resolv_conf()).unwrap();
    assert_eq!(resolv, format!("{DNS_MARKER}\nnameserver 127.0.0.153\n"));
    let (cap, pcap) = support::start_capture(&mut w.procs, &w.lab, 1, &dir, "dns-tunnel");
    for _ in 0..3 {
        assert_eq!(resolve_test_name(&w), internet);
    }
    support::stop_capture(&mut w.procs, cap);
    let packets = ipv4_packets(&pcap);
    assert_eq!(
        dns_packets(&pcap),
        0,
        "DNS on the physical link: {packets:?}"
    );
    assert!(
        packets.iter().any(|p| p.3 == 8443),
        "the capture saw no carrier packet: {packets:?}"
    );

    // SIGKILL leaves the file rewritten; the next start puts it back first, and its
    // SIGTERM leaves the host exactly as before.
    w.signal(client, Signal::SIGKILL);
    w.procs[client].wait_exit(Duration::from_secs(10));
    let left = std::fs::read_to_string(w.lab.client(1).unwrap().resolv_conf()).unwrap();
    assert!(left.starts_with(DNS_MARKER), "{left}");
    let (client, _, _) = w.start_client("alice", 1);
    assert_eq!(resolve_test_name(&w), internet);
    w.signal(client, Signal::SIGTERM);
    let st = w.procs[client].wait_exit(Duration::from_secs(10));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{st:?}");
    assert_eq!(
        std::fs::read_to_string(w.lab.client(1).unwrap().resolv_conf()).unwrap(),
        original
    );
    assert_eq!(
        settled(&snapshot(w.lab.client(1).unwrap(), false)),
        settled(&before)
    );
}

/// A domain rule follows DNS: `*.aura.test` is DIRECT; the name's address changes on the
/// (real) resolver between two lookups, and each address is routed outside the tunnel as
/// the client's stub hands its answer back, while an address no answer named stays in
/// the tunnel. `aura route list` shows both learnt addresses.
#[test]
fn a_domain_rule_follows_the_address_dns_gives() {
    let Some(mut w) = World::new("domain", 1, &[ClientSpec::new("alice", 1)], "udp") else {
        return;
    };
    if let Some(why) = skip_reason(&["dnsmasq", "getent"]) {
        eprintln!("skipping a_domain_rule_follows_the_address_dns_gives: {why}");
        return;
    }
    let before = snapshot(w.lab.client(1).unwrap(), false);
    // The internet host has three addresses and answers the client's own address too
    // (for the DIRECT flows).
    w.lab
        .internet()
        .sh(&format!(
            "ip addr add 198.18.0.3/24 dev i-s\nip addr add 198.18.0.4/24 dev i-s\n\
             ip route add 10.200.0.0/16 via {}",
            w.lab.server_internet_ip()
        ))
        .unwrap();
    let hosts = w.path("aura-test.hosts");
    std::fs::write(&hosts, "198.18.0.3 www.aura.test\n").unwrap();
    let internet = w.lab.internet_ip().to_string();
    let dns = dnsmasq_with(
        &mut w,
        true,
        &internet,
        &format!("--addn-hosts={}", hosts.display()),
        "internet-dns",
    );
    let toml = w.path("deploy/alice/client.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str("\n[[tunnel.split.direct]]\ndomain = \"*.aura.test\"\n");
    std::fs::write(&toml, text).unwrap();
    w.start_server();
    let (client, _, _) = w.start_client("alice", 1);
    let client_ns = w.lab.client(1).unwrap();
    let path_to = |addr: &str, port: u16| {
        lab::transfer(
            client_ns,
            w.lab.internet(),
            addr.parse::<std::net::Ipv4Addr>().unwrap(),
            port,
            MB,
            Duration::from_secs(30),
        )
        .unwrap()
        .peer_seen
        .ip()
        .to_string()
    };
    let direct = w.lab.client_ip(1).to_string();
    let tunnelled = w.lab.server_internet_ip().to_string();
    // Before any lookup both addresses go through the tunnel.
    assert_eq!(path_to("198.18.0.3", PORT), tunnelled);
    assert_eq!(resolve_test_name(&w), "198.18.0.3");
    let routes = client_ns.sh("ip route").unwrap();
    assert!(
        routes.contains("198.18.0.3 via 10.200.1.1 dev c1-s proto 167"),
        "{routes}"
    );
    assert_eq!(path_to("198.18.0.3", PORT + 1), direct);
    assert_eq!(path_to("198.18.0.4", PORT + 2), tunnelled);

    // The record changes; the next lookup routes the new address outside too.
    std::fs::write(&hosts, "198.18.0.4 www.aura.test\n").unwrap();
    w.signal(dns, Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while resolve_test_name(&w) != "198.18.0.4" {
        assert!(
            Instant::now() < deadline,
            "dnsmasq never gave the new address"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(path_to("198.18.0.4", PORT + 3), direct);
    let out = Command::new(AURA)
        .args(["route", "list", "--json", "--socket"])
        .arg(w.p("alice.sock"))
        .output()
        .unwrap();
    let rules: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rule = &rules.as_array().unwrap()[0];
    assert_eq!(rule["rule"], "*.aura.test");
    assert_eq!(rule["kind"], "direct");
    assert_eq!(
        rule["covers"],
        serde_json::json!(["198.18.0.3", "198.18.0.4"])
    );

    w.signal(client, Signal::SIGTERM);
    let st = w.procs[client].wait_exit(Duration::from_secs(10));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{st:?}");
    assert_eq!(
        settled(&snapshot(w.lab.client(1).unwrap(), false)),
        settled(&before)
    );
}

/// Lockdown: the kill switch outlives the client (SIGTERM here) and blocks the host until
/// `aura client unlock` lifts it; the next client start replaces it without a gap.
#[test]
fn lockdown_keeps_the_kill_switch_until_unlocked() {
    let Some(mut w) = World::new("lockdown", 1, &[ClientSpec::new("alice", 1)], "udp") else {
        return;
    };
    if let Some(why) = skip_reason(&["tcpdump", "ping"]) {
        eprintln!("skipping lockdown_keeps_the_kill_switch_until_unlocked: {why}");
        return;
    }
    let toml = w.path("deploy/alice/client.toml");
    aura_lab::deploy::set_key_in(&toml, "[client]", "kill_switch", "true").unwrap();
    aura_lab::deploy::set_key_in(&toml, "[client]", "lockdown", "true").unwrap();
    let before = snapshot(w.lab.client(1).unwrap(), true);
    let client_ip = w.lab.client_ip(1);
    let internet = w.lab.internet_ip();
    let dir = w.dir.path().to_owned();
    w.start_server();
    let (client, _, _) = w.start_client("alice", 1);
    w.signal(client, Signal::SIGTERM);
    let st = w.procs[client].wait_exit(Duration::from_secs(10));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{st:?}");
    assert!(
        w.procs[client]
            .log()
            .contains("lockdown: the kill switch stays")
    );

    // Stopped, and still nothing leaves for the internet host.
    let ns = w.lab.client(1).unwrap();
    assert!(ns.sh("nft list tables").unwrap().contains("aura_client"));
    let (cap, pcap) = support::start_capture(&mut w.procs, &w.lab, 1, &dir, "lockdown");
    try_the_internet(w.lab.client(1).unwrap(), internet);
    support::stop_capture(&mut w.procs, cap);
    let leaked: Vec<_> = ipv4_packets(&pcap)
        .into_iter()
        .filter(|p| p.0 == client_ip && p.1 == internet)
        .collect();
    assert!(
        leaked.is_empty(),
        "left the host after the client stopped: {leaked:?}"
    );

    // A new client takes the table over; its stop leaves it again; unlock lifts it.
    let (client, _, _) = w.start_client("alice", 1);
    w.signal(client, Signal::SIGTERM);
    w.procs[client].wait_exit(Duration::from_secs(10));
    let ns = w.lab.client(1).unwrap();
    let out = ns
        .command(AURA)
        .args(["client", "unlock"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("kill switch lifted"));
    let out = ns
        .command(AURA)
        .args(["client", "unlock"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("no kill switch in place"));
    assert_eq!(
        settled(&snapshot(w.lab.client(1).unwrap(), true)),
        settled(&before)
    );
}

/// IPv6 inside the tunnel: with a dual-stack pool (the default) the client gets an IPv6
/// address and reaches the internet host's IPv6 address through the tunnel (NAT66: the
/// host sees the server's address; it has no route back to the client's own network);
/// the carrier also runs over an IPv6 underlay; and a server without IPv6 in its pool
/// leaves the client's IPv6 routed into the tunnel and dropped, never leaked.
#[test]
fn ipv6_inside_the_tunnel_and_over_an_ipv6_underlay() {
    let Some(mut w) = World::new("ipv6", 1, &[ClientSpec::new("alice", 1)], "udp") else {
        return;
    };
    w.lab.add_ipv6().unwrap();
    let before = snapshot(w.lab.client(1).unwrap(), false);
    // The server listens on both families; the client dials its IPv6 address.
    let server_toml = w.path("deploy/server.toml");
    aura_lab::deploy::set_key_in(&server_toml, "[server]", "listen", "\"::\"").unwrap();
    let client_toml = w.path("deploy/alice/client.toml");
    let server6 = w.lab.server_ip6(1).to_string();
    aura_lab::deploy::set_key_in(
        &client_toml,
        "[client]",
        "server",
        &format!("\"{server6}\""),
    )
    .unwrap();
    let server = w.start_server();
    let (client, _, st) = w.start_client("alice", 1);
    assert_eq!(st["address6"], "fd61:7572:6100::2", "{st}");
    assert_eq!(st["server"], format!("[{server6}]:8443"), "{st}");
    let client_ns = w.lab.client(1).unwrap();
    let r6 = lab::transfer(
        client_ns,
        w.lab.internet(),
        w.lab.internet_ip6(),
        PORT,
        2 * MB,
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(r6.bytes, 2 * MB as u64);
    assert_eq!(
        r6.peer_seen.ip(),
        IpAddr::V6(w.lab.server_internet_ip6()),
        "{r6:?}"
    );
    assert_eq!(r6.sender_local.ip().to_string(), "fd61:7572:6100::2");
    let r4 = w.transfer(1, MB, Duration::from_secs(30)).unwrap();
    assert_eq!(r4.peer_seen.ip(), w.lab.server_internet_ip());
    w.signal(client, Signal::SIGTERM);
    w.procs[client].wait_exit(Duration::from_secs(10));
    w.signal(server, Signal::SIGTERM);
    w.procs[server].wait_exit(Duration::from_secs(10));

    // A pool without IPv6: the client's IPv6 goes into the tunnel and no further.
    let text = std::fs::read_to_string(&server_toml).unwrap();
    let text = aura_lab::deploy::set_key(&text, "[server.pool]", "ipv6", "false").unwrap();
    std::fs::write(&server_toml, text).unwrap();
    w.start_server();
    let (client, _, st) = w.start_client("alice", 1);
    assert_eq!(st["address6"], "", "{st}");
    let client_ns = w.lab.client(1).unwrap();
    let route = client_ns
        .sh(&format!("ip -6 route get {}", w.lab.internet_ip6()))
        .unwrap();
    assert!(route.contains("dev aura0"), "{route}");
    let blocked = lab::transfer(
        client_ns,
        w.lab.internet(),
        w.lab.internet_ip6(),
        PORT + 1,
        MB,
        Duration::from_secs(3),
    );
    assert!(
        blocked.is_err(),
        "IPv6 got through without an IPv6 pool: {blocked:?}"
    );
    w.signal(client, Signal::SIGTERM);
    let st = w.procs[client].wait_exit(Duration::from_secs(10));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{st:?}");
    assert_eq!(
        settled(&snapshot(w.lab.client(1).unwrap(), false)),
        settled(&before)
    );
}

/// One `Key:\tvalue` line of every thread's `/proc/PID/task/TID/status`.
fn thread_status(pid: u32, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let Ok(text) = std::fs::read_to_string(task.path().join("status")) else {
            continue; // a thread that ended meanwhile
        };
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no {key} in {}", task.path().display()));
        out.push(line.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    assert!(!out.is_empty());
    out
}

/// Every thread of `pid` runs as `uid` with exactly the capabilities of `mask`
/// (permitted, effective, ambient and bounding), and cannot gain more.
fn assert_dropped(pid: u32, uid: u32, mask: u64) {
    let ids = format!("{uid} {uid} {uid} {uid}");
    for u in thread_status(pid, "Uid") {
        assert_eq!(u, ids, "pid {pid}: uid");
    }
    let want = format!("{mask:016x}");
    for key in ["CapPrm", "CapEff", "CapAmb", "CapBnd"] {
        for v in thread_status(pid, key) {
            assert_eq!(v, want, "pid {pid}: {key}");
        }
    }
    for v in thread_status(pid, "NoNewPrivs") {
        assert_eq!(v, "1", "pid {pid}: NoNewPrivs");
    }
}

/// `run_as` and `no_logs` on both daemons, in one run: a missing user is refused before
/// anything changes; then both run as `nobody` with only CAP_NET_ADMIN (and the server
/// CAP_NET_BIND_SERVICE for 443 and its DNS forwarder on 53) in every thread; under it the
/// client moves data, survives a server restart, changes a route when asked, the server
/// reloads its CRL on SIGHUP and keeps its session, and both undo every host change on
/// exit. Their whole log output names neither the client nor any address involved.
#[test]
fn daemons_run_as_an_unprivileged_user() {
    let Some(mut w) = World::new("run_as", 1, &[ClientSpec::new("alice", 1)], "udp") else {
        return;
    };
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let (uid, gid) = (nobody.uid, nobody.gid);
    // The user reads the deployment through its group (keys 0640, as `server-init
    // --run-as` leaves them); the admin sockets live in a directory of its own.
    w.lab
        .server()
        .sh(&format!(
            "chgrp -R {gid} {d} && chmod -R g+rX {d}",
            d = w.p("")
        ))
        .unwrap();
    let run = w.path("run");
    std::fs::create_dir(&run).unwrap();
    nix::unistd::chown(&run, Some(uid), Some(gid)).unwrap();
    let server_toml = w.path("deploy/server.toml");
    let client_toml = w.path("deploy/alice/client.toml");
    let edit = |path: &std::path::Path, table: &str, key: &str, value: &str| {
        deploy::set_key_in(path, table, key, value).unwrap();
    };
    // The CA key stays root's: a server that drops privileges does not re-sign.
    let text = std::fs::read_to_string(&server_toml).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("ca_key"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&server_toml, text).unwrap();
    edit(
        &server_toml,
        "[server]",
        "admin_socket",
        &toml_path(&run.join("server.sock")),
    );
    edit(&server_toml, "[server]", "no_logs", "true");
    edit(
        &client_toml,
        "[client]",
        "admin_socket",
        &toml_path(&run.join("alice.sock")),
    );
    edit(&client_toml, "[client]", "no_logs", "true");
    edit(&client_toml, "[client]", "run_as", "\"nobody\"");
    edit(&client_toml, "[client]", "dns", "\"off\"");

    // A user that does not exist: refused by name, nothing changed, no process left.
    let s_before = snapshot(w.lab.server(), true);
    edit(&server_toml, "[server]", "run_as", "\"aura-no-such-user\"");
    let out = w
        .lab
        .server()
        .command(AURA)
        .args(["server", "--config", &w.p("deploy/server.toml")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("server.run_as: no user \"aura-no-such-user\""),
        "{err}"
    );
    assert_eq!(snapshot(w.lab.server(), true), s_before);
    edit(&server_toml, "[server]", "run_as", "\"nobody\"");

    let c_before = snapshot(w.lab.client(1).unwrap(), false);
    let server = w.start_server_with("run/server.sock", &["--log-format", "json"]);
    let client = w.spawn_client("alice", 1);
    w.wait_status(client, "run/alice.sock", CONNECT_TIMEOUT, |v| {
        v["state"] == "connected"
    })
    .unwrap();
    let r = w.transfer(1, 4 * MB, Duration::from_secs(30)).unwrap();
    assert_eq!(r.bytes, 4 * MB as u64);
    // CAP_NET_ADMIN is bit 12, CAP_NET_BIND_SERVICE bit 10.
    assert_dropped(w.procs[server].id(), uid.as_raw(), (1 << 12) | (1 << 10));
    assert_dropped(w.procs[client].id(), uid.as_raw(), 1 << 12);

    let server_json = server;
    // A reload: the server stays, and so does the client's session.
    w.signal(server, Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        w.procs[server].exited().is_none(),
        "SIGHUP stopped the server"
    );
    let v = support::status(&w.p("run/server.sock")).unwrap();
    assert_eq!(peers(&v).len(), 1, "{v}");
    w.transfer(1, MB, Duration::from_secs(20)).unwrap();
    assert!(w.procs[server].log().contains("reload"), "no reload logged");

    // A route asked for at run time is made by the dropped client.
    let socket = w.p("run/alice.sock");
    aura(&[
        "route",
        "add",
        "--direct",
        "198.18.0.3",
        "--socket",
        &socket,
    ]);
    let routes = w
        .lab
        .client(1)
        .unwrap()
        .sh("ip route show proto 167")
        .unwrap();
    assert!(routes.contains("198.18.0.3"), "{routes}");
    aura(&["route", "remove", "198.18.0.3/32", "--socket", &socket]);

    // The server goes away and comes back: the dropped client reconnects.
    w.signal(server, Signal::SIGKILL);
    assert!(w.procs[server].wait_exit(Duration::from_secs(5)).is_some());
    let server = w.start_server_at("run/server.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match w.transfer(1, MB, Duration::from_secs(3)) {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => panic!("no transfer after the restart: {e}"),
            Err(_) => {}
        }
    }
    assert_dropped(w.procs[client].id(), uid.as_raw(), 1 << 12);

    // Both stop cleanly as the user, every host change undone.
    w.signal(server, Signal::SIGTERM);
    let st = w.procs[server].wait_exit(Duration::from_secs(10));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "server exit: {st:?}");
    assert_eq!(settled(&snapshot(w.lab.server(), true)), settled(&s_before));
    w.signal(client, Signal::SIGTERM);
    let st = w.procs[client].wait_exit(Duration::from_secs(10));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "client exit: {st:?}");
    assert_eq!(
        settled(&snapshot(w.lab.client(1).unwrap(), false)),
        settled(&c_before)
    );

    // no_logs: the whole output of every daemon, the killed server's included.
    let mut secrets: Vec<String> = ["alice", "10.77.0.", "198.18.", "fd61:7572:6100"]
        .map(String::from)
        .to_vec();
    for ip in [w.lab.server_ip(1), w.lab.client_ip(1)] {
        secrets.push(ip.to_string());
    }
    let mut lines = 0;
    for i in 0..w.procs.len() {
        let log = w.procs[i].log();
        lines += log.lines().count();
        for s in &secrets {
            assert!(
                !log.contains(s.as_str()),
                "{s} in the log of {}:\n{log}",
                w.procs[i].label()
            );
        }
    }
    assert!(
        lines > 10,
        "too little logged to mean anything: {lines} lines"
    );
    // The first server logged JSON objects, one per line, scrubbed all the same.
    let json = w.procs[server_json].log();
    let mut messages = 0;
    for line in json.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if v["fields"]["message"].is_string() && v["level"].is_string() {
            messages += 1;
        }
    }
    assert!(messages > 5, "{json}");
    assert!(json.contains("[redacted]"), "{json}");
}

/// Provisioning in one step (docs/PROTOCOL.md §13): the bundle leaves the CA host as an
/// `aura://import/v1/` URI and its one-time code only (the bundle directory is deleted
/// first), `aura client import` writes it into a fresh directory, and a client run from
/// the imported client.toml connects and moves data through the tunnel, NATed.
#[test]
fn a_client_imported_from_a_bundle_uri_connects() {
    use std::os::unix::fs::PermissionsExt;
    let Some(mut w) = World::new("bundle_uri", 1, &[], "udp") else {
        return;
    };
    let server = w.lab.server_ip(1).to_string();
    let o = aura(&[
        "provision-client",
        "--dir",
        &w.p("deploy"),
        "--id",
        "carol",
        "--server",
        &server,
        "--uri",
    ]);
    let uri = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    let err = String::from_utf8_lossy(&o.stderr);
    let code = err
        .lines()
        .find_map(|l| l.strip_prefix("one-time code: "))
        .unwrap_or_else(|| panic!("no code in: {err}"))
        .trim()
        .to_owned();
    eprintln!("bundle URI: {} characters", uri.len());
    std::fs::remove_dir_all(w.path("deploy/clients/carol")).unwrap();
    let dir = w.path("deploy/carol");
    aura(&[
        "client",
        "import",
        &uri,
        "--code",
        &code,
        "--dir",
        &dir.display().to_string(),
    ]);
    let mode = |name: &str| {
        std::fs::metadata(dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("client.key"), 0o600);
    assert_eq!(mode("knock.key"), 0o600);
    assert_eq!(mode("ca.crt"), 0o644);
    w.set_carrier("carol", "udp");
    w.start_server();
    let (_, connect, st) = w.start_client("carol", 1);
    let r = w.transfer(1, MB, Duration::from_secs(20)).unwrap();
    eprintln!(
        "imported client: connect {connect:?}, 1 MB in {:?}, seen from {}",
        r.duration, r.peer_seen
    );
    assert_eq!(r.bytes, MB as u64);
    assert_eq!(r.peer_seen.ip(), w.lab.server_internet_ip(), "not NATed");
    assert_eq!(
        r.sender_local.ip().to_string(),
        st["address"].as_str().unwrap()
    );
    let s = w.status("server.sock").unwrap();
    assert!(peers(&s).iter().any(|p| p["id"] == "carol"), "{s}");
}
