//! The server's entry point: listeners on every configured carrier at once, and behind
//! them one protocol endpoint and driver per worker ([`ListenConfig::workers`]).
//!
//! With several workers, each reads its own UDP socket of one `SO_REUSEPORT` group on
//! the carrier's address, and the kernel steers each datagram there by its source
//! ([`udp::worker_of`]); stream links go to the worker of their peer's address the same
//! way. So one source meets one worker's per-source limits, whatever the carrier, and
//! the workers' handshakes and sessions run on as many cores. What they share:
//! - the knock replay filter (a first flight replayed from another address is still a
//!   replay);
//! - the live session indices: each worker's indices fall in its share
//!   ([`aura_proto::Partition`]), and a datagram of another worker's session (from a
//!   client that moved to an address another worker reads) is handed to it;
//! - the queue of accepted connections, and notices of a client's new session (its old
//!   one on another worker is closed).

use std::net::SocketAddr;
use std::sync::Arc;

use aura_proto::{Endpoint, EndpointConfig};
use rustls_pki_types::UnixTime;
use tokio::sync::mpsc;

use crate::camo::mask::MaskSeed;
use crate::carrier::Carrier;
use crate::carrier::link::DatagramLink;
use crate::carrier::mem::{MemListener, MemNetwork};
use crate::carrier::quic::{self, QuicListener, QuicOptions, QuicStats};
use crate::carrier::tls::{self, CertSlot, OuterIdentity, TlsOptions};
use crate::carrier::udp;
use crate::conn::PacketConn;
use crate::driver::{Driver, DriverHandle};
use crate::error::{ConfigError, TransportError};
use crate::stats::ListenerCounters;

/// What to listen on.
#[derive(Debug)]
pub struct ListenConfig {
    /// The protocol endpoint's configuration (`accept` must be true).
    pub endpoint: EndpointConfig,
    /// 32 bytes from the OS RNG seeding the endpoint's CSPRNG.
    pub seed: [u8; 32],
    /// UDP carrier address.
    pub udp: Option<SocketAddr>,
    /// QUIC carrier address (UDP port).
    pub quic: Option<SocketAddr>,
    /// TLS-over-TCP carrier address.
    pub tls: Option<SocketAddr>,
    /// Outer certificate for QUIC and TLS (Aura reuses its server certificate).
    pub outer: Option<Arc<OuterIdentity>>,
    /// TLS carrier options.
    pub tls_options: TlsOptions,
    /// QUIC carrier options.
    pub quic_options: QuicOptions,
    /// The daily masks (UDP padding of the server's datagrams).
    pub masks: MaskSeed,
    /// An in-memory listener: its network and address (tests).
    pub mem: Option<(MemNetwork, SocketAddr)>,
    /// The wall clock for certificate validity: `UnixTime::now` in production; tests pin
    /// it to their PKI's time.
    pub wall_clock: fn() -> UnixTime,
    /// Protocol workers, 1 to [`udp::MAX_WORKERS`]: endpoints, each with its own driver
    /// and UDP socket, sharing the server's addresses and splitting its handshake limits
    /// (`max_pending_handshakes`, `cookie_threshold`) between them.
    pub workers: usize,
}

/// The running listeners of one server.
#[derive(Debug)]
pub struct Listeners {
    /// One per worker, in worker order.
    workers: Vec<DriverHandle>,
    accept: mpsc::UnboundedReceiver<PacketConn>,
    quic: Option<QuicListener>,
    /// Bound UDP address.
    pub udp_addr: Option<SocketAddr>,
    /// Bound QUIC address.
    pub quic_addr: Option<SocketAddr>,
    /// Bound TLS address.
    pub tls_addr: Option<SocketAddr>,
    /// In-memory listener address.
    pub mem_addr: Option<SocketAddr>,
    /// The in-memory listener's registration: the address is freed with `self`.
    _mem: Option<MemListener>,
    /// Every layer's counters, for [`Listeners::counters`].
    counters: ListenerCounters,
    /// The outer certificate QUIC and TLS present (unless a served decoy's stands in).
    outer: Option<Arc<CertSlot>>,
}

/// Hands every link arriving on `links` to the worker of its peer's address as
/// `carrier`, until every sender or a worker is gone.
fn forward_links(
    workers: Vec<DriverHandle>,
    carrier: Carrier,
    mut links: mpsc::Receiver<DatagramLink>,
) {
    tokio::spawn(async move {
        while let Some(link) = links.recv().await {
            let w = udp::worker_of(link.peer.ip(), workers.len());
            let Some(handle) = workers.get(w) else {
                return;
            };
            if handle.add_link(link, carrier).await.is_err() {
                return;
            }
        }
    });
}

/// A queue for a listener's links, forwarded to the workers as `carrier`.
fn link_queue(workers: &[DriverHandle], carrier: Carrier) -> mpsc::Sender<DatagramLink> {
    let (tx, rx) = mpsc::channel::<DatagramLink>(256);
    forward_links(workers.to_vec(), carrier, rx);
    tx
}

/// The runtime worker `w` runs on: `runtimes[w % len]`, or none (the current one).
pub(crate) fn runtime_of(
    runtimes: &[tokio::runtime::Handle],
    w: usize,
) -> Option<&tokio::runtime::Handle> {
    runtimes.get(w.checked_rem(runtimes.len())?)
}

/// `limit` split between `workers`, each keeping at least one.
fn share(limit: usize, workers: usize) -> usize {
    limit.div_ceil(workers.max(1)).max(1)
}

impl Listeners {
    /// Binds every configured carrier and starts serving. A carrier that cannot bind is an
    /// error naming its address and the reason; nothing keeps running then.
    ///
    /// # Errors
    /// [`TransportError::Bind`], or an unusable configuration.
    pub async fn bind(cfg: ListenConfig) -> Result<Self, TransportError> {
        Self::bind_on(cfg, &[]).await
    }

    /// [`Listeners::bind`], with worker `w`'s driver task and UDP socket on runtime
    /// `runtimes[w % len]` (each worker on its own thread's runtime, say); on the current
    /// runtime when `runtimes` is empty. Tasks a driver starts for itself run on its
    /// runtime, and so do each TLS connection of a peer the worker serves and, with more
    /// than one runtime, a QUIC endpoint of the worker's own (`quic::listen_slot`); the
    /// TLS listener and the accept queue run on the current one.
    ///
    /// # Errors
    /// As [`Listeners::bind`].
    pub async fn bind_on(
        cfg: ListenConfig,
        runtimes: &[tokio::runtime::Handle],
    ) -> Result<Self, TransportError> {
        if cfg.udp.is_none() && cfg.quic.is_none() && cfg.tls.is_none() && cfg.mem.is_none() {
            return Err(TransportError::Config(ConfigError::NoCarrier));
        }
        let count = cfg.workers;
        if count == 0 || count > udp::MAX_WORKERS {
            return Err(TransportError::Config(ConfigError::Workers(count)));
        }
        let mut endpoints = Vec::with_capacity(count);
        for w in 0..count {
            let mut config = cfg.endpoint.clone();
            config.max_pending_handshakes = share(config.max_pending_handshakes, count);
            config.cookie_threshold = share(config.cookie_threshold, count);
            // One worker keeps the seed as given (what a single endpoint was seeded with).
            let seed = match w {
                0 => cfg.seed,
                _ => {
                    aura_crypto::kdf::sha256(&[b"aura/v1 worker seed", &cfg.seed, &w.to_be_bytes()])
                }
            };
            endpoints.push(Endpoint::new(
                config,
                seed,
                std::time::Instant::now(),
                (cfg.wall_clock)(),
            )?);
        }
        let mut udp_sockets: Vec<Option<tokio::net::UdpSocket>> = match cfg.udp {
            Some(addr) => udp::bind_group(addr, count)?
                .into_iter()
                .map(Some)
                .collect(),
            None => Vec::new(),
        };
        let udp_addr = match udp_sockets.first() {
            Some(Some(s)) => Some(s.local_addr()?),
            _ => None,
        };
        udp_sockets.resize_with(count, || None);
        // Each socket woken by the reactor of the runtime its driver runs on.
        for (w, socket) in udp_sockets.iter_mut().enumerate() {
            let Some(rt) = runtime_of(runtimes, w) else {
                continue;
            };
            if let Some(s) = socket.take() {
                let addr = s.local_addr()?;
                let s = s.into_std()?;
                let _entered = rt.enter();
                *socket = Some(tokio::net::UdpSocket::from_std(s).map_err(|source| {
                    TransportError::Bind {
                        carrier: Carrier::Udp,
                        addr,
                        source,
                    }
                })?);
            }
        }
        let tls_knock = cfg.tls_options.camo.as_ref().map(|c| c.knock.clone());
        let quic_knock = cfg.quic_options.camo.as_ref().map(|c| c.knock.clone());
        let (workers, accept) = if count == 1 {
            let (Some(ep), Some(socket)) = (endpoints.pop(), udp_sockets.pop()) else {
                return Err(TransportError::Config(ConfigError::Workers(count)));
            };
            let (h, a) = Driver::spawn_on(ep, socket, cfg.masks, runtime_of(runtimes, 0));
            (vec![h], a)
        } else {
            Driver::spawn_workers(
                endpoints.into_iter().zip(udp_sockets).collect(),
                &cfg.masks,
                runtimes,
            )
        };
        // One outer certificate for QUIC and TLS, replaceable on reload.
        let outer_slot = match (&cfg.outer, cfg.quic.is_some() || cfg.tls.is_some()) {
            (Some(o), _) => Some(Arc::new(CertSlot::new((**o).clone())?)),
            (None, true) => return Err(TransportError::Config(ConfigError::NoOuterIdentity)),
            (None, false) => None,
        };
        let mut quic = None;
        if let (Some(addr), Some(slot)) = (cfg.quic, &outer_slot) {
            let links = link_queue(&workers, Carrier::Quic);
            quic = Some(
                quic::listen_slot(
                    addr,
                    slot.clone(),
                    cfg.quic_options.clone(),
                    links,
                    runtimes.to_vec(),
                )
                .await?,
            );
        }
        let mut tls_addr = None;
        if let (Some(addr), Some(slot)) = (cfg.tls, &outer_slot) {
            let links = link_queue(&workers, Carrier::Tls);
            tls_addr = Some(
                tls::listen_slot(
                    addr,
                    slot.clone(),
                    cfg.tls_options.clone(),
                    links,
                    runtimes.to_vec(),
                )
                .await?,
            );
        }
        // Last, so that no error above leaves the address taken.
        let mut mem = None;
        if let Some((net, addr)) = &cfg.mem {
            let (listener, links) = net.listen(*addr).ok_or_else(|| TransportError::Bind {
                carrier: Carrier::Mem,
                addr: *addr,
                source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
            })?;
            forward_links(workers.clone(), Carrier::Mem, links);
            mem = Some(listener);
        }
        let counters = ListenerCounters {
            workers: workers.iter().map(DriverHandle::shared_stats).collect(),
            quic: quic.as_ref().map(QuicListener::counters),
            tls_knock: tls_knock.filter(|_| tls_addr.is_some()),
            quic_knock: quic_knock.filter(|_| quic.is_some()),
        };
        Ok(Self {
            counters,
            workers,
            accept,
            outer: outer_slot,
            quic_addr: quic.as_ref().map(QuicListener::local_addr),
            quic,
            udp_addr,
            tls_addr,
            mem_addr: mem.as_ref().map(MemListener::local_addr),
            _mem: mem,
        })
    }

    /// The next client whose Aura handshake completed, on any carrier.
    pub async fn accept(&mut self) -> Option<PacketConn> {
        self.accept.recv().await
    }

    /// Replaces every worker's certificate verifier (a new CRL): connected clients the
    /// new verifier refuses are closed.
    ///
    /// # Errors
    /// [`TransportError::Closed`] when a worker is gone.
    pub async fn set_verifier(&self, verifier: aura_pki::Verifier) -> Result<(), TransportError> {
        for w in &self.workers {
            w.set_verifier(verifier.clone()).await?;
        }
        Ok(())
    }

    /// How many workers serve.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Puts a new certificate and key in place (a reload): the Aura handshakes that start
    /// from now sign with `identity`, and QUIC and TLS present `outer` (where no served
    /// decoy's certificate stands in). Sessions already made go on. The outer
    /// certificate is checked first: on error nothing changed.
    ///
    /// # Errors
    /// [`TransportError::Tls`] for an unusable outer key or certificate;
    /// [`TransportError::Closed`] when the driver is gone.
    pub async fn set_identity(
        &self,
        identity: aura_proto::Identity,
        outer: OuterIdentity,
    ) -> Result<(), TransportError> {
        let next = self
            .outer
            .as_ref()
            .map(|_| CertSlot::new(outer.clone()))
            .transpose()?;
        for w in &self.workers {
            w.set_identity(identity.clone()).await?;
        }
        if let (Some(slot), Some(_)) = (&self.outer, next) {
            slot.replace(outer)?;
        }
        Ok(())
    }

    /// The end-entity certificate QUIC and TLS present now (where no served decoy's
    /// stands in); `None` without QUIC and TLS.
    pub fn outer_certificate(&self) -> Option<rustls_pki_types::CertificateDer<'static>> {
        self.outer.as_ref().and_then(|s| s.end_entity())
    }

    /// Every layer's counters (driver, QUIC listener, knocks), readable from another task
    /// while the listeners run and after.
    pub fn counters(&self) -> ListenerCounters {
        self.counters.clone()
    }

    /// A copy of the QUIC listener's counters; `None` without a QUIC listener.
    pub fn quic_stats(&self) -> Option<QuicStats> {
        self.quic.as_ref().map(QuicListener::stats)
    }
}
