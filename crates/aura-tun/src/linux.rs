//! Linux: a TUN device through tun-rs, with virtio-net offload when the kernel grants it.

use std::io;

use nix::errno::Errno;
use tokio::sync::Mutex;
use tun_rs::{AsyncDevice, DeviceBuilder, IDEAL_BATCH_SIZE, SyncDevice, VIRTIO_NET_HDR_LEN};

use crate::csum;
use crate::gro::{Coalescer, VNET_HDR_LEN};

use crate::{Created, MAX_PACKET, MIN_HEADROOM, OFFLOAD_BATCH, OffloadMode, TunConfig, TunError};

const _: () = assert!(MIN_HEADROOM == VIRTIO_NET_HDR_LEN);
const _: () = assert!(VNET_HDR_LEN == VIRTIO_NET_HDR_LEN);
const _: () = assert!(OFFLOAD_BATCH == IDEAL_BATCH_SIZE);

/// One queue: the tun-rs device plus the scratch space each direction needs, allocated once.
pub(crate) struct Queue {
    dev: AsyncDevice,
    /// Raw read buffer (virtio-net header + a 64 KiB super-packet); empty when offload is off.
    rx: Mutex<Vec<u8>>,
    /// Builds the super-packets written when offload is on.
    tx: Mutex<Coalescer>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("vnet_hdr", &self.dev.tcp_gso())
            .field("udp_gso", &self.dev.udp_gso())
            .finish_non_exhaustive()
    }
}

impl Queue {
    fn new(dev: AsyncDevice) -> Queue {
        let rx = if dev.tcp_gso() {
            vec![0u8; VIRTIO_NET_HDR_LEN + MAX_PACKET]
        } else {
            Vec::new()
        };
        let tx = Coalescer::new(dev.udp_gso());
        Queue {
            dev,
            tx: Mutex::new(tx),
            rx: Mutex::new(rx),
        }
    }

    /// Arguments were checked by the facade (`batch::check_recv`); `bufs`, `lens` and
    /// `offload` have one length. With offload on, a super-packet is split by
    /// [`csum::split`], which leaves the checksums the kernel did not compute for the peer
    /// (`offload[i]`); a frame it cannot split is dropped and the next one read.
    pub(crate) async fn recv_batch(
        &self,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
        offload: &mut [bool],
        headroom: usize,
    ) -> Result<usize, TunError> {
        let err = |source| TunError::Io { op: "read", source };
        if !self.dev.tcp_gso() {
            let (Some(buf), Some(len), Some(off)) =
                (bufs.first_mut(), lens.first_mut(), offload.first_mut())
            else {
                return Err(TunError::BadBatch("no receive buffers".into()));
            };
            let room = buf.get_mut(headroom..).unwrap_or_default();
            *len = self.dev.recv(room).await.map_err(err)?;
            *off = false;
            return Ok(1);
        }
        let mut raw = self.rx.lock().await;
        loop {
            let n = self.dev.recv(&mut raw).await.map_err(err)?;
            // No await from here on: a cancelled read loses nothing.
            if let Ok(k) = csum::split(
                raw.get(..n).unwrap_or_default(),
                bufs,
                lens,
                offload,
                headroom,
            ) {
                return Ok(k);
            }
        }
    }

    /// Reads one frame and appends its packets back to back to `data` (ends to `ends`,
    /// flags to `offload`), at most [`OFFLOAD_BATCH`] of at most `mtu` bytes each: split by
    /// [`csum::split_packed`] with offload on, as read without. A frame that cannot be
    /// split is dropped and the next one read. The frame is read into this queue's own
    /// buffer, so a cancelled read leaves `data` as it was.
    pub(crate) async fn recv_packed(
        &self,
        data: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        offload: &mut Vec<bool>,
        mtu: usize,
    ) -> Result<usize, TunError> {
        let err = |source| TunError::Io { op: "read", source };
        let mut raw = self.rx.lock().await;
        if !self.dev.tcp_gso() && raw.len() < mtu {
            raw.resize(mtu, 0);
        }
        loop {
            let n = self.dev.recv(&mut raw).await.map_err(err)?;
            // No await from here on: a cancelled read loses nothing.
            let frame = raw.get(..n).unwrap_or_default();
            if frame.is_empty() {
                continue;
            }
            if !self.dev.tcp_gso() {
                data.extend_from_slice(frame);
                ends.push(data.len());
                offload.push(false);
                return Ok(1);
            }
            if let Ok(k) = csum::split_packed(frame, data, ends, offload, mtu, OFFLOAD_BATCH) {
                return Ok(k);
            }
        }
    }

    /// Writes `packets`, each checked by the facade (neither empty nor longer than
    /// [`MAX_PACKET`]). With offload on, what may be coalesced is ([`crate::gro`]); every
    /// packet is tried, the first error is returned. A TUN write hands the packet to the
    /// kernel's stack and does not wait for room, so the writes are made without waiting
    /// for readiness; one that would block is reported as the error, and its packet
    /// dropped. A packet flagged in `offload` has its checksum finished by the kernel
    /// (offload on) or here.
    pub(crate) async fn send_packets<'a>(
        &self,
        packets: impl Iterator<Item = (&'a mut [u8], bool)> + Send,
    ) -> Result<(), TunError> {
        let result = if self.dev.tcp_gso() {
            let mut gro = self.tx.lock().await;
            gro.write_batch(packets, &mut |frame| {
                self.dev.try_send_vectored(frame).map(drop)
            })
        } else {
            let mut result = Ok(());
            for (p, off) in packets {
                if off {
                    csum::complete_checksum(p);
                }
                if let Err(e) = self.dev.try_send(p)
                    && result.is_ok()
                {
                    result = Err(e);
                }
            }
            result
        };
        result.map_err(|source| TunError::Io {
            op: "write",
            source,
        })
    }
}

/// A device made but not yet registered with the async runtime: every queue's file is
/// open and the interface is configured.
pub(crate) struct Prepared {
    devs: Vec<SyncDevice>,
    name: String,
    mtu: u16,
    offload: OffloadMode,
    offload_fallback: Option<String>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("name", &self.name)
            .field("queues", &self.devs.len())
            .field("offload", &self.offload)
            .finish_non_exhaustive()
    }
}

pub(crate) async fn create(cfg: &TunConfig) -> Result<Created, TunError> {
    activate(prepare(cfg)?, &[])
}

/// Makes the interface and opens every queue, outside any runtime.
pub(crate) fn prepare(cfg: &TunConfig) -> Result<Prepared, TunError> {
    if !cfg.name.is_empty() && nix::net::if_::if_nametoindex(cfg.name.as_str()).is_ok() {
        return Err(TunError::NameTaken {
            name: cfg.name.clone(),
        });
    }
    let mut offload_fallback = None;
    let first = if cfg.offload {
        match build(cfg, true) {
            Ok(dev) => dev,
            Err(e) if is_environment_error(&e) => return Err(map_create_error(cfg, e)),
            Err(e) => {
                // The kernel refused IFF_VNET_HDR or TUNSETOFFLOAD: plain TUN instead.
                offload_fallback = Some(e.to_string());
                build(cfg, false).map_err(|e| map_create_error(cfg, e))?
            }
        }
    } else {
        build(cfg, false).map_err(|e| map_create_error(cfg, e))?
    };
    let offload = match (first.tcp_gso(), first.udp_gso()) {
        (false, _) => OffloadMode::Off,
        (true, false) => OffloadMode::Tcp,
        (true, true) => OffloadMode::TcpUdp,
    };
    let name = first
        .name()
        .map_err(|source| TunError::Io { op: "name", source })?;
    let mtu = first
        .mtu()
        .map_err(|source| TunError::Io { op: "mtu", source })?;
    let mut devs = Vec::with_capacity(cfg.queues);
    for _ in 1..cfg.queues {
        let dev = first.try_clone().map_err(|source| TunError::Io {
            op: "open queue",
            source,
        })?;
        devs.push(dev);
    }
    devs.insert(0, first);
    Ok(Prepared {
        devs,
        name,
        mtu,
        offload,
        offload_fallback,
    })
}

/// Registers a prepared device's queues: queue `i` with `runtimes[i % len]`, or all with
/// the current runtime (call inside it) when `runtimes` is empty.
pub(crate) fn activate(
    p: Prepared,
    runtimes: &[tokio::runtime::Handle],
) -> Result<Created, TunError> {
    let queues = p
        .devs
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let _entered = runtimes
                .get(i.checked_rem(runtimes.len()).unwrap_or(0))
                .map(tokio::runtime::Handle::enter);
            AsyncDevice::new(d)
                .map(Queue::new)
                .map_err(|source| TunError::Io {
                    op: "register queue",
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Created {
        queues,
        name: p.name,
        mtu: p.mtu,
        offload: p.offload,
        offload_fallback: p.offload_fallback,
    })
}

fn build(cfg: &TunConfig, offload: bool) -> io::Result<SyncDevice> {
    let mut builder = DeviceBuilder::new()
        .mtu(cfg.mtu)
        .offload(offload)
        .multi_queue(cfg.queues > 1)
        .enable(true);
    if !cfg.name.is_empty() {
        builder = builder.name(cfg.name.as_str());
    }
    if let Some((address, prefix)) = cfg.address {
        builder = builder.ipv4(address, prefix, None);
    }
    if let Some((address, prefix)) = cfg.address6 {
        builder = builder.ipv6(address, prefix);
    }
    builder.build_sync()
}

fn errno(e: &io::Error) -> Option<Errno> {
    e.raw_os_error().map(Errno::from_raw)
}

/// Errors that a retry without offload would only repeat.
fn is_environment_error(e: &io::Error) -> bool {
    matches!(
        errno(e),
        Some(
            Errno::EPERM
                | Errno::EACCES
                | Errno::ENOENT
                | Errno::ENODEV
                | Errno::ENXIO
                | Errno::EBUSY
                | Errno::EEXIST
                | Errno::ENOMEM
                | Errno::EMFILE
                | Errno::ENFILE
        )
    )
}

fn map_create_error(cfg: &TunConfig, source: io::Error) -> TunError {
    match errno(&source) {
        Some(Errno::EPERM | Errno::EACCES) => TunError::PermissionDenied { source },
        Some(Errno::ENOENT | Errno::ENODEV | Errno::ENXIO) => TunError::NoTunDevice { source },
        Some(Errno::EBUSY | Errno::EEXIST) => TunError::NameTaken {
            name: cfg.name.clone(),
        },
        _ => TunError::Io {
            op: "create",
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn create_errors_are_classified() {
        let cfg = TunConfig::new("x0");
        let e = |errno: Errno| io::Error::from_raw_os_error(errno as i32);
        assert!(matches!(
            map_create_error(&cfg, e(Errno::EPERM)),
            TunError::PermissionDenied { .. }
        ));
        assert!(matches!(
            map_create_error(&cfg, e(Errno::ENOENT)),
            TunError::NoTunDevice { .. }
        ));
        assert!(matches!(
            map_create_error(&cfg, e(Errno::EBUSY)),
            TunError::NameTaken { .. }
        ));
        assert!(matches!(
            map_create_error(&cfg, e(Errno::EINVAL)),
            TunError::Io { op: "create", .. }
        ));
        assert!(is_environment_error(&e(Errno::EACCES)));
        assert!(!is_environment_error(&e(Errno::EINVAL)));
        assert!(!is_environment_error(&io::Error::other("x")));
    }
}
