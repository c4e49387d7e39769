//! Cover traffic on a live connection: the tap the driver reports each connection's real
//! traffic to, the task that sends the padding the engine ([`crate::camo::cover`]) asks
//! for, and the shared limit a server puts on the padding of all its connections.
//!
//! The driver drops every `Padding` message it opens, whether or not cover traffic was
//! negotiated: padding never reaches the application (the TUN). A `Padding` that does
//! not decode (a non-zero byte, a wrong length) counts as a drop, like any malformed
//! packet.
//!
//! Real packets are reported per batch, at most [`EVENTS_PER_BATCH`] events each: under
//! load padding has nothing left to hide, and under-reporting real packets only makes the
//! budget stricter.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aura_proto::control::{
    self, ControlKind, ControlMessage, HEADER_LEN, MAX_COVER_BUDGET, Padding,
};
use tokio::sync::Notify;

use crate::batch::PacketBatch;
use crate::camo::cover::Cover;
use crate::conn::PacketSender;

/// Most engine events one batch of real packets makes.
pub const EVENTS_PER_BATCH: u64 = 8;
/// Most padding packets sent at once.
const PADDING_BATCH: usize = 64;
/// The window a [`CoverLimit`] measures over; the last window counts half.
const LIMIT_WINDOW: Duration = Duration::from_secs(10);
/// Padding packets a [`CoverLimit`] allows per window before the share applies...
const LIMIT_ALLOWANCE: u64 = 64;
/// ...and more for each connection under it: what `idle` sends at most per window
/// (2.5 packets a second), so idle tunnels stay covered when nothing else flows.
const LIMIT_PER_CONN: u64 = 25;

/// Whether `p` is a `Padding` control message (by its header; the payload is checked by
/// [`padding_ok`]).
pub(crate) fn is_padding(p: &[u8]) -> bool {
    control::is_control(p) && p.get(4) == Some(&ControlKind::Padding.to_u8())
}

/// Whether the padding message `p` decodes (zeros, the declared length).
pub(crate) fn padding_ok(p: &[u8]) -> bool {
    matches!(ControlMessage::decode(p), Ok(ControlMessage::Padding(_)))
}

/// What one connection's cover traffic did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoverStats {
    /// Padding packets sent.
    pub padding_out: u64,
    /// Padding packets received (and dropped).
    pub padding_in: u64,
    /// Padding packets the engine asked for that the shared limit held back.
    pub held_back: u64,
    /// Batches of real packets that waited while the engine blocked (`bursts`).
    pub delayed: u64,
}

/// One connection's cover state, shared by the driver (which reports traffic, and holds
/// real packets while the engine blocks) and the cover task (which sends padding).
#[derive(Debug)]
pub(crate) struct CoverTap {
    active: AtomicBool,
    /// Until when real packets wait: nanoseconds after `epoch`, 0 for not blocked.
    blocked: AtomicU64,
    epoch: Instant,
    /// Boxed: most connections never start cover traffic, and an idle one should not
    /// hold an engine's room.
    engine: Mutex<Option<Box<Running>>>,
    wake: Notify,
    padding_out: AtomicU64,
    padding_in: AtomicU64,
    held_back: AtomicU64,
    delayed: AtomicU64,
    generation: AtomicU64,
    /// What the cover task sleeps until: nanoseconds after `epoch`, `u64::MAX` for no
    /// deadline (set under the engine's lock, like every report).
    sleeping: AtomicU64,
}

#[derive(Debug)]
struct Running {
    engine: Cover,
    limit: Option<Arc<CoverLimit>>,
    /// Which start this is (a guard stops only its own).
    generation: u64,
}

impl Default for CoverTap {
    fn default() -> Self {
        Self {
            active: AtomicBool::new(false),
            blocked: AtomicU64::new(0),
            epoch: Instant::now(),
            engine: Mutex::default(),
            wake: Notify::new(),
            padding_out: AtomicU64::new(0),
            padding_in: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
            delayed: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            sleeping: AtomicU64::new(0),
        }
    }
}

impl CoverTap {
    fn with<R>(&self, f: impl FnOnce(&mut Running) -> R) -> Option<R> {
        let mut g = self.engine.lock().unwrap_or_else(PoisonError::into_inner);
        let r = g.as_deref_mut().map(f);
        let until = g.as_ref().and_then(|r| r.engine.blocked_until());
        self.set_blocked(until);
        r
    }

    fn set_blocked(&self, until: Option<Instant>) {
        let ns = until.map_or(0, |t| {
            let d = t.saturating_duration_since(self.epoch).as_nanos();
            u64::try_from(d).unwrap_or(u64::MAX).max(1)
        });
        self.blocked.store(ns, Ordering::Relaxed);
    }

    /// A batch of real packets waits.
    pub(crate) fn delayed(&self) {
        self.delayed.fetch_add(1, Ordering::Relaxed);
    }

    /// Until when real packets must wait, if the engine blocks them now.
    pub(crate) fn blocked_until(&self) -> Option<Instant> {
        match self.blocked.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(self.epoch + Duration::from_nanos(ns)),
        }
    }

    /// `n` real packets were sent.
    pub(crate) fn sent(&self, n: u64, now: Instant) {
        if n == 0 || !self.active.load(Ordering::Relaxed) {
            return;
        }
        self.report(now, |r| {
            if let Some(l) = &r.limit {
                l.normal(n, now);
            }
            r.engine.traffic(n.min(EVENTS_PER_BATCH), 0, 0, now);
        });
    }

    /// `normal` real and `padding` padding packets were received.
    pub(crate) fn received(&self, normal: u64, padding: u64, now: Instant) {
        if padding > 0 {
            self.padding_in.fetch_add(padding, Ordering::Relaxed);
        }
        if normal + padding == 0 || !self.active.load(Ordering::Relaxed) {
            return;
        }
        self.report(now, |r| {
            let cap = EVENTS_PER_BATCH;
            r.engine.traffic(0, normal.min(cap), padding.min(cap), now);
        });
    }

    /// Feeds the engine, and wakes the cover task only when its next deadline moved
    /// earlier than what it sleeps until (under traffic the timers mostly move later:
    /// no wake-up per batch).
    fn report(&self, now: Instant, f: impl FnOnce(&mut Running)) {
        let wake = self.with(|r| {
            f(r);
            let next = r
                .engine
                .poll_timeout()
                .map_or(u64::MAX, |t| self.ns(t.max(now)));
            next < self.sleeping.load(Ordering::Relaxed)
        });
        if wake == Some(true) {
            self.wake.notify_one();
        }
    }

    fn ns(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn stats(&self) -> CoverStats {
        CoverStats {
            padding_out: self.padding_out.load(Ordering::Relaxed),
            padding_in: self.padding_in.load(Ordering::Relaxed),
            held_back: self.held_back.load(Ordering::Relaxed),
            delayed: self.delayed.load(Ordering::Relaxed),
        }
    }
}

/// A cap on the padding of many connections together: at most `budget` per mille of the
/// packets they send (real and padding), measured over a 10 s window in which the last
/// window counts half, after an allowance per window of 64 padding packets and 25 per
/// connection under the limit (what an idle tunnel's cover sends at most).
#[derive(Debug)]
pub struct CoverLimit {
    budget: u16,
    window: Mutex<Window>,
    conns: AtomicU64,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    normal: u64,
    padding: u64,
    /// Half the last window's counts.
    carried_normal: u64,
    carried_padding: u64,
}

impl CoverLimit {
    /// A limit of `budget` per mille (clamped to 1..=1000).
    #[must_use]
    pub fn new(budget: u16) -> Arc<Self> {
        Arc::new(Self {
            budget: budget.clamp(1, MAX_COVER_BUDGET),
            window: Mutex::new(Window {
                start: Instant::now(),
                normal: 0,
                padding: 0,
                carried_normal: 0,
                carried_padding: 0,
            }),
            conns: AtomicU64::new(0),
        })
    }

    /// Connections whose cover traffic this limit holds now.
    #[must_use]
    pub fn connections(&self) -> u64 {
        self.conns.load(Ordering::Relaxed)
    }

    /// The budget, per mille.
    #[must_use]
    pub fn budget(&self) -> u16 {
        self.budget
    }

    fn window(&self, now: Instant) -> std::sync::MutexGuard<'_, Window> {
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let age = now.saturating_duration_since(w.start);
        if age >= LIMIT_WINDOW {
            let (n, p) = if age >= 2 * LIMIT_WINDOW {
                (0, 0)
            } else {
                (w.normal / 2, w.padding / 2)
            };
            *w = Window {
                start: now,
                normal: 0,
                padding: 0,
                carried_normal: n,
                carried_padding: p,
            };
        }
        w
    }

    fn normal(&self, n: u64, now: Instant) {
        self.window(now).normal += n;
    }

    /// How many of `want` padding packets may go now (and counts them as sent).
    pub fn allow(&self, want: u64, now: Instant) -> u64 {
        let mut w = self.window(now);
        let normal = w.normal + w.carried_normal;
        let budget = u64::from(self.budget);
        let allowance = LIMIT_ALLOWANCE + LIMIT_PER_CONN * self.connections();
        let mut allowed = 0;
        while allowed < want {
            let padding = w.padding + w.carried_padding + 1;
            // padding / (normal + padding) <= budget / 1000, past the allowance.
            let within = padding * u64::from(MAX_COVER_BUDGET) <= budget * (normal + padding);
            if !(within || w.padding < allowance) {
                break;
            }
            w.padding += 1;
            allowed += 1;
        }
        allowed
    }
}

/// Sends a connection's padding while it lives; dropping it stops cover traffic on the
/// connection.
#[derive(Debug)]
pub struct CoverGuard {
    task: tokio::task::JoinHandle<()>,
    tap: Arc<CoverTap>,
    generation: u64,
}

impl CoverGuard {
    /// What the connection's cover traffic did so far.
    #[must_use]
    pub fn stats(&self) -> CoverStats {
        self.tap.stats()
    }
}

impl Drop for CoverGuard {
    fn drop(&mut self) {
        self.task.abort();
        let running = {
            let mut g = self
                .tap
                .engine
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if g.as_ref().is_none_or(|r| r.generation != self.generation) {
                // Cover traffic was started again since: that start stays.
                return;
            }
            self.tap.active.store(false, Ordering::Relaxed);
            self.tap.blocked.store(0, Ordering::Relaxed);
            g.take()
        };
        if let Some(l) = running.and_then(|r| r.limit) {
            l.conns.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Starts cover traffic on the connection of `sender`: `engine` decides, the task sends,
/// `limit` (a server's total budget) may hold padding back. Replaces any cover traffic
/// the connection had. Call within a tokio runtime.
pub(crate) fn start(
    sender: PacketSender,
    tap: Arc<CoverTap>,
    engine: Cover,
    limit: Option<Arc<CoverLimit>>,
) -> CoverGuard {
    if let Some(l) = &limit {
        l.conns.fetch_add(1, Ordering::Relaxed);
    }
    let generation = tap.generation.fetch_add(1, Ordering::Relaxed) + 1;
    let old = tap
        .engine
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .replace(Box::new(Running {
            engine,
            limit,
            generation,
        }));
    if let Some(l) = old.and_then(|r| r.limit) {
        l.conns.fetch_sub(1, Ordering::Relaxed);
    }
    tap.active.store(true, Ordering::Relaxed);
    let task = tokio::spawn(run(sender, tap.clone(), generation));
    CoverGuard {
        task,
        tap,
        generation,
    }
}

async fn run(sender: PacketSender, tap: Arc<CoverTap>, generation: u64) {
    let mut sizes = Vec::with_capacity(PADDING_BATCH);
    loop {
        let Some(deadline) = tap
            .with(|r| {
                (r.generation == generation).then(|| {
                    let d = r.engine.poll_timeout();
                    let ns = d.map_or(u64::MAX, |t| tap.ns(t));
                    tap.sleeping.store(ns, Ordering::Relaxed);
                    d
                })
            })
            .flatten()
        else {
            // Stopped, or started again by another task.
            return;
        };
        match deadline {
            Some(t) => {
                tokio::select! {
                    () = tokio::time::sleep_until(t.into()) => {}
                    () = tap.wake.notified() => {}
                }
            }
            None => tap.wake.notified().await,
        }
        let now = Instant::now();
        sizes.clear();
        let allowed = tap.with(|r| {
            while sizes.len() < PADDING_BATCH {
                match r.engine.poll_padding(now) {
                    Some(s) => sizes.push(s),
                    None => break,
                }
            }
            let want = sizes.len() as u64;
            r.limit.as_ref().map_or(want, |l| l.allow(want, now))
        });
        let Some(allowed) = allowed else {
            return;
        };
        let held = sizes.len() as u64 - allowed;
        if held > 0 {
            tap.held_back.fetch_add(held, Ordering::Relaxed);
        }
        if allowed == 0 {
            continue;
        }
        let packets = sizes
            .iter()
            .take(usize::try_from(allowed).unwrap_or(usize::MAX))
            .filter_map(|s| {
                ControlMessage::from(Padding {
                    len: s.saturating_sub(HEADER_LEN),
                })
                .encode()
                .ok()
            });
        let batch = PacketBatch::from_packets(packets);
        let n = batch.len() as u64;
        if sender.send_padding(batch).await.is_err() {
            return;
        }
        tap.padding_out.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn padding_is_told_from_data_and_checked() {
        let p = ControlMessage::from(Padding { len: 40 }).encode().unwrap();
        assert!(is_padding(&p));
        assert!(padding_ok(&p));
        let mut bad = p.clone();
        bad[20] = 1;
        assert!(is_padding(&bad));
        assert!(!padding_ok(&bad));
        let mut short = p.clone();
        short.pop();
        assert!(!padding_ok(&short));
        let ip = [0x45u8; 40];
        assert!(!is_padding(&ip));
        let other = ControlMessage::from(control::AddressRequest)
            .encode()
            .unwrap();
        assert!(!is_padding(&other));
    }

    #[test]
    fn the_limit_holds_the_share_after_the_allowance() {
        let l = CoverLimit::new(100);
        let t = Instant::now();
        // Nothing real sent: only the allowance passes.
        assert_eq!(l.allow(1000, t), LIMIT_ALLOWANCE);
        // 9000 real packets: padding may reach 1000 of 10000.
        l.normal(9000, t);
        let more = l.allow(5000, t);
        assert_eq!(LIMIT_ALLOWANCE + more, 1000);
        // The next window starts with half of this one.
        let later = t + LIMIT_WINDOW;
        l.normal(0, later);
        let w = l.window(later);
        assert_eq!((w.carried_normal, w.carried_padding), (4500, 500));
        drop(w);
        // Two windows of silence forget everything.
        let much_later = later + 2 * LIMIT_WINDOW;
        assert_eq!(l.allow(1000, much_later), LIMIT_ALLOWANCE);
    }
}
