//! The server's half-open handshakes and their admission (docs/PROTOCOL.md §5, §7).
//!
//! A handshake is half-open from its first Init fragment until its Finish completes, in
//! one of two stages: an Init still being reassembled ([`InitBuffer`]), then a Resp sent
//! and a Finish awaited ([`Pending`]). [`HalfOpen`] holds both, and bounds them:
//! - at most `max_pending_handshakes` in all, and at most `max_pending_per_source` from
//!   one source IP address, counted in a map kept in step with every insertion and
//!   removal, so admission costs O(1) whatever the table holds;
//! - every entry is forgotten `pending_timeout` after it was created;
//! - above `cookie_threshold` entries (or when forced) the server demands cookies.
//!
//! The server's two handshake steps are pure methods of [`HalfOpen`]:
//! [`HalfOpen::respond`] answers a complete Init, [`HalfOpen::on_finish_fragment`]
//! verifies the client's Finish. A retransmitted Init whose Resp was lost gets the same
//! Resp again, never a second handshake.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
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

/// A handshake that sent its Resp and waits for the Finish.
#[derive(Debug)]
struct Pending {
    responder: Responder,
    remote: SocketAddr,
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
    /// The client's certificate, re-checked when the verifier changes.
    pub cert: Vec<u8>,
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

/// Every half-open handshake of a server.
#[derive(Debug)]
pub(super) struct HalfOpen {
    limits: Limits,
    /// By the server's index of the handshake.
    pending: HashMap<u32, Pending>,
    /// Inits answered, to the server's index of their handshake.
    responded: HashMap<InitKey, u32>,
    init_buffers: HashMap<InitKey, InitBuffer>,
    /// Entries of `pending` and `init_buffers` from each source address.
    per_source: HashMap<IpAddr, usize>,
    force_cookies: bool,
}

impl HalfOpen {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            pending: HashMap::new(),
            responded: HashMap::new(),
            init_buffers: HashMap::new(),
            per_source: HashMap::new(),
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

    /// Whether a cookie-less Init must be answered with a cookie reply.
    pub fn under_load(&self) -> bool {
        self.force_cookies || self.len() >= self.limits.cookie_threshold
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

    /// Adds a fragment of an Init, admitting a new Init only within the limits. Returns
    /// the whole Init once complete; its buffer is then gone.
    ///
    /// # Errors
    /// [`DropReason::Overloaded`] for a new Init beyond a limit; [`DropReason::Malformed`]
    /// for a fragment that does not fit its Init (the buffer is dropped).
    pub fn add_init_fragment(
        &mut self,
        key: InitKey,
        frag: &Fragment<'_>,
        now: Instant,
    ) -> Result<Option<Vec<u8>>, DropReason> {
        let limits = self.limits;
        if !self.init_buffers.contains_key(&key) {
            if self.len() >= limits.max_pending {
                return Err(DropReason::Overloaded);
            }
            let ip = key.0.ip();
            if self.per_source.get(&ip).copied().unwrap_or(0) >= limits.max_per_source {
                return Err(DropReason::Overloaded);
            }
            *self.per_source.entry(ip).or_insert(0) += 1;
        }
        let buffer = self.init_buffers.entry(key).or_insert_with(|| InitBuffer {
            reassembly: Reassembly::new(frag.msg_len),
            created: now,
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
        if self.init_buffers.remove(&key).is_some() {
            release(&mut self.per_source, key.0.ip());
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
        key: InitKey,
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
            client_index,
            resp_datagrams: datagrams.clone(),
            resends: 0,
            last_sent: now,
            finish: None,
            created: now,
        };
        self.responded.insert(key, local_index);
        if let Some(old) = self.pending.insert(local_index, pending) {
            release(&mut self.per_source, old.remote.ip());
        }
        *self.per_source.entry(remote.ip()).or_insert(0) += 1;
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
            Ok((keys, peer, cert)) => {
                let client_index = pending.client_index;
                self.remove(local_index);
                Ok(FinishStep::Established(Box::new(Established {
                    client_index,
                    keys,
                    peer,
                    cert,
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
        release(&mut self.per_source, p.remote.ip());
        Some(p)
    }

    /// Forgets every handshake created `timeout` or longer before `now`.
    pub fn expire(&mut self, now: Instant, timeout: Duration) {
        let expired: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.created) >= timeout)
            .map(|(i, _)| *i)
            .collect();
        for i in expired {
            self.remove(i);
        }
        let per_source = &mut self.per_source;
        self.init_buffers.retain(|(remote, _), b| {
            let keep = now.saturating_duration_since(b.created) < timeout;
            if !keep {
                release(per_source, remote.ip());
            }
            keep
        });
    }

    /// When the oldest handshake waiting for its Finish expires.
    pub fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        self.pending.values().map(|p| p.created + timeout).min()
    }
}

/// One entry from `ip` is gone.
fn release(per_source: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Entry::Occupied(mut e) = per_source.entry(ip) {
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
            msg_len: 100,
            offset,
            data,
            mac1: [0; MAC_LEN],
            mac2: [0; MAC_LEN],
        }
    }

    /// The counted map agrees with a scan of both tables.
    fn counts_match(h: &HalfOpen) -> bool {
        let mut scanned: HashMap<IpAddr, usize> = HashMap::new();
        for (remote, _) in h.init_buffers.keys() {
            *scanned.entry(remote.ip()).or_insert(0) += 1;
        }
        for p in h.pending.values() {
            *scanned.entry(p.remote.ip()).or_insert(0) += 1;
        }
        scanned == h.per_source
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
        let mut h = HalfOpen::new(limits);
        let part = [0u8; 10];
        assert_eq!(
            h.add_init_fragment((a(1), 1), &frag(1, 0, &part), t0),
            Ok(None)
        );
        assert_eq!(
            h.add_init_fragment((a(2), 2), &frag(2, 0, &part), t0),
            Ok(None)
        );
        // A third Init from the same address is refused; more of a known one is not.
        assert_eq!(
            h.add_init_fragment((a(3), 3), &frag(3, 0, &part), t0),
            Err(DropReason::Overloaded)
        );
        assert_eq!(
            h.add_init_fragment((a(1), 1), &frag(1, 10, &part), t0),
            Ok(None)
        );
        assert_eq!(
            h.add_init_fragment((b, 4), &frag(4, 0, &part), t0),
            Ok(None)
        );
        assert!(counts_match(&h));
        // A fragment that does not fit drops its buffer and frees the address's slot.
        assert!(matches!(
            h.add_init_fragment((a(2), 2), &frag(2, 5, &part), t0),
            Err(DropReason::Malformed(_))
        ));
        assert!(counts_match(&h));
        assert_eq!(
            h.add_init_fragment((a(3), 3), &frag(3, 0, &part), t0),
            Ok(None)
        );
        // A complete Init leaves its buffer.
        let whole = [1u8; 100];
        let mut done = frag(5, 0, &whole);
        done.msg_len = 100;
        assert_eq!(
            h.add_init_fragment((b, 5), &done, t0),
            Ok(Some(whole.to_vec()))
        );
        assert!(counts_match(&h));
        assert_eq!(h.len(), 3);
        // Expiry empties the table and the counts.
        h.expire(t0 + Duration::from_secs(10), Duration::from_secs(10));
        assert_eq!(h.len(), 0);
        assert!(h.per_source.is_empty());
    }

    #[test]
    fn total_limit_holds_across_sources() {
        let t0 = Instant::now();
        let limits = Limits {
            max_pending: 2,
            max_per_source: 16,
            cookie_threshold: 5,
            max_datagram: 1232,
        };
        let mut h = HalfOpen::new(limits);
        let part = [0u8; 10];
        for i in 0..2u8 {
            let key = (SocketAddr::from(([198, 51, 100, i], 1)), u32::from(i));
            assert_eq!(
                h.add_init_fragment(key, &frag(key.1, 0, &part), t0),
                Ok(None)
            );
        }
        let key = (SocketAddr::from(([198, 51, 100, 9], 1)), 9);
        assert_eq!(
            h.add_init_fragment(key, &frag(9, 0, &part), t0),
            Err(DropReason::Overloaded)
        );
        assert!(counts_match(&h));
    }
}
