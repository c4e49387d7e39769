//! Child-process guards for the demo and the end-to-end tier: [`Proc`] is one child (an
//! `aura server`, an `aura client`, an `aura demo`) with the file its output goes to;
//! [`Procs`] is every child of one run, each stopped and reaped when it is dropped.
//!
//! Stopping means SIGTERM, up to [`STOP_GRACE`] for the process to exit (the daemons
//! undo their host changes then), and SIGKILL after that. A stopped process is always
//! reaped, so no zombie outlives the guard. Its exit status is kept and can be asked for
//! again.
//!
//! ```
//! use std::process::Command;
//! use std::time::Duration;
//! use aura_lab::Procs;
//!
//! # fn main() -> std::io::Result<()> {
//! # let log = std::env::temp_dir().join(format!("aura-lab-doc-{}.log", std::process::id()));
//! let mut procs = Procs::new();
//! let mut cmd = Command::new("sleep");
//! cmd.arg("600");
//! let i = procs.spawn("sleeper", &mut cmd, &log)?;
//! assert!(procs[i].wait_exit(Duration::from_millis(100)).is_none());
//! let status = procs.stop(i); // SIGTERM: `sleep` exits at once
//! assert!(status.is_some_and(|s| !s.success()));
//! # drop(procs);
//! # std::fs::remove_file(&log)?;
//! # Ok(()) }
//! ```

use std::fs::File;
use std::io;
use std::ops::{Index, IndexMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// The signals [`Proc::signal`] sends.
pub use nix::sys::signal::Signal;

/// How long a process may take to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often a waiting guard looks at its child.
const POLL: Duration = Duration::from_millis(20);

/// A child process, the file its output goes to, and how it exited once it has.
#[derive(Debug)]
pub struct Proc {
    label: String,
    child: Child,
    log: PathBuf,
    /// Set once the process was waited for.
    status: Option<ExitStatus>,
    /// Whether [`stop`](Self::stop) had to SIGKILL it.
    killed: bool,
}

impl Proc {
    /// Starts `cmd` with stdin from `/dev/null` and stdout and stderr into `log` (created,
    /// or truncated if it exists).
    ///
    /// # Errors
    /// When `log` cannot be created (the error names it) or the program cannot start.
    pub fn spawn(
        label: impl Into<String>,
        cmd: &mut Command,
        log: impl Into<PathBuf>,
    ) -> io::Result<Self> {
        let log = log.into();
        let file = File::create(&log).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create {}: {e}", log.display()))
        })?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        Ok(Self::new(label, child, log))
    }

    /// Guards a child started elsewhere (e.g. with its stdout piped to the caller), whose
    /// output, or part of it, goes to `log`.
    pub fn new(label: impl Into<String>, child: Child, log: impl Into<PathBuf>) -> Self {
        Self {
            label: label.into(),
            child,
            log: log.into(),
            status: None,
            killed: false,
        }
    }

    /// The name it was given.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything in its log so far (empty when the file cannot be read).
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        let skip = lines.len().saturating_sub(n);
        lines.into_iter().skip(skip).map(str::to_owned).collect()
    }

    /// The exit status if it has exited (never blocks).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for it to exit; `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends `signal` to it.
    ///
    /// # Errors
    /// `ESRCH` once it has been reaped (its PID may belong to another process by then),
    /// or what `kill(2)` says.
    pub fn signal(&self, signal: Signal) -> nix::Result<()> {
        if self.status.is_some() {
            return Err(Errno::ESRCH);
        }
        let pid = i32::try_from(self.child.id()).map_err(|_| Errno::EINVAL)?;
        kill(Pid::from_raw(pid), signal)
    }

    /// Ends it and returns how it exited: SIGTERM, up to [`STOP_GRACE`], then SIGKILL;
    /// always reaped. `None` only if waiting for it failed. Does nothing but return the
    /// status if it has already exited.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Some(s) = self.exited() {
            return Some(s);
        }
        let _ = self.signal(Signal::SIGTERM);
        if let Some(s) = self.wait_exit(STOP_GRACE) {
            return Some(s);
        }
        let _ = self.child.kill();
        self.killed = true;
        self.status = self.child.wait().ok();
        self.status
    }

    /// Whether [`stop`](Self::stop) had to kill it because it ignored SIGTERM.
    pub fn was_killed(&self) -> bool {
        self.killed
    }
}

/// Every child process of one run, numbered in start order; each is stopped
/// ([`Proc::stop`]) and reaped on drop at the latest, newest first.
///
/// Declare it after the [`Lab`](crate::lab::Lab) its processes run in, so it is dropped
/// first: processes end before their namespaces are deleted.
#[derive(Debug, Default)]
pub struct Procs {
    procs: Vec<Proc>,
    report: bool,
}

impl Procs {
    /// An empty set that stops its processes silently.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty set for tests: on drop it also says on stderr which process had to be
    /// killed, and, when the thread is panicking (a failing test), prints every
    /// process's log with its label and exit status.
    pub fn reporting() -> Self {
        Self {
            procs: Vec::new(),
            report: true,
        }
    }

    /// Adds a process; returns its number.
    pub fn push(&mut self, proc: Proc) -> usize {
        self.procs.push(proc);
        self.procs.len() - 1
    }

    /// [`Proc::spawn`] and [`push`](Self::push).
    ///
    /// # Errors
    /// As [`Proc::spawn`].
    pub fn spawn(
        &mut self,
        label: impl Into<String>,
        cmd: &mut Command,
        log: impl Into<PathBuf>,
    ) -> io::Result<usize> {
        Ok(self.push(Proc::spawn(label, cmd, log)?))
    }

    /// Process `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&Proc> {
        self.procs.get(i)
    }

    /// Process `i`, if there is one.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Proc> {
        self.procs.get_mut(i)
    }

    /// How many processes it holds (running or not).
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// Process `i`'s exit status if it has exited ([`Proc::exited`]).
    pub fn exited(&mut self, i: usize) -> Option<ExitStatus> {
        self.procs.get_mut(i)?.exited()
    }

    /// Stops process `i` ([`Proc::stop`]) and returns how it exited.
    pub fn stop(&mut self, i: usize) -> Option<ExitStatus> {
        self.procs.get_mut(i)?.stop()
    }
}

impl Index<usize> for Procs {
    type Output = Proc;

    /// Process `i`; panics if there is none (use [`Procs::get`] otherwise).
    fn index(&self, i: usize) -> &Proc {
        &self.procs[i]
    }
}

impl IndexMut<usize> for Procs {
    fn index_mut(&mut self, i: usize) -> &mut Proc {
        &mut self.procs[i]
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().rev() {
            let was_killed = p.killed;
            p.stop();
            if self.report && p.killed && !was_killed {
                eprintln!(
                    "{} ignored SIGTERM for {} s: killed it",
                    p.label,
                    STOP_GRACE.as_secs()
                );
            }
        }
        if self.report && std::thread::panicking() {
            for p in &self.procs {
                eprintln!(
                    "----- {} ({:?}) stderr -----\n{}",
                    p.label,
                    p.status,
                    p.log()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn output_goes_to_the_log_and_the_status_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut procs = Procs::new();
        let i = procs
            .spawn(
                "echo",
                &mut sh("echo one; echo two >&2; echo three; exit 3"),
                dir.path().join("echo.log"),
            )
            .unwrap();
        let status = procs[i].wait_exit(Duration::from_secs(10)).unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(procs.exited(i), Some(status));
        assert_eq!(procs.stop(i), Some(status));
        assert_eq!(procs[i].log_tail(2), ["two", "three"]);
        assert_eq!(procs[i].log().lines().count(), 3);
        assert_eq!(procs[i].label(), "echo");
        assert!(!procs[i].was_killed());
        // Reaped: no signal goes to a PID that may be reused.
        assert_eq!(procs[i].signal(Signal::SIGTERM), Err(Errno::ESRCH));
        assert!(procs.get(1).is_none() && procs.stop(1).is_none());
    }

    #[test]
    fn a_log_that_cannot_be_created_is_named() {
        let err = Proc::spawn("x", &mut sh("true"), "/nonexistent-dir/x.log").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x.log"), "{err}");
    }

    #[test]
    fn stop_terminates_and_drop_reaps_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut procs = Procs::new();
        let a = procs
            .spawn("a", &mut sh("exec sleep 600"), dir.path().join("a.log"))
            .unwrap();
        let b = procs
            .spawn("b", &mut sh("exec sleep 600"), dir.path().join("b.log"))
            .unwrap();
        assert!(procs.exited(a).is_none());
        let status = procs.stop(a).unwrap();
        assert!(!status.success());
        assert!(!procs[a].was_killed());
        let pid = i32::try_from(procs[b].id()).unwrap();
        drop(procs);
        // Reaped: the PID no longer names a process of ours (nor a zombie).
        assert_eq!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH));
    }
}
