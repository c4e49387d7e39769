//! A client and a server endpoint wired together by direct calls (no simulated network),
//! shared by the benchmarks.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aura_crypto::aead::Suite;
use aura_proto::{ConnectionHandle, EcdsaP256Signer, Endpoint, EndpointConfig, Event, Identity};
use aura_testkit::{Identity as TkIdentity, SimClock, TEST_SERVER_NAME, TestPki};

pub const SERVER: &str = "198.51.100.1:443";
pub const CLIENT: &str = "192.0.2.10:40000";

fn identity(id: &TkIdentity) -> Identity {
    Identity {
        cert_der: id.cert_der.clone(),
        signer: Arc::new(EcdsaP256Signer::from_pkcs8_der(&id.key_pkcs8_der).unwrap()),
    }
}

/// A server endpoint (accepting) and a client endpoint (alice), living at one instant.
pub struct Pair {
    pub now: Instant,
    pub server: Endpoint,
    pub client: Endpoint,
    pub server_addr: SocketAddr,
    pub client_addr: SocketAddr,
    /// Datagrams in flight, reused between steps.
    scratch: Vec<Vec<u8>>,
}

/// What one handshake cost and produced.
pub struct Handshake {
    /// Time spent in the client's calls: `connect` and `handle_datagram` of the Resp.
    pub client_time: Duration,
    /// Time spent in the server's calls: `handle_datagram` of the Init and the Finish.
    pub server_time: Duration,
    /// The client's connection.
    pub client_conn: ConnectionHandle,
    /// The server's connection for alice.
    pub server_conn: ConnectionHandle,
}

impl Pair {
    /// Endpoints that offer (client) and accept (server) only `suites`.
    pub fn new(suites: &[Suite]) -> Self {
        let pki = TestPki::new(1).unwrap();
        let clock = SimClock::new();
        let mut sc = EndpointConfig::new(
            pki.ca_der().to_vec(),
            identity(pki.server()),
            pki.verifier().unwrap(),
            true,
        );
        sc.suites = suites.to_vec();
        let mut cc = EndpointConfig::new(
            pki.ca_der().to_vec(),
            identity(pki.alice()),
            pki.verifier().unwrap(),
            false,
        );
        cc.suites = suites.to_vec();
        let server = Endpoint::new(sc, [1; 32], clock.now(), clock.wall()).unwrap();
        let client = Endpoint::new(cc, [2; 32], clock.now(), clock.wall()).unwrap();
        Self {
            now: clock.now(),
            server,
            client,
            server_addr: SERVER.parse().unwrap(),
            client_addr: CLIENT.parse().unwrap(),
            scratch: Vec::new(),
        }
    }

    fn drain(ep: &mut Endpoint, out: &mut Vec<Vec<u8>>) {
        out.clear();
        while let Some(t) = ep.poll_transmit() {
            out.push(t.data);
        }
    }

    /// Hands every datagram in `scratch` to `ep`; returns the time spent in `ep`.
    fn deliver(
        ep: &mut Endpoint,
        now: Instant,
        from: SocketAddr,
        scratch: &mut [Vec<u8>],
    ) -> Duration {
        let t = Instant::now();
        for d in scratch.iter_mut() {
            black_box(ep.handle_datagram(now, from, d)).unwrap();
        }
        t.elapsed()
    }

    /// Runs one complete handshake from a fresh client connection, timing each side's
    /// calls separately. Both sides end with the new session confirmed.
    pub fn handshake(&mut self) -> Handshake {
        let now = self.now;

        // Client: connect (hybrid key generation, Init).
        let t = Instant::now();
        let client_conn =
            black_box(self.client.connect(now, self.server_addr, TEST_SERVER_NAME)).unwrap();
        let mut client_time = t.elapsed();
        Self::drain(&mut self.client, &mut self.scratch);

        // Server: Init -> Resp.
        let mut server_time =
            Self::deliver(&mut self.server, now, self.client_addr, &mut self.scratch);
        Self::drain(&mut self.server, &mut self.scratch);
        assert!(!self.scratch.is_empty(), "server sent no Resp");

        // Client: Resp -> Finish.
        client_time += Self::deliver(&mut self.client, now, self.server_addr, &mut self.scratch);
        Self::drain(&mut self.client, &mut self.scratch);
        assert!(!self.scratch.is_empty(), "client sent no Finish");

        // Server: Finish -> established, then a keepalive confirming the keys.
        server_time += Self::deliver(&mut self.server, now, self.client_addr, &mut self.scratch);
        Self::drain(&mut self.server, &mut self.scratch);

        // Untimed: the client takes the confirmation.
        Self::deliver(&mut self.client, now, self.server_addr, &mut self.scratch);
        let mut connected = false;
        while let Some(e) = self.client.poll_event() {
            connected |= matches!(e, Event::Connected { conn, .. } if conn == client_conn);
        }
        assert!(connected, "client did not connect");
        let mut server_conn = None;
        while let Some(e) = self.server.poll_event() {
            if let Event::Connected { conn, .. } | Event::Rekeyed { conn } = e {
                server_conn = Some(conn);
            }
        }
        Handshake {
            client_time,
            server_time,
            client_conn,
            server_conn: server_conn.expect("server did not establish"),
        }
    }
}
