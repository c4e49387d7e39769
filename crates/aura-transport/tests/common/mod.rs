//! Fixtures for the carrier tests: endpoint configurations from the test PKI.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use aura_proto::{EcdsaP256Signer, Endpoint, EndpointConfig, Identity};
use aura_testkit::TestPki;
use rustls_pki_types::UnixTime;

pub fn identity(id: &aura_testkit::Identity) -> Identity {
    Identity {
        cert_der: id.cert_der.clone(),
        signer: Arc::new(EcdsaP256Signer::from_pkcs8_der(&id.key_pkcs8_der).unwrap()),
    }
}

/// The test PKI's CA and CRL are valid in 2030, so the endpoints' wall clock is anchored
/// there.
pub fn wall() -> UnixTime {
    aura_testkit::SimClock::new().wall()
}

pub fn server_endpoint(pki: &TestPki) -> Endpoint {
    let cfg = EndpointConfig::new(
        pki.ca_der().to_vec(),
        identity(pki.server()),
        pki.verifier().unwrap(),
        true,
    );
    Endpoint::new(cfg, [1; 32], Instant::now(), wall()).unwrap()
}

pub fn client_endpoint(pki: &TestPki, id: &aura_testkit::Identity, seed: u8) -> Endpoint {
    let cfg = EndpointConfig::new(
        pki.ca_der().to_vec(),
        identity(id),
        pki.verifier().unwrap(),
        false,
    );
    Endpoint::new(cfg, [seed; 32], Instant::now(), wall()).unwrap()
}

/// A recognisable IPv4-looking packet: version nibble 4, then the direction and sequence.
pub fn packet(dir: u8, seq: u32, len: usize) -> Vec<u8> {
    let mut p = vec![0x45, dir];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend((0..len.saturating_sub(6)).map(|i| (seq as usize * 7 + i) as u8));
    p
}
