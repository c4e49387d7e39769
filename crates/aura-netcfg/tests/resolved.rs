//! The client's DNS through systemd-resolved's D-Bus API, against a real bus
//! (`dbus-daemon`, private, on a socket in a temporary directory) and a stand-in for
//! resolved that owns `org.freedesktop.resolve1` and records each call it gets. A host
//! whose resolver file is not resolved's, or where nobody owns the name, gets the file
//! rewritten instead.
//!
//! Needs `dbus-daemon` (Debian package `dbus-daemon`); otherwise each test says why and
//! passes without checking. Only the loopback's interface index is read from the host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use aura_netcfg::HostConfig;
use futures_util::StreamExt;

const MANAGER: &str = "org.freedesktop.resolve1.Manager";

/// A private bus, ended when dropped.
struct Bus {
    child: Child,
    address: String,
    dir: PathBuf,
}

impl Bus {
    fn start(test: &str) -> Option<Self> {
        if !aura_lab::netns::have("dbus-daemon") {
            eprintln!("skipping {test}: dbus-daemon is not installed");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("aura-bus-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let listen = format!("unix:path={}", dir.join("bus").display());
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!("--address={listen}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Some(Self {
            child,
            address: line.trim().to_owned(),
            dir,
        })
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Owns `org.freedesktop.resolve1` on `address` and records every Manager call as text.
async fn fake_resolved(address: &str, calls: Arc<Mutex<Vec<String>>>) -> zbus::Connection {
    let conn = zbus::connection::Builder::address(address)
        .unwrap()
        .name("org.freedesktop.resolve1")
        .unwrap()
        .build()
        .await
        .unwrap();
    let serving = conn.clone();
    tokio::spawn(async move {
        let mut stream = zbus::MessageStream::from(&serving);
        while let Some(Ok(msg)) = stream.next().await {
            let header = msg.header();
            if header.message_type() != zbus::message::Type::MethodCall
                || header.interface().map(|i| i.as_str()) != Some(MANAGER)
            {
                continue;
            }
            let member = header.member().map(|m| m.to_string()).unwrap_or_default();
            let body = msg.body();
            let text = match member.as_str() {
                "SetLinkDNS" => {
                    let (i, a): (i32, Vec<(i32, Vec<u8>)>) = body.deserialize().unwrap();
                    format!("SetLinkDNS {i} {a:?}")
                }
                "SetLinkDomains" => {
                    let (i, d): (i32, Vec<(String, bool)>) = body.deserialize().unwrap();
                    format!("SetLinkDomains {i} {d:?}")
                }
                "SetLinkDefaultRoute" => {
                    let (i, b): (i32, bool) = body.deserialize().unwrap();
                    format!("SetLinkDefaultRoute {i} {b}")
                }
                "RevertLink" => {
                    let i: i32 = body.deserialize().unwrap();
                    format!("RevertLink {i}")
                }
                other => format!("unexpected {other}"),
            };
            calls.lock().unwrap().push(text);
            serving.reply(&header, &()).await.unwrap();
        }
    });
    conn
}

fn resolved_link(dir: &Path) -> PathBuf {
    let link = dir.join("resolv.conf");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", &link).unwrap();
    link
}

fn stub() -> Vec<IpAddr> {
    vec!["127.0.0.153".parse().unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_gets_the_tunnel_link_and_reverts_it() {
    let Some(bus) = Bus::start("resolved_link") else {
        return;
    };
    let calls = Arc::new(Mutex::new(Vec::new()));
    let _resolved = fake_resolved(&bus.address, calls.clone()).await;
    let link = resolved_link(&bus.dir);
    let mut host = HostConfig::system()
        .with_resolv_conf(&link)
        .with_system_bus(bus.address.clone());
    host.apply_dns("lo", &stub()).await.unwrap();
    assert!(host.dns_is_per_link());
    assert_eq!(
        calls.lock().unwrap().clone(),
        [
            "SetLinkDNS 1 [(2, [127, 0, 0, 153])]",
            "SetLinkDomains 1 [(\"~.\", true)]",
            "SetLinkDefaultRoute 1 true",
        ]
    );
    // The file is resolved's and stays so.
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../run/systemd/resolve/stub-resolv.conf")
    );
    host.undo().await.unwrap();
    assert_eq!(calls.lock().unwrap().last().unwrap(), "RevertLink 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_resolved_on_the_bus_the_file_is_rewritten_and_restored() {
    let Some(bus) = Bus::start("no_resolved") else {
        return;
    };
    let link = resolved_link(&bus.dir);
    let mut host = HostConfig::system()
        .with_resolv_conf(&link)
        .with_system_bus(bus.address.clone());
    host.apply_dns("lo", &stub()).await.unwrap();
    assert!(!host.dns_is_per_link());
    let text = std::fs::read_to_string(&link).unwrap();
    assert!(text.starts_with(aura_netcfg::dns::MARKER), "{text}");
    assert!(text.contains("nameserver 127.0.0.153\n"), "{text}");
    host.undo().await.unwrap();
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../run/systemd/resolve/stub-resolv.conf")
    );
}
