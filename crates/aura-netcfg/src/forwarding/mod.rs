//! Forwarding for the server: `net.ipv4.ip_forward` and, with an IPv6 pool,
//! `net.ipv6.conf.all.forwarding`, each switched on, the previous value remembered and
//! written back on undo.

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
pub(crate) mod imp;
#[cfg(not(target_os = "linux"))]
#[path = "stub.rs"]
pub(crate) mod imp;

/// The IPv4 forwarding sysctl Aura changes.
pub const IP_FORWARD: &str = "net.ipv4.ip_forward";

/// The IPv6 forwarding sysctl Aura changes (`/proc/sys/net/ipv6/conf/all/forwarding`;
/// absent when the host has no IPv6, e.g. booted with `ipv6.disable=1`).
///
/// Switching it on turns every interface into a router: one with `accept_ra = 1` (the
/// usual default) then stops accepting router advertisements, so an address or a default
/// route learnt from them (SLAAC, common on cloud VMs) is lost when it expires. Set
/// `accept_ra = 2` on such an interface first.
pub const IPV6_FORWARD: &str = "net.ipv6.conf.all.forwarding";

/// The sysctls Aura may change, each journalled until undone.
pub(crate) const KEYS: [&str; 2] = [IP_FORWARD, IPV6_FORWARD];
