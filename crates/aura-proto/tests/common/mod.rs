//! A client and a server endpoint driven over the simulated network.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aura_proto::{
    ConnectionHandle, DropReason, EcdsaP256Signer, Endpoint, EndpointConfig, Event, Identity,
    SEAL_HEADROOM, Timers,
};
use aura_testkit::{Identity as TkIdentity, SimClock, SimNet, TEST_SERVER_NAME, TestPki};

pub const CLIENT: &str = "192.0.2.10:40000";
pub const SERVER: &str = "198.51.100.1:443";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn identity(id: &TkIdentity) -> Identity {
    Identity {
        cert_der: id.cert_der.clone(),
        signer: Arc::new(EcdsaP256Signer::from_pkcs8_der(&id.key_pkcs8_der).unwrap()),
    }
}

pub struct Node {
    pub addr: SocketAddr,
    pub ep: Endpoint,
    pub events: Vec<Event>,
    pub drops: Vec<DropReason>,
    pub received: Vec<(ConnectionHandle, Vec<u8>)>,
}

pub struct World {
    pub clock: SimClock,
    pub net: SimNet,
    pub server: Node,
    pub client: Node,
    pub conn: Option<ConnectionHandle>,
}

pub struct Setup {
    pub server_id: TkIdentity,
    pub client_id: TkIdentity,
    pub server_ca: Vec<u8>,
    pub client_ca: Vec<u8>,
    pub server_verifier: aura_pki::Verifier,
    pub client_verifier: aura_pki::Verifier,
    pub timers: Timers,
    pub server_name: String,
    /// The outer session exporters the client's and the server's links have, if any.
    pub bindings: Option<([u8; aura_proto::BINDING_LEN], [u8; aura_proto::BINDING_LEN])>,
}

impl Setup {
    pub fn new(pki: &TestPki) -> Self {
        Self {
            server_id: pki.server().clone(),
            client_id: pki.alice().clone(),
            server_ca: pki.ca_der().to_vec(),
            client_ca: pki.ca_der().to_vec(),
            server_verifier: pki.verifier().unwrap(),
            client_verifier: pki.verifier().unwrap(),
            timers: Timers::default(),
            server_name: TEST_SERVER_NAME.to_owned(),
            bindings: None,
        }
    }
}

impl World {
    pub fn new(setup: Setup, seed: u64) -> Self {
        let clock = SimClock::new();
        let net = SimNet::new(seed);
        let mut sc = EndpointConfig::new(
            setup.server_ca,
            identity(&setup.server_id),
            setup.server_verifier,
            true,
        );
        sc.timers = setup.timers.clone();
        let mut cc = EndpointConfig::new(
            setup.client_ca,
            identity(&setup.client_id),
            setup.client_verifier,
            false,
        );
        cc.timers = setup.timers;
        let s = Endpoint::new(sc, [seed as u8; 32], clock.now(), clock.wall()).unwrap();
        let mut c = Endpoint::new(cc, [seed as u8 ^ 0x55; 32], clock.now(), clock.wall()).unwrap();
        let mut s = s;
        if let Some((client, server)) = setup.bindings {
            c.set_link_binding(addr(SERVER), Some(client));
            s.set_link_binding(addr(CLIENT), Some(server));
        }
        let conn = c
            .connect(clock.now(), addr(SERVER), &setup.server_name)
            .unwrap();
        let mut w = Self {
            clock,
            net,
            server: Node {
                addr: addr(SERVER),
                ep: s,
                events: vec![],
                drops: vec![],
                received: vec![],
            },
            client: Node {
                addr: addr(CLIENT),
                ep: c,
                events: vec![],
                drops: vec![],
                received: vec![],
            },
            conn: Some(conn),
        };
        w.flush();
        w
    }

    /// Moves every queued transmit and event out of both endpoints.
    pub fn flush(&mut self) {
        let now = self.clock.now();
        for node in [&mut self.server, &mut self.client] {
            while let Some(t) = node.ep.poll_transmit() {
                self.net.send(now, node.addr, t.remote, &t.data);
            }
            while let Some(e) = node.ep.poll_event() {
                node.events.push(e);
            }
        }
    }

    /// Advances to the next delivery or timer no later than `deadline`; false if none.
    pub fn step(&mut self, deadline: Instant) -> bool {
        let timers = [self.server.ep.poll_timeout(), self.client.ep.poll_timeout()];
        let Some(next) = self.net.next_event(&timers) else {
            self.clock.advance_to(deadline);
            return false;
        };
        if next > deadline {
            self.clock.advance_to(deadline);
            return false;
        }
        self.clock.advance_to(next);
        let now = self.clock.now();
        while let Some(d) = self.net.pop_due(now) {
            let node = if d.to == self.server.addr {
                &mut self.server
            } else {
                &mut self.client
            };
            let mut buf = d.data.clone();
            match node.ep.handle_datagram(now, d.from, &mut buf) {
                Ok(Some(r)) => node.received.push((r.conn, buf[r.payload].to_vec())),
                Ok(None) => {}
                Err(e) => node.drops.push(e),
            }
        }
        self.server.ep.handle_timeout(now);
        self.client.ep.handle_timeout(now);
        self.flush();
        true
    }

    pub fn run_for(&mut self, d: Duration) {
        let deadline = self.clock.now() + d;
        while self.step(deadline) {}
    }

    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&World) -> bool) -> bool {
        let deadline = self.clock.now() + limit;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(deadline) {
                return done(self);
            }
        }
    }

    pub fn client_connected(&self) -> bool {
        self.client
            .events
            .iter()
            .any(|e| matches!(e, Event::Connected { .. }))
    }

    pub fn server_conn(&self) -> Option<ConnectionHandle> {
        self.server.events.iter().find_map(|e| match e {
            Event::Connected { conn, .. } => Some(*conn),
            _ => None,
        })
    }

    /// Seals `payload` on `side` (true = client) and sends it.
    pub fn send(&mut self, from_client: bool, payload: &[u8]) -> bool {
        let now = self.clock.now();
        let (node, conn) = if from_client {
            (&mut self.client, self.conn)
        } else {
            let c = self.server.events.iter().find_map(|e| match e {
                Event::Connected { conn, .. } => Some(*conn),
                _ => None,
            });
            (&mut self.server, c)
        };
        let Some(conn) = conn else { return false };
        let mut buf = vec![0u8; SEAL_HEADROOM + payload.len() + aura_proto::DATA_OVERHEAD];
        buf[SEAL_HEADROOM..SEAL_HEADROOM + payload.len()].copy_from_slice(payload);
        match node.ep.seal(now, conn, &mut buf, payload.len()) {
            Ok((remote, n)) => {
                self.net.send(now, node.addr, remote, &buf[..n]);
                true
            }
            Err(_) => false,
        }
    }
}
