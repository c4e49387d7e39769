//! The parent's handle on the server child: spawn it, read its `stats`, kill it on drop;
//! and `perf record` of it while a phase runs.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use aura_testkit::TestPki;
use aura_transport::Carrier;

use crate::server::hex;
use crate::{LINE_MAX, REEXEC_ENV, SERVER_ENV};

#[derive(Debug, Clone, Default)]
pub(crate) struct Stats {
    pub(crate) rss_kib: u64,
    pub(crate) hwm_kib: u64,
    pub(crate) accepted: u64,
    pub(crate) closed: u64,
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
    pub(crate) cpu_us: u64,
    /// Handshakes completed by each worker (the driver's counters, published at most a
    /// second late).
    pub(crate) worker_handshakes: Vec<u64>,
    /// CPU time of each of the server's runtime threads, µs.
    pub(crate) thread_cpu_us: Vec<u64>,
}

/// The server child. Killed (by its PID) and reaped on drop, whatever the path.
pub(crate) struct ServerChild {
    child: Child,
    stdin: ChildStdin,
    lines: std_mpsc::Receiver<String>,
    pub(crate) addr: SocketAddr,
}

impl ServerChild {
    pub(crate) fn spawn(carrier: Carrier, pki: &TestPki) -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = Command::new(exe);
        match std::env::var(REEXEC_ENV) {
            Ok(orig) if !orig.is_empty() => cmd.env("GLIBC_TUNABLES", orig),
            _ => cmd.env_remove("GLIBC_TUNABLES"),
        };
        let mut child = cmd
            .env_remove(REEXEC_ENV)
            .env(SERVER_ENV, carrier.name())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (tx, lines) = std_mpsc::channel();
        let mut s = ServerChild {
            child,
            stdin: stdin.unwrap(),
            lines,
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        };
        let stdout = stdout.unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        for part in [
            pki.ca_der(),
            pki.crl_der(),
            &pki.server().cert_der,
            &pki.server().key_pkcs8_der,
        ] {
            writeln!(s.stdin, "{}", hex(part)).unwrap();
        }
        s.stdin.flush().unwrap();
        let ready = s.line();
        s.addr = ready
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("server child said {ready:?}"))
            .parse()
            .unwrap();
        s
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(LINE_MAX)
            .unwrap_or_else(|e| panic!("no line from the server child within {LINE_MAX:?}: {e}"))
    }

    pub(crate) fn stats(&mut self) -> Stats {
        writeln!(self.stdin, "stats").unwrap();
        self.stdin.flush().unwrap();
        loop {
            let line = self.line();
            let Some(rest) = line.strip_prefix("STATS ") else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let v: Vec<u64> = fields[..7].iter().map(|x| x.parse().unwrap()).collect();
            let list = |i: usize| -> Vec<u64> {
                fields
                    .get(i)
                    .map(|f| f.split(',').filter_map(|x| x.parse().ok()).collect())
                    .unwrap_or_default()
            };
            return Stats {
                rss_kib: v[0],
                hwm_kib: v[1],
                accepted: v[2],
                closed: v[3],
                packets: v[4],
                bytes: v[5],
                cpu_us: v[6],
                worker_handshakes: list(7),
                thread_cpu_us: list(8),
            };
        }
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        // `Child::kill` sends SIGKILL to this child's PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `perf record -g -p <server>` while alive; stopped with SIGINT (by PID) on drop.
pub(crate) struct Perf(Option<Child>);

impl Perf {
    pub(crate) fn start(server_pid: u32, carrier: Carrier, n: usize) -> Self {
        let Ok(dir) = std::env::var("AURA_SCALE_PERF") else {
            return Perf(None);
        };
        let out = format!("{dir}/perf-{carrier}-{n}.data");
        let child = Command::new("perf")
            .args(["record", "-g", "-o", &out, "-p", &server_pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(c) => {
                eprintln!("perf recording the server into {out}");
                // Let perf attach before the phase starts.
                std::thread::sleep(Duration::from_millis(500));
                Perf(Some(c))
            }
            Err(e) => {
                eprintln!("perf not started: {e}");
                Perf(None)
            }
        }
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        let Some(mut c) = self.0.take() else { return };
        let _ = Command::new("kill")
            .args(["-INT", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}
