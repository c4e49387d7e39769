//! The PKI directory: layout, errors that name the file, atomicity and rollback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use aura_pki::{PkiError, PkiStore, RevocationReason, Role, VerifyError};
use common::{rng, t0, temp_files, unix};
use time::Duration;

fn ten_years() -> Duration {
    Duration::days(3650)
}

fn init(dir: &Path) -> PkiStore {
    let store = PkiStore::new(dir);
    store
        .init("Aura CA", ten_years(), false, t0(), &mut rng(1))
        .unwrap();
    store
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Full cause chain, as the CLI prints it.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

#[test]
fn init_writes_the_layout_with_private_keys_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki/nested");
    let store = init(&dir);
    for f in ["ca.crt", "ca.key", "crl.pem", "index.json"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(store.crl_number().unwrap(), 1);
    assert!(store.list().unwrap().is_empty());

    let gw = store
        .issue_server(
            "vpn.example.com",
            &["192.0.2.1".into()],
            365,
            t0(),
            &mut rng(2),
        )
        .unwrap();
    let alice = store
        .issue_client(Some("alice"), 365, t0(), &mut rng(3))
        .unwrap();
    assert_eq!(gw.cert_path, dir.join("servers/vpn.example.com.crt"));
    let gw_key = gw.key_path.clone().unwrap();
    assert_eq!(gw_key, dir.join("servers/vpn.example.com.key"));
    assert_eq!(mode(&gw_key), 0o600);
    assert_eq!(
        fs::read_to_string(&gw_key).unwrap(),
        **gw.cert.key_pem.as_ref().unwrap()
    );
    // The CA host keeps no client key: it is handed back, never written here.
    assert_eq!(alice.key_path, None);
    assert!(alice.cert.key_pem.is_some());
    assert!(!dir.join("clients/alice.key").exists());
    assert_eq!(mode(&alice.cert_path), 0o644);
    assert_eq!(mode(&dir.join("clients")), 0o700);
    assert!(temp_files(&dir).is_empty());

    let entries = store.list().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].id, "alice");
    assert_eq!(entries[1].role, Role::Client);
    assert_eq!(entries[1].serial, alice.cert.serial);

    // The stored CA (reloaded from PEM) issued certificates the stored verifier accepts.
    let v = store.verifier().unwrap();
    let now = unix(t0() + Duration::hours(1));
    assert_eq!(
        v.verify_client(&alice.cert.cert_der, now).unwrap().id,
        "alice"
    );
    v.verify_server(&gw.cert.cert_der, "192.0.2.1", now)
        .unwrap();
}

#[test]
fn entries_serialize_for_list_json() {
    let tmp = tempfile::tempdir().unwrap();
    let store = init(tmp.path());
    let c = store
        .issue_client(Some("alice"), 30, t0(), &mut rng(2))
        .unwrap();
    let json = serde_json::to_value(store.list().unwrap()).unwrap();
    let e = &json[0];
    assert_eq!(e["id"], "alice");
    assert_eq!(e["role"], "client");
    assert_eq!(e["serial"], c.cert.serial.to_hex());
    assert_eq!(e["not_after"], "2030-01-31T00:00:00Z");
    assert!(e["revoked"].is_null());

    store
        .revoke(
            "alice",
            RevocationReason::KeyCompromise,
            t0() + Duration::days(1),
        )
        .unwrap();
    let json = serde_json::to_value(store.list().unwrap()).unwrap();
    assert_eq!(json[0]["revoked"]["reason"], "key-compromise");
    assert_eq!(json[0]["revoked"]["at"], "2030-01-02T00:00:00Z");
}

#[test]
fn default_client_id_is_a_uuid() {
    let tmp = tempfile::tempdir().unwrap();
    let store = init(tmp.path());
    let c = store.issue_client(None, 30, t0(), &mut rng(9)).unwrap();
    assert_eq!(c.cert.id.len(), 36);
    assert_eq!(c.cert.id.matches('-').count(), 4);
    assert!(c.cert_path.ends_with(format!("clients/{}.crt", c.cert.id)));
}

#[test]
fn missing_ca_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = PkiStore::new(tmp.path());
    let err = store
        .issue_client(Some("alice"), 30, t0(), &mut rng(1))
        .unwrap_err();
    assert!(matches!(err, PkiError::NoCa { .. }), "{err:?}");
    assert!(err.to_string().contains("run `aura pki init`"), "{err}");
    assert!(err.to_string().contains(&tmp.path().display().to_string()));
    assert!(matches!(store.list().unwrap_err(), PkiError::NoCa { .. }));
    assert!(matches!(
        store
            .revoke("alice", RevocationReason::Unspecified, t0())
            .unwrap_err(),
        PkiError::NoCa { .. }
    ));
    assert!(matches!(
        store.verifier().unwrap_err(),
        PkiError::NoCa { .. }
    ));
}

#[test]
fn corrupt_pem_in_ca_crt_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = init(tmp.path());
    fs::write(store.ca_cert_path(), "-----BEGIN CERTIFICATE-----\n!!!!\n").unwrap();
    let err = store
        .issue_client(Some("alice"), 30, t0(), &mut rng(2))
        .unwrap_err();
    assert!(
        matches!(err.innermost(), PkiError::BadPem { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("ca.crt"), "{err}");
    assert!(chain(&err).contains("malformed PEM"), "{}", chain(&err));
}

#[test]
fn wrong_key_type_in_ca_key_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let store = init(tmp.path());
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    for (pem, found) in [
        (ed.serialize_pem(), "Ed25519"),
        (p384.serialize_pem(), "ECDSA P-384"),
    ] {
        fs::write(store.ca_key_path(), pem).unwrap();
        let err = store.load_ca().unwrap_err();
        assert!(
            matches!(err.innermost(), PkiError::WrongKeyType { found: f } if *f == found),
            "{err:?}"
        );
        assert!(err.to_string().contains("ca.key"), "{err}");
        assert!(
            chain(&err).contains("wrong private key type"),
            "{}",
            chain(&err)
        );
    }
}

#[test]
fn rsa_key_from_openssl_is_a_wrong_key_type() {
    let tmp = tempfile::tempdir().unwrap();
    let store = init(tmp.path());
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(store.ca_key_path())
        .output()
        .expect("openssl is required for this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = store.load_ca().unwrap_err();
    assert!(
        matches!(err.innermost(), PkiError::WrongKeyType { found: "RSA" }),
        "{err:?}"
    );
}

#[test]
fn key_not_matching_the_certificate_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let store = init(tmp.path());
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    fs::write(store.ca_key_path(), other.serialize_pem()).unwrap();
    let err = store.load_ca().unwrap_err();
    assert!(matches!(err.innermost(), PkiError::KeyMismatch), "{err:?}");
    assert!(err.to_string().contains("ca.key"), "{err}");

    fs::write(store.ca_key_path(), "not pem at all").unwrap();
    let err = store.load_ca().unwrap_err();
    assert!(
        matches!(err.innermost(), PkiError::BadPem { .. }),
        "{err:?}"
    );
}

#[test]
fn duplicate_id_is_refused_until_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let store = init(tmp.path());
    let first = store
        .issue_client(Some("alice"), 30, t0(), &mut rng(2))
        .unwrap();
    let err = store
        .issue_client(Some("alice"), 30, t0(), &mut rng(3))
        .unwrap_err();
    assert!(
        matches!(&err, PkiError::Duplicate { id, role: Role::Client, serial } if id == "alice" && *serial == first.cert.serial),
        "{err:?}"
    );
    // The failed attempt left the original files alone.
    assert_eq!(
        fs::read_to_string(&first.cert_path).unwrap(),
        first.cert.cert_pem
    );
    // Server names share the namespace.
    store
        .issue_server("gw", &[], 30, t0(), &mut rng(4))
        .unwrap();
    assert!(matches!(
        store
            .issue_client(Some("gw"), 30, t0(), &mut rng(5))
            .unwrap_err(),
        PkiError::Duplicate {
            role: Role::Server,
            ..
        }
    ));

    store
        .revoke(
            "alice",
            RevocationReason::Superseded,
            t0() + Duration::hours(1),
        )
        .unwrap();
    let second = store
        .issue_client(Some("alice"), 30, t0() + Duration::hours(2), &mut rng(6))
        .unwrap();
    assert_ne!(second.cert.serial, first.cert.serial);
    let entries = store.list().unwrap();
    assert_eq!(entries.iter().filter(|e| e.id == "alice").count(), 2);

    // The new certificate is valid, the old one revoked.
    let v = store.verifier().unwrap();
    let now = unix(t0() + Duration::hours(3));
    v.verify_client(&second.cert.cert_der, now).unwrap();
    assert_eq!(
        v.verify_client(&first.cert.cert_der, now),
        Err(VerifyError::Revoked)
    );
}

#[test]
fn revoke_resolves_ids_and_serials_and_refuses_unknown_or_repeated() {
    let tmp = tempfile::tempdir().unwrap();
    let store = init(tmp.path());
    let alice = store
        .issue_client(Some("alice"), 30, t0(), &mut rng(2))
        .unwrap();
    let bob = store
        .issue_client(Some("bob"), 30, t0(), &mut rng(3))
        .unwrap();

    let err = store
        .revoke("carol", RevocationReason::KeyCompromise, t0())
        .unwrap_err();
    assert!(
        matches!(err, PkiError::UnknownCertificate(ref q) if q == "carol"),
        "{err:?}"
    );
    assert_eq!(
        store.crl_number().unwrap(),
        1,
        "a failed revoke changes nothing"
    );

    let r1 = store
        .revoke("alice", RevocationReason::KeyCompromise, t0())
        .unwrap();
    assert_eq!(r1.entry.serial, alice.cert.serial);
    assert_eq!(r1.crl.number, 2);
    let r2 = store
        .revoke(
            &bob.cert.serial.to_hex().to_uppercase(),
            RevocationReason::CessationOfOperation,
            t0(),
        )
        .unwrap();
    assert_eq!(r2.entry.id, "bob");
    assert_eq!(r2.crl.number, 3);
    assert_eq!(store.crl_number().unwrap(), 3);

    for q in ["alice".to_string(), alice.cert.serial.to_hex()] {
        let err = store
            .revoke(&q, RevocationReason::KeyCompromise, t0())
            .unwrap_err();
        assert!(
            matches!(err, PkiError::AlreadyRevoked { .. }),
            "{q}: {err:?}"
        );
    }
    assert_eq!(store.crl_number().unwrap(), 3);

    let crl = store.regenerate_crl(t0() + Duration::days(100)).unwrap();
    assert_eq!(crl.number, 4);
    assert_eq!(crl.next_update, t0() + Duration::days(280));
}

#[test]
fn crl_validity_is_configurable() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let store = PkiStore::new(tmp.path()).with_crl_validity_days(7);
    let crl = store.regenerate_crl(t0()).unwrap();
    assert_eq!(crl.next_update, t0() + Duration::days(7));
    let v = store.verifier().unwrap();
    let c = store
        .issue_client(Some("a"), 30, t0(), &mut rng(2))
        .unwrap();
    assert!(matches!(
        v.verify_client(&c.cert.cert_der, unix(t0() + Duration::days(8))),
        Err(VerifyError::CrlExpired { .. })
    ));
}

#[test]
fn init_twice_is_refused_without_force_and_keeps_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let store = init(tmp.path());
    let key_before = fs::read(store.ca_key_path()).unwrap();
    let cert_before = fs::read(store.ca_cert_path()).unwrap();

    let err = store
        .init("Aura CA", ten_years(), false, t0(), &mut rng(7))
        .unwrap_err();
    assert!(
        matches!(err, PkiError::AlreadyInitialized { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("ca.key"), "{err}");
    assert_eq!(fs::read(store.ca_key_path()).unwrap(), key_before);
    assert_eq!(fs::read(store.ca_cert_path()).unwrap(), cert_before);

    store
        .init("Aura CA 2", ten_years(), true, t0(), &mut rng(8))
        .unwrap();
    assert_ne!(fs::read(store.ca_key_path()).unwrap(), key_before);
    assert_eq!(store.load_ca().unwrap().name(), "Aura CA 2");
    assert_eq!(mode(&store.ca_key_path()), 0o600);
}

#[test]
fn unwritable_locations_give_errors_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    // A directory "inside" a regular file: ENOTDIR even for root.
    let file = tmp.path().join("plainfile");
    fs::write(&file, "x").unwrap();
    let dir = file.join("pki");
    let err = PkiStore::new(&dir)
        .init("Aura CA", ten_years(), false, t0(), &mut rng(1))
        .unwrap_err();
    match &err {
        PkiError::Io { path, .. } => assert_eq!(path, &dir),
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains(&dir.display().to_string()),
        "{err}"
    );
    assert!(
        chain(&err).to_lowercase().contains("not a directory"),
        "{}",
        chain(&err)
    );

    // A read-only directory (not enforced for root, which is detected and skipped).
    let ro = tmp.path().join("ro");
    fs::create_dir(&ro).unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
    let probe = ro.join("probe");
    let enforced = fs::write(&probe, "x").is_err();
    let _ = fs::remove_file(&probe);
    if enforced {
        let err = PkiStore::new(&ro)
            .init("Aura CA", ten_years(), false, t0(), &mut rng(1))
            .unwrap_err();
        assert!(matches!(err, PkiError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains(&ro.display().to_string()), "{err}");
        assert!(chain(&err).contains("ermission denied"), "{}", chain(&err));
        assert!(
            fs::read_dir(&ro).unwrap().next().is_none(),
            "nothing written"
        );
    } else {
        eprintln!("running as root: skipping the read-only directory assertion");
    }
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn failed_issue_rolls_back_and_leaves_no_temp_files() {
    let tmp = tempfile::tempdir().unwrap();
    let store = init(tmp.path());
    let index_before = fs::read(store.index_path()).unwrap();
    // Put a directory where the certificate must go: the key is written first, then
    // replacing the certificate fails.
    let (cert_path, key_path) = store.cert_paths(Role::Server, "bob");
    fs::create_dir_all(&cert_path).unwrap();

    let err = store
        .issue_server("bob", &[], 30, t0(), &mut rng(2))
        .unwrap_err();
    assert!(
        matches!(err, PkiError::Io { ref path, .. } if *path == cert_path),
        "{err:?}"
    );
    assert!(
        !key_path.exists(),
        "the key written before the failure was removed"
    );
    assert!(
        temp_files(tmp.path()).is_empty(),
        "{:?}",
        temp_files(tmp.path())
    );
    assert_eq!(fs::read(store.index_path()).unwrap(), index_before);

    // Re-issue over an old revoked certificate: the old key is overwritten first, then
    // the certificate write fails, and the old key comes back.
    fs::remove_dir(&cert_path).unwrap();
    let old = store
        .issue_server("bob", &[], 30, t0(), &mut rng(3))
        .unwrap();
    store
        .revoke("bob", RevocationReason::Superseded, t0())
        .unwrap();
    let index_before = fs::read(store.index_path()).unwrap();
    fs::remove_file(&cert_path).unwrap();
    fs::create_dir(&cert_path).unwrap();
    fs::write(cert_path.join("blocker"), "x").unwrap();
    let err = store
        .issue_server("bob", &[], 30, t0(), &mut rng(4))
        .unwrap_err();
    assert!(matches!(err, PkiError::Io { .. }), "{err:?}");
    assert_eq!(
        fs::read_to_string(&key_path).unwrap(),
        **old.cert.key_pem.as_ref().unwrap()
    );
    assert_eq!(mode(&key_path), 0o600);
    assert_eq!(fs::read(store.index_path()).unwrap(), index_before);
    assert!(temp_files(tmp.path()).is_empty());
}

#[test]
fn failed_index_write_removes_the_new_key_and_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let store = init(tmp.path());
    let (cert_path, key_path) = store.cert_paths(Role::Server, "carol");
    fs::create_dir_all(cert_path.parent().unwrap()).unwrap();
    let index_before = fs::read(store.index_path()).unwrap();
    // Make the top directory read-only: clients/ stays writable, index.json cannot be
    // replaced. Permissions do not bind root, so detect that and skip.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o500)).unwrap();
    let probe = tmp.path().join("probe");
    let enforced = fs::write(&probe, "x").is_err();
    let _ = fs::remove_file(&probe);
    if enforced {
        let err = store
            .issue_server("carol", &[], 30, t0(), &mut rng(2))
            .unwrap_err();
        assert!(
            matches!(err, PkiError::Io { ref path, .. } if *path == store.index_path()),
            "{err:?}"
        );
        assert!(
            !key_path.exists() && !cert_path.exists(),
            "partial result left behind"
        );
        assert!(temp_files(tmp.path()).is_empty());
        assert_eq!(fs::read(store.index_path()).unwrap(), index_before);
    } else {
        eprintln!("running as root: skipping the read-only index assertion");
    }
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn corrupt_index_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = init(tmp.path());
    fs::write(store.index_path(), "{ not json").unwrap();
    let err = store.list().unwrap_err();
    assert!(matches!(err, PkiError::CorruptIndex { .. }), "{err:?}");
    assert!(err.to_string().contains("index.json"), "{err}");

    fs::write(
        store.index_path(),
        r#"{"version":9,"crl_number":1,"entries":[]}"#,
    )
    .unwrap();
    let err = store.list().unwrap_err();
    assert!(err.to_string().contains("version 9"), "{err}");

    fs::write(
        store.index_path(),
        r#"{"version":1,"crl_number":1,"entries":[{"id":"../x","role":"client","serial":"01","not_after":"2030-01-01T00:00:00Z","revoked":null}]}"#,
    )
    .unwrap();
    assert!(matches!(
        store.list().unwrap_err(),
        PkiError::CorruptIndex { .. }
    ));
}

#[test]
fn invalid_names_are_rejected_before_touching_files() {
    let tmp = tempfile::tempdir().unwrap();
    let store = init(tmp.path());
    for bad in ["", "a/b", "../evil", "has space", &"x".repeat(65)] {
        let err = store
            .issue_client(Some(bad), 30, t0(), &mut rng(2))
            .unwrap_err();
        assert!(
            matches!(err, PkiError::InvalidName { .. }),
            "{bad:?}: {err:?}"
        );
    }
    let err = store
        .issue_server("ok.example", &["bad name".into()], 30, t0(), &mut rng(2))
        .unwrap_err();
    assert!(matches!(err, PkiError::InvalidName { .. }), "{err:?}");
    assert!(store.list().unwrap().is_empty());
    assert!(!tmp.path().join("clients").exists());

    let fresh = tmp.path().join("fresh");
    let err = PkiStore::new(&fresh)
        .init("", ten_years(), false, t0(), &mut rng(3))
        .unwrap_err();
    assert!(
        matches!(
            err,
            PkiError::InvalidName {
                kind: "CA name",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!fresh.exists(), "nothing created for an invalid CA name");
}

#[test]
fn certificates_cannot_outlive_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let store = PkiStore::new(tmp.path());
    store
        .init("Aura CA", Duration::days(10), false, t0(), &mut rng(1))
        .unwrap();
    let err = store
        .issue_client(Some("a"), 11, t0(), &mut rng(2))
        .unwrap_err();
    assert!(matches!(err, PkiError::InvalidValidity(_)), "{err:?}");
}

/// Concurrent writers on one directory serialise on the store's lock: no issued
/// certificate is lost from the index and every CRL number is used once.
#[test]
fn concurrent_commands_do_not_lose_updates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    init(&dir);
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let store = PkiStore::new(&dir);
                let id = format!("client-{i}");
                store
                    .issue_client(Some(&id), 30, t0(), &mut rng(100 + i))
                    .unwrap();
                store
                    .revoke(&id, RevocationReason::Superseded, t0())
                    .unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let store = PkiStore::new(&dir);
    let entries = store.list().unwrap();
    assert_eq!(entries.len(), 8, "{entries:?}");
    assert!(entries.iter().all(|e| e.revoked.is_some()));
    // One CRL from init plus one per revocation.
    assert_eq!(store.crl_number().unwrap(), 9);
}
