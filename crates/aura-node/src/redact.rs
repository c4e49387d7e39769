//! What `no_logs` hides: client ids and network or tunnel addresses in the daemons' own
//! log lines and status messages.
//!
//! Call sites pass identifying values through [`Redact`]; with `no_logs` off it returns
//! them unchanged, with it on it returns `[redacted]`. It covers the lines this crate
//! writes; lines written by the crates below go through the log formatter.

/// The text that stands in for a hidden value.
pub const REDACTED: &str = "[redacted]";

/// Hides client ids and addresses from log lines when `no_logs` is set.
#[derive(Debug, Clone, Copy)]
pub struct Redact(pub bool);

impl Redact {
    /// A client id, or `[redacted]`.
    pub fn id<'a>(&self, id: &'a str) -> &'a str {
        if self.0 { REDACTED } else { id }
    }

    /// An address, or `[redacted]`.
    pub fn addr(&self, addr: &impl std::fmt::Display) -> String {
        if self.0 {
            REDACTED.into()
        } else {
            addr.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_only_when_asked() {
        let addr = std::net::Ipv4Addr::new(192, 0, 2, 7);
        assert_eq!(Redact(false).id("alice"), "alice");
        assert_eq!(Redact(false).addr(&addr), "192.0.2.7");
        assert_eq!(Redact(true).id("alice"), REDACTED);
        assert_eq!(Redact(true).addr(&addr), REDACTED);
    }
}
