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
use crate::carrier::tls::{self, OuterIdentity, TlsOptions};
use crate::carrier::udp;
use crate::conn::PacketConn;
use crate::driver::{Driver, DriverHandle};
use crate::error::{ConfigError, TransportError};

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
        let (handle, accept) = Driver::spawn(endpoint, udp_socket, cfg.masks);
        let outer = || {
            cfg.outer
                .clone()
                .ok_or(TransportError::Config(ConfigError::NoOuterIdentity))
        };
        let mut quic = None;
        if let Some(addr) = cfg.quic {
            let o = outer()?;
            let links = link_queue(&handle, Carrier::Quic);
            quic = Some(
                quic::listen(
                    addr,
                    o.cert_chain.clone(),
                    o.key.clone_key(),
                    cfg.quic_options.clone(),
                    links,
                )
                .await?,
            );
        }
        let mut tls_addr = None;
        if let Some(addr) = cfg.tls {
            let o = outer()?;
            let links = link_queue(&handle, Carrier::Tls);
            tls_addr = Some(tls::listen(addr, (*o).clone(), cfg.tls_options.clone(), links).await?);
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
        Ok(Self {
            handle,
            accept,
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

    /// A copy of the QUIC listener's counters; `None` without a QUIC listener.
    pub fn quic_stats(&self) -> Option<QuicStats> {
        self.quic.as_ref().map(QuicListener::stats)
    }
}
