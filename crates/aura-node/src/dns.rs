//! DNS relays: the server's forwarder and the client's stub share this code.
//!
//! - **The server's forwarder.** When `[server] dns` is not set, clients are told to use
//!   the server's own tunnel address; a [`Relay`] answers there (UDP and TCP port 53) for
//!   sources in the pool, passing each query to the resolvers of the server host's
//!   `/etc/resolv.conf` and the answer back.
//! - **The client's stub.** While the client manages DNS the system asks [`STUB`] (a
//!   loopback address); a [`Relay`] there passes queries to the tunnel's resolvers and
//!   shows each answer to the route book (domain split rules) before handing it back.
//!
//! UDP: each query goes out from a fresh socket on a random port (so an off-path
//! attacker must guess both the port and the query id to spoof an answer), to each
//! upstream in turn until one answers with the query's id, within [`UPSTREAM_WAIT`]
//! each. TCP: each length-prefixed query of a connection is asked over TCP the same way,
//! the connection living at most [`TCP_LIFETIME`]. At most [`MAX_UDP_IN_FLIGHT`] queries
//! and [`MAX_TCP`] connections at once: more are dropped (the asking resolver retries).
//! Queries are not logged.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::DaemonError;

/// The DNS port.
pub const PORT: u16 = 53;
/// Where the client's stub answers.
pub const STUB: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 153);
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

/// Who may ask a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Askers {
    /// Sources in this IPv4 network (the server's pool).
    Pool(Ipv4Addr, u8),
    /// Loopback sources (the client host's own programs).
    Loopback,
}

impl Askers {
    fn allow(self, addr: IpAddr) -> bool {
        match self {
            Self::Loopback => addr.is_loopback(),
            Self::Pool(network, prefix) => {
                let IpAddr::V4(a) = addr else { return false };
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(prefix.min(32)))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(network) & mask
            }
        }
    }
}

/// The resolvers a relay asks, changeable while it runs.
pub type Upstreams = Arc<RwLock<Vec<SocketAddr>>>;

/// What a relay does with each answer before handing it back (awaited).
pub type AnswerHook =
    Arc<dyn Fn(Vec<u8>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

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

/// What a relay needs per query.
#[derive(Clone)]
struct Shared {
    askers: Askers,
    upstreams: Upstreams,
    hook: Option<AnswerHook>,
}

impl Shared {
    fn upstreams(&self) -> Vec<SocketAddr> {
        self.upstreams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn show(&self, answer: &[u8]) {
        if let Some(hook) = &self.hook {
            hook(answer.to_vec()).await;
        }
    }
}

/// A running relay; its tasks end when it is dropped.
#[derive(Debug)]
pub struct Relay {
    tasks: JoinSet<()>,
    /// Where it answers.
    pub listen: SocketAddr,
}

impl Relay {
    /// Binds UDP and TCP `listen` and starts answering `askers` with what `upstreams`
    /// answer, each answer shown to `hook` first.
    ///
    /// # Errors
    /// [`DaemonError::Dns`] naming the address when a socket cannot be bound.
    pub async fn start(
        listen: SocketAddr,
        askers: Askers,
        upstreams: Upstreams,
        hook: Option<AnswerHook>,
    ) -> Result<Self, DaemonError> {
        let bind_error = |proto: &str, e: std::io::Error| {
            DaemonError::Dns(format!(
                "cannot serve DNS on {listen}/{proto}: {e}; another resolver may hold the port"
            ))
        };
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(|e| bind_error("udp", e))?;
        let listen = udp.local_addr().map_err(|e| bind_error("udp", e))?;
        let tcp = TcpListener::bind(listen)
            .await
            .map_err(|e| bind_error("tcp", e))?;
        let shared = Shared {
            askers,
            upstreams,
            hook,
        };
        let mut tasks = JoinSet::new();
        tasks.spawn(serve_udp(Arc::new(udp), shared.clone()));
        tasks.spawn(serve_tcp(tcp, shared));
        Ok(Self { tasks, listen })
    }

    /// Stops answering.
    pub fn stop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Shared) {
    let slots = Arc::new(Semaphore::new(MAX_UDP_IN_FLIGHT));
    let mut buf = vec![0u8; MAX_UDP_MESSAGE];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "DNS relay: receive failed");
                continue;
            }
        };
        let Some(query) = buf.get(..n) else { continue };
        let Some(id) = query_id(query) else { continue };
        if !shared.askers.allow(from.ip()) {
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("DNS relay busy: query dropped");
            continue;
        };
        let query = query.to_vec();
        let socket = socket.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Some(answer) = ask_udp(&query, id, &shared.upstreams()).await {
                shared.show(&answer).await;
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

/// One length-prefixed DNS message from `s`; `None` at the end or on a bad one.
async fn read_framed(s: &mut TcpStream) -> Option<Vec<u8>> {
    let len = usize::from(s.read_u16().await.ok()?);
    let mut m = vec![0u8; len];
    s.read_exact(&mut m).await.ok()?;
    Some(m)
}

async fn write_framed(s: &mut TcpStream, m: &[u8]) -> Option<()> {
    let len = u16::try_from(m.len()).ok()?;
    let mut out = Vec::with_capacity(m.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(m);
    s.write_all(&out).await.ok()
}

/// Asks each upstream over TCP in turn; the first answer to `id`.
async fn ask_tcp(query: &[u8], id: [u8; 2], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for upstream in upstreams {
        let asked = tokio::time::timeout(UPSTREAM_WAIT, async {
            let mut up = TcpStream::connect(upstream).await.ok()?;
            write_framed(&mut up, query).await?;
            read_framed(&mut up).await
        })
        .await;
        if let Ok(Some(answer)) = asked
            && answers(&answer, id)
        {
            return Some(answer);
        }
    }
    None
}

async fn serve_tcp(listener: TcpListener, shared: Shared) {
    let slots = Arc::new(Semaphore::new(MAX_TCP));
    loop {
        let (mut client, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "DNS relay: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !shared.askers.allow(from.ip()) {
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(TCP_LIFETIME, async {
                while let Some(query) = read_framed(&mut client).await {
                    let Some(id) = query_id(&query) else { return };
                    let Some(answer) = ask_tcp(&query, id, &shared.upstreams()).await else {
                        return;
                    };
                    shared.show(&answer).await;
                    if write_framed(&mut client, &answer).await.is_none() {
                        return;
                    }
                }
            })
            .await;
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
        let pool = Askers::Pool(Ipv4Addr::new(10, 77, 0, 0), 24);
        assert!(pool.allow("10.77.0.9".parse().unwrap()));
        assert!(!pool.allow("10.77.1.9".parse().unwrap()));
        assert!(!pool.allow("::1".parse().unwrap()));
        assert!(Askers::Loopback.allow("127.0.0.1".parse().unwrap()));
        assert!(!Askers::Loopback.allow("10.77.0.9".parse().unwrap()));
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

    /// A stand-in upstream over TCP: answers each framed query the same way.
    async fn echo_upstream_tcp(addr: SocketAddr) {
        let l = TcpListener::bind(addr).await.unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    while let Some(mut q) = read_framed(&mut s).await {
                        q[2] |= 0x80;
                        q.extend_from_slice(b"answer");
                        write_framed(&mut s, &q).await;
                    }
                });
            }
        });
    }

    fn upstreams(list: Vec<SocketAddr>) -> Upstreams {
        Arc::new(RwLock::new(list))
    }

    #[tokio::test]
    async fn relays_for_its_askers_only_skipping_a_dead_upstream_and_shows_answers() {
        let dead = {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            s.local_addr().unwrap()
        };
        let live = echo_upstream().await;
        echo_upstream_tcp(live).await;
        let seen = Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
        let log = seen.clone();
        let hook: AnswerHook = Arc::new(move |answer| {
            let log = log.clone();
            Box::pin(async move { log.lock().unwrap().push(answer) })
        });
        let relay = Relay::start(
            "127.0.0.1:0".parse().unwrap(),
            Askers::Loopback,
            upstreams(vec![dead, live]),
            Some(hook),
        )
        .await
        .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut query = vec![0x12, 0x34, 0x01, 0x00];
        query.extend_from_slice(&[0; 8]);
        client.send_to(&query, relay.listen).await.unwrap();
        let mut buf = [0u8; 512];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(answers(&buf[..n], [0x12, 0x34]));
        assert!(buf[..n].ends_with(b"answer"));
        assert_eq!(seen.lock().unwrap().as_slice(), &[buf[..n].to_vec()]);

        // Over TCP, two queries on one connection (the dead upstream refuses TCP).
        let mut tcp = TcpStream::connect(relay.listen).await.unwrap();
        for id in [[0x00, 0x01], [0x00, 0x02]] {
            let mut q = query.clone();
            q[..2].copy_from_slice(&id);
            write_framed(&mut tcp, &q).await.unwrap();
            let a = tokio::time::timeout(Duration::from_secs(5), read_framed(&mut tcp))
                .await
                .unwrap()
                .unwrap();
            assert!(answers(&a, id) && a.ends_with(b"answer"));
        }
        assert_eq!(seen.lock().unwrap().len(), 3);

        // Not among the askers: no answer.
        let outsider = Relay::start(
            "127.0.0.1:0".parse().unwrap(),
            Askers::Pool(Ipv4Addr::new(10, 77, 0, 0), 24),
            upstreams(vec![live]),
            None,
        )
        .await
        .unwrap();
        client.send_to(&query, outsider.listen).await.unwrap();
        let got =
            tokio::time::timeout(Duration::from_millis(500), client.recv_from(&mut buf)).await;
        assert!(got.is_err(), "a source outside the pool was answered");
    }
}
