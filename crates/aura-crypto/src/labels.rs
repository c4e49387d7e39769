//! Every domain-separation label Aura feeds to a hash, MAC, KDF or signature.
//!
//! Keeping them in one module makes two properties reviewable at a glance: no two
//! uses share a label, and every label names the protocol version it belongs to.
//! Changing any byte here changes the wire protocol (see docs/PROTOCOL.md).

/// Salt of the HKDF-Extract that combines the X25519 and ML-KEM-768 shared secrets.
pub const HYBRID_KEM_COMBINER: &[u8] = b"aura/v1 hybrid-kem x25519+ml-kem-768";

/// Prefix of every HKDF-Expand `info` built by [`crate::kdf::expand_label`].
pub const EXPAND_PREFIX: &[u8] = b"aura/v1 ";

/// Salt of the Extract giving the key of mac1, the MAC on every handshake datagram
/// (input: SHA-256 of the deployment's CA certificate).
pub const MAC1: &[u8] = b"aura/v1 mac1";

/// Salt of the Extract giving the key that seals cookie replies.
pub const COOKIE_SEAL: &[u8] = b"aura/v1 cookie seal";

/// First input of the handshake transcript hash.
pub const TRANSCRIPT: &[u8] = b"aura/v1 transcript";

/// Context string the server signs before the transcript hash (NUL-terminated).
pub const SERVER_SIGNATURE: &[u8] = b"aura/v1 server signature\0";

/// Context string the client signs before the transcript hash (NUL-terminated).
pub const CLIENT_SIGNATURE: &[u8] = b"aura/v1 client signature\0";

/// Salt of the Extract that turns a bundle's one-time code and salt into the keys that
/// seal an `aura://import/v1/` bundle URI (docs/PROTOCOL.md §13).
pub const BUNDLE_SEAL: &[u8] = b"aura/v1 bundle seal";

/// Labels for [`crate::kdf::expand_label`] (the `"aura/v1 "` prefix is added there).
pub mod expand {
    /// Client handshake traffic secret.
    pub const CLIENT_HANDSHAKE: &[u8] = b"c hs traffic";
    /// Server handshake traffic secret.
    pub const SERVER_HANDSHAKE: &[u8] = b"s hs traffic";
    /// Master secret from the handshake secret.
    pub const MASTER: &[u8] = b"master";
    /// Client-to-server data-channel secret.
    pub const CLIENT_DATA: &[u8] = b"c data traffic";
    /// Server-to-client data-channel secret.
    pub const SERVER_DATA: &[u8] = b"s data traffic";
    /// AEAD key from a traffic secret.
    pub const KEY: &[u8] = b"key";
    /// AEAD IV from a traffic secret.
    pub const IV: &[u8] = b"iv";
    /// Finished-MAC key from a handshake traffic secret.
    pub const FINISHED: &[u8] = b"finished";
    /// Client-to-server knock key of the UDP carrier, from the deployment secret.
    pub const KNOCK_UDP_C2S: &[u8] = b"knock udp c2s";
    /// Server-to-client handshake-datagram key of the UDP carrier.
    pub const KNOCK_UDP_S2C: &[u8] = b"knock udp s2c";
    /// Header-mask key of the UDP carrier's data datagrams.
    pub const UDP_MASK: &[u8] = b"udp mask";
    /// Knock key of the TLS carrier (ClientHello session id).
    pub const KNOCK_TLS: &[u8] = b"knock tls";
    /// Knock key of the QUIC carrier (Initial destination connection id).
    pub const KNOCK_QUIC: &[u8] = b"knock quic";
    /// AES-256-GCM key sealing a bundle URI, from the bundle seal secret.
    pub const BUNDLE_KEY: &[u8] = b"bundle key";
    /// AES-256-GCM nonce sealing a bundle URI, from the bundle seal secret.
    pub const BUNDLE_NONCE: &[u8] = b"bundle nonce";
    /// The 4-byte check value in a bundle URI's header, which tells a wrong code from an
    /// altered bundle.
    pub const BUNDLE_CHECK: &[u8] = b"bundle check";
    /// Every expand label, for the uniqueness test.
    #[cfg(test)]
    pub(crate) const ALL: &[&[u8]] = &[
        CLIENT_HANDSHAKE,
        SERVER_HANDSHAKE,
        MASTER,
        CLIENT_DATA,
        SERVER_DATA,
        KEY,
        IV,
        FINISHED,
        KNOCK_UDP_C2S,
        KNOCK_UDP_S2C,
        UDP_MASK,
        KNOCK_TLS,
        KNOCK_QUIC,
        BUNDLE_KEY,
        BUNDLE_NONCE,
        BUNDLE_CHECK,
    ];
}

/// Every top-level label, for the uniqueness test.
#[cfg(test)]
pub(crate) const ALL: &[&[u8]] = &[
    HYBRID_KEM_COMBINER,
    EXPAND_PREFIX,
    MAC1,
    COOKIE_SEAL,
    TRANSCRIPT,
    SERVER_SIGNATURE,
    CLIENT_SIGNATURE,
    BUNDLE_SEAL,
];

#[cfg(test)]
mod tests {
    use super::{ALL, expand};

    #[test]
    fn labels_are_distinct_and_versioned() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(
                a.starts_with(b"aura/v1 "),
                "label {i} lacks the version prefix"
            );
            for b in &ALL[i + 1..] {
                assert_ne!(a, b, "duplicate label");
            }
        }
        for (i, a) in expand::ALL.iter().enumerate() {
            for b in &expand::ALL[i + 1..] {
                assert_ne!(a, b, "duplicate expand label");
            }
        }
    }
}
