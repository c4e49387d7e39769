//! Linux: routes and links over rtnetlink. Each call opens its own netlink socket from
//! the calling thread, so it acts in that thread's network namespace.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use nix::errno::Errno;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::{DefaultRoute, Lookup, RTPROT_AURA, RouteSpec};
use crate::error::NetcfgError;

/// A netlink connection whose background task ends with it.
struct Nl {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Nl {
    fn open() -> Result<Self, NetcfgError> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|source| NetcfgError::Netlink {
                action: "opening a netlink route socket".into(),
                source,
            })?;
        Ok(Self {
            handle,
            task: tokio::spawn(conn),
        })
    }
}

impl Drop for Nl {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn errno(e: &rtnetlink::Error) -> Option<Errno> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(Errno::from_raw(m.raw_code().abs())),
        _ => None,
    }
}

fn nl_err(action: impl Into<String>, e: rtnetlink::Error) -> NetcfgError {
    let source = match &e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => io::Error::other(other.to_string()),
    };
    NetcfgError::Netlink {
        action: action.into(),
        source,
    }
}

fn invalid(e: impl std::fmt::Display) -> NetcfgError {
    NetcfgError::InvalidPlan(e.to_string())
}

fn addr_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn table_of(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

fn gateway_of(m: &RouteMessage) -> Option<IpAddr> {
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(g) => addr_of(g),
        _ => None,
    })
}

fn oif_of(m: &RouteMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

fn priority_of(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0)
}

fn dst_of(m: &RouteMessage) -> IpAddr {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Destination(d) => addr_of(d),
            _ => None,
        })
        .unwrap_or(if m.header.address_family == AddressFamily::Inet6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        })
}

async fn link_name(nl: &Nl, index: u32) -> Result<String, NetcfgError> {
    let mut links = nl.handle.link().get().match_index(index).execute();
    let msg = links
        .try_next()
        .await
        .map_err(|e| nl_err(format!("ip link show index {index}"), e))?;
    msg.and_then(|m| {
        m.attributes.into_iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n),
            _ => None,
        })
    })
    .ok_or_else(|| NetcfgError::LinkNotFound {
        name: format!("index {index}"),
    })
}

/// The interface index of `name`.
pub(crate) async fn link_index(name: &str) -> Result<u32, NetcfgError> {
    let nl = Nl::open()?;
    let mut links = nl.handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(Some(m)) => Ok(m.header.index),
        Ok(None) => Err(NetcfgError::LinkNotFound { name: name.into() }),
        Err(e) if errno(&e) == Some(Errno::ENODEV) => {
            Err(NetcfgError::LinkNotFound { name: name.into() })
        }
        Err(e) => Err(nl_err(format!("ip link show {name}"), e)),
    }
}

/// The main table's IPv4 default route with the lowest metric.
pub(crate) async fn default_route() -> Result<DefaultRoute, NetcfgError> {
    default_route_of(false)
        .await?
        .ok_or(NetcfgError::NoDefaultRoute)
}

/// The main table's IPv6 default route with the lowest metric, if there is one.
pub(crate) async fn default_route6() -> Result<Option<DefaultRoute>, NetcfgError> {
    default_route_of(true).await
}

/// The main table's default unicast route of one family with the lowest metric.
async fn default_route_of(v6: bool) -> Result<Option<DefaultRoute>, NetcfgError> {
    let nl = Nl::open()?;
    let (request, shown) = if v6 {
        (
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
            "ip -6 route show",
        )
    } else {
        (
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            "ip -4 route show",
        )
    };
    let routes: Vec<RouteMessage> = nl
        .handle
        .route()
        .get(request)
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl_err(shown, e))?;
    let best = routes
        .into_iter()
        .filter(|m| {
            m.header.destination_prefix_length == 0
                && m.header.kind == RouteType::Unicast
                && table_of(m) == u32::from(RouteHeader::RT_TABLE_MAIN)
        })
        .filter_map(|m| {
            Some((
                priority_of(&m),
                oif_of(&m).or_else(|| first_hop_oif(&m))?,
                m,
            ))
        })
        .min_by_key(|(prio, _, _)| *prio);
    let Some((_, oif, msg)) = best else {
        return Ok(None);
    };
    let gateway = gateway_of(&msg).or_else(|| first_hop_gateway(&msg));
    Ok(Some(DefaultRoute {
        gateway,
        dev: link_name(&nl, oif).await?,
    }))
}

fn first_hop(m: &RouteMessage) -> Option<&rtnetlink::packet_route::route::RouteNextHop> {
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::MultiPath(hops) => hops.first(),
        _ => None,
    })
}

fn first_hop_oif(m: &RouteMessage) -> Option<u32> {
    first_hop(m).map(|h| h.interface_index)
}

fn first_hop_gateway(m: &RouteMessage) -> Option<IpAddr> {
    first_hop(m).and_then(|h| {
        h.attributes.iter().find_map(|a| match a {
            RouteAttribute::Gateway(g) => addr_of(g),
            _ => None,
        })
    })
}

/// Where the kernel sends `addr` now; `None` when it is unreachable or local.
pub(crate) async fn lookup(addr: IpAddr) -> Result<Option<Lookup>, NetcfgError> {
    let nl = Nl::open()?;
    let full = if addr.is_ipv4() { 32 } else { 128 };
    let msg = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(addr, full)
        .map_err(invalid)?
        .build();
    let mut answer = nl.handle.route().get(msg).execute();
    let m = match answer.try_next().await {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(None),
        Err(e)
            if matches!(
                errno(&e),
                Some(Errno::ENETUNREACH | Errno::EHOSTUNREACH | Errno::EACCES | Errno::EINVAL)
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(nl_err(format!("ip route get {addr}"), e)),
    };
    if m.header.kind != RouteType::Unicast {
        return Ok(None);
    }
    let Some(ifindex) = oif_of(&m) else {
        return Ok(None);
    };
    Ok(Some(Lookup {
        gateway: gateway_of(&m),
        dev: link_name(&nl, ifindex).await?,
        ifindex,
    }))
}

fn message(spec: &RouteSpec, for_delete: bool) -> Result<RouteMessage, NetcfgError> {
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(spec.dst, spec.prefix)
        .map_err(invalid)?
        .protocol(RouteProtocol::Other(RTPROT_AURA))
        .output_interface(spec.ifindex);
    if let Some(gw) = spec.gateway {
        b = b.gateway(gw).map_err(invalid)?;
    }
    let scope = if for_delete {
        RouteScope::NoWhere
    } else if spec.gateway.is_none() && spec.dst.is_ipv4() {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    Ok(b.scope(scope).build())
}

/// Adds `spec`; `Ok(false)` when an equal route already exists (not ours then).
pub(crate) async fn add(spec: &RouteSpec) -> Result<bool, NetcfgError> {
    let nl = Nl::open()?;
    match nl.handle.route().add(message(spec, false)?).execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == Some(Errno::EEXIST) => Ok(false),
        Err(e) => Err(nl_err(format!("ip route add {spec}"), e)),
    }
}

/// Deletes `spec` (only with Aura's protocol); `Ok(false)` when it was already gone.
pub(crate) async fn del(spec: &RouteSpec) -> Result<bool, NetcfgError> {
    let nl = Nl::open()?;
    match nl.handle.route().del(message(spec, true)?).execute().await {
        Ok(()) => Ok(true),
        Err(e)
            if matches!(
                errno(&e),
                Some(Errno::ESRCH | Errno::ENOENT | Errno::ENODEV)
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(nl_err(format!("ip route del {spec}"), e)),
    }
}

/// Every route in the main table tagged with [`RTPROT_AURA`].
pub(crate) async fn own_routes() -> Result<Vec<RouteSpec>, NetcfgError> {
    let nl = Nl::open()?;
    let mut found = Vec::new();
    let dumps = [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ];
    for req in dumps {
        let routes: Vec<RouteMessage> = nl
            .handle
            .route()
            .get(req)
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_err("ip route show proto 167", e))?;
        for m in routes {
            if u8::from(m.header.protocol) != RTPROT_AURA
                || table_of(&m) != u32::from(RouteHeader::RT_TABLE_MAIN)
            {
                continue;
            }
            let ifindex = oif_of(&m).unwrap_or(0);
            let dev = match link_name(&nl, ifindex).await {
                Ok(n) => n,
                Err(_) => format!("if{ifindex}"),
            };
            found.push(RouteSpec {
                dst: dst_of(&m),
                prefix: m.header.destination_prefix_length,
                gateway: gateway_of(&m),
                dev,
                ifindex,
            });
        }
    }
    Ok(found)
}

/// Gives link `name` exactly the addresses `v4` and `v6` (IPv6 link-local ones stay) and
/// `mtu`, over netlink: a TUN device kept across address assignments.
pub(crate) async fn readdress_link(
    name: &str,
    v4: Option<(Ipv4Addr, u8)>,
    v6: Option<(Ipv6Addr, u8)>,
    mtu: u16,
) -> Result<(), NetcfgError> {
    use rtnetlink::packet_route::address::AddressAttribute;
    let index = link_index(name).await?;
    let nl = Nl::open()?;
    let mut have = Vec::new();
    let mut stream = nl
        .handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(m) = stream
        .try_next()
        .await
        .map_err(|e| nl_err(format!("ip addr show dev {name}"), e))?
    {
        let addr = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(a) => Some(*a),
            _ => None,
        });
        if let Some(a) = addr {
            have.push((a, m.header.prefix_len, m));
        }
    }
    let wanted = |a: IpAddr, prefix: u8| match a {
        IpAddr::V4(a) => v4 == Some((a, prefix)),
        IpAddr::V6(a) => a.is_unicast_link_local() || v6 == Some((a, prefix)),
    };
    for (a, prefix, m) in &have {
        if !wanted(*a, *prefix) {
            nl.handle
                .address()
                .del(m.clone())
                .execute()
                .await
                .map_err(|e| nl_err(format!("ip addr del {a}/{prefix} dev {name}"), e))?;
        }
    }
    let wants = v4
        .map(|(a, p)| (IpAddr::V4(a), p))
        .into_iter()
        .chain(v6.map(|(a, p)| (IpAddr::V6(a), p)));
    for (a, prefix) in wants {
        if !have.iter().any(|(h, p, _)| *h == a && *p == prefix) {
            nl.handle
                .address()
                .add(index, a, prefix)
                .execute()
                .await
                .map_err(|e| nl_err(format!("ip addr add {a}/{prefix} dev {name}"), e))?;
        }
    }
    let link = rtnetlink::LinkUnspec::new_with_index(index)
        .mtu(u32::from(mtu))
        .up()
        .build();
    nl.handle
        .link()
        .set(link)
        .execute()
        .await
        .map_err(|e| nl_err(format!("ip link set {name} mtu {mtu} up"), e))
}
