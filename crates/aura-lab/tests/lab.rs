//! The lab topology of `aura_lab::lab` against real kernel state (root-only tier).
//!
//! ```text
//!   C1 10.200.1.2 ==== 10.200.1.1 S 198.18.0.1 ==== 198.18.0.2 I
//!   C2 10.200.2.2 ==== 10.200.2.1
//! ```
//! Needs root and `ip`; otherwise each test prints why and passes without checking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aura_lab::lab::{self, Lab};
use aura_lab::netns::{Netns, skip_reason};

fn lab(test: &str, clients: usize) -> Option<Lab> {
    if let Some(why) = skip_reason(&[]) {
        eprintln!("skipping {test}: {why}");
        return None;
    }
    Some(Lab::new("aura-lab-test", clients).unwrap())
}

fn listed() -> String {
    String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

/// A TCP connect from inside `ns`, bounded by `timeout`.
fn connect(ns: &Netns, to: Ipv4Addr, port: u16, timeout: Duration) -> std::io::Result<()> {
    ns.run(|| TcpStream::connect_timeout(&SocketAddr::from((to, port)), timeout).map(drop))
        .unwrap()
}

#[test]
fn topology_comes_up_and_goes_away() {
    let Some(lab) = lab("topology_comes_up_and_goes_away", 2) else {
        return;
    };
    let names = lab.names();
    assert_eq!(names.len(), 4);
    let before = listed();
    for n in &names {
        assert!(before.contains(n.as_str()), "{n} not in {before}");
    }
    let s = lab.server().sh("ip -4 -o addr; ip route").unwrap();
    for want in [
        "10.200.1.1/24",
        "10.200.2.1/24",
        "198.18.0.1/24",
        "default via 198.18.0.2 dev s-i",
    ] {
        assert!(s.contains(want), "{want} missing in S:\n{s}");
    }
    for k in 1..=2 {
        let c = lab
            .client(k)
            .unwrap()
            .sh("ip -4 -o addr; ip route")
            .unwrap();
        assert!(c.contains(&format!("10.200.{k}.2/24")), "{c}");
        assert!(
            c.contains(&format!("default via 10.200.{k}.1 dev c{k}-s")),
            "{c}"
        );
        assert_eq!(lab.client_ip(k), Ipv4Addr::new(10, 200, k as u8, 2));
        assert_eq!(lab.server_ip(k), Ipv4Addr::new(10, 200, k as u8, 1));
    }
    assert!(lab.client(0).is_none() && lab.client(3).is_none());
    // I knows only its own link: nothing toward the clients or the tunnel pool.
    let i = lab.internet().sh("ip route").unwrap();
    assert!(!i.contains("default"), "{i}");
    assert!(lab.internet().sh("ip route get 10.200.1.2").is_err());
    assert!(lab.internet().sh("ip route get 10.77.0.2").is_err());
    // The direct links carry traffic: a connect to a closed port is refused (an
    // answer came back) rather than timing out.
    for (ns, to) in [
        (lab.client(1).unwrap(), lab.server_ip(1)),
        (lab.client(2).unwrap(), lab.server_ip(2)),
        (lab.server(), lab.internet_ip()),
    ] {
        let err = connect(ns, to, 9, Duration::from_secs(2)).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::ConnectionRefused,
            "{} -> {to}",
            ns.name()
        );
    }
    drop(lab);
    let after = listed();
    for n in &names {
        assert!(!after.contains(n.as_str()), "{n} left behind: {after}");
    }
}

#[test]
fn a_client_gets_no_answer_from_the_internet_host_without_aura() {
    let Some(lab) = lab("a_client_gets_no_answer", 1) else {
        return;
    };
    let c1 = lab.client(1).unwrap();
    let done = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        // Something listens on I for the whole test.
        s.spawn(|| {
            lab.internet()
                .run(|| {
                    let l = TcpListener::bind("0.0.0.0:7000").unwrap();
                    l.set_nonblocking(true).unwrap();
                    tx.send(()).unwrap();
                    while !done.load(Ordering::Relaxed) {
                        let _ = l.accept();
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
                .unwrap()
        });
        let result = std::panic::catch_unwind(|| {
            rx.recv_timeout(Duration::from_secs(5)).unwrap();
            // The server reaches it.
            connect(
                lab.server(),
                lab.internet_ip(),
                7000,
                Duration::from_secs(2),
            )
            .unwrap();
            // A client does not: S does not forward.
            let t0 = Instant::now();
            let err = connect(c1, lab.internet_ip(), 7000, Duration::from_millis(800)).unwrap_err();
            assert!(t0.elapsed() < Duration::from_secs(3), "connect not bounded");
            eprintln!("forwarding off: {err}");
            // Even with forwarding on, I has no route back to 10.200.1.2: no answer.
            lab.server().sh("sysctl -qw net.ipv4.ip_forward=1").unwrap();
            let err = connect(c1, lab.internet_ip(), 7000, Duration::from_millis(800)).unwrap_err();
            eprintln!("forwarding on, no NAT: {err}");
            assert!(
                matches!(err.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock)
                    || err.raw_os_error() == Some(113), // EHOSTUNREACH
                "{err:?}"
            );
        });
        done.store(true, Ordering::Relaxed);
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    });
}

#[test]
fn transfer_between_server_and_internet_host_checks_every_byte() {
    let Some(lab) = lab("transfer_between_server_and_internet_host", 1) else {
        return;
    };
    let bytes = 8 * 1024 * 1024 + 123; // not a multiple of the chunk size
    let run = || {
        lab::transfer(
            lab.server(),
            lab.internet(),
            lab.internet_ip(),
            5201,
            bytes,
            Duration::from_secs(20),
        )
        .unwrap()
    };
    let report = run();
    assert_eq!(report.bytes, bytes as u64);
    assert_eq!(report.peer_seen.ip(), lab.server_internet_ip());
    assert_eq!(report.sender_local.ip(), lab.server_internet_ip());
    assert!(report.mbit_per_s > 1.0, "{report:?}");
    assert_ne!(report.sha256, [0u8; 32]);
    // The payload is deterministic: a second run gives the same digest.
    let again = run();
    assert_eq!(again.sha256, report.sha256);
}

#[test]
fn transfer_fails_in_bounded_time_when_unreachable() {
    let Some(lab) = lab("transfer_fails_in_bounded_time", 1) else {
        return;
    };
    let t0 = Instant::now();
    let err = lab::transfer(
        lab.client(1).unwrap(),
        lab.internet(),
        lab.internet_ip(),
        5201,
        1024,
        Duration::from_secs(2),
    )
    .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    assert!(
        err.contains("connect") || err.contains("timed out"),
        "{err}"
    );
}

#[test]
fn run_executes_inside_the_namespace_and_reports_panics() {
    if let Some(why) = skip_reason(&[]) {
        eprintln!("skipping run_executes_inside_the_namespace: {why}");
        return;
    }
    let ns = Netns::new("aura-lab-test").unwrap();
    ns.sh("ip addr add 192.0.2.7/32 dev lo").unwrap();
    // The address exists only inside: binding to it works there, not here.
    let inside = ns
        .run(|| std::net::TcpListener::bind("192.0.2.7:0").is_ok())
        .unwrap();
    assert!(inside);
    assert!(std::net::TcpListener::bind("192.0.2.7:0").is_err());
    let out = ns.command("ip").args(["-o", "addr"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("192.0.2.7"));
    let err = ns.run(|| -> u8 { panic!("boom") }).unwrap_err();
    assert!(err.contains("boom"), "{err}");
    let name = ns.name().to_owned();
    drop(ns);
    assert!(!listed().contains(&name));
}

#[test]
fn lab_rejects_bad_client_counts() {
    assert!(Lab::new("aura-lab-test", 0).unwrap_err().contains("1 to"));
    assert!(Lab::new("aura-lab-test", 251).unwrap_err().contains("1 to"));
}

#[test]
fn a_cancelled_transfer_gives_up_promptly() {
    let Some(lab) = lab("a_cancelled_transfer_gives_up_promptly", 1) else {
        return;
    };
    let cancel = AtomicBool::new(false);
    let t0 = Instant::now();
    let err = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            cancel.store(true, Ordering::Relaxed);
        });
        // Unreachable (S does not forward): without the flag this would take 30 s.
        lab::transfer_cancellable(
            lab.client(1).unwrap(),
            lab.internet(),
            lab.internet_ip(),
            5201,
            1024,
            Duration::from_secs(30),
            &cancel,
        )
        .unwrap_err()
    });
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(err.contains("cancelled"), "{err}");
}
