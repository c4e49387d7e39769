//! One connected session of the client: wait for the address, bring the tunnel to it,
//! then move the server's packets to the device and handle its control messages (address
//! changes, CRL pushes) until the session ends.

use std::net::SocketAddr;
use std::time::Duration;

use aura_pki::Verifier;
use aura_proto::control::{
    self, AddressAssign, AddressAssign6, AddressRequest, ControlMessage, CoverGrant, CoverRequest,
    CrlAck, DnsAssign,
};
use aura_transport::CoverGuard;
use aura_transport::camo::cover::Cover;
use aura_transport::dial::Dialed;
use aura_transport::{DriverHandle, PacketConn, PacketSender};

use super::state::{Client, ClientState, lock};
use super::tunnel::{Assignment, Tunnel};
use crate::device::TunFactory;
use crate::{DaemonError, creds};

/// Time the server has to assign an address after the handshake.
const ASSIGN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the address is asked for until it arrives.
const ASSIGN_ASK: Duration = Duration::from_secs(1);
/// How long the address waits for the resolvers sent with it (lost or reordered).
const DNS_GRACE: Duration = Duration::from_millis(2500);

/// How often cover traffic is asked for until the server answers, and how many times.
const COVER_ASK: Duration = Duration::from_secs(1);
const COVER_ASKS: u8 = 5;

/// What a control message assigned (or granted).
enum Assigned {
    Address(AddressAssign),
    Address6(AddressAssign6),
    Dns(DnsAssign),
    Cover(CoverGrant),
}
/// Largest batch moved at once.
const BATCH: usize = 128;

impl<T: TunFactory> Client<T> {
    /// Brings the tunnel to `assign`, keeping the server's and bridges' addresses (and
    /// `server`, the one this session reached) out of it; a device made now reads into
    /// `session` from its first packet.
    async fn ensure_tunnel(
        &mut self,
        assign: Assignment,
        server: SocketAddr,
        session: PacketSender,
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
            session,
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
        self.ensure_tunnel(assign, reached, conn.sender()).await?;
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
        let mut device = tunnel.tun.clone();
        let mut controls: Vec<Vec<u8>> = Vec::new();
        // Cover traffic: asked for now, and again each second until answered.
        let mut cover: Option<CoverGuard> = None;
        let mut cover_asks = 0u8;
        let ask_cover = self.opts.cover.and_then(|(profile, budget)| {
            lock(&self.status).cover = Some(crate::admin::CoverStatus {
                state: "asked".into(),
                profile: profile.name().into(),
                budget_permille: budget,
                padding_out: 0,
                padding_in: 0,
                delayed: 0,
            });
            ControlMessage::from(CoverRequest { profile, budget })
                .encode()
                .ok()
        });
        loop {
            let waiting = ask_cover
                .as_ref()
                .filter(|_| cover.is_none() && cover_asks < COVER_ASKS && self.cover_unanswered());
            let packets = match waiting {
                Some(ask) => {
                    if cover_asks == 0 {
                        let _ = conn.send(ask.clone()).await;
                        cover_asks = 1;
                    }
                    tokio::select! {
                        p = conn.recv_packets() => p,
                        () = tokio::time::sleep(COVER_ASK) => {
                            cover_asks += 1;
                            if cover_asks < COVER_ASKS {
                                let _ = conn.send(ask.clone()).await;
                            } else {
                                tracing::warn!("the server did not answer the request for cover traffic");
                            }
                            continue;
                        }
                    }
                }
                None => conn.recv_packets().await,
            };
            let Some(packets) = packets else {
                return Ok(());
            };
            let mut reassigned = None;
            let mut renamed = false;
            let mut packets = packets;
            packets.retain(|p| {
                let data = !control::is_control(p);
                if !data {
                    controls.push(p.to_vec());
                }
                data
            });
            if !packets.is_empty() {
                crate::device::write_batch(&*device, &mut packets).await;
            }
            packets.recycle();
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
                    // A new start replaces the old one (an answer to a repeated ask).
                    Some(Assigned::Cover(g)) => cover = self.on_cover_grant(g, &conn),
                    None => {}
                }
            }
            if renamed && reassigned.is_none() {
                self.ensure_dns().await?;
            }
            if let Some(a) = reassigned {
                tracing::info!(address = %redact.addr(&a.v4.address), "the server assigned a new address");
                self.ensure_tunnel(a, reached, conn.sender()).await?;
                if let Some(t) = &self.tunnel {
                    t.current.send_replace(Some(conn.sender()));
                    device = t.tun.clone();
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
                    // Cover traffic is asked for once the tunnel is up: nobody asked yet.
                    Some(Assigned::Cover(_)) | None => {}
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
            ControlMessage::CoverGrant(g) => return Some(Assigned::Cover(g)),
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

    /// Whether this session's request for cover traffic is still unanswered.
    fn cover_unanswered(&self) -> bool {
        lock(&self.status)
            .cover
            .as_ref()
            .is_some_and(|c| c.state == "asked")
    }

    /// The server's answer to the request for cover traffic: what it granted starts
    /// (with the budget it granted, never more than asked), a refusal is logged.
    fn on_cover_grant(&mut self, grant: CoverGrant, conn: &PacketConn) -> Option<CoverGuard> {
        let Some((asked_profile, asked_budget)) = self.opts.cover else {
            tracing::warn!("the server granted cover traffic nobody asked for: ignored");
            return None;
        };
        let mtu = self.tunnel.as_ref().map_or(0, |t| usize::from(t.mtu));
        let mut status = lock(&self.status);
        let shown = status.cover.as_mut()?;
        let Some((profile, budget)) = grant.granted else {
            tracing::info!(
                profile = asked_profile.name(),
                "the server refused cover traffic ([server.cover] is not enabled there)"
            );
            shown.state = "refused".into();
            return None;
        };
        if profile != asked_profile {
            tracing::warn!(
                asked = asked_profile.name(),
                granted = profile.name(),
                "the server granted another cover profile than asked: none used"
            );
            shown.state = "refused".into();
            return None;
        }
        let budget = budget.min(asked_budget);
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        match Cover::new(profile, budget, mtu, seed, std::time::Instant::now()) {
            Ok(engine) => {
                tracing::info!(
                    profile = profile.name(),
                    budget_permille = budget,
                    "cover traffic on"
                );
                shown.state = "granted".into();
                shown.budget_permille = budget;
                Some(conn.sender().start_cover(engine, None))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start cover traffic");
                shown.state = "refused".into();
                None
            }
        }
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
