//! The attacks of the flood tier (probes.rs), each run on a thread inside an attacker's
//! namespace until told to stop: first flights from spoofed sources (a raw socket),
//! idle stranger TCP connections to the TLS port, and an insider's half-open flood.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aura_lab::netns::Netns;
use aura_proto::{Endpoint, EndpointConfig};
use aura_transport::camo::datagram::{CLIENT_MAX_HANDSHAKE_DATAGRAM, DatagramCamo, Side};
use aura_transport::camo::knock::KnockKeys;
use aura_transport::camo::mask::Mask;
use rustls_pki_types::UnixTime;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Distinct first flights of one deployment member, each sent with a fresh knock: what an
/// insider (it holds a bundle) can make the server work on.
pub struct Inits {
    flights: Vec<Vec<Vec<u8>>>,
    camo: DatagramCamo,
    mask: Mask,
    unix: u64,
}

impl Inits {
    /// `n` first flights (Inits, fragmented for UDP) of the client whose client.toml is
    /// `client_toml`, addressed to `server`.
    pub fn new(client_toml: &Path, server: SocketAddr, n: usize) -> Self {
        let cfg = aura_config::load_client(client_toml).unwrap();
        let opts = aura_node::options::ClientOptions::from_config(&cfg).unwrap();
        let (creds, verifier) = opts.files.load().unwrap();
        let mut ec = EndpointConfig::new(
            creds.ca_der.clone(),
            creds.identity.clone(),
            verifier,
            false,
        );
        ec.secret = creds.secret.clone();
        ec.max_datagram = CLIENT_MAX_HANDSHAKE_DATAGRAM;
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        let mut ep = Endpoint::new(ec, seed, Instant::now(), UnixTime::now()).unwrap();
        let flights = (0..n)
            .map(|_| {
                ep.connect(Instant::now(), server, &opts.server_name)
                    .unwrap();
                std::iter::from_fn(|| ep.poll_transmit())
                    .map(|t| t.data)
                    .collect()
            })
            .collect();
        let unix = ep.wall_time(Instant::now()).as_secs();
        let mask = opts
            .masks
            .seed(&creds.ca_der)
            .mask_at(i64::try_from(unix).unwrap());
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        let camo = DatagramCamo::new(Side::Client, KnockKeys::new(ep.secret()), &seed, unix);
        Inits {
            flights,
            camo,
            mask,
            unix,
        }
    }

    /// First flight number `i` (modulo how many there are), each datagram knocked afresh.
    pub fn knocked(&mut self, i: usize) -> Vec<Vec<u8>> {
        let flight = &self.flights[i % self.flights.len()];
        flight
            .iter()
            .map(|d| {
                let mut w = Vec::new();
                self.camo.append(d, &self.mask, self.unix, &mut w);
                w
            })
            .collect()
    }
}

/// An IPv4 + UDP packet from `src` to `dst` carrying `payload` (the kernel fills in the
/// IP checksum and id; a zero UDP checksum means none).
fn udp_packet(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = u16::try_from(8 + payload.len()).unwrap();
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(usize::from(total));
    p.extend_from_slice(&[0x45, 0, 0, 0]);
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src.ip().octets());
    p.extend_from_slice(&dst.ip().octets());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&udp_len.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// Calls `each` with how many items are due, so that `per_sec` a second go out on
/// average (catching up after a slow turn), until `stop`.
fn paced(per_sec: u32, stop: &AtomicBool, mut each: impl FnMut(u32)) {
    let start = Instant::now();
    let mut done = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * f64::from(per_sec)) as u64;
        if due > done {
            each(u32::try_from(due - done).unwrap_or(u32::MAX));
            done = due;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// From inside `ns`: `per_sec` first flights a second to `server`, each from a random
/// address in `spoofed` (its last octets) on `subnet` and a random port, through a raw
/// socket, until `stop`. Returns how many flights went out.
pub fn spoofed_inits(
    ns: &Netns,
    inits: &mut Inits,
    subnet: [u8; 3],
    spoofed: std::ops::RangeInclusive<u8>,
    server: SocketAddrV4,
    per_sec: u32,
    stop: &AtomicBool,
) -> u64 {
    ns.run(|| {
        let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255))).unwrap();
        let to = SockAddr::from(SocketAddrV4::new(*server.ip(), 0));
        let (lo, span) = (
            *spoofed.start(),
            u32::from(*spoofed.end() - *spoofed.start()) + 1,
        );
        let mut sent = 0u64;
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        paced(per_sec, stop, |n| {
            for _ in 0..n {
                // xorshift: a different source and port for each flight.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let last = lo + u8::try_from((x as u32) % span).unwrap();
                let ip = Ipv4Addr::new(subnet[0], subnet[1], subnet[2], last);
                let src = SocketAddrV4::new(ip, 1024 + ((x >> 32) as u16 % 60_000));
                for d in inits.knocked(sent as usize) {
                    let _ = raw.send_to(&udp_packet(src, server, &d), &to);
                }
                sent += 1;
            }
        });
        sent
    })
    .unwrap()
}

/// From inside `ns`: `per_sec` first flights a second to `server` from `from` (a real
/// address of the attacker, so it gets the server's answers, which it reads and drops),
/// never finishing a handshake, until `stop`. Returns how many flights went out.
pub fn insider_half_open(
    ns: &Netns,
    inits: &mut Inits,
    from: Ipv4Addr,
    server: SocketAddrV4,
    per_sec: u32,
    stop: &AtomicBool,
) -> u64 {
    ns.run(|| {
        let sock = std::net::UdpSocket::bind((from, 0)).unwrap();
        sock.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 65_536];
        let mut sent = 0u64;
        paced(per_sec, stop, |n| {
            for _ in 0..n {
                for d in inits.knocked(sent as usize) {
                    let _ = sock.send_to(&d, server);
                }
                sent += 1;
            }
            while sock.recv_from(&mut buf).is_ok() {}
        });
        sent
    })
    .unwrap()
}

/// From inside `ns`: `n` TCP connections to `server`, spread over the addresses `from`,
/// that never send a byte; one the server closes is opened again. Runs until `stop` and
/// returns the most that were open at once.
pub fn idle_strangers(
    ns: &Netns,
    from: &[Ipv4Addr],
    server: SocketAddrV4,
    n: usize,
    stop: &AtomicBool,
) -> usize {
    ns.run(|| {
        let open = |i: usize| -> Option<Socket> {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
            let src = SocketAddrV4::new(from[i % from.len()], 0);
            s.bind(&SockAddr::from(src)).ok()?;
            s.connect_timeout(&SockAddr::from(server), Duration::from_secs(2))
                .ok()?;
            s.set_nonblocking(true).ok()?;
            Some(s)
        };
        let mut conns: Vec<Option<Socket>> = (0..n).map(|_| None).collect();
        let mut most = 0;
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 512];
        while !stop.load(Ordering::Relaxed) {
            for (i, c) in conns.iter_mut().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let closed = match c {
                    None => true,
                    // Whatever the server sends is read and dropped; end of stream or an
                    // error means it closed the connection.
                    Some(s) => match s.recv(&mut buf) {
                        Ok(0) => true,
                        Ok(_) => false,
                        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                    },
                };
                if closed {
                    *c = open(i);
                }
            }
            most = most.max(conns.iter().filter(|c| c.is_some()).count());
            std::thread::sleep(Duration::from_millis(200));
        }
        most
    })
    .unwrap()
}
