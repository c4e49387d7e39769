//! The CRL family: a server pushes its certificate revocation list in chunks
//! ([`CrlChunk`], made by [`chunk_crl`]), the client puts them back together
//! ([`CrlAssembler`]) and acknowledges the whole CRL ([`CrlAck`]).
//!
//! | kind | payload |
//! |---|---|
//! | 1 `CrlPush` | `u64_be crl_number ‖ u32_be offset ‖ u32_be total_len ‖ data` |
//! | 2 `CrlAck` | `u64_be crl_number` (exactly 8 bytes) |
//!
//! Reassembly is bounded (one CRL of at most [`MAX_CRL_LEN`] bytes at a time) and
//! rejects, without changing its state, any chunk that contradicts what it holds.

use super::envelope::{
    ControlError, ControlKind, Envelope, HEADER_LEN, MAX_PAYLOAD_LEN, checked_payload_len,
    payload_buf, split_envelope,
};

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

/// Payload length of a [`CrlAck`], in bytes.
const CRL_ACK_LEN: usize = 8;

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

    /// Encodes the whole `CrlPush` envelope into a new vector: the same bytes as
    /// `ControlMessage::CrlPush(chunk).encode()`.
    fn encode_envelope(&self) -> Result<Vec<u8>, ControlError> {
        let payload_len = self.encoded_len();
        checked_payload_len(payload_len)?;
        self.validate()?;
        let mut out = vec![0; HEADER_LEN + payload_len];
        let body = split_envelope(Self::KIND, payload_len, &mut out)?;
        self.encode_into(body)?;
        Ok(out)
    }
}

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
        chunk.encode_envelope().ok()
    }))
}

/// Reassembly state of one CRL.
#[derive(Debug)]
struct PartialCrl {
    crl_number: u64,
    total_len: u32,
    /// The CRL's bytes, `total_len` long.
    buf: Vec<u8>,
    /// One bit per byte of `buf`: received or not.
    have: Vec<u64>,
    /// Number of bytes received so far.
    received: usize,
}

impl PartialCrl {
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
    partial: Option<PartialCrl>,
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
        self.partial.as_ref().map(|partial| partial.crl_number)
    }

    /// Bytes received so far of the CRL being assembled, and its total length.
    #[must_use]
    pub fn progress(&self) -> Option<(usize, u32)> {
        self.partial
            .as_ref()
            .map(|partial| (partial.received, partial.total_len))
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
        let restart = match &self.partial {
            None => true,
            Some(partial) if chunk.crl_number < partial.crl_number => return Ok(None),
            Some(partial) if chunk.crl_number > partial.crl_number => true,
            Some(partial) if chunk.total_len != partial.total_len => {
                return Err(ControlError::ChunkTotalMismatch {
                    crl_number: chunk.crl_number,
                    announced: partial.total_len,
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
            self.partial = PartialCrl::new(chunk.crl_number, chunk.total_len);
        }
        let Some(partial) = self.partial.as_mut() else {
            return Ok(None);
        };
        if !partial.agrees(start, chunk.data) {
            return Err(ControlError::ChunkConflict {
                crl_number: chunk.crl_number,
                offset: chunk.offset,
            });
        }
        partial.store(start, chunk.data);
        if !partial.is_complete() {
            return Ok(None);
        }
        self.last_completed = Some(partial.crl_number);
        Ok(self.partial.take().map(|done| done.buf))
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
