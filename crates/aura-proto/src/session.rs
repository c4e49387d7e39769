//! The data channel of one session: counters, replay window, sealing and opening in
//! place (docs/PROTOCOL.md §8).

use std::ops::Range;
use std::time::Instant;

use aura_crypto::aead::{TAG_LEN, nonce_for};

use crate::error::{DropReason, ProtoError};
use crate::keys::SessionKeys;
use crate::replay::{REJECT_AFTER_MESSAGES, ReplayWindow};
use crate::wire::{DATA_HEADER_LEN, DataHeader, VERSION_2};

/// Bytes a data packet adds around its payload: header in front, tag behind.
pub const DATA_OVERHEAD: usize = DATA_HEADER_LEN + TAG_LEN;

/// Headroom a caller leaves in front of a payload for [`Endpoint::seal`](crate::Endpoint::seal).
pub const SEAL_HEADROOM: usize = DATA_HEADER_LEN;

/// One set of data-channel keys with its counters.
#[derive(Debug)]
pub(crate) struct Session {
    pub local_index: u32,
    pub remote_index: u32,
    keys: SessionKeys,
    send_counter: u64,
    /// Packets opened so far.
    received: u64,
    replay: ReplayWindow,
    pub created: Instant,
    /// Whether a packet has been received under these keys (the peer has them).
    pub confirmed: bool,
}

impl Session {
    pub(crate) fn new(
        local_index: u32,
        remote_index: u32,
        keys: SessionKeys,
        now: Instant,
    ) -> Self {
        Self {
            local_index,
            remote_index,
            keys,
            send_counter: 0,
            received: 0,
            replay: ReplayWindow::new(),
            created: now,
            confirmed: false,
        }
    }

    /// Packets sealed so far.
    pub(crate) fn sent_packets(&self) -> u64 {
        self.send_counter
    }

    /// Packets opened so far.
    pub(crate) fn received_packets(&self) -> u64 {
        self.received
    }

    /// The suite of this session.
    pub(crate) fn suite(&self) -> aura_crypto::aead::Suite {
        self.keys.suite
    }

    /// The session version negotiated in the handshake.
    pub(crate) fn version(&self) -> u8 {
        self.keys.version
    }

    /// Whether both sides may send [`crate::wire::PacketType::DataOffload`] (version 2 on).
    pub(crate) fn offload(&self) -> bool {
        self.keys.version >= VERSION_2
    }

    /// Seals `buf[DATA_HEADER_LEN..DATA_HEADER_LEN + payload_len]` in place, writing the
    /// header in front and the tag behind; as type 7 when `offload` (the payload's TCP or
    /// UDP checksum is left to the receiver). Returns the datagram length.
    pub(crate) fn seal(
        &mut self,
        buf: &mut [u8],
        payload_len: usize,
        offload: bool,
    ) -> Result<usize, ProtoError> {
        if offload && !self.offload() {
            return Err(ProtoError::OffloadNotNegotiated);
        }
        let needed = DATA_OVERHEAD + payload_len;
        if buf.len() < needed {
            return Err(ProtoError::BufferTooSmall {
                needed,
                have: buf.len(),
            });
        }
        if self.send_counter >= REJECT_AFTER_MESSAGES {
            return Err(ProtoError::NotEstablished);
        }
        let counter = self.send_counter;
        self.send_counter += 1;
        let mut header = [0u8; DATA_HEADER_LEN];
        DataHeader {
            receiver: self.remote_index,
            counter,
            offload,
        }
        .write(&mut header);
        let (head, body) = buf.split_at_mut(DATA_HEADER_LEN);
        head.copy_from_slice(&header);
        if !self.keys.suite.encrypts_data() {
            // Bound to the outer session, which encrypts it: header and payload as they are.
            return Ok(DATA_HEADER_LEN + payload_len);
        }
        let n = self.keys.send.key.seal_in_place(
            &nonce_for(&self.keys.send.iv, counter),
            &header,
            &mut body[..payload_len + TAG_LEN],
            payload_len,
        )?;
        Ok(DATA_HEADER_LEN + n)
    }

    /// Opens a data datagram in place; returns the payload's range within `buf`.
    pub(crate) fn open(
        &mut self,
        header: DataHeader,
        buf: &mut [u8],
    ) -> Result<Range<usize>, DropReason> {
        if header.offload && !self.offload() {
            return Err(DropReason::OffloadNotNegotiated);
        }
        if !self.replay.check(header.counter) {
            return Err(DropReason::Replay);
        }
        let mut aad = [0u8; DATA_HEADER_LEN];
        aad.copy_from_slice(buf.get(..DATA_HEADER_LEN).ok_or(DropReason::Decrypt)?);
        let body = buf.get_mut(DATA_HEADER_LEN..).ok_or(DropReason::Decrypt)?;
        let n = if self.keys.suite.encrypts_data() {
            self.keys
                .recv
                .key
                .open_in_place(&nonce_for(&self.keys.recv.iv, header.counter), &aad, body)
                .map_err(|_| DropReason::Decrypt)?
                .len()
        } else {
            // Bound to the outer session, which authenticated it.
            body.len()
        };
        if !self.replay.update(header.counter) {
            return Err(DropReason::Replay);
        }
        self.confirmed = true;
        self.received += 1;
        Ok(DATA_HEADER_LEN..DATA_HEADER_LEN + n)
    }
}
