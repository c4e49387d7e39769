//! The server's half-open handshakes and their admission (docs/PROTOCOL.md §5, §7).
//!
//! A handshake is half-open from its first Init fragment until its Finish completes, in
//! one of two stages: an Init still being reassembled ([`InitBuffer`]), then a Resp sent
//! and a Finish awaited ([`Pending`]). A [`Table`] holds both, and bounds them:
//! - at most `max_pending_per_source` from one source ([`SourceKey`]: an IPv4 address, an
//!   IPv6 /64, or the real peer of a TLS/QUIC link), counted in a map kept in step with
//!   every insertion and removal, so admission costs O(1) whatever the table holds;
//! - at most `max_pending_handshakes` in all: a new Init into a full table replaces the
//!   oldest entry (a flood can race a client, not lock it out);
//! - every entry is forgotten `pending_timeout` after it was created, through a queue in
//!   creation order (O(1) per entry, and the next expiry is the queue's front);
//! - above `cookie_threshold` entries (or when forced) the server demands cookies, and
//!   from a source that holds half its share already;
//! - Inits from the address of an established connection (rekeys) have a table of their
//!   own ([`REKEY_RESERVE`] entries) that no other Init can fill or evict.
//!
//! The server's two handshake steps are pure methods of [`Table`]:
//! [`Table::respond`] answers a complete Init, [`Table::on_finish_fragment`]
//! verifies the client's Finish. A retransmitted Init whose Resp was lost gets the same
//! Resp again, never a second handshake.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use aura_pki::VerifiedPeer;
use rand_core::{CryptoRng, RngCore};

use super::cookie::{append_mac1, stamp_macs};
use crate::error::{AlertCode, DropReason, HandshakeError};
use crate::handshake::{Ctx, Responder};
use crate::keys::{DeploymentKeys, SessionKeys};
use crate::wire::{ALERT_LEN, Fragment, PacketType, Reassembly, VERSION_1, WireError, fragment};

/// The most times one handshake's Resp is sent again for retransmitted Inits.
pub(super) const MAX_RESP_RESENDS: u32 = 3;
/// The least time between two sendings of one handshake's Resp (the client's first
/// retransmission comes after 1 s).
pub(super) const RESP_RESEND_SPACING: Duration = Duration::from_millis(500);

/// Names an Init by where it came from and the client's index in it.
pub(super) type InitKey = (SocketAddr, u32);

/// What half-open handshakes are counted under: an IPv4 address, or an IPv6 /64 (one
/// host's or one subscriber's usual allocation).
pub(super) type SourceKey = [u8; 8];

/// The source `ip` is counted under.
pub(super) fn source_key(ip: IpAddr) -> SourceKey {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            [4, 0, 0, 0, o[0], o[1], o[2], o[3]]
        }
        IpAddr::V6(a) => {
            let o = a.octets();
            [o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]]
        }
    }
}

/// An entry of the expiry queue.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Init(InitKey),
    Pending(u32),
}

/// A handshake that sent its Resp and waits for the Finish.
#[derive(Debug)]
struct Pending {
    responder: Responder,
    remote: SocketAddr,
    source: SourceKey,
    client_index: u32,
    /// The Resp as sent, for a retransmitted Init.
    resp_datagrams: Vec<Vec<u8>>,
    /// Times the Resp was sent again, and when last.
    resends: u32,
    last_sent: Instant,
    finish: Option<Reassembly>,
    created: Instant,
}

impl Pending {
    /// Adds a fragment of the Finish; returns the whole Finish once complete.
    ///
    /// # Errors
    /// A fragment that does not fit the Finish being reassembled; the reassembly starts
    /// over.
    fn add_finish_fragment(&mut self, frag: &Fragment<'_>) -> Result<Option<Vec<u8>>, WireError> {
        let r = self
            .finish
            .get_or_insert_with(|| Reassembly::new(frag.msg_len));
        match r.add(frag) {
            Ok(Some(m)) => Ok(Some(m.to_vec())),
            Ok(None) => Ok(None),
            Err(e) => {
                self.finish = None;
                Err(e)
            }
        }
    }

    /// The alert refusing this client with `code`, sealed under the server handshake
    /// key; `local_index` is this handshake's index on the server. `None` if sealing
    /// fails.
    fn alert(
        &self,
        deployment: &DeploymentKeys,
        local_index: u32,
        code: AlertCode,
    ) -> Option<Vec<u8>> {
        let sealed = self.responder.seal_alert(code.to_u8()).ok()?;
        let mut d = Vec::with_capacity(ALERT_LEN);
        d.push(PacketType::Alert as u8);
        d.push(VERSION_1);
        d.extend_from_slice(&local_index.to_be_bytes());
        d.extend_from_slice(&self.client_index.to_be_bytes());
        d.extend_from_slice(&sealed);
        append_mac1(deployment, &mut d);
        Some(d)
    }
}

/// A client the server verified, from a complete Finish.
#[derive(Debug)]
pub(super) struct Established {
    pub client_index: u32,
    pub keys: SessionKeys,
    pub peer: VerifiedPeer,
}

/// What a Finish fragment did.
#[derive(Debug)]
pub(super) enum FinishStep {
    /// The Finish is not complete yet.
    Incomplete,
    /// The client is verified; the handshake is done and gone from the table.
    Established(Box<Established>),
    /// The Finish did not verify; the handshake still waits for a genuine one.
    Failed(HandshakeError),
    /// The client's certificate was refused; the handshake is gone, and `alert` (unless
    /// sealing failed) tells the client why.
    Refused {
        error: HandshakeError,
        alert: Option<Vec<u8>>,
    },
}

/// An Init being reassembled.
#[derive(Debug)]
struct InitBuffer {
    reassembly: Reassembly,
    created: Instant,
    source: SourceKey,
}

/// Admission limits and the size of the Resp's datagrams, from the endpoint's
/// configuration.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub max_pending: usize,
    pub max_per_source: usize,
    pub cookie_threshold: usize,
    pub max_datagram: usize,
}

/// One table of half-open handshakes, with its limits.
#[derive(Debug)]
pub(super) struct Table {
    limits: Limits,
    /// By the server's index of the handshake.
    pending: HashMap<u32, Pending>,
    /// Inits answered, to the server's index of their handshake.
    responded: HashMap<InitKey, u32>,
    init_buffers: HashMap<InitKey, InitBuffer>,
    /// Entries of `pending` and `init_buffers` from each source.
    per_source: HashMap<SourceKey, usize>,
    /// Every entry by creation time, oldest first (entries already gone are skipped).
    order: VecDeque<(Instant, Slot)>,
    force_cookies: bool,
}

impl Table {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            pending: HashMap::new(),
            responded: HashMap::new(),
            init_buffers: HashMap::new(),
            per_source: HashMap::new(),
            order: VecDeque::new(),
            force_cookies: false,
        }
    }

    /// Handshakes in progress (both stages).
    pub fn len(&self) -> usize {
        self.pending.len() + self.init_buffers.len()
    }

    /// Whether `index` names a handshake waiting for its Finish.
    pub fn contains_index(&self, index: u32) -> bool {
        self.pending.contains_key(&index)
    }

    /// Forces (or stops forcing) cookies for every handshake.
    pub fn set_force_cookies(&mut self, on: bool) {
        self.force_cookies = on;
    }

    /// Whether a cookie-less Init from `source` must be answered with a cookie reply:
    /// the table is under load, or `source` holds half its share already. The second
    /// half of a source's share is open only to senders that receive at their address,
    /// so one who spoofs a client's address cannot take all of it.
    pub fn under_load(&self, source: SourceKey) -> bool {
        let held = self.per_source.get(&source).copied().unwrap_or(0);
        self.force_cookies
            || self.len() >= self.limits.cookie_threshold
            || held >= self.limits.max_per_source.div_ceil(2)
    }

    /// For an Init already answered: the Resp to send again (only for its first fragment,
    /// so one retransmitted Init gets one Resp; at most [`MAX_RESP_RESENDS`] times, at
    /// least [`RESP_RESEND_SPACING`] apart). `None` for an Init not answered yet.
    pub fn answered(
        &mut self,
        key: InitKey,
        first_fragment: bool,
        now: Instant,
    ) -> Option<Vec<Vec<u8>>> {
        let local = self.responded.get(&key)?;
        let resend = self.pending.get_mut(local).filter(|p| {
            first_fragment
                && p.resends < MAX_RESP_RESENDS
                && now.saturating_duration_since(p.last_sent) >= RESP_RESEND_SPACING
        });
        Some(match resend {
            Some(p) => {
                p.resends += 1;
                p.last_sent = now;
                p.resp_datagrams.clone()
            }
            None => Vec::new(),
        })
    }

    /// Adds a fragment of an Init from `source`, admitting a new Init only within the
    /// source's share; a full table gives up its oldest entry for it. Returns the whole
    /// Init once complete; its buffer is then gone.
    ///
    /// # Errors
    /// [`DropReason::Overloaded`] for a new Init beyond its source's share;
    /// [`DropReason::Malformed`] for a fragment that does not fit its Init (the buffer is
    /// dropped).
    pub fn add_init_fragment(
        &mut self,
        key: InitKey,
        source: SourceKey,
        frag: &Fragment<'_>,
        now: Instant,
    ) -> Result<Option<Vec<u8>>, DropReason> {
        let limits = self.limits;
        if !self.init_buffers.contains_key(&key) {
            if self.per_source.get(&source).copied().unwrap_or(0) >= limits.max_per_source {
                return Err(DropReason::Overloaded);
            }
            while self.len() >= limits.max_pending {
                if !self.evict_oldest() {
                    return Err(DropReason::Overloaded);
                }
            }
            *self.per_source.entry(source).or_insert(0) += 1;
            self.order.push_back((now, Slot::Init(key)));
        }
        let buffer = self.init_buffers.entry(key).or_insert_with(|| InitBuffer {
            reassembly: Reassembly::new(frag.msg_len),
            created: now,
            source,
        });
        let msg = match buffer.reassembly.add(frag) {
            Ok(Some(msg)) => msg.to_vec(),
            Ok(None) => return Ok(None),
            Err(e) => {
                self.remove_init_buffer(key);
                return Err(DropReason::Malformed(e));
            }
        };
        self.remove_init_buffer(key);
        Ok(Some(msg))
    }

    fn remove_init_buffer(&mut self, key: InitKey) {
        if let Some(b) = self.init_buffers.remove(&key) {
            release(&mut self.per_source, b.source);
        }
    }

    /// Removes the oldest entry still present; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((created, slot)) = self.order.pop_front() {
            if self.take_if_created(slot, created) {
                return true;
            }
        }
        false
    }

    /// Removes the entry `slot` names if it is the one created at `created` (not a later
    /// entry under the same name); whether it did.
    fn take_if_created(&mut self, slot: Slot, created: Instant) -> bool {
        match slot {
            Slot::Init(key) => {
                let live = self
                    .init_buffers
                    .get(&key)
                    .is_some_and(|b| b.created == created);
                if live {
                    self.remove_init_buffer(key);
                }
                live
            }
            Slot::Pending(index) => {
                let live = self
                    .pending
                    .get(&index)
                    .is_some_and(|p| p.created == created);
                if live {
                    self.remove(index);
                }
                live
            }
        }
    }

    /// Answers a complete Init from `key` as handshake `local_index`: builds the Resp,
    /// keeps the handshake waiting for its Finish, and returns the Resp's datagrams (MACs
    /// stamped) to send. Randomness: the Resp's, from `rng`.
    ///
    /// # Errors
    /// Why the Init was refused; nothing is kept.
    pub fn respond<R: RngCore + CryptoRng>(
        &mut self,
        rng: &mut R,
        (key, source): (InitKey, SourceKey),
        local_index: u32,
        init: &[u8],
        ctx: &Ctx<'_>,
        now: Instant,
    ) -> Result<Vec<Vec<u8>>, HandshakeError> {
        let (remote, client_index) = key;
        let (responder, resp) = Responder::respond(rng, client_index, local_index, init, ctx)?;
        let mut datagrams = fragment(
            PacketType::Resp,
            local_index,
            client_index,
            &resp,
            self.limits.max_datagram,
        );
        for d in &mut datagrams {
            stamp_macs(ctx.deployment, d, None);
        }
        let pending = Pending {
            responder,
            remote,
            source,
            client_index,
            resp_datagrams: datagrams.clone(),
            resends: 0,
            last_sent: now,
            finish: None,
            created: now,
        };
        self.responded.insert(key, local_index);
        if let Some(old) = self.pending.insert(local_index, pending) {
            release(&mut self.per_source, old.source);
        }
        *self.per_source.entry(source).or_insert(0) += 1;
        self.order.push_back((now, Slot::Pending(local_index)));
        Ok(datagrams)
    }

    /// Adds a fragment of the Finish of handshake `local_index`; when it completes the
    /// Finish, verifies the client.
    ///
    /// # Errors
    /// [`DropReason::UnknownIndex`] when no such handshake waits for this client's Finish,
    /// [`DropReason::Malformed`] for a fragment that does not fit the Finish.
    pub fn on_finish_fragment(
        &mut self,
        local_index: u32,
        frag: &Fragment<'_>,
        ctx: &Ctx<'_>,
    ) -> Result<FinishStep, DropReason> {
        let pending = self
            .pending
            .get_mut(&local_index)
            .filter(|p| p.client_index == frag.sender)
            .ok_or(DropReason::UnknownIndex)?;
        let Some(msg) = pending
            .add_finish_fragment(frag)
            .map_err(DropReason::Malformed)?
        else {
            return Ok(FinishStep::Incomplete);
        };
        match pending.responder.on_finish(&msg, ctx) {
            Ok((keys, peer)) => {
                let client_index = pending.client_index;
                self.remove(local_index);
                Ok(FinishStep::Established(Box::new(Established {
                    client_index,
                    keys,
                    peer,
                })))
            }
            Err(error) => {
                // A forged or corrupted Finish must not kill the handshake; a refused
                // client certificate is final.
                pending.finish = None;
                let HandshakeError::PeerCertificate(e) = &error else {
                    return Ok(FinishStep::Failed(error));
                };
                let code = AlertCode::for_verify_error(e);
                let alert = pending.alert(ctx.deployment, local_index, code);
                self.remove(local_index);
                Ok(FinishStep::Refused { error, alert })
            }
        }
    }

    /// Takes a handshake out (completed, refused or expired).
    fn remove(&mut self, local_index: u32) -> Option<Pending> {
        let p = self.pending.remove(&local_index)?;
        self.responded.remove(&(p.remote, p.client_index));
        release(&mut self.per_source, p.source);
        Some(p)
    }

    /// Forgets every handshake created `timeout` or longer before `now`: O(1) per entry
    /// forgotten.
    pub fn expire(&mut self, now: Instant, timeout: Duration) {
        while let Some(&(created, slot)) = self.order.front() {
            if now.saturating_duration_since(created) < timeout {
                break;
            }
            self.order.pop_front();
            self.take_if_created(slot, created);
        }
    }

    /// When the oldest entry expires (an entry already gone makes it early, never late).
    pub fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        self.order.front().map(|(created, _)| *created + timeout)
    }
}

/// Half-open handshakes kept for rekeys: Inits from the address of an established
/// connection go to a table of their own, which Inits from anywhere else cannot fill or
/// evict (review H1: a flood must not stop an established client from rekeying).
pub(super) const REKEY_RESERVE: usize = 1024;

/// Every half-open handshake of a server: the table everyone shares, and the reserve
/// for rekeys ([`REKEY_RESERVE`]). Which one an Init goes to is the caller's `rekey`;
/// Finish fragments find theirs by index.
#[derive(Debug)]
pub(super) struct HalfOpen {
    shared: Table,
    rekeys: Table,
}

impl HalfOpen {
    pub fn new(limits: Limits) -> Self {
        let reserve = Limits {
            max_pending: REKEY_RESERVE,
            cookie_threshold: limits.cookie_threshold.min(REKEY_RESERVE / 4),
            ..limits
        };
        Self {
            shared: Table::new(limits),
            rekeys: Table::new(reserve),
        }
    }

    fn table(&mut self, rekey: bool) -> &mut Table {
        if rekey {
            &mut self.rekeys
        } else {
            &mut self.shared
        }
    }

    /// Handshakes in progress, in both tables.
    pub fn len(&self) -> usize {
        self.shared.len() + self.rekeys.len()
    }

    /// Handshakes in progress in the rekey reserve.
    pub fn rekeys_len(&self) -> usize {
        self.rekeys.len()
    }

    /// Whether `index` names a handshake waiting for its Finish.
    pub fn contains_index(&self, index: u32) -> bool {
        self.shared.contains_index(index) || self.rekeys.contains_index(index)
    }

    /// Forces (or stops forcing) cookies for every handshake.
    pub fn set_force_cookies(&mut self, on: bool) {
        self.shared.set_force_cookies(on);
        self.rekeys.set_force_cookies(on);
    }

    /// Whether a cookie-less Init from `source` must get a cookie reply.
    pub fn under_load(&self, source: SourceKey, rekey: bool) -> bool {
        if rekey {
            self.rekeys.under_load(source)
        } else {
            self.shared.under_load(source)
        }
    }

    /// See [`Table::answered`]; looks in both tables.
    pub fn answered(
        &mut self,
        key: InitKey,
        first_fragment: bool,
        now: Instant,
    ) -> Option<Vec<Vec<u8>>> {
        match self.shared.answered(key, first_fragment, now) {
            Some(r) => Some(r),
            None => self.rekeys.answered(key, first_fragment, now),
        }
    }

    /// See [`Table::add_init_fragment`], in the table `rekey` names.
    pub fn add_init_fragment(
        &mut self,
        key: InitKey,
        source: SourceKey,
        frag: &Fragment<'_>,
        now: Instant,
        rekey: bool,
    ) -> Result<Option<Vec<u8>>, DropReason> {
        self.table(rekey).add_init_fragment(key, source, frag, now)
    }

    /// See [`Table::respond`], in the table `rekey` names.
    #[allow(clippy::too_many_arguments)]
    pub fn respond<R: RngCore + CryptoRng>(
        &mut self,
        rng: &mut R,
        init_from: (InitKey, SourceKey),
        local_index: u32,
        init: &[u8],
        ctx: &Ctx<'_>,
        now: Instant,
        rekey: bool,
    ) -> Result<Vec<Vec<u8>>, HandshakeError> {
        self.table(rekey)
            .respond(rng, init_from, local_index, init, ctx, now)
    }

    /// See [`Table::on_finish_fragment`], in whichever table holds `local_index`.
    pub fn on_finish_fragment(
        &mut self,
        local_index: u32,
        frag: &Fragment<'_>,
        ctx: &Ctx<'_>,
    ) -> Result<FinishStep, DropReason> {
        let rekey = self.rekeys.contains_index(local_index);
        self.table(rekey).on_finish_fragment(local_index, frag, ctx)
    }

    /// Forgets what is `timeout` old, in both tables.
    pub fn expire(&mut self, now: Instant, timeout: Duration) {
        self.shared.expire(now, timeout);
        self.rekeys.expire(now, timeout);
    }

    /// When the oldest entry of either table expires.
    pub fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        match (
            self.shared.next_expiry(timeout),
            self.rekeys.next_expiry(timeout),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// One entry from `source` is gone.
fn release(per_source: &mut HashMap<SourceKey, usize>, source: SourceKey) {
    if let Entry::Occupied(mut e) = per_source.entry(source) {
        *e.get_mut() = e.get().saturating_sub(1);
        if *e.get() == 0 {
            e.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::wire::MAC_LEN;

    fn frag(sender: u32, offset: u16, data: &[u8]) -> Fragment<'_> {
        Fragment {
            ty: PacketType::Init,
            sender,
            receiver: 0,
            msg_len: 1000,
            offset,
            data,
            mac1: [0; MAC_LEN],
            mac2: [0; MAC_LEN],
        }
    }

    /// The counted map agrees with a scan of both tables.
    fn counts_match(h: &Table) -> bool {
        let mut scanned: HashMap<SourceKey, usize> = HashMap::new();
        for (remote, _) in h.init_buffers.keys() {
            *scanned.entry(source_key(remote.ip())).or_insert(0) += 1;
        }
        for p in h.pending.values() {
            *scanned.entry(source_key(p.remote.ip())).or_insert(0) += 1;
        }
        scanned == h.per_source
    }

    /// An Init fragment from `key`, counted under its address's source.
    fn add(
        h: &mut Table,
        key: InitKey,
        f: &Fragment<'_>,
        now: Instant,
    ) -> Result<Option<Vec<u8>>, DropReason> {
        h.add_init_fragment(key, source_key(key.0.ip()), f, now)
    }

    #[test]
    fn per_source_limit_is_counted_and_released() {
        let t0 = Instant::now();
        let limits = Limits {
            max_pending: 10,
            max_per_source: 2,
            cookie_threshold: 5,
            max_datagram: 1232,
        };
        let a = |port| SocketAddr::from(([192, 0, 2, 1], port));
        let b = SocketAddr::from(([192, 0, 2, 2], 1));
        let mut h = Table::new(limits);
        let part = [0u8; 250];
        assert_eq!(add(&mut h, (a(1), 1), &frag(1, 0, &part), t0), Ok(None));
        assert_eq!(add(&mut h, (a(2), 2), &frag(2, 0, &part), t0), Ok(None));
        // A third Init from the same address is refused; more of a known one is not.
        assert_eq!(
            add(&mut h, (a(3), 3), &frag(3, 0, &part), t0),
            Err(DropReason::Overloaded)
        );
        assert_eq!(add(&mut h, (a(1), 1), &frag(1, 250, &part), t0), Ok(None));
        assert_eq!(add(&mut h, (b, 4), &frag(4, 0, &part), t0), Ok(None));
        assert!(counts_match(&h));
        // A fragment that does not fit drops its buffer and frees the address's slot.
        assert!(matches!(
            add(&mut h, (a(2), 2), &frag(2, 5, &part), t0),
            Err(DropReason::Malformed(_))
        ));
        assert!(counts_match(&h));
        assert_eq!(add(&mut h, (a(3), 3), &frag(3, 0, &part), t0), Ok(None));
        // A complete Init leaves its buffer.
        let whole = [1u8; 100];
        let mut done = frag(5, 0, &whole);
        done.msg_len = 100;
        assert_eq!(add(&mut h, (b, 5), &done, t0), Ok(Some(whole.to_vec())));
        assert!(counts_match(&h));
        assert_eq!(h.len(), 3);
        // Expiry empties the table and the counts.
        h.expire(t0 + Duration::from_secs(10), Duration::from_secs(10));
        assert_eq!(h.len(), 0);
        assert!(h.per_source.is_empty());
    }

    #[test]
    fn a_full_table_gives_up_its_oldest_entry() {
        let t0 = Instant::now();
        let limits = Limits {
            max_pending: 2,
            max_per_source: 16,
            cookie_threshold: 5,
            max_datagram: 1232,
        };
        let mut h = Table::new(limits);
        let part = [0u8; 250];
        let key = |i: u8| (SocketAddr::from(([198, 51, 100, i], 1)), u32::from(i));
        for i in 0..2u8 {
            let at = t0 + Duration::from_millis(u64::from(i));
            assert_eq!(add(&mut h, key(i), &frag(key(i).1, 0, &part), at), Ok(None));
        }
        // A third source: the oldest Init (from .0) goes, the newcomer gets its place.
        let at = t0 + Duration::from_millis(5);
        assert_eq!(add(&mut h, key(9), &frag(9, 0, &part), at), Ok(None));
        assert_eq!(h.len(), 2);
        assert!(!h.init_buffers.contains_key(&key(0)));
        assert!(h.init_buffers.contains_key(&key(1)) && h.init_buffers.contains_key(&key(9)));
        assert!(counts_match(&h));
        // Expiry follows creation order; the next expiry is the oldest remaining entry's.
        let timeout = Duration::from_secs(10);
        assert_eq!(
            h.next_expiry(timeout),
            Some(t0 + Duration::from_millis(1) + timeout)
        );
        h.expire(t0 + timeout + Duration::from_millis(1), timeout);
        assert_eq!(h.len(), 1, "only .1's Init was old enough");
        h.expire(t0 + timeout + Duration::from_millis(5), timeout);
        assert_eq!(h.len(), 0);
        assert!(h.per_source.is_empty());
    }

    #[test]
    fn an_ipv6_64_is_one_source() {
        let t0 = Instant::now();
        let limits = Limits {
            max_pending: 100,
            max_per_source: 2,
            cookie_threshold: 50,
            max_datagram: 1232,
        };
        let mut h = Table::new(limits);
        let part = [0u8; 250];
        let host = |n: u16| SocketAddr::from(([0x2001, 0xdb8, 1, 2, 0, 0, 0, n], 443));
        assert_eq!(add(&mut h, (host(1), 1), &frag(1, 0, &part), t0), Ok(None));
        assert_eq!(add(&mut h, (host(2), 2), &frag(2, 0, &part), t0), Ok(None));
        // Another address of the same /64: over the share.
        assert_eq!(
            add(&mut h, (host(3), 3), &frag(3, 0, &part), t0),
            Err(DropReason::Overloaded)
        );
        // Another /64 is another source.
        let other = SocketAddr::from(([0x2001, 0xdb8, 1, 3, 0, 0, 0, 1], 443));
        assert_eq!(add(&mut h, (other, 4), &frag(4, 0, &part), t0), Ok(None));
        assert!(counts_match(&h));
    }

    /// Half of a source's share is open to cookie-less Inits; the rest needs a cookie, so
    /// one who spoofs a client's address cannot hold all of it.
    #[test]
    fn a_source_past_half_its_share_needs_cookies() {
        let t0 = Instant::now();
        let limits = Limits {
            max_pending: 100,
            max_per_source: 4,
            cookie_threshold: 50,
            max_datagram: 1232,
        };
        let mut h = Table::new(limits);
        let part = [0u8; 250];
        let a = |port| SocketAddr::from(([192, 0, 2, 1], port));
        let src = source_key(a(1).ip());
        assert!(!h.under_load(src));
        assert_eq!(add(&mut h, (a(1), 1), &frag(1, 0, &part), t0), Ok(None));
        assert!(!h.under_load(src));
        assert_eq!(add(&mut h, (a(2), 2), &frag(2, 0, &part), t0), Ok(None));
        assert!(h.under_load(src), "two of four held: cookies from here on");
        assert!(!h.under_load(source_key(SocketAddr::from(([192, 0, 2, 2], 1)).ip())));
    }

    /// Review H1: with the shared table full and flooded without pause, a rekey held in
    /// the reserve is never evicted, and the flood never lands in the reserve.
    #[test]
    fn a_flood_never_evicts_a_rekey_from_the_reserve() {
        let t0 = Instant::now();
        let limits = Limits {
            max_pending: 64,
            max_per_source: 16,
            cookie_threshold: 1000,
            max_datagram: 1232,
        };
        let mut h = HalfOpen::new(limits);
        let part = [0u8; 250];
        let client = SocketAddr::from(([192, 0, 2, 7], 4000));
        let src = source_key(client.ip());
        assert_eq!(
            h.add_init_fragment((client, 77), src, &frag(77, 0, &part), t0, true),
            Ok(None)
        );
        for i in 0..10_000u32 {
            let from = SocketAddr::from(([203, 0, (i >> 8) as u8, i as u8], 9));
            let f = frag(i, 0, &part);
            let r = h.add_init_fragment((from, i), source_key(from.ip()), &f, t0, false);
            assert_eq!(
                r,
                Ok(None),
                "a flood Init is admitted (evicting the oldest)"
            );
        }
        assert_eq!(h.len(), 64 + 1);
        assert_eq!(h.rekeys_len(), 1);
        assert!(h.rekeys.init_buffers.contains_key(&(client, 77)));
        // The same Init without the reserve is gone under the same flood.
        let mut shared = Table::new(limits);
        add(&mut shared, (client, 77), &frag(77, 0, &part), t0).unwrap();
        for i in 0..100u32 {
            let from = SocketAddr::from(([203, 0, 0, i as u8], 9));
            add(&mut shared, (from, i), &frag(i, 0, &part), t0).unwrap();
        }
        assert!(!shared.init_buffers.contains_key(&(client, 77)));
    }
}
