//! The system's resolvers while the client runs (`[client] dns`): the server's (named in
//! its `DnsAssign`), a configured list, or none touched.
//!
//! On a real host the system is pointed at the client's stub ([`crate::dns::STUB`]), which
//! asks those resolvers through the tunnel and shows every answer to the route book, so
//! that domain split rules route each answered address before the asking program uses
//! it. Two journals of their own:
//! the resolver file, kept across sessions and tunnels until the client stops (so a
//! reconnect never lets queries fall back to the LAN's resolver), and one route per
//! resolver into the tunnel, redone for each new TUN device, so that a resolver on a
//! network the host reaches directly (a LAN) is still asked through the tunnel.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};

use aura_config::ClientDns;
use aura_netcfg::HostConfig;
use aura_proto::control::AddressAssign;

use super::SharedRouteBook;
use crate::DaemonError;
use crate::dns::{AnswerHook, Askers, Relay, STUB, Upstreams};

/// The client's DNS state.
#[derive(Debug)]
pub(crate) struct Dns {
    setting: ClientDns,
    /// The resolver file's journal.
    file: HostConfig,
    /// The resolver routes' journal.
    routes: HostConfig,
    /// What the system resolves with now (empty: untouched).
    applied: Vec<IpAddr>,
    /// The TUN the routes go into, and the assignment they were made for.
    routed: Option<(String, AddressAssign)>,
    /// What the server named last.
    named: Option<Vec<IpAddr>>,
    /// The stub, when running, and what it asks.
    stub: Option<Relay>,
    upstreams: Upstreams,
}

/// Shows an answer to the route book: a domain rule matching its name routes each of
/// its addresses before the answer goes back.
fn learner(book: SharedRouteBook) -> AnswerHook {
    Arc::new(move |answer: Vec<u8>| {
        let book = book.clone();
        Box::pin(async move {
            let Ok(a) = aura_proto::dns::parse_answer(&answer) else {
                return;
            };
            if a.rcode != 0 || a.addrs.is_empty() {
                return;
            }
            let mut book = book.lock().await;
            if book.has_domains() {
                let n = book
                    .learn(&a.qname, &a.addrs, tokio::time::Instant::now())
                    .await;
                if n > 0 {
                    tracing::debug!(routed = n, "addresses of a domain rule routed");
                }
            }
        })
    })
}

/// Whether `ip` is on the tunnel's own network (reached on-link, no route needed).
fn on_tunnel(ip: IpAddr, a: &AddressAssign) -> bool {
    let IpAddr::V4(v4) = ip else { return false };
    let mask = u32::MAX
        .checked_shl(32 - u32::from(a.prefix_len))
        .unwrap_or(0);
    u32::from(v4) & mask == u32::from(a.address) & mask
}

impl Dns {
    pub(crate) fn new(setting: ClientDns, netcfg: &HostConfig) -> Self {
        Self {
            setting,
            file: netcfg.sibling(),
            routes: netcfg.sibling(),
            applied: Vec::new(),
            routed: None,
            named: None,
            stub: None,
            upstreams: Arc::new(RwLock::new(Vec::new())),
        }
    }

    /// Starts the stub the system will be pointed at (unless DNS is left alone).
    ///
    /// # Errors
    /// [`DaemonError::Dns`] when its port cannot be bound.
    pub(crate) async fn start_stub(&mut self, book: SharedRouteBook) -> Result<(), DaemonError> {
        if self.setting == ClientDns::Off {
            return Ok(());
        }
        let relay = Relay::start(
            SocketAddr::from((STUB, crate::dns::PORT)),
            Askers::Loopback,
            self.upstreams.clone(),
            Some(learner(book)),
        )
        .await?;
        tracing::debug!(listen = %relay.listen, "DNS stub up");
        self.stub = Some(relay);
        Ok(())
    }

    /// The server named `servers`.
    pub(crate) fn named(&mut self, servers: Vec<IpAddr>) {
        self.named = Some(servers);
    }

    /// What the system should resolve with.
    fn wanted(&self) -> Vec<IpAddr> {
        match &self.setting {
            ClientDns::Off => Vec::new(),
            ClientDns::Servers(list) => list.clone(),
            ClientDns::Server => self.named.clone().unwrap_or_default(),
        }
    }

    /// Brings the host to what is wanted for the tunnel `tun` with `assign`: resolver
    /// routes into `tun` (when `route` is set: os_routes enabled), then the resolver
    /// file. Nothing is done before the server has named its resolvers (with
    /// `dns = "server"`).
    pub(crate) async fn ensure(
        &mut self,
        tun: &str,
        assign: AddressAssign,
        route: bool,
    ) -> Result<(), DaemonError> {
        if matches!(self.setting, ClientDns::Server) && self.named.is_none() {
            return Ok(());
        }
        let wanted = self.wanted();
        let key = Some((tun.to_owned(), assign));
        // systemd-resolved holds the resolvers on the TUN itself: a new device needs them.
        let new_device = self.routed != key;
        if new_device && self.file.dns_is_per_link() {
            self.applied.clear();
        }
        if self.routed != key || self.applied != wanted {
            self.routes.undo().await?;
            self.routed = None;
            if route {
                for ip in wanted.iter().filter(|ip| !on_tunnel(**ip, &assign)) {
                    let prefix = if ip.is_ipv4() { 32 } else { 128 };
                    match self
                        .routes
                        .add_split_route(*ip, prefix, false, tun, None)
                        .await
                    {
                        Ok(r) => tracing::debug!(route = %r, "resolver routed into the tunnel"),
                        // A rule already sends exactly this address into the tunnel.
                        Err(aura_netcfg::NetcfgError::RouteConflict { .. }) => {}
                        Err(e) if ip.is_ipv6() => {
                            tracing::warn!(resolver = %ip, error = %e, "cannot route this IPv6 resolver into the tunnel");
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            self.routed = key;
        }
        if self.applied != wanted {
            *self
                .upstreams
                .write()
                .unwrap_or_else(PoisonError::into_inner) = wanted
                .iter()
                .map(|ip| SocketAddr::new(*ip, crate::dns::PORT))
                .collect();
            self.file.undo().await?;
            self.applied.clear();
            if !wanted.is_empty() {
                let system = if self.stub.is_some() {
                    vec![IpAddr::V4(STUB)]
                } else {
                    wanted.clone()
                };
                self.file.apply_dns(tun, &system).await?;
                tracing::info!(
                    resolvers = wanted.len(),
                    "the system resolves through the tunnel"
                );
            }
            self.applied = wanted;
        }
        Ok(())
    }

    /// Puts the resolver file back and removes the routes.
    pub(crate) async fn undo(&mut self) -> Result<(), DaemonError> {
        if let Some(mut stub) = self.stub.take() {
            stub.stop();
        }
        let file = self.file.undo().await;
        let routes = self.routes.undo().await;
        self.applied.clear();
        self.routed = None;
        file?;
        routes?;
        Ok(())
    }
}
