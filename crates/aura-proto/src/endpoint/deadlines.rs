//! A timer queue with lazy invalidation: one live deadline per key, in a binary heap.
//!
//! Moving a key's deadline later (the usual case: every received packet postpones the
//! dead-peer timer) pushes nothing: the earlier entry stays in the heap, fires, finds
//! nothing due, and the owner schedules again. Moving it earlier pushes a new entry and
//! leaves the old one behind as stale; stale entries are skipped when they reach the top.
//! So the heap grows by at most one entry per timer firing or per earlier deadline, not
//! per packet, and scheduling costs O(log n) at worst.
//!
//! Keys are opaque: the queue knows nothing of what it times. Entries due at the same
//! instant come out in key order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::Instant;

/// A hasher for keys the owner assigns itself (connection handles: sequential, never
/// chosen by a peer), so it needs no defence against chosen collisions: one multiply per
/// word instead of SipHash, on a lookup made for every data packet.
#[derive(Debug, Default, Clone, Copy)]
struct OwnKeyHasher(u64);

impl Hasher for OwnKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[derive(Debug)]
pub(super) struct Deadlines<K> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
    /// Each key's live deadline; a heap entry that does not match it is stale.
    live: HashMap<K, Instant, BuildHasherDefault<OwnKeyHasher>>,
}

impl<K: Copy + Ord + Hash> Deadlines<K> {
    pub fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            live: HashMap::default(),
        }
    }

    /// Makes sure the queue holds an entry for `key` no later than `at`.
    pub fn schedule(&mut self, key: K, at: Instant) {
        if self.live.get(&key).is_none_or(|scheduled| at < *scheduled) {
            self.live.insert(key, at);
            self.heap.push(Reverse((at, key)));
        }
    }

    /// Forgets `key`; its entries in the heap become stale.
    pub fn remove(&mut self, key: K) {
        self.live.remove(&key);
    }

    fn is_live(&self, at: Instant, key: K) -> bool {
        self.live.get(&key) == Some(&at)
    }

    /// The earliest live deadline, dropping stale entries on the way.
    pub fn next(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, key))) = self.heap.peek().copied() {
            if self.is_live(at, key) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// The next key whose live deadline is at or before `now`, taken off the queue (the
    /// owner schedules it again if it still has a deadline).
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        while let Some(Reverse((at, key))) = self.heap.peek().copied() {
            if at > now {
                return None;
            }
            self.heap.pop();
            if self.is_live(at, key) {
                self.live.remove(&key);
                return Some(key);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn later_deadlines_keep_the_earlier_entry_and_earlier_ones_replace_it() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut d = Deadlines::new();
        d.schedule(1u64, t0 + s(10));
        d.schedule(1, t0 + s(20)); // later: ignored, the 10 s entry fires first
        assert_eq!(d.next(), Some(t0 + s(10)));
        d.schedule(1, t0 + s(5)); // earlier: replaces
        d.schedule(2, t0 + s(5));
        assert_eq!(d.next(), Some(t0 + s(5)));
        assert_eq!(d.pop_due(t0 + s(4)), None);
        // Same instant: key order.
        assert_eq!(d.pop_due(t0 + s(5)), Some(1));
        assert_eq!(d.pop_due(t0 + s(5)), Some(2));
        // The stale 10 s entry of key 1 is skipped.
        assert_eq!(d.pop_due(t0 + s(60)), None);
        assert_eq!(d.next(), None);
    }

    #[test]
    fn removed_keys_never_fire() {
        let t0 = Instant::now();
        let mut d = Deadlines::new();
        d.schedule(7u64, t0);
        d.schedule(8, t0 + Duration::from_secs(1));
        d.remove(7);
        assert_eq!(d.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(d.pop_due(t0 + Duration::from_secs(1)), Some(8));
        assert_eq!(d.pop_due(t0 + Duration::from_secs(1)), None);
    }
}
