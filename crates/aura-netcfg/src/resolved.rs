//! systemd-resolved over its D-Bus API (`org.freedesktop.resolve1.Manager` on the system
//! bus), where it manages the host's DNS: the tunnel's link gets the resolvers, the
//! routing-only domain `~.` (every name) and the default route, so resolved asks only
//! them for every name no other link claims with a longer routing domain.
//! `RevertLink` undoes it, and resolved forgets a link's settings when the link goes,
//! so a crash leaves nothing behind once the TUN device is gone.
//!
//! resolved "manages" DNS when `/etc/resolv.conf` is a link into `/run/systemd/resolve/`
//! (its stub or its list of upstreams) and the name `org.freedesktop.resolve1` has an
//! owner on the bus; otherwise the resolver file is rewritten ([`crate::dns`]).

use std::net::IpAddr;
use std::path::Path;

use crate::error::NetcfgError;

const SERVICE: &str = "org.freedesktop.resolve1";
const PATH: &str = "/org/freedesktop/resolve1";
const MANAGER: &str = "org.freedesktop.resolve1.Manager";
/// `AF_INET` and `AF_INET6` as resolved expects them.
const AF_INET: i32 = 2;
const AF_INET6: i32 = 10;

fn dbus_error(action: &str, e: zbus::Error) -> NetcfgError {
    NetcfgError::Io {
        action: format!("{action} (D-Bus, systemd-resolved)"),
        source: std::io::Error::other(e.to_string()),
    }
}

/// A connection to the system bus, or to `bus` (a D-Bus address) when given.
async fn connect(bus: Option<&str>) -> Result<zbus::Connection, NetcfgError> {
    let built = match bus {
        Some(address) => match zbus::connection::Builder::address(address) {
            Ok(b) => b.build().await,
            Err(e) => Err(e),
        },
        None => zbus::Connection::system().await,
    };
    built.map_err(|e| dbus_error("connecting to the system bus", e))
}

/// Whether `path` is a link into resolved's runtime directory.
fn linked_to_resolved(path: &Path) -> bool {
    std::fs::read_link(path).is_ok_and(|target| {
        target
            .to_str()
            .is_some_and(|t| t.contains("/run/systemd/resolve/") || t.contains("systemd/resolve/"))
    })
}

/// Whether systemd-resolved manages DNS here (see the module doc).
pub(crate) async fn manages(resolv_conf: &Path, bus: Option<&str>) -> bool {
    if !linked_to_resolved(resolv_conf) {
        return false;
    }
    let Ok(c) = connect(bus).await else {
        return false;
    };
    let reply = c
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "NameHasOwner",
            &(SERVICE,),
        )
        .await;
    reply.is_ok_and(|m| m.body().deserialize::<bool>().unwrap_or(false))
}

async fn call<B>(c: &zbus::Connection, method: &str, body: &B) -> Result<(), NetcfgError>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    c.call_method(Some(SERVICE), PATH, Some(MANAGER), method, body)
        .await
        .map(drop)
        .map_err(|e| dbus_error(method, e))
}

/// The wire form of `servers`: `a(iay)`, family and address bytes.
pub(crate) fn addresses(servers: &[IpAddr]) -> Vec<(i32, Vec<u8>)> {
    servers
        .iter()
        .map(|ip| match ip {
            IpAddr::V4(a) => (AF_INET, a.octets().to_vec()),
            IpAddr::V6(a) => (AF_INET6, a.octets().to_vec()),
        })
        .collect()
}

/// Link `ifindex` resolves with `servers`, for every name (`~.`), as a default route.
pub(crate) async fn set_link(
    bus: Option<&str>,
    ifindex: u32,
    servers: &[IpAddr],
) -> Result<(), NetcfgError> {
    let index = i32::try_from(ifindex)
        .map_err(|_| NetcfgError::InvalidPlan(format!("interface index {ifindex}")))?;
    let c = connect(bus).await?;
    call(&c, "SetLinkDNS", &(index, addresses(servers))).await?;
    call(&c, "SetLinkDomains", &(index, vec![("~.", true)])).await?;
    call(&c, "SetLinkDefaultRoute", &(index, true)).await
}

/// Link `ifindex` loses what [`set_link`] gave it. A link that no longer exists has
/// nothing left to revert.
pub(crate) async fn revert_link(bus: Option<&str>, ifindex: u32) -> Result<(), NetcfgError> {
    let index = i32::try_from(ifindex)
        .map_err(|_| NetcfgError::InvalidPlan(format!("interface index {ifindex}")))?;
    let c = connect(bus).await?;
    match call(&c, "RevertLink", &(index,)).await {
        Err(e) if e.to_string().contains("Link") && e.to_string().contains("not known") => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses_carry_their_family() {
        let a = addresses(&["127.0.0.153".parse().unwrap(), "fd00::53".parse().unwrap()]);
        assert_eq!(a[0], (AF_INET, vec![127, 0, 0, 153]));
        assert_eq!(a[1].0, AF_INET6);
        assert_eq!(a[1].1.len(), 16);
    }

    #[test]
    fn only_a_link_into_resolved_counts() {
        let dir = std::env::temp_dir().join(format!("aura-resolved-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("resolv.conf");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", &link).unwrap();
        assert!(linked_to_resolved(&link));
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("/etc/resolvconf/run/resolv.conf", &link).unwrap();
        assert!(!linked_to_resolved(&link));
        std::fs::remove_file(&link).unwrap();
        std::fs::write(&link, "nameserver 192.0.2.1\n").unwrap();
        assert!(!linked_to_resolved(&link));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
