//! The circuit family: asking a bridge to extend the circuit to the next hop
//! ([`ExtendBridge`]) and its two answers ([`CircuitReady`], [`CircuitFailed`]).
//!
//! | kind | payload |
//! |---|---|
//! | 3 `ExtendBridge` | `family (4 or 6) ‖ address (4 or 16) ‖ u16_be port [‖ via (1 QUIC, 2 TLS)]` |
//! | 4 `CircuitReady` | empty |
//! | 5 `CircuitFailed` | UTF-8 reason, at most [`MAX_REASON_LEN`] bytes |
//!
//! Every decoder checks the exact length for its family or limit and never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::envelope::{ControlError, ControlKind, expect_empty, payload_buf};

/// Largest [`CircuitFailed`] reason, in bytes of UTF-8.
pub const MAX_REASON_LEN: usize = 1024;

/// Address family byte of an IPv4 [`ExtendBridge`].
const FAMILY_V4: u8 = 4;
/// Address family byte of an IPv6 [`ExtendBridge`].
const FAMILY_V6: u8 = 6;
/// Payload length of an IPv4 [`ExtendBridge`], in bytes: family + address + port.
const EXTEND_V4_LEN: usize = 1 + 4 + 2;
/// Payload length of an IPv6 [`ExtendBridge`], in bytes: family + address + port.
const EXTEND_V6_LEN: usize = 1 + 16 + 2;

/// The carrier a relay reaches the next hop on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Via {
    /// Its UDP carrier: the seed's form, without a carrier byte.
    #[default]
    Udp,
    /// Its QUIC carrier (carrier byte 1).
    Quic,
    /// Its TLS-over-TCP carrier (carrier byte 2).
    Tls,
}

impl Via {
    /// The carrier's name, as in configuration files.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Quic => "quic",
            Self::Tls => "tls",
        }
    }

    /// The carrier byte, `None` for UDP (the form without one).
    const fn byte(self) -> Option<u8> {
        match self {
            Self::Udp => None,
            Self::Quic => Some(1),
            Self::Tls => Some(2),
        }
    }
}

/// `ExtendBridge` payload: asks the bridge to extend the circuit to `addr` over `via`.
///
/// Wire form: family byte (4 or 6), the 4 or 16 address bytes, the port as `u16_be`, then for
/// QUIC or TLS one carrier byte (1 or 2); UDP has no carrier byte (the seed's form), so a byte
/// 0 is refused rather than read as UDP. IPv6 flow information and scope id are not carried:
/// they decode as zero and are ignored when encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtendBridge {
    /// Address of the next hop.
    pub addr: SocketAddr,
    /// The carrier to reach it on.
    pub via: Via,
}

impl ExtendBridge {
    /// The envelope kind of this payload.
    pub const KIND: ControlKind = ControlKind::ExtendBridge;

    /// Decodes an `ExtendBridge` payload.
    ///
    /// # Errors
    /// [`ControlError::PayloadTruncated`] if empty, [`ControlError::UnknownAddressFamily`] if the
    /// family is neither 4 nor 6, [`ControlError::PayloadLength`] if the length does not match
    /// the family.
    pub fn decode(payload: &[u8]) -> Result<Self, ControlError> {
        let Some((&family, _)) = payload.split_first() else {
            return Err(ControlError::PayloadTruncated {
                kind: Self::KIND,
                needed: 1,
                have: 0,
            });
        };
        let wrong_len = |expected| ControlError::PayloadLength {
            kind: Self::KIND,
            expected,
            actual: payload.len(),
        };
        let base = match family {
            FAMILY_V4 => EXTEND_V4_LEN,
            FAMILY_V6 => EXTEND_V6_LEN,
            other => return Err(ControlError::UnknownAddressFamily(other)),
        };
        let (payload, via) = match payload.len() {
            n if n == base => (payload, Via::Udp),
            n if n == base + 1 => match payload.split_last() {
                Some((1, rest)) => (rest, Via::Quic),
                Some((2, rest)) => (rest, Via::Tls),
                Some((&b, _)) => return Err(ControlError::UnknownVia(b)),
                None => return Err(wrong_len(base)),
            },
            _ => return Err(wrong_len(base)),
        };
        let addr = match family {
            FAMILY_V4 => {
                let bytes: [u8; EXTEND_V4_LEN] =
                    payload.try_into().map_err(|_| wrong_len(EXTEND_V4_LEN))?;
                let [_, a, b, c, d, p0, p1] = bytes;
                SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
                    u16::from_be_bytes([p0, p1]),
                )
            }
            FAMILY_V6 => {
                let bytes: [u8; EXTEND_V6_LEN] =
                    payload.try_into().map_err(|_| wrong_len(EXTEND_V6_LEN))?;
                let [_, ip @ .., p0, p1] = bytes;
                SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), u16::from_be_bytes([p0, p1]))
            }
            other => return Err(ControlError::UnknownAddressFamily(other)),
        };
        Ok(Self { addr, via })
    }

    /// Length of the encoded payload in bytes (7 for IPv4, 19 for IPv6, one more over QUIC
    /// or TLS).
    #[must_use]
    pub const fn encoded_len(&self) -> usize {
        let base = match self.addr {
            SocketAddr::V4(_) => EXTEND_V4_LEN,
            SocketAddr::V6(_) => EXTEND_V6_LEN,
        };
        match self.via.byte() {
            Some(_) => base + 1,
            None => base,
        }
    }

    /// Encodes the payload into `out` and returns the number of bytes written.
    ///
    /// # Errors
    /// [`ControlError::BufferTooSmall`] if `out` is shorter than [`Self::encoded_len`].
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, ControlError> {
        let len = self.encoded_len();
        let buf = payload_buf(out, len)?;
        let [p0, p1] = self.addr.port().to_be_bytes();
        let via = self.via.byte();
        match self.addr.ip() {
            IpAddr::V4(ip) => {
                let [a, b, c, d] = ip.octets();
                for (dst, src) in buf
                    .iter_mut()
                    .zip([FAMILY_V4, a, b, c, d, p0, p1].into_iter().chain(via))
                {
                    *dst = src;
                }
            }
            IpAddr::V6(ip) => {
                for (dst, src) in buf.iter_mut().zip(
                    [FAMILY_V6]
                        .into_iter()
                        .chain(ip.octets())
                        .chain([p0, p1])
                        .chain(via),
                ) {
                    *dst = src;
                }
            }
        }
        Ok(len)
    }

    /// Encodes the payload into a new vector.
    #[must_use]
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; self.encoded_len()];
        let written = self.encode_into(&mut out).unwrap_or(0);
        out.truncate(written);
        out
    }
}

/// `CircuitReady` payload: empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CircuitReady;

impl CircuitReady {
    /// The envelope kind of this payload.
    pub const KIND: ControlKind = ControlKind::CircuitReady;

    /// Decodes a `CircuitReady` payload, which must be empty.
    ///
    /// # Errors
    /// [`ControlError::PayloadLength`] if `payload` is not empty.
    pub fn decode(payload: &[u8]) -> Result<Self, ControlError> {
        expect_empty(Self::KIND, payload).map(|()| Self)
    }

    /// Length of the encoded payload in bytes: zero.
    #[must_use]
    pub const fn encoded_len(&self) -> usize {
        0
    }
}

/// `CircuitFailed` payload: why the circuit could not be established, as UTF-8 text of at most
/// [`MAX_REASON_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CircuitFailed {
    /// Human-readable reason.
    pub reason: String,
}

impl CircuitFailed {
    /// The envelope kind of this payload.
    pub const KIND: ControlKind = ControlKind::CircuitFailed;

    /// A failure with `reason`, checked against [`MAX_REASON_LEN`].
    ///
    /// # Errors
    /// [`ControlError::ReasonTooLong`] if `reason` exceeds [`MAX_REASON_LEN`] bytes.
    pub fn new(reason: impl Into<String>) -> Result<Self, ControlError> {
        let reason = reason.into();
        check_reason_len(reason.len())?;
        Ok(Self { reason })
    }

    /// A failure with `reason` cut to at most [`MAX_REASON_LEN`] bytes on a character boundary.
    #[must_use]
    pub fn truncating(reason: &str) -> Self {
        let mut end = reason.len().min(MAX_REASON_LEN);
        while !reason.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        let cut = reason.get(..end).unwrap_or_default();
        Self {
            reason: cut.to_owned(),
        }
    }

    /// Decodes a `CircuitFailed` payload.
    ///
    /// # Errors
    /// [`ControlError::ReasonTooLong`] if longer than [`MAX_REASON_LEN`],
    /// [`ControlError::InvalidUtf8`] if not UTF-8.
    pub fn decode(payload: &[u8]) -> Result<Self, ControlError> {
        check_reason_len(payload.len())?;
        let reason = std::str::from_utf8(payload).map_err(ControlError::InvalidUtf8)?;
        Ok(Self {
            reason: reason.to_owned(),
        })
    }

    /// Length of the encoded payload in bytes.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        self.reason.len()
    }

    /// Encodes the payload into `out` and returns the number of bytes written.
    ///
    /// # Errors
    /// [`ControlError::ReasonTooLong`] if the reason exceeds [`MAX_REASON_LEN`],
    /// [`ControlError::BufferTooSmall`] if `out` is too short.
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, ControlError> {
        check_reason_len(self.reason.len())?;
        let buf = payload_buf(out, self.reason.len())?;
        buf.copy_from_slice(self.reason.as_bytes());
        Ok(self.reason.len())
    }

    /// Encodes the payload into a new vector.
    ///
    /// # Errors
    /// [`ControlError::ReasonTooLong`] if the reason exceeds [`MAX_REASON_LEN`].
    pub fn to_vec(&self) -> Result<Vec<u8>, ControlError> {
        check_reason_len(self.reason.len())?;
        Ok(self.reason.as_bytes().to_vec())
    }
}

pub(super) fn check_reason_len(len: usize) -> Result<(), ControlError> {
    if len > MAX_REASON_LEN {
        Err(ControlError::ReasonTooLong {
            len,
            max: MAX_REASON_LEN,
        })
    } else {
        Ok(())
    }
}
