//! `aura client`: dial, bring the TUN up with the address the server assigns, route all
//! traffic into it (the server's own addresses stay on their current path), and keep it
//! that way: when the session dies (no packet for [`crate::daemon_timers`]'s dead-peer
//! time, a closed carrier), dial again with exponential backoff and jitter. Routes stay in
//! place while reconnecting, so nothing leaks around the tunnel meanwhile.
//!
//! A refusal (revoked or expired certificate, wrong CA, wrong server name) ends the client
//! with an error: retrying cannot fix it.
//!
//! On `shutdown` the routes are removed and the TUN deleted: the routing table is as it
//! was before.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aura_config::{Carrier as ConfCarrier, ClientConfig};
use aura_netcfg::{HostConfig, RoutePlan};
use aura_pki::Verifier;
use aura_proto::HandshakeError;
use aura_proto::control::{
    self, AddressAssign, AddressRequest, ControlMessage, CrlAck, CrlAssembler,
};
use aura_transport::dial::{ClientCredentials, DialConfig, Dialed, dial};
use aura_transport::{BatchPool, Carrier, DriverHandle, PacketConn, PacketSender, TransportError};
use aura_tun::{PacketDevice, Tun, TunBuffers, TunConfig};
use rand_core::{OsRng, RngCore};
use rustls_pki_types::UnixTime;
use tokio::sync::watch;

use crate::admin::{self, Response};
use crate::{DaemonError, Redact, creds, daemon_timers, not_built, unix_now};

/// Time allowed for one dial attempt (carrier plus Aura handshake).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time the server has to assign an address after the handshake.
const ASSIGN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the address is asked for until it arrives.
const ASSIGN_ASK: Duration = Duration::from_secs(1);
/// First wait after a failed dial; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest wait between dials.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A session that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);
/// Largest batch moved at once.
const BATCH: usize = 128;

/// What `aura status` shows.
#[derive(Debug, Default)]
struct Shown {
    state: &'static str,
    server: String,
    carrier: String,
    address: String,
    last_handshake: u64,
    /// Bytes of sessions that ended.
    bytes_in: u64,
    bytes_out: u64,
    current: Option<PacketSender>,
}

type Status = Arc<Mutex<Shown>>;

fn refuse_unbuilt(cfg: &ClientConfig) -> Result<(), DaemonError> {
    if cfg.client.run_as.is_some() {
        return Err(not_built(
            "client.run_as",
            "dropping privileges",
            "remove the key (the client then keeps the user that started it)",
        ));
    }
    if cfg.client.circuit.enabled {
        return Err(not_built(
            "client.circuit.enabled",
            "two-hop circuits",
            "set it to false",
        ));
    }
    Ok(())
}

async fn resolve(what: &str, host: &str) -> Result<IpAddr, DaemonError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let mut addrs = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| DaemonError::Setup(format!("{what} {host:?} does not resolve: {e}")))?;
    addrs
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| DaemonError::Setup(format!("{what} {host:?} has no address")))
}

fn carrier(c: ConfCarrier) -> Carrier {
    match c {
        ConfCarrier::Udp => Carrier::Udp,
        ConfCarrier::Quic => Carrier::Quic,
        ConfCarrier::Tls => Carrier::Tls,
    }
}

/// Exponential backoff with ±20 % jitter.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self { next: BACKOFF_MIN }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    fn wait(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        // 0.8 .. 1.2 times the base.
        let permille = 800 + OsRng.next_u32() % 401;
        base * permille / 1000
    }
}

/// The TUN device as the current assignment configured it.
struct Tunnel {
    tun: Arc<Tun>,
    assign: AddressAssign,
    mtu: u16,
    reader: tokio::task::JoinHandle<()>,
    current: watch::Sender<Option<PacketSender>>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Reads the TUN and sends every packet through the current session, if any.
/// Only IPv4 packets from the assigned address are sent: the server would drop anything
/// else (IPv6 is routed into the TUN only so that it cannot leak around the tunnel).
async fn tun_reader(
    tun: Arc<Tun>,
    address: std::net::Ipv4Addr,
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

/// Everything one run of the client keeps across sessions.
struct Client {
    cfg: ClientConfig,
    dial: DialConfig,
    host: HostConfig,
    tunnel: Option<Tunnel>,
    status: Status,
    redact: Redact,
    crl: CrlAssembler,
    crl_number: u64,
}

/// Runs the client until `shutdown` resolves.
///
/// # Errors
/// Start-up failures and refusals (each names its cause); routes are restored first.
pub async fn run(
    cfg: ClientConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    refuse_unbuilt(&cfg)?;
    let pki = &cfg.pki;
    let creds = creds::load(&pki.ca_cert, &pki.crl, &pki.cert, &pki.key)?;
    let verifier = Verifier::new(&creds.ca_der, [&creds.crl_der])
        .map_err(|e| DaemonError::Setup(format!("the CRL {}: {e}", pki.crl.display())))?;
    let server = resolve("client.server", &cfg.client.server).await?;
    let mut bridges = Vec::new();
    for b in &cfg.client.bridges {
        bridges.push(resolve("client.bridges", b).await?);
    }
    let server_name = cfg.client.server_name().to_owned();
    let dial_cfg = DialConfig {
        credentials: ClientCredentials {
            ca_der: creds.ca_der.clone(),
            crl_ders: vec![creds.crl_der.clone()],
            identity: creds.identity.clone(),
        },
        sni: cfg.sni().unwrap_or(&server_name).to_owned(),
        server_name,
        server,
        bridges,
        carriers: cfg
            .transport
            .carriers
            .iter()
            .copied()
            .map(carrier)
            .collect(),
        udp_port: cfg.transport.udp_port,
        quic_port: cfg.transport.quic_port,
        tls_port: cfg.transport.tls_port,
        attempt_timeout: ATTEMPT_TIMEOUT,
        timers: daemon_timers(),
        tls_options: aura_transport::tls::TlsOptions::default(),
        quic_options: aura_transport::quic::QuicOptions::default(),
        wall_clock: UnixTime::now,
    };
    let status: Status = Arc::new(Mutex::new(Shown {
        state: "connecting",
        ..Shown::default()
    }));
    let shown = status.clone();
    let admin_task = admin::serve(
        &cfg.client.admin_socket,
        Arc::new(move |_req| {
            let s = shown.lock().unwrap_or_else(PoisonError::into_inner);
            let live = s
                .current
                .as_ref()
                .map(PacketSender::stats)
                .unwrap_or_default();
            Response::Client {
                state: s.state.into(),
                server: s.server.clone(),
                carrier: s.carrier.clone(),
                address: s.address.clone(),
                bytes_in: s.bytes_in + live.bytes_in,
                bytes_out: s.bytes_out + live.bytes_out,
                last_handshake: s.last_handshake.max(live.last_handshake),
            }
        }),
    )
    .await?;
    let socket_path = cfg.client.admin_socket.clone();
    // After the admin socket: a second instance stops there, before it could remove the
    // first one's routes as "leftovers".
    let mut host = HostConfig::system();
    if let Err(e) = host.cleanup_leftovers().await {
        admin_task.abort();
        let _ = std::fs::remove_file(&socket_path);
        return Err(e.into());
    }
    let mut client = Client {
        redact: Redact(cfg.client.no_logs),
        crl_number: creds::crl_number(&verifier),
        cfg,
        dial: dial_cfg,
        host,
        tunnel: None,
        status,
        crl: CrlAssembler::new(),
    };
    let result = tokio::select! {
        r = client.keep_connected() => r,
        () = shutdown => {
            tracing::info!("stopping");
            Ok(())
        }
    };
    admin_task.abort();
    let _ = std::fs::remove_file(&socket_path);
    if let Some(t) = client.tunnel.as_ref()
        && let Some(s) = t.current.borrow().clone()
    {
        s.close().await;
    }
    let undo = client.host.undo().await;
    client.tunnel = None;
    if let Err(e) = undo {
        tracing::error!(error = %e, "could not restore every route");
        if result.is_ok() {
            return Err(e.into());
        }
    }
    result
}

impl Client {
    async fn keep_connected(&mut self) -> Result<(), DaemonError> {
        let mut backoff = Backoff::new();
        loop {
            match dial(&self.dial, &mut OsRng).await {
                Ok(d) => {
                    let started = Instant::now();
                    let outcome = self.session(d).await;
                    if let Some(t) = &self.tunnel {
                        t.current.send_replace(None);
                    }
                    {
                        let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
                        if let Some(c) = s.current.take() {
                            let st = c.stats();
                            s.bytes_in += st.bytes_in;
                            s.bytes_out += st.bytes_out;
                        }
                        s.state = "reconnecting";
                    }
                    match outcome {
                        Ok(()) => tracing::warn!("session ended: dialling again"),
                        Err(e @ DaemonError::Setup(_)) => {
                            tracing::warn!(error = %e, "session ended: dialling again");
                        }
                        Err(e) => return Err(e),
                    }
                    if started.elapsed() >= STABLE {
                        backoff.reset();
                    }
                    tokio::time::sleep(backoff.wait() / 4).await;
                }
                Err(TransportError::Handshake {
                    carrier,
                    addr,
                    error,
                }) if !matches!(error, HandshakeError::Timeout) => {
                    return Err(DaemonError::Refused(format!(
                        "handshake with {} over {carrier} refused: {error}",
                        self.redact.addr(&addr)
                    )));
                }
                Err(e) => {
                    let wait = backoff.wait();
                    tracing::warn!(error = %e, retry_in = ?wait, "cannot reach the server");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One session: wait for the address, set the tunnel up, move packets until the
    /// session ends.
    async fn session(&mut self, d: Dialed) -> Result<(), DaemonError> {
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
        tracing::info!(carrier = carrier.name(), server = %self.redact.addr(&addr), "connected");
        let mut batch = Vec::with_capacity(BATCH);
        let assign = match tokio::time::timeout(
            ASSIGN_TIMEOUT,
            self.await_assign(&mut conn, &driver, &mut batch),
        )
        .await
        {
            Ok(Some(a)) => a,
            Ok(None) => return Ok(()),
            Err(_) => {
                return Err(DaemonError::Setup(format!(
                    "the server assigned no address within {ASSIGN_TIMEOUT:?}"
                )));
            }
        };
        self.ensure_tunnel(assign, addr).await?;
        {
            let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            s.state = "connected";
            s.server = addr.to_string();
            s.carrier = carrier.name().into();
            s.address = assign.address.to_string();
            s.last_handshake = unix_now();
            s.current = Some(conn.sender());
        }
        let Some(tunnel) = &self.tunnel else {
            return Ok(());
        };
        tunnel.current.send_replace(Some(conn.sender()));
        let mut tun = tunnel.tun.clone();
        let mut tx = TunBuffers::for_device(&*tun, aura_tun::MIN_HEADROOM, 0);
        let mut controls: Vec<Vec<u8>> = Vec::new();
        loop {
            let Some(packets) = conn.recv_packets().await else {
                return Ok(());
            };
            let mut n = 0;
            let mut reassigned = None;
            for p in packets.iter() {
                if control::is_control(p) {
                    controls.push(p.to_vec());
                    continue;
                }
                if n == tx.len() {
                    let _ = tun
                        .send_batch(&mut tx.bufs, &tx.lens[..n], tx.headroom)
                        .await;
                    n = 0;
                }
                if tx.set_packet(n, p).is_ok() {
                    n += 1;
                }
            }
            packets.recycle();
            if n > 0
                && let Err(e) = tun
                    .send_batch(&mut tx.bufs, &tx.lens[..n], tx.headroom)
                    .await
            {
                tracing::debug!(error = %e, "writing to the TUN device");
            }
            for p in std::mem::take(&mut controls) {
                if let Some(a) = self.on_control(&p, &conn, &driver).await
                    && a != self.tunnel.as_ref().map_or(a, |t| t.assign)
                {
                    reassigned = Some(a);
                }
            }
            if let Some(a) = reassigned {
                tracing::info!(address = %self.redact.addr(&a.address), "the server assigned a new address");
                self.ensure_tunnel(a, addr).await?;
                if let Some(t) = &self.tunnel {
                    t.current.send_replace(Some(conn.sender()));
                    tun = t.tun.clone();
                    tx = TunBuffers::for_device(&*tun, aura_tun::MIN_HEADROOM, 0);
                }
                self.status
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .address = a.address.to_string();
            }
        }
    }

    /// Asks for the address every [`ASSIGN_ASK`] and reads until an [`AddressAssign`]
    /// arrives (handling CRL pushes meanwhile; data packets before the address are
    /// dropped). `None` when the session closed first.
    async fn await_assign(
        &mut self,
        conn: &mut PacketConn,
        driver: &DriverHandle,
        batch: &mut Vec<Vec<u8>>,
    ) -> Option<AddressAssign> {
        let request = ControlMessage::from(AddressRequest).encode().ok()?;
        let mut ask = tokio::time::interval(ASSIGN_ASK);
        loop {
            batch.clear();
            let n = tokio::select! {
                n = conn.recv_batch(batch, BATCH) => n,
                _ = ask.tick() => {
                    let _ = conn.send(request.clone()).await;
                    continue;
                }
            };
            if n == 0 {
                return None;
            }
            let packets = std::mem::take(batch);
            let mut found = None;
            for p in &packets {
                if control::is_control(p)
                    && let Some(a) = self.on_control(p, conn, driver).await
                {
                    found = Some(a);
                }
            }
            *batch = packets;
            if found.is_some() {
                return found;
            }
        }
    }

    /// Handles one control envelope; returns an address assignment.
    async fn on_control(
        &mut self,
        packet: &[u8],
        conn: &PacketConn,
        driver: &DriverHandle,
    ) -> Option<AddressAssign> {
        let message = match ControlMessage::decode(packet) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "malformed control message from the server");
                return None;
            }
        };
        match message {
            ControlMessage::AddressAssign(a) => return Some(a),
            ControlMessage::CrlPush(chunk) if self.cfg.pki.accept_pushed_crl => {
                match self.crl.push(&chunk) {
                    Ok(Some(der)) => self.on_pushed_crl(der, conn, driver).await,
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "bad CRL chunk from the server"),
                }
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
            if driver.set_verifier(v).await.is_err() {
                return;
            }
            if let Err(e) = creds::save_crl(&self.cfg.pki.crl, &der) {
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

    /// Makes the TUN match `assign`: nothing to do when it already does; otherwise the
    /// routes and the old device go, and a new device with routes comes up.
    async fn ensure_tunnel(
        &mut self,
        assign: AddressAssign,
        server: SocketAddr,
    ) -> Result<(), DaemonError> {
        let mtu = self.cfg.tunnel.mtu.min(assign.mtu);
        if self
            .tunnel
            .as_ref()
            .is_some_and(|t| t.assign == assign && t.mtu == mtu)
        {
            return Ok(());
        }
        if self.tunnel.take().is_some() {
            self.host.undo().await?;
        }
        let tun = Arc::new(
            Tun::create(&TunConfig {
                address: Some((assign.address, assign.prefix_len)),
                mtu,
                ..TunConfig::new(self.cfg.tunnel.name.clone())
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
        if let Err(e) = self.host.apply_routes(&plan).await {
            tracing::warn!(error = %e, "cannot route IPv6 into the tunnel: routing IPv4 only");
            plan.ipv6 = false;
            self.host.apply_routes(&plan).await?;
        }
        tracing::info!(
            tun = tun.name(),
            address = %self.redact.addr(&assign.address),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn features_not_built_are_refused_by_name() {
        let config = |extra: &str| -> ClientConfig {
            toml::from_str(&format!(
                "[client]\nserver = \"192.0.2.1\"\n{extra}\n[pki]\nca_cert = \"a\"\ncert = \"b\"\nkey = \"c\"\ncrl = \"d\"\n"
            ))
            .unwrap()
        };
        assert!(refuse_unbuilt(&config("")).is_ok());
        let e = refuse_unbuilt(&config("run_as = \"aura\"")).unwrap_err();
        assert!(e.to_string().starts_with("client.run_as: "), "{e}");
        let e = refuse_unbuilt(&config("[client.circuit]\nenabled = true")).unwrap_err();
        assert!(e.to_string().starts_with("client.circuit.enabled: "), "{e}");
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let mut b = Backoff::new();
        let mut base = BACKOFF_MIN;
        for _ in 0..12 {
            let w = b.wait();
            assert!(
                w >= base * 8 / 10 && w <= base * 12 / 10,
                "{w:?} vs {base:?}"
            );
            base = (base * 2).min(BACKOFF_MAX);
        }
        assert!(b.wait() <= BACKOFF_MAX * 12 / 10);
        b.reset();
        assert!(b.wait() <= BACKOFF_MIN * 12 / 10);
    }
}
