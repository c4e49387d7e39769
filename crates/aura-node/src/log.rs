//! The daemons' log: text or JSON lines on stderr, and with `no_logs` a scrubber in the
//! subscriber itself that removes identifying values from every line of every crate.
//!
//! # What `no_logs` removes
//! The scrubber sits in the formatting layer ([`Scrubbed`]): each event is formatted in
//! full (message, fields, error texts, span fields, whatever crate wrote it), then
//! scrubbed, then written. It removes
//! - every IPv4 and IPv6 address (client, source, assigned, server, resolver addresses;
//!   a port after an address stays: it does not identify anyone), and
//! - every identifier the daemons declare with [`hide`]: the client ids the server
//!   authenticates, the client's own id, the server names and bridges it dials.
//!
//! Each becomes `[redacted]`. The check is by value, not by field name, so an id inside
//! an error text (`client alice is not in the static map`) goes too. Call sites need no
//! discipline; [`crate::Redact`] remains for the status answers.

use std::collections::HashSet;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{OnceLock, PoisonError, RwLock};

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{DefaultFields, Format, Full, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::redact::REDACTED;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, the event's
    /// fields, `spans`).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format {other:?}: text or json")),
        }
    }
}

fn hidden() -> &'static RwLock<HashSet<String>> {
    static HIDDEN: OnceLock<RwLock<HashSet<String>>> = OnceLock::new();
    HIDDEN.get_or_init(RwLock::default)
}

/// Declares `value` identifying: with `no_logs`, every later line shows `[redacted]`
/// where it would appear as a word of its own.
pub fn hide(value: &str) {
    if value.is_empty() {
        return;
    }
    let mut set = hidden().write().unwrap_or_else(PoisonError::into_inner);
    if !set.contains(value) {
        set.insert(value.to_owned());
    }
}

/// The characters of a word an identifier can be (client ids and DNS names).
fn word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// The characters an address is written with.
fn addr_char(c: char) -> bool {
    c.is_ascii_hexdigit() || matches!(c, '.' | ':')
}

/// Whether `s` (a run of address characters) is or starts an IP address worth hiding,
/// and how long the address is.
fn address_len(s: &str) -> Option<usize> {
    // Longest prefix that parses: "10.0.0.1:8443" is an address then a port, "fd00::"
    // an address that ends in colons, "10.0.0.1." one at the end of a sentence.
    let parses = |cand: &str| {
        (cand.contains('.') && cand.parse::<Ipv4Addr>().is_ok())
            || (cand.matches(':').count() >= 2 && cand.parse::<Ipv6Addr>().is_ok())
    };
    if parses(s) {
        return Some(s.len());
    }
    let trimmed = s.trim_end_matches(['.', ':']);
    let mut end = trimmed.len();
    while end > 0 {
        let cand = &trimmed[..end];
        if cand.contains('.') && cand.parse::<Ipv4Addr>().is_ok() {
            return Some(end);
        }
        if cand.matches(':').count() >= 2 && cand.parse::<Ipv6Addr>().is_ok() {
            return Some(end);
        }
        // Shorten to the previous separator.
        match cand[..end].rfind([':', '.']) {
            Some(i) => end = i,
            None => break,
        }
    }
    None
}

/// `line` with every address and every hidden identifier replaced by `[redacted]`.
pub fn scrub(line: &str) -> String {
    let hidden = hidden().read().unwrap_or_else(PoisonError::into_inner);
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    let mut prev: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        let boundary = !prev.is_some_and(|p| word_char(p) || p == ':');
        if boundary && addr_char(c) {
            let run_len = rest.find(|c: char| !addr_char(c)).unwrap_or(rest.len());
            let after = rest[run_len..].chars().next();
            // An address ends where a word does (not "10.0.0.1abc").
            if let Some(n) = address_len(&rest[..run_len])
                && (n < run_len || !after.is_some_and(|a| word_char(a) && a != '.'))
            {
                out.push_str(REDACTED);
                prev = rest[..n].chars().last();
                rest = &rest[n..];
                continue;
            }
        }
        if boundary && word_char(c) && !hidden.is_empty() {
            let len = rest.find(|c: char| !word_char(c)).unwrap_or(rest.len());
            let word = &rest[..len];
            // A sentence's full stop is not part of the id.
            let word_trim = word.trim_end_matches('.');
            if hidden.contains(word) || hidden.contains(word_trim) {
                let n = if hidden.contains(word) {
                    word.len()
                } else {
                    word_trim.len()
                };
                out.push_str(REDACTED);
                prev = rest[..n].chars().last();
                rest = &rest[n..];
                continue;
            }
        }
        out.push(c);
        prev = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// An event formatter that formats with `F`, then scrubs the whole line.
#[derive(Debug)]
pub struct Scrubbed<F>(F);

impl<S, N, F> FormatEvent<S, N> for Scrubbed<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&scrub(&line))
    }
}

fn text_format() -> Format<Full> {
    Format::default().with_target(false)
}

fn json_format() -> Format<Json> {
    Format::default().json().with_target(false)
}

/// Installs the daemon's logger on stderr: `format`, `RUST_LOG` over the default level
/// (info), and with `no_logs` the scrubber. Does nothing when a logger is already set.
pub fn init(format: LogFormat, no_logs: bool) {
    use tracing_subscriber::fmt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = format == LogFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match (format, no_logs) {
        (LogFormat::Text, false) => builder.event_format(text_format()).try_init(),
        (LogFormat::Text, true) => builder
            .fmt_fields(DefaultFields::new())
            .event_format(Scrubbed(text_format()))
            .try_init(),
        (LogFormat::Json, false) => builder
            .fmt_fields(JsonFields::new())
            .event_format(json_format())
            .try_init(),
        (LogFormat::Json, true) => builder
            .fmt_fields(JsonFields::new())
            .event_format(Scrubbed(json_format()))
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses_go_ports_stay() {
        assert_eq!(
            scrub("udp 192.0.2.7:8443: no answer"),
            "udp [redacted]:8443: no answer"
        );
        assert_eq!(
            scrub("remote=[2001:db8::7]:443 tun=aura0"),
            "remote=[[redacted]]:443 tun=aura0"
        );
        assert_eq!(
            scrub("ip route add 198.51.100.4/32 via 10.0.0.1 dev eth0"),
            "ip route add [redacted]/32 via [redacted] dev eth0"
        );
        assert_eq!(
            scrub("assigned fd61:7572:6100::2 and 10.77.0.2."),
            "assigned [redacted] and [redacted]."
        );
        assert_eq!(
            scrub("v4-mapped ::ffff:192.0.2.1 x"),
            "v4-mapped [redacted] x"
        );
        assert_eq!(
            scrub(r#"{"addr":"fd61:7572:6100::","len":64} 8000::/1"#),
            r#"{"addr":"[redacted]","len":64} [redacted]/1"#
        );
    }

    #[test]
    fn what_only_looks_like_an_address_stays() {
        for s in [
            "2026-12-07T04:12:33.123456Z  INFO server ready",
            "version 1.2.3 mtu=1420 took 0.25 ms",
            "crl_number=12 hops=3 deadbeef cafe:f00d",
            "aura0 10.77.0.1abc",
        ] {
            assert_eq!(scrub(s), s, "{s}");
        }
    }

    #[test]
    fn hidden_ids_go_as_whole_words_only() {
        hide("client-scrub-test-7");
        assert_eq!(
            scrub("client client-scrub-test-7 is not in the static map"),
            "client [redacted] is not in the static map"
        );
        assert_eq!(
            scrub("client=client-scrub-test-7 refused."),
            "client=[redacted] refused."
        );
        assert_eq!(
            scrub("peer \"client-scrub-test-7\": revoked"),
            "peer \"[redacted]\": revoked"
        );
        // Part of a longer word: not this id.
        assert_eq!(scrub("client-scrub-test-77 x"), "client-scrub-test-77 x");
    }

    #[test]
    fn json_lines_stay_json() {
        let line = r#"{"fields":{"message":"client connected","remote":"192.0.2.9:5000"}}"#;
        let out = scrub(line);
        assert_eq!(
            out,
            r#"{"fields":{"message":"client connected","remote":"[redacted]:5000"}}"#
        );
        assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
    }

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("xml".parse::<LogFormat>().unwrap_err().contains("xml"));
    }
}
