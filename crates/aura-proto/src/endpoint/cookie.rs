//! The MACs on handshake packets and the cookie mechanism (docs/PROTOCOL.md §5).
//!
//! - mac1, keyed from the deployment's CA certificate, proves a packet comes from a member
//!   of the deployment; every handshake fragment, cookie reply and alert carries it, and a
//!   packet without a valid mac1 is dropped before any other work.
//! - mac2, keyed by a cookie, proves the sender can receive at its source address. A
//!   server under load answers a cookie-less Init with a sealed cookie reply instead of
//!   doing the handshake's expensive work; the client repeats its Init with mac2.
//!
//! A [`CookieJar`] holds both sides' cookie state: the server's two secrets (current and
//! previous, so a cookie stays valid across one rotation) and the cookies a client
//! received, by server address. All comparisons of MACs are constant-time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aura_crypto::aead::TAG_LEN;
use aura_crypto::kdf;
use rand_core::RngCore;

use crate::error::DropReason;
use crate::keys::{DeploymentKeys, mac16};
use crate::wire::{
    COOKIE_REPLY_LEN, FRAG_TRAILER_LEN, Fragment, MAC_LEN, PacketType, VERSION_1, WireError,
};

/// Length of a cookie, in bytes.
const COOKIE_LEN: usize = 16;

/// A cookie a client received, for mac2.
#[derive(Debug, Clone, Copy)]
struct Cookie {
    value: [u8; COOKIE_LEN],
    received: Instant,
}

/// Cookie secrets (server side) and received cookies (client side).
pub(super) struct CookieJar {
    secret: [u8; 32],
    previous_secret: [u8; 32],
    rotated: Instant,
    received: HashMap<SocketAddr, Cookie>,
}

/// Wipes both cookie secrets (the cookies received are per-address MACs, not secrets).
impl zeroize::Zeroize for CookieJar {
    fn zeroize(&mut self) {
        self.secret.zeroize();
        self.previous_secret.zeroize();
    }
}

impl Drop for CookieJar {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(self);
    }
}

impl zeroize::ZeroizeOnDrop for CookieJar {}

impl core::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CookieJar")
            .field("rotated", &self.rotated)
            .field("received", &self.received.len())
            .finish_non_exhaustive()
    }
}

impl CookieJar {
    /// Draws the current secret, then the previous one, from `rng`.
    pub fn new<R: RngCore>(rng: &mut R, now: Instant) -> Self {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let mut previous_secret = [0u8; 32];
        rng.fill_bytes(&mut previous_secret);
        Self {
            secret,
            previous_secret,
            rotated: now,
            received: HashMap::new(),
        }
    }

    /// Rotates the secrets when a period has passed since the last rotation.
    pub fn rotate_if_due<R: RngCore>(&mut self, now: Instant, period: Duration, rng: &mut R) {
        if now.saturating_duration_since(self.rotated) >= period {
            self.previous_secret = self.secret;
            rng.fill_bytes(&mut self.secret);
            self.rotated = now;
        }
    }

    /// Whether `mac2` is the MAC of `datagram` (up to mac2) under the cookie of `remote`
    /// for the current or the previous secret.
    pub fn mac2_valid(&self, remote: SocketAddr, datagram: &[u8], mac2: &[u8; MAC_LEN]) -> bool {
        let Some(len) = datagram.len().checked_sub(MAC_LEN) else {
            return false;
        };
        [&self.secret, &self.previous_secret].into_iter().any(|s| {
            let c = cookie_for(s, &remote);
            kdf::ct_eq(&mac16(&c, &datagram[..len]), mac2)
        })
    }

    /// The cookie reply to an Init fragment from `remote`: the cookie sealed under the
    /// deployment's cookie key with the Init's mac1 as associated data, so only the
    /// sender of that Init can use it. Randomness: the 12-byte nonce. `None` only if
    /// sealing fails.
    pub fn reply<R: RngCore>(
        &self,
        deployment: &DeploymentKeys,
        rng: &mut R,
        remote: SocketAddr,
        frag: &Fragment<'_>,
    ) -> Option<Vec<u8>> {
        let cookie = cookie_for(&self.secret, &remote);
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        let mut d = Vec::with_capacity(COOKIE_REPLY_LEN);
        d.push(PacketType::CookieReply as u8);
        d.push(VERSION_1);
        d.extend_from_slice(&frag.sender.to_be_bytes());
        d.extend_from_slice(&nonce);
        let mut sealed = [0u8; COOKIE_LEN + TAG_LEN];
        sealed[..COOKIE_LEN].copy_from_slice(&cookie);
        deployment
            .cookie_seal
            .seal_in_place(&nonce, &frag.mac1, &mut sealed, COOKIE_LEN)
            .ok()?;
        d.extend_from_slice(&sealed);
        append_mac1(deployment, &mut d);
        Some(d)
    }

    /// Client: opens a cookie reply (length and mac1 already checked) to the Init whose
    /// first datagram is `first_init`, and keeps the cookie for `remote`.
    ///
    /// # Errors
    /// [`DropReason::Decrypt`] when the reply was not sealed for that Init.
    pub fn accept_reply(
        &mut self,
        deployment: &DeploymentKeys,
        reply: &[u8; COOKIE_REPLY_LEN],
        first_init: &[u8],
        remote: SocketAddr,
        now: Instant,
    ) -> Result<(), DropReason> {
        // The AAD is the mac1 we sent: recompute it from our first Init datagram.
        let body = first_init
            .len()
            .checked_sub(FRAG_TRAILER_LEN)
            .and_then(|n| first_init.get(..n))
            .ok_or(DropReason::Unexpected)?;
        let our_mac1 = mac16(deployment.mac1.expose(), body);
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&reply[6..18]);
        let mut sealed = [0u8; COOKIE_LEN + TAG_LEN];
        sealed.copy_from_slice(&reply[18..18 + COOKIE_LEN + TAG_LEN]);
        let cookie = deployment
            .cookie_seal
            .open_in_place(&nonce, &our_mac1, &mut sealed)
            .map_err(|_| DropReason::Decrypt)?;
        let mut value = [0u8; COOKIE_LEN];
        value.copy_from_slice(cookie);
        self.received.insert(
            remote,
            Cookie {
                value,
                received: now,
            },
        );
        Ok(())
    }

    /// Client: the cookie for `remote`, if one arrived less than `max_age` ago.
    pub fn cookie(
        &self,
        remote: &SocketAddr,
        now: Instant,
        max_age: Duration,
    ) -> Option<[u8; COOKIE_LEN]> {
        self.received
            .get(remote)
            .filter(|c| now.saturating_duration_since(c.received) < max_age)
            .map(|c| c.value)
    }
}

/// The cookie of `remote` under `secret`: a MAC of its address and port.
fn cookie_for(secret: &[u8; 32], remote: &SocketAddr) -> [u8; COOKIE_LEN] {
    mac16(secret, &addr_bytes(remote))
}

fn addr_bytes(a: &SocketAddr) -> Vec<u8> {
    let mut v = match a.ip() {
        std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
        std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    v.extend_from_slice(&a.port().to_be_bytes());
    v
}

/// Writes mac1 (and mac2 when a cookie is given, zero otherwise) into the trailer of a
/// fragment datagram this endpoint built.
pub(super) fn stamp_macs(
    deployment: &DeploymentKeys,
    d: &mut [u8],
    cookie: Option<&[u8; COOKIE_LEN]>,
) {
    let len = d.len();
    let m1 = mac16(deployment.mac1.expose(), &d[..len - FRAG_TRAILER_LEN]);
    d[len - FRAG_TRAILER_LEN..len - MAC_LEN].copy_from_slice(&m1);
    let m2 = cookie.map_or([0u8; MAC_LEN], |c| mac16(c, &d[..len - MAC_LEN]));
    d[len - MAC_LEN..].copy_from_slice(&m2);
}

/// Appends mac1 over everything before it (cookie replies and alerts, which end in mac1).
pub(super) fn append_mac1(deployment: &DeploymentKeys, d: &mut Vec<u8>) {
    let m1 = mac16(deployment.mac1.expose(), d);
    d.extend_from_slice(&m1);
}

/// Whether the `MAC_LEN` bytes after the body of `d` (all but its last `trailer_len`
/// bytes) are the body's mac1.
pub(super) fn check_mac1(deployment: &DeploymentKeys, d: &[u8], trailer_len: usize) -> bool {
    let Some(body_len) = d.len().checked_sub(trailer_len) else {
        return false;
    };
    let expected = mac16(deployment.mac1.expose(), &d[..body_len]);
    let found = d.get(body_len..body_len + MAC_LEN);
    #[cfg(fuzzing)]
    if found == Some(&crate::wire::FUZZ_MAC1[..]) {
        return true;
    }
    found.is_some_and(|m| kdf::ct_eq(m, &expected))
}

/// Checks the length and mac1 of a fixed-size packet from the server (cookie reply,
/// alert) and reads the receiver index at `index_at`.
///
/// # Errors
/// [`DropReason::Malformed`] for another length, [`DropReason::BadMac1`].
pub(super) fn check_fixed_size(
    deployment: &DeploymentKeys,
    buf: &[u8],
    len: usize,
    index_at: usize,
    what: &'static str,
) -> Result<u32, DropReason> {
    if buf.len() != len {
        return Err(DropReason::Malformed(WireError::Truncated {
            what,
            needed: len,
            have: buf.len(),
        }));
    }
    if !check_mac1(deployment, buf, MAC_LEN) {
        return Err(DropReason::BadMac1);
    }
    let index = buf
        .get(index_at..index_at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .ok_or(DropReason::Unexpected)?;
    Ok(u32::from_be_bytes(index))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use zeroize::Zeroize;

    /// What a [`CookieJar`] wipes when dropped (review L9): both secrets.
    #[test]
    fn the_cookie_jar_wipes_both_secrets() {
        let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed([3; 32]);
        let mut jar = CookieJar::new(&mut rng, Instant::now());
        assert!(jar.secret != [0; 32] && jar.previous_secret != [0; 32]);
        jar.zeroize();
        assert_eq!((jar.secret, jar.previous_secret), ([0; 32], [0; 32]));
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The CookieReply, frozen: deployment keys from a fixed knock key, a fixed RNG, a
    /// fixed Init fragment and source. Any change to the layout, the cookie derivation or
    /// the seal (AES-256-GCM-SIV) shows here; the client opens exactly this reply, and
    /// one that was sealed for another Init (another mac1) does not open.
    #[test]
    fn cookie_reply_frozen_vector_and_binding_to_the_init() {
        let deployment = DeploymentKeys::new(
            b"frozen ca",
            &crate::keys::DeploymentSecret::from_knock_key([0x42; 32]),
        )
        .unwrap();
        let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed([9; 32]);
        let t0 = Instant::now();
        let jar = CookieJar::new(&mut rng, t0);
        // The client's Init datagram: a body, then mac1 and a zero mac2.
        let mut init = vec![PacketType::Init as u8, VERSION_1, 0, 0, 0, 7];
        init.extend_from_slice(&[0x5a; 40]);
        let mac1 = mac16(deployment.mac1.expose(), &init);
        init.extend_from_slice(&mac1);
        init.extend_from_slice(&[0; MAC_LEN]);
        let frag = Fragment {
            ty: PacketType::Init,
            sender: 7,
            receiver: 0,
            msg_len: 40,
            offset: 0,
            data: &init[6..46],
            mac1,
            mac2: [0; MAC_LEN],
        };
        let remote: SocketAddr = SocketAddr::from(([192, 0, 2, 1], 4242));
        let reply = jar.reply(&deployment, &mut rng, remote, &frag).unwrap();
        assert_eq!(reply.len(), COOKIE_REPLY_LEN);
        assert_eq!(
            hex(&reply),
            "0401000000079e04bef893da544475f4bbadfa46b8b4f51eab031de3b03d057f7ee010a5d22a\
             4c94f8d960a99c1dd008f45178f53bef51b934d089dcfae437c28863"
        );
        let fixed: [u8; COOKIE_REPLY_LEN] = reply.as_slice().try_into().unwrap();
        let mut client = CookieJar::new(&mut rng, t0);
        client
            .accept_reply(&deployment, &fixed, &init, remote, t0)
            .unwrap();
        assert_eq!(
            client.received.get(&remote).map(|c| c.value),
            Some(cookie_for(&jar.secret, &remote))
        );
        let mut other = init.clone();
        other[10] ^= 1;
        assert_eq!(
            client.accept_reply(&deployment, &fixed, &other, remote, t0),
            Err(DropReason::Decrypt)
        );
    }
}
