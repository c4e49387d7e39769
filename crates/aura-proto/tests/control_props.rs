//! Property tests for the control envelope codecs and the CRL assembler, then known-answer
//! and rejection tests of each codec, one example at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use aura_proto::control::{
    self, AddressAssign, AddressAssign6, AddressRequest, CRL_PUSH_OVERHEAD, CircuitFailed,
    CircuitReady, ControlError, ControlKind, ControlMessage, CoverGrant, CoverProfile,
    CoverRequest, CrlAck, CrlAssembler, CrlChunk, DnsAssign, Envelope, ExtendBridge, HEADER_LEN,
    MAGIC, MAX_CRL_CHUNK_DATA_LEN, MAX_CRL_LEN, MAX_ENVELOPE_LEN, MAX_PAYLOAD_LEN, MAX_REASON_LEN,
    Padding, Via, chunk_crl, decode, encode, encode_into, is_control,
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

/// Whether a resolver address is one a [`DnsAssign`] may carry (written out here, independently
/// of the codec).
fn usable_resolver(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified() || v4.is_loopback() || v4.is_multicast() || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            let mapped = v6.segments()[..6] == [0, 0, 0, 0, 0, 0xffff];
            !(mapped || v6.is_unspecified() || v6.is_loopback() || v6.is_multicast())
        }
    }
}

/// A usable resolver address, IPv4 or IPv6 (a few fixed neighbours of the rejected ranges
/// mixed in with random ones).
fn resolver() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|ip| IpAddr::V4(Ipv4Addr::from(ip))),
        any::<[u8; 16]>().prop_map(|ip| IpAddr::V6(Ipv6Addr::from(ip))),
        prop::sample::select(vec![
            IpAddr::V4(Ipv4Addr::new(0, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(126, 255, 255, 255)),
            IpAddr::V4(Ipv4Addr::new(128, 0, 0, 0)),
            IpAddr::V4(Ipv4Addr::new(223, 255, 255, 255)),
            IpAddr::V4(Ipv4Addr::new(240, 0, 0, 0)),
            IpAddr::V4(Ipv4Addr::new(255, 255, 255, 254)),
            IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 2)),
            IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xfffe, 0x0a4d, 1)),
            IpAddr::V6(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0x0a4d, 1)),
            IpAddr::V6(Ipv6Addr::new(0xfeff, 0, 0, 0, 0, 0, 0, 1)),
        ]),
    ]
    .prop_filter("a usable resolver", |&ip| usable_resolver(ip))
}

/// A valid resolver list: 0 to `MAX_SERVERS` distinct usable addresses, in random order.
fn dns_assign() -> impl Strategy<Value = DnsAssign> {
    proptest::collection::btree_set(resolver(), 0..=DnsAssign::MAX_SERVERS)
        .prop_map(|set| set.into_iter().collect::<Vec<_>>())
        .prop_shuffle()
        .prop_map(|servers| DnsAssign { servers })
}

/// Whether an IPv6 assignment is one an [`AddressAssign6`] may carry (written out here,
/// independently of the codec).
fn usable_assign6(address: Ipv6Addr, prefix_len: u8, gateway: Ipv6Addr) -> bool {
    let usable = |ip: Ipv6Addr| {
        let s = ip.segments();
        let unspecified = s == [0; 8];
        let loopback = s == [0, 0, 0, 0, 0, 0, 0, 1];
        let multicast = s[0] >> 8 == 0xff;
        let link_local = s[0] & 0xffc0 == 0xfe80;
        let mapped = s[..6] == [0, 0, 0, 0, 0, 0xffff];
        !(unspecified || loopback || multicast || link_local || mapped)
    };
    if !(64..=126).contains(&prefix_len) || !usable(address) || !usable(gateway) {
        return false;
    }
    let host_bits = 128 - u32::from(prefix_len);
    let (a, g) = (u128::from(address), u128::from(gateway));
    let host = |x: u128| x & ((1u128 << host_bits) - 1);
    a >> host_bits == g >> host_bits && a != g && host(a) != 0 && host(g) != 0
}

/// A valid IPv6 assignment: a random prefix of 64 to 126 bits, two distinct non-zero hosts in
/// it (often the first two, as a server would pick them), usable addresses only.
fn address_assign6() -> impl Strategy<Value = AddressAssign6> {
    (
        prop_oneof![
            any::<[u8; 16]>(),
            Just([
                0xfd, 0x61, 0x75, 0x72, 0x61, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            ]),
        ],
        prop_oneof![64u8..=126, Just(64u8), Just(126u8)],
        prop_oneof![any::<u128>(), Just(2u128)],
        prop_oneof![any::<u128>(), Just(1u128)],
    )
        .prop_map(|(net, prefix_len, a, g)| {
            let host_mask = u128::MAX >> prefix_len;
            let net = u128::from_be_bytes(net) & !host_mask;
            AddressAssign6 {
                address: Ipv6Addr::from(net | (a & host_mask)),
                prefix_len,
                gateway: Ipv6Addr::from(net | (g & host_mask)),
            }
        })
        .prop_filter("a usable IPv6 assignment", |a| {
            usable_assign6(a.address, a.prefix_len, a.gateway)
        })
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

fn cover_profile() -> impl Strategy<Value = CoverProfile> {
    prop_oneof![
        Just(CoverProfile::Idle),
        Just(CoverProfile::Bursts),
        Just(CoverProfile::Https)
    ]
}

fn via() -> impl Strategy<Value = Via> {
    prop_oneof![Just(Via::Udp), Just(Via::Quic), Just(Via::Tls)]
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (socket_addr(), via()).prop_map(|(addr, via)| ControlMessage::from(ExtendBridge {
            addr,
            via
        })
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
        dns_assign().prop_map(|dns| ControlMessage::from(dns).encode().unwrap()),
        address_assign6().prop_map(|assign| ControlMessage::from(assign).encode().unwrap()),
        (0usize..300).prop_map(|len| ControlMessage::from(Padding { len }).encode().unwrap()),
        (cover_profile(), 1u16..=1000).prop_map(|(profile, budget)| ControlMessage::from(
            CoverRequest { profile, budget }
        )
        .encode()
        .unwrap()),
        proptest::option::of((cover_profile(), 1u16..=1000)).prop_map(|granted| {
            ControlMessage::from(CoverGrant { granted })
                .encode()
                .unwrap()
        }),
        (13u8..=255, payload()).prop_map(|(kind, payload)| control::encode(
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
            prop_assert!(!(1..=12).contains(&n));
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
    fn extend_bridge_round_trip(addr in socket_addr(), via in via()) {
        let extend = ExtendBridge { addr, via };
        let bytes = extend.to_vec();
        let byte = usize::from(via != Via::Udp);
        prop_assert_eq!(bytes.len(), if addr.is_ipv4() { 7 } else { 19 } + byte);
        prop_assert_eq!(ExtendBridge::decode(&bytes), Ok(extend));
    }

    #[test]
    fn extend_bridge_rejects_wrong_length(addr in socket_addr(), extra in 1usize..4, shorten in any::<bool>()) {
        let mut bytes = ExtendBridge { addr, via: Via::Udp }.to_vec();
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
    fn dns_assign_round_trip(dns in dns_assign()) {
        let expected_len = 1 + dns
            .servers
            .iter()
            .map(|ip| if ip.is_ipv4() { 5 } else { 17 })
            .sum::<usize>();
        prop_assert_eq!(dns.encoded_len(), expected_len);
        prop_assert_eq!(dns.validate(), Ok(()));
        let mut payload = vec![0; expected_len];
        prop_assert_eq!(dns.encode_into(&mut payload), Ok(expected_len));
        prop_assert_eq!(usize::from(payload[0]), dns.servers.len());
        prop_assert_eq!(DnsAssign::decode(&payload), Ok(dns.clone()));
        let short = dns.encode_into(&mut vec![0; expected_len - 1]);
        prop_assert_eq!(
            short,
            Err(ControlError::BufferTooSmall { needed: expected_len, have: expected_len - 1 })
        );
        let packet = ControlMessage::from(dns.clone()).encode().unwrap();
        prop_assert_eq!(&packet, &control::encode(ControlKind::DnsAssign, &payload).unwrap());
        prop_assert_eq!(ControlMessage::decode(&packet), Ok(ControlMessage::DnsAssign(dns)));
    }

    #[test]
    fn dns_assign_decode_is_canonical(
        entries in proptest::collection::vec(
            (prop_oneof![4 => Just(4u8), 4 => Just(6u8), 1 => any::<u8>()], any::<[u8; 16]>()),
            0..=9,
        ),
        count in proptest::option::weighted(0.2, 0u8..=9),
        cut in proptest::option::weighted(0.2, 1usize..8),
        extra in prop_oneof![3 => Just(Vec::new()), 1 => proptest::collection::vec(any::<u8>(), 1..3)],
    ) {
        // Mostly well-formed entries (the right count, no cut, nothing after), sometimes a wrong
        // count, a cut or trailing bytes.
        let mut payload = vec![count.unwrap_or(u8::try_from(entries.len()).unwrap())];
        for (family, address) in &entries {
            payload.push(*family);
            let len = if *family == 4 { 4 } else { 16 };
            payload.extend_from_slice(&address[..len]);
        }
        payload.truncate(payload.len().saturating_sub(cut.unwrap_or(0)));
        payload.extend_from_slice(&extra);
        match DnsAssign::decode(&payload) {
            Ok(dns) => {
                prop_assert!(dns.servers.len() <= DnsAssign::MAX_SERVERS);
                prop_assert!(dns.servers.iter().all(|&ip| usable_resolver(ip)));
                prop_assert_eq!(dns.validate(), Ok(()));
                let mut out = vec![0; dns.encoded_len()];
                prop_assert_eq!(dns.encode_into(&mut out), Ok(payload.len()));
                prop_assert_eq!(out, payload);
            }
            Err(ControlError::PayloadTruncated { kind: ControlKind::DnsAssign, needed, have }) => {
                prop_assert_eq!(have, payload.len());
                prop_assert!(needed > have);
            }
            Err(ControlError::PayloadLength { kind: ControlKind::DnsAssign, expected, actual }) => {
                prop_assert_eq!(actual, payload.len());
                prop_assert!(expected < actual);
            }
            Err(ControlError::BadDns(_)) => {}
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }

    #[test]
    fn address_assign6_round_trip(assign in address_assign6()) {
        prop_assert_eq!(assign.encoded_len(), 33);
        prop_assert_eq!(assign.validate(), Ok(()));
        let mut payload = vec![0; 33];
        prop_assert_eq!(assign.encode_into(&mut payload), Ok(33));
        prop_assert_eq!(&payload[..16], &assign.address.octets()[..]);
        prop_assert_eq!(payload[16], assign.prefix_len);
        prop_assert_eq!(&payload[17..], &assign.gateway.octets()[..]);
        prop_assert_eq!(AddressAssign6::decode(&payload), Ok(assign));
        prop_assert_eq!(
            assign.encode_into(&mut [0; 32]),
            Err(ControlError::BufferTooSmall { needed: 33, have: 32 })
        );
        let packet = ControlMessage::from(assign).encode().unwrap();
        prop_assert_eq!(&packet, &control::encode(ControlKind::AddressAssign6, &payload).unwrap());
        prop_assert_eq!(ControlMessage::decode(&packet), Ok(ControlMessage::AddressAssign6(assign)));
    }

    #[test]
    fn address_assign6_decode_agrees_with_the_rules(
        address in any::<[u8; 16]>(),
        prefix_len in prop_oneof![4 => 62u8..=128, 1 => any::<u8>()],
        same_prefix in proptest::bool::weighted(0.8),
        gateway in any::<[u8; 16]>(),
        len in prop_oneof![8 => Just(33usize), 1 => 0usize..40],
    ) {
        // Mostly a gateway in the address's prefix, so that the later checks are reached.
        let gateway = if same_prefix && prefix_len <= 128 {
            let host_mask = u128::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
            let net = u128::from_be_bytes(address) & !host_mask;
            (net | (u128::from_be_bytes(gateway) & host_mask)).to_be_bytes()
        } else {
            gateway
        };
        let mut payload = address.to_vec();
        payload.push(prefix_len);
        payload.extend_from_slice(&gateway);
        payload.resize(len, 0);
        match AddressAssign6::decode(&payload) {
            Ok(assign) => {
                prop_assert_eq!(len, 33);
                prop_assert!(usable_assign6(assign.address, assign.prefix_len, assign.gateway));
                let mut out = [0; 33];
                prop_assert_eq!(assign.encode_into(&mut out), Ok(33));
                prop_assert_eq!(&out[..], &payload[..]);
            }
            Err(ControlError::PayloadLength { kind: ControlKind::AddressAssign6, expected: 33, actual }) => {
                prop_assert_eq!(actual, len);
                prop_assert_ne!(len, 33);
            }
            Err(ControlError::BadAssignment(_)) => {
                prop_assert_eq!(len, 33);
                prop_assert!(!usable_assign6(
                    Ipv6Addr::from(address),
                    prefix_len,
                    Ipv6Addr::from(gateway),
                ));
            }
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
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

// Known answers and rejections, one example at a time.

fn env(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut packet = MAGIC.to_vec();
    packet.push(kind);
    packet.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

#[test]
fn known_answer_crl_ack() {
    let packet = ControlMessage::from(CrlAck {
        crl_number: 0x0102_0304_0506_0708,
    })
    .encode()
    .unwrap();
    assert_eq!(
        packet,
        [
            0xAA, 0xAA, 0xC0, 0x01, 2, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8
        ]
    );
}

#[test]
fn known_answer_extend_bridge() {
    let v4 = ExtendBridge {
        addr: "192.0.2.1:51820".parse().unwrap(),
        via: Via::Udp,
    };
    assert_eq!(v4.to_vec(), [4, 192, 0, 2, 1, 0xCA, 0x6C]);
    // Over QUIC and TLS: the same, then the carrier byte.
    for (via, byte) in [(Via::Quic, 1), (Via::Tls, 2)] {
        let e = ExtendBridge { via, ..v4 };
        assert_eq!(e.to_vec(), [4, 192, 0, 2, 1, 0xCA, 0x6C, byte]);
        assert_eq!(ExtendBridge::decode(&e.to_vec()).unwrap(), e);
    }
    // A carrier byte 0 (UDP has none) or an unknown one is refused.
    for bad in [0u8, 3, 0xff] {
        assert_eq!(
            ExtendBridge::decode(&[4, 192, 0, 2, 1, 0xCA, 0x6C, bad]),
            Err(ControlError::UnknownVia(bad))
        );
    }
    let v6 = ExtendBridge {
        addr: "[2001:db8::1]:443".parse().unwrap(),
        via: Via::Udp,
    };
    let mut expected = vec![6, 0x20, 0x01, 0x0d, 0xb8];
    expected.extend_from_slice(&[0; 11]);
    expected.extend_from_slice(&[1, 0x01, 0xBB]);
    assert_eq!(v6.to_vec(), expected);
    assert_eq!(ExtendBridge::decode(&expected).unwrap(), v6);
}

#[test]
fn known_answer_crl_chunk_and_ready() {
    let chunk = CrlChunk {
        crl_number: 9,
        offset: 2,
        total_len: 5,
        data: b"abc",
    };
    let packet = ControlMessage::from(chunk).encode().unwrap();
    let mut expected = vec![0xAA, 0xAA, 0xC0, 0x01, 1, 0, 0, 0, 19];
    expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0, 0, 5]);
    expected.extend_from_slice(b"abc");
    assert_eq!(packet, expected);
    let ready = ControlMessage::from(CircuitReady).encode().unwrap();
    assert_eq!(ready, [0xAA, 0xAA, 0xC0, 0x01, 4, 0, 0, 0, 0]);
}

#[test]
fn is_control_distinguishes_ip() {
    assert!(is_control(&MAGIC));
    assert!(!is_control(&[0x45, 0, 0, 20]));
    assert!(!is_control(&[0x60, 0, 0, 0]));
    assert!(!is_control(&MAGIC[..3]));
    assert!(!is_control(&[]));
}

#[test]
fn decode_not_control() {
    assert_eq!(decode(&[]), Err(ControlError::NotControl));
    assert_eq!(decode(&[0xAA, 0xAA, 0xC0]), Err(ControlError::NotControl));
    assert_eq!(decode(&[0x45; 30]), Err(ControlError::NotControl));
}

#[test]
fn decode_truncated_header_and_payload() {
    let packet = env(2, &[0; 8]);
    assert_eq!(
        decode(&packet[..6]),
        Err(ControlError::Truncated { needed: 9, have: 6 })
    );
    assert_eq!(
        decode(&packet[..12]),
        Err(ControlError::Truncated {
            needed: 17,
            have: 12
        })
    );
}

#[test]
fn decode_trailing_bytes() {
    let mut packet = env(4, &[]);
    packet.push(0);
    assert_eq!(
        decode(&packet),
        Err(ControlError::TrailingBytes {
            declared: 0,
            actual: 1
        })
    );
}

#[test]
fn decode_oversize_declared_len() {
    let mut packet = MAGIC.to_vec();
    packet.push(1);
    packet.extend_from_slice(&65_536u32.to_be_bytes());
    assert_eq!(
        decode(&packet),
        Err(ControlError::TooLong {
            len: 65_536,
            max: MAX_PAYLOAD_LEN
        })
    );
    let mut packet = MAGIC.to_vec();
    packet.push(1);
    packet.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(decode(&packet), Err(ControlError::TooLong { .. })));
}

#[test]
fn encode_limits() {
    let max = vec![7; MAX_PAYLOAD_LEN];
    let packet = encode(ControlKind::Unknown(200), &max).unwrap();
    assert_eq!(packet.len(), MAX_ENVELOPE_LEN);
    assert_eq!(decode(&packet).unwrap().payload, &max[..]);
    let over = vec![7; MAX_PAYLOAD_LEN + 1];
    assert_eq!(
        encode(ControlKind::CrlPush, &over),
        Err(ControlError::TooLong {
            len: MAX_PAYLOAD_LEN + 1,
            max: MAX_PAYLOAD_LEN
        })
    );
    let mut small = [0u8; 10];
    assert_eq!(
        encode_into(ControlKind::CrlAck, &[0; 8], &mut small),
        Err(ControlError::BufferTooSmall {
            needed: 17,
            have: 10
        })
    );
    assert_eq!(
        encode_into(ControlKind::CircuitReady, &[], &mut small),
        Ok(HEADER_LEN)
    );
}

#[test]
fn address_assign_round_trip_and_rejections() {
    let ok = AddressAssign {
        address: Ipv4Addr::new(10, 77, 0, 9),
        prefix_len: 24,
        gateway: Ipv4Addr::new(10, 77, 0, 1),
        mtu: 1380,
    };
    let packet = ControlMessage::from(ok).encode().unwrap();
    assert_eq!(packet.len(), HEADER_LEN + 11);
    assert_eq!(
        &packet[HEADER_LEN..],
        &[10, 77, 0, 9, 24, 10, 77, 0, 1, 0x05, 0x64]
    );
    assert_eq!(
        ControlMessage::decode(&packet).unwrap(),
        ControlMessage::AddressAssign(ok)
    );
    let bad = |f: fn(&mut AddressAssign)| {
        let mut a = ok;
        f(&mut a);
        let mut payload = [0u8; 11];
        payload[..4].copy_from_slice(&a.address.octets());
        payload[4] = a.prefix_len;
        payload[5..9].copy_from_slice(&a.gateway.octets());
        payload[9..].copy_from_slice(&a.mtu.to_be_bytes());
        assert!(matches!(
            AddressAssign::decode(&payload),
            Err(ControlError::BadAssignment(_))
        ));
        assert!(ControlMessage::from(a).encode().is_err());
    };
    bad(|a| a.prefix_len = 0);
    bad(|a| a.prefix_len = 31);
    bad(|a| a.prefix_len = 200);
    bad(|a| a.mtu = 575);
    bad(|a| a.gateway = Ipv4Addr::new(10, 78, 0, 1));
    bad(|a| a.address = a.gateway);
    bad(|a| a.address = Ipv4Addr::new(10, 77, 0, 0));
    bad(|a| a.address = Ipv4Addr::new(10, 77, 0, 255));
    assert!(matches!(
        AddressAssign::decode(&[0; 10]),
        Err(ControlError::PayloadLength { .. })
    ));
    let request = ControlMessage::from(AddressRequest).encode().unwrap();
    assert_eq!(request, [0xAA, 0xAA, 0xC0, 0x01, 7, 0, 0, 0, 0]);
    assert_eq!(
        ControlMessage::decode(&request).unwrap(),
        ControlMessage::AddressRequest(AddressRequest)
    );
    assert!(matches!(
        ControlMessage::decode(&[0xAA, 0xAA, 0xC0, 0x01, 7, 0, 0, 0, 1, 0]),
        Err(ControlError::PayloadLength { .. })
    ));
}

/// The frozen `DnsAssign` vector: servers [10.77.0.1, fd00::53], as a whole envelope.
const DNS_ASSIGN_VECTOR: [u8; 32] = [
    0xAA, 0xAA, 0xC0, 0x01, // magic
    0x08, // kind 8: DnsAssign
    0x00, 0x00, 0x00, 0x17, // payload length: 23
    0x02, // count
    0x04, 0x0A, 0x4D, 0x00, 0x01, // family 4, 10.77.0.1
    0x06, // family 6, then fd00::53 (16 bytes)
    0xFD, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x53, //
];

fn dns(servers: &[&str]) -> DnsAssign {
    DnsAssign {
        servers: servers.iter().map(|s| s.parse().unwrap()).collect(),
    }
}

/// A `DnsAssign` payload for `servers`, built by hand (family 4 for IPv4, 6 for IPv6), with no
/// validation: what a broken or hostile server could send.
fn dns_payload(servers: &[&str]) -> Vec<u8> {
    let mut payload = vec![u8::try_from(servers.len()).unwrap()];
    for s in servers {
        match s.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => {
                payload.push(4);
                payload.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                payload.push(6);
                payload.extend_from_slice(&v6.octets());
            }
        }
    }
    payload
}

#[test]
fn known_answer_dns_assign() {
    let assign = dns(&["10.77.0.1", "fd00::53"]);
    assert_eq!(assign.encoded_len(), 23);
    let packet = ControlMessage::from(assign.clone()).encode().unwrap();
    assert_eq!(packet, DNS_ASSIGN_VECTOR);
    let mut out = [0u8; 40];
    assert_eq!(
        ControlMessage::from(assign.clone()).encode_into(&mut out),
        Ok(32)
    );
    assert_eq!(out[..32], DNS_ASSIGN_VECTOR);
    assert_eq!(
        ControlMessage::decode(&DNS_ASSIGN_VECTOR),
        Ok(ControlMessage::DnsAssign(assign.clone()))
    );
    assert_eq!(
        DnsAssign::decode(&DNS_ASSIGN_VECTOR[HEADER_LEN..]),
        Ok(assign.clone())
    );
    let envelope = decode(&DNS_ASSIGN_VECTOR).unwrap();
    assert_eq!(envelope.kind, ControlKind::DnsAssign);
    assert_eq!(envelope.kind, DnsAssign::KIND);
    assert_eq!(u8::from(ControlKind::DnsAssign), 8);
    // A hand-built `Unknown(8)` is read as the kind it names.
    assert_eq!(
        ControlMessage::parse(Envelope {
            kind: ControlKind::Unknown(8),
            payload: envelope.payload,
        }),
        Ok(ControlMessage::DnsAssign(assign))
    );

    // Count 0: the server names no resolver.
    let none = [0xAA, 0xAA, 0xC0, 0x01, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00];
    assert_eq!(
        ControlMessage::from(DnsAssign::default()).encode().unwrap(),
        none
    );
    assert_eq!(
        ControlMessage::decode(&none),
        Ok(ControlMessage::DnsAssign(DnsAssign {
            servers: Vec::new()
        }))
    );

    // The order of the list is kept (it is the order of preference).
    let reversed = dns(&["fd00::53", "10.77.0.1"]);
    let packet = ControlMessage::from(reversed.clone()).encode().unwrap();
    assert_eq!(&packet[HEADER_LEN..HEADER_LEN + 2], &[2, 6]);
    assert_eq!(
        ControlMessage::decode(&packet),
        Ok(ControlMessage::DnsAssign(reversed))
    );

    // The most a list can take: eight IPv6 resolvers.
    let eight: Vec<String> = (1..=8).map(|i| format!("2001:db8::{i}")).collect();
    let eight: Vec<&str> = eight.iter().map(String::as_str).collect();
    let full = dns(&eight);
    assert_eq!(full.encoded_len(), 1 + 8 * 17);
    assert_eq!(DnsAssign::decode(&dns_payload(&eight)), Ok(full));
}

/// Checks that `servers` is rejected with `BadDns(problem)` on both sides: by the decoder (sent
/// by hand) and by `validate`/`encode_into`, which leave the output buffer untouched.
fn dns_rejected(servers: &[&str], problem: &'static str) {
    let expected = Err(ControlError::BadDns(problem));
    let payload = dns_payload(servers);
    assert_eq!(
        DnsAssign::decode(&payload).map(|_| ()),
        expected,
        "{servers:?}"
    );
    assert_eq!(
        ControlMessage::decode(&env(8, &payload)).map(|_| ()),
        expected,
        "{servers:?}"
    );
    let assign = dns(servers);
    assert_eq!(assign.validate(), expected, "{servers:?}");
    let mut out = [0x5A; 256];
    assert_eq!(
        assign.encode_into(&mut out).map(|_| ()),
        expected,
        "{servers:?}"
    );
    assert_eq!(
        ControlMessage::from(assign.clone())
            .encode_into(&mut out)
            .map(|_| ()),
        expected,
        "{servers:?}"
    );
    assert!(
        out.iter().all(|&b| b == 0x5A),
        "{servers:?}: wrote before validating"
    );
    assert_eq!(
        ControlMessage::from(assign).encode().map(|_| ()),
        expected,
        "{servers:?}"
    );
}

#[test]
fn dns_assign_rejects_too_many() {
    let nine: Vec<String> = (1..=9).map(|i| format!("10.0.0.{i}")).collect();
    let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
    dns_rejected(&nine, "more than 8 resolvers");
    // The count alone is enough: nothing after it is read.
    assert_eq!(
        DnsAssign::decode(&[9]),
        Err(ControlError::BadDns("more than 8 resolvers"))
    );
    assert_eq!(
        DnsAssign::decode(&[255]),
        Err(ControlError::BadDns("more than 8 resolvers"))
    );
}

#[test]
fn dns_assign_rejects_bad_family() {
    for family in [0u8, 1, 5, 41, 255] {
        let mut payload = vec![1, family];
        payload.extend_from_slice(&[10, 77, 0, 1]);
        assert_eq!(
            DnsAssign::decode(&payload),
            Err(ControlError::BadDns("address family must be 4 or 6")),
            "family {family}"
        );
    }
    // In the second entry too.
    let mut payload = dns_payload(&["10.77.0.1", "10.77.0.2"]);
    payload[6] = 46;
    assert_eq!(
        DnsAssign::decode(&payload),
        Err(ControlError::BadDns("address family must be 4 or 6"))
    );
}

#[test]
fn dns_assign_rejects_truncated() {
    let truncated = |needed, have| ControlError::PayloadTruncated {
        kind: ControlKind::DnsAssign,
        needed,
        have,
    };
    // No count byte.
    assert_eq!(DnsAssign::decode(&[]), Err(truncated(1, 0)));
    assert_eq!(ControlMessage::decode(&env(8, &[])), Err(truncated(1, 0)));
    // A count with no entry.
    assert_eq!(DnsAssign::decode(&[1]), Err(truncated(2, 1)));
    // An IPv4 entry cut short.
    assert_eq!(DnsAssign::decode(&[1, 4, 10, 77, 0]), Err(truncated(6, 5)));
    // An IPv6 entry cut short (an IPv4 address behind family 6).
    assert_eq!(
        DnsAssign::decode(&[1, 6, 10, 77, 0, 1]),
        Err(truncated(18, 6))
    );
    // Fewer entries than the count announces.
    let two = dns_payload(&["10.77.0.1", "fd00::53"]);
    assert_eq!(DnsAssign::decode(&two[..6]), Err(truncated(7, 6)));
    let mut three = two.clone();
    three[0] = 3;
    assert_eq!(DnsAssign::decode(&three), Err(truncated(24, 23)));
    for cut in 1..two.len() {
        assert!(
            matches!(
                DnsAssign::decode(&two[..cut]),
                Err(ControlError::PayloadTruncated { .. })
            ),
            "cut at {cut}"
        );
    }
}

#[test]
fn dns_assign_rejects_trailing_bytes() {
    let trailing = |expected, actual| ControlError::PayloadLength {
        kind: ControlKind::DnsAssign,
        expected,
        actual,
    };
    assert_eq!(DnsAssign::decode(&[0, 0]), Err(trailing(1, 2)));
    let mut one = dns_payload(&["10.77.0.1"]);
    one.push(4);
    assert_eq!(DnsAssign::decode(&one), Err(trailing(6, 7)));
    // A second entry the count does not announce.
    let mut two = dns_payload(&["10.77.0.1", "fd00::53"]);
    two[0] = 1;
    assert_eq!(DnsAssign::decode(&two), Err(trailing(6, 23)));
    let mut packet = env(8, &two);
    assert_eq!(ControlMessage::decode(&packet), Err(trailing(6, 23)));
    packet.push(0);
    assert!(matches!(
        ControlMessage::decode(&packet),
        Err(ControlError::TrailingBytes { .. })
    ));
}

#[test]
fn dns_assign_rejects_duplicates() {
    dns_rejected(&["10.77.0.1", "10.77.0.1"], "duplicate resolver");
    dns_rejected(&["fd00::53", "10.77.0.1", "fd00::53"], "duplicate resolver");
    dns_rejected(
        &["1.1.1.1", "8.8.8.8", "9.9.9.9", "8.8.8.8"],
        "duplicate resolver",
    );
    // The same address written differently is still the same address.
    dns_rejected(&["fd00::53", "fd00:0:0:0:0:0:0:53"], "duplicate resolver");
}

#[test]
fn dns_assign_rejects_unusable_addresses() {
    dns_rejected(&["0.0.0.0"], "unspecified resolver address");
    dns_rejected(&["::"], "unspecified resolver address");
    dns_rejected(&["127.0.0.1"], "loopback resolver address");
    dns_rejected(&["127.0.0.53"], "loopback resolver address");
    dns_rejected(&["::1"], "loopback resolver address");
    dns_rejected(&["224.0.0.251"], "multicast resolver address");
    dns_rejected(&["239.255.255.250"], "multicast resolver address");
    dns_rejected(&["ff02::fb"], "multicast resolver address");
    dns_rejected(&["255.255.255.255"], "broadcast resolver address");
    let mapped = "IPv4-mapped IPv6 resolver address (send it as family 4)";
    // `dns_payload` sends an IPv6 address as family 6, mapped ones included.
    dns_rejected(&["::ffff:10.77.0.1"], mapped);
    dns_rejected(&["::ffff:127.0.0.1"], mapped);
    dns_rejected(&["::ffff:0.0.0.0"], mapped);
    // Behind a good entry too: the first bad entry names the error.
    dns_rejected(
        &["10.77.0.1", "fd00::53", "::1"],
        "loopback resolver address",
    );
    dns_rejected(
        &["10.77.0.1", "0.0.0.0", "::1"],
        "unspecified resolver address",
    );
    // Neighbours of the rejected ranges are accepted.
    for ok in [
        "0.0.0.1",
        "126.255.255.255",
        "128.0.0.1",
        "223.255.255.255",
        "255.255.255.254",
        "::2",
        "::fffe:a4d:1",
        "64:ff9b::a4d:1",
        "fe80::1",
    ] {
        assert_eq!(
            DnsAssign::decode(&dns_payload(&[ok])),
            Ok(dns(&[ok])),
            "{ok}"
        );
    }
}

#[test]
fn dns_assign_error_text() {
    assert_eq!(
        ControlError::BadDns("duplicate resolver").to_string(),
        "unusable DNS resolver list: duplicate resolver"
    );
    assert_eq!(
        DnsAssign::decode(&[1, 4, 127, 0, 0, 1])
            .unwrap_err()
            .to_string(),
        "unusable DNS resolver list: loopback resolver address"
    );
}

/// The frozen `AddressAssign6` vector: fd61:7572:6100::2/64, gateway fd61:7572:6100::1, as a
/// whole envelope.
const ADDRESS_ASSIGN6_VECTOR: [u8; 42] = [
    0xAA, 0xAA, 0xC0, 0x01, // magic
    0x09, // kind 9: AddressAssign6
    0x00, 0x00, 0x00, 0x21, // payload length: 33
    0xFD, 0x61, 0x75, 0x72, 0x61, 0x00, 0x00, 0x00, // address fd61:7572:6100::2
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, //
    0x40, // prefix length: 64
    0xFD, 0x61, 0x75, 0x72, 0x61, 0x00, 0x00, 0x00, // gateway fd61:7572:6100::1
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //
];

fn assign6(address: &str, prefix_len: u8, gateway: &str) -> AddressAssign6 {
    AddressAssign6 {
        address: address.parse().unwrap(),
        prefix_len,
        gateway: gateway.parse().unwrap(),
    }
}

/// An `AddressAssign6` payload built by hand, with no validation: what a broken or hostile
/// server could send.
fn assign6_payload(assign: AddressAssign6) -> Vec<u8> {
    let mut payload = assign.address.octets().to_vec();
    payload.push(assign.prefix_len);
    payload.extend_from_slice(&assign.gateway.octets());
    payload
}

#[test]
fn known_answer_address_assign6() {
    let assign = assign6("fd61:7572:6100::2", 64, "fd61:7572:6100::1");
    assert_eq!(assign.encoded_len(), 33);
    let packet = ControlMessage::from(assign).encode().unwrap();
    assert_eq!(packet, ADDRESS_ASSIGN6_VECTOR);
    let mut out = [0u8; 50];
    assert_eq!(ControlMessage::from(assign).encode_into(&mut out), Ok(42));
    assert_eq!(out[..42], ADDRESS_ASSIGN6_VECTOR);
    assert_eq!(
        ControlMessage::from(assign).encode_into(&mut [0; 41]),
        Err(ControlError::BufferTooSmall {
            needed: 42,
            have: 41
        })
    );
    assert_eq!(
        ControlMessage::decode(&ADDRESS_ASSIGN6_VECTOR),
        Ok(ControlMessage::AddressAssign6(assign))
    );
    assert_eq!(
        AddressAssign6::decode(&ADDRESS_ASSIGN6_VECTOR[HEADER_LEN..]),
        Ok(assign)
    );
    assert_eq!(
        assign6_payload(assign),
        ADDRESS_ASSIGN6_VECTOR[HEADER_LEN..]
    );
    let envelope = decode(&ADDRESS_ASSIGN6_VECTOR).unwrap();
    assert_eq!(envelope.kind, ControlKind::AddressAssign6);
    assert_eq!(envelope.kind, AddressAssign6::KIND);
    assert_eq!(u8::from(ControlKind::AddressAssign6), 9);
    assert_eq!(ControlKind::from_u8(9), ControlKind::AddressAssign6);
    assert_eq!(
        ControlMessage::from(assign).kind(),
        ControlKind::AddressAssign6
    );
    // A hand-built `Unknown(9)` is read as the kind it names.
    assert_eq!(
        ControlMessage::parse(Envelope {
            kind: ControlKind::Unknown(9),
            payload: envelope.payload,
        }),
        Ok(ControlMessage::AddressAssign6(assign))
    );

    // The edges of what is accepted.
    for ok in [
        // The smallest prefix, its first and last hosts.
        assign6("2001:db8:0:1::1", 126, "2001:db8:0:1::3"),
        // Global, documentation and ULA space; any host bits.
        assign6("2001:db8:1:2:a:b:c:d", 64, "2001:db8:1:2::1"),
        assign6("fd00::ffff:ffff:ffff:ffff", 64, "fd00::1"),
        assign6("fd61:7572:6100:0:8000::2", 65, "fd61:7572:6100:0:8000::1"),
        // Neighbours of the rejected ranges.
        assign6("fec0::2", 64, "fec0::1"),
        assign6("fe7f:ffff::2", 64, "fe7f:ffff::1"),
        assign6("::2", 64, "::3"),
        assign6("::fffe:a4d:2", 96, "::fffe:a4d:1"),
        assign6("64:ff9b::a4d:2", 96, "64:ff9b::a4d:1"),
        assign6("feff::2", 64, "feff::1"),
    ] {
        assert_eq!(ok.validate(), Ok(()), "{ok:?}");
        assert_eq!(
            AddressAssign6::decode(&assign6_payload(ok)),
            Ok(ok),
            "{ok:?}"
        );
    }
}

/// Checks that `assign` is rejected with `BadAssignment(problem)` on both sides: by the decoder
/// (sent by hand, bare and in an envelope) and by `validate`/`encode_into`, which leave the
/// output buffer untouched.
fn assign6_rejected(assign: AddressAssign6, problem: &'static str) {
    let expected = Err(ControlError::BadAssignment(problem));
    let payload = assign6_payload(assign);
    assert_eq!(
        AddressAssign6::decode(&payload).map(|_| ()),
        expected,
        "{assign:?}"
    );
    assert_eq!(
        ControlMessage::decode(&env(9, &payload)).map(|_| ()),
        expected,
        "{assign:?}"
    );
    assert_eq!(assign.validate(), expected, "{assign:?}");
    let mut out = [0x5A; 64];
    assert_eq!(
        assign.encode_into(&mut out).map(|_| ()),
        expected,
        "{assign:?}"
    );
    assert_eq!(
        ControlMessage::from(assign)
            .encode_into(&mut out)
            .map(|_| ()),
        expected,
        "{assign:?}"
    );
    assert!(
        out.iter().all(|&b| b == 0x5A),
        "{assign:?}: wrote before validating"
    );
    assert_eq!(
        ControlMessage::from(assign).encode().map(|_| ()),
        expected,
        "{assign:?}"
    );
}

#[test]
fn address_assign6_rejects_bad_prefix_length() {
    let problem = "IPv6 prefix length must be 64 to 126";
    for prefix_len in [0u8, 1, 48, 63, 127, 128, 129, 255] {
        assign6_rejected(
            assign6("fd61:7572:6100::2", prefix_len, "fd61:7572:6100::1"),
            problem,
        );
    }
}

#[test]
fn address_assign6_rejects_different_prefixes() {
    let problem = "IPv6 address and gateway are in different prefixes";
    assign6_rejected(
        assign6("fd61:7572:6100::2", 64, "fd61:7572:6101::1"),
        problem,
    );
    assign6_rejected(assign6("fd61:7572:6100::2", 64, "2001:db8::1"), problem);
    // The same /64, but not the same /126.
    assign6_rejected(
        assign6("fd61:7572:6100::5", 126, "fd61:7572:6100::1"),
        problem,
    );
    assign6_rejected(
        assign6("fd61:7572:6100:0:8000::2", 65, "fd61:7572:6100::1"),
        problem,
    );
}

#[test]
fn address_assign6_rejects_address_equal_to_gateway() {
    assign6_rejected(
        assign6("fd61:7572:6100::1", 64, "fd61:7572:6100::1"),
        "IPv6 address equals the gateway",
    );
    assign6_rejected(
        assign6("2001:db8::3", 126, "2001:db8::3"),
        "IPv6 address equals the gateway",
    );
}

#[test]
fn address_assign6_rejects_subnet_router_anycast() {
    let problem = "subnet-router anycast address assigned";
    assign6_rejected(
        assign6("fd61:7572:6100::", 64, "fd61:7572:6100::1"),
        problem,
    );
    assign6_rejected(
        assign6("fd61:7572:6100::2", 64, "fd61:7572:6100::"),
        problem,
    );
    // The all-zero host of the prefix, not of its /64.
    assign6_rejected(assign6("2001:db8::4", 126, "2001:db8::5"), problem);
    assign6_rejected(
        assign6("fd61:7572:6100:0:8000::", 65, "fd61:7572:6100:0:8000::1"),
        problem,
    );
}

#[test]
fn address_assign6_rejects_unspecified() {
    let problem = "unspecified IPv6 address assigned";
    assign6_rejected(assign6("::", 64, "::2"), problem);
    assign6_rejected(assign6("::2", 64, "::"), problem);
}

#[test]
fn address_assign6_rejects_loopback() {
    let problem = "loopback IPv6 address assigned";
    assign6_rejected(assign6("::1", 64, "::2"), problem);
    assign6_rejected(assign6("::2", 64, "::1"), problem);
}

#[test]
fn address_assign6_rejects_multicast() {
    let problem = "multicast IPv6 address assigned";
    assign6_rejected(assign6("ff02::2", 64, "ff02::1"), problem);
    assign6_rejected(assign6("ff0e::2", 64, "ff0e::1"), problem);
    assign6_rejected(assign6("ff00::2", 64, "ff00::1"), problem);
}

#[test]
fn address_assign6_rejects_link_local() {
    let problem = "link-local IPv6 address assigned (fe80::/10)";
    assign6_rejected(assign6("fe80::2", 64, "fe80::1"), problem);
    assign6_rejected(assign6("fe80::1:2", 126, "fe80::1:1"), problem);
    // The last /64 of fe80::/10.
    assign6_rejected(
        assign6("febf:ffff:ffff:ffff::2", 64, "febf:ffff:ffff:ffff::1"),
        problem,
    );
}

#[test]
fn address_assign6_rejects_ipv4_mapped() {
    let problem = "IPv4-mapped IPv6 address assigned (::ffff:0:0/96)";
    assign6_rejected(assign6("::ffff:10.77.0.2", 96, "::ffff:10.77.0.1"), problem);
    assign6_rejected(assign6("::ffff:10.77.0.2", 64, "::2"), problem);
    assign6_rejected(assign6("::2", 64, "::ffff:10.77.0.1"), problem);
    assign6_rejected(assign6("::ffff:0.0.0.2", 120, "::ffff:0.0.0.1"), problem);
}

#[test]
fn address_assign6_rejects_wrong_length() {
    let wrong = |actual| ControlError::PayloadLength {
        kind: ControlKind::AddressAssign6,
        expected: 33,
        actual,
    };
    let payload = ADDRESS_ASSIGN6_VECTOR[HEADER_LEN..].to_vec();
    for len in [0, 1, 11, 16, 17, 32] {
        assert_eq!(
            AddressAssign6::decode(&payload[..len]),
            Err(wrong(len)),
            "{len}"
        );
        assert_eq!(
            ControlMessage::decode(&env(9, &payload[..len])),
            Err(wrong(len)),
            "{len}"
        );
    }
    for extra in 1..=3 {
        let mut longer = payload.clone();
        longer.extend(std::iter::repeat_n(0, extra));
        assert_eq!(
            AddressAssign6::decode(&longer),
            Err(wrong(33 + extra)),
            "{extra}"
        );
        assert_eq!(
            ControlMessage::decode(&env(9, &longer)),
            Err(wrong(33 + extra)),
            "{extra}"
        );
    }
}

#[test]
fn address_assign6_error_text() {
    assert_eq!(
        AddressAssign6::decode(&assign6_payload(assign6("fe80::2", 64, "fe80::1")))
            .unwrap_err()
            .to_string(),
        "unusable tunnel address assignment: link-local IPv6 address assigned (fe80::/10)"
    );
    assert_eq!(
        AddressAssign6::decode(&[0; 32]).unwrap_err().to_string(),
        "AddressAssign6 payload must be 33 bytes, got 32"
    );
}

#[test]
fn kind_normalisation() {
    for byte in 0..=u8::MAX {
        let kind = ControlKind::from_u8(byte);
        assert_eq!(kind.to_u8(), byte);
        assert_eq!(kind.is_known(), (1..=12).contains(&byte));
        if (1..=12).contains(&byte) {
            assert_ne!(kind, ControlKind::Unknown(byte));
        }
    }
    assert!(ControlKind::Unknown(3).is_known());
    let payload = [0u8; 8];
    let message = ControlMessage::parse(Envelope {
        kind: ControlKind::Unknown(2),
        payload: &payload,
    })
    .unwrap();
    assert_eq!(message, ControlMessage::CrlAck(CrlAck { crl_number: 0 }));
    let packet = env(0, b"xy");
    let unknown = ControlMessage::decode(&packet).unwrap();
    assert_eq!(
        unknown,
        ControlMessage::Unknown {
            kind: 0,
            payload: b"xy"
        }
    );
}

#[test]
fn extend_bridge_rejections() {
    assert_eq!(
        ExtendBridge::decode(&[]),
        Err(ControlError::PayloadTruncated {
            kind: ControlKind::ExtendBridge,
            needed: 1,
            have: 0
        })
    );
    assert_eq!(
        ExtendBridge::decode(&[5, 1, 2, 3, 4, 0, 1]),
        Err(ControlError::UnknownAddressFamily(5))
    );
    assert_eq!(
        ExtendBridge::decode(&[4, 1, 2, 3, 4, 0]),
        Err(ControlError::PayloadLength {
            kind: ControlKind::ExtendBridge,
            expected: 7,
            actual: 6
        })
    );
    assert_eq!(
        ExtendBridge::decode(&[4, 1, 2, 3, 4, 0, 1, 9]),
        Err(ControlError::UnknownVia(9))
    );
    assert_eq!(
        ExtendBridge::decode(&[4, 1, 2, 3, 4, 0, 1, 1, 1]),
        Err(ControlError::PayloadLength {
            kind: ControlKind::ExtendBridge,
            expected: 7,
            actual: 9
        })
    );
    assert_eq!(
        ExtendBridge::decode(&[6, 1, 2, 3, 4, 0, 1]),
        Err(ControlError::PayloadLength {
            kind: ControlKind::ExtendBridge,
            expected: 19,
            actual: 7
        })
    );
    let mut buf = [0u8; 6];
    let v4 = ExtendBridge {
        addr: "10.0.0.1:1".parse().unwrap(),
        via: Via::Udp,
    };
    assert!(matches!(
        v4.encode_into(&mut buf),
        Err(ControlError::BufferTooSmall { needed: 7, have: 6 })
    ));
}

#[test]
fn extend_bridge_drops_v6_scope() {
    let addr: SocketAddr = "[fe80::1%7]:9".parse().unwrap();
    let decoded = ExtendBridge::decode(
        &ExtendBridge {
            addr,
            via: Via::Tls,
        }
        .to_vec(),
    )
    .unwrap();
    assert_eq!(decoded.via, Via::Tls);
    assert_eq!(decoded.addr.ip(), addr.ip());
    assert_eq!(decoded.addr.port(), 9);
}

#[test]
fn circuit_failed_rejections() {
    assert_eq!(
        CircuitFailed::decode(b"no route").unwrap().reason,
        "no route"
    );
    assert!(matches!(
        CircuitFailed::decode(&[0x66, 0xFF, 0x66]),
        Err(ControlError::InvalidUtf8(_))
    ));
    let long = vec![b'a'; MAX_REASON_LEN + 1];
    assert_eq!(
        CircuitFailed::decode(&long),
        Err(ControlError::ReasonTooLong {
            len: MAX_REASON_LEN + 1,
            max: MAX_REASON_LEN
        })
    );
    assert!(CircuitFailed::decode(&long[..MAX_REASON_LEN]).is_ok());
    assert!(CircuitFailed::new("x".repeat(MAX_REASON_LEN + 1)).is_err());
    let too_long = CircuitFailed {
        reason: "y".repeat(MAX_REASON_LEN + 1),
    };
    assert!(matches!(
        ControlMessage::from(too_long).encode(),
        Err(ControlError::ReasonTooLong { .. })
    ));
    // 'é' is two bytes: cutting must land on a character boundary.
    let accents = "é".repeat(MAX_REASON_LEN);
    let cut = CircuitFailed::truncating(&accents);
    assert_eq!(cut.reason.len(), MAX_REASON_LEN);
    let odd = format!("a{accents}");
    assert_eq!(
        CircuitFailed::truncating(&odd).reason.len(),
        MAX_REASON_LEN - 1
    );
}

#[test]
fn circuit_ready_and_ack_rejections() {
    assert_eq!(CircuitReady::decode(&[]), Ok(CircuitReady));
    assert_eq!(
        CircuitReady::decode(&[0]),
        Err(ControlError::PayloadLength {
            kind: ControlKind::CircuitReady,
            expected: 0,
            actual: 1
        })
    );
    assert_eq!(
        CrlAck::decode(&[0; 7]),
        Err(ControlError::PayloadLength {
            kind: ControlKind::CrlAck,
            expected: 8,
            actual: 7
        })
    );
    assert!(CrlAck::decode(&[0; 9]).is_err());
    assert_eq!(
        CrlAck::decode(&42u64.to_be_bytes()),
        Ok(CrlAck { crl_number: 42 })
    );
}

fn chunk_payload(number: u64, offset: u32, total: u32, data: &[u8]) -> Vec<u8> {
    let mut payload = number.to_be_bytes().to_vec();
    payload.extend_from_slice(&offset.to_be_bytes());
    payload.extend_from_slice(&total.to_be_bytes());
    payload.extend_from_slice(data);
    payload
}

#[test]
fn crl_chunk_rejections() {
    assert_eq!(
        CrlChunk::decode(&[0; 15]),
        Err(ControlError::PayloadTruncated {
            kind: ControlKind::CrlPush,
            needed: 16,
            have: 15
        })
    );
    assert_eq!(
        CrlChunk::decode(&chunk_payload(1, 0, 0, b"")),
        Err(ControlError::CrlEmpty)
    );
    let too_big = u32::try_from(MAX_CRL_LEN + 1).unwrap();
    assert_eq!(
        CrlChunk::decode(&chunk_payload(1, 0, too_big, b"a")),
        Err(ControlError::CrlTooLarge {
            total_len: u64::from(too_big),
            max: MAX_CRL_LEN
        })
    );
    assert_eq!(
        CrlChunk::decode(&chunk_payload(1, 3, 5, b"abc")),
        Err(ControlError::ChunkOutOfBounds {
            offset: 3,
            len: 3,
            total_len: 5
        })
    );
    assert!(CrlChunk::decode(&chunk_payload(1, u32::MAX, 5, b"a")).is_err());
    let ok = chunk_payload(1, 2, 5, b"abc");
    assert_eq!(CrlChunk::decode(&ok).unwrap().to_vec().unwrap(), ok);
    let max_total = u32::try_from(MAX_CRL_LEN).unwrap();
    assert!(CrlChunk::decode(&chunk_payload(1, max_total - 1, max_total, b"a")).is_ok());
    let huge = vec![0; MAX_CRL_CHUNK_DATA_LEN + 1];
    let chunk = CrlChunk {
        crl_number: 1,
        offset: 0,
        total_len: max_total,
        data: &huge,
    };
    assert!(matches!(chunk.to_vec(), Err(ControlError::TooLong { .. })));
}

#[test]
fn chunk_and_reassemble() {
    let der: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let packets: Vec<Vec<u8>> = chunk_crl(3, &der, 100).unwrap().collect();
    assert_eq!(packets.len(), 10);
    assert!(packets.iter().all(|p| p.len() <= 100 + CRL_PUSH_OVERHEAD));
    let mut asm = CrlAssembler::new();
    let mut done = None;
    for packet in packets.iter().rev() {
        assert!(done.is_none());
        done = asm.push_envelope(&decode(packet).unwrap()).unwrap();
    }
    assert_eq!(done.as_deref(), Some(&der[..]));
    assert_eq!(asm.last_completed(), Some(3));
    assert_eq!(asm.in_progress(), None);
    // Replays of the completed CRL are ignored.
    assert_eq!(asm.push_envelope(&decode(&packets[0]).unwrap()), Ok(None));
    assert_eq!(asm.in_progress(), None);
}

#[test]
fn chunk_crl_rejections() {
    assert!(matches!(chunk_crl(1, &[], 10), Err(ControlError::CrlEmpty)));
    assert!(matches!(
        chunk_crl(1, &[1], 0),
        Err(ControlError::ZeroChunkSize)
    ));
    let big = vec![0; MAX_CRL_LEN + 1];
    assert!(matches!(
        chunk_crl(1, &big, 10),
        Err(ControlError::CrlTooLarge { .. })
    ));
    // A huge chunk size is clamped to what fits one envelope.
    let der = vec![1; MAX_CRL_CHUNK_DATA_LEN + 1];
    let packets: Vec<_> = chunk_crl(1, &der, usize::MAX).unwrap().collect();
    assert_eq!(packets.len(), 2);
    assert_eq!(packets[0].len(), MAX_ENVELOPE_LEN);
}

#[test]
fn assembler_restart_ignore_and_conflicts() {
    let mut asm = CrlAssembler::new();
    let c = |n, offset, total, data| CrlChunk {
        crl_number: n,
        offset,
        total_len: total,
        data,
    };
    assert_eq!(asm.push(&c(5, 0, 4, b"ab")), Ok(None));
    assert_eq!(asm.progress(), Some((2, 4)));
    // Lower number ignored.
    assert_eq!(asm.push(&c(4, 0, 2, b"zz")), Ok(None));
    assert_eq!(asm.in_progress(), Some(5));
    // Inconsistent total rejected, state kept.
    assert_eq!(
        asm.push(&c(5, 2, 6, b"cd")),
        Err(ControlError::ChunkTotalMismatch {
            crl_number: 5,
            announced: 4,
            got: 6
        })
    );
    // Contradicting overlap rejected, state kept.
    assert_eq!(
        asm.push(&c(5, 1, 4, b"Xc")),
        Err(ControlError::ChunkConflict {
            crl_number: 5,
            offset: 1
        })
    );
    assert_eq!(asm.progress(), Some((2, 4)));
    // Agreeing overlap accepted.
    assert_eq!(asm.push(&c(5, 1, 4, b"bc")), Ok(None));
    assert_eq!(asm.progress(), Some((3, 4)));
    // Invalid chunk rejected.
    assert_eq!(
        asm.push(&c(5, 3, 4, b"de")),
        Err(ControlError::ChunkOutOfBounds {
            offset: 3,
            len: 2,
            total_len: 4
        })
    );
    // Higher number restarts.
    assert_eq!(asm.push(&c(6, 0, 2, b"x")), Ok(None));
    assert_eq!(asm.in_progress(), Some(6));
    assert_eq!(asm.progress(), Some((1, 2)));
    assert_eq!(asm.push(&c(6, 1, 2, b"y")), Ok(Some(b"xy".to_vec())));
    // Old numbers, including the completed one, are ignored afterwards.
    assert_eq!(asm.push(&c(6, 0, 1, b"q")), Ok(None));
    assert_eq!(asm.push(&c(5, 3, 4, b"d")), Ok(None));
    assert_eq!(asm.in_progress(), None);
    assert_eq!(asm.push(&c(7, 0, 1, b"q")), Ok(Some(b"q".to_vec())));
    let ack = env(2, &[0; 8]);
    let not_push = decode(&ack).unwrap();
    assert!(matches!(
        asm.push_envelope(&not_push),
        Err(ControlError::WrongKind { .. })
    ));
}

/// Frozen vectors of the cover family: a Padding of 3 bytes, a request for `https` at 250
/// per mille, a grant of `bursts` at 100 per mille and a refusal.
const PADDING_VECTOR: [u8; 12] = [0xAA, 0xAA, 0xC0, 0x01, 10, 0, 0, 0, 3, 0, 0, 0];
const COVER_REQUEST_VECTOR: [u8; 12] = [0xAA, 0xAA, 0xC0, 0x01, 11, 0, 0, 0, 3, 3, 0x00, 0xFA];
const COVER_GRANT_VECTOR: [u8; 12] = [0xAA, 0xAA, 0xC0, 0x01, 12, 0, 0, 0, 3, 2, 0x00, 0x64];
const COVER_REFUSAL_VECTOR: [u8; 12] = [0xAA, 0xAA, 0xC0, 0x01, 12, 0, 0, 0, 3, 0, 0, 0];

#[test]
fn known_answer_cover_family() {
    let cases: [(&[u8], ControlMessage<'_>); 4] = [
        (&PADDING_VECTOR, Padding { len: 3 }.into()),
        (
            &COVER_REQUEST_VECTOR,
            CoverRequest {
                profile: CoverProfile::Https,
                budget: 250,
            }
            .into(),
        ),
        (
            &COVER_GRANT_VECTOR,
            CoverGrant {
                granted: Some((CoverProfile::Bursts, 100)),
            }
            .into(),
        ),
        (&COVER_REFUSAL_VECTOR, CoverGrant { granted: None }.into()),
    ];
    for (bytes, message) in cases {
        assert_eq!(message.encode().unwrap(), bytes);
        assert_eq!(ControlMessage::decode(bytes).unwrap(), message);
    }
    assert_eq!(CoverProfile::from_name("https"), Some(CoverProfile::Https));
    assert_eq!(CoverProfile::from_name("HTTPS"), None);
}

#[test]
fn cover_family_rejections() {
    let bad = |kind: u8, payload: &[u8]| {
        ControlMessage::decode(&control::encode(ControlKind::from_u8(kind), payload).unwrap())
            .unwrap_err()
    };
    // Padding must be zeros (one encoding per length).
    assert_eq!(
        bad(10, &[0, 1, 0]),
        ControlError::BadCover("padding bytes must be zero")
    );
    // Requests: unknown profile, budgets 0 and 1001, wrong lengths.
    assert_eq!(
        bad(11, &[0, 0, 10]),
        ControlError::BadCover("unknown cover profile")
    );
    assert_eq!(
        bad(11, &[4, 0, 10]),
        ControlError::BadCover("unknown cover profile")
    );
    assert_eq!(
        bad(11, &[1, 0, 0]),
        ControlError::BadCover("budget out of range 1..=1000 per mille")
    );
    assert_eq!(
        bad(11, &[1, 0x03, 0xE9]),
        ControlError::BadCover("budget out of range 1..=1000 per mille")
    );
    for short in [&[][..], &[1][..], &[1, 0][..], &[1, 0, 1, 0][..]] {
        assert!(matches!(
            bad(11, short),
            ControlError::PayloadLength { expected: 3, .. }
        ));
        assert!(matches!(
            bad(12, short),
            ControlError::PayloadLength { expected: 3, .. }
        ));
    }
    // Grants: a refusal with a budget, a grant of budget 0.
    assert_eq!(
        bad(12, &[0, 0, 1]),
        ControlError::BadCover("a refusal carries budget 0")
    );
    assert_eq!(
        bad(12, &[2, 0, 0]),
        ControlError::BadCover("budget out of range 1..=1000 per mille")
    );
    // Encoding checks the same invariants.
    assert!(
        ControlMessage::from(CoverRequest {
            profile: CoverProfile::Idle,
            budget: 0
        })
        .encode()
        .is_err()
    );
    assert!(
        ControlMessage::from(Padding {
            len: control::MAX_PAYLOAD_LEN + 1
        })
        .encode()
        .is_err()
    );
}
