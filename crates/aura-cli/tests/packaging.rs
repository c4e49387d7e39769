//! The packaging: shell completions and man pages for every command, the systemd units,
//! and the Debian package built from the binary these tests run.
//!
//! The command tree is read from the binary itself (`--help` of each command, the way
//! a user finds commands), so a command added later must get its man page and its
//! completions without anyone listing it here.
//!
//! The unit tests need `systemd-analyze` (Debian package `systemd`); the package test
//! needs cargo-deb (`cargo install cargo-deb --locked`), `dpkg-deb` and `dpkg-shlibdeps`
//! (Debian package `dpkg-dev`). Without them a test prints why and passes without
//! checking, as the root-only tiers do. The package is built by `dist/build-deb.sh`
//! from the debug binary cargo already built for these tests, with fast compression:
//! no second build, a few seconds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const AURA: &str = env!("CARGO_BIN_EXE_aura");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const UNITS: [&str; 2] = ["aura-server.service", "aura-client@.service"];
/// The exposure `systemd-analyze security` gives each unit (docs/OPERATIONS.md): a
/// change that loosens the sandbox beyond it fails here.
const MAX_EXPOSURE: f64 = 2.7;

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).unwrap()
}

/// The names `--help` lists under "Commands:", without `help`.
fn listed_subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim_end() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command the binary offers, as its path from the top (`[]` is `aura` itself,
/// `["pki", "init"]` is `aura pki init`), found by walking `--help`.
fn command_tree() -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let help = stdout(Command::new(AURA).args(&path).arg("--help"));
        for name in listed_subcommands(&help) {
            let mut sub = path.clone();
            sub.push(name);
            todo.push(sub);
        }
        found.push(path);
    }
    found.sort();
    assert!(
        found.len() > 20,
        "the walk found too few commands: {found:?}"
    );
    found
}

/// The man page name of a command path: `aura-pki-init`.
fn page_name(path: &[String]) -> String {
    std::iter::once("aura")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("-")
}

/// Why this test cannot run here, if a program it needs is missing: each `(program,
/// where it comes from)` must answer `--version`.
fn missing(programs: &[(&str, &str)]) -> Option<String> {
    programs.iter().find_map(|(program, from)| {
        let mut words = program.split_whitespace();
        let found = Command::new(words.next().unwrap())
            .args(words)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        (!found).then(|| format!("`{program}` is not installed ({from})"))
    })
}

#[test]
fn completions_name_every_command() {
    let tree = command_tree();
    let dir = tempfile::tempdir().unwrap();
    let listed = stdout(
        Command::new(AURA)
            .args(["generate", "completions"])
            .args([
                "--shell", "bash", "--shell", "zsh", "--shell", "fish", "--out",
            ])
            .arg(dir.path()),
    );
    let files: Vec<PathBuf> = ["aura.bash", "_aura", "aura.fish"]
        .iter()
        .map(|f| dir.path().join(f))
        .collect();
    assert_eq!(
        listed.lines().map(PathBuf::from).collect::<Vec<_>>(),
        files,
        "the files written, as printed"
    );
    for file in &files {
        let script = std::fs::read_to_string(file).unwrap();
        assert!(script.len() > 1000, "{} is too short", file.display());
        for path in tree.iter().filter(|p| !p.is_empty()) {
            let name = path.last().unwrap();
            assert!(
                script
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .any(|word| word == name),
                "{} does not offer `aura {}`",
                file.display(),
                path.join(" ")
            );
        }
    }
    // Options too, not only command names.
    let fish = std::fs::read_to_string(dir.path().join("aura.fish")).unwrap();
    assert!(fish.contains("__fish_aura_using_subcommand server-init\" -l dir"));
}

#[test]
fn a_man_page_for_every_command() {
    let tree = command_tree();
    let dir = tempfile::tempdir().unwrap();
    let listed = stdout(
        Command::new(AURA)
            .args(["generate", "man", "--out"])
            .arg(dir.path()),
    );
    let expected: BTreeSet<String> = tree.iter().map(|p| page_name(p) + ".1").collect();
    let written: BTreeSet<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    // Exactly one page per command: none missing, none for `help` or hidden commands.
    assert_eq!(written, expected);
    assert_eq!(listed.lines().count(), expected.len(), "{listed}");
    for path in &tree {
        let name = page_name(path);
        let page = std::fs::read_to_string(dir.path().join(format!("{name}.1"))).unwrap();
        let title = page
            .lines()
            .find(|l| l.starts_with(".TH "))
            .unwrap_or_else(|| panic!("{name}.1 has no .TH line"));
        assert!(
            title.starts_with(&format!(".TH {name} 1 ")) && title.contains("aura "),
            "{name}.1: {title}"
        );
        for section in [".SH NAME", ".SH SYNOPSIS"] {
            assert!(page.contains(section), "{name}.1 has no {section}");
        }
        // The NAME line is the command (roff escapes its dashes) and its summary.
        assert!(
            page.contains(&format!("{} \\- ", name.replace('-', "\\-"))),
            "{name}.1: no NAME line"
        );
    }
    let top = std::fs::read_to_string(dir.path().join("aura.1")).unwrap();
    for sub in tree.iter().filter(|p| p.len() == 1) {
        let reference = format!("{}(1)", page_name(sub)).replace('-', "\\-");
        assert!(
            top.contains(&reference),
            "aura.1 does not point to {reference}"
        );
    }
}

/// The units as shipped, with ExecStart pointing at the binary under test:
/// `systemd-analyze verify` wants every command to exist.
fn units_for_verify(dir: &Path) -> Vec<PathBuf> {
    UNITS
        .iter()
        .map(|unit| {
            let text =
                std::fs::read_to_string(Path::new(ROOT).join("dist/systemd").join(unit)).unwrap();
            assert!(text.contains("ExecStart=/usr/bin/aura "), "{unit}");
            let path = dir.join(unit);
            std::fs::write(&path, text.replace("/usr/bin/aura ", &format!("{AURA} "))).unwrap();
            path
        })
        .collect()
}

#[test]
fn the_units_verify() {
    if let Some(why) = missing(&[("systemd-analyze", "Debian package systemd")]) {
        eprintln!("skipping the_units_verify: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let units = units_for_verify(dir.path());
    // `--man=no`: the man pages are checked above; a test host need not have man-db.
    let out = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units));
    // Warnings (an unknown or misspelt key, a bad value) leave the exit status 0.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.trim().is_empty(), "systemd-analyze verify:\n{said}");
}

#[test]
fn the_units_are_hardened_as_documented() {
    if let Some(why) = missing(&[("systemd-analyze", "Debian package systemd")]) {
        eprintln!("skipping the_units_are_hardened_as_documented: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for unit in units_for_verify(dir.path()) {
        let report = stdout(
            Command::new("systemd-analyze")
                .args(["security", "--offline=true", "--no-pager"])
                .arg(&unit),
        );
        let exposure: f64 = report
            .lines()
            .find_map(|l| {
                l.split_once("Overall exposure level for ")?
                    .1
                    .split_once(": ")
            })
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
        eprintln!("{}: exposure {exposure}", unit.display());
        assert!(
            exposure <= MAX_EXPOSURE,
            "{}: exposure {exposure} > {MAX_EXPOSURE}:\n{report}",
            unit.display()
        );
    }
    let operations = std::fs::read_to_string(Path::new(ROOT).join("docs/OPERATIONS.md")).unwrap();
    assert!(
        operations.contains(&format!("**{MAX_EXPOSURE} OK**")),
        "docs/OPERATIONS.md does not give the exposure {MAX_EXPOSURE}"
    );
    // What the daemons rely on, whatever the score.
    for unit in UNITS {
        let text =
            std::fs::read_to_string(Path::new(ROOT).join("dist/systemd").join(unit)).unwrap();
        // Each role its own runtime directory, so one unit's start never resets the
        // other's (the daemon hands it to its `run_as` user).
        let role = if unit.starts_with("aura-server") {
            "server"
        } else {
            "client"
        };
        let runtime = format!("RuntimeDirectory=aura/{role}");
        assert!(text.lines().any(|l| l == runtime), "{unit} lacks {runtime}");
        for line in [
            "Type=notify",
            "NotifyAccess=main",
            "WatchdogSec=30s",
            "Restart=on-failure",
            "RuntimeDirectoryPreserve=yes",
            "DeviceAllow=/dev/net/tun rw",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
            "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID \
             CAP_SETPCAP CAP_CHOWN",
        ] {
            assert!(text.lines().any(|l| l == line), "{unit} lacks {line}");
        }
    }
    // SIGHUP reloads the server; the client has no reload (SIGHUP stops it).
    let server =
        std::fs::read_to_string(Path::new(ROOT).join("dist/systemd/aura-server.service")).unwrap();
    assert!(
        server
            .lines()
            .any(|l| l == "ExecReload=/bin/kill -HUP $MAINPID")
    );
}

/// Paths and modes in a `dpkg-deb -c` listing: `./usr/bin/aura` → `-rwxr-xr-x`.
fn listing(deb: &Path) -> Vec<(String, String)> {
    stdout(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (
                fields[5].trim_start_matches('.').to_owned(),
                fields[0].to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_deb_holds_the_binary_units_docs_completions_and_man_pages() {
    let test = "the_deb_holds_the_binary_units_docs_completions_and_man_pages";
    if let Some(why) = missing(&[
        ("cargo deb", "cargo install cargo-deb --locked"),
        ("dpkg-deb", "Debian package dpkg"),
        ("dpkg-shlibdeps", "Debian package dpkg-dev"),
    ]) {
        eprintln!("skipping {test}: {why}");
        return;
    }
    let tree = command_tree();
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = stdout(
        Command::new(Path::new(ROOT).join("dist/build-deb.sh"))
            .args(["--fast", "--binary", AURA, "--work"])
            .arg(dir.path().join("work"))
            .arg("--out")
            .arg(dir.path().join("out")),
    );
    let deb = PathBuf::from(out.lines().last().unwrap_or_default());
    eprintln!(
        "{test}: {} ({} bytes) in {:?}",
        deb.display(),
        std::fs::metadata(&deb).map(|m| m.len()).unwrap_or(0),
        started.elapsed()
    );
    assert!(deb.starts_with(dir.path().join("out")), "{out}");

    // The control fields.
    let field = |name: &str| stdout(Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg(name));
    assert_eq!(field("Package").trim(), "aura");
    assert_eq!(
        field("Version").trim(),
        format!("{}-1", env!("CARGO_PKG_VERSION"))
    );
    let depends: Vec<String> = field("Depends")
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or_default().to_owned())
        .collect();
    for needed in ["libc6", "nftables", "adduser"] {
        assert!(depends.iter().any(|d| d == needed), "Depends: {depends:?}");
    }
    assert_eq!(field("Recommends").trim(), "iproute2");

    // The files.
    let files = listing(&deb);
    let mode_of = |path: &str| {
        files
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| panic!("{path} is not in the package: {files:#?}"))
    };
    assert_eq!(mode_of("/usr/bin/aura"), "-rwxr-xr-x");
    let mut expected = vec![
        "/usr/lib/systemd/system/aura-server.service".to_owned(),
        "/usr/lib/systemd/system/aura-client@.service".to_owned(),
        "/usr/share/doc/aura/examples/server.toml.example".to_owned(),
        "/usr/share/doc/aura/examples/client.toml.example".to_owned(),
        "/usr/share/doc/aura/OPERATIONS.md".to_owned(),
        "/usr/share/doc/aura/copyright".to_owned(),
        "/usr/share/bash-completion/completions/aura".to_owned(),
        "/usr/share/zsh/vendor-completions/_aura".to_owned(),
        "/usr/share/fish/vendor_completions.d/aura.fish".to_owned(),
    ];
    expected.extend(
        tree.iter()
            .map(|p| format!("/usr/share/man/man1/{}.1.gz", page_name(p))),
    );
    for path in &expected {
        assert_eq!(mode_of(path), "-rw-r--r--", "{path}");
    }
    let man_pages = files
        .iter()
        .filter(|(p, _)| p.starts_with("/usr/share/man/man1/") && p.ends_with(".gz"))
        .count();
    assert_eq!(man_pages, tree.len(), "one man page per command");

    // The maintainer scripts: valid sh, the system user made, no unit enabled or started
    // (a server needs `aura server-init` first).
    let control = dir.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system"), "{postinst}");
    assert!(postinst.contains("install -d -m 0750 -o root -g aura /etc/aura"));
    for script in ["postinst", "prerm", "postrm"] {
        let text = std::fs::read_to_string(control.join(script)).unwrap();
        assert!(!text.contains("#DEBHELPER#"), "{script}");
        assert!(
            !text.contains("invoke start"),
            "{script} starts a unit:\n{text}"
        );
        // cargo-deb's "enable = false": a unit is enabled again on upgrade only if the
        // administrator had enabled it (`debian-installed`), never on a first install.
        if text.contains("deb-systemd-helper enable") {
            assert!(
                text.contains("deb-systemd-helper debian-installed"),
                "{script} enables a unit on a first install:\n{text}"
            );
        }
        run(Command::new("sh").arg("-n").arg(control.join(script)));
    }

    // Unpacked: the binary runs, the units are the ones in dist/systemd, the man pages
    // and completions are those the binary generates.
    let root = dir.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let version = stdout(Command::new(root.join("usr/bin/aura")).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("aura {}", env!("CARGO_PKG_VERSION"))
    );
    for unit in UNITS {
        assert_eq!(
            std::fs::read(root.join("usr/lib/systemd/system").join(unit)).unwrap(),
            std::fs::read(Path::new(ROOT).join("dist/systemd").join(unit)).unwrap(),
            "{unit}"
        );
    }
    let page = stdout(
        Command::new("gzip")
            .args(["-dc"])
            .arg(root.join("usr/share/man/man1/aura-server.1.gz")),
    );
    assert!(page.contains(".TH aura-server 1 "), "{page}");
    let bash =
        std::fs::read_to_string(root.join("usr/share/bash-completion/completions/aura")).unwrap();
    assert!(
        bash.contains("complete -F _aura"),
        "bash completion without `complete`"
    );
}
