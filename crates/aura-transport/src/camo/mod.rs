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
//! - [`shape`]: the padding profiles;
//! - [`tls_knock`]: the TLS carrier's knock in the ClientHello session id;
//! - [`quic_knock`]: the QUIC carrier's knock in the Initial's destination connection id;
//! - [`quic_forward`]: the forwarded decoy on the QUIC carrier, below quinn;
//! - [`decoy`]: the web server strangers meet on the TLS and QUIC carriers;
//! - [`cover`]: cover traffic inside the tunnel, scheduled by maybenot state machines
//!   (sans-IO; not yet wired to the data path).
//!
//! The carriers and the driver call into it; it calls neither.

pub mod cover;
pub mod datagram;
pub mod decoy;
pub mod hello;
pub mod knock;
pub mod mask;
pub mod quic_forward;
pub mod quic_knock;
pub mod shape;
pub mod tls_knock;
pub mod weight;

/// The TLS carrier's camouflage: the knock, and (server) where strangers go.
#[derive(Debug, Clone)]
pub struct TlsCamo {
    /// The knock key and replay state.
    pub knock: std::sync::Arc<tls_knock::TlsKnock>,
    /// Server: the decoy strangers meet.
    pub decoy: Option<decoy::Decoy>,
}

impl PartialEq for TlsCamo {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.knock, &other.knock)
    }
}

impl Eq for TlsCamo {}

/// The QUIC carrier's camouflage: the knock, and (server) the site strangers meet.
#[derive(Debug, Clone)]
pub struct QuicCamo {
    /// The knock key and replay state.
    pub knock: std::sync::Arc<quic_knock::QuicKnock>,
    /// Server: the served decoy, whose certificate every QUIC connection presents.
    pub site: Option<std::sync::Arc<decoy::Site>>,
    /// Server: the forwarded decoy's upstream (`host:port`), whose UDP port strangers'
    /// QUIC flows go to ([`quic_forward`]). With neither, strangers get silence.
    pub forward: Option<String>,
}

impl PartialEq for QuicCamo {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.knock, &other.knock)
    }
}

impl Eq for QuicCamo {}
