//! Root tier: a real TUN device in a throwaway network namespace.
//!
//! ```text
//!   network namespace aura-tun-test-<pid>-<n>   (one per test, deleted on every path)
//!  ┌────────────────────────────────────────────────────────────────────────────┐
//!  │  test thread (setns'd in)                                                  │
//!  │                                                                            │
//!  │  UDP socket ──sendto 10.99.0.2──► kernel ──► auratest0 ──► Tun::recv_batch │
//!  │  (UDP GSO: one 10-segment super-packet when USO is on)                     │
//!  │                                                                            │
//!  │  UDP socket 10.99.0.1:P ◄── kernel ◄── auratest0 ◄── Tun::send_batch       │
//!  │  (hand-built IPv4+UDP from 10.99.0.2; GRO coalesces the 10-packet batch)   │
//!  │                                                                            │
//!  │  auratest0: 10.99.0.1/24, MTU 1400, UP                                     │
//!  └────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Skipped, with the reason printed, when not root or without `/dev/net/tun` or `ip`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use aura_tun::{OffloadMode, PacketDevice, QueueOf, Tun, TunBuffers, TunConfig, TunError};
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{setsockopt, sockopt::UdpGsoSegment};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const TUN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const PEER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const MTU: u16 = 1400;
const IFNAME: &str = "auratest0";
const STEP: Duration = Duration::from_secs(5);
const WHOLE_TEST: Duration = Duration::from_secs(60);
const SEGMENTS: usize = 10;
const SEGMENT_LEN: usize = 1000;
const HEADROOM: usize = 48;
const TAILROOM: usize = 16;

fn skip_reason() -> Option<String> {
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    aura_lab::netns::skip_reason(&[])
}

/// A test namespace (deleted when dropped, whatever happened) and how to run in it.
struct Netns(aura_lab::netns::Netns);

impl Netns {
    fn new() -> Netns {
        Netns(aura_lab::netns::Netns::new("aura-tun-test").unwrap())
    }

    /// Runs `f` on a thread inside the namespace, bounded by `limit`.
    fn run<R, F>(&self, limit: Duration, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(String) -> R + Send + 'static,
    {
        let path = self.0.path();
        let name = self.0.name().to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).unwrap();
            let _ = tx.send(f(name));
        });
        match rx.recv_timeout(limit) {
            Ok(r) => {
                let _ = worker.join();
                r
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => panic!("worker ended without a result"),
            },
            // The worker is left behind; the guard still deletes the namespace name.
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("test did not finish within {limit:?}")
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn ones_complement_sum(data: &[u8], mut sum: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn ipv4_header_ok(pkt: &[u8]) -> bool {
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    fold(ones_complement_sum(&pkt[..ihl], 0)) == 0xffff
}

fn udp_pseudo_sum(src: Ipv4Addr, dst: Ipv4Addr, udp_len: usize) -> u32 {
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = 17;
    pseudo[10..12].copy_from_slice(&(udp_len as u16).to_be_bytes());
    ones_complement_sum(&pseudo, 0)
}

fn udp_checksum_ok(pkt: &[u8]) -> bool {
    let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
    let udp = &pkt[20..];
    let stored = u16::from_be_bytes([udp[6], udp[7]]);
    stored == 0
        || fold(ones_complement_sum(
            udp,
            udp_pseudo_sum(src, dst, udp.len()),
        )) == 0xffff
}

/// An IPv4 (no options) + UDP packet with a correct IPv4 checksum, and a correct UDP checksum
/// or 0 ("none", allowed for IPv4).
fn ipv4_udp(
    src: SocketAddrV4,
    dst: SocketAddrV4,
    id: u16,
    payload: &[u8],
    udp_checksum: bool,
) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6] = 0x40; // don't fragment
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.ip().octets());
    p[16..20].copy_from_slice(&dst.ip().octets());
    let csum = !fold(ones_complement_sum(&p[..20], 0));
    p[10..12].copy_from_slice(&csum.to_be_bytes());
    p[20..22].copy_from_slice(&src.port().to_be_bytes());
    p[22..24].copy_from_slice(&dst.port().to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    if udp_checksum {
        let sum = ones_complement_sum(&p[20..], udp_pseudo_sum(*src.ip(), *dst.ip(), total - 20));
        let mut c = !fold(sum);
        if c == 0 {
            c = 0xffff;
        }
        p[26..28].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// A UDP datagram from `pkt` (IPv4 + UDP) if it is one going to `dst`.
fn udp_to(pkt: &[u8], dst: Ipv4Addr) -> Option<(u16, &[u8])> {
    if pkt.len() < 28 || pkt[0] >> 4 != 4 || pkt[9] != 17 || pkt[16..20] != dst.octets() {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let dport = u16::from_be_bytes([pkt[ihl + 2], pkt[ihl + 3]]);
    Some((dport, &pkt[ihl + 8..]))
}

fn ip_show(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// RX packets the kernel counted on `ifname` (packets written into the TUN), read in the
/// calling thread's namespace.
fn rx_packets(ifname: &str) -> u64 {
    let dev = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
    let line = dev
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{ifname}:")))
        .unwrap();
    let (_, stats) = line.split_once(':').unwrap();
    stats.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Everything the scenario saw, for the report.
#[derive(Debug)]
#[allow(dead_code)] // printed with `{:?}`
struct Findings {
    mode: OffloadMode,
    fallback: Option<String>,
    recv_batches: Vec<usize>,
    rx_writes_for_gro_batch: u64,
}

fn scenario(ns: String, offload: bool) -> Findings {
    runtime().block_on(async move {
        let cfg = TunConfig {
            name: IFNAME.into(),
            mtu: MTU,
            address: Some((TUN_ADDR, 24)),
            address6: Some(("fd00:98::1".parse().unwrap(), 64)),
            offload,
            queues: 1,
        };
        let tun = Tun::create(&cfg).await.unwrap();
        assert_eq!(tun.name(), IFNAME);
        let shown = std::process::Command::new("ip")
            .args(["-n", &ns, "-6", "addr", "show", "dev", IFNAME])
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&shown.stdout);
        assert!(shown.contains("fd00:98::1/64"), "{shown}");
        assert_eq!(tun.mtu(), MTU);
        if !offload {
            assert_eq!(tun.offload_mode(), OffloadMode::Off);
        }

        // The interface is there, up, with its address and MTU.
        let shown = ip_show(&ns, &["addr", "show", IFNAME]);
        assert!(shown.contains("mtu 1400"), "{shown}");
        assert!(shown.contains("inet 10.99.0.1/24"), "{shown}");
        let flags = shown
            .split_once('<')
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(flags, _)| flags)
            .unwrap();
        assert!(flags.split(',').any(|f| f == "UP"), "{shown}");

        // Same name again: taken.
        assert!(matches!(
            Tun::create(&cfg).await,
            Err(TunError::NameTaken { .. })
        ));

        let mut rx = TunBuffers::for_device(&tun, HEADROOM, TAILROOM);
        let recv_batches = read_path(&tun, &mut rx).await;
        let rx_writes_for_gro_batch = write_path(&tun).await;

        Findings {
            mode: tun.offload_mode(),
            fallback: tun.offload_fallback_reason().map(str::to_owned),
            recv_batches,
            rx_writes_for_gro_batch,
        }
    })
}

/// Sends `big` to the peer's `port`: in one send of segments when `gso` (the socket is
/// set for it), else segment by segment.
async fn send_train(sock: &UdpSocket, big: &[u8], gso: bool, port: u16) {
    let to = SocketAddrV4::new(PEER_ADDR, port);
    if gso {
        sock.send_to(big, to).await.unwrap();
    } else {
        for seg in big.chunks(SEGMENT_LEN) {
            sock.send_to(seg, to).await.unwrap();
        }
    }
}

/// Kernel → TUN: a single datagram, then 10 segments (one UDP GSO send when USO is on).
async fn read_path(tun: &Tun, rx: &mut TunBuffers) -> Vec<usize> {
    let sock = UdpSocket::bind(SocketAddrV4::new(TUN_ADDR, 0))
        .await
        .unwrap();
    let peer = SocketAddrV4::new(PEER_ADDR, 9999);
    sock.send_to(b"hello-aura", peer).await.unwrap();
    let mut got_hello = false;
    timeout(STEP, async {
        while !got_hello {
            rx.bufs[0][..HEADROOM].fill(0xA5);
            let n = tun
                .recv_batch(&mut rx.bufs, &mut rx.lens, rx.headroom)
                .await
                .unwrap();
            assert_eq!(
                &rx.bufs[0][..HEADROOM],
                &[0xA5; HEADROOM][..],
                "headroom kept"
            );
            for i in 0..n {
                let pkt = rx.packet(i).unwrap();
                if let Some((9999, payload)) = udp_to(pkt, PEER_ADDR) {
                    assert!(ipv4_header_ok(pkt));
                    assert!(udp_checksum_ok(pkt));
                    assert_eq!(payload, b"hello-aura");
                    got_hello = true;
                }
            }
        }
    })
    .await
    .expect("no packet to 10.99.0.2 came out of the TUN");

    // Ten 1000-byte segments: with USO the kernel hands the TUN one super-packet.
    let big: Vec<u8> = (0..SEGMENTS * SEGMENT_LEN)
        .map(|i| (i / SEGMENT_LEN) as u8)
        .collect();
    let gso = tun.offload_mode() == OffloadMode::TcpUdp;
    if gso {
        setsockopt(&sock, UdpGsoSegment, &(SEGMENT_LEN as i32)).unwrap();
    }
    send_train(&sock, &big, gso, 9998).await;
    let mut batches = Vec::new();
    let mut segments = Vec::new();
    timeout(STEP, async {
        while segments.len() < SEGMENTS {
            let n = tun
                .recv_batch(&mut rx.bufs, &mut rx.lens, rx.headroom)
                .await
                .unwrap();
            let mut ours = 0;
            for i in 0..n {
                let pkt = rx.packet(i).unwrap();
                // Plain IP packets only: right length, valid checksums, MTU-sized.
                assert!(pkt.len() <= usize::from(MTU));
                if let Some((9998, payload)) = udp_to(pkt, PEER_ADDR) {
                    assert_eq!(usize::from(u16::from_be_bytes([pkt[2], pkt[3]])), pkt.len());
                    assert!(ipv4_header_ok(pkt), "IPv4 checksum");
                    assert!(udp_checksum_ok(pkt), "UDP checksum");
                    segments.push(payload.to_vec());
                    ours += 1;
                }
            }
            if ours > 0 {
                batches.push(ours);
            }
        }
    })
    .await
    .expect("segments did not all come out of the TUN");
    assert_eq!(segments.len(), SEGMENTS);
    for (i, seg) in segments.iter().enumerate() {
        assert_eq!(seg.len(), SEGMENT_LEN);
        assert!(
            seg.iter().all(|&b| b == i as u8),
            "segment {i} out of order"
        );
    }
    if gso {
        assert_eq!(batches, vec![SEGMENTS], "one read, split into all segments");
    }

    // The same again, read so that the checksums the kernel left (USO hands them over
    // unfinished) stay unfinished for the peer: flagged, the field zero; finished, valid.
    send_train(&sock, &big, gso, 9997).await;
    let mut flagged = 0;
    let mut seen = 0;
    timeout(STEP, async {
        while seen < SEGMENTS {
            let n = tun
                .recv_batch_offload(&mut rx.bufs, &mut rx.lens, &mut rx.offload, rx.headroom)
                .await
                .unwrap();
            for i in 0..n {
                let offload = rx.offload[i];
                let pkt = rx.packet_mut(i).unwrap();
                if udp_to(pkt, PEER_ADDR).is_none_or(|(port, _)| port != 9997) {
                    continue;
                }
                seen += 1;
                assert!(ipv4_header_ok(pkt), "IPv4 checksum");
                if offload {
                    flagged += 1;
                    assert_eq!(&pkt[26..28], &[0, 0], "left unfinished as zero");
                    assert!(aura_tun::csum::complete_checksum(pkt));
                    assert_ne!(&pkt[26..28], &[0, 0], "finished");
                }
                assert!(udp_checksum_ok(pkt), "UDP checksum, finished");
            }
        }
    })
    .await
    .expect("the second train did not come out of the TUN");
    if gso {
        assert_eq!(
            flagged, SEGMENTS,
            "every segment of the train left to the peer"
        );
    } else {
        assert_eq!(flagged, 0, "without offload every checksum is complete");
    }

    // A third train, read packed: appended back to back after what the batch holds, one
    // read (split) per call, the same packets and flags as a read into buffers.
    send_train(&sock, &big, gso, 9996).await;
    let (mut data, mut ends, mut offload) = (b"before".to_vec(), vec![6], vec![false]);
    let mut reads = Vec::new();
    let mut train = Vec::new();
    timeout(STEP, async {
        while train.len() < SEGMENTS {
            let had = ends.len();
            let n = tun
                .recv_packed(&mut data, &mut ends, &mut offload)
                .await
                .unwrap();
            assert_eq!(ends.len(), had + n);
            assert_eq!(offload.len(), ends.len());
            assert_eq!(ends.last(), Some(&data.len()));
            let mut ours = 0;
            for i in had..ends.len() {
                let pkt = &mut data[ends[i - 1]..ends[i]];
                if udp_to(pkt, PEER_ADDR).is_none_or(|(port, _)| port != 9996) {
                    continue;
                }
                assert!(ipv4_header_ok(pkt), "IPv4 checksum");
                assert_eq!(offload[i], gso, "flagged exactly when the kernel left it");
                if offload[i] {
                    assert!(aura_tun::csum::complete_checksum(pkt));
                }
                assert!(udp_checksum_ok(pkt), "UDP checksum, finished");
                train.push(udp_to(pkt, PEER_ADDR).unwrap().1.to_vec());
                ours += 1;
            }
            if ours > 0 {
                reads.push(ours);
            }
        }
    })
    .await
    .expect("the packed train did not come out of the TUN");
    assert_eq!(&data[..6], b"before", "what the batch held stays");
    assert_eq!(train, segments, "the same segments, in order");
    if gso {
        assert_eq!(reads, vec![SEGMENTS], "one read, split into all segments");
    }
    batches
}

/// TUN → kernel: one datagram with UDP checksum 0, then a 10-packet batch of one flow
/// (GRO coalesces it when USO is on). Returns how many packets the kernel counted for the
/// batch.
async fn write_path(tun: &Tun) -> u64 {
    let sock = UdpSocket::bind(SocketAddrV4::new(TUN_ADDR, 0))
        .await
        .unwrap();
    let local = match sock.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        other => panic!("{other}"),
    };
    let from = SocketAddrV4::new(PEER_ADDR, 4000);
    let mut tx = TunBuffers::for_device(tun, HEADROOM, TAILROOM);
    tx.set_packet(0, &ipv4_udp(from, local, 1, b"from-the-tun", false))
        .unwrap();
    tun.send_batch(&mut tx.bufs, &tx.lens[..1], tx.headroom)
        .await
        .unwrap();
    let mut buf = [0u8; 2048];
    let (n, src) = timeout(STEP, sock.recv_from(&mut buf))
        .await
        .expect("the socket got nothing from the TUN")
        .unwrap();
    assert_eq!(&buf[..n], b"from-the-tun");
    assert_eq!(src, std::net::SocketAddr::V4(from));

    // One flow, ten packets, valid checksums: GRO material.
    let from = SocketAddrV4::new(PEER_ADDR, 4001);
    for i in 0..SEGMENTS {
        let payload = vec![0x30 + i as u8; SEGMENT_LEN];
        tx.set_packet(i, &ipv4_udp(from, local, 100 + i as u16, &payload, true))
            .unwrap();
    }
    let lens_before: Vec<usize> = tx.bufs.iter().map(Vec::len).collect();
    let caps_before: Vec<usize> = tx.bufs.iter().map(Vec::capacity).collect();
    let before = rx_packets(tun.name());
    tun.send_batch(&mut tx.bufs, &tx.lens[..SEGMENTS], tx.headroom)
        .await
        .unwrap();
    let writes = rx_packets(tun.name()) - before;
    let lens_after: Vec<usize> = tx.bufs.iter().map(Vec::len).collect();
    let caps_after: Vec<usize> = tx.bufs.iter().map(Vec::capacity).collect();
    assert_eq!(lens_after, lens_before, "buffer lengths restored");
    assert_eq!(caps_after, caps_before, "no buffer reallocated");
    for i in 0..SEGMENTS {
        let (n, src) = timeout(STEP, sock.recv_from(&mut buf))
            .await
            .expect("a datagram of the batch is missing")
            .unwrap();
        assert_eq!(src, std::net::SocketAddr::V4(from));
        assert_eq!(n, SEGMENT_LEN);
        assert!(
            buf[..n].iter().all(|&b| b == 0x30 + i as u8),
            "datagram {i}"
        );
    }
    if tun.offload_mode() == OffloadMode::TcpUdp {
        assert!(
            writes < SEGMENTS as u64,
            "GRO did not coalesce: {writes} writes"
        );
    } else {
        assert_eq!(writes, SEGMENTS as u64);
    }
    writes
}

/// One datagram "mq" to `peer`:7000 from each of `flows` ports of `from` (20000 on): one
/// flow each.
async fn send_flows(from: Ipv4Addr, peer: Ipv4Addr, flows: u16) {
    for port in 0..flows {
        let s = UdpSocket::bind(SocketAddrV4::new(from, 20000 + port))
            .await
            .unwrap();
        s.send_to(b"mq", SocketAddrV4::new(peer, 7000))
            .await
            .unwrap();
    }
}

/// Two queues: flows spread over both, and reading both gets every packet; read packed,
/// each queue's reads read that queue.
fn multi_queue(offload: bool) {
    runtime().block_on(async move {
        let cfg = TunConfig {
            name: "auratest1".into(),
            mtu: MTU,
            address: Some((Ipv4Addr::new(10, 98, 0, 1), 24)),
            address6: None,
            offload,
            queues: 2,
        };
        let tun = Arc::new(Tun::create(&cfg).await.unwrap());
        assert_eq!(tun.queue_count(), 2);
        assert!(tun.queue(2).is_none());
        // Each queue read as a device of its own, as the server's per-queue readers do.
        let queues = QueueOf::all(&tun);
        assert_eq!(queues.len(), 2);
        assert!(QueueOf::new(tun.clone(), 2).is_none());
        let (q0, q1) = (&queues[0], &queues[1]);
        let peer = Ipv4Addr::new(10, 98, 0, 2);
        const FLOWS: u16 = 16;
        let from = cfg.address.unwrap().0;
        send_flows(from, peer, FLOWS).await;
        let mut b0 = TunBuffers::for_device(q0, HEADROOM, TAILROOM);
        let mut b1 = TunBuffers::for_device(q1, HEADROOM, TAILROOM);
        let mut per_queue = [0u16; 2];
        timeout(STEP, async {
            while per_queue[0] + per_queue[1] < FLOWS {
                let (q, b, slot) = tokio::select! {
                    r = q0.recv_batch(&mut b0.bufs, &mut b0.lens, HEADROOM) => (r, &b0, 0),
                    r = q1.recv_batch(&mut b1.bufs, &mut b1.lens, HEADROOM) => (r, &b1, 1),
                };
                for i in 0..q.unwrap() {
                    if let Some((7000, b"mq")) = udp_to(b.packet(i).unwrap(), peer) {
                        per_queue[slot] += 1;
                    }
                }
            }
        })
        .await
        .expect("not every flow came out of the two queues");
        eprintln!("multi-queue (offload {offload}): flows per queue {per_queue:?}");

        // The same flows again, read packed: each comes out of the queue it came out of
        // before, so each queue's packed read reads that queue.
        send_flows(from, peer, FLOWS).await;
        let mut packed = [
            (Vec::new(), Vec::new(), Vec::new()),
            (Vec::new(), Vec::new(), Vec::new()),
        ];
        let mut again = [0u16; 2];
        timeout(STEP, async {
            while again[0] + again[1] < FLOWS {
                let [p0, p1] = &mut packed;
                let slot = tokio::select! {
                    r = q0.recv_packed(&mut p0.0, &mut p0.1, &mut p0.2) => r.map(|_| 0),
                    r = q1.recv_packed(&mut p1.0, &mut p1.1, &mut p1.2) => r.map(|_| 1),
                }
                .unwrap();
                let (data, ends, flags) = &mut packed[slot];
                let mut start = 0;
                for &end in ends.iter() {
                    if let Some((7000, b"mq")) = udp_to(&data[start..end], peer) {
                        again[slot] += 1;
                    }
                    start = end;
                }
                data.clear();
                ends.clear();
                flags.clear();
            }
        })
        .await
        .expect("not every flow came out of the two queues, read packed");
        assert_eq!(again, per_queue, "each flow from its own queue");
    });
}

fn run(offload: bool) {
    if let Some(reason) = skip_reason() {
        eprintln!("skipping TUN namespace test: {reason}");
        return;
    }
    let ns = Netns::new();
    let findings = ns.run(WHOLE_TEST, move |name| {
        let findings = scenario(name, offload);
        multi_queue(offload);
        findings
    });
    eprintln!("offload requested {offload}: {findings:?}");
}

#[test]
fn tun_in_netns_without_offload() {
    run(false);
}

#[test]
fn tun_in_netns_with_offload() {
    run(true);
}
