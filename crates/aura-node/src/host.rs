//! The host edges a daemon runs on: where its TUN devices come from, how it changes the
//! host's network configuration, how it reaches the network, and which wall clock it
//! checks certificates and CRLs with.
//!
//! Production passes [`Host::system`]: kernel TUN devices, the real routing table and
//! nftables, sockets, the system clock. Tests pass in-memory devices
//! ([`crate::device::TunFactory`]), [`HostConfig::in_memory`], an in-memory network and a
//! pinned clock, and run whole daemons without root in milliseconds.

use aura_netcfg::HostConfig;
use aura_transport::MemNetwork;
use rustls_pki_types::UnixTime;

use crate::device::{SystemTuns, TunFactory};

/// How a daemon reaches its peers.
#[derive(Debug, Clone, Default)]
pub enum Network {
    /// Real sockets on the configured carriers.
    #[default]
    System,
    /// The in-memory carrier only: the server listens on its UDP carrier's address
    /// (`listen`, `udp_port`) inside this network, and the client dials `server` at
    /// `udp_port`, whatever carriers the files list.
    Memory(MemNetwork),
}

/// Everything a daemon touches outside its own process.
#[derive(Debug)]
pub struct Host<T: TunFactory = SystemTuns> {
    /// Makes the TUN devices.
    pub tuns: T,
    /// Forwarding, NAT and routes, with their undo journal.
    pub netcfg: HostConfig,
    /// The carriers' network.
    pub network: Network,
    /// The wall clock: `UnixTime::now` in production.
    pub wall_clock: fn() -> UnixTime,
}

impl Host<SystemTuns> {
    /// The real host; `dry_run` logs host changes instead of making them.
    pub fn system(dry_run: bool) -> Self {
        Host::system_with(SystemTuns, dry_run)
    }
}

impl<T: TunFactory> Host<T> {
    /// The real host with TUN devices from `tuns` (a device kept from before a privilege
    /// drop, [`crate::device::KeptTun`]).
    pub fn system_with(tuns: T, dry_run: bool) -> Self {
        Self {
            tuns,
            netcfg: if dry_run {
                HostConfig::dry_run()
            } else {
                HostConfig::system()
            },
            network: Network::System,
            wall_clock: UnixTime::now,
        }
    }
}
