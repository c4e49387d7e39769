//! Sliding anti-replay window for data-channel counters.
//!
//! Every data packet carries a 64-bit counter. A receiver accepts each counter at most once and
//! tolerates reordering within a window behind the highest counter seen so far, in the manner of
//! WireGuard's window (a bitmap of `u64` words used as a ring, RFC 6479).
//!
//! # Semantics (exact)
//!
//! Let `h` be the highest counter accepted so far. A counter `c` is accepted if and only if
//!
//! * `c < REJECT_AFTER_MESSAGES`, and
//! * no counter was accepted yet, or `c > h`, or `h - c <= WINDOW_SIZE` and `c` was not accepted
//!   before.
//!
//! So exactly [`WINDOW_SIZE`] (8192) counters *behind* the highest are tracked:
//! `h - 8192 ..= h - 1`, plus `h` itself. Anything older is rejected as too old.
//!
//! The ring holds `RING_WORDS = WINDOW_SIZE / 64 + 1 = 129` words (1032 bytes, fixed, no
//! allocation); with a ring of `N` words, `(N - 1) * 64` counters behind the highest can always
//! be told apart, which is the `8192` above.
//!
//! # Use
//!
//! [`ReplayWindow::check`] is called *before* the packet is authenticated (it does not change the
//! window, so forged packets cannot move it); [`ReplayWindow::update`] is called only *after*
//! the AEAD open succeeded. Both are O(1): moving the window forward by a large jump clears at
//! most the whole ring once.
//!
//! ```
//! use aura_proto::replay::ReplayWindow;
//!
//! let mut window = ReplayWindow::new();
//! assert!(window.check(5));
//! assert!(window.update(5));
//! assert!(!window.check(5)); // replay
//! assert!(window.update(3)); // late, but within the window
//! assert_eq!(window.highest(), Some(5));
//! ```

/// Number of counters behind the highest one that are still accepted (if not seen before).
pub const WINDOW_SIZE: u64 = 8192;

/// Counters at or above this value are always rejected; a session must rekey well before its
/// sending counter gets here (WireGuard's `REJECT_AFTER_MESSAGES`).
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);

/// Bits per ring word.
const WORD_BITS: u64 = u64::BITS as u64;

/// Words in the ring: enough that `WINDOW_SIZE` counters behind the highest never share a word
/// slot with the highest's word.
const RING_WORDS: usize = (WINDOW_SIZE / WORD_BITS) as usize + 1;

/// [`RING_WORDS`] as a `u64`, for index arithmetic.
const RING_WORDS_U64: u64 = RING_WORDS as u64;

// The window must be a whole number of words for the exact semantics above.
const _: () = assert!(WINDOW_SIZE.is_multiple_of(WORD_BITS));

/// Sliding anti-replay window; see the [module documentation](self) for its exact semantics.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest counter accepted so far.
    highest: Option<u64>,
    /// Ring of bitmaps: counter `c` is bit `c % 64` of word `(c / 64) % RING_WORDS`.
    ring: [u64; RING_WORDS],
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("highest", &self.highest)
            .finish_non_exhaustive()
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

/// Slot in the ring and bit mask of `counter`.
const fn position(counter: u64) -> (usize, u64) {
    // The remainder is below `RING_WORDS`, so the cast cannot truncate.
    let slot = ((counter / WORD_BITS) % RING_WORDS_U64) as usize;
    (slot, 1 << (counter % WORD_BITS))
}

impl ReplayWindow {
    /// Number of counters behind the highest that are accepted (if unseen): [`WINDOW_SIZE`].
    pub const ACCEPTED_BEHIND_HIGHEST: u64 = WINDOW_SIZE;

    /// A window that has accepted nothing yet.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            highest: None,
            ring: [0; RING_WORDS],
        }
    }

    /// Highest counter accepted so far.
    #[must_use]
    pub const fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Whether `counter` would be accepted now. Does not change the window: call it before
    /// authenticating the packet, and [`Self::update`] after.
    #[must_use]
    pub fn check(&self, counter: u64) -> bool {
        if counter >= REJECT_AFTER_MESSAGES {
            return false;
        }
        let Some(highest) = self.highest else {
            return true;
        };
        if counter > highest {
            return true;
        }
        if highest - counter > WINDOW_SIZE {
            return false;
        }
        let (slot, bit) = position(counter);
        self.ring.get(slot).is_some_and(|word| word & bit == 0)
    }

    /// Marks `counter` as received, after its packet authenticated. Returns `false`, and
    /// changes nothing, if the counter is a replay, too old, or at or above
    /// [`REJECT_AFTER_MESSAGES`].
    pub fn update(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        match self.highest {
            Some(highest) if counter > highest => {
                self.advance(highest, counter);
                self.highest = Some(counter);
            }
            Some(_) => {}
            None => self.highest = Some(counter),
        }
        let (slot, bit) = position(counter);
        if let Some(word) = self.ring.get_mut(slot) {
            *word |= bit;
        }
        true
    }

    /// Forgets everything: the next counter is accepted whatever it is (below the limit).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Clears the words that move into the window when the highest goes from `old` to `new`.
    fn advance(&mut self, old: u64, new: u64) {
        let old_word = old / WORD_BITS;
        let new_word = new / WORD_BITS;
        let to_clear = (new_word - old_word).min(RING_WORDS_U64);
        for step in 1..=to_clear {
            // `old_word + step <= new_word`, so this cannot overflow.
            let (slot, _) = position((old_word + step) * WORD_BITS);
            if let Some(word) = self.ring.get_mut(slot) {
                *word = 0;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ring_size() {
        assert_eq!(RING_WORDS, 129);
        assert_eq!((RING_WORDS as u64 - 1) * WORD_BITS, WINDOW_SIZE);
        assert_eq!(std::mem::size_of::<[u64; RING_WORDS]>(), 1032);
    }

    #[test]
    fn first_counter_and_replay() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.highest(), None);
        assert!(w.check(0));
        assert!(w.update(0));
        assert!(!w.check(0));
        assert!(!w.update(0));
        assert_eq!(w.highest(), Some(0));
        assert!(w.update(1));
        assert!(!w.update(1));
    }

    #[test]
    fn first_counter_may_be_large() {
        let mut w = ReplayWindow::new();
        assert!(w.update(1_000_000));
        assert!(w.update(1_000_000 - WINDOW_SIZE));
        assert!(!w.update(1_000_000 - WINDOW_SIZE - 1));
    }

    #[test]
    fn window_edge_is_exact() {
        let mut w = ReplayWindow::new();
        let h = 100_000;
        assert!(w.update(h));
        assert!(w.check(h - WINDOW_SIZE));
        assert!(!w.check(h - WINDOW_SIZE - 1));
        for c in (h - WINDOW_SIZE..h).rev() {
            assert!(w.update(c), "counter {c} behind {h}");
        }
        for c in h - WINDOW_SIZE - 64..=h {
            assert!(!w.check(c), "counter {c} accepted twice");
        }
    }

    #[test]
    fn check_does_not_mutate() {
        let mut w = ReplayWindow::new();
        assert!(w.update(10));
        let before = w.clone();
        assert!(w.check(11));
        assert!(w.check(1 << 40));
        assert!(!w.check(10));
        assert_eq!(w, before);
    }

    #[test]
    fn big_jump_clears_stale_bits() {
        let mut w = ReplayWindow::new();
        for c in 0..200 {
            assert!(w.update(c));
        }
        // Jump by exactly one ring's worth of counters: the old slots must be cleared.
        let jump = 199 + RING_WORDS as u64 * WORD_BITS;
        assert!(w.update(jump));
        for c in jump - WINDOW_SIZE..jump {
            assert!(w.check(c), "counter {c} wrongly marked after the jump");
        }
        assert!(w.update(1 << 50));
        assert!(w.check((1 << 50) - 1));
        assert!(!w.check(jump));
    }

    #[test]
    fn rejects_at_and_after_limit() {
        let mut w = ReplayWindow::new();
        assert!(!w.check(REJECT_AFTER_MESSAGES));
        assert!(!w.update(REJECT_AFTER_MESSAGES));
        assert!(!w.update(u64::MAX));
        assert_eq!(w.highest(), None);
        assert!(w.update(REJECT_AFTER_MESSAGES - 1));
        assert_eq!(w.highest(), Some(REJECT_AFTER_MESSAGES - 1));
        assert!(!w.update(REJECT_AFTER_MESSAGES));
        assert!(w.update(REJECT_AFTER_MESSAGES - 1 - WINDOW_SIZE));
        assert!(!w.update(REJECT_AFTER_MESSAGES - 2 - WINDOW_SIZE));
    }

    #[test]
    fn reset_forgets() {
        let mut w = ReplayWindow::new();
        assert!(w.update(5));
        w.reset();
        assert_eq!(w.highest(), None);
        assert!(w.update(5));
    }
}
