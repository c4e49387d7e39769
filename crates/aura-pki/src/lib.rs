//! Aura's public-key infrastructure: the CA, certificate issuing, X.509 CRLs and the one
//! certificate verifier shared by every carrier (TLS, QUIC and the raw-UDP handshake).
//!
//! # Role
//!
//! * [`CertificateAuthority`]: an ECDSA P-256 CA (self-signed, BasicConstraints CA with
//!   path length 0, KeyUsage keyCertSign + cRLSign + digitalSignature). It issues server
//!   certificates (EKU serverAuth, SAN DNS/IP names) and client certificates (EKU
//!   clientAuth, CN = client id, SAN URI `urn:aura:client:<id>`), and signs standard
//!   RFC 5280 v2 CRLs ([`CertificateAuthority::sign_crl`]).
//! * [`Verifier`]: rustls-webpki path validation against the CA with **strict**
//!   revocation checking (a CRL signed by the CA is mandatory, unknown status is denied,
//!   an expired CRL is an error), the exact EKU for the role, and server-name checking.
//!   It returns a [`VerifiedPeer`] (id, role, serial, expiry) or a [`VerifyError`] that
//!   tells an expired, revoked or foreign certificate apart from a local CRL problem.
//! * [`PkiStore`]: the only module touching files; the directory behind `aura pki`.
//! * [`bundle`]: a client bundle as one `aura://import/v1/` URI sealed under a one-time
//!   code (docs/PROTOCOL.md §13), for `aura provision-client --uri/--qr` and
//!   `aura client import`.
//!
//! # Guarantees
//!
//! * Pure functions of (bytes, time): no clock reads anywhere; time is always a
//!   parameter. Serials and client ids come from the caller's `RngCore + CryptoRng`; only
//!   fresh ECDSA keys and signature nonces come from aws-lc-rs's system CSPRNG.
//! * One cryptographic backend (aws-lc-rs); `ring` is not in the dependency tree.
//! * No panics on malformed input and no `unsafe`. Private keys are handed out as
//!   [`zeroize::Zeroizing`] strings and written with mode 0600.
//! * Store writes are atomic per file, and a failed multi-file operation restores what
//!   it had already written.
//!
//! # Example
//!
//! ```
//! use aura_pki::{CertificateAuthority, RevocationReason, RevokedCert, Serial, Validity, Verifier, VerifyError};
//! use rustls_pki_types::UnixTime;
//! use time::{Duration, OffsetDateTime};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # use rand_core::SeedableRng;
//! # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0);
//! let now = OffsetDateTime::from_unix_timestamp(1_900_000_000)?;
//! let ca = CertificateAuthority::generate(
//!     "Aura CA",
//!     Validity::starting_at(now, Duration::days(3650))?,
//!     Serial::random(&mut rng),
//! )?;
//! let alice = ca.issue_client("alice", Validity::days_from(now, 365)?, Serial::random(&mut rng))?;
//! let crl = ca.sign_crl(1, now, now + Duration::days(180), &[])?;
//!
//! let verifier = Verifier::new(ca.cert_der(), [&crl.der])?;
//! let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_900_000_100));
//! assert_eq!(verifier.verify_client(&alice.cert_der, at)?.id, "alice");
//!
//! // Revoke alice: sign a new CRL with a higher number and swap it in.
//! let revoked = RevokedCert { serial: alice.serial.clone(), revoked_at: now, reason: RevocationReason::KeyCompromise };
//! let crl2 = ca.sign_crl(2, now, now + Duration::days(180), &[revoked])?;
//! let verifier = Verifier::new(ca.cert_der(), [&crl2.der])?;
//! assert_eq!(verifier.verify_client(&alice.cert_der, at), Err(VerifyError::Revoked));
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bundle;
mod ca;
mod crl;
mod error;
pub mod knock;
pub mod names;
pub mod request;
mod serial;
pub mod store;
mod time_fmt;
mod types;
mod verify;

pub use ca::{
    CLIENT_URI_PREFIX, CertificateAuthority, DEFAULT_CA_NAME, IssuedCert, cert_der_from_pem,
    crl_der_from_pem,
};
pub use crl::{RevocationReason, RevokedCert, SignedCrl};
pub use error::{BoxError, PkiError, VerifyError};
pub use request::{ClientRequest, NewClientKey, new_client_key};
pub use serial::{SERIAL_LEN, Serial};
pub use store::{
    DEFAULT_CRL_VALIDITY_DAYS, Entry, PkiStore, Revocation, Revoked, StoredCert, write_atomic,
};
pub use types::{CLOCK_SKEW_ALLOWANCE, Role, Validity};
pub use verify::{VerifiedPeer, Verifier};
