//! DNS answers, sans-IO: what the client's DNS stub needs from each response that passes
//! through it to install the routes of domain split-tunnel rules — the question name, and the
//! A and AAAA addresses of the answer section with their TTLs ([`Answer`]).
//!
//! [`parse_answer`] reads a DNS message (RFC 1035 §4.1) in place; [`encode_answer`] builds the
//! simplest response that carries a given [`Answer`] (tests and fuzzing only: the client never
//! answers queries itself).
//!
//! # What [`parse_answer`] reads
//!
//! ```text
//! header (12): id u16 ‖ flags u16 ‖ qdcount u16 ‖ ancount u16 ‖ nscount u16 ‖ arcount u16
//! question:    name ‖ qtype u16 ‖ qclass u16                  (exactly one: qdcount = 1)
//! answer:      ancount × (name ‖ type u16 ‖ class u16 ‖ ttl u32 ‖ rdlength u16 ‖ rdata)
//! authority, additional: not read
//! ```
//!
//! * The message must be a response (QR bit set) to exactly one question: the client only
//!   routes answers it can attribute to one name. The opcode, the other flags and the question
//!   class are not checked; the response code is returned as is.
//! * Every answer record is walked, whatever its type. An A (type 1) record of class IN must
//!   carry 4 bytes of RDATA, an AAAA (type 28) record of class IN 16; each is kept, in order,
//!   with its TTL (as sent), up to [`MAX_RECORDS`] — later ones are still checked, but ignored.
//!   Other records (CNAME, DNAME, RRSIG, other classes, …) are skipped by their RDATA length;
//!   the owner names of records are read (to find where the record header starts) but not
//!   compared with anything.
//! * The authority and additional sections, and anything after the answer section, are not
//!   read: bytes after the last answer record are not an error.
//! * Names: labels of 1 to 63 bytes, at most [`MAX_NAME_LEN`] bytes on the wire (length bytes
//!   and the final zero byte included). A compression pointer (top two bits `11`) may end any
//!   name, the question's included, but must point *strictly backward*: before the first byte
//!   of the name, or, for a name already reached through a pointer, before that pointer's
//!   target. Positions therefore strictly decrease from jump to jump, so a name cannot loop;
//!   a name may in addition follow at most 64 pointers. Label types `01` and `10` (extended and
//!   binary labels, both obsolete) are rejected.
//! * The question name becomes a `String`: each label byte must be printable ASCII other than
//!   space and `.` (a label holding a dot could not be told apart from two labels), letters are
//!   lowercased, labels are joined with `.`, without a trailing dot (`""` for the root).
//!
//! # Guarantees
//!
//! * [`parse_answer`] never panics and never reads past the input; every rejection is a typed
//!   [`DnsError`]. Its work is linear in the message length, and what it allocates is bounded by
//!   [`MAX_NAME_LEN`] and [`MAX_RECORDS`], whatever the counts in the header claim.
//! * `parse_answer(&encode_answer(a)?) == a` for every `a` with at most [`MAX_RECORDS`]
//!   addresses that [`encode_answer`] accepts. Parsing is not canonical, though: DNS allows many
//!   encodings of the same answer (compression, letter case, other records, ignored sections),
//!   so re-encoding an accepted message does not give its bytes back.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest name on the wire, in bytes: every label with its length byte, plus the final zero
/// byte (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;

/// Most address records [`parse_answer`] keeps from one answer; later ones are ignored (not an
/// error).
pub const MAX_RECORDS: usize = 64;

/// Record type of an IPv4 address record (A).
pub const TYPE_A: u16 = 1;

/// Record type of an IPv6 address record (AAAA).
pub const TYPE_AAAA: u16 = 28;

/// The Internet class (IN).
const CLASS_IN: u16 = 1;

/// Most compression pointers one name may follow (defense in depth: strictly backward pointers
/// already make a loop impossible).
const MAX_POINTERS: usize = 64;

/// Longest label, in bytes.
const MAX_LABEL_LEN: usize = 63;

/// Length of the message header, in bytes; the question name starts right after it.
const HEADER_LEN: usize = 12;

/// Length of a record's fixed part after its owner name: type, class, TTL and RDATA length.
const RECORD_FIXED_LEN: usize = 10;

/// QR: the message is a response.
const FLAG_QR: u16 = 0x8000;
/// RD: recursion desired (echoed from the query).
const FLAG_RD: u16 = 0x0100;
/// RA: recursion available.
const FLAG_RA: u16 = 0x0080;
/// The response code: the low four bits of the flags (of their second byte).
const RCODE_MASK: u8 = 0x0f;

/// A compression pointer to the question name, which starts right after the header (offset
/// 12).
const POINTER_TO_QNAME: [u8; 2] = [0xc0, 0x0c];

/// What the client needs from one DNS response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The message ID.
    pub id: u16,
    /// The response code (the low four bits of the flags): 0 no error, 2 server failure, 3 no
    /// such name, …
    pub rcode: u8,
    /// The name of the single question, ASCII-lowercased, without a trailing dot (`""` for the
    /// root).
    pub qname: String,
    /// The type of the single question ([`TYPE_A`], [`TYPE_AAAA`], …).
    pub qtype: u16,
    /// Every A and AAAA record of class IN in the answer section, in order, with its TTL in
    /// seconds; at most [`MAX_RECORDS`] of them when parsed.
    pub addrs: Vec<(IpAddr, u32)>,
}

/// Why a DNS message was rejected by [`parse_answer`], or an [`Answer`] by [`encode_answer`].
///
/// Offsets count bytes from the start of the message; record indexes count answer records from
/// 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The message is shorter than its 12-byte header.
    #[error("DNS message of {len} bytes is shorter than its 12-byte header")]
    TruncatedHeader {
        /// Length of the message, in bytes.
        len: usize,
    },
    /// The QR bit is clear: the message is a query, not a response.
    #[error("DNS message is a query (QR bit clear), not a response")]
    NotResponse,
    /// The header counts other than exactly one question.
    #[error("DNS response has {0} questions, expected exactly 1")]
    QuestionCount(u16),
    /// A label or a compression pointer runs past the end of the message.
    #[error("DNS name runs past the end of the message at offset {offset}")]
    TruncatedName {
        /// Offset of the length byte or pointer that runs past the end.
        offset: usize,
    },
    /// A length byte of label type `01` or `10` (top two bits): reserved, or obsolete extended
    /// labels. Note that on the wire this is also what a label of 64 to 127 bytes would look
    /// like.
    #[error("reserved DNS label type {byte:#04x} at offset {offset}")]
    ReservedLabelType {
        /// Offset of the length byte.
        offset: usize,
        /// The length byte.
        byte: u8,
    },
    /// A name longer than [`MAX_NAME_LEN`] bytes on the wire.
    #[error("DNS name at offset {offset} is longer than 255 bytes on the wire")]
    NameTooLong {
        /// Offset where the name starts.
        offset: usize,
    },
    /// A compression pointer whose target lies past the end of the message.
    #[error(
        "DNS compression pointer at offset {offset} targets {target}, past the end of the message"
    )]
    PointerOutsideMessage {
        /// Offset of the pointer.
        offset: usize,
        /// Offset it points to.
        target: usize,
    },
    /// A compression pointer that does not point strictly backward: to the pointer itself, to a
    /// later offset, or not before the start of the name that leads to it (which would loop).
    #[error("DNS compression pointer at offset {offset} targets {target}, not strictly backward")]
    PointerNotBackward {
        /// Offset of the pointer.
        offset: usize,
        /// Offset it points to.
        target: usize,
    },
    /// A name that follows more than 64 compression pointers.
    #[error("DNS name at offset {offset} follows more than 64 compression pointers")]
    TooManyPointers {
        /// Offset where the name starts.
        offset: usize,
    },
    /// A byte of the question name that cannot be part of its text: a dot, a space, a control
    /// character or a non-ASCII byte.
    #[error(
        "question name byte {byte:#04x} at offset {offset} is a dot, a space or not printable ASCII"
    )]
    BadQnameByte {
        /// Offset of the byte.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// The question's type and class run past the end of the message.
    #[error("DNS question truncated: its type and class at offset {offset} run past the end")]
    TruncatedQuestion {
        /// Offset where the type should start.
        offset: usize,
    },
    /// The type, class, TTL and RDATA length of an answer record run past the end of the
    /// message.
    #[error(
        "answer record {index} truncated: its 10-byte header at offset {offset} runs past the end"
    )]
    TruncatedRecord {
        /// Index of the record in the answer section.
        index: u16,
        /// Offset where the type should start.
        offset: usize,
    },
    /// The RDATA of an answer record runs past the end of the message.
    #[error("answer record {index} truncated: {rdlength} bytes of RDATA announced, {have} left")]
    TruncatedRdata {
        /// Index of the record in the answer section.
        index: u16,
        /// The announced RDATA length, in bytes.
        rdlength: u16,
        /// Bytes left in the message, in bytes.
        have: usize,
    },
    /// An A record of class IN whose RDATA is not 4 bytes, or an AAAA record not 16.
    #[error(
        "answer record {index} of type {rtype} has {rdlength} bytes of RDATA (A needs 4, AAAA 16)"
    )]
    BadAddressLength {
        /// Index of the record in the answer section.
        index: u16,
        /// The record type, [`TYPE_A`] or [`TYPE_AAAA`].
        rtype: u16,
        /// The RDATA length, in bytes.
        rdlength: u16,
    },
    /// Encoding: the question name has an empty label (a leading, trailing or doubled dot).
    #[error("question name has an empty label (leading, trailing or doubled dot)")]
    EmptyLabel,
    /// Encoding: a label of the question name is longer than 63 bytes.
    #[error("question name label of {len} bytes exceeds 63")]
    LabelTooLong {
        /// Length of the label, in bytes.
        len: usize,
    },
    /// Encoding: the question name has an uppercase letter ([`parse_answer`] lowercases names, so
    /// it could not give this answer back).
    #[error("question name byte {byte:#04x} at offset {offset} is an uppercase letter")]
    UppercaseQname {
        /// Offset the byte would have in the message.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// Encoding: a response code that does not fit in four bits.
    #[error("response code {0} does not fit in 4 bits")]
    BadRcode(u8),
    /// Encoding: more address records than a DNS header can count (65535).
    #[error("{0} address records, more than a DNS message can count (65535)")]
    TooManyAnswers(usize),
}

/// Reads the answer a DNS response carries: its question and its A and AAAA records.
///
/// See the [module documentation](self) for what is read and what is checked.
///
/// # Errors
/// A [`DnsError`] naming the first problem found: [`DnsError::TruncatedHeader`],
/// [`DnsError::NotResponse`], [`DnsError::QuestionCount`]; in a name,
/// [`DnsError::TruncatedName`], [`DnsError::ReservedLabelType`], [`DnsError::NameTooLong`],
/// [`DnsError::PointerOutsideMessage`], [`DnsError::PointerNotBackward`],
/// [`DnsError::TooManyPointers`], and [`DnsError::BadQnameByte`] in the question name;
/// [`DnsError::TruncatedQuestion`], [`DnsError::TruncatedRecord`],
/// [`DnsError::TruncatedRdata`], [`DnsError::BadAddressLength`].
pub fn parse_answer(msg: &[u8]) -> Result<Answer, DnsError> {
    let Some(header) = msg.first_chunk::<HEADER_LEN>() else {
        return Err(DnsError::TruncatedHeader { len: msg.len() });
    };
    let [
        id_hi,
        id_lo,
        flags_hi,
        flags_lo,
        qd_hi,
        qd_lo,
        an_hi,
        an_lo,
        ..,
    ] = *header;
    let flags = u16::from_be_bytes([flags_hi, flags_lo]);
    if flags & FLAG_QR == 0 {
        return Err(DnsError::NotResponse);
    }
    let qdcount = u16::from_be_bytes([qd_hi, qd_lo]);
    if qdcount != 1 {
        return Err(DnsError::QuestionCount(qdcount));
    }
    let ancount = u16::from_be_bytes([an_hi, an_lo]);

    let mut qname = String::new();
    let mut pos = read_name(msg, HEADER_LEN, Some(&mut qname))?;
    let Some(&[qtype_hi, qtype_lo, _, _]) = msg.get(pos..).and_then(<[u8]>::first_chunk::<4>)
    else {
        return Err(DnsError::TruncatedQuestion { offset: pos });
    };
    pos = pos.saturating_add(4);

    let mut addrs = Vec::with_capacity(usize::from(ancount).min(MAX_RECORDS));
    for index in 0..ancount {
        pos = read_name(msg, pos, None)?;
        let Some(&fixed) = msg
            .get(pos..)
            .and_then(<[u8]>::first_chunk::<RECORD_FIXED_LEN>)
        else {
            return Err(DnsError::TruncatedRecord { index, offset: pos });
        };
        let [
            t_hi,
            t_lo,
            c_hi,
            c_lo,
            ttl0,
            ttl1,
            ttl2,
            ttl3,
            len_hi,
            len_lo,
        ] = fixed;
        pos = pos.saturating_add(RECORD_FIXED_LEN);
        let rtype = u16::from_be_bytes([t_hi, t_lo]);
        let class = u16::from_be_bytes([c_hi, c_lo]);
        let ttl = u32::from_be_bytes([ttl0, ttl1, ttl2, ttl3]);
        let rdlength = u16::from_be_bytes([len_hi, len_lo]);
        let rest = msg.get(pos..).unwrap_or_default();
        let Some(rdata) = rest.get(..usize::from(rdlength)) else {
            return Err(DnsError::TruncatedRdata {
                index,
                rdlength,
                have: rest.len(),
            });
        };
        pos = pos.saturating_add(rdata.len());

        if class != CLASS_IN {
            continue;
        }
        let bad_length = || DnsError::BadAddressLength {
            index,
            rtype,
            rdlength,
        };
        let ip = match rtype {
            TYPE_A => IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(rdata).map_err(|_| bad_length())?,
            )),
            TYPE_AAAA => IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(rdata).map_err(|_| bad_length())?,
            )),
            _ => continue,
        };
        if addrs.len() < MAX_RECORDS {
            addrs.push((ip, ttl));
        }
    }

    Ok(Answer {
        id: u16::from_be_bytes([id_hi, id_lo]),
        rcode: flags_lo & RCODE_MASK,
        qname,
        qtype: u16::from_be_bytes([qtype_hi, qtype_lo]),
        addrs,
    })
}

/// Reads the name starting at `start` and returns the offset right after it (after its zero
/// byte, or after its first compression pointer). With `text`, appends the name's text to it
/// (labels checked, lowercased and joined with dots), as for the question name.
fn read_name(msg: &[u8], start: usize, mut text: Option<&mut String>) -> Result<usize, DnsError> {
    let mut pos = start;
    // Where the labels being read start: `start`, then the last pointer's target. The next
    // pointer must point before it.
    let mut segment = start;
    // Where the name ends in the byte stream, once a pointer has been followed.
    let mut end = None;
    // Wire length of the labels read so far (length bytes included).
    let mut wire_len = 0usize;
    let mut jumps = 0usize;
    loop {
        let Some(&len_byte) = msg.get(pos) else {
            return Err(DnsError::TruncatedName { offset: pos });
        };
        match len_byte >> 6 {
            0b00 if len_byte == 0 => {
                return Ok(end.unwrap_or_else(|| pos.saturating_add(1)));
            }
            0b00 => {
                let len = usize::from(len_byte);
                let label_start = pos.saturating_add(1);
                let Some(label) = msg.get(label_start..).and_then(|rest| rest.get(..len)) else {
                    return Err(DnsError::TruncatedName { offset: pos });
                };
                wire_len = wire_len.saturating_add(1).saturating_add(len);
                // Room for the final zero byte.
                if wire_len >= MAX_NAME_LEN {
                    return Err(DnsError::NameTooLong { offset: start });
                }
                if let Some(text) = text.as_deref_mut() {
                    push_label(text, label, label_start)?;
                }
                pos = label_start.saturating_add(len);
            }
            0b11 => {
                let Some(&low) = msg.get(pos.saturating_add(1)) else {
                    return Err(DnsError::TruncatedName { offset: pos });
                };
                let target = usize::from(u16::from_be_bytes([len_byte & 0x3f, low]));
                if target >= msg.len() {
                    return Err(DnsError::PointerOutsideMessage {
                        offset: pos,
                        target,
                    });
                }
                if target >= segment {
                    return Err(DnsError::PointerNotBackward {
                        offset: pos,
                        target,
                    });
                }
                jumps = jumps.saturating_add(1);
                if jumps > MAX_POINTERS {
                    return Err(DnsError::TooManyPointers { offset: start });
                }
                end.get_or_insert(pos.saturating_add(2));
                pos = target;
                segment = target;
            }
            _ => {
                return Err(DnsError::ReservedLabelType {
                    offset: pos,
                    byte: len_byte,
                });
            }
        }
    }
}

/// Appends one question-name label to `text` (after a dot unless it is the first), lowercased;
/// `offset` is the label's offset in the message, for the error.
fn push_label(text: &mut String, label: &[u8], offset: usize) -> Result<(), DnsError> {
    if let Some((i, &byte)) = label.iter().enumerate().find(|&(_, &b)| !qname_byte(b)) {
        return Err(DnsError::BadQnameByte {
            offset: offset.saturating_add(i),
            byte,
        });
    }
    if !text.is_empty() {
        text.push('.');
    }
    text.extend(label.iter().map(|&b| char::from(b.to_ascii_lowercase())));
    Ok(())
}

/// Whether a byte may appear in a question-name label: printable ASCII, not space, not a dot.
const fn qname_byte(b: u8) -> bool {
    b.is_ascii_graphic() && b != b'.'
}

/// Encodes `answer` as a response: flags QR, RD and RA and the given response code; one
/// question (`qname`, `qtype`, class IN); one A or AAAA record of class IN per address, in
/// order, its owner a compression pointer to the question name; no other section.
///
/// For the client's tests and fuzzing: the client never answers queries itself.
///
/// # Errors
/// For a `qname` that [`parse_answer`] could not give back: [`DnsError::EmptyLabel`],
/// [`DnsError::LabelTooLong`], [`DnsError::NameTooLong`], [`DnsError::BadQnameByte`],
/// [`DnsError::UppercaseQname`]; [`DnsError::BadRcode`] for a response code over 15;
/// [`DnsError::TooManyAnswers`] for more than 65535 addresses.
pub fn encode_answer(answer: &Answer) -> Result<Vec<u8>, DnsError> {
    let qname_len = check_qname(&answer.qname)?;
    if answer.rcode > RCODE_MASK {
        return Err(DnsError::BadRcode(answer.rcode));
    }
    let ancount = u16::try_from(answer.addrs.len())
        .map_err(|_| DnsError::TooManyAnswers(answer.addrs.len()))?;
    let flags = FLAG_QR | FLAG_RD | FLAG_RA | u16::from(answer.rcode);

    let records_len = answer.addrs.iter().fold(0usize, |len, (ip, _)| {
        let rdlength = match ip {
            IpAddr::V4(_) => 4,
            IpAddr::V6(_) => 16,
        };
        len.saturating_add(POINTER_TO_QNAME.len() + RECORD_FIXED_LEN + rdlength)
    });
    let mut out = Vec::with_capacity(
        (HEADER_LEN + 4)
            .saturating_add(qname_len)
            .saturating_add(records_len),
    );
    for word in [answer.id, flags, 1, ancount, 0, 0] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    for label in answer.qname.split('.').filter(|label| !label.is_empty()) {
        // check_qname bounds every label to 63 bytes.
        out.push(u8::try_from(label.len()).unwrap_or_default());
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&answer.qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    for &(ip, ttl) in &answer.addrs {
        out.extend_from_slice(&POINTER_TO_QNAME);
        let rtype = match ip {
            IpAddr::V4(_) => TYPE_A,
            IpAddr::V6(_) => TYPE_AAAA,
        };
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        match ip {
            IpAddr::V4(v4) => {
                out.extend_from_slice(&4u16.to_be_bytes());
                out.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out.extend_from_slice(&16u16.to_be_bytes());
                out.extend_from_slice(&v6.octets());
            }
        }
    }
    Ok(out)
}

/// Checks that `qname` is a name [`parse_answer`] could return and gives its wire length.
fn check_qname(qname: &str) -> Result<usize, DnsError> {
    if qname.is_empty() {
        return Ok(1);
    }
    let mut wire_len = 1usize;
    for label in qname.split('.') {
        // Offset of the label's first byte in the message: the dots become length bytes.
        let offset = HEADER_LEN.saturating_add(wire_len);
        if label.is_empty() {
            return Err(DnsError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(DnsError::LabelTooLong { len: label.len() });
        }
        for (i, &byte) in label.as_bytes().iter().enumerate() {
            let offset = offset.saturating_add(i);
            if !qname_byte(byte) {
                return Err(DnsError::BadQnameByte { offset, byte });
            }
            if byte.is_ascii_uppercase() {
                return Err(DnsError::UppercaseQname { offset, byte });
            }
        }
        wire_len = wire_len.saturating_add(1).saturating_add(label.len());
    }
    if wire_len > MAX_NAME_LEN {
        return Err(DnsError::NameTooLong { offset: HEADER_LEN });
    }
    Ok(wire_len)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn root_question_round_trips() {
        let answer = Answer {
            id: 7,
            rcode: 3,
            qname: String::new(),
            qtype: TYPE_A,
            addrs: Vec::new(),
        };
        let bytes = encode_answer(&answer).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + 1 + 4);
        assert_eq!(parse_answer(&bytes).unwrap(), answer);
    }

    #[test]
    fn pointer_to_qname_targets_the_end_of_the_header() {
        assert_eq!(usize::from(POINTER_TO_QNAME[1]), HEADER_LEN);
        assert_eq!(POINTER_TO_QNAME[0], 0xc0);
    }
}
