//! Circuits: reaching the exit through relays (docs/PROTOCOL.md §8, "Circuits").
//!
//! The client dials the entry as it dials any server ([`dial`]: every carrier, bridges,
//! fallback) and asks it to extend to the next hop (`ExtendBridge`). Once the relay
//! answers `CircuitReady`, the session with it carries, as its data packets, the wire
//! datagrams of a second, complete Aura session with the next hop: a new protocol
//! endpoint of the client's own, in its own driver, whose only link is that session
//! ([`carry`]). The datagrams on that link are disguised as the UDP carrier disguises
//! them, because the relay sends each one as a UDP datagram to the hop's UDP carrier.
//! A longer circuit repeats the step inside the last session: each relay knows the hop
//! before it and the hop after it, and holds none of the keys of the sessions nested
//! inside its own.
//!
//! Each hop adds [`HOP_OVERHEAD`] bytes to a packet; the circuit's links are padded to
//! at most what one data packet of the session around them holds, so nothing is
//! fragmented.

use std::net::SocketAddr;
use std::time::Duration;

use aura_proto::control::{self, ControlMessage, ExtendBridge};
use aura_proto::{DATA_OVERHEAD, Endpoint};
use rand_core::{CryptoRng, RngCore};
use tokio::sync::mpsc;

use crate::camo::datagram::DATA_FORM_OVERHEAD;
use crate::camo::shape::{Profile, max_padded_for};
use crate::carrier::Carrier;
use crate::carrier::link::{DatagramLink, LINK_QUEUE};
use crate::conn::PacketConn;
use crate::dial::{DialConfig, Dialed, dial};
use crate::driver::{Driver, DriverHandle};
use crate::error::TransportError;

/// Bytes each hop adds to a packet: the Aura data header and tag, and the UDP
/// camouflage's padding length.
pub const HOP_OVERHEAD: usize = DATA_OVERHEAD + DATA_FORM_OVERHEAD;
/// Most datagrams moved between a link and its session at once.
const CARRY_BATCH: usize = 64;

/// A hop past the entry: where the relay before it sends (its UDP carrier) and the name
/// its certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The hop's UDP carrier address.
    pub addr: SocketAddr,
    /// The name its certificate must carry.
    pub name: String,
}

/// One hop of a built circuit, for status.
#[derive(Debug, Clone)]
pub struct CircuitHop {
    /// The name its certificate carried.
    pub name: String,
    /// Its address (the entry's on the carrier that won; the others' UDP addresses).
    pub addr: SocketAddr,
    /// The carrier that reaches it: the entry's carrier, then UDP from relay to relay.
    pub carrier: Carrier,
    /// Its session's driver (a pushed CRL goes to each).
    pub driver: DriverHandle,
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
    wait: Duration,
) -> Result<(), TransportError> {
    let ask = ControlMessage::from(ExtendBridge { addr: to })
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
    let (outbound, mut from_driver) = mpsc::channel::<Vec<u8>>(LINK_QUEUE);
    tokio::spawn(async move {
        let sender = conn.sender();
        let mut out = Vec::with_capacity(CARRY_BATCH);
        loop {
            tokio::select! {
                n = from_driver.recv_many(&mut out, CARRY_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    if sender.send_batch(std::mem::take(&mut out)).await.is_err() {
                        break;
                    }
                }
                batch = conn.recv_packets() => {
                    let Some(batch) = batch else { break };
                    for p in batch.iter() {
                        if control::is_control(p) {
                            continue;
                        }
                        // A full queue drops, as a full socket buffer would.
                        let _ = to_driver.try_send(p.to_vec());
                    }
                    batch.recycle();
                }
            }
        }
        conn.close().await;
    });
    DatagramLink {
        peer: next,
        inbound,
        outbound,
    }
}

/// Dials the circuit: the entry as [`dial`] does (`cfg.server` and its bridges), then
/// each of `hops` in order, the last being the exit. The returned connection is the
/// exit's; `addr` is the exit's address and `carrier` the entry's. The hops, entry first,
/// are returned with it.
///
/// # Errors
/// The entry's dial error, a relay's refusal ([`TransportError::CircuitFailed`],
/// [`TransportError::NotARelay`]), or a hop's handshake error
/// ([`TransportError::Handshake`] with the hop's address). Whatever was built is closed.
pub async fn dial_circuit<R: RngCore + CryptoRng>(
    cfg: &DialConfig,
    hops: &[Hop],
    rng: &mut R,
) -> Result<(Dialed, Vec<CircuitHop>), TransportError> {
    let entry = dial(cfg, rng).await?;
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
    for hop in hops {
        room = room.saturating_sub(HOP_OVERHEAD);
        if let Err(e) = extend(&mut conn, relay, hop.addr, cfg.attempt_timeout).await {
            conn.close().await;
            return Err(e);
        }
        let link = carry(conn, hop.addr);
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let attempt = async {
            let mut ep_cfg = cfg.endpoint_config(Carrier::Udp)?;
            ep_cfg.max_datagram = ep_cfg.max_datagram.min(room);
            let ep = Endpoint::new(ep_cfg, seed, std::time::Instant::now(), (cfg.wall_clock)())?;
            let (handle, _accept) = Driver::spawn(ep, None, cfg.masks.clone());
            // The in-memory test network's listeners take datagrams as they are.
            let synthetic = if cfg.mem.is_some() {
                handle.add_link(link, Carrier::Mem).await?
            } else {
                handle.add_circuit_link(link, room).await?
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
                return Err(TransportError::Handshake {
                    carrier: Carrier::Udp,
                    addr: hop.addr,
                    error,
                });
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(TransportError::Handshake {
                    carrier: Carrier::Udp,
                    addr: hop.addr,
                    error: aura_proto::HandshakeError::Timeout,
                });
            }
        }
        built.push(CircuitHop {
            name: hop.name.clone(),
            addr: hop.addr,
            carrier: Carrier::Udp,
            driver: driver.clone(),
        });
        relay = hop.addr;
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
