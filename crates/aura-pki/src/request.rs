//! Certificate signing requests: a device makes its own key and asks the CA for a
//! certificate, so no other host ever holds the device's private key.
//!
//! The request is standard PKCS#10 (`CERTIFICATE REQUEST` PEM), so `openssl req` can make
//! one too. The CA takes two things from it: the public key (which must be ECDSA P-256,
//! and which must have signed the request) and, when the operator names no id, the
//! proposed client id in the subject CN. Everything else (validity, extended key usage,
//! SANs, CA flag) is the CA's decision; requested extensions are ignored.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256,
    SubjectPublicKeyInfo,
};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use crate::PkiError;
use crate::names::validate_client_id;

/// The PEM label of a PKCS#10 request.
const LABEL: &str = "CERTIFICATE REQUEST";
/// The label older OpenSSL versions write.
const LABEL_OLD: &str = "NEW CERTIFICATE REQUEST";
/// Longest request accepted (bytes of DER); a P-256 request is about 250.
const MAX_DER: usize = 8 * 1024;

/// A verified client certificate request: its public key and the id it proposes.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    key: SubjectPublicKeyInfo,
    proposed_id: Option<String>,
}

fn bad(reason: impl Into<String>) -> PkiError {
    PkiError::BadRequest(reason.into())
}

impl ClientRequest {
    /// Parses a PEM request and checks it: one PKCS#10 structure, a P-256 public key, a
    /// signature by that key over the request, and (when it has a subject CN) a CN that
    /// is a valid client id.
    pub fn from_pem(text: &str) -> Result<Self, PkiError> {
        let block = pem::parse(text).map_err(|e| bad(format!("not PEM: {e}")))?;
        if block.tag() != LABEL && block.tag() != LABEL_OLD {
            return Err(bad(format!(
                "expected a {LABEL} block, found {}",
                block.tag()
            )));
        }
        Self::from_der(block.contents())
    }

    /// As [`ClientRequest::from_pem`], from DER.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        if der.len() > MAX_DER {
            return Err(bad(format!(
                "{} bytes is longer than any request this CA signs ({MAX_DER})",
                der.len()
            )));
        }
        let (rest, csr) = X509CertificationRequest::from_der(der)
            .map_err(|e| bad(format!("not a PKCS#10 request: {e}")))?;
        if !rest.is_empty() {
            return Err(bad("trailing data after the request"));
        }
        let info = &csr.certification_request_info;
        let spki = &info.subject_pki;
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || curve != Some(OID_EC_P256) {
            return Err(PkiError::WrongKeyType {
                found: "a key other than ECDSA P-256 in the request",
            });
        }
        csr.verify_signature()
            .map_err(|e| bad(format!("its signature does not verify with its key: {e}")))?;
        let key = SubjectPublicKeyInfo::from_der(spki.raw)
            .map_err(|e| bad(format!("unusable public key: {e}")))?;
        if rcgen::PublicKeyData::algorithm(&key) != &PKCS_ECDSA_P256_SHA256 {
            return Err(PkiError::WrongKeyType {
                found: "a key other than ECDSA P-256 in the request",
            });
        }
        let mut cns = info.subject.iter_common_name();
        let proposed_id = match (cns.next(), cns.next()) {
            (None, _) => None,
            (Some(_), Some(_)) => return Err(bad("the subject has more than one CN")),
            (Some(cn), None) => {
                let cn = cn
                    .as_str()
                    .map_err(|_| bad("the subject CN is not a UTF-8 string"))?;
                validate_client_id(cn)?;
                Some(cn.to_owned())
            }
        };
        Ok(ClientRequest { key, proposed_id })
    }

    /// The client id in the request's subject CN, if it has one.
    pub fn proposed_id(&self) -> Option<&str> {
        self.proposed_id.as_deref()
    }

    pub(crate) fn public_key(&self) -> &SubjectPublicKeyInfo {
        &self.key
    }
}

/// A device's new key and the request that carries its public half to the CA.
pub struct NewClientKey {
    /// The private key, PKCS#8 PEM (wiped from memory on drop). It never leaves the device.
    pub key_pem: Zeroizing<String>,
    /// The request, PEM: give it to the CA operator (`aura pki sign`).
    pub request_pem: String,
}

impl std::fmt::Debug for NewClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewClientKey")
            .field("key_pem", &"[elided]")
            .finish_non_exhaustive()
    }
}

/// Makes a fresh ECDSA P-256 key and a request for a client certificate whose subject CN
/// proposes `id`.
pub fn new_client_key(id: &str) -> Result<NewClientKey, PkiError> {
    validate_client_id(id)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| PkiError::signing("generate an ECDSA P-256 key", e))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, id);
    params.distinguished_name = dn;
    let request = params
        .serialize_request(&key)
        .map_err(|e| PkiError::signing("sign the certificate request", e))?;
    let request_pem = request
        .pem()
        .map_err(|e| PkiError::signing("encode the certificate request", e))?;
    Ok(NewClientKey {
        key_pem: Zeroizing::new(key.serialize_pem()),
        request_pem,
    })
}
