//! The few IP header fields the daemons look at.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Source and destination of an IPv4 packet; `None` for anything else (IPv6, control
/// envelopes, garbage).
pub fn ipv4_addrs(p: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    Some((src, dst))
}

/// Source and destination of an IPv6 packet; `None` for anything else.
pub fn ipv6_addrs(p: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr)> {
    if p.first()? >> 4 != 6 {
        return None;
    }
    let src: [u8; 16] = p.get(8..24)?.try_into().ok()?;
    let dst: [u8; 16] = p.get(24..40)?.try_into().ok()?;
    Some((Ipv6Addr::from(src), Ipv6Addr::from(dst)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_ipv4_addresses_and_refuses_others() {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[12..16].copy_from_slice(&[10, 0, 0, 2]);
        p[16..20].copy_from_slice(&[1, 1, 1, 1]);
        assert_eq!(
            ipv4_addrs(&p),
            Some(("10.0.0.2".parse().unwrap(), "1.1.1.1".parse().unwrap()))
        );
        p[0] = 0x60;
        assert_eq!(ipv4_addrs(&p), None);
        assert_eq!(ipv4_addrs(&p[..19]), None);
    }

    #[test]
    fn parses_ipv6_addresses_and_refuses_others() {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[8..24].copy_from_slice(&"fd61:7572:6100::2".parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(
            ipv6_addrs(&p),
            Some((
                "fd61:7572:6100::2".parse().unwrap(),
                "2001:db8::1".parse().unwrap()
            ))
        );
        assert_eq!(ipv6_addrs(&p[..39]), None);
        p[0] = 0x45;
        assert_eq!(ipv6_addrs(&p), None);
        assert_eq!(ipv6_addrs(&[]), None);
    }
}
