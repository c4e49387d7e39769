//! The server's data path: per queue of the device, a read loop dispatching by
//! destination address to the right client; one task per client checking that each of
//! its packets comes from the client's own tunnel address (anti-spoofing) and writing
//! them to the device itself.
//!
//! Per device read (up to [`aura_tun::OFFLOAD_BATCH`] packets, a TSO super-packet split
//! into segments arrives as one read) the loop takes the peer table's read lock once and
//! hands each run of packets for one client to its connection as one batch. A client's
//! task writes each batch it receives to its queue ([`DeviceQueues::for_client`]) in one
//! call, where the batch lies ([`crate::device::write_batch`]): no further task, queue or
//! copy between the session and the device.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use aura_proto::control::{self, AddressAssign, AddressAssign6, ControlMessage, DnsAssign};
use aura_transport::camo::cover::Cover;
use aura_transport::{BatchPool, CoverGuard, PacketBatch, PacketConn, PacketSender};
use aura_tun::{PacketDevice, QueueOf, TunBuffers};

use super::metrics::Observed;
use super::pool::{IpPool, PoolError};
use crate::metrics::{Tally, Totals};
use crate::packet::{ipv4_addrs, ipv6_addrs};

/// The queues of the server's device, each its own [`PacketDevice`]. A client writes to
/// the queue of its protocol worker (the same function of its network address,
/// [`udp::worker_of`]), so with the kernel's flow steering its replies come back to that
/// queue's reader.
///
/// [`udp::worker_of`]: aura_transport::carrier::udp::worker_of
#[derive(Debug)]
pub struct DeviceQueues<D> {
    first: Arc<QueueOf<D>>,
    all: Vec<Arc<QueueOf<D>>>,
}

impl<D: PacketDevice> DeviceQueues<D> {
    /// Every queue of `device` (the first one even if the device counted none).
    pub fn new(device: &Arc<D>) -> Self {
        let first = Arc::new(QueueOf::first(device.clone()));
        let more = (1..device.queue_count()).filter_map(|i| QueueOf::new(device.clone(), i));
        let all = std::iter::once(first.clone())
            .chain(more.map(Arc::new))
            .collect();
        Self { first, all }
    }

    /// Every queue, in order.
    pub fn all(&self) -> &[Arc<QueueOf<D>>] {
        &self.all
    }

    /// The index of the queue `conn`'s packets go to (its worker's).
    pub fn index_for(&self, conn: &PacketConn) -> usize {
        aura_transport::carrier::udp::worker_of(conn.remote().ip(), self.all.len())
    }

    /// The queue `conn`'s packets go to.
    pub fn for_client(&self, conn: &PacketConn) -> Arc<QueueOf<D>> {
        self.all
            .get(self.index_for(conn))
            .unwrap_or(&self.first)
            .clone()
    }
}

/// A connected client, as the router and `aura status` see it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Client id.
    pub id: String,
    /// Tunnel address.
    pub address: Ipv4Addr,
    /// IPv6 tunnel address, when the pool is dual-stack.
    pub address6: Option<Ipv6Addr>,
    /// Sending half of its connection (also its counters, carrier and network address).
    pub sender: PacketSender,
    /// Unix time it connected.
    pub since: u64,
    /// Which admission this is (a reconnect of the same id gets a new one).
    token: u64,
}

/// What a client is told when it is admitted.
#[derive(Debug, Clone, Default)]
pub struct Welcome {
    /// Tunnel MTU announced in the [`AddressAssign`].
    pub mtu: u16,
    /// Resolvers named in the [`DnsAssign`] sent before each [`AddressAssign`].
    pub dns: Vec<std::net::IpAddr>,
    /// Further packets sent after the address (the CRL push).
    pub extra: Vec<Vec<u8>>,
    /// Unix time of admission.
    pub since: u64,
    /// `[server.relay]` on: a first `ExtendBridge` makes this connection a bridge.
    pub relay: Option<super::relay::RelayPolicy>,
    /// How the relay reaches next hops.
    pub onward: super::relay::Onward,
    /// `[server.cover]` when enabled.
    pub cover: Option<ServerCover>,
}

/// The server's cover traffic: what it grants, and the limit on all clients' padding.
#[derive(Debug, Clone)]
pub struct ServerCover {
    /// What is granted.
    pub policy: crate::options::CoverPolicy,
    /// The total budget, shared by every client's cover traffic.
    pub limit: Arc<aura_transport::CoverLimit>,
}

/// Answers a [`control::CoverRequest`]: grants it within the policy and starts the
/// server's side of the cover traffic (replacing any started before), or refuses it.
async fn answer_cover(
    conn: &PacketConn,
    request: control::CoverRequest,
    cover: Option<&ServerCover>,
    mtu: u16,
    running: &mut Option<CoverGuard>,
) {
    *running = None;
    let granted = cover.and_then(|c| {
        let (profile, budget) = c.policy.grant(request.profile, request.budget);
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        match Cover::new(
            profile,
            budget,
            usize::from(mtu),
            seed,
            std::time::Instant::now(),
        ) {
            Ok(engine) => {
                *running = Some(conn.sender().start_cover(engine, Some(c.limit.clone())));
                Some((profile, budget))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start cover traffic");
                None
            }
        }
    });
    match granted {
        Some((profile, budget)) => tracing::debug!(
            profile = profile.name(),
            asked = request.budget,
            budget,
            "cover traffic granted"
        ),
        None => tracing::debug!(
            profile = request.profile.name(),
            "cover traffic refused ([server.cover] is not enabled)"
        ),
    }
    if let Ok(p) = ControlMessage::from(control::CoverGrant { granted }).encode() {
        let _ = conn.send(p).await;
    }
}

/// Routing state shared by the device loop and the client tasks.
#[derive(Debug)]
pub struct Router {
    pool: Mutex<IpPool>,
    peers: RwLock<HashMap<Ipv4Addr, Peer>>,
    next_token: AtomicU64,
    /// Packets dropped because their source was not the client's address.
    pub spoofed: AtomicU64,
    /// Packets from the device for an address with no client.
    pub unroutable: AtomicU64,
    /// Control messages received from clients.
    pub control_in: AtomicU64,
    /// Clients refused an address: not in the static map under `static_only`.
    pub refused_not_listed: AtomicU64,
    /// Clients refused an address: the pool was exhausted.
    pub refused_exhausted: AtomicU64,
    /// Every client's traffic, by carrier, kept when it leaves ([`Router::scrape`]).
    traffic: Mutex<Tally>,
    /// What the metrics read besides the router's own counters.
    pub observed: Observed,
}

/// What a metrics scrape reads of the router.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Connected clients, by carrier.
    pub peers: std::collections::BTreeMap<&'static str, u64>,
    /// Traffic of every client so far, connected or gone, by carrier.
    pub traffic: Totals,
    /// Addresses held, and the pool's capacity.
    pub pool: (u64, u64),
    /// Clients holding an IPv6 address too.
    pub pool6_used: u64,
    /// Whether the pool is dual-stack.
    pub dual_stack: bool,
}

impl Router {
    /// A router over `pool`.
    pub fn new(pool: IpPool) -> Arc<Self> {
        Arc::new(Self {
            pool: Mutex::new(pool),
            peers: RwLock::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            spoofed: AtomicU64::new(0),
            unroutable: AtomicU64::new(0),
            control_in: AtomicU64::new(0),
            refused_not_listed: AtomicU64::new(0),
            refused_exhausted: AtomicU64::new(0),
            traffic: Mutex::new(Tally::default()),
            observed: Observed::new(),
        })
    }

    /// Counts every connected client's traffic into the totals and reads them, with the
    /// peers by carrier and the pool's usage. The peer table stays read-locked meanwhile,
    /// so a client leaving at the same time is counted once.
    pub fn scrape(&self) -> Scrape {
        let mut out = Scrape::default();
        {
            let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
            let mut tally = self.traffic.lock().unwrap_or_else(PoisonError::into_inner);
            for p in peers.values() {
                tally.observe_conn(p.token, &p.sender);
                *out.peers.entry(p.sender.carrier().name()).or_default() += 1;
                out.pool6_used += u64::from(p.address6.is_some());
            }
            out.traffic = tally.totals();
        }
        let pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        out.pool = pool.usage();
        out.dual_stack = pool.network6().is_some();
        out
    }

    /// Every connected client.
    pub fn peers(&self) -> Vec<Peer> {
        self.peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// The server's tunnel address and the pool's prefix length.
    pub fn server_address(&self) -> (Ipv4Addr, u8) {
        let pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        (pool.server_address(), pool.network().1)
    }

    /// The server's IPv6 tunnel address and the IPv6 pool's prefix length, when the pool
    /// is dual-stack.
    pub fn server_address6(&self) -> Option<(Ipv6Addr, u8)> {
        let pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        let (_, prefix) = pool.network6()?;
        Some((pool.address6_of(pool.server_address())?, prefix))
    }

    /// The IPv6 pool (network, prefix length), when dual-stack.
    pub fn network6(&self) -> Option<(Ipv6Addr, u8)> {
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .network6()
    }

    /// The client address (its IPv4 one, the peer table's key) a packet is for.
    fn key_of(&self, packet: &[u8], pool: &IpPool) -> Option<Ipv4Addr> {
        match packet.first()? >> 4 {
            4 => ipv4_addrs(packet).map(|(_, dst)| dst),
            6 => ipv6_addrs(packet).and_then(|(_, dst)| pool.v4_of(dst)),
            _ => None,
        }
    }

    /// Reads the device until it fails, sending each IPv4 packet to the client owning its
    /// destination address. Runs of packets for one client go out as one batch.
    ///
    /// # Errors
    /// The device's read error.
    pub async fn device_loop<D: PacketDevice>(
        self: Arc<Self>,
        device: Arc<D>,
    ) -> Result<(), aura_tun::TunError> {
        let mut rx = TunBuffers::for_device(&*device, aura_tun::MIN_HEADROOM, 0);
        let pool = BatchPool::new();
        // The address plan never changes while the server runs.
        let plan = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut runs: Vec<(PacketSender, PacketBatch)> = Vec::new();
        loop {
            let n = device
                .recv_batch_offload(&mut rx.bufs, &mut rx.lens, &mut rx.offload, rx.headroom)
                .await?;
            {
                let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
                let mut last: Option<Ipv4Addr> = None;
                for i in 0..n {
                    let Some(dst) = rx.packet(i).and_then(|p| self.key_of(p, &plan)) else {
                        self.unroutable.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let same = last == Some(dst);
                    let peer = if same { None } else { peers.get(&dst) };
                    // A checksum the kernel left unfinished goes to the client unfinished
                    // when its session carries that (version 2), else it is finished here.
                    let finishes = match (&peer, runs.last()) {
                        (Some(p), _) => p.sender.offload(),
                        (None, Some((s, _))) if same => s.offload(),
                        _ => false,
                    };
                    let offload = rx.offload_for(i, finishes);
                    let Some(packet) = rx.packet(i) else { continue };
                    match (same, runs.last_mut()) {
                        (true, Some((_, run))) => run.push_with(packet, offload),
                        _ => match peer {
                            Some(p) => {
                                let mut run = pool.take();
                                run.push_with(packet, offload);
                                runs.push((p.sender.clone(), run));
                                last = Some(dst);
                            }
                            None => {
                                self.unroutable.fetch_add(1, Ordering::Relaxed);
                                last = None;
                            }
                        },
                    }
                }
            }
            for (sender, run) in runs.drain(..) {
                // A client that just left: its packets are dropped, like any unroutable.
                let _ = sender.send_packets(run).await;
            }
        }
    }

    fn admit(
        &self,
        conn: &PacketConn,
        since: u64,
    ) -> Result<(Ipv4Addr, Option<Ipv6Addr>, u64), PoolError> {
        let id = conn.peer().id.clone();
        let (address, address6) = {
            let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
            let a = pool.assign(&id)?;
            (a, pool.address6_of(a))
        };
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let peer = Peer {
            id,
            address,
            address6,
            sender: conn.sender(),
            since,
            token,
        };
        self.peers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(address, peer);
        Ok((address, address6, token))
    }

    /// Forgets admission `token` of `id` at `address`, unless a newer admission of the
    /// same client replaced it (then the address stays with the newer one).
    fn leave(&self, id: &str, address: Ipv4Addr, token: u64) {
        let mut peers = self.peers.write().unwrap_or_else(PoisonError::into_inner);
        if peers.get(&address).is_some_and(|p| p.token == token) {
            if let Some(p) = peers.remove(&address) {
                self.traffic
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .settle_conn(token, &p.sender);
            }
            self.pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .release(id);
        }
    }

    /// Admits a connected client: assigns its address (refusing it when the pool says
    /// no), tells it its resolvers and address ([`DnsAssign`] then [`AddressAssign`],
    /// again for every [`control::AddressRequest`]) and sends `welcome.extra`, then
    /// writes its packets to `device` until it disconnects, and returns the address to the
    /// pool.
    ///
    /// # Errors
    /// The pool's refusal (the connection is closed).
    pub async fn serve_client<D: PacketDevice>(
        self: Arc<Self>,
        mut conn: PacketConn,
        device: Arc<D>,
        welcome: Welcome,
    ) -> Result<(), PoolError> {
        // A relay waits a moment for an ExtendBridge; anything else, or nothing, and the
        // client is served as any other.
        let mut first: Option<PacketBatch> = None;
        if let Some(policy) = &welcome.relay {
            match tokio::time::timeout(super::relay::EXTEND_WAIT, conn.recv_packets()).await {
                Ok(None) => return Ok(()),
                Ok(Some(batch)) => {
                    let extend = batch.iter().next().and_then(super::relay::extend_request);
                    if let Some(e) = extend {
                        batch.recycle();
                        let (up, down) =
                            super::relay::bridge(conn, e.addr, e.via, policy, &welcome.onward)
                                .await;
                        tracing::debug!(up, down, "circuit closed");
                        return Ok(());
                    }
                    first = Some(batch);
                }
                Err(_) => {}
            }
        }
        let (address, address6, token) = match self.admit(&conn, welcome.since) {
            Ok(a) => a,
            Err(e) => {
                let refused = match e {
                    PoolError::NotAllowed(_) => &self.refused_not_listed,
                    PoolError::Exhausted => &self.refused_exhausted,
                };
                refused.fetch_add(1, Ordering::Relaxed);
                conn.close().await;
                return Err(e);
            }
        };
        let id = conn.peer().id.clone();
        let (gateway, prefix_len) = self.server_address();
        let assign = ControlMessage::from(AddressAssign {
            address,
            prefix_len,
            gateway,
            mtu: welcome.mtu,
        })
        .encode();
        let dns = ControlMessage::from(DnsAssign {
            servers: welcome.dns,
        })
        .encode();
        // DnsAssign, AddressAssign6 (dual-stack only), AddressAssign: the address comes
        // last, so a client has the rest when it sets its tunnel up.
        let assign6 = match (address6, self.server_address6()) {
            (Some(address), Some((gateway, prefix_len))) => Some(
                ControlMessage::from(AddressAssign6 {
                    address,
                    prefix_len,
                    gateway,
                })
                .encode(),
            ),
            _ => None,
        };
        let assign = match (dns, assign6.transpose(), assign) {
            (Ok(dns), Ok(assign6), Ok(assign)) => {
                let mut all = vec![dns];
                all.extend(assign6);
                all.push(assign);
                let mut first = all.clone();
                first.extend(welcome.extra);
                let _ = conn.send_batch(first).await;
                Some(all)
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                tracing::error!(error = %e, "cannot encode the address assignment");
                None
            }
        };
        // The server's side of the client's cover traffic, once asked for.
        let mut cover: Option<CoverGuard> = None;
        loop {
            let mut batch = match first.take() {
                Some(b) => b,
                None => match conn.recv_packets().await {
                    Some(b) => b,
                    None => break,
                },
            };
            let before = batch.len();
            let mut asked = false;
            let mut extend = None;
            let mut cover_asked = None;
            batch.retain(|p| {
                if control::is_control(p) {
                    self.control_in.fetch_add(1, Ordering::Relaxed);
                    match ControlMessage::decode(p) {
                        Ok(ControlMessage::AddressRequest(_)) => asked = true,
                        Ok(ControlMessage::ExtendBridge(e)) => extend = Some(e),
                        Ok(ControlMessage::CoverRequest(r)) => cover_asked = Some(r),
                        _ => {}
                    }
                    return false;
                }
                let own = match ipv4_addrs(p) {
                    Some((src, _)) => src == address,
                    None => ipv6_addrs(p).is_some_and(|(src, _)| Some(src) == address6),
                };
                if !own {
                    self.spoofed.fetch_add(1, Ordering::Relaxed);
                }
                own
            });
            tracing::trace!(received = before, forwarded = batch.len(), "client batch");
            // The client came back through a circuit (a server keeps one session per
            // client, so its new session arrives here): a relay bridges it from now on,
            // another server says it is none.
            if let Some(e) = extend {
                batch.recycle();
                // A bridged session carries another's packets: no cover of its own.
                drop(cover.take());
                self.leave(&id, address, token);
                match &welcome.relay {
                    Some(policy) => {
                        let (up, down) =
                            super::relay::bridge(conn, e.addr, e.via, policy, &welcome.onward)
                                .await;
                        tracing::debug!(up, down, "circuit closed");
                    }
                    None => {
                        let reason = "this server is not a relay ([server.relay] is not enabled)";
                        if let Ok(p) = ControlMessage::from(control::CircuitFailed {
                            reason: reason.into(),
                        })
                        .encode()
                        {
                            let _ = conn.send(p).await;
                        }
                        conn.close().await;
                    }
                }
                return Ok(());
            }
            if asked && let Some(a) = &assign {
                let _ = conn.send_batch(a.clone()).await;
            }
            if let Some(r) = cover_asked {
                answer_cover(&conn, r, welcome.cover.as_ref(), welcome.mtu, &mut cover).await;
            }
            if !batch.is_empty() {
                crate::device::write_batch(&*device, &mut batch).await;
            }
            batch.recycle();
        }
        self.leave(&id, address, token);
        Ok(())
    }
}
