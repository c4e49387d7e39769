//! The client's split-tunnel rules as a living plan (`aura route add|list|remove`): the
//! rules of client.toml and those added at run time, and the routes that carry them while
//! the tunnel is up, kept in a journal of their own beside the tunnel's.
//!
//! The tunnel's routes (exclusions, the two halves into the TUN) come first; then
//! [`RouteBook::install`] adds one route per rule. A rule added or removed while the
//! tunnel is up changes its route at once; one added while it is down waits for the next
//! tunnel. A tunnel rebuilt (reconnect to another address) gets every rule again.

use std::net::IpAddr;
use std::sync::Arc;

use aura_config::{IpCidr, SplitKind};
use aura_netcfg::{DirectVia, HostConfig};

use crate::admin::RouteRule;

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    kind: SplitKind,
    cidr: IpCidr,
    /// From client.toml (else added at run time).
    from_config: bool,
    /// The route carrying it, as `ip route` shows it, while installed.
    route: Option<String>,
}

/// The rules and their routes.
#[derive(Debug)]
pub struct RouteBook {
    rules: Vec<Rule>,
    via: Option<DirectVia>,
    netcfg: HostConfig,
    /// The TUN while the tunnel is up.
    tun: Option<String>,
    /// The server and bridges: never sent into the tunnel by a rule.
    peers: Vec<IpAddr>,
    /// Routes off (`[tunnel.os_routes] enabled = false`): rules are kept, none installed.
    enabled: bool,
    /// The kill switch is on: it lets through the DIRECT networks of client.toml only.
    kill_switch: bool,
}

/// Shared between the client's loop and its admin socket.
pub type SharedRouteBook = Arc<tokio::sync::Mutex<RouteBook>>;

fn cidr_of(addr: IpAddr, prefix: u8) -> Option<IpCidr> {
    format!("{addr}/{prefix}").parse().ok()
}

impl RouteBook {
    /// The rules of `routing`, to be installed through `netcfg` (a sibling journal of the
    /// client's host).
    pub fn new(
        routing: &crate::options::Routing,
        netcfg: HostConfig,
        peers: Vec<IpAddr>,
        kill_switch: bool,
    ) -> Self {
        let mut rules = Vec::new();
        for (kind, list) in [
            (SplitKind::Direct, &routing.direct),
            (SplitKind::Vpn, &routing.vpn),
        ] {
            for &(a, p) in list {
                if let Some(cidr) = cidr_of(a, p) {
                    rules.push(Rule {
                        kind,
                        cidr,
                        from_config: true,
                        route: None,
                    });
                }
            }
        }
        Self {
            rules,
            via: routing.direct_via.clone(),
            netcfg,
            tun: None,
            peers,
            enabled: routing.enabled,
            kill_switch,
        }
    }

    /// What no rule may be, whether from client.toml or added live: a VPN rule for exactly
    /// the server's (or a bridge's) address, which would send the carriers into their own
    /// tunnel. A wider VPN network containing it is fine: the address's /32 stays outside.
    fn check(&self, kind: SplitKind, cidr: IpCidr) -> Result<(), String> {
        let host_len = if cidr.addr().is_ipv4() { 32 } else { 128 };
        if kind == SplitKind::Vpn
            && cidr.prefix_len() == host_len
            && self.peers.contains(&cidr.addr())
        {
            return Err(format!(
                "the VPN rule {cidr} is the address of the server (or a bridge), which must \
                 stay outside the tunnel"
            ));
        }
        Ok(())
    }

    async fn install_one(&mut self, i: usize) -> Result<(), String> {
        let Some(tun) = self.tun.clone() else {
            return Ok(());
        };
        let Some(rule) = self.rules.get(i).cloned() else {
            return Ok(());
        };
        self.check(rule.kind, rule.cidr)?;
        let shown = self
            .netcfg
            .add_split_route(
                rule.cidr.addr(),
                rule.cidr.prefix_len(),
                rule.kind == SplitKind::Direct,
                &tun,
                self.via.as_ref(),
            )
            .await
            .map_err(|e| format!("cannot route {}: {e}", rule.cidr))?;
        if let Some(r) = self.rules.get_mut(i) {
            r.route = Some(shown);
        }
        Ok(())
    }

    /// The tunnel is up on `tun`: every rule gets its route. All or nothing.
    ///
    /// # Errors
    /// A route the host refused (the ones added before it are removed again).
    pub async fn install(&mut self, tun: &str) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        self.tun = Some(tun.to_owned());
        for i in 0..self.rules.len() {
            if let Err(e) = self.install_one(i).await {
                self.uninstall().await;
                return Err(e);
            }
        }
        Ok(())
    }

    /// The tunnel goes: every rule's route is removed.
    pub async fn uninstall(&mut self) {
        if let Err(e) = self.netcfg.undo().await {
            tracing::warn!(error = %e, "could not remove every split route");
        }
        self.tun = None;
        for r in &mut self.rules {
            r.route = None;
        }
    }

    /// Adds a rule (`kind` "direct" or "vpn") and, with the tunnel up, its route.
    ///
    /// # Errors
    /// A bad kind or network, a rule for the same network, a VPN rule for the server's
    /// own address, or a route the host refused (the rule is then not kept).
    pub async fn add(&mut self, kind: &str, cidr: &str) -> Result<(), String> {
        let kind = match kind {
            "direct" => SplitKind::Direct,
            "vpn" => SplitKind::Vpn,
            other => return Err(format!("unknown rule kind {other:?} (direct or vpn)")),
        };
        let cidr: IpCidr = cidr.parse()?;
        if let Some(r) = self.rules.iter().find(|r| r.cidr == cidr) {
            return Err(format!(
                "{cidr} already has a {} rule (remove it first)",
                r.kind.name()
            ));
        }
        self.check(kind, cidr)?;
        if kind == SplitKind::Direct && self.kill_switch {
            return Err(format!(
                "the kill switch is on and lets through only the DIRECT networks of \
                 client.toml: {cidr} would be blocked (add it to client.toml and restart \
                 the client)"
            ));
        }
        if kind == SplitKind::Direct && cidr.prefix_len() < 2 {
            return Err(format!(
                "{cidr} is too broad: DIRECT rules need a prefix of at least /2"
            ));
        }
        self.rules.push(Rule {
            kind,
            cidr,
            from_config: false,
            route: None,
        });
        if self.enabled
            && let Err(e) = self.install_one(self.rules.len() - 1).await
        {
            self.rules.pop();
            return Err(e);
        }
        Ok(())
    }

    /// Removes the rule for `cidr` and its route.
    ///
    /// # Errors
    /// No rule for that network, or the host refused to remove its route.
    pub async fn remove(&mut self, cidr: &str) -> Result<(), String> {
        let cidr: IpCidr = cidr.parse()?;
        let Some(at) = self.rules.iter().position(|r| r.cidr == cidr) else {
            return Err(format!("no rule for {cidr}"));
        };
        if self.rules[at].route.is_some() {
            self.netcfg
                .remove_split_route(cidr.addr(), cidr.prefix_len())
                .await
                .map_err(|e| format!("cannot remove the route of {cidr}: {e}"))?;
        }
        self.rules.remove(at);
        Ok(())
    }

    /// Every rule, what it covers and where it goes.
    pub fn list(&self) -> Vec<RouteRule> {
        self.rules
            .iter()
            .map(|r| RouteRule {
                kind: r.kind.name().into(),
                rule: r.cidr.to_string(),
                origin: if r.from_config { "config" } else { "live" }.into(),
                covers: vec![r.cidr.to_string()],
                via: match (&r.route, self.enabled, &self.tun) {
                    (Some(route), _, _) => route.clone(),
                    (None, false, _) => "not installed (tunnel.os_routes.enabled = false)".into(),
                    (None, true, None) => "not installed (the tunnel is down)".into(),
                    (None, true, Some(_)) => "not installed".into(),
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aura_netcfg::MemoryHost;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// eth0 with a default route, a TUN aura0 carrying the tunnel's halves, and the
    /// server's /32 kept outside.
    fn host() -> MemoryHost {
        let h = MemoryHost::new();
        h.add_link("eth0");
        h.add_link("aura0");
        h.add_route(ip("0.0.0.0"), 0, Some(ip("192.0.2.254")), "eth0")
            .unwrap();
        h.add_route(ip("203.0.113.7"), 32, Some(ip("192.0.2.254")), "eth0")
            .unwrap();
        h.add_route(ip("0.0.0.0"), 1, None, "aura0").unwrap();
        h.add_route(ip("128.0.0.0"), 1, None, "aura0").unwrap();
        h
    }

    fn routing(vpn: Vec<(IpAddr, u8)>) -> crate::options::Routing {
        crate::options::Routing {
            enabled: true,
            dry_run: false,
            direct: Vec::new(),
            vpn,
            direct_via: None,
        }
    }

    /// A VPN rule for exactly the server's address would send the carriers into their own
    /// tunnel: refused, from client.toml as live, before anything changes; a VPN network
    /// that merely contains the server is fine (its /32 stays outside).
    #[tokio::test]
    async fn a_vpn_rule_on_the_server_address_is_refused() {
        let h = host();
        let before = h.snapshot();
        let netcfg = HostConfig::in_memory(h.clone());
        let mut book = RouteBook::new(
            &routing(vec![(ip("203.0.113.7"), 32)]),
            netcfg,
            vec![ip("203.0.113.7")],
            false,
        );
        let err = book.install("aura0").await.unwrap_err();
        assert!(
            err.contains("203.0.113.7/32 is the address of the server"),
            "{err}"
        );
        assert_eq!(h.snapshot(), before);

        let mut book = RouteBook::new(
            &routing(Vec::new()),
            HostConfig::in_memory(h.clone()),
            vec![ip("203.0.113.7")],
            false,
        );
        book.install("aura0").await.unwrap();
        let err = book.add("vpn", "203.0.113.7").await.unwrap_err();
        assert!(err.contains("is the address of the server"), "{err}");
        book.add("vpn", "203.0.113.0/24").await.unwrap();
        assert_eq!(h.route_get(ip("203.0.113.7")).as_deref(), Some("eth0"));
        assert_eq!(h.route_get(ip("203.0.113.8")).as_deref(), Some("aura0"));
        book.uninstall().await;
        assert_eq!(h.snapshot(), before);
    }
}
