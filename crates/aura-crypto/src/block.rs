//! AES-256 as a block function: header masks and keystreams for the camouflage layer.
//!
//! Not an encryption mode for secrets: the UDP carrier uses it to hide header fields
//! behind a mask computed from ciphertext it already sends (as QUIC's header protection
//! does, RFC 9001 §5.4), and to fill padding with bytes no observer can tell from
//! ciphertext.

use aws_lc_rs::cipher::{AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;

use crate::error::CryptoError;

/// Block size in bytes.
pub const BLOCK_LEN: usize = 16;

/// An AES-256 key that encrypts single blocks (ECB). The key schedule lives inside
/// AWS-LC, which cleanses it on drop.
pub struct BlockKey(EncryptingKey);

impl core::fmt::Debug for BlockKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("BlockKey(..)")
    }
}

impl BlockKey {
    /// Expands a 32-byte key.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKeyLength`] when `key` is not 32 bytes.
    pub fn new(key: &[u8]) -> Result<Self, CryptoError> {
        let unbound =
            UnboundCipherKey::new(&AES_256, key).map_err(|_| CryptoError::InvalidKeyLength {
                expected: 32,
                got: key.len(),
            })?;
        EncryptingKey::ecb(unbound)
            .map(Self)
            .map_err(|_| CryptoError::Internal("block key setup"))
    }

    /// AES-256(key, `block`).
    pub fn mask(&self, block: &[u8; BLOCK_LEN]) -> [u8; BLOCK_LEN] {
        let mut out = *block;
        self.encrypt_blocks(&mut out);
        out
    }

    /// Encrypts `buf` in place, block by block; `buf.len()` must be a multiple of
    /// [`BLOCK_LEN`] (anything else is left as is).
    pub fn encrypt_blocks(&self, buf: &mut [u8]) {
        if buf.len().is_multiple_of(BLOCK_LEN) && !buf.is_empty() {
            // ECB with an aligned length cannot fail.
            let _ = self.0.less_safe_encrypt(buf, EncryptionContext::None);
        }
    }
}

/// A keystream from AES-256 in counter mode under a random key: bytes an observer cannot
/// tell from ciphertext, at AES speed, for padding and nonces of the camouflage layer.
///
/// It runs AWS-LC's AES-CTR over a zeroed buffer (AES(counter), AES(counter + 1), …, the
/// counter a big-endian 128-bit block), which pipelines the blocks; one block-function
/// call per block costs several times as much.
pub struct Keystream {
    key: EncryptingKey,
    counter: u128,
    buf: Vec<u8>,
    pos: usize,
}

impl core::fmt::Debug for Keystream {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Keystream(..)")
    }
}

/// Bytes produced per refill.
const STREAM_CHUNK: usize = 4096;

impl Keystream {
    /// A keystream from a 32-byte seed (from the OS RNG).
    ///
    /// # Errors
    /// As [`BlockKey::new`].
    pub fn new(seed: &[u8; 32]) -> Result<Self, CryptoError> {
        Self::starting_at(seed, 0)
    }

    fn starting_at(seed: &[u8; 32], counter: u128) -> Result<Self, CryptoError> {
        let unbound =
            UnboundCipherKey::new(&AES_256, seed).map_err(|_| CryptoError::InvalidKeyLength {
                expected: 32,
                got: seed.len(),
            })?;
        let key =
            EncryptingKey::ctr(unbound).map_err(|_| CryptoError::Internal("keystream setup"))?;
        Ok(Self {
            key,
            counter,
            buf: vec![0u8; STREAM_CHUNK],
            pos: STREAM_CHUNK,
        })
    }

    fn refill(&mut self) {
        self.buf.fill(0);
        let iv = EncryptionContext::Iv128(FixedLength::from(self.counter.to_be_bytes()));
        // CTR over a whole buffer with a 16-byte counter block cannot fail.
        let _ = self.key.less_safe_encrypt(&mut self.buf, iv);
        self.counter = self
            .counter
            .wrapping_add((STREAM_CHUNK / BLOCK_LEN) as u128);
        self.pos = 0;
    }

    /// Fills `out`.
    pub fn fill(&mut self, mut out: &mut [u8]) {
        while !out.is_empty() {
            if self.pos == self.buf.len() {
                self.refill();
            }
            let n = out.len().min(self.buf.len() - self.pos);
            let (head, rest) = out.split_at_mut(n);
            head.copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            out = rest;
        }
    }

    /// Appends `n` bytes to `out`.
    pub fn extend(&mut self, out: &mut Vec<u8>, n: usize) {
        let start = out.len();
        out.resize(start + n, 0);
        self.fill(&mut out[start..]);
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn aes256_known_answer() {
        // FIPS-197 Appendix C.3.
        let key: Vec<u8> = (0u8..32).collect();
        let pt: [u8; 16] = core::array::from_fn(|i| (i as u8) * 0x11);
        let ct = BlockKey::new(&key).unwrap().mask(&pt);
        assert_eq!(hex::encode(ct), "8ea2b7ca516745bfeafc49904b496089");
        assert!(BlockKey::new(&key[..16]).is_err());
    }

    #[test]
    fn keystream_is_counter_mode_and_continuous() {
        let seed = [3u8; 32];
        let mut a = Keystream::new(&seed).unwrap();
        let mut whole = vec![0u8; 5000];
        a.fill(&mut whole);
        let mut b = Keystream::new(&seed).unwrap();
        let mut parts = Vec::new();
        for n in [1usize, 15, 17, 4000, 967] {
            b.extend(&mut parts, n);
        }
        assert_eq!(whole, parts);
        let first = BlockKey::new(&seed).unwrap().mask(&0u128.to_be_bytes());
        assert_eq!(&whole[..16], &first);
        assert_ne!(&whole[..16], &whole[16..32]);
    }

    /// Block `i` of the stream is AES(counter + i) with the whole 128-bit counter
    /// incremented: across a refill and across the low 32 bits' carry.
    #[test]
    fn keystream_blocks_are_aes_of_the_full_counter() {
        let seed = [9u8; 32];
        let block = BlockKey::new(&seed).unwrap();
        for start in [0u128, u128::from(u32::MAX) - 300, u128::MAX - 2] {
            let mut ks = Keystream::starting_at(&seed, start).unwrap();
            let mut out = vec![0u8; 2 * STREAM_CHUNK + BLOCK_LEN];
            ks.fill(&mut out);
            for (i, got) in out.chunks_exact(BLOCK_LEN).enumerate() {
                let want = block.mask(&start.wrapping_add(i as u128).to_be_bytes());
                assert_eq!(got, want, "start {start:#x}, block {i}");
            }
        }
    }
}
