//! The cover family: padding inside the tunnel ([`Padding`]) and its negotiation
//! ([`CoverRequest`], [`CoverGrant`]).
//!
//! | kind | payload |
//! |---|---|
//! | 10 `Padding` | `len` zero bytes (the receiver drops the packet; its size is the point) |
//! | 11 `CoverRequest` | `profile u8 (1 idle, 2 bursts, 3 https) ‖ u16_be budget` |
//! | 12 `CoverGrant` | `profile u8 (0 refused, else as asked or less) ‖ u16_be budget` |
//!
//! The budget is the largest share of padding packets among all the packets a side sends,
//! in per mille (1 to 1000); a refusal carries profile 0 and budget 0. Every decoder
//! checks the exact length and the value ranges, and never panics.

use super::envelope::{ControlError, ControlKind, MAX_PAYLOAD_LEN, payload_buf};

/// Length of a [`CoverRequest`] or [`CoverGrant`] payload: profile and budget.
const COVER_LEN: usize = 3;
/// The largest budget, in per mille: every packet may be padding.
pub const MAX_COVER_BUDGET: u16 = 1000;

/// What cover traffic does (docs/PROTOCOL.md §9, "Cover traffic").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoverProfile {
    /// An idle tunnel does not look idle: padding at random intervals while no traffic
    /// flows.
    Idle,
    /// Bursts are blurred: padding trails each burst of traffic for a random while.
    Bursts,
    /// The size histogram moves toward HTTPS browsing: padding packets of web-like sizes
    /// around traffic.
    Https,
}

impl CoverProfile {
    /// The profile's byte.
    #[must_use]
    pub const fn byte(self) -> u8 {
        match self {
            Self::Idle => 1,
            Self::Bursts => 2,
            Self::Https => 3,
        }
    }

    /// The profile with byte `b`, if any.
    #[must_use]
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Idle),
            2 => Some(Self::Bursts),
            3 => Some(Self::Https),
            _ => None,
        }
    }

    /// The profile's name, as in configuration files.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Bursts => "bursts",
            Self::Https => "https",
        }
    }

    /// The profile named `name`, if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Idle, Self::Bursts, Self::Https]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

/// `Padding` payload: `len` zero bytes. The packet is dropped on receipt; it exists to be
/// seen on the wire (encrypted, it is a data packet like any other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Padding {
    /// Payload length in bytes.
    pub len: usize,
}

impl Padding {
    /// The envelope kind of this payload.
    pub const KIND: ControlKind = ControlKind::Padding;

    /// Decodes a `Padding` payload.
    ///
    /// # Errors
    /// [`ControlError::BadCover`] if a byte is not zero (the encoding is canonical).
    pub fn decode(payload: &[u8]) -> Result<Self, ControlError> {
        if payload.iter().any(|b| *b != 0) {
            return Err(ControlError::BadCover("padding bytes must be zero"));
        }
        Ok(Self { len: payload.len() })
    }

    /// Length of the encoded payload in bytes.
    #[must_use]
    pub const fn encoded_len(&self) -> usize {
        self.len
    }

    /// Checks the length against [`MAX_PAYLOAD_LEN`].
    ///
    /// # Errors
    /// [`ControlError::TooLong`].
    pub fn validate(&self) -> Result<(), ControlError> {
        if self.len > MAX_PAYLOAD_LEN {
            return Err(ControlError::TooLong {
                len: self.len,
                max: MAX_PAYLOAD_LEN,
            });
        }
        Ok(())
    }

    /// Encodes the payload into `out` and returns the number of bytes written.
    ///
    /// # Errors
    /// [`ControlError::BufferTooSmall`] if `out` is shorter than [`Self::encoded_len`].
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, ControlError> {
        let buf = payload_buf(out, self.len)?;
        buf.fill(0);
        Ok(self.len)
    }
}

fn decode_cover(kind: ControlKind, payload: &[u8]) -> Result<(u8, u16), ControlError> {
    let bytes: [u8; COVER_LEN] = payload
        .try_into()
        .map_err(|_| ControlError::PayloadLength {
            kind,
            expected: COVER_LEN,
            actual: payload.len(),
        })?;
    let [profile, b0, b1] = bytes;
    Ok((profile, u16::from_be_bytes([b0, b1])))
}

fn encode_cover(out: &mut [u8], profile: u8, budget: u16) -> Result<usize, ControlError> {
    let buf = payload_buf(out, COVER_LEN)?;
    let [b0, b1] = budget.to_be_bytes();
    buf.copy_from_slice(&[profile, b0, b1]);
    Ok(COVER_LEN)
}

fn check_budget(budget: u16) -> Result<(), ControlError> {
    if budget == 0 || budget > MAX_COVER_BUDGET {
        return Err(ControlError::BadCover(
            "budget out of range 1..=1000 per mille",
        ));
    }
    Ok(())
}

/// `CoverRequest` payload (client to server): the profile the client wants and the
/// largest share of padding it asks for, for both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CoverRequest {
    /// What the client wants.
    pub profile: CoverProfile,
    /// Largest share of padding packets, per mille (1 to 1000).
    pub budget: u16,
}

impl CoverRequest {
    /// The envelope kind of this payload.
    pub const KIND: ControlKind = ControlKind::CoverRequest;

    /// Decodes a `CoverRequest` payload.
    ///
    /// # Errors
    /// [`ControlError::PayloadLength`] unless 3 bytes; [`ControlError::BadCover`] for an
    /// unknown profile or a budget out of range.
    pub fn decode(payload: &[u8]) -> Result<Self, ControlError> {
        let (p, budget) = decode_cover(Self::KIND, payload)?;
        let profile =
            CoverProfile::from_byte(p).ok_or(ControlError::BadCover("unknown cover profile"))?;
        check_budget(budget)?;
        Ok(Self { profile, budget })
    }

    /// Checks the budget's range.
    ///
    /// # Errors
    /// [`ControlError::BadCover`].
    pub fn validate(&self) -> Result<(), ControlError> {
        check_budget(self.budget)
    }

    /// Length of the encoded payload in bytes: 3.
    #[must_use]
    pub const fn encoded_len(&self) -> usize {
        COVER_LEN
    }

    /// Encodes the payload into `out` and returns the number of bytes written.
    ///
    /// # Errors
    /// [`ControlError::BufferTooSmall`].
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, ControlError> {
        encode_cover(out, self.profile.byte(), self.budget)
    }
}

/// `CoverGrant` payload (server to client): what the server allows, `None` for a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CoverGrant {
    /// The profile granted and its budget (per mille, 1 to 1000); `None`: refused.
    pub granted: Option<(CoverProfile, u16)>,
}

impl CoverGrant {
    /// The envelope kind of this payload.
    pub const KIND: ControlKind = ControlKind::CoverGrant;

    /// Decodes a `CoverGrant` payload.
    ///
    /// # Errors
    /// [`ControlError::PayloadLength`] unless 3 bytes; [`ControlError::BadCover`] for an
    /// unknown profile, a budget out of range, or a refusal with a budget.
    pub fn decode(payload: &[u8]) -> Result<Self, ControlError> {
        let (p, budget) = decode_cover(Self::KIND, payload)?;
        if p == 0 {
            if budget != 0 {
                return Err(ControlError::BadCover("a refusal carries budget 0"));
            }
            return Ok(Self { granted: None });
        }
        let profile =
            CoverProfile::from_byte(p).ok_or(ControlError::BadCover("unknown cover profile"))?;
        check_budget(budget)?;
        Ok(Self {
            granted: Some((profile, budget)),
        })
    }

    /// Checks the budget's range.
    ///
    /// # Errors
    /// [`ControlError::BadCover`].
    pub fn validate(&self) -> Result<(), ControlError> {
        match self.granted {
            Some((_, budget)) => check_budget(budget),
            None => Ok(()),
        }
    }

    /// Length of the encoded payload in bytes: 3.
    #[must_use]
    pub const fn encoded_len(&self) -> usize {
        COVER_LEN
    }

    /// Encodes the payload into `out` and returns the number of bytes written.
    ///
    /// # Errors
    /// [`ControlError::BufferTooSmall`].
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, ControlError> {
        match self.granted {
            Some((profile, budget)) => encode_cover(out, profile.byte(), budget),
            None => encode_cover(out, 0, 0),
        }
    }
}
