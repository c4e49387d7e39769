//! The key schedule (docs/PROTOCOL.md §6): deployment keys, transcript, traffic keys.

use aura_crypto::aead::{AeadKey, NONCE_LEN, SivKey, Suite};
use aura_crypto::kdf::{self, SECRET_LEN, Secret};
use aura_crypto::labels::{self, expand};

use crate::error::ProtoError;

/// Length of a knock key.
pub const KNOCK_KEY_LEN: usize = 32;

/// The deployment secret the knocks are keyed by.
#[derive(Clone)]
pub struct DeploymentSecret {
    secret: Secret,
    /// Whether it is a real knock key (not the CA fallback).
    knock_key: bool,
}

impl core::fmt::Debug for DeploymentSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeploymentSecret")
            .field("knock_key", &self.knock_key)
            .finish_non_exhaustive()
    }
}

impl DeploymentSecret {
    /// From the deployment's knock key.
    pub fn from_knock_key(key: [u8; KNOCK_KEY_LEN]) -> Self {
        Self {
            secret: Secret::from_bytes(key),
            knock_key: true,
        }
    }

    /// The fallback for a deployment without a knock key: SHA-256 of the CA certificate.
    pub fn from_ca(ca_der: &[u8]) -> Self {
        Self {
            secret: Secret::from_bytes(kdf::sha256(&[ca_der])),
            knock_key: false,
        }
    }

    /// The secret.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// Whether this is a real knock key.
    pub fn is_knock_key(&self) -> bool {
        self.knock_key
    }
}

/// Keys derived from the deployment's CA certificate and secret, shared by every member.
pub(crate) struct DeploymentKeys {
    /// SHA-256 of the CA certificate: salts the handshake secret.
    pub id: [u8; SECRET_LEN],
    /// Key of mac1 (from the deployment secret: the knock key when there is one).
    pub mac1: Secret,
    /// Seals cookie replies: AES-256-GCM-SIV, because the key lives as long as the
    /// deployment and each reply draws a random 96-bit nonce (a repeat must not break it).
    pub cookie_seal: SivKey,
}

impl core::fmt::Debug for DeploymentKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeploymentKeys")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl DeploymentKeys {
    /// Without a knock key the secret is SHA-256 of the CA certificate, which is `id`:
    /// such a deployment's mac1 is what it always was.
    pub(crate) fn new(ca_cert_der: &[u8], secret: &DeploymentSecret) -> Result<Self, ProtoError> {
        let id = kdf::sha256(&[ca_cert_der]);
        let s = secret.secret().expose();
        let mac1 = kdf::extract(labels::MAC1, &[s]);
        let cookie = kdf::extract(labels::COOKIE_SEAL, &[s]);
        let cookie_seal = SivKey::new(cookie.expose())?;
        Ok(Self {
            id,
            mac1,
            cookie_seal,
        })
    }
}

/// Truncated HMAC-SHA256.
pub(crate) fn mac16(key: &[u8], data: &[u8]) -> [u8; 16] {
    let full = kdf::hmac_sha256(key, &[data]);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// The running transcript hash.
#[derive(Clone)]
pub(crate) struct Transcript(kdf::Sha256);

impl core::fmt::Debug for Transcript {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Transcript(..)")
    }
}

impl Transcript {
    pub(crate) fn new() -> Self {
        let mut h = kdf::Sha256::new();
        h.update(labels::TRANSCRIPT);
        Self(h)
    }

    /// Adds a length-prefixed item, so item boundaries are unambiguous.
    pub(crate) fn add(&mut self, item: &[u8]) {
        let len = u32::try_from(item.len()).unwrap_or(u32::MAX);
        self.0.update(&len.to_be_bytes());
        self.0.update(item);
    }

    pub(crate) fn hash(&self) -> [u8; SECRET_LEN] {
        self.0.clone().finish()
    }
}

/// One direction's AEAD key and IV.
pub(crate) struct DirectionKeys {
    pub key: AeadKey,
    pub iv: [u8; NONCE_LEN],
}

/// Wipes the IV (the key, an [`AeadKey`], wipes itself when dropped): with the IV, the
/// nonces of recorded packets are known.
impl zeroize::Zeroize for DirectionKeys {
    fn zeroize(&mut self) {
        self.iv.zeroize();
    }
}

impl Drop for DirectionKeys {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(self);
    }
}

impl zeroize::ZeroizeOnDrop for DirectionKeys {}

impl core::fmt::Debug for DirectionKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DirectionKeys")
            .field("suite", &self.key.suite())
            .finish_non_exhaustive()
    }
}

impl DirectionKeys {
    pub(crate) fn from_secret(secret: &Secret, suite: Suite) -> Result<Self, ProtoError> {
        let key = kdf::expand_secret(secret, expand::KEY, b"")?;
        let mut iv = [0u8; NONCE_LEN];
        kdf::expand_label(secret, expand::IV, b"", &mut iv)?;
        Ok(Self {
            key: AeadKey::new(suite, key.expose())?,
            iv,
        })
    }
}

/// The handshake secrets of one handshake.
pub(crate) struct HandshakeSecrets {
    pub hs: Secret,
    pub client: Secret,
    pub server: Secret,
}

impl HandshakeSecrets {
    /// `hs = Extract(deployment id, kem secret)`; the two handshake traffic secrets are
    /// expanded with the transcript hash through the server's KEM ciphertext.
    pub(crate) fn derive(
        deployment_id: &[u8; 32],
        kem_secret: &Secret,
        th: &[u8; 32],
    ) -> Result<Self, ProtoError> {
        let hs = kdf::extract(deployment_id, &[kem_secret.expose()]);
        let client = kdf::expand_secret(&hs, expand::CLIENT_HANDSHAKE, th)?;
        let server = kdf::expand_secret(&hs, expand::SERVER_HANDSHAKE, th)?;
        Ok(Self { hs, client, server })
    }

    /// Finished MAC of one side over a transcript hash.
    pub(crate) fn finished(side: &Secret, th: &[u8; 32]) -> Result<[u8; 32], ProtoError> {
        let key = kdf::expand_secret(side, expand::FINISHED, b"")?;
        Ok(kdf::hmac_sha256(key.expose(), &[th]))
    }

    /// Data-channel secrets (client-to-server, server-to-client), from the transcript
    /// through the server's finished MAC.
    pub(crate) fn data_secrets(&self, th: &[u8; 32]) -> Result<(Secret, Secret), ProtoError> {
        let master = kdf::expand_secret(&self.hs, expand::MASTER, th)?;
        Ok((
            kdf::expand_secret(&master, expand::CLIENT_DATA, b"")?,
            kdf::expand_secret(&master, expand::SERVER_DATA, b"")?,
        ))
    }
}

/// Both directions' data-channel keys of a session, from one side's point of view.
#[derive(Debug)]
pub(crate) struct SessionKeys {
    pub suite: Suite,
    /// The session version negotiated in Init and Resp (`wire::VERSION_1` or later).
    pub version: u8,
    pub send: DirectionKeys,
    pub recv: DirectionKeys,
}

#[cfg(test)]
mod zeroize_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use zeroize::Zeroize;

    /// What a [`DirectionKeys`] wipes when dropped (review L9).
    #[test]
    fn direction_keys_wipe_their_iv() {
        let secret = Secret::from_bytes([7; SECRET_LEN]);
        let mut k = DirectionKeys::from_secret(&secret, Suite::Aes256Gcm).unwrap();
        assert_ne!(k.iv, [0; NONCE_LEN]);
        k.zeroize();
        assert_eq!(k.iv, [0; NONCE_LEN]);
    }
}
