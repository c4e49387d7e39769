//! # aura-tun: the TUN device of the Aura VPN daemons
//!
//! Role: moves plain IP packets between the operating system and a daemon, in batches, into and
//! out of buffers the daemon owns, with free bytes in front of every packet (*headroom*) so the
//! daemon can seal (encrypt) a packet in place without copying it.
//!
//! Two devices implement one trait, [`PacketDevice`]:
//!
//! * [`Tun`]: a real TUN interface (Linux; other systems get an honest
//!   [`TunError::Unsupported`]). When [`TunConfig::offload`] is set it asks the kernel for
//!   `IFF_VNET_HDR` with TCP segmentation offload (TSO) and, where the kernel has it (6.2+), UDP
//!   segmentation offload (USO). Reads then return a TCP/UDP *super-packet* of up to 64 KiB that
//!   is split here into MTU-sized IP packets (one read, many packets), and writes coalesce
//!   packets of one flow into one super-packet (GRO) before handing them to the kernel. If the
//!   kernel refuses offload, the device falls back to one packet per read/write; which mode is
//!   active is reported by [`PacketDevice::offload_mode`].
//! * [`MemTun`]: an in-memory double with the same batch API, so the daemons can be tested
//!   without root; its other end is a [`MemTunHost`] that plays the operating system.
//!
//! ## Guarantees
//!
//! * The caller only ever sees plain IPv4/IPv6 packets: virtio-net headers, super-packets and
//!   partial checksums never leak out, whether offload is on or off.
//! * No allocation per packet on the [`Tun`] hot path: the caller's buffers are allocated once
//!   (by the caller, or by a [`TunBuffers`] pool); the device's own scratch space (a 64 KiB read
//!   buffer and a GRO table per queue) is allocated at [`Tun::create`].
//! * `recv_batch` writes packet `i` to `bufs[i][headroom..headroom + lens[i]]` and never touches
//!   `bufs[i][..headroom]`.
//! * Errors are typed ([`TunError`]) and tell local misconfiguration (bad name, name taken, no
//!   permission, no `/dev/net/tun`) from caller bugs (buffers too small) from I/O failures.
//!
//! ## Buffer contract
//!
//! * **Receive**: every buffer in the batch must hold `headroom + mtu` bytes (its `len()`, not
//!   its capacity); add the sealing tailroom (AEAD tag) yourself. With offload active the batch
//!   must have at least [`OFFLOAD_BATCH`] buffers, because one read may split into that many
//!   packets.
//! * **Send**: packet `i` is `bufs[i][headroom..headroom + lens[i]]`, `headroom >=`
//!   [`MIN_HEADROOM`] (room for the virtio-net header, which an offloading device may write
//!   there). With offload on, the device coalesces consecutive segments of a flow into
//!   super-packets in buffers of its own ([`gro`]); the caller's buffers are only read.
//!
//! ## Example
//!
//! ```no_run
//! use aura_tun::{PacketDevice, Tun, TunBuffers, TunConfig};
//! use std::net::Ipv4Addr;
//!
//! # async fn run() -> Result<(), aura_tun::TunError> {
//! let cfg = TunConfig {
//!     address: Some((Ipv4Addr::new(10, 99, 0, 1), 24)),
//!     ..TunConfig::new("aura0")
//! };
//! let tun = Tun::create(&cfg).await?;
//! println!("{} up, mtu {}, offload {:?}", tun.name(), tun.mtu(), tun.offload_mode());
//!
//! // 64 bytes in front for the outer headers, 16 behind for the AEAD tag.
//! let mut rx = TunBuffers::for_device(&tun, 64, 16);
//! let n = tun.recv_batch(&mut rx.bufs, &mut rx.lens, rx.headroom).await?;
//! for i in 0..n {
//!     if let Some(_packet) = rx.packet_mut(i) {
//!         // seal in place: the outer header goes into the headroom, the tag after the packet
//!     }
//! }
//!
//! // The other way: opened packets, in place in their buffers, go out in one batch.
//! let mut tx = TunBuffers::for_device(&tun, 64, 16);
//! tx.set_packet(0, &[0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 99, 0, 2, 10, 99, 0, 1])?;
//! tun.send_batch(&mut tx.bufs, &tx.lens[..1], tx.headroom).await?;
//! # Ok(())
//! # }
//! ```

mod batch;
mod buffers;
pub mod csum;
mod error;
mod mem;

#[cfg(target_os = "linux")]
pub mod gro;
#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod imp;

#[cfg(not(target_os = "linux"))]
#[path = "unsupported.rs"]
mod imp;

use std::future::Future;
use std::net::Ipv4Addr;

pub use buffers::TunBuffers;
pub use error::TunError;
pub use mem::{MemTun, MemTunHost};

/// Largest IP packet the device hands out or accepts, in bytes (the IPv4 total-length limit).
pub const MAX_PACKET: usize = 65_535;

/// Least headroom, in bytes, that [`PacketDevice::send_batch`] accepts: room for the 10-byte
/// virtio-net header that offload writes in front of each packet. Required on every device
/// and mode, so code tested against [`MemTun`] works unchanged on a [`Tun`].
pub const MIN_HEADROOM: usize = 10;

/// Least number of receive buffers per [`PacketDevice::recv_batch`] call while offload is
/// active: a 64 KiB TCP super-packet with a small MSS splits into up to this many packets
/// (wireguard-go's and tun-rs's `IDEAL_BATCH_SIZE`). Also a good batch size in general.
pub const OFFLOAD_BATCH: usize = 128;

/// Smallest MTU [`Tun::create`] accepts, in bytes (RFC 791: every IPv4 link carries 68).
pub const MIN_MTU: u16 = 68;

/// Longest interface name on Linux, in bytes (`IFNAMSIZ` 16 less the NUL).
pub const MAX_NAME_LEN: usize = 15;

/// Largest number of queues [`Tun::create`] opens.
pub const MAX_QUEUES: usize = 64;

/// How to create a [`Tun`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunConfig {
    /// Interface name (at most [`MAX_NAME_LEN`] bytes, no `/`, `:` or whitespace). Empty lets
    /// the kernel pick one (`tun0`, `tun1`, ...); [`PacketDevice::name`] tells which.
    pub name: String,
    /// Interface MTU in bytes, at least [`MIN_MTU`].
    pub mtu: u16,
    /// IPv4 address and prefix length to put on the interface (the kernel adds the connected
    /// route). `None` leaves the interface without an address.
    pub address: Option<(Ipv4Addr, u8)>,
    /// IPv6 address and prefix length to put on the interface too. `None`: none.
    pub address6: Option<(std::net::Ipv6Addr, u8)>,
    /// Ask for virtio-net offload (TSO, and USO where available). Falls back to plain
    /// one-packet I/O when the kernel refuses; see [`PacketDevice::offload_mode`].
    pub offload: bool,
    /// Number of queues (file descriptors) to open; more than one uses `IFF_MULTI_QUEUE` and
    /// every queue must then be read, see [`Tun::queue`].
    pub queues: usize,
}

impl TunConfig {
    /// A configuration with the given name, MTU 1420, no address, offload on, one queue.
    pub fn new(name: impl Into<String>) -> Self {
        TunConfig {
            name: name.into(),
            mtu: 1420,
            address: None,
            address6: None,
            offload: true,
            queues: 1,
        }
    }

    /// Checks the configuration without touching the system.
    pub fn validate(&self) -> Result<(), TunError> {
        validate_name(&self.name)?;
        if self.mtu < MIN_MTU {
            return Err(TunError::InvalidConfig(format!(
                "mtu {} is below the minimum of {MIN_MTU}",
                self.mtu
            )));
        }
        if let Some((_, prefix)) = self.address
            && prefix > 32
        {
            return Err(TunError::InvalidConfig(format!(
                "IPv4 prefix length {prefix} is above 32"
            )));
        }
        if self.queues == 0 || self.queues > MAX_QUEUES {
            return Err(TunError::InvalidConfig(format!(
                "queues must be between 1 and {MAX_QUEUES}, not {}",
                self.queues
            )));
        }
        Ok(())
    }
}

/// Checks an interface name the way the Linux kernel does (`dev_valid_name`). The empty name
/// is accepted: it asks the kernel to choose.
fn validate_name(name: &str) -> Result<(), TunError> {
    let bad = |reason: &'static str| TunError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Ok(());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(bad("longer than 15 bytes"));
    }
    if name == "." || name == ".." {
        return Err(bad("`.` and `..` are reserved"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        return Err(bad("contains `/`, `:`, NUL or whitespace"));
    }
    Ok(())
}

/// Which offload the kernel granted a [`Tun`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OffloadMode {
    /// Plain TUN: one packet per read and per write.
    Off,
    /// `IFF_VNET_HDR` with TCP segmentation offload (TSO4/TSO6); reads split TCP
    /// super-packets, writes coalesce TCP (GRO).
    Tcp,
    /// As [`OffloadMode::Tcp`], plus UDP segmentation offload (USO4/USO6, Linux 6.2+).
    TcpUdp,
}

impl OffloadMode {
    /// Whether virtio-net offload is active (reads may return many packets; receive batches
    /// must hold at least [`OFFLOAD_BATCH`] buffers).
    pub fn is_on(self) -> bool {
        !matches!(self, OffloadMode::Off)
    }
}

/// A device that reads and writes batches of IP packets: a real [`Tun`] (or one of its
/// queues) or the in-memory [`MemTun`]. The futures are `Send`, so a daemon can spawn them.
pub trait PacketDevice: Send + Sync {
    /// The interface name.
    fn name(&self) -> &str;

    /// The MTU in bytes; receive buffers need `headroom + mtu` bytes.
    fn mtu(&self) -> u16;

    /// The offload mode in force.
    fn offload_mode(&self) -> OffloadMode;

    /// Waits for packets and reads a batch of them (TSO super-packets split when offload is
    /// on), every checksum complete. Packet `i` lands in `bufs[i][headroom..headroom +
    /// lens[i]]`; returns how many packets were read (at least one). Uses
    /// `min(bufs.len(), lens.len(), OFFLOAD_BATCH)` buffers, each of which must be at least
    /// `headroom + mtu` bytes long. Cancel-safe: dropping the future before it completes
    /// loses no packet.
    fn recv_batch(
        &self,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
        headroom: usize,
    ) -> impl Future<Output = Result<usize, TunError>> + Send {
        async move {
            let mut offload = [false; OFFLOAD_BATCH];
            let k = lens.len().min(OFFLOAD_BATCH);
            let n = self
                .recv_batch_offload(bufs, &mut lens[..k], &mut offload[..k], headroom)
                .await?;
            complete_flagged(bufs, &lens[..n], &offload[..n], headroom);
            Ok(n)
        }
    }

    /// Writes the `lens.len()` packets `bufs[i][headroom..headroom + lens[i]]`, every
    /// checksum complete, coalescing them when offload is on. `headroom` must be at least
    /// [`MIN_HEADROOM`]. When some packets fail (e.g. the kernel refuses a malformed one),
    /// the others are still written and the error of a failed one is returned.
    fn send_batch(
        &self,
        bufs: &mut [Vec<u8>],
        lens: &[usize],
        headroom: usize,
    ) -> impl Future<Output = Result<(), TunError>> + Send {
        self.send_batch_offload(bufs, lens, &[], headroom)
    }

    /// As [`PacketDevice::recv_batch`], but a packet whose TCP or UDP checksum the kernel
    /// left unfinished (a segment of an offloaded super-packet) stays unfinished, with
    /// `offload[i]` set: for a peer that finishes it ([`csum`]). Uses
    /// `min(bufs.len(), lens.len(), offload.len())` buffers. Without offload, every
    /// checksum is complete.
    fn recv_batch_offload(
        &self,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
        offload: &mut [bool],
        headroom: usize,
    ) -> impl Future<Output = Result<usize, TunError>> + Send;

    /// As [`PacketDevice::recv_batch_offload`], appending the packets of one read back to
    /// back to `data` (the end of each, an offset in `data`, to `ends`; its flag to
    /// `offload`) instead of into separate buffers: the form a batch is sent in, with no
    /// copy after the read's own. At most [`OFFLOAD_BATCH`] packets of at most the MTU;
    /// returns how many were appended (at least one). Cancel-safe, and `data`, `ends` and
    /// `offload` are as they were unless it returns `Ok`.
    fn recv_packed(
        &self,
        data: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        offload: &mut Vec<bool>,
    ) -> impl Future<Output = Result<usize, TunError>> + Send;

    /// As [`PacketDevice::send_batch`], where packet `i`'s TCP or UDP checksum is this
    /// end's to finish when `offload[i]` (it came as a type 7 data packet): the kernel
    /// computes it when the device takes offload, else it is computed here. Packets
    /// without a flag (`offload` shorter than `lens`) are complete. The buffers may be
    /// written (the checksum fields of flagged packets).
    fn send_batch_offload(
        &self,
        bufs: &mut [Vec<u8>],
        lens: &[usize],
        offload: &[bool],
        headroom: usize,
    ) -> impl Future<Output = Result<(), TunError>> + Send;

    /// Writes packets where they lie, back to back in `data` (packet `i` is
    /// `data[ends[i - 1]..ends[i]]`, the first from 0): no headroom needed, nothing copied
    /// on the way. Otherwise as [`PacketDevice::send_batch_offload`]: `offload[i]` says
    /// packet `i`'s TCP or UDP checksum is this end's to finish (its checksum field may
    /// then be written), and the device coalesces what it can. A packet that is empty,
    /// longer than the MTU or not within `data` is left out; the others are still written,
    /// then [`TunError::InvalidPacket`] names the first left out.
    fn send_packed(
        &self,
        data: &mut [u8],
        ends: &[usize],
        offload: &[bool],
    ) -> impl Future<Output = Result<(), TunError>> + Send;

    /// As [`PacketDevice::send_packed`] on queue `queue` (`0..queue_count()`; the first
    /// queue when out of range).
    fn send_packed_on(
        &self,
        queue: usize,
        data: &mut [u8],
        ends: &[usize],
        offload: &[bool],
    ) -> impl Future<Output = Result<(), TunError>> + Send {
        let _ = queue;
        self.send_packed(data, ends, offload)
    }

    /// Number of queues, each of which one reader and one writer can own through
    /// [`QueueOf`]: 1 unless the device is multi-queue.
    fn queue_count(&self) -> usize {
        1
    }

    /// As [`PacketDevice::recv_batch_offload`] on queue `queue` (`0..queue_count()`; the
    /// first queue when out of range).
    fn recv_batch_offload_on(
        &self,
        queue: usize,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
        offload: &mut [bool],
        headroom: usize,
    ) -> impl Future<Output = Result<usize, TunError>> + Send {
        let _ = queue;
        self.recv_batch_offload(bufs, lens, offload, headroom)
    }

    /// As [`PacketDevice::recv_packed`] on queue `queue` (`0..queue_count()`; the first
    /// queue when out of range).
    fn recv_packed_on(
        &self,
        queue: usize,
        data: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        offload: &mut Vec<bool>,
    ) -> impl Future<Output = Result<usize, TunError>> + Send {
        let _ = queue;
        self.recv_packed(data, ends, offload)
    }

    /// As [`PacketDevice::send_batch_offload`] on queue `queue` (`0..queue_count()`; the
    /// first queue when out of range).
    fn send_batch_offload_on(
        &self,
        queue: usize,
        bufs: &mut [Vec<u8>],
        lens: &[usize],
        offload: &[bool],
        headroom: usize,
    ) -> impl Future<Output = Result<(), TunError>> + Send {
        let _ = queue;
        self.send_batch_offload(bufs, lens, offload, headroom)
    }
}

/// One queue of a shared device, itself a single-queue [`PacketDevice`]: what a device's
/// per-queue reader or writer holds.
#[derive(Debug)]
pub struct QueueOf<D> {
    device: std::sync::Arc<D>,
    index: usize,
}

impl<D: PacketDevice> QueueOf<D> {
    /// Queue `index` of `device`, or `None` when it has no such queue.
    pub fn new(device: std::sync::Arc<D>, index: usize) -> Option<Self> {
        (index < device.queue_count()).then_some(Self { device, index })
    }

    /// The first queue of `device` (every device has one).
    pub fn first(device: std::sync::Arc<D>) -> Self {
        Self { device, index: 0 }
    }

    /// Every queue of `device`, in order.
    pub fn all(device: &std::sync::Arc<D>) -> Vec<Self> {
        (0..device.queue_count())
            .map(|index| Self {
                device: device.clone(),
                index,
            })
            .collect()
    }

    /// Which queue this is.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl<D: PacketDevice> PacketDevice for QueueOf<D> {
    fn name(&self) -> &str {
        self.device.name()
    }

    fn mtu(&self) -> u16 {
        self.device.mtu()
    }

    fn offload_mode(&self) -> OffloadMode {
        self.device.offload_mode()
    }

    fn recv_batch_offload(
        &self,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
        offload: &mut [bool],
        headroom: usize,
    ) -> impl Future<Output = Result<usize, TunError>> + Send {
        self.device
            .recv_batch_offload_on(self.index, bufs, lens, offload, headroom)
    }

    fn recv_packed(
        &self,
        data: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        offload: &mut Vec<bool>,
    ) -> impl Future<Output = Result<usize, TunError>> + Send {
        self.device.recv_packed_on(self.index, data, ends, offload)
    }

    fn send_batch_offload(
        &self,
        bufs: &mut [Vec<u8>],
        lens: &[usize],
        offload: &[bool],
        headroom: usize,
    ) -> impl Future<Output = Result<(), TunError>> + Send {
        self.device
            .send_batch_offload_on(self.index, bufs, lens, offload, headroom)
    }

    fn send_packed(
        &self,
        data: &mut [u8],
        ends: &[usize],
        offload: &[bool],
    ) -> impl Future<Output = Result<(), TunError>> + Send {
        self.device.send_packed_on(self.index, data, ends, offload)
    }
}

/// Finishes in software the checksum of every flagged packet.
pub(crate) fn complete_flagged(
    bufs: &mut [Vec<u8>],
    lens: &[usize],
    offload: &[bool],
    headroom: usize,
) {
    for ((b, &len), _) in bufs.iter_mut().zip(lens).zip(offload).filter(|(_, o)| **o) {
        if let Some(p) = headroom
            .checked_add(len)
            .and_then(|end| b.get_mut(headroom..end))
        {
            csum::complete_checksum(p);
        }
    }
}

/// A TUN interface, up, with its address and MTU set. Dropping it removes the interface.
///
/// Its [`PacketDevice`] methods use the first queue; with more than one queue, read and write
/// each one through [`Tun::queue`] or [`QueueOf`] (the kernel spreads flows over the
/// queues, and a queue nobody reads drops its flows).
#[derive(Debug)]
pub struct Tun {
    first: TunQueue,
    more: Vec<TunQueue>,
    offload_fallback: Option<String>,
}

/// One queue (file descriptor) of a [`Tun`].
#[derive(Debug)]
pub struct TunQueue {
    inner: imp::Queue,
    name: String,
    mtu: u16,
    offload: OffloadMode,
}

impl Tun {
    /// Creates the interface, sets its MTU and address, and brings it up.
    ///
    /// Errors: [`TunError::InvalidName`], [`TunError::InvalidConfig`],
    /// [`TunError::NameTaken`], [`TunError::PermissionDenied`] (not root, no
    /// `CAP_NET_ADMIN`), [`TunError::NoTunDevice`] (no `/dev/net/tun` or no tun module),
    /// [`TunError::Unsupported`] (not Linux), [`TunError::Io`] otherwise.
    pub async fn create(cfg: &TunConfig) -> Result<Tun, TunError> {
        cfg.validate()?;
        Self::from_created(imp::create(cfg).await?)
    }

    /// [`Tun::create`], with queue `i` registered with runtime `runtimes[i % len]`
    /// instead of the current one (the current one when `runtimes` is empty): a queue
    /// read and written from one thread's runtime is woken there, not through another
    /// thread's reactor. Same errors as [`Tun::create`].
    pub async fn create_on(
        cfg: &TunConfig,
        runtimes: &[tokio::runtime::Handle],
    ) -> Result<Tun, TunError> {
        Self::prepare(cfg)?.activate_on(runtimes)
    }

    /// Makes the interface and opens its queues without an async runtime: a daemon that
    /// drops privileges makes its device first (opening `/dev/net/tun` may need root),
    /// then [`PreparedTun::activate`]s it inside the runtime. Same errors as
    /// [`Tun::create`].
    pub fn prepare(cfg: &TunConfig) -> Result<PreparedTun, TunError> {
        cfg.validate()?;
        Ok(PreparedTun(imp::prepare(cfg)?))
    }

    fn from_created(created: Created) -> Result<Tun, TunError> {
        let mut queues = created.queues.into_iter().map(|inner| TunQueue {
            inner,
            name: created.name.clone(),
            mtu: created.mtu,
            offload: created.offload,
        });
        let first = queues.next().ok_or_else(|| TunError::Io {
            op: "create",
            source: std::io::Error::other("no queue was opened"),
        })?;
        Ok(Tun {
            first,
            more: queues.collect(),
            offload_fallback: created.offload_fallback,
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.first.name
    }

    /// The interface MTU in bytes.
    pub fn mtu(&self) -> u16 {
        self.first.mtu
    }

    /// The offload mode in force.
    pub fn offload_mode(&self) -> OffloadMode {
        self.first.offload
    }

    /// Why offload was asked for but is off (the kernel's answer), if it is.
    pub fn offload_fallback_reason(&self) -> Option<&str> {
        self.offload_fallback.as_deref()
    }

    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        1 + self.more.len()
    }

    /// Queue `i` (`0..queue_count()`).
    pub fn queue(&self, i: usize) -> Option<&TunQueue> {
        match i {
            0 => Some(&self.first),
            _ => self.more.get(i - 1),
        }
    }
}

impl PacketDevice for Tun {
    fn name(&self) -> &str {
        Tun::name(self)
    }

    fn mtu(&self) -> u16 {
        Tun::mtu(self)
    }

    fn offload_mode(&self) -> OffloadMode {
        Tun::offload_mode(self)
    }

    async fn recv_batch_offload(
        &self,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
        offload: &mut [bool],
        headroom: usize,
    ) -> Result<usize, TunError> {
        self.first
            .recv_batch_offload(bufs, lens, offload, headroom)
            .await
    }

    async fn send_batch_offload(
        &self,
        bufs: &mut [Vec<u8>],
        lens: &[usize],
        offload: &[bool],
        headroom: usize,
    ) -> Result<(), TunError> {
        self.first
            .send_batch_offload(bufs, lens, offload, headroom)
            .await
    }

    async fn recv_packed(
        &self,
        data: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        offload: &mut Vec<bool>,
    ) -> Result<usize, TunError> {
        self.first.recv_packed(data, ends, offload).await
    }

    async fn recv_packed_on(
        &self,
        queue: usize,
        data: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        offload: &mut Vec<bool>,
    ) -> Result<usize, TunError> {
        self.queue(queue)
            .unwrap_or(&self.first)
            .recv_packed(data, ends, offload)
            .await
    }

    fn queue_count(&self) -> usize {
        Tun::queue_count(self)
    }

    async fn recv_batch_offload_on(
        &self,
        queue: usize,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
        offload: &mut [bool],
        headroom: usize,
    ) -> Result<usize, TunError> {
        self.queue(queue)
            .unwrap_or(&self.first)
            .recv_batch_offload(bufs, lens, offload, headroom)
            .await
    }

    async fn send_batch_offload_on(
        &self,
        queue: usize,
        bufs: &mut [Vec<u8>],
        lens: &[usize],
        offload: &[bool],
        headroom: usize,
    ) -> Result<(), TunError> {
        self.queue(queue)
            .unwrap_or(&self.first)
            .send_batch_offload(bufs, lens, offload, headroom)
            .await
    }

    async fn send_packed(
        &self,
        data: &mut [u8],
        ends: &[usize],
        offload: &[bool],
    ) -> Result<(), TunError> {
        self.first.send_packed(data, ends, offload).await
    }

    async fn send_packed_on(
        &self,
        queue: usize,
        data: &mut [u8],
        ends: &[usize],
        offload: &[bool],
    ) -> Result<(), TunError> {
        self.queue(queue)
            .unwrap_or(&self.first)
            .send_packed(data, ends, offload)
            .await
    }
}

impl PacketDevice for TunQueue {
    fn name(&self) -> &str {
        &self.name
    }

    fn mtu(&self) -> u16 {
        self.mtu
    }

    fn offload_mode(&self) -> OffloadMode {
        self.offload
    }

    async fn recv_batch_offload(
        &self,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
        offload: &mut [bool],
        headroom: usize,
    ) -> Result<usize, TunError> {
        let k = lens.len().min(offload.len());
        let n = batch::check_recv(bufs, &lens[..k], headroom, self.mtu, self.offload)?;
        let (bufs, lens, offload) = (&mut bufs[..n], &mut lens[..n], &mut offload[..n]);
        self.inner.recv_batch(bufs, lens, offload, headroom).await
    }

    async fn recv_packed(
        &self,
        data: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        offload: &mut Vec<bool>,
    ) -> Result<usize, TunError> {
        let mtu = usize::from(self.mtu);
        self.inner.recv_packed(data, ends, offload, mtu).await
    }

    async fn send_batch_offload(
        &self,
        bufs: &mut [Vec<u8>],
        lens: &[usize],
        offload: &[bool],
        headroom: usize,
    ) -> Result<(), TunError> {
        batch::check_send(bufs, lens, headroom)?;
        self.inner
            .send_packets(batch::packets(bufs, lens, offload, headroom))
            .await
    }

    async fn send_packed(
        &self,
        data: &mut [u8],
        ends: &[usize],
        offload: &[bool],
    ) -> Result<(), TunError> {
        let mut skipped = None;
        let packets = batch::packed(data, ends, offload, usize::from(self.mtu), &mut skipped);
        self.inner.send_packets(packets).await?;
        skipped.map_or(Ok(()), Err)
    }
}

/// A TUN device made by [`Tun::prepare`], its queues open, not yet registered with an
/// async runtime. Dropping it removes the interface.
#[derive(Debug)]
pub struct PreparedTun(imp::Prepared);

impl PreparedTun {
    /// Registers the device with the current tokio runtime.
    ///
    /// # Errors
    /// [`TunError::Io`] when a queue cannot be registered (no runtime).
    pub fn activate(self) -> Result<Tun, TunError> {
        self.activate_on(&[])
    }

    /// Registers queue `i` with runtime `runtimes[i % len]`, or every queue with the
    /// current runtime when `runtimes` is empty ([`Tun::create_on`]).
    ///
    /// # Errors
    /// [`TunError::Io`] when a queue cannot be registered (no runtime).
    pub fn activate_on(self, runtimes: &[tokio::runtime::Handle]) -> Result<Tun, TunError> {
        Tun::from_created(imp::activate(self.0, runtimes)?)
    }
}

/// What a platform's `imp::create` hands back.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
struct Created {
    queues: Vec<imp::Queue>,
    name: String,
    mtu: u16,
    offload: OffloadMode,
    offload_fallback: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn names_are_checked_like_the_kernel() {
        for ok in [
            "",
            "aura0",
            "auratest0",
            "a",
            "123456789012345",
            "tun%d",
            "a-b_c.d",
        ] {
            assert!(validate_name(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "1234567890123456",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "a\0",
        ] {
            assert!(
                matches!(validate_name(bad), Err(TunError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn config_is_validated() {
        let good = TunConfig::new("aura0");
        assert!(good.validate().is_ok());
        let low_mtu = TunConfig {
            mtu: 67,
            ..good.clone()
        };
        assert!(matches!(
            low_mtu.validate(),
            Err(TunError::InvalidConfig(_))
        ));
        let prefix = TunConfig {
            address: Some((Ipv4Addr::new(10, 0, 0, 1), 33)),
            ..good.clone()
        };
        assert!(matches!(prefix.validate(), Err(TunError::InvalidConfig(_))));
        let no_queue = TunConfig {
            queues: 0,
            ..good.clone()
        };
        assert!(matches!(
            no_queue.validate(),
            Err(TunError::InvalidConfig(_))
        ));
    }

    #[test]
    fn offload_mode_reports_on() {
        assert!(!OffloadMode::Off.is_on());
        assert!(OffloadMode::Tcp.is_on());
        assert!(OffloadMode::TcpUdp.is_on());
    }
}
