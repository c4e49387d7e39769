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
    /// A writer for `device`, with send buffers for one full batch.
    pub fn new(device: Arc<D>) -> Self {
        let tx = TunBuffers::for_device(&*device, aura_tun::MIN_HEADROOM, 0);
        Self { device, tx, n: 0 }
    }

    /// Adds `packet` to the pending batch, writing the batch first when it is full. A
    /// packet larger than the device's MTU is dropped.
    pub async fn push(&mut self, packet: &[u8]) {
        if self.n == self.tx.len() {
            self.flush().await;
        }
        if self.tx.set_packet(self.n, packet).is_ok() {
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
                .send_batch(&mut self.tx.bufs, &self.tx.lens[..n], self.tx.headroom)
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
                for p in batch.iter() {
                    self.push(p).await;
                }
                batch.recycle();
                // Batches already waiting go into the same write.
                next = queue.try_recv().ok();
            }
            self.flush().await;
        }
    }
}
