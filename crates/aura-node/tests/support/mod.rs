//! What the whole-daemon tests (daemons.rs, metrics.rs) share: a host in memory for each
//! daemon (TUN devices, network configuration and carrier), the test PKI's files where the
//! daemons' configurations name them, options from those files, daemons started and
//! stopped, and packets driven through their TUN devices.
// Each test binary uses only part of this module (metrics.rs starts its daemons itself).
#![allow(dead_code)]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aura_netcfg::{HostConfig, MemoryHost};
use aura_node::device::TunFactory;
use aura_node::host::{Host, Network};
use aura_node::options::{ClientOptions, ServerOptions};
use aura_node::{DaemonError, ShutdownSignal};
use aura_testkit::{DEFAULT_WALL_START_SECS, TEST_SERVER_NAME, TestPki};
use aura_transport::MemNetwork;
use aura_tun::{MemTun, MemTunHost, TunConfig, TunError};
use rustls_pki_types::UnixTime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// How long a test waits for anything.
pub const T: Duration = Duration::from_secs(20);
/// The server's address on the in-memory network.
pub const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
/// An address beyond the server, where the clients' traffic goes.
pub const INTERNET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
/// The resolver file of a host on the LAN.
pub const LAN_RESOLV: &str = "nameserver 192.0.2.53\nsearch lan\n";

/// The test PKI's time: its certificates and CRLs are valid then.
pub fn pinned() -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(DEFAULT_WALL_START_SECS + 3_600))
}

/// TUN devices in memory; the test gets each device's host side and address.
#[derive(Clone)]
pub struct MemTuns {
    host: MemoryHost,
    created: mpsc::UnboundedSender<(Ipv4Addr, MemTunHost)>,
}

impl TunFactory for MemTuns {
    type Device = MemTun;

    fn create(&self, cfg: &TunConfig) -> impl Future<Output = Result<MemTun, TunError>> + Send {
        let (dev, host) = MemTun::pair(cfg.name.clone(), cfg.mtu, 256);
        self.host.add_link(&cfg.name);
        let address = cfg.address.map_or(Ipv4Addr::UNSPECIFIED, |(a, _)| a);
        let _ = self.created.send((address, host));
        async { Ok(dev) }
    }
}

/// A host for one daemon, its resolver file [`LAN_RESOLV`]: its TUN devices arrive on the
/// receiver.
pub fn host(
    net: &MemNetwork,
) -> (
    Host<MemTuns>,
    MemoryHost,
    mpsc::UnboundedReceiver<(Ipv4Addr, MemTunHost)>,
) {
    host_resolving(net, LAN_RESOLV)
}

/// A host for one daemon whose resolver file is `resolv_conf`: its TUN devices arrive on
/// the receiver.
pub fn host_resolving(
    net: &MemNetwork,
    resolv_conf: &str,
) -> (
    Host<MemTuns>,
    MemoryHost,
    mpsc::UnboundedReceiver<(Ipv4Addr, MemTunHost)>,
) {
    let memory = MemoryHost::new();
    memory.set_resolv_conf(Some(resolv_conf));
    memory.add_link("eth0");
    memory
        .add_route(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            0,
            Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1))),
            "eth0",
        )
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let host = Host {
        tuns: MemTuns {
            host: memory.clone(),
            created: tx,
        },
        netcfg: HostConfig::in_memory(memory.clone()),
        network: Network::Memory(net.clone()),
        wall_clock: pinned,
    };
    (host, memory, rx)
}

/// Writes `der` as PEM under `label` to `dir/name`, readable by its owner only.
pub fn write_pem(dir: &Path, name: &str, label: &str, der: &[u8]) {
    let path = dir.join(name);
    std::fs::write(&path, pem::encode(&pem::Pem::new(label, der))).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Writes `id`'s certificate and key to `dir` as `<id>.crt` and `<id>.key`.
pub fn write_identity(dir: &Path, id: &aura_testkit::Identity) {
    write_pem(dir, &format!("{}.crt", id.id), "CERTIFICATE", &id.cert_der);
    write_pem(
        dir,
        &format!("{}.key", id.id),
        "PRIVATE KEY",
        &id.key_pkcs8_der,
    );
}

/// The deployment's knock key in `dir` (written once; both daemons name it).
pub fn knock_key(dir: &Path) -> PathBuf {
    let path = dir.join("knock.key");
    if !path.exists() {
        let key = aura_pki::knock::to_pem(&[0x5a; 32]);
        std::fs::write(&path, key.as_bytes()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

/// The PKI files the server and the clients alice and bob name, in `dir`: the CA, the
/// server's CRL and each client's copy, their certificates and keys, the knock key.
pub fn write_pki(dir: &Path, pki: &TestPki) {
    write_pem(dir, "ca.crt", "CERTIFICATE", pki.ca_der());
    for crl in ["crl.pem", "alice-crl.pem", "bob-crl.pem"] {
        write_pem(dir, crl, "X509 CRL", pki.crl_der());
    }
    for id in [pki.server(), pki.alice(), pki.bob()] {
        write_identity(dir, id);
    }
    knock_key(dir);
}

/// The options of the server `server_id` whose files are in `dir`, with `extra` sections
/// after `[server]`.
pub fn server_options_of(dir: &Path, server_id: &str, extra: &str) -> ServerOptions {
    let text = format!(
        "[server]\nname = \"{TEST_SERVER_NAME}\"\nadmin_socket = \"{dir}/server.sock\"\n\
         {extra}\
         [pki]\nca_cert = \"{dir}/ca.crt\"\ncert = \"{dir}/{server_id}.crt\"\n\
         key = \"{dir}/{server_id}.key\"\ncrl = \"{dir}/crl.pem\"\n\
         knock_key = \"{dir}/knock.key\"\n",
        dir = dir.display()
    );
    let cfg: aura_config::ServerConfig = toml::from_str(&text).unwrap();
    ServerOptions::from_config(&cfg).unwrap()
}

/// Client `id`'s options, with `extra` sections.
pub fn client_options_of(dir: &Path, id: &str, extra: &str) -> ClientOptions {
    let text = format!(
        "[client]\nserver = \"{SERVER_IP}\"\nserver_name = \"{TEST_SERVER_NAME}\"\n\
         admin_socket = \"{dir}/{id}.sock\"\n{extra}\
         [pki]\nca_cert = \"{dir}/ca.crt\"\ncert = \"{dir}/{id}.crt\"\n\
         key = \"{dir}/{id}.key\"\ncrl = \"{dir}/{id}-crl.pem\"\n\
         knock_key = \"{dir}/knock.key\"\n",
        dir = dir.display()
    );
    let cfg: aura_config::ClientConfig = toml::from_str(&text).unwrap();
    ClientOptions::from_config(&cfg).unwrap()
}

/// A running daemon: stop it with `stop`, then await `task`.
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), DaemonError>>,
}

impl Running {
    pub async fn stop(mut self) -> Result<(), DaemonError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        timeout(T, self.task).await.unwrap().unwrap()
    }
}

/// Starts a daemon: `daemon` gets the future that resolves when the test stops it.
pub fn start<F>(daemon: impl FnOnce(ShutdownSignal) -> F) -> Running
where
    F: Future<Output = Result<(), DaemonError>> + Send + 'static,
{
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(daemon(Box::pin(async move {
        let _ = rx.await;
    })));
    Running {
        stop: Some(stop),
        task,
    }
}

/// Starts `aura server` with `opts` on `host`.
pub fn start_server(opts: ServerOptions, host: Host<MemTuns>) -> Running {
    start(|stop| aura_node::server::run_on(opts, host, stop))
}

/// Starts `aura client` with `opts` on `host`.
pub fn start_client(opts: ClientOptions, host: Host<MemTuns>) -> Running {
    start(|stop| aura_node::client::run_on(opts, host, stop))
}

/// Injects `packet` into `from` until `to` delivers a packet carrying `payload` (the first
/// packets of a fresh session may race the tunnel coming up). Returns the delivered packet.
pub async fn deliver(
    from: &MemTunHost,
    to: &mut MemTunHost,
    packet: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    timeout(T, async {
        loop {
            from.inject(packet).await.unwrap();
            for _ in 0..20 {
                while let Some(p) = to.try_recv() {
                    if p.ends_with(payload) {
                        return p;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    })
    .await
    .expect("the packet never arrived")
}
