//! NAT for the server: MASQUERADE of the VPN pool toward the egress interface, in an
//! nftables table of Aura's own (`inet aura`).
//!
//! The ruleset is built here as typed `nftables` objects (pure, testable anywhere) and
//! handed to `nft -j -f -` as one batch, so it lands atomically or not at all. The batch
//! starts with `add table` + `delete table`, so whatever a crashed run left in the table
//! is replaced, never merged. Undo is one `delete table`.
//!
//! ```text
//! table inet aura {
//!     chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//!         ip saddr <pool> oifname "<egress>" counter masquerade }
//!     chain forward { type filter hook forward priority filter; policy accept;
//!         iifname "<tun>" oifname "<egress>" counter accept
//!         iifname "<egress>" oifname "<tun>" ct state established,related counter accept }
//! }
//! ```
//! The forward chain's policy is accept: it never blocks anything, it documents the
//! expected flows and counts them. (A drop in another table, e.g. Docker's, still wins:
//! nftables evaluates every base chain on a hook.)

use std::borrow::Cow;
use std::net::Ipv4Addr;

use nftables::batch::Batch;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix};
use nftables::schema::{Chain, NfListObject, Rule, Table};
use nftables::stmt::{Counter, Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::NetcfgError;

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
pub(crate) mod imp;
#[cfg(not(target_os = "linux"))]
#[path = "stub.rs"]
pub(crate) mod imp;

/// Aura's nftables table family.
pub const TABLE_FAMILY: &str = "inet";
/// Aura's nftables table name; nothing else is ever touched.
pub const TABLE_NAME: &str = "aura";
/// Priority of the postrouting NAT chain (`srcnat`).
const PRIO_SRCNAT: i32 = 100;
/// Priority of the forward filter chain (`filter`).
const PRIO_FILTER: i32 = 0;

/// What the server needs: masquerade the pool's source addresses toward the egress
/// interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatPlan {
    /// The VPN pool, network address and prefix length (host bits are masked off).
    pub pool: (Ipv4Addr, u8),
    /// The TUN device clients' traffic comes from.
    pub tun: String,
    /// Egress interface; `None`: the interface of the IPv4 default route.
    pub egress: Option<String>,
}

/// A [`NatPlan`] with the egress interface resolved and the pool normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedNat {
    pub(crate) pool: Ipv4Addr,
    pub(crate) prefix: u8,
    pub(crate) tun: String,
    pub(crate) egress: String,
}

impl ResolvedNat {
    pub(crate) fn new(plan: &NatPlan, egress: String) -> Result<Self, NetcfgError> {
        let (addr, prefix) = plan.pool;
        if prefix > 32 {
            return Err(NetcfgError::InvalidPlan(format!(
                "pool prefix /{prefix} is over 32"
            )));
        }
        crate::check_ifname(&plan.tun)?;
        crate::check_ifname(&egress)?;
        if plan.tun == egress {
            return Err(NetcfgError::InvalidPlan(format!(
                "the TUN device and the egress interface are both {egress:?}"
            )));
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Ok(Self {
            pool: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
            tun: plan.tun.clone(),
            egress,
        })
    }
}

fn table() -> Table<'static> {
    Table {
        family: NfFamily::INet,
        name: Cow::Borrowed(TABLE_NAME),
        handle: None,
    }
}

fn base_chain(name: &'static str, kind: NfChainType, hook: NfHook, prio: i32) -> Chain<'static> {
    Chain {
        family: NfFamily::INet,
        table: Cow::Borrowed(TABLE_NAME),
        name: Cow::Borrowed(name),
        _type: Some(kind),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }
}

fn rule(chain: &'static str, expr: Vec<Statement<'static>>) -> Rule<'static> {
    Rule {
        family: NfFamily::INet,
        table: Cow::Borrowed(TABLE_NAME),
        chain: Cow::Borrowed(chain),
        expr: Cow::Owned(expr),
        ..Rule::default()
    }
}

fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn string(s: &str) -> Expression<'static> {
    Expression::String(Cow::Owned(s.to_owned()))
}

fn counter() -> Statement<'static> {
    Statement::Counter(Counter::Anonymous(None))
}

fn to_json(batch: Batch<'_>) -> Result<String, NetcfgError> {
    serde_json::to_string(&batch.to_nftables())
        .map_err(|e| NetcfgError::InvalidPlan(format!("cannot encode the nftables batch: {e}")))
}

/// The one batch that (re)creates `inet aura` with the masquerade and forward rules.
pub(crate) fn apply_batch(nat: &ResolvedNat) -> Result<String, NetcfgError> {
    let mut b = Batch::new();
    // add + delete: removes a leftover table in the same transaction, never fails.
    b.add(NfListObject::Table(table()));
    b.delete(NfListObject::Table(table()));
    b.add(NfListObject::Table(table()));
    b.add(NfListObject::Chain(base_chain(
        "postrouting",
        NfChainType::NAT,
        NfHook::Postrouting,
        PRIO_SRCNAT,
    )));
    let saddr = Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed("ip"),
            field: Cow::Borrowed("saddr"),
        },
    )));
    let pool = Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(string(&nat.pool.to_string())),
        len: u32::from(nat.prefix),
    }));
    b.add(NfListObject::Rule(rule(
        "postrouting",
        vec![
            eq(saddr, pool),
            eq(meta(MetaKey::Oifname), string(&nat.egress)),
            counter(),
            Statement::Masquerade(None),
        ],
    )));
    b.add(NfListObject::Chain(base_chain(
        "forward",
        NfChainType::Filter,
        NfHook::Forward,
        PRIO_FILTER,
    )));
    b.add(NfListObject::Rule(rule(
        "forward",
        vec![
            eq(meta(MetaKey::Iifname), string(&nat.tun)),
            eq(meta(MetaKey::Oifname), string(&nat.egress)),
            counter(),
            Statement::Accept(None),
        ],
    )));
    let ct_state = Expression::Named(NamedExpression::CT(nftables::expr::CT {
        key: Cow::Borrowed("state"),
        family: None,
        dir: None,
    }));
    b.add(NfListObject::Rule(rule(
        "forward",
        vec![
            eq(meta(MetaKey::Iifname), string(&nat.egress)),
            eq(meta(MetaKey::Oifname), string(&nat.tun)),
            Statement::Match(Match {
                left: ct_state,
                right: Expression::List(vec![string("established"), string("related")]),
                op: Operator::IN,
            }),
            counter(),
            Statement::Accept(None),
        ],
    )));
    to_json(b)
}

/// The batch that removes `inet aura`, whether or not it exists (add + delete).
pub(crate) fn delete_batch() -> Result<String, NetcfgError> {
    let mut b = Batch::new();
    b.add(NfListObject::Table(table()));
    b.delete(NfListObject::Table(table()));
    to_json(b)
}

/// How a batch is shown in [`HostConfig::planned`](crate::HostConfig::planned).
pub(crate) fn show_batch(payload: &str) -> String {
    format!("nft -j -f - <<< '{payload}'")
}

/// Whether `nft -j list tables` output names Aura's table.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn tables_contain_aura(json: &str) -> Result<bool, NetcfgError> {
    let parsed: nftables::schema::Nftables<'_> =
        serde_json::from_str(json).map_err(|e| NetcfgError::Io {
            action: "parsing `nft -j list tables`".into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
    Ok(parsed.objects.iter().any(|o| {
        matches!(o, nftables::schema::NfObject::ListObject(NfListObject::Table(t))
            if t.family == NfFamily::INet && t.name == TABLE_NAME)
    }))
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

    #[test]
    fn parses_table_listing() {
        let with = r#"{"nftables":[{"metainfo":{"version":"1.0.6","release_name":"Lester Gooch #5","json_schema_version":1}},{"table":{"family":"ip","name":"nat","handle":1}},{"table":{"family":"inet","name":"aura","handle":2}}]}"#;
        assert!(tables_contain_aura(with).unwrap());
        let without = r#"{"nftables":[{"metainfo":{"version":"1.0.6","release_name":"x","json_schema_version":1}},{"table":{"family":"ip","name":"aura","handle":1}}]}"#;
        assert!(!tables_contain_aura(without).unwrap());
        assert!(tables_contain_aura("not json").is_err());
    }
}
