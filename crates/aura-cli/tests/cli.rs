//! The `aura` binary as a user meets it: help, version, exit codes, error messages, and
//! the PKI workflow end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn aura(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aura"))
        .args(args)
        .current_dir(cwd)
        .env_remove("AURA_PKI_DIR")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_and_version_on_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let v = aura(&["--version"], dir.path());
    assert_eq!(v.status.code(), Some(0));
    assert!(text(&v).starts_with("aura "));
    for cmd in [
        &["--help"][..],
        &["pki", "--help"],
        &["pki", "init", "--help"],
        &["pki", "issue-server", "--help"],
        &["pki", "issue-client", "--help"],
        &["pki", "revoke", "--help"],
        &["pki", "list", "--help"],
        &["pki", "crl", "--help"],
        &["pki", "sign", "--help"],
        &["client", "keygen", "--help"],
        &["route", "--help"],
        &["route", "add", "--help"],
        &["route", "list", "--help"],
        &["route", "remove", "--help"],
        &["bench-crypto", "--help"],
        &["server-init", "--help"],
        &["provision-client", "--help"],
    ] {
        let o = aura(cmd, dir.path());
        assert_eq!(o.status.code(), Some(0), "{cmd:?}");
        assert!(text(&o).contains("Usage:"), "{cmd:?}");
    }
}

#[test]
fn usage_errors_exit_2_runtime_errors_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        &["no-such-command"][..],
        &["pki", "issue-server"],
        &["pki", "revoke", "x", "--reason", "bogus"],
        &["pki", "issue-client", "--days", "0"],
        &["bench-crypto", "--seconds", "-1"],
    ] {
        let o = aura(bad, dir.path());
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", text(&o));
    }
    let o = aura(&["pki", "--dir", "missing", "issue-client"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(t.starts_with("error: "), "{t}");
    assert!(t.contains("no CA in missing"), "{t}");
    // Nothing was created by the failed command.
    assert!(!dir.path().join("missing").exists());
}

#[test]
fn pki_workflow_and_cause_chains() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = |args: &[&str]| {
        let o = aura(args, d);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
        text(&o)
    };
    ok(&["pki", "--dir", "p", "init", "--name", "Test CA"]);
    let again = aura(&["pki", "--dir", "p", "init"], d);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("--force"), "{}", text(&again));

    ok(&[
        "pki",
        "--dir",
        "p",
        "issue-server",
        "--name",
        "vpn.example.com",
        "--san",
        "192.0.2.1",
    ]);
    let anon = ok(&["pki", "--dir", "p", "issue-client"]);
    // The default id is a UUIDv4: 8-4-4-4-12 hex with version nibble 4.
    let id = anon.split_whitespace().nth(3).unwrap().to_owned();
    let parts: Vec<&str> = id.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12],
        "{id}"
    );
    assert!(parts[2].starts_with('4'), "{id}");
    ok(&["pki", "--dir", "p", "issue-client", "--id", "alice"]);

    let dup = aura(&["pki", "--dir", "p", "issue-client", "--id", "alice"], d);
    assert_eq!(dup.status.code(), Some(1));
    assert!(text(&dup).contains("alice"), "{}", text(&dup));

    ok(&[
        "pki",
        "--dir",
        "p",
        "revoke",
        "alice",
        "--reason",
        "key-compromise",
    ]);
    let unknown = aura(&["pki", "--dir", "p", "revoke", "bob"], d);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown).contains("bob"));

    let json = ok(&["pki", "--dir", "p", "list", "--json"]);
    let entries: serde_json::Value = serde_json::from_str(&json).unwrap();
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let alice = entries.iter().find(|e| e["id"] == "alice").unwrap();
    assert_eq!(alice["role"], "client");
    assert_eq!(alice["revoked"]["reason"], "key-compromise");
    let server = entries
        .iter()
        .find(|e| e["id"] == "vpn.example.com")
        .unwrap();
    assert_eq!(server["role"], "server");
    assert!(server["revoked"].is_null());
    assert!(entries.iter().any(|e| e["id"] == id.as_str()));

    let table = ok(&["pki", "--dir", "p", "list"]);
    assert!(table.contains("key-compromise") && table.contains("vpn.example.com"));

    let crl = ok(&["pki", "--dir", "p", "crl"]);
    assert!(crl.contains("CRL number 3"), "{crl}");

    // A corrupt CA certificate is reported with its file name.
    std::fs::write(d.join("p/ca.crt"), "not a certificate").unwrap();
    let bad = aura(&["pki", "--dir", "p", "issue-client"], d);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).contains("ca.crt"), "{}", text(&bad));
}

#[test]
fn server_init_and_provision_client_write_valid_deployments() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| aura(args, d);
    let o = run(&[
        "server-init",
        "--dir",
        "dep",
        "--name",
        "vpn.example.com",
        "--listen",
        "192.0.2.1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The written configuration validates, and names the server's certificate.
    let server = aura_config::load_server(d.join("dep/server.toml")).unwrap();
    assert_eq!(server.server.name, "vpn.example.com");
    assert!(d.join("dep/pki/servers/vpn.example.com.key").exists());

    // Refuses to overwrite without --force, and leaves the deployment as it was.
    let before = std::fs::read(d.join("dep/pki/ca.crt")).unwrap();
    let o = run(&["server-init", "--dir", "dep", "--name", "vpn.example.com"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("--force"), "{}", text(&o));
    assert_eq!(std::fs::read(d.join("dep/pki/ca.crt")).unwrap(), before);

    let o = run(&[
        "provision-client",
        "--dir",
        "dep",
        "--id",
        "alice",
        "--server",
        "192.0.2.1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let bundle = d.join("dep/clients/alice");
    for f in [
        "ca.crt",
        "crl.pem",
        "client.crt",
        "client.key",
        "client.toml",
    ] {
        assert!(bundle.join(f).exists(), "{f} missing");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(bundle.join("client.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let client = aura_config::load_client(bundle.join("client.toml")).unwrap();
    assert_eq!(client.client.server, "192.0.2.1");
    // The bundle's certificate chains to the deployment's CA and carries the id.
    let pem = std::fs::read_to_string(bundle.join("client.crt")).unwrap();
    let der = aura_pki::cert_der_from_pem(&pem).unwrap();
    let store = aura_pki::PkiStore::new(d.join("dep/pki"));
    let verifier = store.verifier().unwrap();
    let now = rustls_pki_types::UnixTime::now();
    assert_eq!(verifier.verify_client(&der, now).unwrap().id, "alice");

    let o = run(&["provision-client", "--dir", "dep", "--id", "alice"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("already exists"), "{}", text(&o));
    let o = run(&["provision-client", "--dir", "nowhere"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("server-init"), "{}", text(&o));
    // Without --id: a UUIDv4 bundle.
    let o = run(&["provision-client", "--dir", "dep"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(std::fs::read_dir(d.join("dep/clients")).unwrap().count(), 2);
}

#[test]
fn cover_traffic_travels_from_server_init_to_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| aura(args, d);
    let o = run(&[
        "server-init",
        "--dir",
        "dep",
        "--name",
        "vpn.example.com",
        "--enable-cover-traffic",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let server = aura_config::load_server(d.join("dep/server.toml")).unwrap();
    assert!(server.server.cover.enabled);
    assert_eq!(server.server.cover.max_budget_percent, 50);
    let client = |id: &str, extra: &[&str]| {
        let mut args = vec!["provision-client", "--dir", "dep", "--id", id];
        args.extend_from_slice(extra);
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let path = d.join(format!("dep/clients/{id}/client.toml"));
        aura_config::load_client(path).unwrap().transport.cover
    };
    assert_eq!(client("alice", &[]), aura_config::CoverMode::Https);
    assert_eq!(
        client("bob", &["--cover", "idle"]),
        aura_config::CoverMode::Idle
    );
    assert_eq!(
        client("carol", &["--cover", "off"]),
        aura_config::CoverMode::Off
    );
    let o = run(&["provision-client", "--dir", "dep", "--cover", "loud"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("loud"), "{}", text(&o));
    // Without the flag, nothing is granted and bundles ask for nothing.
    let o = run(&["server-init", "--dir", "plain", "--name", "vpn.example.com"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&["provision-client", "--dir", "plain", "--id", "dave"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let c = aura_config::load_client(d.join("plain/clients/dave/client.toml")).unwrap();
    assert_eq!(c.transport.cover, aura_config::CoverMode::Off);
    let s = aura_config::load_server(d.join("plain/server.toml")).unwrap();
    assert!(!s.server.cover.enabled);
}

#[test]
fn knock_keys_palettes_decoys_and_masks_travel_from_server_init_to_bundles() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| aura(args, d);
    let o = run(&[
        "server-init",
        "--dir",
        "dep",
        "--name",
        "vpn.example.com",
        "--sni",
        "a.example.net",
        "--sni",
        "b.example.net",
        "--decoy-upstream",
        "www.example.org:443",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let server = aura_config::load_server(d.join("dep/server.toml")).unwrap();
    assert!(server.transport.knock);
    assert_eq!(server.pki.knock_key, Some(d.join("dep/pki/knock.key")));
    assert_eq!(
        server.server.decoy.upstream.as_deref(),
        Some("www.example.org:443")
    );
    let o = run(&["provision-client", "--dir", "dep", "--id", "alice"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let bundle = d.join("dep/clients/alice");
    // The same knock key, private to its owner.
    let key = std::fs::read(bundle.join("knock.key")).unwrap();
    assert_eq!(key, std::fs::read(d.join("dep/pki/knock.key")).unwrap());
    let mode = std::fs::metadata(bundle.join("knock.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let client = aura_config::load_client(bundle.join("client.toml")).unwrap();
    assert_eq!(
        client.transport.sni_palette,
        Some(vec!["a.example.net".to_owned(), "b.example.net".to_owned()])
    );
    // Both ends compute the same mask for a day.
    let show = |cfg: &str| {
        let o = run(&[
            "mask",
            "show",
            "--config",
            cfg,
            "--date",
            "2027-03-01",
            "--json",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let (s, c) = (
        show("dep/server.toml"),
        show("dep/clients/alice/client.toml"),
    );
    assert_eq!(s, c);
    assert_eq!(s["day"], "2027-03-01");
    assert_eq!(s["from"], "2027-03-01T02:00:00Z");
    assert!(["a.example.net", "b.example.net"].contains(&s["sni"].as_str().unwrap()));
    let o = run(&[
        "mask",
        "show",
        "--config",
        "dep/server.toml",
        "--date",
        "2027-02-30",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // Without the knock: no key anywhere, and a decoy is refused.
    let o = run(&[
        "server-init",
        "--dir",
        "open",
        "--name",
        "vpn.example.com",
        "--disable-knock",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!d.join("open/pki/knock.key").exists());
    let o = run(&["provision-client", "--dir", "open", "--id", "bob"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!d.join("open/clients/bob/knock.key").exists());
    let bob = aura_config::load_client(d.join("open/clients/bob/client.toml")).unwrap();
    assert!(!bob.transport.knock);
    let o = run(&[
        "server-init",
        "--dir",
        "x",
        "--name",
        "v.example.com",
        "--disable-knock",
        "--decoy-upstream",
        "www.example.org:443",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn status_asks_the_admin_socket() {
    use aura_node::admin::{self, PeerStatus, Response};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let handler: admin::Handler = admin::sync_handler(|_| Response::Server {
        peers: vec![PeerStatus {
            id: "alice".into(),
            carrier: "tls".into(),
            encryption: "outer-bound".into(),
            remote: "192.0.2.7:5555".into(),
            tunnel_address: "10.77.0.2".into(),
            tunnel_address6: "fd61:7572:6100::2".into(),
            bytes_in: 1234,
            bytes_out: 5678,
            last_handshake: 1,
            connected_since: 1,
            padding_out: 7,
            padding_in: 9,
        }],
        warnings: Vec::new(),
    });
    let _task = rt.block_on(admin::serve(&sock, handler)).unwrap();
    let s = sock.to_str().unwrap();
    let o = aura(&["status", "--socket", s, "--json"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["peers"][0]["id"], "alice");
    assert_eq!(v["peers"][0]["bytes_in"], 1234);
    assert_eq!(v["peers"][0]["padding_in"], 9);
    assert_eq!(v["peers"][0]["encryption"], "outer-bound");
    let o = aura(&["status", "--socket", s], dir.path());
    assert!(
        text(&o).contains("10.77.0.2")
            && text(&o).contains("tls")
            && text(&o).contains("bound to the Aura handshake"),
        "{}",
        text(&o)
    );
    // With no_logs the identities are hidden unless asked for, in both forms.
    let hidden = dir.path().join("hidden.sock");
    let handler: admin::Handler = admin::sync_handler(|_| Response::Server {
        peers: vec![PeerStatus {
            id: "alice".into(),
            carrier: "udp".into(),
            encryption: "aura".into(),
            remote: "192.0.2.7:5555".into(),
            tunnel_address: "10.77.0.2".into(),
            tunnel_address6: String::new(),
            bytes_in: 0,
            bytes_out: 0,
            last_handshake: 0,
            connected_since: 0,
            padding_out: 0,
            padding_in: 0,
        }],
        warnings: Vec::new(),
    });
    let _hidden_task = rt
        .block_on(admin::serve_redacting(
            &hidden,
            aura_node::Redact(true),
            handler,
        ))
        .unwrap();
    let h = hidden.to_str().unwrap();
    let o = aura(&["status", "--socket", h], dir.path());
    assert!(
        text(&o).contains("peer: [redacted]") && !text(&o).contains("alice"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("--show-identities"), "{}", text(&o));
    let o = aura(&["status", "--socket", h, "--json"], dir.path());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["peers"][0]["id"], "[redacted]");
    assert_eq!(v["peers"][0]["remote"], "[redacted]");
    let o = aura(
        &["status", "--socket", h, "--json", "--show-identities"],
        dir.path(),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["peers"][0]["id"], "alice");
    assert_eq!(v["peers"][0]["tunnel_address"], "10.77.0.2");
    // No daemon: a clear error naming the socket.
    let o = aura(&["status", "--socket", "/nonexistent/x.sock"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("/nonexistent/x.sock"), "{}", text(&o));
}

/// Every regular file under `dir`.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The public key of a certificate or a private key, as OpenSSL prints it.
fn public_key(path: &Path, kind: &str) -> String {
    let p = path.display().to_string();
    let args: &[&str] = if kind == "x509" {
        &["x509", "-in", &p, "-noout", "-pubkey"]
    } else {
        &["pkey", "-in", &p, "-pubout"]
    };
    let o = Command::new("openssl").args(args).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn the_server_host_keeps_no_client_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| aura(args, d);
    let o = run(&["server-init", "--dir", "dep", "--name", "vpn.example.com"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // The device makes its key; a second keygen never replaces it.
    let o = run(&["client", "keygen", "--dir", "phone", "--id", "phone"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let key = std::fs::read(d.join("phone/client.key")).unwrap();
    let mode = std::fs::metadata(d.join("phone/client.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let o = run(&["client", "keygen", "--dir", "phone"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("already exists"), "{}", text(&o));
    assert_eq!(std::fs::read(d.join("phone/client.key")).unwrap(), key);
    let o = run(&["client", "keygen", "--dir", "x", "--id", "a b"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("client id"), "{}", text(&o));
    // `aura client` alone still needs a config.
    let o = run(&["client"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--config"), "{}", text(&o));

    // The CA signs the request into a bundle without a key, straight into the device's
    // directory: the device's key is untouched and the bundle loads beside it.
    let o = run(&[
        "provision-client",
        "--dir",
        "dep",
        "--csr",
        "phone/client.csr",
        "--out",
        "phone",
        "--force",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(std::fs::read(d.join("phone/client.key")).unwrap(), key);
    aura_config::load_client(d.join("phone/client.toml")).unwrap();
    assert_eq!(
        public_key(&d.join("phone/client.crt"), "x509"),
        public_key(&d.join("phone/client.key"), "pkey")
    );

    // A bundle with a fresh key, and `pki issue-client`: the key is handed out, not kept.
    let o = run(&["provision-client", "--dir", "dep", "--id", "laptop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let laptop_key = std::fs::read(d.join("dep/clients/laptop/client.key")).unwrap();
    let o = run(&[
        "pki",
        "--dir",
        "dep/pki",
        "issue-client",
        "--id",
        "tv",
        "--out",
        "out",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let tv_key = std::fs::read(d.join("out/tv.key")).unwrap();
    assert_eq!(
        public_key(&d.join("out/tv.crt"), "x509"),
        public_key(&d.join("out/tv.key"), "pkey")
    );

    // `pki sign` of another device's request.
    let o = run(&["client", "keygen", "--dir", "router", "--id", "router"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&[
        "pki",
        "--dir",
        "dep/pki",
        "sign",
        "--csr",
        "router/client.csr",
        "--out",
        "router/client.crt",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        public_key(&d.join("router/client.crt"), "x509"),
        public_key(&d.join("router/client.key"), "pkey")
    );
    let router_key = std::fs::read(d.join("router/client.key")).unwrap();

    // Apart from the bundle the operator moves away, nothing the server host keeps
    // (server.toml, pki/) holds any client key.
    std::fs::remove_dir_all(d.join("dep/clients/laptop")).unwrap();
    for path in files_under(&d.join("dep")) {
        let body = std::fs::read(&path).unwrap();
        for (who, k) in [
            ("phone", &key),
            ("laptop", &laptop_key),
            ("tv", &tv_key),
            ("router", &router_key),
        ] {
            assert!(
                !body.windows(k.len()).any(|w| w == k.as_slice()),
                "{} holds {who}'s key",
                path.display()
            );
        }
    }
    let names: Vec<String> = files_under(&d.join("dep/pki/clients"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.ends_with(".crt")), "{names:?}");
    assert_eq!(names.len(), 4, "{names:?}");

    // Bad requests are named.
    std::fs::write(d.join("junk.csr"), "not a request").unwrap();
    let o = run(&["pki", "--dir", "dep/pki", "sign", "--csr", "junk.csr"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("junk.csr") && text(&o).contains("certificate signing request"),
        "{}",
        text(&o)
    );
    let o = run(&["provision-client", "--dir", "dep", "--csr", "missing.csr"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("missing.csr"), "{}", text(&o));
}

/// `server-init --run-as`: a user that does not exist writes nothing; an existing one gets
/// `run_as` in server.toml, no CA key in it, and (as root) read access through its group
/// to exactly what the server reads; the CA key stays root's.
#[test]
fn server_init_run_as_shares_what_the_server_reads() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| aura(args, d);
    let o = run(&[
        "server-init",
        "--dir",
        "dep",
        "--name",
        "vpn.example.com",
        "--run-as",
        "aura-no-such-user",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("no user \"aura-no-such-user\""),
        "{}",
        text(&o)
    );
    assert!(!d.join("dep").exists(), "something was written");

    let o = run(&[
        "server-init",
        "--dir",
        "dep",
        "--name",
        "vpn.example.com",
        "--run-as",
        "nobody",
    ]);
    let root = nix::unistd::geteuid().is_root();
    if !root {
        // Giving files to another group needs root: refused, and nothing left.
        assert_eq!(o.status.code(), Some(1));
        assert!(text(&o).contains("group of nobody"), "{}", text(&o));
        assert!(!d.join("dep").exists());
        return;
    }
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let server = aura_config::load_server(d.join("dep/server.toml")).unwrap();
    assert_eq!(server.server.run_as.as_deref(), Some("nobody"));
    assert!(server.pki.ca_key.is_none());
    let group = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    let meta = |rel: &str| std::fs::metadata(d.join(rel)).unwrap();
    for f in [
        "dep/server.toml",
        "dep/pki/ca.crt",
        "dep/pki/crl.pem",
        "dep/pki/knock.key",
        "dep/pki/servers/vpn.example.com.crt",
        "dep/pki/servers/vpn.example.com.key",
    ] {
        let m = meta(f);
        assert_eq!((m.uid(), m.gid()), (0, group), "{f}");
        assert_eq!(m.permissions().mode() & 0o777, 0o640, "{f}");
    }
    for dir in ["dep", "dep/pki", "dep/pki/servers"] {
        assert_eq!(meta(dir).gid(), group, "{dir}");
        assert_eq!(meta(dir).permissions().mode() & 0o777, 0o750, "{dir}");
    }
    let ca_key = meta("dep/pki/ca.key");
    assert_eq!(
        ca_key.permissions().mode() & 0o077,
        0,
        "the CA key is shared"
    );
}
