//! The admin socket: JSON lines over a Unix socket (mode 0600; the peer's credentials
//! are checked), one request per line, one response per line. Drivable by hand:
//! `echo '{"cmd":"status"}' | socat - UNIX-CONNECT:/run/aura/server/admin.sock`.
//!
//! With `no_logs` ([`serve_redacting`]) a status answer shows client ids and network and
//! tunnel addresses as [`REDACTED`], unless the request carries `"show_identities":
//! true` (`aura status --show-identities`). Only callers the socket answers at all (root
//! and the daemon's own user) can ask, and each time they do is logged (their uid, no
//! identity). The JSON schema is the same either way: the fields keep their names and
//! types. docs/OPERATIONS.md, "Status JSON", documents every field.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::redact::{REDACTED, Redact};

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// The daemon's state and its peers.
    Status,
    /// Client: the split-tunnel rules in force and where each sends its traffic.
    RouteList,
    /// Client: a split-tunnel rule added to the running plan.
    RouteAdd {
        /// `direct` (outside the tunnel) or `vpn` (through it).
        kind: String,
        /// A network (`10.0.0.0/8`, `2001:db8::/32`, one address) or a domain
        /// (`example.com`, `*.example.com`).
        rule: String,
    },
    /// Client: a split-tunnel rule removed from the running plan.
    RouteRemove {
        /// The rule's network or domain, as listed.
        rule: String,
    },
}

/// What any request may carry besides `cmd`: `{"cmd":"status","show_identities":true}`.
/// A daemon that does not know a key ignores it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestOptions {
    /// Status under `no_logs`: show client ids and addresses instead of [`REDACTED`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub show_identities: bool,
}

/// One split-tunnel rule as a client reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRule {
    /// `direct` or `vpn`.
    pub kind: String,
    /// The rule: a network or a domain.
    pub rule: String,
    /// `config` (client.toml) or `live` (`aura route add`).
    pub origin: String,
    /// The addresses it currently covers.
    pub covers: Vec<String>,
    /// Where they go: the route installed, or why none is.
    pub via: String,
}

/// One hop of a client's circuit, entry first, as the client reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopStatus {
    /// The name its certificate carries.
    pub name: String,
    /// Its address.
    pub address: String,
    /// The carrier that reaches it (the entry's; UDP from relay to relay).
    pub carrier: String,
    /// "up" while the circuit carries the tunnel, "down" once it broke (until rebuilt).
    pub state: String,
}

/// A client's cover traffic, as it reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverStatus {
    /// "asked" until the server answers, then "granted" or "refused".
    pub state: String,
    /// The profile asked for, or granted.
    pub profile: String,
    /// The budget asked for, or granted, in per mille.
    pub budget_permille: u16,
    /// Padding packets sent in this session.
    pub padding_out: u64,
    /// Padding packets received (and dropped) in this session.
    pub padding_in: u64,
    /// Batches of real packets that waited while the profile held them (`bursts`).
    #[serde(default)]
    pub delayed: u64,
}

/// One connected peer, as a server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The client id from its certificate.
    pub id: String,
    /// Carrier in use.
    pub carrier: String,
    /// What encrypts its data: "aura", "aura+outer" or "outer-bound" (the carrier's outer
    /// TLS session alone, bound to the Aura handshake; docs/adr/0024).
    #[serde(default)]
    pub encryption: String,
    /// The client's network address.
    pub remote: String,
    /// Its tunnel address.
    pub tunnel_address: String,
    /// Its IPv6 tunnel address ("" when the pool has no IPv6).
    #[serde(default)]
    pub tunnel_address6: String,
    /// Bytes received from it.
    pub bytes_in: u64,
    /// Bytes sent to it.
    pub bytes_out: u64,
    /// Unix time of its last handshake.
    pub last_handshake: u64,
    /// Unix time it connected.
    pub connected_since: u64,
    /// Cover traffic: padding packets sent to it.
    #[serde(default)]
    pub padding_out: u64,
    /// Cover traffic: padding packets received from it (and dropped).
    #[serde(default)]
    pub padding_in: u64,
}

/// A response.
// One is built per admin request and dropped once written: a client's status being the
// largest variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Response {
    /// A server's status.
    Server {
        /// Connected peers.
        peers: Vec<PeerStatus>,
        /// What the operator should act on (a CRL about to expire).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
    },
    /// A client's status.
    Client {
        /// "connecting", "connected" or "reconnecting".
        state: String,
        /// The server address in use.
        server: String,
        /// Carrier in use.
        carrier: String,
        /// What encrypts the data, as in [`PeerStatus::encryption`] ("" when not
        /// connected).
        #[serde(default)]
        encryption: String,
        /// The client's tunnel address.
        address: String,
        /// Its IPv6 tunnel address ("" when the server's pool has no IPv6).
        #[serde(default)]
        address6: String,
        /// Bytes received through the tunnel.
        bytes_in: u64,
        /// Bytes sent through the tunnel.
        bytes_out: u64,
        /// Unix time of the last handshake.
        last_handshake: u64,
        /// The circuit's hops, entry first, exit last; empty for a direct connection.
        #[serde(default)]
        circuit: Vec<HopStatus>,
        /// Cover traffic, when asked for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cover: Option<CoverStatus>,
    },
    /// A client's split-tunnel rules (the answer to every route request).
    Routes {
        /// Every rule, in the order they were added.
        rules: Vec<RouteRule>,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Admin socket errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// Binding or connecting failed.
    #[error("admin socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A daemon already answers on the socket: another instance is running.
    #[error("a daemon already answers on {0}: is Aura already running?")]
    InUse(PathBuf),
    /// A path exists and is not a socket: not removed.
    #[error("{0} exists and is not a socket: refusing to replace it")]
    NotASocket(PathBuf),
    /// The daemon accepted the connection but did not answer in time.
    #[error("no answer on {0} within {1:?}")]
    NoAnswer(PathBuf, std::time::Duration),
    /// The daemon answered something unreadable.
    #[error("bad answer from the daemon: {0}")]
    BadAnswer(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AdminError + '_ {
    move |source| AdminError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How long [`request`] waits for the daemon's answer.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Answers requests.
pub type Handler = Arc<
    dyn Fn(Request) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>
        + Send
        + Sync,
>;

/// A handler from a function that answers at once.
pub fn sync_handler(f: impl Fn(Request) -> Response + Send + Sync + 'static) -> Handler {
    Arc::new(move |req| {
        let resp = f(req);
        Box::pin(async move { resp })
    })
}

/// Hides client ids and network and tunnel addresses in a status answer (`no_logs`):
/// each becomes [`REDACTED`] (an empty IPv6 address stays empty: there is none).
pub fn redact_identities(resp: &mut Response) {
    let hide = |s: &mut String| {
        if !s.is_empty() {
            REDACTED.clone_into(s);
        }
    };
    match resp {
        Response::Server { peers, .. } => {
            for p in peers {
                hide(&mut p.id);
                hide(&mut p.remote);
                hide(&mut p.tunnel_address);
                hide(&mut p.tunnel_address6);
            }
        }
        Response::Client {
            server,
            address,
            address6,
            circuit,
            ..
        } => {
            hide(server);
            hide(address);
            hide(address6);
            for h in circuit {
                hide(&mut h.name);
                hide(&mut h.address);
            }
        }
        _ => {}
    }
}

/// Binds the socket at `path` (replacing a stale socket, never a live one or another
/// file), sets mode 0600, and serves requests until the task is aborted. Only root and the daemon's own
/// user are answered.
///
/// # Errors
/// When the socket cannot be bound.
pub async fn serve(
    path: &Path,
    handler: Handler,
) -> Result<tokio::task::JoinHandle<()>, AdminError> {
    serve_redacting(path, Redact(false), handler).await
}

/// [`serve`], with status answers passed through [`redact_identities`] when `redact`
/// is on and the request does not ask to show identities.
///
/// # Errors
/// When the socket cannot be bound.
pub async fn serve_redacting(
    path: &Path,
    redact: Redact,
    handler: Handler,
) -> Result<tokio::task::JoinHandle<()>, AdminError> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(AdminError::NotASocket(path.to_owned()));
        }
        if UnixStream::connect(path).await.is_ok() {
            return Err(AdminError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(io(path))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(path))?;
    }
    let listener = UnixListener::bind(path).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
    let me = nix::unistd::geteuid().as_raw();
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let Some(uid) = stream
                .peer_cred()
                .ok()
                .map(|c| c.uid())
                .filter(|uid| *uid == 0 || *uid == me)
            else {
                continue;
            };
            let h = handler.clone();
            tokio::spawn(async move {
                let _ = answer(stream, h, redact, uid).await;
            });
        }
    }))
}

async fn answer(
    stream: UnixStream,
    handler: Handler,
    redact: Redact,
    uid: u32,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Some(line) = lines.next_line().await? {
        if line.len() > 64 * 1024 {
            break;
        }
        let resp = match serde_json::from_str::<Request>(&line) {
            Ok(req) => {
                let status = req == Request::Status;
                let mut resp = handler(req).await;
                if status && redact.0 {
                    let shown = serde_json::from_str::<RequestOptions>(&line)
                        .is_ok_and(|o| o.show_identities);
                    if shown {
                        tracing::info!(uid, "status with identities shown (no_logs is on)");
                    } else {
                        redact_identities(&mut resp);
                    }
                }
                resp
            }
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
        };
        let mut out = serde_json::to_vec(&resp).unwrap_or_default();
        out.push(b'\n');
        w.write_all(&out).await?;
    }
    Ok(())
}

/// Sends one request to the daemon at `path` and returns its answer.
///
/// # Errors
/// When the daemon is not running there, answers nonsense, or does not answer within
/// [`REQUEST_TIMEOUT`].
pub async fn request(path: &Path, req: &Request) -> Result<Response, AdminError> {
    request_within(path, req, REQUEST_TIMEOUT).await
}

/// [`request`] with `options` sent along.
///
/// # Errors
/// As [`request`].
pub async fn request_with(
    path: &Path,
    req: &Request,
    options: RequestOptions,
) -> Result<Response, AdminError> {
    tokio::time::timeout(REQUEST_TIMEOUT, exchange_with(path, req, options))
        .await
        .map_err(|_| AdminError::NoAnswer(path.to_owned(), REQUEST_TIMEOUT))?
}

/// [`request`] with another time limit.
///
/// # Errors
/// As [`request`].
pub async fn request_within(
    path: &Path,
    req: &Request,
    limit: std::time::Duration,
) -> Result<Response, AdminError> {
    tokio::time::timeout(limit, exchange(path, req))
        .await
        .map_err(|_| AdminError::NoAnswer(path.to_owned(), limit))?
}

async fn exchange(path: &Path, req: &Request) -> Result<Response, AdminError> {
    exchange_with(path, req, RequestOptions::default()).await
}

async fn exchange_with(
    path: &Path,
    req: &Request,
    options: RequestOptions,
) -> Result<Response, AdminError> {
    let bad = |e: serde_json::Error| AdminError::BadAnswer(e.to_string());
    let mut value = serde_json::to_value(req).map_err(bad)?;
    if let (Some(fields), serde_json::Value::Object(more)) = (
        value.as_object_mut(),
        serde_json::to_value(options).map_err(bad)?,
    ) {
        fields.extend(more);
    }
    let stream = UnixStream::connect(path).await.map_err(io(path))?;
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_vec(&value).map_err(bad)?;
    line.push(b'\n');
    w.write_all(&line).await.map_err(io(path))?;
    let mut lines = BufReader::new(r).lines();
    let answer = lines
        .next_line()
        .await
        .map_err(io(path))?
        .ok_or_else(|| AdminError::BadAnswer("connection closed".into()))?;
    serde_json::from_str(&answer).map_err(|e| AdminError::BadAnswer(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn peer() -> PeerStatus {
        PeerStatus {
            id: "alice".into(),
            carrier: "udp".into(),
            encryption: "aura".into(),
            remote: "192.0.2.1:4000".into(),
            tunnel_address: "10.77.0.2".into(),
            tunnel_address6: "fd61:7572:6100::2".into(),
            bytes_in: 10,
            bytes_out: 20,
            last_handshake: 1,
            connected_since: 1,
            padding_out: 3,
            padding_in: 4,
        }
    }

    fn client() -> Response {
        Response::Client {
            state: "connected".into(),
            server: "192.0.2.1:8443".into(),
            carrier: "udp".into(),
            encryption: "aura".into(),
            address: "10.77.0.2".into(),
            address6: String::new(),
            bytes_in: 1,
            bytes_out: 2,
            last_handshake: 3,
            circuit: vec![HopStatus {
                name: "entry.example".into(),
                address: "192.0.2.9:443".into(),
                carrier: "tls".into(),
                state: "up".into(),
            }],
            cover: Some(CoverStatus {
                state: "granted".into(),
                profile: "https".into(),
                budget_permille: 300,
                padding_out: 5,
                padding_in: 6,
                delayed: 7,
            }),
        }
    }

    /// Every key of `v`, as `a.b`, `list[].c`, with the JSON type of its value.
    fn schema(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
        use serde_json::Value;
        let kind = match v {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        if !at.is_empty() {
            out.push(format!("{at}: {kind}"));
        }
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let path = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    schema(v, &path, out);
                }
            }
            Value::Array(items) => {
                if let Some(first) = items.first() {
                    schema(first, &format!("{at}[]"), out);
                }
            }
            _ => {}
        }
    }

    /// Asserts the keys and types of `r` are `expected` (in any order).
    fn pinned(r: &Response, expected: &[&str]) {
        let mut out = Vec::new();
        schema(&serde_json::to_value(r).unwrap(), "", &mut out);
        out.sort();
        let mut expected: Vec<String> = expected.iter().map(|e| (*e).to_owned()).collect();
        expected.sort();
        assert_eq!(out, expected);
    }

    /// `aura status --json` prints these answers as they are: a renamed, retyped or
    /// removed field fails here (and docs/OPERATIONS.md, "Status JSON", must follow).
    #[test]
    fn the_status_json_schema_is_pinned() {
        let server = Response::Server {
            peers: vec![peer()],
            warnings: vec!["the CRL expires in 3 days".into()],
        };
        pinned(
            &server,
            &[
                "kind: string",
                "peers: array",
                "peers[]: object",
                "peers[].bytes_in: number",
                "peers[].bytes_out: number",
                "peers[].carrier: string",
                "peers[].connected_since: number",
                "peers[].encryption: string",
                "peers[].id: string",
                "peers[].last_handshake: number",
                "peers[].padding_in: number",
                "peers[].padding_out: number",
                "peers[].remote: string",
                "peers[].tunnel_address: string",
                "peers[].tunnel_address6: string",
                "warnings: array",
                "warnings[]: string",
            ],
        );
        assert_eq!(serde_json::to_value(&server).unwrap()["kind"], "server");
        // No warnings: the key is left out.
        let quiet = Response::Server {
            peers: Vec::new(),
            warnings: Vec::new(),
        };
        pinned(&quiet, &["kind: string", "peers: array"]);
        pinned(
            &client(),
            &[
                "address6: string",
                "address: string",
                "bytes_in: number",
                "bytes_out: number",
                "carrier: string",
                "circuit: array",
                "circuit[]: object",
                "circuit[].address: string",
                "circuit[].carrier: string",
                "circuit[].name: string",
                "circuit[].state: string",
                "cover: object",
                "cover.budget_permille: number",
                "cover.delayed: number",
                "cover.padding_in: number",
                "cover.padding_out: number",
                "cover.profile: string",
                "cover.state: string",
                "encryption: string",
                "kind: string",
                "last_handshake: number",
                "server: string",
                "state: string",
            ],
        );
        assert_eq!(serde_json::to_value(client()).unwrap()["kind"], "client");
        let error = Response::Error {
            message: "no".into(),
        };
        pinned(&error, &["kind: string", "message: string"]);
        // The request options ride along a request; a daemon reads the request alone.
        let asked: Request =
            serde_json::from_str(r#"{"cmd":"status","show_identities":true}"#).unwrap();
        assert_eq!(asked, Request::Status);
        let opts: RequestOptions =
            serde_json::from_str(r#"{"cmd":"status","show_identities":true}"#).unwrap();
        assert!(opts.show_identities);
    }

    #[tokio::test]
    async fn no_logs_hides_identities_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let handler = || {
            sync_handler(|req| match req {
                Request::Status => Response::Server {
                    peers: vec![peer()],
                    warnings: Vec::new(),
                },
                _ => client(),
            })
        };
        let hidden = dir.path().join("hidden.sock");
        let task = serve_redacting(&hidden, Redact(true), handler())
            .await
            .unwrap();
        let Response::Server { peers, .. } = request(&hidden, &Request::Status).await.unwrap()
        else {
            panic!("not a server's status")
        };
        let p = &peers[0];
        for v in [&p.id, &p.remote, &p.tunnel_address, &p.tunnel_address6] {
            assert_eq!(v, REDACTED);
        }
        assert_eq!((p.carrier.as_str(), p.bytes_in), ("udp", 10));
        let show = RequestOptions {
            show_identities: true,
        };
        let Response::Server { peers, .. } =
            request_with(&hidden, &Request::Status, show).await.unwrap()
        else {
            panic!("not a server's status")
        };
        assert_eq!(peers[0], peer());
        // Answers other than a status are left alone.
        assert_eq!(
            request(&hidden, &Request::RouteList).await.unwrap(),
            client()
        );
        task.abort();
        // Without no_logs, nothing is hidden.
        let open = dir.path().join("open.sock");
        let task = serve(&open, handler()).await.unwrap();
        let Response::Server { peers, .. } = request(&open, &Request::Status).await.unwrap() else {
            panic!("not a server's status")
        };
        assert_eq!(peers[0], peer());
        task.abort();
        // A client's status: its server, addresses and hops.
        let mut c = client();
        redact_identities(&mut c);
        let Response::Client {
            server,
            address,
            address6,
            circuit,
            carrier,
            ..
        } = c
        else {
            panic!("not a client's status")
        };
        assert_eq!((server.as_str(), address.as_str()), (REDACTED, REDACTED));
        assert_eq!(address6, "", "no IPv6 address stays none");
        assert_eq!(
            (circuit[0].name.as_str(), circuit[0].address.as_str()),
            (REDACTED, REDACTED)
        );
        assert_eq!(carrier, "udp");
    }

    #[tokio::test]
    async fn status_round_trip_mode_and_bad_requests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let handler: Handler = sync_handler(|req| match req {
            Request::Status => Response::Server {
                peers: vec![PeerStatus {
                    id: "alice".into(),
                    carrier: "udp".into(),
                    encryption: "aura".into(),
                    remote: "192.0.2.1:4000".into(),
                    tunnel_address: "10.77.0.2".into(),
                    tunnel_address6: String::new(),
                    bytes_in: 10,
                    bytes_out: 20,
                    last_handshake: 1,
                    connected_since: 1,
                    padding_out: 3,
                    padding_in: 4,
                }],
                warnings: Vec::new(),
            },
            _ => Response::Error {
                message: "not here".into(),
            },
        });
        let task = serve(&path, handler).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        match request(&path, &Request::Status).await.unwrap() {
            Response::Server { peers, .. } => assert_eq!(peers[0].id, "alice"),
            other => panic!("{other:?}"),
        }
        // A malformed line gets an error object, not a dropped connection.
        let mut s = UnixStream::connect(&path).await.unwrap();
        s.write_all(b"{\"cmd\":\"reboot\"}\n").await.unwrap();
        let mut lines = BufReader::new(s).lines();
        let l = lines.next_line().await.unwrap().unwrap();
        assert!(l.contains("\"kind\":\"error\""), "{l}");
        // A second daemon on the same socket is refused while the first answers...
        let again = || {
            serve(
                &path,
                sync_handler(|_| Response::Error {
                    message: String::new(),
                }),
            )
        };
        assert!(matches!(again().await, Err(AdminError::InUse(_))));
        task.abort();
        // ...and replaces the socket once it is stale.
        let _ = task.await;
        again().await.unwrap().abort();
        // A listener that accepts and never answers: the request gives up.
        let mute = dir.path().join("mute.sock");
        let _listener = tokio::net::UnixListener::bind(&mute).unwrap();
        assert!(matches!(
            request_within(
                &mute,
                &Request::Status,
                std::time::Duration::from_millis(200)
            )
            .await,
            Err(AdminError::NoAnswer(..))
        ));
        // A regular file at the path is never replaced.
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(
            serve(
                &file,
                sync_handler(|_| Response::Error {
                    message: String::new()
                })
            )
            .await,
            Err(AdminError::NotASocket(_))
        ));
    }
}
