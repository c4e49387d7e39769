//! `aura server`: the multi-client concentrator.
//!
//! Start-up is all or nothing, in this order: credentials, leftovers of a crashed run
//! removed, the admin socket, the TUN device (with the server's tunnel address), the
//! carriers, then forwarding and NAT. Any failure undoes what was done and names the
//! cause. Then it serves until `shutdown` resolves (SIGINT or SIGTERM in `aura`), and
//! undoes every host change on the way out.
//!
//! Every 5 s it re-reads the CRL file: a newer CRL closes the sessions it revokes and is
//! pushed to every connected client.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aura_config::{Carrier, ServerConfig};
use aura_netcfg::{HostConfig, NatPlan};
use aura_pki::Verifier;
use aura_proto::EndpointConfig;
use aura_proto::control::{self, CRL_PUSH_OVERHEAD};
use aura_transport::server::{Server, ServerConfig as CarrierConfig};
use aura_tun::{Tun, TunConfig};
use rand_core::{OsRng, RngCore};
use rustls_pki_types::UnixTime;

use crate::admin::{self, PeerStatus, Response};
use crate::pool::IpPool;
use crate::router::{DEVICE_QUEUE, Router, Welcome};
use crate::{DaemonError, Redact, creds, daemon_timers, not_built, unix_now};

/// How often the CRL file is checked for a newer CRL.
const CRL_RELOAD: Duration = Duration::from_secs(5);

/// Data bytes per pushed CRL chunk: the envelope stays under 1232 bytes, so it crosses
/// any carrier as one datagram.
const CRL_CHUNK: usize = 1232 - CRL_PUSH_OVERHEAD - 64;

/// Features in the configuration schema that this build does not have: refused at start
/// rather than silently ignored.
fn refuse_unbuilt(cfg: &ServerConfig) -> Result<(), DaemonError> {
    if cfg.server.run_as.is_some() {
        return Err(not_built(
            "server.run_as",
            "dropping privileges",
            "remove the key (the server then keeps the user that started it)",
        ));
    }
    if cfg.server.relay.enabled {
        return Err(not_built(
            "server.relay.enabled",
            "relaying two-hop circuits",
            "set it to false",
        ));
    }
    Ok(())
}

/// The CRL push for `crl_der`, as whole envelopes.
fn crl_push(number: u64, crl_der: &[u8]) -> Vec<Vec<u8>> {
    match control::chunk_crl(number, crl_der, CRL_CHUNK) {
        Ok(chunks) => chunks.collect(),
        Err(e) => {
            tracing::warn!(error = %e, "the CRL cannot be pushed");
            Vec::new()
        }
    }
}

/// Runs the server until `shutdown` resolves.
///
/// # Errors
/// Start-up failures (each names its cause); host changes are undone first.
pub async fn run(
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    refuse_unbuilt(&cfg)?;
    let redact = Redact(cfg.server.no_logs);
    let pki = &cfg.pki;
    let creds = creds::load(&pki.ca_cert, &pki.crl, &pki.cert, &pki.key)?;
    let verifier = Verifier::new(&creds.ca_der, [&creds.crl_der])
        .map_err(|e| DaemonError::Setup(format!("the CRL {}: {e}", pki.crl.display())))?;
    let mut crl_number = creds::crl_number(&verifier);

    let router = Router::new(IpPool::new(&cfg.server.pool));
    let handler_router = router.clone();
    let admin_task = admin::serve(
        &cfg.server.admin_socket,
        Arc::new(move |_req| Response::Server {
            peers: handler_router
                .peers()
                .into_iter()
                .map(|p| {
                    let s = p.sender.stats();
                    PeerStatus {
                        id: p.id,
                        carrier: p.sender.carrier().name().into(),
                        remote: p.sender.remote().to_string(),
                        tunnel_address: p.address.to_string(),
                        bytes_in: s.bytes_in,
                        bytes_out: s.bytes_out,
                        last_handshake: s.last_handshake,
                        connected_since: p.since,
                    }
                })
                .collect(),
        }),
    )
    .await?;
    let socket_path = cfg.server.admin_socket.clone();
    // After the admin socket: a second instance stops there, before it could remove the
    // first one's NAT as a "leftover".
    let mut host = if cfg.server.nat.dry_run {
        HostConfig::dry_run()
    } else {
        HostConfig::system()
    };
    if let Err(e) = host.cleanup_leftovers().await {
        admin_task.abort();
        let _ = std::fs::remove_file(&socket_path);
        return Err(e.into());
    }
    let result = serve(
        cfg,
        creds,
        verifier,
        &mut crl_number,
        &mut host,
        router,
        redact,
        shutdown,
    )
    .await;
    admin_task.abort();
    let _ = std::fs::remove_file(&socket_path);
    if let Err(e) = host.undo().await {
        tracing::error!(error = %e, "could not undo every host change");
        if result.is_ok() {
            return Err(e.into());
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    cfg: ServerConfig,
    creds: creds::Credentials,
    verifier: Verifier,
    crl_number: &mut u64,
    host: &mut HostConfig,
    router: Arc<Router>,
    redact: Redact,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    let (gateway, prefix_len) = router.server_address();
    let tun = Arc::new(
        Tun::create(&TunConfig {
            address: Some((gateway, prefix_len)),
            mtu: cfg.tunnel.mtu,
            ..TunConfig::new(cfg.tunnel.name.clone())
        })
        .await?,
    );
    tracing::info!(
        tun = tun.name(),
        address = %gateway,
        prefix_len,
        mtu = tun.mtu(),
        offload = ?tun.offload_mode(),
        "TUN device up"
    );

    let t = &cfg.transport;
    let on = |c: Carrier, port: u16| {
        t.carriers
            .contains(&c)
            .then(|| SocketAddr::new(cfg.server.listen, port))
    };
    let mut endpoint =
        EndpointConfig::new(creds.ca_der.clone(), creds.identity.clone(), verifier, true);
    endpoint.timers = daemon_timers();
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let mut server = Server::bind(CarrierConfig {
        endpoint,
        seed,
        udp: on(Carrier::Udp, t.udp_port),
        quic: on(Carrier::Quic, t.quic_port),
        tls: on(Carrier::Tls, t.tls_port),
        outer: Some(Arc::new(creds.outer())),
        tls_options: aura_transport::tls::TlsOptions::default(),
        quic_options: aura_transport::quic::QuicOptions::default(),
        wall_clock: UnixTime::now,
    })
    .await?;

    if cfg.server.nat.auto {
        host.enable_forwarding().await?;
        let pool = cfg.server.pool.cidr;
        host.apply_nat(&NatPlan {
            pool: (pool.network(), pool.prefix_len()),
            tun: tun.name().to_owned(),
            egress: cfg.server.nat.egress_iface.clone(),
        })
        .await?;
        if host.is_dry_run() {
            for cmd in host.planned() {
                tracing::info!(command = %cmd, "dry run: would run");
            }
        }
    } else {
        tracing::info!("server.nat.auto is off: no forwarding or NAT set up");
    }

    let (to_device, device_rx) = tokio::sync::mpsc::channel(DEVICE_QUEUE);
    let writer = tokio::spawn(Router::device_writer(tun.clone(), device_rx));
    let reader_router = router.clone();
    let reader_tun = tun.clone();
    let reader = tokio::spawn(async move {
        if let Err(e) = reader_router.device_loop(reader_tun).await {
            tracing::error!(error = %e, "reading the TUN device failed");
        }
    });
    tracing::info!(
        udp = ?server.udp_addr,
        quic = ?server.quic_addr,
        tls = ?server.tls_addr,
        "server ready"
    );

    let mut crl_der = creds.crl_der.clone();
    let mut reload = tokio::time::interval(CRL_RELOAD);
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clients = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            conn = server.accept() => {
                let Some(conn) = conn else { break };
                let id = conn.peer().id.clone();
                tracing::info!(
                    client = redact.id(&id),
                    carrier = conn.carrier().name(),
                    remote = %redact.addr(&conn.remote()),
                    "client connected"
                );
                let welcome = Welcome {
                    mtu: cfg.tunnel.mtu,
                    extra: if cfg.pki.crl_push { crl_push(*crl_number, &crl_der) } else { Vec::new() },
                    since: unix_now(),
                };
                let r = router.clone();
                let q = to_device.clone();
                let shown = redact.id(&id).to_owned();
                clients.spawn(async move {
                    match r.serve_client(conn, q, welcome).await {
                        Ok(()) => tracing::info!(client = %shown, "client disconnected"),
                        Err(e) => tracing::warn!(client = %shown, error = %e, "client refused"),
                    }
                });
            }
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
            _ = reload.tick() => {
                if let Some((number, der)) = newer_crl(&cfg, &creds.ca_der, *crl_number, &crl_der) {
                    match Verifier::new(&creds.ca_der, [&der]) {
                        Ok(v) => {
                            tracing::info!(crl_number = number, "new CRL: re-checking sessions and pushing it to clients");
                            server.handle().set_verifier(v).await?;
                            *crl_number = number;
                            crl_der = der;
                            if cfg.pki.crl_push {
                                let push = crl_push(number, &crl_der);
                                for p in router.peers() {
                                    let _ = p.sender.send_batch(push.clone()).await;
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "the new CRL is not usable: keeping the old one"),
                    }
                }
            }
            () = &mut shutdown => {
                tracing::info!("stopping");
                break;
            }
        }
    }
    for p in router.peers() {
        p.sender.close().await;
    }
    clients.abort_all();
    reader.abort();
    writer.abort();
    Ok(())
}

/// The CRL file's contents when they differ from `current` and verify with a higher CRL
/// number than `number`.
fn newer_crl(
    cfg: &ServerConfig,
    ca_der: &[u8],
    number: u64,
    current: &[u8],
) -> Option<(u64, Vec<u8>)> {
    let text = std::fs::read_to_string(&cfg.pki.crl).ok()?;
    let der = pem::parse(text.as_bytes()).ok()?.into_contents();
    if der == current {
        return None;
    }
    let v = match Verifier::new(ca_der, [&der]) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(path = %cfg.pki.crl.display(), error = %e, "the CRL file changed but does not verify");
            return None;
        }
    };
    let n = creds::crl_number(&v);
    (n > number).then_some((n, der))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(extra: &str) -> ServerConfig {
        toml::from_str(&format!(
            "[server]\nname = \"vpn.test\"\n{extra}\n[pki]\nca_cert = \"a\"\ncert = \"b\"\nkey = \"c\"\ncrl = \"d\"\n"
        ))
        .unwrap()
    }

    #[test]
    fn features_not_built_are_refused_by_name() {
        assert!(refuse_unbuilt(&config("")).is_ok());
        let e = refuse_unbuilt(&config("run_as = \"aura\"")).unwrap_err();
        assert!(e.to_string().starts_with("server.run_as: "), "{e}");
        let e = refuse_unbuilt(&config(
            "[server.relay]\nenabled = true\nallow_extend_to = [\"192.0.2.1:8443\"]",
        ))
        .unwrap_err();
        assert!(e.to_string().starts_with("server.relay.enabled: "), "{e}");
    }

    #[test]
    fn the_crl_push_fits_one_datagram_per_chunk() {
        let der = vec![0x30; 5000];
        let push = crl_push(3, &der);
        assert_eq!(push.len(), 5);
        assert!(push.iter().all(|p| p.len() <= 1232));
        let mut a = control::CrlAssembler::new();
        let mut done = None;
        for p in &push {
            if let Ok(control::ControlMessage::CrlPush(c)) = control::ControlMessage::decode(p) {
                done = a.push(&c).unwrap();
            }
        }
        assert_eq!(done, Some(der));
    }
}
