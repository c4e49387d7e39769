//! Aura's configuration files: `server.toml` and `client.toml`.
//!
//! This crate owns the schema (sections, keys, defaults), reading the files, and checking
//! them, plus [`toml_string`], the quoting every writer of these files uses. It does no
//! networking and touches the file system only in [`load_server`], [`load_client`] and
//! the `validate` methods.
//!
//! # Guarantees
//! - **Unknown keys are errors** (`deny_unknown_fields` everywhere): a typo never silently
//!   falls back to a default. [`ConfigError::Parse`] names the key, its line and column.
//! - **Every key has a documented default** except the few that cannot have one
//!   (`[server] name`, `[client] server`, the `[pki]` paths). `config/*.toml.example` in
//!   the repository documents each key; a test parses and validates them.
//! - **Paths** are resolved when parsed: `~` and `~/…` from `$HOME`, relative paths
//!   against the directory of the configuration file.
//! - **Validation reports everything at once.** `validate()` returns
//!   [`ConfigError::Invalid`] listing every problem with its dotted key
//!   (`server.pool.static.alice: 10.8.1.5 is outside the pool 10.77.0.0/24`), including
//!   missing or unreadable `[pki]` files and private keys readable by others.
//!
//! # Example
//! ```
//! use std::path::Path;
//!
//! let text = r#"
//!     [client]
//!     server = "vpn.example.com"
//!
//!     [transport]
//!     carriers = ["quic", "tls"]
//!
//!     [pki]
//!     ca_cert = "ca.crt"
//!     cert = "client.crt"
//!     key = "client.key"
//!     crl = "crl.pem"
//!     knock_key = "knock.key"
//! "#;
//! let cfg = aura_config::parse_client(text, Path::new("/etc/aura")).unwrap();
//! assert_eq!(cfg.client.server_name(), "vpn.example.com");
//! assert_eq!(cfg.sni(), Some("vpn.example.com"));
//! assert_eq!(cfg.transport.quic_port, 443);
//! assert_eq!(cfg.tunnel.mtu, aura_config::DEFAULT_MTU);
//! assert_eq!(cfg.pki.key, Path::new("/etc/aura/client.key"));
//! // The files do not exist here, so validation lists each of them.
//! let err = cfg.validate().unwrap_err();
//! assert_eq!(err.problems().len(), 5);
//!
//! let err = aura_config::parse_client("[client]\nserver = \"x\"\nsevrer = 1\n", Path::new("."))
//!     .unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "line 3, column 1: client.sevrer: unknown field `sevrer`, expected one of `server`, \
//!      `server_name`, `bridges`, `admin_socket`, `no_logs`, `run_as`, `kill_switch`, `lockdown`, \
//!      `dns`, `circuit`, `metrics`"
//! );
//! ```
#![forbid(unsafe_code)]

mod cidr;
mod client;
mod common;
mod dns;
mod error;
mod locate;
mod metrics;
mod quote;
mod server;
mod split;

use std::fs;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use cidr::{CidrParseError, Ipv4Cidr};
pub use client::{
    CircuitSection, ClientConfig, ClientPki, ClientSection, DEFAULT_CLIENT_ADMIN_SOCKET,
    DEFAULT_HOPS, HOP_OVERHEAD, MAX_HOPS, MiddleHop,
};
pub use common::{
    AURA_DATA_OVERHEAD, Carrier, CoverMode, DEFAULT_MTU, DEFAULT_QUIC_PORT, DEFAULT_TLS_PORT,
    DEFAULT_TUN_NAME, DEFAULT_UDP_PORT, MAX_MTU, MAX_PADDING_PROFILE, MIN_MTU,
    QUIC_EARLY_DATAGRAM_MAX, QUIC_MTU_LIMIT, TransportSection, TunnelSection, UDP_CAMO_OVERHEAD,
};
pub use dns::{ClientDns, MAX_RESOLVERS, check_resolver};
pub use error::{ConfigError, Problem};
pub use metrics::MetricsSection;
pub use quote::toml_string;
pub use server::{
    CoverSection, DEFAULT_POOL_CIDR, DEFAULT_SERVER_ADMIN_SOCKET, DecoySection, FirewallSection,
    HostPort, NatSection, PoolSection, PoolStrategy, RelaySection, ServerConfig, ServerPki,
    ServerSection,
};
pub use server::{DEFAULT_POOL_CIDR6, MAX_SERVER_WORKERS, Nat6Mode};
pub use split::{DomainPattern, IpCidr, OsRoutes, SplitKind, SplitRule, SplitSection};

use common::Resolver;

/// Reads, parses and validates a server configuration file.
///
/// # Errors
/// [`ConfigError::Io`] when the file cannot be read, [`ConfigError::Parse`] for bad TOML
/// or an unknown key, [`ConfigError::Invalid`] for unusable values.
pub fn load_server(path: impl AsRef<Path>) -> Result<ServerConfig, ConfigError> {
    let path = path.as_ref();
    let (text, base) = read(path)?;
    let cfg = parse_with(&text, &base, Some(path), ServerConfig::resolve)?;
    cfg.validate()?;
    Ok(cfg)
}

/// Reads, parses and validates a client configuration file.
///
/// # Errors
/// As [`load_server`].
pub fn load_client(path: impl AsRef<Path>) -> Result<ClientConfig, ConfigError> {
    let path = path.as_ref();
    let (text, base) = read(path)?;
    let cfg = parse_with(&text, &base, Some(path), ClientConfig::resolve)?;
    cfg.validate()?;
    Ok(cfg)
}

/// Parses server configuration text, resolving relative paths against `base_dir`. Does
/// not validate: call [`ServerConfig::validate`].
///
/// # Errors
/// [`ConfigError::Parse`]; [`ConfigError::Invalid`] when a `~` path cannot be expanded.
pub fn parse_server(text: &str, base_dir: &Path) -> Result<ServerConfig, ConfigError> {
    parse_with(text, base_dir, None, ServerConfig::resolve)
}

/// Parses client configuration text, resolving relative paths against `base_dir`. Does
/// not validate: call [`ClientConfig::validate`].
///
/// # Errors
/// As [`parse_server`].
pub fn parse_client(text: &str, base_dir: &Path) -> Result<ClientConfig, ConfigError> {
    parse_with(text, base_dir, None, ClientConfig::resolve)
}

fn read(path: &Path) -> Result<(String, PathBuf), ConfigError> {
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((text, base))
}

fn parse_with<T: DeserializeOwned>(
    text: &str,
    base_dir: &Path,
    path: Option<&Path>,
    resolve: fn(&mut T, &Resolver<'_>) -> Result<(), ConfigError>,
) -> Result<T, ConfigError> {
    let mut cfg: T = toml::from_str(text).map_err(|e| locate::parse_error(text, &e, path))?;
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    resolve(&mut cfg, &Resolver { base_dir, home })?;
    Ok(cfg)
}
