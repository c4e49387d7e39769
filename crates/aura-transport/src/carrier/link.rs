//! Datagram links: how stream-shaped carriers (QUIC, TLS over TCP) and the in-memory test
//! carrier hand Aura datagrams to the driver.
//!
//! A link is a pair of bounded queues of whole Aura datagrams to and from one peer. The
//! driver gives each link a synthetic address (see [`synthetic_addr`]) so the protocol
//! endpoint can treat it like any datagram peer.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use tokio::sync::mpsc;

/// Depth of each link queue, in datagrams. A full outbound queue drops datagrams (as a
/// full socket buffer would); it never grows.
pub const LINK_QUEUE: usize = 1024;

/// A bidirectional pipe of Aura datagrams to one peer.
#[derive(Debug)]
pub struct DatagramLink {
    /// The peer's real network address (for logs and status).
    pub peer: SocketAddr,
    /// Datagrams from the peer.
    pub inbound: mpsc::Receiver<Vec<u8>>,
    /// Datagrams to the peer.
    pub outbound: mpsc::Sender<Vec<u8>>,
}

/// An in-memory link pair, for tests: what one end sends the other receives.
pub fn mem_pair(a: SocketAddr, b: SocketAddr) -> (DatagramLink, DatagramLink) {
    let (a_tx, b_rx) = mpsc::channel(LINK_QUEUE);
    let (b_tx, a_rx) = mpsc::channel(LINK_QUEUE);
    (
        DatagramLink {
            peer: b,
            inbound: a_rx,
            outbound: a_tx,
        },
        DatagramLink {
            peer: a,
            inbound: b_rx,
            outbound: b_tx,
        },
    )
}

/// The synthetic address of the `n`-th link: `fd61:7572:6100::/48` ("aura" in a unique
/// local prefix), never a routable address and never sent to.
pub fn synthetic_addr(n: u64) -> SocketAddr {
    let hi = u16::try_from((n >> 32) & 0xffff).unwrap_or(0);
    let mid = u16::try_from((n >> 16) & 0xffff).unwrap_or(0);
    let lo = u16::try_from(n & 0xffff).unwrap_or(0);
    SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(0xfd61, 0x7572, 0x6100, 0, 0, hi, mid, lo),
        1,
        0,
        0,
    ))
}

/// Whether `addr` is a synthetic link address.
pub fn is_synthetic(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V6(v6) => v6.ip().segments()[..3] == [0xfd61, 0x7572, 0x6100],
        SocketAddr::V4(_) => false,
    }
}
