//! The UDP carrier's datagrams on the wire: no byte at a fixed offset, no cleartext field,
//! no zero padding, sizes from the day's mask (docs/PROTOCOL.md §3.2).
//!
//! Two forms; neither carries a type byte in clear, the receiver tries them in order.
//!
//! ```text
//! data form (Aura data datagrams, every packet after the handshake):
//!   header(13) ⊕ m[0..13] || ciphertext (≥ 16) || padding (keystream) || pad_len(2) ⊕ m[13..15]
//!   m = AES-256(udp mask key, ciphertext[0..16])
//!
//! handshake form (Init, Resp, Finish, cookie replies, alerts):
//!   raw = nonce(12) || AES-256-GCM(knock key of the direction, nonce, aad = "",
//!                                  time(8) || len(2) || datagram || zeros) || tag(16)
//!   client to server: the constant-weight code of raw (camo::weight), sized by the mask
//!   server to client: raw, sized by the padding profile
//! ```
//!
//! The data form costs 2 bytes and one AES block per datagram; the Aura header (type,
//! receiver, counter) is hidden as QUIC hides its packet numbers. The handshake form is the
//! knock ([`super::knock`]): a server opens it only with the knock key, within the time
//! window, once. Whatever opens in neither form is dropped without an answer.

use std::sync::{Arc, Mutex};

use aura_crypto::aead::{NONCE_LEN, TAG_LEN};
use aura_crypto::block::Keystream;
use aura_proto::wire::{DATA_HEADER_LEN, PacketType};

use super::knock::{KnockKeys, KnockRefusal, ReplayFilter, fresh};
use super::mask::{FIRST_FLIGHT_MIN, Mask};
use super::shape::MAX_PADDED;
use super::weight::{self, IN_BLOCK, OUT_BLOCK};

/// Bytes the data form adds before padding.
pub const DATA_FORM_OVERHEAD: usize = 2;
/// Bytes the handshake form adds before padding and encoding: nonce, time, length, tag.
pub const HANDSHAKE_FORM_OVERHEAD: usize = NONCE_LEN + 8 + 2 + TAG_LEN;
/// The largest handshake datagram a client may emit on UDP: its handshake form, encoded,
/// fits the smallest first-flight size a mask picks.
pub const CLIENT_MAX_HANDSHAKE_DATAGRAM: usize =
    FIRST_FLIGHT_MIN / OUT_BLOCK * IN_BLOCK - HANDSHAKE_FORM_OVERHEAD;
/// The longest runt: a datagram this short is neither form (the shortest data form, an
/// empty keepalive, is 31 bytes), and no byte string this short has a Shannon entropy of
/// 4.941 bits per byte or more, the least nDPI reads as "encrypted or random"
/// (log2 30 = 4.907).
pub const RUNT_MAX: usize = 30;
/// The shortest runt.
const RUNT_MIN: usize = 14;
/// An upper bound on the wire size of any datagram of `len` bytes.
pub const fn wire_len_bound(len: usize) -> usize {
    (len + HANDSHAKE_FORM_OVERHEAD + IN_BLOCK) / IN_BLOCK * OUT_BLOCK + MAX_PADDED
}

/// Which side of the carrier this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Dials, knocks.
    Client,
    /// Listens, checks knocks.
    Server,
}

/// The inner "datagram" of chaff: a type no Aura datagram has.
const CHAFF: [u8; 1] = [0];

/// Refusals counted by a server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Chaff received, runts included (dropped, as meant).
    pub chaff: u64,
    /// Opened in neither form.
    pub invalid: u64,
    /// A knock outside the time window.
    pub stale: u64,
    /// A knock seen before.
    pub replay: u64,
}

/// One side's UDP camouflage state.
#[derive(Debug)]
pub struct DatagramCamo {
    side: Side,
    keys: KnockKeys,
    stream: Keystream,
    /// Shared by every worker of a server: a knock replayed toward another worker is
    /// still a replay.
    replay: Arc<Mutex<ReplayFilter>>,
    /// Unix seconds at start: knocks older than this are refused.
    started: u64,
    scratch: Vec<u8>,
    /// Refusals so far.
    pub refusals: Refusals,
}

impl DatagramCamo {
    /// State for `side`, with keys from the deployment secret, a keystream seeded from the
    /// OS RNG (`seed`), started at Unix time `now`.
    pub fn new(side: Side, keys: KnockKeys, seed: &[u8; 32], now: u64) -> Self {
        Self {
            side,
            keys,
            // A 32-byte seed always makes a key.
            stream: Keystream::new(seed).unwrap_or_else(|_| unreachable_stream()),
            replay: Arc::new(Mutex::new(ReplayFilter::default())),
            started: now,
            scratch: Vec::with_capacity(2048),
            refusals: Refusals::default(),
        }
    }

    /// The filter of knocks seen (server), to share with other workers.
    pub fn replay_filter(&self) -> Arc<Mutex<ReplayFilter>> {
        self.replay.clone()
    }

    /// Checks knocks against `replay` (the filter of another worker of the same server)
    /// instead of its own.
    pub fn share_replay_filter(&mut self, replay: Arc<Mutex<ReplayFilter>>) {
        self.replay = replay;
    }

    /// Which side this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Appends a chaff datagram (the handshake form around a datagram of type 0, which
    /// the receiver drops) to `out`, at most `max_len` bytes when the side pads.
    pub fn append_chaff(&mut self, mask: &Mask, now: u64, max_len: usize, out: &mut Vec<u8>) {
        self.append_handshake(&CHAFF, mask, now, max_len, out);
    }

    /// Appends a runt: 14 to 30 keystream bytes, shorter than either form, which the
    /// receiver drops unread (docs/PROTOCOL.md §12.2: chaff).
    pub fn append_runt(&mut self, out: &mut Vec<u8>) {
        let span = (RUNT_MAX - RUNT_MIN + 1) as u64;
        let len = RUNT_MIN + usize::try_from(self.stream.next_u64() % span).unwrap_or(0);
        self.stream.extend(out, len);
    }

    /// Appends the wire form of Aura datagram `data` to `out`, sized by `mask`, at Unix
    /// time `now`, padded to at most [`MAX_PADDED`] (an IPv4 peer).
    pub fn append(&mut self, data: &[u8], mask: &Mask, now: u64, out: &mut Vec<u8>) {
        self.append_within(data, mask, now, MAX_PADDED, out);
    }

    /// A random value from the padding keystream (for sizes chosen elsewhere).
    pub fn noise(&mut self) -> u64 {
        self.stream.next_u64()
    }

    /// As [`Self::append`], padded to at most `max_len` bytes
    /// ([`super::shape::max_padded_for`] the peer): never less than the datagram needs.
    pub fn append_within(
        &mut self,
        data: &[u8],
        mask: &Mask,
        now: u64,
        max_len: usize,
        out: &mut Vec<u8>,
    ) {
        let is_data = data.first().is_some_and(|&t| PacketType::is_data(t))
            && data.len() >= DATA_HEADER_LEN + TAG_LEN;
        if is_data {
            self.append_data(data, mask, max_len, out);
        } else {
            self.append_handshake(data, mask, now, max_len, out);
        }
    }

    fn append_data(&mut self, data: &[u8], mask: &Mask, max_len: usize, out: &mut Vec<u8>) {
        let start = out.len();
        let bare = data.len() + DATA_FORM_OVERHEAD;
        let noise = self.stream.next_u64();
        let total = mask.padded_len(bare, noise).min(max_len.max(bare));
        let pad = total - bare;
        out.extend_from_slice(data);
        self.stream.extend(out, pad);
        let m = self.keys.udp_mask.mask(&sample(data));
        for (b, k) in out[start..start + DATA_HEADER_LEN].iter_mut().zip(m) {
            *b ^= k;
        }
        let pl = u16::try_from(pad).unwrap_or(0).to_be_bytes();
        out.push(pl[0] ^ m[13]);
        out.push(pl[1] ^ m[14]);
    }

    fn append_handshake(
        &mut self,
        data: &[u8],
        mask: &Mask,
        now: u64,
        max_len: usize,
        out: &mut Vec<u8>,
    ) {
        let need = data.len() + HANDSHAKE_FORM_OVERHEAD;
        let raw_len = match self.side {
            // A whole number of code blocks, at least the day's first-flight size.
            Side::Client => need
                .div_ceil(IN_BLOCK)
                .max(mask.first_flight_len / OUT_BLOCK)
                .saturating_mul(IN_BLOCK),
            Side::Server => mask
                .padded_len(need, self.stream.next_u64())
                .min(max_len.max(need)),
        };
        let key = match self.side {
            Side::Client => &self.keys.udp_c2s,
            Side::Server => &self.keys.udp_s2c,
        };
        let s = &mut self.scratch;
        s.clear();
        self.stream.extend(s, NONCE_LEN);
        s.extend_from_slice(&now.to_be_bytes());
        s.extend_from_slice(&u16::try_from(data.len()).unwrap_or(u16::MAX).to_be_bytes());
        s.extend_from_slice(data);
        s.resize(raw_len, 0);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&s[..NONCE_LEN]);
        let pt_len = raw_len - NONCE_LEN - TAG_LEN;
        // The buffer holds exactly plaintext + tag: sealing cannot fail.
        let _ = key.seal_in_place(&nonce, b"", &mut s[NONCE_LEN..], pt_len);
        match self.side {
            Side::Client => {
                let stream = &mut self.stream;
                weight::encode(s, mask.weight, || stream.next_u64(), out);
            }
            Side::Server => out.extend_from_slice(s),
        }
    }

    /// The Aura datagram inside wire datagram `d`, unmasked or opened in place; `None`
    /// for anything else. `knows(index)` tells whether a receiver index belongs to a live
    /// session of this side (the data form's check). `now` is the Unix time.
    pub fn open<'a>(
        &mut self,
        d: &'a mut [u8],
        now: u64,
        knows: impl Fn(u32) -> bool,
    ) -> Option<&'a mut [u8]> {
        if d.len() <= RUNT_MAX {
            self.refusals.chaff += 1;
            return None;
        }
        if let Some(len) = self.data_form_len(d, &knows) {
            return d.get_mut(..len);
        }
        match self.open_handshake(d, now) {
            Ok(r) if d.get(r.clone()) == Some(&CHAFF[..]) => {
                self.refusals.chaff += 1;
                None
            }
            Ok(r) => d.get_mut(r),
            Err(KnockRefusal::Invalid) => {
                self.refusals.invalid += 1;
                None
            }
            Err(KnockRefusal::Stale) => {
                self.refusals.stale += 1;
                None
            }
            Err(KnockRefusal::Replay) => {
                self.refusals.replay += 1;
                None
            }
        }
    }

    /// Unmasks a data-form datagram in place and returns the Aura datagram's length, when
    /// `d` is one for a live session; leaves `d` untouched otherwise.
    fn data_form_len(&self, d: &mut [u8], knows: &impl Fn(u32) -> bool) -> Option<usize> {
        let len = d.len();
        if len < DATA_HEADER_LEN + TAG_LEN + DATA_FORM_OVERHEAD {
            return None;
        }
        let m = self.keys.udp_mask.mask(&sample(d));
        if !PacketType::is_data(d[0] ^ m[0]) {
            return None;
        }
        let pad = usize::from(u16::from_be_bytes([d[len - 2] ^ m[13], d[len - 1] ^ m[14]]));
        let inner = len.checked_sub(DATA_FORM_OVERHEAD + pad)?;
        if inner < DATA_HEADER_LEN + TAG_LEN {
            return None;
        }
        let receiver = u32::from_be_bytes([d[1] ^ m[1], d[2] ^ m[2], d[3] ^ m[3], d[4] ^ m[4]]);
        if !knows(receiver) {
            return None;
        }
        for (b, k) in d[..DATA_HEADER_LEN].iter_mut().zip(m) {
            *b ^= k;
        }
        Some(inner)
    }

    /// Opens a handshake-form datagram in place; returns where its Aura datagram lies.
    fn open_handshake(
        &mut self,
        d: &mut [u8],
        now: u64,
    ) -> Result<std::ops::Range<usize>, KnockRefusal> {
        let (raw_len, key) = match self.side {
            Side::Server => (
                weight::decode_in_place(d).ok_or(KnockRefusal::Invalid)?,
                &self.keys.udp_c2s,
            ),
            Side::Client => (d.len(), &self.keys.udp_s2c),
        };
        if raw_len < HANDSHAKE_FORM_OVERHEAD {
            return Err(KnockRefusal::Invalid);
        }
        let raw = d.get_mut(..raw_len).ok_or(KnockRefusal::Invalid)?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&raw[..NONCE_LEN]);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&raw[raw_len - TAG_LEN..]);
        let pt = key
            .open_in_place(&nonce, b"", &mut raw[NONCE_LEN..])
            .map_err(|_| KnockRefusal::Invalid)?;
        let mut t = [0u8; 8];
        t.copy_from_slice(&pt[..8]);
        let time = u64::from_be_bytes(t);
        let len = usize::from(u16::from_be_bytes([pt[8], pt[9]]));
        if len == 0 || len > pt.len() - 10 {
            return Err(KnockRefusal::Invalid);
        }
        if self.side == Side::Server {
            fresh(time, now, self.started)?;
            self.replay
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .check_and_insert(tag, time, now)?;
        }
        let start = NONCE_LEN + 10;
        Ok(start..start + len)
    }
}

/// The 16 ciphertext bytes a data datagram's mask is computed from.
fn sample(d: &[u8]) -> [u8; 16] {
    let mut s = [0u8; 16];
    if let Some(b) = d.get(DATA_HEADER_LEN..DATA_HEADER_LEN + 16) {
        s.copy_from_slice(b);
    }
    s
}

fn unreachable_stream() -> Keystream {
    #[allow(clippy::expect_used)]
    Keystream::new(&[0u8; 32]).expect("a 32-byte seed is valid")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::camo::knock::DeploymentSecret;
    use crate::camo::mask::MaskSeed;

    const NOW: u64 = 1_796_522_400;

    fn pair(key: [u8; 32]) -> (DatagramCamo, DatagramCamo) {
        let s = DeploymentSecret::from_knock_key(key);
        (
            DatagramCamo::new(Side::Client, KnockKeys::new(&s), &[1; 32], NOW),
            DatagramCamo::new(Side::Server, KnockKeys::new(&s), &[2; 32], NOW),
        )
    }

    fn mask() -> Mask {
        MaskSeed::for_ca(b"ca").mask_at(NOW as i64)
    }

    /// An Aura data datagram: type, receiver, counter, then `body` bytes of "ciphertext".
    fn data(receiver: u32, counter: u64, body: usize) -> Vec<u8> {
        let mut d = vec![PacketType::Data as u8];
        d.extend_from_slice(&receiver.to_be_bytes());
        d.extend_from_slice(&counter.to_be_bytes());
        // Ciphertext: keystream bytes, different per counter.
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&counter.to_be_bytes());
        Keystream::new(&seed).unwrap().extend(&mut d, body);
        d
    }

    fn init(len: usize) -> Vec<u8> {
        let mut d = vec![PacketType::Init as u8, 1];
        d.resize(len, 0x42);
        d
    }

    /// Toward an IPv6 peer no datagram grows past [`MAX_PADDED6`] (a 1500-byte IPv6
    /// path), whatever the day's buckets say, and it still opens.
    #[test]
    fn padding_toward_ipv6_stops_at_the_ipv6_limit() {
        use super::super::shape::MAX_PADDED6;
        let (mut c, mut s) = pair([9; 32]);
        let m = mask();
        let mut seen_v4 = 0;
        for body in (1300usize..1436).step_by(7) {
            let d = data(77, body as u64, body);
            let mut v4 = Vec::new();
            c.append(&d, &m, NOW, &mut v4);
            seen_v4 = seen_v4.max(v4.len());
            let mut v6 = Vec::new();
            c.append_within(&d, &m, NOW, MAX_PADDED6, &mut v6);
            assert!(v6.len() <= MAX_PADDED6, "{body}: {}", v6.len());
            assert!(s.open(&mut v6, NOW, |_| true).is_some(), "{body}");
        }
        assert!(
            seen_v4 > MAX_PADDED6,
            "the control pads past the IPv6 limit: {seen_v4}"
        );
        let v6: std::net::SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let mapped: std::net::SocketAddr = "[::ffff:192.0.2.1]:443".parse().unwrap();
        let v4: std::net::SocketAddr = "192.0.2.1:443".parse().unwrap();
        assert_eq!(super::super::shape::max_padded_for(&v6), MAX_PADDED6);
        assert_eq!(super::super::shape::max_padded_for(&mapped), MAX_PADDED);
        assert_eq!(super::super::shape::max_padded_for(&v4), MAX_PADDED);
    }

    #[test]
    fn data_form_round_trip_both_ways() {
        let (mut c, mut s) = pair([9; 32]);
        let m = mask();
        for flip in [false, true] {
            let (from, to) = if flip {
                (&mut s, &mut c)
            } else {
                (&mut c, &mut s)
            };
            for body in [16usize, 17, 100, 1436] {
                let d = data(77, body as u64, body);
                let mut wire = Vec::new();
                from.append(&d, &m, NOW, &mut wire);
                assert!(wire.len() >= d.len() + DATA_FORM_OVERHEAD);
                assert_ne!(&wire[..DATA_HEADER_LEN], &d[..DATA_HEADER_LEN]);
                let got = to.open(&mut wire, NOW, |i| i == 77).unwrap();
                assert_eq!(got, &d[..]);
            }
        }
    }

    #[test]
    fn data_form_for_an_unknown_session_is_dropped() {
        let (mut c, mut s) = pair([9; 32]);
        let mut wire = Vec::new();
        c.append(&data(77, 1, 100), &mask(), NOW, &mut wire);
        assert!(s.open(&mut wire, NOW, |i| i == 78).is_none());
        assert_eq!(s.refusals.invalid, 1);
    }

    #[test]
    fn handshake_form_round_trip_and_sizes() {
        let (mut c, mut s) = pair([9; 32]);
        let m = mask();
        for len in [40usize, 300, CLIENT_MAX_HANDSHAKE_DATAGRAM] {
            let d = init(len);
            let mut wire = Vec::new();
            c.append(&d, &m, NOW, &mut wire);
            assert_eq!(wire.len() % OUT_BLOCK, 0);
            assert!(wire.len() <= m.first_flight_len && wire.len() > m.first_flight_len - 8);
            assert!(aura_testkit::fet::exemption(&wire).is_some());
            assert_eq!(s.open(&mut wire, NOW, |_| false).unwrap(), &d[..]);
            // And back: the server's handshake datagrams are sized by the profile.
            let mut back = Vec::new();
            s.append(&d, &m, NOW, &mut back);
            assert_eq!(c.open(&mut back, NOW, |_| false).unwrap(), &d[..]);
        }
        assert!(
            wire_len_bound(CLIENT_MAX_HANDSHAKE_DATAGRAM) >= super::super::mask::FIRST_FLIGHT_MAX
        );
    }

    #[test]
    fn replays_stale_knocks_and_other_keys_get_nothing() {
        let (mut c, mut s) = pair([9; 32]);
        let m = mask();
        let mut wire = Vec::new();
        c.append(&init(500), &m, NOW, &mut wire);
        let captured = wire.clone();
        assert!(s.open(&mut wire, NOW, |_| false).is_some());
        let mut replay = captured.clone();
        assert!(s.open(&mut replay, NOW + 5, |_| false).is_none());
        assert_eq!(s.refusals.replay, 1);
        // Minutes later: refused by time (whether or not the filter still holds it).
        let mut late = captured.clone();
        assert!(s.open(&mut late, NOW + 600, |_| false).is_none());
        assert_eq!(s.refusals.stale, 1);
        // A fresh knock from before the server started.
        let mut early = Vec::new();
        c.append(&init(500), &m, NOW - 10, &mut early);
        assert!(s.open(&mut early, NOW, |_| false).is_none());
        assert_eq!(s.refusals.stale, 2);
        // Another deployment's client.
        let (mut other, _) = pair([8; 32]);
        let mut foreign = Vec::new();
        other.append(&init(500), &m, NOW, &mut foreign);
        assert!(s.open(&mut foreign, NOW, |_| false).is_none());
        assert_eq!(s.refusals.invalid, 1);
        // A flipped bit anywhere.
        for i in [0usize, 100, 700] {
            let mut w = Vec::new();
            c.append(&init(500), &m, NOW, &mut w);
            let i = i.min(w.len() - 1);
            w[i] ^= 0x10;
            assert!(s.open(&mut w, NOW, |_| false).is_none(), "bit flip at {i}");
        }
    }

    #[test]
    fn chaff_is_dropped_and_counted() {
        let (mut c, mut s) = pair([9; 32]);
        let m = mask();
        let mut w = Vec::new();
        c.append_chaff(&m, NOW, MAX_PADDED, &mut w);
        assert!(
            w.len() >= m.first_flight_len - 8,
            "sized like the first flight"
        );
        assert!(s.open(&mut w, NOW, |_| false).is_none());
        assert_eq!(
            s.refusals,
            Refusals {
                chaff: 1,
                ..Refusals::default()
            }
        );
    }

    #[test]
    fn runts_are_short_low_entropy_and_dropped() {
        let (mut c, mut s) = pair([9; 32]);
        let mut lens = std::collections::BTreeSet::new();
        for _ in 0..400 {
            let mut w = Vec::new();
            c.append_runt(&mut w);
            assert!((RUNT_MIN..=RUNT_MAX).contains(&w.len()), "{}", w.len());
            lens.insert(w.len());
            // nDPI's per-packet Shannon entropy (bits per byte) stays below its
            // "encrypted or random" threshold of 4.941.
            let mut counts = [0u32; 256];
            for b in &w {
                counts[usize::from(*b)] += 1;
            }
            let n = w.len() as f64;
            let h: f64 = counts
                .iter()
                .filter(|c| **c > 0)
                .map(|c| {
                    let p = f64::from(*c) / n;
                    -p * p.log2()
                })
                .sum();
            assert!(h < 4.941, "entropy {h} for {} bytes", w.len());
            assert!(s.open(&mut w, NOW, |_| true).is_none());
        }
        assert_eq!(lens.len(), RUNT_MAX - RUNT_MIN + 1, "every length is used");
        assert_eq!(s.refusals.chaff, 400);
        assert_eq!(s.refusals.invalid, 0);
    }

    #[test]
    fn random_bytes_get_nothing() {
        let (_, mut s) = pair([9; 32]);
        let mut ks = Keystream::new(&[5; 32]).unwrap();
        // No live session: random bytes must fail both forms, at every length.
        for len in [0usize, 1, 31, 32, 200, 1024, 1472] {
            for _ in 0..50 {
                let mut junk = vec![0u8; len];
                ks.fill(&mut junk);
                assert!(s.open(&mut junk, NOW, |_| false).is_none(), "len {len}");
            }
        }
        // Up to RUNT_MAX bytes is a runt (dropped as chaff), past it invalid.
        assert_eq!(s.refusals.chaff, 2 * 50);
        assert_eq!(s.refusals.invalid, 5 * 50);
        // With every receiver index live, a random datagram passes the data form's cheap
        // checks only when its unmasked type byte and padding length both fit (1 in 256
        // times about 1 in 66 for 1024 bytes): the AEAD then refuses it in the endpoint.
        let mut passed = 0;
        for _ in 0..2000 {
            let mut junk = vec![0u8; 1024];
            ks.fill(&mut junk);
            passed += usize::from(s.open(&mut junk, NOW, |_| true).is_some());
        }
        assert!(
            passed <= 2,
            "{passed} of 2000 random datagrams passed the data form"
        );
    }

    #[test]
    fn no_byte_is_fixed_across_sessions() {
        // Each datagram from a fresh client state (a fresh session) with the same input:
        // at every offset of the first 64 bytes, values must spread over the byte range.
        let m = mask();
        let s = DeploymentSecret::from_knock_key([9; 32]);
        let mut firsts = Vec::new();
        let mut datas = Vec::new();
        for i in 0..300u32 {
            let seed = [
                i as u8,
                (i >> 8) as u8,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
            ];
            let mut c = DatagramCamo::new(Side::Client, KnockKeys::new(&s), &seed, NOW);
            let mut w = Vec::new();
            c.append(&init(800), &m, NOW, &mut w);
            firsts.push(w);
            let mut w = Vec::new();
            // Ciphertext differs per session (its keys do): here, per counter.
            c.append(&data(1234, u64::from(i), 64), &m, NOW, &mut w);
            datas.push(w);
        }
        for (name, set) in [("first flight", &firsts), ("data", &datas)] {
            for off in 0..64 {
                let distinct: std::collections::HashSet<u8> = set.iter().map(|w| w[off]).collect();
                assert!(
                    distinct.len() > 40,
                    "{name}: offset {off} takes {} values",
                    distinct.len()
                );
            }
        }
        // Padding is not zeros.
        let zeros = datas[0].iter().filter(|&&b| b == 0).count();
        assert!(
            zeros < datas[0].len() / 16,
            "{zeros} zero bytes of {}",
            datas[0].len()
        );
    }
}

#[cfg(test)]
mod frozen {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::camo::knock::DeploymentSecret;
    use crate::camo::mask::MaskSeed;

    /// The wire bytes of both forms from fixed keys, keystream seed, time and mask: a
    /// change to any byte layout, label or the code changes these digests.
    #[test]
    fn wire_forms_frozen() {
        let now = 1_796_522_400;
        let keys = KnockKeys::new(&DeploymentSecret::from_knock_key([9; 32]));
        let mut c = DatagramCamo::new(Side::Client, keys, &[1; 32], now);
        let m = MaskSeed::for_ca(b"ca").mask_at(now as i64);
        let mut hs = Vec::new();
        let mut init = vec![PacketType::Init as u8, 1];
        init.resize(300, 0x42);
        c.append(&init, &m, now, &mut hs);
        let mut data = vec![PacketType::Data as u8, 0, 0, 0, 77];
        data.extend_from_slice(&5u64.to_be_bytes());
        data.extend((0u8..40).map(|i| i.wrapping_mul(37)));
        let mut dw = Vec::new();
        c.append(&data, &m, now, &mut dw);
        let hex = |b: &[u8]| -> String {
            aura_crypto::kdf::sha256(&[b])
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect()
        };
        assert_eq!((hs.len(), dw.len()), (1256, 112));
        assert_eq!(
            hex(&hs),
            "399dc818385fa2356010fd8d091a2c85596a2e5627ec3e7bfa8f5a5d1e9e730c"
        );
        assert_eq!(
            hex(&dw),
            "1e0dabbb5eb0cbbfaf75e9848fd7d57ecb1ac96861b00e5fcc31eb289032c5a6"
        );
    }
}
