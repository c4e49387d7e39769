//! A connection's inbox: the bounded queue on which the driver hands received batches to
//! the application's [`PacketConn`](crate::PacketConn).
//!
//! One producer (the driver) that never waits, one consumer that may. It is a
//! `VecDeque` behind a mutex with a [`Notify`], rather than a tokio channel, for memory:
//! a tokio channel allocates its first block of 32 slots when it is made, about 2.3 KiB
//! for batches, which every idle connection would hold. An inbox allocates nothing until
//! its first batch, and its whole shared state is one small allocation.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use crate::batch::PacketBatch;

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<PacketBatch>,
    /// The sending side is gone: once the queue is empty, the receiver sees the end.
    sender_gone: bool,
    /// The receiving side is gone: sends fail.
    receiver_gone: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the receiver; `notify_one` keeps a permit when it is not waiting yet.
    ready: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The driver's side of an inbox.
#[derive(Debug)]
pub(crate) struct InboxSender {
    shared: Arc<Shared>,
    capacity: usize,
}

/// The application's side of an inbox.
#[derive(Debug)]
pub(crate) struct Inbox {
    shared: Arc<Shared>,
}

/// An inbox holding at most `capacity` batches.
pub(crate) fn inbox(capacity: usize) -> (InboxSender, Inbox) {
    let shared = Arc::new(Shared::default());
    (
        InboxSender {
            shared: shared.clone(),
            capacity,
        },
        Inbox { shared },
    )
}

impl InboxSender {
    /// Queues `batch` without waiting; gives it back when the inbox is full or its
    /// receiver is gone.
    pub(crate) fn try_send(&self, batch: PacketBatch) -> Result<(), PacketBatch> {
        {
            let mut s = self.shared.lock();
            if s.receiver_gone || s.queue.len() >= self.capacity {
                return Err(batch);
            }
            s.queue.push_back(batch);
        }
        self.shared.ready.notify_one();
        Ok(())
    }
}

impl Drop for InboxSender {
    fn drop(&mut self) {
        self.shared.lock().sender_gone = true;
        self.shared.ready.notify_one();
    }
}

impl Inbox {
    /// The next batch, waiting for one; `None` once the sender is gone and every batch it
    /// queued has been taken. Cancel-safe: a batch is taken only when returned.
    pub(crate) async fn recv(&mut self) -> Option<PacketBatch> {
        loop {
            {
                let mut s = self.shared.lock();
                if let Some(b) = s.queue.pop_front() {
                    return Some(b);
                }
                if s.sender_gone {
                    return None;
                }
            }
            // A batch queued between the check and this wait left a permit: no wake-up
            // is lost.
            self.shared.ready.notified().await;
        }
    }

    /// The next batch if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<PacketBatch> {
        self.shared.lock().queue.pop_front()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let queued = {
            let mut s = self.shared.lock();
            s.receiver_gone = true;
            std::mem::take(&mut s.queue)
        };
        // Back to their pool, outside the lock.
        for b in queued {
            b.recycle();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;

    fn batch(tag: u8) -> PacketBatch {
        PacketBatch::from_packets([[tag]])
    }

    fn tag(b: &PacketBatch) -> u8 {
        b.get(0).unwrap()[0]
    }

    #[tokio::test]
    async fn batches_come_out_in_order_and_the_end_after_the_last() {
        let (tx, mut rx) = inbox(4);
        for t in 1..=3 {
            tx.try_send(batch(t)).unwrap();
        }
        drop(tx);
        for t in 1..=3 {
            assert_eq!(tag(&rx.recv().await.unwrap()), t);
        }
        assert!(rx.recv().await.is_none());
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_full_inbox_gives_the_batch_back() {
        let (tx, mut rx) = inbox(2);
        tx.try_send(batch(1)).unwrap();
        tx.try_send(batch(2)).unwrap();
        assert_eq!(tag(&tx.try_send(batch(3)).unwrap_err()), 3);
        assert_eq!(tag(&rx.try_recv().unwrap()), 1);
        tx.try_send(batch(4)).unwrap();
        assert_eq!(tag(&rx.try_recv().unwrap()), 2);
        assert_eq!(tag(&rx.try_recv().unwrap()), 4);
        assert!(rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn sends_fail_once_the_receiver_is_gone() {
        let (tx, rx) = inbox(2);
        tx.try_send(batch(1)).unwrap();
        drop(rx);
        assert_eq!(tag(&tx.try_send(batch(2)).unwrap_err()), 2);
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_a_batch_and_for_the_end() {
        let (tx, mut rx) = inbox(8);
        let waiter = tokio::spawn(async move {
            let first = rx.recv().await.map(|b| tag(&b));
            let end = rx.recv().await.map(|b| tag(&b));
            (first, end)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.try_send(batch(7)).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(tx);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, (Some(7), None));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_is_lost_or_reordered_across_threads() {
        const N: u32 = 20_000;
        let (tx, mut rx) = inbox(16);
        let producer = std::thread::spawn(move || {
            let mut sent = Vec::new();
            for i in 0..N {
                let b = PacketBatch::from_packets([i.to_be_bytes()]);
                if tx.try_send(b).is_ok() {
                    sent.push(i);
                } else {
                    std::thread::yield_now();
                }
            }
            sent
        });
        let mut got = Vec::new();
        while let Some(b) = rx.recv().await {
            got.push(u32::from_be_bytes(b.get(0).unwrap().try_into().unwrap()));
        }
        let sent = producer.join().unwrap();
        assert!(!sent.is_empty());
        assert_eq!(got, sent);
    }
}
