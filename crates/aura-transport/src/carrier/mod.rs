//! The carriers: the ways Aura datagrams cross the network.
//!
//! - [`udp`]: Aura datagrams directly on a UDP socket, read and written in batches by the
//!   driver.
//! - [`quic`]: QUIC (quinn) with an outer TLS 1.3 handshake, turned into a [`link`].
//! - [`tls`]: TLS over TCP with length-prefixed frames, turned into a [`link`].
//! - [`link`]: the datagram pipe that stream-shaped carriers (and the in-memory test
//!   carrier) hand to the driver.
//! - [`mem`]: the in-memory carrier, a network of listeners inside one process, for
//!   whole-daemon tests.
//! - `limit`: the caps on handshakes in flight shared by the QUIC and TLS listeners.
//!
//! A carrier moves datagrams and nothing else: it knows no session, key or packet
//! connection. The runtime above it ([`crate::driver`]) feeds every carrier's datagrams to
//! one protocol endpoint.

mod limit;
pub mod link;
pub mod mem;
pub mod quic;
pub mod tls;
pub mod udp;

/// How packets cross the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Carrier {
    /// Aura datagrams on UDP.
    Udp,
    /// QUIC with DATAGRAM frames.
    Quic,
    /// TLS 1.3 over TCP.
    Tls,
    /// In-memory links inside one process ([`mem`]; tests).
    Mem,
}

impl Carrier {
    /// Lowercase name, as in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Carrier::Udp => "udp",
            Carrier::Quic => "quic",
            Carrier::Tls => "tls",
            Carrier::Mem => "mem",
        }
    }
}

impl core::fmt::Display for Carrier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}
