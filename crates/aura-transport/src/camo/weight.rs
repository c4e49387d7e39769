//! A constant-weight code that lowers the share of set bits in the UDP carrier's first
//! flight, so it passes the fully-encrypted-traffic rules without a fixed prefix.
//!
//! Censors block flows whose first payload looks uniformly random (Wu et al., USENIX
//! Security 2023). One exemption (their Ex1) is an average of at most 3.4 or at least 4.6
//! set bits per byte; uniformly random bytes average 4. A printable prefix, the other
//! common answer, is a fixed byte pattern a censor can match on. Instead, every 7 input
//! bytes (56 bits) become one 8-byte block holding exactly `k` set bits, `k` in
//! [`MIN_WEIGHT`]`..=`[`MAX_WEIGHT`], chosen per block by the sender. The block is the
//! input's rank among all 64-bit words of weight `k` (the combinatorial number system),
//! spread over the whole range: rank = input × q + j, q = ⌊C(64, k) / 2⁵⁶⌋ ≥ 1 and `j`
//! random below `q`. So a block is close to a uniformly random word of weight `k`, and no
//! bit position is constant (ranks below 2⁵⁶ alone would leave the top bits clear).
//!
//! - Cost: 8/7 of the size (14 %); about 60 table lookups per block.
//! - Every byte value can occur, at every offset; only the average weight is low, and it
//!   varies per block and per day ([`WeightLevel`]).
//! - The decoder needs no parameters: it counts each block's bits. A block whose weight is
//!   outside the allowed range, or whose rank does not fit 56 bits, is refused, so most
//!   random input is refused at its first block.

/// Input bytes per block.
pub const IN_BLOCK: usize = 7;
/// Output bytes per block.
pub const OUT_BLOCK: usize = 8;
/// Fewest set bits in a block (C(64, 22) > 2⁵⁶ > C(64, 21)).
pub const MIN_WEIGHT: u32 = 22;
/// Most set bits in a block: 27 / 8 = 3.375 set bits per byte, below the 3.4 of the rule.
pub const MAX_WEIGHT: u32 = 27;

/// Binomial coefficients C(n, r) for n ≤ 64, r ≤ MAX_WEIGHT (all fit a u64).
const fn binomials() -> [[u64; MAX_WEIGHT as usize + 1]; 65] {
    let mut t = [[0u64; MAX_WEIGHT as usize + 1]; 65];
    let mut n = 0;
    while n <= 64 {
        t[n][0] = 1;
        let mut r = 1;
        while r <= MAX_WEIGHT as usize {
            if n > 0 {
                t[n][r] = t[n - 1][r - 1] + t[n - 1][r];
            }
            r += 1;
        }
        n += 1;
    }
    t
}

static C: [[u64; MAX_WEIGHT as usize + 1]; 65] = binomials();

/// The range of block weights a sender draws from: the day's mask picks one, so the
/// average weight of first flights differs from day to day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightLevel {
    lo: u32,
    hi: u32,
}

impl WeightLevel {
    /// Levels a mask can pick: weight ranges inside the allowed one.
    pub const ALL: [WeightLevel; 4] = [
        WeightLevel { lo: 22, hi: 25 },
        WeightLevel { lo: 23, hi: 27 },
        WeightLevel { lo: 24, hi: 26 },
        WeightLevel { lo: 25, hi: 27 },
    ];

    /// Level number `n` modulo the number of levels.
    pub fn from_index(n: usize) -> Self {
        Self::ALL[n % Self::ALL.len()]
    }

    /// The weight for a block, from a random value.
    pub(crate) fn pick(self, noise: u64) -> u32 {
        let span = u64::from(self.hi - self.lo + 1);
        self.lo + u32::try_from(noise % span).unwrap_or(0)
    }
}

/// The encoded length of `len` input bytes (`len` a multiple of [`IN_BLOCK`]).
pub const fn encoded_len(len: usize) -> usize {
    len / IN_BLOCK * OUT_BLOCK
}

/// The word of weight `k` with rank `rank` (< C(64, k)).
fn unrank(mut rank: u64, k: u32) -> u64 {
    let mut word = 0u64;
    let mut left = k as usize;
    let mut pos = 64usize;
    while left > 0 && pos > 0 {
        pos -= 1;
        let c = C[pos][left];
        if rank >= c {
            rank -= c;
            word |= 1u64 << pos;
            left -= 1;
        }
    }
    word
}

/// The rank of `word` among words of its weight: with its set bits at positions
/// c₁ < c₂ < … < cₖ, the sum of C(cᵢ, i). Taken from the lowest bit up, so the loop's
/// only carried step is clearing that bit (the server decodes every block of every
/// first flight: this was a sixth of its CPU per handshake when it went from the top).
fn rank(word: u64) -> u64 {
    let mut r = 0u64;
    let mut bits = word;
    let mut i = 1usize;
    while bits != 0 {
        r += C[bits.trailing_zeros() as usize][i];
        i += 1;
        bits &= bits - 1;
    }
    r
}

/// How many ranks of weight `k` each 56-bit value spreads over.
fn stride(k: u32) -> u64 {
    C[64][k as usize] >> 56
}

/// Encodes `input` (a multiple of [`IN_BLOCK`] bytes) onto the end of `out`, each block's
/// weight drawn from `level` with `noise` (called twice per block).
pub fn encode(input: &[u8], level: WeightLevel, mut noise: impl FnMut() -> u64, out: &mut Vec<u8>) {
    for block in input.chunks_exact(IN_BLOCK) {
        let mut v = [0u8; 8];
        v[1..].copy_from_slice(block);
        let k = level.pick(noise());
        let q = stride(k);
        let rank = u64::from_be_bytes(v) * q + noise() % q;
        let word = unrank(rank, k);
        out.extend_from_slice(&word.to_be_bytes());
    }
}

/// Decodes `buf` in place (the output is shorter than the input) and returns the decoded
/// length, or `None` when `buf` is not a whole number of valid blocks.
pub fn decode_in_place(buf: &mut [u8]) -> Option<usize> {
    if buf.is_empty() || !buf.len().is_multiple_of(OUT_BLOCK) {
        return None;
    }
    let blocks = buf.len() / OUT_BLOCK;
    for i in 0..blocks {
        let mut w = [0u8; 8];
        w.copy_from_slice(buf.get(i * OUT_BLOCK..(i + 1) * OUT_BLOCK)?);
        let word = u64::from_be_bytes(w);
        if !(MIN_WEIGHT..=MAX_WEIGHT).contains(&word.count_ones()) {
            return None;
        }
        let q = stride(word.count_ones());
        let r = rank(word) / q;
        if r >> 56 != 0 {
            return None;
        }
        // Writes at 7·i, reads were at 8·i: never ahead of what is still to be read.
        buf.get_mut(i * IN_BLOCK..(i + 1) * IN_BLOCK)?
            .copy_from_slice(&r.to_be_bytes()[1..]);
    }
    Some(blocks * IN_BLOCK)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn every_allowed_weight_holds_56_bits_and_the_next_lower_does_not() {
        for k in MIN_WEIGHT..=MAX_WEIGHT {
            assert!(C[64][k as usize] >= 1 << 56, "k={k}");
        }
        assert!(C[64][(MIN_WEIGHT - 1) as usize] < 1 << 56);
        assert_eq!(C[64][2], 2016);
        assert_eq!(C[5][2], 10);
    }

    #[test]
    fn unrank_and_rank_are_inverse_at_the_edges() {
        for k in MIN_WEIGHT..=MAX_WEIGHT {
            for r in [0u64, 1, 2, 12345, (1 << 56) - 1] {
                let w = unrank(r, k);
                assert_eq!(w.count_ones(), k);
                assert_eq!(rank(w), r);
            }
            // The largest rank is the word with the top k bits set.
            let top = unrank(C[64][k as usize] - 1, k);
            assert_eq!(top.leading_ones(), k);
        }
    }

    #[test]
    fn round_trip_and_weight_bounds() {
        let mut rng = xorshift(0x1234_5678_9abc_def1);
        for level in WeightLevel::ALL {
            for blocks in [1usize, 2, 50, 190] {
                let input: Vec<u8> = (0..blocks * IN_BLOCK).map(|_| rng() as u8).collect();
                let mut out = Vec::new();
                encode(&input, level, &mut rng, &mut out);
                assert_eq!(out.len(), encoded_len(input.len()));
                for b in out.chunks(8) {
                    let w: u32 = b.iter().map(|x| x.count_ones()).sum();
                    assert!((level.lo..=level.hi).contains(&w), "{level:?} {w}");
                }
                let n = decode_in_place(&mut out).unwrap();
                assert_eq!(&out[..n], &input[..]);
            }
        }
    }

    #[test]
    fn average_weight_is_below_the_rule_and_all_byte_values_occur() {
        let mut rng = xorshift(99);
        let input: Vec<u8> = (0..7 * 4096).map(|_| rng() as u8).collect();
        let mut out = Vec::new();
        encode(&input, WeightLevel::from_index(1), &mut rng, &mut out);
        let avg = out.iter().map(|b| b.count_ones()).sum::<u32>() as f64 / out.len() as f64;
        assert!(avg <= 3.4 && avg > 2.8, "{avg}");
        let mut seen = [false; 256];
        for &b in &out {
            seen[usize::from(b)] = true;
        }
        assert!(seen.iter().all(|s| *s), "every byte value appears");
    }

    #[test]
    fn random_bytes_are_refused() {
        let mut rng = xorshift(7);
        let mut accepted = 0;
        for _ in 0..1000 {
            let mut junk: Vec<u8> = (0..64).map(|_| rng() as u8).collect();
            accepted += usize::from(decode_in_place(&mut junk).is_some());
        }
        assert_eq!(
            accepted, 0,
            "eight random blocks all within the weights: ~1e-7"
        );
        assert!(decode_in_place(&mut []).is_none());
        assert!(decode_in_place(&mut [0u8; 9]).is_none());
        // Weight in range but rank beyond the last stride: the top 22 bits set.
        assert!(stride(22) == 1 && C[64][22] > 1 << 56);
        let mut over = (!0u64 << 42).to_be_bytes();
        assert!(decode_in_place(&mut over).is_none());
    }
}
