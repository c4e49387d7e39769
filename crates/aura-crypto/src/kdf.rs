//! HKDF-SHA256 key-schedule helpers (RFC 5869), SHA-256 (one-shot and incremental) and
//! HMAC-SHA256.
//!
//! Every expansion goes through [`expand_label`], which prefixes the caller's label
//! with [`labels::EXPAND_PREFIX`](crate::labels::EXPAND_PREFIX) and length-prefixes the
//! label and the context, so no two (label, context) pairs can produce the same `info`.

use aws_lc_rs::{digest, hkdf, hmac};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{CryptoError, labels};

/// Length of every Aura secret and hash output, in bytes.
pub const SECRET_LEN: usize = 32;

/// A 32-byte secret (a pseudorandom key, a traffic secret, a shared secret).
///
/// Zeroized on drop; compared in constant time; its `Debug` output hides the bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret([u8; SECRET_LEN]);

impl Secret {
    /// Wraps raw bytes. The caller should zeroize its own copy.
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> Self {
        Self(bytes)
    }

    /// The secret bytes. Do not copy them into memory that is not zeroized.
    pub fn expose(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for Secret {}

impl core::fmt::Debug for Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// HKDF-Extract(salt, ikm) with SHA-256, returning the pseudorandom key.
///
/// Computed as HMAC-SHA256(key = salt, ikm) per RFC 5869 §2.2, so the PRK can be
/// kept as a zeroizing [`Secret`] and fed back into [`expand_label`].
pub fn extract(salt: &[u8], ikm: &[&[u8]]) -> Secret {
    let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
    let mut ctx = hmac::Context::with_key(&key);
    for part in ikm {
        ctx.update(part);
    }
    let tag = ctx.sign();
    let mut out = [0u8; SECRET_LEN];
    out.copy_from_slice(tag.as_ref());
    let s = Secret(out);
    out.zeroize();
    s
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// Maximum length of a label or context accepted by [`expand_label`].
pub const MAX_LABEL_LEN: usize = 255;

/// HKDF-Expand(prk, info, out.len()) where
/// `info = u16_be(out.len()) || u8(len(prefix||label)) || "aura/v1 " || label || u8(len(ctx)) || ctx`
/// (the shape of TLS 1.3's HkdfLabel, RFC 8446 §7.1).
///
/// # Errors
/// [`CryptoError::InvalidKeyLength`] when `out` is longer than 255 × 32 bytes or empty,
/// or when label or context exceed [`MAX_LABEL_LEN`].
pub fn expand_label(
    prk: &Secret,
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    let full_label_len = labels::EXPAND_PREFIX.len() + label.len();
    if out.is_empty() || out.len() > 255 * SECRET_LEN {
        return Err(CryptoError::InvalidKeyLength {
            expected: SECRET_LEN,
            got: out.len(),
        });
    }
    let (Ok(label_len), Ok(ctx_len), Ok(out_len)) = (
        u8::try_from(full_label_len),
        u8::try_from(context.len()),
        u16::try_from(out.len()),
    ) else {
        return Err(CryptoError::InvalidKeyLength {
            expected: MAX_LABEL_LEN,
            got: full_label_len.max(context.len()),
        });
    };
    let out_len = out_len.to_be_bytes();
    let info: [&[u8]; 6] = [
        &out_len,
        &[label_len],
        labels::EXPAND_PREFIX,
        label,
        &[ctx_len],
        context,
    ];
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, prk.expose());
    prk.expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| CryptoError::Internal("hkdf expand"))
}

/// Plain HKDF-Expand(prk, info, out.len()) of RFC 5869, without Aura's label framing
/// (for derivations whose labels were fixed elsewhere: the daily masks).
///
/// `out` must be 1 to 255 × 32 bytes long; anything else leaves it zeroed.
pub fn expand_raw(prk: &Secret, info: &[u8], out: &mut [u8]) {
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, prk.expose());
    let filled = prk
        .expand(&[info], Len(out.len()))
        .and_then(|okm| okm.fill(out));
    if filled.is_err() {
        out.zeroize();
    }
}

/// [`expand_label`] into a fresh 32-byte [`Secret`].
///
/// # Errors
/// As [`expand_label`].
pub fn expand_secret(prk: &Secret, label: &[u8], context: &[u8]) -> Result<Secret, CryptoError> {
    let mut out = [0u8; SECRET_LEN];
    let r = expand_label(prk, label, context, &mut out).map(|()| Secret(out));
    out.zeroize();
    r
}

/// SHA-256 over the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; SECRET_LEN] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finish()
}

/// An incremental SHA-256: feed bytes with [`Sha256::update`], read the hash with
/// [`Sha256::finish`]. Cloning forks the state, so a running hash (a handshake
/// transcript) can be read at any point and then extended further.
#[derive(Clone)]
pub struct Sha256(digest::Context);

impl core::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Sha256(..)")
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    /// A hash of nothing yet.
    pub fn new() -> Self {
        Self(digest::Context::new(&digest::SHA256))
    }

    /// Appends `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The hash of everything appended so far.
    pub fn finish(self) -> [u8; SECRET_LEN] {
        let d = self.0.finish();
        let mut out = [0u8; SECRET_LEN];
        out.copy_from_slice(d.as_ref());
        out
    }
}

/// HMAC-SHA256(key, concatenation of `parts`).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; SECRET_LEN] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; SECRET_LEN];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// Constant-time equality of two byte strings (lengths are not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    // RFC 5869 Appendix A.1 (HKDF-SHA256, basic test case): Extract only, since
    // Expand here uses Aura's structured info.
    #[test]
    fn extract_matches_rfc5869_case1() {
        let ikm = [0x0bu8; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let prk = extract(&salt, &[&ikm[..11], &ikm[11..]]);
        assert_eq!(
            hex::encode(prk.expose()),
            "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
        );
    }

    #[test]
    fn expand_label_separates_label_context_and_length() {
        let prk = Secret::from_bytes([7u8; 32]);
        let a = expand_secret(&prk, b"key", b"").unwrap();
        let b = expand_secret(&prk, b"ke", b"y").unwrap();
        let c = expand_secret(&prk, b"key", b"x").unwrap();
        assert_ne!(a, b);
        assert_ne!(a, c);
        let mut short = [0u8; 16];
        expand_label(&prk, b"key", b"", &mut short).unwrap();
        assert_ne!(
            &short[..],
            &a.expose()[..16],
            "length must be bound into info"
        );
    }

    #[test]
    fn expand_label_rejects_bad_lengths() {
        let prk = Secret::from_bytes([1u8; 32]);
        assert!(expand_label(&prk, b"k", b"", &mut []).is_err());
        assert!(expand_label(&prk, &[0u8; 250], b"", &mut [0u8; 32]).is_err());
        assert!(expand_label(&prk, b"k", &[0u8; 256], &mut [0u8; 32]).is_err());
        let mut big = vec![0u8; 255 * 32 + 1];
        assert!(expand_label(&prk, b"k", b"", &mut big).is_err());
    }

    // FIPS 180-2 "abc".
    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            hex::encode(sha256(&[b"a", b"bc"])),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn incremental_sha256_matches_one_shot_and_forks() {
        let mut h = Sha256::new();
        h.update(b"a");
        let fork = h.clone();
        h.update(b"bc");
        assert_eq!(h.finish(), sha256(&[b"abc"]));
        assert_eq!(fork.finish(), sha256(&[b"a"]));
        assert_eq!(Sha256::default().finish(), sha256(&[]));
    }

    // RFC 4231 test case 2.
    #[test]
    fn hmac_known_answer() {
        assert_eq!(
            hex::encode(hmac_sha256(
                b"Jefe",
                &[b"what do ya want ", b"for nothing?"]
            )),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn secret_debug_hides_bytes() {
        let s = Secret::from_bytes([0xab; 32]);
        assert!(!format!("{s:?}").contains("ab"));
    }
}
