//! Privilege drop (`run_as`): the daemon gives up root before it starts any thread, and
//! keeps only the capabilities its later work needs, as ambient capabilities.
//!
//! # Why before any thread
//! Capabilities, the bounding set and the securebits are per thread in Linux, and a
//! multi-threaded runtime would leave copies of root's sets in every worker it had
//! already started. So the daemon drops while it is still one thread, before its async
//! runtime exists, and every thread it starts afterwards inherits the reduced sets.
//! [`drop_to`] checks `/proc/self/task` and refuses to run in a process of several
//! threads.
//!
//! # What is kept
//! `CAP_NET_ADMIN` always: the TUN device (and its re-creation when the server assigns
//! another address), routes over netlink, the `nft` program (which inherits it as an
//! ambient capability), the forwarding sysctls under `/proc/sys/net` (writable by a
//! holder of `CAP_NET_ADMIN` in the namespace), forced socket buffer sizes.
//! `CAP_NET_BIND_SERVICE` when the daemon binds a port below 1024 (a carrier on 443, the
//! DNS forwarder or stub on 53). Nothing else: the bounding set holds only these, the
//! uid, gid and supplementary groups are the user's (real, effective and saved), and
//! `no_new_privs` is set, so neither a setuid program nor file capabilities give root
//! back.
//!
//! # What the user must be able to do
//! Read the configuration, the certificates, the key and the CRL (they are read again
//! on reload). The directories the daemon writes its journals, locks and admin socket
//! in are handed to the user by [`drop_to`] (`/run/aura` and the admin socket's
//! directory), entries included, so a journal left by an earlier run as root can still
//! be replaced and removed.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid, User};

use crate::error::NetcfgError;

/// The user a daemon runs as after the drop.
#[derive(Debug, Clone)]
pub struct RunAs {
    /// The user name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
    /// Its primary and supplementary groups.
    groups: Vec<u32>,
}

impl RunAs {
    /// Looks `name` up in the system's user database.
    ///
    /// # Errors
    /// [`NetcfgError::Privilege`] when there is no such user, or the lookup fails.
    pub fn lookup(name: &str) -> Result<Self, NetcfgError> {
        let user = User::from_name(name)
            .map_err(|e| NetcfgError::Privilege(format!("looking up user {name:?}: {e}")))?
            .ok_or_else(|| {
                NetcfgError::Privilege(format!(
                    "no user {name:?} on this host (create it, e.g. `adduser --system \
                     --group {name}`, or change run_as)"
                ))
            })?;
        if user.uid.is_root() {
            return Err(NetcfgError::Privilege(format!(
                "user {name:?} is root (uid 0): run_as must name an unprivileged user"
            )));
        }
        let cname = CString::new(name)
            .map_err(|_| NetcfgError::Privilege(format!("user name {name:?} holds a NUL")))?;
        let groups = nix::unistd::getgrouplist(&cname, user.gid)
            .map_err(|e| NetcfgError::Privilege(format!("the groups of user {name:?}: {e}")))?
            .into_iter()
            .map(Gid::as_raw)
            .collect();
        Ok(Self {
            name: name.to_owned(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups,
        })
    }
}

/// What the daemon keeps after the drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    /// `CAP_NET_BIND_SERVICE`: the daemon binds a port below 1024.
    pub bind_low_ports: bool,
}

impl Keep {
    fn set(self) -> CapsHashSet {
        let mut set = CapsHashSet::new();
        set.insert(Capability::CAP_NET_ADMIN);
        if self.bind_low_ports {
            set.insert(Capability::CAP_NET_BIND_SERVICE);
        }
        set
    }

    /// The kept capabilities' names, for the log.
    pub fn names(self) -> Vec<&'static str> {
        let mut v = vec!["CAP_NET_ADMIN"];
        if self.bind_low_ports {
            v.push("CAP_NET_BIND_SERVICE");
        }
        v
    }
}

/// What [`drop_to`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// The process now runs as the user with only the kept capabilities.
    Dropped,
    /// The process already ran as the user (not root): nothing to drop.
    AlreadyUser,
}

fn err(what: &str, e: impl std::fmt::Display) -> NetcfgError {
    NetcfgError::Privilege(format!("{what}: {e}"))
}

/// Threads of this process, from `/proc/self/task`.
fn thread_count() -> Result<usize, NetcfgError> {
    Ok(std::fs::read_dir("/proc/self/task")
        .map_err(|e| err("listing /proc/self/task", e))?
        .count())
}

/// Creates `dir` when missing (0755) and gives it and its entries to `user`. Symbolic
/// links are neither followed nor changed.
fn hand_over(dir: &Path, user: &RunAs) -> Result<(), NetcfgError> {
    let uid = Some(Uid::from_raw(user.uid));
    let gid = Some(Gid::from_raw(user.gid));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o755);
    builder
        .create(dir)
        .map_err(|e| err(&format!("creating {}", dir.display()), e))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| err(&format!("{}", dir.display()), e))?;
    if !meta.is_dir() {
        return Err(NetcfgError::Privilege(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let chown = |p: &Path| {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            p,
            uid,
            gid,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| err(&format!("giving {} to {}", p.display(), user.name), e))
    };
    chown(dir)?;
    let entries = std::fs::read_dir(dir).map_err(|e| err(&format!("{}", dir.display()), e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_symlink()) {
            continue;
        }
        chown(&path)?;
    }
    Ok(())
}

/// Drops root for `user`, keeping `keep`, after handing `dirs` (created when missing) to
/// the user. Must run while the process has one thread.
///
/// # Errors
/// [`NetcfgError::Privilege`] naming the step that failed: several threads, not root
/// (and not already `user`), a directory that cannot be handed over, a failed
/// `setresuid`/`setresgid`/`setgroups`/capability call, or a check afterwards that finds
/// root still reachable. A failure before the uid change leaves the process as it was
/// but for the bounding set; the daemon stops either way.
pub fn drop_to(user: &RunAs, keep: Keep, dirs: &[PathBuf]) -> Result<Dropped, NetcfgError> {
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        if euid.as_raw() == user.uid && nix::unistd::getuid().as_raw() == user.uid {
            return Ok(Dropped::AlreadyUser);
        }
        return Err(NetcfgError::Privilege(format!(
            "run_as = {:?} needs the daemon started as root (it runs as uid {euid})",
            user.name
        )));
    }
    let threads = thread_count()?;
    if threads != 1 {
        return Err(NetcfgError::Privilege(format!(
            "privileges must be dropped before any thread starts ({threads} threads run)"
        )));
    }
    for dir in dirs {
        hand_over(dir, user)?;
    }
    let keep_set = keep.set();
    // The bounding set first, while CAP_SETPCAP is still held: no program this process
    // starts can gain anything outside `keep`.
    for cap in caps::all() {
        if !keep_set.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| err(&format!("dropping {cap} from the bounding set"), e))?;
        }
    }
    // Keep the permitted set across the uid change; it is cut to `keep` right after.
    caps::securebits::set_keepcaps(true).map_err(|e| err("setting keep-caps", e))?;
    let groups: Vec<Gid> = user.groups.iter().copied().map(Gid::from_raw).collect();
    nix::unistd::setgroups(&groups).map_err(|e| err("setgroups", e))?;
    let gid = Gid::from_raw(user.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| err("setresgid", e))?;
    let uid = Uid::from_raw(user.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| err("setresuid", e))?;
    caps::set(None, CapSet::Permitted, &keep_set).map_err(|e| err("the permitted set", e))?;
    caps::set(None, CapSet::Effective, &keep_set).map_err(|e| err("the effective set", e))?;
    caps::set(None, CapSet::Inheritable, &keep_set).map_err(|e| err("the inheritable set", e))?;
    for cap in &keep_set {
        caps::raise(None, CapSet::Ambient, *cap)
            .map_err(|e| err(&format!("raising ambient {cap}"), e))?;
    }
    caps::securebits::set_keepcaps(false).map_err(|e| err("clearing keep-caps", e))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| err("setting no_new_privs", e))?;
    verify(user, &keep_set)?;
    Ok(Dropped::Dropped)
}

/// Checks the drop: every id is the user's, root cannot be taken back, and the sets hold
/// exactly `keep`.
fn verify(user: &RunAs, keep: &CapsHashSet) -> Result<(), NetcfgError> {
    let ids = nix::unistd::getresuid().map_err(|e| err("getresuid", e))?;
    let gids = nix::unistd::getresgid().map_err(|e| err("getresgid", e))?;
    let all_user = [ids.real, ids.effective, ids.saved]
        .iter()
        .all(|u| u.as_raw() == user.uid)
        && [gids.real, gids.effective, gids.saved]
            .iter()
            .all(|g| g.as_raw() == user.gid);
    if !all_user {
        return Err(NetcfgError::Privilege(
            "after the drop a uid or gid is not the user's".into(),
        ));
    }
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(NetcfgError::Privilege(
            "after the drop the process could become root again".into(),
        ));
    }
    for set in [
        CapSet::Permitted,
        CapSet::Effective,
        CapSet::Ambient,
        CapSet::Bounding,
    ] {
        let held = caps::read(None, set).map_err(|e| err("reading capabilities", e))?;
        if &held != keep {
            return Err(NetcfgError::Privilege(format!(
                "after the drop the {set:?} set holds {held:?}, not {keep:?}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_missing_user_is_named() {
        let e = RunAs::lookup("aura-no-such-user-x").unwrap_err();
        assert!(
            e.to_string().contains("no user \"aura-no-such-user-x\""),
            "{e}"
        );
    }

    #[test]
    fn root_is_refused_as_run_as() {
        let e = RunAs::lookup("root").unwrap_err();
        assert!(e.to_string().contains("is root"), "{e}");
    }

    #[test]
    fn a_known_user_resolves_with_its_groups() {
        let u = RunAs::lookup("nobody").unwrap();
        assert_ne!(u.uid, 0);
        assert!(u.groups.contains(&u.gid), "{:?}", u.groups);
    }

    #[test]
    fn dropping_in_a_threaded_process_is_refused() {
        // A second thread of this test's own, alive across the call, whatever the
        // harness does with threads.
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            let _ = wait.recv();
        });
        let user = RunAs::lookup("nobody").unwrap();
        let _release = Release(Some(release), Some(other));
        if !nix::unistd::geteuid().is_root() {
            // Not root: refused for that reason first.
            let e = drop_to(
                &user,
                Keep {
                    bind_low_ports: false,
                },
                &[],
            )
            .unwrap_err();
            assert!(e.to_string().contains("started as root"), "{e}");
            return;
        }
        let e = drop_to(
            &user,
            Keep {
                bind_low_ports: false,
            },
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("before any thread starts"), "{e}");
        // Refused before anything changed.
        assert!(nix::unistd::geteuid().is_root());
    }

    /// Ends the helper thread when the test ends, however it ends.
    struct Release(
        Option<std::sync::mpsc::Sender<()>>,
        Option<std::thread::JoinHandle<()>>,
    );

    impl Drop for Release {
        fn drop(&mut self) {
            drop(self.0.take());
            if let Some(t) = self.1.take() {
                let _ = t.join();
            }
        }
    }

    #[test]
    fn kept_names_follow_the_plan() {
        assert_eq!(
            Keep {
                bind_low_ports: false
            }
            .names(),
            ["CAP_NET_ADMIN"]
        );
        assert_eq!(
            Keep {
                bind_low_ports: true
            }
            .names(),
            ["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"]
        );
    }
}
