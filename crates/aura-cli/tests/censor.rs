//! Censor tier: what a DPI box on the client's link makes of each carrier.
//!
//! ```text
//!   C1 10.200.1.2 ==== 10.200.1.1 S 198.18.0.1 ==== 198.18.0.2 I
//!   aura client  ^tcpdump here     aura server                  openssl s_server :443
//!   curl https://www.example.com/ (resolved to I, through the tunnel)
//! ```
//! For each carrier (udp, quic, tls) a lab of network namespaces (`aura_lab::lab`) runs
//! real `aura server` and `aura client` processes; tcpdump captures the client's link
//! (inside C1, offloads off on both ends so packets are wire-sized) while curl fetches a
//! few HTTPS pages from I through the tunnel. nDPI (tests/dpi/classify.py, with its TLS
//! obfuscation and fully-encrypted heuristics on) then classifies that capture and a
//! control one: the same curl fetching the same pages straight from an HTTPS server on
//! S:443, before Aura runs, i.e. what a browser's own traffic gets.
//!
//! Checked, and printed (run with `--nocapture`): nDPI is 4.10 or newer; the QUIC
//! carrier is QUIC and the TLS carrier TLS, by DPI (not by port), with the day's mask SNI
//! (`aura mask show`); no carrier flow is flagged as obfuscated (`NDPI_OBFUSCATED_TRAFFIC`:
//! obfuscated TLS, TLS-in-TLS, fully encrypted) or of suspicious entropy, nor gets any risk
//! the control flow does not get; every IPv4 flow on the link is the carrier's. The udp
//! carrier is expected to be Unknown and is held to the same risk rule.
//!
//! Needs root, `ip`, `nft`, `tcpdump`, `ethtool`, `openssl`, `curl` and nfstream (nDPI)
//! in the Python at `$AURA_NDPI_PYTHON` (default /opt/ndpi/bin/python, see
//! tests/dpi/README.md); otherwise each test prints why and passes without checking. The
//! tests run one at a time (a lock); every wait is bounded; a guard ends every process by
//! PID (SIGTERM, then SIGKILL after 5 s) before the namespaces are deleted, and each
//! process's output is printed when a test fails. With `AURA_CENSOR_KEEP=<dir>` the
//! captures are copied there (`<carrier>-control.pcap`, `<carrier>-<carrier>.pcap`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use aura_lab::Procs;
use aura_lab::deploy;
use aura_lab::lab::Lab;
use aura_lab::netns::{Netns, skip_reason};
use serde_json::Value;
use support::{AURA, aura, offloads_off, pcap_frames, serial, start_capture, stop_capture};

const CLASSIFIER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/dpi/classify.py");
/// The Python with nfstream (nDPI) when `AURA_NDPI_PYTHON` is not set.
const NDPI_PYTHON: &str = "/opt/ndpi/bin/python";
/// The oldest nDPI whose verdicts count (4.10 has the TLS obfuscation heuristics).
const MIN_NDPI: (u32, u32) = (4, 10);
/// The site fetched through the tunnel (resolved by curl to the internet host).
const SITE: &str = "www.example.com";
/// Pages fetched per capture, one connection each, and their sizes.
const PAGES: [usize; 3] = [16 * 1024, 64 * 1024, 256 * 1024];
/// How long a daemon may take to answer on its admin socket, a client to connect.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the classifier may take on one capture.
const CLASSIFY_TIMEOUT_S: u32 = 90;

const OBFUSCATED: &str = "NDPI_OBFUSCATED_TRAFFIC";
const SUSPICIOUS_ENTROPY: &str = "NDPI_SUSPICIOUS_ENTROPY";

// The udp carrier's obfuscated-TLS flag (nDPI's heuristic over the byte totals of four
// bursts, which saw the tunnelled HTTPS handshakes in 9 of 10 captures) is gone since the
// client completes its early bursts with chaff, and its "Suspicious Entropy" since the
// first burst ends with a runt (docs/PROTOCOL.md §12.2). Both are checked.

/// The Python that runs the classifier.
fn ndpi_python() -> String {
    std::env::var("AURA_NDPI_PYTHON").unwrap_or_else(|_| NDPI_PYTHON.into())
}

/// Why this machine cannot run the tier, if it cannot.
fn skip() -> Option<String> {
    if let Some(why) = skip_reason(&["nft", "tcpdump", "ethtool", "openssl", "curl"]) {
        return Some(why);
    }
    let python = ndpi_python();
    if !Path::new(&python).is_file() {
        return Some(format!(
            "no nDPI: {python} is missing (set AURA_NDPI_PYTHON; see tests/dpi/README.md)"
        ));
    }
    let import = Command::new("timeout")
        .args(["60", &python, "-c", "import nfstream"])
        .stdin(Stdio::null())
        .output();
    match import {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "no nDPI: {python} cannot import nfstream: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("no nDPI: cannot run {python}: {e}")),
    }
}

/// Where a process runs.
#[derive(Clone, Copy)]
enum Host {
    Server,
    Internet,
    Client,
}

impl Host {
    /// Its namespace in `lab`.
    fn ns(self, lab: &Lab) -> &Netns {
        match self {
            Host::Server => lab.server(),
            Host::Internet => lab.internet(),
            Host::Client => lab.client(1).unwrap(),
        }
    }
}

/// A carrier, where it listens, and what nDPI should call it.
#[derive(Clone, Copy)]
struct Carrier {
    name: &'static str,
    /// "TCP" or "UDP", and the port (config/server.toml.example's defaults).
    l4: &'static str,
    port: u16,
    /// The protocol nDPI must find by DPI; `None`: only reported.
    proto: Option<&'static str>,
}

const UDP: Carrier = Carrier {
    name: "udp",
    l4: "UDP",
    port: 8443,
    proto: None,
};
const QUIC: Carrier = Carrier {
    name: "quic",
    l4: "UDP",
    port: 443,
    proto: Some("QUIC"),
};
const TLS: Carrier = Carrier {
    name: "tls",
    l4: "TCP",
    port: 443,
    proto: Some("TLS"),
};

/// One test's world. Field order is drop order: processes, then namespaces, then files.
struct World {
    procs: Procs,
    lab: Lab,
    dir: tempfile::TempDir,
    _serial: MutexGuard<'static, ()>,
}

impl World {
    /// A lab with one client host, a deployment for `carrier`, pages to serve and a
    /// certificate for the HTTPS servers; `None` when this machine cannot run the tier.
    fn new(carrier: &str) -> Option<Self> {
        if let Some(why) = skip() {
            eprintln!("skipping censor_{carrier}: {why}");
            return None;
        }
        let guard = serial();
        let lab = Lab::new("aura-dpi", 1).unwrap();
        let w = Self {
            procs: Procs::reporting(),
            lab,
            dir: tempfile::tempdir().unwrap(),
            _serial: guard,
        };
        w.deploy(carrier);
        w.web_content();
        Some(w)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn p(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    fn server_ip(&self) -> Ipv4Addr {
        self.lab.server_ip(1)
    }

    fn deploy(&self, carrier: &str) {
        let d = self.path("deploy");
        support::server_init(&d, "aura-e2e.test", None, &self.path("server.sock"));
        let out = self.path("deploy/alice");
        support::provision_client(&d, "alice", self.server_ip(), &out);
        let client_toml = self.path("deploy/alice/client.toml");
        deploy::set_client_carrier(&client_toml, &self.path("alice.sock"), carrier).unwrap();
    }

    /// The outer SNI of the mask in force now (`aura mask show`); prints the mask.
    fn mask_sni(&self) -> String {
        let out = aura(&[
            "mask",
            "show",
            "--config",
            &self.p("deploy/server.toml"),
            "--json",
        ]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        eprintln!(
            "mask of {}: sni {}, alpn {}, udp padding {}, udp first flight {} bytes",
            v["day"], v["sni"], v["alpn"], v["udp_padding"], v["udp_first_flight_bytes"]
        );
        v["sni"].as_str().unwrap().to_owned()
    }

    /// The pages and a throwaway certificate for the HTTPS servers.
    fn web_content(&self) {
        let www = self.path("www");
        std::fs::create_dir(&www).unwrap();
        let line = "<p>Aura censor tier: a page of text fetched over HTTPS.</p>\n";
        for (i, size) in PAGES.iter().enumerate() {
            let page = line.repeat(size / line.len() + 1);
            std::fs::write(www.join(format!("page{i}.html")), &page[..*size]).unwrap();
        }
        support::self_signed(self.dir.path(), "web", SITE);
    }

    /// Spawns `program <args>` inside `host`, in the pages' directory (`openssl s_server
    /// -WWW` serves it), output to `<label>.log`.
    fn spawn(&mut self, label: &str, host: Host, program: &str, args: &[&str]) -> usize {
        let (dir, www) = (self.dir.path(), self.path("www"));
        let ns = host.ns(&self.lab);
        support::spawn(&mut self.procs, ns, dir, &www, label, program, args)
    }

    /// `openssl s_server` serving the pages on `addr:443` inside `host`, once it listens.
    fn start_web(&mut self, label: &str, host: Host, addr: Ipv4Addr) -> usize {
        let accept = format!("{addr}:443");
        let (crt, key) = (self.p("web.crt"), self.p("web.key"));
        let args = [
            "s_server", "-accept", &accept, "-cert", &crt, "-key", &key, "-WWW", "-quiet",
        ];
        let idx = self.spawn(label, host, "openssl", &args);
        support::wait_listen(&mut self.procs, idx, host.ns(&self.lab), 443);
        idx
    }

    /// Fetches every page from C1 as `https://<name>/pageN.html`, `name` resolved to
    /// `addr`, one connection each (curl, as a browser would: SNI, ALPN).
    fn fetch(&self, name: &str, addr: Ipv4Addr) {
        for (i, size) in PAGES.iter().enumerate() {
            let out = Host::Client
                .ns(&self.lab)
                .sh(&format!(
                    "curl -sk --connect-timeout 10 --max-time 20 --resolve {name}:443:{addr} \
                     -o /dev/null -w '%{{http_code}} %{{size_download}}' \
                     https://{name}/page{i}.html"
                ))
                .unwrap();
            assert_eq!(out, format!("200 {size}"), "page {i} from {addr}");
        }
    }

    /// Polls `socket` until `ok` holds for its status; panics when process `idx` exits
    /// first or [`READY_TIMEOUT`] passes.
    fn wait_status(&mut self, idx: usize, socket: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let socket = self.p(socket);
        support::wait_status(&mut self.procs, idx, &socket, READY_TIMEOUT, ok)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn start_server(&mut self) {
        let config = self.p("deploy/server.toml");
        let idx = self.spawn(
            "server",
            Host::Server,
            AURA,
            &["server", "--config", &config],
        );
        self.wait_status(idx, "server.sock", |v| v["kind"] == "server");
    }

    /// Starts the client; its status once connected.
    fn start_client(&mut self) -> Value {
        let config = self.p("deploy/alice/client.toml");
        let idx = self.spawn(
            "client",
            Host::Client,
            AURA,
            &["client", "--config", &config],
        );
        self.wait_status(idx, "alice.sock", |v| v["state"] == "connected")
    }
}

/// What nDPI said about one capture.
struct Verdict {
    version: String,
    flows: Vec<Value>,
}

/// Runs the classifier on `pcap`.
fn classify(pcap: &Path) -> Verdict {
    let out = Command::new("timeout")
        .args(["-k", "5", &CLASSIFY_TIMEOUT_S.to_string(), &ndpi_python()])
        .arg(CLASSIFIER)
        .arg(pcap)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "classify.py {} failed ({}): {stdout}{}",
        pcap.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut version = None;
    let mut flows = Vec::new();
    for line in stdout.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        match v["type"].as_str() {
            Some("meta") => version = v["ndpi_version"].as_str().map(str::to_owned),
            Some("flow") => flows.push(v),
            _ => panic!("unexpected classifier output: {line}"),
        }
    }
    Verdict {
        version: version.unwrap_or_else(|| panic!("no nDPI version in: {stdout}")),
        flows,
    }
}

/// `major.minor` of an nDPI version string such as `5.0.0-1-375f99e`.
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn risk_ids(flow: &Value) -> BTreeSet<String> {
    flow["risk_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| text(r).to_owned())
        .collect()
}

/// One flow as nDPI saw it, for the test output.
fn describe(flow: &Value) -> String {
    format!(
        "{} {} -> {}: proto {} (app {}, confidence {}{}), sni {}, ja4 {}, risks {} {}, \
         fully_encrypted {}, entropy {}, {} packets",
        text(&flow["l4"]),
        text(&flow["src"]),
        text(&flow["dst"]),
        text(&flow["proto"]),
        text(&flow["app"]),
        text(&flow["confidence"]),
        if flow["guessed"] == true {
            ", guessed"
        } else {
            ""
        },
        flow["sni"],
        flow["ja4"],
        flow["risk_ids"],
        flow["risk_infos"],
        flow["fully_encrypted"],
        flow["entropy"],
        flow["packets"],
    )
}

/// Whether `flow` is between C1 and `server_ip:port` over `l4`.
fn is_flow_to(flow: &Value, l4: &str, server_ip: Ipv4Addr, port: u16) -> bool {
    let end = format!("{server_ip}:{port}");
    text(&flow["l4"]) == l4 && (text(&flow["dst"]) == end || text(&flow["src"]) == end)
}

/// Captures and classifies what C1's link carries while `carrier` tunnels HTTPS, and
/// checks it against a control capture of the same fetches without Aura.
fn censor_view(carrier: Carrier) {
    let started = Instant::now();
    let name = carrier.name;
    let Some(mut w) = World::new(name) else {
        return;
    };
    let server_ip = w.server_ip();
    let internet_ip = w.lab.internet_ip();
    let sni_before = w.mask_sni();
    offloads_off(&w.lab, 1);

    // Control: a browser's own HTTPS to S:443 (before the TLS carrier takes that port),
    // with the SNI the carriers show.
    let (tcpdump, control_pcap) = start_capture(&mut w.procs, &w.lab, 1, w.dir.path(), "control");
    let web = w.start_web("https-on-server", Host::Server, server_ip);
    w.fetch(&sni_before, server_ip);
    w.procs.stop(web);
    stop_capture(&mut w.procs, tcpdump);

    // The carrier: the same pages from I, through the tunnel.
    w.start_server();
    let (tcpdump, carrier_pcap) = start_capture(&mut w.procs, &w.lab, 1, w.dir.path(), name);
    w.start_web("https-on-internet", Host::Internet, internet_ip);
    let st = w.start_client();
    assert_eq!(st["carrier"], name, "{st}");
    w.fetch(SITE, internet_ip);
    stop_capture(&mut w.procs, tcpdump);
    let sni_after = w.mask_sni();
    let masks: BTreeSet<&str> = [sni_before.as_str(), sni_after.as_str()].into();
    eprintln!(
        "{name}: mask SNI {masks:?}; captured in {:?}",
        started.elapsed()
    );

    for pcap in [&control_pcap, &carrier_pcap] {
        if let Some(keep) = std::env::var_os("AURA_CENSOR_KEEP") {
            let to =
                Path::new(&keep).join(format!("{name}-{}", pcap.file_name().unwrap().display()));
            std::fs::copy(pcap, &to).unwrap();
            eprintln!("{name}: kept {}", to.display());
        }
        let (_, frames) = pcap_frames(pcap);
        let longest = frames.iter().map(|f| f.len).max().unwrap_or(0);
        eprintln!(
            "{}: {} packets, longest frame {longest} bytes",
            pcap.display(),
            frames.len()
        );
        assert!(
            longest <= 1514,
            "{}: a {longest}-byte frame: offloads still on?",
            pcap.display()
        );
    }

    let control = classify(&control_pcap);
    let verdict = classify(&carrier_pcap);
    eprintln!("{name}: nDPI {}", verdict.version);
    let version = major_minor(&verdict.version);
    assert!(
        version.is_some_and(|v| v >= MIN_NDPI),
        "nDPI {} is older than {}.{}",
        verdict.version,
        MIN_NDPI.0,
        MIN_NDPI.1
    );
    assert_eq!(control.version, verdict.version);

    // The control is plain TLS to S:443, recognized as such: the classifier works.
    let control_flows: Vec<&Value> = control
        .flows
        .iter()
        .filter(|f| is_flow_to(f, "TCP", server_ip, 443))
        .collect();
    for f in &control.flows {
        eprintln!("{name}: control  {}", describe(f));
    }
    assert_eq!(control_flows.len(), PAGES.len(), "control flows");
    for f in &control_flows {
        assert_eq!(text(&f["proto"]), "TLS", "control: {}", describe(f));
        assert_eq!(text(&f["confidence"]), "DPI", "control: {}", describe(f));
        assert_eq!(text(&f["sni"]), sni_before, "control: {}", describe(f));
    }
    let control_risks: BTreeSet<String> = control_flows.iter().flat_map(|f| risk_ids(f)).collect();
    eprintln!("{name}: control risks {control_risks:?}");

    let (ours, others): (Vec<&Value>, Vec<&Value>) = verdict
        .flows
        .iter()
        .partition(|f| is_flow_to(f, carrier.l4, server_ip, carrier.port));
    for f in &ours {
        eprintln!("{name}: carrier  {}", describe(f));
    }
    for f in &others {
        eprintln!("{name}: OTHER    {}", describe(f));
    }
    assert!(
        !ours.is_empty(),
        "no {name} flow to {server_ip}:{}",
        carrier.port
    );
    assert!(
        others.is_empty(),
        "{name}: flows besides the carrier on the link"
    );

    let mut failures = Vec::new();
    for f in &ours {
        if let Some(proto) = carrier.proto {
            let ok = text(&f["proto"]) == proto
                && text(&f["confidence"]) == "DPI"
                && masks.contains(text(&f["sni"]));
            if !ok {
                failures.push(format!(
                    "not {proto} by DPI with the mask SNI {masks:?}: {}",
                    describe(f)
                ));
            }
        }
        // Flagged outright, or flagged where a browser's own HTTPS is not.
        let extra: BTreeSet<String> = risk_ids(f)
            .into_iter()
            .filter(|r| r == OBFUSCATED || r == SUSPICIOUS_ENTROPY || !control_risks.contains(r))
            .collect();
        eprintln!("{name}: risks beyond the control's: {extra:?}");
        for risk in extra {
            failures.push(format!("risk {risk} beyond the control's: {}", describe(f)));
        }
    }
    eprintln!("{name}: done in {:?}", started.elapsed());
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}

#[test]
fn censor_udp_carrier() {
    censor_view(UDP);
}

#[test]
fn censor_quic_carrier() {
    censor_view(QUIC);
}

#[test]
fn censor_tls_carrier() {
    censor_view(TLS);
}

#[test]
fn ndpi_versions_parse() {
    assert_eq!(major_minor("5.0.0-1-375f99e"), Some((5, 0)));
    assert_eq!(major_minor("4.10.0"), Some((4, 10)));
    assert!(major_minor("4.8").unwrap() < MIN_NDPI);
    assert_eq!(major_minor("dev"), None);
}
