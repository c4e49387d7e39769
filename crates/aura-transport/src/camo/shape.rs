//! Padding profiles: the sizes UDP datagrams are padded to ([`super::datagram`] pads
//! with keystream bytes, never zeros).
//!
//! The day's mask picks a profile ([`super::mask`]) unless the operator fixed one with
//! `transport.padding_profile`.

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

    /// The size a `len`-byte datagram is padded to (never less than `len`); `noise` is a
    /// random value (the jitter).
    pub fn padded_len(self, len: usize, noise: u64) -> usize {
        self.bucket(len, noise).max(len)
    }

    fn bucket(self, len: usize, noise: u64) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_sizes() {
        let p = Profile::HttpsBuckets;
        assert_eq!(p.padded_len(31, 0), 128);
        assert_eq!(p.padded_len(600, 0), 768);
        assert_eq!(p.padded_len(1460, 0), 1472);
        assert_eq!(
            p.padded_len(1500, 0),
            1500,
            "larger than every bucket: as is"
        );
        assert_eq!(Profile::None.padded_len(31, 5), 31);
        assert_eq!(Profile::Constant.padded_len(31, 5), 1232);
        assert_eq!(Profile::Constant.padded_len(1300, 5), 1300);
        let jitter: std::collections::HashSet<usize> = (0..200u64)
            .map(|n| Profile::Jitter.padded_len(100, n))
            .collect();
        assert_eq!(jitter.len(), 64, "0 to 63 bytes of jitter");
        assert!(jitter.iter().all(|l| (100..164).contains(l)));
        assert_eq!(
            Profile::Jitter.padded_len(1470, 63),
            1472,
            "capped at the path"
        );
    }

    #[test]
    fn indices_round_trip() {
        for i in 0..4 {
            assert_eq!(Profile::from_index(i).map(Profile::index), Some(i));
        }
        assert_eq!(Profile::from_index(4), None);
    }
}
