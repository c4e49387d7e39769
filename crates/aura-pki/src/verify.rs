//! The one certificate verifier every Aura carrier (TLS, QUIC, raw UDP handshake) uses.

use std::collections::HashSet;
use std::fmt;

use rustls_pki_types::{
    CertificateDer, ServerName, SignatureVerificationAlgorithm, TrustAnchor, UnixTime,
};
use std::net::IpAddr;
use time::OffsetDateTime;
use webpki::{EndEntityCert, KeyUsage, OwnedCertRevocationList};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::ca::common_name;
use crate::names::{validate_client_id, validate_server_name};
use crate::time_fmt::from_unix;
use crate::{Role, Serial, VerifyError};

/// Signature algorithms accepted on certificates and CRLs (aws-lc-rs implementations).
/// Aura CAs sign with ECDSA P-256/SHA-256; the rest of the ECDSA family and Ed25519 are
/// accepted for imported CAs. RSA is not.
static SUPPORTED_SIG_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::aws_lc_rs::ECDSA_P256_SHA256,
    webpki::aws_lc_rs::ECDSA_P256_SHA384,
    webpki::aws_lc_rs::ECDSA_P384_SHA256,
    webpki::aws_lc_rs::ECDSA_P384_SHA384,
    webpki::aws_lc_rs::ED25519,
];

/// `id-kp-serverAuth` (1.3.6.1.5.5.7.3.1), DER content octets.
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// `id-kp-clientAuth` (1.3.6.1.5.5.7.3.2), DER content octets.
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// A peer whose certificate chained to the CA, is within its validity, has the right
/// role and is not revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedPeer {
    /// The subject CN: the client id or the server name.
    pub id: String,
    /// The role the certificate was verified for.
    pub role: Role,
    /// The certificate serial.
    pub serial: Serial,
    /// When the certificate expires (a session should not outlive it).
    pub not_after: OffsetDateTime,
}

/// How far a CRL's thisUpdate may lie in the future of the verifier's clock (clock skew
/// between the CA host and this one); beyond it the CRL is refused until its time comes.
pub const CRL_CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

/// Verifies Aura leaf certificates against one CA and its CRL.
///
/// Policy (the same for every carrier): the leaf must chain directly to the CA, be
/// within its validity at `now`, carry exactly the expected extended key usage (a
/// certificate without an EKU extension, or with both serverAuth and clientAuth, is
/// rejected), and be covered by a CRL signed by the CA whose nextUpdate has not passed
/// and that does not list it. Unknown revocation status is an error.
///
/// CRLs are parsed and their signatures checked against the CA when the verifier is
/// built, so a bad CRL is reported at configuration time. The verifier is immutable
/// apart from [`Verifier::replace_crls`]; share it behind an `Arc` and swap in a new one
/// to update CRLs without locking.
#[derive(Clone)]
pub struct Verifier {
    ca_der: CertificateDer<'static>,
    anchor: TrustAnchor<'static>,
    crl: CheckedCrl,
    crl_number: Vec<u8>,
}

/// What a verified CRL says, read once when the verifier is built: the serials it revokes
/// and when it stops being current. Checking a certificate against it is a set lookup and
/// a time comparison; its signature was checked against the CA once, at construction
/// (webpki would check it again on every certificate: one ECDSA verification per
/// handshake).
#[derive(Clone)]
struct CheckedCrl {
    /// Serial numbers, as magnitudes ([`Serial`]): a certificate and a CRL entry name the
    /// same serial whatever leading zero byte their DER integers carry.
    revoked: HashSet<Serial>,
    /// thisUpdate.
    this_update: OffsetDateTime,
    /// nextUpdate, when the CRL has one.
    next_update: OffsetDateTime,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("ca_der_len", &self.ca_der.len())
            .field("crl_number", &crate::serial::to_hex(&self.crl_number))
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Builds a verifier trusting the CA certificate `ca_cert_der`, with revocation data
    /// from `crls` (DER). At least one CRL is required; every CRL must parse and be signed
    /// by the CA. When several are given, the one with the highest CRL number is used.
    pub fn new<I, B>(ca_cert_der: &[u8], crls: I) -> Result<Self, VerifyError>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let ca_der = CertificateDer::from(ca_cert_der.to_vec());
        let anchor = webpki::anchor_from_trusted_cert(&ca_der)
            .map_err(|e| VerifyError::BadCa(format!("{e:?}")))?
            .to_owned();
        let (crl, crl_number) = Self::check_crls(&ca_der, crls)?;
        Ok(Verifier {
            ca_der,
            anchor,
            crl,
            crl_number,
        })
    }

    /// Replaces the CRLs (same rules as [`Verifier::new`]). On error the verifier keeps
    /// its current CRL.
    pub fn replace_crls<I, B>(&mut self, crls: I) -> Result<(), VerifyError>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let (crl, number) = Self::check_crls(&self.ca_der, crls)?;
        self.crl = crl;
        self.crl_number = number;
        Ok(())
    }

    /// The CA certificate this verifier trusts (DER).
    pub fn ca_cert_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// The CRL number of the CRL in use, as big-endian bytes without leading zeros.
    pub fn crl_number(&self) -> &[u8] {
        &self.crl_number
    }

    /// thisUpdate of the CRL in use: when it was signed.
    pub fn crl_this_update(&self) -> OffsetDateTime {
        self.crl.this_update
    }

    /// nextUpdate of the CRL in use: after it, every certificate check fails until a newer
    /// CRL replaces it. `None` for a CRL without nextUpdate (Aura always sets one).
    pub fn crl_next_update(&self) -> OffsetDateTime {
        self.crl.next_update
    }

    fn check_crls<I, B>(ca_der: &[u8], crls: I) -> Result<(CheckedCrl, Vec<u8>), VerifyError>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let (_, ca) = x509_parser::parse_x509_certificate(ca_der)
            .map_err(|e| VerifyError::BadCa(e.to_string()))?;
        let mut best: Option<(Vec<u8>, CheckedCrl)> = None;
        for (i, der) in crls.into_iter().enumerate() {
            let der = der.as_ref();
            let bad = |msg: String| VerifyError::BadCrl(format!("CRL #{}: {msg}", i + 1));
            let (rest, parsed) =
                x509_parser::parse_x509_crl(der).map_err(|e| bad(format!("unparsable: {e}")))?;
            if !rest.is_empty() {
                return Err(bad("trailing data after the CRL".into()));
            }
            if parsed.issuer().as_raw() != ca.subject().as_raw() {
                return Err(bad(
                    "not issued by the trusted CA (issuer name differs)".into()
                ));
            }
            parsed
                .verify_signature(ca.public_key())
                .map_err(|e| bad(format!("signature does not verify with the CA key: {e}")))?;
            let number = parsed
                .crl_number()
                .map(|n| n.to_bytes_be())
                .ok_or_else(|| bad("no CRL number".into()))?;
            // A CRL that never expires would keep a revocation list from the past valid
            // for good (webpki refuses it too, less clearly).
            let next_update = parsed
                .next_update()
                .map(|t| t.to_datetime())
                .ok_or_else(|| bad("no nextUpdate: a CRL must say when it expires".into()))?;
            // webpki's own checks of the CRL's form (version, no delta or indirect CRL,
            // supported extensions), kept as the gate they were.
            OwnedCertRevocationList::from_der(der)
                .map_err(|e| bad(format!("rejected by webpki: {e:?}")))?;
            let owned = CheckedCrl {
                // A negative or oversized entry names no certificate Aura accepts.
                revoked: parsed
                    .iter_revoked_certificates()
                    .filter_map(|r| Serial::from_der_integer(r.raw_serial()))
                    .collect(),
                this_update: parsed.last_update().to_datetime(),
                next_update,
            };
            let newer = match &best {
                None => true,
                Some((n, _)) => (number.len(), &number) > (n.len(), n),
            };
            if newer {
                best = Some((number, owned));
            }
        }
        let (number, crl) = best.ok_or(VerifyError::NoCrl)?;
        Ok((crl, number))
    }

    /// Verifies a client certificate (EKU clientAuth) at `now`; returns the client id (CN).
    pub fn verify_client(
        &self,
        end_entity_der: &[u8],
        now: UnixTime,
    ) -> Result<VerifiedPeer, VerifyError> {
        self.verify(end_entity_der, Role::Client, None, now)
    }

    /// Verifies a server certificate (EKU serverAuth) at `now` and checks that its SANs
    /// cover `server_name` (a DNS name or an IP literal).
    pub fn verify_server(
        &self,
        end_entity_der: &[u8],
        server_name: &str,
        now: UnixTime,
    ) -> Result<VerifiedPeer, VerifyError> {
        self.verify(end_entity_der, Role::Server, Some(server_name), now)
    }

    /// Re-checks, at `now`, a peer that a verifier of the same CA verified earlier (its
    /// chain, role and name do not change): that it has not expired, and that this
    /// verifier's CRL is current and does not list it. A server re-checks its sessions
    /// this way when a new CRL comes, without keeping each client's certificate.
    ///
    /// # Errors
    /// [`VerifyError::Expired`], [`VerifyError::Revoked`], [`VerifyError::CrlExpired`],
    /// [`VerifyError::CrlNotYetValid`].
    pub fn recheck(&self, peer: &VerifiedPeer, now: UnixTime) -> Result<(), VerifyError> {
        let at = from_unix(now);
        if at > peer.not_after {
            return Err(VerifyError::Expired {
                not_after: peer.not_after,
                now: at,
            });
        }
        self.check_revocation(&peer.serial, at)
    }

    /// Whether `other` trusts the same CA certificate.
    pub fn same_ca(&self, other: &Verifier) -> bool {
        self.ca_der == other.ca_der
    }

    /// The CRL is current at `at` and does not list `serial`.
    fn check_revocation(&self, serial: &Serial, at: OffsetDateTime) -> Result<(), VerifyError> {
        if at > self.crl.next_update {
            return Err(VerifyError::CrlExpired {
                next_update: self.crl.next_update,
                now: at,
            });
        }
        if self.crl.this_update > at + CRL_CLOCK_SKEW {
            return Err(VerifyError::CrlNotYetValid {
                this_update: self.crl.this_update,
                now: at,
            });
        }
        if self.crl.revoked.contains(serial) {
            return Err(VerifyError::Revoked);
        }
        Ok(())
    }

    fn verify(
        &self,
        der: &[u8],
        role: Role,
        server_name: Option<&str>,
        now: UnixTime,
    ) -> Result<VerifiedPeer, VerifyError> {
        let der = CertificateDer::from(der);
        let ee = EndEntityCert::try_from(&der).map_err(|e| map_webpki(e, role))?;
        let eku = match role {
            Role::Server => KeyUsage::required(EKU_SERVER_AUTH),
            Role::Client => KeyUsage::required(EKU_CLIENT_AUTH),
        };
        // Chain (the leaf is signed by the CA directly: no intermediates), validity and
        // EKU by webpki; revocation below against the CRL checked at construction. The
        // chain has one certificate under the anchor, so that CRL covers all of it.
        ee.verify_for_usage(
            SUPPORTED_SIG_ALGS,
            std::slice::from_ref(&self.anchor),
            &[],
            now,
            eku,
            None,
            None,
        )
        .map_err(|e| map_webpki(e, role))?;

        let (_, x509) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let serial = Serial::from_der_integer(x509.raw_serial())
            .ok_or_else(|| VerifyError::Malformed("zero, negative or oversized serial".into()))?;
        self.check_revocation(&serial, from_unix(now))?;

        if let Some(name) = server_name {
            let sn = ServerName::try_from(name)
                .map_err(|_| VerifyError::InvalidServerName(name.to_owned()))?;
            ee.verify_is_valid_for_subject_name(&sn)
                .map_err(|e| match e {
                    webpki::Error::CertNotValidForName(_) => VerifyError::NameMismatch {
                        expected: name.to_owned(),
                        presented: san_names(&x509),
                    },
                    other => map_webpki(other, role),
                })?;
        }

        identity(&x509, role, serial)
    }
}

/// Reads the peer identity from an already verified certificate, and enforces that it
/// carries only the EKU of its role.
fn identity(
    x509: &X509Certificate<'_>,
    role: Role,
    serial: Serial,
) -> Result<VerifiedPeer, VerifyError> {
    let eku = x509
        .extended_key_usage()
        .map_err(|e| VerifyError::Malformed(format!("bad extended key usage: {e}")))?
        .ok_or_else(|| VerifyError::WrongRole {
            expected: role,
            reason: "no extended key usage".into(),
        })?
        .value;
    let other_role = match role {
        Role::Server => eku.client_auth,
        Role::Client => eku.server_auth,
    };
    if other_role || eku.any {
        return Err(VerifyError::WrongRole {
            expected: role,
            reason: "the certificate is also valid for another role".into(),
        });
    }

    let id = common_name(x509)
        .ok_or_else(|| VerifyError::Malformed("no UTF-8 common name in the subject".into()))?;
    let id_ok = match role {
        Role::Client => validate_client_id(id).is_ok(),
        Role::Server => validate_server_name(id).is_ok(),
    };
    if !id_ok {
        return Err(VerifyError::Malformed(format!(
            "the common name {id:?} is not a valid {role} identity"
        )));
    }
    Ok(VerifiedPeer {
        id: id.to_owned(),
        role,
        serial,
        not_after: x509.validity().not_after.to_datetime(),
    })
}

/// The DNS names and IP addresses in the certificate's subjectAltName.
fn san_names(x509: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = x509.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(d) => Some((*d).to_owned()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|b| IpAddr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|b| IpAddr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Maps webpki's errors onto Aura's categories.
fn map_webpki(err: webpki::Error, role: Role) -> VerifyError {
    use webpki::Error as E;
    #[allow(deprecated)]
    match err {
        E::CertExpired { time, not_after } => VerifyError::Expired {
            not_after: from_unix(not_after),
            now: from_unix(time),
        },
        E::CertNotValidYet { time, not_before } => VerifyError::NotYetValid {
            not_before: from_unix(not_before),
            now: from_unix(time),
        },
        E::CertRevoked => VerifyError::Revoked,
        E::CrlExpired { time, next_update } => VerifyError::CrlExpired {
            next_update: from_unix(next_update),
            now: from_unix(time),
        },
        E::UnknownIssuer
        | E::InvalidSignatureForPublicKey
        | E::SignatureAlgorithmMismatch
        | E::UnsupportedSignatureAlgorithm
        | E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
        | E::EndEntityUsedAsCa
        | E::PathLenConstraintViolated
        | E::NameConstraintViolation
        | E::MaximumPathDepthExceeded
        | E::CertDistrusted => VerifyError::UnknownIssuer(format!("{err:?}")),
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => {
            VerifyError::WrongRole {
                expected: role,
                reason: "the extended key usage does not allow it".into(),
            }
        }
        E::CaUsedAsEndEntity => VerifyError::WrongRole {
            expected: role,
            reason: "a CA certificate was presented as a peer certificate".into(),
        },
        E::CertNotValidForName(ctx) => VerifyError::NameMismatch {
            expected: server_name_str(&ctx.expected),
            presented: Vec::new(),
        },
        E::UnknownRevocationStatus => {
            VerifyError::BadCrl("no CRL covers this certificate's issuer".into())
        }
        E::InvalidCrlSignatureForPublicKey
        | E::UnsupportedCrlSignatureAlgorithm
        | E::UnsupportedCrlSignatureAlgorithmContext(_)
        | E::UnsupportedCrlSignatureAlgorithmForPublicKey
        | E::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_)
        | E::IssuerNotCrlSigner
        | E::InvalidCrlNumber
        | E::UnsupportedCrlVersion
        | E::UnsupportedDeltaCrl
        | E::UnsupportedIndirectCrl
        | E::UnsupportedRevocationReason
        | E::UnsupportedRevocationReasonsPartitioning
        | E::UnsupportedCrlIssuingDistributionPoint => VerifyError::BadCrl(format!("{err:?}")),
        E::BadDer
        | E::BadDerTime
        | E::TrailingData(_)
        | E::MalformedExtensions
        | E::ExtensionValueInvalid
        | E::UnsupportedCertVersion
        | E::UnsupportedCriticalExtension
        | E::InvalidSerialNumber
        | E::InvalidCertValidity
        | E::MalformedDnsIdentifier
        | E::MalformedNameConstraint
        | E::InvalidNetworkMaskConstraint => VerifyError::Malformed(format!("{err:?}")),
        other => VerifyError::Other(format!("{other:?}")),
    }
}

fn server_name_str(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}
