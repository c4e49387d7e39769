//! The table of local session indices, and a server's share of the index space when it
//! runs as several endpoints (workers) behind one address.
//!
//! A worker takes only the indices `i` with `i % count == worker`, so whichever worker
//! reads a datagram knows from the receiver index alone which worker holds the session;
//! and it records every index it adds or removes, so the host can publish the live
//! indices to the other workers (a client that moved to another address may reach any
//! of them).

use std::collections::HashMap;

use super::connection::ConnectionHandle;

/// One worker's share of a server's session indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// This worker, `0..count`.
    pub worker: u32,
    /// How many workers share the index space.
    pub count: u32,
}

impl Partition {
    /// The partition of worker `worker` of `count`; `None` unless `worker < count`.
    pub fn new(worker: u32, count: u32) -> Option<Self> {
        (worker < count).then_some(Self { worker, count })
    }

    /// The worker that holds session index `index`.
    pub fn owner(&self, index: u32) -> u32 {
        index % self.count
    }

    /// Moves `candidate` into this worker's share: an index less than `count` away from
    /// it (a uniform candidate gives a uniform index in the share).
    fn place(&self, candidate: u32) -> Option<u32> {
        let base = candidate - candidate % self.count;
        base.checked_add(self.worker)
            .or_else(|| base.checked_sub(self.count)?.checked_add(self.worker))
    }
}

/// A change to the live indices, for the host to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexChange {
    /// A session now answers to this index.
    Added(u32),
    /// No session answers to this index any more.
    Removed(u32),
}

/// Local index → connection, recording changes when partitioned.
#[derive(Debug, Default)]
pub(super) struct Indices {
    map: HashMap<u32, ConnectionHandle>,
    partition: Option<Partition>,
    changes: Vec<IndexChange>,
}

impl Indices {
    pub(super) fn get(&self, index: &u32) -> Option<&ConnectionHandle> {
        self.map.get(index)
    }

    pub(super) fn contains_key(&self, index: &u32) -> bool {
        self.map.contains_key(index)
    }

    pub(super) fn insert(&mut self, index: u32, handle: ConnectionHandle) {
        if self.map.insert(index, handle).is_none() && self.partition.is_some() {
            self.changes.push(IndexChange::Added(index));
        }
    }

    pub(super) fn remove(&mut self, index: &u32) {
        if self.map.remove(index).is_some() && self.partition.is_some() {
            self.changes.push(IndexChange::Removed(*index));
        }
    }

    pub(super) fn partition(&self) -> Option<Partition> {
        self.partition
    }

    /// Sets the share; the changes recorded from now on describe every index.
    pub(super) fn set_partition(&mut self, p: Partition) {
        self.partition = Some(p);
        self.changes.clear();
        self.changes
            .extend(self.map.keys().map(|&i| IndexChange::Added(i)));
    }

    /// `candidate` moved into this endpoint's share (unchanged when not partitioned).
    pub(super) fn place(&self, candidate: u32) -> Option<u32> {
        match self.partition {
            Some(p) => p.place(candidate),
            None => Some(candidate),
        }
    }

    pub(super) fn take_changes(&mut self) -> Vec<IndexChange> {
        std::mem::take(&mut self.changes)
    }

    pub(super) fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_places_every_candidate_in_its_share() {
        for count in [1u32, 2, 3, 7, 16] {
            for worker in 0..count {
                let p = Partition::new(worker, count).unwrap_or_else(|| panic!("{worker}"));
                for c in [0u32, 1, 2, 5, 1000, u32::MAX - 3, u32::MAX - 1, u32::MAX] {
                    let Some(i) = p.place(c) else {
                        panic!("no index for {c} (worker {worker} of {count})");
                    };
                    assert_eq!(p.owner(i), worker, "{c} → {i}");
                    assert!(i.abs_diff(c) < count, "{c} → {i} is too far");
                }
            }
        }
        assert_eq!(Partition::new(2, 2), None);
    }

    #[test]
    fn changes_are_recorded_only_when_partitioned() {
        let h = ConnectionHandle(1);
        let mut t = Indices::default();
        t.insert(5, h);
        assert!(!t.has_changes());
        t.set_partition(Partition {
            worker: 1,
            count: 2,
        });
        t.insert(7, h);
        t.insert(7, h); // already there: no change
        t.remove(&5);
        t.remove(&9); // never there: no change
        assert_eq!(
            t.take_changes(),
            vec![
                IndexChange::Added(5),
                IndexChange::Added(7),
                IndexChange::Removed(5)
            ]
        );
        assert!(t.take_changes().is_empty());
    }
}
