//! The configuration seam: options built from `config/*.toml.example`, and every
//! `[transport]` key shown to change them (a key that changed nothing would be parsed and
//! ignored).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use aura_config::{Carrier, ClientConfig, CoverMode, ServerConfig, TransportSection};
use aura_node::DaemonError;
use aura_node::options::{ClientOptions, ServerOptions};
use aura_proto::control::CoverProfile;
use aura_transport::camo::shape::Profile;

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// Every key the example documents in `[transport]`, set or commented out.
fn documented_transport_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            inside = t == "[transport]";
            continue;
        }
        if !inside {
            continue;
        }
        let t = t.trim_start_matches('#').trim();
        if let Some((key, _)) = t.split_once('=') {
            let key = key.trim();
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                keys.insert(key.to_owned());
            }
        }
    }
    keys
}

type Change = (&'static str, fn(&mut TransportSection));

/// One change per `[transport]` key, each to a value other than the example's.
const CHANGES: &[Change] = &[
    ("carriers", |t| {
        t.carriers = vec![Carrier::Tls, Carrier::Udp]
    }),
    ("udp_port", |t| t.udp_port = 9443),
    ("quic_port", |t| t.quic_port = 4443),
    ("tls_port", |t| t.tls_port = 8444),
    ("sni", |t| t.sni = Some("www.example.org".into())),
    ("alpn", |t| t.alpn = Some(vec!["http/1.1".into()])),
    ("padding_profile", |t| t.padding_profile = Some(3)),
    ("knock", |t| t.knock = false),
    ("sni_palette", |t| {
        t.sni_palette = Some(vec!["a.example.net".into(), "b.example.net".into()])
    }),
    ("cover", |t| t.cover = CoverMode::Idle),
    ("cover_budget_percent", |t| {
        t.cover = CoverMode::Bursts;
        t.cover_budget_percent = Some(90);
    }),
];

/// Keys only a client uses: a server refuses them.
const CLIENT_ONLY: &[&str] = &["cover", "cover_budget_percent"];

fn covered() -> BTreeSet<String> {
    CHANGES.iter().map(|(k, _)| (*k).to_owned()).collect()
}

#[test]
fn every_transport_key_changes_the_server_options() {
    let text = example("server.toml.example");
    let mut server_keys = covered();
    server_keys.retain(|k| !CLIENT_ONLY.contains(&k.as_str()));
    assert_eq!(documented_transport_keys(&text), server_keys);
    let base: ServerConfig = toml::from_str(&text).unwrap();
    let before = format!("{:?}", ServerOptions::from_config(&base).unwrap());
    for (key, change) in CHANGES {
        let mut cfg = base.clone();
        change(&mut cfg.transport);
        if !cfg.transport.knock {
            // Knock off goes with no knock key (the loader refuses the pair otherwise).
            cfg.pki.knock_key = None;
        }
        match ServerOptions::from_config(&cfg) {
            Ok(o) => assert_ne!(format!("{o:?}"), before, "{key} changed nothing"),
            // The server has no use for an SNI: the key is refused, not ignored.
            Err(e) if *key == "sni" => {
                assert!(e.to_string().starts_with("transport.sni: "), "{e}");
            }
            // Cover traffic is asked for by clients; a server grants it ([server.cover]).
            Err(e) => {
                assert!(CLIENT_ONLY.contains(key), "{key}: {e}");
                assert!(e.to_string().starts_with("transport.cover: "), "{e}");
            }
        }
    }
    let mut cfg = base.clone();
    cfg.transport.alpn = Some(vec!["http/1.1".into()]);
    cfg.transport.padding_profile = Some(3);
    let o = ServerOptions::from_config(&cfg).unwrap();
    assert_eq!(o.carriers.tls_options.alpn, vec![b"http/1.1".to_vec()]);
    assert_eq!(o.carriers.masks.profile, Some(Profile::Constant));
    let default = ServerOptions::from_config(&base).unwrap();
    assert_eq!(default.carriers.masks.profile, None, "the day's mask picks");
    assert_eq!(
        default.carriers.masks.palette,
        vec![base.server.name.clone()]
    );
    assert!(default.carriers.knock);
    // [server.cover]: off unless enabled, each budget used.
    assert_eq!(default.cover, None);
    let mut cfg = base.clone();
    cfg.server.cover.enabled = true;
    let on = ServerOptions::from_config(&cfg).unwrap().cover.unwrap();
    assert_eq!((on.max_budget, on.total_budget), (500, 300));
    cfg.server.cover.max_budget_percent = 5;
    cfg.server.cover.total_budget_percent = 7;
    let on = ServerOptions::from_config(&cfg).unwrap().cover.unwrap();
    assert_eq!((on.max_budget, on.total_budget), (50, 70));
    assert_eq!(
        on.grant(CoverProfile::Https, 1000),
        (CoverProfile::Https, 50)
    );
    assert_eq!(on.grant(CoverProfile::Idle, 20), (CoverProfile::Idle, 20));
    assert_eq!(
        default.carriers.tls_options.alpn,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}

#[test]
fn every_transport_key_changes_the_client_options() {
    let text = example("client.toml.example");
    assert_eq!(documented_transport_keys(&text), covered());
    let base: ClientConfig = toml::from_str(&text).unwrap();
    let before = format!("{:?}", ClientOptions::from_config(&base).unwrap());
    for (key, change) in CHANGES {
        let mut cfg = base.clone();
        change(&mut cfg.transport);
        if !cfg.transport.knock {
            cfg.pki.knock_key = None;
        }
        let o = ClientOptions::from_config(&cfg).unwrap();
        assert_ne!(format!("{o:?}"), before, "{key} changed nothing");
    }
    // The budget is the profile's default until set.
    let mut cfg = base.clone();
    cfg.transport.cover = CoverMode::Bursts;
    let o = ClientOptions::from_config(&cfg).unwrap();
    assert_eq!(o.cover, Some((CoverProfile::Bursts, 300)));
    cfg.transport.cover_budget_percent = Some(90);
    let o = ClientOptions::from_config(&cfg).unwrap();
    assert_eq!(o.cover, Some((CoverProfile::Bursts, 900)));
    assert_eq!(ClientOptions::from_config(&base).unwrap().cover, None);
    let mut cfg = base;
    cfg.transport.padding_profile = Some(2);
    cfg.transport.alpn = Some(vec!["h2".into()]);
    let o = ClientOptions::from_config(&cfg).unwrap();
    assert_eq!(o.masks.profile, Some(Profile::Jitter));
    assert_eq!(o.masks.alpn, vec![b"h2".to_vec()]);
    assert_eq!(o.tls_options.alpn, vec![b"h2".to_vec()]);
}

#[test]
fn knock_and_its_key_go_together() {
    let text = example("server.toml.example");
    let base: ServerConfig = toml::from_str(&text).unwrap();
    let mut no_key = base.clone();
    no_key.pki.knock_key = None;
    let e = ServerOptions::from_config(&no_key).unwrap_err();
    assert!(e.to_string().starts_with("pki.knock_key: missing"), "{e}");
    let mut off_with_key = base;
    off_with_key.transport.knock = false;
    let e = ServerOptions::from_config(&off_with_key).unwrap_err();
    assert!(e.to_string().contains("transport.knock = false"), "{e}");
}

#[test]
fn a_ca_key_outside_a_pki_directory_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = d.join("ca.key");
    std::fs::write(&key, "not read").unwrap();
    let text = example("server.toml.example");
    let mut cfg: ServerConfig = toml::from_str(&text).unwrap();
    cfg.pki.ca_key = Some(key.clone());
    cfg.pki.crl = d.join("crl.pem");
    // No index.json beside it: not an `aura pki` directory.
    let e = ServerOptions::from_config(&cfg).unwrap_err();
    assert!(
        matches!(
            e,
            DaemonError::Config {
                key: "pki.ca_key",
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("not the ca.key of an `aura pki` directory"),
        "{e}"
    );

    // A real directory, but the server serves another CRL file.
    let store = aura_pki::PkiStore::new(d.join("pki"));
    let now = time::OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
    store
        .init(
            "Test CA",
            time::Duration::days(365),
            false,
            now,
            &mut rand_core::OsRng,
        )
        .unwrap();
    std::fs::write(d.join("elsewhere.pem"), "x").unwrap();
    cfg.pki.ca_key = Some(store.ca_key_path());
    cfg.pki.crl = d.join("elsewhere.pem");
    let e = ServerOptions::from_config(&cfg).unwrap_err();
    assert!(
        e.to_string()
            .contains("is not the crl.pem of the CA key's directory"),
        "{e}"
    );

    // The directory's own CRL: accepted, and the server will re-sign through it.
    cfg.pki.crl = store.crl_path();
    let o = ServerOptions::from_config(&cfg).unwrap();
    assert!(o.crl.resign.is_some());
}

#[test]
fn circuit_keys_of_a_disabled_feature_are_refused_not_ignored() {
    let mut server: ServerConfig = toml::from_str(&example("server.toml.example")).unwrap();
    server.server.relay.allow_extend_to = vec!["192.0.2.7:8443".parse().unwrap()];
    let e = ServerOptions::from_config(&server).unwrap_err();
    assert!(
        e.to_string().starts_with("server.relay.allow_extend_to: "),
        "{e}"
    );
    let mut client: ClientConfig = toml::from_str(&example("client.toml.example")).unwrap();
    client.client.circuit.entry_name = Some("relay.example.net".into());
    let e = ClientOptions::from_config(&client).unwrap_err();
    assert!(e.to_string().starts_with("client.circuit.entry: "), "{e}");
}
