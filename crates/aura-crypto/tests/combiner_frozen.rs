//! Frozen vectors of the hybrid combiner and of a whole hybrid exchange with a seeded RNG.
//! Generated once from this implementation and pinned: any change to the combiner, the
//! label, the encodings or the order in which randomness is drawn breaks them, and that
//! is a wire-protocol change (docs/PROTOCOL.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aura_crypto::kdf::sha256;
use aura_crypto::kem::{self, HybridSecretKey};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

#[test]
fn combiner_fixed_inputs() {
    let ss = kem::combine(
        &[0x11; 32],
        &[0x22; 32],
        &[0x33; 32],
        &[0x44; 32],
        &[0x55; kem::MLKEM768_CT_LEN],
        &[0x66; kem::MLKEM768_PK_LEN],
    );
    assert_eq!(hex::encode(ss.expose()), FROZEN_COMBINER);
}

#[test]
fn hybrid_exchange_with_seeded_rng() {
    let mut rng = ChaCha20Rng::from_seed([0x42; 32]);
    let sk = HybridSecretKey::generate(&mut rng).unwrap();
    let (ct, ss) = kem::encapsulate(sk.public_key().as_bytes(), &mut rng).unwrap();
    assert_eq!(sk.decapsulate(ct.as_bytes()).unwrap(), ss);
    let got = [
        hex::encode(sha256(&[sk.public_key().as_bytes()])),
        hex::encode(sha256(&[ct.as_bytes()])),
        hex::encode(ss.expose()),
    ];
    assert_eq!(got, FROZEN_EXCHANGE);
}

/// Also reproduced independently as
/// `HMAC-SHA256(key = "aura/v1 hybrid-kem x25519+ml-kem-768", 0x11*32 || 0x22*32 || 0x33*32 || 0x44*32 || 0x55*1088 || 0x66*1184)`.
const FROZEN_COMBINER: &str = "37c14444297226ff61e92445ca31ecbf1f5aa51dc27c9c5ab59a7c5bf8f7ae8a";
/// SHA-256 of the public key, SHA-256 of the ciphertext, the shared secret.
const FROZEN_EXCHANGE: [&str; 3] = [
    "d578bed4fef266ee3d1e6de3ec72797a3e9a32bd8c7e3250627c6402d51369c9",
    "9ee9a2d67060322847eebacc63102bcfa96ab34e0e9560b3a97c7fa84f64705b",
    "334cef7bd91b2d37aede67d64096f83510b8c15c60f2b3cff88474bf405703b3",
];
