//! Aura's cryptographic core.
//!
//! - [`kem`]: the hybrid KEM, X25519 + ML-KEM-768, whose shared secret stays safe while
//!   either component holds;
//! - [`aead`]: AES-256-GCM and ChaCha20-Poly1305, sealing and opening in place;
//! - [`block`]: AES-256 as a block function, for header masks and padding keystreams;
//! - [`kdf`]: HKDF-SHA256 key-schedule helpers and the zeroizing [`Secret`];
//! - [`labels`]: every domain-separation label, in one place;
//! - [`sign`]: the [`Signer`](sign::Signer) seam and the ECDSA P-256 transcript signer.
//!
//! Guarantees: no IO, no clock, no global RNG. Every function that needs randomness takes
//! an `RngCore + CryptoRng` from the caller, so a seeded RNG reproduces every output
//! (tests and known-answer transcripts rely on this). The one exception is chosen by the
//! host when it builds its signer: [`sign::EcdsaP256Signer::from_pkcs8_der`] signs with
//! AWS-LC's OS-seeded DRBG, [`sign::EcdsaP256Signer::with_rng`] with the caller's RNG.
//! Secret values zeroize on drop. No `unsafe` in this crate.
//!
//! ```
//! use aura_crypto::{aead::{AeadKey, Suite, nonce_for}, kem::{self, HybridSecretKey}};
//! let mut rng = rand_core::OsRng;
//! // Responder publishes an ephemeral hybrid key; initiator encapsulates to it.
//! let responder = HybridSecretKey::generate(&mut rng)?;
//! let (ct, ss_initiator) = kem::encapsulate(responder.public_key().as_bytes(), &mut rng)?;
//! let ss_responder = responder.decapsulate(ct.as_bytes())?;
//! assert_eq!(ss_initiator, ss_responder);
//! // Seal a packet in place with a key derived from it.
//! let key = AeadKey::new(Suite::Aes256Gcm, ss_initiator.expose())?;
//! let mut buf = [0u8; 5 + 16];
//! buf[..5].copy_from_slice(b"hello");
//! let n = key.seal_in_place(&nonce_for(&[0; 12], 1), b"", &mut buf, 5)?;
//! assert_eq!(n, 21);
//! # Ok::<(), aura_crypto::CryptoError>(())
//! ```
#![forbid(unsafe_code)]

pub mod aead;
pub mod block;
mod error;
pub mod kdf;
pub mod kem;
pub mod labels;
pub mod sign;

pub use error::{CryptoError, SignError};
pub use kdf::Secret;
pub use rand_core::{CryptoRng, OsRng, RngCore};
