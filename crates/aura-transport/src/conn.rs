//! The packet connection the daemons use, whatever the carrier, and the commands it (and
//! the driver's handle) sends to the driver.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aura_pki::{VerifiedPeer, Verifier};
use aura_proto::ConnectionHandle;
use tokio::sync::{mpsc, oneshot};

use crate::batch::{PacketBatch, SendBudget};
use crate::camo::cover::Cover;
use crate::camo::shape::Profile;
use crate::carrier::Carrier;
use crate::carrier::link::DatagramLink;
use crate::cover::{CoverGuard, CoverLimit, CoverStats, CoverTap};
use crate::error::TransportError;
use crate::inbox::Inbox;

/// What connections and the driver's handle ask of the driver task.
pub(crate) enum Command {
    Send {
        conn: ConnectionHandle,
        batch: PacketBatch,
        /// Cover traffic's padding (not counted as real traffic).
        padding: bool,
    },
    Close {
        conn: ConnectionHandle,
    },
    AddLink {
        link: DatagramLink,
        carrier: Carrier,
        /// `Some(max_len)`: a circuit link (UDP camouflage, padded up to `max_len`).
        camo: Option<usize>,
        reply: oneshot::Sender<SocketAddr>,
    },
    Connect {
        remote: SocketAddr,
        server_name: String,
        reply: oneshot::Sender<Result<PacketConn, TransportError>>,
    },
    SetVerifier(Box<Verifier>),
    /// Replace the endpoint's own certificate and key (a reload).
    SetIdentity(Box<aura_proto::Identity>),
    SetUdpProfile(Option<Profile>),
}

/// Counters of one connection, updated by the driver and the connection, and where it
/// currently runs (a client that reconnects over another carrier keeps its connection).
#[derive(Debug)]
pub(crate) struct Counters {
    pub path: Mutex<(Carrier, SocketAddr)>,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub drops: AtomicU64,
    /// Unix time (seconds) of the last completed handshake.
    pub last_handshake: AtomicU64,
    /// Cover traffic: what the driver reports real traffic to.
    pub cover: Arc<CoverTap>,
    /// Whether the current session carries checksum offload (session version 2 on), as
    /// the driver last saw it.
    pub offload: AtomicBool,
    /// Whether the current session is bound to its outer TLS session, whose encryption
    /// is then the data's only one (docs/adr/0024).
    pub bound: AtomicBool,
}

/// Seconds since the Unix epoch: the clock of [`StatsSnapshot::last_handshake`] (0 if the
/// system clock is before 1970).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Counters {
    pub(crate) fn new(carrier: Carrier, remote: SocketAddr) -> Self {
        Self {
            path: Mutex::new((carrier, remote)),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            packets_in: AtomicU64::new(0),
            packets_out: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            last_handshake: AtomicU64::new(unix_now()),
            cover: Arc::default(),
            offload: AtomicBool::new(false),
            bound: AtomicBool::new(false),
        }
    }

    pub(crate) fn path(&self) -> (Carrier, SocketAddr) {
        *self.path.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A copy of a connection's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// IP payload bytes received.
    pub bytes_in: u64,
    /// IP payload bytes sent.
    pub bytes_out: u64,
    /// Packets received.
    pub packets_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Packets dropped (queue full, too large).
    pub drops: u64,
    /// Unix time (seconds) of the last completed handshake (the first, a rekey, or a
    /// reconnect that kept the connection).
    pub last_handshake: u64,
}

/// A verified connection carrying IP packets.
#[derive(Debug)]
pub struct PacketConn {
    pub(crate) handle: ConnectionHandle,
    pub(crate) inbound: Inbox,
    /// The driver's bound on bytes sent and not yet sealed.
    pub(crate) budget: SendBudget,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) peer: VerifiedPeer,
    pub(crate) counters: Arc<Counters>,
    /// The batch [`PacketConn::recv`] is reading, and how far.
    pub(crate) current: Option<(PacketBatch, usize)>,
}

async fn send_to_driver(
    commands: &mpsc::Sender<Command>,
    budget: &SendBudget,
    conn: ConnectionHandle,
    mut batch: PacketBatch,
) -> Result<(), TransportError> {
    budget.reserve(&mut batch).await;
    commands
        .send(Command::Send {
            conn,
            batch,
            padding: false,
        })
        .await
        .map_err(|_| TransportError::Closed)
}

impl PacketConn {
    /// Sends a batch of IP packets: the data path's way, no allocation per packet. The
    /// driver recycles the batch into its pool once sealed.
    ///
    /// # Errors
    /// [`TransportError::Closed`] when the connection or the driver is gone.
    pub async fn send_packets(&self, batch: PacketBatch) -> Result<(), TransportError> {
        send_to_driver(&self.commands, &self.budget, self.handle, batch).await
    }

    /// Whether packets sent now may leave their TCP or UDP checksum to the peer
    /// ([`PacketBatch::push_with`]): the current session negotiated version 2 or later. A
    /// batch sent with such packets to a session that does not carry them loses them.
    pub fn offload(&self) -> bool {
        self.counters.offload.load(Ordering::Relaxed)
    }

    /// Whether the current session is bound to the outer TLS session that carries it
    /// (suite 3, docs/adr/0024): its data is encrypted once, by that session.
    pub fn bound(&self) -> bool {
        self.counters.bound.load(Ordering::Relaxed)
    }

    /// Sends IP packets, one `Vec` each (convenience; copies them into one batch).
    ///
    /// # Errors
    /// [`TransportError::Closed`] when the connection or the driver is gone.
    pub async fn send_batch(&self, packets: Vec<Vec<u8>>) -> Result<(), TransportError> {
        self.send_packets(PacketBatch::from_packets(packets)).await
    }

    /// Sends one IP packet.
    ///
    /// # Errors
    /// [`TransportError::Closed`] when the connection or the driver is gone.
    pub async fn send(&self, packet: Vec<u8>) -> Result<(), TransportError> {
        self.send_packets(PacketBatch::from_packets([packet])).await
    }

    /// Makes `current` a batch with unread packets; `false` once the connection is closed.
    /// Cancel-safe: the only await is the inbox's.
    async fn fill(&mut self) -> bool {
        loop {
            match &self.current {
                Some((b, at)) if *at < b.len() => return true,
                Some(_) => {
                    if let Some((b, _)) = self.current.take() {
                        b.recycle();
                    }
                }
                None => {}
            }
            match self.inbound.recv().await {
                Some(b) => self.current = Some((b, 0)),
                None => return false,
            }
        }
    }

    /// Receives the next batch of IP packets, as the driver handed them over (everything
    /// that arrived for this connection in one turn of its loop): the data path's way.
    /// Recycle the batch when done with it. `None` once the connection is closed.
    pub async fn recv_packets(&mut self) -> Option<PacketBatch> {
        if !self.fill().await {
            return None;
        }
        let (b, at) = self.current.take()?;
        if at == 0 {
            return Some(b);
        }
        let rest = PacketBatch::from_packets((at..b.len()).filter_map(|i| b.get(i)));
        b.recycle();
        Some(rest)
    }

    /// Receives the next IP packet (convenience; one allocation per packet); `None` once
    /// the connection is closed.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        if !self.fill().await {
            return None;
        }
        let (b, at) = self.current.as_mut()?;
        let p = b.get(*at).map(<[u8]>::to_vec);
        *at += 1;
        p
    }

    /// Receives at least one and at most `max` packets into `out` (convenience; one
    /// allocation per packet); 0 once closed.
    pub async fn recv_batch(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> usize {
        if !self.fill().await {
            return 0;
        }
        let mut n = 0;
        while n < max {
            if let Some((b, at)) = self.current.as_mut()
                && let Some(p) = b.get(*at)
            {
                out.push(p.to_vec());
                *at += 1;
                n += 1;
                continue;
            }
            match self.inbound.try_recv() {
                Some(b) => {
                    if let Some((old, _)) = self.current.replace((b, 0)) {
                        old.recycle();
                    }
                }
                None => break,
            }
        }
        n
    }

    /// The verified peer.
    pub fn peer(&self) -> &VerifiedPeer {
        &self.peer
    }

    /// The carrier in use (it changes when the peer reconnects over another one).
    pub fn carrier(&self) -> Carrier {
        self.counters.path().0
    }

    /// The peer's network address (it changes when the peer roams or reconnects).
    pub fn remote(&self) -> SocketAddr {
        self.counters.path().1
    }

    /// The connection's counters.
    pub fn stats(&self) -> StatsSnapshot {
        snapshot(&self.counters)
    }

    /// What cover traffic did on this connection.
    pub fn cover_stats(&self) -> CoverStats {
        self.counters.cover.stats()
    }

    /// Closes the connection and forgets its keys.
    pub async fn close(self) {
        let _ = self
            .commands
            .send(Command::Close { conn: self.handle })
            .await;
    }
}

/// The sending half of a [`PacketConn`]: cheap to clone, shareable across tasks.
#[derive(Debug, Clone)]
pub struct PacketSender {
    handle: ConnectionHandle,
    commands: mpsc::Sender<Command>,
    budget: SendBudget,
    counters: Arc<Counters>,
}

impl PacketSender {
    /// Sends a batch of IP packets (see [`PacketConn::send_packets`]).
    ///
    /// # Errors
    /// [`TransportError::Closed`] when the connection or the driver is gone.
    pub async fn send_packets(&self, batch: PacketBatch) -> Result<(), TransportError> {
        send_to_driver(&self.commands, &self.budget, self.handle, batch).await
    }

    /// As [`PacketConn::offload`].
    pub fn offload(&self) -> bool {
        self.counters.offload.load(Ordering::Relaxed)
    }

    /// Sends IP packets, one `Vec` each (convenience; copies them into one batch).
    ///
    /// # Errors
    /// [`TransportError::Closed`] when the connection or the driver is gone.
    pub async fn send_batch(&self, packets: Vec<Vec<u8>>) -> Result<(), TransportError> {
        self.send_packets(PacketBatch::from_packets(packets)).await
    }

    /// The connection's counters.
    pub fn stats(&self) -> StatsSnapshot {
        snapshot(&self.counters)
    }

    /// Sends cover traffic's padding (not counted as real traffic).
    pub(crate) async fn send_padding(&self, batch: PacketBatch) -> Result<(), TransportError> {
        self.commands
            .send(Command::Send {
                conn: self.handle,
                batch,
                padding: true,
            })
            .await
            .map_err(|_| TransportError::Closed)
    }

    /// Starts cover traffic on this connection: `engine` decides when and what, `limit`
    /// (a total over many connections) may hold padding back. It runs until the guard is
    /// dropped or the connection closes, and replaces any cover traffic started before.
    /// Call within a tokio runtime.
    pub fn start_cover(&self, engine: Cover, limit: Option<Arc<CoverLimit>>) -> CoverGuard {
        crate::cover::start(self.clone(), self.counters.cover.clone(), engine, limit)
    }

    /// What cover traffic did on this connection.
    pub fn cover_stats(&self) -> CoverStats {
        self.counters.cover.stats()
    }

    /// The carrier in use.
    pub fn carrier(&self) -> Carrier {
        self.counters.path().0
    }

    /// As [`PacketConn::bound`].
    pub fn bound(&self) -> bool {
        self.counters.bound.load(Ordering::Relaxed)
    }

    /// What encrypts the session's data, for status: `"aura"` (Aura's AEAD, the UDP
    /// carrier), `"aura+outer"` (Aura's AEAD inside the carrier's outer TLS, as over a
    /// circuit), or `"outer-bound"` (the outer TLS session alone, bound to the Aura
    /// handshake: suite 3).
    pub fn encryption(&self) -> &'static str {
        if self.bound() {
            "outer-bound"
        } else if self.carrier() == Carrier::Udp {
            "aura"
        } else {
            "aura+outer"
        }
    }

    /// The peer's network address.
    pub fn remote(&self) -> SocketAddr {
        self.counters.path().1
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let _ = self
            .commands
            .send(Command::Close { conn: self.handle })
            .await;
    }
}

fn snapshot(c: &Counters) -> StatsSnapshot {
    StatsSnapshot {
        bytes_in: c.bytes_in.load(Ordering::Relaxed),
        bytes_out: c.bytes_out.load(Ordering::Relaxed),
        packets_in: c.packets_in.load(Ordering::Relaxed),
        packets_out: c.packets_out.load(Ordering::Relaxed),
        drops: c.drops.load(Ordering::Relaxed),
        last_handshake: c.last_handshake.load(Ordering::Relaxed),
    }
}

impl PacketConn {
    /// A sending half that can live in another task while this connection receives.
    pub fn sender(&self) -> PacketSender {
        PacketSender {
            handle: self.handle,
            commands: self.commands.clone(),
            budget: self.budget.clone(),
            counters: self.counters.clone(),
        }
    }
}
