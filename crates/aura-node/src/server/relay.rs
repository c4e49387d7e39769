//! The relay side of circuits (`[server.relay]`): a client whose first message after the
//! handshake is an `ExtendBridge` is not given an address; its connection becomes a
//! bridge to the next hop. Every data packet it sends (the wire datagrams of its own,
//! inner Aura session with that hop, which this server cannot read) goes out over UDP
//! from a socket of this server's, and every datagram the hop sends back comes to the
//! client as a packet. The hop sees this server's address; this server sees the client's
//! address and id but none of its traffic.
//!
//! A hop outside `allow_extend_to` (when the list is not empty), or one this server must
//! not send to (unspecified, multicast, port 0; loopback unless listed: a loop back into
//! itself), gets `CircuitFailed` with the reason, and the connection is closed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use std::sync::Arc;

use aura_proto::control::{CircuitFailed, CircuitReady, ControlMessage, ExtendBridge, Via};
use aura_transport::circuit::{OnwardDial, UNREACHABLE};
use aura_transport::{DatagramLink, MemNetwork, PacketConn};
use tokio::net::UdpSocket;

/// How long the server waits for an `ExtendBridge` before it serves a client as usual.
pub const EXTEND_WAIT: Duration = Duration::from_secs(2);
/// Largest datagram relayed from the next hop.
const MAX_DATAGRAM: usize = 65_535;
/// Most datagrams from the next hop handed to the client's session at once.
const DOWN_BATCH: usize = 64;

/// Where this server relays to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayPolicy {
    /// The hops circuits may be extended to; empty: any.
    pub allow: Vec<SocketAddr>,
}

impl RelayPolicy {
    /// Why this server does not extend to `to`, if it does not.
    ///
    /// Never unspecified, multicast or port 0; loopback only when listed (an exit on the
    /// same host), never for an open relay.
    pub fn refusal(&self, to: SocketAddr) -> Option<String> {
        let ip = to.ip();
        let listed = self.allow.contains(&to);
        if ip.is_unspecified()
            || ip.is_multicast()
            || to.port() == 0
            || (ip.is_loopback() && !listed)
        {
            return Some(format!("{to} is not an address a relay sends to"));
        }
        if !self.allow.is_empty() && !listed {
            return Some(format!("{to} is not in this relay's allow_extend_to"));
        }
        None
    }
}

/// The `ExtendBridge` of a first batch, if its first packet is one.
pub fn extend_request(first: &[u8]) -> Option<ExtendBridge> {
    match ControlMessage::decode(first) {
        Ok(ControlMessage::ExtendBridge(e)) => Some(e),
        _ => None,
    }
}

async fn send_control(conn: &PacketConn, message: ControlMessage<'_>) {
    if let Ok(p) = message.encode() {
        let _ = conn.send(p).await;
    }
}

/// How a relay reaches the next hops.
#[derive(Debug, Clone, Default)]
pub enum Onward {
    /// Over the network: a UDP socket of its own per bridge to a hop's UDP carrier, and
    /// (when given) the QUIC and TLS carriers dialled as a client of the deployment
    /// would; without it, only UDP hops.
    Network(Option<Arc<OnwardDial>>),
    /// A link of the in-memory network, from the relay's address there (tests; every
    /// carrier is the in-memory one).
    Memory(MemNetwork, SocketAddr),
    /// Nowhere (the default until a server says how).
    #[default]
    Nowhere,
}

/// The path to one next hop.
enum NextHop {
    Udp(UdpSocket),
    Link(DatagramLink),
}

impl NextHop {
    /// Opens the path to `to` over `via`, or says why not.
    async fn open(onward: &Onward, to: SocketAddr, via: Via) -> Result<Self, String> {
        let unreachable = |why: String| format!("{UNREACHABLE} {to} over {}: {why}", via.name());
        match (onward, via) {
            (Onward::Network(_), Via::Udp) => {
                let local: SocketAddr = match to.ip() {
                    IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                    IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
                };
                let socket = UdpSocket::bind(local)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                socket
                    .connect(to)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                Ok(Self::Udp(socket))
            }
            (Onward::Network(Some(dial)), via) => dial
                .connect(via, to)
                .await
                .map(Self::Link)
                .map_err(|e| unreachable(e.to_string())),
            (Onward::Network(None), _) => Err(unreachable("it relays over UDP only".into())),
            (Onward::Memory(net, from), _) => net
                .connect(*from, to)
                .map(Self::Link)
                .ok_or_else(|| unreachable("nothing listens there".into())),
            (Onward::Nowhere, _) => Err(unreachable("it has no way out".into())),
        }
    }

    /// Sends one datagram; `false` when it could not go.
    async fn send(&self, d: &[u8]) -> bool {
        match self {
            Self::Udp(s) => s.send(d).await.is_ok(),
            Self::Link(l) => l.outbound.try_send(d.into()).is_ok(),
        }
    }

    /// Appends the datagrams already waiting (without blocking) to `out`, until it holds
    /// `max`.
    fn drain_into(&mut self, out: &mut Vec<Vec<u8>>, buf: &mut Vec<u8>, max: usize) {
        while out.len() < max {
            match self {
                Self::Udp(s) => {
                    buf.resize(MAX_DATAGRAM, 0);
                    match s.try_recv(buf) {
                        Ok(n) => out.push(buf.get(..n).unwrap_or_default().to_vec()),
                        Err(_) => return,
                    }
                }
                Self::Link(l) => match l.inbound.try_recv() {
                    Ok(d) => out.push(d.to_vec()),
                    Err(_) => return,
                },
            }
        }
    }

    /// The next datagram into `buf`: `Some(Some(n))`, `Some(None)` for a transient
    /// error (an ICMP error from a hop that is down), `None` once the path is gone.
    async fn recv(&mut self, buf: &mut Vec<u8>) -> Option<Option<usize>> {
        match self {
            Self::Udp(s) => {
                buf.resize(MAX_DATAGRAM, 0);
                Some(s.recv(buf).await.ok())
            }
            Self::Link(l) => {
                let d = l.inbound.recv().await?;
                buf.clear();
                buf.extend_from_slice(&d);
                Some(Some(d.len()))
            }
        }
    }
}

/// Bridges `conn` to `to` until either side ends (or refuses it); returns the bytes
/// relayed each way (client to hop, hop to client).
pub async fn bridge(
    mut conn: PacketConn,
    to: SocketAddr,
    via: Via,
    policy: &RelayPolicy,
    onward: &Onward,
) -> (u64, u64) {
    if let Some(reason) = policy.refusal(to) {
        tracing::info!(%reason, "circuit extension refused");
        send_control(&conn, CircuitFailed { reason }.into()).await;
        conn.close().await;
        return (0, 0);
    }
    let mut next = match NextHop::open(onward, to, via).await {
        Ok(n) => n,
        Err(reason) => {
            tracing::info!(%reason, "circuit extension failed");
            send_control(&conn, CircuitFailed { reason }.into()).await;
            conn.close().await;
            return (0, 0);
        }
    };
    send_control(&conn, CircuitReady.into()).await;
    tracing::debug!("circuit extended");
    let (mut up, mut down) = (0u64, 0u64);
    let mut buf = Vec::with_capacity(MAX_DATAGRAM);
    loop {
        tokio::select! {
            batch = conn.recv_packets() => {
                let Some(batch) = batch else { break };
                let mut end = false;
                for p in batch.iter() {
                    // Control envelopes are for this hop; the rest is the client's inner
                    // session.
                    if !aura_proto::control::is_control(p) {
                        if next.send(p).await {
                            up += p.len() as u64;
                        }
                        continue;
                    }
                    match ControlMessage::decode(p) {
                        // The client built its circuit again: a server keeps one
                        // session per client, so the new one arrives here. Extend anew.
                        Ok(ControlMessage::ExtendBridge(e)) => {
                            let reopened = match policy.refusal(e.addr) {
                                Some(reason) => Err(reason),
                                None => NextHop::open(onward, e.addr, e.via).await,
                            };
                            match reopened {
                                Ok(n) => {
                                    next = n;
                                    send_control(&conn, CircuitReady.into()).await;
                                    tracing::debug!("circuit extended again");
                                }
                                Err(reason) => {
                                    tracing::info!(%reason, "circuit extension refused");
                                    send_control(&conn, CircuitFailed { reason }.into()).await;
                                    end = true;
                                }
                            }
                        }
                        // The client came back without a circuit: this session cannot
                        // turn into a tunnel; closing it makes the client dial again.
                        Ok(ControlMessage::AddressRequest(_)) => {
                            tracing::debug!("a relayed client asks for an address: bridge closed");
                            end = true;
                        }
                        _ => {}
                    }
                }
                batch.recycle();
                if end {
                    break;
                }
            }
            got = next.recv(&mut buf) => {
                // An ICMP error (the hop is down) surfaces here: keep waiting, the client
                // notices its inner session dying and rebuilds.
                let Some(got) = got else { break };
                let Some(n) = got else { continue };
                let Some(d) = buf.get(..n) else { continue };
                // What else is already waiting goes in the same batch: one command to
                // the driver, not one per datagram.
                let mut batch = vec![d.to_vec()];
                next.drain_into(&mut batch, &mut buf, DOWN_BATCH);
                down += batch.iter().map(|d| d.len() as u64).sum::<u64>();
                if conn.send_batch(batch).await.is_err() {
                    break;
                }
            }
        }
    }
    conn.close().await;
    (up, down)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_policy_refuses_what_it_must() {
        let exit: SocketAddr = "192.0.2.9:8443".parse().unwrap();
        let open = RelayPolicy::default();
        assert_eq!(open.refusal(exit), None);
        for bad in [
            "127.0.0.1:8443",
            "0.0.0.0:8443",
            "224.0.0.1:8443",
            "[::1]:8443",
            "192.0.2.9:0",
        ] {
            assert!(open.refusal(bad.parse().unwrap()).is_some(), "{bad}");
        }
        let listed = RelayPolicy {
            allow: vec![exit, "127.0.0.1:9443".parse().unwrap()],
        };
        assert_eq!(listed.refusal(exit), None);
        assert_eq!(listed.refusal("127.0.0.1:9443".parse().unwrap()), None);
        let other: SocketAddr = "192.0.2.10:8443".parse().unwrap();
        assert!(listed.refusal(other).unwrap().contains("allow_extend_to"));
    }
}
