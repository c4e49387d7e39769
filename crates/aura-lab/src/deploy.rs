//! Edits of a deployment written by `aura server-init` and `aura provision-client`: set
//! one key of one table in `server.toml` or `client.toml`, as text, so comments and the
//! rest of the file stay as written. The demo and the end-to-end tier use this to give
//! each daemon an admin socket in the run's own directory and a client one carrier.
//!
//! Values are TOML text: quote strings and paths with [`toml_string`] and [`toml_path`].
//!
//! ```
//! use aura_lab::deploy::{set_key, toml_string};
//! let text = "[client]\nserver = \"x\"\n\n[transport]\ncarriers = [\"udp\", \"quic\"]\n";
//! let carriers = format!("[{}]", toml_string("tls"));
//! let text = set_key(text, "[transport]", "carriers", &carriers).unwrap();
//! assert!(text.ends_with("[transport]\ncarriers = [\"tls\"]\n"));
//! ```

use std::fs;
use std::path::Path;

pub use aura_config::toml_string;

/// A path as a TOML basic string (lossy for a path that is not UTF-8).
pub fn toml_path(p: &Path) -> String {
    toml_string(&p.to_string_lossy())
}

/// `text` (a TOML file as aura writes it) with `key = value` as the first line of the
/// table `[table]` (`table` is the header line, brackets included), replacing that key
/// if the table had it. Other tables are left alone, even where they have the same key.
///
/// # Errors
/// When `text` has no such table.
pub fn set_key(text: &str, table: &str, key: &str, value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len() + key.len() + value.len() + 4);
    let mut current = "";
    let mut found = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            current = t;
        }
        let is_key = t
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if current == table && is_key {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if t == table {
            out.push_str(&format!("{key} = {value}\n"));
            found = true;
        }
    }
    if !found {
        return Err(format!("no {table} table in the written configuration"));
    }
    Ok(out)
}

/// [`set_key`] on the file at `path`, rewritten in place.
///
/// # Errors
/// When the file cannot be read or written (the error names it), or has no such table.
pub fn set_key_in(path: &Path, table: &str, key: &str, value: &str) -> Result<(), String> {
    let text = read(path)?;
    let text = set_key(&text, table, key, value).map_err(|e| format!("{}: {e}", path.display()))?;
    write(path, &text)
}

/// Points the `client.toml` at `path` at the admin socket `socket` and at `carrier`
/// (`udp`, `quic` or `tls`) only.
///
/// # Errors
/// As [`set_key_in`]: the file lacks a `[client]` or `[transport]` table, or cannot be
/// read or written.
pub fn set_client_carrier(path: &Path, socket: &Path, carrier: &str) -> Result<(), String> {
    let text = read(path)?;
    let text = set_key(&text, "[client]", "admin_socket", &toml_path(socket))
        .and_then(|t| {
            let carriers = format!("[{}]", toml_string(carrier));
            set_key(&t, "[transport]", "carriers", &carriers)
        })
        .map_err(|e| format!("{}: {e}", path.display()))?;
    write(path, &text)
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn set_key_inserts_or_replaces_in_the_right_table() {
        let t = "# c\n[client]\nserver = \"x\"\nadmin_socket = \"/old\"\n\n[transport]\ncarriers = [\"udp\", \"quic\", \"tls\"]\n";
        let t = set_key(t, "[client]", "admin_socket", "\"/new\"").unwrap();
        let t = set_key(&t, "[transport]", "carriers", "[\"tls\"]").unwrap();
        assert_eq!(
            t,
            "# c\n[client]\nadmin_socket = \"/new\"\nserver = \"x\"\n\n[transport]\ncarriers = [\"tls\"]\n"
        );
        assert!(set_key(&t, "[server]", "admin_socket", "\"/s\"").is_err());
    }

    #[test]
    fn toml_str_escapes() {
        assert_eq!(toml_path(Path::new("/tmp/a\"b\\c")), "\"/tmp/a\\\"b\\\\c\"");
    }

    #[test]
    fn toml_edits_insert_and_replace() {
        let t = "[server]\nname = \"x\"\nadmin_socket = \"/run/a.sock\"\n[transport]\n";
        let out = set_key(t, "[server]", "admin_socket", "\"/tmp/s.sock\"").unwrap();
        assert_eq!(
            out,
            "[server]\nadmin_socket = \"/tmp/s.sock\"\nname = \"x\"\n[transport]\n"
        );
    }

    #[test]
    fn a_key_with_a_longer_name_is_not_replaced() {
        let t = "[server]\nadmin_socket_mode = 1\n";
        let out = set_key(t, "[server]", "admin_socket", "\"/s\"").unwrap();
        assert_eq!(
            out,
            "[server]\nadmin_socket = \"/s\"\nadmin_socket_mode = 1\n"
        );
    }

    #[test]
    fn client_carrier_edits_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        fs::write(
            &path,
            "[client]\nserver = \"x\"\n\n[transport]\ncarriers = [\"udp\", \"quic\", \"tls\"]\n",
        )
        .unwrap();
        set_client_carrier(&path, Path::new("/run/a.sock"), "quic").unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "[client]\nadmin_socket = \"/run/a.sock\"\nserver = \"x\"\n\n[transport]\ncarriers = [\"quic\"]\n"
        );
        fs::write(&path, "[client]\n").unwrap();
        let err = set_client_carrier(&path, Path::new("/s"), "udp").unwrap_err();
        assert!(
            err.contains("[transport]") && err.contains("client.toml"),
            "{err}"
        );
        assert!(set_key_in(&dir.path().join("none.toml"), "[x]", "k", "1").is_err());
    }
}
