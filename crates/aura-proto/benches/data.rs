//! Data-channel throughput through the public `Endpoint` API: 1400-byte payloads sealed
//! by the client and opened by the server, in place, in caller-owned buffers.
//!
//! Variants, for each AEAD suite:
//! - `seal+open`: `Endpoint::seal` then `Endpoint::handle_datagram` of the same buffer
//!   (header parsing, session lookup, replay window, AEAD open). Opening in place leaves
//!   the plaintext where the next seal expects it, so nothing is copied;
//! - `seal`: `Endpoint::seal` alone, re-sealing the same buffer;
//! - `open`: `Endpoint::handle_datagram` alone, over batches sealed beforehand (untimed)
//!   with consecutive counters, as the replay window requires fresh ones.
//!
//! No buffer is allocated inside the timed loops. Before measuring, the bench counts heap
//! allocations per packet on each path with a counting global allocator, prints them, and
//! fails if either path allocates.
//!
//! Run: `cargo bench -p aura-proto --bench data`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aura_crypto::aead::Suite;
use aura_proto::{ConnectionHandle, DATA_OVERHEAD, SEAL_HEADROOM};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use common::Pair;

/// Payload bytes per packet (a full inner packet at a 1500-byte path MTU).
const PAYLOAD: usize = 1400;
/// Datagram buffer: headroom for the header, the payload, room for the tag.
const BUF_LEN: usize = SEAL_HEADROOM + PAYLOAD + (DATA_OVERHEAD - SEAL_HEADROOM);
/// Packets sealed ahead of a timed batch of opens.
const OPEN_BATCH: usize = 64;

/// Counts every allocation, to check that the data path allocates nothing per packet.
struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` unchanged; counting has no effect on memory.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract for `layout`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by this allocator (that is, by `System`) with
        // `layout`; the caller upholds the rest of `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// An established pair and the connection handles on each side.
struct Channel {
    pair: Pair,
    client_conn: ConnectionHandle,
}

impl Channel {
    fn new(suite: Suite) -> Self {
        let mut pair = Pair::new(&[suite]);
        let hs = pair.handshake();
        let info = pair.client.connection_info(hs.client_conn).unwrap();
        assert_eq!(info.suite, Some(suite));
        Self {
            pair,
            client_conn: hs.client_conn,
        }
    }

    /// Seals `buf[SEAL_HEADROOM..SEAL_HEADROOM + PAYLOAD]` in place; returns the length.
    fn seal(&mut self, buf: &mut [u8; BUF_LEN]) -> usize {
        let (_, n) = self
            .pair
            .client
            .seal(self.pair.now, self.client_conn, buf, PAYLOAD)
            .unwrap();
        n
    }

    /// Opens a sealed datagram in place on the server.
    fn open(&mut self, datagram: &mut [u8]) {
        let r = self
            .pair
            .server
            .handle_datagram(self.pair.now, self.pair.client_addr, datagram)
            .unwrap();
        black_box(r);
    }

    /// Seals and opens one packet in `buf`.
    fn seal_open(&mut self, buf: &mut [u8; BUF_LEN]) {
        let n = self.seal(buf);
        self.open(&mut buf[..n]);
    }
}

/// Heap allocations per call of `f`, over `runs` calls.
fn allocations_per_call(runs: u32, mut f: impl FnMut()) -> f64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..runs {
        f();
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    (after - before) as f64 / f64::from(runs)
}

fn bench_data(c: &mut Criterion) {
    for suite in Suite::ALL {
        let mut ch = Channel::new(suite);
        let mut buf = Box::new([0u8; BUF_LEN]);
        for (i, b) in buf[SEAL_HEADROOM..SEAL_HEADROOM + PAYLOAD]
            .iter_mut()
            .enumerate()
        {
            *b = i as u8;
        }
        // The round trip is exact: the payload comes back where it was.
        let plain = buf.clone();
        let n = ch.seal(&mut buf);
        assert_eq!(n, PAYLOAD + DATA_OVERHEAD);
        let r = ch
            .pair
            .server
            .handle_datagram(ch.pair.now, ch.pair.client_addr, &mut buf[..n])
            .unwrap()
            .unwrap();
        assert_eq!(r.payload, SEAL_HEADROOM..SEAL_HEADROOM + PAYLOAD);
        assert_eq!(buf[r.payload.clone()], plain[r.payload]);

        let mut sealed = vec![[0u8; BUF_LEN]; OPEN_BATCH];
        let mut lens = [0usize; OPEN_BATCH];
        let seal_allocs = allocations_per_call(1000, || {
            ch.seal(&mut buf);
        });
        let open_allocs = allocations_per_call(1000 / OPEN_BATCH as u32, || {
            for (b, n) in sealed.iter_mut().zip(lens.iter_mut()) {
                *n = ch.seal(b);
            }
            for (b, n) in sealed.iter_mut().zip(lens.iter()) {
                ch.open(&mut b[..*n]);
            }
        }) / OPEN_BATCH as f64
            - seal_allocs;
        println!(
            "data/{}: heap allocations per packet: seal {seal_allocs:.2}, open {open_allocs:.2}",
            suite.name()
        );
        // The data path must not allocate: fail the benchmark run if it starts to.
        assert!(
            seal_allocs == 0.0 && open_allocs <= 0.0,
            "the data path allocates: seal {seal_allocs}, open {open_allocs} per packet"
        );

        let mut group = c.benchmark_group(format!("data/{}", suite.name()));
        group.throughput(Throughput::Bytes(PAYLOAD as u64));
        group.bench_function("seal+open", |b| b.iter(|| ch.seal_open(&mut buf)));
        group.bench_function("seal", |b| b.iter(|| ch.seal(&mut buf)));
        group.bench_function("open", |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let k = usize::try_from(left).unwrap_or(OPEN_BATCH).min(OPEN_BATCH);
                    for (b, n) in sealed[..k].iter_mut().zip(lens.iter_mut()) {
                        *n = ch.seal(b);
                    }
                    let t = Instant::now();
                    for (b, n) in sealed[..k].iter_mut().zip(lens.iter()) {
                        ch.open(&mut b[..*n]);
                    }
                    spent += t.elapsed();
                    left -= k as u64;
                }
                spent
            });
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_data
}
criterion_main!(benches);
