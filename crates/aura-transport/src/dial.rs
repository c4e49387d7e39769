//! The client's entry point: try carriers in the configured order, then bridges, and
//! report which carrier and address won.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use aura_pki::Verifier;
use aura_proto::{DeploymentSecret, Endpoint, EndpointConfig, Identity, Timers};
use rand_core::{CryptoRng, RngCore};
use rustls_pki_types::UnixTime;

use crate::camo::datagram::CLIENT_MAX_HANDSHAKE_DATAGRAM;
use crate::camo::mask::MaskSeed;
use crate::carrier::Carrier;
use crate::carrier::link::synthetic_addr;
use crate::carrier::mem::MemNetwork;
use crate::carrier::quic::{self, QuicOptions};
use crate::carrier::tls::{self, TlsOptions};
use crate::carrier::udp;
use crate::conn::PacketConn;
use crate::driver::{Driver, DriverHandle};
use crate::error::{ConfigError, FailedAttempt, TransportError};

/// What a client needs to authenticate.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// The deployment's CA certificate (DER).
    pub ca_der: Vec<u8>,
    /// CRLs (DER) the client checks the server against.
    pub crl_ders: Vec<Vec<u8>>,
    /// The client's certificate and key.
    pub identity: Identity,
    /// The deployment secret (the bundle's knock key, or the CA fallback).
    pub secret: DeploymentSecret,
}

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct DialConfig {
    /// Credentials.
    pub credentials: ClientCredentials,
    /// The name the server's certificate must carry (inner, authenticated).
    pub server_name: String,
    /// The primary server address.
    pub server: IpAddr,
    /// Secondary addresses of the same server (or relays), tried after the primary in a
    /// random order.
    pub bridges: Vec<IpAddr>,
    /// Carriers in the order to try.
    pub carriers: Vec<Carrier>,
    /// UDP carrier port.
    pub udp_port: u16,
    /// QUIC carrier port.
    pub quic_port: u16,
    /// TLS carrier port.
    pub tls_port: u16,
    /// Time allowed for one attempt (carrier connection plus Aura handshake).
    pub attempt_timeout: Duration,
    /// Protocol timers.
    pub timers: Timers,
    /// TLS carrier options.
    pub tls_options: TlsOptions,
    /// QUIC carrier options.
    pub quic_options: QuicOptions,
    /// The daily masks (SNI, ALPN order, UDP padding and first-flight size).
    pub masks: MaskSeed,
    /// The in-memory network that [`Carrier::Mem`] dials into, at the UDP port (tests).
    pub mem: Option<MemNetwork>,
    /// The wall clock for certificate validity: `UnixTime::now` in production; tests pin
    /// it to their PKI's time.
    pub wall_clock: fn() -> UnixTime,
}

/// A successful dial.
#[derive(Debug)]
pub struct Dialed {
    /// The connection.
    pub conn: PacketConn,
    /// The carrier that won.
    pub carrier: Carrier,
    /// The address that won.
    pub addr: SocketAddr,
    /// The attempts that failed before, with their errors.
    pub failures: Vec<FailedAttempt>,
    /// Keeps the connection's driver reachable for run-time changes.
    pub driver: DriverHandle,
}

impl DialConfig {
    pub(crate) fn endpoint_config(
        &self,
        carrier: Carrier,
    ) -> Result<EndpointConfig, TransportError> {
        let c = &self.credentials;
        let verifier = Verifier::new(&c.ca_der, &c.crl_ders).map_err(TransportError::Verifier)?;
        let mut cfg = EndpointConfig::new(c.ca_der.clone(), c.identity.clone(), verifier, false);
        cfg.timers = self.timers.clone();
        cfg.secret = c.secret.clone();
        if carrier == Carrier::Udp {
            // The knocked, encoded form must fit the day's first-flight size.
            cfg.max_datagram = CLIENT_MAX_HANDSHAKE_DATAGRAM;
        }
        Ok(cfg)
    }

    /// The mask in force now (by this configuration's wall clock): the outer SNI and ALPN
    /// order of the next attempt.
    pub fn mask_now(&self) -> crate::camo::mask::Mask {
        let now = (self.wall_clock)().as_secs();
        self.masks.mask_at(i64::try_from(now).unwrap_or(i64::MAX))
    }

    /// Every (carrier, address) pair in the order they are tried: all carriers on the
    /// primary, then all carriers on each bridge (bridges shuffled).
    pub fn targets<R: RngCore>(&self, rng: &mut R) -> Vec<(Carrier, SocketAddr)> {
        let mut bridges = self.bridges.clone();
        for i in (1..bridges.len()).rev() {
            let j = usize::try_from(rng.next_u64() % (i as u64 + 1)).unwrap_or(0);
            bridges.swap(i, j);
        }
        let mut out = Vec::new();
        for ip in std::iter::once(self.server).chain(bridges) {
            for &c in &self.carriers {
                let port = match c {
                    Carrier::Udp => self.udp_port,
                    Carrier::Quic => self.quic_port,
                    Carrier::Tls => self.tls_port,
                    Carrier::Mem => self.udp_port,
                };
                out.push((c, SocketAddr::new(ip, port)));
            }
        }
        out
    }
}

async fn attempt(
    cfg: &DialConfig,
    carrier: Carrier,
    addr: SocketAddr,
    seed: [u8; 32],
) -> Result<(PacketConn, DriverHandle), TransportError> {
    let ep = Endpoint::new(
        cfg.endpoint_config(carrier)?,
        seed,
        Instant::now(),
        (cfg.wall_clock)(),
    )?;
    let link = match carrier {
        Carrier::Udp => {
            let any: SocketAddr = if addr.is_ipv4() {
                SocketAddr::from(([0, 0, 0, 0], 0))
            } else {
                SocketAddr::from(([0u16; 8], 0))
            };
            let socket = udp::bind(any)?;
            let (handle, _accept) = Driver::spawn(ep, Some(socket), cfg.masks.clone());
            let conn = handle.connect(addr, &cfg.server_name).await?;
            return Ok((conn, handle));
        }
        Carrier::Tls => {
            let mask = cfg.mask_now();
            let mut options = cfg.tls_options.clone();
            options.alpn = mask.alpn;
            tls::connect(addr, &mask.sni, &options).await?
        }
        Carrier::Quic => quic::connect(addr, &cfg.mask_now().sni, &cfg.quic_options).await?,
        Carrier::Mem => {
            let net = cfg
                .mem
                .as_ref()
                .ok_or(TransportError::Config(ConfigError::InMemoryDial))?;
            let from = synthetic_addr(u64::from_le_bytes([
                seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
            ]));
            net.connect(from, addr).ok_or_else(|| {
                TransportError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
            })?
        }
    };
    let (handle, _accept) = Driver::spawn(ep, None, cfg.masks.clone());
    let synthetic = handle.add_link(link, carrier).await?;
    let conn = handle.connect(synthetic, &cfg.server_name).await?;
    Ok((conn, handle))
}

/// Tries every target in order, each for at most `attempt_timeout`, and returns the first
/// connection that completes the Aura handshake. A refusal by the server (a revoked
/// client, a certificate the client refuses) ends the dial at once: another carrier would
/// meet the same answer.
///
/// # Errors
/// [`TransportError::AllAttemptsFailed`] with each attempt's error, or the handshake error
/// that ended the dial.
pub async fn dial<R: RngCore + CryptoRng>(
    cfg: &DialConfig,
    rng: &mut R,
) -> Result<Dialed, TransportError> {
    let mut failures = Vec::new();
    for (carrier, addr) in cfg.targets(rng) {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        match tokio::time::timeout(cfg.attempt_timeout, attempt(cfg, carrier, addr, seed)).await {
            Ok(Ok((conn, driver))) => {
                return Ok(Dialed {
                    conn,
                    carrier,
                    addr,
                    failures,
                    driver,
                });
            }
            Ok(Err(TransportError::Handshake {
                error,
                carrier,
                addr,
            })) if !matches!(error, aura_proto::HandshakeError::Timeout) => {
                return Err(TransportError::Handshake {
                    carrier,
                    addr,
                    error,
                });
            }
            Ok(Err(error)) => failures.push(FailedAttempt {
                carrier,
                addr,
                error,
            }),
            Err(_) => failures.push(FailedAttempt {
                carrier,
                addr,
                error: TransportError::NoAnswer(cfg.attempt_timeout),
            }),
        }
    }
    Err(TransportError::AllAttemptsFailed(failures))
}
