//! The certificate authority: creating and loading it, and issuing leaf certificates.

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
    SignatureAlgorithm,
};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use zeroize::Zeroizing;

use crate::names::{
    SanEntry, parse_san, validate_ca_name, validate_client_id, validate_server_name,
};
use crate::request::ClientRequest;
use crate::{PkiError, Role, Serial, Validity};

/// The CA common name `aura pki init` uses unless told otherwise.
pub const DEFAULT_CA_NAME: &str = "Aura CA";

/// Prefix of the SAN URI that carries a client id: `urn:aura:client:<id>`.
pub const CLIENT_URI_PREFIX: &str = "urn:aura:client:";

const CA_CERT: &str = "CA certificate";
const CA_KEY: &str = "CA private key";

/// An Aura certificate authority: an ECDSA P-256 key and its self-signed certificate
/// (BasicConstraints CA, path length 0; KeyUsage keyCertSign, cRLSign, digitalSignature).
///
/// Everything here is a pure function of its inputs, except that fresh ECDSA keys (and
/// ECDSA signature nonces) come from aws-lc-rs's system CSPRNG.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    key_id_method: KeyIdMethod,
    cert_der: Vec<u8>,
    cert_pem: String,
    name: String,
    serial: Serial,
    not_after: OffsetDateTime,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("name", &self.name)
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A freshly issued leaf certificate and its private key.
#[non_exhaustive]
pub struct IssuedCert {
    /// Server or client.
    pub role: Role,
    /// The subject CN: the server name or the client id.
    pub id: String,
    /// The serial number.
    pub serial: Serial,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 PEM (wiped from memory on drop); `None` when the
    /// certificate was signed for a key the requester keeps ([`ClientRequest`]).
    pub key_pem: Option<Zeroizing<String>>,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("role", &self.role)
            .field("id", &self.id)
            .field("serial", &self.serial)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key_pem", &"[elided]")
            .finish_non_exhaustive()
    }
}

fn bad_cert(reason: impl Into<String>) -> PkiError {
    PkiError::BadCertificate {
        what: CA_CERT,
        reason: reason.into(),
    }
}

fn bad_pem(what: &'static str, source: impl Into<crate::BoxError>) -> PkiError {
    PkiError::BadPem {
        what,
        source: source.into(),
    }
}

fn new_p256_key() -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| PkiError::signing("generate an ECDSA P-256 key", e))
}

fn cn(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

impl CertificateAuthority {
    /// Creates a new CA with a fresh P-256 key and a self-signed certificate whose subject
    /// is `CN=<name>`.
    pub fn generate(name: &str, validity: Validity, serial: Serial) -> Result<Self, PkiError> {
        validate_ca_name(name)?;
        let key = new_p256_key()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = cn(name);
        params.not_before = validity.not_before();
        params.not_after = validity.not_after();
        params.serial_number = Some(SerialNumber::from_slice(serial.as_bytes()));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params
            .self_signed(&key)
            .map_err(|e| PkiError::signing("self-sign the CA certificate", e))?;
        Ok(CertificateAuthority {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_id_method: params.key_identifier_method.clone(),
            issuer: Issuer::new(params, key),
            name: name.to_owned(),
            serial,
            not_after: validity.not_after(),
        })
    }

    /// Loads a CA from its certificate and private key (both PEM).
    ///
    /// Errors: [`PkiError::BadPem`] for undecodable PEM, [`PkiError::BadCertificate`] for a
    /// certificate that is not a usable self-signed CA, [`PkiError::WrongKeyType`] for a
    /// key that is not ECDSA P-256, [`PkiError::BadKey`] for an unreadable key, and
    /// [`PkiError::KeyMismatch`] for a key that does not belong to the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let cert_der = pem_block(cert_pem, "CERTIFICATE", CA_CERT)?;
        let key = parse_p256_key_pem(key_pem)?;

        let (rest, x509) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| bad_cert(format!("not a valid X.509 certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(bad_cert("trailing data after the certificate"));
        }
        check_ca_cert(&x509)?;
        if key.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
            return Err(PkiError::KeyMismatch);
        }
        x509.verify_signature(None)
            .map_err(|e| bad_cert(format!("self-signature does not verify: {e}")))?;

        let name = common_name(&x509)
            .ok_or_else(|| bad_cert("the subject has no UTF-8 common name"))?
            .to_owned();
        let serial = Serial::from_der_integer(x509.raw_serial())
            .ok_or_else(|| bad_cert("the serial number is zero, negative or too long"))?;
        let not_after = x509.validity().not_after.to_datetime();
        let key_id_method = x509
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => {
                    Some(KeyIdMethod::PreSpecified(id.0.to_vec()))
                }
                _ => None,
            })
            .unwrap_or(KeyIdMethod::Sha256);
        drop(x509);

        let der_ref = rustls_pki_types::CertificateDer::from(cert_der.as_slice());
        let issuer = Issuer::from_ca_cert_der(&der_ref, key)
            .map_err(|e| bad_cert(format!("rcgen cannot use it as an issuer: {e}")))?;
        Ok(CertificateAuthority {
            issuer,
            key_id_method,
            cert_pem: pem_encode("CERTIFICATE", &cert_der),
            cert_der,
            name,
            serial,
            not_after,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA private key, PKCS#8 PEM (wiped from memory on drop).
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.issuer.key().serialize_pem())
    }

    /// The CA's common name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CA certificate's serial.
    pub fn serial(&self) -> &Serial {
        &self.serial
    }

    /// When the CA certificate expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    pub(crate) fn key_id_method(&self) -> &KeyIdMethod {
        &self.key_id_method
    }

    /// Issues a server certificate: CN = `name`, SAN DNS `name` plus `extra_sans` (IP
    /// literals become IP SANs), EKU serverAuth only, KeyUsage digitalSignature, not a CA,
    /// with a fresh P-256 key. `name` is lowercased.
    pub fn issue_server(
        &self,
        name: &str,
        extra_sans: &[String],
        validity: Validity,
        serial: Serial,
    ) -> Result<IssuedCert, PkiError> {
        let name = validate_server_name(name)?;
        let mut entries = vec![SanEntry::Dns(name.clone())];
        for san in extra_sans {
            let entry = parse_san(san)?;
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
        let sans = entries
            .into_iter()
            .map(|e| match e {
                SanEntry::Ip(ip) => Ok(SanType::IpAddress(ip)),
                SanEntry::Dns(d) => d
                    .as_str()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e| PkiError::signing("encode a DNS SAN", e)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.issue_leaf(Role::Server, name, sans, validity, serial, None)
    }

    /// Issues a client certificate: CN = `id`, SAN URI `urn:aura:client:<id>`, EKU
    /// clientAuth only, KeyUsage digitalSignature, not a CA, with a fresh P-256 key.
    pub fn issue_client(
        &self,
        id: &str,
        validity: Validity,
        serial: Serial,
    ) -> Result<IssuedCert, PkiError> {
        let sans = client_sans(id)?;
        self.issue_leaf(Role::Client, id.to_owned(), sans, validity, serial, None)
    }

    /// Issues a client certificate, as [`CertificateAuthority::issue_client`], for the
    /// public key of a verified request: the requester keeps the private key, and the
    /// result carries none. The id is the operator's choice; the request's proposed id is
    /// only a suggestion the caller may pass here.
    pub fn issue_client_for(
        &self,
        id: &str,
        request: &ClientRequest,
        validity: Validity,
        serial: Serial,
    ) -> Result<IssuedCert, PkiError> {
        let sans = client_sans(id)?;
        self.issue_leaf(
            Role::Client,
            id.to_owned(),
            sans,
            validity,
            serial,
            Some(request),
        )
    }

    fn issue_leaf(
        &self,
        role: Role,
        id: String,
        sans: Vec<SanType>,
        validity: Validity,
        serial: Serial,
        request: Option<&ClientRequest>,
    ) -> Result<IssuedCert, PkiError> {
        if validity.not_after() > self.not_after {
            return Err(PkiError::InvalidValidity(
                "the certificate would outlive the CA certificate",
            ));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = cn(&id);
        params.subject_alt_names = sans;
        params.not_before = validity.not_before();
        params.not_after = validity.not_after();
        params.serial_number = Some(SerialNumber::from_slice(serial.as_bytes()));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match role {
            Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        let (cert, key_pem) = match request {
            Some(r) => (params.signed_by(r.public_key(), &self.issuer), None),
            None => {
                let key = new_p256_key()?;
                let pem = Zeroizing::new(key.serialize_pem());
                (params.signed_by(&key, &self.issuer), Some(pem))
            }
        };
        let cert = cert.map_err(|e| PkiError::signing("sign the certificate", e))?;
        Ok(IssuedCert {
            role,
            id,
            serial,
            not_before: validity.not_before(),
            not_after: validity.not_after(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem,
        })
    }
}

/// A client certificate's SAN: the URI `urn:aura:client:<id>`.
fn client_sans(id: &str) -> Result<Vec<SanType>, PkiError> {
    validate_client_id(id)?;
    let uri = format!("{CLIENT_URI_PREFIX}{id}")
        .as_str()
        .try_into()
        .map_err(|e| PkiError::signing("encode the client URI SAN", e))?;
    Ok(vec![SanType::URI(uri)])
}

/// Decodes one PEM block and checks its label. Returns the DER contents.
pub(crate) fn pem_block(
    text: &str,
    label: &'static str,
    what: &'static str,
) -> Result<Vec<u8>, PkiError> {
    let block = pem::parse(text).map_err(|e| bad_pem(what, e))?;
    if block.tag() != label {
        return Err(bad_pem(
            what,
            format!("expected a {label} block, found {}", block.tag()),
        ));
    }
    Ok(block.into_contents())
}

/// Encodes DER as PEM with `\n` line endings.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

/// Decodes a PEM certificate to DER.
pub fn cert_der_from_pem(pem_text: &str) -> Result<Vec<u8>, PkiError> {
    pem_block(pem_text, "CERTIFICATE", "certificate")
}

/// Decodes a PEM CRL (`X509 CRL` block) to DER.
pub fn crl_der_from_pem(pem_text: &str) -> Result<Vec<u8>, PkiError> {
    pem_block(pem_text, "X509 CRL", "CRL")
}

fn algorithm_name(alg: &SignatureAlgorithm) -> &'static str {
    if *alg == rcgen::PKCS_ED25519 {
        "Ed25519"
    } else if *alg == rcgen::PKCS_ECDSA_P384_SHA384 {
        "ECDSA P-384"
    } else if *alg == rcgen::PKCS_ECDSA_P521_SHA512
        || *alg == rcgen::PKCS_ECDSA_P521_SHA384
        || *alg == rcgen::PKCS_ECDSA_P521_SHA256
    {
        "ECDSA P-521"
    } else if *alg == rcgen::PKCS_RSA_SHA256
        || *alg == rcgen::PKCS_RSA_SHA384
        || *alg == rcgen::PKCS_RSA_SHA512
    {
        "RSA"
    } else {
        "an unsupported algorithm"
    }
}

/// Parses an unencrypted PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) PEM key and
/// insists that it is ECDSA P-256.
fn parse_p256_key_pem(key_pem: &str) -> Result<KeyPair, PkiError> {
    let block = pem::parse(key_pem).map_err(|e| bad_pem(CA_KEY, e))?;
    let tag = block.tag().to_owned();
    let der = Zeroizing::new(block.into_contents());
    let key_der: PrivateKeyDer<'_> = match tag.as_str() {
        "PRIVATE KEY" => PrivatePkcs8KeyDer::from(der.as_slice()).into(),
        "EC PRIVATE KEY" => PrivateSec1KeyDer::from(der.as_slice()).into(),
        "RSA PRIVATE KEY" => return Err(PkiError::WrongKeyType { found: "RSA" }),
        "ENCRYPTED PRIVATE KEY" => {
            return Err(PkiError::BadKey {
                source: "encrypted private keys are not supported".into(),
            });
        }
        other => {
            return Err(bad_pem(
                CA_KEY,
                format!("expected a PRIVATE KEY block, found {other}"),
            ));
        }
    };
    let key = KeyPair::try_from(&key_der).map_err(|e| PkiError::BadKey {
        source: Box::new(e),
    })?;
    if *key.algorithm() != PKCS_ECDSA_P256_SHA256 {
        return Err(PkiError::WrongKeyType {
            found: algorithm_name(key.algorithm()),
        });
    }
    Ok(key)
}

fn check_ca_cert(x509: &X509Certificate<'_>) -> Result<(), PkiError> {
    match x509.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        Ok(_) => {
            return Err(bad_cert(
                "it is not a CA (BasicConstraints CA:TRUE missing)",
            ));
        }
        Err(e) => return Err(bad_cert(format!("bad BasicConstraints: {e}"))),
    }
    match x509.key_usage() {
        Ok(Some(ku)) if ku.value.key_cert_sign() && ku.value.crl_sign() => {}
        Ok(None) => {}
        Ok(Some(_)) => return Err(bad_cert("KeyUsage lacks keyCertSign or cRLSign")),
        Err(e) => return Err(bad_cert(format!("bad KeyUsage: {e}"))),
    }
    if x509.subject().as_raw() != x509.issuer().as_raw() {
        return Err(bad_cert(
            "it is not self-signed (subject differs from issuer)",
        ));
    }
    // rcgen re-encodes the subject from single-attribute RDNs only.
    if x509.subject().iter().any(|rdn| rdn.iter().count() != 1) {
        return Err(bad_cert(
            "multi-valued or empty RDNs in the subject are not supported",
        ));
    }
    Ok(())
}

/// The first UTF-8 common name in the certificate's subject.
pub(crate) fn common_name<'a>(x509: &'a X509Certificate<'_>) -> Option<&'a str> {
    x509.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
}
