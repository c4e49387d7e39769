//! Cover traffic inside the tunnel, driven by maybenot state machines (docs/PROTOCOL.md
//! §9, "Cover traffic"). Sans-IO: the caller reports what it sent and received, asks
//! when the next timer runs out, and sends the padding packets this says to send (each a
//! `Padding` control message of the size given, which the peer drops). Time is passed
//! in, and the randomness comes from a seed, so a run is reproducible under a simulated
//! clock.
//!
//! Each profile is one machine (`machines`):
//!
//! - `idle`: when nothing has been sent or received for 0.4–1.6 s, a small packet goes
//!   out, and again every 0.4–1.6 s while the tunnel stays idle: an idle tunnel keeps a
//!   faint heartbeat rather than falling silent.
//! - `bursts`: each packet of a burst may start a tail of 2–20 padding packets 1–15 ms
//!   apart, so where a burst ends and how long it was are blurred.
//! - `https`: as `bursts`, with a tail of 1–8 packets drawn from a web-like size mix
//!   (ACK-sized, mid-sized and full-sized), and each real packet answered by a small one
//!   now and then, so the size histogram moves toward HTTPS browsing.
//!
//! The budget caps padding as a share of all packets sent (maybenot's padding fraction,
//! per framework and per machine), after a small allowance at the start. `idle` pads only
//! silence, where there is no real traffic to take a share of: its timers bound it
//! instead, to at most 2.5 packets of at most 160 bytes a second (400 B/s), and the
//! budget does not apply to it.

use std::time::{Duration, Instant};

use aura_proto::control::{CoverProfile, HEADER_LEN, MAX_COVER_BUDGET};
use enum_map::EnumMap;
use maybenot::action::{Action, Timer};
use maybenot::dist::{Dist, DistType};
use maybenot::event::Event;
use maybenot::state::{State, Trans};
use maybenot::{Framework, Machine, MachineId, TriggerAction, TriggerEvent};
use rand_chacha_09::ChaCha20Rng;
use rand_chacha_09::rand_core::{RngCore, SeedableRng};

/// Padding packets a machine may send before the budget applies (the first moments of a
/// session have no real traffic to measure against).
const ALLOWANCE: u64 = 16;
/// The largest share of time real packets may be held (maybenot's blocking fraction).
const MAX_BLOCKING: f64 = 0.05;

/// Why a cover engine could not start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoverError {
    /// The budget is outside 1..=1000 per mille.
    #[error("cover budget {0} is out of range 1..=1000 per mille")]
    Budget(u16),
    /// The largest packet is too small to hold a padding message.
    #[error("a tunnel MTU of {0} bytes is too small for padding")]
    Mtu(usize),
    /// maybenot refused a machine (a bug in `machines`).
    #[error("cover machine: {0}")]
    Machine(String),
}

fn uniform(low: f64, high: f64) -> Dist {
    Dist::new(DistType::Uniform { low, high }, 0.0, 0.0)
}

fn state(action: Option<Action>, on: &[(Event, Vec<Trans>)]) -> State {
    let mut t: EnumMap<Event, Vec<Trans>> = EnumMap::default();
    for (e, to) in on {
        t[*e] = to.clone();
    }
    let mut s = State::new(t);
    s.action = action;
    s
}

fn pad(timeout: Dist, limit: Option<Dist>) -> Option<Action> {
    Some(Action::SendPadding {
        bypass: false,
        replace: false,
        timeout,
        limit,
    })
}

/// The machine of `profile`, its padding share capped at `frac`.
fn machine(profile: CoverProfile, frac: f64) -> Result<Machine, CoverError> {
    use Event::{BlockingBegin, LimitReached, NormalRecv, NormalSent, PaddingSent};
    let traffic = |to: usize| {
        vec![
            (NormalSent, vec![Trans(to, 1.0)]),
            (NormalRecv, vec![Trans(to, 1.0)]),
        ]
    };
    let states = match profile {
        CoverProfile::Idle => {
            // 0: waiting for the first traffic; 1: a padding packet scheduled 0.4–1.6 s
            // out, pushed back by every packet, and scheduled again once sent.
            let mut on1 = traffic(1);
            on1.push((PaddingSent, vec![Trans(1, 1.0)]));
            vec![
                state(None, &traffic(1)),
                state(pad(uniform(400_000.0, 1_600_000.0), None), &on1),
            ]
        }
        CoverProfile::Bursts | CoverProfile::Https => {
            let (gap, tail, start) = match profile {
                CoverProfile::Bursts => ((1_000.0, 15_000.0), (2.0, 20.0), 0.3),
                _ => ((1_000.0, 25_000.0), (1.0, 8.0), 0.5),
            };
            // 0: idle; a real packet starts a tail (state 1) with probability `start`.
            // 1: padding every gap until the tail's limit, then back to 0; more
            // traffic keeps the tail going.
            // 2 (`bursts` only): a burst this side sends is held 2–10 ms first, so
            // where it starts moves; then its tail (state 1).
            let mut on1 = vec![
                (PaddingSent, vec![Trans(1, 1.0)]),
                (LimitReached, vec![Trans(0, 1.0)]),
            ];
            on1.extend(traffic(1));
            let start_tail = vec![Trans(1, start)];
            let sent = match profile {
                CoverProfile::Bursts => vec![Trans(2, start)],
                _ => start_tail.clone(),
            };
            let mut states = vec![
                state(None, &[(NormalSent, sent), (NormalRecv, start_tail)]),
                state(
                    pad(uniform(gap.0, gap.1), Some(uniform(tail.0, tail.1))),
                    &on1,
                ),
            ];
            if profile == CoverProfile::Bursts {
                states.push(state(
                    Some(Action::BlockOutgoing {
                        bypass: true,
                        replace: false,
                        timeout: uniform(0.0, 0.0),
                        duration: uniform(2_000.0, 10_000.0),
                        limit: None,
                    }),
                    &[
                        (BlockingBegin, vec![Trans(1, 1.0)]),
                        // More of the burst keeps the block pending; traffic back (or
                        // a block the limit refused) moves on to the tail.
                        (NormalSent, vec![Trans(2, 1.0)]),
                        (NormalRecv, vec![Trans(1, 1.0)]),
                    ],
                ));
            }
            states
        }
    };
    // Blocking: at most 5 % of the time, after the first 50 ms.
    Machine::new(ALLOWANCE, frac, 50_000, MAX_BLOCKING, states)
        .map_err(|e| CoverError::Machine(e.to_string()))
}

/// A machine's scheduled action.
#[derive(Debug, Clone, Copy)]
enum Due {
    /// Send a padding packet.
    Padding,
    /// Hold real packets for `duration` (longer blocking stays unless `replace`).
    Block { duration: Duration, replace: bool },
}

/// One side's cover traffic for one session.
#[derive(Debug)]
pub struct Cover {
    profile: CoverProfile,
    framework: Framework<Vec<Machine>, ChaCha20Rng>,
    /// When each machine's action is due, and what it is.
    action: Vec<Option<(Instant, Due)>>,
    /// Real packets wait until then (a machine's blocking), if set.
    blocked: Option<Instant>,
    /// When each machine's internal timer runs out.
    internal: Vec<Option<Instant>>,
    /// Events to feed on the next call (timers started by the last actions).
    pending: Vec<TriggerEvent>,
    /// For padding sizes.
    sizes: ChaCha20Rng,
    /// Largest padding packet (the tunnel MTU).
    mtu: usize,
    /// Padding packets due so far.
    pub padding_sent: u64,
    /// Real packets sent so far.
    pub normal_sent: u64,
}

impl Cover {
    /// A cover engine for `profile`, padding at most `budget` per mille of the packets it
    /// sends, each at most `mtu` bytes, with randomness from `seed`, started at `now` as
    /// if a packet had just been received (the negotiation's answer).
    ///
    /// # Errors
    /// A budget out of range or an MTU too small.
    pub fn new(
        profile: CoverProfile,
        budget: u16,
        mtu: usize,
        seed: [u8; 32],
        now: Instant,
    ) -> Result<Self, CoverError> {
        if budget == 0 || budget > MAX_COVER_BUDGET {
            return Err(CoverError::Budget(budget));
        }
        if mtu < HEADER_LEN + 32 {
            return Err(CoverError::Mtu(mtu));
        }
        // `idle` pads only silence, where no share of real traffic can be measured: its
        // timers bound it instead (one packet of at most 160 bytes per 0.4 s at most).
        let frac = match profile {
            CoverProfile::Idle => 0.0,
            _ => f64::from(budget) / f64::from(MAX_COVER_BUDGET),
        };
        let machines = vec![machine(profile, frac)?];
        let n = machines.len();
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut size_seed = [0u8; 32];
        rng.fill_bytes(&mut size_seed);
        let framework = Framework::new(machines, frac, MAX_BLOCKING, now, rng)
            .map_err(|e| CoverError::Machine(e.to_string()))?;
        let mut cover = Self {
            profile,
            framework,
            action: vec![None; n],
            blocked: None,
            internal: vec![None; n],
            pending: Vec::new(),
            sizes: ChaCha20Rng::from_seed(size_seed),
            mtu,
            padding_sent: 0,
            normal_sent: 0,
        };
        // Cover starts once negotiated: the peer's answer has just been received, and
        // silence counts from there (an idle tunnel is covered even if nothing follows).
        cover.trigger(TriggerEvent::NormalRecv, now);
        Ok(cover)
    }

    /// The profile.
    pub fn profile(&self) -> CoverProfile {
        self.profile
    }

    /// A real packet was sent.
    pub fn normal_sent(&mut self, now: Instant) {
        self.normal_sent += 1;
        self.trigger(TriggerEvent::NormalSent, now);
    }

    /// A real packet was received.
    pub fn normal_recv(&mut self, now: Instant) {
        self.trigger(TriggerEvent::NormalRecv, now);
    }

    /// A padding packet was received (and dropped).
    pub fn padding_recv(&mut self, now: Instant) {
        self.trigger(TriggerEvent::PaddingRecv, now);
    }

    /// `sent` real packets sent, `recv` real and `padding` padding packets received, all
    /// at `now`: the same as that many single calls, in one pass of the framework.
    pub fn traffic(&mut self, sent: u64, recv: u64, padding: u64, now: Instant) {
        if sent + recv + padding == 0 {
            return;
        }
        self.normal_sent += sent;
        let mut events = std::mem::take(&mut self.pending);
        for (n, e) in [
            (sent, TriggerEvent::NormalSent),
            (recv, TriggerEvent::NormalRecv),
            (padding, TriggerEvent::PaddingRecv),
        ] {
            for _ in 0..n {
                events.push(e.clone());
            }
        }
        let Some(last) = events.pop() else {
            return;
        };
        self.pending = events;
        self.trigger(last, now);
    }

    /// When the next timer runs out, if any is set (the end of blocking included).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.action
            .iter()
            .flatten()
            .map(|(t, _)| *t)
            .chain(self.internal.iter().flatten().copied())
            .chain(self.blocked)
            .min()
    }

    /// Until when real packets must wait (a machine blocks outgoing traffic), if they
    /// must. Padding is never held.
    pub fn blocked_until(&self) -> Option<Instant> {
        self.blocked
    }

    /// The size of the next padding packet due by `now` (the whole control message,
    /// header included), or `None` when none is due. Call until `None`.
    pub fn poll_padding(&mut self, now: Instant) -> Option<usize> {
        for m in 0..self.internal.len() {
            if self.internal[m].is_some_and(|t| t <= now) {
                self.internal[m] = None;
                let machine = MachineId::from_raw(m);
                self.trigger(TriggerEvent::TimerEnd { machine }, now);
            }
        }
        if self.blocked.is_some_and(|t| t <= now) {
            self.blocked = None;
            self.trigger(TriggerEvent::BlockingEnd, now);
        }
        loop {
            let m =
                (0..self.action.len()).find(|&m| self.action[m].is_some_and(|(t, _)| t <= now))?;
            let (_, due) = self.action[m].take()?;
            let machine = MachineId::from_raw(m);
            match due {
                Due::Padding => {
                    self.padding_sent += 1;
                    self.trigger(TriggerEvent::PaddingSent { machine }, now);
                    return Some(self.padding_len());
                }
                Due::Block { duration, replace } => {
                    let until = now + duration;
                    self.blocked = Some(match self.blocked {
                        Some(t) if !replace => t.max(until),
                        _ => until,
                    });
                    self.trigger(TriggerEvent::BlockingBegin { machine }, now);
                }
            }
        }
    }

    /// A padding size by the profile: `idle` small, `bursts` large, `https` a web mix.
    fn padding_len(&mut self) -> usize {
        let min = HEADER_LEN + 16;
        let r = self.sizes.next_u64();
        let span = |lo: usize, hi: usize, x: u64| {
            let width = u64::try_from(hi.saturating_sub(lo) + 1).unwrap_or(1);
            lo + usize::try_from(x % width).unwrap_or(0)
        };
        let mtu = self.mtu;
        match self.profile {
            CoverProfile::Idle => span(min, 160.min(mtu), r >> 8),
            CoverProfile::Bursts => span(mtu / 2, mtu, r >> 8),
            CoverProfile::Https => match r % 100 {
                // ACK-sized, as the many small packets of a TLS download.
                0..45 => span(min, 120.min(mtu), r >> 8),
                45..60 => span(120.min(mtu), 600.min(mtu), r >> 8),
                _ => mtu,
            },
        }
    }

    fn trigger(&mut self, event: TriggerEvent, now: Instant) {
        let mut events = std::mem::take(&mut self.pending);
        events.push(event);
        let Self {
            framework,
            action,
            internal,
            pending,
            ..
        } = self;
        for a in framework.trigger_events(&events, now) {
            match *a {
                TriggerAction::SendPadding {
                    timeout, machine, ..
                } => {
                    if let Some(slot) = action.get_mut(machine.into_raw()) {
                        *slot = Some((now + timeout, Due::Padding));
                    }
                }
                TriggerAction::BlockOutgoing {
                    timeout,
                    duration,
                    replace,
                    machine,
                    ..
                } => {
                    if let Some(slot) = action.get_mut(machine.into_raw()) {
                        *slot = Some((now + timeout, Due::Block { duration, replace }));
                    }
                }
                TriggerAction::Cancel { machine, timer } => {
                    let m = machine.into_raw();
                    if matches!(timer, Timer::Action | Timer::All)
                        && let Some(slot) = action.get_mut(m)
                    {
                        *slot = None;
                    }
                    if matches!(timer, Timer::Internal | Timer::All)
                        && let Some(slot) = internal.get_mut(m)
                    {
                        *slot = None;
                    }
                }
                TriggerAction::UpdateTimer {
                    duration,
                    replace,
                    machine,
                } => {
                    if let Some(slot) = internal.get_mut(machine.into_raw()) {
                        let until = now + duration;
                        *slot = Some(match *slot {
                            Some(t) if !replace => t.max(until),
                            _ => until,
                        });
                        pending.push(TriggerEvent::TimerBegin { machine });
                    }
                }
            }
        }
        events.clear();
        if self.pending.is_empty() {
            self.pending = events;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    /// Runs `profile` for `total` of simulated time with a real packet sent every
    /// `every` (none when `None`) and returns (time since start, size) of each padding
    /// packet.
    fn run(
        profile: CoverProfile,
        budget: u16,
        seed: u8,
        every: Option<Duration>,
        total: Duration,
    ) -> (Vec<(Duration, usize)>, Cover) {
        let t0 = Instant::now();
        let mut c = Cover::new(profile, budget, 1280, [seed; 32], t0).unwrap();
        c.normal_sent(t0);
        let mut out = Vec::new();
        let mut now = t0;
        let mut next_real = every.map(|e| t0 + e);
        while now < t0 + total {
            let next = [c.poll_timeout(), next_real]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(t0 + total)
                .min(t0 + total);
            now = next.max(now);
            if next_real.is_some_and(|t| t <= now) {
                c.normal_sent(now);
                next_real = every.map(|e| now + e);
            }
            while let Some(len) = c.poll_padding(now) {
                out.push((now - t0, len));
            }
            if c.poll_timeout().is_none() && next_real.is_none() {
                break;
            }
        }
        (out, c)
    }

    /// `bursts` delays real packets: bursts 300 ms apart, each a packet per ms for 20 ms
    /// (sent only while not blocked, as the driver holds them); each block lasts 2–10 ms,
    /// and blocking takes at most 5 % of the time after its first 50 ms.
    #[test]
    fn bursts_hold_real_packets_for_a_few_milliseconds_within_the_limit() {
        let t0 = Instant::now();
        let mut c = Cover::new(CoverProfile::Bursts, 500, 1280, [3; 32], t0).unwrap();
        let mut blocks: Vec<(Instant, Instant)> = Vec::new();
        let mut now = t0;
        let end = t0 + Duration::from_secs(30);
        let mut held = 0u32;
        while now < end {
            let in_burst = (now - t0).as_millis() % 300 < 20;
            let blocked = c.blocked_until().is_some_and(|t| t > now);
            if in_burst && !blocked {
                c.normal_sent(now);
            } else if in_burst {
                held += 1;
            }
            while c.poll_padding(now).is_some() {}
            if let Some(u) = c.blocked_until()
                && blocks.last().is_none_or(|(_, e)| *e != u)
            {
                blocks.push((now, u));
            }
            now += MS;
        }
        assert!(blocks.len() >= 5, "{} blocks", blocks.len());
        for (from, until) in &blocks {
            let d = *until - *from;
            assert!(d >= 2 * MS && d <= 10 * MS + MS, "{d:?}");
        }
        assert!(held > 0, "no packet waited");
        let total: Duration = blocks.iter().map(|(f, u)| *u - *f).sum();
        let budget = Duration::from_millis(50) + Duration::from_secs(30) / 20;
        assert!(total <= budget + 10 * MS, "blocked {total:?} of 30 s");
        // `https` never blocks.
        let mut h = Cover::new(CoverProfile::Https, 500, 1280, [3; 32], t0).unwrap();
        for i in 0..1000u64 {
            let at = t0 + Duration::from_millis(i);
            h.normal_sent(at);
            while h.poll_padding(at).is_some() {}
            assert!(h.blocked_until().is_none());
        }
    }

    #[test]
    fn the_same_seed_and_events_give_the_same_padding() {
        for p in [
            CoverProfile::Idle,
            CoverProfile::Bursts,
            CoverProfile::Https,
        ] {
            // Idle pads only a silent tunnel; the others pad around traffic.
            let every = (p != CoverProfile::Idle).then_some(10 * MS);
            let a = run(p, 500, 7, every, Duration::from_secs(5)).0;
            let b = run(p, 500, 7, every, Duration::from_secs(5)).0;
            let c = run(p, 500, 8, every, Duration::from_secs(5)).0;
            assert!(!a.is_empty(), "{p:?}");
            assert_eq!(a, b, "{p:?}");
            assert_ne!(a, c, "{p:?}: another seed, another schedule");
        }
    }

    #[test]
    fn idle_pads_a_silent_tunnel_and_stays_quiet_under_traffic() {
        // Silent for 20 s after one packet: a heartbeat every 0.4–1.6 s.
        let (pads, _) = run(CoverProfile::Idle, 1000, 1, None, Duration::from_secs(20));
        assert!((12..=50).contains(&pads.len()), "{} packets", pads.len());
        for w in pads.windows(2) {
            let gap = w[1].0 - w[0].0;
            assert!(gap >= 400 * MS && gap <= 1600 * MS, "{gap:?}");
        }
        assert!(
            pads.iter()
                .all(|(_, len)| (HEADER_LEN + 16..=160).contains(len))
        );
        // A packet every 100 ms keeps pushing the heartbeat back: no padding at all.
        let (busy, _) = run(
            CoverProfile::Idle,
            1000,
            1,
            Some(100 * MS),
            Duration::from_secs(20),
        );
        assert!(busy.is_empty(), "{busy:?}");
    }

    #[test]
    fn bursts_get_tails_and_the_budget_caps_them() {
        // A packet every 5 ms for 10 s: tails follow, within the budget of 20 %.
        let (pads, c) = run(
            CoverProfile::Bursts,
            200,
            3,
            Some(5 * MS),
            Duration::from_secs(10),
        );
        assert!(!pads.is_empty());
        let share = c.padding_sent as f64 / (c.padding_sent + c.normal_sent) as f64;
        assert!(share <= 0.2 + 0.01, "padding share {share}");
        assert!(pads.iter().all(|(_, len)| (640..=1280).contains(len)));
        // A larger budget lets more through.
        let (more, _) = run(
            CoverProfile::Bursts,
            900,
            3,
            Some(5 * MS),
            Duration::from_secs(10),
        );
        assert!(more.len() > pads.len(), "{} vs {}", more.len(), pads.len());
    }

    #[test]
    fn https_sizes_mix_small_and_full_packets() {
        let (pads, _) = run(
            CoverProfile::Https,
            1000,
            5,
            Some(20 * MS),
            Duration::from_secs(30),
        );
        let small = pads.iter().filter(|(_, l)| *l <= 120).count();
        let full = pads.iter().filter(|(_, l)| *l == 1280).count();
        assert!(pads.len() > 100, "{}", pads.len());
        assert!(
            small * 4 > pads.len() && full * 4 > pads.len(),
            "{small} small, {full} full of {}",
            pads.len()
        );
    }

    #[test]
    fn bad_budgets_and_mtus_are_refused() {
        let t0 = Instant::now();
        assert_eq!(
            Cover::new(CoverProfile::Idle, 0, 1280, [0; 32], t0).err(),
            Some(CoverError::Budget(0))
        );
        assert_eq!(
            Cover::new(CoverProfile::Idle, 1001, 1280, [0; 32], t0).err(),
            Some(CoverError::Budget(1001))
        );
        assert_eq!(
            Cover::new(CoverProfile::Https, 10, 20, [0; 32], t0).err(),
            Some(CoverError::Mtu(20))
        );
    }
}
