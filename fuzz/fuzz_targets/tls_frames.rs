//! Fuzz target: the TLS carrier's stream framing (2-byte length, then an Aura datagram).
//! Arbitrary bytes, handed over in reads of arbitrary sizes, never panic the reader and
//! only yield non-empty frames that start with an Aura packet type; and datagrams framed
//! by the writer come back exactly, however the stream splits them. Inside the frames,
//! the padding of inner packets (review M8): trimming never panics and yields a prefix of
//! only-zero padding, and a packet padded by the day's sizes is trimmed back exactly.
#![no_main]

use std::sync::OnceLock;

use aura_transport::camo::mask::{Mask, MaskSeed};
use aura_transport::camo::shape::{Profile, stream_padded_len, trim_padding};

use aura_proto::wire::PacketType;
use aura_transport::carrier::tls::{decode_frames, encode_frames};
use libfuzzer_sys::fuzz_target;

fn mask() -> &'static Mask {
    static MASK: OnceLock<Mask> = OnceLock::new();
    MASK.get_or_init(|| {
        MaskSeed::new(
            b"fuzz",
            vec!["a.example".into()],
            vec![b"h2".to_vec()],
            Some(Profile::HttpsBuckets),
        )
        .expect("mask seed")
        .mask_at(1_800_000_000)
    })
}

fn padding(body: &[u8]) {
    let t = trim_padding(body);
    assert!(body.starts_with(t));
    assert!(body[t.len()..].iter().all(|b| *b == 0));
    let n = stream_padded_len(body, mask(), 0x5eed);
    assert!(n >= body.len());
    if n > body.len() {
        let mut padded = body.to_vec();
        padded.resize(n, 0);
        assert_eq!(trim_padding(&padded), body, "padded and trimmed back");
    }
}

fuzz_target!(|data: &[u8]| {
    padding(data);
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
