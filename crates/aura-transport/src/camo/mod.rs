//! Camouflage: what makes Aura traffic look like something else, on top of the carriers.
//!
//! - [`shape`]: the UDP carrier's datagram shape (a printable prefix and padding
//!   profiles), applied by the driver as it queues datagrams.
//!
//! This is the room for the rest of the camouflage as it is built: daily masks (SNI,
//! ALPN and padding profile derived per day), port knocking for the QUIC and TLS
//! listeners, a decoy web server for active probes, and the sending side of cover
//! traffic. The carriers and the driver call into it; it calls neither.

pub mod shape;
