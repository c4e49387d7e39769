//! Property tests for every codec in `aura_proto::wire`: round trips for arbitrary field
//! contents within the limits, fragmentation and reassembly under reordering and
//! duplication, and rejection of truncated, trailing and arbitrary input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aura_crypto::kem::{HYBRID_CT_LEN, HYBRID_PK_LEN};
use aura_proto::wire::{
    AuthMsg, DATA_HEADER_LEN, DataHeader, FRAG_HEADER_LEN, FRAG_TRAILER_LEN, Fragment, InitMsg,
    MAC_LEN, MAX_CERT_LEN, MAX_HANDSHAKE_MSG_LEN, MAX_SIG_LEN, MIN_DATAGRAM_LEN, PacketType,
    Reassembly, RespMsg, VERSION_1, WireError, fragment,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

const CASES: u32 = 256;

fn bytes(len: impl Into<proptest::collection::SizeRange>) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), len)
}

/// A length that is usually small but sometimes anywhere up to `max`, so the large end is
/// covered without making every case slow.
fn blob(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![3 => bytes(0..=64), 1 => bytes(0..=max)]
}

fn init_msg() -> impl Strategy<Value = InitMsg> {
    (
        bytes(1..=255),
        bytes(1..=255),
        any::<[u8; 32]>(),
        bytes(HYBRID_PK_LEN),
    )
        .prop_map(|(versions, suites, random, kem_pk)| InitMsg {
            versions,
            suites,
            random,
            kem_pk,
        })
}

fn resp_msg() -> impl Strategy<Value = RespMsg> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<[u8; 32]>(),
        bytes(HYBRID_CT_LEN),
        blob(MAX_HANDSHAKE_MSG_LEN),
    )
        .prop_map(|(version, suite, random, kem_ct, sealed_auth)| RespMsg {
            version,
            suite,
            random,
            kem_ct,
            sealed_auth,
        })
}

fn auth_msg() -> impl Strategy<Value = AuthMsg> {
    (
        blob(MAX_CERT_LEN),
        bytes(0..=MAX_SIG_LEN),
        any::<[u8; 32]>(),
    )
        .prop_map(|(cert, signature, finished)| AuthMsg {
            cert,
            signature,
            finished,
        })
}

fn handshake_type() -> impl Strategy<Value = PacketType> {
    prop_oneof![
        Just(PacketType::Init),
        Just(PacketType::Resp),
        Just(PacketType::Finish),
    ]
}

/// Asserts that every strict prefix of `encoded` fails to decode and that one extra byte
/// is reported as exactly one trailing byte.
fn assert_rejects_truncation_and_trailing<T: std::fmt::Debug>(
    encoded: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, WireError>,
) -> Result<(), TestCaseError> {
    for cut in 0..encoded.len() {
        let r = decode(&encoded[..cut]);
        prop_assert!(
            r.is_err(),
            "prefix of {cut}/{} bytes decoded",
            encoded.len()
        );
    }
    for extra in [0u8, 0xff] {
        let mut longer = encoded.to_vec();
        longer.push(extra);
        let r = decode(&longer);
        prop_assert!(
            matches!(r, Err(WireError::TrailingBytes(1, _))),
            "one trailing byte gave {r:?}"
        );
    }
    Ok(())
}

/// Room for message bytes in one fragment datagram.
fn room(max_datagram: usize) -> usize {
    max_datagram - FRAG_HEADER_LEN - FRAG_TRAILER_LEN
}

/// A message to fragment and how its fragments arrive.
#[derive(Debug, Clone)]
struct Delivery {
    msg: Vec<u8>,
    max_datagram: usize,
    /// A permutation of the fragment indices.
    order: Vec<usize>,
    /// Duplicates to splice in, as (fragment, position).
    dups: Vec<(Index, Index)>,
}

fn fragmented_delivery() -> impl Strategy<Value = Delivery> {
    (
        bytes(1..=MAX_HANDSHAKE_MSG_LEN),
        MIN_DATAGRAM_LEN..=1500usize,
    )
        .prop_flat_map(|(msg, max_datagram)| {
            let n = msg.len().div_ceil(room(max_datagram));
            (
                Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
                vec(any::<(Index, Index)>(), 0..=n.min(16)),
            )
                .prop_map(move |(order, dups)| Delivery {
                    msg: msg.clone(),
                    max_datagram,
                    order,
                    dups,
                })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn init_round_trips(m in init_msg()) {
        let e = m.encode();
        prop_assert_eq!(InitMsg::decode(&e)?, m);
    }

    #[test]
    fn init_rejects_truncated_and_trailing(m in init_msg()) {
        assert_rejects_truncation_and_trailing(&m.encode(), InitMsg::decode)?;
    }

    #[test]
    fn init_rejects_empty_lists(m in init_msg(), empty_versions in any::<bool>()) {
        let mut m = m;
        if empty_versions {
            m.versions.clear();
        } else {
            m.suites.clear();
        }
        let r = InitMsg::decode(&m.encode());
        prop_assert!(matches!(r, Err(WireError::Empty(_))), "{r:?}");
    }

    #[test]
    fn resp_round_trips(m in resp_msg()) {
        let e = m.encode();
        prop_assert_eq!(RespMsg::decode(&e)?, m);
    }

    #[test]
    fn resp_rejects_truncated_and_trailing(m in resp_msg()) {
        assert_rejects_truncation_and_trailing(&m.encode(), RespMsg::decode)?;
    }

    #[test]
    fn resp_rejects_oversize_sealed_auth(m in resp_msg(), over in 1..=64usize) {
        let mut m = m;
        m.sealed_auth = vec![0xa5; MAX_HANDSHAKE_MSG_LEN + over];
        let r = RespMsg::decode(&m.encode());
        prop_assert!(matches!(r, Err(WireError::TooLong { .. })), "{r:?}");
    }

    #[test]
    fn auth_round_trips(m in auth_msg()) {
        let e = m.encode();
        prop_assert_eq!(AuthMsg::decode(&e)?, m);
    }

    #[test]
    fn auth_rejects_truncated_and_trailing(m in auth_msg()) {
        assert_rejects_truncation_and_trailing(&m.encode(), AuthMsg::decode)?;
    }

    #[test]
    fn auth_rejects_oversize_fields(m in auth_msg(), over in 1..=64usize, cert in any::<bool>()) {
        let mut m = m;
        if cert {
            m.cert = vec![0x30; MAX_CERT_LEN + over];
        } else {
            m.signature = vec![0x30; MAX_SIG_LEN + over];
        }
        let r = AuthMsg::decode(&m.encode());
        prop_assert!(matches!(r, Err(WireError::TooLong { .. })), "{r:?}");
    }

    #[test]
    fn fragments_reassemble_once_in_any_order_with_duplicates(
        ty in handshake_type(),
        sender in any::<u32>(),
        receiver in any::<u32>(),
        delivery in fragmented_delivery(),
    ) {
        let Delivery { msg, max_datagram, order, dups } = delivery;
        let frags = fragment(ty, sender, receiver, &msg, max_datagram);
        prop_assert_eq!(frags.len(), order.len());
        let msg_len = u16::try_from(msg.len()).unwrap();

        // Every datagram fits and decodes to its own slice of the message.
        for d in &frags {
            prop_assert!(d.len() <= max_datagram);
            let f = Fragment::decode(d)?;
            prop_assert_eq!(f.ty, ty);
            prop_assert_eq!(f.sender, sender);
            prop_assert_eq!(f.receiver, receiver);
            prop_assert_eq!(f.msg_len, msg_len);
            prop_assert_eq!(f.mac1, [0u8; MAC_LEN]);
            prop_assert_eq!(f.mac2, [0u8; MAC_LEN]);
            let start = usize::from(f.offset);
            prop_assert_eq!(f.data, &msg[start..start + f.data.len()]);
        }

        let mut delivery = order.clone();
        for (which, at) in &dups {
            let frag = order[which.index(order.len())];
            delivery.insert(at.index(delivery.len() + 1), frag);
        }
        // The message is complete when the last distinct fragment first arrives.
        let mut seen = vec![false; frags.len()];
        let mut complete_at = None;
        for (pos, &i) in delivery.iter().enumerate() {
            if !seen[i] {
                seen[i] = true;
                if seen.iter().all(|s| *s) {
                    complete_at = Some(pos);
                }
            }
        }

        let first = Fragment::decode(&frags[delivery[0]])?;
        let mut r = Reassembly::new(first.msg_len);
        prop_assert_eq!(r.len(), msg.len());
        let mut outputs = Vec::new();
        for (pos, &i) in delivery.iter().enumerate() {
            let f = Fragment::decode(&frags[i])?;
            if let Some(out) = r.add(&f)? {
                outputs.push((pos, out.to_vec()));
            }
        }
        prop_assert_eq!(outputs.len(), 1, "message produced {} times", outputs.len());
        let (pos, out) = &outputs[0];
        prop_assert_eq!(Some(*pos), complete_at);
        prop_assert_eq!(out, &msg);
    }

    #[test]
    fn fragment_refuses_unusable_inputs(
        msg in bytes(0..=64),
        tiny in 0..=(FRAG_HEADER_LEN + FRAG_TRAILER_LEN),
    ) {
        prop_assert!(fragment(PacketType::Init, 1, 0, &msg, tiny).is_empty());
        prop_assert!(fragment(PacketType::Init, 1, 0, &[], 1232).is_empty());
        let big = vec![0u8; MAX_HANDSHAKE_MSG_LEN + 1 + msg.len()];
        prop_assert!(fragment(PacketType::Init, 1, 0, &big, 1232).is_empty());
    }

    #[test]
    fn fragment_decode_never_panics_on_arbitrary_bytes(b in bytes(0..=1600)) {
        check_decoded_fragment(&b)?;
    }

    #[test]
    fn fragment_decode_never_panics_on_plausible_headers(
        ty in 1u8..=3,
        version in prop_oneof![4 => Just(VERSION_1), 1 => any::<u8>()],
        msg_len in prop_oneof![any::<u16>(), 0..=(MAX_HANDSHAKE_MSG_LEN as u16 + 1)],
        offset in prop_oneof![any::<u16>(), 0..=(MAX_HANDSHAKE_MSG_LEN as u16)],
        rest in bytes(0..=1500),
    ) {
        let mut b = vec![ty, version];
        b.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 9]);
        b.extend_from_slice(&msg_len.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&rest);
        check_decoded_fragment(&b)?;
    }

    #[test]
    fn data_header_round_trips(receiver in any::<u32>(), counter in any::<u64>(), offload in any::<bool>(), payload in bytes(0..=64)) {
        let h = DataHeader { receiver, counter, offload };
        let mut out = [0u8; DATA_HEADER_LEN];
        h.write(&mut out);
        let ty = if offload { PacketType::DataOffload } else { PacketType::Data };
        prop_assert_eq!(out[0], ty as u8);
        prop_assert_eq!(DataHeader::read(&out)?, h);
        // The header is read from the start of a datagram; the payload follows it.
        let mut datagram = out.to_vec();
        datagram.extend_from_slice(&payload);
        prop_assert_eq!(DataHeader::read(&datagram)?, h);
        for cut in 0..DATA_HEADER_LEN {
            let r = DataHeader::read(&out[..cut]);
            prop_assert!(matches!(r, Err(WireError::Truncated { .. })), "{r:?}");
        }
    }

    #[test]
    fn data_header_rejects_other_types(ty in any::<u8>(), rest in any::<[u8; DATA_HEADER_LEN - 1]>()) {
        prop_assume!(!PacketType::is_data(ty));
        let mut b = vec![ty];
        b.extend_from_slice(&rest);
        prop_assert_eq!(DataHeader::read(&b), Err(WireError::UnknownType(ty)));
    }
}

/// Decodes `b` as a fragment; a success must describe exactly the bytes given and lie
/// within its message.
fn check_decoded_fragment(b: &[u8]) -> Result<(), TestCaseError> {
    let Ok(f) = Fragment::decode(b) else {
        return Ok(());
    };
    prop_assert!(!f.data.is_empty());
    prop_assert!(usize::from(f.msg_len) <= MAX_HANDSHAKE_MSG_LEN);
    prop_assert!(usize::from(f.offset) + f.data.len() <= usize::from(f.msg_len));
    prop_assert_eq!(f.ty as u8, b[0]);
    prop_assert_eq!(b[1], VERSION_1);
    prop_assert_eq!(f.sender, u32::from_be_bytes(b[2..6].try_into().unwrap()));
    prop_assert_eq!(f.receiver, u32::from_be_bytes(b[6..10].try_into().unwrap()));
    prop_assert_eq!(f.msg_len, u16::from_be_bytes([b[10], b[11]]));
    prop_assert_eq!(f.offset, u16::from_be_bytes([b[12], b[13]]));
    let trailer = b.len() - FRAG_TRAILER_LEN;
    prop_assert_eq!(f.data, &b[FRAG_HEADER_LEN..trailer]);
    prop_assert_eq!(&f.mac1[..], &b[trailer..trailer + MAC_LEN]);
    prop_assert_eq!(&f.mac2[..], &b[trailer + MAC_LEN..]);
    Ok(())
}
