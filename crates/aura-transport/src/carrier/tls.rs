//! The TLS-over-TCP carrier: outer TLS (1.3 preferred, 1.2 allowed) with ALPN
//! "h2"/"http/1.1", then Aura datagrams as length-prefixed frames, turned into a
//! [`DatagramLink`] on both sides.
//!
//! # Wire
//!
//! Inside the TLS stream each Aura datagram travels as `u16_be length || bytes`, length
//! 1..=65535. Nothing else is sent: before and during the outer handshake the connection
//! is plain TLS to the same server as any browser's, and afterwards only TLS records
//! carrying those frames cross the wire.
//!
//! # Robustness (server side)
//!
//! - The outer handshake must complete within [`TlsOptions::handshake_timeout`]
//!   (slow-loris, half-open TCP and non-TLS bytes are closed).
//! - After TLS, the first complete frame must arrive within the same timeout; only then is
//!   the connection handed to the driver as a link, with that frame queued. A zero length
//!   or a frame whose first byte is not an Aura packet type (1..=6) closes the connection at
//!   once, so a browser's `GET / HTTP/1.1` is closed without a reply.
//! - A link with no frame in either direction for [`TlsOptions::idle_timeout`] is closed.
//! - At most [`TlsOptions::max_handshakes_per_ip`] connections per source address (IPv6:
//!   per /64) and [`TlsOptions::max_handshakes`] in all may be in the pre-link phase; excess
//!   connections are closed as soon as they are accepted.
//! - Memory per connection is bounded: the reader buffers at most one maximal frame, the
//!   writer one batch, and both link queues hold [`LINK_QUEUE`] datagrams. A full inbound
//!   queue drops datagrams (this is a datagram carrier).
//!
//! When either side closes (end of stream, error, timeout, bad frame) the link's inbound
//! channel ends; dropping the link's outbound sender closes the connection.
//!
//! # Outer certificate
//!
//! The client accepts any outer certificate; see [`client_config`] for why that is safe.
//!
//! ```no_run
//! # async fn demo(outer: aura_transport::carrier::tls::OuterIdentity) -> Result<(), aura_transport::TransportError> {
//! use aura_transport::carrier::tls::{self, TlsOptions};
//! let (tx, mut accepted) = tokio::sync::mpsc::channel(16);
//! let addr = tls::listen("127.0.0.1:0".parse().unwrap(), outer, TlsOptions::default(), tx).await?;
//! let client = tls::connect(addr, "www.example.com", &TlsOptions::default()).await?;
//! client.outbound.send(bytes::BytesMut::from(&[1u8, 0, 0][..])).await.ok();
//! let server_side = accepted.recv().await;
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aura_proto::wire::PacketType;
use bytes::BytesMut;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::camo::TlsCamo;
use crate::camo::decoy::{Decoy, Prefixed};
use crate::camo::hello::{self, HelloError};
use crate::camo::tls_knock::{self, Prepared};
use crate::carrier::Carrier;
use crate::carrier::limit::{HandshakeLimiter, HandshakeSlot};
use crate::carrier::link::{BINDING_LABEL, DatagramLink, LINK_QUEUE, carve};
use crate::error::{OuterTlsError, TransportError};

/// ALPN protocols offered and accepted by default, as a browser and a web server would.
pub const DEFAULT_TLS_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// Default [`TlsOptions::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`TlsOptions::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Default [`TlsOptions::max_handshakes_per_ip`].
pub const DEFAULT_MAX_HANDSHAKES_PER_IP: usize = 20;
/// Default [`TlsOptions::max_handshakes`].
pub const DEFAULT_MAX_HANDSHAKES: usize = 1024;
/// Largest datagram a frame carries, in bytes (the `u16` length prefix).
pub const MAX_FRAME_PAYLOAD: usize = u16::MAX as usize;

/// Length of the frame header (`u16_be` length).
const FRAME_HEADER: usize = 2;
/// Initial reader buffer, in bytes; it grows to one maximal frame only when needed.
const READ_BUF_INITIAL: usize = 4096;
/// The writer stops collecting queued datagrams into one write beyond this many bytes.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// Time granted to send `close_notify` when a connection ends.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The outer certificate a server presents (Aura reuses its server certificate and key).
pub struct OuterIdentity {
    /// The certificate chain, end entity first.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The private key of the end-entity certificate.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for OuterIdentity {
    fn clone(&self) -> Self {
        OuterIdentity {
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for OuterIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OuterIdentity")
            .field("cert_chain_len", &self.cert_chain.len())
            .finish_non_exhaustive()
    }
}

/// Settings of the TLS-over-TCP carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// ALPN protocols, most preferred first (client offers them, server accepts them).
    pub alpn: Vec<Vec<u8>>,
    /// Deadline for the TCP connect plus outer TLS handshake, and (server) for the first
    /// complete frame after it.
    pub handshake_timeout: Duration,
    /// A link with no frame in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// Server: connections from one source address (IPv6: one /64) allowed in the
    /// handshake phase at once.
    pub max_handshakes_per_ip: usize,
    /// Server: connections allowed in the handshake phase at once, all sources together.
    pub max_handshakes: usize,
    /// The knock: a client sends it in its ClientHello; a server requires it and hands
    /// everything else to the decoy (docs/PROTOCOL.md §12.5). `None`: no knock.
    pub camo: Option<TlsCamo>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            alpn: DEFAULT_TLS_ALPN.iter().map(|p| p.to_vec()).collect(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_handshakes_per_ip: DEFAULT_MAX_HANDSHAKES_PER_IP,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            camo: None,
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The outer server configuration: TLS 1.3 and 1.2 with the aws-lc-rs provider (post-quantum
/// key exchange preferred), no client certificate, `alpn` accepted.
///
/// # Errors
/// [`TransportError::Tls`] ([`OuterTlsError::Certificate`]) when the certificate or key is
/// unusable.
pub fn server_config(
    outer: OuterIdentity,
    alpn: &[Vec<u8>],
) -> Result<Arc<ServerConfig>, TransportError> {
    server_config_slot(Arc::new(CertSlot::new(outer)?), alpn)
}

/// [`server_config`] presenting whatever `slot` holds when each handshake starts.
///
/// # Errors
/// [`TransportError::Tls`] when the provider cannot serve these protocol versions.
pub fn server_config_slot(
    slot: Arc<CertSlot>,
    alpn: &[Vec<u8>],
) -> Result<Arc<ServerConfig>, TransportError> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TransportError::Tls(OuterTlsError::ServerConfig(e)))?
        .with_no_client_auth()
        .with_cert_resolver(slot);
    cfg.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(cfg))
}

/// The outer certificate a TLS or QUIC listener presents, replaceable while it runs (a
/// reload): each new handshake takes the one in place when it starts; sessions already
/// made are not touched.
#[derive(Debug)]
pub struct CertSlot(std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>);

impl CertSlot {
    fn certified(outer: OuterIdentity) -> Result<Arc<rustls::sign::CertifiedKey>, TransportError> {
        rustls::sign::CertifiedKey::from_der(outer.cert_chain, outer.key, &provider())
            .map(Arc::new)
            .map_err(|e| TransportError::Tls(OuterTlsError::Certificate(e)))
    }

    /// A slot holding `outer`.
    ///
    /// # Errors
    /// [`TransportError::Tls`] when the key is unusable or does not match the certificate.
    pub fn new(outer: OuterIdentity) -> Result<Self, TransportError> {
        Ok(Self(std::sync::RwLock::new(Self::certified(outer)?)))
    }

    /// Puts `outer` in place of the current certificate; on error the current one stays.
    ///
    /// # Errors
    /// As [`CertSlot::new`].
    pub fn replace(&self, outer: OuterIdentity) -> Result<(), TransportError> {
        let next = Self::certified(outer)?;
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        Ok(())
    }

    /// The end-entity certificate in place.
    pub fn end_entity(&self) -> Option<CertificateDer<'static>> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .cert
            .first()
            .cloned()
    }
}

impl rustls::server::ResolvesServerCert for CertSlot {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The outer client configuration: TLS 1.3 and 1.2 with the aws-lc-rs provider, `alpn`
/// offered, and **any** server certificate accepted.
///
/// Why accepting any outer certificate is safe: the outer TLS is camouflage and transport
/// only. Authentication happens in the inner Aura handshake carried inside it, where the
/// client verifies the server's certificate chain to the deployment CA, its name and the
/// CRL, and the server verifies the client the same way. A man in the middle on the outer
/// layer terminates TLS but sees only Aura ciphertext, and cannot complete the inner
/// handshake without the server's key. Handshake signatures are still checked against the
/// presented certificate, so the outer session is at least bound to whoever holds that
/// certificate's key.
///
/// # Errors
/// [`TransportError::Tls`] when the provider cannot serve these protocol versions (a bug).
pub fn client_config(alpn: &[Vec<u8>]) -> Result<Arc<ClientConfig>, TransportError> {
    client_config_with(
        alpn,
        rustls::crypto::aws_lc_rs::default_provider(),
        false,
        HelloShape::Tcp,
    )
}

/// Which browser ClientHello a client configuration imitates (docs/PROTOCOL.md §12.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HelloShape {
    /// Chromium's over TCP.
    Tcp,
    /// Chromium's over QUIC.
    Quic,
}

/// Signature schemes Chromium offers over TCP, in its order.
const TCP_SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ML_DSA_44,
    SignatureScheme::ML_DSA_65,
    SignatureScheme::ML_DSA_87,
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PKCS1_SHA512,
];

/// Signature schemes Chromium offers over QUIC, in its order.
const QUIC_SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PKCS1_SHA512,
    SignatureScheme::RSA_PKCS1_SHA1,
];

/// Cipher suites in Chromium's order (those rustls implements).
const BROWSER_SUITES: &[rustls::CipherSuite] = &[
    rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
    rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// [`client_config`] with `provider`, shaped like `shape`; `knock` also turns resumption
/// off (a resumed session id would replace the knock), offers TLS 1.3 only (1.2 shows the
/// certificate in clear) and sends an ECH GREASE extension, as Chromium does.
pub(crate) fn client_config_with(
    alpn: &[Vec<u8>],
    mut provider: CryptoProvider,
    knock: bool,
    shape: HelloShape,
) -> Result<Arc<ClientConfig>, TransportError> {
    provider.cipher_suites.sort_by_key(|s| {
        BROWSER_SUITES
            .iter()
            .position(|b| *b == s.suite())
            .unwrap_or(usize::MAX)
    });
    let verifier = Arc::new(AnyServerCert {
        algorithms: provider.signature_verification_algorithms,
        offered: match shape {
            HelloShape::Tcp => TCP_SCHEMES,
            HelloShape::Quic => QUIC_SCHEMES,
        },
    });
    let builder = ClientConfig::builder_with_provider(Arc::new(provider));
    let builder = if knock && shape == HelloShape::Tcp {
        let mut placeholder = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut placeholder);
        builder.with_ech(rustls::client::EchMode::Grease(
            rustls::client::EchGreaseConfig::new(
                rustls::crypto::aws_lc_rs::hpke::DH_KEM_X25519_HKDF_SHA256_AES_128,
                rustls::crypto::hpke::HpkePublicKey(placeholder.to_vec()),
            ),
        ))
    } else if knock {
        builder.with_protocol_versions(&[&rustls::version::TLS13])
    } else {
        builder.with_protocol_versions(VERSIONS)
    };
    let mut cfg = builder
        .map_err(|e| TransportError::Tls(OuterTlsError::ClientConfig(e)))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.to_vec();
    if knock {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(cfg))
}

/// Accepts any outer server certificate but verifies the handshake signatures made with it
/// (see [`client_config`] for why this is safe).
#[derive(Debug)]
struct AnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
    /// The schemes offered in the ClientHello (a browser's list).
    offered: &'static [SignatureScheme],
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.offered.to_vec()
    }
}

/// Binds `addr` and runs an accept loop task: every connection whose outer TLS handshake
/// completes and whose first frame is a well-formed Aura datagram becomes a
/// [`DatagramLink`] sent on `links` (that frame already queued on its inbound side).
/// Returns the bound address. The loop ends when `links` is closed.
///
/// # Errors
/// [`TransportError::Tls`] for an unusable certificate or key;
/// [`TransportError::Bind`] when `addr` cannot be bound.
pub async fn listen(
    addr: SocketAddr,
    outer: OuterIdentity,
    opts: TlsOptions,
    links: mpsc::Sender<DatagramLink>,
) -> Result<SocketAddr, TransportError> {
    listen_slot(
        addr,
        Arc::new(CertSlot::new(outer)?),
        opts,
        links,
        Vec::new(),
    )
    .await
}

/// [`listen`] presenting the certificate in `outer` (replaceable while it runs), unless a
/// served decoy's certificate stands in for it. Each connection is served on the
/// runtime of its peer's worker, `runtimes[udp::worker_of(peer, len)]` (where that
/// worker's driver takes its link), or on the current runtime when `runtimes` is empty.
///
/// # Errors
/// As [`listen`].
pub async fn listen_slot(
    addr: SocketAddr,
    outer: Arc<CertSlot>,
    opts: TlsOptions,
    links: mpsc::Sender<DatagramLink>,
    runtimes: Vec<tokio::runtime::Handle>,
) -> Result<SocketAddr, TransportError> {
    // With a served decoy, knocked connections present the decoy's certificate too: a
    // censor that probes once and then watches members' handshakes sees the same
    // server flight for both.
    let outer = match opts.camo.as_ref().and_then(|c| c.decoy.as_ref()) {
        Some(Decoy::Serve(site)) => {
            let (cert_chain, key) = site.identity();
            Arc::new(CertSlot::new(OuterIdentity { cert_chain, key })?)
        }
        _ => outer,
    };
    let acceptor = TlsAcceptor::from(server_config_slot(outer, &opts.alpn)?);
    let bind_err = |source| TransportError::Bind {
        carrier: Carrier::Tls,
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    let limiter = Arc::new(HandshakeLimiter::new(
        opts.max_handshakes_per_ip,
        opts.max_handshakes,
    ));
    let opts = Arc::new(opts);
    tokio::spawn(accept_loop(
        listener, acceptor, opts, links, limiter, runtimes,
    ));
    Ok(local)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    opts: Arc<TlsOptions>,
    links: mpsc::Sender<DatagramLink>,
    limiter: Arc<HandshakeLimiter>,
    runtimes: Vec<tokio::runtime::Handle>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = links.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(_) => {
                sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Over the limit: dropped here, i.e. closed at once.
        let Some(slot) = HandshakeLimiter::acquire(&limiter, peer.ip()) else {
            continue;
        };
        let (acceptor, opts, links) = (acceptor.clone(), opts.clone(), links.clone());
        let worker = super::udp::worker_of(peer.ip(), runtimes.len());
        match crate::listen::runtime_of(&runtimes, worker) {
            None => drop(tokio::spawn(serve_conn(
                tcp, peer, acceptor, opts, links, slot,
            ))),
            Some(rt) => {
                // Woken by the reactor of the runtime that serves it.
                let Ok(tcp) = tcp.into_std() else {
                    continue;
                };
                rt.spawn(async move {
                    if let Ok(tcp) = TcpStream::from_std(tcp) {
                        serve_conn(tcp, peer, acceptor, opts, links, slot).await;
                    }
                });
            }
        }
    }
}

/// One server connection: outer handshake, first frame, hand-off, then the link.
async fn serve_conn(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    opts: Arc<TlsOptions>,
    links: mpsc::Sender<DatagramLink>,
    slot: HandshakeSlot,
) {
    let _ = tcp.set_nodelay(true);
    let tcp = match &opts.camo {
        None => Prefixed::new(Vec::new(), tcp),
        Some(camo) => {
            let (first, tcp) = read_first_flight(tcp, opts.handshake_timeout).await;
            let knocked = first
                .as_deref()
                .ok()
                .and_then(|b| hello::parse(b).ok())
                .is_some_and(|h| camo.knock.check(&h).is_ok());
            let bytes = match first {
                Ok(b) | Err(b) => b,
            };
            if !knocked {
                // The stranger keeps its handshake slot while the decoy serves it, so the
                // per-source and total caps bound decoy connections too.
                if let Some(decoy) = &camo.decoy {
                    decoy.serve(bytes, tcp).await;
                }
                drop(slot);
                return;
            }
            Prefixed::new(bytes, tcp)
        }
    };
    let mut tls = match timeout(opts.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        // Handshake failure (rustls has sent its alert) or timeout: dropping closes TCP.
        Ok(Err(_)) | Err(_) => return,
    };
    let mut reader = FrameReader::new();
    let first = match timeout(opts.handshake_timeout, reader.read_frame(&mut tls)).await {
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
            close_gracefully(&mut tls).await;
            return;
        }
    };
    drop(slot);
    let (in_tx, in_rx) = mpsc::channel(LINK_QUEUE);
    let (out_tx, out_rx) = mpsc::channel(LINK_QUEUE);
    if in_tx.try_send(first).is_err() {
        return;
    }
    let binding = binding_of(tls.get_ref().1);
    let link = DatagramLink {
        peer,
        inbound: in_rx,
        outbound: out_tx,
        binding,
    };
    match timeout(opts.handshake_timeout, links.send(link)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) | Err(_) => {
            close_gracefully(&mut tls).await;
            return;
        }
    }
    run_link(tls, reader, in_tx, out_rx, opts.idle_timeout).await;
}

/// Reads the first flight of a connection, up to one whole ClientHello: `Ok` with its
/// bytes when they hold one, `Err` with whatever arrived otherwise (other bytes, too many,
/// the peer closed, or the timeout passed).
async fn read_first_flight(
    mut tcp: TcpStream,
    limit: Duration,
) -> (Result<Vec<u8>, Vec<u8>>, TcpStream) {
    let mut buf = Vec::with_capacity(2048);
    let deadline = Instant::now() + limit;
    loop {
        match hello::parse(&buf) {
            Ok(_) => return (Ok(buf), tcp),
            Err(HelloError::Malformed) => return (Err(buf), tcp),
            Err(HelloError::Incomplete) => {}
        }
        if buf.len() >= hello::MAX_HELLO + hello::RECORD_HEADER * 4 {
            return (Err(buf), tcp);
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return (Err(buf), tcp),
        }
    }
}

/// Connects to `addr`, runs the outer TLS handshake with `sni` as the server name (any
/// outer certificate accepted, see [`client_config`]) and returns the link. Both steps
/// together are bounded by [`TlsOptions::handshake_timeout`] each.
///
/// # Errors
/// [`TransportError::Tls`] for an invalid `sni` or a failed outer handshake;
/// [`TransportError::Io`] when TCP fails or a step times out.
pub async fn connect(
    addr: SocketAddr,
    sni: &str,
    opts: &TlsOptions,
) -> Result<DatagramLink, TransportError> {
    let name = ServerName::try_from(sni.to_owned())
        .map_err(|_| TransportError::Tls(OuterTlsError::InvalidServerName(sni.to_owned())))?;
    let connector = match &opts.camo {
        None => TlsConnector::from(client_config(&opts.alpn)?),
        Some(_) => TlsConnector::from(client_config_with(
            &opts.alpn,
            tls_knock::knocking_provider(),
            true,
            HelloShape::Tcp,
        )?),
    };
    let timed_out = |what: &str| {
        TransportError::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} to {addr} timed out"),
        ))
    };
    let tcp = timeout(opts.handshake_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| timed_out("TCP connect"))??;
    tcp.set_nodelay(true)?;
    let connecting = match &opts.camo {
        None => connector.connect(name, tcp),
        Some(camo) => {
            // The knock is prepared for the connection `connect` creates, synchronously,
            // on this thread (see camo::tls_knock).
            let (kx, share) = tls_knock::start_share().map_err(|e| {
                TransportError::Tls(OuterTlsError::Handshake {
                    addr,
                    error: io::Error::other(e),
                })
            })?;
            let sni_aad = match &name {
                ServerName::DnsName(d) => d.as_ref().to_ascii_lowercase(),
                _ => String::new(),
            };
            let mut fresh = [0u8; 39];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut fresh);
            let (random, session_id) = camo.knock.seal(&sni_aad, &share, &fresh);
            let prepared = Prepared::new(kx, session_id, random);
            let connecting = connector.connect(name, tcp);
            if !prepared.all_taken() {
                return Err(TransportError::Tls(OuterTlsError::Handshake {
                    addr,
                    error: io::Error::other(
                        "the TLS library did not take the prepared knock (its internals changed)",
                    ),
                }));
            }
            connecting
        }
    };
    let tls = timeout(opts.handshake_timeout, connecting)
        .await
        .map_err(|_| timed_out("TLS handshake"))?
        .map_err(|error| TransportError::Tls(OuterTlsError::Handshake { addr, error }))?;
    let binding = binding_of(tls.get_ref().1);
    let (in_tx, in_rx) = mpsc::channel(LINK_QUEUE);
    let (out_tx, out_rx) = mpsc::channel(LINK_QUEUE);
    tokio::spawn(run_link(
        tls,
        FrameReader::new(),
        in_tx,
        out_rx,
        opts.idle_timeout,
    ));
    Ok(DatagramLink {
        peer: addr,
        inbound: in_rx,
        outbound: out_tx,
        binding,
    })
}

/// What binds an Aura handshake to the outer TLS session `conn` (docs/adr/0024): its
/// exporter under [`BINDING_LABEL`], when its key exchange was X25519MLKEM768; `None`
/// otherwise, and the session's data keeps Aura's own encryption.
pub(crate) fn binding_of<D>(
    conn: &rustls::ConnectionCommon<D>,
) -> Option<[u8; aura_proto::BINDING_LEN]> {
    let group = conn.negotiated_key_exchange_group()?;
    if group.name() != rustls::NamedGroup::X25519MLKEM768 {
        return None;
    }
    let out = [0u8; aura_proto::BINDING_LEN];
    conn.export_keying_material(out, BINDING_LABEL, Some(b""))
        .ok()
}

/// Moves frames between `stream` and the link queues until either side closes, a bad frame
/// arrives, a write stalls for `idle`, or no frame passes either way for `idle`. Ending
/// drops `inbound`, which ends the link's inbound channel.
async fn run_link<S>(
    stream: S,
    reader: FrameReader,
    inbound: mpsc::Sender<BytesMut>,
    outbound: mpsc::Receiver<BytesMut>,
    idle: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let epoch = Instant::now();
    let last_activity_ms = AtomicU64::new(0);
    let (mut rd, mut wr) = tokio::io::split(stream);
    {
        let activity = Activity {
            epoch,
            last_ms: &last_activity_ms,
        };
        tokio::select! {
            () = read_loop(&mut rd, reader, inbound, activity) => {}
            () = write_loop(&mut wr, outbound, activity, idle) => {}
            () = idle_watchdog(activity, idle) => {}
        }
    }
    let _ = timeout(CLOSE_TIMEOUT, wr.shutdown()).await;
}

/// Time of the last frame in either direction, shared by a connection's loops.
#[derive(Clone, Copy)]
struct Activity<'a> {
    epoch: Instant,
    last_ms: &'a AtomicU64,
}

impl Activity<'_> {
    fn touch(self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_deadline(self, idle: Duration) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    rd: &mut R,
    mut reader: FrameReader,
    inbound: mpsc::Sender<BytesMut>,
    activity: Activity<'_>,
) {
    loop {
        // Frames already buffered behind the first one come out without a read.
        let frame = match reader.read_frame(rd).await {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => return,
        };
        // One clock read per read from the stream, at its last frame, not one per frame.
        if reader.ready.is_empty() {
            activity.touch();
        }
        match inbound.try_send(frame) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    wr: &mut W,
    mut outbound: mpsc::Receiver<BytesMut>,
    activity: Activity<'_>,
    stall: Duration,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH_BYTES + FRAME_HEADER + MAX_FRAME_PAYLOAD);
    while let Some(first) = outbound.recv().await {
        batch.clear();
        push_frame(&mut batch, &first);
        while batch.len() < WRITE_BATCH_BYTES {
            match outbound.try_recv() {
                Ok(d) => push_frame(&mut batch, &d),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let write = async {
            wr.write_all(&batch).await?;
            wr.flush().await
        };
        match timeout(stall, write).await {
            Ok(Ok(())) => activity.touch(),
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

/// Appends `d` as one frame; a datagram no frame can carry (empty or over
/// [`MAX_FRAME_PAYLOAD`]) is dropped.
fn push_frame(batch: &mut Vec<u8>, d: &[u8]) {
    let Ok(len) = u16::try_from(d.len()) else {
        return;
    };
    if len == 0 {
        return;
    }
    batch.extend_from_slice(&len.to_be_bytes());
    batch.extend_from_slice(d);
}

async fn idle_watchdog(activity: Activity<'_>, idle: Duration) {
    loop {
        let deadline = activity.idle_deadline(idle);
        if Instant::now() >= deadline {
            return;
        }
        sleep_until(deadline).await;
    }
}

/// Sends `close_notify` and shuts the TCP write side, within [`CLOSE_TIMEOUT`].
async fn close_gracefully<S: AsyncWrite + Unpin>(stream: &mut S) {
    let _ = timeout(CLOSE_TIMEOUT, stream.shutdown()).await;
}

/// Why the frame reader gave up (never sent to the peer).
#[derive(Debug)]
enum FrameError {
    Io,
    ZeroLength,
    NotAura,
}

/// Reassembles frames from the TLS plaintext; holds at most one maximal frame, plus the
/// complete frames of the last read until they are taken.
struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Where the complete frames in `buf` lie, found by [`FrameReader::parse`].
    spans: Vec<std::ops::Range<usize>>,
    /// Complete frames not yet taken, in order (all from one allocation, [`carve`]).
    ready: std::collections::VecDeque<BytesMut>,
    carved: Vec<BytesMut>,
}

impl FrameReader {
    fn new() -> Self {
        FrameReader {
            buf: vec![0; READ_BUF_INITIAL],
            start: 0,
            end: 0,
            spans: Vec::new(),
            ready: std::collections::VecDeque::new(),
            carved: Vec::new(),
        }
    }

    /// The next complete frame's payload, reading as needed; `None` at end of stream.
    async fn read_frame<R: AsyncRead + Unpin>(
        &mut self,
        rd: &mut R,
    ) -> Result<Option<BytesMut>, FrameError> {
        loop {
            if let Some(f) = self.ready.pop_front() {
                return Ok(Some(f));
            }
            let need = self.parse()?;
            if !self.ready.is_empty() {
                continue;
            }
            if self.buf.len() - self.start < need {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if self.buf.len() < need {
                    self.buf.resize(need, 0);
                }
            }
            let Some(free) = self.buf.get_mut(self.end..) else {
                return Err(FrameError::Io);
            };
            let n = rd.read(free).await.map_err(|_| FrameError::Io)?;
            if n == 0 {
                return Ok(None);
            }
            self.end += n;
        }
    }

    /// Takes every complete frame from the buffer into `ready`, up to the first that is
    /// incomplete or refused; returns how many buffered bytes the next frame needs. A
    /// refused frame is an error once the frames before it have been taken.
    fn parse(&mut self) -> Result<usize, FrameError> {
        self.spans.clear();
        let mut at = self.start;
        let outcome = loop {
            let avail = self.buf.get(at..self.end).unwrap_or_default();
            let (len, body) = match avail {
                [hi, lo, body @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), body),
                _ => break Ok(FRAME_HEADER),
            };
            if len == 0 {
                break Err(FrameError::ZeroLength);
            }
            if let Some(&ty) = body.first()
                && PacketType::from_u8(ty).is_none()
            {
                break Err(FrameError::NotAura);
            }
            if body.len() < len {
                break Ok(FRAME_HEADER + len);
            }
            self.spans.push(at + FRAME_HEADER..at + FRAME_HEADER + len);
            at += FRAME_HEADER + len;
        };
        if self.spans.is_empty() {
            return outcome;
        }
        let buf = &self.buf;
        carve(
            self.spans
                .iter()
                .map(|r| buf.get(r.clone()).unwrap_or_default()),
            &mut self.carved,
        );
        self.ready.extend(self.carved.drain(..));
        self.start = at;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        // What stopped the scan is met again once these frames are taken.
        Ok(FRAME_HEADER)
    }
}

/// The stream framing without a stream, for the fuzz target and tests: `datagrams` as
/// the writer frames them (one that no frame can carry is dropped, as on the wire).
#[doc(hidden)]
pub fn encode_frames(datagrams: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for d in datagrams {
        push_frame(&mut out, d);
    }
    out
}

/// The frames the reader takes from `input` when the stream hands it over in reads of
/// the sizes in `reads` (cycled; 0 counts as 1, none means all at once), and whether the
/// stream ended cleanly (false: the reader refused it).
#[doc(hidden)]
pub fn decode_frames(input: &[u8], reads: &[u8]) -> (Vec<Vec<u8>>, bool) {
    let mut src = ChunkedReader {
        data: input,
        reads,
        next: 0,
    };
    let mut r = FrameReader::new();
    let mut out = Vec::new();
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    loop {
        let fut = std::pin::pin!(r.read_frame(&mut src));
        // The reader never waits: each read returns at once.
        let std::task::Poll::Ready(step) = std::future::Future::poll(fut, &mut cx) else {
            return (out, false);
        };
        match step {
            Ok(Some(f)) => out.push(f.to_vec()),
            Ok(None) => return (out, true),
            Err(_) => return (out, false),
        }
    }
}

/// An in-memory stream that returns at most `reads[i]` bytes on its i-th read.
struct ChunkedReader<'a> {
    data: &'a [u8],
    reads: &'a [u8],
    next: usize,
}

impl tokio::io::AsyncRead for ChunkedReader<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let cap = match self.reads.get(self.next % self.reads.len().max(1)) {
            Some(n) => usize::from(*n).max(1),
            None => usize::MAX,
        };
        self.next = self.next.wrapping_add(1);
        let n = cap.min(buf.remaining()).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = rest;
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    async fn frames(input: &[u8]) -> (Vec<Vec<u8>>, Result<(), FrameError>) {
        let mut r = FrameReader::new();
        let mut src = input;
        let mut out = Vec::new();
        loop {
            match r.read_frame(&mut src).await {
                Ok(Some(f)) => out.push(f.to_vec()),
                Ok(None) => return (out, Ok(())),
                Err(e) => return (out, Err(e)),
            }
        }
    }

    /// The synchronous decoder (the fuzz target's) yields what the writer framed, however
    /// the stream splits it, and refuses a zero length or a non-Aura first byte.
    #[test]
    fn frames_survive_any_read_sizes() {
        let d: Vec<Vec<u8>> = vec![vec![1; 3], vec![2; 1200], vec![3], vec![4; 65_535]];
        let refs: Vec<&[u8]> = d.iter().map(Vec::as_slice).collect();
        let wire = encode_frames(&refs);
        for reads in [&[][..], &[1], &[2, 7, 1], &[255], &[0, 3]] {
            assert_eq!(decode_frames(&wire, reads), (d.clone(), true), "{reads:?}");
        }
        // An empty or oversized datagram is not framed.
        assert!(encode_frames(&[&[], &vec![1; 65_536]]).is_empty());
        assert_eq!(decode_frames(&[0, 0, 1], &[]), (vec![], false));
        assert_eq!(decode_frames(&[0, 1, 0xee], &[]), (vec![], false));
        // A stream that ends inside a frame ends cleanly, without that frame.
        assert_eq!(
            decode_frames(&wire[..wire.len() - 1], &[9]).0,
            d[..3].to_vec()
        );
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let sizes = [1usize, 2, 100, 4095, 4096, 5000, MAX_FRAME_PAYLOAD, 3];
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let mut d: Vec<u8> = (0..n).map(|j| (j * 31 + i) as u8).collect();
            d[0] = (i % 6) as u8 + 1;
            push_frame(&mut wire, &d);
            expected.push(d);
        }
        push_frame(&mut wire, &[]);
        push_frame(&mut wire, &vec![1u8; MAX_FRAME_PAYLOAD + 1]);
        let (got, end) = frames(&wire).await;
        assert!(end.is_ok());
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn bad_frames_rejected() {
        assert!(matches!(
            frames(&[0, 0, 1]).await.1,
            Err(FrameError::ZeroLength)
        ));
        assert!(matches!(
            frames(b"GET / HTTP/1.1\r\n").await.1,
            Err(FrameError::NotAura)
        ));
        assert!(matches!(
            frames(&[0, 2, 8]).await.1,
            Err(FrameError::NotAura)
        ));
        let (got, end) = frames(&[0, 1, 5, 0, 3, 0]).await;
        assert_eq!(got, vec![vec![5]]);
        assert!(matches!(end, Err(FrameError::NotAura)));
        // Truncated: ends without error or frame.
        let (got, end) = frames(&[0, 9, 1, 2]).await;
        assert!(got.is_empty() && end.is_ok());
    }
}
