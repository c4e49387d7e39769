//! Fuzz target: the UDP carrier's wire forms (docs/PROTOCOL.md §12.2–12.3).
//!
//! The first byte picks what is fuzzed: the constant-weight decoder, or a server's or a
//! client's `DatagramCamo::open` on the rest. Nothing may panic; a decoded block must
//! re-encode to a block of the same weight that decodes to the same bytes; whatever `open`
//! accepts must lie inside the input.
#![no_main]

use aura_transport::camo::datagram::{DatagramCamo, Side};
use aura_transport::camo::knock::{DeploymentSecret, KnockKeys};
use aura_transport::camo::weight::{self, WeightLevel};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_796_522_400;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut buf = rest.to_vec();
    match mode % 3 {
        0 => {
            if let Some(n) = weight::decode_in_place(&mut buf) {
                let decoded = buf[..n].to_vec();
                let mut again = Vec::new();
                let mut x = 0u64;
                weight::encode(
                    &decoded,
                    WeightLevel::from_index(usize::from(mode)),
                    || {
                        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
                        x
                    },
                    &mut again,
                );
                let m = weight::decode_in_place(&mut again).expect("own encoding decodes");
                assert_eq!(&again[..m], &decoded[..]);
            }
        }
        m => {
            let side = if m == 1 { Side::Server } else { Side::Client };
            let keys = KnockKeys::new(&DeploymentSecret::from_knock_key([7; 32]));
            let mut camo = DatagramCamo::new(side, keys, &[1; 32], NOW);
            let len = buf.len();
            if let Some(inner) = camo.open(&mut buf, NOW, |i| i % 2 == 0) {
                assert!(inner.len() <= len);
            }
        }
    }
});
