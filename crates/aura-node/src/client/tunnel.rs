//! The client's TUN device and routes for the current address assignment, and the task
//! that reads the device into the current session.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use aura_netcfg::RoutePlan;
use aura_proto::control::{AddressAssign, AddressAssign6};
use aura_transport::{BatchPool, PacketBatch, PacketSender};
use aura_tun::{PacketDevice, TunConfig};
use tokio::sync::watch;

use crate::DaemonError;
use crate::device::TunFactory;
use crate::host::Host;
use crate::options::ClientOptions;

/// What the server assigned: the IPv4 address, and the IPv6 one of a dual-stack pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Assignment {
    pub(super) v4: AddressAssign,
    pub(super) v6: Option<AddressAssign6>,
}

/// The TUN device as the current assignment configured it.
pub(super) struct Tunnel<D> {
    pub(super) tun: Arc<D>,
    pub(super) assign: Assignment,
    pub(super) mtu: u16,
    reader: tokio::task::JoinHandle<()>,
    /// The session the reader sends into; `None` between sessions.
    pub(super) current: watch::Sender<Option<PacketSender>>,
}

impl<D> Drop for Tunnel<D> {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Reads the TUN and sends every packet through the current session, if any.
/// Only packets from the assigned addresses are sent: the server would drop anything
/// else. Without an IPv6 assignment, IPv6 is routed into the TUN only so that it cannot
/// leak around the tunnel, and dropped here. Each read lands in the batch that carries
/// it ([`PacketDevice::recv_packed`]): no copy between the device and the session.
async fn tun_reader<D: PacketDevice>(
    tun: Arc<D>,
    address: Ipv4Addr,
    address6: Option<Ipv6Addr>,
    current: watch::Receiver<Option<PacketSender>>,
) {
    let pool = BatchPool::new();
    loop {
        let mut batch = pool.take();
        let read = {
            let (data, ends, offload) = batch.parts_mut();
            tun.recv_packed(data, ends, offload).await
        };
        if let Err(e) = read {
            tracing::error!(error = %e, "reading the TUN device failed");
            return;
        }
        let sender = current.borrow().clone();
        let Some(s) = sender else {
            batch.recycle();
            continue;
        };
        batch.retain(|p| match crate::packet::ipv4_addrs(p) {
            Some((src, _)) => src == address,
            None => address6
                .is_some_and(|a6| crate::packet::ipv6_addrs(p).is_some_and(|(src, _)| src == a6)),
        });
        // A checksum the kernel left unfinished goes to the server unfinished when the
        // session carries that (version 2), else it is finished here.
        if !s.offload() {
            finish_checksums(&mut batch);
        }
        if batch.is_empty() {
            batch.recycle();
        } else {
            let _ = s.send_packets(batch).await;
        }
    }
}

/// Finishes every checksum left unfinished in `batch` and clears its flag: for a peer
/// that cannot finish them.
fn finish_checksums(batch: &mut PacketBatch) {
    let (data, ends, offload) = batch.parts_mut();
    let mut start = 0;
    for (&end, flag) in ends.iter().zip(offload.iter_mut()) {
        if *flag {
            if let Some(p) = data.get_mut(start..end) {
                aura_tun::csum::complete_checksum(p);
            }
            *flag = false;
        }
        start = end;
    }
}

impl<D: PacketDevice + 'static> Tunnel<D> {
    /// Makes `slot` match `assign`: nothing to do when it already does; otherwise the
    /// routes and the old device go, and a new device comes up with routes that send
    /// everything into it but `exclude` (the server and bridges, kept on their path).
    pub(super) async fn ensure<T: TunFactory<Device = D>>(
        slot: &mut Option<Self>,
        host: &mut Host<T>,
        opts: &ClientOptions,
        book: &super::SharedRouteBook,
        exclude: Vec<IpAddr>,
        assign: Assignment,
        session: PacketSender,
    ) -> Result<(), DaemonError> {
        let mtu = opts.mtu.min(assign.v4.mtu);
        if slot
            .as_ref()
            .is_some_and(|t| t.assign == assign && t.mtu == mtu)
        {
            return Ok(());
        }
        if slot.take().is_some() {
            // The routes go with the old device; the kill switch stays.
            book.lock().await.uninstall().await;
            host.netcfg.undo_routes().await?;
        }
        let tun = Arc::new(
            host.tuns
                .create(&TunConfig {
                    address: Some((assign.v4.address, assign.v4.prefix_len)),
                    address6: assign.v6.map(|a| (a.address, a.prefix_len)),
                    mtu,
                    ..TunConfig::new(opts.tun_name.clone())
                })
                .await?,
        );
        let routed = if opts.routing.enabled {
            // The tunnel's own routes; the split rules' come after, from the route book.
            let mut plan = RoutePlan::full(tun.name(), exclude, true);
            if let Err(e) = host.netcfg.apply_routes(&plan).await {
                if matches!(e, aura_netcfg::NetcfgError::InvalidPlan(_)) {
                    return Err(e.into());
                }
                tracing::warn!(error = %e, "cannot route IPv6 into the tunnel: routing IPv4 only");
                plan.ipv6 = false;
                host.netcfg.apply_routes(&plan).await?;
            }
            if let Err(e) = book.lock().await.install(tun.name()).await {
                host.netcfg.undo_routes().await?;
                return Err(DaemonError::Routes(e));
            }
            if host.netcfg.is_dry_run() {
                // Each planned command was logged as "dry run: would run".
                "routes planned, none installed (dry run)"
            } else if opts.routing.direct.is_empty() && opts.routing.vpn.is_empty() {
                "all traffic routed through it"
            } else {
                "all traffic routed through it but the DIRECT networks"
            }
        } else {
            "no routes installed (tunnel.os_routes.enabled = false)"
        };
        tracing::info!(
            tun = tun.name(),
            address = %opts.redact.addr(&assign.v4.address),
            prefix_len = assign.v4.prefix_len,
            ipv6 = assign.v6.is_some(),
            mtu,
            direct = opts.routing.direct.len(),
            vpn = opts.routing.vpn.len(),
            "tunnel up, {routed}"
        );
        // The session from the start: what the system sends while the routes and DNS
        // are still being set up (the device has its address already) is not dropped.
        let (current, rx) = watch::channel(Some(session));
        let reader = tokio::spawn(tun_reader(
            tun.clone(),
            assign.v4.address,
            assign.v6.map(|a| a.address),
            rx,
        ));
        *slot = Some(Tunnel {
            tun,
            assign,
            mtu,
            reader,
            current,
        });
        Ok(())
    }
}
