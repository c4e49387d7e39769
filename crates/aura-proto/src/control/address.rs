//! The address family: the client asks for its tunnel address ([`AddressRequest`]) and
//! the server assigns it ([`AddressAssign`], preceded by [`AddressAssign6`] when its pool is
//! dual-stack).
//!
//! | kind | payload |
//! |---|---|
//! | 6 `AddressAssign` | `address (4) ‖ prefix_len u8 ‖ gateway (4) ‖ u16_be mtu` (exactly 11 bytes) |
//! | 7 `AddressRequest` | empty |
//! | 9 `AddressAssign6` | `address (16) ‖ prefix_len u8 ‖ gateway (16)` (exactly 33 bytes) |
//!
//! An assignment is validated on both sides: a server cannot send, and a client never
//! accepts, an address it could not use.
//!
//! The server sends an [`AddressAssign6`] right before each [`AddressAssign`] (on the wire:
//! `DnsAssign`, `AddressAssign6`, `AddressAssign`), after the handshake and in answer to
//! every [`AddressRequest`], and only when its pool has IPv6; the tunnel MTU is the one in
//! the [`AddressAssign`]. A client that gets no [`AddressAssign6`] has no IPv6 in the tunnel
//! and must keep IPv6 from leaking: it routes IPv6 into the TUN and drops it there. Older
//! peers skip kind 9 as unknown.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::envelope::{ControlError, ControlKind, expect_empty, payload_buf};

/// Payload length of an [`AddressAssign`], in bytes: address + prefix + gateway + MTU.
const ADDRESS_ASSIGN_LEN: usize = 4 + 1 + 4 + 2;

/// Payload length of an [`AddressAssign6`], in bytes: address + prefix + gateway.
const ADDRESS_ASSIGN6_LEN: usize = 16 + 1 + 16;

/// `AddressAssign` payload (server to client, right after the handshake and again whenever it
/// changes): the client's tunnel address, its network's prefix length, the server's own
/// tunnel address (the gateway) and the tunnel MTU the server uses.
///
/// Wire form (11 bytes): `address (4) ‖ prefix_len (1) ‖ gateway (4) ‖ mtu (u16_be)`.
/// Decoding checks that the prefix is 1 to 30 bits (30 is the smallest pool: network,
/// server, one client, broadcast), that the address and the gateway are distinct hosts of
/// the same network, neither its network nor its broadcast address, and that the MTU is
/// at least 576 (the IPv4 minimum datagram every host must accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressAssign {
    /// The client's tunnel address.
    pub address: Ipv4Addr,
    /// Prefix length of the tunnel network.
    pub prefix_len: u8,
    /// The server's tunnel address.
    pub gateway: Ipv4Addr,
    /// Tunnel MTU, in bytes.
    pub mtu: u16,
}

impl AddressAssign {
    /// The envelope kind of this payload.
    pub const KIND: ControlKind = ControlKind::AddressAssign;

    /// Smallest MTU an assignment may carry.
    pub const MIN_MTU: u16 = 576;

    /// Checks the invariants listed on the type.
    ///
    /// # Errors
    /// [`ControlError::BadAssignment`] naming the broken one.
    pub fn validate(&self) -> Result<(), ControlError> {
        if !(1..=30).contains(&self.prefix_len) {
            return Err(ControlError::BadAssignment("prefix length must be 1 to 30"));
        }
        if self.mtu < Self::MIN_MTU {
            return Err(ControlError::BadAssignment("MTU below 576"));
        }
        let mask = u32::MAX << (32 - u32::from(self.prefix_len));
        let a = u32::from(self.address);
        let g = u32::from(self.gateway);
        if a & mask != g & mask {
            return Err(ControlError::BadAssignment(
                "address and gateway are in different networks",
            ));
        }
        if a == g {
            return Err(ControlError::BadAssignment("address equals the gateway"));
        }
        for host in [a, g] {
            let h = host & !mask;
            if h == 0 || h == !mask {
                return Err(ControlError::BadAssignment(
                    "network or broadcast address assigned",
                ));
            }
        }
        Ok(())
    }

    /// Decodes an `AddressAssign` payload (exactly 11 bytes) and validates it.
    ///
    /// # Errors
    /// [`ControlError::PayloadLength`] for another length, [`ControlError::BadAssignment`]
    /// when an invariant is broken.
    pub fn decode(payload: &[u8]) -> Result<Self, ControlError> {
        let bytes: [u8; ADDRESS_ASSIGN_LEN] =
            payload
                .try_into()
                .map_err(|_| ControlError::PayloadLength {
                    kind: Self::KIND,
                    expected: ADDRESS_ASSIGN_LEN,
                    actual: payload.len(),
                })?;
        let [a0, a1, a2, a3, prefix_len, g0, g1, g2, g3, m0, m1] = bytes;
        let assign = Self {
            address: Ipv4Addr::new(a0, a1, a2, a3),
            prefix_len,
            gateway: Ipv4Addr::new(g0, g1, g2, g3),
            mtu: u16::from_be_bytes([m0, m1]),
        };
        assign.validate()?;
        Ok(assign)
    }

    /// Length of the encoded payload in bytes: 11.
    #[must_use]
    pub const fn encoded_len(&self) -> usize {
        ADDRESS_ASSIGN_LEN
    }

    /// Encodes the payload into `out` and returns the number of bytes written.
    ///
    /// # Errors
    /// [`ControlError::BadAssignment`], or [`ControlError::BufferTooSmall`] if `out` is
    /// shorter than 11 bytes.
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, ControlError> {
        self.validate()?;
        let buf = payload_buf(out, ADDRESS_ASSIGN_LEN)?;
        let [a0, a1, a2, a3] = self.address.octets();
        let [g0, g1, g2, g3] = self.gateway.octets();
        let [m0, m1] = self.mtu.to_be_bytes();
        buf.copy_from_slice(&[a0, a1, a2, a3, self.prefix_len, g0, g1, g2, g3, m0, m1]);
        Ok(ADDRESS_ASSIGN_LEN)
    }
}

/// `AddressAssign6` payload (server to client, right before each [`AddressAssign`], only when
/// the server's pool is dual-stack): the client's IPv6 tunnel address, its prefix length and
/// the server's own IPv6 tunnel address (the gateway). The tunnel MTU is the one in the
/// [`AddressAssign`] that follows.
///
/// Wire form (33 bytes): `address (16) ‖ prefix_len (1) ‖ gateway (16)`.
/// Decoding checks that the prefix is 64 to 126 bits (126 is the smallest that leaves room
/// for the server and one client besides the all-zero address), that neither address is
/// unspecified, loopback, multicast, link-local (`fe80::/10`) or IPv4-mapped
/// (`::ffff:0:0/96`), and that the address and the gateway are distinct hosts of the same
/// prefix, neither its all-zero host (the subnet-router anycast address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressAssign6 {
    /// The client's IPv6 tunnel address.
    pub address: Ipv6Addr,
    /// Prefix length of the tunnel's IPv6 network.
    pub prefix_len: u8,
    /// The server's IPv6 tunnel address.
    pub gateway: Ipv6Addr,
}

impl AddressAssign6 {
    /// The envelope kind of this payload.
    pub const KIND: ControlKind = ControlKind::AddressAssign6;

    /// Checks the invariants listed on the type.
    ///
    /// # Errors
    /// [`ControlError::BadAssignment`] naming the broken one (for an unusable address, the
    /// client's address is checked before the gateway).
    pub fn validate(&self) -> Result<(), ControlError> {
        if !(64..=126).contains(&self.prefix_len) {
            return Err(ControlError::BadAssignment(
                "IPv6 prefix length must be 64 to 126",
            ));
        }
        for ip in [self.address, self.gateway] {
            check_v6(ip)?;
        }
        let mask = u128::MAX << (128 - u32::from(self.prefix_len));
        let a = u128::from(self.address);
        let g = u128::from(self.gateway);
        if a & mask != g & mask {
            return Err(ControlError::BadAssignment(
                "IPv6 address and gateway are in different prefixes",
            ));
        }
        if a == g {
            return Err(ControlError::BadAssignment(
                "IPv6 address equals the gateway",
            ));
        }
        if a & !mask == 0 || g & !mask == 0 {
            return Err(ControlError::BadAssignment(
                "subnet-router anycast address assigned",
            ));
        }
        Ok(())
    }

    /// Decodes an `AddressAssign6` payload (exactly 33 bytes) and validates it.
    ///
    /// # Errors
    /// [`ControlError::PayloadLength`] for another length, [`ControlError::BadAssignment`]
    /// when an invariant is broken.
    pub fn decode(payload: &[u8]) -> Result<Self, ControlError> {
        let wrong_length = || ControlError::PayloadLength {
            kind: Self::KIND,
            expected: ADDRESS_ASSIGN6_LEN,
            actual: payload.len(),
        };
        let (address, rest) = payload.split_first_chunk::<16>().ok_or_else(wrong_length)?;
        let (&prefix_len, gateway) = rest.split_first().ok_or_else(wrong_length)?;
        let gateway: [u8; 16] = gateway.try_into().map_err(|_| wrong_length())?;
        let assign = Self {
            address: Ipv6Addr::from(*address),
            prefix_len,
            gateway: Ipv6Addr::from(gateway),
        };
        assign.validate()?;
        Ok(assign)
    }

    /// Length of the encoded payload in bytes: 33.
    #[must_use]
    pub const fn encoded_len(&self) -> usize {
        ADDRESS_ASSIGN6_LEN
    }

    /// Encodes the payload into `out` and returns the number of bytes written.
    ///
    /// # Errors
    /// [`ControlError::BadAssignment`], or [`ControlError::BufferTooSmall`] if `out` is
    /// shorter than 33 bytes.
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, ControlError> {
        self.validate()?;
        let have = out.len();
        let too_small = || ControlError::BufferTooSmall {
            needed: ADDRESS_ASSIGN6_LEN,
            have,
        };
        let buf = payload_buf(out, ADDRESS_ASSIGN6_LEN)?;
        let (address, rest) = buf.split_first_chunk_mut::<16>().ok_or_else(too_small)?;
        *address = self.address.octets();
        let (prefix_len, gateway) = rest.split_first_mut().ok_or_else(too_small)?;
        *prefix_len = self.prefix_len;
        let gateway: &mut [u8; 16] = gateway.try_into().map_err(|_| too_small())?;
        *gateway = self.gateway.octets();
        Ok(ADDRESS_ASSIGN6_LEN)
    }
}

/// Rejects an IPv6 address no tunnel address (the client's or the gateway's) can be.
fn check_v6(ip: Ipv6Addr) -> Result<(), ControlError> {
    let problem = if ip.is_unspecified() {
        "unspecified IPv6 address assigned"
    } else if ip.is_loopback() {
        "loopback IPv6 address assigned"
    } else if ip.is_multicast() {
        "multicast IPv6 address assigned"
    } else if ip.is_unicast_link_local() {
        "link-local IPv6 address assigned (fe80::/10)"
    } else if ip.to_ipv4_mapped().is_some() {
        "IPv4-mapped IPv6 address assigned (::ffff:0:0/96)"
    } else {
        return Ok(());
    };
    Err(ControlError::BadAssignment(problem))
}

/// `AddressRequest` payload (client to server): empty. The client sends it when a session
/// starts and every second until an [`AddressAssign`] arrives; the server answers each one.
/// It is what makes a reconnect that the server's endpoint treats as a rekey of the same
/// connection (same client id) get its address again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AddressRequest;

impl AddressRequest {
    /// The envelope kind of this payload.
    pub const KIND: ControlKind = ControlKind::AddressRequest;

    /// Decodes an `AddressRequest` payload, which must be empty.
    ///
    /// # Errors
    /// [`ControlError::PayloadLength`] if `payload` is not empty.
    pub fn decode(payload: &[u8]) -> Result<Self, ControlError> {
        expect_empty(Self::KIND, payload).map(|()| Self)
    }
}
