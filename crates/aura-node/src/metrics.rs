//! The Prometheus text endpoint of both daemons (`[server.metrics]`, `[client.metrics]`):
//! `GET /metrics` over plain HTTP/1.1, answered by a small responder of its own.
//!
//! - [`Exposition`]: the text format (HELP and TYPE lines, label values escaped);
//! - [`Tally`]: per-carrier counters that only go up, from per-connection counters that
//!   come and go (a connection's last counts are added when it ends);
//! - [`serve`]: the listener, bound at start so a taken address stops the daemon before
//!   it changes the host.
//!
//! A scrape reads the counters the data path already keeps (the same ones the admin
//! socket's status shows); nothing is added per packet. No metric carries a client id or
//! an address: labels are carriers and reasons only, so `no_logs` has nothing to hide
//! here.
//!
//! The responder takes one request per connection: at most [`MAX_REQUEST`] bytes of
//! request head, read within [`REQUEST_TIMEOUT`]; `GET /metrics` gets the metrics, any
//! other path 404, any other method 405, anything unreadable 400; the connection is then
//! closed. At most [`MAX_CONNECTIONS`] are served at once; more are closed at once.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aura_transport::PacketSender;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::DaemonError;

/// The largest request head read (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// How long a connection may take to send its request and read the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// The content type of the text format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (until the daemon restarts).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// The metrics text of one scrape, in the Prometheus text exposition format.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// A label value with `\`, `"` and line feeds escaped.
fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text with `\` and line feeds escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

impl Exposition {
    /// Starts the metric `name`: its HELP and TYPE lines. Its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample of `name` with `labels` (name, value).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<i128>) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", value.into());
    }

    /// A metric with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Into<i128>) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// What one connection did, as the metrics count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// IP payload bytes received.
    pub bytes_in: u64,
    /// IP payload bytes sent.
    pub bytes_out: u64,
    /// Packets received.
    pub packets_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Packets the connection dropped (queue full, too large, malformed padding).
    pub drops: u64,
    /// Cover padding packets received.
    pub padding_in: u64,
    /// Cover padding packets sent.
    pub padding_out: u64,
}

impl Traffic {
    /// The counts of `conn` now.
    pub fn of(conn: &PacketSender) -> Self {
        let s = conn.stats();
        let c = conn.cover_stats();
        Self {
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            packets_in: s.packets_in,
            packets_out: s.packets_out,
            drops: s.drops,
            padding_in: c.padding_in,
            padding_out: c.padding_out,
        }
    }

    fn fields(&mut self) -> [&mut u64; 7] {
        [
            &mut self.bytes_in,
            &mut self.bytes_out,
            &mut self.packets_in,
            &mut self.packets_out,
            &mut self.drops,
            &mut self.padding_in,
            &mut self.padding_out,
        ]
    }

    /// What `self` counts beyond `before`, field by field (never below zero).
    fn since(mut self, mut before: Self) -> Self {
        for (now, was) in self.fields().into_iter().zip(before.fields()) {
            *now = now.saturating_sub(*was);
        }
        self
    }

    fn add(&mut self, mut more: Self) {
        for (t, m) in self.fields().into_iter().zip(more.fields()) {
            *t = t.saturating_add(*m);
        }
    }
}

/// Counters by carrier that only go up, made from the counters of connections that come
/// and go: each look at a connection adds what it did since the last look, under the
/// carrier it uses now; its last look ([`Tally::settle`]) also forgets it.
#[derive(Debug, Default)]
pub struct Tally {
    seen: HashMap<u64, Traffic>,
    totals: BTreeMap<&'static str, Traffic>,
}

impl Tally {
    /// Adds what connection `key` did since it was last seen, under `carrier`.
    pub fn observe(&mut self, key: u64, carrier: &'static str, now: Traffic) {
        let before = self.seen.insert(key, now).unwrap_or_default();
        self.totals
            .entry(carrier)
            .or_default()
            .add(now.since(before));
    }

    /// [`Tally::observe`] for the last time: `key` has ended.
    pub fn settle(&mut self, key: u64, carrier: &'static str, now: Traffic) {
        self.observe(key, carrier, now);
        self.seen.remove(&key);
    }

    /// [`Tally::observe`] of a live connection.
    pub fn observe_conn(&mut self, key: u64, conn: &PacketSender) {
        self.observe(key, conn.carrier().name(), Traffic::of(conn));
    }

    /// [`Tally::settle`] of a connection that ended.
    pub fn settle_conn(&mut self, key: u64, conn: &PacketSender) {
        self.settle(key, conn.carrier().name(), Traffic::of(conn));
    }

    /// The totals of `carrier` so far.
    pub fn total(&self, carrier: &str) -> Traffic {
        self.totals.get(carrier).copied().unwrap_or_default()
    }

    /// The totals so far, by carrier.
    pub fn totals(&self) -> Totals {
        self.totals.clone()
    }
}

/// Traffic totals by carrier name.
pub type Totals = BTreeMap<&'static str, Traffic>;

/// The traffic families both daemons show, one sample per carrier of `carriers` (the
/// configured ones, so each starts at 0, and any other seen).
pub fn traffic(m: &mut Exposition, totals: &Totals, carriers: &[&'static str]) {
    let all = with_seen(carriers, totals.keys().copied());
    type Field = fn(&Traffic) -> u64;
    let families: [(&str, &str, Field); 6] = [
        (
            "aura_tunnel_received_bytes_total",
            "IP payload bytes received through the tunnel, by carrier.",
            |t| t.bytes_in,
        ),
        (
            "aura_tunnel_sent_bytes_total",
            "IP payload bytes sent through the tunnel, by carrier.",
            |t| t.bytes_out,
        ),
        (
            "aura_tunnel_received_packets_total",
            "IP packets received through the tunnel, by carrier.",
            |t| t.packets_in,
        ),
        (
            "aura_tunnel_sent_packets_total",
            "IP packets sent through the tunnel, by carrier.",
            |t| t.packets_out,
        ),
        (
            "aura_cover_padding_received_packets_total",
            "Cover traffic padding packets received (and dropped), by carrier.",
            |t| t.padding_in,
        ),
        (
            "aura_cover_padding_sent_packets_total",
            "Cover traffic padding packets sent, by carrier.",
            |t| t.padding_out,
        ),
    ];
    for (name, help, field) in families {
        m.family(name, Kind::Counter, help);
        for c in &all {
            let t = totals.get(c).copied().unwrap_or_default();
            m.sample(name, &[("carrier", c)], field(&t));
        }
    }
}

/// `carriers`, then every other of `seen`.
pub fn with_seen(
    carriers: &[&'static str],
    seen: impl IntoIterator<Item = &'static str>,
) -> Vec<&'static str> {
    let mut all = carriers.to_vec();
    for c in seen {
        if !all.contains(&c) {
            all.push(c);
        }
    }
    all
}

/// The build and the uptime, both daemons' first lines.
pub fn basics(m: &mut Exposition, role: &str, started: std::time::Instant) {
    m.family(
        "aura_build_info",
        Kind::Gauge,
        "Always 1; the labels name the daemon's role and version.",
    );
    m.sample(
        "aura_build_info",
        &[("role", role), ("version", env!("CARGO_PKG_VERSION"))],
        1_u8,
    );
    m.single(
        "aura_uptime_seconds",
        Kind::Gauge,
        "Seconds since the daemon started.",
        started.elapsed().as_secs(),
    );
}

/// The running endpoint; dropping it stops it.
#[derive(Debug)]
pub struct Endpoint {
    task: tokio::task::JoinHandle<()>,
    /// The listening socket, shared with the task: shut down when the endpoint drops, so
    /// the port refuses connections at once, not when the aborted task is next polled.
    listener: Arc<TcpListener>,
    /// The address it serves on.
    pub addr: SocketAddr,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        use std::os::fd::AsFd;
        let _ = nix::sys::socket::shutdown(
            std::os::fd::AsRawFd::as_raw_fd(&self.listener.as_fd()),
            nix::sys::socket::Shutdown::Both,
        );
        self.task.abort();
    }
}

/// Makes the metrics text of one scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Binds `addr` (the value of the configuration key `key`) and serves `render`'s text on
/// `GET /metrics` until the returned [`Endpoint`] is dropped.
///
/// # Errors
/// [`DaemonError::Metrics`] naming the key and the address when it cannot be bound (in
/// use, not an address of this host, a port that needs privileges).
pub async fn serve(
    key: &'static str,
    addr: SocketAddr,
    render: Render,
) -> Result<Endpoint, DaemonError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Metrics { key, addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| DaemonError::Metrics { key, addr, source })?;
    tracing::info!(%addr, "metrics endpoint up: GET /metrics");
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let listener = Arc::new(listener);
    let accepting = listener.clone();
    let task = tokio::spawn(async move {
        loop {
            let stream = match accepting.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors, most likely: wait rather than spin.
                    tracing::debug!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let render = render.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &render)).await;
                drop(slot);
            });
        }
    });
    Ok(Endpoint {
        task,
        listener,
        addr,
    })
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    Metrics,
    NotFound,
    WrongMethod,
    Bad,
    TooLarge,
}

/// Reads the request head of one connection: what it asks for.
async fn read_request(stream: &mut TcpStream) -> Asked {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = find_end(&head) {
            return parse_request(&head[..end]);
        }
        if head.len() >= MAX_REQUEST {
            return Asked::TooLarge;
        }
        let room = (MAX_REQUEST - head.len()).min(buf.len());
        match stream.read(&mut buf[..room]).await {
            Ok(0) | Err(_) => return Asked::Bad,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

/// Where the request head ends (the first empty line), if it has.
fn find_end(head: &[u8]) -> Option<usize> {
    head.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| head.windows(2).position(|w| w == b"\n\n"))
}

/// What the request head `head` asks for: only its request line matters.
fn parse_request(head: &[u8]) -> Asked {
    let Ok(text) = std::str::from_utf8(head) else {
        return Asked::Bad;
    };
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Asked::Bad;
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Asked::Bad;
    }
    if method != "GET" {
        return Asked::WrongMethod;
    }
    let path = target.split('?').next().unwrap_or_default();
    if path == "/metrics" {
        Asked::Metrics
    } else {
        Asked::NotFound
    }
}

/// The whole response to `asked`.
fn response(asked: &Asked, render: &Render) -> Vec<u8> {
    let (status, extra, body) = match asked {
        Asked::Metrics => ("200 OK", "", render()),
        Asked::NotFound => ("404 Not Found", "", "only /metrics is here\n".to_owned()),
        Asked::WrongMethod => (
            "405 Method Not Allowed",
            "Allow: GET\r\n",
            "only GET is answered\n".to_owned(),
        ),
        Asked::Bad => ("400 Bad Request", "", "bad request\n".to_owned()),
        Asked::TooLarge => (
            "431 Request Header Fields Too Large",
            "",
            "request too large\n".to_owned(),
        ),
    };
    let content_type = match asked {
        Asked::Metrics => CONTENT_TYPE,
        _ => "text/plain; charset=utf-8",
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

async fn answer(mut stream: TcpStream, render: &Render) -> std::io::Result<()> {
    let asked = read_request(&mut stream).await;
    stream.write_all(&response(&asked, render)).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_text_format_has_help_type_and_escaped_labels() {
        let mut m = Exposition::default();
        m.family(
            "aura_test_bytes_total",
            Kind::Counter,
            "Bytes, with a \\ and a\nline feed.",
        );
        m.sample("aura_test_bytes_total", &[("carrier", "udp")], 12_u64);
        m.sample(
            "aura_test_bytes_total",
            &[("carrier", "a\"b\\c\nd"), ("reason", "x")],
            0_u64,
        );
        m.single("aura_test_age_seconds", Kind::Gauge, "An age.", -3_i64);
        assert_eq!(
            m.finish(),
            "# HELP aura_test_bytes_total Bytes, with a \\\\ and a\\nline feed.\n\
             # TYPE aura_test_bytes_total counter\n\
             aura_test_bytes_total{carrier=\"udp\"} 12\n\
             aura_test_bytes_total{carrier=\"a\\\"b\\\\c\\nd\",reason=\"x\"} 0\n\
             # HELP aura_test_age_seconds An age.\n\
             # TYPE aura_test_age_seconds gauge\n\
             aura_test_age_seconds -3\n"
        );
    }

    #[test]
    fn a_tally_only_goes_up_and_keeps_what_ended() {
        let t = |bytes_in: u64, packets_in: u64| Traffic {
            bytes_in,
            packets_in,
            ..Traffic::default()
        };
        let mut tally = Tally::default();
        tally.observe(1, "udp", t(100, 1));
        tally.observe(2, "tls", t(50, 1));
        tally.observe(1, "udp", t(300, 3));
        assert_eq!(tally.total("udp"), t(300, 3));
        // Connection 1 moves to QUIC: only what it does from now is QUIC's.
        tally.observe(1, "quic", t(350, 4));
        assert_eq!(tally.total("udp"), t(300, 3));
        assert_eq!(tally.total("quic"), t(50, 1));
        // It ends: its last counts stay, and a new connection under the same key starts
        // from zero.
        tally.settle(1, "quic", t(400, 5));
        assert_eq!(tally.total("quic"), t(100, 2));
        tally.observe(1, "quic", t(10, 1));
        assert_eq!(tally.total("quic"), t(110, 3));
        // A counter that went back (a restarted cover engine) adds nothing.
        tally.observe(2, "tls", t(40, 1));
        assert_eq!(tally.total("tls"), t(50, 1));
        let mut m = Exposition::default();
        traffic(&mut m, &tally.totals(), &["udp", "mem"]);
        let text = m.finish();
        assert!(
            text.contains("aura_tunnel_received_bytes_total{carrier=\"udp\"} 300\n"),
            "{text}"
        );
        assert!(
            text.contains("aura_tunnel_received_bytes_total{carrier=\"mem\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("aura_tunnel_received_packets_total{carrier=\"quic\"} 3\n"),
            "{text}"
        );
    }

    #[test]
    fn requests_are_read_strictly() {
        let p = |s: &str| parse_request(s.as_bytes());
        assert_eq!(p("GET /metrics HTTP/1.1\r\nHost: x"), Asked::Metrics);
        assert_eq!(p("GET /metrics?x=1 HTTP/1.0"), Asked::Metrics);
        assert_eq!(p("GET / HTTP/1.1"), Asked::NotFound);
        assert_eq!(p("GET /metrics/ HTTP/1.1"), Asked::NotFound);
        assert_eq!(p("POST /metrics HTTP/1.1"), Asked::WrongMethod);
        assert_eq!(p("HEAD /metrics HTTP/1.1"), Asked::WrongMethod);
        assert_eq!(p("GET /metrics"), Asked::Bad);
        assert_eq!(p("GET /metrics HTTP/2 x"), Asked::Bad);
        assert_eq!(p("GET metrics HTTP/1.1"), Asked::Bad);
        assert_eq!(p("\u{0}\u{1}"), Asked::Bad);
        assert_eq!(parse_request(&[0xff, 0xfe]), Asked::Bad);
    }

    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn the_endpoint_answers_get_metrics_only() {
        let render: Render = Arc::new(|| "aura_up 1\n".to_owned());
        let at: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let e = serve("server.metrics.listen", at, render.clone())
            .await
            .unwrap();
        let ok = exchange(e.addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")),
            "{ok}"
        );
        assert!(ok.contains("Content-Length: 10\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\naura_up 1\n"), "{ok}");
        let nf = exchange(e.addr, b"GET /admin HTTP/1.1\r\n\r\n").await;
        assert!(nf.starts_with("HTTP/1.1 404 Not Found\r\n"), "{nf}");
        let post = exchange(e.addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        assert!(post.contains("Allow: GET\r\n"), "{post}");
        // A head that never ends is cut off at the limit.
        let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
        big.resize(MAX_REQUEST, b'a');
        let big = exchange(e.addr, &big).await;
        assert!(big.starts_with("HTTP/1.1 431 "), "{big}");
        // The address is now taken: a second endpoint names the key and the address.
        let err = serve("client.metrics.listen", e.addr, render)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "client.metrics.listen: cannot serve metrics on {}: ",
                e.addr
            )),
            "{text}"
        );
        assert!(text.contains("in use"), "{text}");
        // Dropped, it refuses at once (the socket is shut down, not left to the task).
        let addr = e.addr;
        drop(e);
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
