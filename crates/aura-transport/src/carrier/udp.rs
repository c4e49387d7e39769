//! The UDP carrier's socket: bound with large buffers (every peer VPN measured on the
//! reference machine lost packets at Linux's default 208 KiB receive buffer), read and
//! written in batches: `recvmmsg` with GRO, and GSO sends, through quinn-udp
//! ([`BatchSocket`], used by the driver), with a fallback to one datagram per system call.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::camo::shape;
use crate::carrier::Carrier;
use crate::error::TransportError;

/// Socket buffer size requested for UDP carriers, in bytes.
pub const UDP_BUFFER_BYTES: usize = 8 << 20;

/// Binds a non-blocking UDP socket on `addr` with [`UDP_BUFFER_BYTES`] buffers. With
/// CAP_NET_ADMIN the size is forced past `net.core.rmem_max`; without, the kernel caps it.
///
/// # Errors
/// [`TransportError::Bind`] naming the address.
pub fn bind(addr: SocketAddr) -> Result<UdpSocket, TransportError> {
    let socket = new_socket(addr)?;
    socket.bind(&addr.into()).map_err(bind_error(addr))?;
    UdpSocket::from_std(socket.into()).map_err(bind_error(addr))
}

fn bind_error(addr: SocketAddr) -> impl Fn(io::Error) -> TransportError {
    move |source| TransportError::Bind {
        carrier: Carrier::Udp,
        addr,
        source,
    }
}

/// An unbound non-blocking UDP socket for `addr`'s family, with large buffers.
fn new_socket(addr: SocketAddr) -> Result<Socket, TransportError> {
    let err = bind_error(addr);
    let socket =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(&err)?;
    if addr.is_ipv6() {
        // Dual-stack when bound to [::].
        let _ = socket.set_only_v6(false);
    }
    use nix::sys::socket::{setsockopt, sockopt};
    let size = UDP_BUFFER_BYTES;
    if setsockopt(&socket, sockopt::RcvBufForce, &size).is_err() {
        let _ = socket.set_recv_buffer_size(size);
    }
    if setsockopt(&socket, sockopt::SndBufForce, &size).is_err() {
        let _ = socket.set_send_buffer_size(size);
    }
    socket.set_nonblocking(true).map_err(err)?;
    Ok(socket)
}

/// The most workers one server address may be shared by.
pub const MAX_WORKERS: usize = 64;

/// Binds `count` UDP sockets on one address (`SO_REUSEPORT`), one per worker, and has
/// the kernel steer each datagram by its source — the IPv4 address, or the /64 of an
/// IPv6 one — to socket [`worker_of`] (a classic BPF program on the group), so one
/// source always reaches the same worker, whatever its ports. `count == 1` is [`bind`].
///
/// A group cannot join sockets bound before it: the address is first bound once without
/// `SO_REUSEPORT`, which fails as [`bind`] does when anything holds it (another server
/// with its own group included). With port 0 that first bind picks the port, so the
/// group is never given the port of another group of this user.
///
/// # Errors
/// [`TransportError::Bind`] naming the address; more than [`MAX_WORKERS`] sockets is
/// `InvalidInput`.
pub fn bind_group(addr: SocketAddr, count: usize) -> Result<Vec<UdpSocket>, TransportError> {
    let err = bind_error(addr);
    if count <= 1 {
        return Ok(vec![bind(addr)?]);
    }
    let count32 = u32::try_from(count)
        .ok()
        .filter(|&n| n as usize <= MAX_WORKERS)
        .ok_or_else(|| err(io::Error::from(io::ErrorKind::InvalidInput)))?;
    // Refuses an address in use, reuse-port group or not; freed before the group binds.
    // For port 0 it also picks the port: a group bound to port 0 could be given the port
    // of another reuse-port group of this user, and the two would share datagrams.
    let addr = {
        let probe = bind(addr)?;
        probe.local_addr().map_err(&err)?
    };
    use nix::sys::socket::{setsockopt, sockopt};
    let program = steering_program(count32);
    let mut at = addr;
    let mut group = Vec::with_capacity(count);
    for i in 0..count {
        let socket = new_socket(at)?;
        setsockopt(&socket, sockopt::ReusePort, &true).map_err(|e| err(e.into()))?;
        socket.bind(&at.into()).map_err(&err)?;
        if i == 0 {
            // Later sockets join the port the first one got (when `addr` asked for any).
            at = socket
                .local_addr()
                .map_err(&err)?
                .as_socket()
                .ok_or_else(|| err(io::Error::from(io::ErrorKind::InvalidData)))?;
            let fprog = nix::libc::sock_fprog {
                len: program.len() as u16,
                filter: program.as_ptr().cast_mut(),
            };
            // The kernel copies the program; `program` only has to outlive the call.
            setsockopt(&socket, sockopt::AttachReusePortCbpf, &fprog).map_err(|e| err(e.into()))?;
        }
        group.push(UdpSocket::from_std(socket.into()).map_err(&err)?);
    }
    Ok(group)
}

/// The worker of `count` that datagrams from `source` reach (see [`bind_group`]); the
/// same function places stream links, so a source's handshakes meet one worker's
/// per-source limits on every carrier.
pub fn worker_of(source: std::net::IpAddr, count: usize) -> usize {
    let key = match source.to_canonical() {
        std::net::IpAddr::V4(a) => u32::from_be_bytes(a.octets()),
        std::net::IpAddr::V6(a) => {
            let o = a.octets();
            u32::from_be_bytes([o[0], o[1], o[2], o[3]])
                ^ u32::from_be_bytes([o[4], o[5], o[6], o[7]])
        }
    };
    let count = u32::try_from(count.max(1)).unwrap_or(u32::MAX);
    // As the BPF program computes it, in 32-bit arithmetic.
    ((key.wrapping_mul(STEERING_MULTIPLIER) >> 16) % count) as usize
}

/// Fibonacci hashing's multiplier (2^32 / φ): spreads neighbouring addresses.
const STEERING_MULTIPLIER: u32 = 0x9E37_79B1;

/// The classic BPF program of [`bind_group`]: it reads the source address from the IP
/// header (`SKF_NET_OFF`) and returns [`worker_of`] it, the index of a socket in the
/// group.
fn steering_program(count: u32) -> Vec<nix::libc::sock_filter> {
    // Offsets below the packet's start reach the network header (linux/filter.h).
    const NET: u32 = (-0x10_0000i32) as u32;
    const LD_W_ABS: u16 = 0x20;
    const LD_B_ABS: u16 = 0x30;
    const RSH_K: u16 = 0x74;
    const MUL_K: u16 = 0x24;
    const MOD_K: u16 = 0x94;
    const XOR_X: u16 = 0xac;
    const JEQ_K: u16 = 0x15;
    const JA: u16 = 0x05;
    const TAX: u16 = 0x07;
    const RET_A: u16 = 0x16;
    let op = |code, jt, jf, k| nix::libc::sock_filter { code, jt, jf, k };
    vec![
        op(LD_B_ABS, 0, 0, NET),      // 0: A = first byte of the IP header
        op(RSH_K, 0, 0, 4),           // 1: A = IP version
        op(JEQ_K, 0, 5, 6),           // 2: IPv6 → 3, IPv4 → 8
        op(LD_W_ABS, 0, 0, NET + 8),  // 3: the source's first word
        op(TAX, 0, 0, 0),             // 4: X = A
        op(LD_W_ABS, 0, 0, NET + 12), // 5: its second word (the /64 ends here)
        op(XOR_X, 0, 0, 0),           // 6: A ^= X
        op(JA, 0, 0, 1),              // 7: → 9
        op(LD_W_ABS, 0, 0, NET + 12), // 8: the IPv4 source
        op(MUL_K, 0, 0, STEERING_MULTIPLIER),
        op(RSH_K, 0, 0, 16),
        op(MOD_K, 0, 0, count),
        op(RET_A, 0, 0, 0),
    ]
}

/// Receive slots per batch: one `recvmmsg` fills up to this many.
pub(crate) const RX_SLOTS: usize = quinn_udp::BATCH_SIZE;
/// Bytes per receive slot with GRO: a whole GRO train (the kernel coalesces at most
/// 64 KiB).
const RX_GRO_SLOT_BYTES: usize = 1 << 16;
/// Receive slots with GRO: 8 trains are up to 512 KiB, some 350 datagrams, per call.
/// 32 such slots were 2 MiB of resident buffer per socket for no measured gain.
const RX_GRO_SLOTS: usize = 8;
/// Bytes per receive slot without GRO: one datagram. Aura never sends one larger than
/// [`shape::MAX_PADDED`]; a larger one arrives truncated and fails to open.
const RX_PLAIN_SLOT_BYTES: usize = 2048;
/// The largest UDP payload one `sendmsg` can carry (IPv4: 65,535 − 20 − 8); bounds a GSO
/// train.
const MAX_SEND_BYTES: usize = 65_507;
/// Segments larger than this are never coalesced: a GSO segment above the path MTU makes
/// the kernel refuse the whole train, and quinn-udp then turns GSO off for good.
const MAX_GSO_SEGMENT: usize = shape::MAX_PADDED;
/// Datagrams held in a [`TxQueue`] before it must be sent.
pub(crate) const TX_QUEUE_DATAGRAMS: usize = 128;
/// Bytes held in a [`TxQueue`] before it must be sent.
const TX_QUEUE_BYTES: usize = 256 << 10;

/// Received datagrams, in caller-owned buffers reused from batch to batch.
pub(crate) struct RxBatch {
    buf: Vec<u8>,
    meta: [RecvMeta; RX_SLOTS],
    /// Slots in use (at most [`RX_SLOTS`]) and the bytes of each: sized for the socket.
    slots: usize,
    slot_bytes: usize,
    filled: usize,
}

impl RxBatch {
    /// Slots for `socket`: a few whole GRO trains when the socket coalesces, else
    /// [`RX_SLOTS`] single datagrams (also when there is no socket: nothing is touched).
    pub(crate) fn for_socket(socket: Option<&BatchSocket>) -> Self {
        let gro = socket.is_some_and(|s| s.gro_segments() > 1);
        let (slots, slot_bytes) = if gro {
            (RX_GRO_SLOTS, RX_GRO_SLOT_BYTES)
        } else {
            (RX_SLOTS, RX_PLAIN_SLOT_BYTES)
        };
        Self::with_slots(slots, slot_bytes)
    }

    fn with_slots(slots: usize, slot_bytes: usize) -> Self {
        let slots = slots.clamp(1, RX_SLOTS);
        Self {
            buf: vec![0u8; slots * slot_bytes],
            meta: [RecvMeta::default(); RX_SLOTS],
            slots,
            slot_bytes,
            filled: 0,
        }
    }

    /// Every datagram of the last receive, with its source: GRO trains are split at
    /// their stride (the last segment may be shorter).
    pub(crate) fn datagrams(&mut self) -> impl Iterator<Item = (SocketAddr, &mut [u8])> {
        let meta = &self.meta[..self.filled.min(self.slots)];
        meta.iter()
            .zip(self.buf.chunks_mut(self.slot_bytes))
            .flat_map(|(m, slot)| {
                let data: &mut [u8] = slot.get_mut(..m.len).unwrap_or_default();
                let stride = if m.stride == 0 {
                    m.len.max(1)
                } else {
                    m.stride
                };
                let from = m.addr;
                data.chunks_mut(stride).map(move |d| (from, d))
            })
    }
}

/// One queued datagram: `TxQueue::buf[start..start + len]` to `to`.
#[derive(Clone, Copy)]
struct TxEntry {
    to: SocketAddr,
    start: usize,
    len: usize,
}

/// Datagrams waiting to be sent, back to back in one buffer so that a run of equal-sized
/// datagrams to one destination goes out as one GSO `sendmsg`.
pub(crate) struct TxQueue {
    buf: Vec<u8>,
    entries: Vec<TxEntry>,
}

impl TxQueue {
    pub(crate) fn new() -> Self {
        Self {
            // Room for a full queue plus one maximal datagram: never reallocates.
            buf: Vec::with_capacity(TX_QUEUE_BYTES + (1 << 16) + 2 * shape::MAX_PADDED),
            entries: Vec::with_capacity(TX_QUEUE_DATAGRAMS),
        }
    }

    /// Whether a datagram of `len` bytes fits without sending first. An empty queue takes
    /// any datagram.
    pub(crate) fn has_room(&self, len: usize) -> bool {
        self.entries.is_empty()
            || (self.entries.len() < TX_QUEUE_DATAGRAMS && self.buf.len() + len <= TX_QUEUE_BYTES)
    }

    /// Queues `data` for `to` as it is (tests; the driver shapes with [`Self::push_shaped`]).
    #[cfg(test)]
    pub(crate) fn push(&mut self, to: SocketAddr, data: &[u8]) {
        self.entries.push(TxEntry {
            to,
            start: self.buf.len(),
            len: data.len(),
        });
        self.buf.extend_from_slice(data);
    }

    /// Queues the datagram `write` appends to the queue's buffer, for `to`; the caller
    /// checked [`Self::has_room`] with a bound on its size.
    pub(crate) fn push_with(&mut self, to: SocketAddr, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.buf.len();
        write(&mut self.buf);
        self.entries.push(TxEntry {
            to,
            start,
            len: self.buf.len() - start,
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The destination of every queued datagram, in order.
    pub(crate) fn destinations(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.entries.iter().map(|e| e.to)
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.buf.clear();
    }
}

/// A UDP socket with batched IO where the kernel offers it (quinn-udp): `recvmmsg` with
/// GRO on receive, UDP GSO on send. When quinn-udp cannot set the socket up, or the kernel
/// lacks GSO/GRO, it falls back to one datagram per system call.
///
/// quinn-udp forbids IP fragmentation on the socket (`IP_PMTUDISC_PROBE`, `IPV6_DONTFRAG`):
/// a datagram larger than the interface MTU is refused instead of fragmented.
pub(crate) struct BatchSocket {
    socket: UdpSocket,
    state: Option<UdpSocketState>,
    /// The socket is IPv6: IPv4 destinations are written as v4-mapped addresses.
    v6: bool,
}

impl BatchSocket {
    pub(crate) fn new(socket: UdpSocket) -> Self {
        let state = UdpSocketState::new((&socket).into()).ok();
        let v6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
        Self { socket, state, v6 }
    }

    /// GSO segments per send (1: no GSO).
    pub(crate) fn max_gso_segments(&self) -> usize {
        self.state
            .as_ref()
            .map_or(1, UdpSocketState::max_gso_segments)
    }

    /// GRO segments per receive slot (1: no GRO).
    pub(crate) fn gro_segments(&self) -> usize {
        self.state.as_ref().map_or(1, UdpSocketState::gro_segments)
    }

    /// Waits until the socket may be readable.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Receives what is queued, up to the batch's slots, without waiting; returns the
    /// number of buffers filled (`WouldBlock` when there was nothing).
    pub(crate) fn try_recv(&self, rx: &mut RxBatch) -> io::Result<usize> {
        rx.filled = 0;
        let n = match &self.state {
            Some(state) => self.socket.try_io(Interest::READABLE, || {
                let mut slots = rx.buf.chunks_mut(rx.slot_bytes);
                let mut bufs: [IoSliceMut<'_>; RX_SLOTS] =
                    std::array::from_fn(|_| IoSliceMut::new(slots.next().unwrap_or_default()));
                let n = rx.slots;
                state.recv((&self.socket).into(), &mut bufs[..n], &mut rx.meta[..n])
            })?,
            None => {
                let slot = rx.buf.get_mut(..rx.slot_bytes).unwrap_or_default();
                let (len, addr) = self.socket.try_recv_from(slot)?;
                rx.meta[0] = RecvMeta {
                    addr,
                    len,
                    stride: len,
                    ..RecvMeta::default()
                };
                1
            }
        };
        rx.filled = n.min(rx.slots);
        Ok(rx.filled)
    }

    /// Sends every queued datagram, consecutive equal-sized datagrams to one destination
    /// as one GSO train (the last of a train may be shorter), and clears the queue.
    /// Returns how many datagrams could not be sent.
    pub(crate) async fn send(&self, tx: &mut TxQueue) -> u64 {
        let mut failed = 0u64;
        let entries = &tx.entries;
        let mut i = 0;
        while let Some(first) = entries.get(i).copied() {
            let max_segments = if first.len <= MAX_GSO_SEGMENT {
                self.max_gso_segments()
                    .min(MAX_SEND_BYTES / first.len.max(1))
                    .max(1)
            } else {
                1
            };
            let mut end = i + 1;
            let mut bytes = first.len;
            while end - i < max_segments {
                let Some(e) = entries.get(end) else { break };
                if e.to != first.to || e.len > first.len || bytes + e.len > MAX_SEND_BYTES {
                    break;
                }
                bytes += e.len;
                end += 1;
                if e.len < first.len {
                    break;
                }
            }
            let train = tx
                .buf
                .get(first.start..first.start + bytes)
                .unwrap_or_default();
            let segment = (end - i > 1).then_some(first.len);
            if !self.send_one(first.to, train, segment).await {
                if segment.is_some() {
                    // GSO refused (quinn-udp has turned it off): one datagram at a time.
                    for e in entries.get(i..end).unwrap_or_default() {
                        let d = tx.buf.get(e.start..e.start + e.len).unwrap_or_default();
                        if !self.send_one(e.to, d, None).await {
                            failed += 1;
                        }
                    }
                } else {
                    failed += 1;
                }
            }
            i = end;
        }
        tx.clear();
        failed
    }

    async fn send_one(&self, to: SocketAddr, contents: &[u8], segment_size: Option<usize>) -> bool {
        let to = match to {
            SocketAddr::V4(v4) if self.v6 => {
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            other => other,
        };
        let Some(state) = &self.state else {
            return self.socket.send_to(contents, to).await.is_ok();
        };
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        loop {
            let sent = self.socket.try_io(Interest::WRITABLE, || {
                state.try_send((&self.socket).into(), &transmit)
            });
            match sent {
                Ok(()) => return true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.socket.writable().await.is_err() {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;

    /// Which socket of `group` a datagram from each of `sources` (three ports each)
    /// reaches.
    async fn receivers(group: &[UdpSocket], sources: &[std::net::IpAddr]) -> Vec<Vec<usize>> {
        let to = group[0].local_addr().unwrap();
        let mut seen = Vec::new();
        for (n, ip) in sources.iter().enumerate() {
            let mut at = Vec::new();
            for port in 0..3u8 {
                let from = std::net::UdpSocket::bind((*ip, 0)).unwrap();
                from.send_to(&[n as u8, port], to).unwrap();
                let got = tokio::time::timeout(Duration::from_secs(2), async {
                    loop {
                        for (i, s) in group.iter().enumerate() {
                            let mut b = [0u8; 8];
                            if let Ok((2, _)) = s.try_recv_from(&mut b) {
                                assert_eq!(b[..2], [n as u8, port]);
                                return i;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
                .await
                .expect("a datagram reaches the group");
                at.push(got);
            }
            seen.push(at);
        }
        seen
    }

    #[tokio::test]
    async fn a_group_steers_each_source_address_to_its_worker() {
        let sources: Vec<std::net::IpAddr> = (2..=17u8)
            .map(|i| std::net::Ipv4Addr::new(127, 0, 0, i).into())
            .collect();
        for count in [2usize, 3] {
            let group = bind_group("127.0.0.1:0".parse().unwrap(), count).unwrap();
            assert_eq!(group.len(), count);
            let port = group[0].local_addr().unwrap().port();
            assert!(group.iter().all(|s| s.local_addr().unwrap().port() == port));
            let seen = receivers(&group, &sources).await;
            for (ip, at) in sources.iter().zip(&seen) {
                let want = worker_of(*ip, count);
                assert_eq!(at, &vec![want; 3], "{ip} with {count} workers");
            }
            // Sixteen neighbouring addresses use every worker.
            for w in 0..count {
                assert!(
                    seen.iter().any(|a| a[0] == w),
                    "worker {w} of {count} got nothing"
                );
            }
        }
    }

    #[tokio::test]
    async fn an_ipv6_group_steers_by_the_64() {
        let Ok(group) = bind_group("[::1]:0".parse().unwrap(), 2) else {
            return; // no IPv6 loopback here
        };
        let seen = receivers(&group, &["::1".parse().unwrap()]).await;
        assert_eq!(seen[0], vec![worker_of("::1".parse().unwrap(), 2); 3]);
        // The /64 decides: two addresses in one /64 meet the same worker.
        let a: std::net::IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: std::net::IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        for count in 2..9 {
            assert_eq!(worker_of(a, count), worker_of(b, count));
        }
        // An IPv4-mapped address is the IPv4 address.
        let v4: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: std::net::IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(worker_of(v4, 5), worker_of(mapped, 5));
    }

    #[tokio::test]
    async fn a_second_group_on_a_taken_address_is_refused() {
        let group = bind_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = group[0].local_addr().unwrap();
        for count in [1, 2] {
            match bind_group(addr, count) {
                Err(TransportError::Bind { source, .. }) => {
                    assert_eq!(source.kind(), io::ErrorKind::AddrInUse);
                }
                other => panic!("a group joined a running one: {other:?}"),
            }
        }
        assert!(bind_group(addr, MAX_WORKERS + 1).is_err());
    }

    fn datagram(tag: u8, seq: usize, len: usize) -> Vec<u8> {
        let mut d = vec![tag; len];
        d[..8].copy_from_slice(&(seq as u64).to_be_bytes());
        d
    }

    async fn pair(batched: bool) -> (BatchSocket, BatchSocket, BatchSocket) {
        let open = |batched: bool| {
            let s = bind("127.0.0.1:0".parse().unwrap()).unwrap();
            if batched {
                BatchSocket::new(s)
            } else {
                BatchSocket {
                    socket: s,
                    state: None,
                    v6: false,
                }
            }
        };
        (open(batched), open(batched), open(batched))
    }

    /// Receives `n` datagrams; also returns how many receive buffers they came in.
    async fn recv_all(s: &BatchSocket, rx: &mut RxBatch, n: usize) -> (Vec<Vec<u8>>, usize) {
        let mut got = Vec::new();
        let mut buffers = 0;
        while got.len() < n {
            tokio::time::timeout(Duration::from_secs(5), s.readable())
                .await
                .expect("datagrams missing")
                .unwrap();
            if let Ok(k) = s.try_recv(rx) {
                buffers += k;
                got.extend(rx.datagrams().map(|(_, d)| d.to_vec()));
            }
        }
        (got, buffers)
    }

    /// Runs of equal sizes (GSO trains where available), a shorter last datagram, a change
    /// of size and a second destination interleaved: everything arrives, in order, split
    /// back into the original datagrams.
    async fn mixed_queue(batched: bool) {
        let (a, b, c) = pair(batched).await;
        let (to_b, to_c) = (
            b.socket.local_addr().unwrap(),
            c.socket.local_addr().unwrap(),
        );
        let mut want_b = Vec::new();
        let mut want_c = Vec::new();
        let mut plan = Vec::new();
        for i in 0..100 {
            plan.push((to_b, datagram(1, i, 1000)));
        }
        plan.push((to_b, datagram(1, 100, 500)));
        for i in 101..104 {
            plan.push((to_b, datagram(1, i, 1200)));
        }
        plan.push((to_c, datagram(2, 0, 300)));
        plan.push((to_b, datagram(1, 104, 1200)));
        plan.push((to_c, datagram(2, 1, 300)));
        for i in 105..200 {
            plan.push((to_b, datagram(1, i, 1472)));
        }
        let mut tx = TxQueue::new();
        for (to, d) in plan {
            if !tx.has_room(d.len()) {
                assert_eq!(a.send(&mut tx).await, 0);
            }
            tx.push(to, &d);
            if to == to_b {
                want_b.push(d);
            } else {
                want_c.push(d);
            }
        }
        assert_eq!(a.send(&mut tx).await, 0);
        assert!(tx.is_empty());
        let mut rx = RxBatch::for_socket(Some(&b));
        let (got_b, buffers) = recv_all(&b, &mut rx, want_b.len()).await;
        assert_eq!(got_b, want_b);
        assert_eq!(recv_all(&c, &mut rx, want_c.len()).await.0, want_c);
        if batched && a.max_gso_segments() > 1 && b.gro_segments() > 1 {
            // Loopback keeps GSO trains whole for a GRO socket.
            assert!(buffers < want_b.len() / 4, "{buffers} buffers");
        } else if !batched {
            assert_eq!(buffers, want_b.len());
        }
    }

    #[tokio::test]
    async fn batched_queue_arrives_whole_and_in_order() {
        mixed_queue(true).await;
    }

    #[tokio::test]
    async fn one_datagram_per_call_fallback() {
        mixed_queue(false).await;
    }

    #[tokio::test]
    async fn kernel_offloads_are_detected() {
        let (a, _, _) = pair(true).await;
        // Linux ≥ 4.18 (GSO) and ≥ 5.0 (GRO); 1 where unavailable, which is also fine.
        assert!(a.max_gso_segments() >= 1);
        assert!(a.gro_segments() >= 1);
        eprintln!("gso {} gro {}", a.max_gso_segments(), a.gro_segments());
    }

    #[test]
    fn gro_trains_split_at_the_stride() {
        let mut rx = RxBatch::with_slots(RX_GRO_SLOTS, RX_GRO_SLOT_BYTES);
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for (i, b) in rx.buf[..2500].iter_mut().enumerate() {
            *b = (i / 1000) as u8;
        }
        rx.meta[0] = RecvMeta {
            addr: from,
            len: 2500,
            stride: 1000,
            ..RecvMeta::default()
        };
        rx.meta[1] = RecvMeta {
            addr: from,
            len: 0,
            stride: 0,
            ..RecvMeta::default()
        };
        rx.filled = 2;
        let got: Vec<(SocketAddr, Vec<u8>)> =
            rx.datagrams().map(|(a, d)| (a, d.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (from, vec![0; 1000]),
                (from, vec![1; 1000]),
                (from, vec![2; 500])
            ]
        );
    }
}
