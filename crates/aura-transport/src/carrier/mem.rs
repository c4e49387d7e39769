//! The in-memory carrier: a network of named listeners inside one process, so tests run
//! whole servers and clients (through [`crate::listen::Listeners`] and
//! [`crate::dial::dial`]) without sockets or root.
//!
//! A [`MemNetwork`] maps addresses to listeners. A listener registers its address and
//! gets every link dialled to it; dialling an address with no listener fails at once, as
//! a refused connection would. Dropping the [`MemListener`] frees the address (links
//! already handed over live on), so a server can stop and a new one take its address
//! while clients redial.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;

use super::link::{DatagramLink, mem_pair};

/// Links waiting to be taken by one listener.
const ACCEPT_QUEUE: usize = 256;

#[derive(Debug, Default)]
struct Table {
    /// Listener id and its queue, by address.
    listeners: HashMap<SocketAddr, (u64, mpsc::Sender<DatagramLink>)>,
    next_id: u64,
}

/// Listeners by address; clones share one network.
#[derive(Debug, Clone, Default)]
pub struct MemNetwork {
    table: Arc<Mutex<Table>>,
}

/// The registration of a listener: while it lives, links dialled to its address arrive
/// on the receiver [`MemNetwork::listen`] returned with it.
#[derive(Debug)]
pub struct MemListener {
    network: MemNetwork,
    addr: SocketAddr,
    id: u64,
}

impl MemNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Listens on `addr`: the registration and the links (each the server's end) that
    /// clients dial to it. `None` when another listener holds the address. The receiver
    /// ends once the registration is dropped.
    pub fn listen(&self, addr: SocketAddr) -> Option<(MemListener, mpsc::Receiver<DatagramLink>)> {
        let mut table = self.table();
        if table.listeners.contains_key(&addr) {
            return None;
        }
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let id = table.next_id;
        table.next_id += 1;
        table.listeners.insert(addr, (id, tx));
        let listener = MemListener {
            network: self.clone(),
            addr,
            id,
        };
        Some((listener, rx))
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
            let (_, tx) = table
                .listeners
                .get(&addr)
                .or_else(|| table.listeners.get(&any))?;
            tx.clone()
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
        let mut table = self.network.table();
        if table
            .listeners
            .get(&self.addr)
            .is_some_and(|(id, _)| *id == self.id)
        {
            table.listeners.remove(&self.addr);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::BytesMut;

    #[tokio::test]
    async fn links_reach_the_listener_and_a_freed_address_is_reusable() {
        let net = MemNetwork::new();
        let at: SocketAddr = "192.0.2.1:8443".parse().unwrap();
        let from: SocketAddr = "198.51.100.2:40000".parse().unwrap();
        assert!(net.connect(from, at).is_none(), "nobody listens yet");
        let (l, mut incoming) = net.listen(at).unwrap();
        assert_eq!(l.local_addr(), at);
        assert!(net.listen(at).is_none(), "the address is taken");
        let client = net.connect(from, at).unwrap();
        let mut server = incoming.recv().await.unwrap();
        assert_eq!(server.peer, from);
        client
            .outbound
            .send(BytesMut::from(&[1, 2, 3u8][..]))
            .await
            .unwrap();
        assert_eq!(server.inbound.recv().await.unwrap(), vec![1, 2, 3]);
        drop(l);
        assert!(net.connect(from, at).is_none(), "the listener is gone");
        assert!(incoming.recv().await.is_none(), "its queue ended");
        assert!(net.listen(at).is_some(), "the address is free again");
        // A listener on the unspecified address takes links to any address on its port.
        let (_any, mut on_any) = net.listen("0.0.0.0:443".parse().unwrap()).unwrap();
        let _client = net.connect(from, "192.0.2.9:443".parse().unwrap()).unwrap();
        assert_eq!(on_any.recv().await.unwrap().peer, from);
        assert!(
            net.connect(from, "192.0.2.9:444".parse().unwrap())
                .is_none()
        );
    }
}
