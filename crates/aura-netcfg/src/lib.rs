//! Aura's OS control plane: IPv4 and IPv6 forwarding, NAT and routes, each change recorded and
//! undone on stop.
//!
//! # Role
//! The server needs forwarding plus a MASQUERADE of its client pool toward the egress
//! interface (for a dual-stack pool, of its IPv6 pool too with NAT66, or routed IPv6); the client needs all traffic routed into the TUN while the route to the
//! server (and bridges) stays on the original path. [`HostConfig`] makes those changes
//! and is their recorder: [`HostConfig::undo`] reverts them in reverse order, and
//! dropping it does the same, best effort.
//!
//! # Layout
//! [`HostConfig`] (module `host`) is the facade and the journal. Under it, one module per
//! concern; where a concern touches the OS, a `#[cfg(target_os = "linux")] mod imp` does
//! it and a stub (returning [`NetcfgError::Unsupported`]) stands in elsewhere:
//! - `forwarding`: `net.ipv4.ip_forward` and `net.ipv6.conf.all.forwarding` through
//!   `/proc/sys`;
//! - `nat`: one nftables table of Aura's own, `inet aura`, built as one atomic JSON
//!   batch, deleted with one command;
//! - `routes`: native netlink (`rtnetlink`), every route tagged `proto 167`
//!   ([`RTPROT_AURA`]);
//! - `nft`: what every nftables table of Aura's shares: typed builders for the table,
//!   its base chains and rules, the JSON batch encoding, and the runner of the `nft`
//!   binary (Debian package `nftables`).
//!
//! plus [`MemoryHost`], an in-memory double, and a dry-run mode that performs the
//! reads (egress detection, route lookups) but no writes, and lists the commands it
//! would run in [`HostConfig::planned`].
//!
//! The network namespaces and the lab that `aura demo` and the root-only tests run in
//! are in the `aura-lab` crate.
//!
//! # Guarantees
//! - Only Aura's own objects are touched: the `inet aura` table, routes tagged
//!   `proto 167`, and `net.ipv4.ip_forward` and `net.ipv6.conf.all.forwarding` (each
//!   restored to its previous value).
//! - Each `apply_*` is all or nothing: on error it reverts what it had done.
//! - Undo removes exactly what was added: a route that already existed is not recorded.
//! - [`HostConfig::cleanup_leftovers`] removes what a crashed run left (the table, tagged
//!   routes), with a log line each: after [`HostConfig::claim`], only what the claimed
//!   role changes. `claim` takes a lock per role and network namespace, so a second
//!   daemon of one role refuses before it touches anything (module `instance`).
//! - Every operation acts in the network namespace of the calling thread: netlink
//!   sockets and `nft` processes are created from it.
//!
//! All `async` functions must run inside a tokio runtime (rtnetlink's connection task
//! is spawned on it).
//!
//! # Example
//! ```no_run
//! # async fn server() -> Result<(), aura_netcfg::NetcfgError> {
//! use aura_netcfg::{HostConfig, NatPlan};
//! let mut host = HostConfig::system();
//! host.claim(aura_netcfg::Role::Server)?; // one server per network namespace
//! host.cleanup_leftovers().await?; // at start: remove what a crash left behind
//! host.apply_nat(&NatPlan {
//!     pool: ("10.77.0.0".parse().unwrap(), 24),
//!     tun: "aura0".into(),
//!     egress: None, // the interface of the default route
//!     firewall: Default::default(), // clients reach the internet and nothing else
//!     pool6: Some(("fd61:7572:6100::".parse().unwrap(), 64)), // dual-stack
//!     nat66: true, // masquerade the (ULA) IPv6 pool; false: the prefix is routed here
//!     egress6: None, // the interface of the IPv6 default route, else `egress`
//! })
//! .await?;
//! // ... serve ...
//! host.undo().await?; // or just drop `host`
//! # Ok(()) }
//! ```

mod backend;
pub mod dns;
mod error;
pub mod forwarding;
mod host;
mod ifname;
#[cfg(target_os = "linux")]
pub mod instance;
pub mod killswitch;
mod memory;
pub mod nat;
mod nft;
#[cfg(target_os = "linux")]
pub mod privilege;
mod resolved;
pub mod routes;

pub use error::NetcfgError;
pub use host::{HostConfig, default_route, default_route6};
#[cfg(target_os = "linux")]
pub use instance::Role;
pub use killswitch::KillSwitchPlan;
pub use memory::{MemoryHost, MemorySnapshot};
pub use nat::{FirewallPlan, L4, NatPlan};
pub use routes::{DefaultRoute, DirectVia, RTPROT_AURA, RoutePlan};
