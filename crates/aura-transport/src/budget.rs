//! The server's anti-amplification budget on the UDP carrier (docs/PROTOCOL.md §7.4).
//!
//! Until an address has proven that it receives what is sent to it, the server sends it
//! at most as many bytes as it has received from it, counted on the wire (camouflage
//! and padding included), retransmissions included: a spoofed source can make the
//! server send its victim no more than it sent itself. An address is proven once a
//! connection from it completes its handshake (the client's Finish answers the
//! server's Resp, so the client received it); from then on its datagrams are not
//! counted.
//!
//! Only handshake-form datagrams (Resp, cookie replies, alerts) are ever held back: data
//! datagrams go only to connections that completed their handshake. Bookkeeping is one
//! hash-map entry per unproven address, O(1) per datagram; entries left alone for
//! [`IDLE`] are forgotten, and at most [`MAX_ENTRIES`] are kept (beyond that a new
//! address gets no answer until entries expire, which is what an overloaded server may
//! do).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// An unproven address not heard from for this long is forgotten.
pub const IDLE: Duration = Duration::from_secs(30);
/// The most unproven addresses tracked at once.
pub const MAX_ENTRIES: usize = 1 << 16;

#[derive(Debug, Clone, Copy)]
struct Entry {
    received: u64,
    sent: u64,
    last: Instant,
}

/// Bytes received from and sent to each unproven address, and the proven addresses.
#[derive(Debug, Default)]
pub struct Budget {
    unproven: HashMap<SocketAddr, Entry>,
    proven: HashSet<SocketAddr>,
    /// Datagrams held back because they would have gone over an address's budget.
    pub held_back: u64,
}

impl Budget {
    /// Counts `len` wire bytes received from `from` (any datagram that is not a data
    /// datagram of a live session).
    pub fn received(&mut self, from: SocketAddr, len: usize, now: Instant) {
        if self.proven.contains(&from) {
            return;
        }
        let n = self.unproven.len();
        match self.unproven.get_mut(&from) {
            Some(e) => {
                e.received = e.received.saturating_add(len as u64);
                e.last = now;
            }
            None if n < MAX_ENTRIES => {
                self.unproven.insert(
                    from,
                    Entry {
                        received: len as u64,
                        sent: 0,
                        last: now,
                    },
                );
            }
            None => {}
        }
    }

    /// Whether a handshake-form datagram of `len` wire bytes may go to `to`; if so, it is
    /// counted against `to`'s budget.
    pub fn may_send(&mut self, to: SocketAddr, len: usize) -> bool {
        if self.proven.contains(&to) {
            return true;
        }
        let ok = self.unproven.get_mut(&to).is_some_and(|e| {
            let after = e.sent.saturating_add(len as u64);
            let fits = after <= e.received;
            if fits {
                e.sent = after;
            }
            fits
        });
        self.held_back += u64::from(!ok);
        ok
    }

    /// `addr` has proven it receives (a connection from it completed its handshake).
    pub fn prove(&mut self, addr: SocketAddr) {
        self.unproven.remove(&addr);
        self.proven.insert(addr);
    }

    /// No connection remains at `addr`: it is unproven again.
    pub fn forget(&mut self, addr: SocketAddr) {
        self.proven.remove(&addr);
    }

    /// Forgets unproven addresses idle for [`IDLE`].
    pub fn expire(&mut self, now: Instant) {
        self.unproven
            .retain(|_, e| now.saturating_duration_since(e.last) < IDLE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn an_unproven_address_gets_no_more_than_it_sent() {
        let now = Instant::now();
        let mut b = Budget::default();
        assert!(!b.may_send(a(1), 1), "nothing received, nothing sent");
        b.received(a(1), 1000, now);
        assert!(b.may_send(a(1), 600));
        assert!(b.may_send(a(1), 400));
        assert!(!b.may_send(a(1), 1));
        assert_eq!(b.held_back, 2);
        b.received(a(1), 300, now);
        assert!(!b.may_send(a(1), 301));
        assert!(b.may_send(a(1), 300));
        // Another port is another address.
        assert!(!b.may_send(a(2), 1));
    }

    #[test]
    fn proven_addresses_are_not_counted_until_forgotten() {
        let now = Instant::now();
        let mut b = Budget::default();
        b.prove(a(1));
        assert!(b.may_send(a(1), 100_000));
        b.received(a(1), 10, now);
        b.forget(a(1));
        assert!(!b.may_send(a(1), 1), "unproven again, with a fresh budget");
    }

    #[test]
    fn idle_entries_expire_and_the_table_is_bounded() {
        let now = Instant::now();
        let mut b = Budget::default();
        b.received(a(1), 500, now);
        b.expire(now + IDLE);
        assert!(!b.may_send(a(1), 1));
        for i in 0..MAX_ENTRIES + 10 {
            let addr = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 9));
            b.received(addr, 100, now);
        }
        assert_eq!(b.unproven.len(), MAX_ENTRIES);
    }
}
