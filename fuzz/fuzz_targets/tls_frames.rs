//! Fuzz target: the TLS carrier's stream framing (2-byte length, then an Aura datagram).
//! Arbitrary bytes, handed over in reads of arbitrary sizes, never panic the reader and
//! only yield non-empty frames that start with an Aura packet type; and datagrams framed
//! by the writer come back exactly, however the stream splits them.
#![no_main]

use aura_proto::wire::PacketType;
use aura_transport::carrier::tls::{decode_frames, encode_frames};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(split).min(rest.len());
    let (reads, body) = rest.split_at(cut);

    // Arbitrary bytes as a stream.
    let (frames, _) = decode_frames(body, reads);
    for f in &frames {
        assert!(!f.is_empty() && f.len() <= usize::from(u16::MAX));
        assert!(PacketType::from_u8(f[0]).is_some());
    }

    // The same bytes cut into datagrams (each made to start with a valid type), framed
    // and read back.
    let datagrams: Vec<Vec<u8>> = body
        .chunks(97)
        .map(|c| {
            let mut d = c.to_vec();
            d[0] = PacketType::Data as u8;
            d
        })
        .collect();
    let refs: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
    let wire = encode_frames(&refs);
    assert_eq!(decode_frames(&wire, reads), (datagrams, true));
});
