//! [`NetcfgError`]: every way a host change can fail, named so an operator can act on it.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

/// Why a change to the host could not be planned, made or undone.
///
/// Grouped by cause: the plan itself is wrong ([`InvalidPlan`](Self::InvalidPlan),
/// [`AlreadyApplied`](Self::AlreadyApplied)); the host lacks something
/// ([`NftNotFound`](Self::NftNotFound), [`NoDefaultRoute`](Self::NoDefaultRoute),
/// [`NoIpv6`](Self::NoIpv6), [`LinkNotFound`](Self::LinkNotFound),
/// [`Unsupported`](Self::Unsupported)); the host
/// refused a change ([`Nft`](Self::Nft), [`Netlink`](Self::Netlink),
/// [`Sysctl`](Self::Sysctl), [`RouteConflict`](Self::RouteConflict)); or undo left
/// something behind ([`UndoIncomplete`](Self::UndoIncomplete)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetcfgError {
    /// Dropping privileges (`run_as`) failed or is impossible; the text names the step.
    #[error("{0}")]
    Privilege(String),
    /// The plan is malformed (bad interface name, prefix length over 32, ...).
    #[error("invalid network plan: {0}")]
    InvalidPlan(String),
    /// This [`HostConfig`](crate::HostConfig) already holds a change of this kind; undo first.
    #[error("{0} is already applied by this HostConfig; undo it first")]
    AlreadyApplied(&'static str),
    /// The `nft` binary is missing.
    #[error("nft not found ({}): install the nftables package", program.display())]
    NftNotFound {
        /// The program that was looked for.
        program: PathBuf,
    },
    /// `nft` ran and rejected the change.
    #[error("nft failed while {action} ({status}): {stderr}")]
    Nft {
        /// What was being done, e.g. "applying table inet aura".
        action: String,
        /// Exit status, as printed by the OS.
        status: String,
        /// What nft wrote on stderr, trimmed.
        stderr: String,
    },
    /// There is no IPv4 default route to take the egress interface or gateway from.
    #[error("no IPv4 default route: cannot detect the egress interface; set it explicitly")]
    NoDefaultRoute,
    /// The host has no IPv6 (`net.ipv6.conf.all.forwarding` does not exist: the kernel
    /// was booted with `ipv6.disable=1` or built without IPv6), so an IPv6 pool cannot be
    /// forwarded.
    #[error(
        "this host has no IPv6 ({key} does not exist; IPv6 disabled in the kernel?): enable IPv6 or configure no IPv6 pool"
    )]
    NoIpv6 {
        /// The sysctl that is missing.
        key: &'static str,
    },
    /// A network interface named in the plan does not exist.
    #[error("network interface {name:?} not found")]
    LinkNotFound {
        /// Interface name.
        name: String,
    },
    /// A route Aura needs is already held by someone else (another VPN?).
    #[error("route {route} already exists and is not Aura's (another VPN running?)")]
    RouteConflict {
        /// The route, in `ip route` syntax.
        route: String,
    },
    /// An address to keep off the tunnel is already routed through the tunnel device:
    /// routes were applied twice, or a crashed run left them behind.
    #[error("{addr} is already routed via {tun}: run cleanup_leftovers or undo first")]
    ExcludeViaTun {
        /// The excluded address.
        addr: IpAddr,
        /// The tunnel device.
        tun: String,
    },
    /// A netlink request failed (often: not root / no CAP_NET_ADMIN).
    #[error("netlink: {action}: {source}")]
    Netlink {
        /// What was being done, in `ip` syntax.
        action: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// A sysctl could not be read or written.
    #[error("sysctl {key}: {source}")]
    Sysctl {
        /// Dotted key, e.g. `net.ipv4.ip_forward`.
        key: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Running a helper program failed for another reason than its absence.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A helper program did not finish in time.
    #[error("timed out while {0}")]
    Timeout(String),
    /// Another daemon of the same role holds this network namespace's instance lock.
    #[error(
        "another aura {role} runs in this network namespace{}: stop it first (lock {})",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        lock.display()
    )]
    AlreadyRunning {
        /// `server` or `client`.
        role: &'static str,
        /// The holder's PID, as it wrote it into the lock file.
        pid: Option<u32>,
        /// The lock file.
        lock: std::path::PathBuf,
    },
    /// This operating system has no implementation of the concern.
    #[error("{0} is not supported on this operating system")]
    Unsupported(&'static str),
    /// Undo reverted what it could; these changes remain on the host.
    #[error("undo left {} change(s) behind; first: {first}", failed.len())]
    UndoIncomplete {
        /// Each change that could not be reverted, with its error.
        failed: Vec<String>,
        /// The first error.
        #[source]
        first: Box<NetcfgError>,
    },
}
