//! Aura's carriers: the ways Aura packets cross the network, behind one interface.
//!
//! - **UDP**: Aura datagrams directly on a UDP socket (one socket serves every client,
//!   demultiplexed by session index, so a client that changes address keeps its session).
//! - **QUIC** (quinn): real QUIC with an outer TLS 1.3 handshake and ALPN "h3"; the Aura
//!   handshake runs on a bidirectional stream and data packets ride DATAGRAM frames.
//! - **TLS over TCP** (tokio-rustls): outer TLS 1.3 with ALPN "h2"/"http/1.1", then
//!   length-prefixed Aura datagrams.
//!
//! Whatever the carrier, the daemons see a [`PacketConn`]: send and receive IP packets,
//! the peer's verified identity, the carrier in use, counters, close. One protocol
//! [`aura_proto::Endpoint`] per process runs inside a driver task ([`driver`]); every
//! carrier feeds it datagrams. The outer TLS of QUIC and TLS-over-TCP is camouflage and
//! transport only: the inner Aura handshake authenticates both sides, which is why a
//! client accepts any outer certificate (docs/SECURITY.md).

pub mod batch;
pub mod conn;
pub mod dial;
pub mod driver;
mod limit;
pub mod link;
pub mod quic;
pub mod server;
pub mod shape;
pub mod tls;
pub mod udp;

pub use batch::{BatchPool, PacketBatch};
pub use conn::{Carrier, PacketConn, PacketSender, StatsSnapshot};
pub use driver::{Driver, DriverHandle};
pub use link::{DatagramLink, mem_pair};

/// Errors of the transport layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Binding a listener failed.
    #[error("cannot listen on {carrier} {addr}: {source}")]
    Bind {
        /// The carrier.
        carrier: Carrier,
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An IO error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The protocol core refused the configuration or the operation.
    #[error("protocol: {0}")]
    Proto(#[from] aura_proto::ProtoError),
    /// The Aura handshake failed.
    #[error("handshake with {addr} over {carrier} failed: {error}")]
    Handshake {
        /// The carrier.
        carrier: Carrier,
        /// The server address.
        addr: std::net::SocketAddr,
        /// Why.
        error: aura_proto::HandshakeError,
    },
    /// No attempt succeeded.
    #[error("could not connect: {0}")]
    AllAttemptsFailed(String),
    /// The connection or the driver is gone.
    #[error("connection closed")]
    Closed,
    /// The outer TLS configuration is unusable.
    #[error("TLS: {0}")]
    Tls(String),
}
