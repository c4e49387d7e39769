//! Fuzz target: the TUN offload path: aura-tun's coalescing of the packets written to the
//! device (`aura_tun::gro`) and its split of what is read (`aura_tun::csum::split`). The
//! coalescer runs on packets a peer chose (what the tunnel writes to the TUN), with
//! checksums the peer may have left to it, so it must hold against anything: nothing may
//! panic, every frame it writes is one packet or a super-packet that splits back, and no
//! packet is lost or made up. A split never claims more segments or bytes than the
//! buffers it was given, every segment it leaves to the peer has a checksum the peer can
//! find, and where tun-rs 2.8.16's split (independent code) also takes the frame, the
//! segments, checksums finished, are the same bytes. The packed split (into one buffer,
//! back to back) makes the same packets as the split into separate buffers, or the same
//! error with its buffers left as they were.
#![no_main]

use aura_tun::csum::{VNET_HDR_LEN, complete_checksum, l4_of, split, split_packed};
use aura_tun::gro::Coalescer;
use libfuzzer_sys::fuzz_target;
use tun_rs::{VirtioNetHdr, gso_split};

/// Output buffers a split may fill, and their size.
const SEGMENTS: usize = 64;
const SEGMENT_LEN: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        // GRO: a batch of packets as aura-tun hands them over; lengths come from the input
        // (one byte, times 8), the high bit of the length byte flags the checksum as left
        // to this end.
        let mut packets: Vec<(Vec<u8>, bool)> = Vec::new();
        let mut input = rest;
        while let Some((&len, tail)) = input.split_first() {
            let n = (usize::from(len & 0x7f) * 8).min(tail.len());
            let (packet, tail) = tail.split_at(n);
            input = tail;
            packets.push((packet.to_vec(), len & 0x80 != 0));
            if packets.len() == 128 {
                break;
            }
        }
        let count = packets.len();
        let mut gro = Coalescer::new(mode & 2 != 0);
        let mut bufs = vec![vec![0u8; SEGMENT_LEN]; 128];
        let mut lens = vec![0usize; 128];
        let mut offload = vec![false; 128];
        let mut segments = 0;
        let items = packets.iter_mut().map(|(p, o)| (p.as_mut_slice(), *o));
        let _ = gro.write_batch(items, &mut |iov| {
            // The frame as the kernel reads it from the vectored write.
            let frame: Vec<u8> = iov.iter().flat_map(|s| s.iter().copied()).collect();
            let h = VirtioNetHdr::decode(&frame[..VNET_HDR_LEN.min(frame.len())])
                .expect("a whole header");
            if h.gso_type == 0 {
                segments += 1;
            } else {
                segments += split(&frame, &mut bufs, &mut lens, &mut offload, 0)
                    .expect("a super-packet splits back");
            }
            Ok(())
        });
        assert_eq!(segments, count, "packets lost or made up");
    } else {
        // GSO: a virtio-net header and a super-packet, split into segments.
        let Some(hdr_bytes) = rest.get(..VNET_HDR_LEN) else {
            return;
        };
        let mut bufs = vec![vec![0u8; SEGMENT_LEN]; SEGMENTS];
        let mut lens = vec![0usize; SEGMENTS];
        let mut offload = vec![false; SEGMENTS];
        let separate = split(rest, &mut bufs, &mut lens, &mut offload, 0);
        // The packed split makes the same packets back to back, or fails the same way and
        // leaves its vectors as they were.
        let (mut data, mut ends, mut flags) = (vec![7u8], vec![1usize], vec![true]);
        let packed = split_packed(rest, &mut data, &mut ends, &mut flags, SEGMENT_LEN, SEGMENTS);
        assert_eq!(packed, separate, "packed and separate splits disagree");
        if let Ok(n) = separate {
            assert_eq!((ends.len(), flags.len()), (n + 1, n + 1));
            assert_eq!(ends.last(), Some(&data.len()));
            for i in 0..n {
                let p = &data[ends[i]..ends[i + 1]];
                assert_eq!(p, &bufs[i][..lens[i]], "packed segment {i}");
                assert_eq!(flags[i + 1], offload[i], "packed flag {i}");
            }
        } else {
            assert_eq!((&data[..], &ends[..], &flags[..]), (&[7u8][..], &[1][..], &[true][..]));
        }
        let Ok(n) = separate else {
            return;
        };
        assert!(n <= SEGMENTS, "{n} segments from {SEGMENTS} buffers");
        assert!(lens[..n].iter().all(|s| *s <= SEGMENT_LEN));
        for i in 0..n {
            if offload[i] {
                let p = &mut bufs[i][..lens[i]];
                assert!(l4_of(p).is_some(), "segment {i} left to the peer, unfindable");
                assert!(complete_checksum(p));
            }
        }
        let Ok(mut hdr) = VirtioNetHdr::decode(hdr_bytes) else {
            return;
        };
        if hdr.gso_type == 0 {
            return;
        }
        // The header length as a reader works it out (the kernel's may be the packet's).
        let mut input = rest[VNET_HDR_LEN..].to_vec();
        let start = usize::from(hdr.csum_start);
        hdr.hdr_len = match (hdr.gso_type & 0x7f, input.get(start + 12)) {
            (5, _) => hdr.csum_start + 8,
            (_, Some(b)) => hdr.csum_start + u16::from(b >> 4) * 4,
            _ => return,
        };
        let v6 = input.first().is_some_and(|b| b >> 4 == 6);
        let mut theirs = vec![vec![0u8; SEGMENT_LEN]; SEGMENTS];
        let mut sizes = vec![0usize; SEGMENTS];
        if let Ok(m) = gso_split(&mut input, hdr, &mut theirs, &mut sizes, 0, v6)
            && m == n
        {
            for i in 0..n {
                assert_eq!(&bufs[i][..lens[i]], &theirs[i][..sizes[i]], "segment {i}");
            }
        }
    }
});
