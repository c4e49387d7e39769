//! Property tests for the control envelope codecs and the CRL assembler.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use aura_proto::control::{
    self, AddressAssign, AddressRequest, CircuitFailed, CircuitReady, ControlError, ControlKind,
    ControlMessage, CrlAck, CrlAssembler, CrlChunk, ExtendBridge, HEADER_LEN, MAX_PAYLOAD_LEN,
    MAX_REASON_LEN,
};
use proptest::prelude::*;

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(any::<u8>(), 0..2048),
    ]
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

/// A reason of at most `MAX_REASON_LEN` bytes (multi-byte characters included).
fn reason() -> impl Strategy<Value = String> {
    ".{0,300}".prop_map(|s: String| CircuitFailed::truncating(&s).reason)
}

/// A valid chunk description: (number, total_len, offset, data).
fn chunk_parts() -> impl Strategy<Value = (u64, u32, u32, Vec<u8>)> {
    (any::<u64>(), 1u32..100_000)
        .prop_flat_map(|(number, total)| (Just(number), Just(total), 0..total))
        .prop_flat_map(|(number, total, offset)| {
            let room = usize::try_from(total - offset).unwrap().min(3000);
            (
                Just(number),
                Just(total),
                Just(offset),
                proptest::collection::vec(any::<u8>(), 0..=room),
            )
        })
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        socket_addr().prop_map(|addr| ControlMessage::from(ExtendBridge { addr })
            .encode()
            .unwrap()),
        reason().prop_map(|reason| {
            ControlMessage::from(CircuitFailed { reason })
                .encode()
                .unwrap()
        }),
        any::<u64>().prop_map(|crl_number| ControlMessage::from(CrlAck { crl_number })
            .encode()
            .unwrap()),
        Just(ControlMessage::from(CircuitReady).encode().unwrap()),
        Just(ControlMessage::from(AddressRequest).encode().unwrap()),
        chunk_parts().prop_map(|(crl_number, total_len, offset, data)| {
            ControlMessage::from(CrlChunk {
                crl_number,
                offset,
                total_len,
                data: &data,
            })
            .encode()
            .unwrap()
        }),
        (any::<[u8; 4]>(), 1u8..=30, any::<u16>()).prop_filter_map(
            "a usable assignment",
            |(a, prefix_len, mtu)| {
                let mask = u32::MAX << (32 - u32::from(prefix_len));
                let net = u32::from_be_bytes(a) & mask;
                let assign = AddressAssign {
                    address: Ipv4Addr::from(net | 2),
                    prefix_len,
                    gateway: Ipv4Addr::from(net | 1),
                    mtu: mtu.max(AddressAssign::MIN_MTU),
                };
                ControlMessage::from(assign).encode().ok()
            }
        ),
        (8u8..=255, payload()).prop_map(|(kind, payload)| control::encode(
            ControlKind::from_u8(kind),
            &payload
        )
        .unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn envelope_round_trip(kind in any::<u8>(), payload in payload()) {
        let kind = ControlKind::from_u8(kind);
        let packet = control::encode(kind, &payload).unwrap();
        prop_assert_eq!(packet.len(), HEADER_LEN + payload.len());
        prop_assert!(control::is_control(&packet));
        let envelope = control::decode(&packet).unwrap();
        prop_assert_eq!(envelope.kind, kind);
        prop_assert_eq!(envelope.payload, &payload[..]);
        let mut out = vec![0; packet.len()];
        prop_assert_eq!(envelope.encode_into(&mut out), Ok(packet.len()));
        prop_assert_eq!(out, packet);
    }

    #[test]
    fn kind_is_normalised(byte in any::<u8>()) {
        let kind = ControlKind::from_u8(byte);
        prop_assert_eq!(kind.to_u8(), byte);
        prop_assert_eq!(ControlKind::from_u8(kind.to_u8()), kind);
        if let ControlKind::Unknown(n) = kind {
            prop_assert!(!(1..=7).contains(&n));
        }
    }

    #[test]
    fn strict_prefix_is_truncated(packet in message(), cut in any::<prop::sample::Index>()) {
        let len = cut.index(packet.len());
        let result = control::decode(&packet[..len]);
        if len < control::MAGIC.len() {
            prop_assert_eq!(result, Err(ControlError::NotControl));
        } else {
            let is_truncated = matches!(result, Err(ControlError::Truncated { .. }));
            prop_assert!(is_truncated, "prefix of {} bytes: {:?}", len, result);
        }
    }

    #[test]
    fn appended_bytes_are_trailing(packet in message(), extra in proptest::collection::vec(any::<u8>(), 1..32)) {
        let declared = packet.len() - HEADER_LEN;
        let mut longer = packet.clone();
        longer.extend_from_slice(&extra);
        prop_assert_eq!(
            control::decode(&longer),
            Err(ControlError::TrailingBytes { declared, actual: declared + extra.len() })
        );
    }

    #[test]
    fn every_message_round_trips(packet in message()) {
        let message = ControlMessage::decode(&packet).unwrap();
        prop_assert_eq!(message.encode().unwrap(), packet.clone());
        let mut out = vec![0; packet.len() + 7];
        prop_assert_eq!(message.encode_into(&mut out), Ok(packet.len()));
        prop_assert_eq!(&out[..packet.len()], &packet[..]);
        if !packet.is_empty() {
            let short = message.encode_into(&mut vec![0; packet.len() - 1]);
            let is_small = matches!(short, Err(ControlError::BufferTooSmall { .. }));
            prop_assert!(is_small);
        }
    }

    #[test]
    fn extend_bridge_round_trip(addr in socket_addr()) {
        let extend = ExtendBridge { addr };
        let bytes = extend.to_vec();
        prop_assert_eq!(bytes.len(), if addr.is_ipv4() { 7 } else { 19 });
        prop_assert_eq!(ExtendBridge::decode(&bytes), Ok(extend));
    }

    #[test]
    fn extend_bridge_rejects_wrong_length(addr in socket_addr(), extra in 1usize..4, shorten in any::<bool>()) {
        let mut bytes = ExtendBridge { addr }.to_vec();
        if shorten {
            bytes.truncate(bytes.len().saturating_sub(extra));
        } else {
            bytes.extend(std::iter::repeat_n(0, extra));
        }
        prop_assert!(ExtendBridge::decode(&bytes).is_err());
    }

    #[test]
    fn extend_bridge_rejects_bad_family(family in any::<u8>(), rest in proptest::collection::vec(any::<u8>(), 0..20)) {
        prop_assume!(family != 4 && family != 6);
        let mut bytes = vec![family];
        bytes.extend_from_slice(&rest);
        prop_assert_eq!(ExtendBridge::decode(&bytes), Err(ControlError::UnknownAddressFamily(family)));
    }

    #[test]
    fn circuit_failed_round_trip(reason in reason()) {
        let failed = CircuitFailed::new(reason.clone()).unwrap();
        let bytes = failed.to_vec().unwrap();
        prop_assert_eq!(&bytes, reason.as_bytes());
        prop_assert_eq!(CircuitFailed::decode(&bytes), Ok(failed));
    }

    #[test]
    fn circuit_failed_rejects_long_or_invalid(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
        match CircuitFailed::decode(&bytes) {
            Ok(failed) => {
                prop_assert!(bytes.len() <= MAX_REASON_LEN);
                prop_assert_eq!(failed.reason.as_bytes(), &bytes[..]);
            }
            Err(ControlError::ReasonTooLong { len, .. }) => prop_assert!(len > MAX_REASON_LEN),
            Err(ControlError::InvalidUtf8(_)) => prop_assert!(std::str::from_utf8(&bytes).is_err()),
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }

    #[test]
    fn crl_ack_round_trip(crl_number in any::<u64>(), len in 0usize..16) {
        let ack = CrlAck { crl_number };
        prop_assert_eq!(CrlAck::decode(&ack.to_bytes()), Ok(ack));
        if len != 8 {
            prop_assert!(CrlAck::decode(&vec![0; len]).is_err());
        }
    }

    #[test]
    fn crl_chunk_round_trip((crl_number, total_len, offset, data) in chunk_parts()) {
        let chunk = CrlChunk { crl_number, offset, total_len, data: &data };
        let bytes = chunk.to_vec().unwrap();
        prop_assert_eq!(bytes.len(), 16 + data.len());
        prop_assert_eq!(CrlChunk::decode(&bytes), Ok(chunk));
    }

    #[test]
    fn crl_chunk_rejects_out_of_bounds(
        crl_number in any::<u64>(),
        total_len in 1u32..10_000,
        overflow in 1u32..100,
        len in 1usize..200,
    ) {
        let data = vec![0xAB; len];
        let offset = (total_len + overflow).saturating_sub(u32::try_from(len).unwrap());
        prop_assume!(u64::from(offset) + len as u64 > u64::from(total_len));
        let mut bytes = crl_number.to_be_bytes().to_vec();
        bytes.extend_from_slice(&offset.to_be_bytes());
        bytes.extend_from_slice(&total_len.to_be_bytes());
        bytes.extend_from_slice(&data);
        let is_oob = matches!(CrlChunk::decode(&bytes), Err(ControlError::ChunkOutOfBounds { .. }));
        prop_assert!(is_oob);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let mut packet = control::MAGIC.to_vec();
        packet.extend_from_slice(&bytes);
        if let Ok(message) = ControlMessage::decode(&packet) {
            prop_assert_eq!(message.encode().unwrap(), packet);
        }
    }
}

/// Reassembly of a CRL pushed with `max_chunk`-byte chunks, delivered in the order given by
/// `order` (indices into the chunk list, with repeats).
fn reassemble(
    number: u64,
    der: &[u8],
    max_chunk: usize,
    order: &[usize],
) -> (Option<Vec<u8>>, usize) {
    let packets: Vec<Vec<u8>> = control::chunk_crl(number, der, max_chunk)
        .unwrap()
        .collect();
    let mut asm = CrlAssembler::new();
    let mut completed = None;
    let mut completions = 0;
    for &i in order {
        let packet = &packets[i % packets.len()];
        let envelope = control::decode(packet).unwrap();
        if let Some(crl) = asm.push_envelope(&envelope).unwrap() {
            completions += 1;
            completed = Some(crl);
        }
    }
    (completed, completions)
}

/// A CRL, a chunk size, and a delivery order: a random permutation of all chunk indices with
/// random duplicates inserted anywhere (also after the last new chunk).
fn crl_case() -> impl Strategy<Value = (u64, Vec<u8>, usize, Vec<usize>)> {
    (
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 1..4000),
        1usize..600,
    )
        .prop_flat_map(|(number, der, max_chunk)| {
            let chunks = der.len().div_ceil(max_chunk);
            let permutation = Just((0..chunks).collect::<Vec<_>>()).prop_shuffle();
            let duplicates =
                proptest::collection::vec((0..chunks, any::<prop::sample::Index>()), 0..20);
            (
                Just(number),
                Just(der),
                Just(max_chunk),
                permutation,
                duplicates,
            )
        })
        .prop_map(|(number, der, max_chunk, mut order, duplicates)| {
            for (chunk, at) in duplicates {
                let position = at.index(order.len() + 1);
                order.insert(position, chunk);
            }
            (number, der, max_chunk, order)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn crl_reassembles_in_any_order_with_duplicates((number, der, max_chunk, order) in crl_case()) {
        let (completed, completions) = reassemble(number, &der, max_chunk, &order);
        prop_assert_eq!(completions, 1);
        prop_assert_eq!(completed, Some(der));
    }

    #[test]
    fn crl_incomplete_without_every_chunk(
        der in proptest::collection::vec(any::<u8>(), 2..2000),
        max_chunk in 1usize..300,
        missing in any::<prop::sample::Index>(),
    ) {
        let chunks = der.len().div_ceil(max_chunk);
        prop_assume!(chunks > 1);
        let skip = missing.index(chunks);
        let order: Vec<usize> = (0..chunks).chain(0..chunks).filter(|&i| i != skip).collect();
        let (completed, completions) = reassemble(1, &der, max_chunk, &order);
        prop_assert_eq!(completions, 0);
        prop_assert_eq!(completed, None);
    }

    #[test]
    fn crl_newer_number_wins(
        old in proptest::collection::vec(any::<u8>(), 10..500),
        new in proptest::collection::vec(any::<u8>(), 10..500),
        number in 0u64..1000,
        interleave in proptest::collection::vec(any::<bool>(), 0..200),
    ) {
        let old_packets: Vec<Vec<u8>> = control::chunk_crl(number, &old, 7).unwrap().collect();
        let new_packets: Vec<Vec<u8>> = control::chunk_crl(number + 1, &new, 7).unwrap().collect();
        let mut asm = CrlAssembler::new();
        // Start the old CRL, but never finish it before the new one starts.
        asm.push_envelope(&control::decode(&old_packets[0]).unwrap()).unwrap();
        let mut old_iter = old_packets.iter().skip(1);
        let mut done = Vec::new();
        let mut flags = interleave.into_iter();
        for packet in &new_packets {
            if let Some(crl) = asm.push_envelope(&control::decode(packet).unwrap()).unwrap() {
                done.push(crl);
            }
            // Old chunks after the restart are ignored.
            if flags.next().unwrap_or(false)
                && let Some(old_packet) = old_iter.next()
            {
                prop_assert_eq!(asm.push_envelope(&control::decode(old_packet).unwrap()), Ok(None));
            }
        }
        prop_assert_eq!(done, vec![new]);
        prop_assert_eq!(asm.last_completed(), Some(number + 1));
    }
}

#[test]
fn payload_limit_is_enforced_on_both_sides() {
    let payload = vec![0u8; MAX_PAYLOAD_LEN + 1];
    assert!(matches!(
        control::encode(ControlKind::CrlPush, &payload),
        Err(ControlError::TooLong { .. })
    ));
    let mut packet = control::MAGIC.to_vec();
    packet.push(1);
    packet.extend_from_slice(&u32::try_from(MAX_PAYLOAD_LEN + 1).unwrap().to_be_bytes());
    packet.extend_from_slice(&payload);
    assert!(matches!(
        control::decode(&packet),
        Err(ControlError::TooLong { .. })
    ));
}
