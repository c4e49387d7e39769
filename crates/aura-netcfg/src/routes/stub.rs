//! Other systems: not implemented.

use std::net::IpAddr;

use super::{DefaultRoute, Lookup, RouteSpec};
use crate::error::NetcfgError;

const WHAT: &str = "routing";

pub(crate) async fn link_index(_name: &str) -> Result<u32, NetcfgError> {
    Err(NetcfgError::Unsupported(WHAT))
}

pub(crate) async fn default_route() -> Result<DefaultRoute, NetcfgError> {
    Err(NetcfgError::Unsupported(WHAT))
}

pub(crate) async fn default_route6() -> Result<Option<DefaultRoute>, NetcfgError> {
    Err(NetcfgError::Unsupported(WHAT))
}

pub(crate) async fn lookup(_addr: IpAddr) -> Result<Option<Lookup>, NetcfgError> {
    Err(NetcfgError::Unsupported(WHAT))
}

pub(crate) async fn add(_spec: &RouteSpec) -> Result<bool, NetcfgError> {
    Err(NetcfgError::Unsupported(WHAT))
}

pub(crate) async fn del(_spec: &RouteSpec) -> Result<bool, NetcfgError> {
    Err(NetcfgError::Unsupported(WHAT))
}

pub(crate) async fn own_routes() -> Result<Vec<RouteSpec>, NetcfgError> {
    Err(NetcfgError::Unsupported(WHAT))
}

pub(crate) async fn readdress_link(
    _name: &str,
    _v4: Option<(std::net::Ipv4Addr, u8)>,
    _v6: Option<(std::net::Ipv6Addr, u8)>,
    _mtu: u16,
) -> Result<(), NetcfgError> {
    Err(NetcfgError::Unsupported(WHAT))
}
