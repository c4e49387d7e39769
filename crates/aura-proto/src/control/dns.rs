//! The DNS family: the server names the resolvers the client should use while the tunnel is
//! up ([`DnsAssign`]).
//!
//! | kind | payload |
//! |---|---|
//! | 8 `DnsAssign` | `count u8 ‖ count × (family u8 (4 or 6) ‖ address (4 or 16))`, count ≤ [`DnsAssign::MAX_SERVERS`] |
//!
//! Like an address assignment, a resolver list is validated on both sides: a server cannot
//! send, and a client never accepts, a list with an address no resolver can have.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::envelope::{ControlError, ControlKind, payload_buf};

/// Address family byte of an IPv4 resolver.
const FAMILY_V4: u8 = 4;
/// Address family byte of an IPv6 resolver.
const FAMILY_V6: u8 = 6;
/// Encoded length of one IPv4 entry, in bytes: family + address.
const ENTRY_V4_LEN: usize = 1 + 4;
/// Encoded length of one IPv6 entry, in bytes: family + address.
const ENTRY_V6_LEN: usize = 1 + 16;

/// `DnsAssign` payload (server to client, right before every [`AddressAssign`](super::AddressAssign)):
/// the DNS resolvers the client should use while the tunnel is up, in order of preference.
///
/// Wire form: `count (1) ‖ count × (family (1) ‖ address (4 or 16))`, the family being 4 or 6.
/// A count of zero is valid: the server names no resolver and the client keeps its own.
///
/// Decoding is canonical and strict: at most [`Self::MAX_SERVERS`] entries, no duplicates,
/// no truncated entry and no trailing byte, and no address a resolver cannot have: the
/// unspecified address, loopback, multicast, the IPv4 broadcast address `255.255.255.255`,
/// and IPv4-mapped IPv6 (`::ffff:a.b.c.d`, which must be sent as family 4 instead).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DnsAssign {
    /// The resolvers, in order of preference (empty: the server names none).
    pub servers: Vec<IpAddr>,
}

impl DnsAssign {
    /// The envelope kind of this payload.
    pub const KIND: ControlKind = ControlKind::DnsAssign;

    /// Largest number of resolvers a `DnsAssign` may carry.
    pub const MAX_SERVERS: usize = 8;

    /// Checks the invariants listed on the type.
    ///
    /// # Errors
    /// [`ControlError::BadDns`] naming the broken one (for a duplicate, or an unusable address,
    /// the first entry that breaks it, in order).
    pub fn validate(&self) -> Result<(), ControlError> {
        if self.servers.len() > Self::MAX_SERVERS {
            return Err(too_many());
        }
        for (i, &ip) in self.servers.iter().enumerate() {
            check_server(ip)?;
            if self.servers.iter().take(i).any(|&earlier| earlier == ip) {
                return Err(duplicate());
            }
        }
        Ok(())
    }

    /// Decodes a `DnsAssign` payload and validates it.
    ///
    /// # Errors
    /// [`ControlError::PayloadTruncated`] if the payload is empty or an entry is cut short,
    /// [`ControlError::PayloadLength`] if bytes follow the last entry, [`ControlError::BadDns`]
    /// for a count over [`Self::MAX_SERVERS`], a family other than 4 or 6, a duplicate or an
    /// unusable address.
    pub fn decode(payload: &[u8]) -> Result<Self, ControlError> {
        let truncated = |needed: usize| ControlError::PayloadTruncated {
            kind: Self::KIND,
            needed,
            have: payload.len(),
        };
        let Some((&count, mut rest)) = payload.split_first() else {
            return Err(truncated(1));
        };
        let count = usize::from(count);
        if count > Self::MAX_SERVERS {
            return Err(too_many());
        }
        let mut servers = Vec::with_capacity(count);
        for _ in 0..count {
            // Bytes consumed so far, to report how many the entry needs.
            let used = payload.len().saturating_sub(rest.len());
            let Some((&family, after_family)) = rest.split_first() else {
                return Err(truncated(used.saturating_add(1)));
            };
            let (ip, after) = match family {
                FAMILY_V4 => {
                    let Some((octets, after)) = after_family.split_first_chunk::<4>() else {
                        return Err(truncated(used.saturating_add(ENTRY_V4_LEN)));
                    };
                    (IpAddr::V4(Ipv4Addr::from(*octets)), after)
                }
                FAMILY_V6 => {
                    let Some((octets, after)) = after_family.split_first_chunk::<16>() else {
                        return Err(truncated(used.saturating_add(ENTRY_V6_LEN)));
                    };
                    (IpAddr::V6(Ipv6Addr::from(*octets)), after)
                }
                _ => return Err(ControlError::BadDns("address family must be 4 or 6")),
            };
            check_server(ip)?;
            if servers.contains(&ip) {
                return Err(duplicate());
            }
            servers.push(ip);
            rest = after;
        }
        if !rest.is_empty() {
            return Err(ControlError::PayloadLength {
                kind: Self::KIND,
                expected: payload.len().saturating_sub(rest.len()),
                actual: payload.len(),
            });
        }
        Ok(Self { servers })
    }

    /// Length of the encoded payload in bytes: 1, plus 5 per IPv4 and 17 per IPv6 resolver.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        self.servers.iter().fold(1, |len, ip| {
            len.saturating_add(match ip {
                IpAddr::V4(_) => ENTRY_V4_LEN,
                IpAddr::V6(_) => ENTRY_V6_LEN,
            })
        })
    }

    /// Encodes the payload into `out`, without allocating, and returns the number of bytes
    /// written. The list is validated before anything is written.
    ///
    /// # Errors
    /// [`ControlError::BadDns`], or [`ControlError::BufferTooSmall`] if `out` is shorter than
    /// [`Self::encoded_len`].
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, ControlError> {
        self.validate()?;
        let len = self.encoded_len();
        let have = out.len();
        let too_small = || ControlError::BufferTooSmall { needed: len, have };
        let count = u8::try_from(self.servers.len()).map_err(|_| too_many())?;
        let buf = payload_buf(out, len)?;
        let (first, mut rest) = buf.split_first_mut().ok_or_else(too_small)?;
        *first = count;
        for ip in &self.servers {
            let (family, after_family) = rest.split_first_mut().ok_or_else(too_small)?;
            rest = match ip {
                IpAddr::V4(v4) => {
                    *family = FAMILY_V4;
                    let (octets, after) = after_family
                        .split_first_chunk_mut::<4>()
                        .ok_or_else(too_small)?;
                    *octets = v4.octets();
                    after
                }
                IpAddr::V6(v6) => {
                    *family = FAMILY_V6;
                    let (octets, after) = after_family
                        .split_first_chunk_mut::<16>()
                        .ok_or_else(too_small)?;
                    *octets = v6.octets();
                    after
                }
            };
        }
        Ok(len)
    }
}

/// The error for a list over [`DnsAssign::MAX_SERVERS`].
const fn too_many() -> ControlError {
    ControlError::BadDns("more than 8 resolvers")
}

/// The error for a resolver listed twice.
const fn duplicate() -> ControlError {
    ControlError::BadDns("duplicate resolver")
}

/// Rejects an address no resolver can have.
fn check_server(ip: IpAddr) -> Result<(), ControlError> {
    let problem = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => "unspecified resolver address",
        IpAddr::V4(v4) if v4.is_loopback() => "loopback resolver address",
        IpAddr::V4(v4) if v4.is_multicast() => "multicast resolver address",
        IpAddr::V4(v4) if v4.is_broadcast() => "broadcast resolver address",
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
            "IPv4-mapped IPv6 resolver address (send it as family 4)"
        }
        IpAddr::V6(v6) if v6.is_unspecified() => "unspecified resolver address",
        IpAddr::V6(v6) if v6.is_loopback() => "loopback resolver address",
        IpAddr::V6(v6) if v6.is_multicast() => "multicast resolver address",
        IpAddr::V4(_) | IpAddr::V6(_) => return Ok(()),
    };
    Err(ControlError::BadDns(problem))
}
