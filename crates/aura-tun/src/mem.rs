//! An in-memory TUN double for tests: no root, no kernel, same batch API.

use tokio::sync::{Mutex, mpsc};

use crate::{MAX_PACKET, OFFLOAD_BATCH, OffloadMode, PacketDevice, TunError, batch};

/// The daemon's side of an in-memory TUN: implements [`PacketDevice`] like a real [`crate::Tun`]
/// (same argument checks, offload off). Packets injected by the [`MemTunHost`] come out of
/// `recv_batch`, many per call when several are queued; packets given to `send_batch` go to
/// the host.
///
/// This double allocates one `Vec` per packet; it is for tests, not for the hot path.
#[derive(Debug)]
pub struct MemTun {
    name: String,
    mtu: u16,
    /// Packets from the host, each with whether its checksum is left unfinished.
    from_host: Mutex<mpsc::Receiver<(Vec<u8>, bool)>>,
    to_host: mpsc::Sender<Vec<u8>>,
}

/// The operating system's side of a [`MemTun`]: injects the packets applications would send
/// into the tunnel and collects what the daemon writes.
#[derive(Debug)]
pub struct MemTunHost {
    mtu: u16,
    to_dev: mpsc::Sender<(Vec<u8>, bool)>,
    from_dev: mpsc::Receiver<Vec<u8>>,
}

impl MemTun {
    /// A connected device and host; each direction queues up to `capacity` packets (at least
    /// one) before the writer waits.
    pub fn pair(name: impl Into<String>, mtu: u16, capacity: usize) -> (MemTun, MemTunHost) {
        let capacity = capacity.max(1);
        let (to_dev, from_host) = mpsc::channel(capacity);
        let (to_host, from_dev) = mpsc::channel(capacity);
        (
            MemTun {
                name: name.into(),
                mtu,
                from_host: Mutex::new(from_host),
                to_host,
            },
            MemTunHost {
                mtu,
                to_dev,
                from_dev,
            },
        )
    }
}

impl MemTunHost {
    /// Queues `packet` for the device's `recv_batch`, waiting while the queue is full.
    /// Rejects packets longer than the MTU, as a real interface never delivers them.
    pub async fn inject(&self, packet: &[u8]) -> Result<(), TunError> {
        self.check(packet)?;
        self.to_dev
            .send((packet.to_vec(), false))
            .await
            .map_err(|_| TunError::Closed)
    }

    /// As [`MemTunHost::inject`], for a packet whose TCP or UDP checksum the kernel left
    /// unfinished (as an offloading device hands over segments):
    /// [`PacketDevice::recv_batch_offload`] reports it flagged, `recv_batch` finishes it.
    pub async fn inject_unfinished(&self, packet: &[u8]) -> Result<(), TunError> {
        self.check(packet)?;
        self.to_dev
            .send((packet.to_vec(), true))
            .await
            .map_err(|_| TunError::Closed)
    }

    /// Queues `packet` without waiting; `Ok(false)` when the queue is full (a real TUN drops).
    pub fn try_inject(&self, packet: &[u8]) -> Result<bool, TunError> {
        self.check(packet)?;
        match self.to_dev.try_send((packet.to_vec(), false)) {
            Ok(()) => Ok(true),
            Err(mpsc::error::TrySendError::Full(_)) => Ok(false),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(TunError::Closed),
        }
    }

    /// The next packet the device wrote; [`TunError::Closed`] once the device is dropped and
    /// everything it wrote has been taken.
    pub async fn recv(&mut self) -> Result<Vec<u8>, TunError> {
        self.from_dev.recv().await.ok_or(TunError::Closed)
    }

    /// The next packet the device wrote, if one is queued.
    pub fn try_recv(&mut self) -> Option<Vec<u8>> {
        self.from_dev.try_recv().ok()
    }

    fn check(&self, packet: &[u8]) -> Result<(), TunError> {
        if packet.is_empty() || packet.len() > usize::from(self.mtu) {
            return Err(TunError::InvalidPacket {
                index: 0,
                reason: "injected packet is empty or longer than the MTU",
            });
        }
        Ok(())
    }
}

impl PacketDevice for MemTun {
    fn name(&self) -> &str {
        &self.name
    }

    fn mtu(&self) -> u16 {
        self.mtu
    }

    fn offload_mode(&self) -> OffloadMode {
        OffloadMode::Off
    }

    async fn recv_batch_offload(
        &self,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
        offload: &mut [bool],
        headroom: usize,
    ) -> Result<usize, TunError> {
        let k = lens.len().min(offload.len());
        let n = batch::check_recv(bufs, &lens[..k], headroom, self.mtu, OffloadMode::Off)?;
        let mut rx = self.from_host.lock().await;
        // Only the first receive waits; it completes or is dropped before taking a packet.
        let mut next = Some(rx.recv().await.ok_or(TunError::Closed)?);
        let mut got = 0;
        for ((buf, len), flag) in bufs
            .iter_mut()
            .zip(lens.iter_mut())
            .zip(offload.iter_mut())
            .take(n)
        {
            let Some((packet, unfinished)) = next.take().or_else(|| rx.try_recv().ok()) else {
                break;
            };
            // `check_recv` guaranteed headroom + mtu bytes and `inject` packet <= mtu.
            let dst =
                buf.get_mut(headroom..headroom + packet.len())
                    .ok_or(TunError::BufferTooSmall {
                        index: got,
                        need: headroom + packet.len(),
                        have: 0,
                    })?;
            dst.copy_from_slice(&packet);
            *len = packet.len();
            *flag = unfinished;
            got += 1;
        }
        Ok(got)
    }

    async fn recv_packed(
        &self,
        data: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        offload: &mut Vec<bool>,
    ) -> Result<usize, TunError> {
        let mut rx = self.from_host.lock().await;
        // Only the first receive waits; it completes or is dropped before taking a packet.
        let mut next = Some(rx.recv().await.ok_or(TunError::Closed)?);
        let mut got = 0;
        while got < OFFLOAD_BATCH {
            let Some((packet, unfinished)) = next.take().or_else(|| rx.try_recv().ok()) else {
                break;
            };
            // `inject` took no packet longer than the MTU.
            data.extend_from_slice(&packet);
            ends.push(data.len());
            offload.push(unfinished);
            got += 1;
        }
        Ok(got)
    }

    async fn send_batch_offload(
        &self,
        bufs: &mut [Vec<u8>],
        lens: &[usize],
        offload: &[bool],
        headroom: usize,
    ) -> Result<(), TunError> {
        batch::check_send(bufs, lens, headroom)?;
        self.write_all(batch::packets(bufs, lens, offload, headroom))
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
        self.write_all(packets).await?;
        skipped.map_or(Ok(()), Err)
    }
}

impl MemTun {
    /// Hands `packets` to the host, finishing the checksums left to this end.
    async fn write_all<'a>(
        &self,
        packets: impl Iterator<Item = (&'a mut [u8], bool)> + Send,
    ) -> Result<(), TunError> {
        let mut result = Ok(());
        for (index, (packet, unfinished)) in packets.enumerate() {
            // A real TUN (no packet information) refuses what is not IPv4 or IPv6 (EINVAL).
            let version = packet.first().map(|b| b >> 4);
            if !matches!(version, Some(4 | 6)) || packet.len() > MAX_PACKET {
                if result.is_ok() {
                    result = Err(TunError::InvalidPacket {
                        index,
                        reason: "not an IPv4 or IPv6 packet",
                    });
                }
                continue;
            }
            if unfinished {
                crate::csum::complete_checksum(packet);
            }
            self.to_host
                .send(packet.to_vec())
                .await
                .map_err(|_| TunError::Closed)?;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{MIN_HEADROOM, TunBuffers};

    fn ipv4(marker: u8, len: usize) -> Vec<u8> {
        let mut p = vec![marker; len];
        p[0] = 0x45;
        p
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn injected_packets_come_out_in_one_batch_after_the_headroom() {
        rt().block_on(async {
            let (dev, host) = MemTun::pair("mem0", 1400, 16);
            assert_eq!(dev.name(), "mem0");
            assert_eq!(dev.mtu(), 1400);
            assert_eq!(dev.offload_mode(), OffloadMode::Off);
            for i in 1..=3u8 {
                host.inject(&ipv4(i, 100 * usize::from(i))).await.unwrap();
            }
            let mut p = TunBuffers::new(8, 48, 1400 + 16);
            p.bufs[0][..48].fill(0xEE);
            let n = dev
                .recv_batch(&mut p.bufs, &mut p.lens, p.headroom)
                .await
                .unwrap();
            assert_eq!(n, 3);
            for i in 0..3 {
                let want = ipv4(i as u8 + 1, 100 * (i + 1));
                assert_eq!(p.packet(i).unwrap(), &want[..]);
            }
            assert_eq!(&p.bufs[0][..48], &[0xEE; 48][..], "headroom untouched");
        });
    }

    #[test]
    fn a_packed_read_appends_every_queued_packet_with_its_flag() {
        rt().block_on(async {
            let (tun, host) = MemTun::pair("mem0", 1500, 16);
            host.inject(&ipv4(1, 60)).await.unwrap();
            host.inject_unfinished(&ipv4(2, 100)).await.unwrap();
            let (mut data, mut ends, mut offload) = (vec![9; 3], vec![3], vec![false]);
            let n = tun
                .recv_packed(&mut data, &mut ends, &mut offload)
                .await
                .unwrap();
            assert_eq!(n, 2);
            assert_eq!(ends, [3, 63, 163]);
            assert_eq!(offload, [false, false, true]);
            assert_eq!(&data[3..63], &ipv4(1, 60)[..]);
            assert_eq!(&data[63..], &ipv4(2, 100)[..]);
        });
    }

    #[test]
    fn batch_is_limited_by_the_buffers_and_the_rest_stays_queued() {
        rt().block_on(async {
            let (dev, host) = MemTun::pair("mem0", 1400, 16);
            for i in 0..5u8 {
                host.inject(&ipv4(i, 60)).await.unwrap();
            }
            let mut p = TunBuffers::new(2, 16, 1400);
            assert_eq!(
                dev.recv_batch(&mut p.bufs, &mut p.lens, 16).await.unwrap(),
                2
            );
            assert_eq!(p.packet(1).unwrap()[1], 1);
            assert_eq!(
                dev.recv_batch(&mut p.bufs, &mut p.lens, 16).await.unwrap(),
                2
            );
            assert_eq!(p.packet(0).unwrap()[1], 2);
            assert_eq!(
                dev.recv_batch(&mut p.bufs, &mut p.lens[..1], 16)
                    .await
                    .unwrap(),
                1
            );
            assert_eq!(p.packet(0).unwrap()[1], 4);
        });
    }

    #[test]
    fn recv_waits_for_a_packet() {
        rt().block_on(async {
            let (dev, host) = MemTun::pair("mem0", 1400, 4);
            let mut p = TunBuffers::new(4, 16, 1400);
            let waited = tokio::time::timeout(
                std::time::Duration::from_millis(20),
                dev.recv_batch(&mut p.bufs, &mut p.lens, 16),
            )
            .await;
            assert!(waited.is_err(), "nothing injected yet");
            assert!(host.try_inject(&ipv4(7, 40)).unwrap());
            let n = dev.recv_batch(&mut p.bufs, &mut p.lens, 16).await.unwrap();
            assert_eq!((n, p.lens[0]), (1, 40));
        });
    }

    #[test]
    fn sent_packets_reach_the_host_and_buffers_are_left_alone() {
        rt().block_on(async {
            let (dev, mut host) = MemTun::pair("mem0", 1400, 16);
            let mut p = TunBuffers::new(4, 32, 1400);
            p.set_packet(0, &ipv4(1, 20)).unwrap();
            p.set_packet(1, &[0x60, 0, 0, 0, 9, 9]).unwrap();
            let before = p.bufs.clone();
            dev.send_batch(&mut p.bufs, &p.lens[..2], p.headroom)
                .await
                .unwrap();
            assert_eq!(host.recv().await.unwrap(), ipv4(1, 20));
            assert_eq!(host.recv().await.unwrap(), vec![0x60, 0, 0, 0, 9, 9]);
            assert!(host.try_recv().is_none());
            assert_eq!(p.bufs, before);
            // An empty batch is fine.
            dev.send_batch(&mut p.bufs, &[], p.headroom).await.unwrap();
        });
    }

    #[test]
    fn non_ip_packets_are_refused_but_the_rest_go_out() {
        rt().block_on(async {
            let (dev, mut host) = MemTun::pair("mem0", 1400, 16);
            let mut p = TunBuffers::new(3, MIN_HEADROOM, 100);
            p.set_packet(0, &[0x12, 0, 0]).unwrap();
            p.set_packet(1, &ipv4(3, 30)).unwrap();
            let err = dev
                .send_batch(&mut p.bufs, &p.lens[..2], p.headroom)
                .await
                .unwrap_err();
            assert!(matches!(err, TunError::InvalidPacket { index: 0, .. }));
            assert_eq!(host.recv().await.unwrap(), ipv4(3, 30));
        });
    }

    #[test]
    fn bad_arguments_are_rejected_like_the_real_device() {
        rt().block_on(async {
            let (dev, host) = MemTun::pair("mem0", 1400, 4);
            host.inject(&ipv4(1, 40)).await.unwrap();
            let mut small = TunBuffers::new(2, 16, 1000);
            assert!(matches!(
                dev.recv_batch(&mut small.bufs, &mut small.lens, 16).await,
                Err(TunError::BufferTooSmall { index: 0, .. })
            ));
            let mut p = TunBuffers::new(2, 8, 1400);
            p.lens[0] = 40;
            assert!(matches!(
                dev.send_batch(&mut p.bufs, &p.lens[..1], 8).await,
                Err(TunError::BadBatch(_))
            ));
            assert!(matches!(
                host.inject(&[0x45; 1401]).await,
                Err(TunError::InvalidPacket { .. })
            ));
            assert!(matches!(
                host.inject(&[]).await,
                Err(TunError::InvalidPacket { .. })
            ));
        });
    }

    #[test]
    fn closing_either_side_is_reported() {
        rt().block_on(async {
            let (dev, host) = MemTun::pair("mem0", 1400, 4);
            host.inject(&ipv4(1, 40)).await.unwrap();
            let mut p = TunBuffers::new(2, 16, 1400);
            p.set_packet(0, &ipv4(2, 40)).unwrap();
            dev.send_batch(&mut p.bufs, &p.lens[..1], 16).await.unwrap();
            let MemTunHost { to_dev, .. } = host;
            drop(to_dev);
            // The queued packet is still delivered, then the device reports Closed.
            assert_eq!(
                dev.recv_batch(&mut p.bufs, &mut p.lens, 16).await.unwrap(),
                1
            );
            assert!(matches!(
                dev.recv_batch(&mut p.bufs, &mut p.lens, 16).await,
                Err(TunError::Closed)
            ));
            let (dev, mut host) = MemTun::pair("mem1", 1400, 4);
            drop(dev);
            assert!(matches!(host.recv().await, Err(TunError::Closed)));
            assert!(matches!(
                host.inject(&ipv4(1, 40)).await,
                Err(TunError::Closed)
            ));
        });
    }

    #[test]
    fn full_queue_reports_drop_on_try_inject() {
        let (_dev, host) = MemTun::pair("mem0", 1400, 1);
        assert!(host.try_inject(&ipv4(1, 40)).unwrap());
        assert!(!host.try_inject(&ipv4(2, 40)).unwrap());
    }
}
