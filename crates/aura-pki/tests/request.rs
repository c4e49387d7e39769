//! Certificate requests: a device's own key gets a client certificate, and nothing but
//! a well-formed P-256 request signed by its own key does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use aura_pki::{ClientRequest, PkiError, PkiStore, new_client_key};
use common::{rng, t0, unix, walk};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData};
use time::Duration;
use x509_parser::prelude::FromDer;

fn store(dir: &std::path::Path) -> PkiStore {
    let store = PkiStore::new(dir);
    store
        .init("Aura CA", Duration::days(3650), false, t0(), &mut rng(1))
        .unwrap();
    store
}

/// The SubjectPublicKeyInfo of a certificate, DER.
fn cert_spki(cert_der: &[u8]) -> Vec<u8> {
    let (_, x) = x509_parser::certificate::X509Certificate::from_der(cert_der).unwrap();
    x.public_key().raw.to_vec()
}

/// The SubjectPublicKeyInfo of a PKCS#8 PEM key, DER.
fn key_spki(key_pem: &str) -> Vec<u8> {
    KeyPair::from_pem(key_pem)
        .unwrap()
        .subject_public_key_info()
}

/// A request made with rcgen for `key` with subject CN `cn`.
fn request_for(key: &KeyPair, cn: Option<&str>) -> String {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(cn) = cn {
        dn.push(DnType::CommonName, cn);
    }
    params.distinguished_name = dn;
    params.serialize_request(key).unwrap().pem().unwrap()
}

#[test]
fn a_signed_request_certifies_the_devices_key_and_no_key_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let device = new_client_key("phone").unwrap();
    let request = ClientRequest::from_pem(&device.request_pem).unwrap();
    assert_eq!(request.proposed_id(), Some("phone"));

    let signed = store
        .sign_client_request(&request, None, 365, t0(), &mut rng(2))
        .unwrap();
    assert_eq!(signed.cert.id, "phone");
    assert!(signed.cert.key_pem.is_none());
    assert_eq!(signed.key_path, None);
    assert_eq!(
        cert_spki(&signed.cert.cert_der),
        key_spki(&device.key_pem),
        "the certificate is for the device's key"
    );
    let verifier = store.verifier().unwrap();
    let peer = verifier
        .verify_client(&signed.cert.cert_der, unix(t0() + Duration::hours(1)))
        .unwrap();
    assert_eq!(peer.id, "phone");
    assert_eq!(store.list().unwrap()[0].id, "phone");
    // Nothing in the PKI directory holds the device's key.
    let key_text = device.key_pem.as_str();
    for path in walk(tmp.path()).into_iter().filter(|p| p.is_file()) {
        let body = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(!body.contains(key_text), "{} holds the key", path.display());
    }
    // The operator's id wins over the proposed one; the same id twice is a duplicate.
    let other = new_client_key("phone").unwrap();
    let request = ClientRequest::from_pem(&other.request_pem).unwrap();
    let err = store
        .sign_client_request(&request, None, 365, t0(), &mut rng(3))
        .unwrap_err();
    assert!(matches!(err, PkiError::Duplicate { .. }), "{err:?}");
    let laptop = store
        .sign_client_request(&request, Some("laptop"), 365, t0(), &mut rng(4))
        .unwrap();
    assert_eq!(laptop.cert.id, "laptop");
}

#[test]
fn a_request_without_a_cn_gets_a_random_id() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let request = ClientRequest::from_pem(&request_for(&key, None)).unwrap();
    assert_eq!(request.proposed_id(), None);
    let a = store
        .sign_client_request(&request, None, 30, t0(), &mut rng(5))
        .unwrap();
    assert_eq!(a.cert.id.len(), 36, "a UUIDv4: {}", a.cert.id);
}

#[test]
fn requests_that_are_not_what_they_claim_are_refused() {
    let p256 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let good = request_for(&p256, Some("alice"));

    // A flipped bit anywhere in the signed part breaks the signature.
    let block = pem::parse(&good).unwrap();
    let mut der = block.contents().to_vec();
    let i = der.len() / 2;
    der[i] ^= 0x01;
    let err = ClientRequest::from_der(&der).unwrap_err();
    assert!(matches!(err, PkiError::BadRequest(_)), "{err:?}");

    // Other key types.
    for alg in [&rcgen::PKCS_ECDSA_P384_SHA384, &rcgen::PKCS_ED25519] {
        let key = KeyPair::generate_for(alg).unwrap();
        let err = ClientRequest::from_pem(&request_for(&key, Some("alice"))).unwrap_err();
        assert!(matches!(err, PkiError::WrongKeyType { .. }), "{err:?}");
    }

    // A CN that is no client id.
    let err = ClientRequest::from_pem(&request_for(&p256, Some("../../etc"))).unwrap_err();
    assert!(matches!(err, PkiError::InvalidName { .. }), "{err:?}");

    // Not a request at all.
    let cert = CertificateParams::new(vec!["x.example".into()])
        .unwrap()
        .self_signed(&p256)
        .unwrap()
        .pem();
    let err = ClientRequest::from_pem(&cert).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected a CERTIFICATE REQUEST block"),
        "{err}"
    );
    for junk in [
        "",
        "hello",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    ] {
        let err = ClientRequest::from_pem(junk).unwrap_err();
        assert!(matches!(err, PkiError::BadRequest(_)), "{junk:?}: {err:?}");
    }
    // Trailing bytes after the structure.
    let mut long = pem::parse(&good).unwrap().contents().to_vec();
    long.push(0);
    assert!(matches!(
        ClientRequest::from_der(&long),
        Err(PkiError::BadRequest(_))
    ));
    assert!(ClientRequest::from_pem(&good).is_ok());
}

fn openssl(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl binary is required for this test")
}

#[test]
fn openssl_requests_are_signed_and_ours_verify_in_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = store(&dir.join("pki"));
    // A request made by OpenSSL, as a user without aura on the device would.
    let o = openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "dev.key",
            "-subj",
            "/CN=router-1",
            "-out",
            "dev.csr",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let request =
        ClientRequest::from_pem(&std::fs::read_to_string(dir.join("dev.csr")).unwrap()).unwrap();
    let signed = store
        .sign_client_request(&request, None, 30, t0(), &mut rng(6))
        .unwrap();
    assert_eq!(signed.cert.id, "router-1");
    let key = std::fs::read_to_string(dir.join("dev.key")).unwrap();
    assert_eq!(cert_spki(&signed.cert.cert_der), key_spki(&key));

    // Ours verifies in OpenSSL.
    let device = new_client_key("phone").unwrap();
    std::fs::write(dir.join("ours.csr"), &device.request_pem).unwrap();
    let o = openssl(
        dir,
        &["req", "-in", "ours.csr", "-noout", "-verify", "-subject"],
    );
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("CN=phone") || out.contains("CN = phone"),
        "{out}"
    );
}
