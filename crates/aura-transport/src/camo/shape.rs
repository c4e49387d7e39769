//! Padding profiles: the sizes UDP datagrams are padded to ([`super::datagram`] pads
//! with keystream bytes, never zeros).
//!
//! The day's mask picks a profile ([`super::mask`]) unless the operator fixed one with
//! `transport.padding_profile`.

/// The largest UDP payload the shaper pads up to (a 1500-byte IPv4 path).
pub const MAX_PADDED: usize = 1472;
/// The same over IPv6 (40-byte header instead of 20): padding toward an IPv6 peer stops
/// here, or full-size datagrams would not fit a 1500-byte path (the socket does not
/// fragment).
pub const MAX_PADDED6: usize = 1452;

/// The largest padded UDP payload toward `to`: [`MAX_PADDED6`] for an IPv6 peer (not a
/// v4-mapped one), [`MAX_PADDED`] otherwise.
pub fn max_padded_for(to: &std::net::SocketAddr) -> usize {
    match to {
        std::net::SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_none() => MAX_PADDED6,
        _ => MAX_PADDED,
    }
}

/// The bucket tables of the HTTPS-like profile; the daily mask picks one. Each ends at
/// [`MAX_PADDED`], so full-size datagrams share one size and still go out as GSO trains
/// (per-datagram jitter costs the UDP carrier about 60 % of its throughput: it turns
/// every datagram into its own system call).
pub const BUCKET_TABLES: [[usize; 8]; 4] = [
    [128, 256, 512, 768, 1024, 1232, 1350, MAX_PADDED],
    [96, 192, 384, 640, 896, 1152, 1300, MAX_PADDED],
    [160, 320, 576, 832, 1088, 1280, 1400, MAX_PADDED],
    [112, 224, 448, 704, 960, 1200, 1380, MAX_PADDED],
];

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
    /// random value (the jitter); HTTPS-like buckets from the first table.
    pub fn padded_len(self, len: usize, noise: u64) -> usize {
        self.padded_len_in(len, noise, 0)
    }

    /// As [`Profile::padded_len`], HTTPS-like buckets from table `table` of
    /// [`BUCKET_TABLES`] (modulo their number).
    pub fn padded_len_in(self, len: usize, noise: u64, table: usize) -> usize {
        self.bucket(len, noise, table).max(len)
    }

    fn bucket(self, len: usize, noise: u64, table: usize) -> usize {
        match self {
            Self::HttpsBuckets => BUCKET_TABLES[table % BUCKET_TABLES.len()]
                .iter()
                .copied()
                .find(|&b| b >= len)
                .unwrap_or(len),
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
    fn every_table_pads_full_datagrams_alike() {
        for (t, table) in BUCKET_TABLES.iter().enumerate() {
            let p = Profile::HttpsBuckets;
            assert_eq!(p.padded_len_in(1451, 2, t), MAX_PADDED);
            assert_eq!(p.padded_len_in(1451, 99, t), p.padded_len_in(1460, 5, t));
            assert!(table.windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(Profile::HttpsBuckets.padded_len_in(100, 0, 1), 192);
        assert_eq!(
            Profile::HttpsBuckets.padded_len_in(100, 0, 5),
            192,
            "modulo the tables"
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
