//! Fuzz target: the TUN offload path (tun-rs 2.8.16's virtio-net GSO split and GRO
//! coalescing, which aura-tun runs on every batch when offload is on). GRO runs on
//! packets a peer chose (what the tunnel writes to the TUN), so it must hold against
//! anything: nothing may panic, and a split never claims more segments or bytes than the
//! buffers it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tun_rs::{GROTable, VIRTIO_NET_HDR_LEN, VirtioNetHdr, gso_split};

/// Output buffers a split may fill, and their size.
const SEGMENTS: usize = 64;
const SEGMENT_LEN: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        // GRO: a batch of packets, each behind the virtio-net header's room, as aura-tun
        // hands them over; lengths come from the input (one byte, times 8).
        let mut bufs = Vec::new();
        let mut input = rest;
        while let Some((&len, tail)) = input.split_first() {
            let n = (usize::from(len) * 8).min(tail.len());
            let (packet, tail) = tail.split_at(n);
            input = tail;
            let mut b = vec![0u8; VIRTIO_NET_HDR_LEN];
            b.extend_from_slice(packet);
            bufs.push(b);
            if bufs.len() == 128 {
                break;
            }
        }
        let mut table = GROTable::new();
        let _ = table.apply_gro(&mut bufs, VIRTIO_NET_HDR_LEN, mode & 2 != 0);
    } else {
        // GSO: a virtio-net header and a super-packet, split into segments.
        let Some(hdr_bytes) = rest.get(..VIRTIO_NET_HDR_LEN) else {
            return;
        };
        let Ok(hdr) = VirtioNetHdr::decode(hdr_bytes) else {
            return;
        };
        let mut input = rest[VIRTIO_NET_HDR_LEN..].to_vec();
        let mut out = vec![vec![0u8; SEGMENT_LEN]; SEGMENTS];
        let mut sizes = vec![0usize; SEGMENTS];
        if let Ok(n) = gso_split(&mut input, hdr, &mut out, &mut sizes, 0, mode & 2 != 0) {
            assert!(n <= SEGMENTS, "{n} segments from {SEGMENTS} buffers");
            assert!(sizes[..n].iter().all(|s| *s <= SEGMENT_LEN));
        }
    }
});
