//! Small shared types: certificate roles and validity periods.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::PkiError;
use crate::time_fmt::x509_time;

/// How far before "now" a new certificate's notBefore is set, so that a peer whose clock
/// runs a little behind the issuer's still accepts a freshly issued certificate.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::minutes(5);

/// The role a leaf certificate is issued for (its single extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A server: EKU `serverAuth`, SAN DNS/IP names.
    Server,
    /// A client: EKU `clientAuth`, identified by its CN.
    Client,
}

impl Role {
    /// `"server"` or `"client"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A certificate validity period, normalised to UTC whole seconds (what X.509 encodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl Validity {
    /// An explicit period; `not_before` must be strictly before `not_after`.
    pub fn new(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Result<Self, PkiError> {
        let (not_before, not_after) = (x509_time(not_before), x509_time(not_after));
        if not_before >= not_after {
            return Err(PkiError::InvalidValidity(
                "not_before must be earlier than not_after",
            ));
        }
        Ok(Validity {
            not_before,
            not_after,
        })
    }

    /// A period for a certificate issued at `now` that lives for `lifetime`:
    /// notBefore = now − [`CLOCK_SKEW_ALLOWANCE`], notAfter = now + lifetime.
    pub fn starting_at(now: OffsetDateTime, lifetime: Duration) -> Result<Self, PkiError> {
        if !lifetime.is_positive() {
            return Err(PkiError::InvalidValidity("the lifetime must be positive"));
        }
        let not_after = now
            .checked_add(lifetime)
            .ok_or(PkiError::InvalidValidity("the lifetime is too long"))?;
        let not_before = now
            .checked_sub(CLOCK_SKEW_ALLOWANCE)
            .ok_or(PkiError::InvalidValidity("the start time is out of range"))?;
        Validity::new(not_before, not_after)
    }

    /// [`Validity::starting_at`] with a lifetime in whole days.
    pub fn days_from(now: OffsetDateTime, days: u32) -> Result<Self, PkiError> {
        Validity::starting_at(now, Duration::days(i64::from(days)))
    }

    /// Start of the period.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of the period.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn validity_rules() {
        let now = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap()
            + Duration::milliseconds(750);
        let v = Validity::days_from(now, 30).unwrap();
        assert_eq!(v.not_after().unix_timestamp(), 1_900_000_000 + 30 * 86_400);
        assert_eq!(v.not_after().nanosecond(), 0);
        assert_eq!(v.not_before().unix_timestamp(), 1_900_000_000 - 300);
        assert!(Validity::days_from(now, 0).is_err());
        assert!(Validity::new(now, now).is_err());
        assert!(Validity::new(now + Duration::SECOND, now).is_err());
        assert!(Validity::starting_at(now, Duration::seconds(-1)).is_err());
    }

    #[test]
    fn role_serde() {
        assert_eq!(serde_json::to_string(&Role::Client).unwrap(), "\"client\"");
        assert_eq!(
            serde_json::from_str::<Role>("\"server\"").unwrap(),
            Role::Server
        );
    }
}
