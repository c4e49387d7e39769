//! The client's side of one handshake, first or rekey, as pure steps (docs/PROTOCOL.md
//! §7, §9): start and send the Init, collect the Resp, answer with the Finish, wait for
//! the server to confirm the new keys, retransmit with backoff and jitter, give up.
//!
//! A [`ClientHandshake`] belongs to its connection. It never sends or schedules anything
//! itself: each step returns what happened, and the endpoint queues the datagrams, moves
//! the index table and emits the events.

use std::time::{Duration, Instant};

use aura_crypto::aead::Suite;
use rand_core::{CryptoRng, RngCore};

use super::config::Timers;
use crate::error::{DropReason, HandshakeError, ProtoError};
use crate::handshake::{Ctx, Initiator, InitiatorDone, open_alert};
use crate::keys::DirectionKeys;
use crate::wire::{Fragment, PacketType, Reassembly, fragment};

#[derive(Debug)]
pub(super) enum ClientPhase {
    /// Init sent; waiting for Resp.
    AwaitResp {
        initiator: Initiator,
        reassembly: Option<Reassembly>,
    },
    /// Finish sent; waiting for any packet under the new keys.
    AwaitConfirm {
        server_hs: DirectionKeys,
        th4: [u8; 32],
        local_index: u32,
    },
}

#[derive(Debug)]
pub(super) struct ClientHandshake {
    /// The index the server sends to during this handshake, and the new session's.
    pub local_index: u32,
    pub phase: ClientPhase,
    /// The last message sent (Init or Finish), as datagrams to retransmit.
    pub datagrams: Vec<Vec<u8>>,
    pub started: Instant,
    pub retransmit_at: Instant,
    pub backoff: Duration,
    /// A cookie reply was taken since the datagrams were last sent by the timer: one
    /// cookie per sending, so a replayed cookie reply makes the client send nothing.
    pub cookie_taken: bool,
    /// A Resp refused the server (its certificate or version); final for a first
    /// handshake unless a genuine Resp completes it before the next retransmission.
    pub refused: Option<HandshakeError>,
}

/// What a Resp fragment did.
#[derive(Debug)]
pub(super) enum RespStep {
    /// The Resp is not complete yet.
    Incomplete,
    /// The Finish was already sent and the server repeats its Resp: our Finish was lost,
    /// send it again.
    ResendFinish,
    /// The whole Resp arrived and was processed. On error the Resp's fragments are
    /// forgotten, so a genuine Resp can still complete the handshake.
    Complete(Result<Box<InitiatorDone>, HandshakeError>),
}

/// What a timer did to the handshake.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TimerStep {
    /// Nothing due.
    Idle,
    /// The retransmission time came: send [`ClientHandshake::datagrams`] again.
    Retransmit,
    /// The handshake timed out; `awaiting_resp` tells whether it got as far as the
    /// Finish (and so left a `next` session behind).
    TimedOut { awaiting_resp: bool },
}

impl ClientHandshake {
    /// Builds the Init for `local_index`. Randomness: the Init's, from `rng`.
    pub fn start<R: RngCore + CryptoRng>(
        rng: &mut R,
        suites: &[Suite],
        versions: &[u8],
        local_index: u32,
        max_datagram: usize,
        now: Instant,
        retransmit: Duration,
    ) -> Result<Self, ProtoError> {
        let (initiator, msg) = Initiator::start(rng, suites, versions, local_index)?;
        let datagrams = fragment(PacketType::Init, local_index, 0, &msg, max_datagram);
        Ok(Self {
            local_index,
            phase: ClientPhase::AwaitResp {
                initiator,
                reassembly: None,
            },
            datagrams,
            started: now,
            retransmit_at: now + retransmit,
            backoff: retransmit,
            cookie_taken: false,
            refused: None,
        })
    }

    /// Adds a fragment of the server's Resp; when it completes the Resp, processes it.
    ///
    /// # Errors
    /// [`DropReason::Malformed`] for a fragment that does not fit the Resp being
    /// reassembled (the reassembly starts over).
    pub fn on_resp_fragment(
        &mut self,
        frag: &Fragment<'_>,
        server_name: &str,
        ctx: &Ctx<'_>,
    ) -> Result<RespStep, DropReason> {
        let ClientPhase::AwaitResp {
            initiator,
            reassembly,
        } = &mut self.phase
        else {
            return Ok(RespStep::ResendFinish);
        };
        let r = reassembly.get_or_insert_with(|| Reassembly::new(frag.msg_len));
        let msg = match r.add(frag) {
            Ok(Some(msg)) => msg.to_vec(),
            Ok(None) => return Ok(RespStep::Incomplete),
            Err(e) => {
                *reassembly = None;
                return Err(DropReason::Malformed(e));
            }
        };
        let done = initiator.on_resp(frag.sender, &msg, server_name, ctx);
        if done.is_err() {
            *reassembly = None;
        }
        Ok(RespStep::Complete(done.map(Box::new)))
    }

    /// The Finish went out as `datagrams`: wait for the server to confirm, retransmitting
    /// the Finish from `now`.
    pub fn sent_finish(
        &mut self,
        datagrams: Vec<Vec<u8>>,
        server_hs: DirectionKeys,
        th4: [u8; 32],
        now: Instant,
        retransmit: Duration,
    ) {
        self.phase = ClientPhase::AwaitConfirm {
            server_hs,
            th4,
            local_index: self.local_index,
        };
        self.datagrams = datagrams;
        self.backoff = retransmit;
        self.retransmit_at = now + retransmit;
    }

    /// The Finish's fragments for `finish_msg`, MAC fields zero.
    pub fn finish_datagrams(
        &self,
        server_index: u32,
        finish_msg: &[u8],
        max_datagram: usize,
    ) -> Vec<Vec<u8>> {
        fragment(
            PacketType::Finish,
            self.local_index,
            server_index,
            finish_msg,
            max_datagram,
        )
    }

    /// The new session's local index while the Finish waits for confirmation.
    pub fn awaiting_confirm(&self) -> Option<u32> {
        match self.phase {
            ClientPhase::AwaitConfirm { local_index, .. } => Some(local_index),
            ClientPhase::AwaitResp { .. } => None,
        }
    }

    /// Opens the sealed code of an alert the server sent after our Finish.
    ///
    /// # Errors
    /// [`DropReason::Unexpected`] before the Finish was sent, [`DropReason::Decrypt`] for
    /// an alert not sealed under this handshake's keys.
    pub fn open_alert(&self, sealed: &[u8]) -> Result<u8, DropReason> {
        let ClientPhase::AwaitConfirm { server_hs, th4, .. } = &self.phase else {
            return Err(DropReason::Unexpected);
        };
        open_alert(server_hs, th4, sealed).ok_or(DropReason::Decrypt)
    }

    /// Runs the handshake's timers at `now`. A retransmission doubles the backoff (up to
    /// the maximum) and adds up to a quarter of jitter drawn from `rng`.
    pub fn on_timer<R: RngCore>(&mut self, now: Instant, t: &Timers, rng: &mut R) -> TimerStep {
        if now.saturating_duration_since(self.started) >= t.handshake_timeout {
            return TimerStep::TimedOut {
                awaiting_resp: matches!(self.phase, ClientPhase::AwaitResp { .. }),
            };
        }
        if now < self.retransmit_at {
            return TimerStep::Idle;
        }
        self.backoff = (self.backoff * 2).min(t.handshake_retransmit_max);
        // Up to a quarter of jitter so clients that failed together spread out.
        let jitter_ms = u64::try_from(self.backoff.as_millis() / 4)
            .unwrap_or(0)
            .max(1);
        let jitter = Duration::from_millis(rng.next_u64() % jitter_ms);
        self.retransmit_at = now + self.backoff + jitter;
        TimerStep::Retransmit
    }
}
