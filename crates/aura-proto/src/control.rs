//! Control envelopes: in-band control messages multiplexed with IP packets inside the
//! encrypted data channel.
//!
//! A control envelope is always a *whole* decrypted data-channel packet. It is told apart from an
//! IP packet by its first four bytes: IPv4 packets start with `0x4X` and IPv6 packets with
//! `0x6X`, so [`MAGIC`] (`0xAA …`) can never be mistaken for either.
//!
//! # Wire format (frozen, kept for compatibility)
//!
//! ```text
//!  0               4      5                  9
//!  +---------------+------+------------------+------------------+
//!  | MAGIC (4)     | kind | payload len (4)  | payload (len)    |
//!  | AA AA C0 01   | u8   | u32 big-endian   |                  |
//!  +---------------+------+------------------+------------------+
//! ```
//!
//! The declared length must match the bytes that follow exactly (no trailing bytes) and may not
//! exceed [`MAX_PAYLOAD_LEN`]. Typed payloads, one per [`ControlKind`]:
//!
//! | kind | type | payload |
//! |---|---|---|
//! | 1 `CrlPush` | [`CrlChunk`] | `u64_be crl_number ‖ u32_be offset ‖ u32_be total_len ‖ data` |
//! | 2 `CrlAck` | [`CrlAck`] | `u64_be crl_number` (exactly 8 bytes) |
//! | 3 `ExtendBridge` | [`ExtendBridge`] | `family (4 or 6) ‖ address (4 or 16) ‖ u16_be port` |
//! | 4 `CircuitReady` | [`CircuitReady`] | empty |
//! | 5 `CircuitFailed` | [`CircuitFailed`] | UTF-8 reason, at most [`MAX_REASON_LEN`] bytes |
//! | 6 `AddressAssign` | [`AddressAssign`] | `address (4) ‖ prefix_len u8 ‖ gateway (4) ‖ u16_be mtu` (exactly 11 bytes) |
//! | 7 `AddressRequest` | [`AddressRequest`] | empty |
//!
//! Any other kind byte decodes as [`ControlKind::Unknown`], so a receiver can skip messages
//! introduced by newer peers.
//!
//! A CRL can be larger than one packet, so it is pushed as a sequence of [`CrlChunk`]s (see
//! [`chunk_crl`]) and put back together by a [`CrlAssembler`].
//!
//! # Guarantees
//!
//! * Decoding never panics and never reads past the input; every rejection is a typed
//!   [`ControlError`].
//! * Decoding is canonical: whenever [`decode`] (or a typed decoder) accepts some bytes,
//!   re-encoding the result gives back exactly those bytes.
//! * [`encode_into`] and [`ControlMessage::encode_into`] write into a caller-owned buffer and do
//!   not allocate.
//!
//! # Example
//!
//! ```
//! use aura_proto::control::{self, ControlKind, ControlMessage, CrlAck};
//!
//! let packet = ControlMessage::from(CrlAck { crl_number: 7 }).encode()?;
//! assert!(control::is_control(&packet));
//!
//! let envelope = control::decode(&packet)?;
//! assert_eq!(envelope.kind, ControlKind::CrlAck);
//! match ControlMessage::parse(envelope)? {
//!     ControlMessage::CrlAck(ack) => assert_eq!(ack.crl_number, 7),
//!     other => panic!("unexpected message {other:?}"),
//! }
//! # Ok::<(), control::ControlError>(())
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The four bytes every control envelope starts with.
pub const MAGIC: [u8; 4] = [0xAA, 0xAA, 0xC0, 0x01];

/// Length of the envelope header in bytes: magic (4) + kind (1) + payload length (4).
pub const HEADER_LEN: usize = 9;

/// Largest payload, in bytes, that an envelope may declare or carry.
pub const MAX_PAYLOAD_LEN: usize = 65_535;

/// Largest whole envelope (header + payload), in bytes.
pub const MAX_ENVELOPE_LEN: usize = HEADER_LEN + MAX_PAYLOAD_LEN;

/// Largest [`CircuitFailed`] reason, in bytes of UTF-8.
pub const MAX_REASON_LEN: usize = 1024;

/// Largest CRL, in bytes, that may be pushed in chunks (16 MiB).
pub const MAX_CRL_LEN: usize = 16 * 1024 * 1024;

/// Fixed part of a [`CrlChunk`] payload, in bytes: number (8) + offset (4) + total length (4).
pub const CRL_CHUNK_HEADER_LEN: usize = 16;

/// Largest data part of one [`CrlChunk`], in bytes, so that the chunk fits one envelope.
pub const MAX_CRL_CHUNK_DATA_LEN: usize = MAX_PAYLOAD_LEN - CRL_CHUNK_HEADER_LEN;

/// Bytes an encoded `CrlPush` envelope adds around its chunk data (envelope header + chunk
/// header). A sender with a packet budget of `B` bytes uses `B - CRL_PUSH_OVERHEAD` as
/// `max_chunk` for [`chunk_crl`].
pub const CRL_PUSH_OVERHEAD: usize = HEADER_LEN + CRL_CHUNK_HEADER_LEN;

/// Address family byte of an IPv4 [`ExtendBridge`].
const FAMILY_V4: u8 = 4;
/// Address family byte of an IPv6 [`ExtendBridge`].
const FAMILY_V6: u8 = 6;
/// Payload length of an IPv4 [`ExtendBridge`], in bytes: family + address + port.
const EXTEND_V4_LEN: usize = 1 + 4 + 2;
/// Payload length of an IPv6 [`ExtendBridge`], in bytes: family + address + port.
const EXTEND_V6_LEN: usize = 1 + 16 + 2;
/// Payload length of a [`CrlAck`], in bytes.
const CRL_ACK_LEN: usize = 8;
/// Payload length of an [`AddressAssign`], in bytes: address + prefix + gateway + MTU.
const ADDRESS_ASSIGN_LEN: usize = 4 + 1 + 4 + 2;

/// Errors from encoding and decoding control envelopes and their payloads.
///
/// Every decoding error means the peer sent something malformed (it broke the protocol);
/// [`ControlError::BufferTooSmall`] and the length errors on the encoding side mean the local
/// caller asked for something that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The packet does not start with [`MAGIC`] (it is an IP packet, or garbage).
    #[error("not a control envelope (no magic)")]
    NotControl,
    /// The envelope header is incomplete or the declared payload runs past the packet.
    #[error("truncated control envelope: need {needed} bytes, have {have}")]
    Truncated {
        /// Bytes the envelope needs in all.
        needed: usize,
        /// Bytes present.
        have: usize,
    },
    /// More bytes follow the declared payload.
    #[error("control envelope declares a {declared}-byte payload but carries {actual} bytes")]
    TrailingBytes {
        /// Payload length in the header.
        declared: usize,
        /// Payload bytes actually present.
        actual: usize,
    },
    /// A payload longer than [`MAX_PAYLOAD_LEN`] was declared or was asked to be encoded.
    #[error("control payload of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// Declared or requested payload length in bytes.
        len: usize,
        /// The maximum, [`MAX_PAYLOAD_LEN`].
        max: usize,
    },
    /// The output buffer cannot hold the encoding.
    #[error("output buffer too small: need {needed} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes the encoding needs.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// A typed payload has the wrong length for its kind.
    #[error("{kind:?} payload must be {expected} bytes, got {actual}")]
    PayloadLength {
        /// Kind of the envelope.
        kind: ControlKind,
        /// Length that kind requires, in bytes.
        expected: usize,
        /// Length received, in bytes.
        actual: usize,
    },
    /// A typed payload is shorter than its fixed part.
    #[error("{kind:?} payload truncated: need at least {needed} bytes, have {have}")]
    PayloadTruncated {
        /// Kind of the envelope.
        kind: ControlKind,
        /// Minimum length in bytes.
        needed: usize,
        /// Length received, in bytes.
        have: usize,
    },
    /// An [`ExtendBridge`] address family other than 4 or 6.
    #[error("unknown address family {0} in ExtendBridge")]
    UnknownAddressFamily(u8),
    /// An [`AddressAssign`] whose prefix length is over 32 or whose address or gateway is
    /// unusable in that network (network or broadcast address, or outside it).
    #[error("unusable tunnel address assignment: {0}")]
    BadAssignment(&'static str),
    /// A [`CircuitFailed`] reason longer than [`MAX_REASON_LEN`].
    #[error("circuit failure reason of {len} bytes exceeds the maximum of {max}")]
    ReasonTooLong {
        /// Reason length in bytes.
        len: usize,
        /// The maximum, [`MAX_REASON_LEN`].
        max: usize,
    },
    /// A [`CircuitFailed`] reason that is not UTF-8.
    #[error("circuit failure reason is not valid UTF-8")]
    InvalidUtf8(#[source] std::str::Utf8Error),
    /// A [`CrlChunk`] announcing a CRL of zero bytes.
    #[error("CRL chunk announces an empty CRL")]
    CrlEmpty,
    /// A [`CrlChunk`] announcing, or a sender offering, a CRL larger than [`MAX_CRL_LEN`].
    #[error("CRL of {total_len} bytes exceeds the maximum of {max}")]
    CrlTooLarge {
        /// Announced CRL length in bytes.
        total_len: u64,
        /// The maximum, [`MAX_CRL_LEN`].
        max: usize,
    },
    /// A [`CrlChunk`] whose data runs past the announced CRL length.
    #[error("CRL chunk at offset {offset} with {len} bytes runs past the CRL length {total_len}")]
    ChunkOutOfBounds {
        /// Offset of the chunk in the CRL.
        offset: u32,
        /// Length of the chunk data in bytes.
        len: usize,
        /// Announced CRL length in bytes.
        total_len: u32,
    },
    /// A chunk of the CRL being assembled announces a different total length than earlier
    /// chunks of the same CRL number.
    #[error("CRL {crl_number}: chunk announces {got} bytes, earlier chunks announced {announced}")]
    ChunkTotalMismatch {
        /// CRL number.
        crl_number: u64,
        /// Total length announced by the first chunk.
        announced: u32,
        /// Total length announced by this chunk.
        got: u32,
    },
    /// A chunk overlaps bytes already received for the same CRL and disagrees with them.
    #[error("CRL {crl_number}: chunk at offset {offset} contradicts bytes already received")]
    ChunkConflict {
        /// CRL number.
        crl_number: u64,
        /// Offset of the offending chunk.
        offset: u32,
    },
    /// An envelope of another kind was given where `expected` was required.
    #[error("expected a {expected:?} envelope, got {found:?}")]
    WrongKind {
        /// Kind required.
        expected: ControlKind,
        /// Kind received.
        found: ControlKind,
    },
    /// [`chunk_crl`] was asked for chunks of zero bytes.
    #[error("CRL chunk size must be at least one byte")]
    ZeroChunkSize,
}

/// The kind byte of a control envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlKind {
    /// 1: a chunk of a certificate revocation list pushed by the server ([`CrlChunk`]).
    CrlPush,
    /// 2: acknowledges a complete CRL ([`CrlAck`]).
    CrlAck,
    /// 3: asks a bridge to extend the circuit to another node ([`ExtendBridge`]).
    ExtendBridge,
    /// 4: the circuit is established ([`CircuitReady`]).
    CircuitReady,
    /// 5: the circuit could not be established ([`CircuitFailed`]).
    CircuitFailed,
    /// 6: the server tells the client its tunnel address ([`AddressAssign`]).
    AddressAssign,
    /// 7: the client asks for its tunnel address ([`AddressRequest`]).
    AddressRequest,
    /// Any other kind byte (never 1 to 7: [`ControlKind::from_u8`] normalises those).
    Unknown(u8),
}

impl ControlKind {
    /// Maps a kind byte to its kind; bytes other than 1 to 7 give [`ControlKind::Unknown`].
    #[must_use]
    pub const fn from_u8(byte: u8) -> Self {
        match byte {
            1 => Self::CrlPush,
            2 => Self::CrlAck,
            3 => Self::ExtendBridge,
            4 => Self::CircuitReady,
            5 => Self::CircuitFailed,
            6 => Self::AddressAssign,
            7 => Self::AddressRequest,
            other => Self::Unknown(other),
        }
    }

    /// The kind byte on the wire.
    #[must_use]
    pub const fn to_u8(self) -> u8 {
        match self {
            Self::CrlPush => 1,
            Self::CrlAck => 2,
            Self::ExtendBridge => 3,
            Self::CircuitReady => 4,
            Self::CircuitFailed => 5,
            Self::AddressAssign => 6,
            Self::AddressRequest => 7,
            Self::Unknown(byte) => byte,
        }
    }

    /// Whether this is one of the kinds this version understands.
    #[must_use]
    pub const fn is_known(self) -> bool {
        !matches!(Self::from_u8(self.to_u8()), Self::Unknown(_))
    }
}

impl From<u8> for ControlKind {
    fn from(byte: u8) -> Self {
        Self::from_u8(byte)
    }
}

impl From<ControlKind> for u8 {
    fn from(kind: ControlKind) -> Self {
        kind.to_u8()
    }
}

/// A decoded envelope: its kind and a view of its payload inside the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// Kind byte, normalised.
    pub kind: ControlKind,
    /// Payload bytes, exactly as long as the header declared.
    pub payload: &'a [u8],
}

impl Envelope<'_> {
    /// Length of this envelope once encoded, in bytes.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.payload.len())
    }

    /// Encodes this envelope into `out`; see [`encode_into`].
    ///
    /// # Errors
    /// As [`encode_into`].
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, ControlError> {
        encode_into(self.kind, self.payload, out)
    }
}

/// Whether `packet` is a control envelope (starts with [`MAGIC`]) rather than an IP packet.
#[must_use]
pub fn is_control(packet: &[u8]) -> bool {
    packet.starts_with(&MAGIC)
}

/// Decodes the envelope that makes up the whole of `packet`.
///
/// # Errors
/// [`ControlError::NotControl`] if `packet` does not start with [`MAGIC`] (including packets
/// shorter than four bytes), [`ControlError::TooLong`] if the declared length exceeds
/// [`MAX_PAYLOAD_LEN`], [`ControlError::Truncated`] if the header is incomplete or the payload
/// runs past the packet, [`ControlError::TrailingBytes`] if bytes follow the payload.
pub fn decode(packet: &[u8]) -> Result<Envelope<'_>, ControlError> {
    if !is_control(packet) {
        return Err(ControlError::NotControl);
    }
    let Some((header, rest)) = packet.split_first_chunk::<HEADER_LEN>() else {
        return Err(ControlError::Truncated {
            needed: HEADER_LEN,
            have: packet.len(),
        });
    };
    let [_, _, _, _, kind, l0, l1, l2, l3] = *header;
    let declared = u32::from_be_bytes([l0, l1, l2, l3]);
    let declared = match usize::try_from(declared) {
        Ok(len) if len <= MAX_PAYLOAD_LEN => len,
        Ok(len) => {
            return Err(ControlError::TooLong {
                len,
                max: MAX_PAYLOAD_LEN,
            });
        }
        Err(_) => {
            return Err(ControlError::TooLong {
                len: usize::MAX,
                max: MAX_PAYLOAD_LEN,
            });
        }
    };
    if declared > rest.len() {
        return Err(ControlError::Truncated {
            needed: HEADER_LEN.saturating_add(declared),
            have: packet.len(),
        });
    }
    if declared < rest.len() {
        return Err(ControlError::TrailingBytes {
            declared,
            actual: rest.len(),
        });
    }
    Ok(Envelope {
        kind: ControlKind::from_u8(kind),
        payload: rest,
    })
}

/// Checks a payload length and returns it as the header's `u32`.
fn checked_payload_len(len: usize) -> Result<u32, ControlError> {
    match u32::try_from(len) {
        Ok(wire) if len <= MAX_PAYLOAD_LEN => Ok(wire),
        _ => Err(ControlError::TooLong {
            len,
            max: MAX_PAYLOAD_LEN,
        }),
    }
}

/// Writes the header for a payload of `payload_len` bytes and returns the header and payload
/// parts of `out`, the payload part exactly `payload_len` bytes long.
fn split_envelope(
    kind: ControlKind,
    payload_len: usize,
    out: &mut [u8],
) -> Result<&mut [u8], ControlError> {
    let wire_len = checked_payload_len(payload_len)?;
    let needed = HEADER_LEN.saturating_add(payload_len);
    let have = out.len();
    let too_small = ControlError::BufferTooSmall { needed, have };
    let buf = out.get_mut(..needed).ok_or(too_small.clone())?;
    let (header, body) = buf.split_first_chunk_mut::<HEADER_LEN>().ok_or(too_small)?;
    let [l0, l1, l2, l3] = wire_len.to_be_bytes();
    let [m0, m1, m2, m3] = MAGIC;
    *header = [m0, m1, m2, m3, kind.to_u8(), l0, l1, l2, l3];
    Ok(body)
}

/// Encodes an envelope of `kind` around `payload` into `out`, without allocating.
///
/// Returns the number of bytes written (`HEADER_LEN + payload.len()`).
///
/// # Errors
/// [`ControlError::TooLong`] if `payload` exceeds [`MAX_PAYLOAD_LEN`],
/// [`ControlError::BufferTooSmall`] if `out` cannot hold the envelope.
pub fn encode_into(
    kind: ControlKind,
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, ControlError> {
    let body = split_envelope(kind, payload.len(), out)?;
    body.copy_from_slice(payload);
    Ok(HEADER_LEN + payload.len())
}

/// Encodes an envelope of `kind` around `payload` into a new vector.
///
/// # Errors
/// [`ControlError::TooLong`] if `payload` exceeds [`MAX_PAYLOAD_LEN`].
pub fn encode(kind: ControlKind, payload: &[u8]) -> Result<Vec<u8>, ControlError> {
    checked_payload_len(payload.len())?;
    let mut out = vec![0; HEADER_LEN + payload.len()];
    let written = encode_into(kind, payload, &mut out)?;
    out.truncate(written);
    Ok(out)
}

/// Returns the first `len` bytes of `out` for a payload encoder, or `BufferTooSmall`.
fn payload_buf(out: &mut [u8], len: usize) -> Result<&mut [u8], ControlError> {
    let have = out.len();
    out.get_mut(..len)
        .ok_or(ControlError::BufferTooSmall { needed: len, have })
}

// ---------------------------------------------------------------------------------------------
// ExtendBridge
// ---------------------------------------------------------------------------------------------

/// `ExtendBridge` payload: asks the bridge to extend the circuit to `addr`.
///
/// Wire form: family byte (4 or 6), the 4 or 16 address bytes, the port as `u16_be`. IPv6 flow
/// information and scope id are not carried: they decode as zero and are ignored when encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtendBridge {
    /// Address of the next hop.
    pub addr: SocketAddr,
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
        Ok(Self { addr })
    }

    /// Length of the encoded payload in bytes (7 for IPv4, 19 for IPv6).
    #[must_use]
    pub const fn encoded_len(&self) -> usize {
        match self.addr {
            SocketAddr::V4(_) => EXTEND_V4_LEN,
            SocketAddr::V6(_) => EXTEND_V6_LEN,
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
        match self.addr.ip() {
            IpAddr::V4(ip) => {
                let [a, b, c, d] = ip.octets();
                buf.copy_from_slice(&[FAMILY_V4, a, b, c, d, p0, p1]);
            }
            IpAddr::V6(ip) => {
                for (dst, src) in buf
                    .iter_mut()
                    .zip([FAMILY_V6].into_iter().chain(ip.octets()).chain([p0, p1]))
                {
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

// ---------------------------------------------------------------------------------------------
// CircuitReady / CircuitFailed
// ---------------------------------------------------------------------------------------------

/// Checks that the payload of an envelope of `kind` that carries nothing is empty.
fn expect_empty(kind: ControlKind, payload: &[u8]) -> Result<(), ControlError> {
    if payload.is_empty() {
        Ok(())
    } else {
        Err(ControlError::PayloadLength {
            kind,
            expected: 0,
            actual: payload.len(),
        })
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

fn check_reason_len(len: usize) -> Result<(), ControlError> {
    if len > MAX_REASON_LEN {
        Err(ControlError::ReasonTooLong {
            len,
            max: MAX_REASON_LEN,
        })
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// CrlAck
// ---------------------------------------------------------------------------------------------

/// `CrlAck` payload: the receiver has the complete CRL `crl_number`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CrlAck {
    /// Number of the CRL received.
    pub crl_number: u64,
}

impl CrlAck {
    /// The envelope kind of this payload.
    pub const KIND: ControlKind = ControlKind::CrlAck;

    /// Decodes a `CrlAck` payload (exactly 8 bytes).
    ///
    /// # Errors
    /// [`ControlError::PayloadLength`] if `payload` is not 8 bytes long.
    pub fn decode(payload: &[u8]) -> Result<Self, ControlError> {
        let bytes: [u8; CRL_ACK_LEN] =
            payload
                .try_into()
                .map_err(|_| ControlError::PayloadLength {
                    kind: Self::KIND,
                    expected: CRL_ACK_LEN,
                    actual: payload.len(),
                })?;
        Ok(Self {
            crl_number: u64::from_be_bytes(bytes),
        })
    }

    /// Length of the encoded payload in bytes: 8.
    #[must_use]
    pub const fn encoded_len(&self) -> usize {
        CRL_ACK_LEN
    }

    /// Encodes the payload into `out` and returns the number of bytes written.
    ///
    /// # Errors
    /// [`ControlError::BufferTooSmall`] if `out` is shorter than 8 bytes.
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, ControlError> {
        payload_buf(out, CRL_ACK_LEN)?.copy_from_slice(&self.crl_number.to_be_bytes());
        Ok(CRL_ACK_LEN)
    }

    /// The encoded payload.
    #[must_use]
    pub const fn to_bytes(&self) -> [u8; CRL_ACK_LEN] {
        self.crl_number.to_be_bytes()
    }
}

// ---------------------------------------------------------------------------------------------
// AddressAssign
// ---------------------------------------------------------------------------------------------

/// `AddressAssign` payload (server to client, right after the handshake and again whenever it
/// changes): the client's tunnel address, its network's prefix length, the server's own
/// tunnel address (the gateway) and the tunnel MTU the server uses.
///
/// Wire form (11 bytes): `address (4) ‖ prefix_len (1) ‖ gateway (4) ‖ mtu (u16_be)`.
/// Decoding checks that the prefix is 1 to 30 bits (30 is the smallest pool: network,
/// server, one client, broadcast), that the address and the gateway are distinct hosts of
/// the same network, neither its network nor its broadcast address, and that the MTU is
/// at least 576 (the IPv4 minimum datagram every host must accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressAssign {
    /// The client's tunnel address.
    pub address: Ipv4Addr,
    /// Prefix length of the tunnel network.
    pub prefix_len: u8,
    /// The server's tunnel address.
    pub gateway: Ipv4Addr,
    /// Tunnel MTU, in bytes.
    pub mtu: u16,
}

impl AddressAssign {
    /// The envelope kind of this payload.
    pub const KIND: ControlKind = ControlKind::AddressAssign;

    /// Smallest MTU an assignment may carry.
    pub const MIN_MTU: u16 = 576;

    /// Checks the invariants listed on the type.
    ///
    /// # Errors
    /// [`ControlError::BadAssignment`] naming the broken one.
    pub fn validate(&self) -> Result<(), ControlError> {
        if !(1..=30).contains(&self.prefix_len) {
            return Err(ControlError::BadAssignment("prefix length must be 1 to 30"));
        }
        if self.mtu < Self::MIN_MTU {
            return Err(ControlError::BadAssignment("MTU below 576"));
        }
        let mask = u32::MAX << (32 - u32::from(self.prefix_len));
        let a = u32::from(self.address);
        let g = u32::from(self.gateway);
        if a & mask != g & mask {
            return Err(ControlError::BadAssignment(
                "address and gateway are in different networks",
            ));
        }
        if a == g {
            return Err(ControlError::BadAssignment("address equals the gateway"));
        }
        for host in [a, g] {
            let h = host & !mask;
            if h == 0 || h == !mask {
                return Err(ControlError::BadAssignment(
                    "network or broadcast address assigned",
                ));
            }
        }
        Ok(())
    }

    /// Decodes an `AddressAssign` payload (exactly 11 bytes) and validates it.
    ///
    /// # Errors
    /// [`ControlError::PayloadLength`] for another length, [`ControlError::BadAssignment`]
    /// when an invariant is broken.
    pub fn decode(payload: &[u8]) -> Result<Self, ControlError> {
        let bytes: [u8; ADDRESS_ASSIGN_LEN] =
            payload
                .try_into()
                .map_err(|_| ControlError::PayloadLength {
                    kind: Self::KIND,
                    expected: ADDRESS_ASSIGN_LEN,
                    actual: payload.len(),
                })?;
        let [a0, a1, a2, a3, prefix_len, g0, g1, g2, g3, m0, m1] = bytes;
        let assign = Self {
            address: Ipv4Addr::new(a0, a1, a2, a3),
            prefix_len,
            gateway: Ipv4Addr::new(g0, g1, g2, g3),
            mtu: u16::from_be_bytes([m0, m1]),
        };
        assign.validate()?;
        Ok(assign)
    }

    /// Length of the encoded payload in bytes: 11.
    #[must_use]
    pub const fn encoded_len(&self) -> usize {
        ADDRESS_ASSIGN_LEN
    }

    /// Encodes the payload into `out` and returns the number of bytes written.
    ///
    /// # Errors
    /// [`ControlError::BadAssignment`], or [`ControlError::BufferTooSmall`] if `out` is
    /// shorter than 11 bytes.
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, ControlError> {
        self.validate()?;
        let buf = payload_buf(out, ADDRESS_ASSIGN_LEN)?;
        let [a0, a1, a2, a3] = self.address.octets();
        let [g0, g1, g2, g3] = self.gateway.octets();
        let [m0, m1] = self.mtu.to_be_bytes();
        buf.copy_from_slice(&[a0, a1, a2, a3, self.prefix_len, g0, g1, g2, g3, m0, m1]);
        Ok(ADDRESS_ASSIGN_LEN)
    }
}

/// `AddressRequest` payload (client to server): empty. The client sends it when a session
/// starts and every second until an [`AddressAssign`] arrives; the server answers each one.
/// It is what makes a reconnect that the server's endpoint treats as a rekey of the same
/// connection (same client id) get its address again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AddressRequest;

impl AddressRequest {
    /// The envelope kind of this payload.
    pub const KIND: ControlKind = ControlKind::AddressRequest;

    /// Decodes an `AddressRequest` payload, which must be empty.
    ///
    /// # Errors
    /// [`ControlError::PayloadLength`] if `payload` is not empty.
    pub fn decode(payload: &[u8]) -> Result<Self, ControlError> {
        expect_empty(Self::KIND, payload).map(|()| Self)
    }
}

// ---------------------------------------------------------------------------------------------
// CrlChunk
// ---------------------------------------------------------------------------------------------

/// `CrlPush` payload: bytes `offset .. offset + data.len()` of CRL number `crl_number`, whose
/// full DER encoding is `total_len` bytes long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CrlChunk<'a> {
    /// CRL number (monotonic; a higher number replaces a lower one).
    pub crl_number: u64,
    /// Offset of `data` in the CRL, in bytes.
    pub offset: u32,
    /// Length of the whole CRL in bytes (1 to [`MAX_CRL_LEN`]).
    pub total_len: u32,
    /// The chunk's bytes.
    pub data: &'a [u8],
}

impl<'a> CrlChunk<'a> {
    /// The envelope kind of this payload.
    pub const KIND: ControlKind = ControlKind::CrlPush;

    /// Checks the chunk's invariants: `total_len` in `1..=MAX_CRL_LEN`, the data within
    /// `total_len`.
    ///
    /// # Errors
    /// [`ControlError::CrlEmpty`], [`ControlError::CrlTooLarge`] or
    /// [`ControlError::ChunkOutOfBounds`].
    pub fn validate(&self) -> Result<(), ControlError> {
        if self.total_len == 0 {
            return Err(ControlError::CrlEmpty);
        }
        let total = u64::from(self.total_len);
        if total > MAX_CRL_LEN as u64 {
            return Err(ControlError::CrlTooLarge {
                total_len: total,
                max: MAX_CRL_LEN,
            });
        }
        let end = u64::from(self.offset).saturating_add(self.data.len() as u64);
        if end > total {
            return Err(ControlError::ChunkOutOfBounds {
                offset: self.offset,
                len: self.data.len(),
                total_len: self.total_len,
            });
        }
        Ok(())
    }

    /// Decodes a `CrlPush` payload and validates it (see [`Self::validate`]).
    ///
    /// # Errors
    /// [`ControlError::PayloadTruncated`] if shorter than [`CRL_CHUNK_HEADER_LEN`], or any error
    /// of [`Self::validate`].
    pub fn decode(payload: &'a [u8]) -> Result<Self, ControlError> {
        let truncated = ControlError::PayloadTruncated {
            kind: Self::KIND,
            needed: CRL_CHUNK_HEADER_LEN,
            have: payload.len(),
        };
        let Some((number, rest)) = payload.split_first_chunk::<8>() else {
            return Err(truncated);
        };
        let Some((offset, rest)) = rest.split_first_chunk::<4>() else {
            return Err(truncated);
        };
        let Some((total_len, data)) = rest.split_first_chunk::<4>() else {
            return Err(truncated);
        };
        let chunk = Self {
            crl_number: u64::from_be_bytes(*number),
            offset: u32::from_be_bytes(*offset),
            total_len: u32::from_be_bytes(*total_len),
            data,
        };
        chunk.validate()?;
        Ok(chunk)
    }

    /// Length of the encoded payload in bytes.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        CRL_CHUNK_HEADER_LEN.saturating_add(self.data.len())
    }

    /// Encodes the payload into `out` and returns the number of bytes written.
    ///
    /// # Errors
    /// Any error of [`Self::validate`], [`ControlError::TooLong`] if the data exceeds
    /// [`MAX_CRL_CHUNK_DATA_LEN`], [`ControlError::BufferTooSmall`] if `out` is too short.
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, ControlError> {
        self.validate()?;
        let len = self.encoded_len();
        checked_payload_len(len)?;
        let out_len = out.len();
        let buf = payload_buf(out, len)?;
        let too_small = ControlError::BufferTooSmall {
            needed: len,
            have: out_len,
        };
        let (number, rest) = buf.split_first_chunk_mut::<8>().ok_or(too_small.clone())?;
        let (offset, rest) = rest.split_first_chunk_mut::<4>().ok_or(too_small.clone())?;
        let (total_len, data) = rest.split_first_chunk_mut::<4>().ok_or(too_small)?;
        *number = self.crl_number.to_be_bytes();
        *offset = self.offset.to_be_bytes();
        *total_len = self.total_len.to_be_bytes();
        data.copy_from_slice(self.data);
        Ok(len)
    }

    /// Encodes the payload into a new vector.
    ///
    /// # Errors
    /// As [`Self::encode_into`], except `BufferTooSmall`.
    pub fn to_vec(&self) -> Result<Vec<u8>, ControlError> {
        let mut out = vec![0; self.encoded_len()];
        let written = self.encode_into(&mut out)?;
        out.truncate(written);
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// ControlMessage
// ---------------------------------------------------------------------------------------------

/// A control envelope with its payload decoded according to its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlMessage<'a> {
    /// A chunk of a CRL.
    CrlPush(CrlChunk<'a>),
    /// A CRL acknowledgement.
    CrlAck(CrlAck),
    /// A request to extend the circuit.
    ExtendBridge(ExtendBridge),
    /// The circuit is ready.
    CircuitReady(CircuitReady),
    /// The circuit failed.
    CircuitFailed(CircuitFailed),
    /// The client's tunnel address.
    AddressAssign(AddressAssign),
    /// The client asks for its address.
    AddressRequest(AddressRequest),
    /// A kind this version does not know; the payload is passed through untouched.
    Unknown {
        /// The kind byte (never 1 to 7).
        kind: u8,
        /// The raw payload.
        payload: &'a [u8],
    },
}

impl<'a> ControlMessage<'a> {
    /// Decodes the payload of `envelope` according to its kind.
    ///
    /// # Errors
    /// The error of the kind's typed decoder.
    pub fn parse(envelope: Envelope<'a>) -> Result<Self, ControlError> {
        let payload = envelope.payload;
        Ok(match envelope.kind {
            ControlKind::CrlPush => Self::CrlPush(CrlChunk::decode(payload)?),
            ControlKind::CrlAck => Self::CrlAck(CrlAck::decode(payload)?),
            ControlKind::ExtendBridge => Self::ExtendBridge(ExtendBridge::decode(payload)?),
            ControlKind::CircuitReady => Self::CircuitReady(CircuitReady::decode(payload)?),
            ControlKind::CircuitFailed => Self::CircuitFailed(CircuitFailed::decode(payload)?),
            ControlKind::AddressAssign => Self::AddressAssign(AddressAssign::decode(payload)?),
            ControlKind::AddressRequest => Self::AddressRequest(AddressRequest::decode(payload)?),
            ControlKind::Unknown(byte) => match ControlKind::from_u8(byte) {
                // A hand-built `Unknown(1..=7)`: treat it as the kind it names.
                known @ (ControlKind::CrlPush
                | ControlKind::CrlAck
                | ControlKind::ExtendBridge
                | ControlKind::CircuitReady
                | ControlKind::CircuitFailed
                | ControlKind::AddressAssign
                | ControlKind::AddressRequest) => {
                    return Self::parse(Envelope {
                        kind: known,
                        payload,
                    });
                }
                ControlKind::Unknown(kind) => Self::Unknown { kind, payload },
            },
        })
    }

    /// Decodes a whole packet: [`decode`] then [`Self::parse`].
    ///
    /// # Errors
    /// Any error of [`decode`] or of the kind's typed decoder.
    pub fn decode(packet: &'a [u8]) -> Result<Self, ControlError> {
        Self::parse(decode(packet)?)
    }

    /// The envelope kind of this message.
    #[must_use]
    pub const fn kind(&self) -> ControlKind {
        match self {
            Self::CrlPush(_) => ControlKind::CrlPush,
            Self::CrlAck(_) => ControlKind::CrlAck,
            Self::ExtendBridge(_) => ControlKind::ExtendBridge,
            Self::CircuitReady(_) => ControlKind::CircuitReady,
            Self::CircuitFailed(_) => ControlKind::CircuitFailed,
            Self::AddressAssign(_) => ControlKind::AddressAssign,
            Self::AddressRequest(_) => ControlKind::AddressRequest,
            Self::Unknown { kind, .. } => ControlKind::from_u8(*kind),
        }
    }

    /// Length of the payload once encoded, in bytes.
    #[must_use]
    pub fn payload_len(&self) -> usize {
        match self {
            Self::CrlPush(chunk) => chunk.encoded_len(),
            Self::CrlAck(ack) => ack.encoded_len(),
            Self::ExtendBridge(extend) => extend.encoded_len(),
            Self::CircuitReady(ready) => ready.encoded_len(),
            Self::CircuitFailed(failed) => failed.encoded_len(),
            Self::AddressAssign(assign) => assign.encoded_len(),
            Self::AddressRequest(_) => 0,
            Self::Unknown { payload, .. } => payload.len(),
        }
    }

    /// Length of the whole envelope once encoded, in bytes.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.payload_len())
    }

    /// Encodes the whole envelope into `out`, without allocating, and returns the number of
    /// bytes written.
    ///
    /// # Errors
    /// [`ControlError::TooLong`], [`ControlError::BufferTooSmall`], or an invariant error of the
    /// typed payload ([`CircuitFailed`] reason too long, invalid [`CrlChunk`]).
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, ControlError> {
        // Check the payload's own invariants before touching `out`.
        match self {
            Self::CrlPush(chunk) => chunk.validate()?,
            Self::CircuitFailed(failed) => check_reason_len(failed.reason.len())?,
            Self::AddressAssign(assign) => assign.validate()?,
            _ => {}
        }
        let payload_len = self.payload_len();
        let body = split_envelope(self.kind(), payload_len, out)?;
        match self {
            Self::CrlPush(chunk) => chunk.encode_into(body)?,
            Self::CrlAck(ack) => ack.encode_into(body)?,
            Self::ExtendBridge(extend) => extend.encode_into(body)?,
            Self::CircuitReady(_) => 0,
            Self::CircuitFailed(failed) => failed.encode_into(body)?,
            Self::AddressAssign(assign) => assign.encode_into(body)?,
            Self::AddressRequest(_) => 0,
            Self::Unknown { payload, .. } => {
                body.copy_from_slice(payload);
                payload.len()
            }
        };
        Ok(HEADER_LEN + payload_len)
    }

    /// Encodes the whole envelope into a new vector.
    ///
    /// # Errors
    /// As [`Self::encode_into`], except `BufferTooSmall`.
    pub fn encode(&self) -> Result<Vec<u8>, ControlError> {
        let payload_len = self.payload_len();
        checked_payload_len(payload_len)?;
        let mut out = vec![0; HEADER_LEN + payload_len];
        let written = self.encode_into(&mut out)?;
        out.truncate(written);
        Ok(out)
    }
}

impl<'a> From<CrlChunk<'a>> for ControlMessage<'a> {
    fn from(chunk: CrlChunk<'a>) -> Self {
        Self::CrlPush(chunk)
    }
}

impl From<CrlAck> for ControlMessage<'_> {
    fn from(ack: CrlAck) -> Self {
        Self::CrlAck(ack)
    }
}

impl From<ExtendBridge> for ControlMessage<'_> {
    fn from(extend: ExtendBridge) -> Self {
        Self::ExtendBridge(extend)
    }
}

impl From<CircuitReady> for ControlMessage<'_> {
    fn from(ready: CircuitReady) -> Self {
        Self::CircuitReady(ready)
    }
}

impl From<CircuitFailed> for ControlMessage<'_> {
    fn from(failed: CircuitFailed) -> Self {
        Self::CircuitFailed(failed)
    }
}

impl From<AddressRequest> for ControlMessage<'_> {
    fn from(request: AddressRequest) -> Self {
        Self::AddressRequest(request)
    }
}

impl From<AddressAssign> for ControlMessage<'_> {
    fn from(assign: AddressAssign) -> Self {
        Self::AddressAssign(assign)
    }
}

// ---------------------------------------------------------------------------------------------
// CRL chunking and reassembly
// ---------------------------------------------------------------------------------------------

/// Splits the DER bytes of CRL `crl_number` into encoded `CrlPush` envelopes of at most
/// `max_chunk` data bytes each (clamped to [`MAX_CRL_CHUNK_DATA_LEN`]), in order.
///
/// Each item is a whole envelope of at most `max_chunk + CRL_PUSH_OVERHEAD` bytes.
///
/// # Errors
/// [`ControlError::CrlEmpty`] if `der` is empty, [`ControlError::CrlTooLarge`] if it exceeds
/// [`MAX_CRL_LEN`], [`ControlError::ZeroChunkSize`] if `max_chunk` is zero.
pub fn chunk_crl(
    crl_number: u64,
    der: &[u8],
    max_chunk: usize,
) -> Result<impl Iterator<Item = Vec<u8>> + '_, ControlError> {
    if der.is_empty() {
        return Err(ControlError::CrlEmpty);
    }
    let too_large = ControlError::CrlTooLarge {
        total_len: der.len() as u64,
        max: MAX_CRL_LEN,
    };
    if der.len() > MAX_CRL_LEN {
        return Err(too_large);
    }
    let total_len = u32::try_from(der.len()).map_err(|_| too_large)?;
    if max_chunk == 0 {
        return Err(ControlError::ZeroChunkSize);
    }
    let max_chunk = max_chunk.min(MAX_CRL_CHUNK_DATA_LEN);
    let mut offset: u32 = 0;
    // Every chunk is valid by construction (checked above), so encoding cannot fail; should it
    // ever, the sequence stops early and the receiver never completes, rather than panicking.
    Ok(der.chunks(max_chunk).map_while(move |data| {
        let chunk = CrlChunk {
            crl_number,
            offset,
            total_len,
            data,
        };
        offset = offset.saturating_add(u32::try_from(data.len()).ok()?);
        ControlMessage::CrlPush(chunk).encode().ok()
    }))
}

/// Reassembly state of one CRL.
#[derive(Debug)]
struct Pending {
    crl_number: u64,
    total_len: u32,
    /// The CRL's bytes, `total_len` long.
    buf: Vec<u8>,
    /// One bit per byte of `buf`: received or not.
    have: Vec<u64>,
    /// Number of bytes received so far.
    received: usize,
}

impl Pending {
    fn new(crl_number: u64, total_len: u32) -> Option<Self> {
        let len = usize::try_from(total_len).ok()?;
        Some(Self {
            crl_number,
            total_len,
            buf: vec![0; len],
            have: vec![0; len.div_ceil(64)],
            received: 0,
        })
    }

    fn is_set(&self, index: usize) -> bool {
        self.have
            .get(index / 64)
            .is_some_and(|word| word & (1 << (index % 64)) != 0)
    }

    /// Whether `data` at `start` agrees with every byte already received there.
    fn agrees(&self, start: usize, data: &[u8]) -> bool {
        let Some(existing) = self.buf.get(start..start.saturating_add(data.len())) else {
            return false;
        };
        existing
            .iter()
            .zip(data)
            .enumerate()
            .all(|(i, (old, new))| old == new || !self.is_set(start + i))
    }

    /// Stores `data` at `start` (already checked to be in bounds and to agree).
    fn store(&mut self, start: usize, data: &[u8]) {
        let Some(dst) = self.buf.get_mut(start..start.saturating_add(data.len())) else {
            return;
        };
        dst.copy_from_slice(data);
        for index in start..start + data.len() {
            if let Some(word) = self.have.get_mut(index / 64) {
                let bit = 1 << (index % 64);
                if *word & bit == 0 {
                    *word |= bit;
                    self.received += 1;
                }
            }
        }
    }

    fn is_complete(&self) -> bool {
        self.received == self.buf.len()
    }
}

/// Puts a CRL pushed in [`CrlChunk`]s back together.
///
/// * Bounded: at most one CRL is assembled at a time, of at most [`MAX_CRL_LEN`] bytes; memory
///   use is `total_len * 9 / 8` bytes, allocated when the first chunk of a CRL arrives.
/// * One CRL number at a time: a chunk with a higher number than the one being assembled drops
///   it and starts the new one; chunks with a lower number, or with a number at or below the last
///   CRL completed, are ignored.
/// * Chunks may arrive in any order, be duplicated, and overlap; overlapping bytes must agree.
/// * A chunk whose total length differs from the one first announced for its CRL number, or
///   whose bytes contradict bytes already received, is rejected and leaves the state unchanged.
#[derive(Debug, Default)]
pub struct CrlAssembler {
    pending: Option<Pending>,
    last_completed: Option<u64>,
}

impl CrlAssembler {
    /// An assembler with nothing received.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of the last CRL completed, if any.
    #[must_use]
    pub const fn last_completed(&self) -> Option<u64> {
        self.last_completed
    }

    /// Number of the CRL being assembled, if any.
    #[must_use]
    pub fn in_progress(&self) -> Option<u64> {
        self.pending.as_ref().map(|pending| pending.crl_number)
    }

    /// Bytes received so far of the CRL being assembled, and its total length.
    #[must_use]
    pub fn progress(&self) -> Option<(usize, u32)> {
        self.pending
            .as_ref()
            .map(|pending| (pending.received, pending.total_len))
    }

    /// Adds one chunk; returns the whole CRL when this chunk completes it.
    ///
    /// # Errors
    /// Any error of [`CrlChunk::validate`], [`ControlError::ChunkTotalMismatch`] or
    /// [`ControlError::ChunkConflict`]. The assembler's state is unchanged on error.
    pub fn push(&mut self, chunk: &CrlChunk<'_>) -> Result<Option<Vec<u8>>, ControlError> {
        chunk.validate()?;
        if self
            .last_completed
            .is_some_and(|done| chunk.crl_number <= done)
        {
            return Ok(None);
        }
        let restart = match &self.pending {
            None => true,
            Some(pending) if chunk.crl_number < pending.crl_number => return Ok(None),
            Some(pending) if chunk.crl_number > pending.crl_number => true,
            Some(pending) if chunk.total_len != pending.total_len => {
                return Err(ControlError::ChunkTotalMismatch {
                    crl_number: chunk.crl_number,
                    announced: pending.total_len,
                    got: chunk.total_len,
                });
            }
            Some(_) => false,
        };
        let start = usize::try_from(chunk.offset).map_err(|_| ControlError::ChunkOutOfBounds {
            offset: chunk.offset,
            len: chunk.data.len(),
            total_len: chunk.total_len,
        })?;
        if restart {
            self.pending = Pending::new(chunk.crl_number, chunk.total_len);
        }
        let Some(pending) = self.pending.as_mut() else {
            return Ok(None);
        };
        if !pending.agrees(start, chunk.data) {
            return Err(ControlError::ChunkConflict {
                crl_number: chunk.crl_number,
                offset: chunk.offset,
            });
        }
        pending.store(start, chunk.data);
        if !pending.is_complete() {
            return Ok(None);
        }
        self.last_completed = Some(pending.crl_number);
        Ok(self.pending.take().map(|done| done.buf))
    }

    /// Decodes `envelope` as a `CrlPush` and adds it; see [`Self::push`].
    ///
    /// # Errors
    /// [`ControlError::WrongKind`] if the envelope is not a `CrlPush`,
    /// otherwise the errors of [`CrlChunk::decode`] and [`Self::push`].
    pub fn push_envelope(
        &mut self,
        envelope: &Envelope<'_>,
    ) -> Result<Option<Vec<u8>>, ControlError> {
        if envelope.kind != ControlKind::CrlPush {
            return Err(ControlError::WrongKind {
                expected: ControlKind::CrlPush,
                found: envelope.kind,
            });
        }
        self.push(&CrlChunk::decode(envelope.payload)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn env(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut packet = MAGIC.to_vec();
        packet.push(kind);
        packet.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
        packet.extend_from_slice(payload);
        packet
    }

    #[test]
    fn known_answer_crl_ack() {
        let packet = ControlMessage::from(CrlAck {
            crl_number: 0x0102_0304_0506_0708,
        })
        .encode()
        .unwrap();
        assert_eq!(
            packet,
            [
                0xAA, 0xAA, 0xC0, 0x01, 2, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8
            ]
        );
    }

    #[test]
    fn known_answer_extend_bridge() {
        let v4 = ExtendBridge {
            addr: "192.0.2.1:51820".parse().unwrap(),
        };
        assert_eq!(v4.to_vec(), [4, 192, 0, 2, 1, 0xCA, 0x6C]);
        let v6 = ExtendBridge {
            addr: "[2001:db8::1]:443".parse().unwrap(),
        };
        let mut expected = vec![6, 0x20, 0x01, 0x0d, 0xb8];
        expected.extend_from_slice(&[0; 11]);
        expected.extend_from_slice(&[1, 0x01, 0xBB]);
        assert_eq!(v6.to_vec(), expected);
        assert_eq!(ExtendBridge::decode(&expected).unwrap(), v6);
    }

    #[test]
    fn known_answer_crl_chunk_and_ready() {
        let chunk = CrlChunk {
            crl_number: 9,
            offset: 2,
            total_len: 5,
            data: b"abc",
        };
        let packet = ControlMessage::from(chunk).encode().unwrap();
        let mut expected = vec![0xAA, 0xAA, 0xC0, 0x01, 1, 0, 0, 0, 19];
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0, 0, 5]);
        expected.extend_from_slice(b"abc");
        assert_eq!(packet, expected);
        let ready = ControlMessage::from(CircuitReady).encode().unwrap();
        assert_eq!(ready, [0xAA, 0xAA, 0xC0, 0x01, 4, 0, 0, 0, 0]);
    }

    #[test]
    fn is_control_distinguishes_ip() {
        assert!(is_control(&MAGIC));
        assert!(!is_control(&[0x45, 0, 0, 20]));
        assert!(!is_control(&[0x60, 0, 0, 0]));
        assert!(!is_control(&MAGIC[..3]));
        assert!(!is_control(&[]));
    }

    #[test]
    fn decode_not_control() {
        assert_eq!(decode(&[]), Err(ControlError::NotControl));
        assert_eq!(decode(&[0xAA, 0xAA, 0xC0]), Err(ControlError::NotControl));
        assert_eq!(decode(&[0x45; 30]), Err(ControlError::NotControl));
    }

    #[test]
    fn decode_truncated_header_and_payload() {
        let packet = env(2, &[0; 8]);
        assert_eq!(
            decode(&packet[..6]),
            Err(ControlError::Truncated { needed: 9, have: 6 })
        );
        assert_eq!(
            decode(&packet[..12]),
            Err(ControlError::Truncated {
                needed: 17,
                have: 12
            })
        );
    }

    #[test]
    fn decode_trailing_bytes() {
        let mut packet = env(4, &[]);
        packet.push(0);
        assert_eq!(
            decode(&packet),
            Err(ControlError::TrailingBytes {
                declared: 0,
                actual: 1
            })
        );
    }

    #[test]
    fn decode_oversize_declared_len() {
        let mut packet = MAGIC.to_vec();
        packet.push(1);
        packet.extend_from_slice(&65_536u32.to_be_bytes());
        assert_eq!(
            decode(&packet),
            Err(ControlError::TooLong {
                len: 65_536,
                max: MAX_PAYLOAD_LEN
            })
        );
        let mut packet = MAGIC.to_vec();
        packet.push(1);
        packet.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode(&packet), Err(ControlError::TooLong { .. })));
    }

    #[test]
    fn encode_limits() {
        let max = vec![7; MAX_PAYLOAD_LEN];
        let packet = encode(ControlKind::Unknown(200), &max).unwrap();
        assert_eq!(packet.len(), MAX_ENVELOPE_LEN);
        assert_eq!(decode(&packet).unwrap().payload, &max[..]);
        let over = vec![7; MAX_PAYLOAD_LEN + 1];
        assert_eq!(
            encode(ControlKind::CrlPush, &over),
            Err(ControlError::TooLong {
                len: MAX_PAYLOAD_LEN + 1,
                max: MAX_PAYLOAD_LEN
            })
        );
        let mut small = [0u8; 10];
        assert_eq!(
            encode_into(ControlKind::CrlAck, &[0; 8], &mut small),
            Err(ControlError::BufferTooSmall {
                needed: 17,
                have: 10
            })
        );
        assert_eq!(
            encode_into(ControlKind::CircuitReady, &[], &mut small),
            Ok(HEADER_LEN)
        );
    }

    #[test]
    fn address_assign_round_trip_and_rejections() {
        let ok = AddressAssign {
            address: Ipv4Addr::new(10, 77, 0, 9),
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 77, 0, 1),
            mtu: 1380,
        };
        let packet = ControlMessage::from(ok).encode().unwrap();
        assert_eq!(packet.len(), HEADER_LEN + 11);
        assert_eq!(
            &packet[HEADER_LEN..],
            &[10, 77, 0, 9, 24, 10, 77, 0, 1, 0x05, 0x64]
        );
        assert_eq!(
            ControlMessage::decode(&packet).unwrap(),
            ControlMessage::AddressAssign(ok)
        );
        let bad = |f: fn(&mut AddressAssign)| {
            let mut a = ok;
            f(&mut a);
            let mut payload = [0u8; 11];
            payload[..4].copy_from_slice(&a.address.octets());
            payload[4] = a.prefix_len;
            payload[5..9].copy_from_slice(&a.gateway.octets());
            payload[9..].copy_from_slice(&a.mtu.to_be_bytes());
            assert!(matches!(
                AddressAssign::decode(&payload),
                Err(ControlError::BadAssignment(_))
            ));
            assert!(ControlMessage::from(a).encode().is_err());
        };
        bad(|a| a.prefix_len = 0);
        bad(|a| a.prefix_len = 31);
        bad(|a| a.prefix_len = 200);
        bad(|a| a.mtu = 575);
        bad(|a| a.gateway = Ipv4Addr::new(10, 78, 0, 1));
        bad(|a| a.address = a.gateway);
        bad(|a| a.address = Ipv4Addr::new(10, 77, 0, 0));
        bad(|a| a.address = Ipv4Addr::new(10, 77, 0, 255));
        assert!(matches!(
            AddressAssign::decode(&[0; 10]),
            Err(ControlError::PayloadLength { .. })
        ));
        let request = ControlMessage::from(AddressRequest).encode().unwrap();
        assert_eq!(request, [0xAA, 0xAA, 0xC0, 0x01, 7, 0, 0, 0, 0]);
        assert_eq!(
            ControlMessage::decode(&request).unwrap(),
            ControlMessage::AddressRequest(AddressRequest)
        );
        assert!(matches!(
            ControlMessage::decode(&[0xAA, 0xAA, 0xC0, 0x01, 7, 0, 0, 0, 1, 0]),
            Err(ControlError::PayloadLength { .. })
        ));
    }

    #[test]
    fn kind_normalisation() {
        for byte in 0..=u8::MAX {
            let kind = ControlKind::from_u8(byte);
            assert_eq!(kind.to_u8(), byte);
            assert_eq!(kind.is_known(), (1..=7).contains(&byte));
            if (1..=7).contains(&byte) {
                assert_ne!(kind, ControlKind::Unknown(byte));
            }
        }
        assert!(ControlKind::Unknown(3).is_known());
        let payload = [0u8; 8];
        let message = ControlMessage::parse(Envelope {
            kind: ControlKind::Unknown(2),
            payload: &payload,
        })
        .unwrap();
        assert_eq!(message, ControlMessage::CrlAck(CrlAck { crl_number: 0 }));
        let packet = env(0, b"xy");
        let unknown = ControlMessage::decode(&packet).unwrap();
        assert_eq!(
            unknown,
            ControlMessage::Unknown {
                kind: 0,
                payload: b"xy"
            }
        );
    }

    #[test]
    fn extend_bridge_rejections() {
        assert_eq!(
            ExtendBridge::decode(&[]),
            Err(ControlError::PayloadTruncated {
                kind: ControlKind::ExtendBridge,
                needed: 1,
                have: 0
            })
        );
        assert_eq!(
            ExtendBridge::decode(&[5, 1, 2, 3, 4, 0, 1]),
            Err(ControlError::UnknownAddressFamily(5))
        );
        assert_eq!(
            ExtendBridge::decode(&[4, 1, 2, 3, 4, 0]),
            Err(ControlError::PayloadLength {
                kind: ControlKind::ExtendBridge,
                expected: 7,
                actual: 6
            })
        );
        assert_eq!(
            ExtendBridge::decode(&[4, 1, 2, 3, 4, 0, 1, 9]),
            Err(ControlError::PayloadLength {
                kind: ControlKind::ExtendBridge,
                expected: 7,
                actual: 8
            })
        );
        assert_eq!(
            ExtendBridge::decode(&[6, 1, 2, 3, 4, 0, 1]),
            Err(ControlError::PayloadLength {
                kind: ControlKind::ExtendBridge,
                expected: 19,
                actual: 7
            })
        );
        let mut buf = [0u8; 6];
        let v4 = ExtendBridge {
            addr: "10.0.0.1:1".parse().unwrap(),
        };
        assert!(matches!(
            v4.encode_into(&mut buf),
            Err(ControlError::BufferTooSmall { needed: 7, have: 6 })
        ));
    }

    #[test]
    fn extend_bridge_drops_v6_scope() {
        let addr: SocketAddr = "[fe80::1%7]:9".parse().unwrap();
        let decoded = ExtendBridge::decode(&ExtendBridge { addr }.to_vec()).unwrap();
        assert_eq!(decoded.addr.ip(), addr.ip());
        assert_eq!(decoded.addr.port(), 9);
    }

    #[test]
    fn circuit_failed_rejections() {
        assert_eq!(
            CircuitFailed::decode(b"no route").unwrap().reason,
            "no route"
        );
        assert!(matches!(
            CircuitFailed::decode(&[0x66, 0xFF, 0x66]),
            Err(ControlError::InvalidUtf8(_))
        ));
        let long = vec![b'a'; MAX_REASON_LEN + 1];
        assert_eq!(
            CircuitFailed::decode(&long),
            Err(ControlError::ReasonTooLong {
                len: MAX_REASON_LEN + 1,
                max: MAX_REASON_LEN
            })
        );
        assert!(CircuitFailed::decode(&long[..MAX_REASON_LEN]).is_ok());
        assert!(CircuitFailed::new("x".repeat(MAX_REASON_LEN + 1)).is_err());
        let too_long = CircuitFailed {
            reason: "y".repeat(MAX_REASON_LEN + 1),
        };
        assert!(matches!(
            ControlMessage::from(too_long).encode(),
            Err(ControlError::ReasonTooLong { .. })
        ));
        // 'é' is two bytes: cutting must land on a character boundary.
        let accents = "é".repeat(MAX_REASON_LEN);
        let cut = CircuitFailed::truncating(&accents);
        assert_eq!(cut.reason.len(), MAX_REASON_LEN);
        let odd = format!("a{accents}");
        assert_eq!(
            CircuitFailed::truncating(&odd).reason.len(),
            MAX_REASON_LEN - 1
        );
    }

    #[test]
    fn circuit_ready_and_ack_rejections() {
        assert_eq!(CircuitReady::decode(&[]), Ok(CircuitReady));
        assert_eq!(
            CircuitReady::decode(&[0]),
            Err(ControlError::PayloadLength {
                kind: ControlKind::CircuitReady,
                expected: 0,
                actual: 1
            })
        );
        assert_eq!(
            CrlAck::decode(&[0; 7]),
            Err(ControlError::PayloadLength {
                kind: ControlKind::CrlAck,
                expected: 8,
                actual: 7
            })
        );
        assert!(CrlAck::decode(&[0; 9]).is_err());
        assert_eq!(
            CrlAck::decode(&42u64.to_be_bytes()),
            Ok(CrlAck { crl_number: 42 })
        );
    }

    fn chunk_payload(number: u64, offset: u32, total: u32, data: &[u8]) -> Vec<u8> {
        let mut payload = number.to_be_bytes().to_vec();
        payload.extend_from_slice(&offset.to_be_bytes());
        payload.extend_from_slice(&total.to_be_bytes());
        payload.extend_from_slice(data);
        payload
    }

    #[test]
    fn crl_chunk_rejections() {
        assert_eq!(
            CrlChunk::decode(&[0; 15]),
            Err(ControlError::PayloadTruncated {
                kind: ControlKind::CrlPush,
                needed: 16,
                have: 15
            })
        );
        assert_eq!(
            CrlChunk::decode(&chunk_payload(1, 0, 0, b"")),
            Err(ControlError::CrlEmpty)
        );
        let too_big = u32::try_from(MAX_CRL_LEN + 1).unwrap();
        assert_eq!(
            CrlChunk::decode(&chunk_payload(1, 0, too_big, b"a")),
            Err(ControlError::CrlTooLarge {
                total_len: u64::from(too_big),
                max: MAX_CRL_LEN
            })
        );
        assert_eq!(
            CrlChunk::decode(&chunk_payload(1, 3, 5, b"abc")),
            Err(ControlError::ChunkOutOfBounds {
                offset: 3,
                len: 3,
                total_len: 5
            })
        );
        assert!(CrlChunk::decode(&chunk_payload(1, u32::MAX, 5, b"a")).is_err());
        let ok = chunk_payload(1, 2, 5, b"abc");
        assert_eq!(CrlChunk::decode(&ok).unwrap().to_vec().unwrap(), ok);
        let max_total = u32::try_from(MAX_CRL_LEN).unwrap();
        assert!(CrlChunk::decode(&chunk_payload(1, max_total - 1, max_total, b"a")).is_ok());
        let huge = vec![0; MAX_CRL_CHUNK_DATA_LEN + 1];
        let chunk = CrlChunk {
            crl_number: 1,
            offset: 0,
            total_len: max_total,
            data: &huge,
        };
        assert!(matches!(chunk.to_vec(), Err(ControlError::TooLong { .. })));
    }

    #[test]
    fn chunk_and_reassemble() {
        let der: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let packets: Vec<Vec<u8>> = chunk_crl(3, &der, 100).unwrap().collect();
        assert_eq!(packets.len(), 10);
        assert!(packets.iter().all(|p| p.len() <= 100 + CRL_PUSH_OVERHEAD));
        let mut asm = CrlAssembler::new();
        let mut done = None;
        for packet in packets.iter().rev() {
            assert!(done.is_none());
            done = asm.push_envelope(&decode(packet).unwrap()).unwrap();
        }
        assert_eq!(done.as_deref(), Some(&der[..]));
        assert_eq!(asm.last_completed(), Some(3));
        assert_eq!(asm.in_progress(), None);
        // Replays of the completed CRL are ignored.
        assert_eq!(asm.push_envelope(&decode(&packets[0]).unwrap()), Ok(None));
        assert_eq!(asm.in_progress(), None);
    }

    #[test]
    fn chunk_crl_rejections() {
        assert!(matches!(chunk_crl(1, &[], 10), Err(ControlError::CrlEmpty)));
        assert!(matches!(
            chunk_crl(1, &[1], 0),
            Err(ControlError::ZeroChunkSize)
        ));
        let big = vec![0; MAX_CRL_LEN + 1];
        assert!(matches!(
            chunk_crl(1, &big, 10),
            Err(ControlError::CrlTooLarge { .. })
        ));
        // A huge chunk size is clamped to what fits one envelope.
        let der = vec![1; MAX_CRL_CHUNK_DATA_LEN + 1];
        let packets: Vec<_> = chunk_crl(1, &der, usize::MAX).unwrap().collect();
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[0].len(), MAX_ENVELOPE_LEN);
    }

    #[test]
    fn assembler_restart_ignore_and_conflicts() {
        let mut asm = CrlAssembler::new();
        let c = |n, offset, total, data| CrlChunk {
            crl_number: n,
            offset,
            total_len: total,
            data,
        };
        assert_eq!(asm.push(&c(5, 0, 4, b"ab")), Ok(None));
        assert_eq!(asm.progress(), Some((2, 4)));
        // Lower number ignored.
        assert_eq!(asm.push(&c(4, 0, 2, b"zz")), Ok(None));
        assert_eq!(asm.in_progress(), Some(5));
        // Inconsistent total rejected, state kept.
        assert_eq!(
            asm.push(&c(5, 2, 6, b"cd")),
            Err(ControlError::ChunkTotalMismatch {
                crl_number: 5,
                announced: 4,
                got: 6
            })
        );
        // Contradicting overlap rejected, state kept.
        assert_eq!(
            asm.push(&c(5, 1, 4, b"Xc")),
            Err(ControlError::ChunkConflict {
                crl_number: 5,
                offset: 1
            })
        );
        assert_eq!(asm.progress(), Some((2, 4)));
        // Agreeing overlap accepted.
        assert_eq!(asm.push(&c(5, 1, 4, b"bc")), Ok(None));
        assert_eq!(asm.progress(), Some((3, 4)));
        // Invalid chunk rejected.
        assert_eq!(
            asm.push(&c(5, 3, 4, b"de")),
            Err(ControlError::ChunkOutOfBounds {
                offset: 3,
                len: 2,
                total_len: 4
            })
        );
        // Higher number restarts.
        assert_eq!(asm.push(&c(6, 0, 2, b"x")), Ok(None));
        assert_eq!(asm.in_progress(), Some(6));
        assert_eq!(asm.progress(), Some((1, 2)));
        assert_eq!(asm.push(&c(6, 1, 2, b"y")), Ok(Some(b"xy".to_vec())));
        // Old numbers, including the completed one, are ignored afterwards.
        assert_eq!(asm.push(&c(6, 0, 1, b"q")), Ok(None));
        assert_eq!(asm.push(&c(5, 3, 4, b"d")), Ok(None));
        assert_eq!(asm.in_progress(), None);
        assert_eq!(asm.push(&c(7, 0, 1, b"q")), Ok(Some(b"q".to_vec())));
        let ack = env(2, &[0; 8]);
        let not_push = decode(&ack).unwrap();
        assert!(matches!(
            asm.push_envelope(&not_push),
            Err(ControlError::WrongKind { .. })
        ));
    }
}
