//! The results: a markdown table with the targets, and JSON.

use std::fmt::Write as _;

use crate::run::Outcome;

/// `s` as a JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

pub(crate) fn write_json(path: &std::path::Path, settings: &str, outcomes: &[Outcome]) {
    let mut j = String::new();
    let _ = writeln!(j, "{{\n  \"settings\": {settings},\n  \"runs\": [");
    for (i, o) in outcomes.iter().enumerate() {
        let _ = writeln!(
            j,
            "    {{\"carrier\": {}, \"n\": {}, \"concurrency\": {}, \"connected\": {}, \"failed\": {}, \"first_error\": {}, \
\"connect_secs\": {:.3}, \"handshakes_per_s\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}, \
\"server_cpu_us_per_handshake\": {:.1}, \"client_cpu_us_per_handshake\": {:.1}, \"accepted\": {}, \"client_rss_kib\": {}, \"rss_before_kib\": {}, \"rss_idle_kib\": {}, \"hwm_idle_kib\": {}, \
\"kib_per_client\": {:.3}, \"packets_sent\": {}, \"packets_received\": {}, \"client_drops\": {}, \"send_secs\": {:.3}, \
\"packets_per_s\": {:.1}, \"mb_per_s\": {:.2}, \"loss_pct\": {:.3}, \"rss_after_traffic_kib\": {}, \
\"hwm_after_traffic_kib\": {}, \"server_closed\": {}, \"worker_handshakes\": {:?}, \"thread_cpu_ms\": {:?}}}{}",
            json_string(o.carrier),
            o.n,
            o.concurrency,
            o.connected,
            o.failed,
            json_string(&o.first_error),
            o.connect_secs,
            o.handshakes_per_s,
            o.p50_ms,
            o.p99_ms,
            o.max_ms,
            o.server_cpu_us_per_handshake,
            o.client_cpu_us_per_handshake,
            o.accepted,
            o.client_rss_kib,
            o.rss_before_kib,
            o.rss_idle_kib,
            o.hwm_idle_kib,
            o.kib_per_client,
            o.packets_sent,
            o.packets_received,
            o.client_drops,
            o.send_secs,
            o.packets_per_s,
            o.mb_per_s,
            o.loss_pct,
            o.rss_after_traffic_kib,
            o.hwm_after_traffic_kib,
            o.server_closed,
            o.worker_handshakes,
            o.thread_cpu_ms,
            if i + 1 == outcomes.len() { "" } else { "," }
        );
    }
    j.push_str("  ]\n}\n");
    match std::fs::write(path, j) {
        Ok(()) => println!("\nJSON: {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}

pub(crate) fn print_table(outcomes: &[Outcome]) {
    println!();
    println!(
        "| carrier | N | in flight | confirmed / held by server | handshakes/s | p50 ms | p99 ms | CPU µs/handshake server / clients | server RSS before → idle (MiB) | KiB/held client | VmHWM MiB | packets/s | MB/s | loss % |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in outcomes {
        println!(
            "| {} | {} | {} | {} / {} | {:.0} | {:.2} | {:.2} | {:.0} / {:.0} | {:.1} → {:.1} | {:.2} | {:.1} | {:.0} | {:.1} | {:.2} |",
            o.carrier,
            o.n,
            o.concurrency,
            o.connected,
            o.accepted,
            o.handshakes_per_s,
            o.p50_ms,
            o.p99_ms,
            o.server_cpu_us_per_handshake,
            o.client_cpu_us_per_handshake,
            o.rss_before_kib as f64 / 1024.0,
            o.rss_idle_kib as f64 / 1024.0,
            o.kib_per_client,
            o.hwm_idle_kib as f64 / 1024.0,
            o.packets_per_s,
            o.mb_per_s,
            o.loss_pct
        );
    }
    println!();
    for o in outcomes {
        let cpu: Vec<String> = o.thread_cpu_ms.iter().map(|c| format!("{c:.0}")).collect();
        println!(
            "- {} N = {}: handshakes per worker {:?}; CPU ms per server thread in that phase (the workers', then the main thread's) [{}]",
            o.carrier,
            o.n,
            o.worker_handshakes,
            cpu.join(", ")
        );
    }
    for o in outcomes.iter().filter(|o| o.failed > 0) {
        println!(
            "\n{} N = {}: {} of {} did not connect; first error: {}",
            o.carrier, o.n, o.failed, o.n, o.first_error
        );
    }
    for o in outcomes
        .iter()
        .filter(|o| (o.accepted as usize) < o.connected)
    {
        println!(
            "\n{} N = {}: {} clients were confirmed but the server does not hold them (closed by the server's driver: its accept queue was full)",
            o.carrier,
            o.n,
            o.connected - o.accepted as usize
        );
    }
    println!("\nTargets:");
    for o in outcomes {
        let hs = o.handshakes_per_s;
        let target = if o.carrier == "udp" { 5000.0 } else { 2500.0 };
        println!(
            "- {} N = {}: {:.0} handshakes/s vs ≥ {:.0}: {} ({:+.0} %)",
            o.carrier,
            o.n,
            hs,
            target,
            if hs >= target { "met" } else { "missed" },
            100.0 * (hs / target - 1.0)
        );
    }
    for o in outcomes
        .iter()
        .filter(|o| o.carrier == "udp" && o.n >= 10_000)
    {
        println!(
            "- udp N = {}: {:.2} KiB of server memory per idle client vs ≤ 6 KiB: {}",
            o.n,
            o.kib_per_client,
            if o.kib_per_client <= 6.0 {
                "met"
            } else {
                "missed"
            }
        );
    }
}
