//! Caps on handshakes in flight, per source and in all, shared by the QUIC and TLS
//! listeners: a connection holds a [`HandshakeSlot`] from its first packet until its first
//! valid Aura frame, and a source (an IPv4 address, or an IPv6 /64, the unit an attacker
//! usually gets) cannot hold more than its share.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

/// Counts connections in the handshake phase.
#[derive(Debug)]
pub(crate) struct HandshakeLimiter {
    per_source_max: usize,
    total_max: usize,
    state: Mutex<LimiterState>,
}

#[derive(Debug, Default)]
struct LimiterState {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// A connection's place in the handshake phase; released on drop.
#[derive(Debug)]
pub(crate) struct HandshakeSlot {
    limiter: Arc<HandshakeLimiter>,
    source: IpAddr,
}

impl HandshakeLimiter {
    pub(crate) fn new(per_source_max: usize, total_max: usize) -> Self {
        HandshakeLimiter {
            per_source_max,
            total_max,
            state: Mutex::new(LimiterState::default()),
        }
    }

    /// Handshakes in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    fn source_key(ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        }
    }

    /// A slot for a handshake from `ip`, or `None` when its source or the whole listener
    /// is at its cap.
    pub(crate) fn acquire(this: &Arc<Self>, ip: IpAddr) -> Option<HandshakeSlot> {
        let source = Self::source_key(ip);
        let mut st = this.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.total >= this.total_max {
            return None;
        }
        let count = st.per_source.entry(source).or_insert(0);
        if *count >= this.per_source_max {
            return None;
        }
        *count += 1;
        st.total += 1;
        Some(HandshakeSlot {
            limiter: this.clone(),
            source,
        })
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut st = self
            .limiter
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        st.total = st.total.saturating_sub(1);
        if let Some(count) = st.per_source.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                st.per_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counts_per_source_and_in_all_and_releases() {
        let l = Arc::new(HandshakeLimiter::new(2, 3));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a_mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let b2: IpAddr = "2001:db8::2".parse().unwrap();
        let a1 = HandshakeLimiter::acquire(&l, a).unwrap();
        let _a2 = HandshakeLimiter::acquire(&l, a_mapped).unwrap();
        assert!(HandshakeLimiter::acquire(&l, a).is_none(), "per-source cap");
        let _b1 = HandshakeLimiter::acquire(&l, b).unwrap();
        assert_eq!(l.in_flight(), 3);
        assert!(HandshakeLimiter::acquire(&l, b2).is_none(), "global cap");
        drop(a1);
        assert_eq!(l.in_flight(), 2);
        // b and b2 share a /64: one more fits there now, then the source is full.
        let _b2 = HandshakeLimiter::acquire(&l, b2).unwrap();
        assert!(HandshakeLimiter::acquire(&l, a).is_none());
    }
}
