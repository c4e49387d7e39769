//! The daemons under a service manager: readiness and watchdog for systemd
//! (`Type=notify`, `sd_notify(3)`'s datagram protocol on `$NOTIFY_SOCKET`), and the
//! reload request SIGHUP makes.
//!
//! Without `$NOTIFY_SOCKET` (run by hand, in tests) every notification is a no-op.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

/// Sends `state` (newline-separated `KEY=VALUE` lines) to the service manager, when
/// there is one. Failures are logged, never fatal: the daemon works without it.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        tracing::warn!(error = %e, "could not notify the service manager");
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    match bytes.split_first() {
        // An abstract socket: `@name`.
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        }
        Some((b'/', _)) => {
            sock.send_to(state.as_bytes(), path)?;
        }
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither a path nor an abstract name",
            ));
        }
    }
    Ok(())
}

/// Start-up is done: the service manager may start what depends on the daemon.
pub fn ready(status: &str) {
    notify(&format!("READY=1\nSTATUS={status}"));
}

/// The daemon is stopping (host changes being undone).
pub fn stopping() {
    notify("STOPPING=1");
}

/// A reload begins (`RELOADING=1` with the monotonic time, as systemd asks).
pub fn reloading() {
    let mut ts = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let r = unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_MONOTONIC, &raw mut ts) };
    let usec = if r == 0 {
        u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000
            + u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000
    } else {
        0
    };
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}

/// How often to tell the watchdog the daemon is alive (half the period systemd set),
/// or `None` when no watchdog watches this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// The daemon's main loop is alive.
pub fn watchdog() {
    notify("WATCHDOG=1");
}

/// A request to re-read the CRL and credentials (SIGHUP in `aura`): one per process,
/// shared by whoever asks and the daemon that answers. A request made while the daemon
/// is busy is kept until it looks (one permit).
#[derive(Debug, Clone)]
pub struct Reload(Arc<Notify>);

impl Reload {
    /// A reload request of its own (tests), not the process's.
    pub fn new() -> Self {
        Self(Arc::new(Notify::new()))
    }

    /// The process's reload request, which SIGHUP triggers in `aura`.
    pub fn process() -> Self {
        static PROCESS: OnceLock<Reload> = OnceLock::new();
        PROCESS.get_or_init(Self::new).clone()
    }

    /// Asks for a reload.
    pub fn request(&self) {
        self.0.notify_one();
    }

    /// Resolves when a reload was asked for.
    pub async fn requested(&self) {
        self.0.notified().await;
    }
}

impl Default for Reload {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn notifications_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1\nSTATUS=up").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=up");
    }

    #[test]
    fn an_abstract_socket_is_reached_too() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("aura-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
        send(std::ffi::OsStr::new(&format!("@{name}")), "WATCHDOG=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }

    #[test]
    fn a_relative_socket_name_is_refused() {
        let e = send(std::ffi::OsStr::new("relative"), "READY=1").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn a_request_made_before_anyone_waits_is_kept() {
        let r = Reload::new();
        r.request();
        tokio::time::timeout(Duration::from_secs(5), r.requested())
            .await
            .unwrap();
    }
}
