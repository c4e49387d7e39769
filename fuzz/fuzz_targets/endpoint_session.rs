//! Fuzz target: the state machine past mac1. A client and a server endpoint run a real
//! handshake, then exchange data packets; the fuzzer decides, datagram by datagram, to
//! deliver, drop, corrupt (then re-stamp the fuzz-only mac1, so the corruption reaches the
//! parser and the handshake), or inject its own datagrams carrying the fuzz-only mac1
//! (`aura_proto::wire::FUZZ_MAC1`, which exists only in fuzzing builds) into either side,
//! with time moving as it says. Nothing may panic; the server holds no more half-open
//! handshakes than its limit; data that arrives is what was sent. The first byte may bind
//! both links to one outer session (suite 3, no inner AEAD: then only data the fuzzer did
//! not corrupt must arrive as sent, the outer session being what stops corruption) or to
//! two different ones (no session may then complete).
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aura_proto::wire::{DATA_HEADER_LEN, FRAG_TRAILER_LEN, FUZZ_MAC1, MAC_LEN};
use aura_proto::{EcdsaP256Signer, Endpoint, EndpointConfig, Event, Identity};
use aura_testkit::{SimClock, TestPki};
use libfuzzer_sys::fuzz_target;

fn pki() -> &'static TestPki {
    static P: OnceLock<TestPki> = OnceLock::new();
    P.get_or_init(|| TestPki::new(1).expect("fixture"))
}

fn endpoint(accept: bool, clock: &SimClock) -> (Endpoint, usize) {
    let p = pki();
    let id = if accept { p.server() } else { p.alice() };
    let identity = Identity {
        cert_der: id.cert_der.clone(),
        signer: Arc::new(EcdsaP256Signer::from_pkcs8_der(&id.key_pkcs8_der).expect("key")),
    };
    let config = EndpointConfig::new(
        p.ca_der().to_vec(),
        identity,
        p.verifier().expect("v"),
        accept,
    );
    let limit = config.max_pending_handshakes;
    (
        Endpoint::new(config, [7; 32], clock.now(), clock.wall()).expect("endpoint"),
        limit,
    )
}

/// Stamps the fuzz mac1 (and a zero mac2) over the trailer of a handshake datagram.
fn stamp(d: &mut [u8]) {
    if let Some(at) = d.len().checked_sub(FRAG_TRAILER_LEN) {
        d[at..at + MAC_LEN].copy_from_slice(&FUZZ_MAC1);
        d[at + MAC_LEN..].fill(0);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let mut clock = SimClock::new();
    let (mut server, limit) = endpoint(true, &clock);
    let (mut client, _) = endpoint(false, &clock);
    let s_addr: SocketAddr = "198.51.100.1:443".parse().expect("addr");
    let c_addr: SocketAddr = "192.0.2.7:5000".parse().expect("addr");
    let bound = mode & 1 != 0;
    let split = bound && mode & 2 != 0;
    if bound {
        client.set_link_binding(s_addr, Some([0xb1; aura_proto::BINDING_LEN]));
        let theirs = if split { 0xb2 } else { 0xb1 };
        server.set_link_binding(c_addr, Some([theirs; aura_proto::BINDING_LEN]));
    }
    if client.connect(clock.now(), s_addr, "server.test").is_err() {
        return;
    }
    let mut input = data;
    let mut take = |n: usize| -> Option<&[u8]> {
        if input.is_empty() {
            return None;
        }
        let (h, t) = input.split_at(n.min(input.len()));
        input = t;
        Some(h)
    };
    let mut conn = None;
    let mut sent_payloads: Vec<Vec<u8>> = Vec::new();
    let mut rounds = 0;
    while rounds < 64 {
        rounds += 1;
        let Some(op) = take(1).map(|b| b[0]) else {
            break;
        };
        // Genuine traffic first: everything each side wants to send, fuzzed on the way.
        let mut wire: Vec<(bool, Vec<u8>)> = Vec::new();
        while let Some(t) = client.poll_transmit() {
            wire.push((true, t.data));
        }
        while let Some(t) = server.poll_transmit() {
            wire.push((false, t.data));
        }
        for (to_server, mut d) in wire {
            let Some(how) = take(1).map(|b| b[0]) else {
                break;
            };
            let corrupted = how % 4 == 3;
            match how % 4 {
                0 | 1 => {}
                2 => continue, // dropped
                _ => {
                    if let Some(pos) = take(2) {
                        let i = usize::from(pos[0]) << 8 | usize::from(*pos.get(1).unwrap_or(&0));
                        if !d.is_empty() {
                            let len = d.len();
                            d[i % len] ^= how | 1;
                        }
                        if d.first() != Some(&0) {
                            stamp(&mut d);
                        }
                    }
                }
            }
            let now = clock.now();
            if to_server {
                if let Ok(Some(r)) = server.handle_datagram(now, c_addr, &mut d) {
                    let got = d.get(r.payload).unwrap_or_default();
                    assert!(
                        got.is_empty()
                            || sent_payloads.iter().any(|p| p == got)
                            || (bound && corrupted),
                        "the server received data the client never sent"
                    );
                }
            } else if let Ok(Some(r)) = client.handle_datagram(now, s_addr, &mut d) {
                // The server sends no data here: only keep-alives may arrive.
                assert!(
                    d.get(r.payload).unwrap_or_default().is_empty(),
                    "forged data reached the client"
                );
            }
        }
        // Then the fuzzer's own datagram, to one side, from the peer or elsewhere.
        if op & 0x10 != 0 {
            let n = usize::from(op & 0x0f) * 24;
            if let Some(body) = take(n) {
                let mut d = body.to_vec();
                d.extend_from_slice(&FUZZ_MAC1);
                d.extend_from_slice(&[0; MAC_LEN]);
                let now = clock.now();
                let from_elsewhere: SocketAddr = SocketAddr::from(([203, 0, 113, op], 9000));
                let _ = match op & 0x60 {
                    0x00 => server.handle_datagram(now, c_addr, &mut d).map(|_| ()),
                    0x20 => server
                        .handle_datagram(now, from_elsewhere, &mut d)
                        .map(|_| ()),
                    _ => client.handle_datagram(now, s_addr, &mut d).map(|_| ()),
                };
            }
        }
        // The client sends a little data once connected.
        while let Some(e) = client.poll_event() {
            if let Event::Connected { conn: c, .. } = e {
                assert!(!split, "a session over two outer sessions");
                conn = Some(c);
            }
        }
        while server.poll_event().is_some() {}
        if let (Some(c), true) = (conn, op & 0x80 != 0) {
            let payload = vec![op; 1 + usize::from(op & 0x3f)];
            let mut buf = vec![0u8; DATA_HEADER_LEN + payload.len() + 16];
            buf[DATA_HEADER_LEN..DATA_HEADER_LEN + payload.len()].copy_from_slice(&payload);
            if let Ok((_, len)) = client.seal(clock.now(), c, &mut buf, payload.len()) {
                sent_payloads.push(payload);
                buf.truncate(len);
                if let Ok(Some(r)) = server.handle_datagram(clock.now(), c_addr, &mut buf) {
                    let got = buf.get(r.payload).unwrap_or_default();
                    assert_eq!(Some(got), sent_payloads.last().map(Vec::as_slice));
                }
            }
        }
        // Time moves as the fuzzer says (up to about 4 s a round).
        clock.advance(Duration::from_millis(u64::from(op & 0x0f) * 256));
        client.handle_timeout(clock.now());
        server.handle_timeout(clock.now());
        assert!(
            server.pending_handshakes() <= limit,
            "half-open table over its limit"
        );
    }
});
