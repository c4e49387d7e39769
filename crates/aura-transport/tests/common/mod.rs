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
    Endpoint::new(client_config(pki, id), [seed; 32], Instant::now(), wall()).unwrap()
}

/// The configuration of [`client_endpoint`].
pub fn client_config(pki: &TestPki, id: &aura_testkit::Identity) -> EndpointConfig {
    EndpointConfig::new(
        pki.ca_der().to_vec(),
        identity(id),
        pki.verifier().unwrap(),
        false,
    )
}

/// A recognisable IPv4-looking packet: version nibble 4, then the direction and sequence.
pub fn packet(dir: u8, seq: u32, len: usize) -> Vec<u8> {
    let mut p = vec![0x45, dir];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend((0..len.saturating_sub(6)).map(|i| (seq as usize * 7 + i) as u8));
    p
}

/// A server on every carrier at `ip` (ports chosen by the OS), checking clients with
/// `verifier`.
pub fn server_config(
    pki: &TestPki,
    ip: std::net::IpAddr,
    verifier: aura_pki::Verifier,
) -> aura_transport::listen::ListenConfig {
    let endpoint = EndpointConfig::new(
        pki.ca_der().to_vec(),
        identity(pki.server()),
        verifier,
        true,
    );
    let any = std::net::SocketAddr::new(ip, 0);
    aura_transport::listen::ListenConfig {
        endpoint,
        seed: [7; 32],
        udp: Some(any),
        quic: Some(any),
        tls: Some(any),
        outer: Some(Arc::new(aura_transport::carrier::tls::OuterIdentity {
            cert_chain: vec![pki.server().cert()],
            key: pki.server().key(),
        })),
        tls_options: aura_transport::carrier::tls::TlsOptions::default(),
        quic_options: aura_transport::carrier::quic::QuicOptions::default(),
        masks: masks(pki),
        mem: None,
        wall_clock: wall,
        workers: 1,
    }
}

/// The deployment's daily masks with the test palette: one outer SNI that is
/// deliberately not the certificate's name (it is camouflage only).
pub fn masks(pki: &TestPki) -> aura_transport::camo::mask::MaskSeed {
    aura_transport::camo::mask::MaskSeed::new(
        pki.ca_der(),
        vec!["www.example.com".into()],
        aura_transport::carrier::tls::TlsOptions::default().alpn,
        None,
    )
    .unwrap()
}

/// A dial configuration for `id` to the server `s` on 127.0.0.1, over `carriers` in order.
/// The outer SNI is deliberately not the certificate's name: it is camouflage only.
pub fn dial_config(
    pki: &TestPki,
    id: &aura_testkit::Identity,
    s: &aura_transport::listen::Listeners,
    carriers: &[aura_transport::Carrier],
) -> aura_transport::dial::DialConfig {
    let port = |a: Option<std::net::SocketAddr>| a.map_or(0, |a| a.port());
    aura_transport::dial::DialConfig {
        credentials: aura_transport::dial::ClientCredentials {
            ca_der: pki.ca_der().to_vec(),
            crl_ders: vec![pki.crl_der().to_vec()],
            identity: identity(id),
            secret: aura_proto::DeploymentSecret::from_ca(pki.ca_der()),
        },
        server_name: aura_testkit::TEST_SERVER_NAME.into(),
        server: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        bridges: vec![],
        carriers: carriers.to_vec(),
        udp_port: port(s.udp_addr),
        quic_port: port(s.quic_addr),
        tls_port: port(s.tls_addr),
        attempt_timeout: std::time::Duration::from_secs(5),
        timers: aura_proto::Timers::default(),
        tls_options: aura_transport::carrier::tls::TlsOptions::default(),
        quic_options: aura_transport::carrier::quic::QuicOptions::default(),
        masks: masks(pki),
        mem: None,
        wall_clock: wall,
    }
}
