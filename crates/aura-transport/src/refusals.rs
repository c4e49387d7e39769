//! What a server refused, logged so an operator can see it and a flood cannot fill the
//! log: at most one line per source (an IPv4 address, an IPv6 /64) per interval, at most
//! [`MAX_SOURCES_PER_INTERVAL`] sources per interval, and one summary line per interval
//! for everything that was counted but not shown.
//!
//! Sans-IO: [`RefusalLog::note`] and [`RefusalLog::roll`] take the time and return the
//! lines to write; the driver writes them with `tracing`.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How long one source's line stands for all of its refusals.
pub const INTERVAL: Duration = Duration::from_secs(60);
/// The most sources with a line of their own in one interval.
pub const MAX_SOURCES_PER_INTERVAL: usize = 32;

/// What was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A UDP datagram in neither form: no knock for this deployment, no live session.
    Unreadable,
    /// A knock outside the time window (the sender's clock, or an old capture).
    StaleKnock,
    /// A knock seen before: a replayed first flight.
    ReplayedKnock,
    /// A handshake that reached the protocol and failed there.
    Handshake(String),
}

impl Refusal {
    /// Whether an operator should see it at the default level: what only a deployment
    /// member (or a replay of one) can cause. Strangers' noise is debug.
    pub fn notable(&self) -> bool {
        !matches!(self, Refusal::Unreadable)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unreadable => f.write_str("an unreadable datagram"),
            Refusal::StaleKnock => {
                f.write_str("a knock outside the time window (check the client's clock)")
            }
            Refusal::ReplayedKnock => f.write_str("a replayed knock"),
            Refusal::Handshake(e) => write!(f, "a handshake: {e}"),
        }
    }
}

/// One line to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// The first refusal of a source in this interval.
    First {
        /// Where it came from.
        from: SocketAddr,
        /// What was refused.
        what: Refusal,
    },
    /// The end of an interval: what was refused but not shown.
    Summary {
        /// Refusals not shown on a line of their own.
        unshown: u64,
        /// Sources they came from, beyond those shown (a lower bound once the table
        /// of sources is full).
        sources: u64,
    },
}

/// A source: an IPv4 address, or the /64 of an IPv6 address.
fn source_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) >> 64) | (1 << 127),
    }
}

/// The rate-limited refusal log.
#[derive(Debug)]
pub struct RefusalLog {
    started: Instant,
    /// Sources shown this interval.
    shown: HashSet<u128>,
    /// Refusals not shown this interval, and the sources of those (counted once each,
    /// while the table has room).
    unshown: u64,
    unshown_sources: HashSet<u128>,
}

/// The most sources remembered for the summary; beyond it the count is a lower bound.
const MAX_REMEMBERED: usize = 4096;

impl RefusalLog {
    /// An empty log whose first interval starts at `now`.
    pub fn new(now: Instant) -> Self {
        RefusalLog {
            started: now,
            shown: HashSet::new(),
            unshown: 0,
            unshown_sources: HashSet::new(),
        }
    }

    /// Notes a refusal of `what` from `from` at `now`: the lines to log (the previous
    /// interval's summary when it ended, and this refusal if its source has no line yet).
    pub fn note(&mut self, now: Instant, from: SocketAddr, what: Refusal) -> Vec<Line> {
        let mut out = self.roll(now);
        let source = source_of(from.ip());
        if self.shown.contains(&source) {
            self.unshown += 1;
        } else if self.shown.len() < MAX_SOURCES_PER_INTERVAL {
            self.shown.insert(source);
            out.push(Line::First { from, what });
        } else {
            self.unshown += 1;
            if self.unshown_sources.len() < MAX_REMEMBERED {
                self.unshown_sources.insert(source);
            }
        }
        out
    }

    /// Ends the interval if it is over at `now`: its summary line, if anything went
    /// unshown. Call it now and then (the driver does, each second) so a summary comes
    /// even when the refusals stop.
    pub fn roll(&mut self, now: Instant) -> Vec<Line> {
        if now.saturating_duration_since(self.started) < INTERVAL {
            return Vec::new();
        }
        let line = (self.unshown > 0).then_some(Line::Summary {
            unshown: self.unshown,
            sources: self.unshown_sources.len() as u64,
        });
        self.started = now;
        self.shown.clear();
        self.unshown = 0;
        self.unshown_sources.clear();
        line.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], port))
    }

    #[test]
    fn one_line_per_source_per_interval_then_a_summary() {
        let t0 = Instant::now();
        let mut log = RefusalLog::new(t0);
        let first = log.note(t0, v4(1, 1000), Refusal::ReplayedKnock);
        assert_eq!(
            first,
            vec![Line::First {
                from: v4(1, 1000),
                what: Refusal::ReplayedKnock
            }]
        );
        // The same address from other ports, many times: nothing more.
        for port in 0..10_000 {
            assert!(log.note(t0, v4(1, port), Refusal::StaleKnock).is_empty());
        }
        // Another source gets its line.
        assert_eq!(log.note(t0, v4(2, 1), Refusal::Unreadable).len(), 1);
        assert!(
            log.roll(t0 + INTERVAL - Duration::from_millis(1))
                .is_empty()
        );
        assert_eq!(
            log.roll(t0 + INTERVAL),
            vec![Line::Summary {
                unshown: 10_000,
                sources: 0
            }]
        );
        // A new interval: source 1 has a line again; nothing unshown means no summary.
        assert_eq!(
            log.note(t0 + INTERVAL, v4(1, 1), Refusal::ReplayedKnock)
                .len(),
            1
        );
        assert!(log.roll(t0 + INTERVAL * 2).is_empty());
    }

    #[test]
    fn a_flood_of_sources_yields_a_bounded_number_of_lines() {
        let t0 = Instant::now();
        let mut log = RefusalLog::new(t0);
        let mut lines = 0;
        for i in 0..100_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0A00_0000 + i);
            lines += log
                .note(t0, SocketAddr::from((ip, 9)), Refusal::Unreadable)
                .len();
        }
        assert_eq!(lines, MAX_SOURCES_PER_INTERVAL);
        let summary = log.roll(t0 + INTERVAL);
        assert_eq!(
            summary,
            vec![Line::Summary {
                unshown: 100_000 - MAX_SOURCES_PER_INTERVAL as u64,
                sources: MAX_REMEMBERED as u64
            }]
        );
    }

    #[test]
    fn an_ipv6_64_is_one_source() {
        let t0 = Instant::now();
        let mut log = RefusalLog::new(t0);
        let v6 = |s: &str| {
            SocketAddr::new(
                s.parse::<std::net::Ipv6Addr>()
                    .map_or(IpAddr::from([0u8; 16]), IpAddr::V6),
                5,
            )
        };
        let (a, b, c) = (
            v6("2001:db8:1:2::1"),
            v6("2001:db8:1:2:ffff::9"),
            v6("2001:db8:1:3::1"),
        );
        assert!(!a.ip().is_unspecified() && !b.ip().is_unspecified() && !c.ip().is_unspecified());
        assert_eq!(log.note(t0, a, Refusal::Unreadable).len(), 1);
        assert!(log.note(t0, b, Refusal::Unreadable).is_empty());
        assert_eq!(log.note(t0, c, Refusal::Unreadable).len(), 1);
    }
}
