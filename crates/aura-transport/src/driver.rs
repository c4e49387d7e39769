//! The driver: one task that owns the protocol endpoint and moves datagrams between it,
//! the UDP socket, the stream links, and the packet connections.
//!
//! Every input (a UDP datagram, a link datagram, a command from a connection, a timer) is
//! handled to completion before the next, so the endpoint needs no lock. Sealing and
//! opening happen in the driver's reusable buffers.
//!
//! UDP is read and written in batches ([`crate::carrier::udp`]): one readiness event
//! drains up to 32 receive buffers with `recvmmsg`, each possibly a GRO train of
//! equal-sized datagrams, opened in place. A `send_batch` is sealed and shaped packet by
//! packet into a send queue, then sent with as few system calls as possible: consecutive
//! datagrams to one destination of one size (the last may be shorter) go out as one GSO
//! train. Shaped sizes are equal under the `None` and `Constant` profiles and within an
//! HTTPS bucket; under `Jitter` they differ and each datagram is its own `sendmsg`.
//! Without GSO/GRO (old kernels, or quinn-udp unable to set the socket up) the same code
//! sends and receives one datagram per call.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aura_pki::Verifier;
use aura_proto::{
    CloseReason, ConnectionHandle, DATA_OVERHEAD, Endpoint, Event, HandshakeError, IndexChange,
    Partition, SEAL_HEADROOM, wire::PacketType,
};
use bytes::BytesMut;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::batch::{BatchPool, PacketBatch, QueueLimit, SendBudget};
use crate::budget::Budget;
use crate::camo::datagram::{DatagramCamo, Side, wire_len_bound};
use crate::camo::knock::{KnockKeys, ReplayFilter};
use crate::camo::mask::{Mask, MaskSeed, next_switch};
use crate::camo::shape::Profile;
use crate::carrier::Carrier;
use crate::carrier::link::{Arena, DatagramLink, is_synthetic, synthetic_addr};
use crate::carrier::udp::{BatchSocket, RxBatch, TxQueue};
use crate::conn::{Command, Counters, PacketConn, unix_now};
use crate::error::TransportError;
use crate::inbox::{InboxSender, inbox};
use crate::refusals::{self, Line as RefusalLine, Refusal, RefusalLog};
use crate::stats::{self, DriverStats, SharedDriverStats};

/// Depth of a connection's queue of received batches (one batch per turn of the driver's
/// loop, up to [`BATCH_BYTES`]: what one `recvmmsg` or one turn's link datagrams brought
/// for that connection).
/// When the application does not keep up, further batches are dropped and their packets
/// counted.
pub const CONN_QUEUE: usize = 256;
/// Most bytes of received packets a connection may have handed over and not yet consumed
/// (recycled by whoever wrote them out: the TUN writer, in the daemons). Past it, the
/// driver drops what it received, as a router drops at a full queue, so a consumer slower
/// than the link costs neither unbounded memory nor queueing delay: 2 MiB is about 1,500
/// full-size packets (wireguard-go queues up to 1,024 per peer), 3.4 ms at 5 Gbit/s. 1 MiB
/// cost a tenth of the throughput, 4 MiB doubled the RTT under load
/// (docs/adr/0017-speed-second-step.md).
pub const INBOUND_QUEUE_BYTES: usize = 2 << 20;
/// Most bytes of packets the connections of one driver may have sent and the driver not
/// yet sealed ([`SendBudget`]); a sender waits for room.
pub const SEND_QUEUE_BYTES: usize = 512 << 10;
/// Most bytes of packets in one batch handed over: a turn that brings a connection more
/// (one `recvmmsg` of GRO-coalesced datagrams can bring 2 MiB) hands it over in several, so
/// a batch's buffer, which its pool keeps for reuse, never grows past this (and one batch
/// alone never fills the queue above).
pub const BATCH_BYTES: usize = 128 << 10;
/// Largest UDP datagram read.
const MAX_UDP: usize = 65_536;

/// Disguises UDP datagrams (docs: [`crate::camo::datagram`]) with the day's mask.
struct UdpCamo {
    dg: DatagramCamo,
    masks: MaskSeed,
    mask: Mask,
    /// The mask for datagrams of circuit links ([`DriverHandle::add_circuit_link`]): the
    /// day's, but never unpadded, so a relay's two sides are not matched by size.
    link_mask: Mask,
    /// The largest circuit link datagram (the smallest `max_len` of the driver's circuit
    /// links): the first flight over one is no longer.
    link_max: usize,
    /// When the mask in force ends (Unix seconds).
    until: i64,
    /// The wall clock at the start of this turn of the driver's loop (Unix seconds).
    now: u64,
    /// Client: datagrams sent to each server address so far, up to [`EARLY_DATAGRAMS`].
    early: HashMap<SocketAddr, u32>,
    /// Server: what each unproven address may still be sent (anti-amplification).
    budget: Budget,
    /// Server: what it refused, for a rate-limited log.
    refusals: RefusalLog,
}

/// Most batches of real packets held for one connection while its cover traffic blocks;
/// past this, its batches go at once.
const MAX_HELD_BATCHES: usize = 64;

/// Most link datagrams handled in one turn of the driver's loop (then one flush): a UDP
/// receive batch's worth.
const LINK_BATCH: usize = crate::carrier::udp::RX_SLOTS;

/// A client's first datagrams to a server address that go out in bursts of at least
/// [`MIN_EARLY_BURST`] (docs/PROTOCOL.md §12.2: chaff).
const EARLY_DATAGRAMS: u32 = 64;
/// The fewest datagrams an early client burst holds.
const MIN_EARLY_BURST: usize = 4;

impl UdpCamo {
    fn new(ep: &Endpoint, masks: MaskSeed) -> Self {
        let now = ep.wall_time(Instant::now()).as_secs();
        let unix = i64::try_from(now).unwrap_or(i64::MAX);
        let side = if ep.is_server() {
            Side::Server
        } else {
            Side::Client
        };
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        let mask = masks.mask_at(unix);
        Self {
            dg: DatagramCamo::new(side, KnockKeys::new(ep.secret()), &seed, now),
            link_mask: padded(&mask, crate::camo::shape::MAX_PADDED),
            link_max: crate::camo::shape::MAX_PADDED,
            mask,
            until: next_switch(unix),
            masks,
            now,
            early: HashMap::new(),
            budget: Budget::default(),
            refusals: RefusalLog::new(Instant::now()),
        }
    }

    /// Client: completes every early burst in `tx` to [`MIN_EARLY_BURST`] datagrams with
    /// chaff, which the server drops. The first packets of a flow are what DPI engines
    /// judge: nDPI's obfuscated-TLS heuristic, for one, takes a client burst of more
    /// than three packets for something other than a ClientHello. The first burst ends
    /// with a runt ([`DatagramCamo::append_runt`]), too short to read as random: nDPI's
    /// "Suspicious Entropy" is decided by the last of a flow's first four packets.
    fn pad_bursts(&mut self, tx: &mut TxQueue) {
        if self.dg.side() != Side::Client {
            return;
        }
        // The common case, once a flow is past its start: one destination, done. No
        // allocation on the per-batch path.
        let Some(first) = tx.destinations().next() else {
            return;
        };
        if self
            .early
            .get(&first)
            .is_some_and(|n| *n >= EARLY_DATAGRAMS)
            && tx.destinations().all(|d| d == first)
        {
            return;
        }
        let mut counts: Vec<(SocketAddr, usize)> = Vec::new();
        for to in tx.destinations() {
            match counts.iter_mut().find(|(a, _)| *a == to) {
                Some((_, n)) => *n += 1,
                None => counts.push((to, 1)),
            }
        }
        for (to, n) in counts {
            let sent = self.early.entry(to).or_insert(0);
            if *sent >= EARLY_DATAGRAMS {
                continue;
            }
            let first_burst = *sent == 0;
            let chaff = MIN_EARLY_BURST.saturating_sub(n);
            *sent = sent.saturating_add(u32::try_from(n + chaff).unwrap_or(u32::MAX));
            for i in 0..chaff {
                if !tx.has_room(wire_len_bound(1)) {
                    break;
                }
                let UdpCamo { dg, mask, now, .. } = self;
                // The fourth datagram of the flow is a runt: nDPI judges a flow's entropy
                // by the last of its first four packets.
                if first_burst && i + 1 == chaff {
                    tx.push_with(to, |buf| dg.append_runt(buf));
                } else {
                    let max_len = crate::camo::shape::max_padded_for(&to);
                    tx.push_with(to, |buf| dg.append_chaff(mask, *now, max_len, buf));
                }
            }
        }
    }

    /// Reads the clock; switches to the next day's mask at 02:00 UTC.
    fn tick(&mut self, now: u64) {
        self.now = now;
        let unix = i64::try_from(now).unwrap_or(i64::MAX);
        if unix >= self.until {
            self.mask = self.masks.mask_at(unix);
            self.link_mask = padded(&self.mask, self.link_max);
            self.until = next_switch(unix);
        }
    }

    fn set_profile(&mut self, profile: Option<Profile>) {
        self.masks = self.masks.clone().with_profile(profile);
        self.mask = self
            .masks
            .mask_at(i64::try_from(self.now).unwrap_or(i64::MAX));
        self.link_mask = padded(&self.mask, self.link_max);
    }
}

/// `mask` for circuit links: the HTTPS-like profile where it pads nothing, and a first
/// flight of at most `max_len` bytes (the handshake form of an Init still fits: it is
/// sized for [`crate::camo::mask::FIRST_FLIGHT_MIN`]).
fn padded(mask: &Mask, max_len: usize) -> Mask {
    let mut m = mask.clone();
    if m.udp_profile == Profile::None {
        m.udp_profile = Profile::HttpsBuckets;
    }
    let cap = max_len / crate::camo::weight::OUT_BLOCK * crate::camo::weight::OUT_BLOCK;
    m.first_flight_len = m.first_flight_len.min(cap);
    m
}

type Reply = oneshot::Sender<Result<PacketConn, TransportError>>;

struct ConnState {
    inbound: InboxSender,
    /// Bytes handed over on `inbound` and not yet consumed ([`INBOUND_QUEUE_BYTES`]).
    queued: QueueLimit,
    counters: Arc<Counters>,
    /// Packets received this turn, handed over once the turn ends.
    pending: Option<PacketBatch>,
    /// Padding messages received this turn (dropped; reported to the cover tap).
    padding: u64,
    /// Packets received this turn (reported to the cover tap).
    received: u64,
    /// Where received batches come from (the application recycles them here).
    pool: BatchPool,
}

impl ConnState {
    /// Queues `batch` for the application, or drops it (counted) when the application has
    /// [`INBOUND_QUEUE_BYTES`] waiting already or its queue is full.
    fn hand_over(&mut self, mut batch: PacketBatch) {
        let n = batch.len() as u64;
        if !self.queued.admit(&mut batch) {
            self.counters.drops.fetch_add(n, Ordering::Relaxed);
            batch.recycle();
            return;
        }
        if let Err(batch) = self.inbound.try_send(batch) {
            self.counters.drops.fetch_add(n, Ordering::Relaxed);
            batch.recycle();
        }
    }
}

struct LinkState {
    outbound: mpsc::Sender<BytesMut>,
    /// Where this link's outbound datagrams are copied; released at each sweep.
    out: Arena,
    carrier: Carrier,
    peer: SocketAddr,
    /// A circuit link's datagrams carry the UDP carrier's camouflage (the hop at the far
    /// end reads them from its UDP socket), padded up to this many bytes; `None` for a
    /// stream carrier's link, whose datagrams go as they are.
    camo: Option<usize>,
    /// Server: when the link came, while no Aura connection has been established over
    /// it; `None` once one has (the peer holds a certificate of the deployment).
    unauthenticated_since: Option<Instant>,
}

/// Server: a stream link over which no Aura connection is established within this long
/// is closed (as a web server closes a connection that sends no complete request).
pub const UNAUTHENTICATED_LINK_TIMEOUT: Duration = Duration::from_secs(10);
/// Server: unauthenticated links at once in all; a new one closes the oldest.
pub const MAX_UNAUTHENTICATED_LINKS: usize = 1024;
/// Server: once half of [`MAX_UNAUTHENTICATED_LINKS`] are taken (under load), one source
/// (an IPv4 address, an IPv6 /64) holds at most this many; a new one closes its oldest.
/// Below that, many clients behind one address (a carrier-grade NAT reconnecting after a
/// restart) are not held back.
pub const MAX_UNAUTHENTICATED_LINKS_PER_SOURCE: usize = 16;

/// Which unauthenticated link, if any, a new link from `peer` replaces: the oldest of
/// `peer`'s source when the server is under load and the source holds its share, else
/// the oldest of all when the table is full. The newcomer always gets its chance: a
/// flood cannot keep a client out, only race it, and a client authenticates in one
/// round trip. `links`: (address, since when, peer) of each unauthenticated link.
fn link_to_evict(
    links: impl Iterator<Item = (SocketAddr, Instant, SocketAddr)>,
    peer: SocketAddr,
) -> Option<SocketAddr> {
    let key = source_key(peer);
    let (mut all, mut same) = (0usize, 0usize);
    let mut oldest_all: Option<(Instant, SocketAddr)> = None;
    let mut oldest_same: Option<(Instant, SocketAddr)> = None;
    for (addr, since, from) in links {
        all += 1;
        if oldest_all.is_none_or(|(t, _)| since < t) {
            oldest_all = Some((since, addr));
        }
        if source_key(from) == key {
            same += 1;
            if oldest_same.is_none_or(|(t, _)| since < t) {
                oldest_same = Some((since, addr));
            }
        }
    }
    let under_load = all >= MAX_UNAUTHENTICATED_LINKS / 2;
    let pick = if under_load && same >= MAX_UNAUTHENTICATED_LINKS_PER_SOURCE {
        oldest_same
    } else if all >= MAX_UNAUTHENTICATED_LINKS {
        oldest_all
    } else {
        None
    };
    pick.map(|(_, a)| a)
}

/// The source a link's peer is counted under: its IPv4 address, or its IPv6 /64.
fn source_key(peer: SocketAddr) -> [u8; 8] {
    match peer.ip() {
        std::net::IpAddr::V4(a) => {
            let o = a.octets();
            [0, 0, 0, 0, o[0], o[1], o[2], o[3]]
        }
        std::net::IpAddr::V6(a) => {
            let o = a.octets();
            [o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]]
        }
    }
}

/// Spawns and talks to the driver.
#[derive(Debug, Clone)]
pub struct DriverHandle {
    commands: mpsc::Sender<Command>,
    /// Where the driver publishes its counters.
    stats: SharedDriverStats,
}

/// Entry point to start a driver.
#[derive(Debug)]
pub struct Driver;

impl Driver {
    /// Starts a driver task around `endpoint`, reading and writing `udp` when given, its
    /// datagrams disguised by the knock keys of the endpoint's deployment secret and the
    /// daily masks of `masks`. Connections that servers accept arrive on the returned
    /// receiver.
    pub fn spawn(
        endpoint: Endpoint,
        udp: Option<UdpSocket>,
        masks: MaskSeed,
    ) -> (DriverHandle, mpsc::UnboundedReceiver<PacketConn>) {
        Self::spawn_on(endpoint, udp, masks, None)
    }

    /// [`Driver::spawn`], the task on `runtime` when given (`udp` must be registered
    /// with that runtime), on the current runtime otherwise.
    pub fn spawn_on(
        endpoint: Endpoint,
        udp: Option<UdpSocket>,
        masks: MaskSeed,
        runtime: Option<&tokio::runtime::Handle>,
    ) -> (DriverHandle, mpsc::UnboundedReceiver<PacketConn>) {
        // Unbounded: a confirmed connection must never be dropped because the application
        // was slow to take it (a burst of reconnects after a server restart completes
        // handshakes faster than one accept loop runs). Its length is bounded by the
        // connections the endpoint holds anyway.
        let (accept_tx, accept_rx) = mpsc::unbounded_channel();
        let (link_tx, link_rx) = mpsc::channel(LINK_QUEUE);
        let handle = spawn_task(
            endpoint,
            udp,
            masks,
            accept_tx,
            (link_tx, link_rx),
            None,
            runtime,
        );
        (handle, accept_rx)
    }

    /// Starts one driver per endpoint of `workers`, the workers of one server: each
    /// endpoint is given its share of the session indices, each driver reads its own
    /// socket of a [`crate::carrier::udp::bind_group`] (in group order), and they share
    /// one knock replay filter, the set of live session indices (a datagram for another
    /// worker's session, from a client that moved, is handed to that worker) and the
    /// queue of accepted connections. Worker `w`'s task runs on `runtimes[w % len]`
    /// (its socket registered there), on the current runtime when `runtimes` is empty.
    ///
    /// # Panics
    /// Never; `workers` longer than `u32::MAX` is cut there.
    pub fn spawn_workers(
        workers: Vec<(Endpoint, Option<UdpSocket>)>,
        masks: &MaskSeed,
        runtimes: &[tokio::runtime::Handle],
    ) -> (Vec<DriverHandle>, mpsc::UnboundedReceiver<PacketConn>) {
        let (accept_tx, accept_rx) = mpsc::unbounded_channel();
        let count = u32::try_from(workers.len()).unwrap_or(u32::MAX);
        let queues: Vec<_> = (0..workers.len())
            .map(|_| mpsc::channel(LINK_QUEUE))
            .collect();
        let senders: Arc<[mpsc::Sender<LinkIn>]> = queues.iter().map(|(t, _)| t.clone()).collect();
        let live = Arc::new(RwLock::new(HashSet::new()));
        let replay = Arc::new(Mutex::new(ReplayFilter::default()));
        let mut handles = Vec::with_capacity(workers.len());
        for (worker, ((mut ep, udp), queue)) in (0..count).zip(workers.into_iter().zip(queues)) {
            let Some(me) = Partition::new(worker, count) else {
                break;
            };
            ep.set_partition(me);
            let peers = Peers {
                me,
                queues: senders.clone(),
                live: live.clone(),
                replay: replay.clone(),
                arena: BytesMut::new(),
            };
            handles.push(spawn_task(
                ep,
                udp,
                masks.clone(),
                accept_tx.clone(),
                queue,
                Some(peers),
                crate::listen::runtime_of(runtimes, worker as usize),
            ));
        }
        (handles, accept_rx)
    }
}

/// Datagrams queued from a driver's links (and, for a worker, from the other workers)
/// before the driver takes them.
const LINK_QUEUE: usize = 4096;

/// Bytes a worker's hand-over arena grows by: datagrams for other workers are carved
/// from it, so handing one over allocates nothing of its own.
const HANDOFF_ARENA: usize = 64 << 10;

/// What a worker of a server shares with the others ([`Driver::spawn_workers`]).
struct Peers {
    /// This worker's share of the session indices.
    me: Partition,
    /// Every worker's queue, in worker order.
    queues: Arc<[mpsc::Sender<LinkIn>]>,
    /// The session indices live on any worker.
    live: Arc<RwLock<HashSet<u32>>>,
    /// The knock replay filter of every worker.
    replay: Arc<Mutex<ReplayFilter>>,
    /// Where datagrams handed to another worker are copied.
    arena: BytesMut,
}

impl Peers {
    /// Whether `index` names a live session of another worker.
    fn held_elsewhere(&self, index: u32) -> bool {
        self.me.owner(index) != self.me.worker
            && self
                .live
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(&index)
    }

    /// Hands `d`, an opened Aura datagram from `from` for session `index`, to the worker
    /// that holds that session. Returns false when its queue was full (the datagram is
    /// dropped, as a full socket buffer would).
    fn hand_over(&mut self, index: u32, from: SocketAddr, d: &[u8]) -> bool {
        let Some(queue) = self.queues.get(self.me.owner(index) as usize) else {
            return false;
        };
        if self.arena.capacity() - self.arena.len() < d.len() {
            self.arena.reserve(HANDOFF_ARENA.max(d.len()));
        }
        self.arena.extend_from_slice(d);
        queue
            .try_send(LinkIn::Opened(from, self.arena.split()))
            .is_ok()
    }

    /// Tells the other workers that client `id` connected here: a session they hold for
    /// it is stale (the client restarted from another address).
    fn supersede(&self, id: &str) {
        let id: Arc<str> = Arc::from(id);
        for (w, q) in self.queues.iter().enumerate() {
            if w != self.me.worker as usize {
                // A full queue loses the notice; the stale session then ends at the
                // dead-peer timeout, as it would without workers.
                let _ = q.try_send(LinkIn::Superseded(id.clone()));
            }
        }
    }

    /// Publishes the endpoint's index changes to the other workers.
    fn publish(&self, ep: &mut Endpoint) {
        if !ep.has_index_changes() {
            return;
        }
        let changes = ep.take_index_changes();
        let mut live = self
            .live
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for c in changes {
            match c {
                IndexChange::Added(i) => live.insert(i),
                IndexChange::Removed(i) => live.remove(&i),
            };
        }
    }
}

fn spawn_task(
    endpoint: Endpoint,
    udp: Option<UdpSocket>,
    masks: MaskSeed,
    accept: mpsc::UnboundedSender<PacketConn>,
    (link_tx, link_rx): (mpsc::Sender<LinkIn>, mpsc::Receiver<LinkIn>),
    peers: Option<Peers>,
    runtime: Option<&tokio::runtime::Handle>,
) -> DriverHandle {
    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let mut camo = UdpCamo::new(&endpoint, masks);
    if let Some(p) = &peers {
        camo.dg.share_replay_filter(p.replay.clone());
    }
    let shared = SharedDriverStats::default();
    let udp = udp.map(BatchSocket::new);
    let rx = RxBatch::for_socket(udp.as_ref());
    let task = Task {
        ep: endpoint,
        udp,
        rx,
        tx: TxQueue::new(),
        commands_tx: cmd_tx.downgrade(),
        commands: cmd_rx,
        accept,
        link_in_tx: link_tx,
        link_in: link_rx,
        links: HashMap::new(),
        next_link: 1,
        conns: HashMap::new(),
        dirty: Vec::new(),
        connecting: HashMap::new(),
        dial_paths: HashMap::new(),
        confirming: HashMap::new(),
        scratch: vec![0u8; MAX_UDP],
        send_budget: SendBudget::new(SEND_QUEUE_BYTES),
        camo,
        held: std::collections::VecDeque::new(),
        release_at: None,
        stats: DriverStats::default(),
        shared: shared.clone(),
        peers,
    };
    match runtime {
        Some(rt) => drop(rt.spawn(task.run())),
        None => drop(tokio::spawn(task.run())),
    }
    DriverHandle {
        commands: cmd_tx,
        stats: shared,
    }
}

impl DriverHandle {
    /// A copy of the driver's counters (at most a second old; handshakes at once).
    pub fn stats(&self) -> DriverStats {
        stats::read(&self.stats)
    }

    /// Where the driver publishes its counters; holding it does not keep the driver running.
    pub(crate) fn shared_stats(&self) -> SharedDriverStats {
        self.stats.clone()
    }

    /// Hands a stream carrier's link to the driver; returns the synthetic address the
    /// endpoint knows it by.
    ///
    /// # Errors
    /// [`TransportError::Closed`] when the driver is gone.
    pub async fn add_link(
        &self,
        link: DatagramLink,
        carrier: Carrier,
    ) -> Result<SocketAddr, TransportError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::AddLink {
                link,
                carrier,
                camo: None,
                reply: tx,
            })
            .await
            .map_err(|_| TransportError::Closed)?;
        rx.await.map_err(|_| TransportError::Closed)
    }

    /// Hands the driver a link that leads, through a relay, to a hop's UDP carrier: its
    /// datagrams are disguised as UDP datagrams are (the hop reads them from its UDP
    /// socket), each at most `max_len` bytes once padded (what one data packet of the
    /// session carrying the link holds). Returns the link's synthetic address.
    ///
    /// # Errors
    /// [`TransportError::Closed`] when the driver is gone.
    pub async fn add_circuit_link(
        &self,
        link: DatagramLink,
        max_len: usize,
    ) -> Result<SocketAddr, TransportError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::AddLink {
                link,
                carrier: Carrier::Udp,
                camo: Some(max_len),
                reply: tx,
            })
            .await
            .map_err(|_| TransportError::Closed)?;
        rx.await.map_err(|_| TransportError::Closed)
    }

    /// Starts an Aura handshake with `remote` (a UDP address or a link's synthetic
    /// address) and waits for it to complete or fail.
    ///
    /// # Errors
    /// The handshake's failure, or [`TransportError::Closed`].
    pub async fn connect(
        &self,
        remote: SocketAddr,
        server_name: &str,
    ) -> Result<PacketConn, TransportError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Connect {
                remote,
                server_name: server_name.to_owned(),
                reply: tx,
            })
            .await
            .map_err(|_| TransportError::Closed)?;
        rx.await.map_err(|_| TransportError::Closed)?
    }

    /// Fixes the UDP padding profile at run time (`None`: the day's mask decides again);
    /// sessions are not affected.
    ///
    /// # Errors
    /// [`TransportError::Closed`] when the driver is gone.
    pub async fn set_udp_profile(&self, profile: Option<Profile>) -> Result<(), TransportError> {
        self.commands
            .send(Command::SetUdpProfile(profile))
            .await
            .map_err(|_| TransportError::Closed)
    }

    /// Replaces this endpoint's own certificate and signing key (a reload) for the
    /// handshakes that start from now; sessions already made are not touched.
    ///
    /// # Errors
    /// [`TransportError::Closed`] when the driver is gone.
    pub async fn set_identity(&self, identity: aura_proto::Identity) -> Result<(), TransportError> {
        self.commands
            .send(Command::SetIdentity(Box::new(identity)))
            .await
            .map_err(|_| TransportError::Closed)
    }

    /// Replaces the certificate verifier (a new CRL): connected peers the new verifier
    /// refuses are closed.
    ///
    /// # Errors
    /// [`TransportError::Closed`] when the driver is gone.
    pub async fn set_verifier(&self, verifier: Verifier) -> Result<(), TransportError> {
        self.commands
            .send(Command::SetVerifier(Box::new(verifier)))
            .await
            .map_err(|_| TransportError::Closed)
    }
}

enum LinkIn {
    Datagram(SocketAddr, BytesMut),
    Closed(SocketAddr),
    /// Another worker read this datagram, already opened from its camouflage, from UDP
    /// address `.0`, for a session here.
    Opened(SocketAddr, BytesMut),
    /// Another worker completed a handshake with this client.
    Superseded(Arc<str>),
}

struct Task {
    ep: Endpoint,
    udp: Option<BatchSocket>,
    /// Receive buffers, reused.
    rx: RxBatch,
    /// Shaped UDP datagrams waiting to be sent.
    tx: TxQueue,
    /// Weak, so the task ends once every handle and connection is dropped.
    commands_tx: mpsc::WeakSender<Command>,
    commands: mpsc::Receiver<Command>,
    accept: mpsc::UnboundedSender<PacketConn>,
    link_in_tx: mpsc::Sender<LinkIn>,
    link_in: mpsc::Receiver<LinkIn>,
    links: HashMap<SocketAddr, LinkState>,
    next_link: u64,
    conns: HashMap<ConnectionHandle, ConnState>,
    /// Connections with a pending batch.
    dirty: Vec<ConnectionHandle>,
    connecting: HashMap<ConnectionHandle, (SocketAddr, Reply)>,
    /// The carrier and real address of each dial, kept from its start: a failed dial's
    /// link may be gone by the time the failure is reported.
    dial_paths: HashMap<ConnectionHandle, (Carrier, SocketAddr)>,
    confirming: HashMap<ConnectionHandle, (SocketAddr, PacketConn, Reply)>,
    scratch: Vec<u8>,
    /// Shared by every connection's senders ([`SEND_QUEUE_BYTES`]).
    send_budget: SendBudget,
    camo: UdpCamo,
    /// Real packets cover traffic holds (a machine blocks), per connection in order.
    held: std::collections::VecDeque<(ConnectionHandle, PacketBatch)>,
    /// When the first held connection's blocking ends.
    release_at: Option<Instant>,
    /// Handshakes and dropped datagrams counted so far ([`crate::stats`]).
    stats: DriverStats,
    /// Where `stats` are copied for other tasks ([`Task::publish`]).
    shared: SharedDriverStats,
    /// The other workers of this server, when it has several.
    peers: Option<Peers>,
}

impl Task {
    async fn run(mut self) {
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reseed = tokio::time::interval(aura_proto::RESEED_INTERVAL);
        reseed.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reseed.tick().await; // the first tick is immediate; the endpoint was just seeded
        loop {
            let deadline = self.ep.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            let release_at = self.release_at;
            let release = async {
                match release_at {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            let udp_readable = async {
                match &self.udp {
                    Some(s) => s.readable().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = udp_readable => {
                    if r.is_ok() {
                        self.on_udp_readable();
                    }
                }
                Some(msg) = self.link_in.recv() => {
                    // What the links have queued meanwhile joins this turn, up to a UDP
                    // receive batch: one flush, one batch per session and one clock
                    // read for all of it (as a `recvmmsg` batch on UDP), not one per
                    // datagram.
                    let now = Instant::now();
                    self.on_link_in(msg, now);
                    for _ in 1..LINK_BATCH {
                        match self.link_in.try_recv() {
                            Ok(msg) => self.on_link_in(msg, now),
                            Err(_) => break,
                        }
                    }
                }
                cmd = self.commands.recv() => match cmd {
                    Some(c) => self.on_command(c).await,
                    None => return,
                },
                () = sleep => self.ep.handle_timeout(Instant::now()),
                () = release => self.release_held(Instant::now(), None).await,
                _ = sweep.tick() => {
                    self.close_stale_links(Instant::now());
                    for l in self.links.values_mut() {
                        l.out.release();
                    }
                    self.publish();
                }
                _ = reseed.tick() => {
                    let mut fresh = [0u8; 32];
                    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut fresh);
                    self.ep.reseed(fresh);
                }
            }
            self.flush().await;
        }
    }

    /// One batch of UDP datagrams (one `recvmmsg`), opened in place in the receive
    /// buffers. What is still queued in the socket keeps it readable for the next turn of
    /// the loop, so commands and links are served in between.
    fn on_udp_readable(&mut self) {
        self.tick();
        let Some(udp) = &self.udp else { return };
        if udp.try_recv(&mut self.rx).is_err() {
            return;
        }
        let now = self.camo.now;
        let server = self.camo.dg.side() == Side::Server;
        let at = Instant::now();
        for (from, d) in self.rx.datagrams() {
            let ep = &self.ep;
            let wire_len = d.len();
            let before = self.camo.dg.refusals;
            let elsewhere = Cell::new(None);
            let peers = self.peers.as_ref();
            let inner = self.camo.dg.open(d, now, |i| {
                ep.knows_index(i)
                    || peers.is_some_and(|p| p.held_elsewhere(i)) && {
                        elsewhere.set(Some(i));
                        true
                    }
            });
            if let (Some(index), Some(inner), Some(peers)) =
                (elsewhere.get(), inner.as_deref(), self.peers.as_mut())
            {
                if peers.hand_over(index, from, inner) {
                    self.stats.handed_over += 1;
                } else {
                    self.stats.handover_drops += 1;
                }
                continue;
            }
            if server && inner.is_none() {
                let after = self.camo.dg.refusals;
                let what = if after.replay > before.replay {
                    Some(Refusal::ReplayedKnock)
                } else if after.stale > before.stale {
                    Some(Refusal::StaleKnock)
                } else if after.invalid > before.invalid {
                    Some(Refusal::Unreadable)
                } else {
                    None // chaff, dropped as meant
                };
                if let Some(what) = what {
                    log_refusals(self.camo.refusals.note(at, from, what));
                }
            }
            // Everything but a live session's data counts toward what the server may
            // send an unproven address.
            let is_data = inner
                .as_deref()
                .is_some_and(|i| i.first().is_some_and(|&t| PacketType::is_data(t)));
            if server && !is_data {
                self.camo.budget.received(from, wire_len, at);
            }
            let Some(inner) = inner else {
                continue;
            };
            deliver(
                &mut self.ep,
                &mut self.conns,
                &mut self.dirty,
                &mut self.stats,
                at,
                from,
                inner,
            );
        }
    }

    /// Copies the counters where other tasks read them.
    fn publish(&mut self) {
        self.stats.knock = self.camo.dg.refusals;
        *self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = self.stats;
    }

    fn carrier_of(&self, addr: &SocketAddr) -> Carrier {
        self.links.get(addr).map_or(Carrier::Udp, |l| l.carrier)
    }

    /// What a link's forwarding task queued: a datagram, or the link's end.
    fn on_link_in(&mut self, msg: LinkIn, now: Instant) {
        match msg {
            LinkIn::Datagram(from, mut d) => self.on_link_datagram(from, &mut d, now),
            LinkIn::Closed(addr) => self.on_link_closed(addr),
            LinkIn::Opened(from, mut d) => deliver(
                &mut self.ep,
                &mut self.conns,
                &mut self.dirty,
                &mut self.stats,
                now,
                from,
                &mut d,
            ),
            LinkIn::Superseded(id) => {
                // Closed after the grace unless the client completes a handshake here
                // first (a moved client's packets under its old keys still open here
                // meanwhile).
                self.ep.supersede(&id, now);
            }
        }
    }

    /// A datagram from a link; a circuit link's is opened from its camouflage first
    /// (what opens in neither form, chaff included, is dropped).
    fn on_link_datagram(&mut self, from: SocketAddr, d: &mut [u8], at: Instant) {
        if self.links.get(&from).is_some_and(|l| l.camo.is_some()) {
            self.tick();
            let now = self.camo.now;
            let ep = &self.ep;
            if let Some(inner) = self.camo.dg.open(d, now, |i| ep.knows_index(i)) {
                deliver(
                    &mut self.ep,
                    &mut self.conns,
                    &mut self.dirty,
                    &mut self.stats,
                    at,
                    from,
                    inner,
                );
            }
            return;
        }
        deliver(
            &mut self.ep,
            &mut self.conns,
            &mut self.dirty,
            &mut self.stats,
            at,
            from,
            d,
        );
    }

    /// Hands every connection's packets of this turn to it, as one batch each.
    fn hand_over(&mut self) {
        for h in self.dirty.drain(..) {
            let Some(c) = self.conns.get_mut(&h) else {
                continue;
            };
            let padding = std::mem::take(&mut c.padding);
            let normal = std::mem::take(&mut c.received);
            c.counters.cover.received(normal, padding, Instant::now());
            if let Some(batch) = c.pending.take() {
                c.hand_over(batch);
            }
        }
    }

    /// Server: closes the links over which no Aura connection was established within
    /// [`UNAUTHENTICATED_LINK_TIMEOUT`] (dropping a link's outbound sender closes its
    /// TLS or QUIC connection).
    fn close_stale_links(&mut self, now: Instant) {
        self.camo.budget.expire(now);
        log_refusals(self.camo.refusals.roll(now));
        self.links.retain(|_, l| {
            l.unauthenticated_since
                .is_none_or(|t| now.saturating_duration_since(t) < UNAUTHENTICATED_LINK_TIMEOUT)
        });
    }

    /// Server: makes room for a new link from `peer` under the caps on unauthenticated
    /// links ([`link_to_evict`]).
    fn make_room_for_link(&mut self, peer: SocketAddr) {
        let unauthenticated = self
            .links
            .iter()
            .filter_map(|(a, l)| l.unauthenticated_since.map(|t| (*a, t, l.peer)));
        if let Some(addr) = link_to_evict(unauthenticated, peer) {
            self.links.remove(&addr);
        }
    }

    /// Whether `conn`'s current session is bound to its outer session (suite 3).
    fn bound(&self, conn: ConnectionHandle) -> bool {
        self.ep
            .connection_info(conn)
            .and_then(|i| i.suite)
            .is_some_and(|s| !s.encrypts_data())
    }

    fn on_link_closed(&mut self, addr: SocketAddr) {
        self.links.remove(&addr);
        self.ep.set_link_source(addr, None);
        self.ep.set_link_binding(addr, None);
        let gone: Vec<ConnectionHandle> = self
            .ep
            .connections()
            .into_iter()
            .filter(|h| {
                self.ep
                    .connection_info(*h)
                    .is_some_and(|i| i.remote == addr)
            })
            .collect();
        for h in gone {
            self.ep.close(h, CloseReason::Local);
        }
    }

    /// Seals and sends `batch` of `conn` now.
    async fn send_now(
        &mut self,
        conn: ConnectionHandle,
        batch: PacketBatch,
        padding: bool,
        counters: &Arc<Counters>,
        now: Instant,
    ) {
        let mut failed = 0u64;
        let mut sealed = 0u64;
        // QUIC and TLS frames show their length: inner packets are padded to the
        // day's sizes (UDP pads outside, with keystream).
        let pad_inner = counters.path().0 != Carrier::Udp;
        for (p, offload) in batch.iter_with_offload() {
            let len = if pad_inner {
                let noise = self.camo.dg.noise();
                crate::camo::shape::stream_padded_len(p, &self.camo.mask, noise)
            } else {
                p.len()
            };
            let need = SEAL_HEADROOM + len + DATA_OVERHEAD;
            if need > self.scratch.len() {
                counters.drops.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.scratch[SEAL_HEADROOM..SEAL_HEADROOM + p.len()].copy_from_slice(p);
            self.scratch[SEAL_HEADROOM + p.len()..SEAL_HEADROOM + len].fill(0);
            match self
                .ep
                .seal_with(now, conn, &mut self.scratch, len, offload)
            {
                Ok((remote, n)) => {
                    if !padding {
                        sealed += 1;
                        counters
                            .bytes_out
                            .fetch_add(p.len() as u64, Ordering::Relaxed);
                    }
                    failed += queue(
                        &self.udp,
                        &mut self.links,
                        &mut self.camo,
                        &mut self.tx,
                        remote,
                        &self.scratch[..n],
                    )
                    .await;
                }
                Err(e) => {
                    if e == aura_proto::ProtoError::OffloadNotNegotiated {
                        // The session changed version under the sender (a peer that
                        // reconnected with another build): it sees the change from now.
                        counters
                            .offload
                            .store(self.ep.offload(conn), Ordering::Relaxed);
                    }
                    counters.drops.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        batch.recycle();
        if sealed > 0 {
            counters.packets_out.fetch_add(sealed, Ordering::Relaxed);
            counters.cover.sent(sealed, now);
        }
        self.camo.pad_bursts(&mut self.tx);
        failed += send_queued(&self.udp, &mut self.tx).await;
        if failed > 0 {
            counters.drops.fetch_add(failed, Ordering::Relaxed);
        }
    }

    /// Sends the held batches whose connection is no longer blocked (all of `force`'s),
    /// each connection's in order, and sets when to look again.
    async fn release_held(&mut self, now: Instant, force: Option<ConnectionHandle>) {
        let mut keep: std::collections::VecDeque<(ConnectionHandle, PacketBatch)> =
            std::collections::VecDeque::new();
        let mut next: Option<Instant> = None;
        while let Some((c, b)) = self.held.pop_front() {
            let Some(counters) = self.conns.get(&c).map(|s| s.counters.clone()) else {
                b.recycle();
                continue;
            };
            let until = counters.cover.blocked_until().filter(|t| *t > now);
            let behind = keep.iter().any(|(k, _)| *k == c);
            if Some(c) != force && (until.is_some() || behind) {
                if let Some(t) = until.filter(|_| !behind) {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
                keep.push_back((c, b));
            } else {
                self.send_now(c, b, false, &counters, now).await;
            }
        }
        self.held = keep;
        self.release_at = next;
    }

    /// Reads the wall clock for the camouflage layer (knock times, the day's mask).
    fn tick(&mut self) {
        let now = self.ep.wall_time(Instant::now()).as_secs();
        self.camo.tick(now);
    }

    async fn on_command(&mut self, cmd: Command) {
        self.tick();
        let now = Instant::now();
        match cmd {
            Command::Send {
                conn,
                batch,
                padding,
            } => {
                let Some(counters) = self.conns.get(&conn).map(|c| c.counters.clone()) else {
                    batch.recycle();
                    return;
                };
                // Cover traffic may hold real packets a few milliseconds (padding is
                // never held); a connection's later batches wait behind its held ones.
                if !padding {
                    let blocked = counters.cover.blocked_until().filter(|t| *t > now);
                    let waiting = self.held.iter().filter(|(c, _)| *c == conn).count();
                    if blocked.is_some() || waiting > 0 {
                        if waiting < MAX_HELD_BATCHES {
                            counters.cover.delayed();
                            self.held.push_back((conn, batch));
                            if let Some(t) = blocked {
                                self.release_at = Some(self.release_at.map_or(t, |r| r.min(t)));
                            }
                            return;
                        }
                        // Too much waits: this connection's batches go now (fail open).
                        self.release_held(now, Some(conn)).await;
                    }
                }
                self.send_now(conn, batch, padding, &counters, now).await;
            }
            Command::Close { conn } => self.ep.close(conn, CloseReason::Local),
            Command::AddLink {
                link,
                carrier,
                camo,
                reply,
            } => {
                let addr = synthetic_addr(self.next_link);
                self.next_link += 1;
                let server = self.ep.is_server();
                if server {
                    self.make_room_for_link(link.peer);
                }
                if let Some(max_len) = camo
                    && max_len < self.camo.link_max
                {
                    self.camo.link_max = max_len;
                    self.camo.link_mask = padded(&self.camo.mask, max_len);
                }
                let DatagramLink {
                    peer,
                    mut inbound,
                    outbound,
                    binding,
                } = link;
                // Half-open handshakes over the link count against its real peer.
                self.ep.set_link_source(addr, Some(peer.ip()));
                self.ep.set_link_binding(addr, binding);
                self.links.insert(
                    addr,
                    LinkState {
                        outbound,
                        out: Arena::new(),
                        carrier,
                        peer,
                        camo,
                        unauthenticated_since: server.then(Instant::now),
                    },
                );
                let tx = self.link_in_tx.clone();
                tokio::spawn(async move {
                    // What the link queued while this task slept is forwarded in one go:
                    // one wake-up per batch, not per datagram.
                    let mut batch = Vec::with_capacity(LINK_BATCH);
                    while inbound.recv_many(&mut batch, LINK_BATCH).await > 0 {
                        for d in batch.drain(..) {
                            if tx.send(LinkIn::Datagram(addr, d)).await.is_err() {
                                return;
                            }
                        }
                    }
                    let _ = tx.send(LinkIn::Closed(addr)).await;
                });
                let _ = reply.send(addr);
            }
            Command::Connect {
                remote,
                server_name,
                reply,
            } => match self.ep.connect(now, remote, &server_name) {
                Ok(h) => {
                    let real = self.links.get(&remote).map_or(remote, |l| l.peer);
                    self.dial_paths.insert(h, (self.carrier_of(&remote), real));
                    self.connecting.insert(h, (remote, reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Command::SetVerifier(v) => self.ep.set_verifier(*v, now),
            Command::SetIdentity(i) => self.ep.set_identity(*i),
            Command::SetUdpProfile(p) => self.camo.set_profile(p),
        }
    }

    async fn flush(&mut self) {
        self.tick();
        self.hand_over();
        // Before anything is sent: a peer answered now may reach another worker at once.
        if let Some(p) = &self.peers {
            p.publish(&mut self.ep);
        }
        while let Some(t) = self.ep.poll_transmit() {
            let _ = queue(
                &self.udp,
                &mut self.links,
                &mut self.camo,
                &mut self.tx,
                t.remote,
                &t.data,
            )
            .await;
        }
        self.camo.pad_bursts(&mut self.tx);
        let _ = send_queued(&self.udp, &mut self.tx).await;
        while let Some(e) = self.ep.poll_event() {
            self.on_event(e);
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Connected {
                conn, peer, remote, ..
            } => {
                let (tx, rx) = inbox(CONN_QUEUE);
                if let Some(l) = self.links.get_mut(&remote) {
                    l.unauthenticated_since = None;
                }
                // The handshake completed: the peer received what was sent to it.
                if !is_synthetic(&remote) {
                    self.camo.budget.prove(remote);
                }
                if let Some(p) = &self.peers {
                    p.supersede(&peer.id);
                }
                let carrier = self.carrier_of(&remote);
                self.stats.handshake_completed(carrier);
                self.publish();
                let real_remote = self.links.get(&remote).map_or(remote, |l| l.peer);
                let counters = Arc::new(Counters::new(carrier, real_remote));
                counters
                    .offload
                    .store(self.ep.offload(conn), Ordering::Relaxed);
                counters.bound.store(self.bound(conn), Ordering::Relaxed);
                self.conns.insert(
                    conn,
                    ConnState {
                        inbound: tx,
                        queued: QueueLimit::new(INBOUND_QUEUE_BYTES),
                        counters: counters.clone(),
                        pending: None,
                        padding: 0,
                        received: 0,
                        pool: BatchPool::new(),
                    },
                );
                let Some(commands) = self.commands_tx.upgrade() else {
                    return;
                };
                let pc = PacketConn {
                    handle: conn,
                    inbound: rx,
                    budget: self.send_budget.clone(),
                    commands,
                    peer,
                    counters,
                    current: None,
                };
                if let Some((remote, reply)) = self.connecting.remove(&conn) {
                    // Wait for the server's confirmation: a refused client learns it here.
                    self.confirming.insert(conn, (remote, pc, reply));
                } else if self.accept.send(pc).is_err() {
                    self.ep.close(conn, CloseReason::Local);
                }
            }
            Event::Rekeyed { conn } => {
                if let Some(c) = self.conns.get(&conn) {
                    c.counters
                        .last_handshake
                        .store(unix_now(), Ordering::Relaxed);
                    c.counters
                        .offload
                        .store(self.ep.offload(conn), Ordering::Relaxed);
                    c.counters.bound.store(self.bound(conn), Ordering::Relaxed);
                }
            }
            Event::AddressChanged { conn, remote } => {
                // An authenticated data packet came from there.
                if !is_synthetic(&remote) {
                    self.camo.budget.prove(remote);
                }
                if let Some(c) = self.conns.get(&conn) {
                    let path = (
                        self.carrier_of(&remote),
                        self.links.get(&remote).map_or(remote, |l| l.peer),
                    );
                    *c.counters
                        .path
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = path;
                }
            }
            Event::Confirmed { conn } => {
                self.dial_paths.remove(&conn);
                if let Some((_, pc, reply)) = self.confirming.remove(&conn) {
                    let _ = reply.send(Ok(pc));
                }
            }
            Event::Closed { conn, reason } => {
                if let Some(c) = self.conns.remove(&conn) {
                    let (_, addr) = *c
                        .counters
                        .path
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    self.camo.budget.forget(addr);
                }
                let path = self.dial_paths.remove(&conn);
                let pending = self.connecting.remove(&conn).or_else(|| {
                    self.confirming
                        .remove(&conn)
                        .map(|(r, _, reply)| (r, reply))
                });
                if let Some((remote, reply)) = pending {
                    let error = match reason {
                        CloseReason::HandshakeFailed(e) => e,
                        _ => HandshakeError::Timeout,
                    };
                    let (carrier, addr) = path.unwrap_or_else(|| {
                        (
                            self.carrier_of(&remote),
                            self.links.get(&remote).map_or(remote, |l| l.peer),
                        )
                    });
                    let _ = reply.send(Err(TransportError::Handshake {
                        carrier,
                        addr,
                        error,
                    }));
                }
            }
            Event::HandshakeRejected { remote, error } => {
                self.stats.handshake_failed(&error);
                self.publish();
                let from = self.links.get(&remote).map_or(remote, |l| l.peer);
                let what = Refusal::Handshake(error.to_string());
                log_refusals(self.camo.refusals.note(Instant::now(), from, what));
            }
            _ => {}
        }
    }
}

/// Writes what the refusal log lets through: members' refusals at info, strangers'
/// noise at debug, and each interval's summary at info.
fn log_refusals(lines: Vec<RefusalLine>) {
    for line in lines {
        match line {
            RefusalLine::First { from, what } if what.notable() => {
                tracing::info!(remote = %from, "refused {what} (further refusals from this source are counted, not logged, for {}s)", refusals::INTERVAL.as_secs());
            }
            RefusalLine::First { from, what } => {
                tracing::debug!(remote = %from, "refused {what}");
            }
            RefusalLine::Summary { unshown, sources } => {
                tracing::info!(
                    "refused {unshown} more datagrams or handshakes in the last {}s (from {sources} sources beyond those logged)",
                    refusals::INTERVAL.as_secs()
                );
            }
        }
    }
}

/// Opens `d` (from `from`, received at `now`: one clock read per batch) in place and adds
/// its payload to its connection's batch of this turn; a datagram the endpoint drops is
/// counted in `stats` by reason.
fn deliver(
    ep: &mut Endpoint,
    conns: &mut HashMap<ConnectionHandle, ConnState>,
    dirty: &mut Vec<ConnectionHandle>,
    stats: &mut DriverStats,
    now: Instant,
    from: SocketAddr,
    d: &mut [u8],
) {
    let opened = match ep.handle_datagram(now, from, d) {
        Ok(o) => o,
        Err(why) => {
            stats.dropped(&why);
            return;
        }
    };
    if let Some(r) = opened
        && let Some(c) = conns.get_mut(&r.conn)
    {
        let payload = crate::camo::shape::trim_padding(d.get(r.payload).unwrap_or_default());
        if crate::cover::is_padding(payload) {
            // Cover traffic: seen on the wire, dropped here; a malformed one is a drop.
            if crate::cover::padding_ok(payload) {
                c.padding += 1;
                if c.received == 0 && c.padding == 1 {
                    dirty.push(r.conn);
                }
            } else {
                c.counters.drops.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        c.counters.packets_in.fetch_add(1, Ordering::Relaxed);
        c.counters
            .bytes_in
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        if c.pending
            .as_ref()
            .is_some_and(|b| b.bytes() + payload.len() > BATCH_BYTES)
            && let Some(full) = c.pending.take()
        {
            c.hand_over(full);
        }
        let pool = &c.pool;
        let listed = c.padding > 0 || c.received > 0;
        let batch = c.pending.get_or_insert_with(|| {
            if !listed {
                dirty.push(r.conn);
            }
            pool.take()
        });
        batch.push_with(payload, r.offload);
        c.received += 1;
    }
}

/// Sends `data` to `to`: a link's datagram goes to its queue at once; a UDP datagram is
/// shaped into the send queue `tx`, which is sent first when full. Returns how many
/// datagrams were dropped (this one, or queued ones whose send failed).
async fn queue(
    udp: &Option<BatchSocket>,
    links: &mut HashMap<SocketAddr, LinkState>,
    camo: &mut UdpCamo,
    tx: &mut TxQueue,
    to: SocketAddr,
    data: &[u8],
) -> u64 {
    if is_synthetic(&to) {
        let Some(link) = links.get_mut(&to) else {
            return 1;
        };
        let wire = match link.camo {
            None => link.out.copy(data),
            Some(max_len) => {
                let mut wire = Vec::with_capacity(wire_len_bound(data.len()));
                camo.dg
                    .append_within(data, &camo.link_mask, camo.now, max_len, &mut wire);
                link.out.copy(&wire)
            }
        };
        return u64::from(link.outbound.try_send(wire).is_err());
    }
    if udp.is_none() {
        return 1;
    }
    let mut failed = 0;
    if !tx.has_room(wire_len_bound(data.len())) {
        failed = send_queued(udp, tx).await;
    }
    let UdpCamo {
        dg,
        mask,
        now,
        budget,
        ..
    } = camo;
    let handshake_form = !data.first().is_some_and(|&t| PacketType::is_data(t));
    let max_len = crate::camo::shape::max_padded_for(&to);
    if handshake_form && dg.side() == Side::Server {
        // Resp, cookie reply, alert: within the address's budget, or not at all.
        let mut wire = Vec::new();
        dg.append_within(data, mask, *now, max_len, &mut wire);
        if !budget.may_send(to, wire.len()) {
            return failed + 1;
        }
        tx.push_with(to, |buf| buf.extend_from_slice(&wire));
        return failed;
    }
    tx.push_with(to, |buf| dg.append_within(data, mask, *now, max_len, buf));
    failed
}

/// Sends the UDP send queue; returns how many datagrams could not be sent.
async fn send_queued(udp: &Option<BatchSocket>, tx: &mut TxQueue) -> u64 {
    match udp {
        Some(u) if !tx.is_empty() => u.send(tx).await,
        _ => {
            tx.clear();
            0
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn link(i: usize) -> SocketAddr {
        synthetic_addr(i as u64 + 1)
    }

    /// `n` unauthenticated links, the i-th from `peer(i)`, each a second younger.
    fn table(
        n: usize,
        peer: impl Fn(usize) -> SocketAddr,
    ) -> Vec<(SocketAddr, Instant, SocketAddr)> {
        let t0 = Instant::now();
        (0..n)
            .map(|i| (link(i), t0 + Duration::from_secs(i as u64), peer(i)))
            .collect()
    }

    fn v4(last: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], 40_000))
    }

    #[test]
    fn circuit_links_always_pad_and_cap_their_first_flight() {
        let seed = MaskSeed::for_ca(b"a deployment");
        let unpadded = seed.clone().with_profile(Some(Profile::None)).mask_at(0);
        let m = padded(&unpadded, 1379);
        assert_eq!(m.udp_profile, Profile::HttpsBuckets);
        assert!(m.first_flight_len <= 1379 && m.first_flight_len.is_multiple_of(8));
        assert_eq!(m.first_flight_len, unpadded.first_flight_len.min(1376));
        // A padding profile is kept as it is.
        let jitter = seed.with_profile(Some(Profile::Jitter)).mask_at(0);
        assert_eq!(padded(&jitter, 1441).udp_profile, Profile::Jitter);
    }

    #[test]
    fn below_load_one_source_may_hold_many() {
        let t = table(MAX_UNAUTHENTICATED_LINKS / 2 - 1, |_| v4(1));
        assert_eq!(link_to_evict(t.into_iter(), v4(1)), None);
    }

    #[test]
    fn under_load_a_source_over_its_share_loses_its_oldest() {
        // Half the table from many sources, then the share of one source.
        let half = MAX_UNAUTHENTICATED_LINKS / 2;
        let t = table(half + MAX_UNAUTHENTICATED_LINKS_PER_SOURCE, |i| {
            if i < half {
                v4((i % 200) as u8 + 10)
            } else {
                v4(1)
            }
        });
        assert_eq!(link_to_evict(t.iter().copied(), v4(1)), Some(link(half)));
        // Another source with links to spare is not held back.
        assert_eq!(link_to_evict(t.iter().copied(), v4(2)), None);
    }

    #[test]
    fn a_full_table_loses_its_oldest_link() {
        let t = table(MAX_UNAUTHENTICATED_LINKS, |i| v4((i % 250) as u8));
        assert_eq!(link_to_evict(t.into_iter(), v4(251)), Some(link(0)));
    }

    #[test]
    fn an_ipv6_64_is_one_source() {
        let half = MAX_UNAUTHENTICATED_LINKS / 2;
        let p6 = |host: u16| SocketAddr::from(([0x2001, 0xdb8, 0, 7, 0, 0, 0, host], 443));
        let t = table(half + MAX_UNAUTHENTICATED_LINKS_PER_SOURCE, |i| {
            if i < half {
                v4((i % 200) as u8 + 10)
            } else {
                p6(i as u16)
            }
        });
        // Another address of the same /64 counts with them; another /64 does not.
        assert_eq!(link_to_evict(t.iter().copied(), p6(9999)), Some(link(half)));
        let other = SocketAddr::from(([0x2001, 0xdb8, 0, 8, 0, 0, 0, 1], 443));
        assert_eq!(link_to_evict(t.iter().copied(), other), None);
    }
}
