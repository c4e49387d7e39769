//! Fuzz target: arbitrary datagrams from arbitrary sources into a server and a client
//! endpoint. Nothing may panic, and a stranger (who cannot compute mac1) must never get an
//! answer or create state.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aura_proto::{EcdsaP256Signer, Endpoint, EndpointConfig, Identity};
use aura_testkit::{SimClock, TestPki};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    pki: TestPki,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        pki: TestPki::new(1).expect("fixture"),
    })
}

fn endpoint(accept: bool, clock: &SimClock) -> Endpoint {
    let f = fixture();
    let id = if accept {
        f.pki.server()
    } else {
        f.pki.alice()
    };
    let identity = Identity {
        cert_der: id.cert_der.clone(),
        signer: Arc::new(EcdsaP256Signer::from_pkcs8_der(&id.key_pkcs8_der).expect("key")),
    };
    let config = EndpointConfig::new(
        f.pki.ca_der().to_vec(),
        identity,
        f.pki.verifier().expect("verifier"),
        accept,
    );
    Endpoint::new(config, [7; 32], clock.now(), clock.wall()).expect("endpoint")
}

fuzz_target!(|data: &[u8]| {
    let clock = SimClock::new();
    let mut server = endpoint(true, &clock);
    let mut client = endpoint(false, &clock);
    let server_addr: SocketAddr = "198.51.100.1:443".parse().expect("addr");
    let _ = client.connect(clock.now(), server_addr, "server.test");
    while client.poll_transmit().is_some() {}
    let mut now: Instant = clock.now();
    let mut rest = data;
    while let Some((&head, tail)) = rest.split_first() {
        let n = (usize::from(head) * 8).min(tail.len());
        let (datagram, tail) = tail.split_at(n);
        rest = tail;
        now += Duration::from_millis(u64::from(head));
        let from = SocketAddr::from(([192, 0, 2, head], 1000 + u16::from(head)));
        let mut buf = datagram.to_vec();
        let ep = if head & 1 == 0 {
            &mut server
        } else {
            &mut client
        };
        let _ = ep.handle_datagram(now, from, &mut buf);
        ep.handle_timeout(now);
        // Random bytes never carry a valid mac1, so nobody answers them (only timers of the
        // client's own handshake may send). The fuzz-only mac1 (`wire::FUZZ_MAC1`) is
        // endpoint_session's way past the check, not a stranger's.
        let fuzz_mac1 = datagram
            .windows(aura_proto::wire::MAC_LEN)
            .any(|w| w == aura_proto::wire::FUZZ_MAC1);
        if head & 1 == 0 && !fuzz_mac1 {
            assert!(
                server.poll_transmit().is_none(),
                "server answered a stranger"
            );
            assert_eq!(server.pending_handshakes(), 0);
        }
    }
});
