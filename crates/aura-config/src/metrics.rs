//! `[server.metrics]` and `[client.metrics]`: the Prometheus text endpoint.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::error::Problems;

/// `[server.metrics]` / `[client.metrics]`: `GET /metrics` over plain HTTP/1.1, in the
/// Prometheus text format. Off unless `listen` is set. The endpoint has no
/// authentication and no TLS, so it listens on a loopback address unless `allow_remote`
/// says otherwise. It shows counts only: no client id, no address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// `IP:port` to serve on, e.g. `127.0.0.1:9587`. Default: none (no endpoint).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Let `listen` be an address other than loopback (a private network the scraper is
    /// on). Default `false`.
    #[serde(default)]
    pub allow_remote: bool,
}

impl MetricsSection {
    /// The address to serve on, `None` when off; or why `listen` cannot be used (a
    /// message for the key `{section}.listen`, or `{section}.allow_remote`, named in it).
    ///
    /// # Errors
    /// Port 0, a non-loopback address without `allow_remote`, `allow_remote` without
    /// `listen`.
    pub fn address(&self, section: &str) -> Result<Option<SocketAddr>, (String, String)> {
        let Some(addr) = self.listen else {
            if self.allow_remote {
                return Err((
                    format!("{section}.allow_remote"),
                    format!(
                        "is set but {section}.listen is not: set the address to serve on, or \
                         remove the key"
                    ),
                ));
            }
            return Ok(None);
        };
        let key = format!("{section}.listen");
        if addr.port() == 0 {
            return Err((
                key,
                format!("{addr}: port 0 is not a port a scraper can be pointed at"),
            ));
        }
        if !addr.ip().is_loopback() && !self.allow_remote {
            return Err((
                key,
                format!(
                    "{addr} is not a loopback address: the endpoint has no authentication \
                     or TLS; serve it on 127.0.0.1 or ::1, or set {section}.allow_remote = \
                     true to serve it there anyway"
                ),
            ));
        }
        Ok(Some(addr))
    }

    pub(crate) fn check(&self, p: &mut Problems, section: &str) {
        if let Err((key, message)) = self.address(section) {
            p.push(key, message);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn section(listen: Option<&str>, allow_remote: bool) -> MetricsSection {
        MetricsSection {
            listen: listen.map(|l| l.parse().unwrap()),
            allow_remote,
        }
    }

    #[test]
    fn loopback_only_unless_allowed() {
        assert_eq!(section(None, false).address("server.metrics"), Ok(None));
        for ok in ["127.0.0.1:9587", "[::1]:9587", "127.0.0.2:80"] {
            assert!(
                section(Some(ok), false).address("s").unwrap().is_some(),
                "{ok}"
            );
        }
        let (key, why) = section(Some("0.0.0.0:9587"), false)
            .address("server.metrics")
            .unwrap_err();
        assert_eq!(key, "server.metrics.listen");
        assert!(
            why.starts_with("0.0.0.0:9587 is not a loopback address"),
            "{why}"
        );
        assert!(why.contains("server.metrics.allow_remote = true"), "{why}");
        assert!(
            section(Some("192.0.2.1:9587"), true)
                .address("s")
                .unwrap()
                .is_some()
        );
        let (key, _) = section(Some("127.0.0.1:0"), false)
            .address("client.metrics")
            .unwrap_err();
        assert_eq!(key, "client.metrics.listen");
        let (key, _) = section(None, true).address("server.metrics").unwrap_err();
        assert_eq!(key, "server.metrics.allow_remote");
    }
}
