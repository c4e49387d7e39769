//! The client's split-tunnel rules as a living plan (`aura route add|list|remove`): the
//! rules of client.toml and those added at run time, and the routes that carry them while
//! the tunnel is up, kept in a journal of their own beside the tunnel's.
//!
//! The tunnel's routes (exclusions, the two halves into the TUN) come first; then
//! [`RouteBook::install`] adds one route per network rule. A rule added or removed while
//! the tunnel is up changes its route at once; one added while it is down waits for the
//! next tunnel. A tunnel rebuilt (reconnect to another address) gets every rule again.
//!
//! Domain rules follow DNS: the client's stub shows every answer to [`RouteBook::learn`],
//! which routes each address answered for a matching name (a /32 or /128, DIRECT or into
//! the TUN) before the answer reaches the program that asked. A learnt address is held
//! for its record's TTL, but at least [`MIN_HOLD`] (a connection opened on an address
//! should not switch paths a minute later) and at most [`MAX_HOLD`]; every new answer
//! renews it, and [`RouteBook::expire`] removes what has run out.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use aura_config::{DomainPattern, IpCidr, SplitKind};
use aura_netcfg::{DirectVia, HostConfig};
use tokio::time::Instant;

use crate::admin::RouteRule;

/// Shortest time a learnt address keeps its route.
pub const MIN_HOLD: Duration = Duration::from_secs(600);
/// Longest time a learnt address keeps its route without a new answer.
pub const MAX_HOLD: Duration = Duration::from_secs(86_400);
/// Most addresses one domain rule holds at once (more are not routed).
pub const MAX_LEARNT: usize = 4096;

/// What a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Net(IpCidr),
    Domain(DomainPattern),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Net(c) => c.fmt(f),
            Self::Domain(d) => d.fmt(f),
        }
    }
}

/// An address a domain rule learnt from an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Learnt {
    until: Instant,
    /// Its route, as `ip route` shows it, while installed.
    route: Option<String>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    kind: SplitKind,
    target: Target,
    /// From client.toml (else added at run time).
    from_config: bool,
    /// The route carrying a network rule, as `ip route` shows it, while installed.
    route: Option<String>,
    /// A domain rule's addresses.
    learnt: BTreeMap<IpAddr, Learnt>,
}

impl Rule {
    fn new(kind: SplitKind, target: Target, from_config: bool) -> Self {
        Self {
            kind,
            target,
            from_config,
            route: None,
            learnt: BTreeMap::new(),
        }
    }
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
    /// The kill switch is on: its DIRECT sets follow the DIRECT rules.
    kill_switch: bool,
}

/// Shared between the client's loop and its admin socket.
pub type SharedRouteBook = Arc<tokio::sync::Mutex<RouteBook>>;

fn cidr_of(addr: IpAddr, prefix: u8) -> Option<IpCidr> {
    format!("{addr}/{prefix}").parse().ok()
}

fn host_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

/// A rule as `aura route add|remove` names it: a network, else a domain. Text that
/// looks like a network (digits and dots, or a `/` or `:`) gets the network's error.
fn parse_target(text: &str) -> Result<Target, String> {
    let as_net = match text.parse::<IpCidr>() {
        Ok(c) => return Ok(Target::Net(c)),
        Err(e) => e,
    };
    let numeric = text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if numeric || text.contains(['/', ':']) {
        return Err(as_net);
    }
    text.parse::<DomainPattern>()
        .map(Target::Domain)
        .map_err(|e| format!("{e}; a rule is a network or a domain"))
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
                    rules.push(Rule::new(kind, Target::Net(cidr), true));
                }
            }
        }
        for (kind, list) in [
            (SplitKind::Direct, &routing.direct_domains),
            (SplitKind::Vpn, &routing.vpn_domains),
        ] {
            for d in list {
                rules.push(Rule::new(kind, Target::Domain(d.clone()), true));
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
        if kind == SplitKind::Vpn
            && cidr.prefix_len() == host_len(cidr.addr())
            && self.peers.contains(&cidr.addr())
        {
            return Err(format!(
                "the VPN rule {cidr} is the address of the server (or a bridge), which must \
                 stay outside the tunnel"
            ));
        }
        Ok(())
    }

    /// Routes one address or network of a rule of `kind`; the route as `ip route` shows it.
    async fn route(
        &mut self,
        kind: SplitKind,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<Option<String>, String> {
        let Some(tun) = self.tun.clone() else {
            return Ok(None);
        };
        self.netcfg
            .add_split_route(
                addr,
                prefix,
                kind == SplitKind::Direct,
                &tun,
                self.via.as_ref(),
            )
            .await
            .map(Some)
            .map_err(|e| format!("cannot route {addr}/{prefix}: {e}"))
    }

    async fn install_one(&mut self, i: usize) -> Result<(), String> {
        let Some(rule) = self.rules.get(i).cloned() else {
            return Ok(());
        };
        match rule.target {
            Target::Net(cidr) => {
                self.check(rule.kind, cidr)?;
                let shown = self
                    .route(rule.kind, cidr.addr(), cidr.prefix_len())
                    .await?;
                if let Some(r) = self.rules.get_mut(i) {
                    r.route = shown;
                }
            }
            Target::Domain(_) => {
                for addr in rule.learnt.keys() {
                    // A learnt address that cannot be routed again (another rule took
                    // it) stays unrouted; it does not fail the tunnel.
                    let shown = self
                        .route(rule.kind, *addr, host_len(*addr))
                        .await
                        .ok()
                        .flatten();
                    if let Some(l) = self.rules.get_mut(i).and_then(|r| r.learnt.get_mut(addr)) {
                        l.route = shown;
                    }
                }
            }
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

    /// The tunnel goes: every rule's route is removed (learnt addresses are kept).
    pub async fn uninstall(&mut self) {
        if let Err(e) = self.netcfg.undo().await {
            tracing::warn!(error = %e, "could not remove every split route");
        }
        self.tun = None;
        for r in &mut self.rules {
            r.route = None;
            for l in r.learnt.values_mut() {
                l.route = None;
            }
        }
    }

    /// Adds a rule (`kind` "direct" or "vpn"; `rule` a network or a domain) and, with the
    /// tunnel up, its route.
    ///
    /// # Errors
    /// A bad kind, network or domain, a rule for the same network or domain, a VPN rule
    /// for the server's own address, a DIRECT rule the kill switch would block, or a
    /// route the host refused (the rule is then not kept).
    pub async fn add(&mut self, kind: &str, rule: &str) -> Result<(), String> {
        let kind = match kind {
            "direct" => SplitKind::Direct,
            "vpn" => SplitKind::Vpn,
            other => return Err(format!("unknown rule kind {other:?} (direct or vpn)")),
        };
        let target = parse_target(rule)?;
        if let Some(r) = self.rules.iter().find(|r| r.target == target) {
            return Err(format!(
                "{target} already has a {} rule (remove it first)",
                r.kind.name()
            ));
        }
        if let Target::Net(cidr) = target {
            self.check(kind, cidr)?;
            if kind == SplitKind::Direct && cidr.prefix_len() < 2 {
                return Err(format!(
                    "{cidr} is too broad: DIRECT rules need a prefix of at least /2"
                ));
            }
        }
        self.rules.push(Rule::new(kind, target, false));
        // The kill switch lets it through before its route exists.
        let mut result = self.sync_kill_switch().await;
        if result.is_ok() && self.enabled {
            result = self.install_one(self.rules.len() - 1).await;
        }
        if let Err(e) = result {
            self.rules.pop();
            if let Err(again) = self.sync_kill_switch().await {
                tracing::warn!(error = %again, "kill switch not restored");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Removes the rule for `rule` (a network or a domain) and its routes.
    ///
    /// # Errors
    /// No such rule, or the host refused to remove a route.
    pub async fn remove(&mut self, rule: &str) -> Result<(), String> {
        let target = parse_target(rule)?;
        let Some(at) = self.rules.iter().position(|r| r.target == target) else {
            return Err(format!("no rule for {target}"));
        };
        let routed: Vec<(IpAddr, u8)> = match &self.rules[at].target {
            Target::Net(c) if self.rules[at].route.is_some() => vec![(c.addr(), c.prefix_len())],
            Target::Net(_) => Vec::new(),
            Target::Domain(_) => self.rules[at]
                .learnt
                .iter()
                .filter(|(_, l)| l.route.is_some())
                .map(|(a, _)| (*a, host_len(*a)))
                .collect(),
        };
        for (addr, prefix) in routed {
            self.netcfg
                .remove_split_route(addr, prefix)
                .await
                .map_err(|e| format!("cannot remove the route of {addr}/{prefix}: {e}"))?;
        }
        self.rules.remove(at);
        self.sync_kill_switch().await
    }

    /// An answer for `qname` gave `addrs` (with their TTLs): when a domain rule matches
    /// the name (the most specific one), each address is routed its way, or its hold is
    /// renewed. Returns how many addresses are newly routed.
    pub async fn learn(&mut self, qname: &str, addrs: &[(IpAddr, u32)], now: Instant) -> usize {
        let Some(i) = self
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match &r.target {
                Target::Domain(d) if d.matches(qname) => Some((i, d.specificity())),
                _ => None,
            })
            .max_by_key(|(_, s)| *s)
            .map(|(i, _)| i)
        else {
            return 0;
        };
        let kind = self.rules[i].kind;
        // First the holds (new addresses recorded), then the kill switch, then routes.
        let mut to_route = Vec::new();
        let mut added = false;
        for &(addr, ttl) in addrs {
            let hold = Duration::from_secs(u64::from(ttl)).clamp(MIN_HOLD, MAX_HOLD);
            let until = now + hold;
            if kind == SplitKind::Vpn && self.peers.contains(&addr) {
                continue;
            }
            let rule = &mut self.rules[i];
            if let Some(l) = rule.learnt.get_mut(&addr) {
                l.until = l.until.max(until);
                if l.route.is_none() {
                    to_route.push(addr);
                }
            } else if rule.learnt.len() >= MAX_LEARNT {
                tracing::debug!(rule = %rule.target, "domain rule full: address not routed");
            } else {
                rule.learnt.insert(addr, Learnt { until, route: None });
                to_route.push(addr);
                added = true;
            }
        }
        if added
            && kind == SplitKind::Direct
            && let Err(e) = self.sync_kill_switch().await
        {
            tracing::warn!(error = %e, "learnt DIRECT addresses stay blocked");
        }
        if !self.enabled || self.tun.is_none() {
            return 0;
        }
        let mut routed = 0;
        for addr in to_route {
            match self.route(kind, addr, host_len(addr)).await {
                Ok(shown) => {
                    routed += usize::from(shown.is_some());
                    if let Some(l) = self.rules[i].learnt.get_mut(&addr) {
                        l.route = shown;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "learnt address not routed"),
            }
        }
        routed
    }

    /// Removes the learnt addresses whose hold ran out by `now`, and their routes.
    pub async fn expire(&mut self, now: Instant) {
        let mut gone = Vec::new();
        let mut any = false;
        for r in &mut self.rules {
            r.learnt.retain(|addr, l| {
                if l.until > now {
                    return true;
                }
                any = true;
                if l.route.is_some() {
                    gone.push(*addr);
                }
                false
            });
        }
        for addr in gone {
            if let Err(e) = self.netcfg.remove_split_route(addr, host_len(addr)).await {
                tracing::warn!(error = %e, "cannot remove an expired learnt route");
            }
        }
        if any && let Err(e) = self.sync_kill_switch().await {
            tracing::warn!(error = %e, "expired DIRECT addresses stay open");
        }
    }

    /// With the kill switch on, makes its DIRECT sets hold every DIRECT network and every
    /// address learnt for a DIRECT domain rule.
    async fn sync_kill_switch(&mut self) -> Result<(), String> {
        if !self.kill_switch {
            return Ok(());
        }
        let mut direct = Vec::new();
        for r in self.rules.iter().filter(|r| r.kind == SplitKind::Direct) {
            match &r.target {
                Target::Net(c) => direct.push((c.addr(), c.prefix_len())),
                Target::Domain(_) => {
                    direct.extend(r.learnt.keys().map(|a| (*a, host_len(*a))));
                }
            }
        }
        self.netcfg
            .set_kill_switch_direct(&direct)
            .await
            .map_err(|e| format!("cannot update the kill switch: {e}"))
    }

    /// Whether any rule is a domain rule.
    pub fn has_domains(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r.target, Target::Domain(_)))
    }

    /// Every rule, what it covers and where it goes.
    pub fn list(&self) -> Vec<RouteRule> {
        self.rules
            .iter()
            .map(|r| {
                let (covers, route) = match &r.target {
                    Target::Net(c) => (vec![c.to_string()], r.route.clone()),
                    Target::Domain(_) => {
                        let routes: Vec<&str> = r
                            .learnt
                            .values()
                            .filter_map(|l| l.route.as_deref())
                            .collect();
                        (
                            r.learnt.keys().map(ToString::to_string).collect(),
                            (!routes.is_empty()).then(|| routes.join("; ")),
                        )
                    }
                };
                let domain = matches!(r.target, Target::Domain(_));
                RouteRule {
                    kind: r.kind.name().into(),
                    rule: r.target.to_string(),
                    origin: if r.from_config { "config" } else { "live" }.into(),
                    covers,
                    via: match (route, self.enabled, &self.tun) {
                        (Some(route), _, _) => route,
                        (None, false, _) => {
                            "not installed (tunnel.os_routes.enabled = false)".into()
                        }
                        (None, true, None) => "not installed (the tunnel is down)".into(),
                        (None, true, Some(_)) if domain => {
                            "no address answered yet (routes follow DNS answers)".into()
                        }
                        (None, true, Some(_)) => "not installed".into(),
                    },
                }
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
            direct_domains: Vec::new(),
            vpn_domains: Vec::new(),
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

    /// Domain rules route what answers give, the most specific rule deciding, renew on
    /// every answer, survive a rebuilt tunnel and expire after their hold.
    #[tokio::test]
    async fn domain_rules_follow_the_answers() {
        let h = host();
        let before = h.snapshot();
        let mut r = routing(Vec::new());
        r.direct_domains = vec!["*.example.com".parse().unwrap()];
        r.vpn_domains = vec!["secret.example.com".parse().unwrap()];
        let mut book = RouteBook::new(
            &r,
            HostConfig::in_memory(h.clone()),
            vec![ip("203.0.113.7")],
            false,
        );
        book.install("aura0").await.unwrap();
        let t0 = Instant::now();
        // No rule for the name: nothing routed.
        assert_eq!(
            book.learn("other.org", &[(ip("198.51.100.1"), 60)], t0)
                .await,
            0
        );
        assert_eq!(h.route_get(ip("198.51.100.1")).as_deref(), Some("aura0"));
        // The wildcard: DIRECT (eth0); the exact name beats it: into the tunnel.
        assert_eq!(
            book.learn(
                "www.Example.com.",
                &[(ip("198.51.100.2"), 60), (ip("198.51.100.3"), 7200)],
                t0
            )
            .await,
            2
        );
        assert_eq!(
            book.learn("secret.example.com", &[(ip("192.168.9.9"), 60)], t0)
                .await,
            1
        );
        assert_eq!(h.route_get(ip("198.51.100.2")).as_deref(), Some("eth0"));
        assert_eq!(h.route_get(ip("198.51.100.3")).as_deref(), Some("eth0"));
        assert_eq!(h.route_get(ip("192.168.9.9")).as_deref(), Some("aura0"));
        let list = book.list();
        let wild = list.iter().find(|r| r.rule == "*.example.com").unwrap();
        assert_eq!(wild.covers, vec!["198.51.100.2", "198.51.100.3"]);
        assert_eq!(wild.kind, "direct");
        // The same answer again: renewed, not routed twice.
        assert_eq!(
            book.learn("www.example.com", &[(ip("198.51.100.2"), 60)], t0)
                .await,
            0
        );
        // A rebuilt tunnel routes the learnt addresses again.
        book.uninstall().await;
        assert_eq!(h.route_get(ip("198.51.100.2")).as_deref(), Some("aura0"));
        book.install("aura0").await.unwrap();
        assert_eq!(h.route_get(ip("198.51.100.2")).as_deref(), Some("eth0"));
        // 60 s TTL held MIN_HOLD; 7200 s held 7200 s.
        book.expire(t0 + MIN_HOLD - Duration::from_secs(1)).await;
        assert_eq!(h.route_get(ip("198.51.100.2")).as_deref(), Some("eth0"));
        book.expire(t0 + MIN_HOLD).await;
        assert_eq!(h.route_get(ip("198.51.100.2")).as_deref(), Some("aura0"));
        assert_eq!(h.route_get(ip("198.51.100.3")).as_deref(), Some("eth0"));
        book.expire(t0 + Duration::from_secs(7200)).await;
        assert_eq!(h.route_get(ip("198.51.100.3")).as_deref(), Some("aura0"));
        // Removing a domain rule removes its routes; live domain rules work too.
        book.remove("secret.example.com").await.unwrap();
        assert_eq!(
            book.learn("secret.example.com", &[(ip("192.168.9.9"), 60)], t0)
                .await,
            1
        );
        assert_eq!(
            h.route_get(ip("192.168.9.9")).as_deref(),
            Some("eth0"),
            "now the wildcard's"
        );
        book.add("vpn", "*.tunnelled.net").await.unwrap();
        assert_eq!(
            book.learn("a.tunnelled.net", &[(ip("192.168.1.5"), 60)], t0)
                .await,
            1
        );
        assert_eq!(h.route_get(ip("192.168.1.5")).as_deref(), Some("aura0"));
        assert!(
            book.add("direct", "*.tunnelled.net")
                .await
                .unwrap_err()
                .contains("already has a vpn rule")
        );
        let bad = book.add("vpn", "not a domain").await.unwrap_err();
        assert!(bad.contains("is not a domain"), "{bad}");
        let bad = book.add("vpn", "10.0.0.1/8").await.unwrap_err();
        assert!(bad.contains("host bits"), "{bad}");
        // The server's own address is never sent into the tunnel by a domain rule.
        assert_eq!(
            book.learn("x.tunnelled.net", &[(ip("203.0.113.7"), 60)], t0)
                .await,
            0
        );
        assert_eq!(h.route_get(ip("203.0.113.7")).as_deref(), Some("eth0"));
        book.uninstall().await;
        assert_eq!(h.snapshot(), before);
    }

    /// With the kill switch on, its DIRECT sets follow the rules: a live DIRECT network
    /// and the addresses learnt for a DIRECT domain rule join them, and leave with the
    /// rule or the hold.
    #[tokio::test]
    async fn the_kill_switch_sets_follow_the_direct_rules() {
        let h = host();
        let mut netcfg = HostConfig::in_memory(h.clone());
        netcfg
            .apply_kill_switch(&aura_netcfg::KillSwitchPlan {
                tun: "aura0".into(),
                peers: vec![ip("203.0.113.7")],
                direct: Vec::new(),
            })
            .await
            .unwrap();
        let mut r = routing(Vec::new());
        r.direct_domains = vec!["*.example.com".parse().unwrap()];
        let mut book = RouteBook::new(&r, netcfg.sibling(), vec![ip("203.0.113.7")], true);
        book.install("aura0").await.unwrap();
        book.add("direct", "198.51.100.0/24").await.unwrap();
        assert_eq!(h.kill_switch_direct(), vec![(ip("198.51.100.0"), 24)]);
        let t0 = Instant::now();
        book.learn("www.example.com", &[(ip("192.0.2.10"), 60)], t0)
            .await;
        let mut sets = h.kill_switch_direct();
        sets.sort();
        assert_eq!(sets, vec![(ip("192.0.2.10"), 32), (ip("198.51.100.0"), 24)]);
        book.remove("198.51.100.0/24").await.unwrap();
        assert_eq!(h.kill_switch_direct(), vec![(ip("192.0.2.10"), 32)]);
        book.expire(t0 + MIN_HOLD).await;
        assert!(h.kill_switch_direct().is_empty());
        book.uninstall().await;
        netcfg.undo().await.unwrap();
    }
}
