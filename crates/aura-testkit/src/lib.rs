//! Aura's test kit: a simulated datagram network driven by a virtual clock, and PKI
//! fixtures. Used by the protocol tests of the other crates; never linked into a
//! shipped binary.
//!
//! # Role
//!
//! * [`SimClock`]: a monotonic [`std::time::Instant`] and a wall clock
//!   ([`rustls_pki_types::UnixTime`], default 2030-01-01T00:00:00Z) that move only when
//!   the test advances them.
//! * [`SimNet`]: a datagram network between sans-IO endpoints identified by
//!   [`std::net::SocketAddr`]: per-path latency, jitter (reordering), loss, duplication
//!   and MTU ([`LinkConfig`]); NAT rebinding; blackholed addresses; an eavesdropper that
//!   records every datagram, and injection of forged or replayed ones; counters
//!   ([`NetStats`]).
//! * [`fet`]: the censor's published rules against fully encrypted traffic.
//! * [`TestPki`]: a CA with a server, clients "alice" and "bob" and a CRL, all valid at
//!   the default wall time; factories for expired, not-yet-valid, foreign-CA and
//!   wrong-role identities; revocation; a second independent deployment.
//!
//! # Guarantees
//!
//! * Deterministic: the network's randomness comes from a seeded ChaCha20 RNG, and no
//!   clock is read except once, to capture the clock's base `Instant`. The same seed and
//!   call sequence give the same deliveries. (PKI keys come from aws-lc-rs's system RNG,
//!   so certificate bytes differ between runs; serials do not.)
//! * Deliveries come out in arrival order, ties in send order.
//! * No `unsafe`, and no panics: fallible fixtures return [`FixtureError`].
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use aura_testkit::{LinkConfig, SimClock, SimNet, TestPki};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut clock = SimClock::new();
//! let mut net = SimNet::new(7);
//! net.set_link(LinkConfig { jitter: Duration::from_millis(5), ..LinkConfig::default() });
//! let (client, server) = ("10.0.0.1:40000".parse()?, "10.0.0.2:443".parse()?);
//!
//! // An echo server: every datagram it receives goes back to its sender.
//! net.send(clock.now(), client, server, b"ping");
//! let deadline = clock.now() + Duration::from_millis(100);
//! let mut got = Vec::new();
//! net.run_until(&mut clock, deadline, |net, d, now| {
//!     if d.to == server {
//!         net.send(now, server, d.from, &d.data);
//!     } else {
//!         got.push(d.data);
//!     }
//! });
//! assert_eq!(got, [b"ping".to_vec()]);
//! assert_eq!(net.captured().len(), 2); // the eavesdropper saw both directions
//!
//! // Certificates verify at the clock's wall time.
//! let pki = TestPki::new(1)?;
//! let peer = pki.verifier()?.verify_client(&pki.alice().cert_der, clock.wall())?;
//! assert_eq!(peer.id, "alice");
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod clock;
pub mod fet;
mod net;
mod packet;
mod pki;

pub use clock::{DEFAULT_WALL_START_SECS, SimClock};
pub use net::{DEFAULT_LATENCY, DEFAULT_MTU, Delivery, LinkConfig, NetStats, SimNet};
pub use packet::{ipv4_packet, ipv6_packet};
pub use pki::{FixtureError, Identity, TEST_CA_NAME, TEST_SERVER_NAME, TestPki, utc_date};
