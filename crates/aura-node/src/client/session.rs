//! One connected session of the client: wait for the address, bring the tunnel to it,
//! then move the server's packets to the device and handle its control messages (address
//! changes, CRL pushes) until the session ends.

use std::net::SocketAddr;
use std::time::Duration;

use aura_pki::Verifier;
use aura_proto::control::{
    self, AddressAssign, AddressAssign6, AddressRequest, ControlMessage, CrlAck, DnsAssign,
};
use aura_transport::dial::Dialed;
use aura_transport::{DriverHandle, PacketConn};

use super::state::{Client, ClientState, lock};
use super::tunnel::{Assignment, Tunnel};
use crate::device::{DeviceWriter, TunFactory};
use crate::{DaemonError, creds};

/// Time the server has to assign an address after the handshake.
const ASSIGN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the address is asked for until it arrives.
const ASSIGN_ASK: Duration = Duration::from_secs(1);
/// How long the address waits for the resolvers sent with it (lost or reordered).
const DNS_GRACE: Duration = Duration::from_millis(2500);

/// What a control message assigned.
enum Assigned {
    Address(AddressAssign),
    Address6(AddressAssign6),
    Dns(DnsAssign),
}
/// Largest batch moved at once.
const BATCH: usize = 128;

impl<T: TunFactory> Client<T> {
    /// Brings the tunnel to `assign`, keeping the server's and bridges' addresses (and
    /// `server`, the one this session reached) out of it.
    async fn ensure_tunnel(
        &mut self,
        assign: Assignment,
        server: SocketAddr,
    ) -> Result<(), DaemonError> {
        let mut exclude = vec![self.dial.server, server.ip()];
        exclude.extend(self.dial.bridges.iter().copied());
        Tunnel::ensure(
            &mut self.tunnel,
            &mut self.host,
            &self.opts,
            &self.routes,
            exclude,
            assign,
        )
        .await?;
        self.ensure_dns().await
    }

    /// The resolvers for the current tunnel, if any.
    async fn ensure_dns(&mut self) -> Result<(), DaemonError> {
        let Some(t) = &self.tunnel else {
            return Ok(());
        };
        let name = aura_tun::PacketDevice::name(&*t.tun).to_owned();
        let assign = t.assign.v4;
        self.dns
            .ensure(&name, assign, self.opts.routing.enabled)
            .await
    }

    /// One session: wait for the address, set the tunnel up, move packets until the
    /// session ends.
    pub(super) async fn session(&mut self, d: Dialed) -> Result<(), DaemonError> {
        let Dialed {
            mut conn,
            carrier,
            addr,
            failures,
            driver,
        } = d;
        for f in &failures {
            tracing::debug!(attempt = %f, "failed attempt before connecting");
        }
        let redact = self.opts.redact;
        tracing::info!(carrier = carrier.name(), server = %redact.addr(&addr), "connected");
        let mut batch = Vec::with_capacity(BATCH);
        // This server's IPv6 assignment, if it has one, comes before the address.
        let mut v6: Option<AddressAssign6> = None;
        let assign = match tokio::time::timeout(
            ASSIGN_TIMEOUT,
            self.await_assign(&mut conn, &driver, &mut batch, &mut v6),
        )
        .await
        {
            Ok(Some(a)) => a,
            Ok(None) => return Ok(()),
            Err(_) => return Err(DaemonError::NoAddress(ASSIGN_TIMEOUT)),
        };
        let assign = Assignment { v4: assign, v6 };
        // The address the carriers reach (the entry's, through a circuit) stays outside.
        let reached = self.circuit_entry.unwrap_or(addr);
        self.ensure_tunnel(assign, reached).await?;
        {
            let mut s = lock(&self.status);
            s.state = ClientState::Connected;
            s.server = addr.to_string();
            s.carrier = carrier.name().into();
            s.address = assign.v4.address.to_string();
            s.address6 = assign.v6.map(|a| a.address.to_string()).unwrap_or_default();
            s.last_handshake = (self.host.wall_clock)().as_secs();
            s.current = Some(conn.sender());
        }
        let Some(tunnel) = &self.tunnel else {
            return Ok(());
        };
        tunnel.current.send_replace(Some(conn.sender()));
        let mut writer = DeviceWriter::new(tunnel.tun.clone());
        let mut controls: Vec<Vec<u8>> = Vec::new();
        loop {
            let Some(packets) = conn.recv_packets().await else {
                return Ok(());
            };
            let mut reassigned = None;
            let mut renamed = false;
            for p in packets.iter() {
                if control::is_control(p) {
                    controls.push(p.to_vec());
                } else {
                    writer.push(p).await;
                }
            }
            packets.recycle();
            writer.flush().await;
            for p in std::mem::take(&mut controls) {
                let current = self.tunnel.as_ref().map(|t| t.assign);
                match self.on_control(&p, &conn, &driver).await {
                    Some(Assigned::Address6(a6)) => v6 = Some(a6),
                    Some(Assigned::Address(a)) => {
                        let next = Assignment { v4: a, v6 };
                        if current.is_some_and(|c| c != next) {
                            reassigned = Some(next);
                        }
                    }
                    Some(Assigned::Dns(d)) => {
                        self.dns.named(d.servers);
                        renamed = true;
                    }
                    _ => {}
                }
            }
            if renamed && reassigned.is_none() {
                self.ensure_dns().await?;
            }
            if let Some(a) = reassigned {
                tracing::info!(address = %redact.addr(&a.v4.address), "the server assigned a new address");
                self.ensure_tunnel(a, reached).await?;
                if let Some(t) = &self.tunnel {
                    t.current.send_replace(Some(conn.sender()));
                    writer = DeviceWriter::new(t.tun.clone());
                }
                let mut st = lock(&self.status);
                st.address = a.v4.address.to_string();
                st.address6 = a.v6.map(|x| x.address.to_string()).unwrap_or_default();
            }
        }
    }

    /// Asks for the address every [`ASSIGN_ASK`] and reads until an [`AddressAssign`]
    /// arrives, and the [`DnsAssign`] the server sends with it (or [`DNS_GRACE`] passed
    /// without one), handling CRL pushes meanwhile; data packets before the address are
    /// dropped. `None` when the session closed first.
    async fn await_assign(
        &mut self,
        conn: &mut PacketConn,
        driver: &DriverHandle,
        batch: &mut Vec<Vec<u8>>,
        v6: &mut Option<AddressAssign6>,
    ) -> Option<AddressAssign> {
        let request = ControlMessage::from(AddressRequest).encode().ok()?;
        let mut ask = tokio::time::interval(ASSIGN_ASK);
        let mut address = None;
        let mut named = false;
        let grace = tokio::time::sleep(Duration::MAX);
        tokio::pin!(grace);
        loop {
            batch.clear();
            let n = tokio::select! {
                n = conn.recv_batch(batch, BATCH) => n,
                _ = ask.tick() => {
                    let _ = conn.send(request.clone()).await;
                    continue;
                }
                () = &mut grace, if address.is_some() => {
                    tracing::warn!("the server named no resolvers with the address");
                    return address;
                }
            };
            if n == 0 {
                return None;
            }
            let packets = std::mem::take(batch);
            for p in &packets {
                if !control::is_control(p) {
                    continue;
                }
                match self.on_control(p, conn, driver).await {
                    Some(Assigned::Address(a)) => {
                        if address.is_none() {
                            grace
                                .as_mut()
                                .reset(tokio::time::Instant::now() + DNS_GRACE);
                        }
                        address = Some(a);
                    }
                    Some(Assigned::Dns(d)) => {
                        self.dns.named(d.servers);
                        named = true;
                    }
                    Some(Assigned::Address6(a6)) => *v6 = Some(a6),
                    None => {}
                }
            }
            *batch = packets;
            if named && address.is_some() {
                return address;
            }
        }
    }

    /// Handles one control envelope; returns an address or resolver assignment.
    async fn on_control(
        &mut self,
        packet: &[u8],
        conn: &PacketConn,
        driver: &DriverHandle,
    ) -> Option<Assigned> {
        let message = match ControlMessage::decode(packet) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "malformed control message from the server");
                return None;
            }
        };
        match message {
            ControlMessage::AddressAssign(a) => return Some(Assigned::Address(a)),
            ControlMessage::DnsAssign(d) => return Some(Assigned::Dns(d)),
            ControlMessage::AddressAssign6(a) => return Some(Assigned::Address6(a)),
            ControlMessage::CrlPush(chunk) if self.opts.accept_pushed_crl => {
                match self.crl.push(&chunk) {
                    Ok(Some(der)) => self.on_pushed_crl(der, conn, driver).await,
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "bad CRL chunk from the server"),
                }
            }
            // Only a relay answers an extension, and only while a circuit is built
            // (aura_transport::circuit::extend): here, nobody asked.
            ControlMessage::CircuitReady(_) | ControlMessage::CircuitFailed(_) => {
                tracing::warn!(
                    kind = ?message.kind(),
                    "the server answered a circuit extension nobody asked for: ignored"
                );
            }
            other => tracing::debug!(kind = ?other.kind(), "control message ignored"),
        }
        None
    }

    /// A complete pushed CRL: used when it verifies with the CA and is newer than ours,
    /// then saved over the configured CRL file and acknowledged.
    async fn on_pushed_crl(&mut self, der: Vec<u8>, conn: &PacketConn, driver: &DriverHandle) {
        let v = match Verifier::new(&self.dial.credentials.ca_der, [&der]) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "the server pushed a CRL that does not verify: ignored");
                return;
            }
        };
        let number = creds::crl_number(&v);
        if number > self.crl_number {
            tracing::info!(crl_number = number, "newer CRL from the server");
            // Every hop of a circuit checks its peer with it; the session's own driver
            // (the exit's, the last hop's) takes `v` below.
            let others = self
                .hop_drivers
                .split_last()
                .map_or(&[][..], |(_, rest)| rest);
            for d in others {
                if let Ok(each) = Verifier::new(&self.dial.credentials.ca_der, [&der]) {
                    let _ = d.set_verifier(each).await;
                }
            }
            if driver.set_verifier(v).await.is_err() {
                return;
            }
            if let Err(e) = creds::save_crl(&self.opts.files.crl, &der) {
                tracing::warn!(error = %e, "the pushed CRL is in use but could not be saved");
            }
            self.crl_number = number;
            self.dial.credentials.crl_ders = vec![der];
        }
        if let Ok(ack) = ControlMessage::from(CrlAck {
            crl_number: self.crl_number,
        })
        .encode()
        {
            let _ = conn.send(ack).await;
        }
    }
}
