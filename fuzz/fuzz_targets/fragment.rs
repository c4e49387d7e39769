//! Fuzz target: handshake fragments and their reassembly.
//!
//! The input is split into datagrams (a length byte before each). Every datagram that
//! `Fragment::decode` accepts must re-encode to itself; accepted fragments of one message
//! are fed to a `Reassembly`, whose output, when complete, must contain every accepted
//! fragment's bytes at its offset.
#![no_main]

use aura_proto::wire::{FRAG_HEADER_LEN, FRAG_TRAILER_LEN, Fragment, Reassembly};
use libfuzzer_sys::fuzz_target;

fn encode(f: &Fragment<'_>) -> Vec<u8> {
    let mut d = Vec::with_capacity(FRAG_HEADER_LEN + f.data.len() + FRAG_TRAILER_LEN);
    d.push(f.ty as u8);
    d.push(aura_proto::wire::VERSION_1);
    d.extend_from_slice(&f.sender.to_be_bytes());
    d.extend_from_slice(&f.receiver.to_be_bytes());
    d.extend_from_slice(&f.msg_len.to_be_bytes());
    d.extend_from_slice(&f.offset.to_be_bytes());
    d.extend_from_slice(f.data);
    d.extend_from_slice(&f.mac1);
    d.extend_from_slice(&f.mac2);
    d
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut reassembly: Option<Reassembly> = None;
    let mut accepted: Vec<(usize, Vec<u8>)> = Vec::new();
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n).min(tail.len());
        let (datagram, tail) = tail.split_at(n);
        rest = tail;
        let Ok(f) = Fragment::decode(datagram) else {
            continue;
        };
        assert_eq!(encode(&f), datagram);
        assert!(usize::from(f.offset) + f.data.len() <= usize::from(f.msg_len));
        let r = reassembly.get_or_insert_with(|| Reassembly::new(f.msg_len));
        match r.add(&f) {
            Ok(Some(msg)) => {
                accepted.push((usize::from(f.offset), f.data.to_vec()));
                for (off, bytes) in &accepted {
                    assert_eq!(&msg[*off..*off + bytes.len()], &bytes[..]);
                }
                return;
            }
            Ok(None) => accepted.push((usize::from(f.offset), f.data.to_vec())),
            Err(_) => {}
        }
    }
});
