//! Fuzz target: the DNS answer reader of the client's DNS stub (`aura_proto::dns`).
//!
//! DNS allows many encodings of one answer, so the bytes themselves do not round-trip; what is
//! asserted is that an accepted answer is one `encode_answer` accepts, and that its encoding
//! parses back to the same answer.
#![no_main]

use aura_proto::dns::{self, MAX_NAME_LEN, MAX_RECORDS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = dns::parse_answer(data) else {
        return;
    };
    assert!(answer.addrs.len() <= MAX_RECORDS);
    assert!(answer.rcode <= 0x0f);
    assert!(answer.qname.len() < MAX_NAME_LEN);
    let encoded = dns::encode_answer(&answer).expect("re-encode a parsed answer");
    assert_eq!(
        dns::parse_answer(&encoded).as_ref(),
        Ok(&answer),
        "answer round trip"
    );
});
