//! The decoy: what strangers meet on the TLS and QUIC carriers when knocking is on — a web
//! server (QUIC strangers of a forwarded decoy are relayed by [`super::quic_forward`]).
//!
//! - [`Decoy::Forward`]: the stranger's connection goes, untouched, to a real site the
//!   operator names (as Xray's REALITY does). The prober sees that site's certificate and
//!   pages, because it is talking to that site; the bytes the server read to decide (the
//!   ClientHello) are sent on first. While the upstream cannot be reached, strangers get
//!   what a reverse proxy gives then: `502 Bad Gateway` (over a self-signed certificate
//!   for the SNI palette's first name), or a close when no such site was made.
//! - [`Decoy::Serve`]: Aura terminates TLS with a certificate the operator supplies (for
//!   example from an ACME client) and serves a directory over HTTP/1.1 and h2. Without a
//!   directory it serves one built-in page. Without a certificate (no `[server.decoy]`),
//!   a self-signed one for the first name of the SNI palette is made at start.
//!
//! Timeouts are a web server's: 10 s for the TLS handshake (as the carrier's), 60 s for a
//! request's headers and between requests (nginx's defaults are 60 s and 75 s).

use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

/// How long a stranger may take over the TLS handshake of a served decoy.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the decoy waits for request headers, and between requests.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting to a forward decoy's upstream may take.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A forwarded connection with no byte in either direction for this long is closed.
pub const FORWARD_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest file the served decoy sends.
const MAX_FILE: u64 = 16 << 20;

/// The built-in page of a served decoy without a directory.
const BUILTIN_PAGE: &str = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome</title>\n\
<style>body{font-family:sans-serif;max-width:40em;margin:4em auto;color:#333}</style>\n\
</head>\n<body>\n<h1>It works</h1>\n<p>This site is being set up. Please check back later.</p>\n\
</body>\n</html>\n";

/// Where strangers go.
#[derive(Clone)]
pub enum Decoy {
    /// Spliced, untouched, to `upstream` (`host:port`); `down` answers while the
    /// upstream cannot be reached.
    Forward {
        /// `host:port` of the real site.
        upstream: String,
        /// A site answering 502 to every request (see [`Site::bad_gateway`]).
        down: Option<Arc<Site>>,
    },
    /// Served here.
    Serve(Arc<Site>),
}

impl core::fmt::Debug for Decoy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Forward { upstream, .. } => f.debug_tuple("Forward").field(upstream).finish(),
            Self::Serve(s) => f.debug_tuple("Serve").field(&s.root).finish(),
        }
    }
}

/// A served decoy site: its certificate, TLS configuration and files.
pub struct Site {
    tls: Arc<ServerConfig>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    root: Option<PathBuf>,
    /// Every request gets this status (a proxy whose upstream is down).
    always: Option<StatusCode>,
}

impl core::fmt::Debug for Site {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Site")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// ALPN a served decoy offers over TLS, as a web server does.
pub const SITE_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

impl Site {
    /// A site presenting `chain` and `key`, serving `root` (the built-in page when
    /// `None`) over HTTP/1.1 and h2 (TLS) and HTTP/3 (QUIC).
    ///
    /// # Errors
    /// The certificate and key do not go together, or are unusable.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        root: Option<PathBuf>,
    ) -> Result<Arc<Self>, rustls::Error> {
        let mut tls = ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())?;
        tls.alpn_protocols = SITE_ALPN.iter().map(|a| a.to_vec()).collect();
        Ok(Arc::new(Self {
            tls: Arc::new(tls),
            chain,
            key,
            root,
            always: None,
        }))
    }

    /// A site that answers `502 Bad Gateway` to every request: a forwarded decoy's answer
    /// while its upstream cannot be reached.
    ///
    /// # Errors
    /// As [`Site::new`].
    pub fn bad_gateway(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Arc<Self>, rustls::Error> {
        let site = Self::new(chain, key, None)?;
        let mut site =
            Arc::try_unwrap(site).map_err(|_| rustls::Error::General("shared".into()))?;
        site.always = Some(StatusCode::BAD_GATEWAY);
        Ok(Arc::new(site))
    }

    /// The site's certificate chain and key.
    pub fn identity(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (self.chain.clone(), self.key.clone_key())
    }

    /// Serves HTTP/3 on an accepted QUIC connection until it ends or idles out.
    pub async fn serve_h3(self: Arc<Self>, conn: quinn::Connection) {
        let Ok(Ok(mut h3c)) = timeout(
            HANDSHAKE_TIMEOUT,
            h3::server::Connection::<_, Bytes>::new(h3_quinn::Connection::new(conn)),
        )
        .await
        else {
            return;
        };
        while let Ok(Ok(Some(resolver))) = timeout(HEADER_TIMEOUT, h3c.accept()).await {
            let site = self.clone();
            tokio::spawn(async move {
                let Ok(Ok((req, mut stream))) =
                    timeout(HEADER_TIMEOUT, resolver.resolve_request()).await
                else {
                    return;
                };
                let head = req.method() == Method::HEAD;
                let page = match site.always {
                    Some(status) => error_page(status),
                    None => page(site.root.as_deref(), req.method(), req.uri().path()).await,
                };
                let Ok(resp) = Response::builder()
                    .status(page.status)
                    .header(hyper::header::CONTENT_TYPE, page.ctype)
                    .header(hyper::header::CONTENT_LENGTH, page.body.len())
                    .header(hyper::header::SERVER, SERVER_NAME)
                    .body(())
                else {
                    return;
                };
                if stream.send_response(resp).await.is_err() {
                    return;
                }
                if !head {
                    let _ = stream.send_data(page.body).await;
                }
                let _ = stream.finish().await;
                // The request's own end (its FIN may come after the response): read, so
                // that dropping the stream does not stop the client's sending side with
                // an error its `finish` would see. Bounded, and anything sent is dropped.
                let _ = timeout(HEADER_TIMEOUT, async {
                    while let Ok(Some(_)) = stream.recv_data().await {}
                })
                .await;
            });
        }
    }
}

/// The `Server` header of the served decoy.
const SERVER_NAME: &str = "nginx";

/// Bytes read before the decision, replayed before the rest of the stream.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, with `prefix` read first.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.pos);
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Decoy {
    /// Serves one stranger's connection, `prefix` being what was read from it already.
    pub async fn serve(&self, prefix: Vec<u8>, tcp: TcpStream) {
        match self {
            Self::Forward { upstream, down } => forward(upstream, down.as_ref(), prefix, tcp).await,
            // Bytes that do not begin a TLS handshake record are closed on without a
            // word, as OpenSSL-based servers (nginx) do, rather than with rustls's alert.
            Self::Serve(_) if !prefix.is_empty() && !starts_like_tls(&prefix) => {}
            Self::Serve(site) => serve_site(site, prefix, tcp).await,
        }
    }
}

/// Whether `b` begins like a TLS handshake record (a ClientHello's first bytes).
fn starts_like_tls(b: &[u8]) -> bool {
    match b {
        [] => false,
        [t] => *t == 0x16,
        [t, v, rest @ ..] => *t == 0x16 && *v == 0x03 && rest.first().is_none_or(|m| *m <= 0x04),
    }
}

async fn forward(upstream: &str, down: Option<&Arc<Site>>, prefix: Vec<u8>, mut tcp: TcpStream) {
    let Ok(Ok(mut up)) = timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream)).await
    else {
        // Unreachable upstream: what a reverse proxy answers then, or a close.
        if let Some(site) = down {
            serve_site(site, prefix, tcp).await;
        }
        return;
    };
    let _ = up.set_nodelay(true);
    if up.write_all(&prefix).await.is_err() {
        return;
    }
    let _ = splice(&mut tcp, &mut up).await;
}

/// Copies both ways until either side closes or nothing moves for
/// [`FORWARD_IDLE_TIMEOUT`].
async fn splice(a: &mut TcpStream, b: &mut TcpStream) -> std::io::Result<()> {
    let (mut ar, mut aw) = a.split();
    let (mut br, mut bw) = b.split();
    let mut buf_a = vec![0u8; 16 * 1024];
    let mut buf_b = vec![0u8; 16 * 1024];
    loop {
        use tokio::io::AsyncReadExt;
        let step = timeout(FORWARD_IDLE_TIMEOUT, async {
            tokio::select! {
                r = ar.read(&mut buf_a) => match r? {
                    0 => Ok::<bool, std::io::Error>(false),
                    n => { bw.write_all(&buf_a[..n]).await?; Ok(true) }
                },
                r = br.read(&mut buf_b) => match r? {
                    0 => Ok::<bool, std::io::Error>(false),
                    n => { aw.write_all(&buf_b[..n]).await?; Ok(true) }
                },
            }
        })
        .await;
        match step {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) | Ok(Err(_)) | Err(_) => {
                let _ = aw.shutdown().await;
                let _ = bw.shutdown().await;
                return Ok(());
            }
        }
    }
}

async fn serve_site(site: &Arc<Site>, prefix: Vec<u8>, tcp: TcpStream) {
    let acceptor = TlsAcceptor::from(site.tls.clone());
    let Ok(Ok(tls)) = timeout(
        HANDSHAKE_TIMEOUT,
        acceptor.accept(Prefixed::new(prefix, tcp)),
    )
    .await
    else {
        return;
    };
    let root = site.root.clone();
    let always = site.always;
    let service = hyper::service::service_fn(move |req| {
        let root = root.clone();
        async move { Ok::<_, Infallible>(respond(root.as_deref(), always, &req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(None);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    let _ = timeout(FORWARD_IDLE_TIMEOUT, conn).await;
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" => "text/javascript",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "txt" => "text/plain",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// A response of the served decoy.
struct Page {
    status: StatusCode,
    ctype: &'static str,
    body: Bytes,
}

fn error_page(status: StatusCode) -> Page {
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!(
        "<html>\n<head><title>{code} {reason}</title></head>\n<body>\n<center><h1>{code} \
         {reason}</h1></center>\n<hr><center>{SERVER_NAME}</center>\n</body>\n</html>\n",
        code = status.as_u16()
    );
    Page {
        status,
        ctype: "text/html",
        body: Bytes::from(body),
    }
}

/// The file under `root` a request path names, or `None` for a path that leaves it.
fn resolve(root: &Path, uri_path: &str) -> Option<PathBuf> {
    let path = uri_path.split('?').next().unwrap_or("/");
    let mut out = root.to_path_buf();
    for c in Path::new(path.trim_start_matches('/')).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// What the served decoy answers to `method` `path`.
async fn page(root: Option<&Path>, method: &Method, path: &str) -> Page {
    if method != Method::GET && method != Method::HEAD {
        return error_page(StatusCode::METHOD_NOT_ALLOWED);
    }
    let Some(root) = root else {
        return if path == "/" || path == "/index.html" {
            Page {
                status: StatusCode::OK,
                ctype: "text/html",
                body: Bytes::from_static(BUILTIN_PAGE.as_bytes()),
            }
        } else {
            error_page(StatusCode::NOT_FOUND)
        };
    };
    let Some(mut file) = resolve(root, path) else {
        return error_page(StatusCode::BAD_REQUEST);
    };
    if tokio::fs::metadata(&file).await.is_ok_and(|m| m.is_dir()) {
        file.push("index.html");
    }
    match tokio::fs::metadata(&file).await {
        Ok(m) if m.is_file() && m.len() <= MAX_FILE => match tokio::fs::read(&file).await {
            Ok(bytes) => Page {
                status: StatusCode::OK,
                ctype: content_type(&file),
                body: Bytes::from(bytes),
            },
            Err(_) => error_page(StatusCode::FORBIDDEN),
        },
        Ok(_) => error_page(StatusCode::FORBIDDEN),
        Err(_) => error_page(StatusCode::NOT_FOUND),
    }
}

/// The hyper response for `req`.
async fn respond(
    root: Option<&Path>,
    always: Option<StatusCode>,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let head = req.method() == Method::HEAD;
    let p = match always {
        Some(status) => error_page(status),
        None => page(root, req.method(), req.uri().path()).await,
    };
    let len = p.body.len();
    let mut r = Response::new(Full::new(if head { Bytes::new() } else { p.body }));
    *r.status_mut() = p.status;
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(p.ctype),
    );
    h.insert(
        hyper::header::CONTENT_LENGTH,
        hyper::header::HeaderValue::from(len),
    );
    h.insert(
        hyper::header::SERVER,
        hyper::header::HeaderValue::from_static(SERVER_NAME),
    );
    r
}

/// A self-signed certificate and key for `names` (the served decoy's fallback when the
/// operator supplies none), valid from a day ago for a year.
///
/// # Errors
/// A name rcgen refuses.
pub fn self_signed(
    names: &[String],
) -> Result<
    (
        Vec<rustls_pki_types::CertificateDer<'static>>,
        rustls_pki_types::PrivateKeyDer<'static>,
    ),
    rcgen::Error,
> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    let mut dn = rcgen::DistinguishedName::new();
    if let Some(n) = names.first() {
        dn.push(rcgen::DnType::CommonName, n.clone());
    }
    params.distinguished_name = dn;
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn what_looks_like_tls() {
        assert!(starts_like_tls(&[0x16, 3, 1, 0, 5]));
        assert!(starts_like_tls(&[0x16]));
        assert!(!starts_like_tls(b""));
        assert!(!starts_like_tls(b"GET / HTTP/1.1"));
        assert!(!starts_like_tls(&[0x16, 0x04]));
        assert!(!starts_like_tls(&[0x16, 3, 9]));
    }

    #[test]
    fn paths_stay_under_the_root() {
        let root = Path::new("/srv/site");
        assert_eq!(resolve(root, "/"), Some(PathBuf::from("/srv/site")));
        assert_eq!(
            resolve(root, "/a/b.html?x=1"),
            Some(PathBuf::from("/srv/site/a/b.html"))
        );
        assert_eq!(resolve(root, "/./a"), Some(PathBuf::from("/srv/site/a")));
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/a/../../x"), None);
        assert_eq!(content_type(Path::new("x.css")), "text/css");
        assert_eq!(content_type(Path::new("x")), "application/octet-stream");
    }

    #[test]
    fn self_signed_names_its_first_name() {
        let (chain, _key) = self_signed(&["www.example.org".to_owned()]).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
        assert!(cert.subject().to_string().contains("www.example.org"));
    }
}
