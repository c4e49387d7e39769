//! A multi-carrier server: one process listening on every configured carrier at once, one
//! protocol endpoint behind all of them.

use std::net::SocketAddr;
use std::sync::Arc;

use aura_proto::{Endpoint, EndpointConfig};
use rustls_pki_types::UnixTime;
use tokio::sync::mpsc;

use crate::conn::{Carrier, PacketConn};
use crate::driver::{Driver, DriverHandle};
use crate::link::DatagramLink;
use crate::quic::{self, QuicOptions};
use crate::tls::{self, OuterIdentity, TlsOptions};
use crate::{TransportError, udp};

/// What a server listens on.
#[derive(Debug)]
pub struct ServerConfig {
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
    /// The wall clock for certificate validity: `UnixTime::now` in production; tests pin
    /// it to their PKI's time.
    pub wall_clock: fn() -> UnixTime,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    handle: DriverHandle,
    accept: mpsc::UnboundedReceiver<PacketConn>,
    /// Bound UDP address.
    pub udp_addr: Option<SocketAddr>,
    /// Bound QUIC address.
    pub quic_addr: Option<SocketAddr>,
    /// Bound TLS address.
    pub tls_addr: Option<SocketAddr>,
}

fn forward_links(handle: DriverHandle, carrier: Carrier) -> mpsc::Sender<DatagramLink> {
    let (tx, mut rx) = mpsc::channel::<DatagramLink>(256);
    tokio::spawn(async move {
        while let Some(link) = rx.recv().await {
            if handle.add_link(link, carrier).await.is_err() {
                return;
            }
        }
    });
    tx
}

impl Server {
    /// Binds every configured carrier and starts serving. A carrier that cannot bind is an
    /// error naming its address and the reason; nothing keeps running then.
    ///
    /// # Errors
    /// [`TransportError::Bind`], or an unusable configuration.
    pub async fn bind(cfg: ServerConfig) -> Result<Self, TransportError> {
        if cfg.udp.is_none() && cfg.quic.is_none() && cfg.tls.is_none() {
            return Err(TransportError::AllAttemptsFailed(
                "no carrier configured".into(),
            ));
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
        let (handle, accept) = Driver::spawn(endpoint, udp_socket);
        let outer = || {
            cfg.outer.clone().ok_or_else(|| {
                TransportError::Tls("QUIC and TLS carriers need an outer certificate".into())
            })
        };
        let mut quic_addr = None;
        if let Some(addr) = cfg.quic {
            let o = outer()?;
            let links = forward_links(handle.clone(), Carrier::Quic);
            quic_addr = Some(
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
            let links = forward_links(handle.clone(), Carrier::Tls);
            tls_addr = Some(tls::listen(addr, (*o).clone(), cfg.tls_options.clone(), links).await?);
        }
        Ok(Self {
            handle,
            accept,
            udp_addr,
            quic_addr,
            tls_addr,
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
}
