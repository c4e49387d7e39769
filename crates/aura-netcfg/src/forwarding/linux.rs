//! Linux: sysctls through `/proc/sys`. The file is opened by the calling thread, so
//! it belongs to that thread's network namespace.

use std::path::PathBuf;

use crate::error::NetcfgError;

fn path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

/// The current value, trimmed.
pub(crate) fn read(key: &'static str) -> Result<String, NetcfgError> {
    std::fs::read_to_string(path(key))
        .map(|s| s.trim().to_owned())
        .map_err(|source| NetcfgError::Sysctl { key, source })
}

/// Writes `value`.
pub(crate) fn write(key: &'static str, value: &str) -> Result<(), NetcfgError> {
    std::fs::write(path(key), format!("{value}\n"))
        .map_err(|source| NetcfgError::Sysctl { key, source })
}

/// Where the value a sysctl had before Aura changed it is kept until undo, so the next
/// start can restore it when a run was killed before it could undo: one file per network
/// namespace (named by the namespace's inode) and key, under `/run/aura/server` (a tmpfs,
/// emptied at boot like the sysctls themselves).
fn journal(key: &str) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let ns = std::fs::metadata("/proc/thread-self/ns/net").ok()?.ino();
    Some(crate::instance::role_dir(crate::Role::Server).join(format!("sysctl-netns{ns}-{key}")))
}

/// Remembers `previous` for `key` (best effort: without the journal only a crash loses
/// the value).
pub(crate) fn journal_record(key: &'static str, previous: &str) {
    let Some(path) = journal(key) else { return };
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, previous)
    };
    if let Err(e) = write() {
        tracing::warn!(path = %path.display(), error = %e, "cannot record the previous {key}");
    }
}

/// Forgets what was recorded for `key`.
pub(crate) fn journal_forget(key: &'static str) {
    if let Some(path) = journal(key) {
        let _ = std::fs::remove_file(path);
    }
}

/// The value recorded for `key` by a run that did not undo, if any.
pub(crate) fn journal_recorded(key: &'static str) -> Option<String> {
    let text = std::fs::read_to_string(journal(key)?).ok()?;
    let v = text.trim();
    (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())).then(|| v.to_owned())
}

/// The interfaces with `net.ipv6.conf.<if>.accept_ra = 1`: they stop accepting router
/// advertisements once IPv6 forwarding is on. Empty when it cannot be read.
pub(crate) fn accept_ra_interfaces() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/sys/net/ipv6/conf") else {
        return Vec::new();
    };
    let mut found: Vec<String> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if name == "all" || name == "default" || name == "lo" {
                return None;
            }
            let v = std::fs::read_to_string(e.path().join("accept_ra")).ok()?;
            (v.trim() == "1").then_some(name)
        })
        .collect();
    found.sort();
    found
}
