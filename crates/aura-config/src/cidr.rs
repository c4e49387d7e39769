//! An IPv4 network written `a.b.c.d/len`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// An IPv4 network in CIDR notation, kept as written: [`Ipv4Cidr::has_host_bits`] tells
/// whether the address part is the network address (validation insists it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

/// Why a string is not a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input} is not a valid CIDR: {reason}")]
pub struct CidrParseError {
    input: String,
    reason: &'static str,
}

impl Ipv4Cidr {
    /// `addr/prefix`; `None` when `prefix` is over 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then_some(Self { addr, prefix })
    }

    /// `addr/prefix` with `prefix` capped at 32.
    pub(crate) const fn clamped(addr: Ipv4Addr, prefix: u8) -> Self {
        Self {
            addr,
            prefix: if prefix > 32 { 32 } else { prefix },
        }
    }

    /// The address as written.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length, 0..=32.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The broadcast address (host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether the address as written has host bits set (`10.8.0.1/24`).
    pub fn has_host_bits(&self) -> bool {
        self.addr != self.network()
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// The number of addresses in the network, network and broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The first address after the network address (wraps to the network address for
    /// a /32).
    pub fn first_host(&self) -> Ipv4Addr {
        let net = u32::from(self.network());
        if self.prefix >= 32 {
            Ipv4Addr::from(net)
        } else {
            Ipv4Addr::from(net.wrapping_add(1))
        }
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| CidrParseError {
            input: s.to_owned(),
            reason,
        };
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| err("expected ADDRESS/PREFIX, e.g. 10.77.0.0/24"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| err("the address part is not an IPv4 address"))?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() > 2 {
            return Err(err("the prefix length must be a number in 0..=32"));
        }
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| err("the prefix length must be a number in 0..=32"))?;
        Ipv4Cidr::new(addr, prefix).ok_or_else(|| err("the prefix length must be in 0..=32"))
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn arithmetic() {
        let c: Ipv4Cidr = "10.77.0.0/24".parse().unwrap();
        assert_eq!(c.network(), Ipv4Addr::new(10, 77, 0, 0));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 77, 0, 255));
        assert_eq!(c.first_host(), Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(c.size(), 256);
        assert!(c.contains(Ipv4Addr::new(10, 77, 0, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 77, 1, 0)));
        assert!(!c.has_host_bits());
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert_eq!(all.size(), 1 << 32);
        assert_eq!(all.broadcast(), Ipv4Addr::BROADCAST);
        let one: Ipv4Cidr = "10.1.2.3/32".parse().unwrap();
        assert_eq!((one.network(), one.broadcast()), (one.addr(), one.addr()));
        assert!("10.8.0.1/24".parse::<Ipv4Cidr>().unwrap().has_host_bits());
    }

    #[test]
    fn rejects() {
        for bad in [
            "10.8.0.0/33",
            "10.8.0.0",
            "10.8.0/24",
            "10.8.0.0/",
            "10.8.0.0/+8",
            "x/8",
        ] {
            let e = bad.parse::<Ipv4Cidr>().unwrap_err().to_string();
            assert!(e.starts_with(&format!("{bad} is not a valid CIDR")), "{e}");
        }
    }
}
