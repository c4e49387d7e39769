//! The server's data path: one device read loop dispatching by destination address to
//! the right client, and one task per client writing its packets to the device, after
//! checking that each comes from the client's own tunnel address (anti-spoofing).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use aura_transport::{PacketConn, PacketSender};

use crate::packet::{PacketIo, ipv4_addrs};
use crate::pool::{IpPool, PoolError};

/// A connected client, as the router and `aura status` see it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Client id.
    pub id: String,
    /// Tunnel address.
    pub address: Ipv4Addr,
    /// Sending half of its connection.
    pub sender: PacketSender,
    /// Carrier name.
    pub carrier: &'static str,
    /// Network address.
    pub remote: String,
    /// Unix time it connected.
    pub since: u64,
}

/// Routing state shared by the device loop and the client tasks.
#[derive(Debug)]
pub struct Router {
    pool: Mutex<IpPool>,
    peers: RwLock<HashMap<Ipv4Addr, Peer>>,
    /// Packets dropped because their source was not the client's address.
    pub spoofed: AtomicU64,
    /// Packets from the device for an address with no client.
    pub unroutable: AtomicU64,
}

impl Router {
    /// A router over `pool`.
    pub fn new(pool: IpPool) -> Arc<Self> {
        Arc::new(Self {
            pool: Mutex::new(pool),
            peers: RwLock::new(HashMap::new()),
            spoofed: AtomicU64::new(0),
            unroutable: AtomicU64::new(0),
        })
    }

    /// Every connected client.
    pub fn peers(&self) -> Vec<Peer> {
        self.peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Reads the device forever, sending each IPv4 packet to the client owning its
    /// destination address.
    pub async fn device_loop<D: PacketIo>(self: Arc<Self>, device: Arc<D>) -> std::io::Result<()> {
        let mut buf = vec![0u8; 65_536];
        loop {
            let n = device.recv(&mut buf).await?;
            let packet = &buf[..n];
            let Some((_, dst)) = ipv4_addrs(packet) else {
                continue;
            };
            let sender = self
                .peers
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&dst)
                .map(|p| p.sender.clone());
            match sender {
                Some(s) => {
                    let _ = s.send_batch(vec![packet.to_vec()]).await;
                }
                None => {
                    self.unroutable.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Admits a connected client: assigns its address (refusing it when the pool says
    /// no), then writes its packets to the device until it disconnects, and returns the
    /// address to the pool.
    ///
    /// # Errors
    /// The pool's refusal (the connection is closed).
    pub async fn serve_client<D: PacketIo>(
        self: Arc<Self>,
        mut conn: PacketConn,
        device: Arc<D>,
        since: u64,
    ) -> Result<(), PoolError> {
        let id = conn.peer().id.clone();
        let assigned = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .assign(&id);
        let address = match assigned {
            Ok(a) => a,
            Err(e) => {
                conn.close().await;
                return Err(e);
            }
        };
        let peer = Peer {
            id: id.clone(),
            address,
            sender: conn.sender(),
            carrier: conn.carrier().name(),
            remote: conn.remote().to_string(),
            since,
        };
        self.peers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(address, peer);
        while let Some(p) = conn.recv().await {
            match ipv4_addrs(&p) {
                Some((src, _)) if src == address => {
                    let _ = device.send(&p).await;
                }
                _ => {
                    self.spoofed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let mut peers = self.peers.write().unwrap_or_else(PoisonError::into_inner);
        if peers.get(&address).is_some_and(|p| p.id == id) {
            peers.remove(&address);
        }
        drop(peers);
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release(&id);
        Ok(())
    }
}
