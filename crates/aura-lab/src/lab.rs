//! A small virtual network of namespaces to run Aura in: one server, one "internet"
//! host and some client hosts, plus a TCP transfer between two of them that checks
//! every byte. `aura demo` and the end-to-end tests run real `aura` processes in it.
//!
//! ```text
//!   C1 (10.200.1.2/24) c1-s ===== s-c1 (10.200.1.1/24)
//!   default via 10.200.1.1                        \
//!                                                  S ── s-i (198.18.0.1/24) ===== i-s (198.18.0.2/24) I
//!   Ck (10.200.k.2/24) ck-s ===== s-ck (10.200.k.1/24)   default via 198.18.0.2      no other route
//!   default via 10.200.k.1
//! ```
//!
//! * `Ck` ("client k") reaches `S` over its own link; `S` is its only way out.
//! * `S` ("server") has a default route toward `I`. Forwarding is off (the kernel's
//!   default in a new namespace): without Aura, `S` forwards nothing.
//! * `I` ("internet") has no route to `10.200.0.0/16` nor to the tunnel pool: it can only
//!   answer `S`'s own address, so client traffic that reaches `I` and gets an answer was
//!   NATed by the server.
//!
//! Every namespace is named `<prefix>-<role>-<pid>-<n>` and deleted when the [`Lab`] is
//! dropped, on every path. Interfaces are created directly inside the namespaces, so
//! their short names never collide between runs.
//!
//! ```no_run
//! use std::time::Duration;
//! use aura_lab::lab::{self, Lab};
//! # fn main() -> Result<(), String> {
//! let lab = Lab::new("example", 1)?;
//! let report = lab::transfer(
//!     lab.server(),
//!     lab.internet(),
//!     lab.internet_ip(),
//!     5201,
//!     1 << 20,
//!     Duration::from_secs(10),
//! )?;
//! assert_eq!(report.peer_seen.ip(), lab.server_internet_ip());
//! # Ok(()) }
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;

use crate::netns::Netns;

/// The server's address on the link toward the internet host.
pub const SERVER_INTERNET_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The internet host's address.
pub const INTERNET_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The internet host's address toward a second server ([`Lab::add_exit`]).
pub const INTERNET_EXIT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// The second server's address ([`Lab::add_exit`]).
pub const EXIT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// The most client hosts a lab holds (each gets `10.200.k.0/24`).
pub const MAX_CLIENTS: usize = 250;

/// The namespaces of one lab (see the module docs for the drawing), deleted on drop.
#[derive(Debug)]
pub struct Lab {
    // Dropped in this order: clients, server, exit, internet.
    clients: Vec<Netns>,
    server: Netns,
    exit: Option<Netns>,
    internet: Netns,
}

impl Lab {
    /// Builds the topology with `clients` client hosts (1 to [`MAX_CLIENTS`]). On error
    /// everything created so far is removed.
    ///
    /// # Errors
    /// A client count out of range, or a failing `ip` command (its stderr).
    pub fn new(prefix: &str, clients: usize) -> Result<Self, String> {
        if !(1..=MAX_CLIENTS).contains(&clients) {
            return Err(format!(
                "a lab has 1 to {MAX_CLIENTS} client hosts, not {clients}"
            ));
        }
        // Each Netns is a guard: an early return drops (deletes) what exists so far.
        let server = Netns::new(&format!("{prefix}-s"))?;
        let internet = Netns::new(&format!("{prefix}-i"))?;
        let mut hosts = Vec::with_capacity(clients);
        for k in 1..=clients {
            hosts.push(Netns::new(&format!("{prefix}-c{k}"))?);
        }
        let lab = Self {
            clients: hosts,
            server,
            exit: None,
            internet,
        };
        lab.wire()?;
        Ok(lab)
    }

    /// Creates the links, addresses and routes.
    fn wire(&self) -> Result<(), String> {
        let i = self.internet.name();
        self.server.sh(&format!(
            "ip link add s-i type veth peer name i-s netns {i}
             ip addr add {SERVER_INTERNET_IP}/24 dev s-i
             ip link set s-i up
             ip route add default via {INTERNET_IP} dev s-i"
        ))?;
        self.internet.sh(&format!(
            "ip addr add {INTERNET_IP}/24 dev i-s
             ip link set i-s up"
        ))?;
        for (idx, c) in self.clients.iter().enumerate() {
            let k = idx + 1;
            let (sip, cip) = (self.server_ip(k), self.client_ip(k));
            self.server.sh(&format!(
                "ip link add s-c{k} type veth peer name c{k}-s netns {}
                 ip addr add {sip}/24 dev s-c{k}
                 ip link set s-c{k} up",
                c.name()
            ))?;
            c.sh(&format!(
                "ip addr add {cip}/24 dev c{k}-s
                 ip link set c{k}-s up
                 ip route add default via {sip} dev c{k}-s"
            ))?;
            // A client host's resolver is its gateway, as a home router's is.
            write_resolv(c, &format!("nameserver {sip}\n"))?;
        }
        // The server resolves through the internet host (where a test may run one).
        write_resolv(&self.server, &format!("nameserver {INTERNET_IP}\n"))?;
        Ok(())
    }

    /// Adds IPv6 to every link (`nodad`, usable at once): the internet link
    /// `2001:db8:198::1` (S) / `::2` (I), with S's IPv6 default route via I; client link k
    /// `2001:db8:200:k::1` (S) / `::2` (C_k), with C_k's default via S. I has no route
    /// back to the clients' networks: like the IPv4 plan, only what S translates (NAT66)
    /// gets an answer.
    ///
    /// # Errors
    /// A failing `ip` command.
    pub fn add_ipv6(&self) -> Result<(), String> {
        self.server.sh(&format!(
            "ip -6 addr add {}/64 dev s-i nodad\nip -6 route add default via {}",
            self.server_internet_ip6(),
            self.internet_ip6()
        ))?;
        self.internet.sh(&format!(
            "ip -6 addr add {}/64 dev i-s nodad",
            self.internet_ip6()
        ))?;
        for (idx, c) in self.clients.iter().enumerate() {
            let k = idx + 1;
            self.server.sh(&format!(
                "ip -6 addr add {}/64 dev s-c{k} nodad",
                self.server_ip6(k)
            ))?;
            c.sh(&format!(
                "ip -6 addr add {}/64 dev c{k}-s nodad\nip -6 route add default via {}",
                self.client_ip6(k),
                self.server_ip6(k)
            ))?;
        }
        Ok(())
    }

    /// Adds a second server host `X` behind the internet host, for circuits (S the
    /// relay, X the exit): link `x-i` [`EXIT_IP`]/24 to `i-x` [`INTERNET_EXIT_IP`]/24 in
    /// I, X's default route via I, and forwarding on in I so S and X reach each other
    /// (S through its default route). I still has no route to the clients' networks nor
    /// to any pool; X resolves through I. Idempotent.
    ///
    /// # Errors
    /// A failing `ip` or `sysctl` command (X is removed again).
    pub fn add_exit(&mut self, prefix: &str) -> Result<(), String> {
        if self.exit.is_some() {
            return Ok(());
        }
        let exit = Netns::new(&format!("{prefix}-x"))?;
        let i = self.internet.name();
        exit.sh(&format!(
            "ip link add x-i type veth peer name i-x netns {i}
             ip addr add {EXIT_IP}/24 dev x-i
             ip link set x-i up
             ip route add default via {INTERNET_EXIT_IP} dev x-i"
        ))?;
        self.internet.sh(&format!(
            "ip addr add {INTERNET_EXIT_IP}/24 dev i-x
             ip link set i-x up
             sysctl -qw net.ipv4.ip_forward=1"
        ))?;
        write_resolv(&exit, &format!("nameserver {INTERNET_EXIT_IP}\n"))?;
        self.exit = Some(exit);
        Ok(())
    }

    /// The second server host `X`, once [`add_exit`](Self::add_exit) made it.
    pub fn exit(&self) -> Option<&Netns> {
        self.exit.as_ref()
    }

    /// S's IPv6 address on its link to client host `k` (after [`add_ipv6`](Self::add_ipv6)).
    pub fn server_ip6(&self, k: usize) -> Ipv6Addr {
        Ipv6Addr::new(
            0x2001,
            0xdb8,
            0x200,
            u16::try_from(k).unwrap_or(0),
            0,
            0,
            0,
            1,
        )
    }

    /// Client host `k`'s IPv6 address (after [`add_ipv6`](Self::add_ipv6)).
    pub fn client_ip6(&self, k: usize) -> Ipv6Addr {
        Ipv6Addr::new(
            0x2001,
            0xdb8,
            0x200,
            u16::try_from(k).unwrap_or(0),
            0,
            0,
            0,
            2,
        )
    }

    /// S's IPv6 address toward the internet host (after [`add_ipv6`](Self::add_ipv6)).
    pub fn server_internet_ip6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, 0x198, 0, 0, 0, 0, 1)
    }

    /// The internet host's IPv6 address (after [`add_ipv6`](Self::add_ipv6)).
    pub fn internet_ip6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, 0x198, 0, 0, 0, 0, 2)
    }

    /// The server namespace `S`.
    ///
    /// Each namespace has its own `/etc/resolv.conf` (see [`Netns::resolv_conf`]): a
    /// client host's names its gateway (`10.200.k.1`), the server's the internet host.
    pub fn server(&self) -> &Netns {
        &self.server
    }

    /// The internet host's namespace `I`.
    pub fn internet(&self) -> &Netns {
        &self.internet
    }

    /// Client host `Ck` (`k` from 1), or `None` when the lab has no such host.
    pub fn client(&self, k: usize) -> Option<&Netns> {
        k.checked_sub(1).and_then(|i| self.clients.get(i))
    }

    /// How many client hosts the lab has.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Every namespace's name: server, internet, then the clients in order, then the
    /// exit host if there is one.
    pub fn names(&self) -> Vec<String> {
        [&self.server, &self.internet]
            .into_iter()
            .chain(&self.clients)
            .chain(&self.exit)
            .map(|n| n.name().to_owned())
            .collect()
    }

    /// The server's address on the link to client host `k`: `10.200.k.1` (what client
    /// `k` dials).
    pub fn server_ip(&self, k: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, octet(k), 1)
    }

    /// Client host `k`'s own address: `10.200.k.2`.
    pub fn client_ip(&self, k: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, octet(k), 2)
    }

    /// The server's address toward the internet host ([`SERVER_INTERNET_IP`]): the
    /// source the internet host sees for NATed client traffic.
    pub fn server_internet_ip(&self) -> Ipv4Addr {
        SERVER_INTERNET_IP
    }

    /// The internet host's address ([`INTERNET_IP`]).
    pub fn internet_ip(&self) -> Ipv4Addr {
        INTERNET_IP
    }
}

/// `k` as the third octet (client counts are checked at construction).
fn octet(k: usize) -> u8 {
    u8::try_from(k).unwrap_or(u8::MAX)
}

/// What one [`transfer`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferReport {
    /// Bytes sent and received.
    pub bytes: u64,
    /// From the start of the connect to the receiver's confirmation.
    pub duration: Duration,
    /// Payload throughput, in megabits (10^6 bits) per second.
    pub mbit_per_s: f64,
    /// The sender's address as the receiver saw it.
    pub peer_seen: SocketAddr,
    /// The sender's local address (inside a tunnel: its tunnel address).
    pub sender_local: SocketAddr,
    /// SHA-256 of the payload; both sides computed the same.
    pub sha256: [u8; 32],
}

/// Size of one read or write.
const CHUNK: usize = 64 * 1024;
/// The seed of every [`transfer`]'s payload.
const PAYLOAD_SEED: u64 = 0x6175_7261_6c61_6221;

/// The first `n` bytes every [`transfer`] sends: what a test looks for in a capture to
/// show that a hop never saw the payload in clear.
pub fn payload_prefix(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    Payload(PAYLOAD_SEED).fill(&mut out);
    out
}

/// Deterministic pseudo-random payload (SplitMix64), so a corrupted byte cannot cancel
/// out and both sides need not share a buffer.
struct Payload(u64);

impl Payload {
    fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let bytes = z.to_le_bytes();
            word.copy_from_slice(&bytes[..word.len()]);
        }
    }
}

/// Time left until `deadline`, or an error naming `what` once it has passed.
fn remaining(deadline: Instant, what: &str) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(format!("timed out {what}"))
    } else {
        Ok(left)
    }
}

/// Longest a single blocking socket call waits before the stop conditions are checked
/// again.
const SLICE: Duration = Duration::from_millis(200);

/// When a transfer side must give up: the deadline, the other side's failure, or the
/// caller's cancel flag.
struct Stop<'a> {
    deadline: Instant,
    peer_failed: &'a AtomicBool,
    cancel: &'a AtomicBool,
}

impl Stop<'_> {
    /// How long the next blocking call may wait, or why to give up.
    fn next_wait(&self, what: &str, cap: Duration) -> Result<Duration, String> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(format!("cancelled {what}"));
        }
        if self.peer_failed.load(Ordering::Relaxed) {
            return Err(format!("the other side failed while {what}"));
        }
        Ok(remaining(self.deadline, what)?.min(cap))
    }
}

/// Sends `bytes` of deterministic pseudo-random data over TCP from namespace `from` to
/// `to_addr:port` (IPv4 or IPv6), where a listener runs inside namespace `to`, and checks
/// that the receiver got exactly that (SHA-256 on both sides, the receiver's digest sent
/// back).
///
/// Every blocking call is bounded: the whole exchange ends by `timeout`.
///
/// # Errors
/// A failure to listen, connect, send or receive (with the step named), a timeout, or
/// a digest mismatch.
pub fn transfer(
    from: &Netns,
    to: &Netns,
    to_addr: impl Into<IpAddr>,
    port: u16,
    bytes: usize,
    timeout: Duration,
) -> Result<TransferReport, String> {
    transfer_cancellable(
        from,
        to,
        to_addr,
        port,
        bytes,
        timeout,
        &AtomicBool::new(false),
    )
}

/// [`transfer`], which also gives up within about 200 ms once `cancel` is set (for a
/// caller that handles Ctrl-C).
///
/// # Errors
/// As [`transfer`], and "cancelled" once `cancel` is set.
pub fn transfer_cancellable(
    from: &Netns,
    to: &Netns,
    to_addr: impl Into<IpAddr>,
    port: u16,
    bytes: usize,
    timeout: Duration,
    cancel: &AtomicBool,
) -> Result<TransferReport, String> {
    let to_addr: IpAddr = to_addr.into();
    let deadline = Instant::now() + timeout;
    let (sender_failed, receiver_failed) = (AtomicBool::new(false), AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            let stop = Stop {
                deadline,
                peer_failed: &sender_failed,
                cancel,
            };
            let out = to
                .run(|| receive(to_addr.is_ipv6(), port, &stop, &ready_tx))
                .and_then(|r| r);
            // A listener that failed before being ready still unblocks the sender.
            let _ = ready_tx.send(Err("the receiver stopped".into()));
            if out.is_err() {
                receiver_failed.store(true, Ordering::Relaxed);
            }
            out
        });
        let sent = match ready_rx.recv_timeout(remaining(deadline, "waiting for the listener")?) {
            Ok(Ok(())) => {
                let stop = Stop {
                    deadline,
                    peer_failed: &receiver_failed,
                    cancel,
                };
                from.run(|| send(to_addr, port, bytes, &stop))
                    .and_then(|r| r)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err("timed out waiting for the listener".into()),
        };
        if sent.is_err() {
            sender_failed.store(true, Ordering::Relaxed);
        }
        let received = receiver
            .join()
            .map_err(|_| "the receiver thread panicked".to_owned())
            .and_then(|r| r);
        let (sender_local, digest, duration) = match (sent, &received) {
            (Ok(s), _) => s,
            (Err(e), Err(r)) => return Err(format!("sender: {e}; receiver: {r}")),
            (Err(e), Ok(_)) => return Err(format!("sender: {e}")),
        };
        let (peer_seen, got_bytes, got_digest) = received.map_err(|r| format!("receiver: {r}"))?;
        if got_bytes != bytes as u64 || got_digest != digest {
            return Err(format!(
                "payload corrupted: sent {bytes} bytes with SHA-256 {}, received {got_bytes} with {}",
                hex(&digest),
                hex(&got_digest)
            ));
        }
        let secs = duration.as_secs_f64().max(1e-9);
        Ok(TransferReport {
            bytes: got_bytes,
            duration,
            mbit_per_s: got_bytes as f64 * 8.0 / secs / 1e6,
            peer_seen,
            sender_local,
            sha256: digest,
        })
    })
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// One `read`, retried in slices until data, EOF, an error or a stop condition.
fn read_some(
    stream: &mut TcpStream,
    buf: &mut [u8],
    stop: &Stop<'_>,
    what: &str,
) -> Result<usize, String> {
    loop {
        let wait = stop.next_wait(what, SLICE)?;
        stream
            .set_read_timeout(Some(wait))
            .map_err(|e| format!("socket timeout: {e}"))?;
        match stream.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
}

/// Writes all of `data`, in slices (a `write` that times out wrote nothing).
fn write_all(
    stream: &mut TcpStream,
    mut data: &[u8],
    stop: &Stop<'_>,
    what: &str,
) -> Result<(), String> {
    while !data.is_empty() {
        let wait = stop.next_wait(what, SLICE)?;
        stream
            .set_write_timeout(Some(wait))
            .map_err(|e| format!("socket timeout: {e}"))?;
        match stream.write(data) {
            Ok(0) => return Err(format!("{what}: the connection closed")),
            Ok(n) => data = data.get(n..).unwrap_or_default(),
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
    Ok(())
}

/// Receiver side: listens on `0.0.0.0:port` (`[::]:port` when `v6`), accepts one
/// connection, reads to EOF while hashing, sends the digest back.
fn receive(
    v6: bool,
    port: u16,
    stop: &Stop<'_>,
    ready: &mpsc::Sender<Result<(), String>>,
) -> Result<(SocketAddr, u64, [u8; 32]), String> {
    let any: IpAddr = if v6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    let listener = match TcpListener::bind(SocketAddr::new(any, port))
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
    {
        Ok(l) => l,
        Err(e) => {
            let why = format!("cannot listen on port {port}: {e}");
            let _ = ready.send(Err(why.clone()));
            return Err(why);
        }
    };
    let _ = ready.send(Ok(()));
    let (mut stream, peer) = loop {
        match listener.accept() {
            Ok(c) => break c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                stop.next_wait("waiting for the connection", SLICE)?;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    stream
        .set_nonblocking(false)
        .map_err(|e| format!("socket mode: {e}"))?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let what = format!("receiving after {total} bytes");
        let n = read_some(&mut stream, &mut buf, stop, &what)?;
        if n == 0 {
            break;
        }
        ctx.update(buf.get(..n).unwrap_or_default());
        total += n as u64;
    }
    let sum = to_array(ctx.finish().as_ref());
    write_all(&mut stream, &sum, stop, "sending the digest back")?;
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("half-close after the digest: {e}"))?;
    Ok((peer, total, sum))
}

/// Longest single connect attempt; attempts repeat until the deadline.
const CONNECT_ATTEMPT: Duration = Duration::from_secs(1);

/// Sender side: connects, writes `bytes` of payload while hashing, half-closes, reads
/// the receiver's digest. Returns the local address, the digest and the duration.
fn send(
    to_addr: IpAddr,
    port: u16,
    bytes: usize,
    stop: &Stop<'_>,
) -> Result<(SocketAddr, [u8; 32], Duration), String> {
    let target = SocketAddr::new(to_addr, port);
    let start = Instant::now();
    let mut stream = loop {
        let what = format!("connecting to {target}");
        match TcpStream::connect_timeout(&target, stop.next_wait(&what, CONNECT_ATTEMPT)?) {
            Ok(s) => break s,
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("connect to {target}: {e}")),
        }
    };
    let local = stream
        .local_addr()
        .map_err(|e| format!("local address: {e}"))?;
    let mut payload = Payload(PAYLOAD_SEED);
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut left_to_send = bytes;
    while left_to_send > 0 {
        let n = left_to_send.min(CHUNK);
        let chunk = buf.get_mut(..n).unwrap_or_default();
        payload.fill(chunk);
        ctx.update(chunk);
        let what = format!("sending after {} bytes", bytes - left_to_send);
        write_all(&mut stream, chunk, stop, &what)?;
        left_to_send -= n;
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("half-close: {e}"))?;
    let sum = to_array(ctx.finish().as_ref());
    let mut theirs = [0u8; 32];
    let mut got = 0;
    while got < theirs.len() {
        let rest = theirs.get_mut(got..).unwrap_or_default();
        let n = read_some(&mut stream, rest, stop, "waiting for the receiver's digest")?;
        if n == 0 {
            return Err(format!(
                "the receiver closed after {got} of 32 digest bytes"
            ));
        }
        got += n;
    }
    let duration = start.elapsed();
    if theirs != sum {
        return Err(format!(
            "the receiver's SHA-256 {} differs from the sender's {}",
            hex(&theirs),
            hex(&sum)
        ));
    }
    Ok((local, sum, duration))
}

fn to_array(d: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (o, b) in out.iter_mut().zip(d) {
        *o = *b;
    }
    out
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sets the `/etc/resolv.conf` that what runs in `ns` sees.
fn write_resolv(ns: &Netns, text: &str) -> Result<(), String> {
    let path = ns.resolv_conf();
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn payload_is_deterministic_across_chunk_boundaries() {
        let mut a = Payload(7);
        let mut whole = vec![0u8; 64];
        a.fill(&mut whole);
        let mut b = Payload(7);
        let mut parts = vec![0u8; 64];
        b.fill(&mut parts[..32]);
        b.fill(&mut parts[32..]);
        assert_eq!(whole, parts);
        assert_ne!(whole, vec![0u8; 64]);
        let mut c = Payload(8);
        let mut other = vec![0u8; 64];
        c.fill(&mut other);
        assert_ne!(whole, other);
    }

    #[test]
    fn remaining_fails_once_the_deadline_passed() {
        let past = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(remaining(past, "x").unwrap_err().contains("timed out x"));
        assert!(remaining(Instant::now() + Duration::from_secs(5), "x").unwrap() > Duration::ZERO);
    }

    #[test]
    fn hex_and_to_array() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        let a = to_array(&[1u8; 32]);
        assert_eq!(a, [1u8; 32]);
    }
}
