//! Certificate serial numbers.

use std::fmt;
use std::str::FromStr;

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::PkiError;

/// Length of the serials this crate issues, in bytes (RFC 5280 §4.1.2.2 allows up to 20).
pub const SERIAL_LEN: usize = 16;

/// Longest serial accepted when parsing (RFC 5280 §4.1.2.2).
const MAX_SERIAL_LEN: usize = 20;

/// A certificate serial number: the big-endian magnitude of a positive DER INTEGER, in
/// minimal form (no leading zero byte).
///
/// Serials issued here are [`SERIAL_LEN`] random bytes whose first byte lies in
/// `0x01..=0x7f`: positive (top bit clear), never zero, and always exactly 16 bytes in
/// DER, so the hex form in the index equals the one read back from the certificate.
/// Displayed and serialized as lowercase hex without separators.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// Draws a fresh serial from `rng` (about 127 bits of randomness).
    pub fn random<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Serial {
        let mut bytes = [0u8; SERIAL_LEN];
        loop {
            rng.fill_bytes(&mut bytes);
            if let Some(first) = bytes.first_mut() {
                *first &= 0x7f;
                if *first != 0 {
                    return Serial(bytes.to_vec());
                }
            }
        }
    }

    /// Builds a serial from the content octets of a DER INTEGER (as found in a
    /// certificate). Leading zero bytes are dropped. Returns `None` for zero, negative or
    /// over-long (more than 20 significant bytes) values.
    pub fn from_der_integer(bytes: &[u8]) -> Option<Serial> {
        if bytes.first().is_some_and(|b| b & 0x80 != 0) {
            return None; // negative
        }
        let start = bytes.iter().position(|&b| b != 0)?;
        let magnitude = bytes.get(start..)?;
        (magnitude.len() <= MAX_SERIAL_LEN).then(|| Serial(magnitude.to_vec()))
    }

    /// The big-endian magnitude bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lowercase hex without separators.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

impl FromStr for Serial {
    type Err = PkiError;

    /// Parses hex (either case, optional `:` separators, optional `0x` prefix), as printed
    /// by this crate or by `openssl x509 -serial`.
    fn from_str(s: &str) -> Result<Serial, PkiError> {
        let bad = || PkiError::InvalidSerial(s.to_owned());
        let trimmed = s.trim();
        let body = trimmed
            .strip_prefix("0x")
            .or_else(|| trimmed.strip_prefix("0X"))
            .unwrap_or(trimmed);
        let digits: Vec<u8> = body.bytes().filter(|&b| b != b':').collect();
        if digits.is_empty() || !digits.len().is_multiple_of(2) {
            return Err(bad());
        }
        let mut bytes = Vec::with_capacity(digits.len() / 2);
        for pair in digits.chunks_exact(2) {
            let &[hi, lo] = pair else {
                return Err(bad());
            };
            let hi = hex_val(hi).ok_or_else(bad)?;
            let lo = hex_val(lo).ok_or_else(bad)?;
            bytes.push(hi << 4 | lo);
        }
        // A hex serial is an unsigned magnitude; a set top bit is fine here (DER adds the
        // leading zero), so strip zeros rather than interpreting a sign.
        let start = bytes.iter().position(|&b| b != 0).ok_or_else(bad)?;
        let magnitude = bytes.get(start..).ok_or_else(bad)?;
        if magnitude.len() > MAX_SERIAL_LEN {
            return Err(bad());
        }
        Ok(Serial(magnitude.to_vec()))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({})", self.to_hex())
    }
}

impl Serialize for Serial {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Serial {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Serial, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// An RNG that returns all-zero bytes for the first `zeros` draws, then 0xff bytes.
    struct Scripted {
        zeros: usize,
    }
    impl RngCore for Scripted {
        fn next_u32(&mut self) -> u32 {
            unimplemented!()
        }
        fn next_u64(&mut self) -> u64 {
            unimplemented!()
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            let v = if self.zeros > 0 { 0 } else { 0xff };
            self.zeros = self.zeros.saturating_sub(1);
            dest.fill(v);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl CryptoRng for Scripted {}

    #[test]
    fn random_serials_are_positive_nonzero_and_16_bytes() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let s = Serial::random(&mut rng);
            assert_eq!(s.as_bytes().len(), SERIAL_LEN);
            assert_eq!(s.as_bytes()[0] & 0x80, 0, "top bit must be clear");
            assert_ne!(s.as_bytes()[0], 0, "no leading zero byte");
            assert_eq!(s.to_hex().len(), 32);
            assert_eq!(s.to_hex(), s.to_hex().to_lowercase());
            assert!(seen.insert(s));
        }
    }

    #[test]
    fn random_serial_redraws_on_zero_first_byte_and_clears_top_bit() {
        let s = Serial::random(&mut Scripted { zeros: 3 });
        assert_eq!(s.as_bytes()[0], 0x7f);
        assert!(s.as_bytes()[1..].iter().all(|&b| b == 0xff));
    }

    #[test]
    fn hex_round_trip_and_lenient_parsing() {
        let s = Serial::random(&mut ChaCha20Rng::seed_from_u64(2));
        assert_eq!(s.to_hex().parse::<Serial>().unwrap(), s);
        assert_eq!(s.to_hex().to_uppercase().parse::<Serial>().unwrap(), s);
        let colons = s
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(colons.parse::<Serial>().unwrap(), s);
        assert_eq!("0x0102".parse::<Serial>().unwrap().as_bytes(), &[1, 2]);
        assert_eq!("000102".parse::<Serial>().unwrap().as_bytes(), &[1, 2]);
        for bad in ["", "0", "00", "0g", "abc", &"11".repeat(21), "zz"] {
            assert!(bad.parse::<Serial>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn der_integer_forms() {
        assert_eq!(
            Serial::from_der_integer(&[0, 0x80, 1]).unwrap().as_bytes(),
            &[0x80, 1]
        );
        assert!(Serial::from_der_integer(&[0x80]).is_none());
        assert!(Serial::from_der_integer(&[0, 0]).is_none());
        assert!(Serial::from_der_integer(&[]).is_none());
        assert!(Serial::from_der_integer(&[1; 21]).is_none());
    }

    #[test]
    fn serde_is_hex_string() {
        let s: Serial = "0a0b".parse().unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"0a0b\"");
        let back: Serial = serde_json::from_str("\"0a0b\"").unwrap();
        assert_eq!(back, s);
        assert!(serde_json::from_str::<Serial>("\"xyz\"").is_err());
    }
}
