//! Validation of client ids, server names, extra SANs and CA names.
//!
//! Ids and server names end up in certificate subjects, file names
//! (`clients/<id>.crt`) and logs, so they are kept to a small, shell- and path-safe
//! alphabet: `[A-Za-z0-9._-]`, 1 to [`MAX_NAME_LEN`] characters.

use std::net::IpAddr;

use rand_core::{CryptoRng, RngCore};
use rustls_pki_types::DnsName;

use crate::PkiError;

/// Longest client id or server name, in bytes (RFC 5280 `ub-common-name` is 64).
pub const MAX_NAME_LEN: usize = 64;

/// An extra subject alternative name for a server certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SanEntry {
    /// A DNS name (validated, lowercased).
    Dns(String),
    /// An IP address literal.
    Ip(IpAddr),
}

impl std::fmt::Display for SanEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SanEntry::Dns(d) => f.write_str(d),
            SanEntry::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

fn invalid(kind: &'static str, value: &str, reason: &'static str) -> PkiError {
    PkiError::InvalidName {
        kind,
        value: value.to_owned(),
        reason,
    }
}

fn check_alphabet(kind: &'static str, value: &str) -> Result<(), PkiError> {
    if value.is_empty() {
        return Err(invalid(kind, value, "must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(invalid(kind, value, "must be at most 64 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid(
            kind,
            value,
            "only letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    Ok(())
}

/// Checks a client id: 1..=64 characters from `[A-Za-z0-9._-]`, not starting with `.`
/// or `-` (no hidden files, nothing that looks like a command-line flag).
pub fn validate_client_id(id: &str) -> Result<(), PkiError> {
    const KIND: &str = "client id";
    check_alphabet(KIND, id)?;
    if id.starts_with('.') || id.starts_with('-') {
        return Err(invalid(KIND, id, "must not start with '.' or '-'"));
    }
    Ok(())
}

fn check_dns_name(kind: &'static str, name: &str) -> Result<String, PkiError> {
    check_alphabet(kind, name)?;
    if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        return Err(invalid(
            kind,
            name,
            "must be a DNS name without empty labels",
        ));
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err(invalid(
            kind,
            name,
            "must be a DNS name, not an IP address (add IPs with --san)",
        ));
    }
    if name
        .split('.')
        .any(|label| label.starts_with('-') || label.ends_with('-'))
    {
        return Err(invalid(
            kind,
            name,
            "DNS labels must not start or end with '-'",
        ));
    }
    if DnsName::try_from(name).is_err() {
        return Err(invalid(kind, name, "is not a valid DNS name"));
    }
    Ok(name.to_ascii_lowercase())
}

/// Checks a server name and returns its canonical (lowercase) form: a DNS name of at
/// most 64 characters from `[A-Za-z0-9._-]`, no empty labels, no label starting or ending
/// with `-`, and not an IP literal.
pub fn validate_server_name(name: &str) -> Result<String, PkiError> {
    check_dns_name("server name", name)
}

/// Parses one extra SAN: an IP literal becomes [`SanEntry::Ip`], anything else must be a
/// valid DNS name (same rules as [`validate_server_name`]).
pub fn parse_san(value: &str) -> Result<SanEntry, PkiError> {
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(SanEntry::Ip(ip));
    }
    check_dns_name("subject alternative name", value).map(SanEntry::Dns)
}

/// Checks a CA common name: 1..=64 printable characters, no control characters, no
/// leading or trailing whitespace.
pub fn validate_ca_name(name: &str) -> Result<(), PkiError> {
    const KIND: &str = "CA name";
    if name.is_empty() {
        return Err(invalid(KIND, name, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(KIND, name, "must be at most 64 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(KIND, name, "must not contain control characters"));
    }
    if name.trim() != name {
        return Err(invalid(KIND, name, "must not start or end with whitespace"));
    }
    Ok(())
}

/// Draws a random client id: a UUIDv4 string (lowercase, hyphenated) from `rng`.
pub fn random_client_id<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn client_ids() {
        for ok in ["alice", "A.b_c-9", "0", &"x".repeat(64)] {
            validate_client_id(ok).unwrap();
        }
        for bad in [
            "",
            &"x".repeat(65),
            "a b",
            "a/b",
            "../etc",
            ".hidden",
            "-rf",
            "é",
            "a\0b",
            "a:b",
        ] {
            let err = validate_client_id(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    PkiError::InvalidName {
                        kind: "client id",
                        ..
                    }
                ),
                "{bad:?} -> {err}"
            );
        }
    }

    #[test]
    fn server_names() {
        assert_eq!(
            validate_server_name("VPN.Example.com").unwrap(),
            "vpn.example.com"
        );
        validate_server_name("gw1").unwrap();
        validate_server_name("a_b.example").unwrap();
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "-a.b",
            "a-.b",
            "1.2.3.4",
            "a b",
            "a/b",
            "*.example.com",
            &format!("{}.com", "x".repeat(64)),
        ] {
            assert!(validate_server_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sans() {
        assert_eq!(
            parse_san("10.0.0.1").unwrap(),
            SanEntry::Ip("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            parse_san("2001:db8::1").unwrap(),
            SanEntry::Ip("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            parse_san("Alt.Example").unwrap(),
            SanEntry::Dns("alt.example".into())
        );
        assert!(parse_san("not a name").is_err());
        assert!(parse_san("").is_err());
    }

    #[test]
    fn ca_names() {
        validate_ca_name("Aura CA").unwrap();
        validate_ca_name("Société CA").unwrap();
        assert!(validate_ca_name("").is_err());
        assert!(validate_ca_name(" CA").is_err());
        assert!(validate_ca_name("a\nb").is_err());
        assert!(validate_ca_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn random_ids_are_uuid_v4_and_valid() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let a = random_client_id(&mut rng);
        let b = random_client_id(&mut rng);
        assert_ne!(a, b);
        for id in [&a, &b] {
            validate_client_id(id).unwrap();
            let u = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(u.get_version_num(), 4);
            assert_eq!(id.len(), 36);
            assert_eq!(id, &id.to_lowercase());
        }
        // Deterministic for a given RNG state.
        let mut rng2 = ChaCha20Rng::seed_from_u64(7);
        assert_eq!(random_client_id(&mut rng2), a);
    }
}
