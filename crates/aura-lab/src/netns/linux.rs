//! Linux: `setns(2)` through nix.

use std::fs::File;

use nix::sched::{CloneFlags, setns};

/// `None`: namespaces exist on Linux.
pub(super) fn unsupported() -> Option<String> {
    None
}

/// Whether the effective user is root.
pub(super) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Moves the calling thread into the network namespace at `path`.
pub(super) fn enter(path: &str) -> Result<(), String> {
    let fd = File::open(path).map_err(|e| format!("cannot open {path}: {e}"))?;
    setns(&fd, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns into {path}: {e}"))
}
