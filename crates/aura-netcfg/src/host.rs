//! [`HostConfig`]: makes Aura's changes to one host (forwarding, NAT, routes), records
//! each in a journal, and undoes them newest first on [`HostConfig::undo`] or on drop;
//! and [`default_route`] / [`default_route6`], the host's IPv4 and IPv6 default routes.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::backend::{Backend, Change};
use crate::error::NetcfgError;
use crate::ifname::check_ifname;
use crate::killswitch::{self, KillSwitchPlan};
use crate::memory::MemoryHost;
use crate::nat::{self, NatPlan};
use crate::routes::{self, DefaultRoute, RoutePlan};
use crate::{forwarding, nft};

/// The IPv4 default route of the main table, on this host (calling thread's network
/// namespace).
pub async fn default_route() -> Result<DefaultRoute, NetcfgError> {
    Backend::System { nft: None }.default_route().await
}

/// The IPv6 default route of the main table, on this host (calling thread's network
/// namespace); `None` when there is none.
pub async fn default_route6() -> Result<Option<DefaultRoute>, NetcfgError> {
    Backend::System { nft: None }.default_route6().await
}

/// Makes, records and undoes Aura's changes to one host.
///
/// `undo()` reverts every recorded change in reverse order; `Drop` calls it (best effort,
/// on a helper thread with its own runtime, inheriting the network namespace of the
/// dropping thread) if it was not called.
#[derive(Debug)]
pub struct HostConfig {
    backend: Backend,
    dry_run: bool,
    changes: Vec<Change>,
    planned: Vec<String>,
    nat_applied: bool,
    routes_applied: bool,
    kill_switch_applied: bool,
    dns_applied: bool,
    /// A kill switch comes right after cleanup: a leftover one stays until replaced.
    keep_leftover_kill_switch: bool,
    /// The resolver file [`apply_dns`](Self::apply_dns) rewrites.
    resolv_conf: PathBuf,
    /// The system bus for systemd-resolved (`None`: the default one).
    system_bus: Option<String>,
    /// The role claimed ([`HostConfig::claim`]): what cleanup looks for.
    role: Option<crate::Role>,
    /// The instance lock, held for this value's life.
    lock: Option<crate::instance::InstanceLock>,
}

impl HostConfig {
    fn with_backend(backend: Backend) -> Self {
        Self {
            backend,
            dry_run: false,
            changes: Vec::new(),
            planned: Vec::new(),
            nat_applied: false,
            routes_applied: false,
            kill_switch_applied: false,
            dns_applied: false,
            keep_leftover_kill_switch: false,
            resolv_conf: PathBuf::from(crate::dns::RESOLV_CONF),
            system_bus: None,
            role: None,
            lock: None,
        }
    }

    /// Claims this network namespace for a daemon of `role`: takes the role's instance
    /// lock (`/run/aura/<role>-netns<inode>.lock`, on the real host and not in dry-run),
    /// held until this value drops, and scopes [`cleanup_leftovers`](Self::cleanup_leftovers)
    /// to what `role` changes. Call it first, before anything touches the host.
    ///
    /// # Errors
    /// [`NetcfgError::AlreadyRunning`] when another daemon of `role` runs in this network
    /// namespace; [`NetcfgError::Io`] when the lock cannot be made.
    pub fn claim(&mut self, role: crate::Role) -> Result<(), NetcfgError> {
        if matches!(self.backend, Backend::System { .. }) && !self.dry_run {
            self.lock = Some(crate::instance::claim(
                &crate::instance::role_dir(role),
                role,
            )?);
        }
        self.role = Some(role);
        Ok(())
    }

    /// Changes the real host.
    pub fn system() -> Self {
        Self::with_backend(Backend::System { nft: None })
    }

    /// Reads the real host but changes nothing: [`planned`](Self::planned) lists what
    /// would be run.
    pub fn dry_run() -> Self {
        Self::system().with_dry_run(true)
    }

    /// Changes a [`MemoryHost`] (keep a clone of it to inspect the result).
    pub fn in_memory(host: MemoryHost) -> Self {
        Self::with_backend(Backend::Memory(host))
    }

    /// Switches dry-run on or off.
    #[must_use]
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Runs this `nft` instead of the one on `PATH` (or in `/usr/sbin`, `/sbin`).
    #[must_use]
    pub fn with_nft_program(mut self, program: impl Into<PathBuf>) -> Self {
        if let Backend::System { nft } = &mut self.backend {
            *nft = Some(program.into());
        }
        self
    }

    /// Rewrites this file instead of `/etc/resolv.conf` in
    /// [`apply_dns`](Self::apply_dns).
    #[must_use]
    pub fn with_resolv_conf(mut self, path: impl Into<PathBuf>) -> Self {
        self.resolv_conf = path.into();
        self
    }

    /// Talks to systemd-resolved on this D-Bus address instead of the system bus.
    #[must_use]
    pub fn with_system_bus(mut self, address: impl Into<String>) -> Self {
        self.system_bus = Some(address.into());
        self
    }

    /// Whether this is a dry run.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Every host-changing command issued so far, in order, undo included: in a dry
    /// run, what would have been run. Routes are shown in `ip route` syntax (they go
    /// over netlink), nftables batches as the `nft -j -f -` call with its input.
    pub fn planned(&self) -> &[String] {
        &self.planned
    }

    /// Whether changes are recorded that [`undo`](Self::undo) would revert.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The default route, as seen by this backend.
    pub async fn default_route(&self) -> Result<DefaultRoute, NetcfgError> {
        self.backend.default_route().await
    }

    /// The IPv6 default route, as seen by this backend; `None` when there is none.
    pub async fn default_route6(&self) -> Result<Option<DefaultRoute>, NetcfgError> {
        self.backend.default_route6().await
    }

    /// Makes `change` (or plans it in a dry run) and records it. `Ok(false)`: the
    /// host already had it; nothing recorded.
    async fn perform(&mut self, change: Change) -> Result<bool, NetcfgError> {
        let cmd = change.apply_cmd();
        if self.dry_run {
            tracing::info!(command = %cmd, "dry run: would run");
        } else {
            if !self.backend.apply(&change).await? {
                tracing::info!(command = %cmd, "already in place, not recorded");
                return Ok(false);
            }
            tracing::info!(command = %cmd, "host changed");
        }
        self.planned.push(cmd);
        self.changes.push(change);
        Ok(true)
    }

    /// Reverts recorded changes down to `mark`, newest first; returns the failures.
    async fn revert_to(&mut self, mark: usize) -> Vec<(String, NetcfgError)> {
        let mut failed = Vec::new();
        while self.changes.len() > mark {
            let Some(change) = self.changes.pop() else {
                break;
            };
            let cmd = change.undo_cmd();
            if self.dry_run {
                tracing::info!(command = %cmd, "dry run: would run");
            } else if let Err(e) = self.backend.revert(&change).await {
                tracing::warn!(command = %cmd, error = %e, "could not undo");
                failed.push((cmd.clone(), e));
            } else {
                tracing::info!(command = %cmd, "host change undone");
            }
            self.planned.push(cmd);
        }
        failed
    }

    /// Passes `result` through; on error first reverts what was recorded after `mark`.
    async fn all_or_nothing(
        &mut self,
        mark: usize,
        result: Result<(), NetcfgError>,
    ) -> Result<(), NetcfgError> {
        if let Err(e) = result {
            for (cmd, err) in self.revert_to(mark).await {
                tracing::warn!(command = %cmd, error = %err, "rollback incomplete");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Switches IPv4 forwarding on, remembering the previous value for undo. Nothing is
    /// recorded if it was already on.
    pub async fn enable_forwarding(&mut self) -> Result<(), NetcfgError> {
        let key = forwarding::IP_FORWARD;
        let previous = self.backend.read_sysctl(key)?;
        if previous == "1" {
            tracing::debug!("{key} is already 1");
            return Ok(());
        }
        self.perform(Change::Sysctl {
            key,
            previous,
            value: "1".into(),
        })
        .await
        .map(drop)
    }

    /// Switches IPv6 forwarding on (`net.ipv6.conf.all.forwarding`), remembering the
    /// previous value for undo (and, on the real host, in a journal under `/run/aura`
    /// that [`cleanup_leftovers`](Self::cleanup_leftovers) restores after a crash).
    /// Nothing is recorded if it was already on.
    ///
    /// Beware: with IPv6 forwarding on, an interface with `accept_ra = 1` (the usual
    /// default) stops accepting router advertisements, so an address or default route
    /// learnt from them (SLAAC, common on cloud VMs) is lost when it expires; set
    /// `accept_ra = 2` on it. A warning names such interfaces when this switches
    /// forwarding on.
    ///
    /// # Errors
    /// [`NetcfgError::NoIpv6`] when the host has no IPv6 (the sysctl does not exist);
    /// the sysctl cannot be read or written.
    pub async fn enable_forwarding6(&mut self) -> Result<(), NetcfgError> {
        let key = forwarding::IPV6_FORWARD;
        let previous = match self.backend.read_sysctl(key) {
            Ok(v) => v,
            Err(NetcfgError::Sysctl { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(NetcfgError::NoIpv6 { key });
            }
            Err(e) => return Err(e),
        };
        if previous == "1" {
            tracing::debug!("{key} is already 1");
            return Ok(());
        }
        let ra = self.backend.accept_ra_interfaces();
        if !ra.is_empty() {
            tracing::warn!(
                interfaces = %ra.join(", "),
                "IPv6 forwarding on: these interfaces (accept_ra = 1) stop accepting router \
                 advertisements, and lose what they learnt from them when it expires; \
                 set net.ipv6.conf.<interface>.accept_ra = 2 to keep it"
            );
        }
        self.perform(Change::Sysctl {
            key,
            previous,
            value: "1".into(),
        })
        .await
        .map(drop)
    }

    /// Server: creates table `inet aura` (masquerade of the pool toward the egress
    /// interface, of the IPv6 pool too with NAT66, forward accepts) in one atomic batch,
    /// then enables forwarding: IPv4, and IPv6 when the plan has a `pool6`
    /// ([`enable_forwarding6`](Self::enable_forwarding6)). All or nothing.
    pub async fn apply_nat(&mut self, plan: &NatPlan) -> Result<(), NetcfgError> {
        if self.nat_applied {
            return Err(NetcfgError::AlreadyApplied("NAT"));
        }
        let egress = match &plan.egress {
            Some(e) => e.clone(),
            None => {
                let d = self.backend.default_route().await?;
                tracing::info!(egress = %d.dev, "egress interface from the default route");
                d.dev
            }
        };
        let egress6 = match (&plan.egress6, plan.pool6) {
            (Some(e), _) => e.clone(),
            (None, None) => egress.clone(),
            (None, Some(_)) => match self.backend.default_route6().await? {
                Some(d) => {
                    tracing::info!(egress6 = %d.dev, "IPv6 egress interface from the IPv6 default route");
                    d.dev
                }
                None => {
                    tracing::info!(
                        egress6 = %egress,
                        "no IPv6 default route: IPv6 egress is the IPv4 egress interface"
                    );
                    egress.clone()
                }
            },
        };
        let resolved = nat::ResolvedNat::new(plan, egress, egress6)?;
        let payload = nat::apply_batch(&resolved)?;
        let undo = nat::delete_batch()?;
        if self.dry_run
            && let Err(e) = self.backend.nft_present()
        {
            tracing::warn!(error = %e, "dry run: applying would fail");
        }
        let mark = self.changes.len();
        let mut result = self
            .perform(Change::NftTable {
                table: nat::TABLE,
                payload,
                undo,
            })
            .await
            .map(drop);
        if result.is_ok() {
            result = self.enable_forwarding().await;
        }
        if result.is_ok() && resolved.pool6.is_some() {
            result = self.enable_forwarding6().await;
        }
        self.all_or_nothing(mark, result).await?;
        self.nat_applied = true;
        Ok(())
    }

    /// The path the operator gave DIRECT routes: `None` when it names neither a gateway
    /// nor an interface.
    async fn direct_path(
        &self,
        via: &routes::DirectVia,
    ) -> Result<Option<routes::Lookup>, NetcfgError> {
        let dev = match (&via.dev, via.gateway) {
            (Some(dev), _) => dev.clone(),
            (None, Some(gw)) => match self.backend.lookup(gw).await? {
                Some(now) => now.dev,
                None => {
                    return Err(NetcfgError::InvalidPlan(format!(
                        "tunnel.os_routes.gateway {gw} is not reachable from this host"
                    )));
                }
            },
            (None, None) => return Ok(None),
        };
        check_ifname(&dev)?;
        let ifindex = match self.backend.link_index(&dev).await {
            Ok(i) => i,
            Err(NetcfgError::LinkNotFound { .. }) if self.dry_run => 0,
            Err(e) => return Err(e),
        };
        Ok(Some(routes::Lookup {
            gateway: via.gateway,
            dev,
            ifindex,
        }))
    }

    /// Client: host routes for `plan.exclude` along their current path, then the two
    /// half-default routes (and IPv6 halves if asked) into the TUN. All or nothing. Split
    /// rules come after, one route each ([`add_split_route`](Self::add_split_route)).
    pub async fn apply_routes(&mut self, plan: &RoutePlan) -> Result<(), NetcfgError> {
        if self.routes_applied {
            return Err(NetcfgError::AlreadyApplied("routes"));
        }
        check_ifname(&plan.tun)?;
        let tun_index = match self.backend.link_index(&plan.tun).await {
            Ok(i) => i,
            Err(NetcfgError::LinkNotFound { name }) if self.dry_run => {
                tracing::warn!(%name, "dry run: the TUN device does not exist (yet)");
                0
            }
            Err(e) => return Err(e),
        };
        // Every lookup happens before any change, so none sees Aura's own routes.
        let mut specs = Vec::new();
        let mut seen = HashSet::new();
        for &addr in &plan.exclude {
            if !seen.insert(addr) {
                continue;
            }
            if addr.is_ipv6() && !plan.ipv6 {
                tracing::debug!(%addr, "IPv6 is not captured: no exclusion needed");
                continue;
            }
            match self.backend.lookup(addr).await? {
                None => {
                    tracing::warn!(%addr, "excluded address is local or unreachable: no route added")
                }
                Some(now)
                    if now.dev == plan.tun || (tun_index != 0 && now.ifindex == tun_index) =>
                {
                    return Err(NetcfgError::ExcludeViaTun {
                        addr,
                        tun: plan.tun.clone(),
                    });
                }
                Some(now) => specs.push((routes::exclude_route(addr, &now), false)),
            }
        }
        specs.extend(
            routes::capture_routes(&plan.tun, tun_index, plan.ipv6)
                .into_iter()
                .map(|r| (r, true)),
        );
        let mark = self.changes.len();
        let mut result = Ok(());
        for (spec, must_be_new) in specs {
            let shown = spec.to_string();
            match self.perform(Change::Route(spec)).await {
                Ok(true) => {}
                Ok(false) if must_be_new => {
                    result = Err(NetcfgError::RouteConflict { route: shown });
                    break;
                }
                Ok(false) => tracing::info!(route = %shown, "route already present: kept as it is"),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.all_or_nothing(mark, result).await?;
        self.routes_applied = true;
        Ok(())
    }

    /// A second journal on the same host (same backend, same dry-run setting), with no
    /// role and no lock: for changes with a life of their own (live split routes).
    pub fn sibling(&self) -> Self {
        let mut sibling = Self::with_backend(self.backend.clone())
            .with_dry_run(self.dry_run)
            .with_resolv_conf(self.resolv_conf.clone());
        sibling.system_bus.clone_from(&self.system_bus);
        sibling
    }

    /// Client, while the tunnel is up: the system resolves with `servers`.
    ///
    /// Where systemd-resolved manages DNS (the resolver file a link into
    /// `/run/systemd/resolve/`, resolved on the bus), over its D-Bus API: link `tun` gets
    /// the servers, the routing domain `~.` and the default route; undo reverts the link
    /// (and resolved forgets it when the TUN goes). Otherwise the resolver file is
    /// rewritten with them (its `search`, `domain` and `options` lines kept), after
    /// journalling what it was under `/run/aura`; undo puts it back exactly (content, link
    /// or absence) unless someone rewrote it meanwhile. [`dns_is_per_link`] tells which.
    ///
    /// [`dns_is_per_link`]: Self::dns_is_per_link
    ///
    /// # Errors
    /// [`NetcfgError::InvalidPlan`] for an empty list; already applied; resolved refused,
    /// or the file cannot be read, journalled or written (then it is unchanged).
    pub async fn apply_dns(&mut self, tun: &str, servers: &[IpAddr]) -> Result<(), NetcfgError> {
        if self.dns_applied {
            return Err(NetcfgError::AlreadyApplied("the DNS configuration"));
        }
        if servers.is_empty() {
            return Err(NetcfgError::InvalidPlan(
                "no resolver to point the system at".into(),
            ));
        }
        let path = self.resolv_conf.clone();
        let change = if self
            .backend
            .resolved_manages(&path, self.system_bus.as_deref())
            .await
        {
            check_ifname(tun)?;
            Change::ResolvedLink {
                ifindex: self.backend.link_index(tun).await?,
                servers: servers.to_vec(),
                bus: self.system_bus.clone(),
            }
        } else {
            let previous = self.backend.dns_previous(&path)?;
            let content = crate::dns::render(&self.backend.dns_text(&path), servers);
            Change::Dns {
                path,
                previous,
                content,
            }
        };
        self.perform(change).await?;
        self.dns_applied = true;
        Ok(())
    }

    /// Whether the DNS configuration applied is bound to the TUN device (systemd-resolved):
    /// a new device needs it again.
    pub fn dns_is_per_link(&self) -> bool {
        self.changes
            .iter()
            .any(|c| matches!(c, Change::ResolvedLink { .. }))
    }

    /// Client, while the tunnel is up: one split route. DIRECT: `dst/prefix` along
    /// `via`, or the path the kernel uses for it outside the tunnel (its current route,
    /// or the main table's default route when that current route is the tunnel's).
    /// VPN: into `tun`. Returns the route as `ip route` shows it. A DIRECT network the host
    /// already routes exactly is left to that route.
    ///
    /// # Errors
    /// A VPN route for exactly `dst/prefix` already exists ([`NetcfgError::RouteConflict`]);
    /// no path outside the tunnel; the host refused.
    pub async fn add_split_route(
        &mut self,
        dst: IpAddr,
        prefix: u8,
        direct: bool,
        tun: &str,
        via: Option<&routes::DirectVia>,
    ) -> Result<String, NetcfgError> {
        check_ifname(tun)?;
        let tun_index = match self.backend.link_index(tun).await {
            Ok(i) => i,
            Err(NetcfgError::LinkNotFound { .. }) if self.dry_run => 0,
            Err(e) => return Err(e),
        };
        let spec = if direct {
            let chosen = match via {
                Some(v) => self
                    .direct_path(v)
                    .await?
                    .filter(|p| p.gateway.is_none_or(|g| g.is_ipv4() == dst.is_ipv4())),
                None => None,
            };
            let path = match chosen {
                Some(p) => p,
                None => match self.backend.lookup(dst).await? {
                    Some(now) if now.dev != tun && (tun_index == 0 || now.ifindex != tun_index) => {
                        now
                    }
                    _ if dst.is_ipv4() => {
                        let d = self.backend.default_route().await?;
                        let ifindex = self.backend.link_index(&d.dev).await?;
                        routes::Lookup {
                            gateway: d.gateway,
                            dev: d.dev,
                            ifindex,
                        }
                    }
                    _ => {
                        return Err(NetcfgError::InvalidPlan(format!(
                            "no route to {dst}/{prefix} outside the tunnel"
                        )));
                    }
                },
            };
            routes::direct_route(dst, prefix, &path)
        } else {
            routes::vpn_route(dst, prefix, tun, tun_index)
        };
        let shown = spec.to_string();
        if !self.perform(Change::Route(spec)).await? {
            // A DIRECT network the host already routes exactly (a LAN's connected route):
            // that route already keeps it outside the tunnel; kept, not recorded.
            if direct {
                return Ok(format!("{shown} (already present)"));
            }
            return Err(NetcfgError::RouteConflict { route: shown });
        }
        Ok(shown)
    }

    /// Client: removes the split route for exactly `dst/prefix` that this journal added;
    /// whether there was one.
    ///
    /// # Errors
    /// The host refused.
    pub async fn remove_split_route(
        &mut self,
        dst: IpAddr,
        prefix: u8,
    ) -> Result<bool, NetcfgError> {
        let Some(at) = self
            .changes
            .iter()
            .rposition(|c| matches!(c, Change::Route(r) if r.dst == dst && r.prefix == prefix))
        else {
            return Ok(false);
        };
        let change = self.changes.remove(at);
        let cmd = change.undo_cmd();
        if self.dry_run {
            tracing::info!(command = %cmd, "dry run: would run");
        } else {
            self.backend.revert(&change).await?;
            tracing::info!(command = %cmd, "host change undone");
        }
        self.planned.push(cmd);
        Ok(true)
    }

    /// Client: the kill switch, table `inet aura_client` ([`KillSwitchPlan`]): nothing
    /// leaves or enters but the tunnel, the carriers to the server and bridges, DIRECT
    /// networks, DHCP and IPv6 on the link. One atomic batch; [`undo`](Self::undo)
    /// deletes the table.
    pub async fn apply_kill_switch(&mut self, plan: &KillSwitchPlan) -> Result<(), NetcfgError> {
        if self.kill_switch_applied {
            return Err(NetcfgError::AlreadyApplied("the kill switch"));
        }
        let payload = killswitch::apply_batch(plan)?;
        let undo = killswitch::TABLE.delete_batch()?;
        self.perform(Change::NftTable {
            table: killswitch::TABLE,
            payload,
            undo,
        })
        .await?;
        self.kill_switch_applied = true;
        Ok(())
    }

    /// Client, with the kill switch on (in this journal or a sibling's): its DIRECT sets
    /// hold exactly `direct` from now on, changed in one transaction (a live DIRECT rule,
    /// addresses learnt for a DIRECT domain rule). Not journalled: the sets go with the
    /// table.
    ///
    /// # Errors
    /// The table does not exist, or nft refused.
    pub async fn set_kill_switch_direct(
        &mut self,
        direct: &[(IpAddr, u8)],
    ) -> Result<(), NetcfgError> {
        let cmd = nft::show_batch(&killswitch::set_batch(direct)?);
        if self.dry_run {
            tracing::info!(command = %cmd, "dry run: would run");
        } else {
            self.backend.kill_switch_direct(direct).await?;
            tracing::debug!(command = %cmd, "kill switch's DIRECT sets updated");
        }
        self.planned.push(cmd);
        Ok(())
    }

    /// Client: the caller applies a kill switch right after
    /// [`cleanup_leftovers`](Self::cleanup_leftovers), so a kill switch table an earlier
    /// run left (lockdown, or a crash) is not removed there: [`apply_kill_switch`] replaces
    /// it in one transaction, and nothing passes in between.
    ///
    /// [`apply_kill_switch`]: Self::apply_kill_switch
    pub fn keep_leftover_kill_switch(&mut self) {
        self.keep_leftover_kill_switch = true;
    }

    /// Client, lockdown: the kill switch leaves this journal, so [`undo`](Self::undo) (and
    /// drop) keep it in place after the client stops. The next client's start replaces it
    /// ([`keep_leftover_kill_switch`](Self::keep_leftover_kill_switch)); `aura client
    /// unlock` ([`remove_kill_switch`](Self::remove_kill_switch)) lifts it. Whether one was
    /// applied.
    pub fn release_kill_switch(&mut self) -> bool {
        let before = self.changes.len();
        self.changes.retain(
            |c| !matches!(c, Change::NftTable { table, .. } if *table == killswitch::TABLE),
        );
        self.kill_switch_applied = false;
        self.changes.len() != before
    }

    /// Lifts a kill switch left in place (lockdown, or a crash): deletes table
    /// `inet aura_client` if it exists. Whether it existed. Take the client's instance lock
    /// first ([`claim`](Self::claim)), so a running client's kill switch is not lifted.
    ///
    /// # Errors
    /// nft is missing or refused.
    pub async fn remove_kill_switch(&mut self) -> Result<bool, NetcfgError> {
        if !self.backend.nft_has_table(&killswitch::TABLE).await? {
            return Ok(false);
        }
        let cmd = nft::show_batch(&killswitch::TABLE.delete_batch()?);
        if self.dry_run {
            tracing::info!(command = %cmd, "dry run: would run");
        } else {
            self.backend.nft_delete_table(&killswitch::TABLE).await?;
        }
        self.planned.push(cmd);
        Ok(true)
    }

    /// Client: reverts the routes only (the newest changes, made after everything else),
    /// keeping the kill switch in place while the tunnel is rebuilt.
    pub async fn undo_routes(&mut self) -> Result<(), NetcfgError> {
        let mark = self
            .changes
            .iter()
            .rposition(|c| !matches!(c, Change::Route(_)))
            .map_or(0, |i| i + 1);
        let failed = self.revert_to(mark).await;
        self.routes_applied = false;
        match failed.into_iter().next() {
            None => Ok(()),
            Some((cmd, e)) => Err(NetcfgError::UndoIncomplete {
                failed: vec![format!("{cmd}: {e}")],
                first: Box::new(e),
            }),
        }
    }

    /// Reverts every recorded change, newest first. Continues past failures and reports
    /// them all in [`NetcfgError::UndoIncomplete`]; failed changes are not retried.
    pub async fn undo(&mut self) -> Result<(), NetcfgError> {
        let mut failed = self.revert_to(0).await;
        self.nat_applied = false;
        self.routes_applied = false;
        self.kill_switch_applied = false;
        self.dns_applied = false;
        if failed.is_empty() {
            return Ok(());
        }
        let list = failed
            .iter()
            .map(|(cmd, e)| format!("{cmd}: {e}"))
            .collect();
        let (_, first) = failed.swap_remove(0);
        Err(NetcfgError::UndoIncomplete {
            failed: list,
            first: Box::new(first),
        })
    }

    /// Removes what a crashed run left: table `inet aura`, routes tagged
    /// [`RTPROT_AURA`](crate::RTPROT_AURA), and `net.ipv4.ip_forward` or
    /// `net.ipv6.conf.all.forwarding` switched on (the earlier value is journalled under
    /// `/run/aura` while a run has it changed), each
    /// with a log line. Returns whether anything was found. A missing `nft` only skips
    /// the table check. After [`claim`](Self::claim) it looks only for what the claimed
    /// role changes (a server: the table and forwarding; a client: the routes), so a
    /// server and a client can share a namespace. Call it at start, before any `apply_*`.
    pub async fn cleanup_leftovers(&mut self) -> Result<bool, NetcfgError> {
        if self.has_changes() {
            return Err(NetcfgError::InvalidPlan(
                "cleanup_leftovers would remove this HostConfig's own changes: call it before applying".into(),
            ));
        }
        let mut found = false;
        let server = self.role != Some(crate::Role::Client);
        let client = self.role != Some(crate::Role::Server);
        let mut tables = Vec::new();
        if server {
            tables.push(nat::TABLE);
        }
        if client && !self.keep_leftover_kill_switch {
            tables.push(killswitch::TABLE);
        }
        for table in tables {
            match self.backend.nft_has_table(&table).await {
                Ok(false) => {}
                Ok(true) => {
                    found = true;
                    let cmd = nft::show_batch(&table.delete_batch()?);
                    tracing::warn!(
                        "nftables table inet {} left by an earlier run: removing it",
                        table.name()
                    );
                    if !self.dry_run {
                        self.backend.nft_delete_table(&table).await?;
                    }
                    self.planned.push(cmd);
                }
                Err(NetcfgError::NftNotFound { .. }) => {
                    tracing::debug!("nft is not installed: no nftables leftovers to look for");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        for key in forwarding::KEYS {
            if !server || self.dry_run {
                break;
            }
            let Some(previous) = self.backend.take_journal(key) else {
                continue;
            };
            if self.backend.read_sysctl(key)? != previous {
                found = true;
                tracing::warn!(%key, %previous, "left changed by an earlier run: restoring it");
                self.backend.write_sysctl(key, &previous)?;
            }
            self.planned.push(format!("sysctl -w {key}={previous}"));
        }
        if client && !self.dry_run && self.backend.dns_leftover()? {
            found = true;
            tracing::warn!("resolver file left rewritten by an earlier run: restored it");
            self.planned.push("restore the resolver file".into());
        }
        let leftover_routes = if client {
            self.backend.own_routes().await?
        } else {
            Vec::new()
        };
        for route in leftover_routes {
            found = true;
            tracing::warn!(%route, "route left by an earlier run: removing it");
            if !self.dry_run {
                self.backend.route_del(&route).await?;
            }
            self.planned.push(format!("ip route del {route}"));
        }
        Ok(found)
    }
}

impl Drop for HostConfig {
    fn drop(&mut self) {
        if self.changes.is_empty() || self.dry_run {
            return;
        }
        tracing::info!(changes = self.changes.len(), "undoing host changes on drop");
        let this = &mut *self;
        let outcome = std::thread::scope(|s| {
            s.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|source| NetcfgError::Io {
                        action: "starting a runtime to undo host changes".into(),
                        source,
                    })?;
                rt.block_on(this.undo())
            })
            .join()
        });
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "undo on drop incomplete"),
            Err(_) => tracing::warn!("undo on drop panicked"),
        }
    }
}
