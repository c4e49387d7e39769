//! Daily masks: how the carriers look on a given day, derived by both sides from the CA
//! certificate and the date, with no coordination.
//!
//! ```text
//! okm  = HKDF-SHA256(salt = "aura-mask-v1-salt",
//!                    ikm  = SHA-256(CA certificate DER) || "YYYY-MM-DD",
//!                    info = "aura-mask-v1", L = 32)
//! okm[0..2]  SNI: index into the palette (big-endian, modulo its length)
//! okm[2]     ALPN order: rotation of the configured list after its first entry
//! okm[3]     UDP padding: the HTTPS-like profile's bucket table (mod 4)
//! okm[4]     first-flight weight level (camo::weight)
//! okm[5..7]  first-flight datagram size: 1100 + (u16 % 301) bytes
//! okm[7..]   reserved
//! ```
//!
//! A mask day starts at 02:00 UTC (05:00 in Moscow, the seed's choice: the quietest hour
//! of the region the design was made for) and is named by the UTC date at its start.
//!
//! **Clock skew.** Nothing a receiver does depends on the day: SNI and ALPN are read off
//! the ClientHello, padding and weights describe themselves. Two peers whose clocks
//! disagree around 02:00 use different masks for a few seconds and still understand each
//! other; only the knock's time window ([`super::knock::WINDOW_SECS`]) bounds the skew.

use aura_crypto::kdf;
use time::{Date, Month, OffsetDateTime};

use super::shape::Profile;
use super::weight::WeightLevel;

/// HKDF salt (the seed's label).
pub const SALT: &[u8] = b"aura-mask-v1-salt";
/// HKDF info (the seed's label).
pub const INFO: &[u8] = b"aura-mask-v1";
/// Seconds after midnight UTC at which the mask changes.
pub const SWITCH_SECS: i64 = 2 * 3600;
/// Smallest first-flight datagram (UDP payload) a mask picks.
pub const FIRST_FLIGHT_MIN: usize = 1100;
/// Largest first-flight datagram a mask picks (fits a 1500-byte IPv4 or IPv6 path).
pub const FIRST_FLIGHT_MAX: usize = 1400;

/// One day's mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    /// The mask day (UTC date at its 02:00 start).
    pub day: Date,
    /// The outer SNI (from the palette).
    pub sni: String,
    /// The outer ALPN list, in the day's order.
    pub alpn: Vec<Vec<u8>>,
    /// The UDP padding profile.
    pub udp_profile: Profile,
    /// The bucket table of the HTTPS-like profile ([`super::shape::BUCKET_TABLES`]).
    pub buckets: usize,
    /// The weight level of the UDP first flight.
    pub weight: WeightLevel,
    /// Size of each UDP first-flight datagram.
    pub first_flight_len: usize,
}

/// What a deployment's masks are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskSeed {
    ca_fingerprint: [u8; 32],
    palette: Vec<String>,
    alpn: Vec<Vec<u8>>,
    profile: Option<Profile>,
}

/// A mask seed that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    /// The SNI palette is empty.
    #[error("the SNI palette is empty")]
    EmptyPalette,
    /// The ALPN list is empty.
    #[error("the ALPN list is empty")]
    EmptyAlpn,
}

impl Mask {
    /// The size the day's padding gives a `len`-byte datagram (`noise`: a random value).
    pub fn padded_len(&self, len: usize, noise: u64) -> usize {
        self.udp_profile.padded_len_in(len, noise, self.buckets)
    }
}

impl MaskSeed {
    /// Masks of the deployment whose CA certificate is `ca_der`, picking SNIs from
    /// `palette` and rotating `alpn`. `profile`, when set, fixes the UDP padding profile
    /// (the operator chose one) instead of the day's.
    ///
    /// # Errors
    /// An empty palette or ALPN list.
    pub fn new(
        ca_der: &[u8],
        palette: Vec<String>,
        alpn: Vec<Vec<u8>>,
        profile: Option<Profile>,
    ) -> Result<Self, MaskError> {
        if palette.is_empty() {
            return Err(MaskError::EmptyPalette);
        }
        if alpn.is_empty() {
            return Err(MaskError::EmptyAlpn);
        }
        Ok(Self {
            ca_fingerprint: kdf::sha256(&[ca_der]),
            palette,
            alpn,
            profile,
        })
    }

    /// The same seed with the UDP padding profile fixed to `profile` (`None`: the day's).
    pub fn with_profile(mut self, profile: Option<Profile>) -> Self {
        self.profile = profile;
        self
    }

    /// Masks for tests and tools that have no palette: SNI `localhost`, ALPN `h2`,
    /// `http/1.1`.
    pub fn for_ca(ca_der: &[u8]) -> Self {
        Self {
            ca_fingerprint: kdf::sha256(&[ca_der]),
            palette: vec!["localhost".to_owned()],
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            profile: None,
        }
    }

    /// The mask of mask day `day`.
    pub fn mask_for(&self, day: Date) -> Mask {
        let okm = okm(&self.ca_fingerprint, day);
        let sni_ix = usize::from(u16::from_be_bytes([okm[0], okm[1]])) % self.palette.len();
        // The first protocol stays first (every browser puts h2 first; a day with
        // http/1.1 first would stand out); the others rotate.
        let mut alpn = self.alpn.clone();
        if alpn.len() > 2 {
            let rot = usize::from(okm[2]) % (alpn.len() - 1);
            alpn[1..].rotate_left(rot);
        }
        // Per-datagram jitter would cost the UDP carrier its GSO trains (about 60 % of its
        // throughput, measured); days differ by bucket table instead.
        let udp_profile = self.profile.unwrap_or(Profile::HttpsBuckets);
        let buckets = usize::from(okm[3]) % super::shape::BUCKET_TABLES.len();
        let span = FIRST_FLIGHT_MAX - FIRST_FLIGHT_MIN + 1;
        let first = FIRST_FLIGHT_MIN + usize::from(u16::from_be_bytes([okm[5], okm[6]])) % span;
        Mask {
            day,
            sni: self.palette.get(sni_ix).cloned().unwrap_or_default(),
            alpn,
            udp_profile,
            buckets,
            weight: WeightLevel::from_index(usize::from(okm[4])),
            first_flight_len: first,
        }
    }

    /// The mask in force at Unix time `unix` (seconds).
    pub fn mask_at(&self, unix: i64) -> Mask {
        self.mask_for(mask_day(unix))
    }
}

/// HKDF output for one day.
fn okm(ca_fingerprint: &[u8; 32], day: Date) -> [u8; 32] {
    let date = day_string(day);
    let prk = kdf::extract(SALT, &[ca_fingerprint, date.as_bytes()]);
    let mut out = [0u8; 32];
    // Plain RFC 5869 expand with the seed's info string (no Aura label framing).
    kdf::expand_raw(&prk, INFO, &mut out);
    out
}

/// `YYYY-MM-DD`.
pub fn day_string(day: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// Parses `YYYY-MM-DD`.
pub fn parse_day(s: &str) -> Option<Date> {
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

/// The mask day in force at Unix time `unix`: the UTC date of `unix − 2 h`.
pub fn mask_day(unix: i64) -> Date {
    OffsetDateTime::from_unix_timestamp(unix.saturating_sub(SWITCH_SECS))
        .map_or(Date::MIN, OffsetDateTime::date)
}

/// The Unix time at which the mask after the one in force at `unix` starts.
pub fn next_switch(unix: i64) -> i64 {
    let day = mask_day(unix);
    let start = day.midnight().assume_utc().unix_timestamp() + SWITCH_SECS;
    start + 86_400
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn seed() -> MaskSeed {
        MaskSeed::new(
            b"a CA certificate",
            vec!["a.example".into(), "b.example".into(), "c.example".into()],
            vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            None,
        )
        .unwrap()
    }

    #[test]
    fn the_day_switches_at_two_utc() {
        // 2026-12-06T01:59:59Z and 02:00:00Z.
        let two = 1_796_522_400; // 2026-12-06T02:00:00Z
        assert_eq!(day_string(mask_day(two - 1)), "2026-12-05");
        assert_eq!(day_string(mask_day(two)), "2026-12-06");
        assert_eq!(day_string(mask_day(two + 86_399)), "2026-12-06");
        assert_eq!(day_string(mask_day(two + 86_400)), "2026-12-07");
        assert_eq!(next_switch(two - 1), two);
        assert_eq!(next_switch(two), two + 86_400);
        let s = seed();
        assert_eq!(
            s.mask_at(two - 1),
            s.mask_for(parse_day("2026-12-05").unwrap())
        );
        assert_eq!(s.mask_at(two), s.mask_for(parse_day("2026-12-06").unwrap()));
    }

    #[test]
    fn masks_are_deterministic_and_vary_by_day_and_deployment() {
        let s = seed();
        let d = parse_day("2026-12-06").unwrap();
        assert_eq!(s.mask_for(d), s.mask_for(d));
        let days: Vec<Mask> = (0..30)
            .map(|i| s.mask_for(d + time::Duration::days(i)))
            .collect();
        let snis: std::collections::HashSet<_> = days.iter().map(|m| m.sni.clone()).collect();
        assert_eq!(snis.len(), 3, "a month uses the whole palette");
        let sizes: std::collections::HashSet<_> = days.iter().map(|m| m.first_flight_len).collect();
        assert!(sizes.len() > 20);
        assert!(
            days.iter()
                .all(|m| (FIRST_FLIGHT_MIN..=FIRST_FLIGHT_MAX).contains(&m.first_flight_len))
        );
        let other = MaskSeed::new(
            b"another CA",
            vec!["a.example".into(), "b.example".into(), "c.example".into()],
            vec![b"h2".to_vec()],
            None,
        )
        .unwrap();
        let differs = (0..10).any(|i| {
            let day = d + time::Duration::days(i);
            other.mask_for(day).first_flight_len != s.mask_for(day).first_flight_len
        });
        assert!(differs);
    }

    #[test]
    fn the_first_alpn_stays_first() {
        let three = MaskSeed::new(
            b"ca",
            vec!["x.example".into()],
            vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"spdy/3".to_vec()],
            None,
        )
        .unwrap();
        let orders: std::collections::HashSet<Vec<Vec<u8>>> = (0..40)
            .map(|i| {
                three
                    .mask_for(parse_day("2027-01-01").unwrap() + time::Duration::days(i))
                    .alpn
            })
            .collect();
        assert_eq!(orders.len(), 2, "the two after h2 take turns");
        assert!(orders.iter().all(|o| o[0] == b"h2"));
        let m = seed().mask_for(parse_day("2027-01-01").unwrap());
        assert_eq!(m.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn a_fixed_profile_wins_over_the_day() {
        let s = MaskSeed::new(
            b"ca",
            vec!["x.example".into()],
            vec![b"h2".to_vec()],
            Some(Profile::None),
        )
        .unwrap();
        for i in 0..10 {
            let m = s.mask_for(parse_day("2027-01-01").unwrap() + time::Duration::days(i));
            assert_eq!(m.udp_profile, Profile::None);
            assert_eq!(m.sni, "x.example");
        }
    }

    #[test]
    fn frozen_vector() {
        // The derivation is a wire contract: both sides compute it independently.
        let okm = okm(&[7u8; 32], parse_day("2026-12-06").unwrap());
        assert_eq!(
            hex(&okm),
            "3248d8161f813bfad8a81f1b1389323c5ff5f5751f079c5a43590d83d2613617",
            "RFC 5869 HKDF-SHA256 computed independently"
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(
            MaskSeed::new(b"ca", vec![], vec![b"h2".to_vec()], None),
            Err(MaskError::EmptyPalette)
        );
        assert_eq!(
            MaskSeed::new(b"ca", vec!["a".into()], vec![], None),
            Err(MaskError::EmptyAlpn)
        );
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "26-12-06",
            "2026-12-6",
            "2026-12-06-1",
            "",
            "x",
        ] {
            assert!(parse_day(bad).is_none(), "{bad}");
        }
        assert_eq!(day_string(parse_day("2024-02-29").unwrap()), "2024-02-29");
    }
}
