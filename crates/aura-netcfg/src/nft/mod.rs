//! nftables, shared by every table Aura keeps (NAT today): typed builders for a table of
//! Aura's own, its base chains and rules, their JSON batch encoding, and the runner of
//! the `nft` binary (Debian package `nftables`), which takes a batch on stdin and
//! applies it atomically.
//!
//! Building is pure (testable anywhere); only [`apply`], [`has_table`] and
//! [`resolve_program`] touch the host, through `imp` (Linux) or a stub that returns
//! [`NetcfgError::Unsupported`].

use std::borrow::Cow;
use std::path::Path;

use nftables::batch::Batch;
use nftables::expr::{
    CT, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, SetItem,
};
use nftables::schema::{Chain, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{Counter, Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::error::NetcfgError;

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod imp;
#[cfg(not(target_os = "linux"))]
#[path = "stub.rs"]
mod imp;

pub(crate) use imp::{apply, resolve_program};

/// One nftables table of Aura's own, in family `inet`, and builders for its objects.
/// Aura only ever touches its own tables, whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuraTable {
    name: &'static str,
}

impl AuraTable {
    /// Table `inet <name>`.
    pub(crate) const fn inet(name: &'static str) -> Self {
        Self { name }
    }

    /// The table's name (in family `inet`).
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The table object.
    pub(crate) fn table(&self) -> Table<'static> {
        Table {
            family: NfFamily::INet,
            name: Cow::Borrowed(self.name),
            handle: None,
        }
    }

    /// A base chain of this table on `hook` at priority `prio`.
    pub(crate) fn base_chain(
        &self,
        name: &'static str,
        kind: NfChainType,
        hook: NfHook,
        prio: i32,
        policy: NfChainPolicy,
    ) -> Chain<'static> {
        Chain {
            family: NfFamily::INet,
            table: Cow::Borrowed(self.name),
            name: Cow::Borrowed(name),
            _type: Some(kind),
            hook: Some(hook),
            prio: Some(prio),
            policy: Some(policy),
            ..Chain::default()
        }
    }

    /// A rule in `chain` of this table.
    pub(crate) fn rule(&self, chain: &'static str, expr: Vec<Statement<'static>>) -> Rule<'static> {
        Rule {
            family: NfFamily::INet,
            table: Cow::Borrowed(self.name),
            chain: Cow::Borrowed(chain),
            expr: Cow::Owned(expr),
            ..Rule::default()
        }
    }

    /// A batch that starts by (re)creating the table empty: add + delete + add, so
    /// whatever an earlier run left in it is replaced in the same transaction, never
    /// merged, and the delete never fails. Add the chains and rules, then [`to_json`].
    pub(crate) fn replace_batch(&self) -> Batch<'static> {
        let mut b = Batch::new();
        b.add(NfListObject::Table(self.table()));
        b.delete(NfListObject::Table(self.table()));
        b.add(NfListObject::Table(self.table()));
        b
    }

    /// The batch that removes the table, whether or not it exists (add + delete).
    pub(crate) fn delete_batch(&self) -> Result<String, NetcfgError> {
        let mut b = Batch::new();
        b.add(NfListObject::Table(self.table()));
        b.delete(NfListObject::Table(self.table()));
        to_json(b)
    }

    /// Whether `nft -j list tables` output names this table.
    pub(crate) fn listed_in(&self, json: &str) -> Result<bool, NetcfgError> {
        let parsed: Nftables<'_> = serde_json::from_str(json).map_err(|e| NetcfgError::Io {
            action: "parsing `nft -j list tables`".into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        Ok(parsed.objects.iter().any(|o| {
            matches!(o, NfObject::ListObject(NfListObject::Table(t))
                if t.family == NfFamily::INet && t.name == self.name)
        }))
    }
}

/// `left == right`.
pub(crate) fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

/// `left` is one of `set`.
pub(crate) fn one_of(
    left: Expression<'static>,
    set: Vec<Expression<'static>>,
) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right: Expression::List(set),
        op: Operator::IN,
    })
}

/// `meta <key>`, e.g. `iifname`.
pub(crate) fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

/// A header field, e.g. `ip saddr`.
pub(crate) fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(field),
        },
    )))
}

/// A network, `<addr>/<len>`.
pub(crate) fn prefix(addr: &str, len: u32) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(string(addr)),
        len,
    }))
}

/// An anonymous set of networks, `{ a/n, b/m, ... }`, of one family (`Ipv4Addr` or
/// `Ipv6Addr`).
pub(crate) fn prefix_set<A: std::fmt::Display>(nets: &[(A, u8)]) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        nets.iter()
            .map(|(a, n)| SetItem::Element(prefix(&a.to_string(), u32::from(*n))))
            .collect(),
    ))
}

/// A number, e.g. a port.
pub(crate) fn number(n: u32) -> Expression<'static> {
    Expression::Number(n)
}

/// Conntrack's `ct <key>`, e.g. `state`.
pub(crate) fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: Cow::Borrowed(key),
        family: None,
        dir: None,
    }))
}

/// A string constant (interface names, addresses, conntrack states).
pub(crate) fn string(s: &str) -> Expression<'static> {
    Expression::String(Cow::Owned(s.to_owned()))
}

/// An anonymous `counter`.
pub(crate) fn counter() -> Statement<'static> {
    Statement::Counter(Counter::Anonymous(None))
}

/// The batch as the JSON `nft -j -f -` reads.
pub(crate) fn to_json(batch: Batch<'_>) -> Result<String, NetcfgError> {
    serde_json::to_string(&batch.to_nftables())
        .map_err(|e| NetcfgError::InvalidPlan(format!("cannot encode the nftables batch: {e}")))
}

/// How a batch is shown in [`HostConfig::planned`](crate::HostConfig::planned).
pub(crate) fn show_batch(payload: &str) -> String {
    format!("nft -j -f - <<< '{payload}'")
}

/// Whether `table` exists on the host (`nft -j list tables`).
pub(crate) async fn has_table(program: &Path, table: &AuraTable) -> Result<bool, NetcfgError> {
    let out = imp::list_tables(program).await?;
    table.listed_in(&out)
}
