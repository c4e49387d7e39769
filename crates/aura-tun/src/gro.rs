//! Coalescing on the write path (generic receive offload, done before the kernel sees the
//! packets): consecutive TCP segments of one flow in a batch, and same-size UDP datagrams
//! when the device takes UDP segmentation, are written to the device as one super-packet
//! behind a virtio-net header, which the kernel hands whole to the local socket or splits
//! again when it forwards. Every other packet is written as it is, behind an empty header.
//!
//! What joins a super-packet (the rules of wireguard-go's and the kernel's GRO): IPv4
//! without options or fragmentation, or IPv6 without extension headers; the same
//! addresses, ports, TOS/traffic class, TTL/hop limit, DF flag and flow label; TCP with only
//! ACK (and PSH on the last segment) set, the same acknowledgement number, the same options
//! and the next sequence number; a payload no longer than the first's, where a shorter one
//! (or PSH) ends the super-packet; a valid checksum on every packet joined, since the
//! kernel computes the super-packet's own and would otherwise make a corrupt segment look
//! sound, unless the packet's checksum was left to this end (it came as a type 7 data
//! packet: the sender never computed it, [`crate::csum`]); at most 65,535 bytes of IP
//! packet. A packet whose checksum was left to this end and that is written alone goes
//! behind a `NEEDS_CSUM` header, so the kernel computes it.
//!
//! Order within a flow is kept: a packet of a flow that cannot join writes that flow's
//! super-packet first. Flows may interleave differently than they came, as with GRO in
//! the kernel.
//!
//! No allocation and no copy per packet: a super-packet's headers (at most 110 bytes) are
//! copied from its first segment into a table of [`MAX_FLOWS`] entries made with the
//! [`Coalescer`] and finished there; its payloads are written from where they lie, the
//! headers and every segment's payload in one vectored write (at most [`MAX_SEGMENTS`]
//! segments). A packet written as it is goes from where it lies too, behind a separate
//! header. (tun-rs's GRO, used before, copied every packet into a fresh `Vec`; this
//! coalescer's first form copied every payload into a 64 KiB buffer per flow.)

use std::io::{self, IoSlice};

pub use crate::csum::VNET_HDR_LEN;
use crate::csum::{
    GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, PROTO_TCP, PROTO_UDP, VIRTIO_NET_HDR_F_NEEDS_CSUM,
    be16, be32, fold, pseudo_sum, seed_partial, sum,
};

/// Flows coalesced at once; a batch with more writes the oldest flow's super-packet to make
/// room.
pub const MAX_FLOWS: usize = 8;

/// Segments one super-packet gathers at most (written with one vectored write of its
/// headers and each segment's payload).
pub const MAX_SEGMENTS: usize = 64;

/// Largest IP packet (and super-packet) built.
const MAX_IP_PACKET: usize = 65_535;

const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;

/// A flow: addresses (IPv4 in the first 4 bytes), ports, protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct FlowKey {
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    proto: u8,
    v6: bool,
}

/// What a packet is, as far as coalescing goes.
#[derive(Debug, Clone, Copy)]
struct Parsed {
    key: FlowKey,
    /// IP header length.
    iph: usize,
    /// TCP or UDP header length.
    l4h: usize,
    /// Whether it may join or start a super-packet at all.
    candidate: bool,
    /// TCP: sequence and acknowledgement numbers and flags.
    seq: u32,
    ack: u32,
    flags: u8,
}

/// Parses `p` down to its TCP or UDP header; `None` for anything else (written as is).
fn parse(p: &[u8], udp_gso: bool) -> Option<Parsed> {
    let first = *p.first()?;
    let mut key = FlowKey::default();
    let (iph, simple) = match first >> 4 {
        4 => {
            let iph = usize::from(first & 0x0f) * 4;
            if iph < 20 || p.len() < iph || usize::from(be16(p, 2)) != p.len() {
                return None;
            }
            key.proto = p[9];
            key.src[..4].copy_from_slice(&p[12..16]);
            key.dst[..4].copy_from_slice(&p[16..20]);
            // More fragments, or a fragment offset: not a whole datagram.
            let fragment = be16(p, 6) & 0x3fff != 0;
            (iph, iph == 20 && !fragment)
        }
        6 => {
            if p.len() < 40 || usize::from(be16(p, 4)) != p.len() - 40 {
                return None;
            }
            key.v6 = true;
            key.proto = p[6];
            key.src.copy_from_slice(&p[8..24]);
            key.dst.copy_from_slice(&p[24..40]);
            (40, true)
        }
        _ => return None,
    };
    let l4 = &p[iph..];
    match key.proto {
        PROTO_TCP if l4.len() >= 20 => {
            let l4h = usize::from(l4[12] >> 4) * 4;
            if l4h < 20 || l4h > l4.len() {
                return None;
            }
            key.sport = be16(l4, 0);
            key.dport = be16(l4, 2);
            let flags = l4[13];
            let candidate = simple && flags & !TCP_PSH == TCP_ACK && l4.len() > l4h;
            Some(Parsed {
                key,
                iph,
                l4h,
                candidate,
                seq: be32(l4, 4),
                ack: be32(l4, 8),
                flags,
            })
        }
        PROTO_UDP if l4.len() >= 8 => {
            key.sport = be16(l4, 0);
            key.dport = be16(l4, 2);
            let candidate =
                udp_gso && simple && usize::from(be16(l4, 4)) == l4.len() && l4.len() > 8;
            Some(Parsed {
                key,
                iph,
                l4h: 8,
                candidate,
                seq: 0,
                ack: 0,
                flags: 0,
            })
        }
        _ => None,
    }
}

/// The pseudo-header's sum for a TCP or UDP segment of `len` bytes in IP packet `p`.
fn pseudo(p: &[u8], key: &FlowKey, len: usize) -> u64 {
    pseudo_sum(p, key.v6, key.proto, len)
}

/// Whether the TCP or UDP checksum of `p` is right (a UDP checksum of zero over IPv4 means
/// none was sent).
fn checksum_valid(p: &[u8], parsed: &Parsed) -> bool {
    let l4 = &p[parsed.iph..];
    if parsed.key.proto == PROTO_UDP && !parsed.key.v6 && be16(l4, 6) == 0 {
        return true;
    }
    fold(sum(l4, pseudo(p, &parsed.key, l4.len()))) == 0xffff
}

/// The IP header fields that must match for two packets to join.
fn ip_headers_match(a: &[u8], b: &[u8], v6: bool) -> bool {
    if v6 {
        // Version, traffic class and flow label; hop limit.
        a[..4] == b[..4] && a[7] == b[7]
    } else {
        // TOS; flags (DF); TTL.
        a[1] == b[1] && a[6] & 0xe0 == b[6] & 0xe0 && a[8] == b[8]
    }
}

/// Room for a super-packet's headers: the virtio-net header, then an IP header (IPv4
/// without options: 20 bytes; IPv6: 40) and a TCP header (at most 60) or UDP's (8).
const HDR_ROOM: usize = VNET_HDR_LEN + 40 + 60;

/// A super-packet being built: its headers (copied from its first segment, then finished
/// for the whole) and what it has gathered. The segments stay where they lie, in the
/// caller's [`Pieces`].
#[derive(Debug)]
struct Item {
    /// The virtio-net header, then the first segment's IP and TCP or UDP headers.
    hdr: [u8; HDR_ROOM],
    live: bool,
    key: FlowKey,
    iph: usize,
    l4h: usize,
    /// Payload bytes of the first segment: the segment size.
    seg: usize,
    segments: usize,
    /// The IP packet's length so far.
    len: usize,
    /// No more segments may join (a shorter one or PSH came).
    ended: bool,
    /// TCP: the sequence number the next segment must have, and the acknowledgement all have.
    next_seq: u32,
    ack: u32,
    /// When it was started, to write the oldest first when the table is full.
    started: u64,
    /// The first segment's checksum is left to this end (it came as type 7).
    offload: bool,
}

impl Item {
    fn new() -> Self {
        Item {
            hdr: [0; HDR_ROOM],
            live: false,
            key: FlowKey::default(),
            iph: 0,
            l4h: 0,
            seg: 0,
            segments: 0,
            len: 0,
            ended: false,
            next_seq: 0,
            ack: 0,
            started: 0,
            offload: false,
        }
    }

    /// The first segment's IP and TCP or UDP headers (as finished so far).
    fn headers(&self) -> &[u8] {
        &self.hdr[VNET_HDR_LEN..VNET_HDR_LEN + self.iph + self.l4h]
    }

    /// Whether `p` may be appended.
    fn joins(&self, p: &[u8], parsed: &Parsed) -> bool {
        let payload = p.len() - parsed.iph - parsed.l4h;
        let first = self.headers();
        if self.ended
            || self.segments >= MAX_SEGMENTS
            || payload > self.seg
            || self.len + payload > MAX_IP_PACKET
            || parsed.l4h != self.l4h
            || !ip_headers_match(first, p, self.key.v6)
        {
            return false;
        }
        if self.key.proto == PROTO_TCP {
            let options = self.iph + 20..self.iph + self.l4h;
            parsed.seq == self.next_seq
                && parsed.ack == self.ack
                && first[options] == p[parsed.iph + 20..parsed.iph + parsed.l4h]
        } else {
            true
        }
    }

    /// Sets the headers of a super-packet of two or more segments (its virtio-net header,
    /// lengths and checksums), so that `hdr` goes in front of the gathered payloads.
    fn finish(&mut self) {
        let (iph, v6, proto, len) = (self.iph, self.key.v6, self.key.proto, self.len);
        let hdr = &mut self.hdr[..VNET_HDR_LEN];
        hdr.fill(0);
        let gso = match (proto, v6) {
            (PROTO_TCP, false) => GSO_TCPV4,
            (PROTO_TCP, true) => GSO_TCPV6,
            _ => GSO_UDP_L4,
        };
        let csum_offset: u16 = if proto == PROTO_TCP { 16 } else { 6 };
        hdr[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        hdr[1] = gso;
        // Lengths fit u16: the packet is at most MAX_IP_PACKET.
        hdr[2..4].copy_from_slice(&((iph + self.l4h) as u16).to_le_bytes());
        hdr[4..6].copy_from_slice(&(self.seg as u16).to_le_bytes());
        hdr[6..8].copy_from_slice(&(iph as u16).to_le_bytes());
        hdr[8..10].copy_from_slice(&csum_offset.to_le_bytes());
        let key = self.key;
        let p = &mut self.hdr[VNET_HDR_LEN..VNET_HDR_LEN + iph + self.l4h];
        if v6 {
            p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        } else {
            p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            p[10..12].fill(0);
            let c = !fold(sum(&p[..iph], 0));
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let l4_len = len - iph;
        if proto == PROTO_UDP {
            p[iph + 4..iph + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        }
        // The pseudo-header's sum, unfolded into the field: the kernel adds the rest.
        let partial = fold(pseudo(p, &key, l4_len));
        let at = iph + usize::from(csum_offset);
        p[at..at + 2].copy_from_slice(&partial.to_be_bytes());
    }
}

/// Where the segments of each super-packet being built lie, for one
/// [`Coalescer::write_batch`] call: the first segment whole (written alone as it is, when
/// nothing joins it), then the payloads of the rest.
struct Pieces<'a> {
    first: [Option<&'a mut [u8]>; MAX_FLOWS],
    rest: [[&'a [u8]; MAX_SEGMENTS - 1]; MAX_FLOWS],
}

/// Builds super-packets from batches of packets (see the module's documentation).
#[derive(Debug)]
pub struct Coalescer {
    items: Vec<Item>,
    udp_gso: bool,
    clock: u64,
}

impl Coalescer {
    /// A coalescer for a device that takes TCP segmentation offload, and UDP's when
    /// `udp_gso`. Allocates its table (a few KiB) now.
    pub fn new(udp_gso: bool) -> Self {
        Coalescer {
            items: (0..MAX_FLOWS).map(|_| Item::new()).collect(),
            udp_gso,
            clock: 0,
        }
    }

    /// Writes `packets` through `write` (one vectored call per frame: its virtio-net header,
    /// then its packet, or a super-packet's headers and then each segment's payload where
    /// it lies), coalescing what may be. Each packet comes with whether its checksum is
    /// left to this end (then its checksum field may be written). Every frame is tried;
    /// the first error is returned.
    ///
    /// # Errors
    /// The first error `write` returned.
    pub fn write_batch<'a>(
        &mut self,
        packets: impl IntoIterator<Item = (&'a mut [u8], bool)>,
        write: &mut impl FnMut(&[IoSlice<'_>]) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut result = Ok(());
        let mut keep = |r: io::Result<()>| {
            if let Err(e) = r
                && result.is_ok()
            {
                result = Err(e);
            }
        };
        let none: &[u8] = &[];
        let mut pieces = Pieces {
            first: [const { None }; MAX_FLOWS],
            rest: [[none; MAX_SEGMENTS - 1]; MAX_FLOWS],
        };
        for (p, offload) in packets {
            if p.len() > MAX_IP_PACKET {
                continue;
            }
            let parsed = parse(p, self.udp_gso);
            let open =
                parsed.and_then(|pp| self.items.iter().position(|it| it.live && it.key == pp.key));
            match parsed {
                Some(pp) if pp.candidate => {
                    // A checksum left to this end has nothing to check: the kernel
                    // computes it for whatever carries the segment.
                    let sound = offload || checksum_valid(p, &pp);
                    if let Some(i) = open {
                        if self.items[i].joins(p, &pp) && sound {
                            self.append(i, p, &pp, &mut pieces);
                            continue;
                        }
                        keep(self.flush(i, &mut pieces, write));
                    }
                    if !sound {
                        // Written as it is: the kernel drops it, as it would have.
                        keep(Self::write_single(p, false, write));
                        continue;
                    }
                    let i = match self.items.iter().position(|it| !it.live) {
                        Some(i) => i,
                        None => {
                            let oldest = self
                                .items
                                .iter()
                                .enumerate()
                                .min_by_key(|(_, it)| it.started)
                                .map_or(0, |(i, _)| i);
                            keep(self.flush(oldest, &mut pieces, write));
                            oldest
                        }
                    };
                    self.start(i, p, &pp, offload, &mut pieces);
                }
                _ => {
                    if let Some(i) = open {
                        keep(self.flush(i, &mut pieces, write));
                    }
                    keep(Self::write_single(p, offload, write));
                }
            }
        }
        for i in 0..self.items.len() {
            if self.items[i].live {
                keep(self.flush(i, &mut pieces, write));
            }
        }
        result
    }

    fn start<'a>(
        &mut self,
        i: usize,
        p: &'a mut [u8],
        pp: &Parsed,
        offload: bool,
        pieces: &mut Pieces<'a>,
    ) {
        self.clock += 1;
        let it = &mut self.items[i];
        let headers = pp.iph + pp.l4h;
        it.hdr[VNET_HDR_LEN..VNET_HDR_LEN + headers].copy_from_slice(&p[..headers]);
        it.live = true;
        it.key = pp.key;
        it.iph = pp.iph;
        it.l4h = pp.l4h;
        it.seg = p.len() - headers;
        it.segments = 1;
        it.len = p.len();
        it.ended = pp.flags & TCP_PSH != 0;
        it.next_seq = pp.seq.wrapping_add(it.seg as u32);
        it.ack = pp.ack;
        it.started = self.clock;
        it.offload = offload;
        pieces.first[i] = Some(p);
    }

    fn append<'a>(&mut self, i: usize, p: &'a [u8], pp: &Parsed, pieces: &mut Pieces<'a>) {
        let it = &mut self.items[i];
        let payload = &p[pp.iph + pp.l4h..];
        pieces.rest[i][it.segments - 1] = payload;
        it.segments += 1;
        it.len += payload.len();
        it.next_seq = it.next_seq.wrapping_add(payload.len() as u32);
        if payload.len() < it.seg {
            it.ended = true;
        }
        if pp.flags & TCP_PSH != 0 {
            it.ended = true;
            let at = VNET_HDR_LEN + it.iph + 13;
            it.hdr[at] |= TCP_PSH;
        }
    }

    fn flush(
        &mut self,
        i: usize,
        pieces: &mut Pieces<'_>,
        write: &mut impl FnMut(&[IoSlice<'_>]) -> io::Result<()>,
    ) -> io::Result<()> {
        let it = &mut self.items[i];
        it.live = false;
        let Some(first) = pieces.first[i].take() else {
            return Ok(());
        };
        if it.segments < 2 {
            // Alone: as it came, or with its checksum left to the kernel.
            return Self::write_single(first, it.offload, write);
        }
        it.finish();
        let headers = VNET_HDR_LEN + it.iph + it.l4h;
        let mut iov = [IoSlice::new(&[]); MAX_SEGMENTS + 1];
        iov[0] = IoSlice::new(&it.hdr[..headers]);
        iov[1] = IoSlice::new(first.get(it.iph + it.l4h..).unwrap_or_default());
        for (slot, payload) in iov[2..].iter_mut().zip(&pieces.rest[i][..it.segments - 1]) {
            *slot = IoSlice::new(payload);
        }
        write(&iov[..it.segments + 1])
    }

    /// Writes `p` alone: behind an empty header, or, when its checksum is left to this
    /// end, behind a `NEEDS_CSUM` header so that the kernel computes it. (A packet whose
    /// checksum cannot be found goes as it is, and the kernel drops it.)
    fn write_single(
        p: &mut [u8],
        offload: bool,
        write: &mut impl FnMut(&[IoSlice<'_>]) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut hdr = [0; VNET_HDR_LEN];
        if offload {
            partial_header(&mut hdr, p);
        }
        write(&[IoSlice::new(&hdr), IoSlice::new(p)])
    }
}

/// Makes `hdr` the virtio-net header of `p` alone with its checksum left to the kernel
/// (`NEEDS_CSUM`, no segmentation), and seeds `p`'s checksum field for it. Leaves `hdr`
/// empty and `p` as it was when `p` has no checksum [`crate::csum::l4_of`] can find.
fn partial_header(hdr: &mut [u8], p: &mut [u8]) {
    hdr.fill(0);
    let Some(l4) = seed_partial(p) else {
        return;
    };
    let l4h = if l4.proto == PROTO_TCP {
        usize::from(p[l4.start + 12] >> 4) * 4
    } else {
        8
    };
    hdr[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    hdr[1] = GSO_NONE;
    // Offsets fit u16: the packet is at most MAX_IP_PACKET.
    hdr[2..4].copy_from_slice(&((l4.start + l4h) as u16).to_le_bytes());
    hdr[6..8].copy_from_slice(&(l4.start as u16).to_le_bytes());
    hdr[8..10].copy_from_slice(&(l4.csum_offset() as u16).to_le_bytes());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::csum::test_packets::{tcp4, udp6};

    const TCP_FIN: u8 = 0x01;

    /// One frame's bytes, as the kernel reads them from a vectored write.
    fn joined(iov: &[IoSlice<'_>]) -> Vec<u8> {
        iov.iter().flat_map(|s| s.iter().copied()).collect()
    }

    fn run(c: &mut Coalescer, packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
        run_flagged(c, packets, &[])
    }

    /// As `run`, with packet `i`'s checksum left to this end where `offload[i]`.
    fn run_flagged(c: &mut Coalescer, packets: &[Vec<u8>], offload: &[bool]) -> Vec<Vec<u8>> {
        let mut packets = packets.to_vec();
        let mut out = Vec::new();
        let items = packets
            .iter_mut()
            .enumerate()
            .map(|(i, p)| (p.as_mut_slice(), offload.get(i).copied().unwrap_or(false)));
        c.write_batch(items, &mut |iov| {
            out.push(joined(iov));
            Ok(())
        })
        .unwrap();
        out
    }

    /// Splits `frame` as the kernel would, with tun-rs's GSO split (independent code); a
    /// single packet behind a `NEEDS_CSUM` header gets its checksum finished as the kernel
    /// finishes it (the field holds the pseudo-header's sum, the rest is added).
    fn split(frame: &[u8]) -> Vec<Vec<u8>> {
        let hdr = tun_rs::VirtioNetHdr::decode(&frame[..VNET_HDR_LEN]).unwrap();
        if hdr.gso_type == 0 {
            let mut p = frame[VNET_HDR_LEN..].to_vec();
            if hdr.flags != 0 {
                assert_eq!(hdr.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
                let (start, at) = (
                    usize::from(hdr.csum_start),
                    usize::from(hdr.csum_start + hdr.csum_offset),
                );
                let c = !fold(sum(&p[start..], 0));
                p[at..at + 2].copy_from_slice(&c.to_be_bytes());
            }
            return vec![p];
        }
        let mut input = frame.to_vec();
        let mut out = vec![vec![0u8; 2048]; 64];
        let mut sizes = vec![0; 64];
        let v6 = frame[VNET_HDR_LEN] >> 4 == 6;
        let n = tun_rs::gso_split(&mut input[VNET_HDR_LEN..], hdr, &mut out, &mut sizes, 0, v6)
            .unwrap();
        (0..n).map(|i| out[i][..sizes[i]].to_vec()).collect()
    }

    #[test]
    fn consecutive_tcp_segments_become_one_super_packet_that_splits_back_into_them() {
        let mut c = Coalescer::new(false);
        let seg = 1000;
        let packets: Vec<Vec<u8>> = (0..5u32)
            .map(|i| {
                let payload: Vec<u8> = (0..seg).map(|b| (b as u32 * 7 + i) as u8).collect();
                let last = i == 4;
                tcp4(
                    1_000 + i * seg as u32,
                    77,
                    TCP_ACK | if last { TCP_PSH } else { 0 },
                    300 + i as u16,
                    &payload[..if last { 400 } else { seg }],
                )
            })
            .collect();
        let out = run(&mut c, &packets);
        assert_eq!(out.len(), 1, "one super-packet");
        let hdr = tun_rs::VirtioNetHdr::decode(&out[0][..VNET_HDR_LEN]).unwrap();
        assert_eq!(
            (hdr.gso_type, hdr.gso_size, hdr.hdr_len),
            (GSO_TCPV4, 1000, 40)
        );
        assert_eq!((hdr.csum_start, hdr.csum_offset, hdr.flags), (20, 16, 1));
        assert_eq!(out[0].len(), VNET_HDR_LEN + 40 + 4 * 1000 + 400);
        // Split again, the segments are the packets that came, PSH on the last only.
        assert_eq!(split(&out[0]), packets);
    }

    #[test]
    fn a_frozen_super_packet() {
        // Two 4-byte segments: the exact frame (header, lengths, IPv4 and partial TCP
        // checksums) as written to the device.
        let mut c = Coalescer::new(false);
        let out = run(
            &mut c,
            &[
                tcp4(1, 2, TCP_ACK, 9, b"abcd"),
                tcp4(5, 2, TCP_ACK, 10, b"efgh"),
            ],
        );
        let hex: String = out[0].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                // virtio-net header: NEEDS_CSUM, TCPV4, hdr_len 40, gso_size 4, csum_start
                // 20, csum_offset 16 (little-endian).
                "01012800040014001000",
                // IPv4: total length 48, id 9, DF, TTL 64, TCP, header checksum 0x2623.
                "45000030000940004006",
                "2623",
                "0a4d0002",
                "0a4d0001",
                // TCP: ports, seq 1, ack 2, ACK, window 501; the pseudo-header's sum 0x14bf
                // (0x0a4d + 0x0002 + 0x0a4d + 0x0001 + 6 + 28) in the checksum field.
                "9c401451",
                "00000001",
                "00000002",
                "501001f5",
                "14bf",
                "0000",
                "6162636465666768",
            )
        );
    }

    #[test]
    fn what_may_not_join_is_written_alone_and_in_order() {
        let mut c = Coalescer::new(false);
        let a = tcp4(1, 9, TCP_ACK, 1, &[1; 100]);
        let gap = tcp4(500, 9, TCP_ACK, 2, &[2; 100]); // not the next sequence number
        let fin = tcp4(600, 9, TCP_ACK | TCP_FIN, 3, &[3; 100]);
        let pure_ack = tcp4(700, 10, TCP_ACK, 4, &[]);
        let mut bad = tcp4(101, 9, TCP_ACK, 5, &[4; 100]);
        bad[45] ^= 1; // payload corrupted: the checksum fails
        let out = run(
            &mut c,
            &[a.clone(), gap.clone(), fin.clone(), pure_ack.clone()],
        );
        let plain: Vec<Vec<u8>> = out.iter().map(|f| split(f).concat()).collect();
        assert_eq!(plain, vec![a.clone(), gap, fin, pure_ack]);
        assert!(out.iter().all(|f| f[..VNET_HDR_LEN] == [0; VNET_HDR_LEN]));
        // A segment whose checksum fails does not join; it goes as it came.
        let out = run(&mut c, &[a.clone(), bad.clone()]);
        assert_eq!(out.len(), 2);
        assert_eq!(&out[1][VNET_HDR_LEN..], &bad[..]);
        // A different acknowledgement number starts a new super-packet.
        let out = run(&mut c, &[a, tcp4(101, 10, TCP_ACK, 6, &[5; 100])]);
        assert_eq!(out.len(), 2);
        // Not IP at all: as it came.
        let out = run(&mut c, &[vec![0xff; 30]]);
        assert_eq!(out, vec![[vec![0; VNET_HDR_LEN], vec![0xff; 30]].concat()]);
    }

    /// `rounds` segments of each of `flows` flows, round robin.
    fn interleaved(flows: u16, rounds: u32) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        for round in 0..rounds {
            for flow in 0..flows {
                let mut p = tcp4(1 + round * 10, 5, TCP_ACK, round as u16, &[round as u8; 10]);
                // Another source port, and the checksum made again.
                p[20..22].copy_from_slice(&(1000 + flow).to_be_bytes());
                let key = parse(&p, false).unwrap().key;
                p[36..38].fill(0);
                let cs = !fold(sum(&p[20..], pseudo(&p, &key, p.len() - 20)));
                p[36..38].copy_from_slice(&cs.to_be_bytes());
                packets.push(p);
            }
        }
        packets
    }

    #[test]
    fn interleaved_flows_coalesce_each_and_more_flows_than_slots_lose_nothing() {
        let mut c = Coalescer::new(false);
        let packets = interleaved(MAX_FLOWS as u16, 3);
        let out = run(&mut c, &packets);
        assert_eq!(out.len(), MAX_FLOWS, "one super-packet per flow");
        let mut back: Vec<Vec<u8>> = out.iter().flat_map(|f| split(f)).collect();
        let mut sent = packets.clone();
        back.sort();
        sent.sort();
        assert_eq!(back, sent);
        // Three flows more than there are slots, round robin: each is written before its
        // next segment comes, so nothing coalesces, and nothing is lost either.
        let packets = interleaved(MAX_FLOWS as u16 + 3, 3);
        let out = run(&mut c, &packets);
        assert_eq!(out.len(), packets.len());
        let mut back: Vec<Vec<u8>> = out.iter().flat_map(|f| split(f)).collect();
        let mut sent = packets.clone();
        back.sort();
        sent.sort();
        assert_eq!(back, sent);
    }

    #[test]
    fn udp_datagrams_coalesce_only_when_the_device_takes_udp_segmentation() {
        let packets: Vec<Vec<u8>> = (0..4)
            .map(|i| udp6(&[i; 1200]))
            .chain([udp6(&[9; 300])])
            .collect();
        let out = run(&mut Coalescer::new(false), &packets);
        assert_eq!(out.len(), 5);
        let out = run(&mut Coalescer::new(true), &packets);
        assert_eq!(out.len(), 1);
        let hdr = tun_rs::VirtioNetHdr::decode(&out[0][..VNET_HDR_LEN]).unwrap();
        assert_eq!(
            (hdr.gso_type, hdr.gso_size, hdr.csum_offset),
            (GSO_UDP_L4, 1200, 6)
        );
        assert_eq!(split(&out[0]), packets);
    }

    #[test]
    fn super_packets_stop_at_64_kib() {
        let mut c = Coalescer::new(false);
        let packets: Vec<Vec<u8>> = (0..60u32)
            .map(|i| tcp4(i * 1400, 1, TCP_ACK, i as u16, &[i as u8; 1400]))
            .collect();
        let out = run(&mut c, &packets);
        assert!(out.len() >= 2);
        assert!(out.iter().all(|f| f.len() - VNET_HDR_LEN <= MAX_IP_PACKET));
        let back: Vec<Vec<u8>> = out.iter().flat_map(|f| split(f)).collect();
        assert_eq!(back, packets);
    }

    #[test]
    fn payloads_are_written_from_where_they_lie() {
        let mut c = Coalescer::new(false);
        let mut packets: Vec<Vec<u8>> = (0..5u32)
            .map(|i| tcp4(i * 1000, 1, TCP_ACK, i as u16, &[i as u8; 1000]))
            .collect();
        let lie: Vec<std::ops::Range<usize>> = packets
            .iter()
            .map(|p| p.as_ptr_range())
            .map(|r| r.start as usize..r.end as usize)
            .collect();
        let mut frames = Vec::new();
        let items = packets.iter_mut().map(|p| (p.as_mut_slice(), false));
        c.write_batch(items, &mut |iov| {
            // Headers first, then each payload: it must lie inside the packet it came in.
            let headers = iov[0].len();
            let within: Vec<bool> = iov[1..]
                .iter()
                .zip(&lie)
                .map(|(s, r)| {
                    let at = s.as_ptr() as usize;
                    r.contains(&at) && at + s.len() == r.end
                })
                .collect();
            frames.push((iov.len(), headers, within, joined(iov)));
            Ok(())
        })
        .unwrap();
        assert_eq!(frames.len(), 1);
        let (slices, headers, within, frame) = &frames[0];
        assert_eq!(*slices, 6, "the headers and five payloads");
        assert_eq!(*headers, VNET_HDR_LEN + 20 + 20);
        assert!(
            within.iter().all(|&w| w),
            "no payload was copied: {within:?}"
        );
        assert_eq!(split(frame), packets);
    }

    #[test]
    fn a_super_packet_gathers_at_most_max_segments() {
        let mut c = Coalescer::new(false);
        let count = MAX_SEGMENTS as u32 * 2 + 5;
        let packets: Vec<Vec<u8>> = (0..count)
            .map(|i| tcp4(i * 10, 1, TCP_ACK, i as u16, &[i as u8; 10]))
            .collect();
        let mut slices = Vec::new();
        let mut out = Vec::new();
        let mut copy = packets.clone();
        let items = copy.iter_mut().map(|p| (p.as_mut_slice(), false));
        c.write_batch(items, &mut |iov| {
            slices.push(iov.len());
            out.push(joined(iov));
            Ok(())
        })
        .unwrap();
        assert_eq!(slices, [MAX_SEGMENTS + 1, MAX_SEGMENTS + 1, 2 + 4]);
        let back: Vec<Vec<u8>> = out.iter().flat_map(|f| split(f)).collect();
        assert_eq!(back, packets);
    }

    /// Spoils the checksum field of `p` as a type 7 sender may leave it.
    fn unfinished(mut p: Vec<u8>, iph: usize, csum_offset: usize) -> Vec<u8> {
        p[iph + csum_offset..iph + csum_offset + 2].copy_from_slice(&[0xde, 0xad]);
        p
    }

    /// Segments whose checksums were left to this end join whatever their fields hold, and
    /// the super-packet splits back into the segments with their checksums finished.
    #[test]
    fn segments_left_to_this_end_join_without_a_check_and_split_back_finished() {
        let mut c = Coalescer::new(false);
        let seg = 1000;
        let whole: Vec<Vec<u8>> = (0..4u32)
            .map(|i| {
                let payload: Vec<u8> = (0..seg).map(|b| (b as u32 * 7 + i) as u8).collect();
                tcp4(1000 + i * seg as u32, 9, TCP_ACK, 50 + i as u16, &payload)
            })
            .collect();
        let sent: Vec<Vec<u8>> = whole
            .iter()
            .map(|p| unfinished(p.clone(), 20, 16))
            .collect();
        let frames = run_flagged(&mut c, &sent, &[true; 4]);
        assert_eq!(frames.len(), 1, "one super-packet");
        assert_eq!(split(&frames[0]), whole);
        // Unflagged, the same spoiled segments are each written as they are.
        let frames = run(&mut c, &sent);
        assert_eq!(frames.len(), 4);
        assert!(
            frames
                .iter()
                .all(|f| f[..VNET_HDR_LEN] == [0; VNET_HDR_LEN])
        );
    }

    /// A packet left to this end and written alone goes behind a `NEEDS_CSUM` header that
    /// names its checksum, and comes out finished: TCP that cannot join (a SYN) and UDP
    /// on a device without UDP segmentation.
    #[test]
    fn a_packet_left_to_this_end_alone_has_its_checksum_finished_by_the_kernel() {
        let mut c = Coalescer::new(false);
        let syn = tcp4(77, 0, 0x02, 1, &[]);
        let dgram = udp6(b"a datagram of some length");
        let sent = [
            unfinished(syn.clone(), 20, 16),
            unfinished(dgram.clone(), 40, 6),
        ];
        let frames = run_flagged(&mut c, &sent, &[true, true]);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0][..2], [VIRTIO_NET_HDR_F_NEEDS_CSUM, GSO_NONE]);
        assert_eq!(
            frames[0][6..10],
            [20, 0, 16, 0],
            "csum_start 20, csum_offset 16"
        );
        assert_eq!(
            frames[1][6..10],
            [40, 0, 6, 0],
            "csum_start 40, csum_offset 6"
        );
        assert_eq!(split(&frames[0]), vec![syn]);
        assert_eq!(split(&frames[1]), vec![dgram]);
        // What has no checksum to find (not TCP or UDP) goes as it is.
        let mut icmp = tcp4(1, 2, TCP_ACK, 3, b"x");
        icmp[9] = 1;
        let frames = run_flagged(&mut c, std::slice::from_ref(&icmp), &[true]);
        assert_eq!(frames, vec![[&[0u8; VNET_HDR_LEN][..], &icmp].concat()]);
    }
}
