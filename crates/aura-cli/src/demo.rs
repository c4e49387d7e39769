//! `aura demo`: Aura working end to end on this machine, in one command (Linux, root).
//!
//! Builds a lab of network namespaces (`aura_lab::lab`: a server `S`, an "internet"
//! host `I` that has no route back to the client, one client host `C1`), writes a
//! deployment with `aura server-init` and `aura provision-client` into a private
//! temporary directory, starts a real `aura server` in `S`, then for each carrier
//! (udp, quic, tls) a real `aura client` in `C1` configured with that carrier only,
//! and sends a checked TCP transfer from `C1` to `I` through the tunnel. The report
//! shows, per carrier, the connect time, the client's tunnel address, the source
//! address `I` saw (the server's: the traffic was tunnelled and NATed) and the
//! throughput.
//!
//! Everything it creates (processes, namespaces, files) is removed on every exit path,
//! including SIGINT (Ctrl-C) and SIGTERM during the run: those set a flag checked
//! between and within steps, and the guards (`aura_lab::Procs`, the lab, the work
//! directory) do the rest on the way out.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use aura_lab::Procs;
use aura_lab::deploy::{self, toml_path};
use aura_lab::lab::{self, Lab, TransferReport};
use aura_lab::netns::Netns;
use aura_node::admin::{self, Request, Response};
use clap::Args;

/// The carriers shown, in order.
const CARRIERS: [&str; 3] = ["udp", "quic", "tls"];
/// Port of the listener on the internet host.
const PORT: u16 = 5201;
/// How long the server may take to answer on its admin socket.
const SERVER_READY: Duration = Duration::from_secs(20);
/// How long a client may take to connect.
const CLIENT_CONNECT: Duration = Duration::from_secs(20);
/// Longest one carrier's transfer may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);

/// Set by SIGINT or SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Megabytes sent through the tunnel per carrier.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    megabytes: u32,
    /// Keep the lab's files (configuration, PKI, daemon logs) in this directory instead
    /// of a temporary one that is removed at the end.
    #[arg(long)]
    keep: Option<PathBuf>,
}

/// What one carrier showed.
#[derive(Debug)]
struct Row {
    carrier: &'static str,
    outcome: Result<(Duration, TransferReport), String>,
}

pub fn run(args: DemoArgs) -> Result<()> {
    if let Some(why) = aura_lab::netns::skip_reason(&["nft"]) {
        bail!(
            "aura demo cannot run here ({why}). It would create three network namespaces \
             (a server, a client and an \"internet\" host joined by veth links), run \
             `aura server` and `aura client` in them (TUN devices, routes, NAT in nftables), \
             send traffic through the tunnel over each carrier, and remove everything at the \
             end. Run it as root on Linux, e.g. `sudo aura demo`"
        );
    }
    catch_signals()?;
    let exe = std::env::current_exe().context("cannot find the aura binary itself")?;
    let dir = WorkDir::new(args.keep.as_deref())?;
    let bytes = usize::try_from(args.megabytes)? * 1024 * 1024;

    println!(
        "Aura demo: one server, one client and one \"internet\" host, each in its own network namespace"
    );
    let lab = Lab::new("aura-demo", 1).map_err(|e| anyhow!("cannot build the lab: {e}"))?;
    println!(
        "  client {} ── server {} / {} ── internet host {} (no route back to the client)",
        lab.client_ip(1),
        lab.server_ip(1),
        lab.server_internet_ip(),
        lab.internet_ip()
    );
    // Dropped before `lab` (declared after it): processes end before namespaces go.
    let mut procs = Procs::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    write_deployment(&exe, dir.path(), &lab)?;
    let server_sock = dir.path().join("server.sock");
    let server_ns = lab.server();
    let server = spawn(
        &mut procs,
        &exe,
        server_ns,
        "server",
        dir.path(),
        "server.toml",
    )?;
    wait_for(&rt, &mut procs, server, &server_sock, SERVER_READY, |r| {
        matches!(r, Response::Server { .. })
    })
    .context("the server did not start")?;
    println!("  server up in {}", server_ns.name());

    let mut rows = Vec::new();
    for carrier in CARRIERS {
        check_stop()?;
        if let Some(s) = procs.exited(server) {
            bail!("the server exited ({s}){}", log_tail(&procs, server));
        }
        println!(
            "  {carrier}: connecting and sending {} MB ...",
            args.megabytes
        );
        let outcome = try_carrier(&exe, &rt, &mut procs, &lab, dir.path(), carrier, bytes);
        if let Err(e) = &outcome {
            check_stop()?;
            println!("  {carrier}: FAILED: {e}");
        }
        rows.push(Row { carrier, outcome });
    }
    print!("{}", render(&lab, args.megabytes, &rows));
    if let Some(keep) = &args.keep {
        println!("files kept in {}", keep.display());
    }
    let mut failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.outcome.is_err())
        .map(|r| r.carrier)
        .collect();
    // The server undoes its NAT and forwarding on SIGTERM and exits 0.
    match procs.stop(server) {
        Some(s) if s.success() => {}
        s => {
            println!(
                "the server did not exit cleanly ({s:?}){}",
                log_tail(&procs, server)
            );
            failed.push("server shutdown");
        }
    }
    drop(procs);
    drop(lab);
    if failed.is_empty() {
        println!("every carrier worked; the lab is removed.");
        Ok(())
    } else {
        bail!("the demo failed over {}", failed.join(", "))
    }
}

/// One carrier: a client with only `carrier`, connected, then a transfer to the
/// internet host; the client is stopped before returning.
fn try_carrier(
    exe: &Path,
    rt: &tokio::runtime::Runtime,
    procs: &mut Procs,
    lab: &Lab,
    dir: &Path,
    carrier: &'static str,
    bytes: usize,
) -> Result<(Duration, TransferReport), String> {
    set_client_carrier(dir, carrier).map_err(|e| format!("{e:#}"))?;
    let client_ns = lab.client(1).ok_or("the lab has no client host")?;
    let start = Instant::now();
    let client = spawn(
        procs,
        exe,
        client_ns,
        &format!("client-{carrier}"),
        dir,
        "alice/client.toml",
    )
    .map_err(|e| format!("{e:#}"))?;
    let result = (|| {
        let sock = dir.join("alice.sock");
        wait_for(
            rt,
            procs,
            client,
            &sock,
            CLIENT_CONNECT,
            |r| matches!(r, Response::Client { state, .. } if state == "connected"),
        )
        .map_err(|e| format!("did not connect: {e:#}"))?;
        let connect = start.elapsed();
        check_stop().map_err(|e| e.to_string())?;
        let report = lab::transfer_cancellable(
            client_ns,
            lab.internet(),
            lab.internet_ip(),
            PORT,
            bytes,
            TRANSFER_TIMEOUT,
            &STOP,
        )?;
        if report.peer_seen.ip() != lab.server_internet_ip() {
            return Err(format!(
                "the internet host saw {} instead of the server's address",
                report.peer_seen.ip()
            ));
        }
        Ok((connect, report))
    })();
    let log = log_tail(procs, client);
    let stopped = procs.stop(client);
    match (result, stopped) {
        (Ok(r), Some(s)) if s.success() => Ok(r),
        (Ok(_), s) => Err(format!("the client did not exit cleanly ({s:?}){log}")),
        (Err(e), _) => Err(format!("{e}{log}")),
    }
}

/// Installs handlers for SIGINT and SIGTERM that set [`STOP`].
fn catch_signals() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let signal = {
        let _in_runtime = rt.enter();
        aura_node::shutdown_signal()?
    };
    std::thread::Builder::new()
        .name("aura demo signals".into())
        .spawn(move || {
            rt.block_on(signal);
            eprintln!("aura demo: interrupted, removing everything it created ...");
            STOP.store(true, Ordering::SeqCst);
        })?;
    Ok(())
}

fn check_stop() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// The demo's directory: a fresh private temporary one removed on drop, or the one the
/// user asked to keep.
struct WorkDir {
    path: PathBuf,
    remove: bool,
}

impl WorkDir {
    fn new(keep: Option<&Path>) -> Result<Self> {
        let (path, remove) = match keep {
            Some(p) => (p.to_owned(), false),
            None => (
                std::env::temp_dir().join(format!("aura-demo-{}", std::process::id())),
                true,
            ),
        };
        if remove && path.exists() {
            fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove a stale {}", path.display()))?;
        }
        let mut b = fs::DirBuilder::new();
        b.recursive(!remove);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        // Absolute: the configuration files name paths inside it, and relative paths
        // there are resolved against the file's own directory.
        let path = fs::canonicalize(&path)
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        Ok(Self { path, remove })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Starts `aura <role> --config <dir>/<config>` in `ns` under `procs`, output to
/// `<dir>/<label>.log`; the role is `server` for the label `server`, else `client`.
fn spawn(
    procs: &mut Procs,
    exe: &Path,
    ns: &Netns,
    label: &str,
    dir: &Path,
    config: &str,
) -> Result<usize> {
    let role = if label == "server" {
        "server"
    } else {
        "client"
    };
    let mut cmd = ns.command(exe);
    cmd.arg(role).arg("--config").arg(dir.join(config));
    procs
        .spawn(label, &mut cmd, dir.join(format!("{label}.log")))
        .with_context(|| format!("cannot start aura {role}"))
}

/// The last lines of process `i`'s log, as a suffix for an error message.
fn log_tail(procs: &Procs, i: usize) -> String {
    let tail = procs.get(i).map(|p| p.log_tail(5)).unwrap_or_default();
    if tail.is_empty() {
        String::new()
    } else {
        format!("\n      log: {}", tail.join("\n           "))
    }
}

/// Polls the admin socket `sock` until `ok` holds, process `proc` exits, the demo is
/// interrupted, or `timeout` passes.
fn wait_for(
    rt: &tokio::runtime::Runtime,
    procs: &mut Procs,
    proc: usize,
    sock: &Path,
    timeout: Duration,
    ok: impl Fn(&Response) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        check_stop()?;
        let answer = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(1),
                admin::request(sock, &Request::Status),
            )
            .await
        });
        if let Ok(Ok(r)) = answer
            && ok(&r)
        {
            return Ok(());
        }
        if let Some(s) = procs.exited(proc) {
            bail!("it exited ({s}){}", log_tail(procs, proc));
        }
        if Instant::now() >= deadline {
            bail!("no answer within {timeout:?}{}", log_tail(procs, proc));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `aura <args>` (this binary) and fails with its output if it fails.
fn aura(exe: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(exe)
        .args(args)
        .env_remove("AURA_PKI_DIR")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run aura {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "aura {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A deployment in `dir`: server.toml and the PKI, and client alice's bundle in
/// `dir/alice`, both with their admin sockets in `dir`.
fn write_deployment(exe: &Path, dir: &Path, lab: &Lab) -> Result<()> {
    let d = dir.to_string_lossy().into_owned();
    aura(
        exe,
        &[
            "server-init",
            "--dir",
            &d,
            "--name",
            "aura-demo.test",
            "--listen",
            "0.0.0.0",
            "--force",
        ],
    )?;
    let server = lab.server_ip(1).to_string();
    let out = dir.join("alice").to_string_lossy().into_owned();
    aura(
        exe,
        &[
            "provision-client",
            "--dir",
            &d,
            "--id",
            "alice",
            "--server",
            &server,
            "--out",
            &out,
            "--force",
        ],
    )?;
    deploy::set_key_in(
        &dir.join("server.toml"),
        "[server]",
        "admin_socket",
        &toml_path(&dir.join("server.sock")),
    )
    .map_err(|e| anyhow!(e))
}

/// Points alice's client.toml at `carrier` only (and its admin socket into `dir`).
fn set_client_carrier(dir: &Path, carrier: &str) -> Result<()> {
    deploy::set_client_carrier(
        &dir.join("alice").join("client.toml"),
        &dir.join("alice.sock"),
        carrier,
    )
    .map_err(|e| anyhow!(e))
}

/// The report table.
fn render(lab: &Lab, megabytes: u32, rows: &[Row]) -> String {
    let mut s = format!(
        "\n{:<8} {:>9}  {:<15} {:<18} {:>22}  RESULT\n",
        "CARRIER",
        "CONNECT",
        "CLIENT (TUNNEL)",
        "INTERNET HOST SAW",
        format!("{megabytes} MB TRANSFER")
    );
    for r in rows {
        match &r.outcome {
            Ok((connect, t)) => s.push_str(&format!(
                "{:<8} {:>6} ms  {:<15} {:<18} {:>22}  ok, SHA-256 match\n",
                r.carrier,
                connect.as_millis(),
                t.sender_local.ip(),
                t.peer_seen.ip(),
                format!(
                    "{:.2} s, {:.0} Mbit/s",
                    t.duration.as_secs_f64(),
                    t.mbit_per_s
                ),
            )),
            Err(_) => s.push_str(&format!(
                "{:<8} {:>9}  {:<15} {:<18} {:>22}  FAILED\n",
                r.carrier, "-", "-", "-", "-"
            )),
        }
    }
    s.push_str(&format!(
        "\nThe internet host has no route to the client ({}) nor to the tunnel pool: it saw \
         the server's address ({}), so every byte went through the tunnel and the server's \
         NAT.\n",
        lab.client_ip(1),
        lab.server_internet_ip()
    ));
    s
}
