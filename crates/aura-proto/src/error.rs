//! Error types, grouped so an operator can tell a misbehaving peer from an incompatible
//! one, from a local misconfiguration, from a bug.

use aura_crypto::CryptoError;
use aura_pki::VerifyError;

use crate::wire::WireError;

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer's certificate was refused by the verifier (expired, revoked, wrong CA,
    /// wrong role, wrong server name...).
    #[error("peer certificate rejected: {0}")]
    PeerCertificate(VerifyError),
    /// The peer's transcript signature does not verify.
    #[error("peer's handshake signature is invalid")]
    BadSignature,
    /// The peer's finished MAC does not match: the peer does not hold the same keys.
    #[error("peer's finished MAC is invalid")]
    BadFinished,
    /// A handshake message could not be decoded or decrypted.
    #[error("malformed handshake message: {0}")]
    Malformed(WireError),
    /// The encrypted part of a handshake message did not authenticate.
    #[error("handshake message failed to decrypt")]
    Decrypt,
    /// A KEM value from the peer was invalid.
    #[error("invalid key exchange value: {0}")]
    Kem(CryptoError),
    /// No protocol version in common.
    #[error("no common protocol version (peer offered {0:?})")]
    NoCommonVersion(Vec<u8>),
    /// No AEAD suite in common.
    #[error("no common cipher suite (peer offered {0:?})")]
    NoCommonSuite(Vec<u8>),
    /// The server chose a version or suite the client did not offer.
    #[error("server chose version {version} suite {suite}, which was not offered")]
    Downgrade {
        /// Chosen version.
        version: u8,
        /// Chosen suite.
        suite: u8,
    },
    /// The server refused our certificate.
    #[error("server rejected this client: {0}")]
    Rejected(AlertCode),
    /// No answer before the handshake deadline.
    #[error(
        "no answer from the server within the handshake time limit (wrong deployment CA or knock key, blocked path, or server down)"
    )]
    Timeout,
    /// Local failure (signing key unusable).
    #[error("local failure: {0}")]
    Local(String),
}

impl HandshakeError {
    /// Whether the fault lies with the peer (protocol violation or bad credentials) rather
    /// than with this side's configuration or the network.
    pub fn is_peer_fault(&self) -> bool {
        match self {
            Self::PeerCertificate(e) => !e.is_local(),
            Self::BadSignature
            | Self::BadFinished
            | Self::Malformed(_)
            | Self::Decrypt
            | Self::Kem(_)
            | Self::Downgrade { .. } => true,
            _ => false,
        }
    }
}

/// A rejection the server sends (encrypted) to a client it refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlertCode {
    /// The client's certificate is revoked.
    Revoked,
    /// The client's certificate is expired or not yet valid.
    Expired,
    /// The client's certificate was not issued by this deployment's CA.
    UnknownIssuer,
    /// The certificate is not a client certificate.
    WrongRole,
    /// Any other refusal (the server's log says why).
    Refused,
}

impl AlertCode {
    /// Wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Revoked => 1,
            Self::Expired => 2,
            Self::UnknownIssuer => 3,
            Self::WrongRole => 4,
            Self::Refused => 5,
        }
    }

    /// From the wire value (unknown values read as `Refused`).
    pub fn from_u8(b: u8) -> Self {
        match b {
            1 => Self::Revoked,
            2 => Self::Expired,
            3 => Self::UnknownIssuer,
            4 => Self::WrongRole,
            _ => Self::Refused,
        }
    }

    /// The alert that tells a client why its certificate was refused.
    pub fn for_verify_error(e: &VerifyError) -> Self {
        match e {
            VerifyError::Revoked => Self::Revoked,
            VerifyError::Expired { .. } | VerifyError::NotYetValid { .. } => Self::Expired,
            VerifyError::UnknownIssuer(..) => Self::UnknownIssuer,
            VerifyError::WrongRole { .. } => Self::WrongRole,
            _ => Self::Refused,
        }
    }
}

impl core::fmt::Display for AlertCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Revoked => "certificate revoked",
            Self::Expired => "certificate expired or not yet valid",
            Self::UnknownIssuer => "certificate not issued by this deployment's CA",
            Self::WrongRole => "not a client certificate",
            Self::Refused => "refused",
        })
    }
}

/// Local errors of the protocol core: bad configuration or misuse of the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// A cryptographic operation failed locally.
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The connection handle does not name a live connection.
    #[error("no such connection")]
    UnknownConnection,
    /// The connection has no established session yet (or any more).
    #[error("connection has no established session")]
    NotEstablished,
    /// The caller's buffer has no room for the header or the tag.
    #[error("buffer too small: need {needed}, have {have}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// A packet with its checksum left to the receiver, for a session whose version does
    /// not carry such packets (the peer negotiated version 1).
    #[error("the session's version does not carry checksum offload (type 7)")]
    OffloadNotNegotiated,
}

/// Why an incoming datagram was dropped. Dropping is silent on the wire; the reason is
/// for counters and debug logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    /// Not decodable.
    #[error("malformed: {0}")]
    Malformed(WireError),
    /// mac1 is missing or wrong: the sender does not know the deployment's CA.
    #[error("bad mac1")]
    BadMac1,
    /// The server is under load and the datagram carries no valid cookie MAC.
    #[error("cookie required")]
    CookieRequired,
    /// No session or handshake has this index.
    #[error("unknown session index")]
    UnknownIndex,
    /// Packet counter already seen or too old.
    #[error("replayed or too old")]
    Replay,
    /// AEAD authentication failed.
    #[error("authentication failed")]
    Decrypt,
    /// The session's keys have expired.
    #[error("session expired")]
    Expired,
    /// A handshake message for which no handshake is waiting, or one this endpoint does
    /// not accept (a client receives no Init).
    #[error("unexpected handshake message")]
    Unexpected,
    /// Too many handshakes in progress.
    #[error("handshake table full")]
    Overloaded,
    /// The handshake failed (an event reports why).
    #[error("handshake failed: {0}")]
    Handshake(HandshakeError),
    /// A type 7 data packet on a session that negotiated version 1.
    #[error("checksum offload (type 7) on a version 1 session")]
    OffloadNotNegotiated,
}
