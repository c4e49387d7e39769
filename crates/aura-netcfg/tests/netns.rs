//! HostConfig against real kernels state, each test in its own network namespace.
//!
//! ```text
//!   netns aura-netcfg-<pid>-<n>
//!   +------------------------------------------------------------+
//!   |  aura0 (tun, 10.77.0.1/24)        eg0 192.0.2.1/24 ==veth== eg1 |
//!   |                                   default via 192.0.2.254 dev eg0 |
//!   |                                   (IPv6: 2001:db8:1::1/64,     |
//!   |                                    default via 2001:db8:1::ff) |
//!   +------------------------------------------------------------+
//! ```
//! How code runs inside: [`Netns::run`] spawns a thread that `setns(CLONE_NEWNET)`s into
//! `/var/run/netns/<name>` and drives a current-thread tokio runtime there; netlink
//! sockets, `/proc/sys/net` and `nft` subprocesses opened from that thread all belong
//! to the namespace. Checks from the outside use `ip netns exec`. Each namespace is
//! deleted by a Drop guard on every path; every run is bounded by a timeout.
//!
//! Needs root, `ip` (iproute2) and, for the NAT tests, `nft` (package `nftables`);
//! otherwise each test prints why and passes without checking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use aura_netcfg::{HostConfig, NatPlan, NetcfgError, RoutePlan};
use nix::sched::{CloneFlags, setns};

/// Longest a test body may run inside its namespace.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// A test namespace (deleted when dropped, whatever happened) and how to work in it.
struct Netns(aura_lab::netns::Netns);

impl Netns {
    /// A fresh namespace, or `None` (with the reason printed) when this environment
    /// cannot run the test.
    fn new(test: &str, need_nft: bool) -> Option<Self> {
        let programs: &[&str] = if need_nft { &["nft"] } else { &[] };
        if let Some(why) = aura_lab::netns::skip_reason(programs) {
            eprintln!("skipping {test}: {why}");
            return None;
        }
        Some(Self(aura_lab::netns::Netns::new("aura-netcfg").unwrap()))
    }

    /// Runs a shell command inside; panics with its stderr on failure.
    fn sh(&self, cmd: &str) -> String {
        self.0.sh(cmd).unwrap()
    }

    /// The standard topology of this file (see the drawing at the top).
    fn topology(&self) {
        self.sh("ip link add eg0 type veth peer name eg1
             ip addr add 192.0.2.1/24 dev eg0
             ip addr add 2001:db8:1::1/64 dev eg0 nodad
             ip link set eg0 up
             ip link set eg1 up
             ip route add default via 192.0.2.254 dev eg0
             ip -6 route add default via 2001:db8:1::ff dev eg0
             ip tuntap add dev aura0 mode tun
             ip addr add 10.77.0.1/24 dev aura0
             ip link set aura0 up");
    }

    /// Everything a test compares before and after.
    fn state(&self, with_nft: bool) -> String {
        let nft = if with_nft { "nft list ruleset" } else { "true" };
        self.sh(&format!(
            "{nft}; echo ---; ip route; echo ---; ip -6 route; echo ---; sysctl -n net.ipv4.ip_forward; sysctl -n net.ipv6.conf.all.forwarding"
        ))
    }

    /// Runs `body` on a thread inside the namespace, with its own runtime.
    fn run<F, Fut, T>(&self, body: F) -> T
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = T>,
        T: Send,
    {
        let path = self.0.path();
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = File::open(&path).unwrap();
                setns(&fd, CloneFlags::CLONE_NEWNET).unwrap();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async { tokio::time::timeout(BODY_TIMEOUT, body()).await })
                    .expect("test body timed out")
            })
            .join()
            .unwrap()
        })
    }
}

fn nat_plan() -> NatPlan {
    NatPlan {
        pool: ("10.77.0.0".parse().unwrap(), 24),
        tun: "aura0".into(),
        egress: None,
        firewall: Default::default(),
        pool6: None,
        nat66: true,
        egress6: None,
    }
}

/// A dual-stack plan: the ULA pool `fd61:7572:6100::/64` with NAT66.
fn nat_plan6() -> NatPlan {
    NatPlan {
        pool6: Some(("fd61:7572:6100::".parse().unwrap(), 64)),
        nat66: true,
        ..nat_plan()
    }
}

/// `net.ipv6.conf.all.forwarding` in the namespace, read from outside.
fn forwarding6(ns: &Netns) -> String {
    ns.sh("cat /proc/sys/net/ipv6/conf/all/forwarding")
        .trim()
        .to_owned()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn nat_and_forwarding_apply_then_undo_byte_for_byte() {
    let Some(ns) = Netns::new("nat_and_forwarding", true) else {
        return;
    };
    ns.topology();
    ns.sh("sysctl -qw net.ipv4.ip_forward=0");
    let before = ns.state(true);
    ns.run(|| async {
        let mut host = HostConfig::system();
        host.apply_nat(&nat_plan()).await.unwrap();
        let table = ns.sh("nft list table inet aura");
        assert!(
            table.contains("ip saddr 10.77.0.0/24 oifname \"eg0\""),
            "{table}"
        );
        assert!(table.contains("masquerade"), "{table}");
        assert!(
            table.contains("type nat hook postrouting priority srcnat"),
            "{table}"
        );
        assert!(
            table.contains("iifname \"aura0\" oifname \"eg0\""),
            "{table}"
        );
        assert_eq!(ns.sh("sysctl -n net.ipv4.ip_forward").trim(), "1");
        // The test thread's own namespace was not touched.
        assert_eq!(
            aura_netcfg::default_route().await.unwrap().dev,
            "eg0",
            "netlink from this thread sees the namespace"
        );
        host.undo().await.unwrap();
    });
    assert_eq!(ns.state(true), before);
}

#[test]
fn drop_undoes_nat_and_routes() {
    let Some(ns) = Netns::new("drop_undoes", true) else {
        return;
    };
    ns.topology();
    let before = ns.state(true);
    ns.run(|| async {
        let mut host = HostConfig::system();
        host.apply_nat(&nat_plan()).await.unwrap();
        host.apply_routes(&RoutePlan::full("aura0", vec![ip("203.0.113.7")], true))
            .await
            .unwrap();
        assert_ne!(ns.state(true), before);
        // `host` dropped here, inside the runtime: undo runs on a helper thread.
    });
    assert_eq!(ns.state(true), before);
}

#[test]
fn leftovers_of_a_crashed_run_are_removed() {
    let Some(ns) = Netns::new("leftovers", true) else {
        return;
    };
    ns.topology();
    let clean = ns.state(true);
    ns.sh("nft add table inet aura
         nft add chain inet aura postrouting '{ type nat hook postrouting priority 100; }'
         ip route add 198.51.100.0/24 via 192.0.2.254 dev eg0 proto 167
         ip route add 0.0.0.0/1 dev aura0 proto 167");
    let found = ns.run(|| async {
        let mut host = HostConfig::system();
        let found = host.cleanup_leftovers().await.unwrap();
        assert!(
            !host.cleanup_leftovers().await.unwrap(),
            "second run finds nothing"
        );
        found
    });
    assert!(found);
    assert_eq!(ns.state(true), clean);
    assert!(!ns.sh("nft list tables").contains("aura"));
}

#[test]
fn one_daemon_per_role_and_each_cleans_only_its_own() {
    let Some(ns) = Netns::new("instances", true) else {
        return;
    };
    ns.topology();
    ns.run(|| async {
        // A running server: its lock, its NAT.
        let mut server = HostConfig::system();
        server.claim(aura_netcfg::Role::Server).unwrap();
        server.cleanup_leftovers().await.unwrap();
        server
            .apply_nat(&nat_plan())
            .await
            .unwrap();
        // A second server in this namespace is refused at its claim.
        let mut second = HostConfig::system();
        let err = second.claim(aura_netcfg::Role::Server).unwrap_err();
        assert!(
            matches!(&err, NetcfgError::AlreadyRunning { pid, .. } if *pid == Some(std::process::id())),
            "{err}"
        );
        // A client in the same namespace: its crash cleanup leaves the server's table.
        let mut client = HostConfig::system();
        client.claim(aura_netcfg::Role::Client).unwrap();
        assert!(!client.cleanup_leftovers().await.unwrap());
        drop(client);
        drop(second);
        // The server's table outlived the client's cleanup (the unscoped cleanup of
        // before removed it).
        let tables = std::process::Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&tables.stdout).contains("inet aura"));
        server.undo().await.unwrap();
    });
    assert!(!ns.sh("nft list tables").contains("aura"));
}

#[test]
fn routes_keep_the_server_on_the_original_path() {
    let Some(ns) = Netns::new("routes", false) else {
        return;
    };
    ns.topology();
    let before = ns.state(false);
    ns.run(|| async {
        let mut host = HostConfig::system();
        host.apply_routes(&RoutePlan::full(
            "aura0",
            vec![ip("203.0.113.7"), ip("2001:db8:9::7")],
            true,
        ))
        .await
        .unwrap();
        let server = ns.sh("ip route get 203.0.113.7");
        assert!(server.contains("via 192.0.2.254 dev eg0"), "{server}");
        let other = ns.sh("ip route get 8.8.8.8");
        assert!(other.contains("dev aura0"), "{other}");
        let server6 = ns.sh("ip -6 route get 2001:db8:9::7");
        assert!(server6.contains("via 2001:db8:1::ff dev eg0"), "{server6}");
        let other6 = ns.sh("ip -6 route get 2001:4860::8888");
        assert!(other6.contains("dev aura0"), "{other6}");
        let table = ns.sh("ip route");
        assert!(
            table.contains("default via 192.0.2.254 dev eg0"),
            "default untouched: {table}"
        );
        assert!(
            table.contains("0.0.0.0/1 dev aura0 proto 167 scope link"),
            "{table}"
        );
        assert!(
            table.contains("128.0.0.0/1 dev aura0 proto 167 scope link"),
            "{table}"
        );
        host.undo().await.unwrap();
    });
    assert_eq!(ns.state(false), before);
}

#[test]
fn missing_nft_is_a_clear_error() {
    let Some(ns) = Netns::new("missing_nft", false) else {
        return;
    };
    ns.topology();
    let before = ns.state(false);
    let err = ns.run(|| async {
        let mut host = HostConfig::system().with_nft_program("/nonexistent/nft");
        host.apply_nat(&nat_plan()).await.unwrap_err()
    });
    assert!(matches!(err, NetcfgError::NftNotFound { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "nft not found (/nonexistent/nft): install the nftables package"
    );
    assert_eq!(ns.state(false), before);
}

#[test]
fn dry_run_lists_commands_and_changes_nothing() {
    let Some(ns) = Netns::new("dry_run", false) else {
        return;
    };
    ns.topology();
    let before = ns.state(false);
    let planned = ns.run(|| async {
        let mut host = HostConfig::dry_run();
        host.apply_nat(&nat_plan()).await.unwrap();
        host.apply_routes(&RoutePlan::full("aura0", vec![ip("203.0.113.7")], false))
            .await
            .unwrap();
        host.planned().to_vec()
    });
    assert_eq!(ns.state(false), before);
    assert_eq!(planned.len(), 5, "{planned:#?}");
    assert!(planned[0].starts_with("nft -j -f - <<< '{\"nftables\":[{\"add\":{\"table\""));
    assert!(
        planned[0].contains("\"eg0\""),
        "egress detected: {}",
        planned[0]
    );
    assert_eq!(planned[1], "sysctl -w net.ipv4.ip_forward=1");
    assert_eq!(
        planned[2],
        "ip route add 203.0.113.7/32 via 192.0.2.254 dev eg0 proto 167"
    );
    assert_eq!(planned[3], "ip route add 0.0.0.0/1 dev aura0 proto 167");
    assert_eq!(planned[4], "ip route add 128.0.0.0/1 dev aura0 proto 167");
}

#[test]
fn excluding_on_link_and_unreachable_addresses() {
    let Some(ns) = Netns::new("on_link", false) else {
        return;
    };
    ns.topology();
    ns.sh("ip -6 route del default");
    let before = ns.state(false);
    ns.run(|| async {
        let mut host = HostConfig::system();
        host.apply_routes(&RoutePlan::full(
            "aura0",
            // On the LAN (no gateway), IPv6 now unreachable, and the host itself.
            vec![ip("192.0.2.77"), ip("2001:db8:9::7"), ip("192.0.2.1")],
            true,
        ))
        .await
        .unwrap();
        let lan = ns.sh("ip route get 192.0.2.77");
        assert!(lan.contains("dev eg0") && !lan.contains("via"), "{lan}");
        assert!(ns.sh("ip route").contains("192.0.2.77 dev eg0 proto 167"));
        host.undo().await.unwrap();
    });
    assert_eq!(ns.state(false), before);
}

#[test]
fn forwarding_left_on_by_a_killed_run_is_restored_at_the_next_start() {
    let Some(ns) = Netns::new("forwarding_left_on", true) else {
        return;
    };
    ns.topology();
    ns.sh("sysctl -qw net.ipv4.ip_forward=0");
    let before = ns.state(true);
    ns.run(|| async {
        let mut host = HostConfig::system();
        host.apply_nat(&nat_plan()).await.unwrap();
        // Killed: no undo, not even the one on drop.
        std::mem::forget(host);
    });
    assert_eq!(ns.sh("sysctl -n net.ipv4.ip_forward").trim(), "1");
    ns.run(|| async {
        let mut host = HostConfig::system();
        assert!(host.cleanup_leftovers().await.unwrap());
        // A run that starts and stops normally afterwards leaves it off too.
        host.apply_nat(&nat_plan()).await.unwrap();
        host.undo().await.unwrap();
    });
    assert_eq!(ns.state(true), before);
}

#[test]
fn the_resolver_file_comes_back_after_undo_and_after_a_crash() {
    let Some(ns) = Netns::new("dns", false) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("aura-netcfg-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("resolv.conf");
    let original = "# from the LAN\nnameserver 192.168.1.1\nsearch lan\n";
    std::fs::write(&path, original).unwrap();
    let servers = [ip("10.77.0.1"), ip("fd00::53")];
    let written = format!(
        "{}\nnameserver 10.77.0.1\nnameserver fd00::53\nsearch lan\n",
        aura_netcfg::dns::MARKER
    );

    // Undo puts the file back byte for byte.
    ns.run(|| async {
        let mut host = HostConfig::system().with_resolv_conf(&path);
        host.claim(aura_netcfg::Role::Client).unwrap();
        host.apply_dns("lo", &servers).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), written);
        host.undo().await.unwrap();
    });
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);

    // A run killed before it could undo: the next client start puts it back.
    ns.run(|| async {
        let mut host = HostConfig::system().with_resolv_conf(&path);
        host.apply_dns("lo", &servers).await.unwrap();
        std::mem::forget(host);
    });
    assert_eq!(std::fs::read_to_string(&path).unwrap(), written);
    let found = ns.run(|| async {
        let mut host = HostConfig::system();
        host.claim(aura_netcfg::Role::Client).unwrap();
        let found = host.cleanup_leftovers().await.unwrap();
        assert!(!host.cleanup_leftovers().await.unwrap(), "found once");
        found
    });
    assert!(found);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);

    // Rewritten by someone else after the crash: theirs is kept.
    ns.run(|| async {
        let mut host = HostConfig::system().with_resolv_conf(&path);
        host.apply_dns("lo", &servers).await.unwrap();
        std::mem::forget(host);
    });
    std::fs::write(&path, "nameserver 9.9.9.9\n").unwrap();
    ns.run(|| async {
        let mut host = HostConfig::system();
        host.claim(aura_netcfg::Role::Client).unwrap();
        assert!(!host.cleanup_leftovers().await.unwrap());
    });
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "nameserver 9.9.9.9\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dual_stack_nat66_apply_then_undo_byte_for_byte() {
    let Some(ns) = Netns::new("nat66", true) else {
        return;
    };
    ns.topology();
    ns.sh("ip addr add fd61:7572:6100::1/64 dev aura0 nodad
         sysctl -qw net.ipv4.ip_forward=0
         sysctl -qw net.ipv6.conf.all.forwarding=0");
    let before = ns.state(true);
    ns.run(|| async {
        let d6 = aura_netcfg::default_route6().await.unwrap().unwrap();
        assert_eq!(d6.dev, "eg0");
        assert_eq!(d6.gateway, Some(ip("2001:db8:1::ff")));
        let mut host = HostConfig::system();
        host.apply_nat(&nat_plan6()).await.unwrap();
        let table = ns.sh("nft list table inet aura");
        assert!(
            table.contains(
                "ip6 saddr fd61:7572:6100::/64 oifname \"eg0\" counter packets 0 bytes 0 masquerade"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "ip saddr 10.77.0.0/24 oifname \"eg0\" counter packets 0 bytes 0 masquerade"
            ),
            "{table}"
        );
        let blocked = table
            .lines()
            .find(|l| l.contains("ip6 daddr"))
            .unwrap_or_else(|| panic!("no blocked IPv6 set: {table}"));
        // nft merges the adjacent `::/128` and `::1/128` into `::/127`.
        assert!(
            blocked.contains("{ ::/127, ") || blocked.contains("::1, "),
            "{blocked}"
        );
        for net in ["::ffff:0.0.0.0/96", "fc00::/7", "fe80::/10", "ff00::/8"] {
            assert!(blocked.contains(net), "{net} in {blocked}");
        }
        assert!(blocked.trim_end().ends_with("drop"), "{blocked}");
        assert!(
            table.contains("iifname \"aura0\" icmpv6 type echo-request counter"),
            "{table}"
        );
        assert_eq!(forwarding6(&ns), "1");
        assert_eq!(ns.sh("sysctl -n net.ipv4.ip_forward").trim(), "1");
        host.undo().await.unwrap();
    });
    assert_eq!(ns.state(true), before);
    assert_eq!(forwarding6(&ns), "0");
}

#[test]
fn ipv6_forwarding_is_undone_and_restored_after_a_crash() {
    let Some(ns) = Netns::new("forwarding6", false) else {
        return;
    };
    ns.topology();
    ns.sh("sysctl -qw net.ipv6.conf.all.forwarding=0");
    let before = ns.state(false);
    ns.run(|| async {
        let mut host = HostConfig::system();
        host.claim(aura_netcfg::Role::Server).unwrap();
        host.enable_forwarding6().await.unwrap();
        assert_eq!(forwarding6(&ns), "1");
        assert_eq!(
            ns.sh("sysctl -n net.ipv4.ip_forward").trim(),
            "0",
            "IPv4 forwarding untouched"
        );
        host.undo().await.unwrap();
    });
    assert_eq!(ns.state(false), before);
    assert_eq!(forwarding6(&ns), "0");

    // Killed: no undo, not even the one on drop.
    ns.run(|| async {
        let mut host = HostConfig::system();
        host.enable_forwarding6().await.unwrap();
        std::mem::forget(host);
    });
    assert_eq!(forwarding6(&ns), "1");
    let found = ns.run(|| async {
        let mut host = HostConfig::system();
        host.claim(aura_netcfg::Role::Server).unwrap();
        let found = host.cleanup_leftovers().await.unwrap();
        assert!(!host.cleanup_leftovers().await.unwrap(), "found once");
        found
    });
    assert!(found);
    assert_eq!(forwarding6(&ns), "0");
    assert_eq!(ns.state(false), before);

    // Already on: left on, nothing recorded.
    ns.sh("sysctl -qw net.ipv6.conf.all.forwarding=1");
    ns.run(|| async {
        let mut host = HostConfig::system();
        host.enable_forwarding6().await.unwrap();
        assert!(!host.has_changes());
    });
    assert_eq!(forwarding6(&ns), "1");
}

#[test]
fn no_ipv6_default_route_and_routed_ipv6() {
    let Some(ns) = Netns::new("routed6", true) else {
        return;
    };
    ns.topology();
    ns.sh("ip -6 route del default");
    let before = ns.state(true);
    ns.run(|| async {
        assert!(aura_netcfg::default_route6().await.unwrap().is_none());
        let mut host = HostConfig::system();
        host.apply_nat(&NatPlan {
            nat66: false,
            ..nat_plan6()
        })
        .await
        .unwrap();
        let table = ns.sh("nft list table inet aura");
        assert!(!table.contains("ip6 saddr"), "routed: {table}");
        assert_eq!(table.matches("masquerade").count(), 1, "{table}");
        assert!(table.contains("ip6 daddr"), "{table}");
        assert_eq!(forwarding6(&ns), "1");
        host.undo().await.unwrap();
    });
    assert_eq!(ns.state(true), before);
}
