//! Packet batches: many IP packets back to back in one buffer, recycled through a pool,
//! so the data path moves packets between the daemons and the driver without an
//! allocation (or a lock) per packet.
//!
//! A [`PacketBatch`] taken from a [`BatchPool`] remembers its pool; whoever consumes it
//! last calls [`PacketBatch::recycle`] and the cleared buffers go back for the next batch.
//! A pool keeps at most [`POOL_MAX`] batches; once warm, steady traffic allocates nothing.
//! Dropping a batch instead of recycling it is correct, only slower.
//!
//! A [`QueueLimit`] bounds the bytes a producer has handed on and its consumer has not
//! finished with yet (as byte queue limits bound what a NIC holds): a batch admitted under
//! it carries its charge until it is recycled or dropped, wherever it went in between.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most batches a pool keeps for reuse.
pub const POOL_MAX: usize = 16;

/// Bytes reserved in a new batch. Small, because the driver keeps one pool per
/// connection and most connections are quiet; a batch grows as packets are pushed (an
/// amortised allocation), keeps that capacity when recycled, so a busy connection's
/// batches stop allocating once they have grown to its burst size.
const NEW_BYTES: usize = 4 * 1024;
/// Packet slots reserved in a new batch.
const NEW_PACKETS: usize = 8;

/// Batches ready for reuse. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct BatchPool(Arc<Mutex<Vec<PacketBatch>>>);

impl BatchPool {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch, reused when one is available, that returns here when recycled.
    pub fn take(&self) -> PacketBatch {
        let reused = self.0.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut b = reused.unwrap_or_else(|| PacketBatch::with_capacity(NEW_BYTES, NEW_PACKETS));
        b.home = Some(self.clone());
        b
    }

    /// Batches waiting for reuse.
    pub fn idle(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn put(&self, b: PacketBatch) {
        let mut idle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < POOL_MAX {
            idle.push(b);
        }
    }
}

/// IP packets back to back: packet `i` is `data[ends[i - 1]..ends[i]]`, and `offload[i]`
/// says whether its TCP or UDP checksum is left to the receiving end (a segment of an
/// offloaded super-packet, docs/PROTOCOL.md §5.3).
#[derive(Debug, Default)]
pub struct PacketBatch {
    data: Vec<u8>,
    ends: Vec<usize>,
    offload: Vec<bool>,
    home: Option<BatchPool>,
    /// What this batch counts against a [`QueueLimit`], released with it.
    charge: Option<Charge>,
    /// The room it holds in a [`SendBudget`], given back with it.
    reserved: Option<OwnedSemaphorePermit>,
}

/// Bytes charged to a [`QueueLimit`], given back when dropped.
#[derive(Debug)]
struct Charge {
    bytes: usize,
    queued: Arc<AtomicUsize>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.queued.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A bound on the bytes of batches handed to a consumer and not yet recycled or dropped.
/// Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct QueueLimit {
    queued: Arc<AtomicUsize>,
    limit: usize,
}

impl QueueLimit {
    /// A limit of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            queued: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// Charges `batch` to the limit and returns `true`, or returns `false` (charging
    /// nothing) when it would take the bytes queued past the limit. An empty queue takes
    /// any batch, so one larger than the limit still passes alone.
    pub fn admit(&self, batch: &mut PacketBatch) -> bool {
        let bytes = batch.bytes();
        let queued = self.queued.load(Ordering::Relaxed);
        if queued > 0 && queued.saturating_add(bytes) > self.limit {
            return false;
        }
        self.queued.fetch_add(bytes, Ordering::Relaxed);
        // A batch charged twice gives the first charge back here.
        batch.charge = Some(Charge {
            bytes,
            queued: self.queued.clone(),
        });
        true
    }

    /// Bytes charged now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

/// A bound on the bytes of batches sent to the driver and not yet sealed, shared by every
/// connection of one driver. A sender waits for room (backpressure) rather than queueing
/// without end: what a local TCP sender has in flight then stays in its own socket, held
/// back by the kernel's small-queue limit, instead of standing in front of every other
/// packet of the tunnel. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct SendBudget {
    room: Arc<Semaphore>,
    limit: usize,
}

impl SendBudget {
    /// A budget of `limit` bytes (at least 1, at most `u32::MAX`).
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, u32::MAX as usize);
        Self {
            room: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// Waits until `batch`'s bytes fit, then reserves them for it until it is recycled or
    /// dropped. A batch larger than the whole budget waits for all of it.
    pub async fn reserve(&self, batch: &mut PacketBatch) {
        let n = batch.bytes().clamp(1, self.limit);
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        // The semaphore is never closed, so this cannot fail.
        if let Ok(p) = self.room.clone().acquire_many_owned(n).await {
            batch.reserved = Some(p);
        }
    }

    /// Bytes not reserved now.
    pub fn available(&self) -> usize {
        self.room.available_permits()
    }
}

impl PacketBatch {
    /// An empty batch with room reserved, belonging to no pool.
    pub fn with_capacity(bytes: usize, packets: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(packets),
            offload: Vec::with_capacity(packets),
            home: None,
            charge: None,
            reserved: None,
        }
    }

    /// A batch holding copies of `packets` (tests and convenience APIs).
    pub fn from_packets<P: AsRef<[u8]>>(packets: impl IntoIterator<Item = P>) -> Self {
        let mut b = Self::default();
        for p in packets {
            b.push(p.as_ref());
        }
        b
    }

    /// Appends a copy of `packet`, whose checksums are complete.
    pub fn push(&mut self, packet: &[u8]) {
        self.push_with(packet, false);
    }

    /// Appends a copy of `packet`; with `offload`, its TCP or UDP checksum is left to the
    /// receiving end.
    pub fn push_with(&mut self, packet: &[u8], offload: bool) {
        self.data.extend_from_slice(packet);
        self.ends.push(self.data.len());
        self.offload.push(offload);
    }

    /// Number of packets.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there is no packet.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of all packets together.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Packet `i`.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.data.get(start..end)
    }

    /// Whether packet `i`'s TCP or UDP checksum is left to the receiving end.
    pub fn offload(&self, i: usize) -> bool {
        self.offload.get(i).copied().unwrap_or(false)
    }

    /// The packets in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + Clone + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// The packets in order, each with its [`PacketBatch::offload`] flag.
    pub fn iter_with_offload(&self) -> impl Iterator<Item = (&[u8], bool)> + Clone + '_ {
        (0..self.len()).filter_map(|i| Some((self.get(i)?, self.offload(i))))
    }

    /// The batch as it lies, writable: the packets back to back (packet `i` ends at
    /// `ends[i]`), and each one's [`PacketBatch::offload`] flag. What a device writes
    /// without copying the packets first ([`aura_tun::PacketDevice::send_packed`]).
    pub fn packed_mut(&mut self) -> (&mut [u8], &[usize], &[bool]) {
        (&mut self.data, &self.ends, &self.offload)
    }

    /// The batch's buffers, for a device to append packets to where the batch will carry
    /// them ([`aura_tun::PacketDevice::recv_packed`]): the packets back to back, each
    /// one's end (an offset in the first, ascending, the last its length) and each one's
    /// [`PacketBatch::offload`] flag. Whoever appends keeps that layout.
    pub fn parts_mut(&mut self) -> (&mut Vec<u8>, &mut Vec<usize>, &mut Vec<bool>) {
        (&mut self.data, &mut self.ends, &mut self.offload)
    }

    /// Keeps only the packets for which `keep` is true, in order, in place.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8]) -> bool) {
        let mut write = 0;
        let mut start = 0;
        let mut kept = 0;
        for i in 0..self.ends.len() {
            let end = self.ends[i];
            if keep(&self.data[start..end]) {
                let len = end - start;
                if write != start {
                    self.data.copy_within(start..end, write);
                }
                write += len;
                self.ends[kept] = write;
                self.offload[kept] = self.offload[i];
                kept += 1;
            }
            start = end;
        }
        self.data.truncate(write);
        self.ends.truncate(kept);
        self.offload.truncate(kept);
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.offload.clear();
    }

    /// Empties the batch and gives it back to its pool (dropped when it has none), and
    /// releases its charge to a [`QueueLimit`].
    pub fn recycle(mut self) {
        self.charge = None;
        self.reserved = None;
        if let Some(home) = self.home.take() {
            self.clear();
            home.put(self);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    #[test]
    fn packets_come_back_in_order_and_retain_keeps_order() {
        let mut b = PacketBatch::from_packets([&b"one"[..], b"", b"three", b"four!"]);
        assert_eq!(b.len(), 4);
        assert_eq!(b.bytes(), 13);
        assert_eq!(b.get(1), Some(&b""[..]));
        assert_eq!(b.get(4), None);
        b.retain(|p| p.len() != 3);
        let left: Vec<&[u8]> = b.iter().collect();
        assert_eq!(left, vec![&b""[..], b"three", b"four!"]);
        b.retain(|p| p.starts_with(b"f"));
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![&b"four!"[..]]);
        assert_eq!(b.bytes(), 5);
    }

    #[test]
    fn a_batch_lies_packed_with_its_flags() {
        let mut b = PacketBatch::default();
        b.push_with(b"a1", true);
        b.push(b"");
        b.push(b"c333");
        let (data, ends, offload) = b.packed_mut();
        assert_eq!(
            (&data[..], ends, offload),
            (&b"a1c333"[..], &[2, 2, 6][..], &[true, false, false][..])
        );
        data[2] = b'C';
        assert_eq!(b.get(2), Some(&b"C333"[..]));
    }

    #[test]
    fn offload_flags_follow_their_packets_through_retain_and_clear() {
        let mut b = PacketBatch::default();
        b.push_with(b"a1", true);
        b.push(b"b22");
        b.push_with(b"c333", true);
        b.push_with(b"d4444", false);
        let flags = |b: &PacketBatch| b.iter_with_offload().map(|(_, o)| o).collect::<Vec<_>>();
        assert_eq!(flags(&b), [true, false, true, false]);
        b.retain(|p| p != b"b22");
        let left: Vec<(&[u8], bool)> = b.iter_with_offload().collect();
        assert_eq!(
            left,
            vec![
                (&b"a1"[..], true),
                (&b"c333"[..], true),
                (&b"d4444"[..], false)
            ]
        );
        assert!(!b.offload(3));
        b.clear();
        b.push(b"e");
        assert_eq!(flags(&b), [false]);
    }

    #[test]
    fn recycled_batches_are_reused_without_new_buffers() {
        let pool = BatchPool::new();
        let mut a = pool.take();
        a.push(&[7; 1500]);
        let ptr = a.data.as_ptr();
        a.recycle();
        assert_eq!(pool.idle(), 1);
        let b = pool.take();
        assert!(b.is_empty());
        assert_eq!(b.data.as_ptr(), ptr, "the same buffer came back");
        assert_eq!(pool.idle(), 0);
        // A batch of no pool is simply dropped.
        PacketBatch::from_packets([b"x"]).recycle();
        assert_eq!(pool.idle(), 0);
        // The pool keeps at most POOL_MAX.
        let many: Vec<_> = (0..POOL_MAX + 5).map(|_| pool.take()).collect();
        many.into_iter().for_each(PacketBatch::recycle);
        assert_eq!(pool.idle(), POOL_MAX);
    }

    #[test]
    fn a_queue_limit_admits_up_to_its_bytes_and_frees_them_with_the_batch() {
        let limit = QueueLimit::new(3000);
        let pool = BatchPool::new();
        let batch = |n: usize| {
            let mut b = pool.take();
            b.push(&vec![1; n]);
            b
        };
        // An empty queue takes even a batch larger than the limit.
        let mut big = batch(5000);
        assert!(limit.admit(&mut big));
        assert_eq!(limit.queued(), 5000);
        let mut small = batch(10);
        assert!(!limit.admit(&mut small), "refused while past the limit");
        assert_eq!(limit.queued(), 5000);
        big.recycle();
        assert_eq!(limit.queued(), 0);

        let (mut a, mut b, mut c) = (batch(1500), batch(1500), batch(1));
        assert!(limit.admit(&mut a));
        assert!(limit.admit(&mut b));
        assert!(!limit.admit(&mut c), "3001 bytes would pass 3000");
        assert_eq!(limit.queued(), 3000);
        // Dropped rather than recycled: released as well.
        drop(a);
        assert_eq!(limit.queued(), 1500);
        assert!(limit.admit(&mut c));
        assert_eq!(limit.queued(), 1501);
        // Charged again (to the same or another limit): the first charge is given back.
        assert!(limit.admit(&mut c));
        assert_eq!(limit.queued(), 1501);
        b.recycle();
        c.recycle();
        assert_eq!(limit.queued(), 0);
        // A recycled batch comes back uncharged.
        let d = pool.take();
        assert!(d.charge.is_none());
    }

    #[tokio::test]
    async fn a_sender_waits_for_room_in_the_send_budget_until_a_batch_is_sealed() {
        let budget = SendBudget::new(3000);
        let sized = |n: usize| PacketBatch::from_packets([vec![0u8; n]]);
        let mut a = sized(2000);
        budget.reserve(&mut a).await;
        assert_eq!(budget.available(), 1000);
        // 1500 more do not fit: the sender waits.
        let mut b = sized(1500);
        {
            let waiting = budget.reserve(&mut b);
            tokio::pin!(waiting);
            let t = std::time::Duration::from_millis(50);
            assert!(tokio::time::timeout(t, &mut waiting).await.is_err());
            // The first batch sealed (recycled or dropped): the second goes.
            a.recycle();
            tokio::time::timeout(std::time::Duration::from_secs(5), &mut waiting)
                .await
                .expect("room came back");
        }
        assert_eq!(budget.available(), 1500);
        drop(b);
        assert_eq!(budget.available(), 3000);
        // A batch larger than the whole budget waits for all of it, then passes alone.
        let mut big = sized(10_000);
        budget.reserve(&mut big).await;
        assert_eq!(budget.available(), 0);
        big.recycle();
        assert_eq!(budget.available(), 3000);
    }
}
