//! Small time helpers shared by the modules: RFC 3339 display and DER-safe truncation.

use rustls_pki_types::UnixTime;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time, UtcOffset};

/// Formats a time as RFC 3339 (UTC), falling back to the `Debug` form for years that
/// RFC 3339 cannot express.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}

/// Normalises a time the way X.509 encodes it: UTC, whole seconds.
pub(crate) fn x509_time(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
}

/// Converts webpki's [`UnixTime`] to an [`OffsetDateTime`] (saturating at the end of the
/// representable range, which no certificate reaches).
pub(crate) fn from_unix(t: UnixTime) -> OffsetDateTime {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or_else(|| OffsetDateTime::new_utc(Date::MAX, Time::MIDNIGHT))
}
