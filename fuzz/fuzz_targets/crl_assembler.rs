//! Fuzz target: the CRL assembler fed arbitrary chunk sequences.
//!
//! The input is read as a list of chunks (small CRL numbers and lengths are favoured so that
//! restarts, duplicates, conflicts and completions are all reached). Asserts that nothing panics,
//! that a completed CRL has exactly the announced length and contains every chunk that was
//! accepted for it, that invalid chunks are always rejected, and that the envelope path behaves
//! like the direct path.
#![no_main]

use aura_proto::control::{self, ControlMessage, CrlAssembler, CrlChunk, MAX_CRL_LEN};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// One chunk as read from the input.
struct RawChunk {
    crl_number: u64,
    offset: u32,
    total_len: u32,
    data: Vec<u8>,
    via_envelope: bool,
}

fn raw_chunk(u: &mut Unstructured<'_>) -> Result<RawChunk> {
    let selector: u8 = u.arbitrary()?;
    let crl_number = if selector & 0x80 == 0 {
        u64::from(u.int_in_range(0u8..=7)?)
    } else {
        u.arbitrary()?
    };
    let total_len: u32 = match selector & 0x07 {
        0..=4 => u.int_in_range(1..=256)?,
        5 => u.int_in_range(1..=70_000)?,
        6 => u.int_in_range(MAX_CRL_LEN as u32 - 2..=MAX_CRL_LEN as u32 + 2)?,
        _ => u.arbitrary()?,
    };
    let offset: u32 = if selector & 0x08 == 0 {
        u.int_in_range(0..=total_len.saturating_add(1))?
    } else {
        u.arbitrary()?
    };
    let max_len = usize::from(u.arbitrary::<u8>()?);
    let data = u.bytes(max_len.min(u.len()))?.to_vec();
    Ok(RawChunk {
        crl_number,
        offset,
        total_len,
        data,
        via_envelope: selector & 0x10 != 0,
    })
}

fuzz_target!(|input: &[u8]| {
    let mut u = Unstructured::new(input);
    let mut asm = CrlAssembler::new();
    // Chunks accepted into the CRL currently being assembled: (number, offset, data).
    let mut accepted: Vec<(u64, u32, Vec<u8>)> = Vec::new();
    while !u.is_empty() {
        let Ok(raw) = raw_chunk(&mut u) else { break };
        let chunk = CrlChunk {
            crl_number: raw.crl_number,
            offset: raw.offset,
            total_len: raw.total_len,
            data: &raw.data,
        };
        let valid = chunk.validate().is_ok();
        let result = if raw.via_envelope {
            match ControlMessage::from(chunk).encode() {
                Ok(packet) => {
                    let envelope = control::decode(&packet).expect("decode own envelope");
                    asm.push_envelope(&envelope)
                }
                Err(err) => {
                    assert!(!valid, "a valid chunk must encode: {err}");
                    asm.push(&chunk)
                }
            }
        } else {
            asm.push(&chunk)
        };
        match result {
            Err(_) => continue,
            Ok(_) if !valid => panic!("invalid chunk accepted: {:?}", chunk.validate()),
            Ok(Some(crl)) => {
                assert_eq!(crl.len(), raw.total_len as usize, "completed length");
                assert_eq!(asm.last_completed(), Some(raw.crl_number));
                assert_eq!(asm.in_progress(), None);
                accepted.retain(|(number, _, _)| *number == raw.crl_number);
                accepted.push((raw.crl_number, raw.offset, raw.data.clone()));
                for (_, offset, data) in &accepted {
                    let start = *offset as usize;
                    assert_eq!(
                        crl.get(start..start + data.len()),
                        Some(&data[..]),
                        "completed CRL disagrees with an accepted chunk"
                    );
                }
                accepted.clear();
            }
            Ok(None) => {
                if asm.in_progress() == Some(raw.crl_number) {
                    accepted.retain(|(number, _, _)| *number == raw.crl_number);
                    accepted.push((raw.crl_number, raw.offset, raw.data.clone()));
                }
                if let Some((received, total)) = asm.progress() {
                    assert!(received < total as usize);
                }
            }
        }
    }
});
