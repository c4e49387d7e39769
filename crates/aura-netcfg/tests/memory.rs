//! HostConfig against the in-memory double: no root, no namespaces.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use aura_netcfg::{HostConfig, MemoryHost, NatPlan, NetcfgError, RoutePlan};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// eth0 with a default route via 192.0.2.254, a TUN aura0.
fn host() -> MemoryHost {
    let h = MemoryHost::new();
    h.add_link("eth0");
    h.add_link("aura0");
    h.add_route(ip("192.0.2.0"), 24, None, "eth0").unwrap();
    h.add_route(ip("0.0.0.0"), 0, Some(ip("192.0.2.254")), "eth0")
        .unwrap();
    h.add_route(ip("10.77.0.0"), 24, None, "aura0").unwrap();
    h
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

fn route_plan() -> RoutePlan {
    RoutePlan::full(
        "aura0",
        vec![ip("203.0.113.7"), ip("198.51.100.9"), ip("203.0.113.7")],
        false,
    )
}

#[tokio::test]
async fn nat_applies_and_undoes_exactly() {
    let h = host();
    let before = h.snapshot();
    let mut cfg = HostConfig::in_memory(h.clone());
    cfg.apply_nat(&nat_plan()).await.unwrap();
    let during = h.snapshot();
    assert_eq!(during.ip_forward, "1");
    let table = during.nft_table.unwrap();
    assert!(table.contains("\"masquerade\""), "{table}");
    assert!(
        table.contains("\"eth0\""),
        "egress detected from the default route: {table}"
    );
    assert!(matches!(
        cfg.apply_nat(&nat_plan()).await,
        Err(NetcfgError::AlreadyApplied(_))
    ));
    cfg.undo().await.unwrap();
    assert_eq!(h.snapshot(), before);
    assert!(!cfg.has_changes());
}

#[tokio::test]
async fn forwarding_already_on_is_left_on() {
    let h = host();
    h.set_ip_forward("1");
    let mut cfg = HostConfig::in_memory(h.clone());
    cfg.apply_nat(&nat_plan()).await.unwrap();
    assert!(!cfg.planned().iter().any(|c| c.contains("ip_forward")));
    cfg.undo().await.unwrap();
    assert_eq!(h.snapshot().ip_forward, "1");
}

#[tokio::test]
async fn missing_nft_is_a_clear_error_and_changes_nothing() {
    let h = host();
    h.set_nft_available(false);
    let before = h.snapshot();
    let mut cfg = HostConfig::in_memory(h.clone());
    let err = cfg.apply_nat(&nat_plan()).await.unwrap_err();
    assert!(matches!(err, NetcfgError::NftNotFound { .. }));
    assert!(
        err.to_string().contains("install the nftables package"),
        "{err}"
    );
    assert_eq!(h.snapshot(), before);
    // No NAT was applied: a retry is allowed.
    h.set_nft_available(true);
    cfg.apply_nat(&nat_plan()).await.unwrap();
}

#[tokio::test]
async fn no_default_route_needs_an_explicit_egress() {
    let h = MemoryHost::new();
    h.add_link("aura0");
    h.add_link("wan");
    let mut cfg = HostConfig::in_memory(h.clone());
    assert!(matches!(
        cfg.apply_nat(&nat_plan()).await,
        Err(NetcfgError::NoDefaultRoute)
    ));
    let plan = NatPlan {
        egress: Some("wan".into()),
        ..nat_plan()
    };
    cfg.apply_nat(&plan).await.unwrap();
    assert!(h.snapshot().nft_table.unwrap().contains("\"wan\""));
}

#[tokio::test]
async fn routes_capture_everything_but_the_excluded() {
    let h = host();
    let before = h.snapshot();
    let mut cfg = HostConfig::in_memory(h.clone());
    cfg.apply_routes(&route_plan()).await.unwrap();
    assert_eq!(h.route_get(ip("203.0.113.7")).as_deref(), Some("eth0"));
    assert_eq!(h.route_get(ip("198.51.100.9")).as_deref(), Some("eth0"));
    assert_eq!(h.route_get(ip("8.8.8.8")).as_deref(), Some("aura0"));
    assert_eq!(
        h.route_get(ip("192.0.2.7")).as_deref(),
        Some("eth0"),
        "the LAN stays on-link"
    );
    let added = h.snapshot().routes;
    assert!(added.contains(&"203.0.113.7/32 via 192.0.2.254 dev eth0 proto 167".to_string()));
    assert!(added.contains(&"0.0.0.0/1 dev aura0 proto 167".to_string()));
    assert!(added.contains(&"128.0.0.0/1 dev aura0 proto 167".to_string()));
    assert!(
        added.contains(&"0.0.0.0/0 via 192.0.2.254 dev eth0".to_string()),
        "default untouched"
    );
    assert_eq!(
        added.len(),
        before.routes.len() + 4,
        "duplicate exclude added once"
    );
    cfg.undo().await.unwrap();
    assert_eq!(h.snapshot(), before);
}

#[tokio::test]
async fn an_existing_exclude_route_is_not_ours_to_remove() {
    let h = host();
    h.add_route(ip("203.0.113.7"), 32, Some(ip("192.0.2.254")), "eth0")
        .unwrap();
    let before = h.snapshot();
    let mut cfg = HostConfig::in_memory(h.clone());
    cfg.apply_routes(&route_plan()).await.unwrap();
    cfg.undo().await.unwrap();
    assert_eq!(h.snapshot(), before);
}

#[tokio::test]
async fn a_foreign_half_default_is_a_conflict_and_rolls_back() {
    let h = host();
    h.add_link("wg0");
    h.add_route(ip("128.0.0.0"), 1, None, "wg0").unwrap();
    let before = h.snapshot();
    let mut cfg = HostConfig::in_memory(h.clone());
    let err = cfg.apply_routes(&route_plan()).await.unwrap_err();
    assert!(matches!(err, NetcfgError::RouteConflict { .. }), "{err}");
    assert!(err.to_string().contains("128.0.0.0/1"), "{err}");
    assert_eq!(h.snapshot(), before, "partial changes rolled back");
    assert!(!cfg.has_changes());
}

#[tokio::test]
async fn excluding_an_address_already_in_the_tunnel_is_refused() {
    let h = host();
    h.leave_aura_route(ip("128.0.0.0"), 1, "aura0").unwrap();
    let mut cfg = HostConfig::in_memory(h.clone());
    let err = cfg.apply_routes(&route_plan()).await.unwrap_err();
    assert!(matches!(err, NetcfgError::ExcludeViaTun { .. }), "{err}");
    // The fix the error names:
    assert!(cfg.cleanup_leftovers().await.unwrap());
    cfg.apply_routes(&route_plan()).await.unwrap();
}

#[tokio::test]
async fn missing_tun_and_bad_names_are_named() {
    let h = host();
    let mut cfg = HostConfig::in_memory(h);
    let plan = RoutePlan {
        tun: "nope0".into(),
        ..route_plan()
    };
    let err = cfg.apply_routes(&plan).await.unwrap_err();
    assert!(err.to_string().contains("\"nope0\" not found"), "{err}");
    let plan = RoutePlan {
        tun: "a b".into(),
        ..route_plan()
    };
    assert!(matches!(
        cfg.apply_routes(&plan).await,
        Err(NetcfgError::InvalidPlan(_))
    ));
}

#[tokio::test]
async fn dry_run_plans_but_changes_nothing() {
    let h = host();
    let before = h.snapshot();
    let mut cfg = HostConfig::in_memory(h.clone()).with_dry_run(true);
    cfg.apply_nat(&nat_plan()).await.unwrap();
    cfg.apply_routes(&route_plan()).await.unwrap();
    assert_eq!(h.snapshot(), before);
    let planned = cfg.planned().to_vec();
    assert!(planned[0].starts_with("nft -j -f - <<< '"), "{planned:?}");
    assert!(planned.contains(&"sysctl -w net.ipv4.ip_forward=1".to_string()));
    assert!(planned.contains(&"ip route add 0.0.0.0/1 dev aura0 proto 167".to_string()));
    assert!(
        planned.contains(
            &"ip route add 203.0.113.7/32 via 192.0.2.254 dev eth0 proto 167".to_string()
        )
    );
    cfg.undo().await.unwrap();
    assert_eq!(h.snapshot(), before);
    assert!(
        cfg.planned()
            .contains(&"sysctl -w net.ipv4.ip_forward=0".to_string())
    );
    let last = cfg.planned().last().unwrap();
    assert!(
        last.contains("\"delete\":{\"table\""),
        "the table goes last: {last}"
    );
}

#[tokio::test]
async fn drop_undoes() {
    let h = host();
    let before = h.snapshot();
    {
        let mut cfg = HostConfig::in_memory(h.clone());
        cfg.apply_nat(&nat_plan()).await.unwrap();
        cfg.apply_routes(&route_plan()).await.unwrap();
        assert_ne!(h.snapshot(), before);
    }
    assert_eq!(h.snapshot(), before);
}

#[test]
fn drop_undoes_outside_a_runtime() {
    let h = host();
    let before = h.snapshot();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cfg = rt.block_on(async {
        let mut cfg = HostConfig::in_memory(h.clone());
        cfg.apply_routes(&route_plan()).await.unwrap();
        cfg
    });
    drop(rt);
    drop(cfg);
    assert_eq!(h.snapshot(), before);
}

#[tokio::test]
async fn leftovers_are_found_and_removed() {
    let h = host();
    let clean = h.snapshot();
    h.leave_aura_table();
    h.leave_aura_route(ip("203.0.113.7"), 32, "eth0").unwrap();
    let mut cfg = HostConfig::in_memory(h.clone());
    assert!(cfg.cleanup_leftovers().await.unwrap());
    assert_eq!(h.snapshot(), clean);
    assert!(!cfg.cleanup_leftovers().await.unwrap());
    // Without nft only the routes are looked at.
    h.set_nft_available(false);
    h.leave_aura_route(ip("203.0.113.7"), 32, "eth0").unwrap();
    assert!(cfg.cleanup_leftovers().await.unwrap());
    assert_eq!(h.snapshot(), clean);
    // Never after applying: it would remove this run's own changes.
    cfg.apply_routes(&route_plan()).await.unwrap();
    assert!(matches!(
        cfg.cleanup_leftovers().await,
        Err(NetcfgError::InvalidPlan(_))
    ));
}

/// The daemons hold a HostConfig across `.await`s in spawned tasks.
#[test]
fn futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let mut cfg = HostConfig::system();
    send(&cfg);
    send(&cfg.apply_nat(&nat_plan()));
    send(&cfg.apply_routes(&route_plan()));
    send(&cfg.cleanup_leftovers());
    send(&cfg.undo());
    send(&aura_netcfg::default_route());
    send(&aura_netcfg::default_route6());
    send(&cfg.enable_forwarding6());
}

/// Split routes after the tunnel's: a DIRECT network goes the way it went before the
/// tunnel (the default route, the tunnel's /1 halves notwithstanding), a VPN network inside
/// it goes into the tunnel (longest prefix), everything else into the tunnel; a DIRECT
/// network the host already routes exactly (the LAN) is left to that route; the operator's
/// interface overrides the path; removing a route and undo restore the table exactly.
#[tokio::test]
async fn split_routes_send_direct_and_vpn_networks_their_way() {
    let h = host();
    h.add_link("wlan0");
    let before = h.snapshot();
    let mut cfg = HostConfig::in_memory(h.clone());
    cfg.apply_routes(&route_plan()).await.unwrap();
    let mut split = cfg.sibling();
    split
        .add_split_route(ip("198.18.0.0"), 16, true, "aura0", None)
        .await
        .unwrap();
    let lan = split
        .add_split_route(ip("192.0.2.0"), 24, true, "aura0", None)
        .await
        .unwrap();
    assert!(lan.ends_with("(already present)"), "{lan}");
    split
        .add_split_route(ip("198.18.7.0"), 24, false, "aura0", None)
        .await
        .unwrap();
    assert_eq!(h.route_get(ip("198.18.0.2")).as_deref(), Some("eth0"));
    assert_eq!(h.route_get(ip("198.18.7.9")).as_deref(), Some("aura0"));
    assert_eq!(h.route_get(ip("9.9.9.9")).as_deref(), Some("aura0"));
    let routes = h.snapshot().routes;
    assert!(
        routes.contains(&"198.18.0.0/16 via 192.0.2.254 dev eth0 proto 167".to_string()),
        "{routes:?}"
    );
    assert!(routes.contains(&"198.18.7.0/24 dev aura0 proto 167".to_string()));
    // The LAN rule matches the connected route already there: kept, not duplicated.
    assert!(
        !routes
            .iter()
            .any(|r| r.starts_with("192.0.2.0/24") && r.contains("167"))
    );
    // A VPN route that exists already is a conflict, named.
    let err = split
        .add_split_route(ip("198.18.7.0"), 24, false, "aura0", None)
        .await
        .unwrap_err();
    assert!(matches!(err, NetcfgError::RouteConflict { .. }), "{err:?}");
    assert!(
        split
            .remove_split_route(ip("198.18.7.0"), 24)
            .await
            .unwrap()
    );
    assert_eq!(h.route_get(ip("198.18.7.9")).as_deref(), Some("eth0"));
    split.undo().await.unwrap();
    cfg.undo().await.unwrap();
    assert_eq!(h.snapshot(), before);

    // The operator's path.
    let mut cfg = HostConfig::in_memory(h.clone());
    cfg.apply_routes(&route_plan()).await.unwrap();
    let via = aura_netcfg::DirectVia {
        gateway: None,
        dev: Some("wlan0".into()),
    };
    let mut split = cfg.sibling();
    split
        .add_split_route(ip("198.18.0.0"), 16, true, "aura0", Some(&via))
        .await
        .unwrap();
    assert_eq!(h.route_get(ip("198.18.0.2")).as_deref(), Some("wlan0"));
    split.undo().await.unwrap();
    cfg.undo().await.unwrap();
    assert_eq!(h.snapshot(), before);
}

/// The kill switch is its own table: rebuilding the tunnel's routes keeps it, undo
/// removes it with everything else, and a crashed client's table is found and removed
/// at the next start (by a client, not by a server).
#[tokio::test]
async fn the_kill_switch_outlives_route_rebuilds_and_is_cleaned_up() {
    let h = host();
    let before = h.snapshot();
    let mut cfg = HostConfig::in_memory(h.clone());
    let plan = aura_netcfg::KillSwitchPlan {
        tun: "aura0".into(),
        peers: vec![ip("203.0.113.7")],
        direct: vec![(ip("192.168.0.0"), 16)],
    };
    cfg.apply_kill_switch(&plan).await.unwrap();
    cfg.apply_routes(&route_plan()).await.unwrap();
    let table = h.snapshot().nft_client_table.unwrap();
    assert!(
        table.contains("aura_client") && table.contains("203.0.113.7"),
        "{table}"
    );
    cfg.undo_routes().await.unwrap();
    assert_eq!(h.snapshot().routes, before.routes, "the routes are gone");
    assert!(
        h.snapshot().nft_client_table.is_some(),
        "the kill switch stays"
    );
    cfg.apply_routes(&route_plan()).await.unwrap();
    cfg.undo().await.unwrap();
    assert_eq!(h.snapshot(), before);

    // A crash leaves the table; the next client start removes it, a server does not.
    let mut crashed = HostConfig::in_memory(h.clone());
    crashed.apply_kill_switch(&plan).await.unwrap();
    std::mem::forget(crashed);
    let mut server = HostConfig::in_memory(h.clone());
    server.claim(aura_netcfg::Role::Server).unwrap();
    server.cleanup_leftovers().await.unwrap();
    assert!(h.snapshot().nft_client_table.is_some());
    let mut client = HostConfig::in_memory(h.clone());
    client.claim(aura_netcfg::Role::Client).unwrap();
    assert!(client.cleanup_leftovers().await.unwrap());
    assert_eq!(h.snapshot(), before);
}

/// A dual-stack plan: the ULA pool `fd61:7572:6100::/64`.
fn nat_plan6(nat66: bool) -> NatPlan {
    NatPlan {
        pool6: Some(("fd61:7572:6100::".parse().unwrap(), 64)),
        nat66,
        ..nat_plan()
    }
}

/// IPv6 forwarding is a second journalled sysctl: switched on, shown, undone; left alone
/// when already on; a host without IPv6 is a clear error that changes nothing.
#[tokio::test]
async fn ipv6_forwarding_is_enabled_and_undone() {
    let h = host();
    let before = h.snapshot();
    assert_eq!(before.ipv6_forward, "0");
    let mut cfg = HostConfig::in_memory(h.clone());
    cfg.enable_forwarding6().await.unwrap();
    let during = h.snapshot();
    assert_eq!(during.ipv6_forward, "1");
    assert_eq!(during.ip_forward, "0", "IPv4 forwarding is not touched");
    assert_eq!(
        cfg.planned(),
        ["sysctl -w net.ipv6.conf.all.forwarding=1".to_string()]
    );
    // Twice: the second finds it on and records nothing.
    cfg.enable_forwarding6().await.unwrap();
    assert_eq!(cfg.planned().len(), 1);
    cfg.undo().await.unwrap();
    assert_eq!(h.snapshot(), before);
    assert_eq!(
        cfg.planned().last().unwrap(),
        "sysctl -w net.ipv6.conf.all.forwarding=0"
    );

    h.set_ipv6_forward(Some("1"));
    let mut cfg = HostConfig::in_memory(h.clone());
    cfg.enable_forwarding6().await.unwrap();
    assert!(!cfg.has_changes());
    cfg.undo().await.unwrap();
    assert_eq!(h.snapshot().ipv6_forward, "1", "left on");

    h.set_ipv6_forward(None);
    let before = h.snapshot();
    assert_eq!(before.ipv6_forward, "");
    let mut cfg = HostConfig::in_memory(h.clone());
    let err = cfg.enable_forwarding6().await.unwrap_err();
    assert!(matches!(err, NetcfgError::NoIpv6 { .. }), "{err:?}");
    assert!(err.to_string().contains("no IPv6"), "{err}");
    assert!(!cfg.has_changes());
    assert_eq!(h.snapshot(), before);
}

/// A dual-stack pool: NAT66 toward the interface of the IPv6 default route, IPv6
/// forwarding on, all undone exactly; without an IPv6 pool IPv6 forwarding is untouched.
#[tokio::test]
async fn dual_stack_nat_masquerades_the_ipv6_pool_toward_the_ipv6_egress() {
    let h = host();
    h.add_link("eth6");
    h.add_route(ip("::"), 0, Some(ip("2001:db8:1::ff")), "eth6")
        .unwrap();
    let before = h.snapshot();
    let mut cfg = HostConfig::in_memory(h.clone());
    assert_eq!(
        cfg.default_route6().await.unwrap().unwrap().dev,
        "eth6",
        "the ::/0 route"
    );
    cfg.apply_nat(&nat_plan6(true)).await.unwrap();
    let during = h.snapshot();
    assert_eq!(during.ip_forward, "1");
    assert_eq!(during.ipv6_forward, "1");
    let table = during.nft_table.unwrap();
    assert!(
        table.contains("\"protocol\":\"ip6\",\"field\":\"saddr\""),
        "{table}"
    );
    assert!(
        table.contains("\"addr\":\"fd61:7572:6100::\",\"len\":64"),
        "{table}"
    );
    assert!(table.contains("\"eth6\""), "IPv6 egress: {table}");
    assert!(table.contains("\"eth0\""), "IPv4 egress: {table}");
    cfg.undo().await.unwrap();
    assert_eq!(h.snapshot(), before);

    // No IPv6 pool: IPv6 forwarding stays as it was, no IPv6 masquerade.
    let mut cfg = HostConfig::in_memory(h.clone());
    cfg.apply_nat(&nat_plan()).await.unwrap();
    let during = h.snapshot();
    assert_eq!(during.ipv6_forward, "0");
    let table = during.nft_table.unwrap();
    assert!(!table.contains("fd61"), "{table}");
    assert!(!table.contains("\"eth6\""), "{table}");
    cfg.undo().await.unwrap();
    assert_eq!(h.snapshot(), before);
}

/// Routed IPv6: no IPv6 masquerade; without an IPv6 default route the IPv4 egress is
/// the IPv6 one; an explicit egress6 wins; a host without IPv6 rolls everything back.
#[tokio::test]
async fn routed_ipv6_and_egress6_fallbacks() {
    let h = host();
    h.add_link("wan6");
    let before = h.snapshot();
    let mut cfg = HostConfig::in_memory(h.clone());
    assert!(cfg.default_route6().await.unwrap().is_none());
    cfg.apply_nat(&nat_plan6(false)).await.unwrap();
    let table = h.snapshot().nft_table.unwrap();
    assert!(
        !table.contains("fd61"),
        "routed: no IPv6 masquerade: {table}"
    );
    assert_eq!(table.matches("\"masquerade\"").count(), 1, "{table}");
    assert_eq!(h.snapshot().ipv6_forward, "1");
    cfg.undo().await.unwrap();
    assert_eq!(h.snapshot(), before);

    // NAT66 with no IPv6 default route: toward the IPv4 egress.
    let mut cfg = HostConfig::in_memory(h.clone());
    cfg.apply_nat(&nat_plan6(true)).await.unwrap();
    let table = h.snapshot().nft_table.unwrap();
    assert_eq!(table.matches("\"masquerade\"").count(), 2, "{table}");
    assert!(!table.contains("wan6"), "{table}");
    cfg.undo().await.unwrap();

    // An explicit IPv6 egress.
    let mut cfg = HostConfig::in_memory(h.clone());
    let plan = NatPlan {
        egress6: Some("wan6".into()),
        ..nat_plan6(true)
    };
    cfg.apply_nat(&plan).await.unwrap();
    assert!(h.snapshot().nft_table.unwrap().contains("\"wan6\""));
    cfg.undo().await.unwrap();
    assert_eq!(h.snapshot(), before);

    // No IPv6 on the host: the table and IPv4 forwarding are rolled back.
    h.set_ipv6_forward(None);
    let before = h.snapshot();
    let mut cfg = HostConfig::in_memory(h.clone());
    let err = cfg.apply_nat(&nat_plan6(true)).await.unwrap_err();
    assert!(matches!(err, NetcfgError::NoIpv6 { .. }), "{err:?}");
    assert_eq!(h.snapshot(), before);
    assert!(!cfg.has_changes());
    // Without an IPv6 pool such a host is fine.
    cfg.apply_nat(&nat_plan()).await.unwrap();
    cfg.undo().await.unwrap();
    assert_eq!(h.snapshot(), before);
}

#[tokio::test]
async fn dry_run_plans_ipv6_forwarding() {
    let h = host();
    let before = h.snapshot();
    let mut cfg = HostConfig::in_memory(h.clone()).with_dry_run(true);
    cfg.apply_nat(&nat_plan6(true)).await.unwrap();
    assert_eq!(h.snapshot(), before);
    let planned = cfg.planned();
    assert_eq!(planned.len(), 3, "{planned:?}");
    assert!(planned[0].contains("fd61:7572:6100::"), "{}", planned[0]);
    assert_eq!(planned[1], "sysctl -w net.ipv4.ip_forward=1");
    assert_eq!(planned[2], "sysctl -w net.ipv6.conf.all.forwarding=1");
}

#[test]
fn nat_plan_default_is_aura_s_pool_without_ipv6() {
    let d = NatPlan::default();
    assert_eq!(d.pool, ("10.77.0.0".parse().unwrap(), 24));
    assert_eq!(d.tun, "aura0");
    assert!(d.egress.is_none() && d.egress6.is_none() && d.pool6.is_none());
    assert!(d.nat66);
    assert_eq!(d, nat_plan());
}
