//! Network namespaces: created with a unique name, deleted when dropped on every path
//! (panics included), with ways to run shell scripts, programs and Rust code inside.
//!
//! Used by `aura demo` (which builds a small lab of namespaces, see [`crate::lab`]) and
//! by the root-only test tier. A caller that cannot use namespaces here (not root, no
//! `ip`) asks [`skip_reason`] and says why instead of failing.
//!
//! Linux only: elsewhere [`Netns::new`] and [`Netns::run`] return an error and
//! [`skip_reason`] always gives a reason.
//!
//! ```no_run
//! use aura_lab::netns::{Netns, skip_reason};
//! # fn main() -> Result<(), String> {
//! if let Some(why) = skip_reason(&[]) {
//!     return Err(why);
//! }
//! let ns = Netns::new("example")?; // `example-<pid>-<n>`, loopback up
//! ns.sh("ip addr add 192.0.2.1/32 dev lo")?;
//! // Rust code on a thread inside the namespace: this socket belongs to it.
//! let bound = ns.run(|| std::net::TcpListener::bind("192.0.2.1:0").is_ok())?;
//! assert!(bound);
//! # Ok(()) }
//! // Dropping `ns` deletes it.
//! ```

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod imp;
#[cfg(not(target_os = "linux"))]
#[path = "stub.rs"]
mod imp;

/// Why network namespaces cannot be used here, or `None` when they can: needs Linux,
/// root and the `ip` command (iproute2), plus each program in `programs`.
pub fn skip_reason(programs: &[&str]) -> Option<String> {
    if let Some(why) = imp::unsupported() {
        return Some(why);
    }
    if !imp::is_root() {
        return Some("needs root (network namespaces)".into());
    }
    for p in std::iter::once(&"ip").chain(programs) {
        if !have(p) {
            return Some(format!("`{p}` is not installed"));
        }
    }
    None
}

/// Whether `program` can be run: `program --version` succeeds, or it is a file in one of
/// the usual system directories.
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
///
/// Deleting removes the name; the kernel frees the namespace itself once no process or
/// thread is left inside, so end what runs inside (see [`command`](Self::command))
/// before dropping.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace and brings its loopback up.
    ///
    /// # Errors
    /// When namespaces are unsupported here or `ip netns add` fails (its stderr).
    pub fn new(prefix: &str) -> Result<Self, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        if let Some(why) = imp::unsupported() {
            return Err(why);
        }
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
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let ns = Self { name };
        // Programs run through `ip netns exec` see this file as `/etc/resolv.conf` (a
        // bind mount), so a client that rewrites its resolvers inside changes this
        // namespace's copy, never the host's.
        let etc = ns.etc_dir();
        std::fs::create_dir_all(&etc)
            .and_then(|()| {
                let host = std::fs::read("/etc/resolv.conf").unwrap_or_default();
                std::fs::write(etc.join("resolv.conf"), host)
            })
            .map_err(|e| format!("cannot make {}: {e}", etc.display()))?;
        ns.sh("ip link set lo up")?;
        Ok(ns)
    }

    /// `/etc/netns/<name>`: files `ip netns exec` mounts over `/etc` for what runs
    /// inside. Holds `resolv.conf` (a copy of the host's when the namespace was made).
    pub fn etc_dir(&self) -> std::path::PathBuf {
        std::path::Path::new("/etc/netns").join(&self.name)
    }

    /// This namespace's `/etc/resolv.conf`, as what runs inside through
    /// [`command`](Self::command) sees it.
    pub fn resolv_conf(&self) -> std::path::PathBuf {
        self.etc_dir().join("resolv.conf")
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its path for `setns`: `/var/run/netns/<name>`.
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// Runs a shell script inside (`sh -ec`); its stdout, or its stderr as the error.
    ///
    /// # Errors
    /// When the script cannot be started or fails.
    pub fn sh(&self, script: &str) -> Result<String, String> {
        let out = self
            .command("sh")
            .args(["-ec", script])
            .output()
            .map_err(|e| format!("{script}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{script}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A command that runs `program` inside, through `ip netns exec` (which `exec`s the
    /// program: the child's PID is the program's). Add arguments, I/O and spawn it as
    /// with any [`Command`].
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `f` on a fresh thread that first enters this namespace, and returns its
    /// result: sockets, netlink handles and `/proc/sys/net` files opened by `f` belong
    /// to the namespace. The calling thread is not moved.
    ///
    /// # Errors
    /// When the thread cannot be started or enter the namespace, or when `f` panics
    /// (the panic message).
    pub fn run<F, R>(&self, f: F) -> Result<R, String>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let path = self.path();
        std::thread::scope(|s| {
            let handle = std::thread::Builder::new()
                .name(format!("netns {}", self.name))
                .spawn_scoped(s, move || -> Result<R, String> {
                    imp::enter(&path)?;
                    Ok(f())
                })
                .map_err(|e| format!("cannot start a thread for netns {}: {e}", self.name))?;
            match handle.join() {
                Ok(r) => r,
                Err(panic) => Err(format!(
                    "code run in netns {} panicked: {}",
                    self.name,
                    panic_message(panic.as_ref())
                )),
            }
        })
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(self.etc_dir());
    }
}
