//! The crate's error types.

/// What can go wrong in a cryptographic operation.
///
/// Variants say whose fault it is: a malformed or hostile peer value
/// ([`CryptoError::InvalidPublicKey`], [`CryptoError::InvalidCiphertext`],
/// [`CryptoError::DecryptFailed`]) versus a caller mistake
/// ([`CryptoError::BufferTooSmall`], [`CryptoError::InvalidKeyLength`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A peer's public key has the wrong length, fails the FIPS 203 modulus check, or is an
    /// X25519 point that yields the all-zero shared secret.
    #[error("invalid {0} public key")]
    InvalidPublicKey(&'static str),
    /// A ciphertext has the wrong length.
    #[error("invalid {0} ciphertext")]
    InvalidCiphertext(&'static str),
    /// AEAD authentication failed: the packet was forged, corrupted or sealed with another key.
    #[error("AEAD authentication failed")]
    DecryptFailed,
    /// The caller's buffer has no room for the tag or is shorter than a tag.
    #[error("buffer too small: need {needed} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes required.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// A key of the wrong length was supplied.
    #[error("key must be {expected} bytes, got {got}")]
    InvalidKeyLength {
        /// Required length.
        expected: usize,
        /// Supplied length.
        got: usize,
    },
    /// The underlying library reported a failure that should not happen (a bug or an
    /// exhausted resource).
    #[error("internal cryptographic failure in {0}")]
    Internal(&'static str),
}

/// Why a transcript signature could not be made or a signing key could not be loaded.
///
/// Every variant is a local fault: a bad key file, a failing random source, or a failure
/// inside the signing library. None is caused by a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The private key is not an ECDSA P-256 key in PKCS#8 DER; the text says what the
    /// parser refused.
    #[error("private key is not ECDSA P-256 PKCS#8: {0}")]
    InvalidKey(&'static str),
    /// The signer's injected random source failed to produce bytes.
    #[error("the signer's random source failed")]
    Rng,
    /// The signing library reported a failure that should not happen (a bug or an
    /// exhausted resource).
    #[error("internal signing failure in {0}")]
    Internal(&'static str),
}
