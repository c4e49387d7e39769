//! Property tests for the DNS answer codec (`aura_proto::dns`), then a frozen response and the
//! rejections, one example at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aura_proto::dns::{
    Answer, DnsError, MAX_NAME_LEN, MAX_RECORDS, TYPE_A, TYPE_AAAA, encode_answer, parse_answer,
};
use proptest::prelude::*;

/// A question name of 1 to 4 labels of `[a-z0-9-]{1,20}`.
fn qname() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-z0-9-]{1,20}", 1..=4).prop_map(|labels| labels.join("."))
}

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|ip| IpAddr::V4(Ipv4Addr::from(ip))),
        any::<[u8; 16]>().prop_map(|ip| IpAddr::V6(Ipv6Addr::from(ip))),
    ]
}

/// A valid answer: what `parse_answer` can return.
fn answer() -> impl Strategy<Value = Answer> {
    (
        any::<u16>(),
        0u8..=5,
        qname(),
        prop_oneof![Just(TYPE_A), Just(TYPE_AAAA)],
        proptest::collection::vec((addr(), any::<u32>()), 0..=MAX_RECORDS),
    )
        .prop_map(|(id, rcode, qname, qtype, addrs)| Answer {
            id,
            rcode,
            qname,
            qtype,
            addrs,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip(answer in answer()) {
        let bytes = encode_answer(&answer).unwrap();
        prop_assert_eq!(parse_answer(&bytes).unwrap(), answer);
    }

    #[test]
    fn bytes_after_the_answer_section_are_ignored(
        answer in answer(),
        trailing in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let mut bytes = encode_answer(&answer).unwrap();
        bytes.extend_from_slice(&trailing);
        prop_assert_eq!(parse_answer(&bytes).unwrap(), answer);
    }

    #[test]
    fn strict_prefix_is_rejected(answer in answer(), cut in any::<prop::sample::Index>()) {
        // An encoded answer has nothing after its answer section, so every strict prefix cuts
        // something parse_answer reads.
        let bytes = encode_answer(&answer).unwrap();
        let len = cut.index(bytes.len());
        let result = parse_answer(&bytes[..len]);
        prop_assert!(result.is_err(), "prefix of {} bytes: {:?}", len, result);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(answer) = parse_answer(&bytes) {
            prop_assert!(answer.addrs.len() <= MAX_RECORDS);
            prop_assert_eq!(parse_answer(&encode_answer(&answer).unwrap()).unwrap(), answer);
        }
    }

    #[test]
    fn mutated_answer_never_panics(
        answer in answer(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = encode_answer(&answer).unwrap();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(answer) = parse_answer(&bytes) {
            prop_assert_eq!(parse_answer(&encode_answer(&answer).unwrap()).unwrap(), answer);
        }
    }
}

/// A recursive resolver's response to an A query for `www.Example.com` (the query's letter case
/// echoed back) through a CNAME to a CDN name, with an EDNS OPT record in the additional section.
#[rustfmt::skip]
const CNAME_CHAIN: &[u8] = &[
    // Header (offset 0): id 0x1a2b; flags 0x8180 (QR, RD, RA, rcode 0); 1 question,
    // 3 answers, 0 authority, 1 additional.
    0x1a, 0x2b, 0x81, 0x80, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01,
    // Question (offset 12): www.Example.com, type A, class IN. The name's final zero byte
    // is at offset 28 (0x1c).
    0x03, b'w', b'w', b'w',
    0x07, b'E', b'x', b'a', b'm', b'p', b'l', b'e',
    0x03, b'c', b'o', b'm',
    0x00,
    0x00, 0x01, 0x00, 0x01,
    // Answer 0 (offset 33): owner -> offset 12 (www.example.com), CNAME, IN, TTL 3600,
    // RDATA of 18 bytes.
    0xc0, 0x0c, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x0e, 0x10, 0x00, 0x12,
    // RDATA (offset 45 = 0x2d): cdn.example.net. It shares only the root with the question,
    // so the pointer that ends it replaces only the root: -> offset 28, the zero byte.
    0x03, b'c', b'd', b'n',
    0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e',
    0x03, b'n', b'e', b't',
    0xc0, 0x1c,
    // Answer 1 (offset 63): owner -> offset 45 (cdn.example.net, inside answer 0's RDATA,
    // itself ending in a pointer), A, IN, TTL 300, RDATA 192.0.2.10.
    0xc0, 0x2d, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0x2c, 0x00, 0x04,
    192, 0, 2, 10,
    // Answer 2 (offset 79): owner -> offset 45, A, IN, TTL 60, RDATA 192.0.2.11.
    0xc0, 0x2d, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x04,
    192, 0, 2, 11,
    // Additional (offset 95, not read): OPT, owner the root, UDP payload size 4096,
    // extended rcode and flags 0, no options.
    0x00, 0x00, 0x29, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

#[test]
fn frozen_cname_chain() {
    assert_eq!(CNAME_CHAIN.len(), 106);
    assert_eq!(
        parse_answer(CNAME_CHAIN).unwrap(),
        Answer {
            id: 0x1a2b,
            rcode: 0,
            qname: "www.example.com".to_owned(),
            qtype: TYPE_A,
            addrs: vec![
                (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 300),
                (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)), 60),
            ],
        }
    );
}

#[test]
fn frozen_aaaa_answer() {
    let answer = Answer {
        id: 0x0042,
        rcode: 0,
        qname: "example.org".to_owned(),
        qtype: TYPE_AAAA,
        addrs: vec![(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            120,
        )],
    };
    #[rustfmt::skip]
    let expected: &[u8] = &[
        // Header: id 0x0042, flags 0x8180, 1 question, 1 answer.
        0x00, 0x42, 0x81, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        // Question: example.org, AAAA, IN.
        0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0x03, b'o', b'r', b'g', 0x00,
        0x00, 0x1c, 0x00, 0x01,
        // Answer: owner -> offset 12, AAAA, IN, TTL 120, 16 bytes: 2001:db8::1.
        0xc0, 0x0c, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x78, 0x00, 0x10,
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    ];
    assert_eq!(encode_answer(&answer).unwrap(), expected);
    assert_eq!(parse_answer(expected).unwrap(), answer);
}

// --- Building messages by hand for the rejection tests.

/// A response header: flags 0x8180 (QR, RD, RA), the given question and answer counts.
fn header(qdcount: u16, ancount: u16) -> Vec<u8> {
    header_with_flags(0x8180, qdcount, ancount)
}

fn header_with_flags(flags: u16, qdcount: u16, ancount: u16) -> Vec<u8> {
    let mut msg = Vec::new();
    for word in [0x1234, flags, qdcount, ancount, 0, 0] {
        msg.extend_from_slice(&u16::to_be_bytes(word));
    }
    msg
}

/// The question `a.b`, type A, class IN: offsets 12 to 20, its zero byte at 16.
const QUESTION: &[u8] = &[1, b'a', 1, b'b', 0, 0, 1, 0, 1];

/// Offset of the first answer record after [`QUESTION`].
const FIRST_RECORD: usize = 12 + QUESTION.len();

/// A message with [`QUESTION`] and one answer record, whose owner and rest are given.
fn one_record(owner: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut msg = header(1, 1);
    msg.extend_from_slice(QUESTION);
    msg.extend_from_slice(owner);
    msg.extend_from_slice(rest);
    msg
}

/// A record's fixed part: type, class IN, TTL 60, and the RDATA length.
fn record_fixed(rtype: u16, rdlength: u16) -> Vec<u8> {
    let mut fixed = Vec::new();
    fixed.extend_from_slice(&rtype.to_be_bytes());
    fixed.extend_from_slice(&1u16.to_be_bytes());
    fixed.extend_from_slice(&60u32.to_be_bytes());
    fixed.extend_from_slice(&rdlength.to_be_bytes());
    fixed
}

/// A message whose question name is `name` (type A, class IN), no answer.
fn question_named(name: &[u8]) -> Vec<u8> {
    let mut msg = header(1, 0);
    msg.extend_from_slice(name);
    msg.extend_from_slice(&[0, 1, 0, 1]);
    msg
}

/// A name made of labels of the given lengths, all `a`s.
fn name_of_labels(lengths: &[usize]) -> Vec<u8> {
    let mut name = Vec::new();
    for &len in lengths {
        name.push(u8::try_from(len).unwrap());
        name.extend(std::iter::repeat_n(b'a', len));
    }
    name.push(0);
    name
}

#[test]
fn the_helpers_build_a_valid_message() {
    let mut rest = record_fixed(TYPE_A, 4);
    rest.extend_from_slice(&[10, 0, 0, 1]);
    let answer = parse_answer(&one_record(&[0xc0, 0x0c], &rest)).unwrap();
    assert_eq!(answer.qname, "a.b");
    assert_eq!(answer.addrs, [(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 60)]);
}

#[test]
fn rejects_a_truncated_header() {
    assert_eq!(parse_answer(&[]), Err(DnsError::TruncatedHeader { len: 0 }));
    let msg = header(1, 0);
    assert_eq!(
        parse_answer(&msg[..11]),
        Err(DnsError::TruncatedHeader { len: 11 })
    );
}

#[test]
fn rejects_a_query() {
    let mut msg = header_with_flags(0x0100, 1, 0);
    msg.extend_from_slice(QUESTION);
    assert_eq!(parse_answer(&msg), Err(DnsError::NotResponse));
}

#[test]
fn rejects_other_than_one_question() {
    let mut msg = header(0, 0);
    assert_eq!(parse_answer(&msg), Err(DnsError::QuestionCount(0)));
    msg = header(2, 0);
    msg.extend_from_slice(QUESTION);
    msg.extend_from_slice(QUESTION);
    assert_eq!(parse_answer(&msg), Err(DnsError::QuestionCount(2)));
}

#[test]
fn rejects_a_label_of_64_bytes() {
    // On the wire, a length byte of 64 is 0b01_000000: label type 01, reserved.
    let msg = question_named(&name_of_labels(&[64]));
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::ReservedLabelType {
            offset: 12,
            byte: 0x40
        })
    );
    // 63 is the longest label.
    let msg = question_named(&name_of_labels(&[63]));
    assert_eq!(parse_answer(&msg).unwrap().qname, "a".repeat(63));

    let answer = Answer {
        id: 0,
        rcode: 0,
        qname: format!("{}.com", "a".repeat(64)),
        qtype: TYPE_A,
        addrs: Vec::new(),
    };
    assert_eq!(
        encode_answer(&answer),
        Err(DnsError::LabelTooLong { len: 64 })
    );
}

#[test]
fn rejects_a_name_over_255_bytes() {
    // 3 × (1 + 63) + (1 + 62) + 1 = 256 bytes on the wire.
    let msg = question_named(&name_of_labels(&[63, 63, 63, 62]));
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::NameTooLong { offset: 12 })
    );
    // 3 × (1 + 63) + (1 + 61) + 1 = 255: the longest name.
    let name = name_of_labels(&[63, 63, 63, 61]);
    assert_eq!(name.len(), MAX_NAME_LEN);
    let answer = parse_answer(&question_named(&name)).unwrap();
    assert_eq!(answer.qname.len(), 253);
    assert_eq!(
        parse_answer(&encode_answer(&answer).unwrap()).unwrap(),
        answer
    );

    // The limit holds across pointers too: an owner name of a 63-byte label, then a pointer to
    // that 255-byte question name.
    let mut msg = question_named(&name);
    msg[7] = 1; // ANCOUNT
    let owner = msg.len();
    msg.push(63);
    msg.extend(std::iter::repeat_n(b'b', 63));
    msg.extend_from_slice(&[0xc0, 0x0c]);
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::NameTooLong { offset: owner })
    );

    let mut answer = answer;
    answer.qname.push_str(".a");
    assert_eq!(
        encode_answer(&answer),
        Err(DnsError::NameTooLong { offset: 12 })
    );
}

#[test]
fn rejects_a_forward_pointer() {
    // The owner (at offset 21) points to offset 23, past itself but inside the message.
    let mut rest = record_fixed(TYPE_A, 4);
    rest.extend_from_slice(&[10, 0, 0, 1]);
    let msg = one_record(&[0xc0, 23], &rest);
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::PointerNotBackward {
            offset: FIRST_RECORD,
            target: 23
        })
    );
    // In the question name too.
    let mut msg = question_named(&[0xc0, 14]);
    msg.extend_from_slice(&[0; 8]);
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::PointerNotBackward {
            offset: 12,
            target: 14
        })
    );
}

#[test]
fn rejects_a_self_pointer() {
    let target = u8::try_from(FIRST_RECORD).unwrap();
    let mut rest = record_fixed(TYPE_A, 4);
    rest.extend_from_slice(&[10, 0, 0, 1]);
    let msg = one_record(&[0xc0, target], &rest);
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::PointerNotBackward {
            offset: FIRST_RECORD,
            target: FIRST_RECORD
        })
    );
}

#[test]
fn rejects_a_pointer_back_into_its_own_name() {
    // `01 'x' C0 <start>`: backward from the pointer, but to the start of the name it ends,
    // which would read `x` again and again.
    let start = u8::try_from(FIRST_RECORD).unwrap();
    let mut rest = record_fixed(TYPE_A, 4);
    rest.extend_from_slice(&[10, 0, 0, 1]);
    let msg = one_record(&[1, b'x', 0xc0, start], &rest);
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::PointerNotBackward {
            offset: FIRST_RECORD + 2,
            target: FIRST_RECORD
        })
    );
    // The same once a pointer has been followed. Answer 0 is a TXT record whose RDATA (at r)
    // is `01 'y' C0 <r>`; answer 1's owner points to r. The pointer at r + 2 is backward from
    // itself, but not before r, where the labels leading to it start.
    let mut msg = header(1, 2);
    msg.extend_from_slice(QUESTION);
    msg.extend_from_slice(&[0xc0, 0x0c]);
    msg.extend_from_slice(&record_fixed(16, 4));
    let r = msg.len();
    let r_byte = u8::try_from(r).unwrap();
    msg.extend_from_slice(&[1, b'y', 0xc0, r_byte]);
    msg.extend_from_slice(&[0xc0, r_byte]);
    msg.extend_from_slice(&record_fixed(TYPE_A, 4));
    msg.extend_from_slice(&[10, 0, 0, 1]);
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::PointerNotBackward {
            offset: r + 2,
            target: r
        })
    );
}

#[test]
fn rejects_a_pointer_out_of_the_message() {
    let mut rest = record_fixed(TYPE_A, 4);
    rest.extend_from_slice(&[10, 0, 0, 1]);
    let msg = one_record(&[0xff, 0xff], &rest);
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::PointerOutsideMessage {
            offset: FIRST_RECORD,
            target: 0x3fff
        })
    );
    // One past the last byte.
    let len = u8::try_from(msg.len()).unwrap();
    let msg = one_record(&[0xc0, len], &rest);
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::PointerOutsideMessage {
            offset: FIRST_RECORD,
            target: msg.len()
        })
    );
}

#[test]
fn rejects_reserved_label_types() {
    for byte in [0x40, 0x7f, 0x80, 0xbf] {
        let mut msg = question_named(&[1, b'a', byte]);
        msg.extend_from_slice(&[0; 128]);
        assert_eq!(
            parse_answer(&msg),
            Err(DnsError::ReservedLabelType { offset: 14, byte }),
            "label type byte {byte:#04x}"
        );
    }
}

#[test]
fn rejects_too_many_pointers() {
    // Answer 0 is a TXT record whose RDATA is a root byte then a chain of pointers, each to the
    // one before (the first to the root byte); answer 1's owner points to the last of the chain,
    // so reading it follows every pointer of the chain, plus its own.
    let chained = |pointers: usize| {
        let mut msg = header(1, 2);
        msg.extend_from_slice(QUESTION);
        msg.extend_from_slice(&[0xc0, 0x0c]);
        let rdlength = u16::try_from(1 + 2 * pointers).unwrap();
        msg.extend_from_slice(&record_fixed(16, rdlength));
        let root = msg.len();
        msg.push(0);
        let mut previous = root;
        for _ in 0..pointers {
            let here = msg.len();
            msg.extend_from_slice(&(0xc000 | u16::try_from(previous).unwrap()).to_be_bytes());
            previous = here;
        }
        let owner = msg.len();
        msg.extend_from_slice(&(0xc000 | u16::try_from(previous).unwrap()).to_be_bytes());
        msg.extend_from_slice(&record_fixed(TYPE_A, 4));
        msg.extend_from_slice(&[10, 0, 0, 1]);
        (msg, owner)
    };
    // 63 pointers in the chain and the owner's: 64 in all, the most allowed.
    let (msg, _) = chained(63);
    assert_eq!(parse_answer(&msg).unwrap().addrs.len(), 1);
    let (msg, owner) = chained(64);
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::TooManyPointers { offset: owner })
    );
}

#[test]
fn rejects_a_truncated_name() {
    // A label runs past the end.
    let msg = question_named(&[5, b'a', b'b'])[..15].to_vec();
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::TruncatedName { offset: 12 })
    );
    // No zero byte.
    let msg = question_named(&[1, b'a'])[..14].to_vec();
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::TruncatedName { offset: 14 })
    );
    // Half a pointer.
    let mut msg = header(1, 1);
    msg.extend_from_slice(QUESTION);
    msg.push(0xc0);
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::TruncatedName {
            offset: FIRST_RECORD
        })
    );
}

#[test]
fn rejects_a_truncated_question() {
    let msg = header(1, 0);
    let mut msg = [msg.as_slice(), QUESTION].concat();
    msg.pop();
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::TruncatedQuestion { offset: 17 })
    );
}

#[test]
fn rejects_a_truncated_record_header() {
    let fixed = record_fixed(TYPE_A, 4);
    let msg = one_record(&[0xc0, 0x0c], &fixed[..9]);
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::TruncatedRecord {
            index: 0,
            offset: FIRST_RECORD + 2
        })
    );
    // A record missing altogether is the same.
    let mut msg = header(1, 1);
    msg.extend_from_slice(QUESTION);
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::TruncatedName {
            offset: FIRST_RECORD
        })
    );
}

#[test]
fn rejects_truncated_rdata() {
    let mut rest = record_fixed(TYPE_A, 4);
    rest.extend_from_slice(&[10, 0, 0]);
    assert_eq!(
        parse_answer(&one_record(&[0xc0, 0x0c], &rest)),
        Err(DnsError::TruncatedRdata {
            index: 0,
            rdlength: 4,
            have: 3
        })
    );
    // Whatever the record type.
    let mut rest = record_fixed(5, 100);
    rest.extend_from_slice(&[1, b'c', 0]);
    assert_eq!(
        parse_answer(&one_record(&[0xc0, 0x0c], &rest)),
        Err(DnsError::TruncatedRdata {
            index: 0,
            rdlength: 100,
            have: 3
        })
    );
}

#[test]
fn rejects_an_address_record_of_the_wrong_length() {
    let mut rest = record_fixed(TYPE_A, 5);
    rest.extend_from_slice(&[10, 0, 0, 1, 0]);
    assert_eq!(
        parse_answer(&one_record(&[0xc0, 0x0c], &rest)),
        Err(DnsError::BadAddressLength {
            index: 0,
            rtype: TYPE_A,
            rdlength: 5
        })
    );
    let mut rest = record_fixed(TYPE_AAAA, 4);
    rest.extend_from_slice(&[10, 0, 0, 1]);
    assert_eq!(
        parse_answer(&one_record(&[0xc0, 0x0c], &rest)),
        Err(DnsError::BadAddressLength {
            index: 0,
            rtype: TYPE_AAAA,
            rdlength: 4
        })
    );
    // Outside class IN, type 1 is not an IPv4 address: skipped.
    let mut rest = record_fixed(TYPE_A, 5);
    rest[2..4].copy_from_slice(&3u16.to_be_bytes()); // class CH
    rest.extend_from_slice(&[10, 0, 0, 1, 0]);
    let answer = parse_answer(&one_record(&[0xc0, 0x0c], &rest)).unwrap();
    assert!(answer.addrs.is_empty());
}

#[test]
fn rejects_a_question_label_with_a_dot() {
    let msg = question_named(&[3, b'a', b'.', b'b', 3, b'c', b'o', b'm', 0]);
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::BadQnameByte {
            offset: 14,
            byte: b'.'
        })
    );
    // Nor a space, a control character or a non-ASCII byte.
    for byte in [b' ', 0x00, 0x1f, 0x7f, 0x80, 0xc3] {
        let msg = question_named(&[3, b'c', b'o', b'm', 2, b'a', byte, 0]);
        assert_eq!(
            parse_answer(&msg),
            Err(DnsError::BadQnameByte { offset: 18, byte }),
            "byte {byte:#04x}"
        );
    }
    // Other names are not read as text: a dot in an owner name is fine.
    let mut rest = record_fixed(TYPE_A, 4);
    rest.extend_from_slice(&[10, 0, 0, 1]);
    let answer = parse_answer(&one_record(&[3, b'a', b'.', 0xff, 0], &rest)).unwrap();
    assert_eq!(answer.addrs.len(), 1);
}

#[test]
fn question_name_is_lowercased_and_may_hold_other_printable_bytes() {
    let msg = question_named(&[4, b'_', b'S', b'i', b'P', 3, b'C', b'o', b'M', 0]);
    assert_eq!(parse_answer(&msg).unwrap().qname, "_sip.com");
    let msg = question_named(&[0]);
    assert_eq!(parse_answer(&msg).unwrap().qname, "");
}

#[test]
fn keeps_at_most_max_records_addresses() {
    let addrs: Vec<_> = (0..MAX_RECORDS + 6)
        .map(|i| {
            let i = u8::try_from(i).unwrap();
            (IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), u32::from(i))
        })
        .collect();
    let answer = Answer {
        id: 1,
        rcode: 0,
        qname: "many.example".to_owned(),
        qtype: TYPE_A,
        addrs,
    };
    let mut msg = encode_answer(&answer).unwrap();
    let parsed = parse_answer(&msg).unwrap();
    assert_eq!(parsed.addrs.len(), MAX_RECORDS);
    assert_eq!(parsed.addrs, answer.addrs[..MAX_RECORDS]);

    // The records past the limit are still walked and checked.
    msg.pop();
    assert_eq!(
        parse_answer(&msg),
        Err(DnsError::TruncatedRdata {
            index: u16::try_from(MAX_RECORDS + 5).unwrap(),
            rdlength: 4,
            have: 3
        })
    );
}

#[test]
fn encode_rejects_what_parse_could_not_return() {
    let valid = Answer {
        id: 9,
        rcode: 2,
        qname: "ok.example".to_owned(),
        qtype: TYPE_A,
        addrs: Vec::new(),
    };
    let with = |qname: &str| Answer {
        qname: qname.to_owned(),
        ..valid.clone()
    };
    assert_eq!(
        parse_answer(&encode_answer(&valid).unwrap()).unwrap(),
        valid
    );
    for qname in [".", "a..b", ".a", "a."] {
        assert_eq!(
            encode_answer(&with(qname)),
            Err(DnsError::EmptyLabel),
            "{qname:?}"
        );
    }
    assert_eq!(
        encode_answer(&with("ok.Example")),
        Err(DnsError::UppercaseQname {
            offset: 16,
            byte: b'E'
        })
    );
    assert_eq!(
        encode_answer(&with("ok.ex ample")),
        Err(DnsError::BadQnameByte {
            offset: 18,
            byte: b' '
        })
    );
    assert_eq!(
        encode_answer(&with("é.example")),
        Err(DnsError::BadQnameByte {
            offset: 13,
            byte: 0xc3
        })
    );
    assert_eq!(
        encode_answer(&Answer {
            rcode: 16,
            ..valid.clone()
        }),
        Err(DnsError::BadRcode(16))
    );
    let too_many = vec![(IpAddr::V4(Ipv4Addr::LOCALHOST), 0); 65_536];
    assert_eq!(
        encode_answer(&Answer {
            addrs: too_many,
            ..valid
        }),
        Err(DnsError::TooManyAnswers(65_536))
    );
}

#[test]
fn errors_name_the_problem() {
    assert_eq!(
        DnsError::PointerNotBackward {
            offset: 40,
            target: 40
        }
        .to_string(),
        "DNS compression pointer at offset 40 targets 40, not strictly backward"
    );
    assert_eq!(
        DnsError::ReservedLabelType {
            offset: 12,
            byte: 0x40
        }
        .to_string(),
        "reserved DNS label type 0x40 at offset 12"
    );
    assert_eq!(
        DnsError::QuestionCount(2).to_string(),
        "DNS response has 2 questions, expected exactly 1"
    );
}
