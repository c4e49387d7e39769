//! Every example in `config/` parses and validates, shows the real defaults, and stays
//! valid with every optional `# key = value` line uncommented.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use aura_config::{Carrier, PoolStrategy};

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Creates `rel` under `dir` (with parents); private keys get mode 0600.
fn touch(dir: &Path, rel: &str) -> PathBuf {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, "-----BEGIN DUMMY-----\n").unwrap();
    #[cfg(unix)]
    if rel.ends_with(".key") || rel.ends_with("privkey.pem") {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    }
    p
}

/// Uncomments every `# key = value` line: the optional keys shown with example values.
/// `sni` and `sni_palette` are alternatives (set together, they are refused), and so are
/// the decoy's `upstream` and its served site: the palette and the upstream stay commented
/// out here; [`sni_palette_alone_validates`] and [`decoy_upstream_alone_validates`] check
/// them.
fn uncomment_options(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("# sni_palette = ") && !l.starts_with("# upstream = "))
        .map(|l| {
            let Some(rest) = l.strip_prefix("# ") else {
                return l.to_owned();
            };
            let key_len = rest
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
                .count();
            if key_len > 0 && rest[key_len..].starts_with(" = ") {
                rest.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn server_pki(dir: &Path) {
    for f in [
        "pki/ca.crt",
        "pki/ca.key",
        "pki/crl.pem",
        "pki/servers/vpn.example.com.crt",
        "pki/servers/vpn.example.com.key",
        "pki/knock.key",
        "decoy/fullchain.pem",
        "decoy/privkey.pem",
        "decoy/site/index.html",
    ] {
        touch(dir, f);
    }
}

fn client_pki(dir: &Path) {
    for f in ["ca.crt", "client.crt", "client.key", "crl.pem", "knock.key"] {
        touch(dir, f);
    }
}

#[test]
fn server_example_loads_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    server_pki(dir.path());
    let path = dir.path().join("server.toml");
    fs::write(&path, example("server.toml.example")).unwrap();
    let cfg = aura_config::load_server(&path).unwrap();
    assert_eq!(cfg.server.name, "vpn.example.com");
    assert_eq!(
        cfg.pki.key,
        dir.path().join("pki/servers/vpn.example.com.key")
    );
    assert_eq!(
        cfg.server.pool.server_address(),
        Ipv4Addr::new(10, 77, 0, 1)
    );
    assert_eq!(cfg.server.pool.client_capacity(), 253);
}

#[test]
fn server_example_shows_the_defaults() {
    let minimal = r#"
        [server]
        name = "vpn.example.com"
        [pki]
        ca_cert = "pki/ca.crt"
        cert = "pki/servers/vpn.example.com.crt"
        key = "pki/servers/vpn.example.com.key"
        crl = "pki/crl.pem"
        knock_key = "pki/knock.key"
    "#;
    let base = Path::new("/etc/aura");
    let example = aura_config::parse_server(&example("server.toml.example"), base).unwrap();
    let defaults = aura_config::parse_server(minimal, base).unwrap();
    assert_eq!(example, defaults);
}

#[test]
fn server_example_with_every_option_validates() {
    let dir = tempfile::tempdir().unwrap();
    server_pki(dir.path());
    let text = uncomment_options(&example("server.toml.example"));
    let cfg = aura_config::parse_server(&text, dir.path()).unwrap();
    cfg.validate().unwrap();
    let s = &cfg.server;
    assert_eq!(s.run_as.as_deref(), Some("aura"));
    assert_eq!(s.pool.strategy, PoolStrategy::StaticOrDynamic);
    assert_eq!(s.pool.static_map.len(), 2);
    assert_eq!(s.pool.static_map["alice"], Ipv4Addr::new(10, 77, 0, 10));
    assert_eq!(s.nat.egress_iface.as_deref(), Some("eth0"));
    assert_eq!(s.relay.allow_extend_to.len(), 2);
    assert_eq!(cfg.pki.ca_key, Some(dir.path().join("pki/ca.key")));
    assert_eq!(cfg.transport.sni.as_deref(), Some("vpn.example.com"));
    assert_eq!(cfg.server.decoy.root, Some(dir.path().join("decoy/site")));
    assert_eq!(cfg.server.cover.total_budget_percent, 30);
    assert_eq!(
        cfg.server.metrics.listen,
        Some("127.0.0.1:9587".parse().unwrap())
    );
    assert!(cfg.server.metrics.allow_remote);
}

#[test]
fn decoy_upstream_alone_validates() {
    let dir = tempfile::tempdir().unwrap();
    server_pki(dir.path());
    let text = example("server.toml.example").replace("# upstream = ", "upstream = ");
    let cfg = aura_config::parse_server(&text, dir.path()).unwrap();
    cfg.validate().unwrap();
    assert_eq!(
        cfg.server.decoy.upstream.as_deref(),
        Some("www.example.org:443")
    );
}

#[test]
fn sni_palette_alone_validates() {
    for (name, pki) in [
        ("server.toml.example", server_pki as fn(&Path)),
        ("client.toml.example", client_pki),
    ] {
        let dir = tempfile::tempdir().unwrap();
        pki(dir.path());
        let text = example(name).replace("# sni_palette = ", "sni_palette = ");
        assert_ne!(text, example(name), "{name} shows sni_palette");
        let expected = Some(vec![
            "cdn.example.net".to_owned(),
            "www.example.org".to_owned(),
        ]);
        if name.starts_with("server") {
            let cfg = aura_config::parse_server(&text, dir.path()).unwrap();
            cfg.validate().unwrap();
            assert_eq!(cfg.transport.sni_palette, expected);
        } else {
            let cfg = aura_config::parse_client(&text, dir.path()).unwrap();
            cfg.validate().unwrap();
            assert_eq!(cfg.transport.sni_palette, expected);
        }
    }
}

#[test]
fn client_example_loads_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    client_pki(dir.path());
    let path = dir.path().join("client.toml");
    fs::write(&path, example("client.toml.example")).unwrap();
    let cfg = aura_config::load_client(&path).unwrap();
    assert_eq!(cfg.client.server_name(), "vpn.example.com");
    assert_eq!(cfg.sni(), Some("vpn.example.com"));
    assert_eq!(
        cfg.transport.carriers,
        [Carrier::Udp, Carrier::Quic, Carrier::Tls]
    );
    assert_eq!(cfg.pki.crl, dir.path().join("crl.pem"));
}

#[test]
fn client_example_shows_the_defaults() {
    let minimal = r#"
        [client]
        server = "vpn.example.com"
        [pki]
        ca_cert = "ca.crt"
        cert = "client.crt"
        key = "client.key"
        crl = "crl.pem"
        knock_key = "knock.key"
    "#;
    let base = Path::new("/etc/aura");
    let example = aura_config::parse_client(&example("client.toml.example"), base).unwrap();
    let defaults = aura_config::parse_client(minimal, base).unwrap();
    assert_eq!(example, defaults);
}

#[test]
fn client_example_with_every_option_validates() {
    let dir = tempfile::tempdir().unwrap();
    client_pki(dir.path());
    let text = uncomment_options(&example("client.toml.example"));
    let cfg = aura_config::parse_client(&text, dir.path()).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.client.bridges.len(), 2);
    assert_eq!(
        cfg.client.circuit.entry.as_deref(),
        Some("relay.example.net")
    );
    assert_eq!(
        cfg.transport.alpn,
        Some(vec!["h2".to_owned(), "http/1.1".to_owned()])
    );
    assert_eq!(cfg.transport.cover, aura_config::CoverMode::Https);
    assert_eq!(cfg.transport.cover_budget_percent, Some(50));
    assert_eq!(
        cfg.client.metrics.listen,
        Some("127.0.0.1:9588".parse().unwrap())
    );
}
