//! The one seam from configuration to options: every key of a server or client file is
//! turned into transport and daemon options here, or refused here with a message naming
//! it. Nothing else in the daemons reads `[transport]`.
//!
//! Building options is two steps. [`ServerOptions::from_config`] and
//! [`ClientOptions::from_config`] are pure functions of the file (plus, for `pki.ca_key`,
//! a look at the PKI directory it names), so a test can check that every key changes the
//! result. [`ServerOptions::listen_config`] and [`ClientOptions::dial_config`] then add
//! what only exists at run time: credentials, resolved addresses, the RNG seed, the host's
//! network and clock.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aura_config::{
    Carrier as ConfCarrier, ClientConfig, PoolSection, ServerConfig, TransportSection,
};
use aura_pki::{PkiStore, Verifier};
use aura_proto::control::CoverProfile;
use aura_proto::{EndpointConfig, Timers};
use aura_transport::Carrier;
use aura_transport::camo::decoy::{self, Decoy, Site};
use aura_transport::camo::knock::KnockKeys;
use aura_transport::camo::mask::MaskSeed;
use aura_transport::camo::quic_knock::QuicKnock;
use aura_transport::camo::shape::Profile;
use aura_transport::camo::tls_knock::TlsKnock;
use aura_transport::camo::{QuicCamo, TlsCamo};
use aura_transport::carrier::quic::QuicOptions;
use aura_transport::carrier::tls::TlsOptions;
use aura_transport::dial::{ClientCredentials, DialConfig};
use aura_transport::listen::ListenConfig;
use rustls_pki_types::UnixTime;

use crate::DaemonError;
use crate::creds::{CredentialFiles, Credentials};
use crate::host::Network;
use crate::redact::Redact;

/// Time allowed for one dial attempt (carrier plus Aura handshake).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Protocol timers of both daemons. Keepalives every 3 s of silence mean a live peer is
/// heard at least every 3 s, so 8 s without a packet is a dead peer: a client notices a
/// server that went away within 8 s and dials again (the defaults, 10 s and 30 s, would
/// keep a client on a dead session for half a minute).
pub fn daemon_timers() -> Timers {
    Timers {
        keepalive: Duration::from_secs(3),
        dead_peer: Duration::from_secs(8),
        ..Timers::default()
    }
}

/// The metrics endpoint's address (`None`: off), refused as the configuration check
/// refuses it; `keys`: the section's `listen` and `allow_remote`.
fn metrics_address(
    m: &aura_config::MetricsSection,
    section: &str,
    keys: [&'static str; 2],
) -> Result<Option<SocketAddr>, DaemonError> {
    m.address(section)
        .map_err(|(key, problem)| DaemonError::Config {
            key: if key == keys[0] { keys[0] } else { keys[1] },
            problem,
        })
}

/// The transport's carrier for a configured one.
pub fn carrier(c: ConfCarrier) -> Carrier {
    match c {
        ConfCarrier::Udp => Carrier::Udp,
        ConfCarrier::Quic => Carrier::Quic,
        ConfCarrier::Tls => Carrier::Tls,
    }
}

/// The UDP padding profile `transport.padding_profile` fixes (`None`: the day's mask
/// picks).
fn udp_profile(t: &TransportSection) -> Result<Option<Profile>, DaemonError> {
    t.padding_profile
        .map(|n| {
            Profile::from_index(n).ok_or_else(|| DaemonError::Config {
                key: "transport.padding_profile",
                problem: format!("{n} is not a profile (0..=3)"),
            })
        })
        .transpose()
}

/// The TLS carrier's knock, keyed by the deployment secret, on `wall_clock`.
fn tls_knock(creds: &Credentials, wall_clock: fn() -> UnixTime) -> std::sync::Arc<TlsKnock> {
    TlsKnock::new(&KnockKeys::new(&creds.secret).tls, move || {
        wall_clock().as_secs()
    })
}

/// The QUIC carrier's knock, keyed by the deployment secret, on `wall_clock`.
fn quic_knock(creds: &Credentials, wall_clock: fn() -> UnixTime) -> std::sync::Arc<QuicKnock> {
    QuicKnock::new(&KnockKeys::new(&creds.secret).quic, move || {
        wall_clock().as_secs()
    })
}

/// `transport.knock`, checked against `pki.knock_key` (the loader checks it too; options
/// built from a file that skipped it must not run half-keyed).
fn knock(t: &TransportSection, key: Option<&Path>) -> Result<bool, DaemonError> {
    match (t.knock, key) {
        (true, None) => Err(DaemonError::Config {
            key: "pki.knock_key",
            problem: "missing while transport.knock is on".into(),
        }),
        (false, Some(_)) => Err(DaemonError::Config {
            key: "pki.knock_key",
            problem: "set while transport.knock = false".into(),
        }),
        (on, _) => Ok(on),
    }
}

/// Where strangers on the TLS carrier go (`[server.decoy]`), while knocking is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecoyOptions {
    /// Forward the untouched connection to `host:port`.
    Forward(String),
    /// Serve `root` (a built-in page when `None`) with the certificate and key `cert`
    /// (a self-signed certificate for the SNI palette's first name when `None`).
    Serve {
        /// The directory.
        root: Option<PathBuf>,
        /// Certificate chain and key files (PEM).
        cert: Option<(PathBuf, PathBuf)>,
    },
}

impl DecoyOptions {
    fn from_section(d: &aura_config::DecoySection) -> Self {
        match &d.upstream {
            Some(u) => Self::Forward(u.clone()),
            None => Self::Serve {
                root: d.root.clone(),
                cert: d.cert.clone().zip(d.key.clone()),
            },
        }
    }

    /// The decoy, its certificate read (or made for `names`); it offers a web server's
    /// ALPN (h2, http/1.1; h3 on QUIC).
    ///
    /// # Errors
    /// [`DaemonError::Config`] naming `server.decoy.cert` or `server.decoy.key` when a
    /// file is unreadable or holds no usable certificate or key.
    pub fn load(&self, names: &[String]) -> Result<Decoy, DaemonError> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let (root, cert) = match self {
            Self::Forward(u) => {
                // While the upstream is down: a reverse proxy's 502, over a self-signed
                // certificate for the palette's first name.
                let down = decoy::self_signed(names)
                    .ok()
                    .and_then(|(chain, key)| Site::bad_gateway(chain, key).ok());
                return Ok(Decoy::Forward {
                    upstream: u.clone(),
                    down,
                });
            }
            Self::Serve { root, cert } => (root, cert),
        };
        let problem = |key: &'static str, why: String| DaemonError::Config { key, problem: why };
        let (chain, key) = match cert {
            Some((c, k)) => {
                let chain = CertificateDer::pem_file_iter(c)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| problem("server.decoy.cert", format!("{}: {e}", c.display())))?;
                if chain.is_empty() {
                    return Err(problem(
                        "server.decoy.cert",
                        format!("{} holds no certificate", c.display()),
                    ));
                }
                let key = PrivateKeyDer::from_pem_file(k)
                    .map_err(|e| problem("server.decoy.key", format!("{}: {e}", k.display())))?;
                (chain, key)
            }
            None => decoy::self_signed(names).map_err(|e| {
                problem(
                    "transport.sni_palette",
                    format!("cannot make the decoy's certificate: {e}"),
                )
            })?,
        };
        let site = Site::new(chain, key, root.clone()).map_err(|e| {
            problem(
                "server.decoy.key",
                format!("the certificate and key do not go together: {e}"),
            )
        })?;
        Ok(Decoy::Serve(site))
    }
}

/// What the daily masks are made from, besides the CA certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskOptions {
    /// The SNI palette (never empty).
    pub palette: Vec<String>,
    /// The ALPN list the mask rotates (never empty).
    pub alpn: Vec<Vec<u8>>,
    /// A padding profile the operator fixed.
    pub profile: Option<Profile>,
}

impl MaskOptions {
    fn new(
        t: &TransportSection,
        fallback_sni: &str,
        tls: &TlsOptions,
    ) -> Result<Self, DaemonError> {
        let palette = match (&t.sni_palette, &t.sni) {
            (Some(p), _) if !p.is_empty() => p.clone(),
            (_, Some(s)) => vec![s.clone()],
            _ => vec![fallback_sni.to_owned()],
        };
        if tls.alpn.is_empty() {
            return Err(DaemonError::Config {
                key: "transport.alpn",
                problem: "the list is empty".into(),
            });
        }
        Ok(Self {
            palette,
            alpn: tls.alpn.clone(),
            profile: udp_profile(t)?,
        })
    }

    /// The deployment's masks (CA certificate `ca_der`).
    pub fn seed(&self, ca_der: &[u8]) -> MaskSeed {
        // `new` made both lists non-empty, the one thing MaskSeed refuses.
        MaskSeed::new(
            ca_der,
            self.palette.clone(),
            self.alpn.clone(),
            self.profile,
        )
        .unwrap_or_else(|_| MaskSeed::for_ca(ca_der))
    }
}

/// TLS carrier options: `transport.alpn` when set, the carrier's defaults otherwise.
fn tls_options(t: &TransportSection) -> TlsOptions {
    let mut o = TlsOptions::default();
    if let Some(alpn) = &t.alpn {
        o.alpn = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    }
    o
}

/// Options of the server's carriers, from `[server] listen` and `[transport]`.
#[derive(Debug, Clone)]
pub struct CarrierOptions {
    /// UDP carrier address, when listed.
    pub udp: Option<SocketAddr>,
    /// QUIC carrier address, when listed.
    pub quic: Option<SocketAddr>,
    /// TLS carrier address, when listed.
    pub tls: Option<SocketAddr>,
    /// TLS carrier options (ALPN).
    pub tls_options: TlsOptions,
    /// QUIC carrier options.
    pub quic_options: QuicOptions,
    /// The daily masks' inputs.
    pub masks: MaskOptions,
    /// Knock on: strangers get nothing Aura-shaped (`transport.knock`).
    pub knock: bool,
    /// Where strangers on TLS go (`None` while the knock is off).
    pub decoy: Option<DecoyOptions>,
    /// Where the in-memory carrier listens when the host's network is in memory: the
    /// UDP carrier's address (`listen`, `udp_port`), where clients dial it.
    pub memory: SocketAddr,
}

/// How the server keeps its CRL current.
#[derive(Debug, Clone)]
pub struct CrlOptions {
    /// Push the CRL to each client after its handshake.
    pub push: bool,
    /// How often the CRL file is re-read and the CRL's lifetime checked (not a
    /// configuration key: [`crate::server::crl::CRL_RELOAD`]; tests shorten it).
    pub reload: Duration,
    /// The PKI directory whose CA key re-signs the CRL before it expires
    /// (`pki.ca_key`); `None`: warn before it expires instead.
    pub resign: Option<PkiStore>,
}

/// Everything `aura server` takes from its file.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The name clients check.
    pub name: String,
    /// The credential files.
    pub files: CredentialFiles,
    /// The address pool.
    pub pool: PoolSection,
    /// The carriers.
    pub carriers: CarrierOptions,
    /// TUN name.
    pub tun_name: String,
    /// Tunnel MTU, announced to clients.
    pub mtu: u16,
    /// Forwarding and NAT: `Some(egress)` when `server.nat.auto` (egress `None`: the
    /// default route's interface).
    pub nat: Option<Option<String>>,
    /// What clients reach besides the internet (`[server.firewall]`), with the NAT.
    pub firewall: aura_netcfg::FirewallPlan,
    /// The pool's IPv6 is masqueraded (`[server.nat] ipv6 = "nat66"`), else routed.
    pub nat66: bool,
    /// IPv6 egress interface (`[server.nat] egress_iface6`); `None`: found at start.
    pub egress6: Option<String>,
    /// Resolvers named to clients (`[server] dns`); `None`: the server's tunnel address,
    /// where it forwards to the host's resolvers (`resolv_conf`).
    pub dns: Option<Vec<IpAddr>>,
    /// Where the host's resolvers are read from when the server forwards DNS.
    pub resolv_conf: PathBuf,
    /// `[server.relay]`: `Some` when enabled.
    pub relay: Option<crate::server::relay::RelayPolicy>,
    /// Host changes are logged, not made.
    pub dry_run: bool,
    /// CRL upkeep.
    pub crl: CrlOptions,
    /// The admin socket.
    pub admin_socket: PathBuf,
    /// What `no_logs` hides.
    pub redact: Redact,
    /// Protocol timers (not configuration keys: [`daemon_timers`]; tests shorten them).
    pub timers: Timers,
    /// `[server.cover]` when enabled.
    pub cover: Option<CoverPolicy>,
    /// Where the Prometheus text endpoint listens (`[server.metrics]`); `None`: off.
    pub metrics: Option<SocketAddr>,
    /// What asks for a reload (SIGHUP in `aura`: the process's).
    pub reload: crate::service::Reload,
    /// Protocol workers (`[server] workers`; default [`default_workers`]).
    pub workers: usize,
}

/// The workers a server runs unless `[server] workers` says: one per CPU it may run on,
/// at most [`aura_config::MAX_SERVER_WORKERS`].
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(usize::from(aura_config::MAX_SERVER_WORKERS))
}

/// What cover traffic a server grants (`[server.cover]`), budgets in per mille.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoverPolicy {
    /// Largest budget granted to one client.
    pub max_budget: u16,
    /// Largest share of padding among all the packets sent in sessions with cover.
    pub total_budget: u16,
}

impl CoverPolicy {
    fn from_section(c: &aura_config::CoverSection) -> Option<Self> {
        c.enabled.then(|| Self {
            max_budget: u16::from(c.max_budget_percent) * 10,
            total_budget: u16::from(c.total_budget_percent) * 10,
        })
    }

    /// What a client asking for `profile` with `budget` gets: the profile, its budget
    /// capped at [`CoverPolicy::max_budget`].
    pub fn grant(&self, profile: CoverProfile, budget: u16) -> (CoverProfile, u16) {
        (profile, budget.clamp(1, self.max_budget))
    }
}

/// What cover traffic a client asks for (`[transport] cover`), budget in per mille.
pub fn cover_request(t: &aura_config::TransportSection) -> Option<(CoverProfile, u16)> {
    let profile = match t.cover {
        aura_config::CoverMode::Off => return None,
        aura_config::CoverMode::Idle => CoverProfile::Idle,
        aura_config::CoverMode::Bursts => CoverProfile::Bursts,
        aura_config::CoverMode::Https => CoverProfile::Https,
    };
    // `idle` has no budget (its timers bound it): it asks for the whole range.
    let percent = t
        .cover_budget_percent
        .or(t.cover.default_budget_percent())
        .unwrap_or(100);
    Some((profile, u16::from(percent) * 10))
}

impl ServerOptions {
    /// The options of `cfg`.
    ///
    /// # Errors
    /// A key of a feature not built, a key the server cannot use (`transport.sni`), or a
    /// `pki.ca_key` outside an `aura pki` directory.
    pub fn from_config(cfg: &ServerConfig) -> Result<Self, DaemonError> {
        if cfg.server.run_as.is_some() && cfg.pki.ca_key.is_some() {
            return Err(DaemonError::Config {
                key: "pki.ca_key",
                problem: "a server with run_as cannot read the CA key nor write the CRL \
                          beside it: remove ca_key and re-sign the CRL as root with \
                          `aura pki crl` (then `systemctl reload aura-server`), or remove \
                          run_as"
                    .into(),
            });
        }
        let t = &cfg.transport;
        if !cfg.server.relay.enabled && !cfg.server.relay.allow_extend_to.is_empty() {
            return Err(DaemonError::Config {
                key: "server.relay.allow_extend_to",
                problem: "is set but server.relay.enabled is false: enable the relay or \
                          remove the list"
                    .into(),
            });
        }
        if t.cover != aura_config::CoverMode::Off || t.cover_budget_percent.is_some() {
            return Err(DaemonError::Config {
                key: "transport.cover",
                problem: "is a client setting: a server grants cover traffic with \
                          [server.cover]"
                    .into(),
            });
        }
        if t.sni.is_some() {
            return Err(DaemonError::Config {
                key: "transport.sni",
                problem: "a server sends no SNI (each client chooses its own); remove the key"
                    .into(),
            });
        }
        let on = |c: ConfCarrier, port: u16| {
            t.carriers
                .contains(&c)
                .then(|| SocketAddr::new(cfg.server.listen, port))
        };
        let resign = match &cfg.pki.ca_key {
            Some(key) => Some(pki_store_of(key, &cfg.pki.crl)?),
            None => None,
        };
        Ok(Self {
            workers: cfg.server.workers.map_or_else(default_workers, usize::from),
            name: cfg.server.name.clone(),
            files: CredentialFiles::new(
                &cfg.pki.ca_cert,
                &cfg.pki.crl,
                &cfg.pki.cert,
                &cfg.pki.key,
            )
            .with_knock_key(cfg.pki.knock_key.as_deref()),
            pool: cfg.server.pool.clone(),
            carriers: CarrierOptions {
                udp: on(ConfCarrier::Udp, t.udp_port),
                quic: on(ConfCarrier::Quic, t.quic_port),
                tls: on(ConfCarrier::Tls, t.tls_port),
                masks: MaskOptions::new(t, &cfg.server.name, &tls_options(t))?,
                knock: knock(t, cfg.pki.knock_key.as_deref())?,
                decoy: t
                    .knock
                    .then(|| DecoyOptions::from_section(&cfg.server.decoy)),
                tls_options: tls_options(t),
                quic_options: QuicOptions::default(),
                memory: SocketAddr::new(cfg.server.listen, t.udp_port),
            },
            tun_name: cfg.tunnel.name.clone(),
            mtu: cfg.tunnel.mtu,
            nat: cfg
                .server
                .nat
                .auto
                .then(|| cfg.server.nat.egress_iface.clone()),
            firewall: firewall_plan(&cfg.server.firewall),
            nat66: cfg.server.nat.ipv6 == aura_config::Nat6Mode::Nat66,
            egress6: cfg.server.nat.egress_iface6.clone(),
            dns: cfg.server.dns.clone(),
            resolv_conf: PathBuf::from(aura_netcfg::dns::RESOLV_CONF),
            relay: cfg
                .server
                .relay
                .enabled
                .then(|| crate::server::relay::RelayPolicy {
                    allow: cfg.server.relay.allow_extend_to.clone(),
                }),
            dry_run: cfg.server.nat.dry_run,
            crl: CrlOptions {
                push: cfg.pki.crl_push,
                reload: crate::server::crl::CRL_RELOAD,
                resign,
            },
            admin_socket: cfg.server.admin_socket.clone(),
            redact: Redact(cfg.server.no_logs),
            timers: daemon_timers(),
            cover: CoverPolicy::from_section(&cfg.server.cover),
            metrics: metrics_address(
                &cfg.server.metrics,
                "server.metrics",
                ["server.metrics.listen", "server.metrics.allow_remote"],
            )?,
            reload: crate::service::Reload::process(),
        })
    }

    /// The listeners' configuration: the carriers with this server's credentials, or only
    /// the in-memory carrier (at [`CarrierOptions::memory`]) when `network` is in memory.
    pub fn listen_config(
        &self,
        creds: &Credentials,
        verifier: Verifier,
        seed: [u8; 32],
        network: &Network,
        wall_clock: fn() -> UnixTime,
        tls_decoy: Option<Decoy>,
    ) -> ListenConfig {
        let mut endpoint =
            EndpointConfig::new(creds.ca_der.clone(), creds.identity.clone(), verifier, true);
        endpoint.timers = self.timers.clone();
        endpoint.secret = creds.secret.clone();
        let c = &self.carriers;
        let (udp, quic, tls, mem) = match network {
            Network::System => (c.udp, c.quic, c.tls, None),
            Network::Memory(net) => (None, None, None, Some((net.clone(), c.memory))),
        };
        ListenConfig {
            endpoint,
            seed,
            udp,
            quic,
            tls,
            mem,
            workers: self.workers,
            outer: Some(std::sync::Arc::new(creds.outer())),
            tls_options: TlsOptions {
                camo: c.knock.then(|| TlsCamo {
                    knock: tls_knock(creds, wall_clock),
                    decoy: tls_decoy.clone(),
                }),
                ..c.tls_options.clone()
            },
            quic_options: QuicOptions {
                camo: c.knock.then(|| QuicCamo {
                    knock: quic_knock(creds, wall_clock),
                    site: match &tls_decoy {
                        Some(Decoy::Serve(site)) => Some(site.clone()),
                        _ => None,
                    },
                    forward: match &tls_decoy {
                        Some(Decoy::Forward { upstream, .. }) => Some(upstream.clone()),
                        _ => None,
                    },
                }),
                ..c.quic_options.clone()
            },
            masks: c.masks.seed(&creds.ca_der),
            wall_clock,
        }
    }
}

impl ServerOptions {
    /// How this server, as a relay, dials a next hop's QUIC or TLS carrier: as a client
    /// of the deployment would (the knock when the deployment knocks, the day's masks).
    pub fn onward_dial(
        &self,
        creds: &Credentials,
        wall_clock: fn() -> UnixTime,
    ) -> aura_transport::circuit::OnwardDial {
        let c = &self.carriers;
        aura_transport::circuit::OnwardDial {
            tls: TlsOptions {
                camo: c.knock.then(|| TlsCamo {
                    knock: tls_knock(creds, wall_clock),
                    decoy: None,
                }),
                ..c.tls_options.clone()
            },
            quic: QuicOptions {
                camo: c.knock.then(|| QuicCamo {
                    knock: quic_knock(creds, wall_clock),
                    site: None,
                    forward: None,
                }),
                ..c.quic_options.clone()
            },
            masks: c.masks.seed(&creds.ca_der),
            wall_clock,
        }
    }
}

/// The `aura pki` directory `ca_key` belongs to, when it is that directory's `ca.key`
/// and the directory's `crl.pem` is the CRL the server serves. Re-signing through the
/// directory keeps its index and CRL numbers in step with `aura pki revoke`; a CA key
/// elsewhere would fork the numbering and a later revocation would look older than the
/// server's own CRL.
fn pki_store_of(ca_key: &Path, crl: &Path) -> Result<PkiStore, DaemonError> {
    let problem = |why: String| DaemonError::Config {
        key: "pki.ca_key",
        problem: why,
    };
    let dir = ca_key
        .parent()
        .ok_or_else(|| problem(format!("{} has no directory", ca_key.display())))?;
    let store = PkiStore::new(dir);
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(ca_key, &store.ca_key_path()) || !store.index_path().is_file() {
        return Err(problem(format!(
            "{} is not the ca.key of an `aura pki` directory (ca.key beside index.json); \
             the server re-signs the CRL through that directory",
            ca_key.display()
        )));
    }
    if !same(crl, &store.crl_path()) {
        return Err(problem(format!(
            "pki.crl ({}) is not the crl.pem of the CA key's directory {}; point pki.crl \
             there or remove pki.ca_key",
            crl.display(),
            dir.display()
        )));
    }
    Ok(store)
}

/// Everything `aura client` takes from its file, but the server's addresses (resolved at
/// start).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The credential files.
    pub files: CredentialFiles,
    /// The server as written (a name or an address).
    pub server: String,
    /// The bridges as written.
    pub bridges: Vec<String>,
    /// The name the server's certificate must carry.
    pub server_name: String,
    /// The daily masks' inputs (outer SNI palette, ALPN, padding).
    pub masks: MaskOptions,
    /// Knock on (`transport.knock`).
    pub knock: bool,
    /// Carriers in the order tried.
    pub carriers: Vec<Carrier>,
    /// UDP carrier port.
    pub udp_port: u16,
    /// QUIC carrier port.
    pub quic_port: u16,
    /// TLS carrier port.
    pub tls_port: u16,
    /// TLS carrier options (ALPN).
    pub tls_options: TlsOptions,
    /// QUIC carrier options.
    pub quic_options: QuicOptions,
    /// TUN name.
    pub tun_name: String,
    /// `[tunnel.os_routes]` and `[tunnel.split]`.
    pub routing: Routing,
    /// `[client] kill_switch`.
    pub kill_switch: bool,
    /// `[client] lockdown`: the kill switch outlives the client.
    pub lockdown: bool,
    /// `[client] dns`: whose resolvers the system uses while the tunnel is up.
    pub dns: aura_config::ClientDns,
    /// Largest tunnel MTU (the server's may be smaller).
    pub mtu: u16,
    /// Accept CRLs the server pushes.
    pub accept_pushed_crl: bool,
    /// The admin socket.
    pub admin_socket: PathBuf,
    /// What `no_logs` hides.
    pub redact: Redact,
    /// Protocol timers (not configuration keys: [`daemon_timers`]; tests shorten them).
    pub timers: Timers,
    /// `[client.circuit]` when enabled: the relays before the server.
    pub circuit: Option<CircuitOptions>,
    /// The cover traffic asked for: profile and budget (per mille).
    pub cover: Option<(CoverProfile, u16)>,
    /// Where the Prometheus text endpoint listens (`[client.metrics]`); `None`: off.
    pub metrics: Option<SocketAddr>,
}

/// The relays of a circuit, as written: (address, certificate name) each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitOptions {
    /// The entry relay, dialled on the configured carriers (and `bridges`).
    pub entry: (String, String),
    /// The middle relays, in order.
    pub middle: Vec<(String, String)>,
}

impl CircuitOptions {
    fn from_config(c: &aura_config::CircuitSection) -> Result<Option<Self>, DaemonError> {
        if !c.enabled {
            if c.entry.is_some() || c.entry_name.is_some() || !c.middle.is_empty() {
                return Err(DaemonError::Config {
                    key: "client.circuit.entry",
                    problem: "the circuit is not enabled: set client.circuit.enabled = true, \
                              or remove entry, entry_name and middle"
                        .into(),
                });
            }
            return Ok(None);
        }
        let Some(entry) = &c.entry else {
            return Err(DaemonError::Config {
                key: "client.circuit.entry",
                problem: "a circuit needs the entry relay's address".into(),
            });
        };
        let entry_name = c.entry_name().unwrap_or(entry).to_owned();
        Ok(Some(Self {
            entry: (entry.clone(), entry_name),
            middle: c
                .middle
                .iter()
                .map(|m| (m.address.clone(), m.name().to_owned()))
                .collect(),
        }))
    }

    /// Hops, the exit included.
    pub fn hops(&self) -> usize {
        self.middle.len() + 2
    }
}

/// How the client routes: `[tunnel.os_routes]` and the `[tunnel.split]` rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// Install routes at all.
    pub enabled: bool,
    /// Log the routing plan instead of changing the host's routes.
    pub dry_run: bool,
    /// Networks outside the tunnel.
    pub direct: Vec<(IpAddr, u8)>,
    /// Networks through the tunnel inside DIRECT ones.
    pub vpn: Vec<(IpAddr, u8)>,
    /// Domains whose addresses go outside the tunnel.
    pub direct_domains: Vec<aura_config::DomainPattern>,
    /// Domains whose addresses go through it (inside DIRECT networks).
    pub vpn_domains: Vec<aura_config::DomainPattern>,
    /// The operator's path for DIRECT routes.
    pub direct_via: Option<aura_netcfg::DirectVia>,
}

impl Routing {
    fn from_config(t: &aura_config::TunnelSection) -> Self {
        let r = t.os_routes();
        let nets = |k| {
            t.split
                .as_ref()
                .map(|s| {
                    s.cidrs(k)
                        .into_iter()
                        .map(|c| (c.addr(), c.prefix_len()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let direct_via =
            (r.gateway.is_some() || r.egress_iface.is_some()).then(|| aura_netcfg::DirectVia {
                gateway: r.gateway,
                dev: r.egress_iface.clone(),
            });
        let domains = |k| t.split.as_ref().map(|s| s.domains(k)).unwrap_or_default();
        Self {
            enabled: r.enabled,
            dry_run: r.dry_run,
            direct: nets(aura_config::SplitKind::Direct),
            vpn: nets(aura_config::SplitKind::Vpn),
            direct_domains: domains(aura_config::SplitKind::Direct),
            vpn_domains: domains(aura_config::SplitKind::Vpn),
            direct_via,
        }
    }
}

impl ClientOptions {
    /// The options of `cfg`.
    ///
    /// # Errors
    /// A key of a feature not built.
    pub fn from_config(cfg: &ClientConfig) -> Result<Self, DaemonError> {
        let t = &cfg.transport;
        let server_name = cfg.client.server_name().to_owned();
        Ok(Self {
            files: CredentialFiles::new(
                &cfg.pki.ca_cert,
                &cfg.pki.crl,
                &cfg.pki.cert,
                &cfg.pki.key,
            )
            .with_knock_key(cfg.pki.knock_key.as_deref()),
            server: cfg.client.server.clone(),
            bridges: cfg.client.bridges.clone(),
            masks: MaskOptions::new(t, cfg.sni().unwrap_or(&server_name), &tls_options(t))?,
            knock: knock(t, cfg.pki.knock_key.as_deref())?,
            server_name,
            carriers: t.carriers.iter().copied().map(carrier).collect(),
            udp_port: t.udp_port,
            quic_port: t.quic_port,
            tls_port: t.tls_port,
            tls_options: tls_options(t),
            quic_options: QuicOptions::default(),
            tun_name: cfg.tunnel.name.clone(),
            mtu: cfg.tunnel.mtu,
            routing: Routing::from_config(&cfg.tunnel),
            kill_switch: cfg.client.kill_switch,
            lockdown: cfg.client.lockdown,
            dns: cfg.client.dns.clone(),
            accept_pushed_crl: cfg.pki.accept_pushed_crl,
            admin_socket: cfg.client.admin_socket.clone(),
            redact: Redact(cfg.client.no_logs),
            timers: daemon_timers(),
            circuit: CircuitOptions::from_config(&cfg.client.circuit)?,
            cover: cover_request(&cfg.transport),
            metrics: metrics_address(
                &cfg.client.metrics,
                "client.metrics",
                ["client.metrics.listen", "client.metrics.allow_remote"],
            )?,
        })
    }

    /// The dial configuration toward `server` and `bridges`; over the in-memory carrier
    /// only when `network` is in memory.
    pub fn dial_config(
        &self,
        creds: &Credentials,
        server: IpAddr,
        bridges: Vec<IpAddr>,
        network: &Network,
        wall_clock: fn() -> UnixTime,
    ) -> DialConfig {
        let (carriers, mem) = match network {
            Network::System => (self.carriers.clone(), None),
            Network::Memory(net) => (vec![Carrier::Mem], Some(net.clone())),
        };
        DialConfig {
            credentials: ClientCredentials {
                ca_der: creds.ca_der.clone(),
                crl_ders: vec![creds.crl_der.clone()],
                identity: creds.identity.clone(),
                secret: creds.secret.clone(),
            },
            server_name: self.server_name.clone(),
            server,
            bridges,
            carriers,
            udp_port: self.udp_port,
            quic_port: self.quic_port,
            tls_port: self.tls_port,
            mem,
            attempt_timeout: ATTEMPT_TIMEOUT,
            timers: self.timers.clone(),
            tls_options: TlsOptions {
                camo: self.knock.then(|| TlsCamo {
                    knock: tls_knock(creds, wall_clock),
                    decoy: None,
                }),
                ..self.tls_options.clone()
            },
            quic_options: QuicOptions {
                camo: self.knock.then(|| QuicCamo {
                    knock: quic_knock(creds, wall_clock),
                    site: None,
                    forward: None,
                }),
                ..self.quic_options.clone()
            },
            masks: self.masks.seed(&creds.ca_der),
            wall_clock,
        }
    }
}

/// The netcfg firewall plan of `[server.firewall]`.
fn firewall_plan(f: &aura_config::FirewallSection) -> aura_netcfg::FirewallPlan {
    aura_netcfg::FirewallPlan {
        client_to_client: f.client_to_client,
        allow_subnets: f
            .allow_subnets
            .iter()
            .map(|c| (c.network(), c.prefix_len()))
            .collect(),
        allow_host_ports: f
            .allow_host_ports
            .iter()
            .map(|p| {
                let l4 = if p.tcp {
                    aura_netcfg::L4::Tcp
                } else {
                    aura_netcfg::L4::Udp
                };
                (l4, p.port)
            })
            .collect(),
    }
}
