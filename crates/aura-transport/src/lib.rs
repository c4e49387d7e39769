//! Aura's carriers: the ways Aura packets cross the network, behind one interface.
//!
//! - **UDP**: Aura datagrams directly on a UDP socket (one socket serves every client,
//!   demultiplexed by session index, so a client that changes address keeps its session).
//! - **QUIC** (quinn): real QUIC with an outer TLS 1.3 handshake and ALPN "h3"; the Aura
//!   handshake runs on a bidirectional stream and data packets ride DATAGRAM frames.
//! - **TLS over TCP** (tokio-rustls): outer TLS 1.3 (1.2 allowed) with ALPN
//!   "h2"/"http/1.1", then length-prefixed Aura datagrams.
//!
//! Whatever the carrier, the daemons see a [`PacketConn`]: send and receive IP packets,
//! the peer's verified identity, the carrier in use, counters, close. One protocol
//! [`aura_proto::Endpoint`] per process runs inside a driver task ([`driver`]); every
//! carrier feeds it datagrams. The outer TLS of QUIC and TLS-over-TCP is camouflage and
//! transport only: the inner Aura handshake authenticates both sides, which is why a
//! client accepts any outer certificate (docs/SECURITY.md).
//!
//! # Layers
//!
//! From the bottom up; each layer uses only the ones below it, and no two files import
//! each other, directly or through others.
//!
//! - **Camouflage** ([`camo`]): how the traffic looks on the wire; today the UDP datagram
//!   shape and padding profiles ([`camo::shape`]). The carriers and the driver apply it.
//! - **Carriers** ([`carrier`]): [`carrier::udp`], [`carrier::quic`], [`carrier::tls`],
//!   and [`carrier::link`], the datagram pipe the stream carriers (and the in-memory test
//!   carrier) hand to the runtime. They move datagrams and know nothing of sessions.
//! - **Runtime**: [`driver`] (the task that owns the protocol endpoint and every socket
//!   and link), [`conn`] (the [`PacketConn`] handed to the daemons, and the commands it
//!   sends the driver), [`batch`] (pooled packet batches, the data path's unit) and
//!   [`stats`] (what the driver counts besides each connection's traffic, for metrics).
//! - **Entry points**: [`listen`] ([`Listeners`]: a server's listeners on every configured
//!   carrier, one endpoint behind them), [`dial`] (a client trying carriers, then
//!   bridges, in order) and [`circuit`] (a client reaching the exit through relays, one
//!   session nested in another per hop).
//!
//! [`TransportError`] ([`error`]) is shared by every layer from the carriers up.

pub mod batch;
pub mod budget;
pub mod camo;
pub mod carrier;
pub mod circuit;
pub mod conn;
pub mod cover;
pub mod dial;
pub mod driver;
pub mod error;
mod inbox;
pub mod listen;
pub mod refusals;
pub mod stats;

pub use batch::{BatchPool, PacketBatch, QueueLimit};
pub use carrier::Carrier;
pub use carrier::link::{DatagramLink, mem_pair};
pub use carrier::mem::MemNetwork;
pub use conn::{PacketConn, PacketSender, StatsSnapshot};
pub use cover::{CoverGuard, CoverLimit, CoverStats};
pub use driver::{Driver, DriverHandle};
pub use error::{ConfigError, FailedAttempt, OuterTlsError, TransportError};
pub use listen::{ListenConfig, Listeners};
pub use stats::{DriverStats, ListenerCounters, ListenerStats};
