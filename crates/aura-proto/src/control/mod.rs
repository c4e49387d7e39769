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
//! | 3 `ExtendBridge` | [`ExtendBridge`] | `family (4 or 6) ‖ address (4 or 16) ‖ u16_be port [‖ via]` |
//! | 4 `CircuitReady` | [`CircuitReady`] | empty |
//! | 5 `CircuitFailed` | [`CircuitFailed`] | UTF-8 reason, at most [`MAX_REASON_LEN`] bytes |
//! | 6 `AddressAssign` | [`AddressAssign`] | `address (4) ‖ prefix_len u8 ‖ gateway (4) ‖ u16_be mtu` (exactly 11 bytes) |
//! | 7 `AddressRequest` | [`AddressRequest`] | empty |
//! | 8 `DnsAssign` | [`DnsAssign`] | `count u8 ‖ count × (family u8 (4 or 6) ‖ address (4 or 16))`, count ≤ [`DnsAssign::MAX_SERVERS`] |
//! | 9 `AddressAssign6` | [`AddressAssign6`] | `address (16) ‖ prefix_len u8 ‖ gateway (16)` (exactly 33 bytes) |
//! | 10 `Padding` | [`Padding`] | zero bytes, any number up to [`MAX_PAYLOAD_LEN`] (dropped on receipt) |
//! | 11 `CoverRequest` | [`CoverRequest`] | `profile u8 (1–3) ‖ u16_be budget` (per mille, 1–1000) |
//! | 12 `CoverGrant` | [`CoverGrant`] | `profile u8 (0 refused, 1–3) ‖ u16_be budget` (0 with a refusal) |
//!
//! Any other kind byte decodes as [`ControlKind::Unknown`], so a receiver can skip messages
//! introduced by newer peers.
//!
//! The server sends [`AddressAssign6`] only when its pool is dual-stack, right before each
//! [`AddressAssign`] (on the wire: [`DnsAssign`], [`AddressAssign6`], [`AddressAssign`]),
//! after the handshake and in answer to every [`AddressRequest`]; the tunnel MTU is the one
//! in the [`AddressAssign`]. A client that gets no [`AddressAssign6`] has no IPv6 in the
//! tunnel and must keep IPv6 from leaking (it routes IPv6 into the TUN and drops it). Older
//! peers skip kind 9 as unknown.
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
//!
//! # Layout
//!
//! One file per message family, over one file for the envelope:
//!
//! ```text
//! mod.rs ──► address.rs, circuit.rs, crl.rs, dns.rs ──► envelope.rs
//! mod.rs ──► envelope.rs
//! ```
//!
//! `envelope.rs` holds the header codec, [`ControlKind`] and [`ControlError`]; each family
//! file holds its payload types; this file ties them together in [`ControlMessage`].

mod address;
mod circuit;
mod cover;
mod crl;
mod dns;
mod envelope;

pub use self::address::{AddressAssign, AddressAssign6, AddressRequest};
pub use self::circuit::{CircuitFailed, CircuitReady, ExtendBridge, MAX_REASON_LEN, Via};
pub use self::cover::{CoverGrant, CoverProfile, CoverRequest, MAX_COVER_BUDGET, Padding};
pub use self::crl::{
    CRL_CHUNK_HEADER_LEN, CRL_PUSH_OVERHEAD, CrlAck, CrlAssembler, CrlChunk,
    MAX_CRL_CHUNK_DATA_LEN, MAX_CRL_LEN, chunk_crl,
};
pub use self::dns::DnsAssign;
pub use self::envelope::{
    ControlError, ControlKind, Envelope, HEADER_LEN, MAGIC, MAX_ENVELOPE_LEN, MAX_PAYLOAD_LEN,
    decode, encode, encode_into, is_control,
};

use self::circuit::check_reason_len;
use self::envelope::{checked_payload_len, split_envelope};

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
    /// The DNS resolvers the client should use.
    DnsAssign(DnsAssign),
    /// The client's IPv6 tunnel address.
    AddressAssign6(AddressAssign6),
    /// Padding, dropped on receipt.
    Padding(Padding),
    /// The client asks for cover traffic.
    CoverRequest(CoverRequest),
    /// The server grants or refuses cover traffic.
    CoverGrant(CoverGrant),
    /// A kind this version does not know; the payload is passed through untouched.
    Unknown {
        /// The kind byte (never 1 to 12).
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
            ControlKind::DnsAssign => Self::DnsAssign(DnsAssign::decode(payload)?),
            ControlKind::AddressAssign6 => Self::AddressAssign6(AddressAssign6::decode(payload)?),
            ControlKind::Padding => Self::Padding(Padding::decode(payload)?),
            ControlKind::CoverRequest => Self::CoverRequest(CoverRequest::decode(payload)?),
            ControlKind::CoverGrant => Self::CoverGrant(CoverGrant::decode(payload)?),
            ControlKind::Unknown(byte) => match ControlKind::from_u8(byte) {
                // A hand-built `Unknown(1..=12)`: treat it as the kind it names.
                known @ (ControlKind::CrlPush
                | ControlKind::CrlAck
                | ControlKind::ExtendBridge
                | ControlKind::CircuitReady
                | ControlKind::CircuitFailed
                | ControlKind::AddressAssign
                | ControlKind::AddressRequest
                | ControlKind::DnsAssign
                | ControlKind::AddressAssign6
                | ControlKind::Padding
                | ControlKind::CoverRequest
                | ControlKind::CoverGrant) => {
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
            Self::DnsAssign(_) => ControlKind::DnsAssign,
            Self::AddressAssign6(_) => ControlKind::AddressAssign6,
            Self::Padding(_) => ControlKind::Padding,
            Self::CoverRequest(_) => ControlKind::CoverRequest,
            Self::CoverGrant(_) => ControlKind::CoverGrant,
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
            Self::DnsAssign(dns) => dns.encoded_len(),
            Self::AddressAssign6(assign) => assign.encoded_len(),
            Self::Padding(p) => p.encoded_len(),
            Self::CoverRequest(r) => r.encoded_len(),
            Self::CoverGrant(g) => g.encoded_len(),
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
    /// typed payload ([`CircuitFailed`] reason too long, invalid [`CrlChunk`], [`AddressAssign`],
    /// [`DnsAssign`] or [`AddressAssign6`]).
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, ControlError> {
        // Check the payload's own invariants before touching `out`.
        match self {
            Self::CrlPush(chunk) => chunk.validate()?,
            Self::CircuitFailed(failed) => check_reason_len(failed.reason.len())?,
            Self::AddressAssign(assign) => assign.validate()?,
            Self::DnsAssign(dns) => dns.validate()?,
            Self::AddressAssign6(assign) => assign.validate()?,
            Self::Padding(p) => p.validate()?,
            Self::CoverRequest(r) => r.validate()?,
            Self::CoverGrant(g) => g.validate()?,
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
            Self::DnsAssign(dns) => dns.encode_into(body)?,
            Self::AddressAssign6(assign) => assign.encode_into(body)?,
            Self::Padding(p) => p.encode_into(body)?,
            Self::CoverRequest(r) => r.encode_into(body)?,
            Self::CoverGrant(g) => g.encode_into(body)?,
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

impl From<Padding> for ControlMessage<'_> {
    fn from(p: Padding) -> Self {
        Self::Padding(p)
    }
}

impl From<CoverRequest> for ControlMessage<'_> {
    fn from(r: CoverRequest) -> Self {
        Self::CoverRequest(r)
    }
}

impl From<CoverGrant> for ControlMessage<'_> {
    fn from(g: CoverGrant) -> Self {
        Self::CoverGrant(g)
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

impl From<DnsAssign> for ControlMessage<'_> {
    fn from(dns: DnsAssign) -> Self {
        Self::DnsAssign(dns)
    }
}

impl From<AddressAssign6> for ControlMessage<'_> {
    fn from(assign: AddressAssign6) -> Self {
        Self::AddressAssign6(assign)
    }
}
