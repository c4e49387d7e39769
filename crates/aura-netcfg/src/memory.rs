//! [`MemoryHost`]: an in-memory double of the host, for tests of code that drives
//! [`HostConfig`](crate::HostConfig) (the daemons) without root or namespaces.
//!
//! It models just enough: the forwarding sysctls (IPv4 and IPv6), whether `nft` is installed, Aura's nftables table,
//! links, and a main routing table with longest-prefix lookup and the kernel's
//! "exists" rule. It never touches the real host.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::NetcfgError;
use crate::forwarding::{IP_FORWARD, IPV6_FORWARD};
use crate::routes::{DefaultRoute, Lookup, RTPROT_AURA, RouteSpec, contains};

#[derive(Debug, Clone)]
struct MemRoute {
    spec: RouteSpec,
    proto: u8,
}

#[derive(Debug)]
struct State {
    ip_forward: String,
    /// `net.ipv6.conf.all.forwarding`; `None`: a host without IPv6.
    ipv6_forward: Option<String>,
    nft_available: bool,
    /// Aura's nftables tables by name: the JSON batch that made each.
    tables: std::collections::BTreeMap<String, String>,
    links: Vec<String>,
    routes: Vec<MemRoute>,
    /// `/etc/resolv.conf`; `None`: absent.
    resolv: Option<String>,
    /// The kill switch's DIRECT sets, as last written after the table was made.
    kill_switch_direct: Vec<(IpAddr, u8)>,
}

/// A simulated host; clones share one state, so a test keeps a clone to inspect
/// what a [`HostConfig`](crate::HostConfig) did to it.
#[derive(Debug, Clone)]
pub struct MemoryHost {
    state: Arc<Mutex<State>>,
}

/// A comparable picture of a [`MemoryHost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemorySnapshot {
    /// `net.ipv4.ip_forward`.
    pub ip_forward: String,
    /// `net.ipv6.conf.all.forwarding` (empty on a host without IPv6).
    pub ipv6_forward: String,
    /// The JSON batch that created Aura's server table (`inet aura`), if it exists.
    pub nft_table: Option<String>,
    /// The JSON batch that created the client's table (`inet aura_client`, the kill
    /// switch), if it exists.
    pub nft_client_table: Option<String>,
    /// The main table, each route in `ip route` syntax, in insertion order.
    pub routes: Vec<String>,
    /// `/etc/resolv.conf`, if there is one.
    pub resolv_conf: Option<String>,
}

impl Default for MemoryHost {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryHost {
    /// A host with only `lo`, forwarding off (IPv4 and IPv6), `nft` installed, no routes.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                ip_forward: "0".into(),
                ipv6_forward: Some("0".into()),
                nft_available: true,
                tables: std::collections::BTreeMap::new(),
                links: vec!["lo".into()],
                routes: Vec::new(),
                resolv: Some("nameserver 192.0.2.53\n".into()),
                kill_switch_direct: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an interface, returns its index.
    pub fn add_link(&self, name: &str) -> u32 {
        let mut s = self.lock();
        if let Some(i) = s.links.iter().position(|l| l == name) {
            return index(i);
        }
        s.links.push(name.into());
        index(s.links.len() - 1)
    }

    /// Adds a route that is not Aura's (`dst/prefix [via gateway] dev dev`).
    pub fn add_route(
        &self,
        dst: IpAddr,
        prefix: u8,
        gateway: Option<IpAddr>,
        dev: &str,
    ) -> Result<(), NetcfgError> {
        let ifindex = self.index_of(dev)?;
        self.lock().routes.push(MemRoute {
            spec: RouteSpec {
                dst,
                prefix,
                gateway,
                dev: dev.into(),
                ifindex,
            },
            proto: 4,
        });
        Ok(())
    }

    /// Sets `net.ipv4.ip_forward`.
    pub fn set_ip_forward(&self, value: &str) {
        value.clone_into(&mut self.lock().ip_forward);
    }

    /// Sets `net.ipv6.conf.all.forwarding`; `None`: the host has no IPv6 (the sysctl
    /// does not exist).
    pub fn set_ipv6_forward(&self, value: Option<&str>) {
        self.lock().ipv6_forward = value.map(str::to_owned);
    }

    /// Installs or removes the simulated `nft` binary.
    pub fn set_nft_available(&self, yes: bool) {
        self.lock().nft_available = yes;
    }

    /// Leaves an Aura table behind, as a crashed run would.
    pub fn leave_aura_table(&self) {
        self.lock().tables.insert(
            crate::nat::TABLE_NAME.into(),
            "{\"left\":\"behind\"}".into(),
        );
    }

    /// Leaves an Aura-tagged route behind, as a crashed run would.
    pub fn leave_aura_route(&self, dst: IpAddr, prefix: u8, dev: &str) -> Result<(), NetcfgError> {
        let ifindex = self.index_of(dev)?;
        self.lock().routes.push(MemRoute {
            spec: RouteSpec {
                dst,
                prefix,
                gateway: None,
                dev: dev.into(),
                ifindex,
            },
            proto: RTPROT_AURA,
        });
        Ok(())
    }

    /// Sets `/etc/resolv.conf` (`None`: removes it). A new host has
    /// `nameserver 192.0.2.53`.
    pub fn set_resolv_conf(&self, text: Option<&str>) {
        self.lock().resolv = text.map(str::to_owned);
    }

    /// `/etc/resolv.conf`, if there is one.
    pub fn resolv_conf(&self) -> Option<String> {
        self.lock().resolv.clone()
    }

    pub(crate) fn resolv_previous(&self) -> crate::dns::Previous {
        match &self.lock().resolv {
            Some(t) => crate::dns::Previous::File(t.clone().into_bytes()),
            None => crate::dns::Previous::Absent,
        }
    }

    pub(crate) fn restore_resolv(&self, previous: &crate::dns::Previous) {
        let mut s = self.lock();
        if !s
            .resolv
            .as_deref()
            .is_some_and(|t| crate::dns::is_ours(t.as_bytes()))
        {
            return;
        }
        s.resolv = match previous {
            crate::dns::Previous::File(b) => Some(String::from_utf8_lossy(b).into_owned()),
            crate::dns::Previous::Symlink(t) => Some(format!("(link to {})", t.display())),
            crate::dns::Previous::Absent => None,
        };
    }

    /// The interface `addr` is routed through now (`ip route get`), if any.
    pub fn route_get(&self, addr: IpAddr) -> Option<String> {
        self.lookup(addr).map(|l| l.dev)
    }

    /// The whole observable state.
    pub fn snapshot(&self) -> MemorySnapshot {
        let s = self.lock();
        MemorySnapshot {
            ip_forward: s.ip_forward.clone(),
            ipv6_forward: s.ipv6_forward.clone().unwrap_or_default(),
            nft_table: s.tables.get(crate::nat::TABLE_NAME).cloned(),
            nft_client_table: s.tables.get(crate::killswitch::TABLE_NAME).cloned(),
            resolv_conf: s.resolv.clone(),
            routes: s
                .routes
                .iter()
                .map(|r| {
                    let mut line = r.spec.to_string();
                    if r.proto != RTPROT_AURA {
                        line = line.replace(&format!(" proto {RTPROT_AURA}"), "");
                    }
                    line
                })
                .collect(),
        }
    }

    fn index_of(&self, dev: &str) -> Result<u32, NetcfgError> {
        self.lock()
            .links
            .iter()
            .position(|l| l == dev)
            .map(index)
            .ok_or_else(|| NetcfgError::LinkNotFound { name: dev.into() })
    }

    // ---- the operations HostConfig performs ----

    pub(crate) fn read_sysctl(&self, key: &'static str) -> Result<String, NetcfgError> {
        let s = self.lock();
        let value = match key {
            IP_FORWARD => Some(s.ip_forward.clone()),
            IPV6_FORWARD => s.ipv6_forward.clone(),
            _ => None,
        };
        value.ok_or(NetcfgError::Sysctl {
            key,
            source: std::io::ErrorKind::NotFound.into(),
        })
    }

    pub(crate) fn write_sysctl(&self, key: &'static str, value: &str) -> Result<(), NetcfgError> {
        self.read_sysctl(key)?;
        let mut s = self.lock();
        if key == IPV6_FORWARD {
            s.ipv6_forward = Some(value.to_owned());
        } else {
            value.clone_into(&mut s.ip_forward);
        }
        Ok(())
    }

    fn nft_check(&self) -> Result<(), NetcfgError> {
        if self.lock().nft_available {
            Ok(())
        } else {
            Err(NetcfgError::NftNotFound {
                program: "nft".into(),
            })
        }
    }

    pub(crate) fn nft_replace_table(&self, name: &str, payload: &str) -> Result<(), NetcfgError> {
        self.nft_check()?;
        self.lock().tables.insert(name.into(), payload.into());
        Ok(())
    }

    pub(crate) fn nft_delete_table(&self, name: &str) -> Result<(), NetcfgError> {
        self.nft_check()?;
        let mut s = self.lock();
        s.tables.remove(name);
        if name == crate::killswitch::TABLE_NAME {
            s.kill_switch_direct.clear();
        }
        Ok(())
    }

    pub(crate) fn set_kill_switch_direct(
        &self,
        direct: &[(IpAddr, u8)],
    ) -> Result<(), NetcfgError> {
        self.nft_check()?;
        let mut s = self.lock();
        if !s.tables.contains_key(crate::killswitch::TABLE_NAME) {
            return Err(NetcfgError::InvalidPlan(
                "the kill switch's table does not exist".into(),
            ));
        }
        s.kill_switch_direct = direct.to_vec();
        Ok(())
    }

    /// What the kill switch's DIRECT sets hold, as last updated
    /// ([`HostConfig::set_kill_switch_direct`](crate::HostConfig::set_kill_switch_direct)).
    pub fn kill_switch_direct(&self) -> Vec<(IpAddr, u8)> {
        self.lock().kill_switch_direct.clone()
    }

    pub(crate) fn nft_has_table(&self, name: &str) -> Result<bool, NetcfgError> {
        self.nft_check()?;
        Ok(self.lock().tables.contains_key(name))
    }

    pub(crate) fn link_index(&self, name: &str) -> Result<u32, NetcfgError> {
        self.index_of(name)
    }

    pub(crate) fn default_route(&self) -> Result<DefaultRoute, NetcfgError> {
        self.lock()
            .routes
            .iter()
            .find(|r| r.spec.prefix == 0 && r.spec.dst.is_ipv4())
            .map(|r| DefaultRoute {
                gateway: r.spec.gateway,
                dev: r.spec.dev.clone(),
            })
            .ok_or(NetcfgError::NoDefaultRoute)
    }

    pub(crate) fn default_route6(&self) -> Option<DefaultRoute> {
        self.lock()
            .routes
            .iter()
            .find(|r| r.spec.prefix == 0 && r.spec.dst.is_ipv6())
            .map(|r| DefaultRoute {
                gateway: r.spec.gateway,
                dev: r.spec.dev.clone(),
            })
    }

    pub(crate) fn lookup(&self, addr: IpAddr) -> Option<Lookup> {
        self.lock()
            .routes
            .iter()
            .filter(|r| contains(r.spec.dst, r.spec.prefix, addr))
            .max_by_key(|r| r.spec.prefix)
            .map(|r| Lookup {
                gateway: r.spec.gateway,
                dev: r.spec.dev.clone(),
                ifindex: r.spec.ifindex,
            })
    }

    pub(crate) fn route_add(&self, spec: &RouteSpec) -> Result<bool, NetcfgError> {
        self.index_of(&spec.dev)?;
        let mut s = self.lock();
        if s.routes
            .iter()
            .any(|r| r.spec.dst == spec.dst && r.spec.prefix == spec.prefix)
        {
            return Ok(false);
        }
        s.routes.push(MemRoute {
            spec: spec.clone(),
            proto: RTPROT_AURA,
        });
        Ok(true)
    }

    pub(crate) fn route_del(&self, spec: &RouteSpec) -> Result<bool, NetcfgError> {
        let mut s = self.lock();
        let found = s.routes.iter().position(|r| {
            r.proto == RTPROT_AURA
                && r.spec.dst == spec.dst
                && r.spec.prefix == spec.prefix
                && (spec.ifindex == 0 || r.spec.ifindex == spec.ifindex)
        });
        Ok(found.map(|i| s.routes.remove(i)).is_some())
    }

    pub(crate) fn own_routes(&self) -> Vec<RouteSpec> {
        self.lock()
            .routes
            .iter()
            .filter(|r| r.proto == RTPROT_AURA)
            .map(|r| r.spec.clone())
            .collect()
    }
}

fn index(position: usize) -> u32 {
    u32::try_from(position + 1).unwrap_or(u32::MAX)
}
