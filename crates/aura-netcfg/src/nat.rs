//! NAT for the server: MASQUERADE of the VPN pool toward the egress interface, in an
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
//!         ip saddr <pool> oifname "<egress>" counter masquerade }
//!     chain forward { type filter hook forward priority filter; policy accept;
//!         iifname "<tun>" oifname "<tun>" counter drop      (accept: client_to_client)
//!         iifname "<tun>" ip daddr <allowed subnet> counter accept      (one per subnet)
//!         iifname "<tun>" ip daddr { 0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12,
//!                                    192.168/16, 224/4, 240/4 } counter drop
//!         iifname "<tun>" oifname "<egress>" counter accept
//!         iifname "<tun>" counter drop
//!         oifname "<tun>" ct state established,related counter accept
//!         oifname "<tun>" counter drop }
//!     chain input { type filter hook input priority filter; policy accept;
//!         iifname "<tun>" ct state established,related counter accept
//!         iifname "<tun>" icmp type echo-request counter accept
//!         iifname "<tun>" <udp|tcp> dport <port> counter accept       (one per host port)
//!         iifname "<tun>" counter drop }
//! }
//! ```
//! Both filter chains have policy accept and match only what crosses the TUN: the host's
//! other traffic is not Aura's to judge. From the TUN, a client reaches the internet
//! through the egress interface and nothing else unless the [`FirewallPlan`] opens it:
//! not other clients, not the host's own services (ping excepted), not private, shared,
//! link-local (cloud metadata at 169.254.169.254), loopback or multicast addresses on any
//! interface; and nothing reaches a client that it did not start. (A drop in another
//! table, e.g. Docker's, still wins: nftables evaluates every base chain on a hook.)

use std::net::Ipv4Addr;

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

/// What the server needs: masquerade the pool's source addresses toward the egress
/// interface, and keep clients to what the firewall allows.
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

/// A [`NatPlan`] with the egress interface resolved and the pool normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedNat {
    pub(crate) pool: Ipv4Addr,
    pub(crate) prefix: u8,
    pub(crate) tun: String,
    pub(crate) egress: String,
    pub(crate) firewall: FirewallPlan,
}

impl ResolvedNat {
    pub(crate) fn new(plan: &NatPlan, egress: String) -> Result<Self, NetcfgError> {
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
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Ok(Self {
            pool: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
            tun: plan.tun.clone(),
            egress,
            firewall: plan.firewall.clone(),
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
        eq(meta(MetaKey::Oifname), string(&nat.egress)),
        counter(),
        Statement::Accept(None),
    ]);
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
            tun: "aura0".into(),
            egress: None,
            firewall: FirewallPlan::default(),
        }
    }

    #[test]
    fn pool_is_normalised_and_checked() {
        let r = ResolvedNat::new(&plan(), "eth0".into()).unwrap();
        assert_eq!(r.pool, Ipv4Addr::new(10, 77, 0, 0));
        let mut p = plan();
        p.pool.1 = 0;
        assert_eq!(
            ResolvedNat::new(&p, "eth0".into()).unwrap().pool,
            Ipv4Addr::UNSPECIFIED
        );
        p.pool.1 = 33;
        assert!(matches!(
            ResolvedNat::new(&p, "eth0".into()),
            Err(NetcfgError::InvalidPlan(_))
        ));
        assert!(ResolvedNat::new(&plan(), "aura0".into()).is_err());
        assert!(ResolvedNat::new(&plan(), "bad name".into()).is_err());
    }

    #[test]
    fn batch_is_atomic_replace_with_masquerade() {
        let r = ResolvedNat::new(&plan(), "eth0".into()).unwrap();
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
        let r = ResolvedNat::new(&plan(), "eth0".into()).unwrap();
        let json = apply_batch(&r).unwrap();
        let fwd = rules(&json, "forward");
        // tun to tun dropped first; blocked destinations before the egress accept; a
        // final drop for anything else from the TUN; nothing unsolicited to it.
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
            fwd[2].contains("\"eth0\"") && fwd[2].contains("\"accept\""),
            "{}",
            fwd[2]
        );
        assert!(
            fwd[3].contains("\"drop\"") && !fwd[3].contains("daddr"),
            "{}",
            fwd[3]
        );
        assert!(fwd[4].contains("established") && fwd[4].contains("\"accept\""));
        assert!(fwd[5].contains("\"drop\""));
        assert_eq!(fwd.len(), 6);
        let input = rules(&json, "input");
        assert_eq!(input.len(), 3, "established, ping, drop: {input:?}");
        assert!(input[1].contains("echo-request"));
        assert!(input[2].contains("\"drop\""));
    }

    #[test]
    fn firewall_plan_opens_clients_subnets_and_ports() {
        let mut p = plan();
        p.firewall = FirewallPlan {
            client_to_client: true,
            allow_subnets: vec![(Ipv4Addr::new(192, 168, 10, 0), 24)],
            allow_host_ports: vec![(L4::Udp, 53), (L4::Tcp, 53)],
        };
        let r = ResolvedNat::new(&p, "eth0".into()).unwrap();
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
        assert_eq!(input.len(), 5);
        assert!(input[2].contains("\"udp\"") && input[2].contains("53"));
        assert!(input[3].contains("\"tcp\"") && input[3].contains("53"));
        p.firewall.allow_subnets = vec![(Ipv4Addr::new(10, 0, 0, 0), 33)];
        assert!(ResolvedNat::new(&p, "eth0".into()).is_err());
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
