//! NAT for the server: MASQUERADE of the VPN pool toward the egress interface (and of
//! its IPv6 pool toward the IPv6 egress with NAT66, or routed IPv6 without), in an
//! nftables table of Aura's own (`inet aura`).
//!
//! The ruleset is built here with the typed builders of `crate::nft` (pure, testable
//! anywhere) and handed to `nft -j -f -` as one batch, so it lands atomically or not at
//! all. The batch starts with `add table` + `delete table`, so whatever a crashed run left
//! in the table is replaced, never merged. Undo is one `delete table`.
//!
//! ```text
//! table inet aura {
//!     chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//!         ip saddr <pool> oifname "<egress>" counter masquerade
//!         ip6 saddr <pool6> oifname "<egress6>" counter masquerade    (pool6 with nat66)
//!     }
//!     chain forward { type filter hook forward priority filter; policy accept;
//!         iifname "<tun>" oifname "<tun>" counter drop      (accept: client_to_client)
//!         iifname "<tun>" ip daddr <allowed subnet> counter accept      (one per subnet)
//!         iifname "<tun>" ip daddr { 0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12,
//!                                    192.168/16, 224/4, 240/4 } counter drop
//!         iifname "<tun>" ip6 daddr { ::/128, ::1/128, ::ffff:0:0/96, fc00::/7,
//!                                     fe80::/10, ff00::/8 } counter drop      (always)
//!         iifname "<tun>" oifname "<egress>" counter accept
//!         iifname "<tun>" oifname "<egress6>" counter accept
//!                                          (pool6, when egress6 is not egress)
//!         iifname "<tun>" counter drop
//!         oifname "<tun>" ct state established,related counter accept
//!         oifname "<tun>" counter drop }
//!     chain input { type filter hook input priority filter; policy accept;
//!         iifname "<tun>" ct state established,related counter accept
//!         iifname "<tun>" icmp type echo-request counter accept
//!         iifname "<tun>" icmpv6 type echo-request counter accept
//!         iifname "<tun>" <udp|tcp> dport <port> counter accept       (one per host port)
//!         iifname "<tun>" counter drop }
//! }
//! ```
//!
//! IPv6 comes in two modes ([`NatPlan::nat66`]): NAT66 masquerades the pool's IPv6
//! (a ULA /64 by default, not routable on the internet) behind the egress6 address;
//! routed leaves the addresses as they are, for a global prefix the operator routes to
//! the server. Either way the forward chain treats IPv6 like IPv4, and the blocked IPv6
//! destinations are dropped even when the tunnel carries no IPv6 (harmless).
//!
//! Both filter chains have policy accept and match only what crosses the TUN: the host's
//! other traffic is not Aura's to judge. From the TUN, a client reaches the internet
//! through the egress interface and nothing else unless the [`FirewallPlan`] opens it:
//! not other clients, not the host's own services (ping excepted), not private, shared,
//! link-local (cloud metadata at 169.254.169.254), loopback or multicast addresses on any
//! interface (in IPv6: unspecified, loopback, IPv4-mapped, unique local, link-local,
//! multicast); and nothing reaches a client that it did not start. (A drop in another
//! table, e.g. Docker's, still wins: nftables evaluates every base chain on a hook.)

use std::net::{Ipv4Addr, Ipv6Addr};

use nftables::batch::Batch;
use nftables::expr::MetaKey;
use nftables::schema::NfListObject;
use nftables::stmt::Statement;
use nftables::types::{NfChainPolicy, NfChainType, NfHook};

use crate::error::NetcfgError;
use crate::ifname::check_ifname;
use crate::nft::{
    self, AuraTable, counter, ct, eq, meta, number, one_of, payload, prefix, prefix_set, string,
};

/// Aura's nftables table family.
pub const TABLE_FAMILY: &str = "inet";
/// Aura's nftables table name; nothing else is ever touched.
pub const TABLE_NAME: &str = "aura";
/// `inet aura` for the [`nft`] builders.
pub(crate) const TABLE: AuraTable = AuraTable::inet(TABLE_NAME);
/// Priority of the postrouting NAT chain (`srcnat`).
const PRIO_SRCNAT: i32 = 100;
/// Priority of the forward filter chain (`filter`).
const PRIO_FILTER: i32 = 0;

/// Destinations a client never reaches through the tunnel unless a subnet of the
/// [`FirewallPlan`] allows them: "this network", RFC 1918 private, shared (CGNAT),
/// loopback, link-local (cloud metadata), multicast and reserved.
pub const BLOCKED_DESTINATIONS: [(Ipv4Addr, u8); 9] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// Destinations a client never reaches over IPv6 through the tunnel: unspecified,
/// loopback, IPv4-mapped (`::ffff:0:0/96`, which would reach IPv4 hosts around the IPv4
/// rules), unique local (`fc00::/7`, the default pool's and private networks'),
/// link-local and multicast. Dropped even when the tunnel carries no IPv6.
pub const BLOCKED_DESTINATIONS6: [(Ipv6Addr, u8); 6] = [
    (Ipv6Addr::UNSPECIFIED, 128),
    (Ipv6Addr::LOCALHOST, 128),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
];

/// What the server needs: masquerade the pool's source addresses toward the egress
/// interface (IPv6: masqueraded or routed), and keep clients to what the firewall allows.
///
/// [`Default`]: Aura's default pool `10.77.0.0/24` on `aura0`, egress from the default
/// route, the default firewall, no IPv6 (`nat66` true, for when `pool6` is set); set
/// the rest with `..Default::default()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatPlan {
    /// The VPN pool, network address and prefix length (host bits are masked off).
    pub pool: (Ipv4Addr, u8),
    /// The TUN device clients' traffic comes from.
    pub tun: String,
    /// Egress interface; `None`: the interface of the IPv4 default route.
    pub egress: Option<String>,
    /// What clients may reach besides the internet.
    pub firewall: FirewallPlan,
    /// The IPv6 pool, network address and prefix length (host bits are masked off), e.g.
    /// the ULA `fd61:7572:6100::/64`; `None`: no IPv6 in the tunnel.
    pub pool6: Option<(Ipv6Addr, u8)>,
    /// With `pool6`: `true` masquerades it toward the IPv6 egress (NAT66); `false` routes
    /// it unchanged (the operator routes the prefix to this server).
    pub nat66: bool,
    /// IPv6 egress interface; `None`: the interface of the IPv6 default route, or the
    /// IPv4 egress when the host has none. Only looked up with `pool6`.
    pub egress6: Option<String>,
}

impl Default for NatPlan {
    fn default() -> Self {
        Self {
            pool: (Ipv4Addr::new(10, 77, 0, 0), 24),
            tun: "aura0".into(),
            egress: None,
            firewall: FirewallPlan::default(),
            pool6: None,
            nat66: true,
            egress6: None,
        }
    }
}

/// A transport protocol of a host port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// What the firewall opens (the default, empty: the internet only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallPlan {
    /// Clients reach each other.
    pub client_to_client: bool,
    /// Networks clients reach although blocked or not behind the egress interface.
    pub allow_subnets: Vec<(Ipv4Addr, u8)>,
    /// Ports of the server host clients reach through the tunnel.
    pub allow_host_ports: Vec<(L4, u16)>,
}

/// A [`NatPlan`] with the egress interfaces resolved and the pools normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedNat {
    pub(crate) pool: Ipv4Addr,
    pub(crate) prefix: u8,
    pub(crate) tun: String,
    pub(crate) egress: String,
    pub(crate) firewall: FirewallPlan,
    /// The IPv6 pool, host bits masked off.
    pub(crate) pool6: Option<(Ipv6Addr, u8)>,
    pub(crate) nat66: bool,
    /// The IPv6 egress interface (the IPv4 one when the plan has no `pool6`).
    pub(crate) egress6: String,
}

impl ResolvedNat {
    /// Checks `plan` with its egress interfaces resolved (`egress6`: only used with a
    /// `pool6`).
    pub(crate) fn new(
        plan: &NatPlan,
        egress: String,
        egress6: String,
    ) -> Result<Self, NetcfgError> {
        let (addr, prefix) = plan.pool;
        if prefix > 32 {
            return Err(NetcfgError::InvalidPlan(format!(
                "pool prefix /{prefix} is over 32"
            )));
        }
        check_ifname(&plan.tun)?;
        check_ifname(&egress)?;
        if plan.tun == egress {
            return Err(NetcfgError::InvalidPlan(format!(
                "the TUN device and the egress interface are both {egress:?}"
            )));
        }
        for (net, len) in &plan.firewall.allow_subnets {
            if *len > 32 {
                return Err(NetcfgError::InvalidPlan(format!(
                    "allowed subnet {net}/{len}: prefix over 32"
                )));
            }
        }
        let pool6 = match plan.pool6 {
            None => None,
            Some((_, len)) if len > 128 => {
                return Err(NetcfgError::InvalidPlan(format!(
                    "IPv6 pool prefix /{len} is over 128"
                )));
            }
            Some((addr6, len)) => {
                let mask6 = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                Some((Ipv6Addr::from(u128::from(addr6) & mask6), len))
            }
        };
        let egress6 = if pool6.is_some() {
            check_ifname(&egress6)?;
            if plan.tun == egress6 {
                return Err(NetcfgError::InvalidPlan(format!(
                    "the TUN device and the IPv6 egress interface are both {egress6:?}"
                )));
            }
            egress6
        } else {
            egress.clone()
        };
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Ok(Self {
            pool: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
            tun: plan.tun.clone(),
            egress,
            firewall: plan.firewall.clone(),
            pool6,
            nat66: plan.nat66,
            egress6,
        })
    }
}

/// The one batch that (re)creates `inet aura` with the masquerade and forward rules.
pub(crate) fn apply_batch(nat: &ResolvedNat) -> Result<String, NetcfgError> {
    let mut b: Batch<'static> = TABLE.replace_batch();
    b.add(NfListObject::Chain(TABLE.base_chain(
        "postrouting",
        NfChainType::NAT,
        NfHook::Postrouting,
        PRIO_SRCNAT,
        NfChainPolicy::Accept,
    )));
    b.add(NfListObject::Rule(TABLE.rule(
        "postrouting",
        vec![
            eq(
                payload("ip", "saddr"),
                prefix(&nat.pool.to_string(), u32::from(nat.prefix)),
            ),
            eq(meta(MetaKey::Oifname), string(&nat.egress)),
            counter(),
            Statement::Masquerade(None),
        ],
    )));
    if let (Some((pool6, len6)), true) = (nat.pool6, nat.nat66) {
        b.add(NfListObject::Rule(TABLE.rule(
            "postrouting",
            vec![
                eq(
                    payload("ip6", "saddr"),
                    prefix(&pool6.to_string(), u32::from(len6)),
                ),
                eq(meta(MetaKey::Oifname), string(&nat.egress6)),
                counter(),
                Statement::Masquerade(None),
            ],
        )));
    }
    b.add(NfListObject::Chain(TABLE.base_chain(
        "forward",
        NfChainType::Filter,
        NfHook::Forward,
        PRIO_FILTER,
        NfChainPolicy::Accept,
    )));
    let fw = &nat.firewall;
    let from_tun = || eq(meta(MetaKey::Iifname), string(&nat.tun));
    let to_tun = || eq(meta(MetaKey::Oifname), string(&nat.tun));
    let verdict = |accept: bool| {
        if accept {
            Statement::Accept(None)
        } else {
            Statement::Drop(None)
        }
    };
    let mut forward = |expr: Vec<Statement<'static>>| {
        b.add(NfListObject::Rule(TABLE.rule("forward", expr)));
    };
    forward(vec![
        from_tun(),
        to_tun(),
        counter(),
        verdict(fw.client_to_client),
    ]);
    for (net, len) in &fw.allow_subnets {
        forward(vec![
            from_tun(),
            eq(
                payload("ip", "daddr"),
                prefix(&net.to_string(), u32::from(*len)),
            ),
            counter(),
            Statement::Accept(None),
        ]);
    }
    forward(vec![
        from_tun(),
        eq(payload("ip", "daddr"), prefix_set(&BLOCKED_DESTINATIONS)),
        counter(),
        Statement::Drop(None),
    ]);
    forward(vec![
        from_tun(),
        eq(payload("ip6", "daddr"), prefix_set(&BLOCKED_DESTINATIONS6)),
        counter(),
        Statement::Drop(None),
    ]);
    forward(vec![
        from_tun(),
        eq(meta(MetaKey::Oifname), string(&nat.egress)),
        counter(),
        Statement::Accept(None),
    ]);
    if nat.pool6.is_some() && nat.egress6 != nat.egress {
        forward(vec![
            from_tun(),
            eq(meta(MetaKey::Oifname), string(&nat.egress6)),
            counter(),
            Statement::Accept(None),
        ]);
    }
    forward(vec![from_tun(), counter(), Statement::Drop(None)]);
    forward(vec![
        to_tun(),
        one_of(ct("state"), vec![string("established"), string("related")]),
        counter(),
        Statement::Accept(None),
    ]);
    forward(vec![to_tun(), counter(), Statement::Drop(None)]);

    b.add(NfListObject::Chain(TABLE.base_chain(
        "input",
        NfChainType::Filter,
        NfHook::Input,
        PRIO_FILTER,
        NfChainPolicy::Accept,
    )));
    let mut input = |expr: Vec<Statement<'static>>| {
        b.add(NfListObject::Rule(TABLE.rule("input", expr)));
    };
    input(vec![
        from_tun(),
        one_of(ct("state"), vec![string("established"), string("related")]),
        counter(),
        Statement::Accept(None),
    ]);
    input(vec![
        from_tun(),
        eq(payload("icmp", "type"), string("echo-request")),
        counter(),
        Statement::Accept(None),
    ]);
    input(vec![
        from_tun(),
        eq(payload("icmpv6", "type"), string("echo-request")),
        counter(),
        Statement::Accept(None),
    ]);
    for (l4, port) in &fw.allow_host_ports {
        let proto = match l4 {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
        };
        input(vec![
            from_tun(),
            eq(payload(proto, "dport"), number(u32::from(*port))),
            counter(),
            Statement::Accept(None),
        ]);
    }
    input(vec![from_tun(), counter(), Statement::Drop(None)]);
    nft::to_json(b)
}

/// The batch that removes `inet aura`, whether or not it exists (add + delete).
pub(crate) fn delete_batch() -> Result<String, NetcfgError> {
    TABLE.delete_batch()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn plan() -> NatPlan {
        NatPlan {
            pool: (Ipv4Addr::new(10, 77, 0, 9), 24),
            ..NatPlan::default()
        }
    }

    /// `plan` resolved with egress `eth0` (and IPv6 egress `eth0` too).
    fn resolve(plan: &NatPlan) -> Result<ResolvedNat, NetcfgError> {
        ResolvedNat::new(plan, "eth0".into(), "eth0".into())
    }

    /// A dual-stack plan: `fd61:7572:6100::/64` (host bits set), NAT66 or routed.
    fn plan6(nat66: bool) -> NatPlan {
        NatPlan {
            pool6: Some(("fd61:7572:6100::9".parse().unwrap(), 64)),
            nat66,
            ..plan()
        }
    }

    #[test]
    fn pool_is_normalised_and_checked() {
        let r = resolve(&plan()).unwrap();
        assert_eq!(r.pool, Ipv4Addr::new(10, 77, 0, 0));
        let mut p = plan();
        p.pool.1 = 0;
        assert_eq!(resolve(&p).unwrap().pool, Ipv4Addr::UNSPECIFIED);
        p.pool.1 = 33;
        assert!(matches!(resolve(&p), Err(NetcfgError::InvalidPlan(_))));
        assert!(ResolvedNat::new(&plan(), "aura0".into(), "eth0".into()).is_err());
        assert!(ResolvedNat::new(&plan(), "bad name".into(), "eth0".into()).is_err());
    }

    #[test]
    fn batch_is_atomic_replace_with_masquerade() {
        let r = resolve(&plan()).unwrap();
        let json = apply_batch(&r).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let cmds = v["nftables"].as_array().unwrap();
        assert!(cmds[0]["add"]["table"].is_object());
        assert!(cmds[1]["delete"]["table"].is_object());
        assert_eq!(cmds[1]["delete"]["table"]["name"], "aura");
        assert_eq!(cmds[1]["delete"]["table"]["family"], "inet");
        assert!(json.contains("\"masquerade\":null"));
        assert!(json.contains("\"prefix\":{\"addr\":\"10.77.0.0\",\"len\":24}"));
        assert!(json.contains("\"right\":\"eth0\""));
        let del = delete_batch().unwrap();
        assert!(del.contains("\"delete\":{\"table\""));
    }

    /// The rules of chain `chain` in `json`, each as its JSON text.
    fn rules(json: &str, chain: &str) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["add"]["rule"]["chain"] == chain)
            .map(|c| c["add"]["rule"]["expr"].to_string())
            .collect()
    }

    #[test]
    fn default_firewall_drops_all_but_the_internet() {
        let r = resolve(&plan()).unwrap();
        let json = apply_batch(&r).unwrap();
        let fwd = rules(&json, "forward");
        // tun to tun dropped first; blocked destinations (IPv4, then IPv6 even without
        // an IPv6 pool) before the egress accept; a final drop for anything else from
        // the TUN; nothing unsolicited to it.
        assert!(
            fwd[0].contains("\"oifname\"") && fwd[0].contains("\"drop\""),
            "{}",
            fwd[0]
        );
        assert!(
            fwd[1].contains("169.254.0.0") && fwd[1].contains("\"drop\""),
            "{}",
            fwd[1]
        );
        assert!(
            fwd[2].contains("\"ip6\"") && fwd[2].contains("fe80::") && fwd[2].contains("\"drop\""),
            "{}",
            fwd[2]
        );
        assert!(
            fwd[3].contains("\"eth0\"") && fwd[3].contains("\"accept\""),
            "{}",
            fwd[3]
        );
        assert!(
            fwd[4].contains("\"drop\"") && !fwd[4].contains("daddr"),
            "{}",
            fwd[4]
        );
        assert!(fwd[5].contains("established") && fwd[5].contains("\"accept\""));
        assert!(fwd[6].contains("\"drop\""));
        assert_eq!(fwd.len(), 7);
        let input = rules(&json, "input");
        assert_eq!(input.len(), 4, "established, ping, ping6, drop: {input:?}");
        assert!(input[1].contains("\"icmp\"") && input[1].contains("echo-request"));
        assert!(input[2].contains("\"icmpv6\"") && input[2].contains("echo-request"));
        assert!(input[3].contains("\"drop\""));
        // No IPv6 pool: no IPv6 masquerade.
        let post = rules(&json, "postrouting");
        assert_eq!(post.len(), 1, "{post:?}");
    }

    #[test]
    fn firewall_plan_opens_clients_subnets_and_ports() {
        let mut p = plan();
        p.firewall = FirewallPlan {
            client_to_client: true,
            allow_subnets: vec![(Ipv4Addr::new(192, 168, 10, 0), 24)],
            allow_host_ports: vec![(L4::Udp, 53), (L4::Tcp, 53)],
        };
        let r = resolve(&p).unwrap();
        let json = apply_batch(&r).unwrap();
        let fwd = rules(&json, "forward");
        assert!(
            fwd[0].contains("\"accept\""),
            "client to client: {}",
            fwd[0]
        );
        assert!(fwd[1].contains("192.168.10.0") && fwd[1].contains("\"accept\""));
        assert!(
            fwd[2].contains("192.168.0.0") && fwd[2].contains("\"drop\""),
            "allowed first"
        );
        let input = rules(&json, "input");
        assert_eq!(input.len(), 6);
        assert!(input[3].contains("\"udp\"") && input[3].contains("53"));
        assert!(input[4].contains("\"tcp\"") && input[4].contains("53"));
        p.firewall.allow_subnets = vec![(Ipv4Addr::new(10, 0, 0, 0), 33)];
        assert!(resolve(&p).is_err());
    }

    #[test]
    fn pool6_is_normalised_and_checked() {
        let r = resolve(&plan6(true)).unwrap();
        assert_eq!(
            r.pool6,
            Some(("fd61:7572:6100::".parse::<Ipv6Addr>().unwrap(), 64))
        );
        assert_eq!(r.egress6, "eth0");
        let mut p = plan6(true);
        p.pool6 = Some(("fd61::1".parse().unwrap(), 0));
        assert_eq!(resolve(&p).unwrap().pool6, Some((Ipv6Addr::UNSPECIFIED, 0)));
        p.pool6 = Some(("fd61::1".parse().unwrap(), 128));
        assert_eq!(
            resolve(&p).unwrap().pool6,
            Some(("fd61::1".parse().unwrap(), 128))
        );
        p.pool6 = Some(("fd61::1".parse().unwrap(), 129));
        assert!(matches!(resolve(&p), Err(NetcfgError::InvalidPlan(_))));
        // The IPv6 egress is checked like the IPv4 one, only with an IPv6 pool.
        let bad = |e6: &str| ResolvedNat::new(&plan6(true), "eth0".into(), e6.into());
        assert!(bad("aura0").is_err());
        assert!(bad("bad name").is_err());
        assert!(ResolvedNat::new(&plan(), "eth0".into(), "bad name".into()).is_ok());
    }

    #[test]
    fn nat66_masquerades_the_ipv6_pool() {
        let r = ResolvedNat::new(&plan6(true), "eth0".into(), "eth6".into()).unwrap();
        let json = apply_batch(&r).unwrap();
        let post = rules(&json, "postrouting");
        assert_eq!(post.len(), 2, "{post:?}");
        assert!(
            post[0].contains("\"ip\"") && post[0].contains("10.77.0.0"),
            "{}",
            post[0]
        );
        let v6 = &post[1];
        assert!(
            v6.contains("{\"payload\":{\"field\":\"saddr\",\"protocol\":\"ip6\"}}"),
            "{v6}"
        );
        assert!(
            v6.contains("\"prefix\":{\"addr\":\"fd61:7572:6100::\",\"len\":64}"),
            "{v6}"
        );
        assert!(v6.contains("\"right\":\"eth6\""), "{v6}");
        assert!(v6.contains("\"masquerade\":null"), "{v6}");
        // A distinct IPv6 egress is allowed after the IPv4 one, before the final drop.
        let fwd = rules(&json, "forward");
        assert_eq!(fwd.len(), 8, "{fwd:?}");
        assert!(fwd[3].contains("\"eth0\"") && fwd[3].contains("\"accept\""));
        assert!(
            fwd[4].contains("\"eth6\"") && fwd[4].contains("\"accept\""),
            "{}",
            fwd[4]
        );
        assert!(fwd[5].contains("\"drop\"") && !fwd[5].contains("daddr"));
        // One egress for both families: no second accept.
        let r = resolve(&plan6(true)).unwrap();
        assert_eq!(rules(&apply_batch(&r).unwrap(), "forward").len(), 7);
    }

    #[test]
    fn routed_ipv6_has_no_ipv6_masquerade() {
        let r = ResolvedNat::new(&plan6(false), "eth0".into(), "eth6".into()).unwrap();
        let json = apply_batch(&r).unwrap();
        let post = rules(&json, "postrouting");
        assert_eq!(post.len(), 1, "only the IPv4 masquerade: {post:?}");
        assert!(!post[0].contains("ip6"), "{}", post[0]);
        assert!(!json.contains("fd61:7572:6100::"), "{json}");
        // Still forwarded (and filtered) like NAT66.
        let fwd = rules(&json, "forward");
        assert!(
            fwd.iter()
                .any(|r| r.contains("\"eth6\"") && r.contains("\"accept\""))
        );
        assert!(fwd.iter().any(|r| r.contains("fc00::")));
    }

    #[test]
    fn blocked_ipv6_destinations_are_one_set() {
        let r = resolve(&plan()).unwrap();
        let json = apply_batch(&r).unwrap();
        let fwd = rules(&json, "forward");
        let blocked: Vec<&String> = fwd.iter().filter(|r| r.contains("\"ip6\"")).collect();
        assert_eq!(blocked.len(), 1, "{fwd:?}");
        let rule: serde_json::Value = serde_json::from_str(blocked[0]).unwrap();
        let m = &rule[1]["match"];
        assert_eq!(m["left"]["payload"]["field"], "daddr");
        let set: Vec<String> = m["right"]["set"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{}/{}",
                    e["prefix"]["addr"].as_str().unwrap(),
                    e["prefix"]["len"]
                )
            })
            .collect();
        assert_eq!(
            set,
            [
                "::/128",
                "::1/128",
                "::ffff:0.0.0.0/96",
                "fc00::/7",
                "fe80::/10",
                "ff00::/8"
            ]
        );
        assert_eq!(rule[3], serde_json::json!({"drop": null}));
    }

    #[test]
    fn parses_table_listing() {
        let with = r#"{"nftables":[{"metainfo":{"version":"1.0.6","release_name":"Lester Gooch #5","json_schema_version":1}},{"table":{"family":"ip","name":"nat","handle":1}},{"table":{"family":"inet","name":"aura","handle":2}}]}"#;
        assert!(TABLE.listed_in(with).unwrap());
        let without = r#"{"nftables":[{"metainfo":{"version":"1.0.6","release_name":"x","json_schema_version":1}},{"table":{"family":"ip","name":"aura","handle":1}}]}"#;
        assert!(!TABLE.listed_in(without).unwrap());
        assert!(TABLE.listed_in("not json").is_err());
    }
}
