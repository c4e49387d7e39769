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
//!
//! This file is the demultiplexer: it owns the tables that find a connection (by session
//! index, by handle, by client id), the output queues and the CSPRNG, dispatches each
//! datagram and each timer, and applies what the leaf types' steps return. The leaves
//! never name [`Endpoint`], and their imports run one way:
//!
//! ```text
//! mod.rs ──► every file below
//! event.rs ──► connection.rs ──► client.rs ──► config.rs
//!              connection.rs ──► config.rs
//! server.rs ──► cookie.rs
//! cookie.rs, deadlines.rs, config.rs: no sibling imports
//! ```

mod client;
mod config;
mod connection;
mod cookie;
mod deadlines;
mod event;
mod indices;
mod server;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use aura_crypto::aead::{Suite, TAG_LEN};
use aura_crypto::kdf;
use aura_pki::Verifier;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rustls_pki_types::UnixTime;

pub use self::config::{EndpointConfig, Timers};
pub use self::connection::{ConnectionHandle, ConnectionInfo, ConnectionStats};
pub use self::event::{CloseReason, Event, Received, Transmit};
pub use self::indices::{IndexChange, Partition};

use self::client::{ClientHandshake, RespStep};
use self::connection::{Connection, HandshakeTimer};
use self::cookie::{CookieJar, check_fixed_size, check_mac1, stamp_macs};
use self::deadlines::Deadlines;
use self::indices::Indices;
use self::server::{Established, FinishStep, HalfOpen, Limits, source_key};
use crate::error::{AlertCode, DropReason, HandshakeError, ProtoError};
use crate::handshake::{BINDING_LEN, InitiatorDone};
use crate::keys::{DeploymentKeys, DeploymentSecret};
use crate::session::{DATA_OVERHEAD, Session};
use crate::wire::{
    ALERT_LEN, COOKIE_REPLY_LEN, DataHeader, FRAG_TRAILER_LEN, Fragment, MAC_LEN, PacketType,
    WireError,
};

/// How often a daemon should call [`Endpoint::reseed`].
pub const RESEED_INTERVAL: Duration = Duration::from_secs(600);

/// Overwrites the CSPRNG's state (it holds future handshake randomness) when the endpoint
/// goes (review L9); the cookie secrets wipe themselves.
impl Drop for Endpoint {
    fn drop(&mut self) {
        self.rng = ChaCha20Rng::from_seed([0; 32]);
        // Keeps the overwrite from being optimised away as a store nobody reads.
        std::hint::black_box(&self.rng);
    }
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
    /// Boxed: the table's spare slots then cost a pointer each, not a connection.
    conns: HashMap<ConnectionHandle, Box<Connection>>,
    by_index: Indices,
    by_client_id: HashMap<String, ConnectionHandle>,
    /// Server: the connection at each client address (an Init from one is a rekey).
    by_remote: HashMap<SocketAddr, ConnectionHandle>,
    half_open: HalfOpen,
    /// The real peer address of each stream link's stand-in address.
    link_sources: HashMap<SocketAddr, IpAddr>,
    /// Links that are an outer TLS session of their own, with its exporter (docs/adr/0024).
    link_bindings: HashMap<SocketAddr, Box<[u8; BINDING_LEN]>>,
    cookies: CookieJar,
    deadlines: Deadlines<ConnectionHandle>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
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
        config.validate()?;
        let limits = Limits {
            max_pending: config.max_pending_handshakes,
            max_per_source: config.max_pending_per_source,
            cookie_threshold: config.cookie_threshold,
            max_datagram: config.max_datagram,
        };
        let deployment = DeploymentKeys::new(&config.ca_cert_der, &config.secret)?;
        let mut rng = ChaCha20Rng::from_seed(seed);
        let cookies = CookieJar::new(&mut rng, now);
        Ok(Self {
            config,
            deployment,
            rng,
            mono_anchor: now,
            wall_anchor: wall,
            next_conn: 1,
            conns: HashMap::new(),
            by_index: Indices::default(),
            by_client_id: HashMap::new(),
            by_remote: HashMap::new(),
            half_open: HalfOpen::new(limits),
            link_sources: HashMap::new(),
            link_bindings: HashMap::new(),
            cookies,
            deadlines: Deadlines::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        })
    }

    /// Mixes 32 fresh bytes from the OS into the endpoint's CSPRNG: the new state is
    /// SHA-256 of 32 bytes of the old stream and `fresh`, so the state before is not
    /// recoverable from the state after, and a disclosed state stops predicting future
    /// handshakes once the host reseeds. The daemons call it every
    /// [`RESEED_INTERVAL`].
    pub fn reseed(&mut self, fresh: [u8; 32]) {
        let mut old = zeroize::Zeroizing::new([0u8; 32]);
        self.rng.fill_bytes(old.as_mut());
        let mut seed = kdf::sha256(&[b"aura/v1 reseed", old.as_ref(), &fresh]);
        self.rng = ChaCha20Rng::from_seed(seed);
        zeroize::Zeroize::zeroize(&mut seed);
    }

    /// Re-anchors the wall clock (call when the system clock is corrected).
    pub fn set_wall_clock(&mut self, now: Instant, wall: UnixTime) {
        self.mono_anchor = now;
        self.wall_anchor = wall;
    }

    /// Replaces this endpoint's own certificate and signing key (a reload): handshakes
    /// from now on use it; established sessions keep their keys and go on.
    pub fn set_identity(&mut self, identity: crate::Identity) {
        self.config.identity = identity;
    }

    /// Replaces the certificate verifier (for example after a new CRL). Sessions of
    /// clients that the new verifier refuses are closed.
    ///
    /// Each session's client is re-checked as verified at its handshake (expiry and the
    /// new CRL); a verifier of another CA than the one they were verified under refuses
    /// them all.
    pub fn set_verifier(&mut self, verifier: Verifier, now: Instant) {
        let same_ca = self.config.verifier.same_ca(&verifier);
        self.config.verifier = verifier;
        let wall = self.wall(now);
        let server = self.is_server();
        let refused: Vec<(ConnectionHandle, aura_pki::VerifyError)> = self
            .conns
            .iter()
            .filter(|_| server)
            .filter_map(|(h, c)| {
                let peer = c.peer.as_ref()?;
                let checked = if same_ca {
                    self.config.verifier.recheck(peer, wall)
                } else {
                    Err(aura_pki::VerifyError::UnknownIssuer(
                        "the trusted CA changed".into(),
                    ))
                };
                checked.err().map(|e| (*h, e))
            })
            .collect();
        for (h, e) in refused {
            self.close(h, CloseReason::Revoked(e));
        }
    }

    /// Counts half-open handshakes from `remote` (a stream link's stand-in address) under
    /// the link's real peer `source`, or under `remote` itself again (`None`), so a peer
    /// cannot multiply its share of the handshake table by opening links (review H1).
    pub fn set_link_source(&mut self, remote: SocketAddr, source: Option<IpAddr>) {
        match source {
            Some(ip) => {
                self.link_sources.insert(remote, ip);
            }
            None => {
                self.link_sources.remove(&remote);
            }
        }
    }

    /// Records that the link at `remote` (a stream link's stand-in address) is an outer TLS
    /// session of its own between this endpoint and its peer, with `exporter` (or forgets
    /// it: `None`). Handshakes over such a link may then use [`Suite::Bound`]: a client
    /// offers it first, a server accepts it, and the transcript covers the exporter, so
    /// the handshake fails unless both ends hold the same outer session.
    pub fn set_link_binding(&mut self, remote: SocketAddr, exporter: Option<[u8; BINDING_LEN]>) {
        match exporter {
            Some(e) => {
                self.link_bindings.insert(remote, Box::new(e));
            }
            None => {
                self.link_bindings.remove(&remote);
            }
        }
    }

    /// Forces (or stops forcing) cookies for every handshake, as when under attack.
    pub fn set_force_cookies(&mut self, on: bool) {
        self.half_open.set_force_cookies(on);
    }

    /// Whether this endpoint accepts handshakes (a server).
    pub fn is_server(&self) -> bool {
        self.config.accept
    }

    /// Whether `index` is the local index of a live session (the UDP carrier's check of
    /// a data datagram before it unmasks it).
    pub fn knows_index(&self, index: u32) -> bool {
        self.by_index.contains_key(&index)
    }

    /// Makes this endpoint worker `p.worker` of `p.count` behind one server address: its
    /// session indices all fall in its share ([`Partition::owner`]), and it records every
    /// index it adds or removes for [`Endpoint::take_index_changes`] (starting with those
    /// it holds now).
    pub fn set_partition(&mut self, p: Partition) {
        self.by_index.set_partition(p);
    }

    /// This endpoint's share of the index space, when it has one.
    pub fn partition(&self) -> Option<Partition> {
        self.by_index.partition()
    }

    /// The session indices added and removed since the last call (always empty unless
    /// [`Endpoint::set_partition`] was called).
    pub fn take_index_changes(&mut self) -> Vec<IndexChange> {
        self.by_index.take_changes()
    }

    /// Whether [`Endpoint::take_index_changes`] has something (no allocation).
    pub fn has_index_changes(&self) -> bool {
        self.by_index.has_changes()
    }

    /// Server: client `id` completed a handshake with another worker at `now`. Its
    /// connection here, if any, closes as [`CloseReason::Superseded`] once the previous
    /// session's grace ([`Timers::previous_session_grace`]) has passed, unless a
    /// handshake completes here first: meanwhile it still opens what the client sent
    /// before it switched (a client that moved and rekeyed), as a rekey's previous
    /// session would. Returns whether there was one.
    pub fn supersede(&mut self, id: &str, now: Instant) -> bool {
        let Some(h) = self.by_client_id.get(id).copied() else {
            return false;
        };
        if let Some(c) = self.conns.get_mut(&h) {
            c.superseded_until = Some(now + self.config.timers.previous_session_grace);
        }
        self.reschedule(h);
        true
    }

    /// The deployment secret (the carriers key their knocks from it).
    pub fn secret(&self) -> &DeploymentSecret {
        &self.config.secret
    }

    /// The CA certificate (DER) of the deployment.
    pub fn ca_der(&self) -> &[u8] {
        &self.config.ca_cert_der
    }

    /// The wall-clock time at monotonic instant `now`, from the anchors.
    pub fn wall_time(&self, now: Instant) -> UnixTime {
        self.wall(now)
    }

    fn wall(&self, now: Instant) -> UnixTime {
        let elapsed = now.saturating_duration_since(self.mono_anchor);
        UnixTime::since_unix_epoch(Duration::from_secs(self.wall_anchor.as_secs()) + elapsed)
    }

    fn fresh_index(&mut self) -> u32 {
        loop {
            let Some(i) = self.by_index.place(self.rng.next_u32()) else {
                continue;
            };
            if i != 0 && !self.by_index.contains_key(&i) && !self.half_open.contains_index(i) {
                return i;
            }
        }
    }

    fn push_transmits(&mut self, remote: SocketAddr, datagrams: impl IntoIterator<Item = Vec<u8>>) {
        for data in datagrams {
            self.transmits.push_back(Transmit { remote, data });
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
            Box::new(Connection::client(remote, server_name, now)),
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
        let remote = self
            .conns
            .get(&handle)
            .map(|c| c.remote)
            .ok_or(ProtoError::UnknownConnection)?;
        // On a link bound to its outer session, the bound suite first.
        let suites: Vec<Suite> = self
            .link_bindings
            .contains_key(&remote)
            .then_some(Suite::Bound)
            .into_iter()
            .chain(self.config.suites.iter().copied())
            .collect();
        let hs = ClientHandshake::start(
            &mut self.rng,
            &suites,
            &self.config.versions,
            local_index,
            self.config.max_datagram,
            now,
            self.config.timers.handshake_retransmit,
        )?;
        let Some(conn) = self.conns.get_mut(&handle) else {
            return Err(ProtoError::UnknownConnection);
        };
        if let Some(old) = conn.handshake.replace(Box::new(hs)) {
            self.by_index.remove(&old.local_index);
        }
        self.by_index.insert(local_index, handle);
        self.send_handshake_datagrams(now, handle);
        self.reschedule(handle);
        Ok(())
    }

    /// Queues the current handshake datagrams of a client connection, with fresh MACs.
    fn send_handshake_datagrams(&mut self, now: Instant, handle: ConnectionHandle) {
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        let Some(hs) = &conn.handshake else { return };
        let cookie = self
            .cookies
            .cookie(&conn.remote, now, self.config.timers.cookie_rotation);
        let mut datagrams = hs.datagrams.clone();
        for d in &mut datagrams {
            stamp_macs(&self.deployment, d, cookie.as_ref());
        }
        conn.last_sent = now;
        let remote = conn.remote;
        self.push_transmits(remote, datagrams);
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
            Some(PacketType::Data | PacketType::DataOffload) => self.handle_data(now, remote, buf),
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
        let (handle, conn) = find(&self.by_index, &mut self.conns, header.receiver)?;
        let before = conn.remote;
        let opened = conn.open(now, remote, header, buf, &self.config.timers)?;
        if opened.confirmed_first {
            self.events.push_back(Event::Confirmed { conn: handle });
        }
        if opened.moved {
            self.moved(handle, before, remote);
            self.events.push_back(Event::AddressChanged {
                conn: handle,
                remote,
            });
        }
        if opened.from_next {
            self.promote_next(now, handle);
        }
        if opened.rekey {
            // A failure to start it leaves the time-based rekey to try again.
            let _ = self.start_client_handshake(now, handle);
        }
        self.reschedule(handle);
        if opened.payload.is_empty() {
            Ok(None)
        } else {
            Ok(Some(Received {
                conn: handle,
                payload: opened.payload,
                offload: header.offload,
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
            if let Some(retired) = conn.install(*next, now, grace) {
                self.by_index.remove(&retired);
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
        if !check_mac1(&self.deployment, buf, FRAG_TRAILER_LEN) {
            return Err(DropReason::BadMac1);
        }
        // mac2 is optional except under load, but a present mac2 must be valid: only the
        // server checks cookies, so a client accepts only an empty one.
        if frag.mac2 != [0u8; MAC_LEN]
            && !(self.config.accept && self.cookies.mac2_valid(remote, buf, &frag.mac2))
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
        self.half_open
            .expire(now, self.config.timers.pending_timeout);
        let key = (remote, frag.sender);
        // A retransmitted Init whose Resp was lost: send the same Resp again.
        if let Some(resp) = self.half_open.answered(key, frag.offset == 0, now) {
            self.push_transmits(remote, resp);
            return Ok(());
        }
        let source = source_key(
            self.link_sources
                .get(&remote)
                .copied()
                .unwrap_or_else(|| remote.ip()),
        );
        // From the address of an established connection: a rekey, kept in the reserve.
        let rekey = self
            .by_remote
            .get(&remote)
            .and_then(|h| self.conns.get(h))
            .is_some_and(|c| c.remote == remote);
        if self.half_open.under_load(source, rekey) && frag.mac2 == [0u8; MAC_LEN] {
            if let Some(reply) = self
                .cookies
                .reply(&self.deployment, &mut self.rng, remote, frag)
            {
                self.push_transmits(remote, [reply]);
            }
            return Err(DropReason::CookieRequired);
        }
        let Some(msg) = self
            .half_open
            .add_init_fragment(key, source, frag, now, rekey)?
        else {
            return Ok(());
        };
        let local_index = self.fresh_index();
        let wall = self.wall(now);
        let binding = self.link_bindings.get(&remote).map(|b| &**b);
        let ctx = self.config.handshake_ctx(&self.deployment, wall, binding);
        match self.half_open.respond(
            &mut self.rng,
            (key, source),
            local_index,
            &msg,
            &ctx,
            now,
            rekey,
        ) {
            Ok(resp) => {
                self.push_transmits(remote, resp);
                Ok(())
            }
            Err(error) => {
                self.events.push_back(Event::HandshakeRejected {
                    remote,
                    error: error.clone(),
                });
                Err(DropReason::Handshake(error))
            }
        }
    }

    /// Checks a fixed-size server-to-client packet (cookie reply, alert) and finds the
    /// connection named by the receiver index at `index_at`.
    fn fixed_size_packet(
        &self,
        buf: &[u8],
        len: usize,
        index_at: usize,
        what: &'static str,
    ) -> Result<(ConnectionHandle, u32), DropReason> {
        let receiver = check_fixed_size(&self.deployment, buf, len, index_at, what)?;
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
        let reply: &[u8; COOKIE_REPLY_LEN] = buf.try_into().map_err(|_| DropReason::Unexpected)?;
        let conn = self
            .conns
            .get_mut(&handle)
            .ok_or(DropReason::UnknownIndex)?;
        let hs = conn.handshake_for(receiver).ok_or(DropReason::Unexpected)?;
        if hs.cookie_taken {
            // One cookie per sending of the Init: a replayed reply gets nothing sent.
            return Err(DropReason::Unexpected);
        }
        let first = hs.datagrams.first().ok_or(DropReason::Unexpected)?;
        self.cookies
            .accept_reply(&self.deployment, reply, first, remote, now)?;
        hs.cookie_taken = true;
        self.send_handshake_datagrams(now, handle);
        Ok(())
    }

    fn handle_resp_fragment(
        &mut self,
        now: Instant,
        frag: &Fragment<'_>,
    ) -> Result<(), DropReason> {
        let wall = self.wall(now);
        let (handle, conn) = find(&self.by_index, &mut self.conns, frag.receiver)?;
        let remote = conn.remote;
        let server_name = conn.server_name.as_deref().unwrap_or_default();
        let Some(hs) = conn
            .handshake
            .as_mut()
            .filter(|h| h.local_index == frag.receiver)
        else {
            return Err(DropReason::Unexpected);
        };
        let binding = self.link_bindings.get(&remote).map(|b| &**b);
        let ctx = self.config.handshake_ctx(&self.deployment, wall, binding);
        let done = match hs.on_resp_fragment(frag, server_name, &ctx)? {
            RespStep::Incomplete => return Ok(()),
            RespStep::ResendFinish => {
                // Our Finish was lost: send it again.
                let datagrams = hs.datagrams.clone();
                self.push_transmits(remote, datagrams);
                return Ok(());
            }
            RespStep::Complete(Ok(done)) => *done,
            RespStep::Complete(Err(error)) => {
                // A forged or corrupted Resp must not kill the handshake (anyone with the
                // deployment's mac1 key can inject one). A refused server certificate or
                // version is remembered: if no genuine Resp completes the handshake by
                // the next retransmission, a first handshake fails with it; a rekey never
                // closes the session (review L1).
                if matches!(
                    error,
                    HandshakeError::PeerCertificate(_) | HandshakeError::Downgrade { .. }
                ) {
                    hs.refused = Some(error.clone());
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
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        let Some(hs) = conn.handshake.as_ref() else {
            return;
        };
        let mut finish =
            hs.finish_datagrams(server_index, &done.finish_msg, self.config.max_datagram);
        for d in &mut finish {
            stamp_macs(&self.deployment, d, None);
        }
        let timers = &self.config.timers;
        let result = conn.complete_client(server_index, done, finish.clone(), now, timers);
        let remote = conn.remote;
        if let Some((peer, suite)) = result.connected {
            self.events.push_back(Event::Connected {
                conn: handle,
                peer,
                remote,
                suite,
            });
        }
        if let Some(index) = result.retired {
            self.by_index.remove(&index);
        }
        self.push_transmits(remote, finish);
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
        if !self.half_open.contains_index(frag.receiver) {
            // A retransmitted Finish for a session already established: confirm again.
            if let Some(&handle) = self.by_index.get(&frag.receiver) {
                self.send_keepalive(now, handle);
                return Ok(());
            }
            return Err(DropReason::UnknownIndex);
        }
        let wall = self.wall(now);
        // The binding is in the transcript since TH1; the Finish needs no more of it.
        let ctx = self.config.handshake_ctx(&self.deployment, wall, None);
        match self
            .half_open
            .on_finish_fragment(frag.receiver, frag, &ctx)?
        {
            FinishStep::Incomplete => Ok(()),
            FinishStep::Established(client) => {
                self.establish_server(now, remote, frag.receiver, *client);
                Ok(())
            }
            FinishStep::Failed(error) => Err(DropReason::Handshake(error)),
            FinishStep::Refused { error, alert } => {
                if let Some(alert) = alert {
                    self.push_transmits(remote, [alert]);
                }
                self.events.push_back(Event::HandshakeRejected {
                    remote,
                    error: error.clone(),
                });
                Err(DropReason::Handshake(error))
            }
        }
    }

    fn establish_server(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local_index: u32,
        client: Established,
    ) {
        let Established {
            client_index,
            keys,
            peer,
        } = client;
        let suite = keys.suite;
        let session = Session::new(local_index, client_index, keys, now);
        let handle = if let Some(&h) = self.by_client_id.get(&peer.id) {
            // The same client again (rekey or reconnect): keep the handle.
            if let Some(conn) = self.conns.get_mut(&h) {
                let timers = &self.config.timers;
                let before = conn.remote;
                let (retired, moved) = conn.server_rekey(session, remote, peer, now, timers);
                if let Some(index) = retired {
                    self.by_index.remove(&index);
                }
                if moved {
                    self.moved(h, before, remote);
                    self.events
                        .push_back(Event::AddressChanged { conn: h, remote });
                }
                self.events.push_back(Event::Rekeyed { conn: h });
            }
            h
        } else {
            let h = ConnectionHandle(self.next_conn);
            self.next_conn += 1;
            self.conns.insert(
                h,
                Box::new(Connection::server(remote, peer.clone(), session, now)),
            );
            self.by_client_id.insert(peer.id.clone(), h);
            self.by_remote.insert(remote, h);
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
        let hs = conn.handshake.as_ref().ok_or(DropReason::Unexpected)?;
        let sealed = buf
            .get(10..10 + 1 + TAG_LEN)
            .ok_or(DropReason::Unexpected)?;
        let code = hs.open_alert(sealed)?;
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
        self.deadlines.remove(handle);
        for index in conn.local_indices() {
            self.by_index.remove(&index);
        }
        if let Some(peer) = &conn.peer
            && self.by_client_id.get(&peer.id) == Some(&handle)
        {
            self.by_client_id.remove(&peer.id);
        }
        if self.by_remote.get(&conn.remote) == Some(&handle) {
            self.by_remote.remove(&conn.remote);
        }
        self.events.push_back(Event::Closed {
            conn: handle,
            reason,
        });
    }

    /// Server: connection `handle` now speaks from `to`, no longer from `from`.
    fn moved(&mut self, handle: ConnectionHandle, from: SocketAddr, to: SocketAddr) {
        if !self.config.accept {
            return;
        }
        if self.by_remote.get(&from) == Some(&handle) {
            self.by_remote.remove(&from);
        }
        self.by_remote.insert(to, handle);
    }

    fn send_keepalive(&mut self, now: Instant, handle: ConnectionHandle) {
        let mut buf = [0u8; DATA_OVERHEAD];
        if let Ok((remote, n)) = self.seal(now, handle, &mut buf, 0) {
            self.push_transmits(remote, [buf[..n].to_vec()]);
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
        self.seal_with(now, conn, buf, payload_len, false)
    }

    /// As [`Endpoint::seal`]; with `offload`, as a type 7 packet: the payload is an IP
    /// packet whose TCP or UDP checksum the receiver fills in (docs/PROTOCOL.md §5.3).
    ///
    /// # Errors
    /// As [`Endpoint::seal`], and [`ProtoError::OffloadNotNegotiated`] with `offload` when
    /// the current session is version 1 ([`Endpoint::offload`] says which).
    pub fn seal_with(
        &mut self,
        now: Instant,
        conn: ConnectionHandle,
        buf: &mut [u8],
        payload_len: usize,
        offload: bool,
    ) -> Result<(SocketAddr, usize), ProtoError> {
        let c = self
            .conns
            .get_mut(&conn)
            .ok_or(ProtoError::UnknownConnection)?;
        let sealed = c.seal(now, buf, payload_len, offload, &self.config.timers)?;
        if sealed.rekey {
            self.start_client_handshake(now, conn)?;
        }
        Ok((sealed.remote, sealed.len))
    }

    /// Whether `conn`'s current session carries checksum offload (type 7 packets, session
    /// version 2 on).
    pub fn offload(&self, conn: ConnectionHandle) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.offload())
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
        let half_open = self
            .half_open
            .next_expiry(self.config.timers.pending_timeout);
        match self.deadlines.next() {
            Some(at) => Some(half_open.map_or(at, |p| p.min(at))),
            None => half_open,
        }
    }

    /// Makes sure the timer queue holds an entry no later than the connection's next
    /// deadline. A deadline that moved later pushes nothing (see `deadlines.rs`), so this
    /// is cheap enough to run for every packet.
    fn reschedule(&mut self, h: ConnectionHandle) {
        let Some(c) = self.conns.get(&h) else { return };
        if let Some(deadline) = c.next_deadline(&self.config.timers) {
            self.deadlines.schedule(h, deadline);
        }
    }

    /// Runs every timer due at `now`: retransmissions, keepalives, rekeys, dead peers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.half_open
            .expire(now, self.config.timers.pending_timeout);
        self.cookies
            .rotate_if_due(now, self.config.timers.cookie_rotation, &mut self.rng);
        while let Some(h) = self.deadlines.pop_due(now) {
            self.run_timers(now, h);
            self.reschedule(h);
        }
    }

    fn run_timers(&mut self, now: Instant, h: ConnectionHandle) {
        let t = self.config.timers.clone();
        let Some(c) = self.conns.get_mut(&h) else {
            return;
        };
        if c.superseded_until.is_some_and(|until| now >= until) {
            self.close(h, CloseReason::Superseded);
            return;
        }
        if let Some(index) = c.expire_previous(now) {
            self.by_index.remove(&index);
        }
        match c.handshake_timer(now, &t, &mut self.rng) {
            HandshakeTimer::Idle => {}
            HandshakeTimer::Retransmit => {
                let Some(c) = self.conns.get_mut(&h) else {
                    return;
                };
                let first = c.current.is_none();
                if let Some(hs) = c.handshake.as_mut() {
                    hs.cookie_taken = false;
                    // A first handshake whose only Resp refused the server: final now.
                    if first && let Some(error) = hs.refused.take() {
                        self.fail_connection(h, error);
                        return;
                    }
                }
                self.send_handshake_datagrams(now, h);
            }
            HandshakeTimer::Abandoned { retired, failed } => {
                if let Some(index) = retired {
                    self.by_index.remove(&index);
                }
                if failed {
                    self.close(h, CloseReason::HandshakeFailed(HandshakeError::Timeout));
                    return;
                }
            }
        }
        let Some(c) = self.conns.get(&h) else {
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
        if c.rekey_due(now, &t) {
            let _ = self.start_client_handshake(now, h);
        }
        let Some(c) = self.conns.get(&h) else { return };
        if now.saturating_duration_since(c.last_sent) >= t.keepalive {
            self.send_keepalive(now, h);
        }
    }

    /// Information about a connection.
    pub fn connection_info(&self, h: ConnectionHandle) -> Option<ConnectionInfo> {
        self.conns.get(&h).map(|c| c.info())
    }

    /// Handles of every live connection.
    pub fn connections(&self) -> Vec<ConnectionHandle> {
        let mut v: Vec<_> = self.conns.keys().copied().collect();
        v.sort();
        v
    }

    /// Handshakes in progress on the server side (half-open).
    pub fn pending_handshakes(&self) -> usize {
        self.half_open.len()
    }

    /// Of [`Endpoint::pending_handshakes`], those from the address of an established
    /// connection (rekeys), held in a reserve no other Init can fill.
    pub fn pending_rekeys(&self) -> usize {
        self.half_open.rekeys_len()
    }
}

/// The connection that local session index `index` names. Borrows only the two tables,
/// so the caller may use the endpoint's other fields meanwhile.
fn find<'a>(
    by_index: &Indices,
    conns: &'a mut HashMap<ConnectionHandle, Box<Connection>>,
    index: u32,
) -> Result<(ConnectionHandle, &'a mut Connection), DropReason> {
    let handle = *by_index.get(&index).ok_or(DropReason::UnknownIndex)?;
    let conn = conns.get_mut(&handle).ok_or(DropReason::UnknownIndex)?;
    Ok((handle, conn))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::EcdsaP256Signer;
    use aura_testkit::{SimClock, TEST_SERVER_NAME, TestPki};

    const C: &str = "192.0.2.10:40000";
    const S: &str = "198.51.100.1:443";

    fn endpoint(pki: &TestPki, server: bool, clock: &SimClock) -> Endpoint {
        let id = if server { pki.server() } else { pki.alice() };
        let identity = crate::Identity {
            cert_der: id.cert_der.clone(),
            signer: std::sync::Arc::new(
                EcdsaP256Signer::from_pkcs8_der(&id.key_pkcs8_der).unwrap(),
            ),
        };
        let cfg = EndpointConfig::new(
            pki.ca_der().to_vec(),
            identity,
            pki.verifier().unwrap(),
            server,
        );
        Endpoint::new(cfg, [u8::from(server) + 7; 32], clock.now(), clock.wall()).unwrap()
    }

    /// Every datagram `from` has queued, handed to `to` (as from `from_addr`).
    fn pump(from: &mut Endpoint, from_addr: &str, to: &mut Endpoint, now: Instant) {
        while let Some(t) = from.poll_transmit() {
            let mut d = t.data;
            let _ = to.handle_datagram(now, from_addr.parse().unwrap(), &mut d);
        }
    }

    /// A server that is worker 2 of 3 gives its sessions only indices of its share,
    /// reports each as added and, once gone, as removed; a client that connects again
    /// through another worker closes the session here.
    #[test]
    fn a_partitioned_server_keeps_to_its_share_and_reports_its_indices() {
        let pki = TestPki::new(33).unwrap();
        let clock = SimClock::new();
        let (mut c, mut s) = (endpoint(&pki, false, &clock), endpoint(&pki, true, &clock));
        let p = Partition::new(2, 3).unwrap();
        s.set_partition(p);
        assert_eq!(s.partition(), Some(p));
        let now = clock.now();
        let h = c
            .connect(now, S.parse().unwrap(), TEST_SERVER_NAME)
            .unwrap();
        let mut live = std::collections::BTreeSet::new();
        for round in 0..5 {
            if round > 0 {
                c.start_client_handshake(now, h).unwrap();
            }
            for _ in 0..4 {
                pump(&mut c, C, &mut s, now);
                pump(&mut s, S, &mut c, now);
            }
            for ch in s.take_index_changes() {
                match ch {
                    IndexChange::Added(i) => assert!(live.insert(i), "{i} added twice"),
                    IndexChange::Removed(i) => assert!(live.remove(&i), "{i} was not live"),
                }
            }
            assert!(!live.is_empty(), "round {round}");
            assert!(
                live.iter().all(|&i| p.owner(i) == 2 && s.knows_index(i)),
                "{live:?}"
            );
        }
        assert!(!s.supersede("bob", now), "bob has no session here");
        // A handshake here within the grace keeps the connection.
        assert!(s.supersede("alice", now));
        c.start_client_handshake(now, h).unwrap();
        for _ in 0..4 {
            pump(&mut c, C, &mut s, now);
            pump(&mut s, S, &mut c, now);
        }
        let grace = s.config.timers.previous_session_grace;
        s.handle_timeout(now + grace);
        assert!(!std::iter::from_fn(|| s.poll_event()).any(|e| matches!(e, Event::Closed { .. })));
        for ch in s.take_index_changes() {
            match ch {
                IndexChange::Added(i) => assert!(live.insert(i)),
                IndexChange::Removed(i) => assert!(live.remove(&i)),
            }
        }
        assert!(!live.is_empty());
        // Without one, it closes once the grace has passed, and not before.
        let later = now + grace;
        assert!(s.supersede("alice", later));
        s.handle_timeout(later + grace / 2);
        assert!(!std::iter::from_fn(|| s.poll_event()).any(|e| matches!(e, Event::Closed { .. })));
        s.handle_timeout(later + grace);
        for ch in s.take_index_changes() {
            if let IndexChange::Removed(i) = ch {
                live.remove(&i);
            }
        }
        assert!(live.is_empty(), "{live:?} still reported live");
        let closed = std::iter::from_fn(|| s.poll_event()).any(|e| {
            matches!(
                e,
                Event::Closed {
                    reason: CloseReason::Superseded,
                    ..
                }
            )
        });
        assert!(closed);
    }

    /// Review L9: reseeding changes every later random draw (two endpoints with the same
    /// seed part ways after different fresh bytes, and stay together after the same).
    #[test]
    fn reseeding_forks_the_randomness() {
        let pki = TestPki::new(32).unwrap();
        let clock = SimClock::new();
        let draw = |e: &mut Endpoint| {
            let mut b = [0u8; 32];
            e.rng.fill_bytes(&mut b);
            b
        };
        let (mut a, mut b) = (endpoint(&pki, false, &clock), endpoint(&pki, false, &clock));
        assert_eq!(draw(&mut a), draw(&mut b), "same seed, same stream");
        a.reseed([1; 32]);
        b.reseed([1; 32]);
        assert_eq!(draw(&mut a), draw(&mut b));
        a.reseed([2; 32]);
        b.reseed([3; 32]);
        assert_ne!(
            draw(&mut a),
            draw(&mut b),
            "different fresh bytes, different streams"
        );
    }

    /// A Resp refusing the server (here a version the client never offered), injected by
    /// anyone holding the mac1 key, neither closes an established connection during a
    /// rekey nor stops the genuine Resp from completing that rekey (review L1).
    #[test]
    fn a_forged_resp_does_not_close_a_connection_in_rekey() {
        let pki = TestPki::new(31).unwrap();
        let clock = SimClock::new();
        let (mut c, mut s) = (endpoint(&pki, false, &clock), endpoint(&pki, true, &clock));
        let now = clock.now();
        let h = c
            .connect(now, S.parse().unwrap(), TEST_SERVER_NAME)
            .unwrap();
        for _ in 0..4 {
            pump(&mut c, C, &mut s, now);
            pump(&mut s, S, &mut c, now);
        }
        assert!(c.conns.get(&h).unwrap().current.is_some(), "connected");

        // A rekey: the client's Init reaches the server, whose Resp the test holds back.
        c.start_client_handshake(now, h).unwrap();
        pump(&mut c, C, &mut s, now);
        let resp: Vec<Vec<u8>> = std::iter::from_fn(|| s.poll_transmit())
            .map(|t| t.data)
            .collect();
        assert!(resp.len() >= 2 && resp[0][0] == PacketType::Resp as u8);
        let mut forged = resp[0].clone();
        forged[14] = 9; // the Resp's version
        stamp_macs(&c.deployment, &mut forged, None);
        let from: SocketAddr = S.parse().unwrap();
        let mut f = forged;
        let r = c.handle_datagram(now, from, &mut f);
        assert!(r.is_ok(), "a lone first fragment is buffered: {r:?}");
        let refused = resp[1..].iter().any(|d| {
            let mut d = d.clone();
            matches!(
                c.handle_datagram(now, from, &mut d),
                Err(DropReason::Handshake(HandshakeError::Downgrade { .. }))
            )
        });
        assert!(refused, "the forged Resp was read and refused");
        assert!(
            c.conns.contains_key(&h),
            "the forged Resp closed the connection"
        );
        assert!(c.conns.get(&h).unwrap().current.is_some());
        // The genuine Resp still completes the rekey: the client answers with its Finish.
        for d in &resp {
            let mut d = d.clone();
            let _ = c.handle_datagram(now, from, &mut d);
        }
        let finish: Vec<Vec<u8>> = std::iter::from_fn(|| c.poll_transmit())
            .map(|t| t.data)
            .collect();
        assert!(
            finish.iter().any(|d| d[0] == PacketType::Finish as u8),
            "no Finish after the genuine Resp"
        );
        // Even when the rekey's retransmission timer fires, the session stays.
        c.handle_timeout(now + Duration::from_secs(2));
        assert!(c.conns.contains_key(&h));
    }
}
