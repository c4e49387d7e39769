//! The daemons' side of the TUN device: where devices come from ([`TunFactory`]) and how
//! both daemons write a batch of received packets ([`write_batch`]).
//!
//! A batch goes to the device from where the session left it, in one call, so the
//! device's coalescing sees the whole batch and no packet is copied on the way. Both
//! daemons write inline, from the task that received the batch: the server from each
//! client's task (to the device queue of that client's worker), the client from its
//! session's.

use std::future::Future;
use std::sync::Arc;

use aura_transport::PacketBatch;
use aura_tun::{PacketDevice, Tun, TunConfig, TunError};

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

    /// [`TunFactory::create`], with the device's queue `i` woken on runtime
    /// `runtimes[i % len]` (the server's per-worker runtimes). A device that registers
    /// nothing with a runtime (one in memory) is made as by `create`.
    fn create_on(
        &self,
        cfg: &TunConfig,
        runtimes: &[tokio::runtime::Handle],
    ) -> impl Future<Output = Result<Self::Device, TunError>> + Send {
        let _ = runtimes;
        self.create(cfg)
    }
}

/// Real TUN devices of the kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemTuns;

impl TunFactory for SystemTuns {
    type Device = Tun;

    fn create(&self, cfg: &TunConfig) -> impl Future<Output = Result<Tun, TunError>> + Send {
        Tun::create(cfg)
    }

    fn create_on(
        &self,
        cfg: &TunConfig,
        runtimes: &[tokio::runtime::Handle],
    ) -> impl Future<Output = Result<Tun, TunError>> + Send {
        Tun::create_on(cfg, runtimes)
    }
}

/// Writes `batch`'s packets to `device` where they lie (no copy on the way; the device
/// coalesces what it can, [`aura_tun::gro`]). A packet longer than the device's MTU is
/// left out. A write error is logged and the packets are dropped, as a full device queue
/// would drop them.
pub async fn write_batch<D: PacketDevice>(device: &D, batch: &mut PacketBatch) {
    let (data, ends, offload) = batch.packed_mut();
    if let Err(e) = device.send_packed(data, ends, offload).await {
        tracing::debug!(error = %e, "writing to the TUN device");
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

    fn device(&self, runtimes: &[tokio::runtime::Handle]) -> Result<Arc<Tun>, TunError> {
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
        let t = Arc::new(prepared.activate_on(runtimes)?);
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

    async fn recv_packed(
        &self,
        data: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        offload: &mut Vec<bool>,
    ) -> Result<usize, TunError> {
        self.0.recv_packed(data, ends, offload).await
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

    async fn send_packed(
        &self,
        data: &mut [u8],
        ends: &[usize],
        offload: &[bool],
    ) -> Result<(), TunError> {
        self.0.send_packed(data, ends, offload).await
    }

    async fn recv_packed_on(
        &self,
        queue: usize,
        data: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        offload: &mut Vec<bool>,
    ) -> Result<usize, TunError> {
        self.0.recv_packed_on(queue, data, ends, offload).await
    }

    async fn send_packed_on(
        &self,
        queue: usize,
        data: &mut [u8],
        ends: &[usize],
        offload: &[bool],
    ) -> Result<(), TunError> {
        self.0.send_packed_on(queue, data, ends, offload).await
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
        self.create_on(cfg, &[])
    }

    /// The kept device's queues are registered at the first call, with `runtimes`
    /// then; later calls refit the same device.
    fn create_on(
        &self,
        cfg: &TunConfig,
        runtimes: &[tokio::runtime::Handle],
    ) -> impl Future<Output = Result<SharedTun, TunError>> + Send {
        let device = self.device(runtimes);
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

    /// A batch is written in order; a packet longer than the device's MTU is left out.
    #[tokio::test]
    async fn a_batch_is_written_in_order_without_what_exceeds_the_mtu() {
        let (dev, mut host) = aura_tun::MemTun::pair("w0", 1280, 16);
        // IPv4 (20 bytes, no options) and UDP (8 bytes), 10.77.0.2 to 10.77.0.1.
        let udp = |len: usize, marker: u8| {
            let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
            p.extend_from_slice(&[10, 77, 0, 2, 10, 77, 0, 1]);
            p.extend_from_slice(&[0x30, 0x39, 0x1f, 0x90, 0, 0, 0, 0]);
            p.resize(len, marker);
            p
        };
        let (first, too_long, last) = (udp(100, 1), udp(1281, 2), udp(1280, 3));
        let mut batch = PacketBatch::from_packets([&first[..], &too_long, &last]);
        write_batch(&dev, &mut batch).await;
        assert_eq!(host.recv().await.unwrap(), first);
        assert_eq!(host.recv().await.unwrap(), last);
        assert!(host.try_recv().is_none());
    }
}
