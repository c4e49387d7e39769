//! `[tunnel.split]` and `[tunnel.os_routes]`: what the client sends outside the tunnel
//! (DIRECT), what it sends through it (VPN), and how it routes.
//!
//! ```toml
//! [[tunnel.split.direct]]
//! cidr = "192.168.0.0/16"        # the home network, outside the tunnel
//!
//! [[tunnel.split.vpn]]
//! cidr = "192.168.50.0/24"       # but this part of it through the tunnel
//!
//! [tunnel.os_routes]
//! enabled = true                 # false: no routes at all (route it yourself)
//! dry_run = false                # true: print the plan, change nothing
//! gateway = "192.168.1.1"        # DIRECT next hop (default: each one's current path)
//! egress_iface = "eth0"          # DIRECT interface (default: each one's current path)
//! ```
//!
//! Everything else goes through the tunnel. Where rules nest, the longest prefix wins
//! (as the kernel routes): a VPN rule inside a DIRECT one goes through the tunnel.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;

use crate::common::check_iface_name;
use crate::error::Problems;

/// An IPv4 or IPv6 network in CIDR notation, its address the network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpCidr {
    addr: IpAddr,
    prefix: u8,
}

impl<'de> Deserialize<'de> for IpCidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl IpCidr {
    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpCidr {
    type Err = String;

    /// `a.b.c.d/len`, `x:y::/len`, or a bare address (a /32 or /128). The address must be
    /// the network's: host bits set are refused, naming the network meant.
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not a CIDR (an IPv4 or IPv6 address, '/', a length)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        let network = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        if network != addr {
            return Err(format!(
                "{s:?} has host bits set (the network is {network}/{prefix})"
            ));
        }
        Ok(Self { addr, prefix })
    }
}

/// A domain rule's pattern: `example.com` (that name only) or `*.example.com` (the name
/// and every name under it). Stored lowercase, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainPattern {
    /// The name (without `*.`).
    name: String,
    /// `*.`: names under it match too.
    subdomains: bool,
}

impl DomainPattern {
    /// Whether `qname` (any case, trailing dot or not) matches.
    pub fn matches(&self, qname: &str) -> bool {
        let q = qname.strip_suffix('.').unwrap_or(qname);
        if q.eq_ignore_ascii_case(&self.name) {
            return true;
        }
        self.subdomains
            && q.len() > self.name.len()
            && q.get(q.len() - self.name.len()..)
                .is_some_and(|tail| tail.eq_ignore_ascii_case(&self.name))
            && q.as_bytes().get(q.len() - self.name.len() - 1) == Some(&b'.')
    }

    /// How specific it is: a longer name is more specific, and an exact name more than
    /// `*.` over the same name.
    pub fn specificity(&self) -> (usize, bool) {
        (self.name.len(), !self.subdomains)
    }
}

impl std::fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.subdomains {
            f.write_str("*.")?;
        }
        f.write_str(&self.name)
    }
}

impl std::str::FromStr for DomainPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (subdomains, rest) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let name = rest.strip_suffix('.').unwrap_or(rest).to_ascii_lowercase();
        let bad = |why: &str| Err(format!("{s:?} is not a domain ({why})"));
        if name.is_empty() {
            return bad("empty");
        }
        if name.len() > 253 {
            return bad("longer than 253 characters");
        }
        if name.parse::<IpAddr>().is_ok() {
            return Err(format!("{s:?} is an IP address: write it as a cidr rule"));
        }
        for label in name.split('.') {
            if label.is_empty() {
                return bad("an empty label");
            }
            if label.len() > 63 {
                return bad("a label longer than 63 characters");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return bad("only letters, digits, '-' and '_' in labels, and '*.' in front");
            }
        }
        Ok(Self { name, subdomains })
    }
}

/// One rule: a network, or a domain.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitRule {
    /// A network (`10.0.0.0/8`, `2001:db8::/32`, or one address).
    #[serde(default)]
    pub cidr: Option<String>,
    /// A domain (`example.com`, or `*.example.com` for every name under it).
    #[serde(default)]
    pub domain: Option<String>,
}

/// `[tunnel.split]`: `[[tunnel.split.direct]]` and `[[tunnel.split.vpn]]` rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSection {
    /// Outside the tunnel, along the path the host used before the tunnel.
    #[serde(default)]
    pub direct: Vec<SplitRule>,
    /// Through the tunnel (everything is, unless a DIRECT rule says otherwise: these
    /// carve exceptions out of DIRECT rules).
    #[serde(default)]
    pub vpn: Vec<SplitRule>,
}

/// Which list a rule is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitKind {
    /// `[[tunnel.split.direct]]`.
    Direct,
    /// `[[tunnel.split.vpn]]`.
    Vpn,
}

impl SplitKind {
    /// `direct` or `vpn`.
    pub fn name(self) -> &'static str {
        match self {
            SplitKind::Direct => "direct",
            SplitKind::Vpn => "vpn",
        }
    }
}

/// The shortest DIRECT prefix: the tunnel's routes are two /1 halves, so a DIRECT route
/// must be more specific than them to win.
const MIN_DIRECT_PREFIX: u8 = 2;

impl SplitSection {
    /// The networks of `kind`'s rules, in order (after [`SplitSection::check`] passed,
    /// every rule has one).
    pub fn cidrs(&self, kind: SplitKind) -> Vec<IpCidr> {
        let rules = match kind {
            SplitKind::Direct => &self.direct,
            SplitKind::Vpn => &self.vpn,
        };
        rules
            .iter()
            .filter_map(|r| r.cidr.as_deref().and_then(|c| c.parse().ok()))
            .collect()
    }

    /// The domains of `kind`'s rules, in order.
    pub fn domains(&self, kind: SplitKind) -> Vec<DomainPattern> {
        let rules = match kind {
            SplitKind::Direct => &self.direct,
            SplitKind::Vpn => &self.vpn,
        };
        rules
            .iter()
            .filter_map(|r| r.domain.as_deref().and_then(|d| d.parse().ok()))
            .collect()
    }

    /// Whether any rule is a domain rule.
    pub fn has_domains(&self) -> bool {
        self.direct
            .iter()
            .chain(&self.vpn)
            .any(|r| r.domain.is_some())
    }

    pub(crate) fn check(&self, p: &mut Problems) {
        let mut seen: Vec<(IpCidr, String)> = Vec::new();
        let mut domains: Vec<(DomainPattern, String)> = Vec::new();
        for (kind, rules) in [
            (SplitKind::Direct, &self.direct),
            (SplitKind::Vpn, &self.vpn),
        ] {
            for (i, rule) in rules.iter().enumerate() {
                let key = format!("tunnel.split.{}[{i}]", kind.name());
                match (&rule.cidr, &rule.domain) {
                    (None, None) => p.push(&key, "needs cidr or domain".to_owned()),
                    (Some(_), Some(_)) => {
                        p.push(
                            &key,
                            "has both cidr and domain: one rule, one of them".to_owned(),
                        );
                    }
                    (None, Some(d)) => match d.parse::<DomainPattern>() {
                        Err(why) => p.push(format!("{key}.domain"), why),
                        Ok(pattern) => {
                            if let Some((_, first)) = domains.iter().find(|(d, _)| *d == pattern) {
                                p.push(
                                    format!("{key}.domain"),
                                    format!("{pattern} is already listed at {first}"),
                                );
                            } else {
                                domains.push((pattern, key.clone()));
                            }
                        }
                    },
                    (Some(c), None) => match c.parse::<IpCidr>() {
                        Err(why) => p.push(format!("{key}.cidr"), why),
                        Ok(cidr) => {
                            if kind == SplitKind::Direct && cidr.prefix_len() < MIN_DIRECT_PREFIX {
                                p.push(
                                    format!("{key}.cidr"),
                                    format!(
                                        "{cidr} is too broad: DIRECT rules need a prefix of at \
                                         least /{MIN_DIRECT_PREFIX} (to send everything outside \
                                         the tunnel, do not run it)"
                                    ),
                                );
                            }
                            if let Some((_, first)) = seen.iter().find(|(c, _)| *c == cidr) {
                                p.push(
                                    format!("{key}.cidr"),
                                    format!("{cidr} is already listed at {first}"),
                                );
                            } else {
                                seen.push((cidr, key.clone()));
                            }
                        }
                    },
                }
            }
        }
    }
}

/// `[tunnel.os_routes]`: how the client routes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsRoutes {
    /// Install routes (the tunnel's, the exclusions', the split rules'). Default `true`;
    /// `false` leaves routing to the operator (the TUN only gets its address).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Print the routing plan and change nothing. Default `false`.
    #[serde(default)]
    pub dry_run: bool,
    /// Next hop of DIRECT routes. Default: each destination's path before the tunnel.
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Interface of DIRECT routes. Default: each destination's path before the tunnel.
    #[serde(default)]
    pub egress_iface: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for OsRoutes {
    fn default() -> Self {
        Self {
            enabled: true,
            dry_run: false,
            gateway: None,
            egress_iface: None,
        }
    }
}

impl OsRoutes {
    pub(crate) fn check(&self, split: Option<&SplitSection>, p: &mut Problems) {
        if let Some(name) = &self.egress_iface
            && let Err(why) = check_iface_name(name)
        {
            p.push("tunnel.os_routes.egress_iface", format!("{name:?} {why}"));
        }
        if let Some(gw) = self.gateway
            && (gw.is_unspecified() || gw.is_multicast())
        {
            p.push(
                "tunnel.os_routes.gateway",
                format!("{gw} cannot be a next hop"),
            );
        }
        let has_rules = split.is_some_and(|s| !s.direct.is_empty() || !s.vpn.is_empty());
        if !self.enabled && has_rules {
            p.push(
                "tunnel.os_routes.enabled",
                "is false, but tunnel.split has rules: they are routes, and none would be \
                 installed"
                    .to_owned(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cidrs_parse_both_families_and_refuse_host_bits() {
        let c: IpCidr = "10.0.0.0/8".parse().unwrap();
        assert_eq!((c.to_string(), c.prefix_len()), ("10.0.0.0/8".into(), 8));
        assert!(c.contains("10.200.1.2".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let h: IpCidr = "198.18.0.2".parse().unwrap();
        assert_eq!(h.to_string(), "198.18.0.2/32");
        let v6: IpCidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        for (bad, says) in [
            ("10.0.0.1/8", "host bits set (the network is 10.0.0.0/8)"),
            ("10.0.0.0/33", "0 to 32"),
            ("2001:db8::/129", "0 to 128"),
            ("example.com", "not a CIDR"),
            ("10.0.0.0/x", "0 to 32"),
        ] {
            let e = bad.parse::<IpCidr>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn domain_patterns_match_names_and_subdomains() {
        let exact: DomainPattern = "Example.com.".parse().unwrap();
        let wild: DomainPattern = "*.example.com".parse().unwrap();
        assert_eq!(exact.to_string(), "example.com");
        assert_eq!(wild.to_string(), "*.example.com");
        assert!(exact.matches("example.com") && exact.matches("EXAMPLE.COM."));
        assert!(!exact.matches("www.example.com"));
        for q in ["example.com", "www.example.com", "a.b.Example.com."] {
            assert!(wild.matches(q), "{q}");
        }
        for q in ["badexample.com", "example.com.evil", "com", ""] {
            assert!(!wild.matches(q), "{q}");
        }
        assert!(exact.specificity() > wild.specificity());
        let deeper: DomainPattern = "*.cdn.example.com".parse().unwrap();
        assert!(deeper.specificity() > exact.specificity());
        for bad in ["", "*.", "a..b", "*", "a b", "1.2.3.4"] {
            assert!(bad.parse::<DomainPattern>().is_err(), "{bad}");
        }
    }
}
