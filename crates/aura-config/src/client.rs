//! `client.toml`: `[client]`, `[client.circuit]`, `[client.metrics]`, `[transport]`,
//! `[tunnel]`, `[pki]`.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::ConfigError;
use crate::common::{
    Access, Resolver, TransportSection, TunnelSection, check_dns_name, check_file, check_host,
    check_knock_key, check_socket_path, check_user,
};
use crate::dns::ClientDns;
use crate::error::Problems;

/// Default admin socket of the client daemon.
pub const DEFAULT_CLIENT_ADMIN_SOCKET: &str = "/run/aura/client/admin.sock";
/// Default number of hops of a circuit: an entry relay, then the exit.
pub const DEFAULT_HOPS: u8 = 2;
/// Largest number of hops of a circuit (the entry, two middle relays, the exit).
pub const MAX_HOPS: u8 = 4;
/// Bytes each hop of a circuit adds to a packet: an Aura data header and tag (29) and the
/// UDP camouflage's padding length (2). The tunnel MTU of an `n`-hop circuit is at most
/// [`crate::MAX_MTU`] less `n - 1` times this.
pub const HOP_OVERHEAD: u16 = crate::AURA_DATA_OVERHEAD + crate::UDP_CAMO_OVERHEAD;

/// A whole client configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `[client]` (required: it names the server).
    pub client: ClientSection,
    /// `[transport]`.
    #[serde(default)]
    pub transport: TransportSection,
    /// `[tunnel]`.
    #[serde(default)]
    pub tunnel: TunnelSection,
    /// `[pki]` (required).
    pub pki: ClientPki,
}

fn default_client_admin_socket() -> PathBuf {
    PathBuf::from(DEFAULT_CLIENT_ADMIN_SOCKET)
}

/// `[client]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    /// The server: a DNS name or an IP address, without port. Required.
    pub server: String,
    /// The name the server's certificate must carry. Default: `server`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Other addresses of the same server, tried (in random order) after `server`.
    /// Default: none.
    #[serde(default)]
    pub bridges: Vec<String>,
    /// Admin socket path. Default [`DEFAULT_CLIENT_ADMIN_SOCKET`].
    #[serde(default = "default_client_admin_socket")]
    pub admin_socket: PathBuf,
    /// Redact identities and addresses from logs. Default `false`.
    #[serde(default)]
    pub no_logs: bool,
    /// User to switch to once the TUN is open. Default: stay as started.
    #[serde(default)]
    pub run_as: Option<String>,
    /// While the client runs (connecting, reconnecting, server down), let nothing in or
    /// out but the tunnel, the carriers to the server and bridges, DHCP, IPv6 on the link
    /// and DIRECT networks (nftables table `inet aura_client`). Default `false`.
    #[serde(default)]
    pub kill_switch: bool,
    /// Lockdown: the kill switch stays after the client stops (or dies) until
    /// `aura client` runs again or `aura client unlock` lifts it. Needs `kill_switch`.
    /// Default `false`.
    #[serde(default)]
    pub lockdown: bool,
    /// Resolvers the system uses while the tunnel is up: `"server"` (default: those the
    /// server names, through the tunnel), `"off"` (the system's DNS is left alone), or a
    /// list of IP addresses (reached through the tunnel).
    #[serde(default)]
    pub dns: ClientDns,
    /// `[client.circuit]`.
    #[serde(default)]
    pub circuit: CircuitSection,
    /// `[client.metrics]`: the Prometheus text endpoint (off by default).
    #[serde(default)]
    pub metrics: crate::MetricsSection,
}

impl ClientSection {
    /// The name the server's certificate must carry: `server_name`, else `server`.
    pub fn server_name(&self) -> &str {
        self.server_name.as_deref().unwrap_or(&self.server)
    }
}

fn default_hops() -> u8 {
    DEFAULT_HOPS
}

/// A middle relay of a circuit (`[client.circuit] middle`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiddleHop {
    /// The relay's IP address or DNS name.
    pub address: String,
    /// The name its certificate must carry. Default: `address`.
    #[serde(default)]
    pub name: Option<String>,
}

impl MiddleHop {
    /// The name the relay's certificate must carry.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.address)
    }
}

/// `[client.circuit]`: reach `server` (the exit) through relays: the entry, then any
/// middle relays in order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitSection {
    /// Use a circuit. Default `false`.
    #[serde(default)]
    pub enabled: bool,
    /// Servers on the path, the exit included: 2 (entry relay, then exit) to
    /// [`MAX_HOPS`]; the relays past the entry are `middle`. Default 2.
    #[serde(default = "default_hops")]
    pub hops: u8,
    /// The entry relay (DNS name or IP address); required when `enabled`.
    #[serde(default)]
    pub entry: Option<String>,
    /// The name the entry relay's certificate must carry. Default: `entry`.
    #[serde(default)]
    pub entry_name: Option<String>,
    /// The relays between the entry and the exit, in order: `hops - 2` of them.
    #[serde(default)]
    pub middle: Vec<MiddleHop>,
}

impl CircuitSection {
    /// The name the entry relay's certificate must carry.
    pub fn entry_name(&self) -> Option<&str> {
        self.entry_name.as_deref().or(self.entry.as_deref())
    }
}

impl Default for CircuitSection {
    fn default() -> Self {
        Self {
            enabled: false,
            hops: DEFAULT_HOPS,
            entry: None,
            entry_name: None,
            middle: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// `[pki]` of a client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientPki {
    /// CA certificate (PEM). Required.
    pub ca_cert: PathBuf,
    /// The client's certificate (PEM). Required.
    pub cert: PathBuf,
    /// The client's private key (PEM, mode 0600). Required.
    pub key: PathBuf,
    /// The deployment's knock key (`knock.key`, mode 0600). Required while
    /// `transport.knock` is on (the default); refused when it is off.
    #[serde(default)]
    pub knock_key: Option<PathBuf>,
    /// The CA's CRL (PEM). Required: the server's certificate is checked against it
    /// before the server can push a newer one.
    pub crl: PathBuf,
    /// Accept a newer CRL pushed by the server (signature checked against the CA) and
    /// store it at `crl`. Default `true`.
    #[serde(default = "yes")]
    pub accept_pushed_crl: bool,
}

impl ClientConfig {
    /// The outer SNI to send: `[transport] sni`, else the server name when it is a DNS
    /// name, else none (an IP address cannot be an SNI).
    pub fn sni(&self) -> Option<&str> {
        if let Some(s) = &self.transport.sni {
            return Some(s);
        }
        let name = self.client.server_name();
        name.parse::<IpAddr>().is_err().then_some(name)
    }

    pub(crate) fn resolve(&mut self, r: &Resolver<'_>) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        r.resolve(&mut p, "client.admin_socket", &mut self.client.admin_socket);
        r.resolve(&mut p, "pki.ca_cert", &mut self.pki.ca_cert);
        r.resolve(&mut p, "pki.cert", &mut self.pki.cert);
        r.resolve(&mut p, "pki.key", &mut self.pki.key);
        r.resolve(&mut p, "pki.crl", &mut self.pki.crl);
        if let Some(k) = &mut self.pki.knock_key {
            r.resolve(&mut p, "pki.knock_key", k);
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
        let c = &self.client;
        if let Err(why) = check_host(&c.server) {
            p.push("client.server", format!("{:?} {why}", c.server));
        }
        if let Some(n) = &c.server_name
            && n.parse::<IpAddr>().is_err()
            && let Err(why) = check_dns_name(n)
        {
            p.push("client.server_name", format!("{n:?} {why}"));
        }
        for (i, b) in c.bridges.iter().enumerate() {
            if let Err(why) = check_host(b) {
                p.push("client.bridges", format!("{b:?} {why}"));
            } else if b.eq_ignore_ascii_case(&c.server) {
                p.push(
                    "client.bridges",
                    format!("{b:?} is the server itself; list other addresses"),
                );
            } else if c.bridges.get(..i).is_some_and(|s| s.contains(b)) {
                p.push("client.bridges", format!("{b:?} is listed more than once"));
            }
        }
        check_socket_path(&mut p, "client.admin_socket", &c.admin_socket);
        c.metrics.check(&mut p, "client.metrics");
        c.dns.check(&mut p);
        if c.lockdown && !c.kill_switch {
            p.push(
                "client.lockdown",
                "keeps the kill switch after the client stops, but kill_switch is false: set \
                 kill_switch = true too",
            );
        }
        if c.dns == ClientDns::Off && self.tunnel.split.as_ref().is_some_and(|s| s.has_domains()) {
            p.push(
                "client.dns",
                "\"off\" leaves DNS to the system, but the domain split rules need the \
                 client to see the answers: remove dns = \"off\" or the domain rules",
            );
        }
        if let Some(u) = &c.run_as
            && let Err(why) = check_user(u)
        {
            p.push("client.run_as", format!("{u:?} {why}"));
        }
        let k = &c.circuit;
        if !(DEFAULT_HOPS..=MAX_HOPS).contains(&k.hops) {
            p.push(
                "client.circuit.hops",
                format!(
                    "{} is out of range {DEFAULT_HOPS}..={MAX_HOPS} (a circuit has an entry \
                     relay, up to two middle relays and the exit; without one, set \
                     enabled = false)",
                    k.hops
                ),
            );
        } else if k.middle.len() != usize::from(k.hops - DEFAULT_HOPS) {
            p.push(
                "client.circuit.middle",
                format!(
                    "a {}-hop circuit needs {} middle relay(s) between the entry and the \
                     exit; {} listed",
                    k.hops,
                    k.hops - DEFAULT_HOPS,
                    k.middle.len()
                ),
            );
        }
        // Every server of the path: the exit, the entry, the middle relays.
        let mut path: Vec<&str> = vec![c.server.as_str()];
        if let Some(e) = &k.entry {
            if let Err(why) = check_host(e) {
                p.push("client.circuit.entry", format!("{e:?} {why}"));
            } else if e.eq_ignore_ascii_case(&c.server) {
                p.push(
                    "client.circuit.entry",
                    format!("{e:?} is the exit (client.server); the entry must be another server"),
                );
            }
            path.push(e);
        } else if k.enabled {
            p.push(
                "client.circuit.entry",
                "a circuit needs the entry relay's address",
            );
        }
        for m in &k.middle {
            if let Err(why) = check_host(&m.address) {
                p.push("client.circuit.middle", format!("{:?} {why}", m.address));
            } else if path.iter().any(|h| h.eq_ignore_ascii_case(&m.address)) {
                p.push(
                    "client.circuit.middle",
                    format!(
                        "{:?} is already on the path; each hop must be another server",
                        m.address
                    ),
                );
            }
            path.push(&m.address);
            if let Some(n) = &m.name
                && n.parse::<IpAddr>().is_err()
                && let Err(why) = check_dns_name(n)
            {
                p.push("client.circuit.middle", format!("name {n:?} {why}"));
            }
        }
        if let Some(n) = &k.entry_name
            && n.parse::<IpAddr>().is_err()
            && let Err(why) = check_dns_name(n)
        {
            p.push("client.circuit.entry_name", format!("{n:?} {why}"));
        }
        if k.enabled && (DEFAULT_HOPS..=MAX_HOPS).contains(&k.hops) {
            let limit = crate::MAX_MTU - u16::from(k.hops - 1) * HOP_OVERHEAD;
            if self.tunnel.mtu > limit {
                p.push(
                    "tunnel.mtu",
                    format!(
                        "{} does not fit a {}-hop circuit: each hop adds {HOP_OVERHEAD} bytes, \
                         so at most {limit}",
                        self.tunnel.mtu, k.hops
                    ),
                );
            }
        }
        self.transport.check(&mut p);
        self.tunnel.check(&mut p);
        let k = &self.pki;
        let run_as = self.client.run_as.is_some();
        check_file(&mut p, "pki.ca_cert", &k.ca_cert, Access::Public);
        check_file(&mut p, "pki.cert", &k.cert, Access::Public);
        check_file(&mut p, "pki.key", &k.key, Access::secret(run_as));
        check_file(&mut p, "pki.crl", &k.crl, Access::Public);
        check_knock_key(
            &mut p,
            self.transport.knock,
            k.knock_key.as_deref(),
            Access::secret(run_as),
        );
        p.finish()
    }
}
