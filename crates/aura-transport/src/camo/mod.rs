//! Camouflage: what makes Aura traffic look like something else, on top of the carriers.
//!
//! - [`knock`]: the deployment secret, the carriers' knock keys, the time window and the
//!   replay filter;
//! - [`datagram`]: the UDP carrier's wire forms (masked data datagrams, knocked
//!   handshake datagrams), with no fixed bytes;
//! - [`hello`]: reading a TLS ClientHello before any TLS library does (the TLS knock);
//! - [`weight`]: the constant-weight code that keeps the UDP first flight clear of the
//!   fully-encrypted-traffic rules;
//! - [`mask`]: the daily masks (SNI, ALPN order, padding profile, first-flight size);
//! - [`shape`]: the padding profiles.
//!
//! The carriers and the driver call into it; it calls neither.

pub mod datagram;
pub mod hello;
pub mod knock;
pub mod mask;
pub mod shape;
pub mod weight;
