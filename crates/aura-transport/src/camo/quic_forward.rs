//! The forwarded decoy on the QUIC carrier: a stranger's QUIC flow goes, untouched, to the
//! real site's UDP port, as its TCP connections go to the site's TLS port.
//!
//! quinn cannot hand a connection over once it has read its Initial, so the decision is
//! made below quinn, on the socket ([`ForwardSocket`], an [`AsyncUdpSocket`]):
//!
//! - a long-header Initial from an address with no flow is checked for the knock
//!   ([`QuicKnock`]). With one, its address is a member's for [`MEMBER_TTL`] (later
//!   Initials of the same handshake, a Retry's new Initial) and goes to quinn. Without,
//!   its address gets a flow to the upstream;
//! - every datagram from an address with a flow goes to the upstream, from a socket of
//!   its own, and every datagram the upstream answers goes back from the carrier's port,
//!   so the stranger sees the site's certificate and pages, and its own address is what
//!   the site sees come from this server;
//! - anything else (a member's later packets) goes to quinn.
//!
//! A flow ends when the upstream has been silent for [`FLOW_IDLE`]. Flows are capped in
//! total and per source address; over a cap, a stranger's datagrams are dropped, as an
//! overloaded server drops them. While the upstream cannot be reached, strangers get
//! silence, which is what a site whose HTTP/3 is down gives (browsers go on over TCP).

use std::collections::HashMap;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::net::UdpSocket;
use tokio::time::timeout;

use super::quic_knock::QuicKnock;

/// How long a knocked address stays a member's before its Initials are checked again.
pub const MEMBER_TTL: Duration = Duration::from_secs(30);
/// A stranger's flow whose upstream has said nothing for this long ends (HTTP/3 servers
/// close idle connections after 30 to 60 s).
pub const FLOW_IDLE: Duration = Duration::from_secs(60);
/// Strangers' flows at once, in all.
pub const MAX_FLOWS: usize = 1024;
/// Strangers' flows at once from one IP address.
pub const MAX_FLOWS_PER_IP: usize = 16;
/// Members' addresses remembered at once (beyond it, the oldest go first).
const MAX_MEMBERS: usize = 4096;
/// The largest datagram relayed back from the upstream.
const RELAY_BUFFER: usize = 4096;

/// The destination connection id of a QUIC long-header Initial packet (RFC 9000 §17.2.2),
/// or `None` for any other packet.
pub fn initial_dcid(d: &[u8]) -> Option<&[u8]> {
    let first = *d.first()?;
    // Long header, fixed bit, type Initial (0b00).
    if first & 0xf0 != 0xc0 {
        return None;
    }
    let version = u32::from_be_bytes(d.get(1..5)?.try_into().ok()?);
    if version == 0 {
        return None;
    }
    let len = usize::from(*d.get(5)?);
    d.get(6..6 + len)
}

/// Where a datagram goes.
enum Route {
    Quinn,
    Upstream(Arc<UdpSocket>),
    Drop,
}

struct Tables {
    /// Knocked addresses and when they knocked.
    members: HashMap<SocketAddr, Instant>,
    /// Strangers' flows to the upstream.
    flows: HashMap<SocketAddr, Arc<UdpSocket>>,
}

struct Shared {
    inner: Arc<dyn AsyncUdpSocket>,
    knock: Arc<QuicKnock>,
    upstream: SocketAddr,
    tables: Mutex<Tables>,
    /// Strangers' flows open, readable without the lock: while there are none, a
    /// member's packets (not Initials) go to quinn without taking it.
    flows: std::sync::atomic::AtomicUsize,
}

/// The QUIC carrier's socket with a forwarded decoy (see the module docs).
pub struct ForwardSocket {
    shared: Arc<Shared>,
}

impl fmt::Debug for ForwardSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardSocket")
            .field("upstream", &self.shared.upstream)
            .finish_non_exhaustive()
    }
}

impl ForwardSocket {
    /// Wraps `inner` (the carrier's socket, wrapped for quinn's runtime): knocked Initials
    /// by `knock` go to quinn, strangers to `upstream`.
    pub fn new(
        inner: Arc<dyn AsyncUdpSocket>,
        knock: Arc<QuicKnock>,
        upstream: SocketAddr,
    ) -> Arc<Self> {
        Arc::new(Self {
            shared: Arc::new(Shared {
                inner,
                knock,
                upstream,
                tables: Mutex::new(Tables {
                    members: HashMap::new(),
                    flows: HashMap::new(),
                }),
                flows: std::sync::atomic::AtomicUsize::new(0),
            }),
        })
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn route(self: &Arc<Self>, from: SocketAddr, dst_ip: Option<IpAddr>, d: &[u8]) -> Route {
        use std::sync::atomic::Ordering;
        if self.flows.load(Ordering::Relaxed) == 0 && initial_dcid(d).is_none() {
            return Route::Quinn;
        }
        let mut t = self.lock();
        if let Some(flow) = t.flows.get(&from) {
            return Route::Upstream(flow.clone());
        }
        let Some(dcid) = initial_dcid(d) else {
            return Route::Quinn;
        };
        let now = Instant::now();
        if t.members
            .get(&from)
            .is_some_and(|at| now.duration_since(*at) < MEMBER_TTL)
        {
            return Route::Quinn;
        }
        if self.knock.check(dcid).is_ok() {
            if t.members.len() >= MAX_MEMBERS {
                t.members
                    .retain(|_, at| now.duration_since(*at) < MEMBER_TTL);
                if t.members.len() >= MAX_MEMBERS
                    && let Some(oldest) =
                        t.members.iter().min_by_key(|(_, at)| **at).map(|(a, _)| *a)
                {
                    t.members.remove(&oldest);
                }
            }
            t.members.insert(from, now);
            return Route::Quinn;
        }
        let same_ip = t.flows.keys().filter(|a| a.ip() == from.ip()).count();
        if t.flows.len() >= MAX_FLOWS || same_ip >= MAX_FLOWS_PER_IP {
            return Route::Drop;
        }
        match self.open_flow() {
            Ok(sock) => {
                t.flows.insert(from, sock.clone());
                self.flows
                    .store(t.flows.len(), std::sync::atomic::Ordering::Relaxed);
                drop(t);
                tokio::spawn(relay_back(self.clone(), sock.clone(), from, dst_ip));
                Route::Upstream(sock)
            }
            Err(_) => Route::Drop,
        }
    }

    /// A socket of the flow's own, connected to the upstream.
    fn open_flow(&self) -> io::Result<Arc<UdpSocket>> {
        let any: SocketAddr = match self.upstream {
            SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let s = std::net::UdpSocket::bind(any)?;
        s.connect(self.upstream)?;
        s.set_nonblocking(true)?;
        Ok(Arc::new(UdpSocket::from_std(s)?))
    }
}

/// Sends what the upstream answers on `sock` back to `client`, from the carrier's port,
/// until the upstream has been silent for [`FLOW_IDLE`]; then ends the flow.
async fn relay_back(
    shared: Arc<Shared>,
    sock: Arc<UdpSocket>,
    client: SocketAddr,
    src_ip: Option<IpAddr>,
) {
    let mut poller = shared.inner.clone().create_io_poller();
    let mut buf = vec![0u8; RELAY_BUFFER];
    while let Ok(Ok(n)) = timeout(FLOW_IDLE, sock.recv(&mut buf)).await {
        let t = Transmit {
            destination: client,
            ecn: None,
            contents: &buf[..n],
            segment_size: None,
            src_ip,
        };
        loop {
            match shared.inner.try_send(&t) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                _ => break,
            }
        }
    }
    let mut t = shared.lock();
    if t.flows.get(&client).is_some_and(|s| Arc::ptr_eq(s, &sock)) {
        t.flows.remove(&client);
        shared
            .flows
            .store(t.flows.len(), std::sync::atomic::Ordering::Relaxed);
    }
}

impl AsyncUdpSocket for ForwardSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.shared.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.shared.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            let n = match self.shared.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            let mut kept = 0;
            for i in 0..n.min(bufs.len()).min(meta.len()) {
                let m = meta[i];
                let len = m.len.min(bufs[i].len());
                let route = self.shared.route(m.addr, m.dst_ip, &bufs[i][..len]);
                match route {
                    Route::Quinn => {
                        if kept != i {
                            let (head, tail) = bufs.split_at_mut(i);
                            let dst = &mut head[kept];
                            if dst.len() < len {
                                continue;
                            }
                            dst[..len].copy_from_slice(&tail[0][..len]);
                            meta[kept] = m;
                        }
                        kept += 1;
                    }
                    Route::Upstream(sock) => {
                        let stride = m.stride.max(1);
                        for seg in bufs[i][..len].chunks(stride) {
                            // A full queue drops the datagram, as the network would.
                            let _ = sock.try_send(seg);
                        }
                    }
                    Route::Drop => {}
                }
            }
            if kept > 0 {
                return Poll::Ready(Ok(kept));
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.shared.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.shared.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.shared.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_dcid_reads_initials_only() {
        let mut p = vec![0xc3, 0, 0, 0, 1, 4, 9, 8, 7, 6, 0, 0];
        assert_eq!(initial_dcid(&p), Some(&[9u8, 8, 7, 6][..]));
        // Version negotiation (version 0), Handshake (type 2), short header: not Initials.
        p[4] = 0;
        assert_eq!(initial_dcid(&p), None);
        p[4] = 1;
        p[0] = 0xe3;
        assert_eq!(initial_dcid(&p), None);
        p[0] = 0x43;
        assert_eq!(initial_dcid(&p), None);
        // Truncated.
        assert_eq!(initial_dcid(&[0xc3, 0, 0, 0, 1, 20, 1, 2]), None);
        assert_eq!(initial_dcid(&[]), None);
    }
}
