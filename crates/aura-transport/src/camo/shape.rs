//! The UDP carrier's datagram shape: a printable 6-byte prefix and padding.
//!
//! ```text
//! UDP payload = tag(2) || hex(pad_len)(4) || Aura datagram || zero padding(pad_len)
//! ```
//!
//! - **Not "fully encrypted" at first glance.** Censors block flows whose first packet
//!   looks uniformly random (Wu et al., "How the Great Firewall of China Detects and
//!   Blocks Fully Encrypted Traffic", USENIX Security 2023). Their exemption rules let
//!   through, among others, packets whose first six bytes are printable ASCII (rule Ex2)
//!   and packets whose average popcount per byte is below 3.4 (rule Ex1). Every Aura UDP
//!   datagram starts with six printable bytes (a two-letter tag and the padding length
//!   in lowercase hex), and zero padding pulls the popcount of padded datagrams down.
//! - **Sizes.** The padding profile (changeable at run time; a later feature rotates it
//!   daily) decides the padding: see [`Profile`].
//!
//! The receiver needs no configuration: the prefix says how much padding to strip.

/// Length of the prefix.
pub const PREFIX_LEN: usize = 6;
/// The largest UDP payload the shaper pads up to (a 1500-byte IPv4 path).
pub const MAX_PADDED: usize = 1472;

/// A padding profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Round up to HTTPS-like sizes: 128, 256, 512, 768, 1024, 1232, 1350, 1472 bytes.
    #[default]
    HttpsBuckets,
    /// No padding: the least overhead.
    None,
    /// Up to 63 bytes of padding, varying per datagram.
    Jitter,
    /// Every datagram padded to 1232 bytes (or left as is when larger): sizes reveal
    /// nothing but cost bandwidth.
    Constant,
}

impl Profile {
    /// The profile with number `n` (0–3).
    pub fn from_index(n: u8) -> Option<Self> {
        Some(match n {
            0 => Self::HttpsBuckets,
            1 => Self::None,
            2 => Self::Jitter,
            3 => Self::Constant,
            _ => return None,
        })
    }

    /// The profile's number.
    pub fn index(self) -> u8 {
        match self {
            Self::HttpsBuckets => 0,
            Self::None => 1,
            Self::Jitter => 2,
            Self::Constant => 3,
        }
    }

    fn bucket(&self, len: usize, noise: u64) -> usize {
        const BUCKETS: [usize; 8] = [128, 256, 512, 768, 1024, 1232, 1350, MAX_PADDED];
        match self {
            Self::HttpsBuckets => BUCKETS.iter().copied().find(|&b| b >= len).unwrap_or(len),
            Self::None => len,
            Self::Jitter => {
                (len + usize::try_from(noise % 64).unwrap_or(0)).min(MAX_PADDED.max(len))
            }
            Self::Constant => len.max(1232),
        }
    }
}

/// Two-letter tags the prefix starts with; which one is used varies per datagram.
const TAGS: [&[u8; 2]; 8] = [b"GA", b"Qx", b"ab", b"HT", b"v1", b"Zq", b"m0", b"Ok"];

fn hex_digit(n: u8) -> u8 {
    match n {
        0..=9 => b'0' + n,
        _ => b'a' + (n - 10),
    }
}

fn hex_value(c: u8) -> Option<u16> {
    match c {
        b'0'..=b'9' => Some(u16::from(c - b'0')),
        b'a'..=b'f' => Some(u16::from(c - b'a' + 10)),
        _ => None,
    }
}

/// The length of the shaped form of a `len`-byte datagram (same `profile` and `noise` as
/// the [`append`] that follows).
pub fn shaped_len(len: usize, profile: Profile, noise: u64) -> usize {
    let bare = PREFIX_LEN + len;
    profile.bucket(bare, noise >> 8).max(bare)
}

/// Writes the shaped form of `datagram` into `out` (cleared first). `noise` varies the tag
/// and the jitter padding; any changing value (a counter) will do.
pub fn wrap(datagram: &[u8], profile: Profile, noise: u64, out: &mut Vec<u8>) {
    out.clear();
    append(datagram, profile, noise, out);
}

/// Appends the shaped form of `datagram` to `out`, so a send queue can shape in place
/// without an intermediate copy.
pub fn append(datagram: &[u8], profile: Profile, noise: u64, out: &mut Vec<u8>) {
    let bare = PREFIX_LEN + datagram.len();
    let total = shaped_len(datagram.len(), profile, noise);
    let pad = u16::try_from(total - bare).unwrap_or(0);
    let start = out.len();
    let tag = TAGS[usize::try_from(noise % 8).unwrap_or(0)];
    out.extend_from_slice(tag);
    for shift in [12u16, 8, 4, 0] {
        out.push(hex_digit(u8::try_from((pad >> shift) & 0xf).unwrap_or(0)));
    }
    out.extend_from_slice(datagram);
    out.resize(start + bare + usize::from(pad), 0);
}

/// The Aura datagram inside a shaped UDP payload, or `None` for anything else.
pub fn unwrap(payload: &[u8]) -> Option<&[u8]> {
    let prefix = payload.get(..PREFIX_LEN)?;
    if !TAGS.iter().any(|t| t[..] == prefix[..2]) {
        return None;
    }
    let mut pad = 0u16;
    for &c in &prefix[2..] {
        pad = (pad << 4) | hex_value(c)?;
    }
    let end = payload.len().checked_sub(usize::from(pad))?;
    let inner = payload.get(PREFIX_LEN..end)?;
    if inner.is_empty() { None } else { Some(inner) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Wu et al.'s exemption rules Ex1 (popcount) and Ex2 (printable prefix); a datagram
    /// passing either is not treated as fully encrypted.
    fn exempt(p: &[u8]) -> bool {
        let popcount = p.iter().map(|b| b.count_ones()).sum::<u32>() as f64 / p.len() as f64;
        let printable_prefix = p.len() >= 6 && p[..6].iter().all(|b| (0x20..=0x7e).contains(b));
        !(3.4..=4.6).contains(&popcount) || printable_prefix
    }

    #[test]
    fn round_trip_every_profile_and_size() {
        let mut out = Vec::new();
        for profile in [
            Profile::HttpsBuckets,
            Profile::None,
            Profile::Jitter,
            Profile::Constant,
        ] {
            for len in [1usize, 29, 100, 127, 500, 1232, 1400, 1466, 2000] {
                let d: Vec<u8> = (0..len).map(|i| (i * 131 + 7) as u8).collect();
                for noise in 0..20u64 {
                    wrap(&d, profile, noise * 977, &mut out);
                    assert_eq!(unwrap(&out).unwrap(), &d[..], "{profile:?} {len}");
                    assert!(exempt(&out));
                    assert!(out.len() >= d.len() + PREFIX_LEN);
                }
            }
        }
    }

    #[test]
    fn append_matches_wrap_and_shaped_len() {
        let mut out = b"previous".to_vec();
        let mut alone = Vec::new();
        for (len, noise) in [(29usize, 3u64), (600, 1 << 20), (1500, 77)] {
            let d = vec![9u8; len];
            for profile in [Profile::HttpsBuckets, Profile::Jitter, Profile::Constant] {
                let before = out.len();
                append(&d, profile, noise, &mut out);
                wrap(&d, profile, noise, &mut alone);
                assert_eq!(&out[before..], &alone[..]);
                assert_eq!(alone.len(), shaped_len(len, profile, noise));
            }
        }
        assert!(out.starts_with(b"previous"));
    }

    #[test]
    fn https_buckets_and_constant_sizes() {
        let mut out = Vec::new();
        wrap(&[5u8; 29], Profile::HttpsBuckets, 0, &mut out);
        assert_eq!(out.len(), 128);
        wrap(&[5u8; 600], Profile::HttpsBuckets, 0, &mut out);
        assert_eq!(out.len(), 768);
        wrap(&[5u8; 1460], Profile::HttpsBuckets, 0, &mut out);
        assert_eq!(out.len(), 1472);
        wrap(&[5u8; 1500], Profile::HttpsBuckets, 0, &mut out);
        assert_eq!(out.len(), 1506, "larger than every bucket: not padded");
        wrap(&[5u8; 29], Profile::None, 0, &mut out);
        assert_eq!(out.len(), 35);
        wrap(&[5u8; 29], Profile::Constant, 0, &mut out);
        assert_eq!(out.len(), 1232);
    }

    #[test]
    fn random_payloads_are_refused() {
        assert!(unwrap(b"").is_none());
        assert!(unwrap(b"GA000").is_none());
        assert!(unwrap(b"GA0000").is_none(), "empty inner datagram");
        assert!(unwrap(b"XX0000abc").is_none(), "unknown tag");
        assert!(unwrap(b"GA00zzabc").is_none(), "bad hex");
        assert!(unwrap(b"GA0010abc").is_none(), "more padding than bytes");
        assert_eq!(unwrap(b"GA0001ab\0").unwrap(), b"ab");
    }

    #[test]
    fn bare_aura_datagrams_would_not_be_exempt() {
        // Why the shape exists: an Init fragment is mostly an ML-KEM key, whose bytes
        // look uniformly random.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let d: Vec<u8> = (0..1232)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let mut raw = d.clone();
        raw[0] = 1;
        raw[1] = 1;
        assert!(!exempt(&raw));
        let mut out = Vec::new();
        wrap(&raw, Profile::HttpsBuckets, 3, &mut out);
        assert!(exempt(&out));
    }
}
