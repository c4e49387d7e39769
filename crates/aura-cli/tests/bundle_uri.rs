//! Provisioning in one step, as a user meets it: `aura provision-client --uri/--qr` and
//! `aura client import` (docs/PROTOCOL.md §13): what they print, what they write and
//! with which modes, the QR code read back, and every bad input refused with nothing
//! written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `aura <args>` in `cwd`, with no code in the environment and no terminal on stdin.
fn aura_with(args: &[&str], cwd: &Path, code_env: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aura"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("AURA_PKI_DIR")
        .env_remove("AURA_IMPORT_CODE")
        .stdin(Stdio::null());
    if let Some(c) = code_env {
        cmd.env("AURA_IMPORT_CODE", c);
    }
    cmd.output().unwrap()
}

fn aura(args: &[&str], cwd: &Path) -> Output {
    aura_with(args, cwd, None)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> Output {
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    o
}

/// Exit status 1, and an error that says `what`.
fn refused(o: &Output, what: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    let t = text(o);
    assert!(t.starts_with("error: "), "{t}");
    assert!(t.contains(what), "expected {what:?} in: {t}");
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The one-time code from provision-client's stderr.
fn code_of(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    err.lines()
        .find_map(|l| l.strip_prefix("one-time code: "))
        .unwrap_or_else(|| panic!("no code in: {err}"))
        .trim()
        .to_owned()
}

/// A deployment in `d/dep` (knock key, an SNI palette) and client `id` provisioned with
/// `extra` flags: its bundle directory and the command's output.
fn provision(d: &Path, id: &str, extra: &[&str]) -> (PathBuf, Output) {
    if !d.join("dep/server.toml").exists() {
        ok(aura(
            &[
                "server-init",
                "--dir",
                "dep",
                "--name",
                "vpn.example.com",
                "--sni",
                "a.example.net",
            ],
            d,
        ));
    }
    let mut args = vec![
        "provision-client",
        "--dir",
        "dep",
        "--id",
        id,
        "--server",
        "203.0.113.7",
    ];
    args.extend_from_slice(extra);
    let o = ok(aura(&args, d));
    (d.join("dep/clients").join(id), o)
}

/// `text` without comment lines and blank lines.
fn compact(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Every file a bundle may hold, with the mode import gives it.
const FILES: [(&str, u32); 6] = [
    ("ca.crt", 0o644),
    ("crl.pem", 0o644),
    ("client.crt", 0o644),
    ("knock.key", 0o600),
    ("client.key", 0o600),
    ("client.toml", 0o600),
];

/// `imported` holds the bundle of `bundle`: every file byte for byte (client.toml without
/// its comments), with its mode, and nothing else; its client.toml validates.
fn assert_same_bundle(bundle: &Path, imported: &Path, toml_verbatim: bool) {
    for (name, m) in FILES {
        let want = std::fs::read(bundle.join(name)).unwrap();
        let got = std::fs::read(imported.join(name)).unwrap();
        if name == "client.toml" && !toml_verbatim {
            let want = compact(&String::from_utf8(want).unwrap());
            assert_eq!(String::from_utf8(got).unwrap(), want);
        } else {
            assert_eq!(got, want, "{name} differs");
        }
        assert_eq!(mode(&imported.join(name)), m, "mode of {name}");
    }
    assert_eq!(std::fs::read_dir(imported).unwrap().count(), FILES.len());
    let cfg = aura_config::load_client(imported.join("client.toml")).unwrap();
    assert_eq!(cfg.client.server, "203.0.113.7");
    assert_eq!(cfg.pki.key, imported.join("client.key"));
}

#[test]
fn provision_with_uri_then_import_writes_the_bundle_with_its_modes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (bundle, o) = provision(d, "alice", &["--uri"]);
    // stdout is the URI alone; the code is on stderr, and not in the URI.
    let uri = String::from_utf8(o.stdout.clone()).unwrap();
    assert_eq!(uri.lines().count(), 1, "{uri}");
    let uri = uri.trim().to_owned();
    assert!(uri.starts_with("aura://import/v1/"), "{uri}");
    let code = code_of(&o);
    assert_eq!(code.len(), 23, "{code}");
    assert!(!uri.contains(&code.replace('-', "")));
    let files_len: u64 = FILES
        .iter()
        .map(|(n, _)| std::fs::metadata(bundle.join(n)).unwrap().len())
        .sum();
    eprintln!(
        "a provisioned bundle: {files_len} bytes of files, URI of {} characters",
        uri.len()
    );
    assert!(uri.len() < 2400, "{}", uri.len());

    // Into a directory that does not exist yet, parents included: 0700.
    let o = ok(aura(
        &[
            "client",
            "import",
            &uri,
            "--code",
            &code,
            "--dir",
            "device/etc/alice",
        ],
        d,
    ));
    assert!(text(&o).contains("client alice imported"), "{}", text(&o));
    let imported = d.join("device/etc/alice");
    assert_same_bundle(&bundle, &imported, false);
    assert_eq!(mode(&imported), 0o700);

    // The code typed as a person might, from the environment, and the URI from a file.
    std::fs::write(d.join("alice.uri"), format!("{uri}\n")).unwrap();
    let typed = code.to_lowercase().replace('-', " ");
    ok(aura_with(
        &["client", "import", "alice.uri", "--dir", "second"],
        d,
        Some(&typed),
    ));
    assert_same_bundle(&bundle, &d.join("second"), false);

    // A bundle directory needs no code, and keeps client.toml as it is.
    let b = bundle.display().to_string();
    ok(aura(&["client", "import", &b, "--dir", "third"], d));
    assert_same_bundle(&bundle, &d.join("third"), true);

    // An existing key is never replaced without --force; nothing changes.
    let before = std::fs::read(imported.join("client.key")).unwrap();
    let (_, o) = provision(d, "alice2", &["--uri"]);
    let uri2 = String::from_utf8(o.stdout.clone()).unwrap();
    let code2 = code_of(&o);
    let o = aura(
        &[
            "client",
            "import",
            uri2.trim(),
            "--code",
            &code2,
            "--dir",
            "device/etc/alice",
        ],
        d,
    );
    refused(&o, "refusing to replace this device's key (use --force)");
    assert_eq!(std::fs::read(imported.join("client.key")).unwrap(), before);
    assert_same_bundle(&bundle, &imported, false);
    ok(aura(
        &[
            "client",
            "import",
            uri2.trim(),
            "--code",
            &code2,
            "--dir",
            "device/etc/alice",
            "--force",
        ],
        d,
    ));
    assert_same_bundle(&d.join("dep/clients/alice2"), &imported, false);
    assert_eq!(mode(&imported), 0o700);
}

/// The printed QR code, drawn at 3 pixels per module and decoded, is the URI; the code
/// is nowhere in it.
#[test]
fn the_qr_code_decodes_to_the_uri() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, o) = provision(d, "phone", &["--qr", "--uri"]);
    let out = String::from_utf8(o.stdout.clone()).unwrap();
    let mut lines: Vec<&str> = out.lines().collect();
    let uri = lines.pop().unwrap().to_owned();
    assert!(uri.starts_with("aura://import/v1/"), "{uri}");
    // Not a terminal: no escape sequences, dark modules as glyphs.
    assert!(!out.contains('\x1b'));
    let mut rows: Vec<Vec<bool>> = Vec::new();
    for line in &lines {
        let (mut top, mut bottom) = (Vec::new(), Vec::new());
        for c in line.chars() {
            let (t, b) = match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                ' ' => (false, false),
                other => panic!("unexpected {other:?} in the QR code"),
            };
            top.push(t);
            bottom.push(b);
        }
        rows.push(top);
        rows.push(bottom);
    }
    let side = rows[0].len();
    assert!(rows.iter().all(|r| r.len() == side));
    // A quiet zone of 4 modules: the first and last rows and columns are light.
    for k in 0..4 {
        assert!(!rows[k].iter().any(|m| *m) && !rows[side - 1 - k].iter().any(|m| *m));
        assert!(rows.iter().all(|r| !r[k] && !r[side - 1 - k]));
    }
    let scale = 3;
    let mut img =
        rqrr::PreparedImage::prepare_from_greyscale(side * scale, side * scale, |x, y| {
            if rows[y / scale][x / scale] { 0 } else { 255 }
        });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1);
    let (meta, content) = grids[0].decode().unwrap();
    assert_eq!(content, uri);
    let code = code_of(&o);
    assert!(!content.contains(&code.replace('-', "")));
    let err = String::from_utf8_lossy(&o.stderr);
    let version = (side - 8 - 17) / 4;
    eprintln!("QR code: version {version}, {side} columns; {err}");
    assert_eq!(meta.version.0, version);
    assert!(
        err.contains(&format!("QR code: version {version}")),
        "{err}"
    );
    assert!(version <= 40);
    // The URI opens with the code.
    ok(aura(
        &["client", "import", &uri, "--code", &code, "--dir", "phone"],
        d,
    ));
}

#[test]
fn bad_uris_and_codes_are_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (bundle, o) = provision(d, "bob", &["--uri"]);
    let uri = String::from_utf8(o.stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    let code = code_of(&o);
    let prefix = "aura://import/v1/";
    let data = &uri[prefix.len()..];
    // One character of the data changed, near the end (inside the ciphertext).
    let mut tampered = uri.clone().into_bytes();
    let at = tampered.len() - 20;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let other_code = match code.strip_prefix('0') {
        Some(rest) => format!("1{rest}"),
        None => format!("0{}", &code[1..]),
    };
    std::fs::write(d.join("notes.txt"), "not a bundle\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![uri[..uri.len() / 2].into()], "truncated"),
        (vec![uri[..uri.len() - 3].into()], "truncated"),
        (vec![tampered], "altered or damaged"),
        (vec![uri.clone(), "--code".into(), other_code], "wrong code"),
        (
            vec![uri.clone(), "--code".into(), "12345".into()],
            "malformed one-time code",
        ),
        (
            vec![format!("aura://import/v2/{data}")],
            "unknown bundle version v2",
        ),
        (vec![format!("aura://export/v1/{data}")], "not a bundle URI"),
        (vec![format!("{uri}0")], "which base32 does not use"),
        (vec!["notes.txt".into()], "holds no aura://import/ URI"),
        (
            vec!["missing.uri".into()],
            "neither an aura://import/ URI nor a file",
        ),
        // No --code, no AURA_IMPORT_CODE, no terminal.
        (vec![uri.clone()], "no one-time code"),
    ];
    for (args, what) in cases {
        let mut full = vec!["client", "import", "--dir", "out/client"];
        full.extend(args.iter().map(String::as_str));
        if !args.iter().any(|a| a == "--code") && args[0] != uri {
            full.extend(["--code", &code]);
        }
        let o = aura(&full, d);
        refused(&o, what);
        assert!(!d.join("out").exists(), "{what}: something was written");
    }

    // A bundle whose client.toml parses but does not validate: written in a staging
    // directory, checked, and all of it removed, the parents it made included.
    let bad = d.join("bad");
    std::fs::create_dir(&bad).unwrap();
    for (name, _) in FILES {
        std::fs::copy(bundle.join(name), bad.join(name)).unwrap();
    }
    let mut toml = std::fs::read_to_string(bad.join("client.toml")).unwrap();
    toml.push_str("\n[tunnel]\nmtu = 100\n");
    std::fs::write(bad.join("client.toml"), toml).unwrap();
    let o = aura(&["client", "import", "bad", "--dir", "out/client"], d);
    refused(&o, "tunnel.mtu");
    assert!(!d.join("out").exists());
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Into an existing client with --force: every file is put back as it was.
    ok(aura(
        &["client", "import", &uri, "--code", &code, "--dir", "live"],
        d,
    ));
    let before: Vec<Vec<u8>> = FILES
        .iter()
        .map(|(n, _)| std::fs::read(d.join("live").join(n)).unwrap())
        .collect();
    let o = aura(&["client", "import", "bad", "--dir", "live", "--force"], d);
    refused(&o, "tunnel.mtu");
    for ((name, m), b) in FILES.iter().zip(&before) {
        assert_eq!(
            &std::fs::read(d.join("live").join(name)).unwrap(),
            b,
            "{name}"
        );
        assert_eq!(mode(&d.join("live").join(name)), *m, "{name}");
    }
    // And a configured client is not replaced without --force, even by a bundle
    // without a key.
    let o = aura(&["client", "import", "bad", "--dir", "live"], d);
    refused(&o, "already exists");
}

/// A deployment with a long CRL: the URI outgrows one QR code; `--qr` says so and
/// provisions nothing (the certificate is revoked again, the directory removed), while
/// `--uri` still works.
#[test]
fn a_uri_too_long_for_a_qr_code_is_refused_and_undone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(aura(
        &["server-init", "--dir", "dep", "--name", "vpn.example.com"],
        d,
    ));
    for i in 0..110 {
        let id = format!("old{i}");
        ok(aura(
            &[
                "pki",
                "--dir",
                "dep/pki",
                "issue-client",
                "--id",
                &id,
                "--out",
                "old",
            ],
            d,
        ));
        ok(aura(&["pki", "--dir", "dep/pki", "revoke", &id], d));
    }
    let o = aura(
        &["provision-client", "--dir", "dep", "--id", "carol", "--qr"],
        d,
    );
    refused(&o, "too long for one QR code");
    assert!(text(&o).contains("--uri"), "{}", text(&o));
    assert!(o.stdout.is_empty());
    assert!(!d.join("dep/clients/carol").exists());
    let list = String::from_utf8(ok(aura(&["pki", "--dir", "dep/pki", "list"], d)).stdout).unwrap();
    let carol = list.lines().find(|l| l.starts_with("carol ")).unwrap();
    assert!(carol.contains("cessation-of-operation"), "{carol}");
    let (_, o) = provision(d, "carol", &["--uri"]);
    let uri = String::from_utf8(o.stdout.clone()).unwrap();
    eprintln!(
        "with 110 revocations: a URI of {} characters",
        uri.trim().len()
    );
    assert!(uri.trim().len() > 4300);
}

/// A bundle for the device's own key (`client keygen`, `provision-client --csr`) carries
/// no key: it imports beside that key, and nowhere else.
#[test]
fn a_bundle_for_the_devices_own_key_imports_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(aura(
        &["server-init", "--dir", "dep", "--name", "vpn.example.com"],
        d,
    ));
    ok(aura(
        &["client", "keygen", "--dir", "phone", "--id", "phone"],
        d,
    ));
    ok(aura(
        &["client", "keygen", "--dir", "other", "--id", "other"],
        d,
    ));
    let key = std::fs::read(d.join("phone/client.key")).unwrap();
    let o = ok(aura(
        &[
            "provision-client",
            "--dir",
            "dep",
            "--csr",
            "phone/client.csr",
            "--server",
            "203.0.113.7",
            "--uri",
        ],
        d,
    ));
    let uri = String::from_utf8(o.stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    let code = code_of(&o);
    let import = |to: &str| aura(&["client", "import", &uri, "--code", &code, "--dir", to], d);
    refused(&import("empty"), "has no client.key");
    assert!(!d.join("empty").exists());
    refused(&import("other"), "issued for another key");
    assert!(!d.join("other/client.crt").exists());
    ok(import("phone"));
    assert_eq!(std::fs::read(d.join("phone/client.key")).unwrap(), key);
    let cfg = aura_config::load_client(d.join("phone/client.toml")).unwrap();
    assert_eq!(cfg.pki.key, d.join("phone/client.key"));
    assert_eq!(mode(&d.join("phone/client.crt")), 0o644);
}

#[test]
fn help_for_import_and_the_new_flags() {
    let dir = tempfile::tempdir().unwrap();
    let o = ok(aura(&["client", "import", "--help"], dir.path()));
    let t = text(&o);
    assert!(t.contains("Usage:") && t.contains("--code") && t.contains("/etc/aura/client"));
    let o = ok(aura(&["provision-client", "--help"], dir.path()));
    let t = text(&o);
    assert!(t.contains("--uri") && t.contains("--qr"), "{t}");
    // A code from the environment is never shown in help.
    let o = ok(aura_with(
        &["client", "import", "--help"],
        dir.path(),
        Some("SECRET-CODE"),
    ));
    assert!(!text(&o).contains("SECRET"), "{}", text(&o));
}

/// `import --run-as`: a user that does not exist writes nothing; an existing one gets
/// `run_as` in client.toml and (as root) read access through its group, root keeping the
/// files.
#[test]
fn import_run_as_shares_the_bundle_with_the_users_group() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, o) = provision(d, "alice", &["--uri"]);
    let uri = String::from_utf8(o.stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    let code = code_of(&o);
    let import = |target: &str, user: &str| {
        aura_with(
            &["client", "import", &uri, "--dir", target, "--run-as", user],
            d,
            Some(&code),
        )
    };
    refused(
        &import("none", "aura-no-such-user"),
        "no user \"aura-no-such-user\"",
    );
    assert!(!d.join("none").exists());

    let o = import("alice", "nobody");
    if !nix::unistd::geteuid().is_root() {
        // Giving files to another group needs root: refused, and nothing left.
        refused(&o, "group of nobody");
        assert!(!d.join("alice").exists());
        return;
    }
    ok(o);
    let cfg = aura_config::load_client(d.join("alice/client.toml")).unwrap();
    assert_eq!(cfg.client.run_as.as_deref(), Some("nobody"));
    let group = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    let meta = |rel: &str| std::fs::metadata(d.join("alice").join(rel)).unwrap();
    assert_eq!(meta("").gid(), group);
    assert_eq!(mode(&d.join("alice")), 0o750);
    for (f, want) in [
        ("client.key", 0o640),
        ("knock.key", 0o640),
        ("client.toml", 0o640),
        ("client.crt", 0o644),
        ("ca.crt", 0o644),
    ] {
        let m = meta(f);
        assert_eq!((m.uid(), m.gid()), (0, group), "{f}");
        assert_eq!(mode(&d.join("alice").join(f)), want, "{f}");
    }
}
