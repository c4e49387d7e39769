//! Transcript signatures with a long-term key: the [`Signer`] seam and the production
//! ECDSA P-256 / SHA-256 signer.
//!
//! The handshake signs its transcript through `Arc<dyn Signer>`, so it never touches key
//! material or a random source itself: the host builds the signer once, and tests that
//! need byte-exact transcripts plug in a deterministic one.
//!
//! [`EcdsaP256Signer`] draws its per-signature randomness from one of two sources, chosen
//! when it is built:
//! - [`EcdsaP256Signer::from_pkcs8_der`], the default: AWS-LC signs, with nonces from
//!   AWS-LC's own DRBG, which the operating system seeds;
//! - [`EcdsaP256Signer::with_rng`]: the caller's RNG. The nonce is derived as in RFC 6979
//!   §3.2 with 32 bytes from that RNG as additional input (a "hedged" signature), so it is
//!   safe even when the RNG is weak, and a seeded RNG reproduces every signature.
//!
//! Both produce ASN.1 DER signatures that verify the same way. Signing never panics: a
//! failing random source is reported as [`SignError::Rng`].

use std::sync::{Mutex, PoisonError};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use p256::ecdsa::signature::RandomizedSigner;
use p256::pkcs8::DecodePrivateKey;
use rand_core::{CryptoRng, CryptoRngCore, RngCore};

pub use crate::error::SignError;

/// Signs handshake transcripts with this side's long-term key.
///
/// The production signer is [`EcdsaP256Signer`]. Tests that need byte-exact transcripts
/// plug in a deterministic signer.
pub trait Signer: Send + Sync + core::fmt::Debug {
    /// Signs `msg` (ECDSA P-256 with SHA-256, ASN.1 DER signature).
    ///
    /// # Errors
    /// A [`SignError`] naming the local failure.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// An RNG a signer owns, shared by the threads that sign with it.
type SharedRng = Mutex<Box<dyn CryptoRngCore + Send>>;

/// ECDSA P-256 / SHA-256 signing; see the module documentation for where its randomness
/// comes from.
pub struct EcdsaP256Signer {
    backend: Backend,
}

enum Backend {
    /// AWS-LC, nonces from AWS-LC's DRBG.
    System(EcdsaKeyPair),
    /// RFC 6979 hedged with the caller's RNG.
    Injected {
        key: p256::ecdsa::SigningKey,
        rng: SharedRng,
    },
}

impl core::fmt::Debug for EcdsaP256Signer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("EcdsaP256Signer(..)")
    }
}

impl EcdsaP256Signer {
    /// Loads a PKCS#8 DER P-256 private key; signatures take their randomness from the
    /// system (AWS-LC's DRBG).
    ///
    /// # Errors
    /// [`SignError::InvalidKey`] when the key is not a P-256 PKCS#8 key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, SignError> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der)
            .map_err(|e| SignError::InvalidKey(e.description_()))?;
        Ok(Self {
            backend: Backend::System(key),
        })
    }

    /// Loads a PKCS#8 DER P-256 private key; every signature draws 32 bytes from `rng`
    /// as the additional input of an RFC 6979 nonce.
    ///
    /// # Errors
    /// [`SignError::InvalidKey`] when the key is not a P-256 PKCS#8 key.
    pub fn with_rng(
        der: &[u8],
        rng: impl RngCore + CryptoRng + Send + 'static,
    ) -> Result<Self, SignError> {
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(der)
            .map_err(|_| SignError::InvalidKey("not a P-256 PKCS#8 private key"))?;
        Ok(Self {
            backend: Backend::Injected {
                key,
                rng: Mutex::new(Box::new(rng)),
            },
        })
    }
}

impl Signer for EcdsaP256Signer {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.backend {
            Backend::System(key) => key
                .sign(&SystemRandom::new(), msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Internal("ECDSA P-256 signing")),
            Backend::Injected { key, rng } => {
                // An RNG left behind by a panic elsewhere is still an RNG.
                let mut rng = rng.lock().unwrap_or_else(PoisonError::into_inner);
                let mut checked = Checked {
                    inner: &mut **rng,
                    failed: false,
                };
                let sig: p256::ecdsa::DerSignature = key
                    .try_sign_with_rng(&mut checked, msg)
                    .map_err(|_| SignError::Internal("ECDSA P-256 signing"))?;
                if checked.failed {
                    return Err(SignError::Rng);
                }
                Ok(sig.as_bytes().to_vec())
            }
        }
    }
}

/// Passes an injected RNG to the signing code, recording a failure instead of panicking
/// (`RngCore::fill_bytes` has no way to report one).
struct Checked<'a> {
    inner: &'a mut (dyn CryptoRngCore + Send),
    failed: bool,
}

impl RngCore for Checked<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if self.inner.try_fill_bytes(dest).is_err() {
            dest.fill(0);
            self.failed = true;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        let r = self.inner.try_fill_bytes(dest);
        self.failed |= r.is_err();
        r
    }
}

impl CryptoRng for Checked<'_> {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, KeyPair, UnparsedPublicKey};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// A fresh P-256 key: (PKCS#8 DER, uncompressed public key).
    fn key() -> (Vec<u8>, Vec<u8>) {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref()).unwrap();
        (doc.as_ref().to_vec(), pair.public_key().as_ref().to_vec())
    }

    fn verifies(public: &[u8], msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public)
            .verify(msg, sig)
            .is_ok()
    }

    #[test]
    fn both_sources_sign_verifiable_signatures() {
        let (der, public) = key();
        let system = EcdsaP256Signer::from_pkcs8_der(&der).unwrap();
        let injected = EcdsaP256Signer::with_rng(&der, ChaCha20Rng::from_seed([1; 32])).unwrap();
        for signer in [&system, &injected] {
            let sig = signer.sign(b"transcript").unwrap();
            assert!(verifies(&public, b"transcript", &sig));
            assert!(!verifies(&public, b"transcripT", &sig));
        }
    }

    #[test]
    fn injected_rng_reproduces_signatures() {
        let (der, _) = key();
        let sign = |seed: u8| {
            EcdsaP256Signer::with_rng(&der, ChaCha20Rng::from_seed([seed; 32]))
                .unwrap()
                .sign(b"m")
                .unwrap()
        };
        assert_eq!(sign(7), sign(7));
        assert_ne!(sign(7), sign(8));
        // Each signature draws fresh bytes, so one signer never repeats itself.
        let signer = EcdsaP256Signer::with_rng(&der, ChaCha20Rng::from_seed([7; 32])).unwrap();
        assert_ne!(signer.sign(b"m").unwrap(), signer.sign(b"m").unwrap());
    }

    /// An RNG that always fails.
    struct Broken;
    impl RngCore for Broken {
        fn next_u32(&mut self) -> u32 {
            0
        }
        fn next_u64(&mut self) -> u64 {
            0
        }
        fn fill_bytes(&mut self, _: &mut [u8]) {
            panic!("fill_bytes must not be reached");
        }
        fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), rand_core::Error> {
            Err(rand_core::Error::new("broken"))
        }
    }
    impl CryptoRng for Broken {}

    #[test]
    fn failing_rng_is_an_error_not_a_panic() {
        let (der, _) = key();
        let signer = EcdsaP256Signer::with_rng(&der, Broken).unwrap();
        assert_eq!(signer.sign(b"m"), Err(SignError::Rng));
    }

    #[test]
    fn rejects_keys_that_are_not_p256_pkcs8() {
        assert!(matches!(
            EcdsaP256Signer::from_pkcs8_der(b"not a key"),
            Err(SignError::InvalidKey(_))
        ));
        assert!(matches!(
            EcdsaP256Signer::with_rng(b"not a key", ChaCha20Rng::from_seed([0; 32])),
            Err(SignError::InvalidKey(_))
        ));
    }

    #[test]
    fn debug_hides_the_key() {
        let (der, _) = key();
        let signer = EcdsaP256Signer::from_pkcs8_der(&der).unwrap();
        assert_eq!(format!("{signer:?}"), "EcdsaP256Signer(..)");
    }
}
