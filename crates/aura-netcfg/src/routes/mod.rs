//! Routes for the client: everything through the TUN, the server and bridges through
//! the original path, the original default route untouched.
//!
//! ```text
//! before                                after apply_routes
//! default via 192.0.2.254 dev eth0      default via 192.0.2.254 dev eth0          (untouched)
//!                                       203.0.113.7 via 192.0.2.254 dev eth0 proto 167   (exclude)
//!                                       0.0.0.0/1 dev aura0 proto 167 scope link
//!                                       128.0.0.0/1 dev aura0 proto 167 scope link
//! ```
//! The two half-default routes are more specific than `default`, so they win without
//! replacing it (OpenVPN's `def1`); each excluded address gets a host route along the
//! path the kernel chose for it before any change (`ip route get`), so the tunnel's
//! own packets never loop into the tunnel. With [`RoutePlan::ipv6`], `::/1` and
//! `8000::/1` capture IPv6 too, so it cannot leak around the tunnel.
//!
//! Every route carries the protocol number [`RTPROT_AURA`]: undo deletes exactly the
//! routes it added (matching that protocol), and `cleanup_leftovers` finds a crashed
//! run's routes by it. Implemented over native netlink (`rtnetlink`), no `ip` process.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
pub(crate) mod imp;
#[cfg(not(target_os = "linux"))]
#[path = "stub.rs"]
pub(crate) mod imp;

/// Route protocol number (`proto 167` in `ip route`) tagging every route Aura adds.
pub const RTPROT_AURA: u8 = 167;

/// What the client needs routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlan {
    /// The TUN device all traffic goes to.
    pub tun: String,
    /// Addresses that must keep their current path: the server, bridges.
    pub exclude: Vec<IpAddr>,
    /// Also capture IPv6 (`::/1`, `8000::/1` via the TUN).
    pub ipv6: bool,
}

/// Gives link `name` exactly the addresses `v4` and `v6` (IPv6 link-local ones stay),
/// the MTU `mtu`, and brings it up: how a TUN device made once is fitted to each new
/// address assignment (`CAP_NET_ADMIN` is enough, opening `/dev/net/tun` again is not
/// needed).
///
/// # Errors
/// The link does not exist, or netlink refused a step (named).
pub async fn readdress_link(
    name: &str,
    v4: Option<(std::net::Ipv4Addr, u8)>,
    v6: Option<(std::net::Ipv6Addr, u8)>,
    mtu: u16,
) -> Result<(), crate::NetcfgError> {
    imp::readdress_link(name, v4, v6, mtu).await
}

impl RoutePlan {
    /// Everything into `tun` but `exclude`.
    pub fn full(tun: impl Into<String>, exclude: Vec<IpAddr>, ipv6: bool) -> Self {
        Self {
            tun: tun.into(),
            exclude,
            ipv6,
        }
    }
}

/// The path the operator chose for DIRECT split routes
/// ([`HostConfig::add_split_route`](crate::HostConfig::add_split_route)): a next hop, an
/// interface, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectVia {
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Interface; with only a gateway, the interface the kernel uses for it.
    pub dev: Option<String>,
}

/// A default route of the main table: IPv4 ([`default_route`](crate::default_route)) or
/// IPv6 ([`default_route6`](crate::default_route6)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    /// Next hop; `None` for a device route (`default dev ppp0`).
    pub gateway: Option<IpAddr>,
    /// Outgoing interface.
    pub dev: String,
}

/// One route Aura adds, in the main table with protocol [`RTPROT_AURA`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteSpec {
    pub(crate) dst: IpAddr,
    pub(crate) prefix: u8,
    pub(crate) gateway: Option<IpAddr>,
    pub(crate) dev: String,
    /// Interface index; 0 when unknown (dry run before the TUN exists).
    pub(crate) ifindex: u32,
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.dst, self.prefix)?;
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        write!(f, " dev {} proto {RTPROT_AURA}", self.dev)
    }
}

/// Where the kernel sends a destination now (`ip route get`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lookup {
    pub(crate) gateway: Option<IpAddr>,
    pub(crate) dev: String,
    pub(crate) ifindex: u32,
}

/// The routes capturing all traffic into the TUN.
pub(crate) fn capture_routes(tun: &str, ifindex: u32, ipv6: bool) -> Vec<RouteSpec> {
    let mut halves: Vec<(IpAddr, u8)> = vec![
        (Ipv4Addr::UNSPECIFIED.into(), 1),
        (Ipv4Addr::new(128, 0, 0, 0).into(), 1),
    ];
    if ipv6 {
        halves.push((Ipv6Addr::UNSPECIFIED.into(), 1));
        halves.push((Ipv6Addr::new(0x8000, 0, 0, 0, 0, 0, 0, 0).into(), 1));
    }
    halves
        .into_iter()
        .map(|(dst, prefix)| RouteSpec {
            dst,
            prefix,
            gateway: None,
            dev: tun.to_owned(),
            ifindex,
        })
        .collect()
}

/// The route sending `dst/prefix` along `path` (a DIRECT split rule).
pub(crate) fn direct_route(dst: IpAddr, prefix: u8, path: &Lookup) -> RouteSpec {
    RouteSpec {
        dst,
        prefix,
        gateway: path.gateway,
        dev: path.dev.clone(),
        ifindex: path.ifindex,
    }
}

/// The route sending `dst/prefix` into the TUN (a VPN split rule).
pub(crate) fn vpn_route(dst: IpAddr, prefix: u8, tun: &str, ifindex: u32) -> RouteSpec {
    RouteSpec {
        dst,
        prefix,
        gateway: None,
        dev: tun.to_owned(),
        ifindex,
    }
}

/// The host route keeping `addr` on the path the kernel uses for it now.
pub(crate) fn exclude_route(addr: IpAddr, now: &Lookup) -> RouteSpec {
    RouteSpec {
        dst: addr,
        prefix: if addr.is_ipv4() { 32 } else { 128 },
        gateway: now.gateway,
        dev: now.dev.clone(),
        ifindex: now.ifindex,
    }
}

/// Whether `addr` falls in `dst/prefix`.
pub(crate) fn contains(dst: IpAddr, prefix: u8, addr: IpAddr) -> bool {
    match (dst, addr) {
        (IpAddr::V4(d), IpAddr::V4(a)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            u32::from(d) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(d), IpAddr::V6(a)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            u128::from(d) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn half_defaults_cover_everything_and_render_like_ip() {
        let r = capture_routes("aura0", 5, true);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].to_string(), "0.0.0.0/1 dev aura0 proto 167");
        assert_eq!(r[1].to_string(), "128.0.0.0/1 dev aura0 proto 167");
        assert_eq!(r[3].to_string(), "8000::/1 dev aura0 proto 167");
        for a in [
            "8.8.8.8",
            "200.1.2.3",
            "0.0.0.1",
            "255.255.255.254",
            "::1",
            "ffff::1",
        ] {
            let a: IpAddr = a.parse().unwrap();
            assert_eq!(
                r.iter().filter(|s| contains(s.dst, s.prefix, a)).count(),
                1,
                "{a}"
            );
        }
        assert_eq!(capture_routes("aura0", 5, false).len(), 2);
    }

    #[test]
    fn exclude_keeps_the_current_path() {
        let now = Lookup {
            gateway: Some("192.0.2.254".parse().unwrap()),
            dev: "eth0".into(),
            ifindex: 2,
        };
        let r = exclude_route("203.0.113.7".parse().unwrap(), &now);
        assert_eq!(
            r.to_string(),
            "203.0.113.7/32 via 192.0.2.254 dev eth0 proto 167"
        );
        let r = exclude_route(
            "2001:db8::1".parse().unwrap(),
            &Lookup {
                gateway: None,
                ..now
            },
        );
        assert_eq!(r.to_string(), "2001:db8::1/128 dev eth0 proto 167");
    }

    #[test]
    fn prefix_containment() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(contains(ip("10.0.0.0"), 8, ip("10.255.1.1")));
        assert!(!contains(ip("10.0.0.0"), 8, ip("11.0.0.1")));
        assert!(contains(ip("0.0.0.0"), 0, ip("1.2.3.4")));
        assert!(contains(ip("1.2.3.4"), 32, ip("1.2.3.4")));
        assert!(!contains(ip("0.0.0.0"), 0, ip("::1")));
        assert!(contains(ip("::"), 0, ip("::1")));
    }
}
