//! One connection to one peer: its key phases, its counters, and when its timers fall due.
//!
//! A connection holds up to three sessions (docs/PROTOCOL.md §9):
//! - `current`: seals every outgoing packet and opens incoming ones;
//! - `next` (client): the keys of a rekey whose Finish the server has not yet confirmed;
//!   the first packet that opens under them promotes them to `current`;
//! - `previous`: the keys `current` replaced, still opening packets in flight until their
//!   grace period ends.
//!
//! Every method is a pure step on the connection's own state: the endpoint keeps the index
//! table and the event queue, and applies what a step returns (an index to retire, a
//! promotion to announce).

use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use aura_crypto::aead::Suite;
use aura_pki::VerifiedPeer;
use rand_core::RngCore;

use super::client::{ClientHandshake, TimerStep};
use super::config::Timers;
use crate::error::{DropReason, ProtoError};
use crate::handshake::InitiatorDone;
use crate::session::Session;
use crate::wire::DataHeader;

/// Names a connection of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionHandle(pub u64);

/// Counters of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Payload bytes sealed.
    pub bytes_sent: u64,
    /// Payload bytes opened.
    pub bytes_received: u64,
    /// Packets sealed (keepalives included).
    pub packets_sent: u64,
    /// Packets opened (keepalives included).
    pub packets_received: u64,
    /// Completed handshakes.
    pub handshakes: u64,
}

/// Public information about a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The peer's address.
    pub remote: SocketAddr,
    /// The verified peer, once the first handshake completed.
    pub peer: Option<VerifiedPeer>,
    /// Negotiated suite of the current session.
    pub suite: Option<Suite>,
    /// Session version of the current session (docs/PROTOCOL.md §6); 2 and later carry
    /// checksum offload (type 7).
    pub version: Option<u8>,
    pub stats: ConnectionStats,
    /// When the current session's handshake completed.
    pub session_started: Option<Instant>,
    /// When the last authenticated packet arrived.
    pub last_received: Instant,
}

/// What [`Connection::seal`] did.
#[derive(Debug)]
pub(super) struct Sealed {
    /// Where the datagram goes.
    pub remote: SocketAddr,
    /// The datagram's length in the caller's buffer.
    pub len: usize,
    /// The client sealed enough packets under these keys to start a rekey.
    pub rekey: bool,
}

/// What [`Connection::open`] found.
#[derive(Debug)]
pub(super) struct Opened {
    /// Where the payload lies in the caller's buffer.
    pub payload: Range<usize>,
    /// It opened under `next`: the server has the rekey's keys, so promote them.
    pub from_next: bool,
    /// It confirmed the connection's first handshake.
    pub confirmed_first: bool,
    /// It came from an address other than the connection's, which is now the new one.
    pub moved: bool,
    /// Client: the current keys have opened `rekey_after_packets` packets: rekey now.
    pub rekey: bool,
}

/// What [`Connection::complete_client`] did.
#[derive(Debug)]
pub(super) struct ClientDone {
    /// The first handshake completed with this server, under this suite.
    pub connected: Option<(VerifiedPeer, Suite)>,
    /// A rekey's `next` session was replaced; forget its index.
    pub retired: Option<u32>,
}

/// What [`Connection::handshake_timer`] did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum HandshakeTimer {
    Idle,
    /// Send the handshake's datagrams again.
    Retransmit,
    /// The handshake timed out and is gone. `retired` names a local index to forget;
    /// `failed` when it was the first handshake, which ends the connection.
    Abandoned {
        retired: Option<u32>,
        failed: bool,
    },
}

/// One connection's state; see the module documentation.
#[derive(Debug)]
pub(super) struct Connection {
    pub remote: SocketAddr,
    /// Client side: the name the server's certificate must carry. `None` on the server,
    /// which is also how a connection knows it is the server's.
    pub server_name: Option<String>,
    /// The peer as verified; on the server, what a new CRL is checked against
    /// ([`aura_pki::Verifier::recheck`]).
    pub peer: Option<VerifiedPeer>,
    pub current: Option<Session>,
    /// The session `current` replaced, and when it stops opening packets. This and the
    /// next two are boxed: they are empty most of a connection's life, and an idle
    /// server connection should hold only what it uses.
    pub previous: Option<Box<(Session, Instant)>>,
    pub next: Option<Box<Session>>,
    /// Client side: the handshake in progress, first or rekey.
    pub handshake: Option<Box<ClientHandshake>>,
    pub last_sent: Instant,
    pub last_recv: Instant,
    pub stats: ConnectionStats,
    /// Server: the client made a session with another worker of this server; this
    /// connection closes at this instant unless a handshake completes here first.
    pub superseded_until: Option<Instant>,
}

impl Connection {
    /// A client connection to `remote`, before its first handshake.
    pub fn client(remote: SocketAddr, server_name: &str, now: Instant) -> Self {
        Self {
            remote,
            server_name: Some(server_name.to_owned()),
            peer: None,
            current: None,
            previous: None,
            next: None,
            handshake: None,
            last_sent: now,
            last_recv: now,
            stats: ConnectionStats::default(),
            superseded_until: None,
        }
    }

    /// A server connection whose first handshake just completed with `session`.
    pub fn server(remote: SocketAddr, peer: VerifiedPeer, session: Session, now: Instant) -> Self {
        Self {
            remote,
            server_name: None,
            peer: Some(peer),
            current: Some(session),
            previous: None,
            next: None,
            handshake: None,
            last_sent: now,
            last_recv: now,
            stats: ConnectionStats {
                handshakes: 1,
                ..ConnectionStats::default()
            },
            superseded_until: None,
        }
    }

    /// Whether this is a client connection, the side that starts rekeys.
    fn is_client(&self) -> bool {
        self.server_name.is_some()
    }

    /// Opens a data packet from `remote` in place with the key phase its receiver index
    /// names, counts it, and applies what it proves: the server has the keys of a
    /// handshake waiting for confirmation, and `remote` is where the peer now is.
    pub fn open(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        header: DataHeader,
        buf: &mut [u8],
        timers: &Timers,
    ) -> Result<Opened, DropReason> {
        let reject_after = timers.reject_after_time;
        let mut from_next = false;
        let payload = if self
            .current
            .as_ref()
            .is_some_and(|s| s.local_index == header.receiver)
        {
            let s = self.current.as_mut().ok_or(DropReason::UnknownIndex)?;
            if now.saturating_duration_since(s.created) >= reject_after {
                return Err(DropReason::Expired);
            }
            s.open(header, buf)?
        } else if self
            .next
            .as_ref()
            .is_some_and(|s| s.local_index == header.receiver)
        {
            let s = self.next.as_mut().ok_or(DropReason::UnknownIndex)?;
            let r = s.open(header, buf)?;
            from_next = true;
            r
        } else if let Some((s, until)) = self
            .previous
            .as_deref_mut()
            .filter(|(s, _)| s.local_index == header.receiver)
        {
            if now >= *until {
                return Err(DropReason::Expired);
            }
            s.open(header, buf)?
        } else {
            return Err(DropReason::UnknownIndex);
        };
        self.last_recv = now;
        self.stats.packets_received += 1;
        self.stats.bytes_received += payload.len() as u64;
        let confirmed = self
            .handshake
            .as_deref()
            .and_then(ClientHandshake::awaiting_confirm)
            .is_some_and(|index| index == header.receiver || from_next);
        let mut confirmed_first = false;
        if confirmed {
            self.handshake = None;
            confirmed_first = self.stats.handshakes == 1 && !from_next;
        }
        let moved = remote != self.remote;
        self.remote = remote;
        // The key's limit counts both directions: a download seals under the server's
        // keys, so the client also rekeys after as many packets received.
        let rekey = self.is_client()
            && self.handshake.is_none()
            && self
                .current
                .as_ref()
                .is_some_and(|s| s.received_packets() >= timers.rekey_after_packets);
        Ok(Opened {
            payload,
            from_next,
            confirmed_first,
            moved,
            rekey,
        })
    }

    /// Whether the current session carries checksum offload (type 7).
    pub fn offload(&self) -> bool {
        self.current.as_ref().is_some_and(Session::offload)
    }

    /// Seals a payload in place under `current` and counts it; `offload` as
    /// [`Session::seal`].
    pub fn seal(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        payload_len: usize,
        offload: bool,
        timers: &Timers,
    ) -> Result<Sealed, ProtoError> {
        let is_client = self.is_client();
        let session = self.current.as_mut().ok_or(ProtoError::NotEstablished)?;
        if now.saturating_duration_since(session.created) >= timers.reject_after_time {
            return Err(ProtoError::NotEstablished);
        }
        let len = session.seal(buf, payload_len, offload)?;
        let rekey = is_client
            && self.handshake.is_none()
            && session.sent_packets() >= timers.rekey_after_packets;
        self.last_sent = now;
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += payload_len as u64;
        Ok(Sealed {
            remote: self.remote,
            len,
            rekey,
        })
    }

    /// Client: the handshake whose index is `index`, if it is in progress.
    pub fn handshake_for(&mut self, index: u32) -> Option<&mut ClientHandshake> {
        self.handshake
            .as_deref_mut()
            .filter(|h| h.local_index == index)
    }

    /// Client: the Resp verified as `done` and the Finish goes out as `finish` (MACs
    /// stamped): the handshake now waits for confirmation. A first handshake's keys
    /// become `current` at once; a rekey's wait in `next` for the server's first packet
    /// under them.
    pub fn complete_client(
        &mut self,
        server_index: u32,
        done: InitiatorDone,
        finish: Vec<Vec<u8>>,
        now: Instant,
        timers: &Timers,
    ) -> ClientDone {
        let mut out = ClientDone {
            connected: None,
            retired: None,
        };
        let Some(hs) = self.handshake.as_mut() else {
            return out;
        };
        let local_index = hs.local_index;
        hs.sent_finish(
            finish,
            done.server_hs,
            done.th4,
            now,
            timers.handshake_retransmit,
        );
        let suite = done.keys.suite;
        let session = Session::new(local_index, server_index, done.keys, now);
        self.stats.handshakes += 1;
        if self.current.is_none() {
            self.current = Some(session);
            self.peer = Some(done.peer.clone());
            out.connected = Some((done.peer, suite));
        } else {
            out.retired = self
                .next
                .replace(Box::new(session))
                .map(|old| old.local_index);
        }
        self.last_sent = now;
        out
    }

    /// Server: the same client completed another handshake (a rekey, or a reconnect from
    /// `remote`): `session` becomes current and the client as verified now is kept for
    /// re-checks. Returns the local index of the `previous` session it retired, if any,
    /// and whether the client's address changed.
    pub fn server_rekey(
        &mut self,
        session: Session,
        remote: SocketAddr,
        peer: VerifiedPeer,
        now: Instant,
        timers: &Timers,
    ) -> (Option<u32>, bool) {
        let retired = self.install(session, now, timers.previous_session_grace);
        self.stats.handshakes += 1;
        // The client is back here: whatever another worker made is the stale one now.
        self.superseded_until = None;
        let moved = self.remote != remote;
        self.remote = remote;
        self.peer = Some(peer);
        self.last_recv = now;
        (retired, moved)
    }

    /// Runs the client handshake's timers, if a handshake is in progress. A handshake
    /// that timed out is abandoned: a rekey's unconfirmed `next` session goes with it.
    pub fn handshake_timer<R: RngCore>(
        &mut self,
        now: Instant,
        timers: &Timers,
        rng: &mut R,
    ) -> HandshakeTimer {
        let Some(hs) = self.handshake.as_mut() else {
            return HandshakeTimer::Idle;
        };
        match hs.on_timer(now, timers, rng) {
            TimerStep::Idle => HandshakeTimer::Idle,
            TimerStep::Retransmit => HandshakeTimer::Retransmit,
            TimerStep::TimedOut { awaiting_resp } => {
                let index = hs.local_index;
                self.handshake = None;
                let retired = if awaiting_resp {
                    Some(index)
                } else {
                    // An unconfirmed rekey: keep using the current keys.
                    self.next.take().map(|next| next.local_index)
                };
                HandshakeTimer::Abandoned {
                    retired,
                    failed: self.current.is_none(),
                }
            }
        }
    }

    /// Makes `session` current, keeping the replaced one as `previous` until `now +
    /// grace`. Returns the local index of the `previous` it displaced, if any.
    pub fn install(&mut self, session: Session, now: Instant, grace: Duration) -> Option<u32> {
        let retired = self.previous.take().map(|old| old.0.local_index);
        if let Some(cur) = self.current.replace(session) {
            self.previous = Some(Box::new((cur, now + grace)));
        }
        retired
    }

    /// Forgets `previous` once its grace period is over; returns its local index.
    pub fn expire_previous(&mut self, now: Instant) -> Option<u32> {
        if let Some((_, until)) = self.previous.as_deref()
            && now >= *until
            && let Some(old) = self.previous.take()
        {
            return Some(old.0.local_index);
        }
        None
    }

    /// Every local index that names this connection.
    pub fn local_indices(&self) -> impl Iterator<Item = u32> + '_ {
        [
            self.current.as_ref(),
            self.next.as_deref(),
            self.previous.as_deref().map(|(s, _)| s),
        ]
        .into_iter()
        .flatten()
        .map(|s| s.local_index)
        .chain(self.handshake.as_ref().map(|hs| hs.local_index))
    }

    /// Whether a client connection's current session is old enough to rekey.
    pub fn rekey_due(&self, now: Instant, timers: &Timers) -> bool {
        self.is_client()
            && self.handshake.is_none()
            && self.current.as_ref().is_some_and(|s| {
                now.saturating_duration_since(s.created) >= timers.rekey_after_time
            })
    }

    /// The earliest instant at which one of the connection's timers may fire. No
    /// allocation: this runs for every packet.
    pub fn next_deadline(&self, t: &Timers) -> Option<Instant> {
        let hs = self.handshake.as_ref();
        let s = self.current.as_ref();
        let rekey = s.filter(|_| self.is_client() && hs.is_none());
        [
            hs.map(|h| h.retransmit_at),
            hs.map(|h| h.started + t.handshake_timeout),
            s.map(|_| self.last_sent + t.keepalive),
            s.map(|_| self.last_recv + t.dead_peer),
            s.map(|s| s.created + t.reject_after_time),
            rekey.map(|s| s.created + t.rekey_after_time),
            self.previous.as_deref().map(|(_, until)| *until),
            self.superseded_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Public information about the connection.
    pub fn info(&self) -> ConnectionInfo {
        ConnectionInfo {
            remote: self.remote,
            peer: self.peer.clone(),
            suite: self.current.as_ref().map(Session::suite),
            version: self.current.as_ref().map(Session::version),
            stats: self.stats,
            session_started: self.current.as_ref().map(|s| s.created),
            last_received: self.last_recv,
        }
    }
}
