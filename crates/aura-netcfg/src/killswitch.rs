//! The client's kill switch: nftables table `inet aura_client`, kept from the client's
//! start to its stop (connecting, reconnecting, server down), that lets nothing leave or
//! enter the host but:
//!
//! ```text
//! table inet aura_client {
//!     chain output { type filter hook output priority filter; policy drop;
//!         oifname "lo" accept
//!         oifname "aura0" accept                      # the tunnel
//!         ip daddr { <server>, <bridges> } accept     # the carriers
//!         ip daddr @direct4 accept                    # split tunnelling (DIRECT)
//!         ip6 daddr @direct6 accept
//!         udp dport 67 accept                         # DHCPv4
//!         ip6 daddr { fe80::/10, ff02::/16 } accept   # IPv6 on the link: ND, DHCPv6
//!         counter drop
//!     }
//!     chain input { type filter hook input priority filter; policy drop;
//!         iifname "lo" accept
//!         iifname "aura0" accept
//!         ct state established,related accept
//!         ip saddr @direct4 accept
//!         ip6 saddr @direct6 accept
//!         udp sport 67 udp dport 68 accept
//!         ip6 saddr fe80::/10 accept
//!         counter drop
//!     }
//! }
//! ```
//! The DIRECT networks are two named interval sets (`direct4`, `direct6`), rewritten in
//! one transaction whenever the client's DIRECT networks change ([`set_batch`]): a live
//! `aura route add --direct` and the addresses learnt for DIRECT domain rules pass as
//! soon as they are routed. Networks inside another one are dropped from the sets (an
//! interval set refuses overlaps; the wider one already covers them).
//!
//! A table of its own, apart from the server's `inet aura`, so a client on a server host
//! and its crash cleanup never touch the server's rules. Forwarded traffic (containers,
//! VMs behind the client host) is not covered.

use std::net::IpAddr;

use nftables::batch::Batch;
use nftables::expr::{Expression, MetaKey, NamedExpression, SetItem};
use nftables::schema::{
    Element, FlushObject, NfCmd, NfListObject, Set, SetFlag, SetType, SetTypeValue,
};
use nftables::stmt::Statement;
use nftables::types::NfFamily;
use nftables::types::{NfChainPolicy, NfChainType, NfHook};

use crate::error::NetcfgError;
use crate::ifname::check_ifname;
use crate::nft::{
    AuraTable, counter, ct, eq, meta, number, one_of, payload, prefix, string, to_json,
};

/// The table's name (family `inet`).
pub const TABLE_NAME: &str = "aura_client";
pub(crate) const TABLE: AuraTable = AuraTable::inet(TABLE_NAME);

/// Priority of both chains (`filter`).
const PRIO_FILTER: i32 = 0;

/// What the kill switch lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillSwitchPlan {
    /// The TUN device (it need not exist yet: matched by name).
    pub tun: String,
    /// The server and bridges: every carrier to them passes.
    pub peers: Vec<IpAddr>,
    /// DIRECT networks of split tunnelling, both ways.
    pub direct: Vec<(IpAddr, u8)>,
}

/// A set of networks of one family as an nftables anonymous set.
fn nets(items: &[(IpAddr, u8)]) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        items
            .iter()
            .map(|(a, n)| SetItem::Element(prefix(&a.to_string(), u32::from(*n))))
            .collect(),
    ))
}

/// `(v4, v6)` halves of `items`.
fn by_family(items: &[(IpAddr, u8)]) -> [(&'static str, Vec<(IpAddr, u8)>); 2] {
    let (v4, v6): (Vec<_>, Vec<_>) = items.iter().partition(|(a, _)| a.is_ipv4());
    [("ip", v4), ("ip6", v6)]
}

/// The named sets of DIRECT networks, by family.
const SETS: [(&str, &str, SetType); 2] = [
    ("ip", "direct4", SetType::Ipv4Addr),
    ("ip6", "direct6", SetType::Ipv6Addr),
];

/// Whether `(inner, n)` lies inside `(outer, m)`.
fn inside((inner, n): (IpAddr, u8), (outer, m): (IpAddr, u8)) -> bool {
    m <= n && crate::routes::contains(outer, m, inner)
}

/// `items` without duplicates and without networks inside another one.
fn disjoint(items: &[(IpAddr, u8)]) -> Vec<(IpAddr, u8)> {
    let mut out: Vec<(IpAddr, u8)> = Vec::new();
    for &it in items {
        if out.iter().any(|&o| inside(it, o)) {
            continue;
        }
        out.retain(|&o| !inside(o, it));
        out.push(it);
    }
    out
}

fn set_object(name: &'static str, kind: SetType) -> Set<'static> {
    Set {
        family: NfFamily::INet,
        table: TABLE_NAME.into(),
        name: name.into(),
        set_type: SetTypeValue::Single(kind),
        flags: Some([SetFlag::Interval].into_iter().collect()),
        ..Set::default()
    }
}

/// Adds to `b` the elements of `direct` to each set (none for an empty family: nft
/// refuses an empty element list).
fn add_elements(b: &mut Batch<'static>, direct: &[(IpAddr, u8)]) {
    let direct = disjoint(direct);
    for ((_, name, _), (_, items)) in SETS.iter().zip(by_family(&direct)) {
        if items.is_empty() {
            continue;
        }
        let elem: Vec<Expression<'static>> = items
            .iter()
            .map(|(a, n)| prefix(&a.to_string(), u32::from(*n)))
            .collect();
        b.add(NfListObject::Element(Element {
            family: NfFamily::INet,
            table: TABLE_NAME.into(),
            name: (*name).into(),
            elem: elem.into(),
        }));
    }
}

/// The batch that makes the DIRECT sets hold exactly `direct`, in one transaction.
pub(crate) fn set_batch(direct: &[(IpAddr, u8)]) -> Result<String, NetcfgError> {
    let mut b: Batch<'static> = Batch::new();
    for (_, name, kind) in SETS {
        b.add_cmd(NfCmd::Flush(FlushObject::Set(Box::new(set_object(
            name, kind,
        )))));
    }
    add_elements(&mut b, direct);
    to_json(b)
}

/// The batch that (re)creates `inet aura_client` for `plan`.
pub(crate) fn apply_batch(plan: &KillSwitchPlan) -> Result<String, NetcfgError> {
    check_ifname(&plan.tun)?;
    let mut b: Batch<'static> = TABLE.replace_batch();
    for (_, name, kind) in SETS {
        b.add(NfListObject::Set(Box::new(set_object(name, kind))));
    }
    add_elements(&mut b, &plan.direct);
    let accept = || Statement::Accept(None);
    let peers: Vec<(IpAddr, u8)> = plan
        .peers
        .iter()
        .map(|a| (*a, if a.is_ipv4() { 32 } else { 128 }))
        .collect();

    b.add(NfListObject::Chain(TABLE.base_chain(
        "output",
        NfChainType::Filter,
        NfHook::Output,
        PRIO_FILTER,
        NfChainPolicy::Drop,
    )));
    let mut out: Vec<Vec<Statement<'static>>> = vec![
        vec![eq(meta(MetaKey::Oifname), string("lo")), accept()],
        vec![eq(meta(MetaKey::Oifname), string(&plan.tun)), accept()],
    ];
    for (family, items) in by_family(&peers) {
        if !items.is_empty() {
            out.push(vec![eq(payload(family, "daddr"), nets(&items)), accept()]);
        }
    }
    for (family, name, _) in SETS {
        out.push(vec![
            eq(payload(family, "daddr"), string(&format!("@{name}"))),
            accept(),
        ]);
    }
    out.push(vec![eq(payload("udp", "dport"), number(67)), accept()]);
    out.push(vec![
        eq(
            payload("ip6", "daddr"),
            nets(&[
                ("fe80::".parse().map_err(invalid)?, 10),
                ("ff02::".parse().map_err(invalid)?, 16),
            ]),
        ),
        accept(),
    ]);
    out.push(vec![counter(), Statement::Drop(None)]);
    for rule in out {
        b.add(NfListObject::Rule(TABLE.rule("output", rule)));
    }

    b.add(NfListObject::Chain(TABLE.base_chain(
        "input",
        NfChainType::Filter,
        NfHook::Input,
        PRIO_FILTER,
        NfChainPolicy::Drop,
    )));
    let mut inp: Vec<Vec<Statement<'static>>> = vec![
        vec![eq(meta(MetaKey::Iifname), string("lo")), accept()],
        vec![eq(meta(MetaKey::Iifname), string(&plan.tun)), accept()],
        vec![
            one_of(ct("state"), vec![string("established"), string("related")]),
            accept(),
        ],
    ];
    for (family, name, _) in SETS {
        inp.push(vec![
            eq(payload(family, "saddr"), string(&format!("@{name}"))),
            accept(),
        ]);
    }
    inp.push(vec![
        eq(payload("udp", "sport"), number(67)),
        eq(payload("udp", "dport"), number(68)),
        accept(),
    ]);
    inp.push(vec![
        eq(payload("ip6", "saddr"), prefix("fe80::", 10)),
        accept(),
    ]);
    inp.push(vec![counter(), Statement::Drop(None)]);
    for rule in inp {
        b.add(NfListObject::Rule(TABLE.rule("input", rule)));
    }
    to_json(b)
}

fn invalid(e: std::net::AddrParseError) -> NetcfgError {
    NetcfgError::InvalidPlan(e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_batch_lets_through_only_what_the_plan_names() {
        let plan = KillSwitchPlan {
            tun: "aura0".into(),
            peers: vec![
                "203.0.113.7".parse().unwrap(),
                "2001:db8::7".parse().unwrap(),
            ],
            direct: vec![("192.168.0.0".parse().unwrap(), 16)],
        };
        let json = apply_batch(&plan).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let text = v.to_string();
        for needle in [
            "\"aura_client\"",
            "\"policy\":\"drop\"",
            "\"aura0\"",
            "203.0.113.7",
            "2001:db8::7",
            "192.168.0.0",
            "fe80::",
        ] {
            assert!(text.contains(needle), "{needle} missing: {text}");
        }
        // Without peers of one family, no empty set is emitted (nft refuses those).
        let v4_only = KillSwitchPlan {
            peers: vec!["203.0.113.7".parse().unwrap()],
            direct: vec![],
            ..plan.clone()
        };
        let text = apply_batch(&v4_only).unwrap();
        assert!(!text.contains("\"set\":[]"), "{text}");
        assert!(
            apply_batch(&KillSwitchPlan {
                tun: "bad name".into(),
                ..plan
            })
            .is_err()
        );
    }

    #[test]
    fn nested_networks_leave_the_sets() {
        let n = |s: &str, p: u8| (s.parse::<IpAddr>().unwrap(), p);
        assert_eq!(
            disjoint(&[
                n("10.1.0.0", 16),
                n("10.0.0.0", 8),
                n("10.0.0.0", 8),
                n("192.0.2.1", 32),
                n("fd00::", 8),
                n("fd00::1", 128)
            ]),
            vec![n("10.0.0.0", 8), n("192.0.2.1", 32), n("fd00::", 8)]
        );
        let text = set_batch(&[n("192.0.2.0", 24)]).unwrap();
        assert!(
            text.contains("\"flush\"") && text.contains("direct6") && text.contains("192.0.2.0"),
            "{text}"
        );
        assert!(!text.contains("\"elem\":[]"), "{text}");
    }
}
