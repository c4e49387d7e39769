//! Datagram and handshake-message codecs (docs/PROTOCOL.md §5).
//!
//! Every datagram starts with a one-byte type. Handshake messages can exceed one datagram
//! (a hybrid public key alone is 1216 bytes), so they travel as fragments that carry the
//! message length and the fragment's offset; [`Reassembly`] puts them back together with
//! bounded memory.
//!
//! Decoders never panic and reject truncated, oversize and trailing input with a typed
//! [`WireError`].

use aura_crypto::kem::{HYBRID_CT_LEN, HYBRID_PK_LEN};

/// Protocol version 1: the handshake framing's version, carried in every handshake
/// datagram, and the first session version negotiated in Init and Resp.
pub const VERSION_1: u8 = 1;
/// Session version 2: version 1 plus [`PacketType::DataOffload`] (docs/PROTOCOL.md §5.3).
/// Negotiated in Init and Resp only; handshake datagrams still carry [`VERSION_1`].
pub const VERSION_2: u8 = 2;
/// Session versions this implementation speaks, most preferred first.
pub const SUPPORTED_VERSIONS: &[u8] = &[VERSION_2, VERSION_1];

/// Datagram types (first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketType {
    /// Client hello fragment.
    Init = 1,
    /// Server hello fragment.
    Resp = 2,
    /// Client finish fragment.
    Finish = 3,
    /// Stateless cookie reply (server under load).
    CookieReply = 4,
    /// Data-channel packet.
    Data = 5,
    /// Encrypted handshake rejection (server to client).
    Alert = 6,
    /// Data-channel packet whose IP packet's TCP or UDP checksum is left to the receiver
    /// (session version 2 and later).
    DataOffload = 7,
}

impl PacketType {
    /// Parses the type byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Init,
            2 => Self::Resp,
            3 => Self::Finish,
            4 => Self::CookieReply,
            5 => Self::Data,
            6 => Self::Alert,
            7 => Self::DataOffload,
            _ => return None,
        })
    }

    /// Whether `b` is the type byte of a data-channel packet (either form).
    pub fn is_data(b: u8) -> bool {
        b == Self::Data as u8 || b == Self::DataOffload as u8
    }
}

/// Length of a MAC field (truncated HMAC-SHA256).
pub const MAC_LEN: usize = 16;
/// Handshake fragment header: type, version, sender index, receiver index, message
/// length, fragment offset.
pub const FRAG_HEADER_LEN: usize = 1 + 1 + 4 + 4 + 2 + 2;
/// Trailer of every handshake fragment: mac1 then mac2.
pub const FRAG_TRAILER_LEN: usize = 2 * MAC_LEN;

/// Fuzzing builds only (`cfg(fuzzing)`, which cargo-fuzz sets and nothing else does): a
/// mac1 that every check accepts, so a fuzz target reaches the fragment parser, the
/// handshake and the state machine behind mac1 without the deployment's key. No other
/// build has it.
#[cfg(fuzzing)]
pub const FUZZ_MAC1: [u8; MAC_LEN] = [0xA5; MAC_LEN];
/// Largest reassembled handshake message accepted.
pub const MAX_HANDSHAKE_MSG_LEN: usize = 8192;
/// Data packet header: type, receiver index, counter.
pub const DATA_HEADER_LEN: usize = 1 + 4 + 8;
/// Cookie reply: type, version, receiver index, nonce, sealed cookie, mac1.
pub const COOKIE_REPLY_LEN: usize = 1 + 1 + 4 + 12 + 16 + 16 + MAC_LEN;
/// Alert: type, version, sender index, receiver index, sealed code (1 + tag), mac1.
pub const ALERT_LEN: usize = 1 + 1 + 4 + 4 + 1 + 16 + MAC_LEN;
/// Smallest datagram size the handshake can work with.
pub const MIN_DATAGRAM_LEN: usize = 256;

/// What went wrong decoding bytes from the network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Input ended before the structure did.
    #[error("truncated {what}: need {needed} bytes, have {have}")]
    Truncated {
        /// The structure being decoded.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// Bytes left over after the structure.
    #[error("{0} trailing bytes after {1}")]
    TrailingBytes(usize, &'static str),
    /// A length field exceeds its limit.
    #[error("{what} too long: {len} > {max}")]
    TooLong {
        /// The field.
        what: &'static str,
        /// Its declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Unknown datagram type.
    #[error("unknown packet type {0:#04x}")]
    UnknownType(u8),
    /// Unsupported fragment-format version.
    #[error("unsupported version {0}")]
    BadVersion(u8),
    /// A fragment inconsistent with its message or with earlier fragments.
    #[error("inconsistent fragment: {0}")]
    BadFragment(&'static str),
    /// An empty version or suite list.
    #[error("empty {0} list")]
    Empty(&'static str),
}

/// A cursor over input bytes; every read is bounds-checked.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated {
                what: self.what,
                needed: n,
                have: self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.array::<2>()?;
        Ok(u16::from_be_bytes(b))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array::<4>()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array::<8>()?))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let s = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// A u8-length-prefixed list.
    pub(crate) fn list8(&mut self) -> Result<&'a [u8], WireError> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    /// A u16-length-prefixed blob of at most `max` bytes.
    pub(crate) fn blob16(&mut self, max: usize) -> Result<&'a [u8], WireError> {
        let n = usize::from(self.u16()?);
        if n > max {
            return Err(WireError::TooLong {
                what: self.what,
                len: n,
                max,
            });
        }
        self.take(n)
    }

    pub(crate) fn finish(self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes(self.buf.len(), self.what))
        }
    }
}

/// Appends a u16-length-prefixed blob. The caller guarantees `b.len() <= u16::MAX`.
fn put_blob16(out: &mut Vec<u8>, b: &[u8]) {
    let n = u16::try_from(b.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&b[..usize::from(n)]);
}

/// Appends a u8-length-prefixed list.
fn put_list8(out: &mut Vec<u8>, b: &[u8]) {
    let n = u8::try_from(b.len()).unwrap_or(u8::MAX);
    out.push(n);
    out.extend_from_slice(&b[..usize::from(n)]);
}

/// The client's first message (ClientHello).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitMsg {
    /// Offered versions, most preferred first.
    pub versions: Vec<u8>,
    /// Offered AEAD suite ids, most preferred first.
    pub suites: Vec<u8>,
    /// Fresh randomness.
    pub random: [u8; 32],
    /// Ephemeral hybrid public key.
    pub kem_pk: Vec<u8>,
}

impl InitMsg {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(4 + self.versions.len() + self.suites.len() + 32 + HYBRID_PK_LEN);
        put_list8(&mut out, &self.versions);
        put_list8(&mut out, &self.suites);
        out.extend_from_slice(&self.random);
        out.extend_from_slice(&self.kem_pk);
        out
    }

    /// Decodes a message.
    ///
    /// # Errors
    /// Truncated, trailing bytes, or empty lists.
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(b, "init");
        let versions = r.list8()?.to_vec();
        let suites = r.list8()?.to_vec();
        if versions.is_empty() {
            return Err(WireError::Empty("version"));
        }
        if suites.is_empty() {
            return Err(WireError::Empty("suite"));
        }
        let random = r.array::<32>()?;
        let kem_pk = r.take(HYBRID_PK_LEN)?.to_vec();
        r.finish()?;
        Ok(Self {
            versions,
            suites,
            random,
            kem_pk,
        })
    }
}

/// The cleartext part of the server's reply (ServerHello).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespMsg {
    /// Chosen version.
    pub version: u8,
    /// Chosen AEAD suite id.
    pub suite: u8,
    /// Fresh randomness.
    pub random: [u8; 32],
    /// Hybrid KEM ciphertext to the client's ephemeral key.
    pub kem_ct: Vec<u8>,
    /// The sealed [`AuthMsg`] of the server.
    pub sealed_auth: Vec<u8>,
}

/// Length of the cleartext prefix of a [`RespMsg`] that the transcript hashes before the
/// handshake keys exist (version, suite, random, KEM ciphertext).
pub const RESP_CLEAR_LEN: usize = 1 + 1 + 32 + HYBRID_CT_LEN;

impl RespMsg {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RESP_CLEAR_LEN + 2 + self.sealed_auth.len());
        out.push(self.version);
        out.push(self.suite);
        out.extend_from_slice(&self.random);
        out.extend_from_slice(&self.kem_ct);
        put_blob16(&mut out, &self.sealed_auth);
        out
    }

    /// Decodes a message.
    ///
    /// # Errors
    /// Truncated, oversize or trailing input.
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(b, "resp");
        let version = r.u8()?;
        let suite = r.u8()?;
        let random = r.array::<32>()?;
        let kem_ct = r.take(HYBRID_CT_LEN)?.to_vec();
        let sealed_auth = r.blob16(MAX_HANDSHAKE_MSG_LEN)?.to_vec();
        r.finish()?;
        Ok(Self {
            version,
            suite,
            random,
            kem_ct,
            sealed_auth,
        })
    }
}

/// Authentication block of either side, sent encrypted: certificate, signature over the
/// transcript, finished MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthMsg {
    /// DER certificate.
    pub cert: Vec<u8>,
    /// Signature over the transcript (ECDSA P-256 / SHA-256, ASN.1 DER).
    pub signature: Vec<u8>,
    /// HMAC over the transcript with the side's finished key.
    pub finished: [u8; 32],
}

/// Largest certificate accepted in a handshake.
pub const MAX_CERT_LEN: usize = 4096;
/// Largest signature accepted in a handshake.
pub const MAX_SIG_LEN: usize = 256;

impl AuthMsg {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.cert.len() + self.signature.len() + 32);
        put_blob16(&mut out, &self.cert);
        put_blob16(&mut out, &self.signature);
        out.extend_from_slice(&self.finished);
        out
    }

    /// Decodes a message.
    ///
    /// # Errors
    /// Truncated, oversize or trailing input.
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(b, "auth");
        let cert = r.blob16(MAX_CERT_LEN)?.to_vec();
        let signature = r.blob16(MAX_SIG_LEN)?.to_vec();
        let finished = r.array::<32>()?;
        r.finish()?;
        Ok(Self {
            cert,
            signature,
            finished,
        })
    }
}

/// A handshake fragment, borrowed from its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// Init, Resp or Finish.
    pub ty: PacketType,
    /// The sender's session index.
    pub sender: u32,
    /// The receiver's session index (0 in Init).
    pub receiver: u32,
    /// Length of the whole message.
    pub msg_len: u16,
    /// Offset of this fragment in the message.
    pub offset: u16,
    /// The fragment's bytes.
    pub data: &'a [u8],
    /// mac1 (deployment MAC).
    pub mac1: [u8; MAC_LEN],
    /// mac2 (cookie MAC, zero when absent).
    pub mac2: [u8; MAC_LEN],
}

impl<'a> Fragment<'a> {
    /// Decodes a fragment datagram (without checking its MACs).
    ///
    /// # Errors
    /// Truncated input, a wrong type or version, or a fragment outside its message.
    pub fn decode(b: &'a [u8]) -> Result<Self, WireError> {
        if b.len() < FRAG_HEADER_LEN + FRAG_TRAILER_LEN {
            return Err(WireError::Truncated {
                what: "fragment",
                needed: FRAG_HEADER_LEN + FRAG_TRAILER_LEN,
                have: b.len(),
            });
        }
        let (body, trailer) = b.split_at(b.len() - FRAG_TRAILER_LEN);
        let mut r = Reader::new(body, "fragment");
        let ty_byte = r.u8()?;
        let ty = match PacketType::from_u8(ty_byte) {
            Some(t @ (PacketType::Init | PacketType::Resp | PacketType::Finish)) => t,
            _ => return Err(WireError::UnknownType(ty_byte)),
        };
        let version = r.u8()?;
        if version != VERSION_1 {
            return Err(WireError::BadVersion(version));
        }
        let sender = r.u32()?;
        let receiver = r.u32()?;
        let msg_len = r.u16()?;
        let offset = r.u16()?;
        let data = r.take(body.len() - FRAG_HEADER_LEN)?;
        if usize::from(msg_len) > MAX_HANDSHAKE_MSG_LEN {
            return Err(WireError::TooLong {
                what: "handshake message",
                len: usize::from(msg_len),
                max: MAX_HANDSHAKE_MSG_LEN,
            });
        }
        if data.is_empty() || usize::from(offset) + data.len() > usize::from(msg_len) {
            return Err(WireError::BadFragment("fragment outside its message"));
        }
        let mut t = Reader::new(trailer, "fragment trailer");
        let mac1 = t.array::<MAC_LEN>()?;
        let mac2 = t.array::<MAC_LEN>()?;
        Ok(Self {
            ty,
            sender,
            receiver,
            msg_len,
            offset,
            data,
            mac1,
            mac2,
        })
    }
}

/// Splits `msg` into fragment datagrams of at most `max_datagram` bytes each, with zeroed
/// MAC fields for the caller to fill in. Returns an empty vector when the message is too
/// long or `max_datagram` too small to carry any byte.
pub fn fragment(
    ty: PacketType,
    sender: u32,
    receiver: u32,
    msg: &[u8],
    max_datagram: usize,
) -> Vec<Vec<u8>> {
    let Some(room) = max_datagram.checked_sub(FRAG_HEADER_LEN + FRAG_TRAILER_LEN) else {
        return Vec::new();
    };
    let Ok(msg_len) = u16::try_from(msg.len()) else {
        return Vec::new();
    };
    if room == 0 || msg.is_empty() || msg.len() > MAX_HANDSHAKE_MSG_LEN {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(msg.len().div_ceil(room));
    for (i, chunk) in msg.chunks(room).enumerate() {
        let offset = u16::try_from(i * room).unwrap_or(u16::MAX);
        let mut d = Vec::with_capacity(FRAG_HEADER_LEN + chunk.len() + FRAG_TRAILER_LEN);
        d.push(ty as u8);
        d.push(VERSION_1);
        d.extend_from_slice(&sender.to_be_bytes());
        d.extend_from_slice(&receiver.to_be_bytes());
        d.extend_from_slice(&msg_len.to_be_bytes());
        d.extend_from_slice(&offset.to_be_bytes());
        d.extend_from_slice(chunk);
        d.extend_from_slice(&[0u8; FRAG_TRAILER_LEN]);
        out.push(d);
    }
    out
}

/// The fewest message bytes a fragment other than a message's last may carry: what a
/// datagram of [`MIN_DATAGRAM_LEN`] holds, rounded down. So a message arrives in at most
/// 8192 / 200 + 1 = 41 pieces, and reassembly work per fragment is bounded by that,
/// never quadratic in the message's bytes.
pub const MIN_FRAGMENT_DATA: usize = 200;

/// Reassembles one handshake message from fragments arriving in any order, duplicated
/// or not. Memory is bounded by [`MAX_HANDSHAKE_MSG_LEN`]; work per fragment by the
/// number of pieces (non-final fragments carry at least [`MIN_FRAGMENT_DATA`] bytes).
#[derive(Debug, Clone)]
pub struct Reassembly {
    buf: Vec<u8>,
    /// One bit per byte would be exact but wasteful; fragments from a conforming sender
    /// never overlap partially, so ranges are tracked instead.
    have: Vec<(u16, u16)>,
    received: usize,
}

impl Reassembly {
    /// Starts reassembling a message of `msg_len` bytes.
    pub fn new(msg_len: u16) -> Self {
        Self {
            buf: vec![0u8; usize::from(msg_len)],
            have: Vec::new(),
            received: 0,
        }
    }

    /// The message length.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the message is empty (never, for a valid fragment).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Adds a fragment. Returns the whole message once every byte has arrived.
    ///
    /// # Errors
    /// A fragment of another length, or one overlapping an earlier fragment with other
    /// bytes or at another boundary.
    pub fn add(&mut self, f: &Fragment<'_>) -> Result<Option<&[u8]>, WireError> {
        if usize::from(f.msg_len) != self.buf.len() {
            return Err(WireError::BadFragment("message length changed"));
        }
        let start = f.offset;
        let end_usize = usize::from(start) + f.data.len();
        let end = u16::try_from(end_usize).map_err(|_| WireError::BadFragment("too long"))?;
        if end_usize != self.buf.len() && f.data.len() < MIN_FRAGMENT_DATA {
            return Err(WireError::BadFragment("fragment too short"));
        }
        let dst = self
            .buf
            .get_mut(usize::from(start)..end_usize)
            .ok_or(WireError::BadFragment("fragment outside its message"))?;
        if let Some(&(s, e)) = self.have.iter().find(|(s, e)| start < *e && *s < end) {
            if (s, e) == (start, end) && dst == f.data {
                return Ok(None); // an exact duplicate
            }
            return Err(WireError::BadFragment("overlapping fragment"));
        }
        dst.copy_from_slice(f.data);
        self.have.push((start, end));
        self.received += f.data.len();
        if self.received == self.buf.len() {
            Ok(Some(&self.buf))
        } else {
            Ok(None)
        }
    }
}

/// A decoded data-packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    /// The receiver's session index.
    pub receiver: u32,
    /// The packet counter (nonce).
    pub counter: u64,
    /// Type 7 ([`PacketType::DataOffload`]): the plaintext's TCP or UDP checksum is the
    /// receiver's to fill in.
    pub offload: bool,
}

impl DataHeader {
    /// Writes the header into `out[..DATA_HEADER_LEN]`.
    pub fn write(&self, out: &mut [u8; DATA_HEADER_LEN]) {
        out[0] = if self.offload {
            PacketType::DataOffload as u8
        } else {
            PacketType::Data as u8
        };
        out[1..5].copy_from_slice(&self.receiver.to_be_bytes());
        out[5..13].copy_from_slice(&self.counter.to_be_bytes());
    }

    /// Reads a header from the start of a datagram.
    ///
    /// # Errors
    /// Truncated input or another packet type.
    pub fn read(b: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(b, "data header");
        let ty = r.u8()?;
        if !PacketType::is_data(ty) {
            return Err(WireError::UnknownType(ty));
        }
        let receiver = r.u32()?;
        let counter = r.u64()?;
        Ok(Self {
            receiver,
            counter,
            offload: ty == PacketType::DataOffload as u8,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn fragments_reassemble_in_any_order_with_duplicates() {
        let msg: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let frags = fragment(PacketType::Init, 7, 0, &msg, 1232);
        assert_eq!(frags.len(), 3);
        assert!(frags.iter().all(|f| f.len() <= 1232));
        let mut r = Reassembly::new(3000);
        let order = [2usize, 0, 2, 0];
        for &i in &order {
            let f = Fragment::decode(&frags[i]).unwrap();
            assert!(r.add(&f).unwrap().is_none());
        }
        let f = Fragment::decode(&frags[1]).unwrap();
        assert_eq!(r.add(&f).unwrap().unwrap(), &msg[..]);
    }

    #[test]
    fn conflicting_fragments_are_rejected() {
        let msg = vec![1u8; 500];
        let frags = fragment(PacketType::Resp, 1, 2, &msg, 300);
        let mut r = Reassembly::new(500);
        r.add(&Fragment::decode(&frags[0]).unwrap()).unwrap();
        let mut evil = frags[0].clone();
        evil[FRAG_HEADER_LEN] ^= 1;
        assert!(r.add(&Fragment::decode(&evil).unwrap()).is_err());
        let mut other_len = Reassembly::new(499);
        assert!(
            other_len
                .add(&Fragment::decode(&frags[0]).unwrap())
                .is_err()
        );
    }

    #[test]
    fn tiny_fragments_and_too_many_are_refused() {
        let msg: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        let frag = |offset: usize, len: usize| Fragment {
            ty: PacketType::Init,
            sender: 1,
            receiver: 0,
            msg_len: 8192,
            offset: u16::try_from(offset).unwrap(),
            data: &msg[offset..offset + len],
            mac1: [0; MAC_LEN],
            mac2: [0; MAC_LEN],
        };
        // One-byte pieces (review M5: 8192 of them made reassembly quadratic).
        let mut r = Reassembly::new(8192);
        assert!(matches!(
            r.add(&frag(0, 1)),
            Err(WireError::BadFragment("fragment too short"))
        ));
        // The last piece of a message may be short.
        assert!(r.add(&frag(8192 - 5, 5)).unwrap().is_none());
        // The smallest datagram still carries a whole 8 KiB message, in at most 41 pieces.
        let frags = fragment(PacketType::Resp, 1, 2, &msg, MIN_DATAGRAM_LEN);
        assert!(frags.len() <= 41, "{}", frags.len());
        let mut r = Reassembly::new(8192);
        let mut done = None;
        for f in &frags {
            if let Some(m) = r.add(&Fragment::decode(f).unwrap()).unwrap() {
                done = Some(m.to_vec());
            }
        }
        assert_eq!(done.unwrap(), msg);
    }

    #[test]
    fn fragment_decode_rejects_garbage() {
        assert!(Fragment::decode(&[]).is_err());
        assert!(Fragment::decode(&[1u8; 40]).is_err());
        let mut f = fragment(PacketType::Init, 1, 0, &[9u8; 100], 1232).remove(0);
        f[1] = 2; // version
        assert_eq!(Fragment::decode(&f).unwrap_err(), WireError::BadVersion(2));
        let mut f = fragment(PacketType::Init, 1, 0, &[9u8; 100], 1232).remove(0);
        f[10..12].copy_from_slice(&50u16.to_be_bytes()); // msg_len < data
        assert!(Fragment::decode(&f).is_err());
        let mut f = fragment(PacketType::Init, 1, 0, &[9u8; 100], 1232).remove(0);
        f[0] = PacketType::Data as u8;
        assert!(Fragment::decode(&f).is_err());
    }

    #[test]
    fn messages_round_trip_and_reject_trailing_bytes() {
        let init = InitMsg {
            versions: vec![1],
            suites: vec![1, 2],
            random: [3; 32],
            kem_pk: vec![4; HYBRID_PK_LEN],
        };
        let e = init.encode();
        assert_eq!(InitMsg::decode(&e).unwrap(), init);
        let mut t = e.clone();
        t.push(0);
        assert!(matches!(
            InitMsg::decode(&t),
            Err(WireError::TrailingBytes(1, _))
        ));
        assert!(InitMsg::decode(&e[..e.len() - 1]).is_err());

        let auth = AuthMsg {
            cert: vec![5; 600],
            signature: vec![6; 71],
            finished: [7; 32],
        };
        assert_eq!(AuthMsg::decode(&auth.encode()).unwrap(), auth);
        let resp = RespMsg {
            version: 1,
            suite: 1,
            random: [8; 32],
            kem_ct: vec![9; HYBRID_CT_LEN],
            sealed_auth: auth.encode(),
        };
        assert_eq!(RespMsg::decode(&resp.encode()).unwrap(), resp);
    }

    #[test]
    fn data_header_round_trip() {
        for offload in [false, true] {
            let h = DataHeader {
                receiver: 0xdead_beef,
                counter: 0x0102_0304_0506_0708,
                offload,
            };
            let mut b = [0u8; DATA_HEADER_LEN];
            h.write(&mut b);
            assert_eq!(DataHeader::read(&b).unwrap(), h);
            assert!(DataHeader::read(&b[..12]).is_err());
        }
    }

    /// Frozen: both data types' headers, byte for byte (docs/PROTOCOL.md §5.3).
    #[test]
    fn data_headers_frozen() {
        let mut b = [0u8; DATA_HEADER_LEN];
        let h = |offload| DataHeader {
            receiver: 0x0a0b_0c0d,
            counter: 0x1122_3344_5566_7788,
            offload,
        };
        h(false).write(&mut b);
        assert_eq!(
            b,
            [
                5, 0x0a, 0x0b, 0x0c, 0x0d, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88
            ]
        );
        h(true).write(&mut b);
        assert_eq!(
            b,
            [
                7, 0x0a, 0x0b, 0x0c, 0x0d, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88
            ]
        );
        b[0] = 8;
        assert_eq!(DataHeader::read(&b), Err(WireError::UnknownType(8)));
    }
}
