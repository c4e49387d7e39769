//! IPv4 forwarding (`net.ipv4.ip_forward`): switched on for the server, the previous
//! value remembered and written back on undo.

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
pub(crate) mod imp;
#[cfg(not(target_os = "linux"))]
#[path = "stub.rs"]
pub(crate) mod imp;

/// The sysctl Aura changes.
pub const IP_FORWARD: &str = "net.ipv4.ip_forward";
