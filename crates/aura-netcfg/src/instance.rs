//! One daemon per role per network namespace: a lock each daemon holds for its whole life,
//! taken before it touches the host, so a second `aura server` (or `aura client`) in the
//! same namespace refuses before it could remove the first one's changes as leftovers.
//!
//! The lock is an advisory `flock` on `/run/aura/<role>/<role>-netns<inode>.lock` (a tmpfs,
//! emptied at boot), the inode being the calling thread's network namespace's. The file
//! holds the holder's PID, for the refusal's message. The kernel drops the lock when the
//! process ends, however it ends: a crashed daemon never blocks the next one.

use std::io::{Read, Seek, Write};
use std::path::PathBuf;

use crate::error::NetcfgError;

/// Where the daemons keep their run-time state: one directory per role under it.
pub const RUN_DIR: &str = "/run/aura";

/// `role`'s own directory under [`RUN_DIR`] (`/run/aura/server`, `/run/aura/client`): its
/// instance lock, its journals of host changes and its admin socket. One per role, so a
/// daemon that drops privileges can be given its own without touching the other's, and
/// a service manager can manage each as its own runtime directory.
pub fn role_dir(role: Role) -> std::path::PathBuf {
    std::path::Path::new(RUN_DIR).join(role.name())
}

/// What a daemon is: each role changes its own objects on the host and cleans up only
/// those after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `aura server`: forwarding and the `inet aura` table.
    Server,
    /// `aura client`: routes tagged `proto 167`.
    Client,
}

impl Role {
    /// `server` or `client`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }
}

/// A held instance lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct InstanceLock {
    _file: std::fs::File,
    path: PathBuf,
}

impl InstanceLock {
    /// The lock file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// The lock file of `role` in the calling thread's network namespace, under `dir`.
fn lock_path(dir: &std::path::Path, role: Role) -> Result<PathBuf, NetcfgError> {
    use std::os::unix::fs::MetadataExt;
    let ns = std::fs::metadata("/proc/thread-self/ns/net")
        .map_err(|source| NetcfgError::Io {
            action: "reading this thread's network namespace".into(),
            source,
        })?
        .ino();
    Ok(dir.join(format!("{}-netns{ns}.lock", role.name())))
}

/// Takes `role`'s lock for this network namespace under `dir` (`/run/aura` in
/// production).
///
/// # Errors
/// [`NetcfgError::AlreadyRunning`] when another process holds it;
/// [`NetcfgError::Io`] when the directory or file cannot be made.
pub fn claim(dir: &std::path::Path, role: Role) -> Result<InstanceLock, NetcfgError> {
    let io = |action: String| move |source| NetcfgError::Io { action, source };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o755);
    builder
        .create(dir)
        .map_err(io(format!("creating {}", dir.display())))?;
    let path = lock_path(dir, role)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o644);
    // O_NOFOLLOW: a symlink planted in the directory is not followed.
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut opts, nix::libc::O_NOFOLLOW);
    let mut file = opts
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(NetcfgError::AlreadyRunning {
                role: role.name(),
                pid: text.trim().parse().ok(),
                lock: path,
            });
        }
        Err(std::fs::TryLockError::Error(source)) => {
            return Err(NetcfgError::Io {
                action: format!("locking {}", path.display()),
                source,
            });
        }
    }
    let pid = std::process::id().to_string();
    let write = |f: &mut std::fs::File| -> std::io::Result<()> {
        f.set_len(0)?;
        f.rewind()?;
        f.write_all(pid.as_bytes())
    };
    write(&mut file).map_err(io(format!("writing {}", path.display())))?;
    Ok(InstanceLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_second_claim_of_one_role_is_refused_naming_the_holder() {
        let dir = tempdir();
        let first = claim(&dir, Role::Server).unwrap();
        let err = claim(&dir, Role::Server).unwrap_err();
        match &err {
            NetcfgError::AlreadyRunning { role, pid, lock } => {
                assert_eq!(*role, "server");
                assert_eq!(*pid, Some(std::process::id()));
                assert_eq!(lock, first.path());
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("another aura server"), "{err}");
        // The other role is free; the first role is free again once released.
        let client = claim(&dir, Role::Client).unwrap();
        drop(first);
        let again = claim(&dir, Role::Server).unwrap();
        drop((client, again));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "aura-netcfg-lock-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
}
