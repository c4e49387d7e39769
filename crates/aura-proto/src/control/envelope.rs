//! The control envelope itself: the header that tells a control packet from an IP packet,
//! the kind byte, the length check, and the one error type of every control codec.
//!
//! ```text
//!  0               4      5                  9
//!  +---------------+------+------------------+------------------+
//!  | MAGIC (4)     | kind | payload len (4)  | payload (len)    |
//!  | AA AA C0 01   | u8   | u32 big-endian   |                  |
//!  +---------------+------+------------------+------------------+
//! ```
//!
//! Guarantees: [`decode`] never panics and never reads past its input, accepts a packet
//! only when the declared length matches the bytes that follow exactly, and is canonical
//! (re-encoding gives back the same bytes); [`encode_into`] writes into the caller's
//! buffer without allocating. The typed payloads live in the sibling files and build on
//! the helpers here.

/// The four bytes every control envelope starts with.
pub const MAGIC: [u8; 4] = [0xAA, 0xAA, 0xC0, 0x01];

/// Length of the envelope header in bytes: magic (4) + kind (1) + payload length (4).
pub const HEADER_LEN: usize = 9;

/// Largest payload, in bytes, that an envelope may declare or carry.
pub const MAX_PAYLOAD_LEN: usize = 65_535;

/// Largest whole envelope (header + payload), in bytes.
pub const MAX_ENVELOPE_LEN: usize = HEADER_LEN + MAX_PAYLOAD_LEN;

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
    /// An [`ExtendBridge`](super::ExtendBridge) address family other than 4 or 6.
    #[error("unknown address family {0} in ExtendBridge")]
    UnknownAddressFamily(u8),
    /// An [`ExtendBridge`](super::ExtendBridge) carrier byte other than 1 (QUIC) or 2 (TLS)
    /// (UDP is the form without the byte).
    #[error("unknown carrier {0} in ExtendBridge")]
    UnknownVia(u8),
    /// An [`AddressAssign`](super::AddressAssign) whose prefix length is over 32 or whose address or gateway is
    /// unusable in that network (network or broadcast address, or outside it), or an
    /// [`AddressAssign6`](super::AddressAssign6) whose prefix length is not 64 to 126 or whose
    /// address or gateway is unusable (outside the prefix, equal, the all-zero subnet-router
    /// anycast address, unspecified, loopback, multicast, link-local or IPv4-mapped).
    #[error("unusable tunnel address assignment: {0}")]
    BadAssignment(&'static str),
    /// A [`DnsAssign`](super::DnsAssign) with more than
    /// [`DnsAssign::MAX_SERVERS`](super::DnsAssign::MAX_SERVERS) resolvers, an address family
    /// other than 4 or 6, a resolver listed twice, or an address no resolver can have
    /// (unspecified, loopback, multicast, the IPv4 broadcast address, IPv4-mapped IPv6).
    #[error("unusable DNS resolver list: {0}")]
    BadDns(&'static str),
    /// A [`Padding`](super::Padding) with a non-zero byte, or a
    /// [`CoverRequest`](super::CoverRequest) or [`CoverGrant`](super::CoverGrant) with an
    /// unknown profile or a budget out of range.
    #[error("unusable cover message: {0}")]
    BadCover(&'static str),
    /// A [`CircuitFailed`](super::CircuitFailed) reason longer than [`MAX_REASON_LEN`](super::MAX_REASON_LEN).
    #[error("circuit failure reason of {len} bytes exceeds the maximum of {max}")]
    ReasonTooLong {
        /// Reason length in bytes.
        len: usize,
        /// The maximum, [`MAX_REASON_LEN`](super::MAX_REASON_LEN).
        max: usize,
    },
    /// A [`CircuitFailed`](super::CircuitFailed) reason that is not UTF-8.
    #[error("circuit failure reason is not valid UTF-8")]
    InvalidUtf8(#[source] std::str::Utf8Error),
    /// A [`CrlChunk`](super::CrlChunk) announcing a CRL of zero bytes.
    #[error("CRL chunk announces an empty CRL")]
    CrlEmpty,
    /// A [`CrlChunk`](super::CrlChunk) announcing, or a sender offering, a CRL larger than [`MAX_CRL_LEN`](super::MAX_CRL_LEN).
    #[error("CRL of {total_len} bytes exceeds the maximum of {max}")]
    CrlTooLarge {
        /// Announced CRL length in bytes.
        total_len: u64,
        /// The maximum, [`MAX_CRL_LEN`](super::MAX_CRL_LEN).
        max: usize,
    },
    /// A [`CrlChunk`](super::CrlChunk) whose data runs past the announced CRL length.
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
    /// [`chunk_crl`](super::chunk_crl) was asked for chunks of zero bytes.
    #[error("CRL chunk size must be at least one byte")]
    ZeroChunkSize,
}

/// The kind byte of a control envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlKind {
    /// 1: a chunk of a certificate revocation list pushed by the server ([`CrlChunk`](super::CrlChunk)).
    CrlPush,
    /// 2: acknowledges a complete CRL ([`CrlAck`](super::CrlAck)).
    CrlAck,
    /// 3: asks a bridge to extend the circuit to another node ([`ExtendBridge`](super::ExtendBridge)).
    ExtendBridge,
    /// 4: the circuit is established ([`CircuitReady`](super::CircuitReady)).
    CircuitReady,
    /// 5: the circuit could not be established ([`CircuitFailed`](super::CircuitFailed)).
    CircuitFailed,
    /// 6: the server tells the client its tunnel address ([`AddressAssign`](super::AddressAssign)).
    AddressAssign,
    /// 7: the client asks for its tunnel address ([`AddressRequest`](super::AddressRequest)).
    AddressRequest,
    /// 8: the server tells the client which DNS resolvers to use while the tunnel is up
    /// ([`DnsAssign`](super::DnsAssign)).
    DnsAssign,
    /// 9: the server tells the client its IPv6 tunnel address, when its pool is dual-stack
    /// ([`AddressAssign6`](super::AddressAssign6)).
    AddressAssign6,
    /// 10: padding, dropped on receipt ([`Padding`](super::Padding)).
    Padding,
    /// 11: the client asks for cover traffic ([`CoverRequest`](super::CoverRequest)).
    CoverRequest,
    /// 12: the server grants or refuses it ([`CoverGrant`](super::CoverGrant)).
    CoverGrant,
    /// Any other kind byte (never 1 to 12: [`ControlKind::from_u8`] normalises those).
    Unknown(u8),
}

impl ControlKind {
    /// Maps a kind byte to its kind; bytes other than 1 to 12 give [`ControlKind::Unknown`].
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
            8 => Self::DnsAssign,
            9 => Self::AddressAssign6,
            10 => Self::Padding,
            11 => Self::CoverRequest,
            12 => Self::CoverGrant,
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
            Self::DnsAssign => 8,
            Self::AddressAssign6 => 9,
            Self::Padding => 10,
            Self::CoverRequest => 11,
            Self::CoverGrant => 12,
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
pub(super) fn checked_payload_len(len: usize) -> Result<u32, ControlError> {
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
pub(super) fn split_envelope(
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
pub(super) fn payload_buf(out: &mut [u8], len: usize) -> Result<&mut [u8], ControlError> {
    let have = out.len();
    out.get_mut(..len)
        .ok_or(ControlError::BufferTooSmall { needed: len, have })
}

/// Checks that the payload of an envelope of `kind` that carries nothing is empty.
pub(super) fn expect_empty(kind: ControlKind, payload: &[u8]) -> Result<(), ControlError> {
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
