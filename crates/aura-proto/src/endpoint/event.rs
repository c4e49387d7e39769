//! What an endpoint hands back to its host: [`Event`]s to act on, [`Transmit`]s to send,
//! [`Received`] payloads to deliver, and why a connection ended ([`CloseReason`]).
//!
//! Plain values; the endpoint queues them and the host drains the queues with
//! `poll_event` and `poll_transmit`.

use std::net::SocketAddr;
use std::ops::Range;

use aura_crypto::aead::Suite;
use aura_pki::VerifiedPeer;

use super::connection::ConnectionHandle;
use crate::error::HandshakeError;

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Nothing was received for the dead-peer timeout.
    DeadPeer,
    /// Keys expired before a rekey succeeded.
    Expired,
    /// The handshake failed.
    HandshakeFailed(HandshakeError),
    /// Closed by this side.
    Local,
    /// The peer's certificate no longer verifies (revoked by a new CRL, or expired).
    Revoked(aura_pki::VerifyError),
    /// The same client completed a new handshake with another worker of the server.
    Superseded,
}

/// Something that happened, for the host to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A connection completed its first handshake.
    Connected {
        conn: ConnectionHandle,
        /// The verified peer.
        peer: VerifiedPeer,
        /// The peer's address.
        remote: SocketAddr,
        /// The negotiated suite.
        suite: Suite,
    },
    /// Client side: the server proved it holds the keys of the first handshake (its first
    /// packet arrived), so it accepted this client. Data sent before this may have been
    /// lost if the Finish was.
    Confirmed { conn: ConnectionHandle },
    /// A connection switched to fresh keys.
    Rekeyed { conn: ConnectionHandle },
    /// A peer's authenticated packets now come from another address.
    AddressChanged {
        conn: ConnectionHandle,
        /// The new address.
        remote: SocketAddr,
    },
    /// A server-side handshake from `remote` failed.
    HandshakeRejected {
        /// Where the handshake came from.
        remote: SocketAddr,
        error: HandshakeError,
    },
    /// A connection ended.
    Closed {
        conn: ConnectionHandle,
        reason: CloseReason,
    },
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub remote: SocketAddr,
    pub data: Vec<u8>,
}

/// A decrypted data payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The connection it arrived on.
    pub conn: ConnectionHandle,
    /// Where the payload lies in the caller's buffer.
    pub payload: Range<usize>,
    /// It came as type 7: an IP packet whose TCP or UDP checksum is the receiver's to fill
    /// in (docs/PROTOCOL.md §5.3).
    pub offload: bool,
}
