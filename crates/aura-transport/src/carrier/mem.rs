//! The in-memory carrier: a network of named listeners inside one process, so tests run
//! whole servers and clients (through [`crate::listen::Listeners`] and
//! [`crate::dial::dial`]) without sockets or root.
//!
//! A [`MemNetwork`] maps addresses to listeners. A listener registers its address and
//! gets every link dialled to it; dialling an address with no listener fails at once, as
//! a refused connection would. A listener that goes away unregisters, so a server can stop
//! and a new one take its address while clients redial.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use super::link::{DatagramLink, mem_pair};

/// Links waiting to be taken by one listener.
const ACCEPT_QUEUE: usize = 256;

/// Listeners by address; clones share one network.
#[derive(Debug, Clone, Default)]
pub struct MemNetwork {
    listeners: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<DatagramLink>>>>,
}

/// A registered listener: links dialled to its address arrive on `incoming`. Dropping it
/// frees the address.
#[derive(Debug)]
pub struct MemListener {
    network: MemNetwork,
    addr: SocketAddr,
    /// Links from clients, each the server's end.
    pub incoming: mpsc::Receiver<DatagramLink>,
}

impl MemNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, mpsc::Sender<DatagramLink>>> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Listens on `addr`; `None` when another live listener holds it.
    pub fn listen(&self, addr: SocketAddr) -> Option<MemListener> {
        let mut table = self.table();
        if table.get(&addr).is_some_and(|tx| !tx.is_closed()) {
            return None;
        }
        let (tx, incoming) = mpsc::channel(ACCEPT_QUEUE);
        table.insert(addr, tx);
        Some(MemListener {
            network: self.clone(),
            addr,
            incoming,
        })
    }

    /// A link to the listener at `addr` (or, as with sockets, one on the unspecified
    /// address and the same port), seen from `from`; `None` when nothing listens there (or
    /// its queue is full).
    pub fn connect(&self, from: SocketAddr, addr: SocketAddr) -> Option<DatagramLink> {
        let any = SocketAddr::new(
            match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            },
            addr.port(),
        );
        let tx = {
            let table = self.table();
            table.get(&addr).or_else(|| table.get(&any))?.clone()
        };
        let (client, server) = mem_pair(from, addr);
        tx.try_send(server).ok()?;
        Some(client)
    }
}

impl MemListener {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MemListener {
    fn drop(&mut self) {
        // Closed first, so the entry to remove is the one whose channel is closed (a newer
        // listener on the same address keeps its open one).
        self.incoming.close();
        let mut table = self.network.table();
        if table.get(&self.addr).is_some_and(mpsc::Sender::is_closed) {
            table.remove(&self.addr);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn links_reach_the_listener_and_a_freed_address_is_reusable() {
        let net = MemNetwork::new();
        let at: SocketAddr = "192.0.2.1:8443".parse().unwrap();
        let from: SocketAddr = "198.51.100.2:40000".parse().unwrap();
        assert!(net.connect(from, at).is_none(), "nobody listens yet");
        let mut l = net.listen(at).unwrap();
        assert!(net.listen(at).is_none(), "the address is taken");
        let client = net.connect(from, at).unwrap();
        let mut server = l.incoming.recv().await.unwrap();
        assert_eq!(server.peer, from);
        client.outbound.send(vec![1, 2, 3]).await.unwrap();
        assert_eq!(server.inbound.recv().await.unwrap(), vec![1, 2, 3]);
        drop(l);
        assert!(net.connect(from, at).is_none(), "the listener is gone");
        assert!(net.listen(at).is_some(), "the address is free again");
        // A listener on the unspecified address takes links to any address on its port.
        let mut any = net.listen("0.0.0.0:443".parse().unwrap()).unwrap();
        let _client = net.connect(from, "192.0.2.9:443".parse().unwrap()).unwrap();
        assert_eq!(any.incoming.recv().await.unwrap().peer, from);
        assert!(
            net.connect(from, "192.0.2.9:444".parse().unwrap())
                .is_none()
        );
    }
}
