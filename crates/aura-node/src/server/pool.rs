//! The server's pool of tunnel addresses.
//!
//! The network address, the broadcast address and the server's own address are never
//! handed out. Addresses of the static map belong to their clients alone: a dynamic client
//! never gets one, even while its owner is offline. An address returns to the pool when
//! its client disconnects.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

use aura_config::{Ipv4Cidr, PoolSection, PoolStrategy};

/// Why a client got no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// `static_only` and the client is not in the static map.
    /// The id is not in the message: the caller logs it, redacted when asked (review L4).
    #[error("the client is not in the static map and the pool is static_only")]
    NotAllowed(String),
    /// Every dynamic address is taken.
    #[error("the address pool is exhausted")]
    Exhausted,
}

/// Assigns tunnel addresses to client ids.
#[derive(Debug, Clone)]
pub struct IpPool {
    cidr: Ipv4Cidr,
    strategy: PoolStrategy,
    server: Ipv4Addr,
    statics: BTreeMap<String, Ipv4Addr>,
    static_addrs: BTreeSet<Ipv4Addr>,
    assigned: HashMap<String, Ipv4Addr>,
    in_use: BTreeSet<Ipv4Addr>,
    /// Where the search for a free dynamic address resumes (round robin, so a released
    /// address is not reused at once).
    cursor: u32,
    /// The IPv6 pool (network, prefix length) when the pool is dual-stack: a client's IPv6
    /// address has its IPv4 host number.
    v6: Option<(Ipv6Addr, u8)>,
}

impl IpPool {
    /// A pool from the validated `[server.pool]` section.
    pub fn new(section: &PoolSection) -> Self {
        let server = section.server_address();
        let statics = if section.strategy == PoolStrategy::DynamicOnly {
            BTreeMap::new()
        } else {
            section.static_map.clone()
        };
        Self {
            cidr: section.cidr,
            strategy: section.strategy,
            server,
            static_addrs: statics.values().copied().collect(),
            statics,
            assigned: HashMap::new(),
            in_use: BTreeSet::new(),
            cursor: 0,
            v6: match (section.ipv6, section.pool6().addr()) {
                (true, std::net::IpAddr::V6(net)) => Some((net, section.pool6().prefix_len())),
                _ => None,
            },
        }
    }

    /// The IPv6 pool, when dual-stack.
    pub fn network6(&self) -> Option<(Ipv6Addr, u8)> {
        self.v6
    }

    /// The IPv6 address that goes with pool address `v4`, when dual-stack.
    pub fn address6_of(&self, v4: Ipv4Addr) -> Option<Ipv6Addr> {
        let (net, _) = self.v6?;
        if !self.cidr.contains(v4) {
            return None;
        }
        let host = u32::from(v4) - u32::from(self.cidr.network());
        Some(Ipv6Addr::from(u128::from(net) | u128::from(host)))
    }

    /// The pool address whose IPv6 twin is `v6`, if any.
    pub fn v4_of(&self, v6: Ipv6Addr) -> Option<Ipv4Addr> {
        let (net, prefix) = self.v6?;
        let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
        let bits = u128::from(v6);
        if bits & mask != u128::from(net) {
            return None;
        }
        let host = u32::try_from(bits & !mask).ok()?;
        let v4 = Ipv4Addr::from(u32::from(self.cidr.network()).checked_add(host)?);
        (self.cidr.contains(v4) && self.address6_of(v4) == Some(v6)).then_some(v4)
    }

    /// The server's own tunnel address.
    pub fn server_address(&self) -> Ipv4Addr {
        self.server
    }

    /// The pool's network and prefix length.
    pub fn network(&self) -> (Ipv4Addr, u8) {
        (self.cidr.network(), self.cidr.prefix_len())
    }

    fn reserved(&self, ip: Ipv4Addr) -> bool {
        ip == self.cidr.network() || ip == self.cidr.broadcast() || ip == self.server
    }

    /// The address for `client_id`: its static address, or a free dynamic one. A client
    /// already holding an address gets the same one again (a reconnect).
    ///
    /// # Errors
    /// [`PoolError::NotAllowed`] under `static_only` for an unlisted client;
    /// [`PoolError::Exhausted`] when no dynamic address is free.
    pub fn assign(&mut self, client_id: &str) -> Result<Ipv4Addr, PoolError> {
        if let Some(ip) = self.assigned.get(client_id) {
            return Ok(*ip);
        }
        let ip = match self.statics.get(client_id) {
            Some(ip) => *ip,
            None if self.strategy == PoolStrategy::StaticOnly => {
                return Err(PoolError::NotAllowed(client_id.to_owned()));
            }
            None => self.free_dynamic()?,
        };
        self.assigned.insert(client_id.to_owned(), ip);
        self.in_use.insert(ip);
        Ok(ip)
    }

    fn free_dynamic(&mut self) -> Result<Ipv4Addr, PoolError> {
        let base = u32::from(self.cidr.network());
        let size = u32::try_from(self.cidr.size()).unwrap_or(u32::MAX);
        for step in 0..size {
            let offset = (self.cursor.wrapping_add(step)) % size.max(1);
            let ip = Ipv4Addr::from(base.wrapping_add(offset));
            if !self.reserved(ip) && !self.static_addrs.contains(&ip) && !self.in_use.contains(&ip)
            {
                self.cursor = offset.wrapping_add(1);
                return Ok(ip);
            }
        }
        Err(PoolError::Exhausted)
    }

    /// Returns `client_id`'s address to the pool.
    pub fn release(&mut self, client_id: &str) {
        if let Some(ip) = self.assigned.remove(client_id) {
            self.in_use.remove(&ip);
        }
    }

    /// The address `client_id` holds, if any.
    pub fn address_of(&self, client_id: &str) -> Option<Ipv4Addr> {
        self.assigned.get(client_id).copied()
    }

    /// Addresses held by clients, and how many the pool can hand out (its size less
    /// the network, broadcast and server addresses; static addresses included).
    pub fn usage(&self) -> (u64, u64) {
        let reserved = [self.cidr.network(), self.cidr.broadcast(), self.server];
        let mut distinct = reserved.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let capacity = self.cidr.size().saturating_sub(distinct.len() as u64);
        (self.in_use.len() as u64, capacity)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn section(cidr: &str, strategy: PoolStrategy, statics: &[(&str, &str)]) -> PoolSection {
        PoolSection {
            cidr: cidr.parse().unwrap(),
            strategy,
            static_map: statics
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.parse().unwrap()))
                .collect(),
            ..PoolSection::default()
        }
    }

    #[test]
    fn usage_counts_held_addresses_against_the_capacity() {
        let mut p = IpPool::new(&section(
            "10.77.1.0/29",
            PoolStrategy::StaticOrDynamic,
            &[("alice", "10.77.1.5")],
        ));
        assert_eq!(p.usage(), (0, 5));
        p.assign("alice").unwrap();
        p.assign("bob").unwrap();
        p.assign("bob").unwrap();
        assert_eq!(p.usage(), (2, 5));
        p.release("alice");
        assert_eq!(p.usage(), (1, 5));
    }

    #[test]
    fn ipv6_twins_have_the_ipv4_host_number() {
        let mut sec = section("10.77.1.0/24", PoolStrategy::DynamicOnly, &[]);
        let p = IpPool::new(&sec);
        let v4: Ipv4Addr = "10.77.1.9".parse().unwrap();
        let v6: Ipv6Addr = "fd61:7572:6100::9".parse().unwrap();
        assert_eq!(p.address6_of(v4), Some(v6));
        assert_eq!(p.v4_of(v6), Some(v4));
        assert_eq!(
            p.network6(),
            Some(("fd61:7572:6100::".parse().unwrap(), 64))
        );
        for other in ["fd61:7572:6101::9", "fd61:7572:6100::1:9", "2001:db8::9"] {
            assert_eq!(p.v4_of(other.parse().unwrap()), None, "{other}");
        }
        assert_eq!(p.address6_of("10.77.2.9".parse().unwrap()), None);
        sec.ipv6 = false;
        let p = IpPool::new(&sec);
        assert_eq!(p.address6_of(v4), None);
        assert_eq!(p.v4_of(v6), None);
    }

    #[test]
    fn reserves_network_broadcast_and_server() {
        let mut p = IpPool::new(&section("10.9.0.0/29", PoolStrategy::DynamicOnly, &[]));
        assert_eq!(p.server_address(), "10.9.0.1".parse::<Ipv4Addr>().unwrap());
        let got: Vec<Ipv4Addr> = (0..5)
            .map(|i| p.assign(&format!("c{i}")).unwrap())
            .collect();
        for ip in &got {
            let last = ip.octets()[3];
            assert!((2..=6).contains(&last), "{ip}");
        }
        assert_eq!(p.assign("c5"), Err(PoolError::Exhausted));
        // Released addresses return to the pool.
        p.release("c2");
        assert!(p.assign("c5").is_ok());
        assert_eq!(p.assign("c6"), Err(PoolError::Exhausted));
    }

    #[test]
    fn static_addresses_are_honoured_and_kept_from_others() {
        let mut p = IpPool::new(&section(
            "10.9.0.0/29",
            PoolStrategy::StaticOrDynamic,
            &[("alice", "10.9.0.2")],
        ));
        let others: Vec<Ipv4Addr> = (0..4)
            .map(|i| p.assign(&format!("c{i}")).unwrap())
            .collect();
        assert!(!others.contains(&"10.9.0.2".parse().unwrap()), "{others:?}");
        assert_eq!(
            p.assign("alice").unwrap(),
            "10.9.0.2".parse::<Ipv4Addr>().unwrap()
        );
        // A reconnect gets the same address.
        assert_eq!(p.assign("c0").unwrap(), others[0]);
        assert_eq!(p.assign("c9"), Err(PoolError::Exhausted));
    }

    #[test]
    fn static_only_refuses_unlisted_clients() {
        let mut p = IpPool::new(&section(
            "10.9.0.0/24",
            PoolStrategy::StaticOnly,
            &[("alice", "10.9.0.20")],
        ));
        assert_eq!(p.assign("bob"), Err(PoolError::NotAllowed("bob".into())));
        assert_eq!(
            p.assign("alice").unwrap(),
            "10.9.0.20".parse::<Ipv4Addr>().unwrap()
        );
    }
}
