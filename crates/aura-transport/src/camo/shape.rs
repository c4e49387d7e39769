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

/// Bytes a stream or QUIC carrier adds around an inner packet: the Aura data header and
/// tag (29) and the frame's length (2).
const STREAM_OVERHEAD: usize = 29 + 2;
/// The largest inner packet padding makes: what a QUIC DATAGRAM frame carries before MTU
/// discovery (1362) less the Aura overhead (29), so padding never pushes a packet off the
/// DATAGRAM path onto the stream.
pub const STREAM_PAD_CAP: usize = crate::carrier::quic::EARLY_DATAGRAM_MAX - 29;

/// The length of a packet's self-declared content, when it declares one: an IPv4
/// packet's total length, an IPv6 packet's 40 + payload length, a control envelope's
/// 9 + payload length. `None` for anything else (a circuit's nested datagram).
fn declared_len(p: &[u8]) -> Option<usize> {
    match p.first().map(|b| b >> 4) {
        _ if p.starts_with(&aura_proto::control::MAGIC) => {
            let len = p.get(5..9)?;
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            usize::try_from(len)
                .ok()?
                .checked_add(aura_proto::control::HEADER_LEN)
        }
        Some(4) => {
            Some(usize::from(u16::from_be_bytes([*p.get(2)?, *p.get(3)?]))).filter(|n| *n >= 20)
        }
        Some(6) => Some(40 + usize::from(u16::from_be_bytes([*p.get(4)?, *p.get(5)?]))),
        _ => None,
    }
}

/// On the QUIC and TLS carriers (review M8): the length an inner packet is padded to
/// with zeros before sealing, so that its frame takes the size the day's mask gives (the
/// receiver trims the zeros by the packet's own length, [`trim_padding`]). Only packets
/// that declare their length exactly are padded (IP and control); padding stops at
/// [`STREAM_PAD_CAP`].
pub fn stream_padded_len(p: &[u8], mask: &super::mask::Mask, noise: u64) -> usize {
    if declared_len(p) != Some(p.len()) || p.len() >= STREAM_PAD_CAP {
        return p.len();
    }
    let framed = mask.padded_len(p.len() + STREAM_OVERHEAD, noise);
    framed
        .saturating_sub(STREAM_OVERHEAD)
        .clamp(p.len(), STREAM_PAD_CAP)
}

/// A received inner packet without the zeros [`stream_padded_len`] added: cut to its
/// declared length when that is shorter and only zeros follow; anything else as it is.
pub fn trim_padding(p: &[u8]) -> &[u8] {
    match declared_len(p) {
        Some(n) if n < p.len() && p[n..].iter().all(|b| *b == 0) => &p[..n],
        _ => p,
    }
}

#[cfg(test)]
mod stream_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::camo::mask::MaskSeed;

    const FROZEN_TABLE: usize = 2;
    const FROZEN_IPV4_100: usize = 129;
    const FROZEN_CONTROL: usize = 129;

    fn ipv4(len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        p
    }

    fn mask(profile: Profile) -> super::super::mask::Mask {
        let seed = MaskSeed::new(
            b"ca",
            vec!["a.example".into()],
            vec![b"h2".to_vec()],
            Some(profile),
        )
        .unwrap();
        seed.mask_at(1_800_000_000)
    }

    #[test]
    fn ip_and_control_are_padded_to_the_days_buckets_and_trimmed_back() {
        let m = mask(Profile::HttpsBuckets);
        let table = BUCKET_TABLES[m.buckets % BUCKET_TABLES.len()];
        for len in [20, 60, 100, 400, 1000, 1300] {
            let p = ipv4(len);
            let n = stream_padded_len(&p, &m, 7);
            assert!(n >= len && n <= STREAM_PAD_CAP, "{len} → {n}");
            // The frame is a bucket, unless the cap stopped it.
            assert!(
                n == STREAM_PAD_CAP || table.contains(&(n + STREAM_OVERHEAD)),
                "{len} → {n}"
            );
            let mut padded = p.clone();
            padded.resize(n, 0);
            assert_eq!(trim_padding(&padded), &p[..]);
        }
        let c = aura_proto::control::ControlMessage::from(aura_proto::control::AddressRequest)
            .encode()
            .unwrap();
        let n = stream_padded_len(&c, &m, 1);
        assert!(n > c.len());
        let mut padded = c.clone();
        padded.resize(n, 0);
        assert_eq!(trim_padding(&padded), &c[..]);
    }

    /// Frozen: what a 100-byte IPv4 packet and an AddressRequest become on the QUIC and
    /// TLS carriers on one day of one deployment (the HTTPS-like buckets of its table).
    #[test]
    fn frozen_vector() {
        let m = mask(Profile::HttpsBuckets);
        assert_eq!(m.buckets, FROZEN_TABLE);
        assert_eq!(stream_padded_len(&ipv4(100), &m, 7), FROZEN_IPV4_100);
        let c = aura_proto::control::ControlMessage::from(aura_proto::control::AddressRequest)
            .encode()
            .unwrap();
        assert_eq!(stream_padded_len(&c, &m, 7), FROZEN_CONTROL);
    }

    #[test]
    fn other_payloads_and_profiles_are_left_alone() {
        let m = mask(Profile::HttpsBuckets);
        // A nested datagram (a circuit's): no declared length, never padded or trimmed.
        let nested = [1u8, 0, 0, 0, 9, 9, 9, 9, 0, 0];
        assert_eq!(stream_padded_len(&nested, &m, 3), nested.len());
        assert_eq!(trim_padding(&nested), &nested[..]);
        // A length field that does not match is not trusted for padding.
        let mut odd = ipv4(100);
        odd[3] = 50;
        assert_eq!(stream_padded_len(&odd, &m, 3), 100);
        let mut long = ipv4(100);
        long[3] = 200;
        assert_eq!(trim_padding(&long).len(), 100);
        // Only zeros are trimmed: what follows the declared length otherwise stays.
        let mut tail = ipv4(60);
        tail.extend_from_slice(&[0, 0, 7, 0]);
        assert_eq!(trim_padding(&tail).len(), 64);
        let mut short = vec![0x45, 0, 0, 4, 1, 2, 3];
        short.resize(30, 0);
        assert_eq!(
            trim_padding(&short).len(),
            30,
            "an IPv4 length under 20 is not one"
        );
        // The operator's "none" pads nothing; "constant" pads small packets to 1232 − 31.
        assert_eq!(stream_padded_len(&ipv4(100), &mask(Profile::None), 3), 100);
        assert_eq!(
            stream_padded_len(&ipv4(100), &mask(Profile::Constant), 3),
            1232 - STREAM_OVERHEAD
        );
        // IPv6: 40 + payload length.
        let mut six = vec![0u8; 80];
        six[0] = 0x60;
        six[5] = 40;
        let n = stream_padded_len(&six, &m, 3);
        assert!(n > 80);
        let mut padded = six.clone();
        padded.resize(n, 0);
        assert_eq!(trim_padding(&padded), &six[..]);
    }
}
