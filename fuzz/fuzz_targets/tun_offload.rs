//! Fuzz target: the TUN offload path: aura-tun's coalescing of the packets written to the
//! device (`aura_tun::gro`) and tun-rs 2.8.16's virtio-net GSO split of what is read. The
//! coalescer runs on packets a peer chose (what the tunnel writes to the TUN), so it must
//! hold against anything: nothing may panic, every frame it writes is one packet or a
//! super-packet that splits back, and no packet is lost or made up. A split never claims
//! more segments or bytes than the buffers it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use aura_tun::gro::Coalescer;
use tun_rs::{VIRTIO_NET_HDR_LEN, VirtioNetHdr, gso_split};

/// Output buffers a split may fill, and their size.
const SEGMENTS: usize = 64;
const SEGMENT_LEN: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        // GRO: a batch of packets as aura-tun hands them over; lengths come from the input
        // (one byte, times 8).
        let mut packets = Vec::new();
        let mut input = rest;
        while let Some((&len, tail)) = input.split_first() {
            let n = (usize::from(len) * 8).min(tail.len());
            let (packet, tail) = tail.split_at(n);
            input = tail;
            packets.push(packet);
            if packets.len() == 128 {
                break;
            }
        }
        let mut gro = Coalescer::new(mode & 2 != 0);
        let mut out = vec![vec![0u8; SEGMENT_LEN]; 128];
        let mut sizes = vec![0usize; 128];
        let mut segments = 0;
        let _ = gro.write_batch(packets.iter().copied(), &mut |hdr, packet| {
            let h = VirtioNetHdr::decode(hdr).expect("a whole header");
            if h.gso_type == 0 {
                assert_eq!(hdr, [0; VIRTIO_NET_HDR_LEN], "a single packet's header is empty");
                segments += 1;
            } else {
                let v6 = packet.first().is_some_and(|b| b >> 4 == 6);
                let mut p = packet.to_vec();
                let n = gso_split(&mut p, h, &mut out, &mut sizes, 0, v6)
                    .expect("a super-packet splits back");
                segments += n;
            }
            Ok(())
        });
        assert_eq!(segments, packets.len(), "packets lost or made up");
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
