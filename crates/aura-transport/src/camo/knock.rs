//! The knock: how a client proves, in its first flight, that it holds the deployment's
//! knock key, and how a server refuses replays (docs/PROTOCOL.md §3).
//!
//! - **The secret.** `knock.key` (32 random bytes, made by `server-init`, in every client
//!   bundle, never in `ca.crt`). A deployment without one falls back to SHA-256 of the CA
//!   certificate, which every holder of `ca.crt` knows: it still hides Aura from a censor
//!   who has never seen `ca.crt`, but proves nothing more.
//! - **Per-carrier keys** are expanded from it ([`KnockKeys`]), so a knock of one carrier
//!   never opens on another.
//! - **Time.** Every knock carries the sender's Unix time; a server accepts it within
//!   [`WINDOW_SECS`] of its own clock, and never from before it started.
//! - **Replays.** A server remembers every accepted knock's tag until its time leaves the
//!   window ([`ReplayFilter`]), so a first flight captured and replayed, from any address,
//!   gets what a stranger gets. Nothing needs to persist across restarts: knocks older
//!   than the process are refused by time.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use aura_crypto::aead::{AeadKey, Suite};
use aura_crypto::block::BlockKey;
use aura_crypto::kdf::{self, Secret};
use aura_crypto::labels::expand;
pub use aura_proto::DeploymentSecret;

pub use aura_proto::KNOCK_KEY_LEN;
/// A knock's time may differ from the server's clock by at most this many seconds.
pub const WINDOW_SECS: u64 = 120;
/// Most knock tags a server remembers; past it the oldest are forgotten first (they are
/// also the first to leave the time window).
pub const REPLAY_CAPACITY: usize = 1 << 18;

/// The keys one deployment secret gives the carriers.
pub struct KnockKeys {
    /// Seals the UDP carrier's handshake datagrams from clients (the knock).
    pub udp_c2s: AeadKey,
    /// Seals the UDP carrier's handshake datagrams from servers.
    pub udp_s2c: AeadKey,
    /// Masks the UDP carrier's data datagram headers.
    pub udp_mask: BlockKey,
    /// The TLS carrier's knock key.
    pub tls: Secret,
    /// The QUIC carrier's knock key.
    pub quic: Secret,
}

impl core::fmt::Debug for KnockKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("KnockKeys(..)")
    }
}

impl KnockKeys {
    /// Expands the carriers' keys from `secret`.
    pub fn new(secret: &DeploymentSecret) -> Self {
        let s = secret.secret();
        let expand = |label: &[u8]| {
            // Labels are constants well under the limit: expansion cannot fail.
            kdf::expand_secret(s, label, b"").unwrap_or_else(|_| Secret::from_bytes([0; 32]))
        };
        let aead = |label: &[u8]| {
            AeadKey::new(Suite::Aes256Gcm, expand(label).expose())
                .unwrap_or_else(|_| unreachable_key())
        };
        Self {
            udp_c2s: aead(expand::KNOCK_UDP_C2S),
            udp_s2c: aead(expand::KNOCK_UDP_S2C),
            udp_mask: BlockKey::new(expand(expand::UDP_MASK).expose())
                .unwrap_or_else(|_| unreachable_block_key()),
            tls: expand(expand::KNOCK_TLS),
            quic: expand(expand::KNOCK_QUIC),
        }
    }
}

// A 32-byte key always expands; these only satisfy the types.
fn unreachable_key() -> AeadKey {
    #[allow(clippy::expect_used)]
    AeadKey::new(Suite::Aes256Gcm, &[0u8; 32]).expect("a 32-byte key is valid")
}
fn unreachable_block_key() -> BlockKey {
    #[allow(clippy::expect_used)]
    BlockKey::new(&[0u8; 32]).expect("a 32-byte key is valid")
}

/// Why a knock was refused (counted, never answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnockRefusal {
    /// Does not open under the knock key: a stranger, or a client of another deployment.
    Invalid,
    /// Outside the time window, or older than the server.
    Stale,
    /// Seen before.
    Replay,
}

/// Knocks refused, by reason; shared by a listener's connection tasks.
#[derive(Debug, Default)]
pub struct RefusalCounts([AtomicU64; 3]);

impl RefusalCounts {
    /// Counts the refusal in `r`, if it is one, and hands `r` on.
    pub fn note(&self, r: Result<(), KnockRefusal>) -> Result<(), KnockRefusal> {
        if let Err(why) = r {
            let i = match why {
                KnockRefusal::Invalid => 0,
                KnockRefusal::Stale => 1,
                KnockRefusal::Replay => 2,
            };
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Refusals so far: (no valid knock, stale, replayed).
    pub fn get(&self) -> (u64, u64, u64) {
        let r = |i: usize| self.0[i].load(Ordering::Relaxed);
        (r(0), r(1), r(2))
    }
}

/// The time check: within the window around `now`, and not before `started`.
pub fn fresh(knock_time: u64, now: u64, started: u64) -> Result<(), KnockRefusal> {
    if knock_time.abs_diff(now) > WINDOW_SECS || knock_time < started {
        return Err(KnockRefusal::Stale);
    }
    Ok(())
}

/// Tags of accepted knocks, each kept until its time has left the window.
#[derive(Debug)]
pub struct ReplayFilter {
    seen: HashMap<[u8; 16], u64>,
    order: VecDeque<([u8; 16], u64)>,
    capacity: usize,
}

impl Default for ReplayFilter {
    fn default() -> Self {
        Self::with_capacity(REPLAY_CAPACITY)
    }
}

impl ReplayFilter {
    /// A filter holding at most `capacity` tags.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            seen: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records `tag` of a knock timed `knock_time`; refuses it when already recorded.
    /// `now` expires what has left the window.
    pub fn check_and_insert(
        &mut self,
        tag: [u8; 16],
        knock_time: u64,
        now: u64,
    ) -> Result<(), KnockRefusal> {
        while let Some(&(old, expiry)) = self.order.front() {
            if expiry > now && self.order.len() < self.capacity {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&old) == Some(&expiry) {
                self.seen.remove(&old);
            }
        }
        if self.seen.contains_key(&tag) {
            return Err(KnockRefusal::Replay);
        }
        // Kept until the knock's own time leaves the window (plus one second of rounding).
        let expiry = knock_time.saturating_add(WINDOW_SECS + 1).max(now + 1);
        self.seen.insert(tag, expiry);
        self.order.push_back((tag, expiry));
        Ok(())
    }

    /// Tags held.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no tag is held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn time_window_and_start() {
        assert!(fresh(1000, 1000, 0).is_ok());
        assert!(fresh(1000 - WINDOW_SECS, 1000, 0).is_ok());
        assert!(fresh(1000 + WINDOW_SECS, 1000, 0).is_ok());
        assert_eq!(
            fresh(1000 - WINDOW_SECS - 1, 1000, 0),
            Err(KnockRefusal::Stale)
        );
        assert_eq!(
            fresh(1000 + WINDOW_SECS + 1, 1000, 0),
            Err(KnockRefusal::Stale)
        );
        assert_eq!(
            fresh(990, 1000, 995),
            Err(KnockRefusal::Stale),
            "older than the server"
        );
    }

    #[test]
    fn replays_are_refused_until_the_knock_is_stale_anyway() {
        let mut f = ReplayFilter::default();
        assert!(f.check_and_insert([1; 16], 1000, 1000).is_ok());
        assert_eq!(
            f.check_and_insert([1; 16], 1000, 1001),
            Err(KnockRefusal::Replay)
        );
        assert_eq!(
            f.check_and_insert([1; 16], 1000, 1000 + WINDOW_SECS),
            Err(KnockRefusal::Replay),
            "still inside the window: still remembered"
        );
        assert!(f.check_and_insert([2; 16], 1000, 1000).is_ok());
        // Past the window the tag is forgotten; `fresh` refuses the knock by then.
        assert!(
            f.check_and_insert([3; 16], 1200, 1000 + WINDOW_SECS + 2)
                .is_ok()
        );
        assert_eq!(f.len(), 1);
        assert!(fresh(1000, 1000 + WINDOW_SECS + 2, 0).is_err());
    }

    #[test]
    fn capacity_forgets_the_oldest_first() {
        let mut f = ReplayFilter::with_capacity(3);
        for i in 0..5u8 {
            assert!(f.check_and_insert([i; 16], 1000, 1000).is_ok());
        }
        assert!(f.len() <= 3);
        assert_eq!(
            f.check_and_insert([4; 16], 1000, 1000),
            Err(KnockRefusal::Replay)
        );
        assert!(f.check_and_insert([0; 16], 1000, 1000).is_ok(), "evicted");
    }

    #[test]
    fn keys_differ_per_carrier_and_secret() {
        let a = DeploymentSecret::from_knock_key([5; 32]);
        let b = DeploymentSecret::from_ca(b"ca");
        assert!(a.is_knock_key() && !b.is_knock_key());
        let (ka, kb) = (KnockKeys::new(&a), KnockKeys::new(&b));
        assert_ne!(ka.tls.expose(), ka.quic.expose());
        assert_ne!(ka.tls.expose(), kb.tls.expose());
        let m = [0u8; 16];
        assert_ne!(ka.udp_mask.mask(&m), kb.udp_mask.mask(&m));
    }
}
