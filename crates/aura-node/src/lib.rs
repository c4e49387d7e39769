//! Aura's daemons: the multi-client server (IP pool, dispatch by tunnel address,
//! anti-spoofing, NAT) and the client (dial, TUN, routes, reconnect), with the admin
//! socket. The only crate that knows the async runtime.
//!
//! Built so far: the IP pool ([`pool`]), the admin socket protocol ([`admin`]), and the
//! server's routing core ([`router`]) over any [`packet::PacketIo`] device.

pub mod admin;
pub mod packet;
pub mod pool;
pub mod router;
