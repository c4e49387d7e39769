//! DNS keys: `[server] dns` (the resolvers the server names to its clients) and
//! `[client] dns` (whose resolvers the client points the system at).

use std::net::IpAddr;

use serde::Deserialize;

use crate::error::Problems;

/// Most resolvers a server may name (what one `DnsAssign` control message carries).
pub const MAX_RESOLVERS: usize = 8;

/// Why `ip` cannot be a resolver reached through the tunnel, if it cannot.
pub fn check_resolver(ip: IpAddr) -> Result<(), &'static str> {
    if ip.is_unspecified() {
        return Err("is the unspecified address");
    }
    if ip.is_loopback() {
        return Err("is a loopback address (it would never go through the tunnel)");
    }
    if ip.is_multicast() {
        return Err("is a multicast address");
    }
    match ip {
        IpAddr::V4(v4) if v4.is_broadcast() => Err("is the broadcast address"),
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
            Err("is an IPv4-mapped IPv6 address; write the IPv4 address")
        }
        _ => Ok(()),
    }
}

/// Checks a list of resolvers under `key`: each usable, none twice, at most
/// [`MAX_RESOLVERS`].
pub(crate) fn check_resolvers(p: &mut Problems, key: &'static str, list: &[IpAddr]) {
    if list.len() > MAX_RESOLVERS {
        p.push(
            key,
            format!("{} resolvers listed; at most {MAX_RESOLVERS}", list.len()),
        );
    }
    for (i, ip) in list.iter().enumerate() {
        if let Err(why) = check_resolver(*ip) {
            p.push(key, format!("{ip} {why}"));
        } else if list.get(..i).is_some_and(|seen| seen.contains(ip)) {
            p.push(key, format!("{ip} is listed more than once"));
        }
    }
}

/// `[client] dns`: which resolvers the system uses while the tunnel is up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClientDns {
    /// `"server"` (the default): the resolvers the server names, reached through the
    /// tunnel; the system's DNS configuration is restored when the client stops.
    #[default]
    Server,
    /// `"off"`: the client leaves the system's DNS configuration alone.
    Off,
    /// A list of addresses, e.g. `["10.77.0.1"]`: these instead of the server's,
    /// reached through the tunnel.
    Servers(Vec<IpAddr>),
}

impl<'de> Deserialize<'de> for ClientDns {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<String>),
        }
        let bad_word = |w: &str| {
            serde::de::Error::custom(format!(
                "{w:?} is not \"server\", \"off\" or a list of IP addresses"
            ))
        };
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected \"server\", \"off\" or a list of IP addresses")
        })? {
            Raw::Word(w) => match w.as_str() {
                "server" => Ok(Self::Server),
                "off" => Ok(Self::Off),
                _ => Err(bad_word(&w)),
            },
            Raw::List(items) => items
                .iter()
                .map(|s| {
                    s.parse::<IpAddr>().map_err(|_| {
                        serde::de::Error::custom(format!("{s:?} is not an IP address"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Self::Servers),
        }
    }
}

impl ClientDns {
    pub(crate) fn check(&self, p: &mut Problems) {
        if let Self::Servers(list) = self {
            if list.is_empty() {
                p.push(
                    "client.dns",
                    "an empty list names no resolver; write \"off\" to leave the system's DNS alone",
                );
            }
            check_resolvers(p, "client.dns", list);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Deserialize)]
    struct T {
        dns: ClientDns,
    }

    fn parse(v: &str) -> Result<ClientDns, String> {
        toml::from_str::<T>(&format!("dns = {v}"))
            .map(|t| t.dns)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn words_and_lists() {
        assert_eq!(parse("\"server\"").unwrap(), ClientDns::Server);
        assert_eq!(parse("\"off\"").unwrap(), ClientDns::Off);
        assert_eq!(
            parse("[\"10.77.0.1\", \"fd00::53\"]").unwrap(),
            ClientDns::Servers(vec![
                "10.77.0.1".parse().unwrap(),
                "fd00::53".parse().unwrap()
            ])
        );
        assert!(parse("\"on\"").unwrap_err().contains("\"on\" is not"));
        assert!(
            parse("[\"ns1\"]")
                .unwrap_err()
                .contains("\"ns1\" is not an IP address")
        );
        assert!(parse("3").unwrap_err().contains("expected \"server\""));
    }

    #[test]
    fn unusable_resolvers_are_named() {
        let mut p = Problems::default();
        let list: Vec<IpAddr> = [
            "127.0.0.53",
            "0.0.0.0",
            "224.0.0.1",
            "::ffff:1.2.3.4",
            "9.9.9.9",
            "9.9.9.9",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        check_resolvers(&mut p, "server.dns", &list);
        let text = p.finish().unwrap_err().to_string();
        for needle in [
            "127.0.0.53 is a loopback",
            "0.0.0.0 is the unspecified",
            "224.0.0.1 is a multicast",
            "IPv4-mapped",
            "9.9.9.9 is listed more than once",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        let mut p = Problems::default();
        let many: Vec<IpAddr> = (1..=9).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        check_resolvers(&mut p, "server.dns", &many);
        assert!(
            p.finish()
                .unwrap_err()
                .to_string()
                .contains("9 resolvers listed; at most 8")
        );
        let mut p = Problems::default();
        ClientDns::Servers(vec![]).check(&mut p);
        assert!(p.finish().is_err());
    }
}
