//! Error types: [`PkiError`] for building and storing PKI material, [`VerifyError`] for
//! checking a peer's certificate.

use std::io;
use std::path::PathBuf;

use time::OffsetDateTime;

use crate::time_fmt::rfc3339;
use crate::{Role, Serial};

/// A boxed error from a dependency (rcgen, pem, x509-parser), kept as a cause without
/// making that crate part of this crate's public API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors from creating, loading, issuing, revoking and storing PKI material.
///
/// Messages name the problem; file-related variants name the file. Causes are kept as
/// [`std::error::Error::source`], so print the whole chain (`{:#}` with anyhow).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    // ---- operator input -------------------------------------------------------------------
    /// A client id, server name, SAN or CA name failed validation.
    #[error("invalid {kind} {value:?}: {reason}")]
    InvalidName {
        /// What was being validated ("client id", "server name", ...).
        kind: &'static str,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A validity period or lifetime is unusable.
    #[error("invalid validity: {0}")]
    InvalidValidity(&'static str),

    /// A revocation reason string is not one of the supported kebab-case names.
    #[error(
        "unknown revocation reason {0:?} (expected one of: unspecified, key-compromise, \
         ca-compromise, affiliation-changed, superseded, cessation-of-operation, \
         privilege-withdrawn)"
    )]
    UnknownReason(String),

    /// A serial number string is not 1..=20 bytes of hex.
    #[error("invalid serial number {0:?}: expected hex digits (colons allowed), at most 20 bytes")]
    InvalidSerial(String),

    // ---- key and certificate material ----------------------------------------------------
    /// PEM text could not be decoded, or holds the wrong kind of block.
    #[error("malformed PEM for {what}")]
    BadPem {
        /// What the PEM should have held ("CA certificate", "CA private key", "CRL").
        what: &'static str,
        /// The decoder's complaint.
        #[source]
        source: BoxError,
    },

    /// A private key is well-formed but not ECDSA P-256.
    #[error("wrong private key type: expected ECDSA P-256, found {found}")]
    WrongKeyType {
        /// The algorithm found in the key.
        found: &'static str,
    },

    /// A private key could not be parsed as any supported key type.
    #[error("unreadable private key (expected an unencrypted PKCS#8 or SEC1 ECDSA P-256 key)")]
    BadKey {
        /// The parser's complaint.
        #[source]
        source: BoxError,
    },

    /// The CA private key does not belong to the CA certificate.
    #[error("the CA private key does not match the public key in the CA certificate")]
    KeyMismatch,

    /// A certificate could not be parsed or lacks something this crate requires.
    #[error("unusable {what}: {reason}")]
    BadCertificate {
        /// Which certificate ("CA certificate").
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A certificate signing request is unreadable, not signed by its own key, or asks
    /// for something the CA does not grant.
    #[error("unusable certificate signing request: {0}")]
    BadRequest(String),

    /// Signing a certificate or CRL failed (a bug or a broken key).
    #[error("failed to {action}")]
    Signing {
        /// What was being done ("generate a key", "sign the CRL", ...).
        action: &'static str,
        /// The signer's error.
        #[source]
        source: BoxError,
    },

    // ---- store (files) --------------------------------------------------------------------
    /// A file system operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done ("write", "read", "create directory", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A problem with the content of a particular file; the cause says what.
    #[error("in {}", path.display())]
    File {
        /// The file whose content is at fault.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: Box<PkiError>,
    },

    /// The directory holds no CA.
    #[error("no CA in {}: run `aura pki init`", dir.display())]
    NoCa {
        /// The PKI directory.
        dir: PathBuf,
    },

    /// `init` found an existing CA and was not told to overwrite it.
    #[error("{} already exists: refusing to replace the CA (use --force to overwrite)", path.display())]
    AlreadyInitialized {
        /// The existing file.
        path: PathBuf,
    },

    /// `index.json` is not a valid index.
    #[error("{} is corrupt: {reason}", path.display())]
    CorruptIndex {
        /// The index path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
        /// The JSON error, if any.
        #[source]
        source: Option<serde_json::Error>,
    },

    /// An active (not revoked) certificate with this id already exists.
    #[error(
        "an active {role} certificate for {id:?} already exists (serial {serial}); revoke it first"
    )]
    Duplicate {
        /// The id or server name.
        id: String,
        /// The role of the existing certificate.
        role: Role,
        /// The existing certificate's serial.
        serial: Serial,
    },

    /// No certificate matches the id or serial given to `revoke`.
    #[error("no certificate with id or serial {0:?}")]
    UnknownCertificate(String),

    /// The certificate is already revoked.
    #[error("the certificate {id:?} (serial {serial}) was already revoked at {}", rfc3339(*at))]
    AlreadyRevoked {
        /// Its id.
        id: String,
        /// Its serial.
        serial: Serial,
        /// When it was revoked.
        at: OffsetDateTime,
    },

    /// A counter (CRL number) would overflow.
    #[error("the CRL number cannot be incremented any further")]
    CrlNumberExhausted,

    /// Building a verifier from the store's CA and CRL failed.
    #[error("cannot build a verifier from the stored CA and CRL")]
    Verifier(#[source] VerifyError),
}

impl PkiError {
    /// Follows [`PkiError::File`] wrappers to the error that says what is wrong.
    pub fn innermost(&self) -> &PkiError {
        match self {
            PkiError::File { source, .. } => source.innermost(),
            other => other,
        }
    }

    pub(crate) fn in_file(self, path: impl Into<PathBuf>) -> PkiError {
        PkiError::File {
            path: path.into(),
            source: Box::new(self),
        }
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        PkiError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn signing(action: &'static str, source: rcgen::Error) -> Self {
        PkiError::Signing {
            action,
            source: Box::new(source),
        }
    }
}

/// Why a peer certificate (or the verifier's own CA/CRL) was not accepted.
///
/// Peer problems ([`Expired`](Self::Expired), [`Revoked`](Self::Revoked),
/// [`UnknownIssuer`](Self::UnknownIssuer), ...) are distinct from local configuration
/// problems ([`BadCa`](Self::BadCa), [`BadCrl`](Self::BadCrl), [`CrlExpired`](Self::CrlExpired));
/// see [`VerifyError::is_local`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The certificate's notAfter is before `now`.
    #[error("certificate expired at {} (checked at {})", rfc3339(*not_after), rfc3339(*now))]
    Expired {
        /// The certificate's notAfter.
        not_after: OffsetDateTime,
        /// The verification time.
        now: OffsetDateTime,
    },

    /// The certificate's notBefore is after `now`.
    #[error("certificate is not valid before {} (checked at {})", rfc3339(*not_before), rfc3339(*now))]
    NotYetValid {
        /// The certificate's notBefore.
        not_before: OffsetDateTime,
        /// The verification time.
        now: OffsetDateTime,
    },

    /// The certificate was not issued by this verifier's CA (or its signature is bad).
    #[error("certificate was not issued by the trusted Aura CA ({0})")]
    UnknownIssuer(String),

    /// The certificate is listed in the CA's CRL.
    #[error("certificate has been revoked")]
    Revoked,

    /// The certificate is not valid for the role it was presented in (EKU mismatch, or a
    /// CA certificate presented as a peer).
    #[error("certificate is not valid for the {expected} role ({reason})")]
    WrongRole {
        /// The role it was checked for.
        expected: Role,
        /// What was found instead.
        reason: String,
    },

    /// A server certificate does not cover the expected server name.
    #[error("server certificate is not valid for {expected:?} (it covers: {})", presented.join(", "))]
    NameMismatch {
        /// The name the client expected.
        expected: String,
        /// The names in the certificate.
        presented: Vec<String>,
    },

    /// The expected server name is not a valid DNS name or IP address (local error).
    #[error("invalid expected server name {0:?}")]
    InvalidServerName(String),

    /// The CRL's nextUpdate has passed: fetch or regenerate the CRL (local error).
    #[error("the CRL expired at {} (checked at {}): regenerate it with `aura pki crl`", rfc3339(*next_update), rfc3339(*now))]
    CrlExpired {
        /// The CRL's nextUpdate.
        next_update: OffsetDateTime,
        /// The verification time.
        now: OffsetDateTime,
    },

    /// The CRL's thisUpdate is more than the allowed clock skew ahead of the verification
    /// time: a CRL from the future, or a clock far behind (local error).
    #[error("the CRL is dated {} but the clock says {}: check the clocks of this host and the CA host", rfc3339(*this_update), rfc3339(*now))]
    CrlNotYetValid {
        /// The CRL's thisUpdate.
        this_update: OffsetDateTime,
        /// The verification time.
        now: OffsetDateTime,
    },

    /// A CRL could not be parsed, is not signed by the CA, or does not cover the
    /// certificate (local error).
    #[error("bad CRL: {0}")]
    BadCrl(String),

    /// No CRL was given; revocation checking is mandatory (local error).
    #[error("no CRL given: revocation checking is mandatory")]
    NoCrl,

    /// The trusted CA certificate is unusable (local error).
    #[error("bad CA certificate: {0}")]
    BadCa(String),

    /// The presented certificate is not well-formed X.509 or lacks a usable identity.
    #[error("malformed certificate: {0}")]
    Malformed(String),

    /// Anything else webpki rejected.
    #[error("certificate rejected: {0}")]
    Other(String),
}

impl VerifyError {
    /// True when the fault is in the local configuration (CA, CRL, expected name) rather
    /// than in the certificate the peer presented.
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            VerifyError::BadCa(_)
                | VerifyError::BadCrl(_)
                | VerifyError::NoCrl
                | VerifyError::CrlExpired { .. }
                | VerifyError::CrlNotYetValid { .. }
                | VerifyError::InvalidServerName(_)
        )
    }
}
