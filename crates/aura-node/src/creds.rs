//! Credentials from the PEM files a configuration names: the CA certificate, the CRL,
//! this node's certificate and key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aura_proto::{DeploymentSecret, EcdsaP256Signer, Identity};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use crate::DaemonError;

/// The PEM files a configuration's `[pki]` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialFiles {
    /// The CA certificate.
    pub ca_cert: PathBuf,
    /// The CRL.
    pub crl: PathBuf,
    /// This node's certificate.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
    /// The deployment's knock key (`None`: knock off, the CA keys the camouflage).
    pub knock_key: Option<PathBuf>,
}

impl CredentialFiles {
    /// The four files.
    pub fn new(ca_cert: &Path, crl: &Path, cert: &Path, key: &Path) -> Self {
        Self {
            ca_cert: ca_cert.to_owned(),
            crl: crl.to_owned(),
            cert: cert.to_owned(),
            key: key.to_owned(),
            knock_key: None,
        }
    }

    /// The same files with the knock key `knock_key`.
    pub fn with_knock_key(mut self, knock_key: Option<&Path>) -> Self {
        self.knock_key = knock_key.map(Path::to_owned);
        self
    }

    /// Reads and checks the files ([`load`]), and builds the verifier of the CRL.
    ///
    /// # Errors
    /// [`DaemonError::Credentials`] naming the file and the problem.
    pub fn load(&self) -> Result<(Credentials, aura_pki::Verifier), DaemonError> {
        let mut creds = load(&self.ca_cert, &self.crl, &self.cert, &self.key)?;
        if let Some(path) = &self.knock_key {
            let key = aura_pki::knock::read(path).map_err(|e| {
                DaemonError::Credentials(format!(
                    "the knock key {}: {}",
                    path.display(),
                    error_chain(&e)
                ))
            })?;
            creds.secret = DeploymentSecret::from_knock_key(*key);
        }
        let verifier = aura_pki::Verifier::new(&creds.ca_der, [&creds.crl_der]).map_err(|e| {
            DaemonError::Credentials(format!("the CRL {}: {e}", self.crl.display()))
        })?;
        Ok((creds, verifier))
    }
}

/// What a daemon authenticates with.
#[derive(Debug)]
pub struct Credentials {
    /// The CA certificate (DER).
    pub ca_der: Vec<u8>,
    /// The CRL (DER).
    pub crl_der: Vec<u8>,
    /// This node's certificate and signing key.
    pub identity: Identity,
    /// The same certificate and key for the outer TLS and QUIC handshakes.
    pub cert_der: Vec<u8>,
    /// The deployment secret: the knock key, or the CA fallback.
    pub secret: DeploymentSecret,
    key_pkcs8: Zeroizing<Vec<u8>>,
}

impl Credentials {
    /// The certificate chain and key for the outer TLS/QUIC layer.
    pub fn outer(&self) -> aura_transport::carrier::tls::OuterIdentity {
        aura_transport::carrier::tls::OuterIdentity {
            cert_chain: vec![CertificateDer::from(self.cert_der.clone())],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.to_vec())),
        }
    }
}

/// An error and its sources, joined by ": ".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

fn read(what: &str, path: &Path) -> Result<Zeroizing<String>, DaemonError> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| {
            DaemonError::Credentials(format!("cannot read the {what} {}: {e}", path.display()))
        })
}

/// The DER of the one PEM block labelled `label` in `path`.
fn pem_block(what: &str, path: &Path, label: &str) -> Result<Zeroizing<Vec<u8>>, DaemonError> {
    let text = read(what, path)?;
    let block = pem::parse(text.as_bytes()).map_err(|e| {
        DaemonError::Credentials(format!("the {what} {} is not PEM: {e}", path.display()))
    })?;
    if block.tag() != label {
        return Err(DaemonError::Credentials(format!(
            "the {what} {} holds a {} block, expected {label}",
            path.display(),
            block.tag()
        )));
    }
    Ok(Zeroizing::new(block.into_contents()))
}

/// Reads and checks the four files: the key must be an unencrypted PKCS#8 ECDSA P-256
/// key, the CRL must verify against the CA.
///
/// # Errors
/// [`DaemonError::Credentials`] naming the file and the problem.
pub fn load(ca: &Path, crl: &Path, cert: &Path, key: &Path) -> Result<Credentials, DaemonError> {
    let ca_der = pem_block("CA certificate", ca, "CERTIFICATE")?.to_vec();
    let crl_der = pem_block("CRL", crl, "X509 CRL")?.to_vec();
    let cert_der = pem_block("certificate", cert, "CERTIFICATE")?.to_vec();
    let key_pkcs8 = pem_block("private key", key, "PRIVATE KEY")?;
    let signer = EcdsaP256Signer::from_pkcs8_der(&key_pkcs8).map_err(|e| {
        DaemonError::Credentials(format!(
            "the private key {} is not an ECDSA P-256 PKCS#8 key: {e}",
            key.display()
        ))
    })?;
    aura_pki::Verifier::new(&ca_der, [&crl_der]).map_err(|e| {
        DaemonError::Credentials(format!(
            "the CRL {} does not go with the CA {}: {e}",
            crl.display(),
            ca.display()
        ))
    })?;
    Ok(Credentials {
        identity: Identity {
            cert_der: cert_der.clone(),
            signer: Arc::new(signer),
        },
        secret: DeploymentSecret::from_ca(&ca_der),
        ca_der,
        crl_der,
        cert_der,
        key_pkcs8,
    })
}

/// The CRL number of a verifier as a `u64` (CRL numbers Aura issues fit; larger ones
/// saturate).
pub fn crl_number(verifier: &aura_pki::Verifier) -> u64 {
    let bytes = verifier.crl_number();
    let start = bytes.len().saturating_sub(8);
    if bytes[..start].iter().any(|&b| b != 0) {
        return u64::MAX;
    }
    bytes[start..]
        .iter()
        .fold(0u64, |n, &b| (n << 8) | u64::from(b))
}

/// Writes `der` as a PEM CRL to `path` atomically (mode 0644: a CRL is public).
///
/// # Errors
/// The I/O error, naming the path.
pub fn save_crl(path: &Path, der: &[u8]) -> Result<(), DaemonError> {
    let text = pem::encode_config(
        &pem::Pem::new("X509 CRL", der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    aura_pki::write_atomic(path, text.as_bytes(), 0o644).map_err(|e| {
        DaemonError::Credentials(format!("cannot save the CRL to {}: {e}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write(dir: &Path, name: &str, label: &str, der: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, pem::encode(&pem::Pem::new(label, der))).unwrap();
        path
    }

    #[test]
    fn loads_a_test_deployment_and_names_bad_files() {
        let pki = aura_testkit::TestPki::new(2).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = write(d, "ca.crt", "CERTIFICATE", pki.ca_der());
        let crl = write(d, "crl.pem", "X509 CRL", pki.crl_der());
        let cert = write(d, "alice.crt", "CERTIFICATE", &pki.alice().cert_der);
        let key = write(d, "alice.key", "PRIVATE KEY", &pki.alice().key_pkcs8_der);
        let c = load(&ca, &crl, &cert, &key).unwrap();
        assert_eq!(c.ca_der, pki.ca_der());
        assert_eq!(c.identity.cert_der, pki.alice().cert_der);
        // A certificate where the key should be.
        let err = load(&ca, &crl, &cert, &cert).unwrap_err().to_string();
        assert!(
            err.contains("holds a CERTIFICATE block, expected PRIVATE KEY"),
            "{err}"
        );
        // A missing file.
        let gone = dir.path().join("nope.pem");
        let err = load(&ca, &gone, &cert, &key).unwrap_err().to_string();
        assert!(
            err.contains("cannot read the CRL") && err.contains("nope.pem"),
            "{err}"
        );
    }

    #[test]
    fn crl_is_saved_atomically_and_reads_back() {
        let pki = aura_testkit::TestPki::new(2).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crl.pem");
        let der = pki.crl_der().to_vec();
        save_crl(&path, &der).unwrap();
        assert_eq!(&*pem_block("CRL", &path, "X509 CRL").unwrap(), &der[..]);
        let v = aura_pki::Verifier::new(pki.ca_der(), [&der]).unwrap();
        assert!(crl_number(&v) >= 1);
    }
}
