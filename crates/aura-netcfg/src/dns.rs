//! The system's resolvers while the tunnel is up, through `/etc/resolv.conf`: the file is
//! rewritten with the tunnel's resolvers (keeping its `search`, `domain` and `options`
//! lines) under a first line that marks it as Aura's, and put back exactly as it was
//! (content, or symlink, or absence) on undo.
//!
//! Crash safety: before the file is touched, what it was is journalled under
//! `/run/aura` (one file per network namespace), so the next start of a client
//! ([`crate::HostConfig::cleanup_leftovers`]) puts it back after a `SIGKILL`. A file that
//! no longer carries Aura's mark was rewritten by someone else meanwhile (a DHCP client,
//! NetworkManager, the user); it is left as it is, with a warning.
//!
//! Writing: to a temporary file renamed over the target; where the target is a mount
//! point (a container's bind-mounted `resolv.conf`, `ip netns exec`'s per-namespace
//! one) rename fails and the file is rewritten in place.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::error::NetcfgError;

/// The first line of a `resolv.conf` Aura wrote.
pub const MARKER: &str =
    "# aura: written while the tunnel is up; the previous file is restored when the client stops";

/// The default file.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// What the file was before Aura wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Previous {
    /// A regular file with these bytes.
    File(Vec<u8>),
    /// A symbolic link to this target.
    Symlink(PathBuf),
    /// No file.
    Absent,
}

/// The file Aura writes: the mark, one `nameserver` line per resolver, then the
/// `search`, `domain` and `options` lines of `old` (what the system resolved with
/// before).
pub(crate) fn render(old: &str, servers: &[IpAddr]) -> String {
    let mut out = String::from(MARKER);
    out.push('\n');
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    for line in old.lines() {
        let word = line.split_whitespace().next().unwrap_or("");
        if matches!(word, "search" | "domain" | "options") {
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

/// Whether `content` is a file Aura wrote.
pub(crate) fn is_ours(content: &[u8]) -> bool {
    content
        .split(|b| *b == b'\n')
        .next()
        .is_some_and(|first| first == MARKER.as_bytes())
}

fn io(action: String) -> impl FnOnce(std::io::Error) -> NetcfgError {
    move |source| NetcfgError::Io { action, source }
}

/// What `path` is now.
pub(crate) fn read_previous(path: &Path) -> Result<Previous, NetcfgError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Previous::Absent),
        Err(e) => Err(io(format!("reading {}", path.display()))(e)),
        Ok(m) if m.file_type().is_symlink() => std::fs::read_link(path)
            .map(Previous::Symlink)
            .map_err(io(format!("reading the link {}", path.display()))),
        Ok(_) => std::fs::read(path)
            .map(Previous::File)
            .map_err(io(format!("reading {}", path.display()))),
    }
}

/// The text the system resolves with now (through a symlink too; empty when absent or
/// unreadable).
pub(crate) fn current_text(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Whether the file at `path` (followed through links) is one Aura wrote.
pub(crate) fn file_is_ours(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
        && std::fs::read(path).is_ok_and(|b| is_ours(&b))
}

/// Writes `bytes` to `path` as a regular file (mode 0644), replacing a symlink.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), NetcfgError> {
    use std::os::unix::fs::OpenOptionsExt;
    let action = || format!("writing {}", path.display());
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.aura-{}", std::process::id()));
    let staged = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if staged.is_ok() && std::fs::rename(&tmp, path).is_ok() {
        return Ok(());
    }
    let _ = std::fs::remove_file(&tmp);
    // A mount point (bind-mounted file) cannot be renamed over: rewrite it in place.
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(path).map_err(io(action()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .map_err(io(action()))?;
    f.write_all(bytes).map_err(io(action()))?;
    f.sync_all().map_err(io(action()))
}

/// Puts `path` back as `previous`.
pub(crate) fn restore(path: &Path, previous: &Previous) -> Result<(), NetcfgError> {
    match previous {
        Previous::File(bytes) => write_file(path, bytes),
        Previous::Symlink(target) => {
            let action = || format!("restoring the link {}", path.display());
            let dir = path.parent().unwrap_or(Path::new("."));
            let tmp = dir.join(format!(".resolv-link.aura-{}", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            let renamed =
                std::os::unix::fs::symlink(target, &tmp).and_then(|()| std::fs::rename(&tmp, path));
            if renamed.is_err() {
                let _ = std::fs::remove_file(&tmp);
                std::fs::remove_file(path).map_err(io(action()))?;
                std::os::unix::fs::symlink(target, path).map_err(io(action()))?;
            }
            Ok(())
        }
        Previous::Absent => match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io(format!("removing {}", path.display()))(e))
            }
            _ => Ok(()),
        },
    }
}

/// Undoes Aura's file at `path`: restores `previous` when the file is still Aura's,
/// otherwise leaves it (someone rewrote it meanwhile). Returns whether it restored.
pub(crate) fn revert(path: &Path, previous: &Previous) -> Result<bool, NetcfgError> {
    if !file_is_ours(path) {
        tracing::warn!(
            path = %path.display(),
            "rewritten by someone else while the tunnel was up: left as it is"
        );
        return Ok(false);
    }
    restore(path, previous).map(|()| true)
}

// ---- the journal ----

/// The journal file of the calling thread's network namespace.
fn journal() -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let ns = std::fs::metadata("/proc/thread-self/ns/net").ok()?.ino();
    Some(crate::instance::role_dir(crate::Role::Client).join(format!("resolv-netns{ns}.json")))
}

fn encode(path: &Path, previous: &Previous) -> String {
    let previous = match previous {
        Previous::File(bytes) => serde_json::json!({ "file": bytes }),
        Previous::Symlink(target) => serde_json::json!({ "symlink": target.to_string_lossy() }),
        Previous::Absent => serde_json::json!("absent"),
    };
    serde_json::json!({ "path": path.to_string_lossy(), "previous": previous }).to_string()
}

fn decode(text: &str) -> Option<(PathBuf, Previous)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let path = PathBuf::from(v.get("path")?.as_str()?);
    let p = v.get("previous")?;
    let previous = if p.as_str() == Some("absent") {
        Previous::Absent
    } else if let Some(t) = p.get("symlink") {
        Previous::Symlink(PathBuf::from(t.as_str()?))
    } else {
        let bytes = p.get("file")?.as_array()?;
        Previous::File(
            bytes
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Option<Vec<u8>>>()?,
        )
    };
    Some((path, previous))
}

/// Remembers what `path` was, before it is changed. Failing to is an error: without
/// the journal a crash would lose the user's file.
pub(crate) fn journal_record(path: &Path, previous: &Previous) -> Result<(), NetcfgError> {
    let Some(file) = journal() else {
        return Err(NetcfgError::Io {
            action: "finding this network namespace (for the DNS journal)".into(),
            source: std::io::ErrorKind::NotFound.into(),
        });
    };
    let action = format!("recording {} in {}", path.display(), file.display());
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(io(action.clone()))?;
    }
    std::fs::write(&file, encode(path, previous)).map_err(io(action))
}

/// Forgets the journal.
pub(crate) fn journal_forget() {
    if let Some(file) = journal() {
        let _ = std::fs::remove_file(file);
    }
}

/// What a run that did not undo recorded, if anything.
pub(crate) fn journal_recorded() -> Option<(PathBuf, Previous)> {
    let text = std::fs::read_to_string(journal()?).ok()?;
    let found = decode(&text);
    if found.is_none() {
        tracing::warn!("the DNS journal under /run/aura/client is unreadable: ignored");
    }
    found
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn render_keeps_search_and_options_only() {
        let old = "# from dhcp\nnameserver 192.168.1.1\nsearch lan example.com\noptions edns0 \ndomain lan\n";
        let servers = ["10.77.0.1".parse().unwrap(), "fd00::53".parse().unwrap()];
        let text = render(old, &servers);
        assert_eq!(
            text,
            format!(
                "{MARKER}\nnameserver 10.77.0.1\nnameserver fd00::53\nsearch lan example.com\noptions edns0\ndomain lan\n"
            )
        );
        assert!(is_ours(text.as_bytes()));
        assert!(!is_ours(old.as_bytes()));
    }

    #[test]
    fn journal_text_round_trips_every_kind() {
        for previous in [
            Previous::File(b"nameserver 1.1.1.1\n\xff".to_vec()),
            Previous::Symlink("/run/systemd/resolve/stub-resolv.conf".into()),
            Previous::Absent,
        ] {
            let text = encode(Path::new("/etc/resolv.conf"), &previous);
            assert_eq!(
                decode(&text),
                Some((PathBuf::from("/etc/resolv.conf"), previous))
            );
        }
        assert_eq!(
            decode("{\"path\":\"/x\",\"previous\":{\"file\":[256]}}"),
            None
        );
        assert_eq!(decode("not json"), None);
    }

    #[test]
    fn files_links_and_absence_come_back() {
        let dir = std::env::temp_dir().join(format!("aura-dns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("resolv.conf");
        for previous in [
            Previous::File(b"nameserver 192.168.1.1\n".to_vec()),
            Previous::Symlink(dir.join("elsewhere")),
            Previous::Absent,
        ] {
            restore(&path, &previous).unwrap();
            assert_eq!(read_previous(&path).unwrap(), previous);
            write_file(
                &path,
                render("", &["10.77.0.1".parse().unwrap()]).as_bytes(),
            )
            .unwrap();
            assert!(file_is_ours(&path));
            assert!(revert(&path, &previous).unwrap());
            assert_eq!(read_previous(&path).unwrap(), previous);
        }
        // Rewritten by someone else: left alone.
        std::fs::write(&path, "nameserver 9.9.9.9\n").unwrap();
        assert!(!revert(&path, &Previous::Absent).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"nameserver 9.9.9.9\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
