//! Sections shared by server and client files: `[transport]` and `[tunnel]`, plus the
//! value checks both sides use.

use std::fmt;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::error::Problems;

/// Default UDP carrier port. Not 443: the QUIC carrier owns UDP/443 (where QUIC traffic is
/// expected) and two carriers cannot share one UDP port on one address. 8443 is the usual
/// alternative HTTPS port, commonly allowed outbound.
pub const DEFAULT_UDP_PORT: u16 = 8443;
/// Default QUIC carrier port: UDP/443, where HTTP/3 lives.
pub const DEFAULT_QUIC_PORT: u16 = 443;
/// Default TLS carrier port: TCP/443 (TCP, so it never collides with the UDP carriers).
pub const DEFAULT_TLS_PORT: u16 = 443;
/// Default tunnel interface name.
pub const DEFAULT_TUN_NAME: &str = "aura0";

/// Bytes Aura adds to every inner packet on the wire: data header 13 (type 1, receiver
/// index 4, counter 8) + AEAD tag 16.
pub const AURA_DATA_OVERHEAD: u16 = 29;
/// Bytes the UDP carrier adds to a data datagram before padding (the masked padding
/// length).
pub const UDP_CAMO_OVERHEAD: u16 = 2;
/// Largest QUIC DATAGRAM payload right after the handshake, before path MTU discovery
/// has raised it (aura-transport, `initial_mtu` 1400).
pub const QUIC_EARLY_DATAGRAM_MAX: u16 = 1362;

/// Default tunnel MTU, in bytes. It fits a 1500-byte path unfragmented on every carrier
/// from the first packet:
/// - UDP over IPv4: 1280 + 29 + 6 + 8 (UDP) + 20 (IPv4) = 1343 ≤ 1500 (over IPv6: 1363);
/// - QUIC: 1280 + 29 = 1309 ≤ 1362, the DATAGRAM limit before MTU discovery;
/// - TLS over TCP: a byte stream, TCP segments it.
///
/// It is also IPv6's minimum link MTU, and leaves room for PPPoE (1492) and similar
/// encapsulations on the path.
pub const DEFAULT_MTU: u16 = 1280;
/// Smallest accepted tunnel MTU: IPv4's minimum datagram size every host must accept.
pub const MIN_MTU: u16 = 576;
/// Largest accepted tunnel MTU: 1500 − 20 (IPv4) − 8 (UDP) − 2 (padding length) − 29
/// (Aura) = 1441, the most any carrier can carry in one unfragmented 1500-byte packet.
/// Above [`QUIC_MTU_LIMIT`] the QUIC carrier sends large packets on its stream.
pub const MAX_MTU: u16 = 1500 - 20 - 8 - UDP_CAMO_OVERHEAD - AURA_DATA_OVERHEAD;
/// The largest MTU QUIC carries in DATAGRAM frames from the start: 1362 − 29 = 1333.
pub const QUIC_MTU_LIMIT: u16 = QUIC_EARLY_DATAGRAM_MAX - AURA_DATA_OVERHEAD;
/// Highest padding profile number (aura-transport's profiles 0..=3).
pub const MAX_PADDING_PROFILE: u8 = 3;

/// A carrier, as named in `[transport] carriers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Carrier {
    /// Aura datagrams on UDP (`udp_port`).
    Udp,
    /// QUIC with DATAGRAM frames (`quic_port`, UDP).
    Quic,
    /// TLS 1.3 over TCP (`tls_port`).
    Tls,
}

impl Carrier {
    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Carrier::Udp => "udp",
            Carrier::Quic => "quic",
            Carrier::Tls => "tls",
        }
    }
}

impl fmt::Display for Carrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn default_carriers() -> Vec<Carrier> {
    vec![Carrier::Udp, Carrier::Quic, Carrier::Tls]
}
fn default_udp_port() -> u16 {
    DEFAULT_UDP_PORT
}
fn default_quic_port() -> u16 {
    DEFAULT_QUIC_PORT
}
fn default_tls_port() -> u16 {
    DEFAULT_TLS_PORT
}

/// Accepts a percentage, an integer in 1..=100, with a message naming the value otherwise.
pub(crate) fn de_percent_required<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let v = i64::deserialize(d)?;
    u8::try_from(v)
        .ok()
        .filter(|p| (1..=100).contains(p))
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{v} is out of range 1..=100 (percent of the packets sent)"
            ))
        })
}

/// As [`de_percent_required`], for a key that may be absent.
fn de_percent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    de_percent_required(d).map(Some)
}

/// Accepts an integer in 1..=65535 with a message naming the value otherwise.
fn de_port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let v = i64::deserialize(d)?;
    u16::try_from(v)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| serde::de::Error::custom(format!("port {v} is out of range 1..=65535")))
}

/// `[transport]`: which carriers, on which ports, and how they look on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportSection {
    /// Carriers to use. The server listens on each; the client tries them in this order.
    /// Default `["udp", "quic", "tls"]`.
    #[serde(default = "default_carriers")]
    pub carriers: Vec<Carrier>,
    /// UDP carrier port. Default [`DEFAULT_UDP_PORT`].
    #[serde(default = "default_udp_port", deserialize_with = "de_port")]
    pub udp_port: u16,
    /// QUIC carrier port (UDP). Default [`DEFAULT_QUIC_PORT`].
    #[serde(default = "default_quic_port", deserialize_with = "de_port")]
    pub quic_port: u16,
    /// TLS carrier port (TCP). Default [`DEFAULT_TLS_PORT`].
    #[serde(default = "default_tls_port", deserialize_with = "de_port")]
    pub tls_port: u16,
    /// Outer SNI the client sends on QUIC and TLS (camouflage, not authenticated). Default:
    /// the server name (none when that is an IP address). A server refuses it: it sends
    /// no SNI.
    #[serde(default)]
    pub sni: Option<String>,
    /// Outer ALPN protocols for the TLS carrier. Default: the carrier's own
    /// (`["h2", "http/1.1"]`).
    #[serde(default)]
    pub alpn: Option<Vec<String>>,
    /// UDP padding profile: 0 HTTPS-like size buckets, 1 none, 2 jitter, 3 constant size.
    /// Default: the day's mask picks one (0 or 2).
    #[serde(default)]
    pub padding_profile: Option<u8>,
    /// Knock: clients prove membership in their first flight with the deployment's knock
    /// key (`pki.knock_key`); the server answers nothing else on UDP and shows strangers a
    /// web server on QUIC and TLS. Default `true`; `false` needs no knock key and keys the
    /// camouflage by the CA certificate instead.
    #[serde(default = "yes")]
    pub knock: bool,
    /// The outer SNIs the daily mask picks from (the client sends the day's one). Default:
    /// `sni` when set, else the server name when it is a DNS name.
    #[serde(default)]
    pub sni_palette: Option<Vec<String>>,
    /// Client: cover traffic inside the tunnel, asked of the server per session (it
    /// grants it, perhaps with a smaller budget, or refuses). Default `"off"`. A server
    /// refuses the key: its side is `[server.cover]`.
    #[serde(default)]
    pub cover: CoverMode,
    /// Client: the largest share of padding among the packets each side sends, in
    /// percent (1–100). Default by profile: 30 for `"bursts"`, 50 for `"https"`. Refused
    /// with `"idle"` (its timers bound it) and with `"off"`.
    #[serde(default, deserialize_with = "de_percent")]
    pub cover_budget_percent: Option<u8>,
}

/// `[transport] cover`: which cover traffic a client asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CoverMode {
    /// None.
    #[default]
    Off,
    /// An idle tunnel does not look idle: small packets at random moments of silence.
    Idle,
    /// Bursts are blurred: a tail of padding after traffic.
    Bursts,
    /// Sizes move toward HTTPS browsing: padding of web-like sizes around traffic.
    Https,
}

impl CoverMode {
    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Idle => "idle",
            Self::Bursts => "bursts",
            Self::Https => "https",
        }
    }

    /// The budget used when none is set, in percent (`None`: no budget applies).
    pub fn default_budget_percent(self) -> Option<u8> {
        match self {
            Self::Off | Self::Idle => None,
            Self::Bursts => Some(30),
            Self::Https => Some(50),
        }
    }
}

fn yes() -> bool {
    true
}

impl Default for TransportSection {
    fn default() -> Self {
        Self {
            carriers: default_carriers(),
            udp_port: DEFAULT_UDP_PORT,
            quic_port: DEFAULT_QUIC_PORT,
            tls_port: DEFAULT_TLS_PORT,
            sni: None,
            alpn: None,
            padding_profile: None,
            knock: true,
            sni_palette: None,
            cover: CoverMode::Off,
            cover_budget_percent: None,
        }
    }
}

impl TransportSection {
    /// The port of `carrier`.
    pub fn port(&self, carrier: Carrier) -> u16 {
        match carrier {
            Carrier::Udp => self.udp_port,
            Carrier::Quic => self.quic_port,
            Carrier::Tls => self.tls_port,
        }
    }

    pub(crate) fn check(&self, p: &mut Problems) {
        if self.carriers.is_empty() {
            p.push(
                "transport.carriers",
                "the list is empty; name at least one of \"udp\", \"quic\", \"tls\"",
            );
        }
        for (i, c) in self.carriers.iter().enumerate() {
            if self.carriers.get(..i).is_some_and(|s| s.contains(c)) {
                p.push(
                    "transport.carriers",
                    format!("\"{c}\" is listed more than once"),
                );
            }
        }
        let has = |c| self.carriers.contains(&c);
        if has(Carrier::Udp) && has(Carrier::Quic) && self.udp_port == self.quic_port {
            p.push(
                "transport.udp_port",
                format!(
                    "{} is also transport.quic_port; the udp and quic carriers both use UDP \
                     and cannot share a port",
                    self.udp_port
                ),
            );
        }
        if let Some(sni) = &self.sni
            && let Err(why) = check_dns_name(sni)
        {
            p.push("transport.sni", format!("{sni:?} {why}"));
        }
        if let Some(alpn) = &self.alpn {
            if alpn.is_empty() {
                p.push(
                    "transport.alpn",
                    "the list is empty; remove the key to use the default",
                );
            }
            for a in alpn {
                if a.is_empty() || a.len() > 255 {
                    p.push(
                        "transport.alpn",
                        format!("{a:?} must be 1 to 255 bytes long"),
                    );
                }
            }
        }
        if self.cover_budget_percent.is_some() {
            match self.cover {
                CoverMode::Off => p.push(
                    "transport.cover_budget_percent",
                    "is set but transport.cover is \"off\": choose a profile or remove the key",
                ),
                CoverMode::Idle => p.push(
                    "transport.cover_budget_percent",
                    "does not apply to cover = \"idle\" (its timers bound it to 400 bytes a \
                     second); remove the key",
                ),
                CoverMode::Bursts | CoverMode::Https => {}
            }
        }
        if let Some(palette) = &self.sni_palette {
            if palette.is_empty() {
                p.push(
                    "transport.sni_palette",
                    "the list is empty; remove the key to use the default",
                );
            }
            for name in palette {
                if let Err(why) = check_dns_name(name) {
                    p.push("transport.sni_palette", format!("{name:?} {why}"));
                }
            }
            if self.sni.is_some() {
                p.push(
                    "transport.sni_palette",
                    "set together with transport.sni; keep one (a fixed SNI, or a palette \
                     the daily mask picks from)",
                );
            }
        }
        if let Some(profile) = self.padding_profile
            && profile > MAX_PADDING_PROFILE
        {
            p.push(
                "transport.padding_profile",
                format!(
                    "{profile} is not a padding profile; use 0 (HTTPS-like buckets), 1 (none), \
                     2 (jitter) or 3 (constant), or remove the key to let the daily mask pick"
                ),
            );
        }
    }
}

fn default_tun_name() -> String {
    DEFAULT_TUN_NAME.to_owned()
}
fn default_mtu() -> u16 {
    DEFAULT_MTU
}

/// `[tunnel]`: the TUN interface.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelSection {
    /// Interface name. Default [`DEFAULT_TUN_NAME`].
    #[serde(default = "default_tun_name")]
    pub name: String,
    /// Interface MTU in bytes, [`MIN_MTU`]..=[`MAX_MTU`]. Default [`DEFAULT_MTU`].
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// Client: `[tunnel.split]`, what goes outside the tunnel. Default: nothing.
    #[serde(default)]
    pub split: Option<crate::SplitSection>,
    /// Client: `[tunnel.os_routes]`, how the client routes. Default: routes on.
    #[serde(default)]
    pub os_routes: Option<crate::OsRoutes>,
}

impl Default for TunnelSection {
    fn default() -> Self {
        Self {
            name: default_tun_name(),
            mtu: DEFAULT_MTU,
            split: None,
            os_routes: None,
        }
    }
}

impl TunnelSection {
    /// The routing settings in force: `[tunnel.os_routes]`, or its defaults.
    pub fn os_routes(&self) -> crate::OsRoutes {
        self.os_routes.clone().unwrap_or_default()
    }

    pub(crate) fn check(&self, p: &mut Problems) {
        if let Err(why) = check_iface_name(&self.name) {
            p.push("tunnel.name", format!("{:?} {why}", self.name));
        }
        if let Some(split) = &self.split {
            split.check(p);
        }
        self.os_routes().check(self.split.as_ref(), p);
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            p.push(
                "tunnel.mtu",
                format!(
                    "{} is out of range {MIN_MTU}..={MAX_MTU} (larger inner packets cannot \
                     cross a 1500-byte path on any carrier without fragmentation)",
                    self.mtu
                ),
            );
        }
    }
}

/// A DNS name as certificates carry it: letters, digits, `-`, `_`, dot-separated labels
/// of 1..=63 characters, at most 64 characters in all (the PKI's limit), not an IP
/// address and not ending in an all-digit label.
pub(crate) fn check_dns_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() > 64 {
        return Err("is longer than 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err("is not a DNS name (only letters, digits, '.', '-' and '_' are allowed)");
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err("is an IP address, not a DNS name");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("is not a DNS name (empty label)");
        }
        if label.len() > 63 {
            return Err("is not a DNS name (a label is longer than 63 characters)");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("is not a DNS name (a label starts or ends with '-')");
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("is neither an IP address nor a DNS name");
    }
    Ok(())
}

/// A host as written in `server`, `bridges`, `entry`: an IP address or a DNS name, no
/// port.
pub(crate) fn check_host(host: &str) -> Result<(), &'static str> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if host.contains(':') || host.starts_with('[') {
        return Err(
            "must be a host name or an IP address without a port (ports come from [transport])",
        );
    }
    check_dns_name(host)
}

/// Linux interface names: 1..=15 bytes, printable, no `/`, `:` or whitespace.
pub(crate) fn check_iface_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 15 {
        return Err("must be 1 to 15 characters long");
    }
    if name == "." || name == ".." {
        return Err("is not an interface name");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
    {
        return Err("must be printable ASCII without '/', ':' or spaces");
    }
    Ok(())
}

/// A user name for `run_as`: letters, digits, `_`, `.`, `-`, not starting with `-`, at
/// most 32 characters. Whether the user exists is checked when the daemon drops
/// privileges.
pub(crate) fn check_user(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 32 {
        return Err("must be 1 to 32 characters long");
    }
    if name.starts_with('-') {
        return Err("must not start with '-'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err("is not a user name (letters, digits, '_', '.', '-')");
    }
    Ok(())
}

/// A client id as the PKI issues it: letters, digits, `.`, `_`, `-`, at most 64
/// characters, not starting with `.` or `-`.
pub(crate) fn check_client_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || id.len() > 64 {
        return Err("must be 1 to 64 characters long");
    }
    if id.starts_with('.') || id.starts_with('-') {
        return Err("must not start with '.' or '-'");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("is not a client id (letters, digits, '.', '_', '-')");
    }
    Ok(())
}

/// Longest Unix socket path (`sun_path` is 108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

pub(crate) fn check_socket_path(p: &mut Problems, key: &str, path: &Path) {
    let len = path.as_os_str().len();
    if path.file_name().is_none() {
        p.push(key, format!("{} does not name a file", path.display()));
    } else if len > MAX_SOCKET_PATH {
        p.push(
            key,
            format!(
                "{} is {len} bytes long; Unix socket paths are limited to {MAX_SOCKET_PATH}",
                path.display()
            ),
        );
    }
}

/// Who may read a file besides its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone (certificates, CRLs).
    Public,
    /// The owner only (a private key): mode 0600 or stricter.
    Secret,
    /// The owner, and the group for reading: a key a daemon reads after dropping to
    /// `run_as` (mode 0640 or stricter).
    SharedSecret,
}

impl Access {
    /// A secret's access: shared with the group when the daemon drops to `run_as`.
    pub(crate) fn secret(run_as: bool) -> Self {
        if run_as {
            Self::SharedSecret
        } else {
            Self::Secret
        }
    }
}

/// `pki.knock_key` against `transport.knock`: required when on, refused when off.
pub(crate) fn check_knock_key(p: &mut Problems, knock: bool, key: Option<&Path>, access: Access) {
    match (knock, key) {
        (true, Some(k)) => check_file(p, "pki.knock_key", k, access),
        (true, None) => p.push(
            "pki.knock_key",
            "missing: transport.knock is on (the default) and needs the deployment's \
             knock.key (`aura pki knock-key` makes one beside ca.crt; give it to every \
             client), or set transport.knock = false",
        ),
        (false, Some(_)) => p.push(
            "pki.knock_key",
            "set while transport.knock = false; remove one of the two",
        ),
        (false, None) => {}
    }
}

/// Checks that `path` is an existing, readable regular file, and that a secret (private
/// key) is not readable by more than `access` allows.
pub(crate) fn check_file(p: &mut Problems, key: &str, path: &Path, access: Access) {
    let shown = path.display();
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            p.push(key, format!("{shown} does not exist"));
            return;
        }
        Err(e) => {
            p.push(key, format!("{shown} cannot be read: {e}"));
            return;
        }
    };
    if !meta.is_file() {
        p.push(key, format!("{shown} is not a regular file"));
        return;
    }
    if let Err(e) = fs::File::open(path) {
        p.push(key, format!("{shown} cannot be read: {e}"));
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        match access {
            Access::Public => {}
            Access::Secret if mode & 0o077 != 0 => p.push(
                key,
                format!(
                    "{shown} is a private key accessible by group or others (mode {mode:04o}); \
                     run `chmod 600 {shown}`"
                ),
            ),
            Access::SharedSecret if mode & 0o037 != 0 => p.push(
                key,
                format!(
                    "{shown} is a private key accessible by others or writable by its group \
                     (mode {mode:04o}); run `chmod 640 {shown}` (the run_as user reads it \
                     through the file's group)"
                ),
            ),
            Access::Secret | Access::SharedSecret => {}
        }
    }
    #[cfg(not(unix))]
    let _ = access;
}

/// Where `~` comes from when paths are resolved.
#[derive(Debug, Clone)]
pub(crate) struct Resolver<'a> {
    pub base_dir: &'a Path,
    pub home: Option<PathBuf>,
}

impl Resolver<'_> {
    /// `~` and `~/x` from `$HOME`, relative paths against the file's directory, absolute
    /// paths as they are.
    pub(crate) fn resolve(&self, p: &mut Problems, key: &str, path: &mut PathBuf) {
        let Some(s) = path.to_str() else {
            // Non-UTF-8 cannot come from TOML; nothing to expand.
            return;
        };
        let rest = if s == "~" {
            Some("")
        } else {
            s.strip_prefix("~/")
        };
        if let Some(rest) = rest {
            match &self.home {
                Some(home) => *path = home.join(rest),
                None => p.push(key, format!("cannot expand {s:?}: $HOME is not set")),
            }
            return;
        }
        if s.starts_with('~') {
            p.push(
                key,
                format!("{s:?}: only `~` and `~/...` (the current user's home) are expanded"),
            );
            return;
        }
        if s.is_empty() {
            p.push(key, "the path is empty");
            return;
        }
        if path.is_relative() {
            *path = self.base_dir.join(&*path);
        }
    }
}
