//! Known-answer transcript: fixed certificates, fixed keys, fixed endpoint seeds and a
//! deterministic (RFC 6979) signer give fixed bytes on the wire. The expected datagrams
//! are frozen in `tests/data/kat/transcript.txt`; any change to the wire format, the key
//! schedule, the labels or the order in which randomness is drawn shows up here.
//!
//! To regenerate after an intended protocol change: `AURA_REGEN_KAT=1 cargo test -p
//! aura-proto --test kat`, then review the diff and bump the protocol version if the
//! change is not backwards compatible.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aura_pki::Verifier;
use aura_proto::{
    DATA_OVERHEAD, Endpoint, EndpointConfig, Event, Identity, SEAL_HEADROOM, SignError, Signer,
};
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::DecodePrivateKey;
use rustls_pki_types::UnixTime;

/// ECDSA P-256 with RFC 6979 deterministic nonces: the same message always gets the same
/// signature, so the transcript is reproducible. (Production signs with AWS-LC and random
/// nonces; both verify the same way.)
#[derive(Debug)]
struct DeterministicSigner(p256::ecdsa::SigningKey);

impl Signer for DeterministicSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        let sig: p256::ecdsa::Signature = self.0.sign(msg);
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/kat")
}

fn der(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(dir().join(name)).unwrap();
    pem::parse(text).unwrap().into_contents()
}

fn regen() -> bool {
    std::env::var_os("AURA_REGEN_KAT").is_some()
}

/// Writes fresh fixed credentials (only when regenerating).
fn write_credentials() {
    let pki = aura_testkit::TestPki::new(2026).unwrap();
    let put = |name: &str, tag: &str, bytes: &[u8]| {
        let p = pem::Pem::new(tag, bytes.to_vec());
        std::fs::write(dir().join(name), pem::encode(&p)).unwrap();
    };
    put("ca.crt", "CERTIFICATE", pki.ca_der());
    put("crl.pem", "X509 CRL", pki.crl_der());
    put("server.crt", "CERTIFICATE", &pki.server().cert_der);
    put("server.key", "PRIVATE KEY", &pki.server().key_pkcs8_der);
    put("client.crt", "CERTIFICATE", &pki.alice().cert_der);
    put("client.key", "PRIVATE KEY", &pki.alice().key_pkcs8_der);
}

fn endpoint(cert: &str, key: &str, accept: bool, seed: u8, now: Instant) -> Endpoint {
    let identity = Identity {
        cert_der: der(cert),
        signer: Arc::new(DeterministicSigner(
            p256::ecdsa::SigningKey::from_pkcs8_der(&der(key)).unwrap(),
        )),
    };
    let verifier = Verifier::new(&der("ca.crt"), [der("crl.pem")]).unwrap();
    let config = EndpointConfig::new(der("ca.crt"), identity, verifier, accept);
    // 2030-01-01T00:00:00Z, inside every fixture's validity.
    let wall = UnixTime::since_unix_epoch(Duration::from_secs(1_893_456_000));
    Endpoint::new(config, [seed; 32], now, wall).unwrap()
}

/// Runs the handshake and one data packet each way; returns every datagram as
/// "direction type length hex" lines. With `binding`, both links carry it as their outer
/// session's exporter (suite 3, docs/PROTOCOL.md §6.1).
fn transcript(binding: Option<[u8; aura_proto::BINDING_LEN]>) -> Vec<String> {
    let t0 = Instant::now();
    let server_addr: SocketAddr = "198.51.100.1:443".parse().unwrap();
    let client_addr: SocketAddr = "192.0.2.10:40000".parse().unwrap();
    let mut server = endpoint("server.crt", "server.key", true, 0x53, t0);
    let mut client = endpoint("client.crt", "client.key", false, 0x43, t0);
    client.set_link_binding(server_addr, binding);
    server.set_link_binding(client_addr, binding);
    let conn = client.connect(t0, server_addr, "server.test").unwrap();
    let mut lines = Vec::new();
    let mut record =
        |dir: &str, d: &[u8]| lines.push(format!("{dir} {} {} {}", d[0], d.len(), hex::encode(d)));
    let now = t0 + Duration::from_millis(10);
    for _ in 0..4 {
        while let Some(t) = client.poll_transmit() {
            record("c>s", &t.data);
            let mut b = t.data.clone();
            let _ = server.handle_datagram(now, client_addr, &mut b);
        }
        while let Some(t) = server.poll_transmit() {
            record("s>c", &t.data);
            let mut b = t.data.clone();
            let _ = client.handle_datagram(now, server_addr, &mut b);
        }
    }
    let server_conn = std::iter::from_fn(|| server.poll_event())
        .find_map(|e| match e {
            Event::Connected { conn, .. } => Some(conn),
            _ => None,
        })
        .expect("server did not connect");
    for (ep, c, dir, msg) in [
        (&mut client, conn, "c>s", &b"\x45 client data"[..]),
        (&mut server, server_conn, "s>c", &b"\x45 server data"[..]),
    ] {
        let mut buf = vec![0u8; SEAL_HEADROOM + msg.len() + DATA_OVERHEAD];
        buf[SEAL_HEADROOM..SEAL_HEADROOM + msg.len()].copy_from_slice(msg);
        let (_, n) = ep.seal(now, c, &mut buf, msg.len()).unwrap();
        record(dir, &buf[..n]);
    }
    // Session version 2: a packet each way whose checksum the receiver fills in (type 7);
    // the other end opens it and is told so.
    for (from_client, msg) in [
        (true, &b"\x45 client offload"[..]),
        (false, &b"\x45 server offload"[..]),
    ] {
        let (ep, c, peer, at, dir) = if from_client {
            (&mut client, conn, &mut server, client_addr, "c>s")
        } else {
            (&mut server, server_conn, &mut client, server_addr, "s>c")
        };
        assert!(ep.offload(c));
        let mut buf = vec![0u8; SEAL_HEADROOM + msg.len() + DATA_OVERHEAD];
        buf[SEAL_HEADROOM..SEAL_HEADROOM + msg.len()].copy_from_slice(msg);
        let (_, n) = ep.seal_with(now, c, &mut buf, msg.len(), true).unwrap();
        record(dir, &buf[..n]);
        let mut d = buf[..n].to_vec();
        let got = peer.handle_datagram(now, at, &mut d).unwrap().unwrap();
        assert!(got.offload);
        assert_eq!(&d[got.payload], msg);
    }
    lines
}

#[test]
fn known_answer_transcript() {
    check_transcript("transcript.txt", None);
}

/// The same over links bound to one outer session: suite 3 offered and chosen, the
/// binding in the transcript, data packets the header and the payload as they are.
#[test]
fn known_answer_transcript_bound_to_the_outer_session() {
    let got = check_transcript(
        "transcript-bound.txt",
        Some([0xb1; aura_proto::BINDING_LEN]),
    );
    // The client data packet: header (13 bytes) then the payload in clear, no tag.
    let data = got[5 + 1].split(' ').nth(3).unwrap();
    assert_eq!(&data[26..], hex::encode(b"\x45 client data"));
}

fn check_transcript(file: &str, binding: Option<[u8; aura_proto::BINDING_LEN]>) -> Vec<String> {
    let path = dir().join(file);
    if regen() {
        // AURA_REGEN_KAT=transcript keeps the credentials and rewrites the transcripts.
        if std::env::var_os("AURA_REGEN_KAT").is_some_and(|v| v != "transcript") {
            write_credentials();
        }
        let t = transcript(binding);
        std::fs::write(&path, t.join("\n") + "\n").unwrap();
    }
    let got = transcript(binding);
    // The same inputs give the same bytes twice in one process...
    assert_eq!(got, transcript(binding));
    // ...and the bytes frozen in the repository.
    let want: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(got.len(), want.len(), "number of datagrams changed");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "datagram {i} differs");
    }
    // Shape: 2 Init fragments, 2 Resp fragments, 1 Finish, the server's confirming
    // keepalive, one data packet each way, then one type 7 packet each way.
    let types: Vec<&str> = got.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(types, ["1", "1", "2", "2", "3", "5", "5", "5", "7", "7"]);
    got
}
