//! Fuzz target: control envelope decoding and every typed payload decoder.
//!
//! Asserts the round trip, not only the absence of panics: whenever a decoder accepts some
//! bytes, re-encoding what it produced must give back exactly those bytes.
#![no_main]

use aura_proto::control::{
    self, AddressAssign6, CircuitFailed, CircuitReady, ControlError, ControlMessage, CoverGrant,
    CoverRequest, CrlAck, CrlChunk, DnsAssign, ExtendBridge, HEADER_LEN, Padding,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    envelope(data);
    // The same bytes as a bare payload of each kind, so the typed decoders are explored without
    // the fuzzer having to find the envelope header first.
    payloads(data);
});

fn envelope(data: &[u8]) {
    let envelope = match control::decode(data) {
        Ok(envelope) => envelope,
        Err(ControlError::NotControl) => {
            assert!(!control::is_control(data));
            return;
        }
        Err(_) => {
            assert!(control::is_control(data));
            return;
        }
    };
    assert!(control::is_control(data));
    assert_eq!(envelope.encoded_len(), data.len());

    let encoded = control::encode(envelope.kind, envelope.payload).expect("re-encode envelope");
    assert_eq!(encoded, data, "envelope round trip");
    let mut out = vec![0u8; data.len()];
    assert_eq!(envelope.encode_into(&mut out), Ok(data.len()));
    assert_eq!(out, data);
    if let Some(short) = out.get_mut(..data.len() - 1) {
        assert!(matches!(
            envelope.encode_into(short),
            Err(ControlError::BufferTooSmall { .. })
        ));
    }

    if let Ok(message) = ControlMessage::parse(envelope) {
        assert_eq!(message.kind(), envelope.kind);
        assert_eq!(message.encoded_len(), data.len());
        let encoded = message.encode().expect("re-encode message");
        assert_eq!(encoded, data, "typed message round trip");
        let mut out = vec![0u8; data.len() + HEADER_LEN];
        assert_eq!(message.encode_into(&mut out), Ok(data.len()));
        assert_eq!(out.get(..data.len()), Some(data));
    }
}

fn payloads(payload: &[u8]) {
    if let Ok(extend) = ExtendBridge::decode(payload) {
        assert_eq!(extend.to_vec(), payload, "ExtendBridge round trip");
    }
    if let Ok(failed) = CircuitFailed::decode(payload) {
        assert_eq!(
            failed.to_vec().expect("encode CircuitFailed"),
            payload,
            "CircuitFailed round trip"
        );
    }
    if let Ok(chunk) = CrlChunk::decode(payload) {
        assert!(chunk.validate().is_ok());
        assert_eq!(
            chunk.to_vec().expect("encode CrlChunk"),
            payload,
            "CrlChunk round trip"
        );
    }
    if let Ok(ack) = CrlAck::decode(payload) {
        assert_eq!(ack.to_bytes(), payload, "CrlAck round trip");
    }
    if CircuitReady::decode(payload).is_ok() {
        assert!(payload.is_empty());
    }
    if let Ok(dns) = DnsAssign::decode(payload) {
        assert!(dns.validate().is_ok());
        assert!(dns.servers.len() <= DnsAssign::MAX_SERVERS);
        assert_eq!(dns.encoded_len(), payload.len());
        let mut out = vec![0u8; payload.len()];
        assert_eq!(dns.encode_into(&mut out), Ok(payload.len()));
        assert_eq!(out, payload, "DnsAssign round trip");
    }
    if let Ok(p) = Padding::decode(payload) {
        assert_eq!(p.len, payload.len());
        assert!(payload.iter().all(|b| *b == 0));
    }
    if let Ok(r) = CoverRequest::decode(payload) {
        let mut out = [0u8; 3];
        assert_eq!(r.encode_into(&mut out), Ok(3));
        assert_eq!(&out[..], payload, "CoverRequest round trip");
    }
    if let Ok(g) = CoverGrant::decode(payload) {
        let mut out = [0u8; 3];
        assert_eq!(g.encode_into(&mut out), Ok(3));
        assert_eq!(&out[..], payload, "CoverGrant round trip");
    }
    if let Ok(assign) = AddressAssign6::decode(payload) {
        assert!(assign.validate().is_ok());
        assert_eq!(assign.encoded_len(), payload.len());
        let mut out = vec![0u8; payload.len()];
        assert_eq!(assign.encode_into(&mut out), Ok(payload.len()));
        assert_eq!(out, payload, "AddressAssign6 round trip");
    }
}
