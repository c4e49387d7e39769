//! A virtual clock: a monotonic [`Instant`] and a wall clock that only move when a test
//! says so.

use std::time::{Duration, Instant};

use rustls_pki_types::UnixTime;

/// The default wall-clock start: 2030-01-01T00:00:00Z, in seconds since the Unix epoch.
///
/// Every [`TestPki`](crate::TestPki) certificate is valid at this time.
pub const DEFAULT_WALL_START_SECS: u64 = 1_893_456_000;

/// A virtual clock for sans-IO tests.
///
/// It holds a base [`Instant`], captured once by [`SimClock::new`], plus an offset that
/// only [`advance`](Self::advance) and [`advance_to`](Self::advance_to) change; and a
/// wall-clock start (default [`DEFAULT_WALL_START_SECS`]) for certificate checks, which
/// moves with the same offset. Nothing reads the real clock after construction, so a
/// test's timeline depends only on its own calls. Time never goes backwards.
///
/// `SimClock` is a plain value: clone it to hand a snapshot to a node, or keep one clock
/// and pass `clock.now()` into every `handle_*` call.
#[derive(Debug, Clone)]
pub struct SimClock {
    base: Instant,
    offset: Duration,
    wall_start: Duration,
}

impl Default for SimClock {
    fn default() -> Self {
        SimClock::new()
    }
}

impl SimClock {
    /// A clock at offset zero, with the wall clock at 2030-01-01T00:00:00Z.
    pub fn new() -> Self {
        SimClock::with_wall_start(UnixTime::since_unix_epoch(Duration::from_secs(
            DEFAULT_WALL_START_SECS,
        )))
    }

    /// A clock at offset zero whose wall clock starts at `start`.
    pub fn with_wall_start(start: UnixTime) -> Self {
        SimClock {
            base: Instant::now(),
            offset: Duration::ZERO,
            wall_start: Duration::from_secs(start.as_secs()),
        }
    }

    /// The current virtual instant (base + elapsed).
    pub fn now(&self) -> Instant {
        // `Instant + Duration` can only overflow after centuries of virtual time;
        // saturate at the base rather than panic.
        self.base.checked_add(self.offset).unwrap_or(self.base)
    }

    /// The base instant (offset zero).
    pub fn start(&self) -> Instant {
        self.base
    }

    /// Virtual time elapsed since construction.
    pub fn elapsed(&self) -> Duration {
        self.offset
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&mut self, by: Duration) {
        self.offset = self.offset.saturating_add(by);
    }

    /// Moves the clock forward to `to`. An instant in the past is ignored: the clock
    /// never goes backwards.
    pub fn advance_to(&mut self, to: Instant) {
        let target = to.saturating_duration_since(self.base);
        if target > self.offset {
            self.offset = target;
        }
    }

    /// The current wall-clock time: the configured start plus [`elapsed`](Self::elapsed)
    /// (sub-second precision kept).
    pub fn wall(&self) -> UnixTime {
        UnixTime::since_unix_epoch(self.wall_start.saturating_add(self.offset))
    }

    /// Sets the wall-clock time that corresponds to offset zero.
    pub fn set_wall_start(&mut self, start: UnixTime) {
        self.wall_start = Duration::from_secs(start.as_secs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_monotonically() {
        let mut clock = SimClock::new();
        let t0 = clock.now();
        assert_eq!(clock.start(), t0);
        clock.advance(Duration::from_millis(250));
        assert_eq!(clock.now() - t0, Duration::from_millis(250));
        clock.advance_to(t0 + Duration::from_secs(2));
        assert_eq!(clock.elapsed(), Duration::from_secs(2));
        clock.advance_to(t0 + Duration::from_secs(1)); // the past: ignored
        assert_eq!(clock.elapsed(), Duration::from_secs(2));
    }

    #[test]
    fn wall_clock_follows_offset() {
        let mut clock = SimClock::new();
        assert_eq!(clock.wall().as_secs(), DEFAULT_WALL_START_SECS);
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.wall().as_secs(), DEFAULT_WALL_START_SECS + 90);
        clock.set_wall_start(UnixTime::since_unix_epoch(Duration::from_secs(1_000)));
        assert_eq!(clock.wall().as_secs(), 1_090);
        let other = SimClock::with_wall_start(UnixTime::since_unix_epoch(Duration::from_secs(7)));
        assert_eq!(other.wall().as_secs(), 7);
    }
}
