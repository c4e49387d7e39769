//! Transport checksums, and reading what an offloading device hands over.
//!
//! With offload on, the kernel gives the TUN reader TCP super-packets (and, for a
//! `NEEDS_CSUM` packet, a checksum it never computed: `CHECKSUM_PARTIAL`). [`split`] cuts a
//! super-packet into its segments and leaves their TCP or UDP checksums unfinished where
//! the peer can finish them: such a segment is flagged "offload", crosses the tunnel as a
//! type 7 data packet (docs/PROTOCOL.md §5.3), and the receiving end's kernel computes the
//! checksum from a `NEEDS_CSUM` header ([`crate::gro`]). Where the peer cannot (session
//! version 1, or a device without offload at the far end), [`complete_checksum`] finishes
//! it in software, as every segment was before.
//!
//! A flagged packet is one whose transport header directly follows the IP header, in a
//! whole datagram: IPv4 (any header length, not a fragment) or IPv6 without extension
//! headers, carrying TCP or UDP. Both ends find its checksum with [`l4_of`], so they agree
//! on where it is. Its checksum field is sent as zero and means nothing to the receiver,
//! which writes its own.

/// Length of the virtio-net header in front of every frame when offload is on.
pub const VNET_HDR_LEN: usize = 10;

pub(crate) const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
pub(crate) const GSO_NONE: u8 = 0;
pub(crate) const GSO_TCPV4: u8 = 1;
pub(crate) const GSO_TCPV6: u8 = 4;
pub(crate) const GSO_UDP_L4: u8 = 5;
/// Set on `gso_type` when the super-packet carries ECN's CWR (legacy TCP ECN GSO).
const GSO_ECN: u8 = 0x80;

pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The one's-complement sum of `b` (big-endian 16-bit words, an odd byte padded), added to
/// `acc`, not folded.
pub(crate) fn sum(b: &[u8], mut acc: u64) -> u64 {
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for c in &mut rest {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = rest.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum to 16 bits.
pub(crate) fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc >> 16) + (acc & 0xffff);
    }
    acc as u16
}

/// The pseudo-header's sum for `len` bytes of `proto` in IP packet `p` (IPv6 when `v6`).
pub(crate) fn pseudo_sum(p: &[u8], v6: bool, proto: u8, len: usize) -> u64 {
    let addrs = if v6 { &p[8..40] } else { &p[12..20] };
    sum(addrs, 0) + u64::from(proto) + len as u64
}

/// Where the transport header and its checksum are in a packet [`l4_of`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L4 {
    /// Offset of the TCP or UDP header (the IP header's length).
    pub start: usize,
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
    /// Whether the packet is IPv6.
    pub v6: bool,
}

impl L4 {
    /// Offset of the checksum within the transport header.
    pub fn csum_offset(&self) -> usize {
        if self.proto == PROTO_TCP { 16 } else { 6 }
    }

    /// Offset of the checksum within the packet.
    pub fn csum_at(&self) -> usize {
        self.start + self.csum_offset()
    }
}

/// The transport header of `p` when it may carry a checksum left to the receiver: a whole
/// IPv4 datagram (its total length `p.len()`, not a fragment) or an IPv6 packet without
/// extension headers (its payload length `p.len() - 40`), carrying TCP (a header of
/// 20–60 bytes, within the packet) or UDP (8 bytes).
pub fn l4_of(p: &[u8]) -> Option<L4> {
    let first = *p.first()?;
    let (start, proto, v6) = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < 20 || p.len() < ihl || usize::from(be16(p, 2)) != p.len() {
                return None;
            }
            // More fragments, or a fragment offset: not a whole datagram.
            if be16(p, 6) & 0x3fff != 0 {
                return None;
            }
            (ihl, p[9], false)
        }
        6 => {
            if p.len() < 40 || usize::from(be16(p, 4)) != p.len() - 40 {
                return None;
            }
            (40, p[6], true)
        }
        _ => return None,
    };
    let l4 = &p[start..];
    let ok = match proto {
        PROTO_TCP => {
            l4.len() >= 20 && {
                let h = usize::from(l4[12] >> 4) * 4;
                (20..=l4.len()).contains(&h)
            }
        }
        PROTO_UDP => l4.len() >= 8,
        _ => false,
    };
    ok.then_some(L4 { start, proto, v6 })
}

/// Computes the TCP or UDP checksum of `p` in full and writes it (a UDP checksum that
/// comes to zero is sent as `0xffff`). Returns `false`, leaving `p` as it was, when `p`
/// is not a packet [`l4_of`] accepts.
pub fn complete_checksum(p: &mut [u8]) -> bool {
    let Some(l4) = l4_of(p) else {
        return false;
    };
    let at = l4.csum_at();
    p[at..at + 2].fill(0);
    let len = p.len() - l4.start;
    let c = !fold(sum(&p[l4.start..], pseudo_sum(p, l4.v6, l4.proto, len)));
    let c = if c == 0 && l4.proto == PROTO_UDP {
        0xffff
    } else {
        c
    };
    p[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// Writes into `p`'s checksum field the sum a `NEEDS_CSUM` header asks for (the
/// pseudo-header's, folded, not complemented), so the kernel finishes it. `None`, leaving
/// `p` as it was, when `p` is not a packet [`l4_of`] accepts.
pub(crate) fn seed_partial(p: &mut [u8]) -> Option<L4> {
    let l4 = l4_of(p)?;
    let partial = fold(pseudo_sum(p, l4.v6, l4.proto, p.len() - l4.start));
    let at = l4.csum_at();
    p[at..at + 2].copy_from_slice(&partial.to_be_bytes());
    Some(l4)
}

/// Why one read of the device could not be split. The read's packets are dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// Shorter than a virtio-net header, or a header that does not fit the packet.
    #[error("malformed offload frame: {0}")]
    Malformed(&'static str),
    /// A segmentation type this reader does not split.
    #[error("unknown segmentation type {0}")]
    UnknownGso(u8),
    /// More segments than buffers, or a segment longer than a buffer's room.
    #[error("{segments} segments of up to {segment_len} bytes do not fit the buffers")]
    NoRoom {
        /// Segments the frame holds.
        segments: usize,
        /// Bytes of the longest.
        segment_len: usize,
    },
}

/// Where a split puts its packets, in order: separate buffers ([`split`]) or back to back
/// ([`split_packed`]).
trait Sink {
    /// Whether `segments` packets of up to `longest` bytes fit.
    fn fits(&self, segments: usize, longest: usize) -> bool;
    /// Puts the next packet, `head` then `body`, and returns it for its fields to be set.
    fn put(&mut self, head: &[u8], body: &[u8]) -> &mut [u8];
    /// Closes the packet just put, with its flag: checksum left unfinished.
    fn close(&mut self, offload: bool);
}

/// Packet `i` in `bufs[i][headroom..]`, its length in `lens[i]`, its flag in `offload[i]`.
struct Bufs<'a> {
    bufs: &'a mut [Vec<u8>],
    lens: &'a mut [usize],
    offload: &'a mut [bool],
    headroom: usize,
    next: usize,
}

impl Sink for Bufs<'_> {
    fn fits(&self, segments: usize, longest: usize) -> bool {
        let room = self.bufs.len().min(self.lens.len()).min(self.offload.len());
        segments <= room
            && self.bufs[..segments]
                .iter()
                .all(|b| b.len() >= self.headroom.saturating_add(longest))
    }

    fn put(&mut self, head: &[u8], body: &[u8]) -> &mut [u8] {
        let (i, at) = (self.next, self.headroom);
        let len = head.len() + body.len();
        self.lens[i] = len;
        let out = &mut self.bufs[i][at..at + len];
        out[..head.len()].copy_from_slice(head);
        out[head.len()..].copy_from_slice(body);
        out
    }

    fn close(&mut self, offload: bool) {
        self.offload[self.next] = offload;
        self.next += 1;
    }
}

/// Packets appended back to back to `data`, each one's end to `ends`, its flag to
/// `offload`.
struct Packed<'a> {
    data: &'a mut Vec<u8>,
    ends: &'a mut Vec<usize>,
    offload: &'a mut Vec<bool>,
    max_len: usize,
    max_packets: usize,
}

impl Sink for Packed<'_> {
    fn fits(&self, segments: usize, longest: usize) -> bool {
        segments <= self.max_packets && longest <= self.max_len
    }

    fn put(&mut self, head: &[u8], body: &[u8]) -> &mut [u8] {
        let start = self.data.len();
        self.data.extend_from_slice(head);
        self.data.extend_from_slice(body);
        &mut self.data[start..]
    }

    fn close(&mut self, offload: bool) {
        self.ends.push(self.data.len());
        self.offload.push(offload);
    }
}

/// Splits one frame read from an offloading device (virtio-net header, then a packet or
/// a super-packet) into packets `bufs[i][headroom..headroom + lens[i]]`; `offload[i]`
/// says whether packet `i`'s TCP or UDP checksum is left unfinished (its field zero).
/// Checksums that cannot be left (a transport header after IPv6 extension headers) are
/// finished here. Returns the number of packets.
///
/// # Errors
/// [`SplitError`]; nothing in `bufs` is meaningful then.
pub fn split(
    frame: &[u8],
    bufs: &mut [Vec<u8>],
    lens: &mut [usize],
    offload: &mut [bool],
    headroom: usize,
) -> Result<usize, SplitError> {
    split_into(
        frame,
        &mut Bufs {
            bufs,
            lens,
            offload,
            headroom,
            next: 0,
        },
    )
}

/// As [`split`], appending the packets back to back to `data` (each one's end, an offset
/// in `data`, to `ends`; its flag to `offload`): the form a batch travels in, with no
/// copy after this one. At most `max_packets` packets of at most `max_len` bytes each.
/// Returns the number appended.
///
/// # Errors
/// [`SplitError`]; `data`, `ends` and `offload` are then as they were.
pub fn split_packed(
    frame: &[u8],
    data: &mut Vec<u8>,
    ends: &mut Vec<usize>,
    offload: &mut Vec<bool>,
    max_len: usize,
    max_packets: usize,
) -> Result<usize, SplitError> {
    let before = (data.len(), ends.len(), offload.len());
    let mut sink = Packed {
        data,
        ends,
        offload,
        max_len,
        max_packets,
    };
    let r = split_into(frame, &mut sink);
    if r.is_err() {
        sink.data.truncate(before.0);
        sink.ends.truncate(before.1);
        sink.offload.truncate(before.2);
    }
    r
}

fn split_into(frame: &[u8], sink: &mut impl Sink) -> Result<usize, SplitError> {
    if frame.len() <= VNET_HDR_LEN {
        return Err(SplitError::Malformed(
            "no packet after the virtio-net header",
        ));
    }
    let (hdr, input) = frame.split_at(VNET_HDR_LEN);
    let flags = hdr[0];
    let gso_type = hdr[1] & !GSO_ECN;
    let gso_size = usize::from(u16::from_le_bytes([hdr[4], hdr[5]]));
    let csum_start = usize::from(u16::from_le_bytes([hdr[6], hdr[7]]));
    let csum_offset = usize::from(u16::from_le_bytes([hdr[8], hdr[9]]));

    if gso_type == GSO_NONE {
        if !sink.fits(1, input.len()) {
            return Err(SplitError::NoRoom {
                segments: 1,
                segment_len: input.len(),
            });
        }
        let out = sink.put(input, &[]);
        let mut left = false;
        if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
            let standard =
                l4_of(out).filter(|l4| l4.start == csum_start && l4.csum_offset() == csum_offset);
            if let Some(l4) = standard {
                let at = l4.csum_at();
                out[at..at + 2].fill(0);
                left = true;
            } else {
                // The field holds the pseudo-header's sum: the rest is summed here.
                let at = csum_start
                    .checked_add(csum_offset)
                    .filter(|&at| csum_start < out.len() && at + 2 <= out.len())
                    .ok_or(SplitError::Malformed("checksum field outside the packet"))?;
                let c = !fold(sum(&out[csum_start..], 0));
                out[at..at + 2].copy_from_slice(&c.to_be_bytes());
            }
        }
        sink.close(left);
        return Ok(1);
    }

    let proto = match gso_type {
        GSO_TCPV4 | GSO_TCPV6 => PROTO_TCP,
        GSO_UDP_L4 => PROTO_UDP,
        other => return Err(SplitError::UnknownGso(other)),
    };
    let v6 = match input[0] >> 4 {
        4 => false,
        6 => true,
        _ => return Err(SplitError::Malformed("not IPv4 or IPv6")),
    };
    if (gso_type == GSO_TCPV4 && v6) || (gso_type == GSO_TCPV6 && !v6) {
        return Err(SplitError::Malformed(
            "segmentation type of the other IP version",
        ));
    }
    let min_iph = if v6 { 40 } else { 20 };
    if csum_start < min_iph || input.len() < csum_start + 8 {
        return Err(SplitError::Malformed("transport header outside the packet"));
    }
    if !v6 && csum_start != usize::from(input[0] & 0x0f) * 4 {
        return Err(SplitError::Malformed(
            "IPv4 header length other than the checksum start",
        ));
    }
    if csum_offset != if proto == PROTO_TCP { 16 } else { 6 } {
        return Err(SplitError::Malformed("checksum offset of another protocol"));
    }
    // The header length from the packet itself: the kernel's `hdr_len` may cover the
    // whole first packet on the forwarding path.
    let hdr_len = if proto == PROTO_TCP {
        if input.len() < csum_start + 20 {
            return Err(SplitError::Malformed("TCP header outside the packet"));
        }
        let th = usize::from(input[csum_start + 12] >> 4) * 4;
        if th < 20 || input.len() < csum_start + th {
            return Err(SplitError::Malformed("TCP header outside the packet"));
        }
        csum_start + th
    } else {
        csum_start + 8
    };
    if gso_size == 0 {
        return Err(SplitError::Malformed("segment size zero"));
    }
    let payload = input.len() - hdr_len;
    let segments = payload.div_ceil(gso_size).max(1);
    let longest = hdr_len + payload.min(gso_size);
    if !sink.fits(segments, longest) {
        return Err(SplitError::NoRoom {
            segments,
            segment_len: longest,
        });
    }
    let seq0 = if proto == PROTO_TCP {
        be32(input, csum_start + 4)
    } else {
        0
    };
    let id0 = if v6 { 0 } else { be16(input, 4) };
    // IPv4: the header's sum without its length, identification and checksum, which are
    // all that differ between segments; each segment's is then two additions (summing
    // the header again, right after writing it, was 3.9 % of a sending end's samples).
    let v4_base = if v6 {
        0
    } else {
        sum(&input[..2], 0) + sum(&input[6..10], 0) + sum(&input[12..csum_start], 0)
    };
    let csum_at = csum_start + csum_offset;
    for i in 0..segments {
        let from = hdr_len + i * gso_size;
        let to = (from + gso_size).min(input.len());
        let seg = to - from;
        let len = hdr_len + seg;
        let out = sink.put(&input[..hdr_len], &input[from..to]);
        if v6 {
            out[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        } else {
            let id = id0.wrapping_add(i as u16);
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            out[4..6].copy_from_slice(&id.to_be_bytes());
            let c = !fold(v4_base + len as u64 + u64::from(id));
            out[10..12].copy_from_slice(&c.to_be_bytes());
        }
        if proto == PROTO_TCP {
            let seq = seq0.wrapping_add((i * gso_size) as u32);
            out[csum_start + 4..csum_start + 8].copy_from_slice(&seq.to_be_bytes());
            let tcp_flags = &mut out[csum_start + 13];
            if i > 0 {
                *tcp_flags &= !TCP_CWR;
            }
            if i + 1 < segments {
                *tcp_flags &= !(TCP_FIN | TCP_PSH);
            }
        } else {
            out[csum_start + 4..csum_start + 6].copy_from_slice(&((8 + seg) as u16).to_be_bytes());
        }
        out[csum_at..csum_at + 2].fill(0);
        // Left to the peer where both ends find the checksum the same way.
        if l4_of(out).is_some_and(|l| l.start == csum_start && l.proto == proto) {
            sink.close(true);
        } else {
            let l4_len = len - csum_start;
            let c = !fold(sum(&out[csum_start..], pseudo_sum(out, v6, proto, l4_len)));
            let c = if c == 0 && proto == PROTO_UDP {
                0xffff
            } else {
                c
            };
            out[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
            sink.close(false);
        }
    }
    Ok(segments)
}

/// Packets with valid checksums, for the tests of this module and of [`crate::gro`].
#[cfg(test)]
pub(crate) mod test_packets {
    #![allow(clippy::indexing_slicing)]

    use super::*;

    /// A TCP/IPv4 segment of `payload` with valid checksums.
    pub(crate) fn tcp4(seq: u32, ack: u32, flags: u8, id: u16, payload: &[u8]) -> Vec<u8> {
        let len = 40 + payload.len();
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[4..6].copy_from_slice(&id.to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = PROTO_TCP;
        p[12..16].copy_from_slice(&[10, 77, 0, 2]);
        p[16..20].copy_from_slice(&[10, 77, 0, 1]);
        let c = !fold(sum(&p[..20], 0));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&5201u16.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&ack.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = flags;
        p[34..36].copy_from_slice(&501u16.to_be_bytes());
        p[40..].copy_from_slice(payload);
        let c = !fold(sum(&p[20..], pseudo_sum(&p, false, PROTO_TCP, len - 20)));
        p[36..38].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// A UDP/IPv6 datagram of `payload` with a valid checksum.
    pub(crate) fn udp6(payload: &[u8]) -> Vec<u8> {
        let len = 48 + payload.len();
        let mut p = vec![0u8; len];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        p[6] = PROTO_UDP;
        p[7] = 64;
        p[8..24].copy_from_slice(&[
            0xfd, 0x61, 0x75, 0x72, 0x61, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
        ]);
        p[24..40].copy_from_slice(&[
            0xfd, 0x61, 0x75, 0x72, 0x61, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
        ]);
        p[40..42].copy_from_slice(&443u16.to_be_bytes());
        p[42..44].copy_from_slice(&50000u16.to_be_bytes());
        p[44..46].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        p[48..].copy_from_slice(payload);
        let c = !fold(sum(&p[40..], pseudo_sum(&p, true, PROTO_UDP, len - 40)));
        p[46..48].copy_from_slice(&c.to_be_bytes());
        p
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::test_packets::{tcp4, udp6};
    use super::*;

    const SLOTS: usize = 64;

    fn slots() -> (Vec<Vec<u8>>, Vec<usize>, Vec<bool>) {
        (
            vec![vec![0u8; 4 + 2048]; SLOTS],
            vec![0; SLOTS],
            vec![false; SLOTS],
        )
    }

    /// A virtio-net header.
    fn vnet(flags: u8, gso: u8, hdr_len: u16, gso_size: u16, start: u16, offset: u16) -> Vec<u8> {
        [
            &[flags, gso][..],
            &hdr_len.to_le_bytes(),
            &gso_size.to_le_bytes(),
            &start.to_le_bytes(),
            &offset.to_le_bytes(),
        ]
        .concat()
    }

    /// A TCP/IPv4 super-packet as the kernel hands it over: the first segment's headers
    /// with the whole length, `n` segments of `seg` bytes (the last `last` bytes), PSH on,
    /// and in the checksum field the pseudo-header's sum (`CHECKSUM_PARTIAL`).
    fn super_tcp4(n: usize, seg: usize, last: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..(n - 1) * seg + last)
            .map(|i| (i * 13 % 251) as u8)
            .collect();
        let mut p = tcp4(5000, 77, 0x18, 900, &payload);
        let at = 36;
        let partial = fold(pseudo_sum(&p, false, PROTO_TCP, p.len() - 20));
        p[at..at + 2].copy_from_slice(&partial.to_be_bytes());
        [vnet(1, GSO_TCPV4, 40, seg as u16, 20, 16), p].concat()
    }

    /// What tun-rs's split (independent code, checksums finished) makes of `frame`.
    fn oracle(frame: &[u8]) -> Vec<Vec<u8>> {
        let hdr = tun_rs::VirtioNetHdr::decode(&frame[..VNET_HDR_LEN]).unwrap();
        let mut input = frame[VNET_HDR_LEN..].to_vec();
        let mut out = vec![vec![0u8; 2048]; SLOTS];
        let mut sizes = vec![0; SLOTS];
        let v6 = input[0] >> 4 == 6;
        let n = tun_rs::gso_split(&mut input, hdr, &mut out, &mut sizes, 0, v6).unwrap();
        (0..n).map(|i| out[i][..sizes[i]].to_vec()).collect()
    }

    #[test]
    fn a_super_packet_splits_into_segments_left_to_the_peer_that_finish_as_the_kernel_would() {
        let frame = super_tcp4(5, 1000, 321);
        let (mut bufs, mut lens, mut offload) = slots();
        let n = split(&frame, &mut bufs, &mut lens, &mut offload, 4).unwrap();
        assert_eq!(n, 5);
        assert!(offload[..n].iter().all(|o| *o));
        let want = oracle(&frame);
        for i in 0..n {
            let p = &mut bufs[i][4..4 + lens[i]];
            assert_eq!(&p[36..38], &[0, 0], "the field goes as zero");
            assert_eq!(l4_of(p).map(|l| l.csum_at()), Some(36));
            assert!(complete_checksum(p));
            assert_eq!(p, &want[i][..], "segment {i}");
        }
        // PSH only on the last; sequence numbers advance by the segment size.
        assert_eq!(bufs[0][4 + 33], 0x10);
        assert_eq!(bufs[4][4 + 33], 0x18);
        assert_eq!(lens[4], 40 + 321);
    }

    #[test]
    fn a_single_packet_with_its_checksum_unfinished_is_left_to_the_peer() {
        let whole = udp6(b"one datagram");
        let mut p = whole.clone();
        let partial = fold(pseudo_sum(&p, true, PROTO_UDP, p.len() - 40));
        p[46..48].copy_from_slice(&partial.to_be_bytes());
        let frame = [vnet(1, GSO_NONE, 0, 0, 40, 6), p.clone()].concat();
        let (mut bufs, mut lens, mut offload) = slots();
        assert_eq!(split(&frame, &mut bufs, &mut lens, &mut offload, 4), Ok(1));
        assert!(offload[0]);
        let got = &mut bufs[0][4..4 + lens[0]];
        assert!(complete_checksum(got));
        assert_eq!(got, &whole[..]);
        // Complete already (no NEEDS_CSUM): as it came, not flagged.
        let frame = [vnet(0, GSO_NONE, 0, 0, 0, 0), whole.clone()].concat();
        assert_eq!(split(&frame, &mut bufs, &mut lens, &mut offload, 4), Ok(1));
        assert!(!offload[0]);
        assert_eq!(&bufs[0][4..4 + lens[0]], &whole[..]);
    }

    /// A transport header after IPv6 extension headers: finished here, not flagged.
    #[test]
    fn a_checksum_the_peer_could_not_find_is_finished_here() {
        let whole = udp6(b"behind a hop-by-hop header");
        // Insert an 8-byte hop-by-hop header (next header UDP) after the fixed header.
        let mut p = whole[..40].to_vec();
        p[6] = 0; // hop-by-hop
        p.extend_from_slice(&[PROTO_UDP, 0, 1, 4, 0, 0, 0, 0]);
        p.extend_from_slice(&whole[40..]);
        let plen = (p.len() - 40) as u16;
        p[4..6].copy_from_slice(&plen.to_be_bytes());
        assert_eq!(l4_of(&p), None);
        let udp_len = whole.len() - 40;
        let partial = fold(pseudo_sum(&whole, true, PROTO_UDP, udp_len));
        p[48 + 6..48 + 8].copy_from_slice(&partial.to_be_bytes());
        let frame = [vnet(1, GSO_NONE, 0, 0, 48, 6), p.clone()].concat();
        let (mut bufs, mut lens, mut offload) = slots();
        assert_eq!(split(&frame, &mut bufs, &mut lens, &mut offload, 0), Ok(1));
        assert!(!offload[0]);
        // The same checksum as the datagram without the extension header.
        assert_eq!(bufs[0][48 + 6..48 + 8], whole[46..48]);
    }

    #[test]
    fn frames_that_cannot_be_split_are_named() {
        let (mut bufs, mut lens, mut offload) = slots();
        let mut go = |f: &[u8]| split(f, &mut bufs, &mut lens, &mut offload, 4);
        assert!(matches!(
            go(&[0; VNET_HDR_LEN]),
            Err(SplitError::Malformed(_))
        ));
        let good = super_tcp4(3, 500, 500);
        let mut f = good.clone();
        f[1] = 3; // GSO_UDP (UFO), never asked for
        assert_eq!(go(&f), Err(SplitError::UnknownGso(3)));
        let mut f = good.clone();
        f[4..6].fill(0); // gso_size 0
        assert!(matches!(go(&f), Err(SplitError::Malformed(_))));
        let mut f = good.clone();
        f[8] = 6; // UDP's offset on TCP
        assert!(matches!(go(&f), Err(SplitError::Malformed(_))));
        let mut f = good.clone();
        f[1] = GSO_TCPV6; // on an IPv4 packet
        assert!(matches!(go(&f), Err(SplitError::Malformed(_))));
        let mut f = good.clone();
        f.truncate(VNET_HDR_LEN + 30); // the TCP header cut
        assert!(matches!(go(&f), Err(SplitError::Malformed(_))));
        // More segments than buffers; a segment longer than a buffer.
        let (mut bufs, mut lens, mut offload) = (vec![vec![0u8; 2048]; 2], [0; 2], [false; 2]);
        assert_eq!(
            split(&good, &mut bufs, &mut lens, &mut offload, 0),
            Err(SplitError::NoRoom {
                segments: 3,
                segment_len: 540
            })
        );
        let (mut bufs, mut lens, mut offload) = slots();
        let big = super_tcp4(2, 1800, 1800);
        assert!(matches!(
            split(&big, &mut bufs, &mut lens, &mut offload, 300),
            Err(SplitError::NoRoom { .. })
        ));
    }

    /// The packets `split` makes of `frame`, with their flags.
    fn split_separately(frame: &[u8]) -> Result<Vec<(Vec<u8>, bool)>, SplitError> {
        let (mut bufs, mut lens, mut offload) = slots();
        let n = split(frame, &mut bufs, &mut lens, &mut offload, 4)?;
        Ok((0..n)
            .map(|i| (bufs[i][4..4 + lens[i]].to_vec(), offload[i]))
            .collect())
    }

    #[test]
    fn a_packed_split_appends_what_a_split_into_buffers_makes() {
        let mut single = udp6(b"one datagram");
        let partial = fold(pseudo_sum(&single, true, PROTO_UDP, single.len() - 40));
        single[46..48].copy_from_slice(&partial.to_be_bytes());
        let frames = [
            super_tcp4(5, 1000, 321),
            super_tcp4(1, 700, 700),
            [vnet(1, GSO_NONE, 0, 0, 40, 6), single].concat(),
            [vnet(0, GSO_NONE, 0, 0, 0, 0), udp6(b"complete")].concat(),
        ];
        // One batch across reads: each read's packets come after what is there.
        let (mut data, mut ends, mut offload) = (b"earlier".to_vec(), vec![7], vec![false]);
        let mut want: Vec<(Vec<u8>, bool)> = vec![(b"earlier".to_vec(), false)];
        for f in &frames {
            let n = split_packed(f, &mut data, &mut ends, &mut offload, 1280, 64).unwrap();
            let separately = split_separately(f).unwrap();
            assert_eq!(n, separately.len());
            want.extend(separately);
        }
        assert_eq!((ends.len(), offload.len()), (want.len(), want.len()));
        assert_eq!(ends.last(), Some(&data.len()));
        let mut start = 0;
        for (i, (&end, (packet, flag))) in ends.iter().zip(&want).enumerate() {
            assert_eq!(&data[start..end], &packet[..], "packet {i}");
            assert_eq!(offload[i], *flag, "flag of packet {i}");
            start = end;
        }
    }

    #[test]
    fn a_packed_split_that_fails_leaves_the_batch_as_it_was() {
        let (mut data, mut ends, mut offload) = (b"kept".to_vec(), vec![4], vec![true]);
        let mut go = |f: &[u8], max_len, max_packets| {
            split_packed(f, &mut data, &mut ends, &mut offload, max_len, max_packets)
        };
        let good = super_tcp4(3, 500, 500);
        assert_eq!(
            go(&good, 1280, 2),
            Err(SplitError::NoRoom {
                segments: 3,
                segment_len: 540
            })
        );
        assert!(matches!(go(&good, 539, 64), Err(SplitError::NoRoom { .. })));
        // A single packet whose checksum field lies outside it: refused after it was
        // appended, then taken back out.
        let p = udp6(b"x");
        let frame = [vnet(1, GSO_NONE, 0, 0, 40, 60), p].concat();
        assert!(matches!(
            go(&frame, 1280, 64),
            Err(SplitError::Malformed(_))
        ));
        assert_eq!(
            (&data[..], &ends[..], &offload[..]),
            (&b"kept"[..], &[4][..], &[true][..])
        );
    }

    #[test]
    fn only_whole_tcp_and_udp_datagrams_have_a_checksum_to_leave() {
        let t = tcp4(1, 2, 0x10, 3, b"payload");
        assert_eq!(
            l4_of(&t),
            Some(L4 {
                start: 20,
                proto: PROTO_TCP,
                v6: false
            })
        );
        let mut frag = t.clone();
        frag[6] |= 0x20; // more fragments
        assert_eq!(l4_of(&frag), None);
        let mut icmp = t.clone();
        icmp[9] = 1;
        assert_eq!(l4_of(&icmp), None);
        assert!(!complete_checksum(&mut icmp.clone()));
        let mut bad_len = t.clone();
        bad_len[3] ^= 1;
        assert_eq!(l4_of(&bad_len), None);
        let mut long_tcp = t.clone();
        long_tcp[32] = 15 << 4; // a 60-byte TCP header in a 27-byte segment
        assert_eq!(l4_of(&long_tcp), None);
        assert_eq!(l4_of(&[]), None);
        assert_eq!(l4_of(&udp6(b"")).map(|l| l.csum_at()), Some(46));
        // A UDP checksum that comes to zero goes as 0xffff.
        let mut u = udp6(b"");
        for fill in 0..=u16::MAX {
            u[40..42].copy_from_slice(&fill.to_be_bytes());
            u[46..48].fill(0);
            if fold(sum(&u[40..], pseudo_sum(&u, true, PROTO_UDP, 8))) == 0xffff {
                assert!(complete_checksum(&mut u));
                assert_eq!(u[46..48], [0xff, 0xff]);
                return;
            }
        }
        panic!("no source port makes the sum zero");
    }
}
