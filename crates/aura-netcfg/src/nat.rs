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
//!         iifname "<tun>" oifname "<egress>" counter accept
//!         iifname "<egress>" oifname "<tun>" ct state established,related counter accept }
//! }
//! ```
//! The forward chain's policy is accept: it never blocks anything, it documents the
//! expected flows and counts them. (A drop in another table, e.g. Docker's, still wins:
//! nftables evaluates every base chain on a hook.)

use std::net::Ipv4Addr;

use nftables::batch::Batch;
use nftables::expr::MetaKey;
use nftables::schema::NfListObject;
use nftables::stmt::Statement;
use nftables::types::{NfChainPolicy, NfChainType, NfHook};

use crate::error::NetcfgError;
use crate::ifname::check_ifname;
use crate::nft::{self, AuraTable, counter, ct, eq, meta, one_of, payload, prefix, string};

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
        check_ifname(&plan.tun)?;
        check_ifname(&egress)?;
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
    b.add(NfListObject::Rule(TABLE.rule(
        "forward",
        vec![
            eq(meta(MetaKey::Iifname), string(&nat.tun)),
            eq(meta(MetaKey::Oifname), string(&nat.egress)),
            counter(),
            Statement::Accept(None),
        ],
    )));
    b.add(NfListObject::Rule(TABLE.rule(
        "forward",
        vec![
            eq(meta(MetaKey::Iifname), string(&nat.egress)),
            eq(meta(MetaKey::Oifname), string(&nat.tun)),
            one_of(ct("state"), vec![string("established"), string("related")]),
            counter(),
            Statement::Accept(None),
        ],
    )));
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
        assert!(TABLE.listed_in(with).unwrap());
        let without = r#"{"nftables":[{"metainfo":{"version":"1.0.6","release_name":"x","json_schema_version":1}},{"table":{"family":"ip","name":"aura","handle":1}}]}"#;
        assert!(!TABLE.listed_in(without).unwrap());
        assert!(TABLE.listed_in("not json").is_err());
    }
}
