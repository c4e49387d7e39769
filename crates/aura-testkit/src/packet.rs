//! IP packets for tests of code that reads IP headers (dispatch by address,
//! anti-spoofing).

use std::net::{Ipv4Addr, Ipv6Addr};

/// An IPv4 packet (20-byte header, no options, protocol UDP, TTL 64) from `src` to `dst`
/// carrying `payload`. The checksum is left zero: nothing under test checks it.
///
/// # Panics
/// When the packet would exceed 65,535 bytes.
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    let len = u16::try_from(20 + payload.len()).unwrap_or_else(|_| panic!("packet too long"));
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// An IPv6 packet (40-byte header, next header UDP, hop limit 64) from `src` to `dst`
/// carrying `payload`.
///
/// # Panics
/// When the payload exceeds 65,535 bytes.
pub fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    let len = u16::try_from(payload.len()).unwrap_or_else(|_| panic!("payload too long"));
    p[4..6].copy_from_slice(&len.to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}
