//! A simulated datagram network with latency, jitter, loss, duplication, an MTU, NAT
//! rebinding, blackholes and an eavesdropper.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::SimClock;

/// Default one-way latency of a link.
pub const DEFAULT_LATENCY: Duration = Duration::from_millis(10);

/// Default largest datagram a link carries, in bytes: the UDP payload that fits a
/// 1280-byte IPv6 packet (1280 − 40 IPv6 header − 8 UDP header).
pub const DEFAULT_MTU: usize = 1232;

/// The behaviour of one direction of a path.
///
/// Probabilities are in `0.0..=1.0`: a value of 0 (or below, or NaN) never fires and 1
/// (or above) always fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Fixed one-way delay.
    pub latency: Duration,
    /// Extra delay drawn uniformly from `0..jitter` per datagram; anything above zero
    /// reorders datagrams sent closer together than `jitter`.
    pub jitter: Duration,
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram is delivered twice (the copy gets its own jitter).
    pub duplicate: f64,
    /// Datagrams longer than this many bytes are dropped (counted in
    /// [`NetStats::too_big`]).
    pub mtu: usize,
}

impl Default for LinkConfig {
    /// [`DEFAULT_LATENCY`], no jitter, no loss, no duplication, [`DEFAULT_MTU`].
    fn default() -> Self {
        LinkConfig {
            latency: DEFAULT_LATENCY,
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            mtu: DEFAULT_MTU,
        }
    }
}

/// One datagram, as delivered to a node or as seen by the eavesdropper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// For a delivery: when it arrives. For a captured datagram: when it was sent.
    pub at: Instant,
    /// The source address as seen on the wire (after NAT rebinding).
    pub from: SocketAddr,
    /// For a delivery: the receiving node's own address. For a captured datagram: the
    /// destination the sender addressed it to.
    pub to: SocketAddr,
    /// The datagram.
    pub data: Vec<u8>,
}

/// Counters kept by [`SimNet`].
///
/// Every [`SimNet::send`] is counted in `sent`, then at most once in one of `blackholed`,
/// `too_big` and `lost` (a datagram that passes is scheduled, plus a copy counted in
/// `duplicated`). Scheduled datagrams end in `delivered`, or in `blackholed` or
/// `unroutable` when they reach their destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetStats {
    /// Datagrams handed to [`SimNet::send`].
    pub sent: u64,
    /// Datagrams handed to [`SimNet::inject`].
    pub injected: u64,
    /// Datagrams returned by [`SimNet::pop_due`] / [`SimNet::deliver_due`].
    pub delivered: u64,
    /// Datagrams dropped by the link's loss probability.
    pub lost: u64,
    /// Extra copies scheduled by the link's duplication probability.
    pub duplicated: u64,
    /// Datagrams dropped for exceeding the link's MTU.
    pub too_big: u64,
    /// Datagrams dropped because their source or destination is blackholed.
    pub blackholed: u64,
    /// Datagrams that arrived at a public address no longer mapped to any node (the
    /// address a node had before [`SimNet::rebind`]).
    pub unroutable: u64,
}

/// A datagram in flight. Ordered so that the `BinaryHeap` pops the earliest `at`, then
/// the lowest `seq` (send order).
#[derive(Debug)]
struct InFlight {
    at: Instant,
    seq: u64,
    /// The sending node's own address (for blackhole checks on arrival).
    from_node: SocketAddr,
    /// The source as seen on the wire.
    from: SocketAddr,
    /// The destination as addressed.
    to: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for InFlight {}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A deterministic simulated datagram network for sans-IO endpoints.
///
/// Nodes are identified by their own [`SocketAddr`]. A test moves bytes between
/// endpoints: what an endpoint transmits goes into [`send`](Self::send) with the current
/// virtual time, and what [`pop_due`](Self::pop_due) / [`deliver_due`](Self::deliver_due)
/// returns is fed back in as received datagrams. The network never reads a clock: all
/// times are parameters (use [`SimClock`]).
///
/// # Model
///
/// * **Links.** Each direction of a path uses its [`LinkConfig`] (set by
///   [`set_path`](Self::set_path), keyed by the sender's and the receiver's *node*
///   addresses) or the default one ([`set_link`](Self::set_link)). A datagram arrives
///   `latency + U(0, jitter)` after it was sent. Deliveries come out in arrival order,
///   ties in send order.
/// * **NAT rebinding.** After [`rebind(node, public)`](Self::rebind), datagrams `node`
///   sends carry source `public`, and datagrams addressed to `public` are delivered to
///   `node`. The node's previous public address (initially its own address) stops
///   working: datagrams to it, including ones already in flight, are dropped as
///   `unroutable`, like a NAT mapping that expired.
/// * **Blackholes.** A datagram whose source or destination is blackholed when it is
///   sent or when it arrives is silently dropped.
/// * **Eavesdropper.** Every datagram given to [`send`](Self::send) is recorded, as
///   sent on the wire, before any drop, in [`captured`](Self::captured). Injected
///   datagrams (the attacker's own) are not recorded.
///
/// # Determinism
///
/// All randomness comes from a ChaCha20 RNG seeded by [`SimNet::new`]; each `send` draws
/// from it in a fixed pattern. The same seed, configuration and call sequence give the
/// same deliveries.
#[derive(Debug)]
pub struct SimNet {
    rng: ChaCha20Rng,
    default_link: LinkConfig,
    paths: HashMap<(SocketAddr, SocketAddr), LinkConfig>,
    queue: BinaryHeap<InFlight>,
    next_seq: u64,
    /// node → its public address.
    nat_out: HashMap<SocketAddr, SocketAddr>,
    /// public address → node.
    nat_in: HashMap<SocketAddr, SocketAddr>,
    /// Public addresses whose mapping was replaced by a rebind.
    retired: HashSet<SocketAddr>,
    blackholed: HashSet<SocketAddr>,
    capture: bool,
    captured: Vec<Delivery>,
    stats: NetStats,
}

impl SimNet {
    /// An empty network whose randomness is seeded by `seed`, with the default
    /// [`LinkConfig`] on every path and capture on.
    pub fn new(seed: u64) -> Self {
        SimNet {
            rng: ChaCha20Rng::seed_from_u64(seed),
            default_link: LinkConfig::default(),
            paths: HashMap::new(),
            queue: BinaryHeap::new(),
            next_seq: 0,
            nat_out: HashMap::new(),
            nat_in: HashMap::new(),
            retired: HashSet::new(),
            blackholed: HashSet::new(),
            capture: true,
            captured: Vec::new(),
            stats: NetStats::default(),
        }
    }

    /// Sets the link used by every path without its own [`set_path`](Self::set_path).
    pub fn set_link(&mut self, link: LinkConfig) {
        self.default_link = link;
    }

    /// Sets the link for datagrams from node `from` to node `to` (one direction).
    pub fn set_path(&mut self, from: SocketAddr, to: SocketAddr, link: LinkConfig) {
        self.paths.insert((from, to), link);
    }

    /// The link datagrams from node `from` to node `to` use.
    pub fn link(&self, from: SocketAddr, to: SocketAddr) -> LinkConfig {
        self.paths
            .get(&(from, to))
            .copied()
            .unwrap_or(self.default_link)
    }

    /// NAT rebinding: from now on `node`'s datagrams leave with source `new_public`, and
    /// datagrams to `new_public` reach `node`. Its previous public address stops working.
    pub fn rebind(&mut self, node: SocketAddr, new_public: SocketAddr) {
        let old = self.public_addr(node);
        if old == new_public {
            return;
        }
        self.nat_in.remove(&old);
        self.retired.insert(old);
        self.retired.remove(&new_public);
        self.nat_out.insert(node, new_public);
        self.nat_in.insert(new_public, node);
    }

    /// The source address `node`'s datagrams carry on the wire.
    pub fn public_addr(&self, node: SocketAddr) -> SocketAddr {
        self.nat_out.get(&node).copied().unwrap_or(node)
    }

    /// Blocks (`true`) or unblocks (`false`) all traffic to and from `addr` (a node's own
    /// or public address).
    pub fn blackhole(&mut self, addr: SocketAddr, blocked: bool) {
        if blocked {
            self.blackholed.insert(addr);
        } else {
            self.blackholed.remove(&addr);
        }
    }

    /// Turns the eavesdropper's recording on or off (on by default; turn it off for
    /// long runs).
    pub fn set_capture(&mut self, on: bool) {
        self.capture = on;
    }

    /// Every datagram sent so far (since the last [`take_captured`](Self::take_captured)),
    /// in send order, with `at` = send time.
    pub fn captured(&self) -> &[Delivery] {
        &self.captured
    }

    /// Returns and clears the captured datagrams.
    pub fn take_captured(&mut self) -> Vec<Delivery> {
        std::mem::take(&mut self.captured)
    }

    /// The counters.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Number of datagrams in flight (including ones that will be dropped on arrival).
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Node `from` sends `datagram` to `to` at `now`. The bytes are copied; the datagram
    /// is recorded by the eavesdropper, then may be dropped (blackhole, MTU, loss) or
    /// duplicated according to the path's [`LinkConfig`].
    pub fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, datagram: &[u8]) {
        self.stats.sent = self.stats.sent.saturating_add(1);
        let wire_from = self.public_addr(from);
        if self.capture {
            self.captured.push(Delivery {
                at: now,
                from: wire_from,
                to,
                data: datagram.to_vec(),
            });
        }
        // Fixed draw pattern per send, whatever the outcome.
        let loss_roll = self.unit();
        let dup_roll = self.unit();
        let to_node = self.resolve(to).unwrap_or(to);
        let link = self.link(from, to_node);
        if self.any_blackholed(&[from, wire_from, to, to_node]) {
            self.stats.blackholed = self.stats.blackholed.saturating_add(1);
            return;
        }
        if datagram.len() > link.mtu {
            self.stats.too_big = self.stats.too_big.saturating_add(1);
            return;
        }
        if loss_roll < link.loss {
            self.stats.lost = self.stats.lost.saturating_add(1);
            return;
        }
        self.schedule(now, &link, from, wire_from, to, datagram);
        if dup_roll < link.duplicate {
            self.stats.duplicated = self.stats.duplicated.saturating_add(1);
            self.schedule(now, &link, from, wire_from, to, datagram);
        }
    }

    /// An attacker sends `datagram` to `to` with the (possibly spoofed) source `from`,
    /// at `now`. Like [`send`](Self::send) but never lost or duplicated, not rewritten by
    /// NAT, and not captured; latency, jitter, MTU and blackholes still apply (the link
    /// is the one from node `from`, if it is one, to `to`).
    pub fn inject(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, datagram: &[u8]) {
        self.stats.injected = self.stats.injected.saturating_add(1);
        let to_node = self.resolve(to).unwrap_or(to);
        let link = self.link(from, to_node);
        if self.any_blackholed(&[from, to, to_node]) {
            self.stats.blackholed = self.stats.blackholed.saturating_add(1);
            return;
        }
        if datagram.len() > link.mtu {
            self.stats.too_big = self.stats.too_big.saturating_add(1);
            return;
        }
        self.schedule(now, &link, from, from, to, datagram);
    }

    /// When the earliest datagram in flight arrives (it may still be dropped on arrival).
    pub fn next_delivery(&self) -> Option<Instant> {
        self.queue.peek().map(|d| d.at)
    }

    /// The earliest of [`next_delivery`](Self::next_delivery) and the nodes' timers
    /// (e.g. each endpoint's `poll_timeout()`): the next instant a simulation loop has
    /// to wake up at.
    pub fn next_event(&self, timers: &[Option<Instant>]) -> Option<Instant> {
        timers
            .iter()
            .flatten()
            .copied()
            .chain(self.next_delivery())
            .min()
    }

    /// The next datagram due at or before `now` (earliest arrival first, ties in send
    /// order), or `None`. Datagrams to a blackholed or retired address are dropped here.
    ///
    /// Prefer this over [`deliver_due`](Self::deliver_due) when handling a delivery can
    /// send new datagrams that are themselves due by `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Delivery> {
        loop {
            if self.queue.peek()?.at > now {
                return None;
            }
            let d = self.queue.pop()?;
            let Some(node) = self.resolve(d.to) else {
                self.stats.unroutable = self.stats.unroutable.saturating_add(1);
                continue;
            };
            if self.any_blackholed(&[d.from_node, d.from, d.to, node]) {
                self.stats.blackholed = self.stats.blackholed.saturating_add(1);
                continue;
            }
            self.stats.delivered = self.stats.delivered.saturating_add(1);
            return Some(Delivery {
                at: d.at,
                from: d.from,
                to: node,
                data: d.data,
            });
        }
    }

    /// All datagrams due at or before `now`, in delivery order.
    pub fn deliver_due(&mut self, now: Instant) -> Vec<Delivery> {
        std::iter::from_fn(|| self.pop_due(now)).collect()
    }

    /// Runs the network alone until `deadline`: advances `clock` to each arrival time and
    /// calls `on_delivery(net, delivery, now)`, which may send replies through `net`.
    /// Returns the number of deliveries; the clock ends at `deadline` (or later, if it
    /// was already past it).
    ///
    /// This drives deliveries only. When endpoints have timers, write the loop with
    /// [`next_event`](Self::next_event) instead.
    pub fn run_until(
        &mut self,
        clock: &mut SimClock,
        deadline: Instant,
        mut on_delivery: impl FnMut(&mut SimNet, Delivery, Instant),
    ) -> usize {
        let mut count = 0;
        while let Some(at) = self.next_delivery() {
            if at > deadline {
                break;
            }
            clock.advance_to(at);
            let now = clock.now();
            while let Some(d) = self.pop_due(now) {
                count += 1;
                on_delivery(self, d, now);
            }
        }
        clock.advance_to(deadline);
        count
    }

    /// The node a datagram addressed to `to` reaches, or `None` if `to` is a retired
    /// public address.
    fn resolve(&self, to: SocketAddr) -> Option<SocketAddr> {
        match self.nat_in.get(&to) {
            Some(node) => Some(*node),
            None if self.retired.contains(&to) => None,
            None => Some(to),
        }
    }

    fn any_blackholed(&self, addrs: &[SocketAddr]) -> bool {
        !self.blackholed.is_empty() && addrs.iter().any(|a| self.blackholed.contains(a))
    }

    /// A uniform draw in `[0, 1)` with 53 bits of precision.
    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn schedule(
        &mut self,
        now: Instant,
        link: &LinkConfig,
        from_node: SocketAddr,
        from: SocketAddr,
        to: SocketAddr,
        data: &[u8],
    ) {
        let jitter_nanos = u64::try_from(link.jitter.as_nanos()).unwrap_or(u64::MAX);
        let extra = match jitter_nanos {
            0 => 0,
            n => self.rng.next_u64() % n,
        };
        let delay = link.latency.saturating_add(Duration::from_nanos(extra));
        let Some(at) = now.checked_add(delay) else {
            // Unrepresentable arrival time: the datagram never arrives.
            self.stats.lost = self.stats.lost.saturating_add(1);
            return;
        };
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.queue.push(InFlight {
            at,
            seq,
            from_node,
            from,
            to,
            data: data.to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn a() -> SocketAddr {
        addr("10.0.0.1:4000")
    }

    fn b() -> SocketAddr {
        addr("10.0.0.2:5000")
    }

    /// Sends `n` numbered datagrams from a to b, one per millisecond, and drains them.
    fn run(net: &mut SimNet, n: u32) -> Vec<Delivery> {
        run_from(net, SimClock::new().now(), n)
    }

    fn run_from(net: &mut SimNet, t0: Instant, n: u32) -> Vec<Delivery> {
        for i in 0..n {
            let now = t0 + Duration::from_millis(u64::from(i));
            net.send(now, a(), b(), &i.to_be_bytes());
        }
        net.deliver_due(t0 + Duration::from_secs(3600))
    }

    fn ids(ds: &[Delivery]) -> Vec<u32> {
        ds.iter()
            .map(|d| u32::from_be_bytes(d.data.as_slice().try_into().unwrap()))
            .collect()
    }

    fn messy() -> LinkConfig {
        LinkConfig {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(15),
            loss: 0.2,
            duplicate: 0.1,
            ..LinkConfig::default()
        }
    }

    #[test]
    fn default_link_delivers_in_order_after_latency() {
        let mut net = SimNet::new(1);
        let clock = SimClock::new();
        let t0 = clock.now();
        net.send(t0, a(), b(), b"one");
        net.send(t0, a(), b(), b"two");
        assert_eq!(net.next_delivery(), Some(t0 + DEFAULT_LATENCY));
        assert!(net.deliver_due(t0 + Duration::from_millis(9)).is_empty());
        let ds = net.deliver_due(t0 + DEFAULT_LATENCY);
        assert_eq!(ds.len(), 2);
        assert_eq!(ds[0].data, b"one");
        assert_eq!(ds[1].data, b"two");
        assert_eq!(
            (ds[0].from, ds[0].to, ds[0].at),
            (a(), b(), t0 + DEFAULT_LATENCY)
        );
        assert_eq!(net.next_delivery(), None);
        let s = net.stats();
        assert_eq!((s.sent, s.delivered, s.lost), (2, 2, 0));
    }

    #[test]
    fn same_seed_same_deliveries() {
        let go = |seed| {
            let mut net = SimNet::new(seed);
            net.set_link(messy());
            // Each run has its own clock base: compare arrival times relative to it.
            let t0 = SimClock::new().now();
            let ds = run_from(&mut net, t0, 500);
            let timeline: Vec<(Duration, u32)> = ds
                .iter()
                .zip(ids(&ds))
                .map(|(d, id)| (d.at.saturating_duration_since(t0), id))
                .collect();
            (timeline, net.stats())
        };
        let (first, stats) = go(42);
        assert!(go(42) == (first.clone(), stats), "same seed, different run");
        assert!(go(43).0 != first, "different seeds, same run");
        assert!(stats.lost > 0 && stats.duplicated > 0);
    }

    #[test]
    fn loss_rate_close_to_configured() {
        let mut net = SimNet::new(7);
        net.set_capture(false);
        net.set_link(LinkConfig {
            loss: 0.1,
            ..LinkConfig::default()
        });
        let ds = run(&mut net, 10_000);
        let s = net.stats();
        // Expected 1000 lost, standard deviation 30: ±200 is far outside any seed's luck.
        assert!((800..=1200).contains(&s.lost), "lost {}", s.lost);
        assert_eq!(ds.len() as u64, 10_000 - s.lost);
        assert_eq!(s.delivered, 10_000 - s.lost);
    }

    #[test]
    fn mtu_drops_oversize() {
        let mut net = SimNet::new(1);
        let t0 = SimClock::new().now();
        net.send(t0, a(), b(), &[0; DEFAULT_MTU]);
        net.send(t0, a(), b(), &[0; DEFAULT_MTU + 1]);
        net.set_path(
            a(),
            b(),
            LinkConfig {
                mtu: 100,
                ..LinkConfig::default()
            },
        );
        net.send(t0, a(), b(), &[0; 101]);
        net.send(t0, b(), a(), &[0; 101]); // the other direction keeps the default
        let ds = net.deliver_due(t0 + Duration::from_secs(1));
        assert_eq!(ds.len(), 2);
        assert_eq!(ds[0].data.len(), DEFAULT_MTU);
        assert_eq!(ds[1].to, a());
        assert_eq!(net.stats().too_big, 2);
        assert_eq!(
            net.captured().len(),
            4,
            "the eavesdropper sees oversize too"
        );
    }

    #[test]
    fn duplication() {
        let mut net = SimNet::new(3);
        net.set_link(LinkConfig {
            duplicate: 1.0,
            ..LinkConfig::default()
        });
        let ds = run(&mut net, 10);
        assert_eq!(
            ids(&ds),
            [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9]
        );
        assert_eq!(net.stats().duplicated, 10);
        assert_eq!(net.stats().delivered, 20);
    }

    #[test]
    fn jitter_reorders_but_keeps_time_order() {
        let mut net = SimNet::new(5);
        net.set_link(LinkConfig {
            jitter: Duration::from_millis(30),
            ..LinkConfig::default()
        });
        let ds = run(&mut net, 200);
        let got = ids(&ds);
        assert_eq!(got.len(), 200);
        assert!(got.windows(2).any(|w| w[0] > w[1]), "no reordering");
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..200).collect::<Vec<_>>());
        assert!(ds.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn ties_come_out_in_send_order() {
        let mut net = SimNet::new(9);
        let t0 = SimClock::new().now();
        let c = addr("10.0.0.3:6000");
        net.set_path(
            c,
            b(),
            LinkConfig {
                latency: Duration::from_millis(5),
                ..LinkConfig::default()
            },
        );
        net.send(t0, a(), b(), b"a1");
        net.send(t0 + Duration::from_millis(5), c, b(), b"c1");
        net.send(t0, a(), b(), b"a2");
        let ds = net.deliver_due(t0 + Duration::from_secs(1));
        let data: Vec<&[u8]> = ds.iter().map(|d| d.data.as_slice()).collect();
        assert_eq!(data, [b"a1", b"c1", b"a2"]);
    }

    #[test]
    fn rebind_rewrites_source_and_routes_replies() {
        let mut net = SimNet::new(1);
        let t0 = SimClock::new().now();
        let nat1 = addr("203.0.113.7:40000");
        let nat2 = addr("203.0.113.7:40001");
        net.rebind(a(), nat1);
        assert_eq!(net.public_addr(a()), nat1);
        net.send(t0, a(), b(), b"hello");
        let d = net.pop_due(t0 + DEFAULT_LATENCY).unwrap();
        assert_eq!((d.from, d.to), (nat1, b()));
        // The reply to the public address reaches the node's own address.
        net.send(d.at, b(), nat1, b"reply");
        // The node's own address is no longer reachable from outside.
        net.send(d.at, b(), a(), b"stale");
        let ds = net.deliver_due(d.at + DEFAULT_LATENCY);
        assert_eq!(ds.len(), 1);
        assert_eq!(
            (ds[0].from, ds[0].to, ds[0].data.as_slice()),
            (b(), a(), &b"reply"[..])
        );
        assert_eq!(net.stats().unroutable, 1);

        // Rebinding again while a reply is in flight to the old mapping: it is lost.
        let t1 = d.at + DEFAULT_LATENCY;
        net.send(t1, b(), nat1, b"in flight");
        net.rebind(a(), nat2);
        net.send(t1, a(), b(), b"roamed");
        let ds = net.deliver_due(t1 + DEFAULT_LATENCY);
        assert_eq!(ds.len(), 1);
        assert_eq!((ds[0].from, ds[0].data.as_slice()), (nat2, &b"roamed"[..]));
        assert_eq!(net.stats().unroutable, 2);
    }

    #[test]
    fn blackhole_drops_both_directions_and_in_flight() {
        let mut net = SimNet::new(1);
        let t0 = SimClock::new().now();
        net.send(t0, a(), b(), b"in flight");
        net.blackhole(b(), true);
        net.send(t0, a(), b(), b"to");
        net.send(t0, b(), a(), b"from");
        assert!(net.deliver_due(t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(net.stats().blackholed, 3);
        net.blackhole(b(), false);
        net.send(t0 + Duration::from_secs(1), a(), b(), b"back");
        assert_eq!(net.deliver_due(t0 + Duration::from_secs(2)).len(), 1);
    }

    #[test]
    fn capture_and_inject() {
        let mut net = SimNet::new(1);
        net.set_link(LinkConfig {
            loss: 1.0,
            ..LinkConfig::default()
        });
        let t0 = SimClock::new().now();
        net.send(t0, a(), b(), b"secret");
        assert!(net.deliver_due(t0 + Duration::from_secs(1)).is_empty());
        let cap = net.captured().to_vec();
        assert_eq!(cap.len(), 1);
        assert_eq!((cap[0].at, cap[0].from, cap[0].to), (t0, a(), b()));

        // Replay and tamper: injection bypasses loss and is not captured itself.
        let t1 = t0 + Duration::from_secs(1);
        let mut tampered = cap[0].data.clone();
        tampered[0] ^= 1;
        net.inject(t1, cap[0].from, cap[0].to, &cap[0].data);
        net.inject(t1, cap[0].from, cap[0].to, &tampered);
        let ds = net.deliver_due(t1 + DEFAULT_LATENCY);
        assert_eq!(ds.len(), 2);
        assert_eq!(ds[0].data, b"secret");
        assert_eq!(ds[1].data, b"recret");
        assert_eq!(ds[0].from, a());
        assert_eq!(net.take_captured().len(), 1);
        assert!(net.captured().is_empty());
        assert_eq!(net.stats().injected, 2);
    }

    #[test]
    fn run_until_and_next_event() {
        let mut net = SimNet::new(1);
        let mut clock = SimClock::new();
        let t0 = clock.now();
        let timer = Some(t0 + Duration::from_millis(3));
        assert_eq!(net.next_event(&[None, timer]), timer);
        net.send(t0, a(), b(), b"ping");
        assert_eq!(net.next_event(&[None]), Some(t0 + DEFAULT_LATENCY));
        assert_eq!(net.next_event(&[timer]), timer);

        // Ping-pong: each side answers until 5 round trips are done.
        let deadline = t0 + Duration::from_millis(95);
        let n = net.run_until(&mut clock, deadline, |net, d, now| {
            assert_eq!(d.at, now);
            net.send(now, d.to, d.from, &d.data);
        });
        assert_eq!(n, 9); // arrivals at 10, 20, ..., 90 ms
        assert_eq!(clock.now(), deadline);
        assert_eq!(net.in_flight(), 1);
    }
}
