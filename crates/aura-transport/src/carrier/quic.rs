//! The QUIC carrier: real QUIC v1 (quinn) with an outer TLS 1.3 handshake and ALPN "h3",
//! turned into a [`DatagramLink`] on both sides.
//!
//! # Mapping of Aura datagrams
//!
//! - **One bidirectional stream** carries every Aura datagram that is not a data packet
//!   (handshake fragments, cookie replies, alerts: types 1–4 and 6), framed as
//!   `u16_be length || bytes` (length 1..=65535). The client opens it and writes first; the
//!   server accepts it. The stream is reliable and ordered, and a full inbound queue holds
//!   the peer back through QUIC flow control, so stream frames are never dropped here.
//! - **Data packets** (type 5) ride QUIC DATAGRAM frames (RFC 9221), so one lost packet
//!   never holds up the others. A data packet larger than the connection's current
//!   datagram limit (cached by the sender, refreshed every [`SIZE_REFRESH_PACKETS`] packets
//!   and whenever the sender goes idle) or refused by quinn as too large travels on the
//!   stream instead; the connection is never dropped for it ([`QuicStats::stream_fallbacks`]).
//! - **Queues.** Outbound, a full quinn datagram queue ([`DATAGRAM_SEND_BUFFER`]) makes the
//!   writer wait, which fills the link's outbound queue, where the driver drops. Inbound, a
//!   full link queue makes the datagram reader wait while quinn buffers up to
//!   [`DATAGRAM_RECEIVE_BUFFER`] bytes and then drops the oldest. Every queue is bounded;
//!   bursts are absorbed rather than dropped at the first full queue.
//!
//! # Datagram size
//!
//! The transport starts at [`INITIAL_MTU`] (1400-byte UDP payloads) with path MTU
//! discovery on, so the datagram limit is usable for a ~1300-byte inner packet from the
//! first packet. Observed on loopback (IPv4, 2 vCPU test machine, quinn 0.11.12):
//! `max_datagram_size()` is **1362** right after the handshake and **1414** two seconds
//! later, once MTU discovery has probed up to quinn's default upper bound of 1452 (test
//! `observed_max_datagram_size`). Quinn's default initial MTU of 1200 would give 1162.
//!
//! # Robustness (server side)
//!
//! - Non-QUIC bytes on the port are discarded by quinn.
//! - At most [`MAX_HANDSHAKES_PER_SOURCE`] connections per source address (IPv6: per /64)
//!   and [`MAX_HANDSHAKES_IN_FLIGHT`] in all may be between the first packet and the opening
//!   of their stream; beyond that new connections are refused (QUIC `CONNECTION_REFUSED`).
//!   Above [`RETRY_ABOVE`] handshakes in flight, sources that have not proven their address
//!   are first sent a stateless Retry.
//! - A connection whose handshake, stream and first complete stream frame do not arrive
//!   within [`QuicOptions::handshake_timeout`] is closed; only then is it handed over as a
//!   link (that frame queued), so a probe that sends no Aura frame never reaches the
//!   driver; one that does is closed by the driver unless an Aura connection is
//!   established over it within `driver::UNAUTHENTICATED_LINK_TIMEOUT`. Only clients send
//!   QUIC keep-alives. Every connection runs in its own task.
//! - A stream frame of length zero or whose first byte is not an Aura packet type (1..=6)
//!   closes the connection; a DATAGRAM frame that is not a data packet is dropped.
//! - The server allows the client one bidirectional stream and no unidirectional stream;
//!   the client allows the server none.
//!
//! When either side closes (or the idle timeout fires) the link's inbound channel ends;
//! dropping the link's outbound sender closes the connection.
//!
//! # Outer certificate
//!
//! The client accepts any outer certificate (the verifier of [`super::tls`]): the inner
//! Aura handshake authenticates both sides, the outer layer is camouflage and transport.
//! See [`super::tls::client_config`].
//!
//! # Counters
//!
//! Each listener counts its connections' events in its own [`QuicCounters`]
//! ([`QuicListener::stats`]), so a process with several listeners tells them apart. A
//! client connection counts in the set given to [`connect_counted`] (its own with
//! [`connect`]).
//!
//! ```no_run
//! # async fn demo(outer: aura_transport::carrier::tls::OuterIdentity) -> Result<(), aura_transport::TransportError> {
//! use aura_transport::carrier::quic::{self, QuicOptions};
//! let (tx, mut accepted) = tokio::sync::mpsc::channel(16);
//! let listener = quic::listen("127.0.0.1:0".parse().unwrap(), outer.cert_chain, outer.key,
//!     QuicOptions::default(), tx).await?;
//! let client = quic::connect(listener.local_addr(), "www.example.com",
//!     &QuicOptions::default()).await?;
//! client.outbound.send(bytes::BytesMut::from(&[1u8, 0, 0][..])).await.ok();
//! let server_side = accepted.recv().await;
//! println!("{:?}", listener.stats());
//! # Ok(()) }
//! ```

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aura_proto::wire::PacketType;
use bytes::{Bytes, BytesMut};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{
    Connection, ConnectionError, Endpoint, EndpointConfig, IdleTimeout, MtuDiscoveryConfig,
    RecvStream, Runtime, SendDatagramError, SendStream, TokioRuntime, TransportConfig, VarInt,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, BufReader};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::time::{Instant, timeout, timeout_at};

use crate::camo::QuicCamo;
use crate::camo::decoy::Site;
use crate::camo::quic_forward::ForwardSocket;
use crate::carrier::Carrier;
use crate::carrier::limit::{HandshakeLimiter, HandshakeSlot};
use crate::carrier::link::{BINDING_LABEL, DatagramLink, LINK_QUEUE, carve};
use crate::carrier::tls::{self, OuterIdentity};
use crate::carrier::udp;
use crate::error::{ConfigError, OuterTlsError, TransportError};

/// The ALPN protocol offered and accepted by default (HTTP/3).
pub const QUIC_ALPN: &[u8] = b"h3";
/// Default [`QuicOptions::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`QuicOptions::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Default [`QuicOptions::keep_alive`].
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Most DATAGRAM frames a connection's reader takes from quinn at one wake-up.
const READ_BATCH: usize = 64;
/// Server: connections allowed between their first packet and their first stream, all
/// sources together.
pub const MAX_HANDSHAKES_IN_FLIGHT: usize = 1024;
/// Server: connections allowed between their first packet and their first stream from one
/// source address (IPv6: one /64).
pub const MAX_HANDSHAKES_PER_SOURCE: usize = 20;
/// Server: above this many handshakes in flight, a source whose address is not yet
/// validated is sent a stateless Retry before any state is kept for it.
pub const RETRY_ABOVE: usize = 256;
/// Initial UDP payload size, in bytes (quinn's default is 1200; MTU discovery then probes
/// upwards from here and falls back on black holes).
pub const INITIAL_MTU: u16 = 1400;
/// Largest DATAGRAM frame payload quinn accepts right after the handshake, before MTU
/// discovery has raised the limit: [`INITIAL_MTU`] less the short header, packet number,
/// frame type and AEAD tag (observed, test `observed_max_datagram_size`). The tunnel MTU
/// arithmetic in aura-config is built on it.
pub const EARLY_DATAGRAM_MAX: usize = 1362;
/// Bytes of received DATAGRAM frames quinn buffers (while the link's inbound queue is
/// full) before dropping the oldest. 1 MiB held 1.5 MiB less at each end's peak for the
/// same bulk throughput, but lost 17 % of a 4.9 MB burst sent without pacing (test
/// `exchange_10k_datagrams_each_way`, under CI's load); 4 MiB holds it
/// (docs/PERFORMANCE.md).
pub const DATAGRAM_RECEIVE_BUFFER: usize = 4 << 20;
/// Bytes of DATAGRAM frames quinn queues for sending; a full queue makes the sender wait,
/// which backs up into the link's outbound queue (and drops there). Kept at 1 MiB rather
/// than more so that a congested connection does not hide seconds of latency.
pub const DATAGRAM_SEND_BUFFER: usize = 1 << 20;
/// The sender re-reads the datagram limit after this many packets (and whenever idle).
pub const SIZE_REFRESH_PACKETS: u32 = 1024;
/// Largest Aura datagram one stream frame carries (the `u16` length prefix).
pub const MAX_FRAME_PAYLOAD: usize = u16::MAX as usize;

/// Requested UDP socket buffers, in bytes (best effort: the kernel may cap them).
const SOCKET_BUFFER: usize = 4 << 20;
/// Read buffer of the stream reader, in bytes (per connection: kept small; frames larger
/// than this are read straight into their own buffer).
const STREAM_READ_BUFFER: usize = 4 << 10;
/// Length of the frame header (`u16_be` length).
const FRAME_HEADER: usize = 2;

/// Request streams a server allows at once, as common HTTP/3 servers do.
const H3_BIDI_STREAMS: u32 = 100;
/// Unidirectional streams a server allows (HTTP/3 control, QPACK encoder and decoder).
const H3_UNI_STREAMS: u32 = 3;

/// Close codes, chosen from HTTP/3's (RFC 9114 §8.1) so a close looks like an h3 one.
const H3_NO_ERROR: u32 = 0x100;
const H3_FRAME_ERROR: u32 = 0x106;
const H3_REQUEST_REJECTED: u32 = 0x10b;

/// Settings of the QUIC carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicOptions {
    /// ALPN protocols, most preferred first (client offers them, server accepts them).
    pub alpn: Vec<Vec<u8>>,
    /// Client: deadline for the QUIC handshake. Server: deadline for the QUIC handshake,
    /// the opening of the client's stream and its first complete frame.
    pub handshake_timeout: Duration,
    /// QUIC idle timeout (the smaller of both sides' values applies).
    pub idle_timeout: Duration,
    /// Interval of QUIC keep-alive (PING) packets; zero disables them.
    pub keep_alive: Duration,
    /// The knock: a client puts it in its first destination connection id; a server
    /// requires it and shows everyone else the decoy (docs/PROTOCOL.md §12.6).
    pub camo: Option<QuicCamo>,
}

impl Default for QuicOptions {
    fn default() -> Self {
        QuicOptions {
            alpn: vec![QUIC_ALPN.to_vec()],
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            keep_alive: DEFAULT_KEEP_ALIVE,
            camo: None,
        }
    }
}

/// A copy of a [`QuicCounters`]: one listener's connections together, or the client
/// connections that share one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuicStats {
    /// Data packets sent on the stream because they did not fit a DATAGRAM frame.
    pub stream_fallbacks: u64,
    /// Outbound datagrams dropped because no frame can carry them (empty or over 64 KiB).
    pub unsendable_drops: u64,
    /// Inbound DATAGRAM frames dropped because they were not Aura data packets.
    pub foreign_datagrams: u64,
    /// Connections closed for a malformed stream frame.
    pub bad_frames: u64,
    /// Server: connections refused by the handshake caps.
    pub refused: u64,
    /// Server: stateless Retry packets sent.
    pub retries: u64,
    /// Server: connections closed for not completing handshake and stream in time.
    pub handshake_timeouts: u64,
}

/// The QUIC carrier's counters: one instance per listener ([`QuicListener::stats`]), shared
/// by all its connections; a client passes its own to [`connect_counted`].
#[derive(Debug, Default)]
pub struct QuicCounters {
    stream_fallbacks: AtomicU64,
    unsendable_drops: AtomicU64,
    foreign_datagrams: AtomicU64,
    bad_frames: AtomicU64,
    refused: AtomicU64,
    retries: AtomicU64,
    handshake_timeouts: AtomicU64,
}

impl QuicCounters {
    /// A copy of the counters.
    pub fn stats(&self) -> QuicStats {
        QuicStats {
            stream_fallbacks: self.stream_fallbacks.load(Ordering::Relaxed),
            unsendable_drops: self.unsendable_drops.load(Ordering::Relaxed),
            foreign_datagrams: self.foreign_datagrams.load(Ordering::Relaxed),
            bad_frames: self.bad_frames.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            handshake_timeouts: self.handshake_timeouts.load(Ordering::Relaxed),
        }
    }
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A running QUIC listener: its bound address and its counters. The listener runs until
/// the channel its links go to is closed; dropping this handle does not stop it.
#[derive(Debug, Clone)]
pub struct QuicListener {
    local_addr: SocketAddr,
    counters: Arc<QuicCounters>,
}

impl QuicListener {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A copy of this listener's counters (all its connections together).
    pub fn stats(&self) -> QuicStats {
        self.counters.stats()
    }

    /// The counters themselves, for reading later from another task.
    pub(crate) fn counters(&self) -> Arc<QuicCounters> {
        self.counters.clone()
    }
}

/// The QUIC transport parameters both sides use: datagrams on with generous buffers,
/// [`INITIAL_MTU`] plus MTU discovery, idle timeout from `opts`, keep-alive from `opts`
/// on clients only, and the
/// stream limits of the mapping (`server`: one bidirectional stream from the client).
fn transport_config(
    opts: &QuicOptions,
    server: bool,
) -> Result<Arc<TransportConfig>, TransportError> {
    let idle = IdleTimeout::try_from(opts.idle_timeout)
        .map_err(|_| TransportError::Config(ConfigError::QuicIdleTimeout))?;
    let mut t = TransportConfig::default();
    t.max_idle_timeout(Some(idle))
        // Only clients send keep-alives: a server that did would keep every idle
        // connection, a prober's included, alive for ever.
        .keep_alive_interval((!server && !opts.keep_alive.is_zero()).then_some(opts.keep_alive))
        .initial_mtu(INITIAL_MTU)
        .mtu_discovery_config(Some(MtuDiscoveryConfig::default()))
        .datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER))
        .datagram_send_buffer_size(DATAGRAM_SEND_BUFFER)
        // A server takes the streams an HTTP/3 client opens (requests, and control plus
        // two QPACK streams), as an h3 server advertises; the Aura client opens one.
        .max_concurrent_bidi_streams(VarInt::from_u32(if server { H3_BIDI_STREAMS } else { 0 }))
        .max_concurrent_uni_streams(VarInt::from_u32(if server { H3_UNI_STREAMS } else { 0 }));
    Ok(Arc::new(t))
}

/// The quinn server configuration: the outer TLS of [`tls::server_config`] (QUIC
/// restricts it to TLS 1.3) with `opts.alpn`, and this carrier's transport parameters.
///
/// # Errors
/// [`TransportError::Tls`] for an unusable certificate or key;
/// [`TransportError::Config`] for an out-of-range option.
pub fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    opts: &QuicOptions,
) -> Result<quinn::ServerConfig, TransportError> {
    server_config_slot(
        Arc::new(tls::CertSlot::new(OuterIdentity { cert_chain, key })?),
        opts,
    )
}

/// [`server_config`] presenting whatever `slot` holds when each handshake starts.
///
/// # Errors
/// As [`server_config`].
pub fn server_config_slot(
    slot: Arc<tls::CertSlot>,
    opts: &QuicOptions,
) -> Result<quinn::ServerConfig, TransportError> {
    let tls = tls::server_config_slot(slot, &opts.alpn)?;
    let crypto = QuicServerConfig::try_from(tls)
        .map_err(|e| TransportError::Tls(OuterTlsError::QuicServer(e)))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(transport_config(opts, true)?);
    Ok(cfg)
}

/// The quinn client configuration: the outer TLS of [`tls::client_config`] (any
/// outer certificate accepted, handshake signatures still checked; QUIC restricts it to
/// TLS 1.3) with `opts.alpn`, and this carrier's transport parameters.
///
/// # Errors
/// [`TransportError::Tls`] when the TLS configuration is unusable for QUIC (a bug);
/// [`TransportError::Config`] for an out-of-range option.
pub fn client_config(opts: &QuicOptions) -> Result<quinn::ClientConfig, TransportError> {
    let tls = tls::client_config_with(
        &opts.alpn,
        witnessing_provider(),
        opts.camo.is_some(),
        tls::HelloShape::Quic,
    )?;
    let crypto = QuicClientConfig::try_from(tls)
        .map_err(|e| TransportError::Tls(OuterTlsError::QuicClient(e)))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(transport_config(opts, false)?);
    if let Some(camo) = &opts.camo {
        let knock = camo.knock.clone();
        cfg.initial_dst_cid_provider(Arc::new(move || {
            let mut r = [0u8; 8];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
            quinn::ConnectionId::new(&knock.dcid(r))
        }));
    }
    Ok(cfg)
}

/// A UDP socket bound to `addr` with enlarged buffers (best effort).
fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn endpoint_on(
    socket: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
) -> io::Result<Endpoint> {
    endpoint_with(EndpointConfig::default(), socket, server)
}

fn endpoint_with(
    config: EndpointConfig,
    socket: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
) -> io::Result<Endpoint> {
    Endpoint::new(config, server, socket, Arc::new(TokioRuntime))
}

/// Binds a QUIC server endpoint on `addr` (UDP) and runs an accept loop task: every
/// connection whose QUIC handshake completes and whose first bidirectional stream opens
/// with a well-formed frame becomes a [`DatagramLink`] sent on `links` (that frame queued
/// on its inbound side). Returns the bound address and the listener's counters.
///
/// The loop stops accepting when `links` is closed; links already handed out live on.
///
/// # Errors
/// [`TransportError::Tls`] for an unusable certificate or key; [`TransportError::Bind`]
/// when `addr` cannot be bound; [`TransportError::Config`] for an out-of-range option.
pub async fn listen(
    addr: SocketAddr,
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    opts: QuicOptions,
    links: mpsc::Sender<DatagramLink>,
) -> Result<QuicListener, TransportError> {
    let slot = Arc::new(tls::CertSlot::new(OuterIdentity { cert_chain, key })?);
    listen_slot(addr, slot, opts, links, Vec::new()).await
}

/// [`listen`] presenting the certificate in `outer` (replaceable while it runs), unless a
/// served decoy's certificate stands in for it.
///
/// With more than one runtime in `runtimes` (a server's workers), the address is bound
/// by a `SO_REUSEPORT` group of as many sockets, steered by source as the UDP carrier's
/// ([`udp::bind_group`]), and socket `w` is served by its own QUIC endpoint on
/// `runtimes[w]`: a connection's outer layer runs on the runtime of the worker that
/// takes its link. A client that moves to an address of another worker loses its QUIC
/// connection there: that worker's endpoint answers with a stateless reset the client
/// accepts (the endpoints share one reset key), and the client reconnects. With one
/// runtime or none, one endpoint on it (on the current runtime when none).
///
/// # Errors
/// As [`listen`].
pub async fn listen_slot(
    addr: SocketAddr,
    outer: Arc<tls::CertSlot>,
    opts: QuicOptions,
    links: mpsc::Sender<DatagramLink>,
    runtimes: Vec<tokio::runtime::Handle>,
) -> Result<QuicListener, TransportError> {
    // With a served decoy every connection, knocked or not, presents the decoy's
    // certificate: one configuration, so nothing before the first packet after the
    // handshake tells them apart.
    let outer = match opts.camo.as_ref().and_then(|c| c.site.as_ref()) {
        Some(site) => {
            let (cert_chain, key) = site.identity();
            Arc::new(tls::CertSlot::new(OuterIdentity { cert_chain, key })?)
        }
        None => outer,
    };
    let cfg = server_config_slot(outer, &opts)?;
    let bind_err = |source| TransportError::Bind {
        carrier: Carrier::Quic,
        addr,
        source,
    };
    let sockets = bind_sockets(addr, runtimes.len()).map_err(bind_err)?;
    let forward = match opts.camo.as_ref().and_then(|c| c.forward.as_deref()) {
        Some(upstream) => Some(resolve_upstream(upstream).await?),
        None => None,
    };
    // One stateless-reset key and one connection ID key for every worker's endpoint: a
    // client that moved to an address another worker reads sends a connection ID that
    // worker finds valid (though unknown), and gets a reset it accepts (the token is the
    // one its own worker issued), so it closes at once and reconnects, not at its idle
    // timeout.
    let mut config = EndpointConfig::default();
    let cid_key = rand_core::RngCore::next_u64(&mut rand_core::OsRng);
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    // Every endpoint made before any accepts: an error leaves nothing running.
    let mut endpoints = Vec::with_capacity(sockets.len());
    for (w, socket) in sockets.into_iter().enumerate() {
        let runtime = crate::listen::runtime_of(&runtimes, w);
        // The endpoint's socket and driver belong to the runtime entered here.
        let _entered = runtime.map(tokio::runtime::Handle::enter);
        let endpoint = match (&opts.camo, forward) {
            (Some(camo), Some(upstream)) => {
                let inner = TokioRuntime.wrap_udp_socket(socket).map_err(bind_err)?;
                let socket = ForwardSocket::new(inner, camo.knock.clone(), upstream);
                Endpoint::new_with_abstract_socket(
                    config.clone(),
                    Some(cfg.clone()),
                    socket,
                    Arc::new(TokioRuntime),
                )
                .map_err(bind_err)?
            }
            _ => endpoint_with(config.clone(), socket, Some(cfg.clone())).map_err(bind_err)?,
        };
        endpoints.push((endpoint, runtime));
    }
    let local = match endpoints.first() {
        Some((e, _)) => e.local_addr().map_err(bind_err)?,
        None => return Err(bind_err(io::Error::from(io::ErrorKind::InvalidInput))),
    };
    let limiter = Arc::new(HandshakeLimiter::new(
        MAX_HANDSHAKES_PER_SOURCE,
        MAX_HANDSHAKES_IN_FLIGHT,
    ));
    let counters = Arc::new(QuicCounters::default());
    for (endpoint, runtime) in endpoints {
        let task = accept_loop(
            endpoint,
            opts.handshake_timeout,
            opts.camo.clone(),
            links.clone(),
            limiter.clone(),
            counters.clone(),
        );
        match runtime {
            Some(rt) => drop(rt.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }
    Ok(QuicListener {
        local_addr: local,
        counters,
    })
}

/// The listener's sockets on `addr`: one, or a steered group of `workers` when there are
/// more than one (see [`listen_slot`]), each with [`SOCKET_BUFFER`] buffers.
fn bind_sockets(addr: SocketAddr, workers: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    if workers <= 1 {
        return Ok(vec![bind_udp(addr)?]);
    }
    let group = udp::bind_group(addr, workers).map_err(|e| match e {
        TransportError::Bind { source, .. } => source,
        other => io::Error::other(other.to_string()),
    })?;
    group
        .into_iter()
        .map(|s| {
            let s = s.into_std()?;
            let r = socket2::SockRef::from(&s);
            let _ = r.set_recv_buffer_size(SOCKET_BUFFER);
            let _ = r.set_send_buffer_size(SOCKET_BUFFER);
            Ok(s)
        })
        .collect()
}

async fn accept_loop(
    endpoint: Endpoint,
    handshake_timeout: Duration,
    camo: Option<QuicCamo>,
    links: mpsc::Sender<DatagramLink>,
    limiter: Arc<HandshakeLimiter>,
    counters: Arc<QuicCounters>,
) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => return,
            },
            () = links.closed() => break,
        };
        if limiter.in_flight() >= RETRY_ABOVE
            && !incoming.remote_address_validated()
            && incoming.may_retry()
        {
            count(&counters.retries);
            if let Err(e) = incoming.retry() {
                e.into_incoming().refuse();
            }
            continue;
        }
        let Some(slot) = HandshakeLimiter::acquire(&limiter, incoming.remote_address().ip()) else {
            count(&counters.refused);
            incoming.refuse();
            continue;
        };
        // With a forwarded decoy the socket checked the knock, and strangers never got here.
        if let Some(camo) = &camo
            && camo.forward.is_none()
            && camo.knock.check(&incoming.orig_dst_cid()).is_err()
        {
            match &camo.site {
                Some(site) => {
                    tokio::spawn(serve_stranger(
                        incoming,
                        slot,
                        handshake_timeout,
                        site.clone(),
                    ));
                }
                None => incoming.ignore(),
            }
            continue;
        }
        tokio::spawn(serve_incoming(
            incoming,
            slot,
            handshake_timeout,
            links.clone(),
            counters.clone(),
        ));
    }
    // Refuse new connections; established ones keep the endpoint running until they end.
    endpoint.set_server_config(None);
}

/// The forwarded decoy's upstream address: the first `host:port` resolves to.
async fn resolve_upstream(upstream: &str) -> Result<SocketAddr, TransportError> {
    let bad = |problem: String| TransportError::DecoyUpstream {
        upstream: upstream.to_owned(),
        problem,
    };
    tokio::net::lookup_host(upstream)
        .await
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("resolves to no address".to_owned()))
}

/// A stranger's connection: the QUIC handshake, then the decoy's HTTP/3.
async fn serve_stranger(
    incoming: quinn::Incoming,
    slot: HandshakeSlot,
    handshake_timeout: Duration,
    site: Arc<Site>,
) {
    let Ok(connecting) = incoming.accept() else {
        return;
    };
    let Ok(Ok(conn)) = timeout(handshake_timeout, connecting).await else {
        return;
    };
    // Held while the decoy serves: the caps bound strangers' connections too.
    site.serve_h3(conn).await;
    drop(slot);
}

/// One server connection: QUIC handshake, first stream and frame, hand-off.
async fn serve_incoming(
    incoming: quinn::Incoming,
    slot: HandshakeSlot,
    handshake_timeout: Duration,
    links: mpsc::Sender<DatagramLink>,
    counters: Arc<QuicCounters>,
) {
    let deadline = Instant::now() + handshake_timeout;
    let Ok(connecting) = incoming.accept() else {
        return;
    };
    // On timeout, dropping `connecting` abandons (closes) the connection.
    let conn = match timeout_at(deadline, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(_)) => return,
        Err(_) => {
            count(&counters.handshake_timeouts);
            return;
        }
    };
    let (send, recv) = match timeout_at(deadline, conn.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(_)) => return,
        Err(_) => {
            count(&counters.handshake_timeouts);
            conn.close(VarInt::from_u32(H3_REQUEST_REJECTED), b"");
            return;
        }
    };
    let mut rd = BufReader::with_capacity(STREAM_READ_BUFFER, recv);
    let first = match timeout_at(deadline, read_frame(&mut rd)).await {
        Ok(Ok(frame)) => frame,
        Ok(Err(e)) => return close_for(&conn, &e, &counters),
        Err(_) => {
            count(&counters.handshake_timeouts);
            return close(&conn, H3_REQUEST_REJECTED);
        }
    };
    drop(slot);
    let binding = binding_of(&conn);
    let link = spawn_link(None, conn, send, rd, Some(first), counters, binding);
    // A refused or stalled hand-off drops the link, whose writer then closes the
    // connection.
    let _ = timeout(handshake_timeout, links.send(link)).await;
}

/// Connects to `addr` from an ephemeral UDP port of the same address family, with `sni`
/// as the outer server name (any outer certificate accepted), opens the stream and
/// returns the link. The QUIC handshake is bounded by [`QuicOptions::handshake_timeout`].
/// The connection's counters are its own; [`connect_counted`] shares a set.
///
/// The server sees the stream (and hands the link to its driver) once the first datagram
/// is sent on it.
///
/// # Errors
/// [`TransportError::Tls`] for an invalid `sni`; [`TransportError::Io`] when the socket
/// cannot be bound, the handshake fails (kind `ConnectionRefused`, `ConnectionReset`,
/// `Other`) or times out (`TimedOut`).
pub async fn connect(
    addr: SocketAddr,
    sni: &str,
    opts: &QuicOptions,
) -> Result<DatagramLink, TransportError> {
    connect_counted(addr, sni, opts, Arc::default()).await
}

/// [`connect`], counting this connection's events in `counters`.
///
/// # Errors
/// As [`connect`].
pub async fn connect_counted(
    addr: SocketAddr,
    sni: &str,
    opts: &QuicOptions,
    counters: Arc<QuicCounters>,
) -> Result<DatagramLink, TransportError> {
    let cfg = client_config(opts)?;
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let endpoint = endpoint_on(bind_udp(local)?, None)?;
    // The connection's ClientHello, with its key shares, is made inside `connect_with`,
    // on this thread: the hybrid share started there reports to this witness.
    let hybrid = Arc::new(AtomicBool::new(false));
    HYBRID_WITNESS.with(|w| *w.borrow_mut() = Some(hybrid.clone()));
    let connecting = endpoint.connect_with(cfg, addr, sni);
    HYBRID_WITNESS.with(|w| w.borrow_mut().take());
    let connecting = connecting.map_err(|e| match e {
        quinn::ConnectError::InvalidServerName(name) => {
            TransportError::Tls(OuterTlsError::InvalidServerName(name))
        }
        other => TransportError::Io(io::Error::other(format!("QUIC connect to {addr}: {other}"))),
    })?;
    let conn = timeout(opts.handshake_timeout, connecting)
        .await
        .map_err(|_| {
            TransportError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("QUIC handshake with {addr} timed out"),
            ))
        })?
        .map_err(|e| connection_error(addr, &e))?;
    let (send, recv) = conn
        .open_bi()
        .await
        .map_err(|e| connection_error(addr, &e))?;
    let rd = BufReader::with_capacity(STREAM_READ_BUFFER, recv);
    let binding = if hybrid.load(Ordering::Acquire) {
        binding_of(&conn)
    } else {
        None
    };
    Ok(spawn_link(
        Some(endpoint),
        conn,
        send,
        rd,
        None,
        counters,
        binding,
    ))
}

/// The outer session's exporter under [`BINDING_LABEL`] (docs/adr/0024). The client asks
/// for it only once its hybrid key share is known to have completed the key exchange;
/// the server, which quinn does not tell the group, attaches it to every link, and a
/// client offers the bound suite only after its own check.
fn binding_of(conn: &Connection) -> Option<[u8; aura_proto::BINDING_LEN]> {
    let mut out = [0u8; aura_proto::BINDING_LEN];
    conn.export_keying_material(&mut out, BINDING_LABEL, b"")
        .ok()
        .map(|()| out)
}

std::thread_local! {
    /// Where the hybrid key share of the connection being created reports (see
    /// [`connect_counted`]).
    static HYBRID_WITNESS: std::cell::RefCell<Option<Arc<AtomicBool>>> =
        const { std::cell::RefCell::new(None) };
}

fn hybrid_group() -> &'static dyn rustls::crypto::SupportedKxGroup {
    rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768
}

/// X25519MLKEM768 as the aws-lc-rs provider has it, except that a key exchange it starts
/// reports to the thread's [`HYBRID_WITNESS`] when it completes as the hybrid (not as its
/// X25519 half, which a server may pick from the same share). The ClientHello is
/// unchanged: same group, same shares.
#[derive(Debug)]
struct WitnessedHybrid;

static WITNESSED_HYBRID: WitnessedHybrid = WitnessedHybrid;

impl rustls::crypto::SupportedKxGroup for WitnessedHybrid {
    fn start(&self) -> Result<Box<dyn rustls::crypto::ActiveKeyExchange>, rustls::Error> {
        let inner = hybrid_group().start()?;
        let witness = HYBRID_WITNESS.with(|w| w.borrow_mut().take());
        Ok(Box::new(Witnessed { inner, witness }))
    }

    fn name(&self) -> rustls::NamedGroup {
        hybrid_group().name()
    }

    fn fips(&self) -> bool {
        hybrid_group().fips()
    }

    fn usable_for_version(&self, version: rustls::ProtocolVersion) -> bool {
        hybrid_group().usable_for_version(version)
    }
}

struct Witnessed {
    inner: Box<dyn rustls::crypto::ActiveKeyExchange>,
    witness: Option<Arc<AtomicBool>>,
}

impl rustls::crypto::ActiveKeyExchange for Witnessed {
    fn complete(
        self: Box<Self>,
        peer_pub_key: &[u8],
    ) -> Result<rustls::crypto::SharedSecret, rustls::Error> {
        let Witnessed { inner, witness } = *self;
        let secret = inner.complete(peer_pub_key)?;
        if let Some(w) = witness {
            w.store(true, Ordering::Release);
        }
        Ok(secret)
    }

    fn hybrid_component(&self) -> Option<(rustls::NamedGroup, &[u8])> {
        self.inner.hybrid_component()
    }

    fn complete_hybrid_component(
        self: Box<Self>,
        peer_pub_key: &[u8],
    ) -> Result<rustls::crypto::SharedSecret, rustls::Error> {
        self.inner.complete_hybrid_component(peer_pub_key)
    }

    fn pub_key(&self) -> &[u8] {
        self.inner.pub_key()
    }

    fn group(&self) -> rustls::NamedGroup {
        self.inner.group()
    }
}

/// The aws-lc-rs provider with [`WitnessedHybrid`] in place of its hybrid group.
fn witnessing_provider() -> rustls::crypto::CryptoProvider {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    for g in &mut p.kx_groups {
        if g.name() == hybrid_group().name() {
            *g = &WITNESSED_HYBRID;
        }
    }
    p
}

fn connection_error(addr: SocketAddr, e: &ConnectionError) -> TransportError {
    let kind = match e {
        ConnectionError::TimedOut => io::ErrorKind::TimedOut,
        ConnectionError::Reset => io::ErrorKind::ConnectionReset,
        ConnectionError::ConnectionClosed(_) | ConnectionError::ApplicationClosed(_) => {
            io::ErrorKind::ConnectionRefused
        }
        _ => io::ErrorKind::Other,
    };
    TransportError::Io(io::Error::new(
        kind,
        format!("QUIC connection with {addr}: {e}"),
    ))
}

/// Starts the three tasks of one connection (stream reader, datagram reader, writer) and
/// returns its link, with `first` already queued inbound. `endpoint` (client side) is kept
/// alive by the writer. The tasks count their events in `counters`.
fn spawn_link(
    endpoint: Option<Endpoint>,
    conn: Connection,
    send: SendStream,
    rd: BufReader<RecvStream>,
    first: Option<BytesMut>,
    counters: Arc<QuicCounters>,
    binding: Option<[u8; aura_proto::BINDING_LEN]>,
) -> DatagramLink {
    let (in_tx, in_rx) = mpsc::channel(LINK_QUEUE);
    let (out_tx, out_rx) = mpsc::channel(LINK_QUEUE);
    if let Some(first) = first {
        // The queue is new and empty: this cannot fail.
        let _ = in_tx.try_send(first);
    }
    let peer = conn.remote_address();
    tokio::spawn(read_stream(
        conn.clone(),
        rd,
        in_tx.clone(),
        counters.clone(),
    ));
    tokio::spawn(read_datagrams(conn.clone(), in_tx, counters.clone()));
    tokio::spawn(write_loop(endpoint, conn, send, out_rx, counters));
    DatagramLink {
        peer,
        inbound: in_rx,
        outbound: out_tx,
        binding,
    }
}

fn close(conn: &Connection, code: u32) {
    conn.close(VarInt::from_u32(code), b"");
}

/// Why a stream frame could not be read.
#[derive(Debug, PartialEq, Eq)]
enum FrameError {
    /// End of stream or connection lost.
    Ended,
    /// Zero length, or a first byte that is not an Aura packet type.
    Malformed,
}

/// Reads one `u16_be length || bytes` frame holding an Aura datagram.
async fn read_frame(rd: &mut BufReader<RecvStream>) -> Result<BytesMut, FrameError> {
    let mut header = [0u8; FRAME_HEADER];
    rd.read_exact(&mut header)
        .await
        .map_err(|_| FrameError::Ended)?;
    let len = usize::from(u16::from_be_bytes(header));
    if len == 0 {
        return Err(FrameError::Malformed);
    }
    let mut frame = BytesMut::zeroed(len);
    rd.read_exact(&mut frame)
        .await
        .map_err(|_| FrameError::Ended)?;
    if frame
        .first()
        .and_then(|&t| PacketType::from_u8(t))
        .is_none()
    {
        return Err(FrameError::Malformed);
    }
    Ok(frame)
}

/// Closes `conn` for a frame error (closing a closed connection is a no-op).
fn close_for(conn: &Connection, e: &FrameError, counters: &QuicCounters) {
    match e {
        FrameError::Ended => close(conn, H3_NO_ERROR),
        FrameError::Malformed => {
            count(&counters.bad_frames);
            close(conn, H3_FRAME_ERROR);
        }
    }
}

/// Stream frames to the link, waiting while its inbound queue is full (QUIC flow control
/// then holds the peer back). Ends, closing the connection, on a malformed frame, the end
/// of the stream, or a dropped link.
async fn read_stream(
    conn: Connection,
    mut rd: BufReader<RecvStream>,
    inbound: mpsc::Sender<BytesMut>,
    counters: Arc<QuicCounters>,
) {
    loop {
        let frame = match read_frame(&mut rd).await {
            Ok(frame) => frame,
            Err(e) => return close_for(&conn, &e, &counters),
        };
        if inbound.send(frame).await.is_err() {
            return close(&conn, H3_NO_ERROR);
        }
    }
}

/// DATAGRAM frames to the link, data packets only. While the link's inbound queue is
/// full this task waits and quinn keeps buffering received datagrams, up to
/// [`DATAGRAM_RECEIVE_BUFFER`] bytes, beyond which it drops the oldest: the queue is
/// bounded either way, and bursts are absorbed rather than dropped.
///
/// Each wake-up takes every datagram quinn already holds (up to [`READ_BATCH`]) and
/// copies them into one allocation ([`carve`]).
async fn read_datagrams(
    conn: Connection,
    inbound: mpsc::Sender<BytesMut>,
    counters: Arc<QuicCounters>,
) {
    let mut taken = Vec::with_capacity(READ_BATCH);
    let mut carved = Vec::with_capacity(READ_BATCH);
    while let Ok(first) = conn.read_datagram().await {
        taken.push(first);
        while taken.len() < READ_BATCH {
            // Ready at once or not at all: dropping the pending future loses nothing.
            match ready_now(conn.read_datagram()) {
                Some(Ok(d)) => taken.push(d),
                Some(Err(_)) | None => break,
            }
        }
        let before = taken.len();
        taken.retain(|d| d.first().is_some_and(|&t| PacketType::is_data(t)));
        for _ in taken.len()..before {
            count(&counters.foreign_datagrams);
        }
        carve(taken.iter().map(|d| &d[..]), &mut carved);
        taken.clear();
        for d in carved.drain(..) {
            if inbound.send(d).await.is_err() {
                return close(&conn, H3_NO_ERROR);
            }
        }
    }
}

/// `f`'s output if it is ready at its first poll; otherwise `None`, and `f` is dropped.
fn ready_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// What the writer does with one outbound datagram.
enum Sent {
    Done,
    /// Send it on the stream instead.
    Fallback(Bytes),
    /// The connection is gone.
    Lost,
}

/// The link's outbound queue to the connection; closes the connection when the link's
/// sender is dropped.
async fn write_loop(
    _endpoint: Option<Endpoint>,
    conn: Connection,
    mut send: SendStream,
    mut outbound: mpsc::Receiver<BytesMut>,
    counters: Arc<QuicCounters>,
) {
    let is_data = |p: &[u8]| p.first().is_some_and(|&t| PacketType::is_data(t));
    let mut max_datagram = conn.max_datagram_size().unwrap_or(0);
    let mut since_refresh = 0u32;
    // Grows to the largest frame sent, not more.
    let mut frame = Vec::new();
    loop {
        let packet = match outbound.try_recv() {
            Ok(p) => p,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                max_datagram = conn.max_datagram_size().unwrap_or(0);
                since_refresh = 0;
                tokio::select! {
                    p = outbound.recv() => match p {
                        Some(p) => p,
                        None => break,
                    },
                    _ = conn.closed() => return,
                }
            }
        };
        since_refresh += 1;
        if since_refresh >= SIZE_REFRESH_PACKETS {
            max_datagram = conn.max_datagram_size().unwrap_or(0);
            since_refresh = 0;
        }
        let packet = packet.freeze();
        let packet = if is_data(&packet) && packet.len() <= max_datagram {
            match send_datagram(&conn, packet).await {
                Sent::Done => continue,
                Sent::Lost => return,
                Sent::Fallback(p) => {
                    max_datagram = conn.max_datagram_size().unwrap_or(0);
                    count(&counters.stream_fallbacks);
                    p
                }
            }
        } else {
            if is_data(&packet) {
                count(&counters.stream_fallbacks);
            }
            packet
        };
        let Ok(len) = u16::try_from(packet.len()) else {
            count(&counters.unsendable_drops);
            continue;
        };
        if len == 0 {
            count(&counters.unsendable_drops);
            continue;
        }
        frame.clear();
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&packet);
        if send.write_all(&frame).await.is_err() {
            return;
        }
    }
    close(&conn, H3_NO_ERROR);
}

/// Sends one data packet as a DATAGRAM frame, waiting while quinn's datagram queue is full.
async fn send_datagram(conn: &Connection, packet: Bytes) -> Sent {
    // The clone shares the buffer, so that a refused packet can still go on the stream.
    let kept = packet.clone();
    match conn.send_datagram_wait(packet).await {
        Ok(()) => Sent::Done,
        Err(SendDatagramError::ConnectionLost(_)) => Sent::Lost,
        Err(
            SendDatagramError::TooLarge
            | SendDatagramError::UnsupportedByPeer
            | SendDatagramError::Disabled,
        ) => Sent::Fallback(kept),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn transport_limits() {
        assert!(transport_config(&QuicOptions::default(), true).is_ok());
        let huge = QuicOptions {
            idle_timeout: Duration::from_secs(u64::MAX / 4),
            ..QuicOptions::default()
        };
        assert!(transport_config(&huge, false).is_err());
    }
}
