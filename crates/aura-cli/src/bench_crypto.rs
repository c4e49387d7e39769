//! `aura bench-crypto`: how fast this machine runs Aura's primitives.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::Result;
use aura_crypto::aead::{AeadKey, Suite, TAG_LEN, nonce_for};
use aura_crypto::block::{BLOCK_LEN, BlockKey, Keystream};
use aura_crypto::kem::{self, HybridSecretKey};
use aura_crypto::{OsRng, RngCore};

/// Size of the packets the AEAD figures are measured on.
pub const PACKET_LEN: usize = 1400;

/// One measured figure.
#[derive(Debug, serde::Serialize)]
pub struct Figure {
    /// What was measured.
    pub name: &'static str,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Microseconds per operation.
    pub micros_per_op: f64,
    /// Gigabytes (10^9 bytes) per second, for bulk operations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gbytes_per_sec: Option<f64>,
}

/// Runs `op` repeatedly for about `budget` and returns operations per second.
fn measure(budget: Duration, mut op: impl FnMut() -> Result<()>) -> Result<f64> {
    // Warm up caches and frequency scaling for a tenth of the budget.
    let warm = Instant::now();
    while warm.elapsed() < budget / 10 {
        op()?;
    }
    let start = Instant::now();
    let mut n: u64 = 0;
    let mut batch: u64 = 1;
    while start.elapsed() < budget {
        for _ in 0..batch {
            op()?;
        }
        n += batch;
        batch = (batch * 2).min(1 << 14);
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn figure(name: &'static str, ops: f64, bytes_per_op: Option<usize>) -> Figure {
    Figure {
        name,
        ops_per_sec: ops,
        micros_per_op: 1e6 / ops,
        gbytes_per_sec: bytes_per_op.map(|b| ops * b as f64 / 1e9),
    }
}

/// Measures every primitive, each for about `budget`.
pub fn run(budget: Duration) -> Result<Vec<Figure>> {
    let mut rng = OsRng;
    let mut out = Vec::new();

    let mut seed = [0u8; 64];
    rng.fill_bytes(&mut seed);
    let (dk, ek) = kem::mlkem_keypair_from_seed(&seed);
    let ops = measure(budget, || {
        black_box(kem::mlkem_keypair_from_seed(black_box(&seed)));
        Ok(())
    })?;
    out.push(figure("ML-KEM-768 keygen", ops, None));
    let ops = measure(budget, || {
        let mut m = [0u8; 32];
        rng.fill_bytes(&mut m);
        let (ct, ss) = kem::mlkem_encapsulate(&ek[..], &m)?;
        let ss2 = kem::mlkem_decapsulate(&dk, &ct[..])?;
        anyhow::ensure!(ss == ss2, "ML-KEM round trip mismatch");
        Ok(())
    })?;
    out.push(figure("ML-KEM-768 encaps+decaps", ops, None));

    let (_, peer) = kem::x25519_keypair(&mut rng)?;
    let ops = measure(budget, || {
        let (sk, _) = kem::x25519_keypair(&mut rng)?;
        black_box(kem::x25519_agree(&sk, &peer)?);
        Ok(())
    })?;
    out.push(figure("X25519 keygen+agree", ops, None));

    let ct_m = vec![5u8; kem::MLKEM768_CT_LEN];
    let pk_m = vec![6u8; kem::MLKEM768_PK_LEN];
    let ops = measure(budget, || {
        black_box(kem::combine(
            &[1; 32], &[2; 32], &[3; 32], &[4; 32], &ct_m, &pk_m,
        ));
        Ok(())
    })?;
    out.push(figure("hybrid combiner (HKDF-Extract)", ops, None));

    let ops = measure(budget, || {
        let sk = HybridSecretKey::generate(&mut rng)?;
        let (ct, ss1) = kem::encapsulate(sk.public_key().as_bytes(), &mut rng)?;
        let ss2 = sk.decapsulate(ct.as_bytes())?;
        anyhow::ensure!(ss1 == ss2, "hybrid KEM round trip mismatch");
        Ok(())
    })?;
    out.push(figure("full hybrid KEM (keygen+encaps+decaps)", ops, None));

    for (suite, seal_name, open_name) in [
        (
            Suite::Aes256Gcm,
            "AES-256-GCM seal 1400 B",
            "AES-256-GCM open 1400 B",
        ),
        (
            Suite::ChaCha20Poly1305,
            "ChaCha20-Poly1305 seal 1400 B",
            "ChaCha20-Poly1305 open 1400 B",
        ),
    ] {
        let mut key_bytes = [0u8; 32];
        rng.fill_bytes(&mut key_bytes);
        let key = AeadKey::new(suite, &key_bytes)?;
        let iv = [7u8; 12];
        let mut buf = vec![0xabu8; PACKET_LEN + TAG_LEN];
        let mut counter = 0u64;
        let ops = measure(budget, || {
            counter += 1;
            key.seal_in_place(&nonce_for(&iv, counter), &[], &mut buf, PACKET_LEN)?;
            Ok(())
        })?;
        out.push(figure(seal_name, ops, Some(PACKET_LEN)));
        let sealed_nonce = nonce_for(&iv, 0);
        let mut sealed = vec![0xabu8; PACKET_LEN + TAG_LEN];
        key.seal_in_place(&sealed_nonce, &[], &mut sealed, PACKET_LEN)?;
        let ops = measure(budget, || {
            buf.copy_from_slice(&sealed);
            key.open_in_place(&sealed_nonce, &[], &mut buf)?;
            Ok(())
        })?;
        out.push(figure(open_name, ops, Some(PACKET_LEN)));
    }

    // The camouflage layer's AES-256: one header mask per datagram, and the keystream
    // that fills padding, refilled 4 KiB at a time (CTR) — against the same 4 KiB as 256
    // single-block calls, as the keystream was made before.
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let block = BlockKey::new(&seed)?;
    let mut sample = [3u8; BLOCK_LEN];
    let ops = measure(budget, || {
        sample = block.mask(black_box(&sample));
        Ok(())
    })?;
    out.push(figure("AES-256 header mask (1 block)", ops, None));
    let mut chunk = vec![0u8; KEYSTREAM_CHUNK];
    let ops = measure(budget, || {
        block.encrypt_blocks(black_box(&mut chunk));
        Ok(())
    })?;
    out.push(figure(
        "AES-256 4 KiB as 256 single blocks",
        ops,
        Some(KEYSTREAM_CHUNK),
    ));
    let mut stream = Keystream::new(&seed)?;
    let ops = measure(budget, || {
        stream.fill(black_box(&mut chunk));
        Ok(())
    })?;
    out.push(figure(
        "keystream 4 KiB (AES-256-CTR)",
        ops,
        Some(KEYSTREAM_CHUNK),
    ));
    Ok(out)
}

/// Bytes per keystream figure: one refill.
const KEYSTREAM_CHUNK: usize = 4096;

/// Renders the figures as an aligned table.
pub fn render(figures: &[Figure]) -> String {
    let mut s = format!(
        "{:<40} {:>14} {:>12} {:>8}\n",
        "operation", "ops/s", "µs/op", "GB/s"
    );
    for f in figures {
        let gb = f
            .gbytes_per_sec
            .map_or_else(String::new, |g| format!("{g:.2}"));
        s.push_str(&format!(
            "{:<40} {:>14.0} {:>12.2} {:>8}\n",
            f.name, f.ops_per_sec, f.micros_per_op, gb
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn measures_every_primitive_with_positive_rates() {
        let figures = run(Duration::from_millis(20)).unwrap();
        assert_eq!(figures.len(), 12);
        for f in &figures {
            assert!(f.ops_per_sec > 0.0, "{} measured nothing", f.name);
        }
        let table = render(&figures);
        assert!(table.contains("AES-256-GCM seal 1400 B"));
        assert_eq!(
            figures
                .iter()
                .filter(|f| f.gbytes_per_sec.is_some())
                .count(),
            6
        );
    }
}
