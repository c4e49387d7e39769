//! The QUIC carrier's knock: in the destination connection id of the client's first
//! Initial, checked in the server's accept loop before any connection state exists
//! (docs/PROTOCOL.md §12.6).
//!
//! ```text
//! dcid (20 bytes) = r (8 random bytes) || HMAC-SHA256(K_knock_quic,
//!                       "aura quic knock v1" || r || u64_be(unix minute))[0..12]
//! ```
//!
//! The server accepts the minutes within three of its own (the knock window, 120 s,
//! rounded out to whole minutes), none that ended before it started, and each id once. Unlike the TLS knock it is not bound to the key share:
//! quinn hands the server the id, not the ClientHello. A censor that lifts a client's id
//! into a handshake of its own, before the client's arrives, gets a QUIC connection that
//! presents the same certificate, ALPN and transport parameters as the decoy, and then
//! silence (docs/SECURITY.md).

use std::sync::Mutex;

use aura_crypto::kdf::{self, Secret};

use super::knock::{KnockRefusal, RefusalCounts, ReplayFilter, WINDOW_SECS};

/// Length of the knocked connection id.
pub const DCID_LEN: usize = 20;
const LABEL: &[u8] = b"aura quic knock v1";

/// The QUIC carrier's knock key, with the server's replay state.
pub struct QuicKnock {
    key: Secret,
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
    started: u64,
    replay: Mutex<ReplayFilter>,
    refused: RefusalCounts,
}

impl core::fmt::Debug for QuicKnock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("QuicKnock")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl QuicKnock {
    /// The knock keyed by `key` (`KnockKeys::quic`), reading Unix time from `clock`.
    pub fn new(
        key: &Secret,
        clock: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            key: key.clone(),
            started: clock(),
            clock: Box::new(clock),
            replay: Mutex::new(ReplayFilter::default()),
            refused: Default::default(),
        })
    }

    fn mac(&self, r: &[u8], minute: u64) -> [u8; 32] {
        kdf::hmac_sha256(self.key.expose(), &[LABEL, r, &minute.to_be_bytes()])
    }

    /// Client: a knocked destination connection id for a new connection, from 8 random
    /// bytes `r`.
    pub fn dcid(&self, r: [u8; 8]) -> [u8; DCID_LEN] {
        let mut id = [0u8; DCID_LEN];
        id[..8].copy_from_slice(&r);
        id[8..].copy_from_slice(&self.mac(&r, (self.clock)() / 60)[..12]);
        id
    }

    /// Server: checks the destination connection id of a client's first Initial.
    ///
    /// # Errors
    /// Why it is a stranger's: no knock, stale, or seen before.
    pub fn check(&self, dcid: &[u8]) -> Result<(), KnockRefusal> {
        self.refused.note(self.check_inner(dcid))
    }

    fn check_inner(&self, dcid: &[u8]) -> Result<(), KnockRefusal> {
        if dcid.len() != DCID_LEN {
            return Err(KnockRefusal::Invalid);
        }
        let (r, tag) = dcid.split_at(8);
        let now = (self.clock)();
        let span = WINDOW_SECS / 60 + 1;
        let here = now / 60;
        let minute = (here.saturating_sub(span)..=here + span)
            .find(|&m| kdf::ct_eq(&self.mac(r, m)[..12], tag))
            .ok_or(KnockRefusal::Invalid)?;
        // Minutes within the window (three either side) were tried above; a minute that
        // ended before the server started is refused.
        if minute * 60 + 59 < self.started {
            return Err(KnockRefusal::Stale);
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&dcid[4..]);
        self.replay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .check_and_insert(key, minute * 60 + 59, now)
    }

    /// Connection ids refused so far: (no valid knock, stale, replayed).
    pub fn refused(&self) -> (u64, u64, u64) {
        self.refused.get()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    static CLOCK: AtomicU64 = AtomicU64::new(1_796_522_400);

    fn clock() -> u64 {
        CLOCK.load(Ordering::Relaxed)
    }

    #[test]
    fn knock_round_trip_replay_staleness_and_other_keys() {
        let k = QuicKnock::new(&Secret::from_bytes([1; 32]), clock);
        let id = k.dcid([7; 8]);
        assert!(k.check(&id).is_ok());
        assert_eq!(k.check(&id), Err(KnockRefusal::Replay));
        let other = QuicKnock::new(&Secret::from_bytes([2; 32]), clock);
        assert_eq!(k.check(&other.dcid([7; 8])), Err(KnockRefusal::Invalid));
        assert_eq!(k.check(&[0u8; 8]), Err(KnockRefusal::Invalid));
        let mut flipped = k.dcid([9; 8]);
        flipped[19] ^= 1;
        assert_eq!(k.check(&flipped), Err(KnockRefusal::Invalid));
        // Ten minutes later the old minute is out of reach: not even recognised.
        let old = k.dcid([3; 8]);
        CLOCK.fetch_add(600, Ordering::Relaxed);
        assert!(k.check(&old).is_err());
        assert_eq!(k.refused().2, 1);
    }
}
