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
//!         ip daddr { <DIRECT networks> } accept       # split tunnelling
//!         udp dport 67 accept                         # DHCPv4
//!         ip6 daddr { fe80::/10, ff02::/16 } accept   # IPv6 on the link: ND, DHCPv6
//!         counter drop
//!     }
//!     chain input { type filter hook input priority filter; policy drop;
//!         iifname "lo" accept
//!         iifname "aura0" accept
//!         ct state established,related accept
//!         ip saddr { <DIRECT networks> } accept
//!         udp sport 67 udp dport 68 accept
//!         ip6 saddr fe80::/10 accept
//!         counter drop
//!     }
//! }
//! ```
//! A table of its own, apart from the server's `inet aura`, so a client on a server host
//! and its crash cleanup never touch the server's rules. Forwarded traffic (containers,
//! VMs behind the client host) is not covered.

use std::net::IpAddr;

use nftables::batch::Batch;
use nftables::expr::{Expression, MetaKey, NamedExpression, SetItem};
use nftables::schema::NfListObject;
use nftables::stmt::Statement;
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

/// The batch that (re)creates `inet aura_client` for `plan`.
pub(crate) fn apply_batch(plan: &KillSwitchPlan) -> Result<String, NetcfgError> {
    check_ifname(&plan.tun)?;
    let mut b: Batch<'static> = TABLE.replace_batch();
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
    for list in [&peers, &plan.direct] {
        for (family, items) in by_family(list) {
            if !items.is_empty() {
                out.push(vec![eq(payload(family, "daddr"), nets(&items)), accept()]);
            }
        }
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
    for (family, items) in by_family(&plan.direct) {
        if !items.is_empty() {
            inp.push(vec![eq(payload(family, "saddr"), nets(&items)), accept()]);
        }
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
}
