//! What the lab tiers (e2e.rs, censor.rs, probes.rs) share: the binary, one test at a
//! time, `aura` run on the host, and a daemon's status over its admin socket.

use std::io::Read as _;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
