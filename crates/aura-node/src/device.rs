//! The daemons' side of the TUN device: where devices come from ([`TunFactory`]) and the
//! one batched writer both daemons use ([`DeviceWriter`]).
//!
//! The writer owns the device's send buffers (allocated once, at start). Packets are
//! copied into them as they come and written as one `send_batch` per
//! [`aura_tun::OFFLOAD_BATCH`] packets, so GRO can coalesce what arrives together. The
//! server runs it as one task fed by every client ([`DeviceWriter::run`]); the client
//! calls it inline for each batch its session receives.

use std::future::Future;
use std::sync::Arc;

use aura_transport::PacketBatch;
use aura_tun::{PacketDevice, Tun, TunBuffers, TunConfig, TunError};
use tokio::sync::mpsc;

/// Makes the TUN devices a daemon uses: real ones ([`SystemTuns`]) in production,
/// in-memory ones in tests.
pub trait TunFactory: Send + Sync + 'static {
    /// The device type.
    type Device: PacketDevice + 'static;

    /// Creates a device configured as `cfg` says (up, with its address and MTU).
    fn create(
        &self,
        cfg: &TunConfig,
    ) -> impl Future<Output = Result<Self::Device, TunError>> + Send;
}

/// Real TUN devices of the kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemTuns;

impl TunFactory for SystemTuns {
    type Device = Tun;

    fn create(&self, cfg: &TunConfig) -> impl Future<Output = Result<Tun, TunError>> + Send {
        Tun::create(cfg)
    }
}

/// Batched writes to one device.
#[derive(Debug)]
pub struct DeviceWriter<D> {
    device: Arc<D>,
    tx: TunBuffers,
    n: usize,
}

impl<D: PacketDevice> DeviceWriter<D> {
    /// A writer for `device`. Its send buffers (one full batch) are made at the first
    /// packet, so a writer that never writes (a queue no client uses) holds none.
    pub fn new(device: Arc<D>) -> Self {
        let tx = TunBuffers::new(0, aura_tun::MIN_HEADROOM, 0);
        Self { device, tx, n: 0 }
    }

    /// Adds `packet` to the pending batch, writing the batch first when it is full. A
    /// packet larger than the device's MTU is dropped.
    pub async fn push(&mut self, packet: &[u8]) {
        self.push_with(packet, false).await;
    }

    /// As [`DeviceWriter::push`]; with `offload`, the packet's TCP or UDP checksum is this
    /// end's to finish (it came as a type 7 data packet).
    pub async fn push_with(&mut self, packet: &[u8], offload: bool) {
        if self.tx.is_empty() {
            self.tx = TunBuffers::for_device(&*self.device, aura_tun::MIN_HEADROOM, 0);
        }
        if self.n == self.tx.len() {
            self.flush().await;
        }
        if self.tx.set_packet_with(self.n, packet, offload).is_ok() {
            self.n += 1;
        }
    }

    /// Writes the pending packets (nothing when there are none). A write error is logged
    /// and the packets are dropped, as a full device queue would drop them.
    pub async fn flush(&mut self) {
        let n = std::mem::take(&mut self.n);
        if n > 0
            && let Err(e) = self
                .device
                .send_batch_offload(
                    &mut self.tx.bufs,
                    &self.tx.lens[..n],
                    &self.tx.offload[..n],
                    self.tx.headroom,
                )
                .await
        {
            tracing::debug!(error = %e, "writing to the TUN device");
        }
    }

    /// Writes the batches arriving on `queue` until every sender is gone. Batches waiting
    /// together are written together.
    pub async fn run(mut self, mut queue: mpsc::Receiver<PacketBatch>) {
        while let Some(first) = queue.recv().await {
            let mut next = Some(first);
            while let Some(batch) = next.take() {
                for (p, offload) in batch.iter_with_offload() {
                    self.push_with(p, offload).await;
                }
                batch.recycle();
                // Batches already waiting go into the same write.
                next = queue.try_recv().ok();
            }
            self.flush().await;
        }
    }
}

/// One TUN device made before the daemon dropped its privileges (`run_as`), kept for the
/// daemon's whole life: each [`TunFactory::create`] fits it to the configuration asked
/// for (addresses, MTU) over netlink, which `CAP_NET_ADMIN` allows, instead of opening
/// `/dev/net/tun` again, which the dropped user may not be allowed to.
#[derive(Debug)]
pub struct KeptTun {
    prepared: std::sync::Mutex<Option<aura_tun::PreparedTun>>,
    active: std::sync::Mutex<Option<Arc<Tun>>>,
}

impl KeptTun {
    /// Keeps `prepared`, activated at the first `create`.
    pub fn new(prepared: aura_tun::PreparedTun) -> Self {
        Self {
            prepared: std::sync::Mutex::new(Some(prepared)),
            active: std::sync::Mutex::new(None),
        }
    }

    fn device(&self) -> Result<Arc<Tun>, TunError> {
        let mut active = self
            .active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = active.as_ref() {
            return Ok(t.clone());
        }
        let prepared = self
            .prepared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or_else(|| TunError::Io {
                op: "activate",
                source: std::io::Error::other("the kept TUN device is gone"),
            })?;
        let t = Arc::new(prepared.activate()?);
        *active = Some(t.clone());
        Ok(t)
    }
}

/// The kept device, shared between the factory and whoever uses it now.
#[derive(Debug, Clone)]
pub struct SharedTun(Arc<Tun>);

impl PacketDevice for SharedTun {
    fn name(&self) -> &str {
        self.0.name()
    }

    /// The MTU the device was made with: receive buffers are sized for it, and an
    /// assignment only ever lowers the MTU in force.
    fn mtu(&self) -> u16 {
        self.0.mtu()
    }

    fn offload_mode(&self) -> aura_tun::OffloadMode {
        self.0.offload_mode()
    }

    async fn recv_batch_offload(
        &self,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
        offload: &mut [bool],
        headroom: usize,
    ) -> Result<usize, TunError> {
        self.0
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
        self.0
            .send_batch_offload(bufs, lens, offload, headroom)
            .await
    }

    fn queue_count(&self) -> usize {
        self.0.queue_count()
    }

    async fn recv_batch_offload_on(
        &self,
        queue: usize,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
        offload: &mut [bool],
        headroom: usize,
    ) -> Result<usize, TunError> {
        self.0
            .recv_batch_offload_on(queue, bufs, lens, offload, headroom)
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
        self.0
            .send_batch_offload_on(queue, bufs, lens, offload, headroom)
            .await
    }
}

impl TunFactory for KeptTun {
    type Device = SharedTun;

    fn create(&self, cfg: &TunConfig) -> impl Future<Output = Result<SharedTun, TunError>> + Send {
        let device = self.device();
        let (v4, v6) = (cfg.address, cfg.address6);
        let asked = cfg.mtu;
        async move {
            let tun = device?;
            if asked > tun.mtu() {
                return Err(TunError::InvalidConfig(format!(
                    "MTU {asked} is above the kept device's {}",
                    tun.mtu()
                )));
            }
            aura_netcfg::routes::readdress_link(tun.name(), v4, v6, asked)
                .await
                .map_err(|e| TunError::Io {
                    op: "readdress",
                    source: std::io::Error::other(e.to_string()),
                })?;
            Ok(SharedTun(tun))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A writer holds no send buffers until its first packet, then writes what it is
    /// given.
    #[tokio::test]
    async fn a_writer_makes_its_buffers_at_the_first_packet() {
        let (dev, mut host) = aura_tun::MemTun::pair("w0", 1280, 16);
        let mut w = DeviceWriter::new(Arc::new(dev));
        assert!(w.tx.is_empty());
        // IPv4 (20 bytes, no options) and UDP (8 bytes), 10.77.0.2 to 10.77.0.1.
        let mut packet = vec![0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0];
        packet.extend_from_slice(&[10, 77, 0, 2, 10, 77, 0, 1]);
        packet.extend_from_slice(&[0x30, 0x39, 0x1f, 0x90, 0, 12, 0, 0, b'a', b'u', b'r', b'a']);
        w.push(&packet).await;
        assert_eq!(w.tx.len(), aura_tun::OFFLOAD_BATCH);
        w.flush().await;
        assert_eq!(host.recv().await.unwrap(), packet);
    }
}
