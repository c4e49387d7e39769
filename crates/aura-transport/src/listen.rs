//! The server's entry point: listeners on every configured carrier at once, one protocol
//! endpoint (one driver) behind all of them.

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
}

/// The running listeners of one server.
#[derive(Debug)]
pub struct Listeners {
    handle: DriverHandle,
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

/// Hands every link arriving on `links` to the driver as `carrier`, until every sender
/// or the driver is gone.
fn forward_links(handle: DriverHandle, carrier: Carrier, mut links: mpsc::Receiver<DatagramLink>) {
    tokio::spawn(async move {
        while let Some(link) = links.recv().await {
            if handle.add_link(link, carrier).await.is_err() {
                return;
            }
        }
    });
}

/// A queue for a listener's links, forwarded to the driver as `carrier`.
fn link_queue(handle: &DriverHandle, carrier: Carrier) -> mpsc::Sender<DatagramLink> {
    let (tx, rx) = mpsc::channel::<DatagramLink>(256);
    forward_links(handle.clone(), carrier, rx);
    tx
}

impl Listeners {
    /// Binds every configured carrier and starts serving. A carrier that cannot bind is an
    /// error naming its address and the reason; nothing keeps running then.
    ///
    /// # Errors
    /// [`TransportError::Bind`], or an unusable configuration.
    pub async fn bind(cfg: ListenConfig) -> Result<Self, TransportError> {
        if cfg.udp.is_none() && cfg.quic.is_none() && cfg.tls.is_none() && cfg.mem.is_none() {
            return Err(TransportError::Config(ConfigError::NoCarrier));
        }
        let udp_socket = cfg.udp.map(udp::bind).transpose()?;
        let udp_addr = udp_socket
            .as_ref()
            .map(tokio::net::UdpSocket::local_addr)
            .transpose()?;
        let endpoint = Endpoint::new(
            cfg.endpoint,
            cfg.seed,
            std::time::Instant::now(),
            (cfg.wall_clock)(),
        )?;
        let tls_knock = cfg.tls_options.camo.as_ref().map(|c| c.knock.clone());
        let quic_knock = cfg.quic_options.camo.as_ref().map(|c| c.knock.clone());
        let (handle, accept) = Driver::spawn(endpoint, udp_socket, cfg.masks);
        // One outer certificate for QUIC and TLS, replaceable on reload.
        let outer_slot = match (&cfg.outer, cfg.quic.is_some() || cfg.tls.is_some()) {
            (Some(o), _) => Some(Arc::new(CertSlot::new((**o).clone())?)),
            (None, true) => return Err(TransportError::Config(ConfigError::NoOuterIdentity)),
            (None, false) => None,
        };
        let mut quic = None;
        if let (Some(addr), Some(slot)) = (cfg.quic, &outer_slot) {
            let links = link_queue(&handle, Carrier::Quic);
            quic =
                Some(quic::listen_slot(addr, slot.clone(), cfg.quic_options.clone(), links).await?);
        }
        let mut tls_addr = None;
        if let (Some(addr), Some(slot)) = (cfg.tls, &outer_slot) {
            let links = link_queue(&handle, Carrier::Tls);
            tls_addr =
                Some(tls::listen_slot(addr, slot.clone(), cfg.tls_options.clone(), links).await?);
        }
        // Last, so that no error above leaves the address taken.
        let mut mem = None;
        if let Some((net, addr)) = &cfg.mem {
            let (listener, links) = net.listen(*addr).ok_or_else(|| TransportError::Bind {
                carrier: Carrier::Mem,
                addr: *addr,
                source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
            })?;
            forward_links(handle.clone(), Carrier::Mem, links);
            mem = Some(listener);
        }
        let counters = ListenerCounters {
            driver: handle.shared_stats(),
            quic: quic.as_ref().map(QuicListener::counters),
            tls_knock: tls_knock.filter(|_| tls_addr.is_some()),
            quic_knock: quic_knock.filter(|_| quic.is_some()),
        };
        Ok(Self {
            counters,
            handle,
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

    /// The driver, for run-time changes (a new CRL).
    pub fn handle(&self) -> &DriverHandle {
        &self.handle
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
        self.handle.set_identity(identity).await?;
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
