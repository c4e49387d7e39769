//! Circuits: reaching the exit through relays (docs/PROTOCOL.md §8, "Circuits").
//!
//! The client dials the entry as it dials any server ([`dial`]: every carrier, bridges,
//! fallback) and asks it to extend to the next hop (`ExtendBridge`). Once the relay
//! answers `CircuitReady`, the session with it carries, as its data packets, the wire
//! datagrams of a second, complete Aura session with the next hop: a new protocol
//! endpoint of the client's own, in its own driver, whose only link is that session
//! ([`carry`]). The relay reaches the hop on the carrier the client names (each hop is
//! tried on the client's carriers in order): toward a hop's UDP carrier the datagrams on
//! that link are disguised as the UDP carrier disguises them, because the relay sends
//! each one as a UDP datagram; toward QUIC or TLS they go as they are, and the relay's
//! connection ([`OnwardDial`]) is the camouflage.
//! A longer circuit repeats the step inside the last session: each relay knows the hop
//! before it and the hop after it, and holds none of the keys of the sessions nested
//! inside its own.
//!
//! Each hop adds [`HOP_OVERHEAD`] bytes to a packet; the circuit's links are padded to
//! at most what one data packet of the session around them holds, so nothing is
//! fragmented.

use std::net::SocketAddr;
use std::time::Duration;

use aura_proto::control::{self, ControlMessage, ExtendBridge, Via};
use aura_proto::{DATA_OVERHEAD, Endpoint};
use bytes::BytesMut;
use rand_core::{CryptoRng, RngCore};
use tokio::sync::mpsc;

use crate::batch::PacketBatch;
use crate::camo::datagram::DATA_FORM_OVERHEAD;
use crate::camo::mask::MaskSeed;
use crate::camo::shape::{Profile, max_padded_for};
use crate::carrier::Carrier;
use crate::carrier::link::{DatagramLink, LINK_QUEUE, carve};
use crate::carrier::quic::{self, QuicOptions};
use crate::carrier::tls::{self, TlsOptions};
use crate::conn::PacketConn;
use crate::dial::{DialConfig, Dialed, dial};
use crate::driver::{Driver, DriverHandle};
use crate::error::{FailedAttempt, TransportError};

/// Bytes each hop adds to a packet: the Aura data header and tag, and the UDP
/// camouflage's padding length.
pub const HOP_OVERHEAD: usize = DATA_OVERHEAD + DATA_FORM_OVERHEAD;
/// Most datagrams moved between a link and its session at once.
const CARRY_BATCH: usize = 64;

/// A hop past the entry: its address (the relay before it reaches it on the dial
/// configuration's carriers and ports) and the name its certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The hop's IP address.
    pub ip: std::net::IpAddr,
    /// The name its certificate must carry.
    pub name: String,
}

/// One hop of a built circuit, for status.
#[derive(Debug, Clone)]
pub struct CircuitHop {
    /// The name its certificate carried.
    pub name: String,
    /// Its address on the carrier that reached it.
    pub addr: SocketAddr,
    /// The carrier that reached it (from the client for the entry, from the relay before
    /// it for the others).
    pub carrier: Carrier,
    /// Its session's driver (a pushed CRL goes to each).
    pub driver: DriverHandle,
}

/// How a relay reaches a next hop's QUIC or TLS carrier: the outer options a client of
/// the deployment uses (the knock, the day's SNI and ALPN order).
#[derive(Debug, Clone)]
pub struct OnwardDial {
    /// TLS carrier options (with the knock when the deployment knocks).
    pub tls: TlsOptions,
    /// QUIC carrier options (likewise).
    pub quic: QuicOptions,
    /// The deployment's daily masks.
    pub masks: MaskSeed,
    /// The wall clock the masks are read by.
    pub wall_clock: fn() -> rustls_pki_types::UnixTime,
}

impl OnwardDial {
    /// A link to the hop at `to` over `via` (QUIC or TLS; UDP needs no link).
    ///
    /// # Errors
    /// The carrier's connection error; [`TransportError::Config`] for UDP.
    pub async fn connect(&self, via: Via, to: SocketAddr) -> Result<DatagramLink, TransportError> {
        let now = (self.wall_clock)().as_secs();
        let mask = self.masks.mask_at(i64::try_from(now).unwrap_or(i64::MAX));
        match via {
            Via::Tls => {
                let mut options = self.tls.clone();
                options.alpn = mask.alpn;
                tls::connect(to, &mask.sni, &options).await
            }
            Via::Quic => quic::connect(to, &mask.sni, &self.quic).await,
            Via::Udp => Err(TransportError::Io(std::io::Error::other(
                "a UDP hop is reached with a socket, not a link",
            ))),
        }
    }
}

/// The control message's carrier for a carrier (the in-memory one goes as UDP).
pub fn via_of(carrier: Carrier) -> Via {
    match carrier {
        Carrier::Quic => Via::Quic,
        Carrier::Tls => Via::Tls,
        Carrier::Udp | Carrier::Mem => Via::Udp,
    }
}

/// Asks the relay at the far end of `conn` to extend the circuit to `to`, and waits up
/// to `wait` for its answer. Data packets meanwhile are dropped (there should be none).
///
/// # Errors
/// [`TransportError::CircuitFailed`] with the relay's reason;
/// [`TransportError::NotARelay`] when the server answers as to a client of its own (it
/// assigns an address); [`TransportError::NoAnswer`]; [`TransportError::Closed`].
pub async fn extend(
    conn: &mut PacketConn,
    relay: SocketAddr,
    to: SocketAddr,
    via: Via,
    wait: Duration,
) -> Result<(), TransportError> {
    let ask = ControlMessage::from(ExtendBridge { addr: to, via })
        .encode()
        .map_err(|e| TransportError::Io(std::io::Error::other(e.to_string())))?;
    conn.send(ask).await?;
    let answer = async {
        loop {
            let Some(p) = conn.recv().await else {
                return Err(TransportError::Closed);
            };
            if !control::is_control(&p) {
                continue;
            }
            match ControlMessage::decode(&p) {
                Ok(ControlMessage::CircuitReady(_)) => return Ok(()),
                Ok(ControlMessage::CircuitFailed(f)) => {
                    return Err(TransportError::CircuitFailed {
                        relay,
                        to,
                        reason: f.reason,
                    });
                }
                Ok(
                    ControlMessage::AddressAssign(_)
                    | ControlMessage::AddressAssign6(_)
                    | ControlMessage::DnsAssign(_),
                ) => {
                    return Err(TransportError::NotARelay {
                        relay,
                        what: "it assigned an address instead ([server.relay] is not enabled there)",
                    });
                }
                // A CRL push and the like: not the answer.
                Ok(_) | Err(_) => {}
            }
        }
    };
    match tokio::time::timeout(wait, answer).await {
        Ok(r) => r,
        // Perhaps lost: worth another try, unlike a refusal.
        Err(_) => Err(TransportError::NoAnswer(wait)),
    }
}

/// Turns `conn` (a session with a relay that has extended it) into a link to the hop at
/// `next`: what the link's driver sends goes out as data packets of `conn`, and what
/// comes in on `conn` goes to the driver. A control message from the relay is not for
/// the link and is dropped. When either side ends, `conn` is closed and the link's
/// inbound end closes, which ends the sessions over it.
pub fn carry(mut conn: PacketConn, next: SocketAddr) -> DatagramLink {
    let (to_driver, inbound) = mpsc::channel(LINK_QUEUE);
    let (outbound, mut from_driver) = mpsc::channel::<BytesMut>(LINK_QUEUE);
    tokio::spawn(async move {
        let sender = conn.sender();
        let mut out = Vec::with_capacity(CARRY_BATCH);
        let mut carved = Vec::new();
        loop {
            tokio::select! {
                n = from_driver.recv_many(&mut out, CARRY_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    let batch = PacketBatch::from_packets(out.drain(..));
                    if sender.send_packets(batch).await.is_err() {
                        break;
                    }
                }
                batch = conn.recv_packets() => {
                    let Some(batch) = batch else { break };
                    let data = batch.iter().filter(|p| !control::is_control(p));
                    carve(data, &mut carved);
                    batch.recycle();
                    for d in carved.drain(..) {
                        // A full queue drops, as a full socket buffer would.
                        let _ = to_driver.try_send(d);
                    }
                }
            }
        }
        conn.close().await;
    });
    // The relay terminates the outer sessions on both sides of it: a hop's session is
    // never bound to one, and keeps its own encryption.
    DatagramLink {
        peer: next,
        inbound,
        outbound,
        binding: None,
    }
}

/// The start of a `CircuitFailed` reason a relay gives when it cannot reach the hop over
/// the carrier asked for: another carrier may work, unlike a refusal by its policy.
pub const UNREACHABLE: &str = "this relay cannot reach";

/// Whether a failure to reach a hop over one carrier is worth trying the next carrier for.
fn carrier_specific(e: &TransportError) -> bool {
    match e {
        TransportError::CircuitFailed { reason, .. } => reason.starts_with(UNREACHABLE),
        TransportError::Handshake { error, .. } => {
            matches!(error, aura_proto::HandshakeError::Timeout)
        }
        TransportError::NotARelay { .. } => false,
        _ => true,
    }
}

/// Dials the circuit: the entry as [`dial`] does (`cfg.server` and its bridges, every
/// carrier in order), then each of `hops` in order, the last being the exit, each on the
/// first of `cfg.carriers` that reaches it (a hop that cannot be reached on one carrier
/// is tried on the next, the circuit built again up to it). The returned connection is
/// the exit's; `addr` is the exit's address and `carrier` the entry's. The hops, entry
/// first, are returned with it; `failures` holds every failed attempt, hops included.
///
/// # Errors
/// The entry's dial error, a relay's refusal ([`TransportError::CircuitFailed`],
/// [`TransportError::NotARelay`]), a hop's refusal ([`TransportError::Handshake`]), or the
/// last carrier's error of a hop no carrier reached. Whatever was built is closed.
pub async fn dial_circuit<R: RngCore + CryptoRng>(
    cfg: &DialConfig,
    hops: &[Hop],
    rng: &mut R,
) -> Result<(Dialed, Vec<CircuitHop>), TransportError> {
    let mut choice = vec![0usize; hops.len()];
    let mut failures = Vec::new();
    loop {
        match build(cfg, hops, &choice, rng).await {
            Ok((mut d, built)) => {
                failures.append(&mut d.failures);
                d.failures = failures;
                return Ok((d, built));
            }
            Err(Failure::Entry(e)) => return Err(e),
            Err(Failure::Hop(k, carrier, addr, e)) => {
                let next = choice[k] + 1;
                if !carrier_specific(&e) || next >= cfg.carriers.len() {
                    return Err(e);
                }
                tracing::debug!(hop = k + 2, %carrier, error = %e, "hop not reached: next carrier");
                failures.push(FailedAttempt {
                    carrier,
                    addr,
                    error: e,
                });
                choice[k] = next;
            }
        }
    }
}

/// Why one build of a circuit failed: at the entry, or at hop `k` (0: the first past the
/// entry) over a carrier to an address.
enum Failure {
    Entry(TransportError),
    Hop(usize, Carrier, SocketAddr, TransportError),
}

/// The port of `carrier` in `cfg`.
fn port_of(cfg: &DialConfig, carrier: Carrier) -> u16 {
    match carrier {
        Carrier::Udp | Carrier::Mem => cfg.udp_port,
        Carrier::Quic => cfg.quic_port,
        Carrier::Tls => cfg.tls_port,
    }
}

/// One build of the circuit, hop `k` on carrier `cfg.carriers[choice[k]]`.
async fn build<R: RngCore + CryptoRng>(
    cfg: &DialConfig,
    hops: &[Hop],
    choice: &[usize],
    rng: &mut R,
) -> Result<(Dialed, Vec<CircuitHop>), Failure> {
    let entry = dial(cfg, rng).await.map_err(Failure::Entry)?;
    let Dialed {
        mut conn,
        carrier,
        addr,
        failures,
        mut driver,
    } = entry;
    // Every layer pads: on an unpadded entry leg a datagram would be exactly 31 bytes
    // larger than the one the relay sends on, matched by size alone.
    if carrier == Carrier::Udp && cfg.mask_now().udp_profile == Profile::None {
        let _ = driver.set_udp_profile(Some(Profile::HttpsBuckets)).await;
    }
    let mut built = vec![CircuitHop {
        name: cfg.server_name.clone(),
        addr,
        carrier,
        driver: driver.clone(),
    }];
    // What one data packet of the entry's session holds once padded.
    let mut room = max_padded_for(&addr);
    let mut relay = addr;
    for (k, hop) in hops.iter().enumerate() {
        let via_carrier = cfg
            .carriers
            .get(choice.get(k).copied().unwrap_or(0))
            .copied()
            .unwrap_or(Carrier::Udp);
        let to = SocketAddr::new(hop.ip, port_of(cfg, via_carrier));
        let fail = |e| Failure::Hop(k, via_carrier, to, e);
        room = room.saturating_sub(HOP_OVERHEAD);
        if let Err(e) = extend(
            &mut conn,
            relay,
            to,
            via_of(via_carrier),
            cfg.attempt_timeout,
        )
        .await
        {
            conn.close().await;
            return Err(fail(e));
        }
        let link = carry(conn, to);
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let attempt = async {
            let mut ep_cfg = cfg.endpoint_config(Carrier::Udp)?;
            ep_cfg.max_datagram = ep_cfg.max_datagram.min(room);
            let ep = Endpoint::new(ep_cfg, seed, std::time::Instant::now(), (cfg.wall_clock)())?;
            let (handle, _accept) = Driver::spawn(ep, None, cfg.masks.clone());
            // A hop's UDP carrier reads the UDP camouflage; its QUIC and TLS carriers
            // (and the in-memory test network) take datagrams as they are.
            let synthetic = match via_carrier {
                Carrier::Udp => handle.add_circuit_link(link, room).await?,
                other => handle.add_link(link, other).await?,
            };
            let next = handle.connect(synthetic, &hop.name).await?;
            Ok::<_, TransportError>((next, handle))
        };
        match tokio::time::timeout(cfg.attempt_timeout, attempt).await {
            Ok(Ok((next, handle))) => {
                conn = next;
                driver = handle;
            }
            // Dropping the half-built hop closes the link, and with it the sessions
            // around it.
            Ok(Err(TransportError::Handshake { error, .. })) => {
                return Err(fail(TransportError::Handshake {
                    carrier: via_carrier,
                    addr: to,
                    error,
                }));
            }
            Ok(Err(e)) => return Err(fail(e)),
            Err(_) => {
                return Err(fail(TransportError::Handshake {
                    carrier: via_carrier,
                    addr: to,
                    error: aura_proto::HandshakeError::Timeout,
                }));
            }
        }
        built.push(CircuitHop {
            name: hop.name.clone(),
            addr: to,
            carrier: via_carrier,
            driver: driver.clone(),
        });
        relay = to;
    }
    Ok((
        Dialed {
            conn,
            carrier,
            addr: relay,
            failures,
            driver,
        },
        built,
    ))
}
