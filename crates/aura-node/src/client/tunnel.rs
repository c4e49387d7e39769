//! The client's TUN device and routes for the current address assignment, and the task
//! that reads the device into the current session.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use aura_netcfg::RoutePlan;
use aura_proto::control::AddressAssign;
use aura_transport::{BatchPool, PacketSender};
use aura_tun::{PacketDevice, TunBuffers, TunConfig};
use tokio::sync::watch;

use super::Client;
use crate::DaemonError;
use crate::device::TunFactory;

/// The TUN device as the current assignment configured it.
pub(super) struct Tunnel<D> {
    pub(super) tun: Arc<D>,
    pub(super) assign: AddressAssign,
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
/// Only IPv4 packets from the assigned address are sent: the server would drop anything
/// else (IPv6 is routed into the TUN only so that it cannot leak around the tunnel).
async fn tun_reader<D: PacketDevice>(
    tun: Arc<D>,
    address: Ipv4Addr,
    current: watch::Receiver<Option<PacketSender>>,
) {
    let mut rx = TunBuffers::for_device(&*tun, aura_tun::MIN_HEADROOM, 0);
    let pool = BatchPool::new();
    loop {
        let n = match tun
            .recv_batch(&mut rx.bufs, &mut rx.lens, rx.headroom)
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "reading the TUN device failed");
                return;
            }
        };
        let sender = current.borrow().clone();
        if let Some(s) = sender {
            let mut batch = pool.take();
            for i in 0..n {
                if let Some(p) = rx.packet(i)
                    && crate::packet::ipv4_addrs(p).is_some_and(|(src, _)| src == address)
                {
                    batch.push(p);
                }
            }
            if batch.is_empty() {
                batch.recycle();
            } else {
                let _ = s.send_packets(batch).await;
            }
        }
    }
}

impl<T: TunFactory> Client<T> {
    /// Makes the TUN match `assign`: nothing to do when it already does; otherwise the
    /// routes and the old device go, and a new device with routes comes up.
    pub(super) async fn ensure_tunnel(
        &mut self,
        assign: AddressAssign,
        server: SocketAddr,
    ) -> Result<(), DaemonError> {
        let mtu = self.opts.mtu.min(assign.mtu);
        if self
            .tunnel
            .as_ref()
            .is_some_and(|t| t.assign == assign && t.mtu == mtu)
        {
            return Ok(());
        }
        if self.tunnel.take().is_some() {
            self.host.netcfg.undo().await?;
        }
        let tun = Arc::new(
            self.host
                .tuns
                .create(&TunConfig {
                    address: Some((assign.address, assign.prefix_len)),
                    mtu,
                    ..TunConfig::new(self.opts.tun_name.clone())
                })
                .await?,
        );
        let mut exclude = vec![self.dial.server, server.ip()];
        exclude.extend(self.dial.bridges.iter().copied());
        let mut plan = RoutePlan {
            tun: tun.name().to_owned(),
            exclude,
            ipv6: true,
        };
        if let Err(e) = self.host.netcfg.apply_routes(&plan).await {
            tracing::warn!(error = %e, "cannot route IPv6 into the tunnel: routing IPv4 only");
            plan.ipv6 = false;
            self.host.netcfg.apply_routes(&plan).await?;
        }
        tracing::info!(
            tun = tun.name(),
            address = %self.opts.redact.addr(&assign.address),
            prefix_len = assign.prefix_len,
            mtu,
            "tunnel up, all traffic routed through it"
        );
        let (current, rx) = watch::channel(None);
        let reader = tokio::spawn(tun_reader(tun.clone(), assign.address, rx));
        self.tunnel = Some(Tunnel {
            tun,
            assign,
            mtu,
            reader,
            current,
        });
        Ok(())
    }
}
