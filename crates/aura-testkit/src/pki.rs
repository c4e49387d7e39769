//! PKI fixtures: a test CA with a server, two clients, a CRL, and factories for every
//! kind of identity a verifier must refuse.

use std::fmt;

use aura_pki::{
    CertificateAuthority, IssuedCert, PkiError, RevocationReason, RevokedCert, Serial, SignedCrl,
    Validity, Verifier, VerifyError,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

/// The test CA's common name (also used by [`TestPki::other_deployment`] and the CA
/// behind [`TestPki::foreign_client`], so a "wrong CA" is refused by signature, not by
/// name).
pub const TEST_CA_NAME: &str = "Aura Test CA";

/// The server name in [`TestPki::server`]'s certificate.
pub const TEST_SERVER_NAME: &str = "server.test";

/// A certificate with its private key, ready to hand to an endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 DER (test material: not zeroized).
    pub key_pkcs8_der: Vec<u8>,
    /// The subject CN: the client id or the server name.
    pub id: String,
    /// The certificate serial.
    pub serial: Serial,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id)
            .field("serial", &self.serial)
            .field("cert_der_len", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The certificate as a rustls type.
    pub fn cert(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.cert_der.clone())
    }

    /// The private key as a rustls type.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8_der.clone()))
    }

    fn from_issued(issued: IssuedCert) -> Result<Self, FixtureError> {
        let pem = issued
            .key_pem
            .as_ref()
            .ok_or_else(|| FixtureError::KeyPem("the certificate came without a key".into()))?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| FixtureError::KeyPem(e.to_string()))?;
        Ok(Identity {
            cert_der: issued.cert_der,
            key_pkcs8_der: key.secret_pkcs8_der().to_vec(),
            id: issued.id,
            serial: issued.serial,
        })
    }
}

/// Why a fixture could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum FixtureError {
    /// aura-pki refused to generate, issue or sign.
    Pki(PkiError),
    /// aura-pki refused to build a verifier.
    Verify(VerifyError),
    /// The private key aura-pki returned is not PKCS#8 PEM (a bug).
    KeyPem(String),
    /// [`TestPki::revoke`] was given an id this PKI never issued.
    UnknownId(String),
}

impl fmt::Display for FixtureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FixtureError::Pki(e) => write!(f, "PKI fixture: {e}"),
            FixtureError::Verify(e) => write!(f, "PKI fixture verifier: {e}"),
            FixtureError::KeyPem(e) => write!(f, "PKI fixture: private key is not PKCS#8: {e}"),
            FixtureError::UnknownId(id) => {
                write!(f, "PKI fixture: no certificate issued to {id:?}")
            }
        }
    }
}

impl std::error::Error for FixtureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FixtureError::Pki(e) => Some(e),
            FixtureError::Verify(e) => Some(e),
            FixtureError::KeyPem(_) | FixtureError::UnknownId(_) => None,
        }
    }
}

impl From<PkiError> for FixtureError {
    fn from(e: PkiError) -> Self {
        FixtureError::Pki(e)
    }
}

impl From<VerifyError> for FixtureError {
    fn from(e: VerifyError) -> Self {
        FixtureError::Verify(e)
    }
}

/// Midnight UTC on the given (proleptic Gregorian) date. Infallible for the years tests
/// use.
pub fn utc_date(year: i32, month: u8, day: u8) -> OffsetDateTime {
    // Days since 1970-01-01 from a civil date, counting years from March so the leap
    // day falls at the end of the year.
    let (m, d) = (i64::from(month), i64::from(day));
    let y = i64::from(year) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (m + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    OffsetDateTime::UNIX_EPOCH.saturating_add(time::Duration::days(days))
}

fn period(from: (i32, u8, u8), to: (i32, u8, u8)) -> Result<Validity, PkiError> {
    Validity::new(utc_date(from.0, from.1, from.2), utc_date(to.0, to.1, to.2))
}

/// Leaf validity of the good fixtures: 2029-01-01 .. 2035-01-01.
fn leaf_validity() -> Result<Validity, PkiError> {
    period((2029, 1, 1), (2035, 1, 1))
}

fn new_ca(rng: &mut ChaCha20Rng) -> Result<CertificateAuthority, PkiError> {
    CertificateAuthority::generate(
        TEST_CA_NAME,
        period((2029, 1, 1), (2040, 1, 1))?,
        Serial::random(rng),
    )
}

/// A complete test deployment: a CA, a server, clients "alice" and "bob", and a CRL.
///
/// | item | validity |
/// |---|---|
/// | CA "Aura Test CA" | 2029-01-01 .. 2040-01-01 |
/// | server "server.test", clients "alice", "bob" | 2029-01-01 .. 2035-01-01 |
/// | CRL number 1 (empty at first) | thisUpdate 2029-12-01, nextUpdate 2031-01-01 |
///
/// Everything verifies at [`SimClock::wall`](crate::SimClock::wall)'s default time
/// (2030-01-01). Serials are drawn from a ChaCha20 RNG seeded by the seed; keys and
/// signatures come from aws-lc-rs's system RNG, so the bytes differ between runs.
pub struct TestPki {
    seed: u64,
    rng: ChaCha20Rng,
    ca: CertificateAuthority,
    server: Identity,
    alice: Identity,
    bob: Identity,
    /// Identities from [`TestPki::issue_client`].
    extra: Vec<Identity>,
    revoked: Vec<RevokedCert>,
    crl: SignedCrl,
}

impl fmt::Debug for TestPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPki")
            .field("seed", &self.seed)
            .field("ca", &self.ca)
            .field("crl_number", &self.crl.number)
            .field("revoked", &self.revoked.len())
            .finish_non_exhaustive()
    }
}

impl TestPki {
    /// Builds the deployment described on [`TestPki`].
    pub fn new(seed: u64) -> Result<Self, FixtureError> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let ca = new_ca(&mut rng)?;
        let server = Identity::from_issued(ca.issue_server(
            TEST_SERVER_NAME,
            &[],
            leaf_validity()?,
            Serial::random(&mut rng),
        )?)?;
        let alice = Identity::from_issued(ca.issue_client(
            "alice",
            leaf_validity()?,
            Serial::random(&mut rng),
        )?)?;
        let bob = Identity::from_issued(ca.issue_client(
            "bob",
            leaf_validity()?,
            Serial::random(&mut rng),
        )?)?;
        let crl = Self::sign(&ca, 1, &[])?;
        Ok(TestPki {
            seed,
            rng,
            ca,
            server,
            alice,
            bob,
            extra: Vec::new(),
            revoked: Vec::new(),
            crl,
        })
    }

    fn sign(
        ca: &CertificateAuthority,
        number: u64,
        revoked: &[RevokedCert],
    ) -> Result<SignedCrl, PkiError> {
        ca.sign_crl(number, utc_date(2029, 12, 1), utc_date(2031, 1, 1), revoked)
    }

    /// The CA.
    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &[u8] {
        self.ca.cert_der()
    }

    /// The current CRL, DER.
    pub fn crl_der(&self) -> &[u8] {
        &self.crl.der
    }

    /// The current CRL.
    pub fn crl(&self) -> &SignedCrl {
        &self.crl
    }

    /// A verifier trusting the CA with the current CRL.
    pub fn verifier(&self) -> Result<Verifier, VerifyError> {
        Verifier::new(self.ca_der(), [self.crl_der()])
    }

    /// The server "server.test" (EKU serverAuth).
    pub fn server(&self) -> &Identity {
        &self.server
    }

    /// The client "alice".
    pub fn alice(&self) -> &Identity {
        &self.alice
    }

    /// The client "bob".
    pub fn bob(&self) -> &Identity {
        &self.bob
    }

    /// Issues another good client (valid 2029-01-01 .. 2035-01-01) that
    /// [`revoke`](Self::revoke) knows about.
    pub fn issue_client(&mut self, id: &str) -> Result<Identity, FixtureError> {
        let identity = Identity::from_issued(self.ca.issue_client(
            id,
            leaf_validity()?,
            Serial::random(&mut self.rng),
        )?)?;
        self.extra.push(identity.clone());
        Ok(identity)
    }

    /// Issues another server (EKU serverAuth) named `name`, valid as the others are: a
    /// relay or a second exit of the same deployment.
    pub fn issue_server(&mut self, name: &str) -> Result<Identity, FixtureError> {
        Identity::from_issued(self.ca.issue_server(
            name,
            &[],
            leaf_validity()?,
            Serial::random(&mut self.rng),
        )?)
    }

    /// A client certificate for "alice" from this CA that expired: valid 2020-01-01 ..
    /// 2021-01-01. Refused with [`VerifyError::Expired`].
    pub fn expired_client(&mut self) -> Result<Identity, FixtureError> {
        self.bad_client(period((2020, 1, 1), (2021, 1, 1))?)
    }

    /// A client certificate for "alice" from this CA that is not valid yet: valid
    /// 2039-01-01 .. 2039-12-01. Refused with [`VerifyError::NotYetValid`].
    pub fn not_yet_valid_client(&mut self) -> Result<Identity, FixtureError> {
        self.bad_client(period((2039, 1, 1), (2039, 12, 1))?)
    }

    fn bad_client(&mut self, validity: Validity) -> Result<Identity, FixtureError> {
        let serial = Serial::random(&mut self.rng);
        Identity::from_issued(self.ca.issue_client("alice", validity, serial)?)
    }

    /// A client certificate for "alice", otherwise valid, issued by a different CA with
    /// the same name. Refused with [`VerifyError::UnknownIssuer`].
    pub fn foreign_client(&mut self) -> Result<Identity, FixtureError> {
        let foreign = new_ca(&mut self.rng)?;
        let serial = Serial::random(&mut self.rng);
        Identity::from_issued(foreign.issue_client("alice", leaf_validity()?, serial)?)
    }

    /// The server identity, to present in the client role. Refused by
    /// `verify_client` with [`VerifyError::WrongRole`].
    pub fn server_as_client(&self) -> Identity {
        self.server.clone()
    }

    /// Alice's identity, to present in the server role. Refused by `verify_server` with
    /// [`VerifyError::WrongRole`].
    pub fn client_as_server(&self) -> Identity {
        self.alice.clone()
    }

    /// Revokes every certificate this PKI issued to `id` (the server, "alice", "bob" or
    /// one from [`issue_client`](Self::issue_client)) by signing a new CRL with the next
    /// number. Returns the new CRL, DER (also available from
    /// [`crl_der`](Self::crl_der)); feed it to `Verifier::replace_crls`.
    pub fn revoke(&mut self, id: &str) -> Result<Vec<u8>, FixtureError> {
        let serials: Vec<Serial> = [&self.server, &self.alice, &self.bob]
            .into_iter()
            .chain(self.extra.iter())
            .filter(|i| i.id == id)
            .map(|i| i.serial.clone())
            .collect();
        if serials.is_empty() {
            return Err(FixtureError::UnknownId(id.to_owned()));
        }
        let mut revoked = self.revoked.clone();
        for serial in serials {
            if !revoked.iter().any(|r| r.serial == serial) {
                revoked.push(RevokedCert {
                    serial,
                    revoked_at: utc_date(2029, 12, 1),
                    reason: RevocationReason::KeyCompromise,
                });
            }
        }
        let number = self.crl.number.saturating_add(1);
        self.crl = Self::sign(&self.ca, number, &revoked)?;
        self.revoked = revoked;
        Ok(self.crl.der.clone())
    }

    /// A second, independent deployment (its own CA with the same name, server and
    /// clients), for "wrong CA" tests. Deterministically derived from this one's seed.
    pub fn other_deployment(&self) -> Result<TestPki, FixtureError> {
        TestPki::new(self.seed ^ 0x9e37_79b9_7f4a_7c15)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::SimClock;
    use aura_pki::Role;

    #[test]
    fn utc_date_matches_time_crate() {
        for (y, m, d) in [
            (1970, 1, 1),
            (2000, 2, 29),
            (2020, 1, 1),
            (2029, 12, 1),
            (2030, 1, 1),
            (2039, 12, 1),
            (2100, 3, 1),
        ] {
            let month = time::Month::try_from(m).unwrap();
            let expected = time::Date::from_calendar_date(y, month, d)
                .unwrap()
                .midnight()
                .assume_utc();
            assert_eq!(utc_date(y, m, d), expected, "{y}-{m}-{d}");
        }
        assert_eq!(
            utc_date(2030, 1, 1).unix_timestamp(),
            crate::clock::DEFAULT_WALL_START_SECS as i64
        );
    }

    #[test]
    fn good_identities_verify_at_default_wall_time() {
        let pki = TestPki::new(1).unwrap();
        let now = SimClock::new().wall();
        let v = pki.verifier().unwrap();

        let alice = v.verify_client(&pki.alice().cert_der, now).unwrap();
        assert_eq!((alice.id.as_str(), alice.role), ("alice", Role::Client));
        assert_eq!(alice.serial, pki.alice().serial);
        assert_eq!(v.verify_client(&pki.bob().cert_der, now).unwrap().id, "bob");
        let server = v
            .verify_server(&pki.server().cert_der, TEST_SERVER_NAME, now)
            .unwrap();
        assert_eq!(
            (server.id.as_str(), server.role),
            (TEST_SERVER_NAME, Role::Server)
        );
        assert!(matches!(
            v.verify_server(&pki.server().cert_der, "other.test", now),
            Err(VerifyError::NameMismatch { .. })
        ));

        // The keys are PKCS#8 DER (SEQUENCE) and the rustls views match.
        for id in [pki.server(), pki.alice(), pki.bob()] {
            assert_eq!(id.key_pkcs8_der.first(), Some(&0x30));
            assert_eq!(id.cert().as_ref(), id.cert_der.as_slice());
            assert!(matches!(id.key(), PrivateKeyDer::Pkcs8(_)));
        }
        assert!(!format!("{:?}", pki.alice()).contains("key_pkcs8"));
    }

    #[test]
    fn bad_identities_fail_with_the_expected_error() {
        let mut pki = TestPki::new(2).unwrap();
        let now = SimClock::new().wall();
        let v = pki.verifier().unwrap();

        let expired = pki.expired_client().unwrap();
        assert!(matches!(
            v.verify_client(&expired.cert_der, now),
            Err(VerifyError::Expired { .. })
        ));
        let early = pki.not_yet_valid_client().unwrap();
        assert!(matches!(
            v.verify_client(&early.cert_der, now),
            Err(VerifyError::NotYetValid { .. })
        ));
        let foreign = pki.foreign_client().unwrap();
        assert!(matches!(
            v.verify_client(&foreign.cert_der, now),
            Err(VerifyError::UnknownIssuer(_))
        ));
        assert!(matches!(
            v.verify_client(&pki.server_as_client().cert_der, now),
            Err(VerifyError::WrongRole {
                expected: Role::Client,
                ..
            })
        ));
        assert!(matches!(
            v.verify_server(&pki.client_as_server().cert_der, TEST_SERVER_NAME, now),
            Err(VerifyError::WrongRole {
                expected: Role::Server,
                ..
            })
        ));

        let other = pki.other_deployment().unwrap();
        assert_ne!(other.ca_der(), pki.ca_der());
        assert!(matches!(
            v.verify_client(&other.alice().cert_der, now),
            Err(VerifyError::UnknownIssuer(_))
        ));
        assert!(matches!(
            v.verify_server(&other.server().cert_der, TEST_SERVER_NAME, now),
            Err(VerifyError::UnknownIssuer(_))
        ));
    }

    #[test]
    fn revoke_signs_a_new_crl() {
        let mut pki = TestPki::new(3).unwrap();
        let now = SimClock::new().wall();
        let mut v = pki.verifier().unwrap();
        let carol = pki.issue_client("carol").unwrap();
        v.verify_client(&carol.cert_der, now).unwrap();

        let crl = pki.revoke("alice").unwrap();
        assert_eq!(crl, pki.crl_der());
        assert_eq!(pki.crl().number, 2);
        v.replace_crls([&crl]).unwrap();
        assert_eq!(
            v.verify_client(&pki.alice().cert_der, now),
            Err(VerifyError::Revoked)
        );
        v.verify_client(&pki.bob().cert_der, now).unwrap();
        v.verify_client(&carol.cert_der, now).unwrap();

        pki.revoke("carol").unwrap();
        let v = pki.verifier().unwrap();
        assert_eq!(v.crl_number(), [3]);
        assert_eq!(
            v.verify_client(&carol.cert_der, now),
            Err(VerifyError::Revoked)
        );
        assert_eq!(
            v.verify_client(&pki.alice().cert_der, now),
            Err(VerifyError::Revoked)
        );
        v.verify_client(&pki.bob().cert_der, now).unwrap();

        assert!(matches!(
            pki.revoke("nobody"),
            Err(FixtureError::UnknownId(_))
        ));
    }

    #[test]
    fn crl_expires_with_the_wall_clock() {
        let pki = TestPki::new(4).unwrap();
        let mut clock = SimClock::new();
        clock.advance(std::time::Duration::from_secs(366 * 86_400)); // 2031-01-02
        assert!(matches!(
            pki.verifier()
                .unwrap()
                .verify_client(&pki.alice().cert_der, clock.wall()),
            Err(VerifyError::CrlExpired { .. })
        ));
    }
}
