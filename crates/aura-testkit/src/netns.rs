//! Network namespaces for the root-only test tier: created with a unique name, deleted
//! when dropped on every path (panics included), with helpers to run commands inside.
//!
//! A test that cannot run here (not root, no `ip`) asks [`skip_reason`] and prints why
//! instead of failing; CI runs as root, so there the tests run.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Why network-namespace tests cannot run here, or `None` when they can: needs root and
/// the `ip` command (iproute2), plus each program in `programs`.
pub fn skip_reason(programs: &[&str]) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (network namespaces)".into());
    }
    for p in std::iter::once(&"ip").chain(programs) {
        if !have(p) {
            return Some(format!("`{p}` is not installed"));
        }
    }
    None
}

/// Whether `program` can be run.
pub fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        || ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(program).is_file())
}

/// A network namespace named `<prefix>-<pid>-<n>`, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace and brings its loopback up.
    ///
    /// # Errors
    /// When `ip netns add` fails (its stderr).
    pub fn new(prefix: &str) -> Result<Self, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .map_err(|e| format!("ip netns add {name}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip netns add {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let ns = Self { name };
        ns.sh("ip link set lo up")?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its path for `setns`: `/var/run/netns/<name>`.
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// Runs a shell script inside; its stdout, or its stderr as the error.
    ///
    /// # Errors
    /// When the script fails.
    pub fn sh(&self, script: &str) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-ec", script])
            .output()
            .map_err(|e| format!("{script}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{script}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
