//! Datagram links: how stream-shaped carriers (QUIC, TLS over TCP) and the in-memory test
//! carrier hand Aura datagrams to the driver.
//!
//! A link is a pair of bounded queues of whole Aura datagrams to and from one peer. The
//! driver gives each link a synthetic address (see [`synthetic_addr`]) so the protocol
//! endpoint can treat it like any datagram peer.
//!
//! A datagram is a [`BytesMut`]: the driver opens what comes in where it lies, and the
//! readers and the driver carve datagrams out of shared allocations ([`carve`], one per
//! batch a reader takes; [`Arena`], one per link the driver writes to) instead of
//! allocating each one.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use bytes::BytesMut;
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
    pub inbound: mpsc::Receiver<BytesMut>,
    /// Datagrams to the peer.
    pub outbound: mpsc::Sender<BytesMut>,
    /// When the link is an outer TLS session of its own with the peer, whose key exchange
    /// was X25519MLKEM768: its exporter under [`BINDING_LABEL`]. Handshakes over the link
    /// may then use the suite bound to it (docs/adr/0024).
    pub binding: Option<[u8; aura_proto::BINDING_LEN]>,
}

/// The exporter label (RFC 8446 §7.5) of an outer session's binding, with an empty context.
pub const BINDING_LABEL: &[u8] = b"EXPORTER-aura-channel-binding";

/// Copies `datagrams` into one allocation, exactly their size, and appends each to `out`
/// as its own `BytesMut` (in order): a reader that takes several datagrams at once pays
/// one allocation for all of them, freed when the last of them is dropped.
pub fn carve<'a>(datagrams: impl Iterator<Item = &'a [u8]> + Clone, out: &mut Vec<BytesMut>) {
    let total = datagrams.clone().map(<[u8]>::len).sum();
    let mut chunk = BytesMut::with_capacity(total);
    for d in datagrams {
        chunk.extend_from_slice(d);
        out.push(chunk.split());
    }
}

/// Bytes in each allocation an [`Arena`] carves from: about eleven full-size datagrams.
pub const ARENA_CHUNK: usize = 16 * 1024;

/// Where the driver copies the datagrams it queues to one link: each comes out as its own
/// `BytesMut`, carved from an [`ARENA_CHUNK`] allocation. A chunk is freed, or taken
/// again, once every datagram carved from it has been dropped; while some still wait in
/// the link's queue, the next chunk is a fresh allocation. One arena per link, so what a
/// stalled link holds pins only its own chunks (its queue's worth), never other links'.
#[derive(Debug, Default)]
pub struct Arena {
    chunk: BytesMut,
}

impl Arena {
    /// An arena that allocates on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// `d` copied into the arena.
    pub fn copy(&mut self, d: &[u8]) -> BytesMut {
        self.room(d.len());
        self.chunk.extend_from_slice(d);
        self.chunk.split()
    }

    /// Lets go of the current chunk (freed once its datagrams are), so that an idle link
    /// holds none; the next copy allocates again.
    pub fn release(&mut self) {
        self.chunk = BytesMut::new();
    }

    fn room(&mut self, len: usize) {
        if self.chunk.capacity() < len {
            self.chunk.reserve(len.max(ARENA_CHUNK));
        }
    }
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
            binding: None,
        },
        DatagramLink {
            peer: a,
            inbound: b_rx,
            outbound: b_tx,
            binding: None,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Where `b`'s bytes start.
    fn at(b: &BytesMut) -> usize {
        b.as_ptr() as usize
    }

    #[test]
    fn carved_datagrams_are_the_inputs_side_by_side_in_one_allocation() {
        let inputs: [&[u8]; 3] = [&[1, 2, 3], &[4], &[5, 6]];
        let mut out = vec![BytesMut::from(&b"kept"[..])];
        carve(inputs.iter().copied(), &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0], b"kept"[..]);
        for (got, want) in out[1..].iter().zip(inputs) {
            assert_eq!(got[..], *want);
        }
        assert_eq!(at(&out[2]), at(&out[1]) + 3);
        assert_eq!(at(&out[3]), at(&out[2]) + 1);
        // Each is its own: writing one leaves its neighbours as they were.
        out[2][0] = 9;
        assert_eq!(out[1][..], [1, 2, 3]);
        assert_eq!(out[3][..], [5, 6]);
    }

    #[test]
    fn an_arena_reuses_its_chunk_once_every_datagram_from_it_is_dropped() {
        let mut arena = Arena::new();
        let a = arena.copy(&[7; 1000]);
        let b = arena.copy(&[8; 1000]);
        assert_eq!(a[..], [7; 1000]);
        assert_eq!(b[..], [8; 1000]);
        assert_eq!(at(&b), at(&a) + 1000, "carved from one chunk");
        let first = at(&a);
        drop((a, b));
        // Filling past the chunk's end takes the same chunk again from its start.
        let mut last = arena.copy(&[1; 1]);
        while at(&last) != first {
            assert!(at(&last) > first && at(&last) < first + ARENA_CHUNK);
            drop(last);
            last = arena.copy(&[2; 1500]);
        }
        assert_eq!(last[..], [2; 1500]);
    }

    #[test]
    fn an_arena_takes_a_new_chunk_while_datagrams_from_the_old_wait() {
        let mut arena = Arena::new();
        let held = arena.copy(&[3; 100]);
        let mut kept = Vec::new();
        for i in 0..(2 * ARENA_CHUNK / 1500) {
            kept.push(arena.copy(&[u8::try_from(i % 250).unwrap(); 1500]));
        }
        // Nothing was overwritten: every datagram still reads as written.
        assert_eq!(held[..], [3; 100]);
        for (i, k) in kept.iter().enumerate() {
            assert!(k.iter().all(|&x| usize::from(x) == i % 250));
        }
        // A datagram larger than a chunk still fits.
        let big = arena.copy(&vec![4; ARENA_CHUNK + 1]);
        assert_eq!(big.len(), ARENA_CHUNK + 1);
    }

    #[test]
    fn a_released_arena_holds_no_chunk_and_leaves_its_datagrams_whole() {
        let mut arena = Arena::new();
        let a = arena.copy(&[5; 700]);
        arena.release();
        assert_eq!(arena.chunk.capacity(), 0);
        assert_eq!(a[..], [5; 700]);
        let b = arena.copy(&[6; 10]);
        assert_ne!(at(&b), at(&a) + 700, "a fresh chunk after a release");
        assert_eq!((a[..].len(), b[..].len()), (700, 10));
    }
}
