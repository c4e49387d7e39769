//! Aura's protocol core, sans-IO.
//!
//! A pure state machine: datagrams and `now` in; datagrams, timer deadlines and events
//! out. No sockets, no async runtime, no clock reads, no OS randomness: the host passes
//! the time and seeds the endpoint's CSPRNG, so every run with the same inputs produces
//! the same bytes, and every protocol bug reproduces in a unit test. Every carrier (UDP,
//! QUIC, TLS over TCP) and both daemons drive this one core.
//!
//! - [`wire`]: datagram and handshake-message codecs, fragmentation and reassembly;
//! - [`handshake`]: hybrid post-quantum mutual-auth handshake (X25519 + ML-KEM-768,
//!   ECDSA P-256 certificates from the deployment's CA);
//! - [`Endpoint`]: many peers, cookies, retransmission, keepalive, rekey, roaming;
//! - [`control`]: control envelopes multiplexed with IP packets in the data channel;
//! - [`dns`]: the DNS answer reader of the client's DNS stub (question name, A and AAAA
//!   addresses with their TTLs, for domain split-tunnel routes);
//! - [`replay`]: the anti-replay window.
//!
//! Guarantees: no panic on peer input (no `unwrap`, no unchecked indexing on parse
//! paths, `#![forbid(unsafe_code)]`); no allocation per data packet ([`Endpoint::seal`]
//! and [`Endpoint::handle_datagram`] work in place in the caller's buffer).
//!
//! See docs/PROTOCOL.md for the wire format, key schedule and state machine, and
//! `tests/sim.rs` for two endpoints driven over the simulated network.
#![forbid(unsafe_code)]

pub mod control;
pub mod dns;
mod endpoint;
mod error;
pub mod handshake;
mod keys;
pub mod replay;
mod session;
pub mod wire;

pub use aura_crypto::sign::{EcdsaP256Signer, SignError, Signer};
pub use endpoint::{
    CloseReason, ConnectionHandle, ConnectionInfo, ConnectionStats, Endpoint, EndpointConfig,
    Event, IndexChange, Partition, RESEED_INTERVAL, Received, Timers, Transmit,
};
pub use error::{AlertCode, DropReason, HandshakeError, ProtoError};
pub use handshake::{BINDING_LEN, Identity};
pub use keys::{DeploymentSecret, KNOCK_KEY_LEN};
pub use session::{DATA_OVERHEAD, SEAL_HEADROOM};
