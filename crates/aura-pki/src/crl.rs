//! X.509 v2 certificate revocation lists (RFC 5280 §5), signed by the CA.

use std::fmt;
use std::str::FromStr;

use rcgen::{CertificateRevocationListParams, RevokedCertParams, SerialNumber};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ca::pem_encode;
use crate::time_fmt::x509_time;
use crate::{CertificateAuthority, PkiError, Serial};

/// Why a certificate was revoked: the RFC 5280 §5.3.1 reason codes Aura uses.
///
/// Written and parsed in kebab-case (`key-compromise`). `certificateHold`,
/// `removeFromCRL` and `aACompromise` are deliberately absent: Aura never suspends
/// certificates and has no attribute authorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevocationReason {
    /// No reason given (code 0; encoded by omitting the reasonCode extension, as RFC 5280
    /// §5.3.1 recommends).
    Unspecified,
    /// The certificate's private key was compromised (code 1).
    KeyCompromise,
    /// The CA key was compromised (code 2).
    CaCompromise,
    /// The subject's affiliation changed (code 3).
    AffiliationChanged,
    /// The certificate was replaced (code 4).
    Superseded,
    /// The certificate is no longer needed (code 5).
    CessationOfOperation,
    /// The subject's privileges were withdrawn (code 9).
    PrivilegeWithdrawn,
}

impl RevocationReason {
    /// Every reason, in RFC code order.
    pub const ALL: [RevocationReason; 7] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::PrivilegeWithdrawn,
    ];

    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key-compromise",
            RevocationReason::CaCompromise => "ca-compromise",
            RevocationReason::AffiliationChanged => "affiliation-changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation-of-operation",
            RevocationReason::PrivilegeWithdrawn => "privilege-withdrawn",
        }
    }

    /// The RFC 5280 `CRLReason` code.
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::PrivilegeWithdrawn => 9,
        }
    }

    fn to_rcgen(self) -> Option<rcgen::RevocationReason> {
        use rcgen::RevocationReason as R;
        match self {
            RevocationReason::Unspecified => None,
            RevocationReason::KeyCompromise => Some(R::KeyCompromise),
            RevocationReason::CaCompromise => Some(R::CaCompromise),
            RevocationReason::AffiliationChanged => Some(R::AffiliationChanged),
            RevocationReason::Superseded => Some(R::Superseded),
            RevocationReason::CessationOfOperation => Some(R::CessationOfOperation),
            RevocationReason::PrivilegeWithdrawn => Some(R::PrivilegeWithdrawn),
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevocationReason {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, PkiError> {
        RevocationReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| PkiError::UnknownReason(s.to_owned()))
    }
}

/// One revoked certificate, as listed in a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCert {
    /// Its serial number.
    pub serial: Serial,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
    /// Why.
    pub reason: RevocationReason,
}

/// A signed CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignedCrl {
    /// The CRL number (RFC 5280 §5.2.3).
    pub number: u64,
    /// thisUpdate.
    pub this_update: OffsetDateTime,
    /// nextUpdate.
    pub next_update: OffsetDateTime,
    /// PEM (`X509 CRL` block).
    pub pem: String,
    /// DER.
    pub der: Vec<u8>,
}

impl CertificateAuthority {
    /// Signs an X.509 v2 CRL listing `revoked`, with the given CRL number (the caller keeps
    /// it monotonic), thisUpdate and nextUpdate. Includes the authority key identifier and
    /// CRL number extensions (RFC 5280 §5.2), and a reasonCode per entry except for
    /// [`RevocationReason::Unspecified`].
    pub fn sign_crl(
        &self,
        number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
        revoked: &[RevokedCert],
    ) -> Result<SignedCrl, PkiError> {
        let (this_update, next_update) = (x509_time(this_update), x509_time(next_update));
        if next_update <= this_update {
            return Err(PkiError::InvalidValidity(
                "the CRL nextUpdate must be later than thisUpdate",
            ));
        }
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|r| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(r.serial.as_bytes()),
                    revocation_time: x509_time(r.revoked_at),
                    reason_code: r.reason.to_rcgen(),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: self.key_id_method().clone(),
        };
        let crl = params
            .signed_by(self.issuer())
            .map_err(|e| PkiError::signing("sign the CRL", e))?;
        let der = crl.der().to_vec();
        Ok(SignedCrl {
            number,
            this_update,
            next_update,
            pem: pem_encode("X509 CRL", &der),
            der,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn reasons_parse_and_print() {
        for r in RevocationReason::ALL {
            assert_eq!(r.as_str().parse::<RevocationReason>().unwrap(), r);
            assert_eq!(r.to_string(), r.as_str());
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        assert_eq!(
            "key-compromise".parse::<RevocationReason>().unwrap(),
            RevocationReason::KeyCompromise
        );
        assert_eq!(
            "cessation-of-operation"
                .parse::<RevocationReason>()
                .unwrap(),
            RevocationReason::CessationOfOperation
        );
        for bad in [
            "",
            "KeyCompromise",
            "key_compromise",
            "certificate-hold",
            "Superseded",
        ] {
            let err = bad.parse::<RevocationReason>().unwrap_err();
            assert!(matches!(err, PkiError::UnknownReason(ref s) if s == bad));
        }
    }

    #[test]
    fn codes_follow_rfc5280() {
        let codes: Vec<u8> = RevocationReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 9]);
        assert!(RevocationReason::Unspecified.to_rcgen().is_none());
        assert_eq!(
            RevocationReason::PrivilegeWithdrawn.to_rcgen(),
            Some(rcgen::RevocationReason::PrivilegeWithdrawn)
        );
    }
}
