//! Handshake CPU cost per side, through the public `Endpoint` API.
//!
//! Each iteration is a complete, fresh handshake between a client and a server endpoint
//! (a new client connection with a fresh sender index, so the server's retransmission
//! cache never answers), with datagrams handed across by direct calls. Only the calls of
//! the side under measurement are timed:
//!
//! - `client`: `connect()` (hybrid X25519 + ML-KEM-768 key generation, Init) and
//!   `handle_datagram` of the server's Resp datagrams (decapsulation, server chain + CRL
//!   verification, signature check, client signature, sealed Finish);
//! - `server`: `handle_datagram` of the Init datagrams (encapsulation, signature, sealed
//!   Resp) and of the Finish datagrams (client chain + CRL verification, signature check).
//!
//! The server keeps one connection per client id, so every handshake after the first is
//! a rekey of alice's connection; the CPU work is the same. The client closes each
//! connection (untimed) so its tables stay small.
//!
//! Run: `cargo bench -p aura-proto --bench handshake`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use aura_crypto::aead::Suite;
use aura_proto::CloseReason;
use criterion::{Criterion, criterion_group, criterion_main};

use common::Pair;

/// Runs one handshake; returns the time spent in the client's calls, or the server's.
fn one(pair: &mut Pair, client_side: bool) -> Duration {
    let hs = pair.handshake();
    pair.client.close(hs.client_conn, CloseReason::Local);
    while pair.client.poll_event().is_some() {}
    // Drops the closed connection's stale timer entries.
    black_box(pair.client.poll_timeout());
    if client_side {
        hs.client_time
    } else {
        hs.server_time
    }
}

fn bench_handshake(c: &mut Criterion) {
    let mut pair = Pair::new(&Suite::ALL);
    // A first handshake, so that every measured server handshake is the same rekey.
    one(&mut pair, false);

    let mut group = c.benchmark_group("handshake");
    for (name, client_side) in [("client", true), ("server", false)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| one(&mut pair, client_side)).sum());
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = bench_handshake
}
criterion_main!(benches);
