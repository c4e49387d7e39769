//! The multi-peer endpoint: fragmentation, MACs, cookies, retransmission, timers,
//! sessions and rekeying around the pure handshake (docs/PROTOCOL.md §5–9).
//!
//! Bytes and `now` in, bytes, timers and events out:
//! - [`Endpoint::handle_datagram`] takes a datagram from the network (in place) and
//!   returns the decrypted payload's range when it was data;
//! - [`Endpoint::seal`] encrypts a payload for a connection in place;
//! - [`Endpoint::poll_transmit`] hands out handshake and keepalive datagrams to send;
//! - [`Endpoint::poll_event`] reports connections established, rekeyed, failed, closed;
//! - [`Endpoint::poll_timeout`] / [`Endpoint::handle_timeout`] drive the timers.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use aura_crypto::aead::{Suite, TAG_LEN};
use aura_crypto::kdf;
use aura_pki::{VerifiedPeer, Verifier};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rustls_pki_types::UnixTime;

use crate::error::{AlertCode, DropReason, HandshakeError, ProtoError};
use crate::handshake::{Ctx, Identity, Initiator, InitiatorDone, Responder, open_alert};
use crate::keys::{DeploymentKeys, DirectionKeys, mac16};
use crate::session::{DATA_OVERHEAD, Session};
use crate::wire::{
    ALERT_LEN, COOKIE_REPLY_LEN, DATA_HEADER_LEN, DataHeader, FRAG_TRAILER_LEN, Fragment, MAC_LEN,
    MIN_DATAGRAM_LEN, PacketType, Reassembly, VERSION_1, WireError, fragment,
};

/// Timer settings. Defaults follow WireGuard's where the roles match.
#[derive(Debug, Clone)]
pub struct Timers {
    /// First handshake retransmission; doubles up to [`Timers::handshake_retransmit_max`].
    pub handshake_retransmit: Duration,
    /// Longest gap between handshake retransmissions.
    pub handshake_retransmit_max: Duration,
    /// A handshake with no answer for this long fails with [`HandshakeError::Timeout`].
    pub handshake_timeout: Duration,
    /// Server: a half-open handshake is forgotten after this long.
    pub pending_timeout: Duration,
    /// Send an empty keepalive when nothing was sent for this long.
    pub keepalive: Duration,
    /// Close the connection when nothing was received for this long.
    pub dead_peer: Duration,
    /// The client starts a new handshake when the session is this old.
    pub rekey_after_time: Duration,
    /// Keys older than this are never used.
    pub reject_after_time: Duration,
    /// The client starts a new handshake after sealing this many packets.
    pub rekey_after_packets: u64,
    /// How long the previous session still decrypts after a rekey.
    pub previous_session_grace: Duration,
    /// Cookie secrets rotate this often; a cookie is accepted for two periods.
    pub cookie_rotation: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            handshake_retransmit: Duration::from_secs(1),
            handshake_retransmit_max: Duration::from_secs(8),
            handshake_timeout: Duration::from_secs(20),
            pending_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(10),
            dead_peer: Duration::from_secs(30),
            rekey_after_time: Duration::from_secs(120),
            reject_after_time: Duration::from_secs(180),
            rekey_after_packets: 1 << 40,
            previous_session_grace: Duration::from_secs(10),
            cookie_rotation: Duration::from_secs(120),
        }
    }
}

/// Everything an endpoint needs.
#[derive(Debug)]
pub struct EndpointConfig {
    /// The deployment's CA certificate (DER): keys mac1 and the handshake secret.
    pub ca_cert_der: Vec<u8>,
    /// This side's certificate and key.
    pub identity: Identity,
    /// Verifies peers (chain, validity, role, CRL).
    pub verifier: Verifier,
    /// AEAD suites, most preferred first.
    pub suites: Vec<Suite>,
    /// Whether to accept incoming handshakes (servers).
    pub accept: bool,
    /// Largest datagram the endpoint emits during the handshake (UDP payload).
    pub max_datagram: usize,
    /// Timers.
    pub timers: Timers,
    /// Upper bound on handshakes in progress (server).
    pub max_pending_handshakes: usize,
    /// Handshakes in progress above which a server demands cookies.
    pub cookie_threshold: usize,
    /// Upper bound on handshakes in progress from one source IP address (server).
    pub max_pending_per_source: usize,
}

impl EndpointConfig {
    /// A configuration with default timers and limits.
    pub fn new(ca_cert_der: Vec<u8>, identity: Identity, verifier: Verifier, accept: bool) -> Self {
        Self {
            ca_cert_der,
            identity,
            verifier,
            suites: Suite::ALL.to_vec(),
            accept,
            max_datagram: 1232,
            timers: Timers::default(),
            max_pending_handshakes: 4096,
            cookie_threshold: 256,
            max_pending_per_source: 16,
        }
    }
}

/// Names a connection of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionHandle(pub u64);

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Nothing was received for the dead-peer timeout.
    DeadPeer,
    /// Keys expired before a rekey succeeded.
    Expired,
    /// The handshake failed.
    HandshakeFailed(HandshakeError),
    /// Closed by this side.
    Local,
    /// The peer's certificate no longer verifies (revoked by a new CRL, or expired).
    Revoked(aura_pki::VerifyError),
}

/// Something that happened, for the host to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A connection completed its first handshake.
    Connected {
        /// The connection.
        conn: ConnectionHandle,
        /// The verified peer.
        peer: VerifiedPeer,
        /// Its address.
        remote: SocketAddr,
        /// The negotiated suite.
        suite: Suite,
    },
    /// Client side: the server proved it holds the keys of the first handshake (its first
    /// packet arrived), so it accepted this client. Data sent before this may have been
    /// lost if the Finish was.
    Confirmed {
        /// The connection.
        conn: ConnectionHandle,
    },
    /// A connection switched to fresh keys.
    Rekeyed {
        /// The connection.
        conn: ConnectionHandle,
    },
    /// A peer's authenticated packets now come from another address.
    AddressChanged {
        /// The connection.
        conn: ConnectionHandle,
        /// The new address.
        remote: SocketAddr,
    },
    /// A server-side handshake from `remote` failed.
    HandshakeRejected {
        /// Where it came from.
        remote: SocketAddr,
        /// Why.
        error: HandshakeError,
    },
    /// A connection ended.
    Closed {
        /// The connection.
        conn: ConnectionHandle,
        /// Why.
        reason: CloseReason,
    },
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub remote: SocketAddr,
    /// The datagram.
    pub data: Vec<u8>,
}

/// A decrypted data payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The connection it arrived on.
    pub conn: ConnectionHandle,
    /// Where the payload lies in the caller's buffer.
    pub payload: Range<usize>,
}

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

#[derive(Debug)]
enum ClientPhase {
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
struct ClientHandshake {
    local_index: u32,
    phase: ClientPhase,
    datagrams: Vec<Vec<u8>>,
    started: Instant,
    retransmit_at: Instant,
    backoff: Duration,
}

#[derive(Debug)]
struct Connection {
    remote: SocketAddr,
    server_name: Option<String>,
    peer: Option<VerifiedPeer>,
    /// Server side: the client's certificate, re-checked when the verifier changes.
    peer_cert: Option<Vec<u8>>,
    current: Option<Session>,
    previous: Option<(Session, Instant)>,
    next: Option<Session>,
    handshake: Option<ClientHandshake>,
    last_sent: Instant,
    last_recv: Instant,
    stats: ConnectionStats,
    /// The time of this connection's live entry in the timer heap.
    deadline: Option<Instant>,
}

#[derive(Debug)]
struct Pending {
    responder: Responder,
    remote: SocketAddr,
    client_index: u32,
    resp_datagrams: Vec<Vec<u8>>,
    finish: Option<Reassembly>,
    created: Instant,
}

#[derive(Debug)]
struct InitBuffer {
    reassembly: Reassembly,
    created: Instant,
}

/// A cookie a client received, for mac2.
#[derive(Debug, Clone, Copy)]
struct Cookie {
    value: [u8; 16],
    received: Instant,
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
    /// Counters.
    pub stats: ConnectionStats,
    /// When the current session's handshake completed.
    pub session_started: Option<Instant>,
    /// When the last authenticated packet arrived.
    pub last_received: Instant,
}

/// A sans-IO Aura endpoint: a server with many clients, or a client with one server.
#[derive(Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    deployment: DeploymentKeys,
    rng: ChaCha20Rng,
    mono_anchor: Instant,
    wall_anchor: UnixTime,
    next_conn: u64,
    conns: HashMap<ConnectionHandle, Connection>,
    by_index: HashMap<u32, ConnectionHandle>,
    by_client_id: HashMap<String, ConnectionHandle>,
    pending: HashMap<u32, Pending>,
    responded: HashMap<(SocketAddr, u32), u32>,
    init_buffers: HashMap<(SocketAddr, u32), InitBuffer>,
    cookies: HashMap<SocketAddr, Cookie>,
    cookie_secret: [u8; 32],
    previous_cookie_secret: [u8; 32],
    cookie_rotated: Instant,
    force_cookies: bool,
    timers: BinaryHeap<Reverse<(Instant, ConnectionHandle)>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

/// What a handshake step needs, borrowed field by field so the caller may hold other
/// fields of the endpoint mutably.
fn handshake_ctx<'a>(
    deployment: &'a DeploymentKeys,
    config: &'a EndpointConfig,
    wall: UnixTime,
) -> Ctx<'a> {
    Ctx {
        deployment,
        verifier: &config.verifier,
        identity: &config.identity,
        wall,
        suites: &config.suites,
    }
}

fn addr_bytes(a: &SocketAddr) -> Vec<u8> {
    let mut v = match a.ip() {
        std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
        std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    v.extend_from_slice(&a.port().to_be_bytes());
    v
}

impl Endpoint {
    /// Creates an endpoint. `seed` seeds its CSPRNG (ChaCha20): pass 32 bytes from the OS
    /// RNG in production, fixed bytes in tests. `now` and `wall` anchor the monotonic
    /// clock to the wall clock used for certificate validity.
    ///
    /// # Errors
    /// [`ProtoError::Config`] for an unusable configuration.
    pub fn new(
        config: EndpointConfig,
        seed: [u8; 32],
        now: Instant,
        wall: UnixTime,
    ) -> Result<Self, ProtoError> {
        if config.max_datagram < MIN_DATAGRAM_LEN {
            return Err(ProtoError::Config(format!(
                "max_datagram {} is below the minimum {MIN_DATAGRAM_LEN}",
                config.max_datagram
            )));
        }
        if config.suites.is_empty() {
            return Err(ProtoError::Config("no AEAD suite enabled".into()));
        }
        let deployment = DeploymentKeys::new(&config.ca_cert_der)?;
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut cookie_secret = [0u8; 32];
        rng.fill_bytes(&mut cookie_secret);
        let mut previous_cookie_secret = [0u8; 32];
        rng.fill_bytes(&mut previous_cookie_secret);
        Ok(Self {
            config,
            deployment,
            rng,
            mono_anchor: now,
            wall_anchor: wall,
            next_conn: 1,
            conns: HashMap::new(),
            by_index: HashMap::new(),
            by_client_id: HashMap::new(),
            pending: HashMap::new(),
            responded: HashMap::new(),
            init_buffers: HashMap::new(),
            cookies: HashMap::new(),
            cookie_secret,
            previous_cookie_secret,
            cookie_rotated: now,
            force_cookies: false,
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        })
    }

    /// Re-anchors the wall clock (call when the system clock is corrected).
    pub fn set_wall_clock(&mut self, now: Instant, wall: UnixTime) {
        self.mono_anchor = now;
        self.wall_anchor = wall;
    }

    /// Replaces the certificate verifier (for example after a new CRL). Sessions of
    /// clients that the new verifier refuses are closed.
    pub fn set_verifier(&mut self, verifier: Verifier, now: Instant) {
        self.config.verifier = verifier;
        let wall = self.wall(now);
        let refused: Vec<(ConnectionHandle, aura_pki::VerifyError)> = self
            .conns
            .iter()
            .filter_map(|(h, c)| {
                let cert = c.peer_cert.as_ref()?;
                self.config
                    .verifier
                    .verify_client(cert, wall)
                    .err()
                    .map(|e| (*h, e))
            })
            .collect();
        for (h, e) in refused {
            self.close(h, CloseReason::Revoked(e));
        }
    }

    /// Forces (or stops forcing) cookies for every handshake, as when under attack.
    pub fn set_force_cookies(&mut self, on: bool) {
        self.force_cookies = on;
    }

    fn wall(&self, now: Instant) -> UnixTime {
        let elapsed = now.saturating_duration_since(self.mono_anchor);
        UnixTime::since_unix_epoch(Duration::from_secs(self.wall_anchor.as_secs()) + elapsed)
    }

    fn fresh_index(&mut self) -> u32 {
        loop {
            let i = self.rng.next_u32();
            if i != 0 && !self.by_index.contains_key(&i) && !self.pending.contains_key(&i) {
                return i;
            }
        }
    }

    /// Starts a connection to the server at `remote`, whose certificate must be valid for
    /// `server_name`. The Init is queued for [`Endpoint::poll_transmit`].
    ///
    /// # Errors
    /// A local failure building the handshake.
    pub fn connect(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        server_name: &str,
    ) -> Result<ConnectionHandle, ProtoError> {
        let handle = ConnectionHandle(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            handle,
            Connection {
                remote,
                server_name: Some(server_name.to_owned()),
                peer: None,
                peer_cert: None,
                current: None,
                previous: None,
                next: None,
                handshake: None,
                last_sent: now,
                last_recv: now,
                stats: ConnectionStats::default(),
                deadline: None,
            },
        );
        self.start_client_handshake(now, handle)?;
        Ok(handle)
    }

    fn start_client_handshake(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
    ) -> Result<(), ProtoError> {
        let local_index = self.fresh_index();
        let (initiator, msg) = Initiator::start(&mut self.rng, &self.config.suites, local_index)?;
        let datagrams = fragment(
            PacketType::Init,
            local_index,
            0,
            &msg,
            self.config.max_datagram,
        );
        let Some(conn) = self.conns.get_mut(&handle) else {
            return Err(ProtoError::UnknownConnection);
        };
        if let Some(old) = conn.handshake.take() {
            self.by_index.remove(&old.local_index);
        }
        self.by_index.insert(local_index, handle);
        let retransmit = self.config.timers.handshake_retransmit;
        conn.handshake = Some(ClientHandshake {
            local_index,
            phase: ClientPhase::AwaitResp {
                initiator,
                reassembly: None,
            },
            datagrams,
            started: now,
            retransmit_at: now + retransmit,
            backoff: retransmit,
        });
        self.send_handshake_datagrams(now, handle);
        self.reschedule(handle);
        Ok(())
    }

    /// Queues the current handshake datagrams of a client connection, with fresh MACs.
    fn send_handshake_datagrams(&mut self, now: Instant, handle: ConnectionHandle) {
        let Some(conn) = self.conns.get(&handle) else {
            return;
        };
        let Some(hs) = &conn.handshake else { return };
        let cookie = self
            .cookies
            .get(&conn.remote)
            .filter(|c| {
                now.saturating_duration_since(c.received) < self.config.timers.cookie_rotation
            })
            .map(|c| c.value);
        let remote = conn.remote;
        let datagrams: Vec<Vec<u8>> = hs
            .datagrams
            .iter()
            .map(|d| {
                let mut d = d.clone();
                self.stamp_macs(&mut d, cookie.as_ref());
                d
            })
            .collect();
        for data in datagrams {
            self.transmits.push_back(Transmit { remote, data });
        }
        if let Some(conn) = self.conns.get_mut(&handle) {
            conn.last_sent = now;
        }
    }

    /// Writes mac1 (and mac2 when a cookie is given) into a fragment datagram's trailer.
    fn stamp_macs(&self, d: &mut [u8], cookie: Option<&[u8; 16]>) {
        let len = d.len();
        let m1 = mac16(self.deployment.mac1.expose(), &d[..len - FRAG_TRAILER_LEN]);
        d[len - FRAG_TRAILER_LEN..len - MAC_LEN].copy_from_slice(&m1);
        let m2 = cookie.map_or([0u8; MAC_LEN], |c| mac16(c, &d[..len - MAC_LEN]));
        d[len - MAC_LEN..].copy_from_slice(&m2);
    }

    fn check_mac1(&self, d: &[u8], trailer_len: usize) -> bool {
        let Some(body_len) = d.len().checked_sub(trailer_len) else {
            return false;
        };
        let expected = mac16(self.deployment.mac1.expose(), &d[..body_len]);
        d.get(body_len..body_len + MAC_LEN)
            .is_some_and(|m| kdf::ct_eq(m, &expected))
    }

    fn cookie_for(&self, secret: &[u8; 32], remote: &SocketAddr) -> [u8; 16] {
        mac16(secret, &addr_bytes(remote))
    }

    fn mac2_valid(&self, remote: SocketAddr, datagram: &[u8], mac2: &[u8; MAC_LEN]) -> bool {
        let Some(len) = datagram.len().checked_sub(MAC_LEN) else {
            return false;
        };
        [self.cookie_secret, self.previous_cookie_secret]
            .iter()
            .any(|s| {
                let c = self.cookie_for(s, &remote);
                kdf::ct_eq(&mac16(&c, &datagram[..len]), mac2)
            })
    }

    fn under_load(&self) -> bool {
        self.force_cookies
            || self.pending.len() + self.init_buffers.len() >= self.config.cookie_threshold
    }

    /// Handles one datagram from `remote`, decrypting data in place. Returns the payload
    /// range for data (an empty payload, a keepalive, returns `Ok(None)`).
    ///
    /// # Errors
    /// Why the datagram was dropped; nothing is ever sent in reply to a dropped datagram
    /// except a cookie reply to a valid Init under load.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        buf: &mut [u8],
    ) -> Result<Option<Received>, DropReason> {
        let ty = *buf
            .first()
            .ok_or(DropReason::Malformed(WireError::Truncated {
                what: "datagram",
                needed: 1,
                have: 0,
            }))?;
        match PacketType::from_u8(ty) {
            Some(PacketType::Data) => self.handle_data(now, remote, buf),
            Some(PacketType::Init | PacketType::Resp | PacketType::Finish) => {
                self.handle_fragment(now, remote, buf).map(|()| None)
            }
            Some(PacketType::CookieReply) => {
                self.handle_cookie_reply(now, remote, buf).map(|()| None)
            }
            Some(PacketType::Alert) => self.handle_alert(now, buf).map(|()| None),
            None => Err(DropReason::Malformed(WireError::UnknownType(ty))),
        }
    }

    fn handle_data(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        buf: &mut [u8],
    ) -> Result<Option<Received>, DropReason> {
        let header = DataHeader::read(buf).map_err(DropReason::Malformed)?;
        let handle = *self
            .by_index
            .get(&header.receiver)
            .ok_or(DropReason::UnknownIndex)?;
        let reject_after = self.config.timers.reject_after_time;
        let conn = self
            .conns
            .get_mut(&handle)
            .ok_or(DropReason::UnknownIndex)?;
        let mut promote = false;
        let range = if conn
            .current
            .as_ref()
            .is_some_and(|s| s.local_index == header.receiver)
        {
            let s = conn.current.as_mut().ok_or(DropReason::UnknownIndex)?;
            if now.saturating_duration_since(s.created) >= reject_after {
                return Err(DropReason::Expired);
            }
            s.open(header, buf)?
        } else if conn
            .next
            .as_ref()
            .is_some_and(|s| s.local_index == header.receiver)
        {
            let s = conn.next.as_mut().ok_or(DropReason::UnknownIndex)?;
            let r = s.open(header, buf)?;
            promote = true;
            r
        } else if let Some((s, until)) = conn
            .previous
            .as_mut()
            .filter(|(s, _)| s.local_index == header.receiver)
        {
            if now >= *until {
                return Err(DropReason::Expired);
            }
            s.open(header, buf)?
        } else {
            return Err(DropReason::UnknownIndex);
        };
        conn.last_recv = now;
        conn.stats.packets_received += 1;
        conn.stats.bytes_received += range.len() as u64;
        let mut confirmed_now = false;
        if let Some(hs) = &conn.handshake
            && let ClientPhase::AwaitConfirm { local_index, .. } = hs.phase
            && (local_index == header.receiver || promote)
        {
            confirmed_now = true;
        }
        if confirmed_now {
            conn.handshake = None;
            if conn.stats.handshakes == 1 && !promote {
                self.events.push_back(Event::Confirmed { conn: handle });
            }
        }
        if remote != conn.remote {
            conn.remote = remote;
            self.events.push_back(Event::AddressChanged {
                conn: handle,
                remote,
            });
        }
        if promote {
            self.promote_next(now, handle);
        }
        self.reschedule(handle);
        if range.is_empty() {
            Ok(None)
        } else {
            Ok(Some(Received {
                conn: handle,
                payload: range,
            }))
        }
    }

    /// The client's new session is confirmed: it becomes current, the old one previous.
    fn promote_next(&mut self, now: Instant, handle: ConnectionHandle) {
        let grace = self.config.timers.previous_session_grace;
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        if let Some(next) = conn.next.take() {
            if let Some((old, _)) = conn.previous.take() {
                self.by_index.remove(&old.local_index);
            }
            if let Some(cur) = conn.current.replace(next) {
                conn.previous = Some((cur, now + grace));
            }
            self.events.push_back(Event::Rekeyed { conn: handle });
        }
    }

    fn handle_fragment(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        buf: &mut [u8],
    ) -> Result<(), DropReason> {
        let frag = Fragment::decode(buf).map_err(DropReason::Malformed)?;
        if !self.check_mac1(buf, FRAG_TRAILER_LEN) {
            return Err(DropReason::BadMac1);
        }
        // mac2 is optional except under load, but a present mac2 must be valid: only the
        // server checks cookies, so a client accepts only an empty one.
        if frag.mac2 != [0u8; MAC_LEN]
            && !(self.config.accept && self.mac2_valid(remote, buf, &frag.mac2))
        {
            return Err(DropReason::CookieRequired);
        }
        match frag.ty {
            PacketType::Init => self.handle_init_fragment(now, remote, &frag),
            PacketType::Resp => self.handle_resp_fragment(now, &frag),
            PacketType::Finish => self.handle_finish_fragment(now, remote, &frag),
            _ => Err(DropReason::Unexpected),
        }
    }

    fn handle_init_fragment(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        frag: &Fragment<'_>,
    ) -> Result<(), DropReason> {
        if !self.config.accept {
            return Err(DropReason::Unexpected);
        }
        self.expire_pending(now);
        let key = (remote, frag.sender);
        // A retransmitted Init whose Resp was lost: send the same Resp again.
        if let Some(local) = self.responded.get(&key).copied() {
            if frag.offset == 0
                && let Some(p) = self.pending.get(&local)
            {
                let datagrams = p.resp_datagrams.clone();
                for data in datagrams {
                    self.transmits.push_back(Transmit { remote, data });
                }
            }
            return Ok(());
        }
        if self.under_load() && frag.mac2 == [0u8; MAC_LEN] {
            self.send_cookie_reply(remote, frag);
            return Err(DropReason::CookieRequired);
        }
        if !self.init_buffers.contains_key(&key) {
            if self.init_buffers.len() + self.pending.len() >= self.config.max_pending_handshakes {
                return Err(DropReason::Overloaded);
            }
            let ip = remote.ip();
            let from_source = self
                .init_buffers
                .keys()
                .filter(|(a, _)| a.ip() == ip)
                .count()
                + self
                    .pending
                    .values()
                    .filter(|p| p.remote.ip() == ip)
                    .count();
            if from_source >= self.config.max_pending_per_source {
                return Err(DropReason::Overloaded);
            }
        }
        let entry = self.init_buffers.entry(key).or_insert_with(|| InitBuffer {
            reassembly: Reassembly::new(frag.msg_len),
            created: now,
        });
        let msg = match entry.reassembly.add(frag) {
            Ok(Some(msg)) => msg.to_vec(),
            Ok(None) => return Ok(()),
            Err(e) => {
                self.init_buffers.remove(&key);
                return Err(DropReason::Malformed(e));
            }
        };
        self.init_buffers.remove(&key);
        let local_index = self.fresh_index();
        let wall = self.wall(now);
        let ctx = handshake_ctx(&self.deployment, &self.config, wall);
        let (responder, resp) =
            match Responder::respond(&mut self.rng, frag.sender, local_index, &msg, &ctx) {
                Ok(r) => r,
                Err(error) => {
                    self.events.push_back(Event::HandshakeRejected {
                        remote,
                        error: error.clone(),
                    });
                    return Err(DropReason::Handshake(error));
                }
            };
        let mut resp_datagrams = fragment(
            PacketType::Resp,
            local_index,
            frag.sender,
            &resp,
            self.config.max_datagram,
        );
        for d in &mut resp_datagrams {
            self.stamp_macs(d, None);
        }
        for data in &resp_datagrams {
            self.transmits.push_back(Transmit {
                remote,
                data: data.clone(),
            });
        }
        self.responded.insert(key, local_index);
        self.pending.insert(
            local_index,
            Pending {
                responder,
                remote,
                client_index: frag.sender,
                resp_datagrams,
                finish: None,
                created: now,
            },
        );
        Ok(())
    }

    fn send_cookie_reply(&mut self, remote: SocketAddr, frag: &Fragment<'_>) {
        let cookie = self.cookie_for(&self.cookie_secret, &remote);
        let mut nonce = [0u8; 12];
        self.rng.fill_bytes(&mut nonce);
        let mut d = Vec::with_capacity(COOKIE_REPLY_LEN);
        d.push(PacketType::CookieReply as u8);
        d.push(VERSION_1);
        d.extend_from_slice(&frag.sender.to_be_bytes());
        d.extend_from_slice(&nonce);
        let mut sealed = [0u8; 16 + TAG_LEN];
        sealed[..16].copy_from_slice(&cookie);
        if self
            .deployment
            .cookie_seal
            .seal_in_place(&nonce, &frag.mac1, &mut sealed, 16)
            .is_err()
        {
            return;
        }
        d.extend_from_slice(&sealed);
        let m1 = mac16(self.deployment.mac1.expose(), &d);
        d.extend_from_slice(&m1);
        self.transmits.push_back(Transmit { remote, data: d });
    }

    /// Checks the length and mac1 of a fixed-size server-to-client packet (cookie reply,
    /// alert) and finds the connection named by the receiver index at `index_at`.
    fn fixed_size_packet(
        &self,
        buf: &[u8],
        len: usize,
        index_at: usize,
        what: &'static str,
    ) -> Result<(ConnectionHandle, u32), DropReason> {
        if buf.len() != len {
            return Err(DropReason::Malformed(WireError::Truncated {
                what,
                needed: len,
                have: buf.len(),
            }));
        }
        if !self.check_mac1(buf, MAC_LEN) {
            return Err(DropReason::BadMac1);
        }
        let mut index = [0u8; 4];
        index.copy_from_slice(&buf[index_at..index_at + 4]);
        let receiver = u32::from_be_bytes(index);
        let handle = *self
            .by_index
            .get(&receiver)
            .ok_or(DropReason::UnknownIndex)?;
        Ok((handle, receiver))
    }

    fn handle_cookie_reply(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        buf: &[u8],
    ) -> Result<(), DropReason> {
        let (handle, receiver) =
            self.fixed_size_packet(buf, COOKIE_REPLY_LEN, 2, "cookie reply")?;
        let conn = self.conns.get(&handle).ok_or(DropReason::UnknownIndex)?;
        let Some(hs) = conn
            .handshake
            .as_ref()
            .filter(|h| h.local_index == receiver)
        else {
            return Err(DropReason::Unexpected);
        };
        // The AAD is the mac1 we sent: recompute it from our first Init datagram.
        let first = hs.datagrams.first().ok_or(DropReason::Unexpected)?;
        let len = first.len();
        let our_mac1 = mac16(
            self.deployment.mac1.expose(),
            &first[..len - FRAG_TRAILER_LEN],
        );
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&buf[6..18]);
        let mut sealed = [0u8; 16 + TAG_LEN];
        sealed.copy_from_slice(&buf[18..18 + 16 + TAG_LEN]);
        let cookie = self
            .deployment
            .cookie_seal
            .open_in_place(&nonce, &our_mac1, &mut sealed)
            .map_err(|_| DropReason::Decrypt)?;
        let mut value = [0u8; 16];
        value.copy_from_slice(cookie);
        self.cookies.insert(
            remote,
            Cookie {
                value,
                received: now,
            },
        );
        self.send_handshake_datagrams(now, handle);
        Ok(())
    }

    fn handle_resp_fragment(
        &mut self,
        now: Instant,
        frag: &Fragment<'_>,
    ) -> Result<(), DropReason> {
        let handle = *self
            .by_index
            .get(&frag.receiver)
            .ok_or(DropReason::UnknownIndex)?;
        let wall = self.wall(now);
        let conn = self
            .conns
            .get_mut(&handle)
            .ok_or(DropReason::UnknownIndex)?;
        let Some(hs) = conn
            .handshake
            .as_mut()
            .filter(|h| h.local_index == frag.receiver)
        else {
            return Err(DropReason::Unexpected);
        };
        let initiator_msg = match &mut hs.phase {
            ClientPhase::AwaitConfirm { .. } => {
                // Our Finish was lost: send it again.
                let datagrams = hs.datagrams.clone();
                let remote = conn.remote;
                for data in datagrams {
                    self.transmits.push_back(Transmit { remote, data });
                }
                return Ok(());
            }
            ClientPhase::AwaitResp { reassembly, .. } => {
                let r = reassembly.get_or_insert_with(|| Reassembly::new(frag.msg_len));
                match r.add(frag) {
                    Ok(Some(msg)) => msg.to_vec(),
                    Ok(None) => return Ok(()),
                    Err(e) => {
                        *reassembly = None;
                        return Err(DropReason::Malformed(e));
                    }
                }
            }
        };
        let ClientPhase::AwaitResp { initiator, .. } = &hs.phase else {
            return Err(DropReason::Unexpected);
        };
        let server_name = conn.server_name.clone().unwrap_or_default();
        let ctx = handshake_ctx(&self.deployment, &self.config, wall);
        let done = match initiator.on_resp(frag.sender, &initiator_msg, &server_name, &ctx) {
            Ok(d) => d,
            Err(error) => {
                if let ClientPhase::AwaitResp { reassembly, .. } = &mut hs.phase {
                    *reassembly = None;
                }
                // A forged or corrupted Resp must not kill the handshake; a refused server
                // certificate is final.
                if matches!(
                    error,
                    HandshakeError::PeerCertificate(_) | HandshakeError::Downgrade { .. }
                ) {
                    self.fail_connection(handle, error.clone());
                }
                return Err(DropReason::Handshake(error));
            }
        };
        self.complete_client(now, handle, frag.sender, done);
        Ok(())
    }

    fn complete_client(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
        server_index: u32,
        done: InitiatorDone,
    ) {
        let max = self.config.max_datagram;
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        let Some(hs) = conn.handshake.as_mut() else {
            return;
        };
        let local_index = hs.local_index;
        let mut datagrams = fragment(
            PacketType::Finish,
            local_index,
            server_index,
            &done.finish_msg,
            max,
        );
        let suite = done.keys.suite;
        let session = Session::new(local_index, server_index, done.keys, now);
        hs.phase = ClientPhase::AwaitConfirm {
            server_hs: done.server_hs,
            th4: done.th4,
            local_index,
        };
        let first = conn.current.is_none();
        conn.stats.handshakes += 1;
        if first {
            conn.current = Some(session);
            conn.peer = Some(done.peer.clone());
            self.events.push_back(Event::Connected {
                conn: handle,
                peer: done.peer,
                remote: conn.remote,
                suite,
            });
        } else {
            if let Some(old) = conn.next.replace(session) {
                self.by_index.remove(&old.local_index);
            }
        }
        let remote = conn.remote;
        for d in &mut datagrams {
            let len = d.len();
            let m1 = mac16(self.deployment.mac1.expose(), &d[..len - FRAG_TRAILER_LEN]);
            d[len - FRAG_TRAILER_LEN..len - MAC_LEN].copy_from_slice(&m1);
        }
        for data in &datagrams {
            self.transmits.push_back(Transmit {
                remote,
                data: data.clone(),
            });
        }
        if let Some(conn) = self.conns.get_mut(&handle) {
            conn.last_sent = now;
            if let Some(hs) = conn.handshake.as_mut() {
                hs.datagrams = datagrams;
                hs.backoff = self.config.timers.handshake_retransmit;
                hs.retransmit_at = now + hs.backoff;
            }
        }
        self.reschedule(handle);
    }

    fn handle_finish_fragment(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        frag: &Fragment<'_>,
    ) -> Result<(), DropReason> {
        if !self.config.accept {
            return Err(DropReason::Unexpected);
        }
        let wall = self.wall(now);
        let Some(pending) = self.pending.get_mut(&frag.receiver) else {
            // A retransmitted Finish for a session already established: confirm again.
            if let Some(&handle) = self.by_index.get(&frag.receiver) {
                self.send_keepalive(now, handle);
                return Ok(());
            }
            return Err(DropReason::UnknownIndex);
        };
        if pending.client_index != frag.sender {
            return Err(DropReason::UnknownIndex);
        }
        let r = pending
            .finish
            .get_or_insert_with(|| Reassembly::new(frag.msg_len));
        let msg = match r.add(frag) {
            Ok(Some(m)) => m.to_vec(),
            Ok(None) => return Ok(()),
            Err(e) => {
                pending.finish = None;
                return Err(DropReason::Malformed(e));
            }
        };
        let ctx = handshake_ctx(&self.deployment, &self.config, wall);
        match pending.responder.on_finish(&msg, &ctx) {
            Ok((keys, peer, cert)) => {
                let Some(p) = self.pending.remove(&frag.receiver) else {
                    return Err(DropReason::Unexpected);
                };
                self.responded.remove(&(p.remote, p.client_index));
                self.establish_server(now, remote, frag.receiver, p.client_index, keys, peer, cert);
                Ok(())
            }
            Err(error) => {
                pending.finish = None;
                if let HandshakeError::PeerCertificate(e) = &error {
                    let code = AlertCode::for_verify_error(e);
                    if let Ok(sealed) = pending.responder.seal_alert(code.to_u8()) {
                        let mut d = Vec::with_capacity(ALERT_LEN);
                        d.push(PacketType::Alert as u8);
                        d.push(VERSION_1);
                        d.extend_from_slice(&frag.receiver.to_be_bytes());
                        d.extend_from_slice(&frag.sender.to_be_bytes());
                        d.extend_from_slice(&sealed);
                        let m1 = mac16(self.deployment.mac1.expose(), &d);
                        d.extend_from_slice(&m1);
                        self.transmits.push_back(Transmit { remote, data: d });
                    }
                    if let Some(p) = self.pending.remove(&frag.receiver) {
                        self.responded.remove(&(p.remote, p.client_index));
                    }
                    self.events.push_back(Event::HandshakeRejected {
                        remote,
                        error: error.clone(),
                    });
                }
                Err(DropReason::Handshake(error))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn establish_server(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local_index: u32,
        client_index: u32,
        keys: crate::keys::SessionKeys,
        peer: VerifiedPeer,
        cert: Vec<u8>,
    ) {
        let suite = keys.suite;
        let session = Session::new(local_index, client_index, keys, now);
        let grace = self.config.timers.previous_session_grace;
        let handle = if let Some(&h) = self.by_client_id.get(&peer.id) {
            // The same client again (rekey or reconnect): keep the handle.
            if let Some(conn) = self.conns.get_mut(&h) {
                if let Some((old, _)) = conn.previous.take() {
                    self.by_index.remove(&old.local_index);
                }
                if let Some(cur) = conn.current.replace(session) {
                    conn.previous = Some((cur, now + grace));
                }
                conn.stats.handshakes += 1;
                if conn.remote != remote {
                    conn.remote = remote;
                    self.events
                        .push_back(Event::AddressChanged { conn: h, remote });
                }
                conn.peer = Some(peer);
                conn.peer_cert = Some(cert);
                conn.last_recv = now;
                self.events.push_back(Event::Rekeyed { conn: h });
            }
            h
        } else {
            let h = ConnectionHandle(self.next_conn);
            self.next_conn += 1;
            self.conns.insert(
                h,
                Connection {
                    remote,
                    server_name: None,
                    peer: Some(peer.clone()),
                    peer_cert: Some(cert),
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
                    deadline: None,
                },
            );
            self.by_client_id.insert(peer.id.clone(), h);
            self.events.push_back(Event::Connected {
                conn: h,
                peer,
                remote,
                suite,
            });
            h
        };
        self.by_index.insert(local_index, handle);
        // Confirm the keys to the client at once.
        self.send_keepalive(now, handle);
        self.reschedule(handle);
    }

    fn handle_alert(&mut self, _now: Instant, buf: &[u8]) -> Result<(), DropReason> {
        let (handle, _) = self.fixed_size_packet(buf, ALERT_LEN, 6, "alert")?;
        let conn = self.conns.get(&handle).ok_or(DropReason::UnknownIndex)?;
        let Some(ClientHandshake {
            phase: ClientPhase::AwaitConfirm { server_hs, th4, .. },
            ..
        }) = &conn.handshake
        else {
            return Err(DropReason::Unexpected);
        };
        let code =
            open_alert(server_hs, th4, &buf[10..10 + 1 + TAG_LEN]).ok_or(DropReason::Decrypt)?;
        self.fail_connection(handle, HandshakeError::Rejected(AlertCode::from_u8(code)));
        Ok(())
    }

    fn fail_connection(&mut self, handle: ConnectionHandle, error: HandshakeError) {
        self.close(handle, CloseReason::HandshakeFailed(error));
    }

    /// Closes a connection, forgetting its keys. Emits [`Event::Closed`].
    pub fn close(&mut self, handle: ConnectionHandle, reason: CloseReason) {
        let Some(conn) = self.conns.remove(&handle) else {
            return;
        };
        for s in [
            conn.current.as_ref(),
            conn.next.as_ref(),
            conn.previous.as_ref().map(|(s, _)| s),
        ]
        .into_iter()
        .flatten()
        {
            self.by_index.remove(&s.local_index);
        }
        if let Some(hs) = &conn.handshake {
            self.by_index.remove(&hs.local_index);
        }
        if let Some(peer) = &conn.peer
            && self.by_client_id.get(&peer.id) == Some(&handle)
        {
            self.by_client_id.remove(&peer.id);
        }
        self.events.push_back(Event::Closed {
            conn: handle,
            reason,
        });
    }

    fn send_keepalive(&mut self, now: Instant, handle: ConnectionHandle) {
        let mut buf = [0u8; DATA_OVERHEAD];
        if let Ok((remote, n)) = self.seal(now, handle, &mut buf, 0) {
            self.transmits.push_back(Transmit {
                remote,
                data: buf[..n].to_vec(),
            });
        }
    }

    /// Seals `buf[DATA_HEADER_LEN..DATA_HEADER_LEN + payload_len]` for `conn` in place;
    /// `buf` must have [`TAG_LEN`] bytes of room after the payload. Returns the
    /// destination and the datagram length (`buf[..len]`). No allocation.
    ///
    /// # Errors
    /// [`ProtoError::NotEstablished`] before the first handshake completes or after the
    /// keys expired; [`ProtoError::BufferTooSmall`].
    pub fn seal(
        &mut self,
        now: Instant,
        conn: ConnectionHandle,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<(SocketAddr, usize), ProtoError> {
        let reject_after = self.config.timers.reject_after_time;
        let rekey_packets = self.config.timers.rekey_after_packets;
        let c = self
            .conns
            .get_mut(&conn)
            .ok_or(ProtoError::UnknownConnection)?;
        let session = c.current.as_mut().ok_or(ProtoError::NotEstablished)?;
        if now.saturating_duration_since(session.created) >= reject_after {
            return Err(ProtoError::NotEstablished);
        }
        let n = session.seal(buf, payload_len)?;
        let needs_rekey = c.server_name.is_some()
            && c.handshake.is_none()
            && session.sent_packets() >= rekey_packets;
        c.last_sent = now;
        c.stats.packets_sent += 1;
        c.stats.bytes_sent += payload_len as u64;
        let remote = c.remote;
        if needs_rekey {
            self.start_client_handshake(now, conn)?;
        }
        Ok((remote, n))
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] must next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, h))) = self.timers.peek().copied() {
            if self.conns.get(&h).and_then(|c| c.deadline) == Some(at) {
                let pending = self
                    .pending
                    .values()
                    .map(|p| p.created + self.config.timers.pending_timeout)
                    .min();
                return Some(pending.map_or(at, |p| p.min(at)));
            }
            self.timers.pop();
        }
        self.pending
            .values()
            .map(|p| p.created + self.config.timers.pending_timeout)
            .min()
    }

    /// The earliest instant at which one of the connection's timers may fire. No
    /// allocation: this runs for every packet.
    fn next_deadline(&self, c: &Connection) -> Option<Instant> {
        let t = &self.config.timers;
        let hs = c.handshake.as_ref();
        let s = c.current.as_ref();
        let rekey = s.filter(|_| c.server_name.is_some() && hs.is_none());
        [
            hs.map(|h| h.retransmit_at),
            hs.map(|h| h.started + t.handshake_timeout),
            s.map(|_| c.last_sent + t.keepalive),
            s.map(|_| c.last_recv + t.dead_peer),
            s.map(|s| s.created + t.reject_after_time),
            rekey.map(|s| s.created + t.rekey_after_time),
            c.previous.as_ref().map(|(_, until)| *until),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Makes sure the timer heap holds an entry no later than the connection's next
    /// deadline. A deadline that moves later (the usual case: every received packet
    /// postpones the dead-peer timer) pushes nothing; the earlier entry fires, finds
    /// nothing due, and reschedules. So the heap grows by at most one entry per timer
    /// firing, not per packet.
    fn reschedule(&mut self, h: ConnectionHandle) {
        let Some(c) = self.conns.get(&h) else { return };
        let Some(deadline) = self.next_deadline(c) else {
            return;
        };
        if let Some(c) = self.conns.get_mut(&h)
            && c.deadline.is_none_or(|scheduled| deadline < scheduled)
        {
            c.deadline = Some(deadline);
            self.timers.push(Reverse((deadline, h)));
        }
    }

    fn expire_pending(&mut self, now: Instant) {
        let timeout = self.config.timers.pending_timeout;
        let expired: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.created) >= timeout)
            .map(|(i, _)| *i)
            .collect();
        for i in expired {
            if let Some(p) = self.pending.remove(&i) {
                self.responded.remove(&(p.remote, p.client_index));
            }
        }
        self.init_buffers
            .retain(|_, b| now.saturating_duration_since(b.created) < timeout);
    }

    /// Runs every timer due at `now`: retransmissions, keepalives, rekeys, dead peers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_pending(now);
        if now.saturating_duration_since(self.cookie_rotated) >= self.config.timers.cookie_rotation
        {
            self.previous_cookie_secret = self.cookie_secret;
            self.rng.fill_bytes(&mut self.cookie_secret);
            self.cookie_rotated = now;
        }
        while let Some(Reverse((at, h))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.conns.get(&h).and_then(|c| c.deadline) != Some(at) {
                continue; // stale entry
            }
            if let Some(c) = self.conns.get_mut(&h) {
                c.deadline = None;
            }
            self.run_timers(now, h);
            self.reschedule(h);
        }
    }

    fn run_timers(&mut self, now: Instant, h: ConnectionHandle) {
        let t = self.config.timers.clone();
        let Some(c) = self.conns.get_mut(&h) else {
            return;
        };
        if let Some((_, until)) = &c.previous
            && now >= *until
            && let Some((old, _)) = c.previous.take()
        {
            self.by_index.remove(&old.local_index);
        }
        let Some(c) = self.conns.get_mut(&h) else {
            return;
        };
        if let Some(hs) = c.handshake.as_mut() {
            if now.saturating_duration_since(hs.started) >= t.handshake_timeout {
                let first = c.current.is_none();
                let index = hs.local_index;
                let awaiting_resp = matches!(hs.phase, ClientPhase::AwaitResp { .. });
                c.handshake = None;
                if awaiting_resp {
                    self.by_index.remove(&index);
                } else if let Some(next) = c.next.take() {
                    // An unconfirmed rekey: keep using the current keys.
                    self.by_index.remove(&next.local_index);
                }
                if first {
                    self.close(h, CloseReason::HandshakeFailed(HandshakeError::Timeout));
                    return;
                }
            } else if now >= hs.retransmit_at {
                hs.backoff = (hs.backoff * 2).min(t.handshake_retransmit_max);
                // Up to a quarter of jitter so clients that failed together spread out.
                let jitter_ms = u64::try_from(hs.backoff.as_millis() / 4)
                    .unwrap_or(0)
                    .max(1);
                let jitter = Duration::from_millis(self.rng.next_u64() % jitter_ms);
                let Some(c) = self.conns.get_mut(&h) else {
                    return;
                };
                if let Some(hs) = c.handshake.as_mut() {
                    hs.retransmit_at = now + hs.backoff + jitter;
                }
                self.send_handshake_datagrams(now, h);
            }
        }
        let Some(c) = self.conns.get_mut(&h) else {
            return;
        };
        let Some(s) = &c.current else { return };
        if now.saturating_duration_since(c.last_recv) >= t.dead_peer {
            self.close(h, CloseReason::DeadPeer);
            return;
        }
        if now.saturating_duration_since(s.created) >= t.reject_after_time {
            self.close(h, CloseReason::Expired);
            return;
        }
        let rekey = c.server_name.is_some()
            && c.handshake.is_none()
            && now.saturating_duration_since(s.created) >= t.rekey_after_time;
        if rekey {
            let _ = self.start_client_handshake(now, h);
        }
        let Some(c) = self.conns.get(&h) else { return };
        if now.saturating_duration_since(c.last_sent) >= t.keepalive {
            self.send_keepalive(now, h);
        }
    }

    /// Information about a connection.
    pub fn connection_info(&self, h: ConnectionHandle) -> Option<ConnectionInfo> {
        let c = self.conns.get(&h)?;
        Some(ConnectionInfo {
            remote: c.remote,
            peer: c.peer.clone(),
            suite: c.current.as_ref().map(Session::suite),
            stats: c.stats,
            session_started: c.current.as_ref().map(|s| s.created),
            last_received: c.last_recv,
        })
    }

    /// Handles of every live connection.
    pub fn connections(&self) -> Vec<ConnectionHandle> {
        let mut v: Vec<_> = self.conns.keys().copied().collect();
        v.sort();
        v
    }

    /// Handshakes in progress on the server side (half-open).
    pub fn pending_handshakes(&self) -> usize {
        self.pending.len() + self.init_buffers.len()
    }
}

/// Headroom a caller leaves in front of a payload for [`Endpoint::seal`].
pub const SEAL_HEADROOM: usize = DATA_HEADER_LEN;
