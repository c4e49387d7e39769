//! The verifier accepts exactly the certificates it should, and says why it rejects the rest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aura_pki::{
    CertificateAuthority, IssuedCert, RevocationReason, RevokedCert, Role, Serial, SignedCrl,
    Validity, Verifier, VerifyError,
};
use common::{rng, t0, unix};
use rand_chacha::ChaCha20Rng;
use time::{Duration, OffsetDateTime};

struct Fixture {
    rng: ChaCha20Rng,
    ca: CertificateAuthority,
    crl: SignedCrl,
}

fn ca_named(name: &str, rng: &mut ChaCha20Rng) -> CertificateAuthority {
    CertificateAuthority::generate(
        name,
        Validity::starting_at(t0(), Duration::days(3650)).unwrap(),
        Serial::random(rng),
    )
    .unwrap()
}

impl Fixture {
    fn new() -> Self {
        let mut rng = rng(42);
        let ca = ca_named("Aura CA", &mut rng);
        let crl = ca
            .sign_crl(1, t0(), t0() + Duration::days(180), &[])
            .unwrap();
        Fixture { rng, ca, crl }
    }

    fn verifier(&self) -> Verifier {
        Verifier::new(self.ca.cert_der(), [&self.crl.der]).unwrap()
    }

    fn client(&mut self, id: &str, days: u32) -> IssuedCert {
        let serial = Serial::random(&mut self.rng);
        self.ca
            .issue_client(id, Validity::days_from(t0(), days).unwrap(), serial)
            .unwrap()
    }

    fn server(&mut self, name: &str, sans: &[&str]) -> IssuedCert {
        let serial = Serial::random(&mut self.rng);
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        self.ca
            .issue_server(name, &sans, Validity::days_from(t0(), 365).unwrap(), serial)
            .unwrap()
    }

    fn revoke(&self, number: u64, certs: &[&IssuedCert]) -> SignedCrl {
        let revoked: Vec<RevokedCert> = certs
            .iter()
            .map(|c| RevokedCert {
                serial: c.serial.clone(),
                revoked_at: t0() + Duration::hours(1),
                reason: RevocationReason::KeyCompromise,
            })
            .collect();
        self.ca
            .sign_crl(
                number,
                t0() + Duration::hours(1),
                t0() + Duration::days(180),
                &revoked,
            )
            .unwrap()
    }
}

fn soon() -> OffsetDateTime {
    t0() + Duration::hours(2)
}

#[test]
fn valid_client_is_accepted_with_its_id() {
    let mut f = Fixture::new();
    let alice = f.client("alice", 30);
    let peer = f
        .verifier()
        .verify_client(&alice.cert_der, unix(soon()))
        .unwrap();
    assert_eq!(peer.id, "alice");
    assert_eq!(peer.role, Role::Client);
    assert_eq!(peer.serial, alice.serial);
    assert_eq!(peer.not_after, alice.not_after);
}

#[test]
fn valid_server_is_accepted_for_its_names_and_ips() {
    let mut f = Fixture::new();
    let gw = f.server(
        "vpn.example.com",
        &["alt.example.com", "192.0.2.7", "2001:db8::7"],
    );
    let v = f.verifier();
    for name in [
        "vpn.example.com",
        "alt.example.com",
        "192.0.2.7",
        "2001:db8::7",
    ] {
        let peer = v.verify_server(&gw.cert_der, name, unix(soon())).unwrap();
        assert_eq!(peer.id, "vpn.example.com");
        assert_eq!(peer.role, Role::Server);
    }
}

#[test]
fn expired_certificate_is_rejected_as_expired() {
    let mut f = Fixture::new();
    let alice = f.client("alice", 30);
    let err = f
        .verifier()
        .verify_client(&alice.cert_der, unix(t0() + Duration::days(31)))
        .unwrap_err();
    assert!(matches!(err, VerifyError::Expired { .. }), "{err:?}");
    assert!(!err.is_local());
}

#[test]
fn not_yet_valid_certificate_is_rejected_as_not_yet_valid() {
    let mut f = Fixture::new();
    let alice = f.client("alice", 30);
    let err = f
        .verifier()
        .verify_client(&alice.cert_der, unix(t0() - Duration::days(1)))
        .unwrap_err();
    assert!(matches!(err, VerifyError::NotYetValid { .. }), "{err:?}");
}

#[test]
fn certificate_from_another_ca_is_an_unknown_issuer() {
    let mut f = Fixture::new();
    // A CA with a different name, and an impostor CA with the same name but another key.
    for name in ["Other CA", "Aura CA"] {
        let other = ca_named(name, &mut f.rng);
        let mallory = other
            .issue_client(
                "mallory",
                Validity::days_from(t0(), 30).unwrap(),
                Serial::random(&mut f.rng),
            )
            .unwrap();
        let err = f
            .verifier()
            .verify_client(&mallory.cert_der, unix(soon()))
            .unwrap_err();
        assert!(
            matches!(err, VerifyError::UnknownIssuer(_)),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn revoked_certificate_is_rejected_as_revoked() {
    let mut f = Fixture::new();
    let alice = f.client("alice", 30);
    let bob = f.client("bob", 30);
    let mut v = f.verifier();
    v.verify_client(&alice.cert_der, unix(soon())).unwrap();

    let crl2 = f.revoke(2, &[&alice]);
    v.replace_crls([&crl2.der]).unwrap();
    assert_eq!(
        v.verify_client(&alice.cert_der, unix(soon())),
        Err(VerifyError::Revoked)
    );
    // Others stay valid.
    assert_eq!(
        v.verify_client(&bob.cert_der, unix(soon())).unwrap().id,
        "bob"
    );
}

/// A peer verified earlier is re-checked from what the verifier returned (no
/// certificate kept): a new CRL that lists it refuses it, others pass; it expires; a
/// CRL past its nextUpdate refuses everyone; and a verifier knows its CA from another.
#[test]
fn a_verified_peer_is_rechecked_against_a_new_crl_and_the_clock() {
    let mut f = Fixture::new();
    let alice = f.client("alice", 30);
    let bob = f.client("bob", 30);
    let mut v = f.verifier();
    let a = v.verify_client(&alice.cert_der, unix(soon())).unwrap();
    let b = v.verify_client(&bob.cert_der, unix(soon())).unwrap();
    assert_eq!(v.recheck(&a, unix(soon())), Ok(()));

    v.replace_crls([&f.revoke(2, &[&alice]).der]).unwrap();
    assert_eq!(v.recheck(&a, unix(soon())), Err(VerifyError::Revoked));
    assert_eq!(v.recheck(&b, unix(soon())), Ok(()));

    let late = unix(t0() + Duration::days(31));
    assert!(matches!(
        v.recheck(&b, late),
        Err(VerifyError::Expired { .. })
    ));
    let stale = unix(t0() + Duration::days(181));
    let long_lived = f.client("carol", 365);
    let c = f
        .verifier()
        .verify_client(&long_lived.cert_der, unix(soon()))
        .unwrap();
    assert!(matches!(
        v.recheck(&c, stale),
        Err(VerifyError::CrlExpired { .. })
    ));

    assert!(v.same_ca(&f.verifier()));
    let other = ca_named("Aura CA", &mut f.rng);
    let crl = other
        .sign_crl(1, t0(), t0() + Duration::days(180), &[])
        .unwrap();
    assert!(!v.same_ca(&Verifier::new(other.cert_der(), [&crl.der]).unwrap()));
}

#[test]
fn newest_crl_wins_whatever_the_order() {
    let mut f = Fixture::new();
    let alice = f.client("alice", 30);
    let crl2 = f.revoke(2, &[&alice]);
    for crls in [
        vec![f.crl.der.clone(), crl2.der.clone()],
        vec![crl2.der.clone(), f.crl.der.clone()],
    ] {
        let v = Verifier::new(f.ca.cert_der(), crls).unwrap();
        assert_eq!(v.crl_number(), &[2]);
        assert_eq!(
            v.verify_client(&alice.cert_der, unix(soon())),
            Err(VerifyError::Revoked)
        );
    }
}

#[test]
fn wrong_role_is_rejected_both_ways() {
    let mut f = Fixture::new();
    let alice = f.client("alice", 30);
    let gw = f.server("vpn.example.com", &[]);
    let v = f.verifier();

    let err = v.verify_client(&gw.cert_der, unix(soon())).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::WrongRole {
                expected: Role::Client,
                ..
            }
        ),
        "{err:?}"
    );
    let err = v
        .verify_server(&alice.cert_der, "alice", unix(soon()))
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::WrongRole {
                expected: Role::Server,
                ..
            }
        ),
        "{err:?}"
    );
    // The CA certificate itself is not a peer certificate.
    let err = v.verify_client(f.ca.cert_der(), unix(soon())).unwrap_err();
    assert!(matches!(err, VerifyError::WrongRole { .. }), "{err:?}");
}

#[test]
fn server_name_mismatch_is_rejected() {
    let mut f = Fixture::new();
    let gw = f.server("vpn.example.com", &["192.0.2.7"]);
    let v = f.verifier();
    for wrong in ["other.example.com", "example.com", "192.0.2.8"] {
        let err = v
            .verify_server(&gw.cert_der, wrong, unix(soon()))
            .unwrap_err();
        match err {
            VerifyError::NameMismatch {
                expected,
                presented,
            } => {
                assert_eq!(expected, wrong);
                assert!(
                    presented.iter().any(|p| p == "vpn.example.com"),
                    "{presented:?}"
                );
            }
            other => panic!("{wrong}: {other:?}"),
        }
    }
    let err = v
        .verify_server(&gw.cert_der, "not a name", unix(soon()))
        .unwrap_err();
    assert!(matches!(err, VerifyError::InvalidServerName(_)), "{err:?}");
    assert!(err.is_local());
}

#[test]
fn crl_past_next_update_is_rejected() {
    let mut f = Fixture::new();
    let alice = f.client("alice", 365);
    let err = f
        .verifier()
        .verify_client(&alice.cert_der, unix(t0() + Duration::days(181)))
        .unwrap_err();
    assert!(matches!(err, VerifyError::CrlExpired { .. }), "{err:?}");
    assert!(err.is_local());
}

#[test]
fn crl_from_the_future_is_refused_until_its_time() {
    let mut f = Fixture::new();
    let alice = f.client("alice", 365);
    let later =
        f.ca.sign_crl(2, t0() + Duration::days(3), t0() + Duration::days(30), &[])
            .unwrap();
    let v = Verifier::new(f.ca.cert_der(), [&later.der]).unwrap();
    let err = v
        .verify_client(&alice.cert_der, unix(t0() + Duration::days(1)))
        .unwrap_err();
    assert!(matches!(err, VerifyError::CrlNotYetValid { .. }), "{err:?}");
    assert!(err.is_local());
    // Within the allowed skew, and once its time has come, it is used.
    let skewed = t0() + Duration::days(3) - Duration::minutes(4);
    v.verify_client(&alice.cert_der, unix(skewed)).unwrap();
    v.verify_client(&alice.cert_der, unix(t0() + Duration::days(4)))
        .unwrap();
}

#[test]
fn crl_without_next_update_is_refused_at_construction() {
    let f = Fixture::new();
    let der = without_next_update(&f.crl.der, &f.ca);
    // The edited CRL is well formed and correctly signed: only nextUpdate is missing.
    let err = Verifier::new(f.ca.cert_der(), [&der]).unwrap_err();
    match &err {
        VerifyError::BadCrl(why) => assert!(why.contains("no nextUpdate"), "{why}"),
        other => panic!("{other:?}"),
    }
}

/// `crl` with its nextUpdate field removed, re-signed by `ca` (ECDSA P-256, SHA-256).
fn without_next_update(crl: &[u8], ca: &CertificateAuthority) -> Vec<u8> {
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::DecodePrivateKey;
    let outer = der_items(der_body(crl));
    let tbs = der_items(der_body(outer[0]));
    // version, signature, issuer, thisUpdate, nextUpdate (UTCTime or GeneralizedTime), ...
    assert!(matches!(tbs[4][0], 0x17 | 0x18), "nextUpdate expected");
    let fields: Vec<u8> = tbs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 4)
        .flat_map(|(_, t)| t.to_vec())
        .collect();
    let tbs = der_wrap(0x30, &fields);
    let key_pem = ca.key_pem();
    let key_der = pem::parse(key_pem.as_bytes()).unwrap();
    let key = p256::ecdsa::SigningKey::from_pkcs8_der(key_der.contents()).unwrap();
    let sig: p256::ecdsa::DerSignature = key.sign(&tbs);
    let mut bits = vec![0u8];
    bits.extend_from_slice(sig.as_bytes());
    let mut body = tbs;
    body.extend_from_slice(outer[1]);
    body.extend_from_slice(&der_wrap(0x03, &bits));
    der_wrap(0x30, &body)
}

/// The contents of the DER element `d` (tag and length stripped).
fn der_body(d: &[u8]) -> &[u8] {
    let (hdr, len) = der_header(d);
    &d[hdr..hdr + len]
}

/// (header length, content length) of the DER element at the start of `d`.
fn der_header(d: &[u8]) -> (usize, usize) {
    match d[1] {
        n if n < 0x80 => (2, usize::from(n)),
        n => {
            let k = usize::from(n & 0x7f);
            let len = d[2..2 + k]
                .iter()
                .fold(0usize, |a, b| (a << 8) | usize::from(*b));
            (2 + k, len)
        }
    }
}

/// The consecutive DER elements of `d`, each with its tag and length.
fn der_items(mut d: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let (hdr, len) = der_header(d);
        out.push(&d[..hdr + len]);
        d = &d[hdr + len..];
    }
    out
}

/// A DER element of `tag` around `body`.
fn der_wrap(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = body.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(body);
    out
}

#[test]
fn crl_not_signed_by_the_ca_is_refused_at_construction() {
    let mut f = Fixture::new();
    for name in ["Other CA", "Aura CA"] {
        let other = ca_named(name, &mut f.rng);
        let foreign = other
            .sign_crl(5, t0(), t0() + Duration::days(10), &[])
            .unwrap();
        let err = Verifier::new(f.ca.cert_der(), [&foreign.der]).unwrap_err();
        assert!(matches!(err, VerifyError::BadCrl(_)), "{name}: {err:?}");
        // replace_crls refuses it too and keeps the old CRL.
        let mut v = f.verifier();
        assert!(matches!(
            v.replace_crls([&foreign.der]),
            Err(VerifyError::BadCrl(_))
        ));
        assert_eq!(v.crl_number(), &[1]);
    }
}

#[test]
fn missing_or_corrupt_inputs_are_reported() {
    let mut f = Fixture::new();
    let alice = f.client("alice", 30);

    let none: [&[u8]; 0] = [];
    assert_eq!(
        Verifier::new(f.ca.cert_der(), none).unwrap_err(),
        VerifyError::NoCrl
    );

    let mut corrupt = f.crl.der.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff; // break the signature
    assert!(matches!(
        Verifier::new(f.ca.cert_der(), [&corrupt]),
        Err(VerifyError::BadCrl(_))
    ));
    assert!(matches!(
        Verifier::new(f.ca.cert_der(), [b"garbage".as_slice()]),
        Err(VerifyError::BadCrl(_))
    ));
    assert!(matches!(
        Verifier::new(b"not a cert", [&f.crl.der]),
        Err(VerifyError::BadCa(_))
    ));

    let v = f.verifier();
    let err = v
        .verify_client(b"\x30\x03\x02\x01\x00", unix(soon()))
        .unwrap_err();
    assert!(matches!(err, VerifyError::Malformed(_)), "{err:?}");
    let mut tampered = alice.cert_der.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x01;
    assert!(v.verify_client(&tampered, unix(soon())).is_err());
}

#[test]
fn verifier_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Verifier>();
    assert_send_sync::<VerifyError>();
}
