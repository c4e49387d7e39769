//! Authenticated encryption for the data channel: AES-256-GCM (default) and
//! ChaCha20-Poly1305, sealing and opening in place in a caller buffer.
//!
//! Neither call allocates: the ciphertext replaces the plaintext in the caller's buffer
//! and the 16-byte tag is written right after it, so a packet buffer with tail room is
//! sealed without a copy.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::CryptoError;

/// Key length of both suites, in bytes.
pub const KEY_LEN: usize = 32;
/// Nonce length of both suites, in bytes.
pub const NONCE_LEN: usize = 12;
/// Tag length of both suites, in bytes.
pub const TAG_LEN: usize = 16;

/// An AEAD suite. The discriminant is its wire identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Suite {
    /// AES-256-GCM (NIST SP 800-38D). The default: hardware-accelerated on every x86-64 and
    /// ARMv8 server CPU Aura targets.
    #[default]
    Aes256Gcm = 1,
    /// ChaCha20-Poly1305 (RFC 8439), for CPUs without AES instructions.
    ChaCha20Poly1305 = 2,
    /// Bound to the outer TLS session that carries it (docs/adr/0024): the handshake is
    /// sealed with AES-256-GCM as under [`Suite::Aes256Gcm`], data packets are not
    /// encrypted by Aura (the outer session's record protection is their encryption).
    /// Never configured: offered and chosen only on a link that has an outer session's
    /// exporter, which the handshake then covers.
    Bound = 3,
}

impl Suite {
    /// Every suite that encrypts data, in order of preference: what a configuration
    /// offers.
    pub const ALL: [Suite; 2] = [Suite::Aes256Gcm, Suite::ChaCha20Poly1305];

    /// The suite with wire identifier `id`, if any.
    pub fn from_id(id: u8) -> Option<Self> {
        Self::ALL
            .into_iter()
            .chain([Suite::Bound])
            .find(|s| *s as u8 == id)
    }

    /// Whether Aura's own AEAD encrypts data packets under this suite.
    pub fn encrypts_data(self) -> bool {
        self != Suite::Bound
    }

    /// The wire identifier.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// A short human-readable name.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Aes256Gcm => "aes-256-gcm",
            Suite::ChaCha20Poly1305 => "chacha20-poly1305",
            Suite::Bound => "bound",
        }
    }

    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Suite::Aes256Gcm | Suite::Bound => &aead::AES_256_GCM,
            Suite::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

impl core::fmt::Display for Suite {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// An expanded AEAD key. The key schedule lives inside AWS-LC, which cleanses it on drop.
pub struct AeadKey {
    key: LessSafeKey,
    suite: Suite,
}

impl core::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AeadKey")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl AeadKey {
    /// Expands `key` (32 bytes) for `suite`.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKeyLength`] when `key` is not 32 bytes.
    pub fn new(suite: Suite, key: &[u8]) -> Result<Self, CryptoError> {
        if key.len() != KEY_LEN {
            return Err(CryptoError::InvalidKeyLength {
                expected: KEY_LEN,
                got: key.len(),
            });
        }
        let unbound = UnboundKey::new(suite.algorithm(), key)
            .map_err(|_| CryptoError::Internal("aead key setup"))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            suite,
        })
    }

    /// The suite of this key.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Encrypts `buf[..plaintext_len]` in place and writes the tag at
    /// `buf[plaintext_len..plaintext_len + TAG_LEN]`. Returns the sealed length.
    ///
    /// # Errors
    /// [`CryptoError::BufferTooSmall`] when `buf` has no room for the tag.
    pub fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        plaintext_len: usize,
    ) -> Result<usize, CryptoError> {
        seal(&self.key, nonce, aad, buf, plaintext_len)
    }

    /// Verifies and decrypts `buf` (ciphertext followed by the tag) in place, returning the
    /// plaintext, which is a prefix of `buf`.
    ///
    /// # Errors
    /// [`CryptoError::BufferTooSmall`] when `buf` is shorter than a tag;
    /// [`CryptoError::DecryptFailed`] when authentication fails (the buffer's contents are
    /// then unspecified).
    pub fn open_in_place<'a>(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &'a mut [u8],
    ) -> Result<&'a mut [u8], CryptoError> {
        open(&self.key, nonce, aad, buf)
    }
}

/// An AES-256-GCM-SIV key (RFC 8452): nonce-misuse resistant, for a long-lived key that
/// seals with random nonces (cookie replies). A repeated nonce reveals only that two
/// messages were equal, never the key or a way to forge. Same layout as [`AeadKey`]:
/// 12-byte nonce, 16-byte tag.
pub struct SivKey {
    key: LessSafeKey,
}

impl core::fmt::Debug for SivKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SivKey").finish_non_exhaustive()
    }
}

impl SivKey {
    /// Expands `key` (32 bytes).
    ///
    /// # Errors
    /// [`CryptoError::InvalidKeyLength`] when `key` is not 32 bytes.
    pub fn new(key: &[u8]) -> Result<Self, CryptoError> {
        if key.len() != KEY_LEN {
            return Err(CryptoError::InvalidKeyLength {
                expected: KEY_LEN,
                got: key.len(),
            });
        }
        let unbound = UnboundKey::new(&aead::AES_256_GCM_SIV, key)
            .map_err(|_| CryptoError::Internal("aead key setup"))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    /// As [`AeadKey::seal_in_place`].
    ///
    /// # Errors
    /// [`CryptoError::BufferTooSmall`] when `buf` has no room for the tag.
    pub fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        plaintext_len: usize,
    ) -> Result<usize, CryptoError> {
        seal(&self.key, nonce, aad, buf, plaintext_len)
    }

    /// As [`AeadKey::open_in_place`].
    ///
    /// # Errors
    /// [`CryptoError::BufferTooSmall`], [`CryptoError::DecryptFailed`].
    pub fn open_in_place<'a>(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &'a mut [u8],
    ) -> Result<&'a mut [u8], CryptoError> {
        open(&self.key, nonce, aad, buf)
    }
}

fn seal(
    key: &LessSafeKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
    plaintext_len: usize,
) -> Result<usize, CryptoError> {
    let needed = plaintext_len.saturating_add(TAG_LEN);
    if buf.len() < needed {
        return Err(CryptoError::BufferTooSmall {
            needed,
            have: buf.len(),
        });
    }
    let (data, rest) = buf.split_at_mut(plaintext_len);
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), data)
        .map_err(|_| CryptoError::Internal("aead seal"))?;
    rest[..TAG_LEN].copy_from_slice(tag.as_ref());
    Ok(needed)
}

fn open<'a>(
    key: &LessSafeKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &'a mut [u8],
) -> Result<&'a mut [u8], CryptoError> {
    if buf.len() < TAG_LEN {
        return Err(CryptoError::BufferTooSmall {
            needed: TAG_LEN,
            have: buf.len(),
        });
    }
    key.open_in_place(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
        .map_err(|_| CryptoError::DecryptFailed)
}

/// The per-packet nonce: the 12-byte `iv` XORed with the big-endian 64-bit `counter` in
/// its last 8 bytes (the construction of TLS 1.3, RFC 8446 §5.3). Unique per key as long
/// as counters never repeat, which the data channel guarantees by rekeying long before
/// the counter wraps.
pub fn nonce_for(iv: &[u8; NONCE_LEN], counter: u64) -> [u8; NONCE_LEN] {
    let mut n = *iv;
    for (b, c) in n[4..].iter_mut().zip(counter.to_be_bytes()) {
        *b ^= c;
    }
    n
}

/// Key material for one direction of the data channel: key and IV, zeroized on drop.
pub type RawKey = Zeroizing<[u8; KEY_LEN]>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// RFC 8452 Appendix C.2, the first AEAD_AES_256_GCM_SIV vector (empty message and
    /// AAD: the result is the tag alone); then round trip and tamper.
    #[test]
    fn siv_matches_rfc_8452_and_refuses_tampering() {
        let mut key = [0u8; 32];
        key[0] = 1;
        let mut nonce = [0u8; 12];
        nonce[0] = 3;
        let k = SivKey::new(&key).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(k.seal_in_place(&nonce, b"", &mut buf, 0).unwrap(), 16);
        let expected: [u8; 16] = [
            0x07, 0xf5, 0xf4, 0x16, 0x9b, 0xbf, 0x55, 0xa8, 0x40, 0x0c, 0xd4, 0x7e, 0xa6, 0xfd,
            0x40, 0x0f,
        ];
        assert_eq!(buf, expected);
        let mut sealed = [0u8; 32];
        sealed[..16].copy_from_slice(b"a cookie, 16 b.!");
        k.seal_in_place(&nonce, b"mac1", &mut sealed, 16).unwrap();
        let mut copy = sealed;
        assert_eq!(
            k.open_in_place(&nonce, b"mac1", &mut copy).unwrap(),
            b"a cookie, 16 b.!"
        );
        let mut t = sealed;
        t[3] ^= 1;
        assert_eq!(
            k.open_in_place(&nonce, b"mac1", &mut t),
            Err(CryptoError::DecryptFailed)
        );
        let mut t = sealed;
        assert_eq!(
            k.open_in_place(&nonce, b"mac2", &mut t),
            Err(CryptoError::DecryptFailed)
        );
        assert!(SivKey::new(&[0u8; 31]).is_err());
    }

    #[test]
    fn round_trip_and_tamper_both_suites() {
        for suite in Suite::ALL {
            let key = AeadKey::new(suite, &[9u8; 32]).unwrap();
            let nonce = nonce_for(&[1u8; 12], 42);
            let mut buf = [0u8; 64];
            buf[..20].copy_from_slice(b"twenty bytes of data");
            let n = key.seal_in_place(&nonce, b"hdr", &mut buf, 20).unwrap();
            assert_eq!(n, 36);
            assert_ne!(&buf[..20], b"twenty bytes of data");
            let mut copy = buf;
            let pt = key.open_in_place(&nonce, b"hdr", &mut copy[..n]).unwrap();
            assert_eq!(pt, b"twenty bytes of data");
            // A flipped bit anywhere, another AAD or another nonce all fail.
            for i in 0..n {
                let mut t = buf;
                t[i] ^= 1;
                assert_eq!(
                    key.open_in_place(&nonce, b"hdr", &mut t[..n]),
                    Err(CryptoError::DecryptFailed)
                );
            }
            let mut t = buf;
            assert!(key.open_in_place(&nonce, b"hdx", &mut t[..n]).is_err());
            let mut t = buf;
            assert!(
                key.open_in_place(&nonce_for(&[1u8; 12], 43), b"hdr", &mut t[..n])
                    .is_err()
            );
        }
    }

    #[test]
    fn rejects_short_buffers_and_bad_keys() {
        let key = AeadKey::new(Suite::Aes256Gcm, &[0u8; 32]).unwrap();
        let mut buf = [0u8; 20];
        assert!(matches!(
            key.seal_in_place(&[0; 12], b"", &mut buf, 10),
            Err(CryptoError::BufferTooSmall {
                needed: 26,
                have: 20
            })
        ));
        assert!(matches!(
            key.open_in_place(&[0; 12], b"", &mut buf[..15]),
            Err(CryptoError::BufferTooSmall { .. })
        ));
        assert!(AeadKey::new(Suite::Aes256Gcm, &[0u8; 16]).is_err());
    }

    #[test]
    fn nonce_xors_counter_into_tail() {
        let iv = [0xffu8; 12];
        let n = nonce_for(&iv, 0x0102030405060708);
        assert_eq!(&n[..4], &[0xff; 4]);
        assert_eq!(&n[4..], &[0xfe, 0xfd, 0xfc, 0xfb, 0xfa, 0xf9, 0xf8, 0xf7]);
        assert_eq!(nonce_for(&iv, 0), iv);
    }

    #[test]
    fn suite_ids_round_trip() {
        for s in Suite::ALL {
            assert_eq!(Suite::from_id(s.id()), Some(s));
        }
        assert_eq!(Suite::from_id(3), Some(Suite::Bound));
        assert!(!Suite::Bound.encrypts_data());
        assert!(Suite::ALL.iter().all(|s| s.encrypts_data()));
        assert_eq!(Suite::from_id(0), None);
        assert_eq!(Suite::from_id(4), None);
    }
}
