//! The address family: the client asks for its tunnel address ([`AddressRequest`]) and
//! the server assigns it ([`AddressAssign`]).
//!
//! | kind | payload |
//! |---|---|
//! | 6 `AddressAssign` | `address (4) ‖ prefix_len u8 ‖ gateway (4) ‖ u16_be mtu` (exactly 11 bytes) |
//! | 7 `AddressRequest` | empty |
//!
//! An assignment is validated on both sides: a server cannot send, and a client never
//! accepts, an address it could not use.

use std::net::Ipv4Addr;

use super::envelope::{ControlError, ControlKind, expect_empty, payload_buf};

/// Payload length of an [`AddressAssign`], in bytes: address + prefix + gateway + MTU.
const ADDRESS_ASSIGN_LEN: usize = 4 + 1 + 4 + 2;

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
