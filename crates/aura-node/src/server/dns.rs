//! The server's DNS forwarder: when `[server] dns` is not set, clients are told to use
//! the server's own tunnel address, and this module answers there (UDP and TCP port 53)
//! by passing each query to the resolvers of the server host's `/etc/resolv.conf` and
//! the answer back. Only clients of the pool are served; queries are not logged.
//!
//! UDP: each query goes out from a fresh socket on a random port (so an off-path
//! attacker must guess both the port and the query id to spoof an answer), to each
//! upstream in turn until one answers with the query's id, within [`UPSTREAM_WAIT`]
//! each. TCP: the connection is spliced to the first upstream that accepts one, for at
//! most [`TCP_LIFETIME`]. At most [`MAX_UDP_IN_FLIGHT`] queries and [`MAX_TCP`]
//! connections at once: more are dropped (the client's resolver retries).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::DaemonError;

/// The DNS port.
pub const PORT: u16 = 53;
/// How long one upstream has to answer a UDP query.
const UPSTREAM_WAIT: Duration = Duration::from_secs(2);
/// Longest life of a forwarded TCP connection.
const TCP_LIFETIME: Duration = Duration::from_secs(30);
/// UDP queries forwarded at once.
const MAX_UDP_IN_FLIGHT: usize = 256;
/// TCP connections forwarded at once.
const MAX_TCP: usize = 64;
/// Largest DNS message over UDP (EDNS0 allows up to 65535 bytes).
const MAX_UDP_MESSAGE: usize = 65_535;

/// The `nameserver` addresses of a `resolv.conf` text, port 53, in order, without
/// `skip` (the tunnel address itself: forwarding to it would loop).
pub fn upstreams_of(resolv_conf: &str, skip: IpAddr) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in resolv_conf.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        // A link-local IPv6 resolver carries its scope (`fe80::1%eth0`): not usable
        // from a plain socket address here, skipped.
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        let addr = SocketAddr::new(ip, PORT);
        if ip != skip && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

/// The upstream resolvers of this host: those of `path` (normally `/etc/resolv.conf`).
///
/// # Errors
/// [`DaemonError::Dns`] when the file cannot be read or names no usable resolver.
pub fn host_upstreams(path: &Path, skip: IpAddr) -> Result<Vec<SocketAddr>, DaemonError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        DaemonError::Dns(format!(
            "cannot read {} to find this host's resolvers: {e}; set [server] dns to the \
             resolvers clients should use, or [] for none",
            path.display()
        ))
    })?;
    let found = upstreams_of(&text, skip);
    if found.is_empty() {
        return Err(DaemonError::Dns(format!(
            "{} names no resolver; set [server] dns to the resolvers clients should use, \
             or [] for none",
            path.display()
        )));
    }
    Ok(found)
}

/// Whether `addr` is in `network/prefix`.
fn in_pool(addr: IpAddr, (network, prefix): (Ipv4Addr, u8)) -> bool {
    let IpAddr::V4(a) = addr else { return false };
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0);
    u32::from(a) & mask == u32::from(network) & mask
}

/// A DNS query's id, when `m` looks like a query (a 12-byte header with QR clear).
fn query_id(m: &[u8]) -> Option<[u8; 2]> {
    match m {
        [a, b, flags, ..] if m.len() >= 12 && flags & 0x80 == 0 => Some([*a, *b]),
        _ => None,
    }
}

/// Whether `m` is a response to query `id`.
fn answers(m: &[u8], id: [u8; 2]) -> bool {
    matches!(m, [a, b, flags, ..] if m.len() >= 12 && [*a, *b] == id && flags & 0x80 != 0)
}

/// The running forwarder; its tasks end when it is dropped.
#[derive(Debug)]
pub struct Forwarder {
    tasks: JoinSet<()>,
    /// Where it answers.
    pub listen: SocketAddr,
}

impl Forwarder {
    /// Binds UDP and TCP `listen:53` and starts answering clients from `pool` with
    /// what `upstreams` answer.
    ///
    /// # Errors
    /// [`DaemonError::Dns`] naming the address when a socket cannot be bound.
    pub async fn start(
        listen: Ipv4Addr,
        pool: (Ipv4Addr, u8),
        upstreams: Vec<SocketAddr>,
    ) -> Result<Self, DaemonError> {
        Self::start_on(SocketAddr::new(IpAddr::V4(listen), PORT), pool, upstreams).await
    }

    /// As [`start`](Self::start), on any port (tests).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_on(
        listen: SocketAddr,
        pool: (Ipv4Addr, u8),
        upstreams: Vec<SocketAddr>,
    ) -> Result<Self, DaemonError> {
        let bind_error = |proto: &str, e: std::io::Error| {
            DaemonError::Dns(format!(
                "cannot serve DNS on {listen}/{proto}: {e}; another resolver may hold the \
                 port: set [server] dns to the resolvers clients should use, or [] for none"
            ))
        };
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(|e| bind_error("udp", e))?;
        let listen = udp.local_addr().map_err(|e| bind_error("udp", e))?;
        let tcp = TcpListener::bind(listen)
            .await
            .map_err(|e| bind_error("tcp", e))?;
        let upstreams: Arc<[SocketAddr]> = upstreams.into();
        let mut tasks = JoinSet::new();
        tasks.spawn(serve_udp(Arc::new(udp), pool, upstreams.clone()));
        tasks.spawn(serve_tcp(tcp, pool, upstreams));
        Ok(Self { tasks, listen })
    }

    /// Stops answering.
    pub fn stop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, pool: (Ipv4Addr, u8), upstreams: Arc<[SocketAddr]>) {
    let slots = Arc::new(Semaphore::new(MAX_UDP_IN_FLIGHT));
    let mut buf = vec![0u8; MAX_UDP_MESSAGE];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "DNS forwarder: receive failed");
                continue;
            }
        };
        let Some(query) = buf.get(..n) else { continue };
        let Some(id) = query_id(query) else { continue };
        if !in_pool(from.ip(), pool) {
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("DNS forwarder busy: query dropped");
            continue;
        };
        let query = query.to_vec();
        let socket = socket.clone();
        let upstreams = upstreams.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Some(answer) = ask_udp(&query, id, &upstreams).await {
                let _ = socket.send_to(&answer, from).await;
            }
        });
    }
}

/// Asks each upstream in turn; the first answer to `id`.
async fn ask_udp(query: &[u8], id: [u8; 2], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; MAX_UDP_MESSAGE];
    for upstream in upstreams {
        let local = match upstream {
            SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
        };
        let Ok(socket) = UdpSocket::bind(local).await else {
            continue;
        };
        if socket.connect(upstream).await.is_err() || socket.send(query).await.is_err() {
            continue;
        }
        let wait = tokio::time::timeout(UPSTREAM_WAIT, async {
            loop {
                match socket.recv(&mut buf).await {
                    Ok(n) if buf.get(..n).is_some_and(|m| answers(m, id)) => return Some(n),
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
        })
        .await;
        if let Ok(Some(n)) = wait {
            return buf.get(..n).map(<[u8]>::to_vec);
        }
    }
    None
}

async fn serve_tcp(listener: TcpListener, pool: (Ipv4Addr, u8), upstreams: Arc<[SocketAddr]>) {
    let slots = Arc::new(Semaphore::new(MAX_TCP));
    loop {
        let (mut client, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "DNS forwarder: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !in_pool(from.ip(), pool) {
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let upstreams = upstreams.clone();
        tokio::spawn(async move {
            let _slot = slot;
            for upstream in upstreams.iter() {
                let connected =
                    tokio::time::timeout(UPSTREAM_WAIT, TcpStream::connect(upstream)).await;
                if let Ok(Ok(mut up)) = connected {
                    let _ = tokio::time::timeout(
                        TCP_LIFETIME,
                        tokio::io::copy_bidirectional(&mut client, &mut up),
                    )
                    .await;
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn upstreams_are_the_usable_nameservers() {
        let text = "# x\nnameserver 127.0.0.53\nnameserver 10.77.0.1\nnameserver fe80::1%eth0\n\
                    nameserver 2001:db8::53\nsearch lan\nnameserver 127.0.0.53\nnameserver\n";
        assert_eq!(
            upstreams_of(text, "10.77.0.1".parse().unwrap()),
            vec![
                "127.0.0.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap()
            ]
        );
        assert!(upstreams_of("search lan\n", "10.77.0.1".parse().unwrap()).is_empty());
    }

    #[test]
    fn pool_membership_and_message_shapes() {
        let pool = (Ipv4Addr::new(10, 77, 0, 0), 24);
        assert!(in_pool("10.77.0.9".parse().unwrap(), pool));
        assert!(!in_pool("10.77.1.9".parse().unwrap(), pool));
        assert!(!in_pool("::1".parse().unwrap(), pool));
        let mut q = [0u8; 12];
        q[0] = 0xab;
        q[1] = 0xcd;
        assert_eq!(query_id(&q), Some([0xab, 0xcd]));
        assert_eq!(query_id(&q[..11]), None);
        let mut r = q;
        r[2] = 0x81;
        assert_eq!(query_id(&r), None);
        assert!(answers(&r, [0xab, 0xcd]));
        assert!(!answers(&r, [0xab, 0xce]));
        assert!(!answers(&q, [0xab, 0xcd]));
    }

    /// A stand-in upstream: answers every query with its id and QR set.
    async fn echo_upstream() -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                let mut answer = buf[..n].to_vec();
                answer[2] |= 0x80;
                answer.extend_from_slice(b"answer");
                let _ = s.send_to(&answer, from).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn forwards_for_the_pool_only_and_skips_a_dead_upstream() {
        let dead = {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            s.local_addr().unwrap()
        };
        let live = echo_upstream().await;
        let fwd = Forwarder::start_on(
            "127.0.0.1:0".parse().unwrap(),
            (Ipv4Addr::new(127, 0, 0, 0), 8),
            vec![dead, live],
        )
        .await
        .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut query = vec![0x12, 0x34, 0x01, 0x00];
        query.extend_from_slice(&[0; 8]);
        client.send_to(&query, fwd.listen).await.unwrap();
        let mut buf = [0u8; 512];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(answers(&buf[..n], [0x12, 0x34]));
        assert!(buf[..n].ends_with(b"answer"));

        // Not from the pool: no answer.
        let outsider = Forwarder::start_on(
            "127.0.0.1:0".parse().unwrap(),
            (Ipv4Addr::new(10, 77, 0, 0), 24),
            vec![live],
        )
        .await
        .unwrap();
        client.send_to(&query, outsider.listen).await.unwrap();
        let got =
            tokio::time::timeout(Duration::from_millis(500), client.recv_from(&mut buf)).await;
        assert!(got.is_err(), "a source outside the pool was answered");
    }
}
