//! Hybrid key encapsulation: X25519 + ML-KEM-768 (FIPS 203), combined by HKDF.
//!
//! A hybrid public key is `x25519_pk (32) || ml_kem_768_ek (1184)`; a hybrid ciphertext is
//! `x25519_ephemeral_pk (32) || ml_kem_768_ct (1088)`. The shared secret is
//!
//! ```text
//! HKDF-Extract(salt = "aura/v1 hybrid-kem x25519+ml-kem-768",
//!              ikm  = ss_mlkem || ss_x25519 || ct_x25519 || pk_x25519 || ct_mlkem || pk_mlkem)
//! ```
//!
//! This is X-Wing's construction (draft-connolly-cfrg-xwing-kem: the X25519 ciphertext and
//! public key are bound, so the combiner stays IND-CCA when only X25519 survives) with the
//! ML-KEM ciphertext and public key bound as well, so the secret commits to every byte both
//! sides exchanged even if an ML-KEM implementation were found not to be binding. HMAC-SHA256
//! replaces SHA3-256 so that the whole key schedule uses one hash; HMAC is a dual PRF, which
//! is what a concatenation combiner needs. docs/adr/0002 records the choice.
//!
//! Every operation takes its randomness from the caller's RNG: with a seeded RNG the
//! outputs are reproducible, which the protocol's known-answer transcript relies on.
//! ML-KEM is libcrux's formally verified implementation; X25519 is AWS-LC's. Ephemeral
//! secret keys zeroize on drop.

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use libcrux_ml_kem::mlkem768;
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

use crate::{CryptoError, Secret, kdf, labels};

/// X25519 public key and shared secret length.
pub const X25519_LEN: usize = 32;
/// ML-KEM-768 encapsulation (public) key length.
pub const MLKEM768_PK_LEN: usize = 1184;
/// ML-KEM-768 decapsulation (secret) key length.
pub const MLKEM768_SK_LEN: usize = 2400;
/// ML-KEM-768 ciphertext length.
pub const MLKEM768_CT_LEN: usize = 1088;
/// Hybrid public key length.
pub const HYBRID_PK_LEN: usize = X25519_LEN + MLKEM768_PK_LEN;
/// Hybrid ciphertext length.
pub const HYBRID_CT_LEN: usize = X25519_LEN + MLKEM768_CT_LEN;

/// A hybrid public key: `x25519_pk || ml_kem_768_ek`.
#[derive(Clone, PartialEq, Eq)]
pub struct HybridPublicKey(Box<[u8; HYBRID_PK_LEN]>);

/// A hybrid ciphertext: `x25519_ephemeral_pk || ml_kem_768_ct`.
#[derive(Clone, PartialEq, Eq)]
pub struct HybridCiphertext(Box<[u8; HYBRID_CT_LEN]>);

macro_rules! bytes_type {
    ($t:ident, $len:expr, $what:literal) => {
        impl $t {
            /// The encoded bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Parses the encoding, checking only the length (the content is checked when
            /// it is used).
            ///
            /// # Errors
            /// When `bytes` is not exactly the encoded length.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
                let arr: [u8; $len] = bytes
                    .try_into()
                    .map_err(|_| CryptoError::InvalidPublicKey($what))?;
                Ok(Self(Box::new(arr)))
            }
        }
        impl core::fmt::Debug for $t {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, concat!(stringify!($t), "({:02x?}..)"), &self.0[..8])
            }
        }
    };
}
bytes_type!(HybridPublicKey, HYBRID_PK_LEN, "hybrid");
bytes_type!(HybridCiphertext, HYBRID_CT_LEN, "hybrid");

impl HybridPublicKey {
    fn x25519(&self) -> &[u8] {
        &self.0[..X25519_LEN]
    }
    fn mlkem(&self) -> &[u8] {
        &self.0[X25519_LEN..]
    }
}

impl HybridCiphertext {
    fn x25519(&self) -> &[u8] {
        &self.0[..X25519_LEN]
    }
    fn mlkem(&self) -> &[u8] {
        &self.0[X25519_LEN..]
    }
}

/// An ML-KEM-768 decapsulation key (2400 bytes), zeroized on drop.
pub struct MlKemSecretKey(Box<[u8; MLKEM768_SK_LEN]>);

impl MlKemSecretKey {
    /// The encoded key (FIPS 203 `dk`).
    pub fn as_bytes(&self) -> &[u8; MLKEM768_SK_LEN] {
        &self.0
    }
}

impl Drop for MlKemSecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl core::fmt::Debug for MlKemSecretKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MlKemSecretKey(..)")
    }
}

/// An ephemeral hybrid secret key. Zeroized on drop.
pub struct HybridSecretKey {
    x25519: Zeroizing<[u8; X25519_LEN]>,
    mlkem: MlKemSecretKey,
    public: HybridPublicKey,
}

impl core::fmt::Debug for HybridSecretKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HybridSecretKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl HybridSecretKey {
    /// Generates a fresh key pair from `rng` (32 bytes for X25519, then 64 for ML-KEM's
    /// `d || z` seed).
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if the X25519 library rejects the key (it never should).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Result<Self, CryptoError> {
        let (x_sk, x_pk) = x25519_keypair(rng)?;
        let mut seed = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(&mut seed[..]);
        let (m_sk, m_pk) = mlkem_keypair_from_seed(&seed);
        let mut public = Box::new([0u8; HYBRID_PK_LEN]);
        public[..X25519_LEN].copy_from_slice(&x_pk);
        public[X25519_LEN..].copy_from_slice(&m_pk[..]);
        Ok(Self {
            x25519: x_sk,
            mlkem: m_sk,
            public: HybridPublicKey(public),
        })
    }

    /// The public half.
    pub fn public_key(&self) -> &HybridPublicKey {
        &self.public
    }

    /// Recovers the shared secret from a ciphertext made for this key.
    ///
    /// # Errors
    /// [`CryptoError::InvalidCiphertext`] on a wrong length; [`CryptoError::InvalidPublicKey`]
    /// when the X25519 part is a low-order point. A well-formed but forged ML-KEM ciphertext
    /// does not fail here: ML-KEM's implicit rejection yields an unrelated secret, and the key
    /// confirmation that follows fails instead.
    pub fn decapsulate(&self, ct: &[u8]) -> Result<Secret, CryptoError> {
        let ct = HybridCiphertext::from_slice(ct)
            .map_err(|_| CryptoError::InvalidCiphertext("hybrid"))?;
        let ss_x = x25519_agree(&self.x25519, ct.x25519())?;
        let ss_m = mlkem_decapsulate(&self.mlkem, ct.mlkem())?;
        Ok(combine(
            &ss_m,
            &ss_x,
            ct.x25519(),
            self.public.x25519(),
            ct.mlkem(),
            self.public.mlkem(),
        ))
    }
}

/// Encapsulates to `pk` (hybrid encoding), drawing 32 bytes for the X25519 ephemeral key
/// and 32 for ML-KEM's message from `rng`.
///
/// # Errors
/// [`CryptoError::InvalidPublicKey`] when `pk` has the wrong length, its ML-KEM part fails
/// the FIPS 203 modulus check, or its X25519 part is a low-order point.
pub fn encapsulate<R: RngCore + CryptoRng>(
    pk: &[u8],
    rng: &mut R,
) -> Result<(HybridCiphertext, Secret), CryptoError> {
    let pk = HybridPublicKey::from_slice(pk)?;
    let (x_sk, x_pk) = x25519_keypair(rng)?;
    let ss_x = x25519_agree(&x_sk, pk.x25519())?;
    let mut m = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(&mut m[..]);
    let (m_ct, ss_m) = mlkem_encapsulate(pk.mlkem(), &m)?;
    let mut ct = Box::new([0u8; HYBRID_CT_LEN]);
    ct[..X25519_LEN].copy_from_slice(&x_pk);
    ct[X25519_LEN..].copy_from_slice(&m_ct[..]);
    let ss = combine(&ss_m, &ss_x, &x_pk, pk.x25519(), &m_ct[..], pk.mlkem());
    Ok((HybridCiphertext(ct), ss))
}

/// The combiner (see the module documentation). Public so its frozen vectors can be
/// checked and so the benchmark can time it alone.
pub fn combine(
    ss_mlkem: &[u8; 32],
    ss_x25519: &[u8; 32],
    ct_x25519: &[u8],
    pk_x25519: &[u8],
    ct_mlkem: &[u8],
    pk_mlkem: &[u8],
) -> Secret {
    kdf::extract(
        labels::HYBRID_KEM_COMBINER,
        &[
            ss_mlkem, ss_x25519, ct_x25519, pk_x25519, ct_mlkem, pk_mlkem,
        ],
    )
}

/// A fresh X25519 key pair from 32 bytes of `rng`: (secret, public).
///
/// # Errors
/// [`CryptoError::Internal`] if AWS-LC rejects the scalar (it accepts every 32-byte string).
pub fn x25519_keypair<R: RngCore + CryptoRng>(
    rng: &mut R,
) -> Result<(Zeroizing<[u8; X25519_LEN]>, [u8; X25519_LEN]), CryptoError> {
    let mut sk = Zeroizing::new([0u8; X25519_LEN]);
    rng.fill_bytes(&mut sk[..]);
    let key = PrivateKey::from_private_key(&X25519, &sk[..])
        .map_err(|_| CryptoError::Internal("x25519 key"))?;
    let pk = key
        .compute_public_key()
        .map_err(|_| CryptoError::Internal("x25519 public key"))?;
    let pk: [u8; X25519_LEN] = pk
        .as_ref()
        .try_into()
        .map_err(|_| CryptoError::Internal("x25519 public key length"))?;
    Ok((sk, pk))
}

/// X25519(sk, peer_pk).
///
/// # Errors
/// [`CryptoError::InvalidPublicKey`] when `peer_pk` is not 32 bytes or is a low-order point
/// (the all-zero shared secret is refused, RFC 7748 §6.1).
pub fn x25519_agree(sk: &[u8; X25519_LEN], peer_pk: &[u8]) -> Result<[u8; 32], CryptoError> {
    let key = PrivateKey::from_private_key(&X25519, sk)
        .map_err(|_| CryptoError::Internal("x25519 key"))?;
    let err = CryptoError::InvalidPublicKey("x25519");
    let ss = agreement::agree(&key, UnparsedPublicKey::new(&X25519, peer_pk), err, |s| {
        s.try_into().map_err(|_| err)
    })?;
    if ss == [0u8; 32] {
        return Err(err);
    }
    Ok(ss)
}

/// ML-KEM-768 key pair from the 64-byte seed `d || z` (FIPS 203 ML-KEM.KeyGen_internal):
/// (decapsulation key, encapsulation key).
pub fn mlkem_keypair_from_seed(seed: &[u8; 64]) -> (MlKemSecretKey, Box<[u8; MLKEM768_PK_LEN]>) {
    let (sk, pk) = mlkem768::generate_key_pair(*seed).into_parts();
    let mut sk_raw: [u8; MLKEM768_SK_LEN] = sk.into();
    let sk_box = MlKemSecretKey(Box::new(sk_raw));
    sk_raw.zeroize();
    (sk_box, Box::new(pk.into()))
}

/// ML-KEM-768 encapsulation with the 32-byte message `m` (FIPS 203 ML-KEM.Encaps_internal),
/// after the modulus check of the encapsulation key: (ciphertext, shared secret).
///
/// # Errors
/// [`CryptoError::InvalidPublicKey`] on a wrong length or a key failing the modulus check.
pub fn mlkem_encapsulate(
    ek: &[u8],
    m: &[u8; 32],
) -> Result<(Box<[u8; MLKEM768_CT_LEN]>, [u8; 32]), CryptoError> {
    let err = CryptoError::InvalidPublicKey("ml-kem-768");
    let ek: [u8; MLKEM768_PK_LEN] = ek.try_into().map_err(|_| err)?;
    let ek = mlkem768::MlKem768PublicKey::from(ek);
    if !mlkem768::validate_public_key(&ek) {
        return Err(err);
    }
    let (ct, ss) = mlkem768::encapsulate(&ek, *m);
    Ok((Box::new(ct.into()), ss))
}

/// ML-KEM-768 decapsulation (FIPS 203 ML-KEM.Decaps, with implicit rejection).
///
/// # Errors
/// [`CryptoError::InvalidCiphertext`] when `ct` is not 1088 bytes.
pub fn mlkem_decapsulate(dk: &MlKemSecretKey, ct: &[u8]) -> Result<[u8; 32], CryptoError> {
    let ct: [u8; MLKEM768_CT_LEN] = ct
        .try_into()
        .map_err(|_| CryptoError::InvalidCiphertext("ml-kem-768"))?;
    let sk = mlkem768::MlKem768PrivateKey::from(&*dk.0);
    let ss = mlkem768::decapsulate(&sk, &mlkem768::MlKem768Ciphertext::from(ct));
    let mut raw: [u8; MLKEM768_SK_LEN] = sk.into();
    raw.zeroize();
    Ok(ss)
}
