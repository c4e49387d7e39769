//! What the lab tiers (e2e.rs, censor.rs, probes.rs) share: the binary, one test at a
//! time, `aura` run on the host, a deployment, and a daemon's status over its admin
//! socket; and for the tiers that watch the wire (censor.rs, probes.rs), processes in the
//! lab's namespaces, captures of a client host's link and the pcap files they write.
// Each tier uses only part of this module (e2e.rs captures nothing).
#![allow(dead_code)]

pub mod flood;

use std::io::Read as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aura_lab::deploy::{set_key_in, toml_path};
use aura_lab::lab::Lab;
use aura_lab::netns::Netns;
use aura_lab::{Proc, Procs};
use serde_json::Value;

/// The binary under test.
pub const AURA: &str = env!("CARGO_BIN_EXE_aura");

/// One test at a time: the lab's daemons, captures and timing assertions need the whole
/// machine (a lock per test binary; cargo runs the binaries one after another).
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `aura` on the host (outside the lab); panics with its output on failure.
pub fn aura(args: &[&str]) -> Output {
    let out = Command::new(AURA)
        .args(args)
        .env_remove("AURA_PKI_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aura {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The deployment's outer SNIs in censor.rs and probes.rs: the day's mask picks one, and
/// the built-in decoy's certificate is for the first.
pub const SNI_PALETTE: [&str; 2] = ["static.example.net", "www.example.org"];

/// `aura server-init` into `deploy` for `name`, listening on 0.0.0.0 with the SNIs of
/// [`SNI_PALETTE`] (and `--decoy-upstream`, if given); the server's admin socket set to
/// `socket`.
pub fn server_init(deploy: &Path, name: &str, decoy_upstream: Option<&str>, socket: &Path) {
    let d = deploy.display().to_string();
    let mut args = vec!["server-init", "--dir", &d, "--name", name];
    args.extend(["--listen", "0.0.0.0"]);
    for sni in SNI_PALETTE {
        args.extend(["--sni", sni]);
    }
    if let Some(up) = decoy_upstream {
        args.extend(["--decoy-upstream", up]);
    }
    aura(&args);
    set_key_in(
        &deploy.join("server.toml"),
        "[server]",
        "admin_socket",
        &toml_path(socket),
    )
    .unwrap();
}

/// `aura provision-client` of `id` from the deployment in `deploy` into `out`, dialling
/// the server at `server`.
pub fn provision_client(deploy: &Path, id: &str, server: Ipv4Addr, out: &Path) {
    let (d, out) = (deploy.display().to_string(), out.display().to_string());
    let server = server.to_string();
    aura(&[
        "provision-client",
        "--dir",
        &d,
        "--id",
        id,
        "--server",
        &server,
        "--out",
        &out,
    ]);
}

/// `aura status --json` on the admin socket at `socket`, if a daemon answers within 5 s.
pub fn status(socket: &str) -> Option<Value> {
    let mut child = Command::new(AURA)
        .args(["status", "--socket", socket, "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // The answer is one small JSON document: it fits the pipe, so waiting first cannot
    // block the child.
    let deadline = Instant::now() + Duration::from_secs(5);
    let exit = loop {
        if let Some(s) = child.try_wait().ok()? {
            break s;
        }
        if Instant::now() >= deadline {
            eprintln!("aura status on {socket} did not answer within 5 s");
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = Vec::new();
    child.stdout.take()?.read_to_end(&mut out).ok()?;
    exit.success().then_some(())?;
    serde_json::from_slice(&out).ok()
}

/// Polls the admin socket at `socket` every 100 ms until `ok` holds for its status; an
/// error (naming process `idx`) when that process exits first or `timeout` passes.
pub fn wait_status(
    procs: &mut Procs,
    idx: usize,
    socket: &str,
    timeout: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Result<Value, String> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Some(v) = status(socket) {
            if ok(&v) {
                return Ok(v);
            }
            last = Some(v);
        }
        if let Some(s) = procs[idx].exited() {
            return Err(format!("{} exited ({s}) first", procs[idx].label()));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{}: timed out; last status: {last:?}",
                procs[idx].label()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Spawns `program <args>` inside `ns`, working in `cwd`, with `RUST_LOG=info` and
/// backtraces on; stdout and stderr go to `<logs>/<label>.log`. Returns its number in
/// `procs`.
pub fn spawn(
    procs: &mut Procs,
    ns: &Netns,
    logs: &Path,
    cwd: &Path,
    label: &str,
    program: &str,
    args: &[&str],
) -> usize {
    let mut cmd = ns.command(program);
    cmd.args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "info")
        .env("RUST_BACKTRACE", "1");
    procs
        .spawn(label, &mut cmd, logs.join(format!("{label}.log")))
        .unwrap()
}

/// Polls `ready` every 50 ms until it holds for process `idx`; panics with the process's
/// log if it exits first, or if `timeout` passes (the message says the process is `not`).
fn wait_until(
    procs: &mut Procs,
    idx: usize,
    timeout: Duration,
    not: &str,
    mut ready: impl FnMut(&Proc) -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !ready(&procs[idx]) {
        if let Some(s) = procs[idx].exited() {
            panic!("{} exited ({s}): {}", procs[idx].label(), procs[idx].log());
        }
        assert!(
            Instant::now() < deadline,
            "{} {not} within {timeout:?}: {}",
            procs[idx].label(),
            procs[idx].log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `ok` holds for process `idx`'s log; panics if it exits first or
/// `timeout` passes.
pub fn wait_log(procs: &mut Procs, idx: usize, timeout: Duration, ok: impl Fn(&str) -> bool) {
    wait_until(procs, idx, timeout, "not ready", |p| ok(&p.log()));
}

/// Waits until something listens on TCP `port` inside `ns` (process `idx`, which should
/// open it); panics if the process exits first or 10 s pass.
pub fn wait_listen(procs: &mut Procs, idx: usize, ns: &Netns, port: u16) {
    let script = format!("ss -Hltn 'sport = :{port}'");
    let not = format!("not listening on TCP {port}");
    wait_until(procs, idx, Duration::from_secs(10), &not, |_| {
        !ns.sh(&script).unwrap().trim().is_empty()
    });
}

/// A throwaway self-signed certificate `<dir>/<name>.crt`, with its key
/// `<dir>/<name>.key`, for `CN=<cn>`.
pub fn self_signed(dir: &Path, name: &str, cn: &str) {
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN={cn}"), "-keyout"])
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(dir.join(format!("{name}.crt")))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Offloads off on both ends of client host `k`'s link (`c<k>-s` in C<k>, `s-c<k>` in
/// S): tcpdump then sees each datagram and segment as it is on a wire, not a GSO, GRO or
/// TSO aggregate of up to 64 KB.
pub fn offloads_off(lab: &Lab, k: usize) {
    for (ns, dev) in [
        (lab.client(k).unwrap(), format!("c{k}-s")),
        (lab.server(), format!("s-c{k}")),
    ] {
        ns.sh(&format!(
            "ethtool -K {dev} gso off gro off tso off
             ethtool -K {dev} tx-udp-segmentation off 2>/dev/null || true"
        ))
        .unwrap();
    }
}

/// tcpdump of every IPv4 packet on client host `k`'s link (on its end in C<k>) into
/// `<dir>/<name>.pcap`; see [`start_capture_on`].
pub fn start_capture(
    procs: &mut Procs,
    lab: &Lab,
    k: usize,
    dir: &Path,
    name: &str,
) -> (usize, PathBuf) {
    let ns = lab.client(k).unwrap();
    start_capture_on(procs, ns, &format!("c{k}-s"), dir, name)
}

/// tcpdump of every IPv4 packet on interface `dev` of `ns` into `<dir>/<name>.pcap`,
/// once it listens (within 10 s); its process (log `<dir>/tcpdump-<name>.log`) and the
/// file. Stop it with [`stop_capture`].
pub fn start_capture_on(
    procs: &mut Procs,
    ns: &Netns,
    dev: &str,
    dir: &Path,
    name: &str,
) -> (usize, PathBuf) {
    let pcap = dir.join(format!("{name}.pcap"));
    let file = pcap.display().to_string();
    // -Z root: write the file in this 0700 directory (Debian's tcpdump drops to its own
    // user first); -U, --immediate-mode: each packet written as it comes (not a buffer
    // block later, which a SIGTERM loses); -B: a 32 MiB kernel buffer, so a burst at
    // full speed is not dropped before tcpdump reads it.
    let args = [
        "-B",
        "32768",
        "-i",
        dev,
        "-n",
        "-U",
        "--immediate-mode",
        "-Z",
        "root",
        "-w",
        &file,
        "ip",
    ];
    let idx = spawn(
        procs,
        ns,
        dir,
        dir,
        &format!("tcpdump-{name}"),
        "tcpdump",
        &args,
    );
    wait_log(procs, idx, Duration::from_secs(10), |l| {
        l.contains("listening on")
    });
    (idx, pcap)
}

/// Stops capture `idx` ([`start_capture`]) after 300 ms more: SIGTERM, tcpdump writes
/// what it has and exits. Panics unless it exited on the SIGTERM (not killed) with
/// success and says "0 packets dropped by kernel".
pub fn stop_capture(procs: &mut Procs, idx: usize) {
    std::thread::sleep(Duration::from_millis(300));
    let status = procs.stop(idx);
    let log = procs[idx].log();
    assert!(
        status.is_some_and(|s| s.success()) && !procs[idx].was_killed(),
        "tcpdump: {status:?}: {log}"
    );
    assert!(
        log.lines()
            .any(|l| l.trim() == "0 packets dropped by kernel"),
        "{log}"
    );
}

/// One record of a pcap file.
#[derive(Debug)]
pub struct Frame {
    /// The frame's length on the wire.
    pub len: u32,
    /// What was captured of it (all of it unless the snapshot length or the end of the
    /// file cut it short).
    pub data: Vec<u8>,
}

/// The link type (1: Ethernet) and the records of the pcap file at `path`, in capture
/// order; panics when it is not a pcap file.
pub fn pcap_frames(path: &Path) -> (u32, Vec<Frame>) {
    let data = std::fs::read(path).unwrap();
    let le = match data.get(..4) {
        Some([0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1]) => true,
        Some([0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d]) => false,
        other => panic!("{}: not a pcap file ({other:?})", path.display()),
    };
    assert!(data.len() >= 24, "{}: no pcap header", path.display());
    let u32_at = |at: usize| -> u32 {
        let b: [u8; 4] = data[at..at + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let (captured, len) = (u32_at(at + 8) as usize, u32_at(at + 12));
        let end = (at + 16 + captured).min(data.len());
        frames.push(Frame {
            len,
            data: data[at + 16..end].to_vec(),
        });
        at += 16 + captured;
    }
    (u32_at(20), frames)
}
