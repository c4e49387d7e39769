//! `server.toml`: `[server]`, `[server.pool]`, `[server.nat]`, `[server.relay]`,
//! `[server.metrics]`, `[transport]`, `[tunnel]`, `[pki]`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

use crate::ConfigError;
use crate::cidr::Ipv4Cidr;
use crate::common::{
    Access, Resolver, TransportSection, TunnelSection, check_client_id, check_dns_name, check_file,
    check_iface_name, check_knock_key, check_socket_path, check_user,
};
use crate::dns::check_resolvers;
use crate::error::Problems;
use crate::split::IpCidr;

/// Default admin socket of the server daemon (distinct from the client's, so both can run
/// on one host).
pub const DEFAULT_SERVER_ADMIN_SOCKET: &str = "/run/aura/server/admin.sock";
/// Default client address pool. A /24 in 10/8 that home routers, Docker (172.17/16) and
/// Podman (10.88/16) do not use by default.
pub const DEFAULT_POOL_CIDR: &str = "10.77.0.0/24";

/// A whole server configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `[server]` (required: it holds the server's name).
    pub server: ServerSection,
    /// `[transport]`.
    #[serde(default)]
    pub transport: TransportSection,
    /// `[tunnel]`.
    #[serde(default)]
    pub tunnel: TunnelSection,
    /// `[pki]` (required).
    pub pki: ServerPki,
}

fn default_listen() -> IpAddr {
    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}
fn default_server_admin_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SERVER_ADMIN_SOCKET)
}

/// The most protocol workers a server runs (`[server] workers`).
pub const MAX_SERVER_WORKERS: u16 = 64;

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// The server's DNS name; its certificate must carry it, clients check it. Required.
    pub name: String,
    /// Address every carrier binds to. Default `0.0.0.0`.
    #[serde(default = "default_listen")]
    pub listen: IpAddr,
    /// Admin socket path. Default [`DEFAULT_SERVER_ADMIN_SOCKET`].
    #[serde(default = "default_server_admin_socket")]
    pub admin_socket: PathBuf,
    /// Redact client identities and addresses from logs. Default `false`.
    #[serde(default)]
    pub no_logs: bool,
    /// User to switch to once the TUN and sockets are open. Default: stay as started.
    #[serde(default)]
    pub run_as: Option<String>,
    /// Protocol workers, 1 to [`MAX_SERVER_WORKERS`]: each reads its own UDP socket on
    /// the carrier's port (`SO_REUSEPORT`, clients steered by source address) and holds
    /// its own sessions and share of the handshake limits, so handshakes and packets run
    /// on that many cores. Default: the CPUs the server may run on, at most
    /// [`MAX_SERVER_WORKERS`].
    #[serde(default)]
    pub workers: Option<u16>,
    /// Resolvers named to clients (a `DnsAssign` after the handshake), reached through the
    /// tunnel. Default (key absent): the server's own tunnel address, where it forwards
    /// queries to the resolvers of the server host's `/etc/resolv.conf`. `[]`: none named
    /// (clients keep their own).
    #[serde(default)]
    pub dns: Option<Vec<IpAddr>>,
    /// `[server.pool]`.
    #[serde(default)]
    pub pool: PoolSection,
    /// `[server.nat]`.
    #[serde(default)]
    pub nat: NatSection,
    /// `[server.relay]`.
    #[serde(default)]
    pub relay: RelaySection,
    /// `[server.decoy]`.
    #[serde(default)]
    pub decoy: DecoySection,
    /// `[server.firewall]`.
    #[serde(default)]
    pub firewall: FirewallSection,
    /// Cover traffic granted to clients that ask.
    #[serde(default)]
    pub cover: CoverSection,
    /// `[server.metrics]`: the Prometheus text endpoint (off by default).
    #[serde(default)]
    pub metrics: crate::MetricsSection,
}

/// `[server.firewall]`: what clients reach besides the internet. By default (this
/// section empty) a client reaches the internet through NAT and nothing else: not other
/// clients, not the server host's own services, not private, shared, link-local
/// (cloud metadata), loopback or multicast addresses, wherever they are. Each key opens
/// one thing. Applies with `server.nat.auto` (the rules live in the same nftables table).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FirewallSection {
    /// Clients may reach each other through the server. Default `false`.
    #[serde(default)]
    pub client_to_client: bool,
    /// Networks clients may reach although they are private or not behind the egress
    /// interface (an office LAN behind the server), e.g. `["192.168.10.0/24"]`.
    #[serde(default)]
    pub allow_subnets: Vec<Ipv4Cidr>,
    /// Ports of the server host itself clients may reach through the tunnel, as
    /// `"PORT/udp"` or `"PORT/tcp"`, e.g. `["53/udp", "53/tcp"]` for a resolver there.
    #[serde(default)]
    pub allow_host_ports: Vec<HostPort>,
}

/// A port on the server host with its protocol: `"53/udp"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort {
    /// The port, 1–65535.
    pub port: u16,
    /// `true`: TCP; `false`: UDP.
    pub tcp: bool,
}

impl std::str::FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not PORT/udp or PORT/tcp (for example \"53/udp\")");
        let (port, proto) = s.split_once('/').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 {
            return Err(format!("{s:?}: port 0 is not a port"));
        }
        let tcp = match proto {
            "tcp" => true,
            "udp" => false,
            _ => return Err(bad()),
        };
        Ok(Self { port, tcp })
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.port, if self.tcp { "tcp" } else { "udp" })
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl FirewallSection {
    fn check(&self, p: &mut Problems, pool: &Ipv4Cidr, nat_auto: bool) {
        for net in &self.allow_subnets {
            if net.has_host_bits() {
                p.push(
                    "server.firewall.allow_subnets",
                    format!("{net} has host bits set; write the network address"),
                );
            }
            let overlaps = net.contains(pool.network()) || pool.contains(net.network());
            if overlaps {
                p.push(
                    "server.firewall.allow_subnets",
                    format!(
                        "{net} overlaps the client pool {pool}; clients reaching each other \
                         is server.firewall.client_to_client"
                    ),
                );
            }
        }
        let opens = self.client_to_client
            || !self.allow_subnets.is_empty()
            || !self.allow_host_ports.is_empty();
        if opens && !nat_auto {
            p.push(
                "server.firewall",
                "applies only with server.nat.auto = true (its rules live in Aura's nftables \
                 table); with NAT managed by hand, manage the firewall there too",
            );
        }
    }
}

/// `[server.decoy]`: the web server strangers meet on the TLS and QUIC carriers while
/// knocking is on. Either `upstream` (forward the untouched connection to a real site: TLS
/// to its TCP port, QUIC to the same port over UDP), or `cert` and
/// `key` (serve `root`, or a built-in page, with the operator's certificate). Neither: a
/// built-in page with a self-signed certificate for the first name of the SNI palette.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DecoySection {
    /// `host:port` of the real site strangers are forwarded to.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Directory the served decoy serves (index.html for directories).
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Certificate chain (PEM) the served decoy presents.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM, mode 0600).
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl DecoySection {
    /// Whether any key is set.
    pub fn is_set(&self) -> bool {
        self.upstream.is_some() || self.root.is_some() || self.cert.is_some() || self.key.is_some()
    }

    fn check(&self, p: &mut Problems, knock: bool, run_as: bool) {
        if self.is_set() && !knock {
            p.push(
                "server.decoy",
                "set while transport.knock = false: without a knock the server cannot tell \
                 strangers from clients; remove the section or turn the knock on",
            );
        }
        if let Some(u) = &self.upstream {
            let ok = u.rsplit_once(':').is_some_and(|(h, port)| {
                !h.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
            });
            if !ok {
                p.push(
                    "server.decoy.upstream",
                    format!("{u:?} is not host:port (for example \"www.example.org:443\")"),
                );
            }
            if self.root.is_some() || self.cert.is_some() || self.key.is_some() {
                p.push(
                    "server.decoy.upstream",
                    "set together with root, cert or key: a forwarded decoy serves nothing \
                     itself; keep upstream alone, or remove it to serve a site",
                );
            }
        }
        match (&self.cert, &self.key) {
            (Some(c), Some(k)) => {
                check_file(p, "server.decoy.cert", c, Access::Public);
                check_file(p, "server.decoy.key", k, Access::secret(run_as));
            }
            (Some(_), None) => p.push(
                "server.decoy.key",
                "missing: server.decoy.cert needs its key",
            ),
            (None, Some(_)) => p.push(
                "server.decoy.cert",
                "missing: server.decoy.key needs its certificate",
            ),
            (None, None) => {}
        }
        if let Some(r) = &self.root
            && !r.is_dir()
        {
            p.push(
                "server.decoy.root",
                format!("{} is not a directory", r.display()),
            );
        }
    }
}

/// How addresses are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PoolStrategy {
    /// Only clients listed in `static` are admitted, each at its address.
    StaticOnly,
    /// Every client gets a free address; `static` must be empty.
    DynamicOnly,
    /// Listed clients get their address, others a free one. The default.
    #[default]
    StaticOrDynamic,
}

impl PoolStrategy {
    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            PoolStrategy::StaticOnly => "static_only",
            PoolStrategy::DynamicOnly => "dynamic_only",
            PoolStrategy::StaticOrDynamic => "static_or_dynamic",
        }
    }
}

fn default_pool_cidr() -> Ipv4Cidr {
    Ipv4Cidr::clamped(Ipv4Addr::new(10, 77, 0, 0), 24)
}

/// `[server.pool]`: tunnel addresses for clients.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    /// The network. Its network and broadcast addresses and the server's own address are
    /// never handed out. Default [`DEFAULT_POOL_CIDR`].
    #[serde(default = "default_pool_cidr")]
    pub cidr: Ipv4Cidr,
    /// Default [`PoolStrategy::StaticOrDynamic`].
    #[serde(default)]
    pub strategy: PoolStrategy,
    /// The server's own tunnel address. Default: the first address of `cidr`.
    #[serde(default)]
    pub server_address: Option<Ipv4Addr>,
    /// Fixed addresses: client id → address.
    #[serde(default, rename = "static")]
    pub static_map: BTreeMap<String, Ipv4Addr>,
    /// IPv6 inside the tunnel: every client also gets an address of `cidr6`. Default
    /// `true`.
    #[serde(default = "yes")]
    pub ipv6: bool,
    /// The IPv6 pool. A client's IPv6 address has the same host number as its IPv4 one
    /// (`10.77.0.5` → `fd61:7572:6100::5`), so it needs at least as many host bits.
    /// Default [`DEFAULT_POOL_CIDR6`] (a unique local address network).
    #[serde(default)]
    pub cidr6: Option<IpCidr>,
}

/// Default IPv6 pool: a unique local (ULA, `fd00::/8`) /64.
pub const DEFAULT_POOL_CIDR6: &str = "fd61:7572:6100::/64";

fn default_pool_cidr6() -> IpCidr {
    DEFAULT_POOL_CIDR6
        .parse()
        .unwrap_or_else(|_| unreachable!("the default IPv6 pool parses"))
}

impl Default for PoolSection {
    fn default() -> Self {
        Self {
            cidr: default_pool_cidr(),
            strategy: PoolStrategy::default(),
            server_address: None,
            static_map: BTreeMap::new(),
            ipv6: true,
            cidr6: None,
        }
    }
}

impl PoolSection {
    /// The server's own tunnel address: `server_address`, or the first address of `cidr`.
    pub fn server_address(&self) -> Ipv4Addr {
        self.server_address.unwrap_or(self.cidr.first_host())
    }

    /// The IPv6 pool: `cidr6` or [`DEFAULT_POOL_CIDR6`].
    pub fn pool6(&self) -> IpCidr {
        self.cidr6.unwrap_or_else(default_pool_cidr6)
    }

    /// How many addresses can go to clients: the network minus its network and
    /// broadcast addresses and the server's own.
    pub fn client_capacity(&self) -> u64 {
        self.cidr.size().saturating_sub(3)
    }

    fn check(&self, p: &mut Problems) {
        let cidr = self.cidr;
        if !self.ipv6 && self.cidr6.is_some() {
            p.push(
                "server.pool.cidr6",
                "is set but server.pool.ipv6 is false: remove one of them",
            );
        }
        if self.ipv6 {
            let c6 = self.pool6();
            match c6.addr() {
                IpAddr::V4(_) => p.push(
                    "server.pool.cidr6",
                    format!("{c6} is an IPv4 network; cidr6 is the IPv6 pool"),
                ),
                IpAddr::V6(a) if a.is_multicast() || a.is_loopback() || a.is_unspecified() => {
                    p.push("server.pool.cidr6", format!("{c6} cannot be a pool"));
                }
                IpAddr::V6(_) => {
                    let host6 = 128 - u32::from(c6.prefix_len());
                    let host4 = 32 - u32::from(cidr.prefix_len());
                    if host6 < host4 || c6.prefix_len() > 126 || c6.prefix_len() < 48 {
                        p.push(
                            "server.pool.cidr6",
                            format!(
                                "{c6} must be a /48 to /126 with at least as many host bits as \
                                 the IPv4 pool {cidr} ({host4}): each client's IPv6 address has \
                                 its IPv4 host number"
                            ),
                        );
                    }
                }
            }
        }
        let mut usable = true;
        if cidr.has_host_bits() {
            p.push(
                "server.pool.cidr",
                format!(
                    "{cidr} has host bits set; write the network address, {}/{}",
                    cidr.network(),
                    cidr.prefix_len()
                ),
            );
            usable = false;
        }
        if cidr.prefix_len() > 30 {
            p.push(
                "server.pool.cidr",
                format!(
                    "{cidr} is too small: a pool needs at least a /30 (network, server, one \
                     client, broadcast)"
                ),
            );
            usable = false;
        }
        if !usable {
            return;
        }
        let server = self.server_address();
        let reserved = |ip: Ipv4Addr| -> Option<&'static str> {
            if ip == cidr.network() {
                Some("the pool's network address")
            } else if ip == cidr.broadcast() {
                Some("the pool's broadcast address")
            } else {
                None
            }
        };
        if let Some(a) = self.server_address {
            if !cidr.contains(a) {
                p.push(
                    "server.pool.server_address",
                    format!("{a} is outside the pool {cidr}"),
                );
            } else if let Some(what) = reserved(a) {
                p.push("server.pool.server_address", format!("{a} is {what}"));
            }
        }
        let n = self.static_map.len() as u64;
        if n > self.client_capacity() {
            p.push(
                "server.pool.static",
                format!(
                    "{n} static addresses do not fit in {cidr}, which has room for {} \
                     (network, broadcast and server addresses are reserved)",
                    self.client_capacity()
                ),
            );
        }
        match self.strategy {
            PoolStrategy::StaticOnly if self.static_map.is_empty() => p.push(
                "server.pool.static",
                "strategy is static_only but no client is listed, so no client could connect",
            ),
            PoolStrategy::DynamicOnly if !self.static_map.is_empty() => p.push(
                "server.pool.strategy",
                "dynamic_only ignores the static map; use static_or_dynamic or remove \
                 [server.pool.static]",
            ),
            _ => {}
        }
        let mut seen: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
        for (id, &addr) in &self.static_map {
            let key = format!("server.pool.static.{id}");
            if let Err(why) = check_client_id(id) {
                p.push(&key, format!("the client id {id:?} {why}"));
            }
            if !cidr.contains(addr) {
                p.push(&key, format!("{addr} is outside the pool {cidr}"));
            } else if let Some(what) = reserved(addr) {
                p.push(&key, format!("{addr} is {what}, which is reserved"));
            } else if addr == server {
                p.push(
                    &key,
                    format!("{addr} is the server's own address, which is reserved"),
                );
            } else if let Some(other) = seen.insert(addr, id) {
                p.push(&key, format!("{addr} is already assigned to {other}"));
            }
        }
    }
}

fn yes() -> bool {
    true
}

/// `[server.nat]`: IPv4 forwarding and masquerading of client traffic.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatSection {
    /// Enable IPv4 forwarding and MASQUERADE toward the egress interface at start, undo
    /// at exit. Default `true`: without it clients reach nothing beyond the server.
    #[serde(default = "yes")]
    pub auto: bool,
    /// Egress interface. Default: the interface of the default route, found at start.
    #[serde(default)]
    pub egress_iface: Option<String>,
    /// Log the changes instead of making them. Default `false`.
    #[serde(default)]
    pub dry_run: bool,
    /// IPv6 of the pool: `"nat66"` (default: masqueraded behind the server's IPv6
    /// address) or `"routed"` (the pool is a global prefix routed to this server; no
    /// translation).
    #[serde(default)]
    pub ipv6: Nat6Mode,
    /// IPv6 egress interface. Default: the interface of the IPv6 default route, else
    /// `egress_iface`.
    #[serde(default)]
    pub egress_iface6: Option<String>,
}

/// How the pool's IPv6 reaches the internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Nat6Mode {
    /// Masquerade (NAT66).
    #[default]
    Nat66,
    /// Routed: no translation.
    Routed,
}

impl Default for NatSection {
    fn default() -> Self {
        Self {
            auto: true,
            egress_iface: None,
            dry_run: false,
            ipv6: Nat6Mode::default(),
            egress_iface6: None,
        }
    }
}

/// `[server.relay]`: act as the entry hop of clients' two-hop circuits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySection {
    /// Accept circuit extension requests. Default `false`.
    #[serde(default)]
    pub enabled: bool,
    /// Hops (`IP:port`) circuits may be extended to. Empty (the default) with the relay
    /// enabled: any (a warning at start says so; clients still need a certificate).
    #[serde(default)]
    pub allow_extend_to: Vec<SocketAddr>,
}

/// `[server.cover]`: cover traffic for clients that ask for it (`[transport] cover` on
/// theirs). The server grants a client's profile with its budget capped at
/// `max_budget_percent`, runs the same profile on its side, and holds the padding of all
/// clients together to `total_budget_percent` of what it sends them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverSection {
    /// Grant cover traffic. Default `false`: every request is refused.
    #[serde(default)]
    pub enabled: bool,
    /// Largest budget granted to one client, in percent of the packets each side sends.
    /// Default 50.
    #[serde(
        default = "default_max_cover",
        deserialize_with = "crate::common::de_percent_required"
    )]
    pub max_budget_percent: u8,
    /// Largest share of padding among all the packets the server sends in sessions with
    /// cover traffic, in percent. Default 30.
    #[serde(
        default = "default_total_cover",
        deserialize_with = "crate::common::de_percent_required"
    )]
    pub total_budget_percent: u8,
}

fn default_max_cover() -> u8 {
    50
}
fn default_total_cover() -> u8 {
    30
}

impl Default for CoverSection {
    fn default() -> Self {
        Self {
            enabled: false,
            max_budget_percent: default_max_cover(),
            total_budget_percent: default_total_cover(),
        }
    }
}

/// `[pki]` of a server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerPki {
    /// CA certificate (PEM). Required.
    pub ca_cert: PathBuf,
    /// The server's certificate (PEM). Required.
    pub cert: PathBuf,
    /// The server's private key (PEM, mode 0600). Required.
    pub key: PathBuf,
    /// The deployment's knock key (`knock.key`, mode 0600). Required while
    /// `transport.knock` is on (the default); refused when it is off.
    #[serde(default)]
    pub knock_key: Option<PathBuf>,
    /// The CA's CRL (PEM). Required: the verifier is strict and denies without one.
    pub crl: PathBuf,
    /// CA private key, only needed to re-sign the CRL before it expires. Default: none.
    #[serde(default)]
    pub ca_key: Option<PathBuf>,
    /// Send the CRL to each client right after its handshake. Default `true`.
    #[serde(default = "yes")]
    pub crl_push: bool,
}

impl ServerConfig {
    pub(crate) fn resolve(&mut self, r: &Resolver<'_>) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        r.resolve(&mut p, "server.admin_socket", &mut self.server.admin_socket);
        r.resolve(&mut p, "pki.ca_cert", &mut self.pki.ca_cert);
        r.resolve(&mut p, "pki.cert", &mut self.pki.cert);
        r.resolve(&mut p, "pki.key", &mut self.pki.key);
        r.resolve(&mut p, "pki.crl", &mut self.pki.crl);
        if let Some(k) = &mut self.pki.knock_key {
            r.resolve(&mut p, "pki.knock_key", k);
        }
        if let Some(k) = &mut self.pki.ca_key {
            r.resolve(&mut p, "pki.ca_key", k);
        }
        let d = &mut self.server.decoy;
        for (key, path) in [
            ("server.decoy.root", &mut d.root),
            ("server.decoy.cert", &mut d.cert),
            ("server.decoy.key", &mut d.key),
        ] {
            if let Some(path) = path {
                r.resolve(&mut p, key, path);
            }
        }
        p.finish()
    }

    /// Checks every value, and that the `[pki]` files exist and are readable; returns
    /// all problems found at once.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] listing each problem with its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        let s = &self.server;
        if let Err(why) = check_dns_name(&s.name) {
            p.push("server.name", format!("{:?} {why}", s.name));
        }
        check_socket_path(&mut p, "server.admin_socket", &s.admin_socket);
        if let Some(w) = s.workers
            && !(1..=MAX_SERVER_WORKERS).contains(&w)
        {
            p.push(
                "server.workers",
                format!("{w} is not a number of workers from 1 to {MAX_SERVER_WORKERS}"),
            );
        }
        if let Some(u) = &s.run_as
            && let Err(why) = check_user(u)
        {
            p.push("server.run_as", format!("{u:?} {why}"));
        }
        s.pool.check(&mut p);
        if let Some(list) = &s.dns {
            check_resolvers(&mut p, "server.dns", list);
        }
        if let Some(i) = &s.nat.egress_iface
            && let Err(why) = check_iface_name(i)
        {
            p.push("server.nat.egress_iface", format!("{i:?} {why}"));
        }
        if let Some(i) = &s.nat.egress_iface6
            && let Err(why) = check_iface_name(i)
        {
            p.push("server.nat.egress_iface6", format!("{i:?} {why}"));
        }
        if !s.relay.enabled && !s.relay.allow_extend_to.is_empty() {
            p.push(
                "server.relay.allow_extend_to",
                "is set but server.relay.enabled is false: enable the relay or remove the list",
            );
        }
        for a in &s.relay.allow_extend_to {
            if a.port() == 0 {
                p.push(
                    "server.relay.allow_extend_to",
                    format!("{a}: port 0 is not a valid port"),
                );
            }
        }
        if self.transport.cover != crate::CoverMode::Off
            || self.transport.cover_budget_percent.is_some()
        {
            p.push(
                "transport.cover",
                "is a client setting: a server grants cover traffic with [server.cover]",
            );
        }
        if !s.cover.enabled && s.cover != CoverSection::default() {
            p.push(
                "server.cover",
                "budgets are set but server.cover.enabled is false: enable cover traffic or \
                 remove them",
            );
        }
        s.decoy
            .check(&mut p, self.transport.knock, s.run_as.is_some());
        s.firewall.check(&mut p, &s.pool.cidr, s.nat.auto);
        s.metrics.check(&mut p, "server.metrics");
        if let Some(m) = s.metrics.listen
            && self.transport.carriers.contains(&crate::Carrier::Tls)
            && m.port() == self.transport.tls_port
            && (m.ip() == s.listen || s.listen.is_unspecified() || m.ip().is_unspecified())
        {
            p.push(
                "server.metrics.listen",
                format!(
                    "{m} takes the TLS carrier's TCP port (transport.tls_port = {}): choose \
                     another port",
                    self.transport.tls_port
                ),
            );
        }
        self.transport.check(&mut p);
        self.tunnel.check(&mut p);
        for (key, set) in [
            ("tunnel.split", self.tunnel.split.is_some()),
            ("tunnel.os_routes", self.tunnel.os_routes.is_some()),
        ] {
            if set {
                p.push(
                    key,
                    "is a client setting: a server does not route through a tunnel",
                );
            }
        }
        let k = &self.pki;
        let run_as = self.server.run_as.is_some();
        check_file(&mut p, "pki.ca_cert", &k.ca_cert, Access::Public);
        check_file(&mut p, "pki.cert", &k.cert, Access::Public);
        check_file(&mut p, "pki.key", &k.key, Access::secret(run_as));
        check_file(&mut p, "pki.crl", &k.crl, Access::Public);
        if let Some(ca_key) = &k.ca_key {
            check_file(&mut p, "pki.ca_key", ca_key, Access::Secret);
        }
        check_knock_key(
            &mut p,
            self.transport.knock,
            k.knock_key.as_deref(),
            Access::secret(run_as),
        );
        p.finish()
    }
}
