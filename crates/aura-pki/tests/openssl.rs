//! Interoperability: OpenSSL accepts what the store writes (certificates, CRLs) and
//! honours revocations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use aura_pki::{PkiStore, RevocationReason};
use common::rng;
use time::{Duration, OffsetDateTime};

fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl binary is required for this test")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn crl_number(dir: &Path) -> u64 {
    let out = openssl(dir, &["crl", "-in", "crl.pem", "-noout", "-crlnumber"]);
    assert!(out.status.success(), "{}", text(&out));
    // "crlNumber=0x02"
    let s = text(&out);
    let hex = s
        .trim()
        .strip_prefix("crlNumber=0x")
        .unwrap_or_else(|| panic!("unexpected output: {s}"));
    u64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn openssl_verifies_certificates_and_honours_the_crl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // OpenSSL checks against the real clock, so use it here.
    let now = OffsetDateTime::now_utc();
    let store = PkiStore::new(dir);
    store
        .init("Aura CA", Duration::days(3650), false, now, &mut rng(1))
        .unwrap();
    store
        .issue_client(Some("alice"), 365, now, &mut rng(2))
        .unwrap();
    store
        .issue_client(Some("bob"), 365, now, &mut rng(3))
        .unwrap();
    store
        .issue_server(
            "vpn.example.com",
            &["192.0.2.1".into()],
            365,
            now,
            &mut rng(4),
        )
        .unwrap();

    // Before revocation: plain and CRL-checked verification both succeed.
    let out = openssl(dir, &["verify", "-CAfile", "ca.crt", "clients/alice.crt"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = openssl(
        dir,
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "ca.crt",
            "-CRLfile",
            "crl.pem",
            "clients/alice.crt",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = openssl(
        dir,
        &[
            "verify",
            "-purpose",
            "sslserver",
            "-verify_hostname",
            "vpn.example.com",
            "-verify_ip",
            "192.0.2.1",
            "-CAfile",
            "ca.crt",
            "servers/vpn.example.com.crt",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = openssl(
        dir,
        &[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            "ca.crt",
            "clients/alice.crt",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(crl_number(dir), 1);

    // Revoke alice.
    store
        .revoke("alice", RevocationReason::KeyCompromise, now)
        .unwrap();
    let out = openssl(
        dir,
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "ca.crt",
            "-CRLfile",
            "crl.pem",
            "clients/alice.crt",
        ],
    );
    assert!(
        !out.status.success(),
        "revoked cert accepted: {}",
        text(&out)
    );
    assert!(text(&out).contains("revoked"), "{}", text(&out));
    // bob is still fine.
    let out = openssl(
        dir,
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "ca.crt",
            "-CRLfile",
            "crl.pem",
            "clients/bob.crt",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    // The CRL is signed by the CA, and its number went up.
    let out = openssl(
        dir,
        &["crl", "-in", "crl.pem", "-CAfile", "ca.crt", "-noout"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("verify OK"), "{}", text(&out));
    assert_eq!(crl_number(dir), 2);

    // A second revocation bumps it again and lists the reason.
    store
        .revoke("bob", RevocationReason::CessationOfOperation, now)
        .unwrap();
    assert_eq!(crl_number(dir), 3);
    let out = openssl(dir, &["crl", "-in", "crl.pem", "-noout", "-text"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("Key Compromise"), "{t}");
    assert!(t.contains("Cessation Of Operation"), "{t}");
    assert!(t.contains("Version 2"), "{t}");
    assert_eq!(t.matches("Serial Number:").count(), 2, "{t}");

    // The CA certificate carries the expected constraints.
    let out = openssl(dir, &["x509", "-in", "ca.crt", "-noout", "-text"]);
    let t = text(&out);
    assert!(t.contains("CA:TRUE, pathlen:0"), "{t}");
    assert!(t.contains("Certificate Sign, CRL Sign"), "{t}");
    assert!(t.contains("prime256v1") || t.contains("P-256"), "{t}");
    let out = openssl(
        dir,
        &["x509", "-in", "clients/alice.crt", "-noout", "-text"],
    );
    let t = text(&out);
    assert!(t.contains("TLS Web Client Authentication"), "{t}");
    assert!(!t.contains("TLS Web Server Authentication"), "{t}");
    assert!(t.contains("URI:urn:aura:client:alice"), "{t}");
    assert!(t.contains("CA:FALSE"), "{t}");
}
