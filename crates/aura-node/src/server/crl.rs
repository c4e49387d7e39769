//! The server's CRL upkeep: the file re-read for newer CRLs, the push to clients, and the
//! CRL kept from expiring.
//!
//! A CRL past its nextUpdate makes every handshake fail on both sides (the verifier is
//! strict), so a deployment where nobody re-signs it stops working one day. A server
//! whose `pki.ca_key` is set re-signs it through its `aura pki` directory when less than
//! [`RESIGN_BEFORE`] (or half the CRL's lifetime, if shorter) is left; the file reload
//! then picks the new CRL up and pushes it like any other. A server without the CA key
//! warns, in its log and in `aura status`, from [`WARN_BEFORE`] before. Every decision is
//! a function of the time passed in.

use std::path::Path;
use std::time::Duration;

use aura_pki::{PkiStore, Verifier};
use aura_proto::control::{self, CRL_PUSH_OVERHEAD};

use crate::creds;

/// How often the CRL file is checked for a newer CRL (and the CRL's lifetime checked).
pub const CRL_RELOAD: Duration = Duration::from_secs(2);

/// Data bytes per pushed CRL chunk: the envelope stays under 1232 bytes, so it crosses
/// any carrier as one datagram.
pub const CRL_CHUNK: usize = 1232 - CRL_PUSH_OVERHEAD - 64;

/// A server holding the CA key re-signs the CRL when this little of its lifetime is left
/// (or half the lifetime, for CRLs shorter than twice this).
pub const RESIGN_BEFORE: Duration = Duration::from_secs(30 * 86_400);

/// A server without the CA key warns this long before its CRL expires.
pub const WARN_BEFORE: Duration = Duration::from_secs(14 * 86_400);

/// How long a failed re-signing waits before the next try.
pub const RESIGN_RETRY: Duration = Duration::from_secs(3_600);

/// How often the log repeats an expiry warning.
pub const WARN_EVERY: Duration = Duration::from_secs(86_400);

/// The CRL push for `crl_der`, as whole envelopes.
pub fn crl_push(number: u64, crl_der: &[u8]) -> Vec<Vec<u8>> {
    match control::chunk_crl(number, crl_der, CRL_CHUNK) {
        Ok(chunks) => chunks.collect(),
        Err(e) => {
            tracing::warn!(error = %e, "the CRL cannot be pushed");
            Vec::new()
        }
    }
}

/// The contents of the CRL file at `path` when they differ from `current` and verify
/// with a higher CRL number than `number`.
pub fn newer_crl(
    path: &Path,
    ca_der: &[u8],
    number: u64,
    current: &[u8],
) -> Option<(u64, Vec<u8>, Verifier)> {
    let text = std::fs::read_to_string(path).ok()?;
    let der = pem::parse(text.as_bytes()).ok()?.into_contents();
    if der == current {
        return None;
    }
    let v = match Verifier::new(ca_der, [&der]) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the CRL file changed but does not verify");
            return None;
        }
    };
    let n = creds::crl_number(&v);
    (n > number).then_some((n, der, v))
}

/// The CRL's validity, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlLifetime {
    /// thisUpdate.
    pub this_update: i64,
    /// nextUpdate (every CRL the verifier takes has one).
    pub next_update: i64,
}

impl CrlLifetime {
    /// The lifetime of the CRL `verifier` uses.
    pub fn of(verifier: &Verifier) -> Self {
        Self {
            this_update: verifier.crl_this_update().unix_timestamp(),
            next_update: verifier.crl_next_update().unix_timestamp(),
        }
    }
}

/// What the CRL needs at a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upkeep {
    /// Nothing.
    Nothing,
    /// Re-sign it now.
    Resign,
    /// Log this warning.
    Warn(String),
}

/// When the CRL was last re-signed or warned about, so the log is not flooded.
#[derive(Debug)]
pub struct CrlUpkeep {
    store: Option<PkiStore>,
    /// No re-signing before this Unix time (after a failure).
    retry_at: i64,
    /// No log warning before this Unix time.
    warn_at: i64,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Seconds as whole days, rounded down, for messages.
fn days(s: i64) -> i64 {
    s.div_euclid(86_400)
}

impl CrlUpkeep {
    /// Upkeep that re-signs through `store` when given, and warns otherwise.
    pub fn new(store: Option<PkiStore>) -> Self {
        Self {
            store,
            retry_at: i64::MIN,
            warn_at: i64::MIN,
        }
    }

    /// What `aura status` shows about the CRL at `now`: a warning from [`WARN_BEFORE`]
    /// before nextUpdate when the server cannot re-sign it, and once it has expired.
    pub fn status(&self, crl: CrlLifetime, now: i64) -> Option<String> {
        let next = crl.next_update;
        let left = next.saturating_sub(now);
        if left <= 0 {
            return Some(format!(
                "the CRL expired {} days ago: every handshake fails until a newer CRL is in \
                 place (run `aura pki crl` and copy crl.pem here)",
                days(-left)
            ));
        }
        if self.store.is_none() && left <= secs(WARN_BEFORE) {
            return Some(format!(
                "the CRL expires in {} days: handshakes fail after that unless a newer CRL \
                 is in place (run `aura pki crl`, or set pki.ca_key)",
                days(left)
            ));
        }
        None
    }

    /// What to do at `now` about the CRL in use.
    pub fn due(&mut self, crl: CrlLifetime, now: i64) -> Upkeep {
        let next = crl.next_update;
        let left = next.saturating_sub(now);
        if self.store.is_some() {
            let lifetime = next.saturating_sub(crl.this_update);
            let threshold = secs(RESIGN_BEFORE).min(lifetime / 2);
            if left <= threshold && now >= self.retry_at {
                return Upkeep::Resign;
            }
            if left > 0 {
                return Upkeep::Nothing;
            }
        }
        match self.status(crl, now) {
            Some(w) if now >= self.warn_at => {
                self.warn_at = now.saturating_add(secs(WARN_EVERY));
                Upkeep::Warn(w)
            }
            _ => Upkeep::Nothing,
        }
    }

    /// Re-signs the CRL at `now` through the PKI directory (a new CRL number, a fresh
    /// nextUpdate, `crl.pem` rewritten atomically). Whatever the outcome, the next
    /// attempt waits [`RESIGN_RETRY`]: a failure is logged, and a CRL the reload has not
    /// taken up yet is not signed again every tick. Returns the new CRL number.
    pub fn resign(&mut self, now: i64) -> Option<u64> {
        let store = self.store.as_ref()?;
        let at = time::OffsetDateTime::from_unix_timestamp(now).ok()?;
        self.retry_at = now.saturating_add(secs(RESIGN_RETRY));
        match store.regenerate_crl(at) {
            Ok(crl) => {
                tracing::info!(
                    crl_number = crl.number,
                    next_update = %crl.next_update,
                    "CRL re-signed before it expires"
                );
                Some(crl.number)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot re-sign the CRL; retrying in an hour");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const DAY: i64 = 86_400;
    const T0: i64 = 1_900_000_000;

    fn lifetime(days_valid: i64) -> CrlLifetime {
        CrlLifetime {
            this_update: T0,
            next_update: T0 + days_valid * DAY,
        }
    }

    #[test]
    fn the_crl_push_fits_one_datagram_per_chunk() {
        let der = vec![0x30; 5000];
        let push = crl_push(3, &der);
        assert_eq!(push.len(), 5);
        assert!(push.iter().all(|p| p.len() <= 1232));
        let mut a = control::CrlAssembler::new();
        let mut done = None;
        for p in &push {
            if let Ok(control::ControlMessage::CrlPush(c)) = control::ControlMessage::decode(p) {
                done = a.push(&c).unwrap();
            }
        }
        assert_eq!(done, Some(der));
    }

    #[test]
    fn without_the_key_it_warns_from_14_days_before_and_once_a_day() {
        let mut u = CrlUpkeep::new(None);
        let crl = lifetime(180);
        assert_eq!(u.due(crl, T0 + 165 * DAY), Upkeep::Nothing);
        assert_eq!(u.status(crl, T0 + 165 * DAY), None);
        let at = T0 + 166 * DAY + 1;
        let Upkeep::Warn(w) = u.due(crl, at) else {
            panic!("no warning 14 days before");
        };
        assert!(w.contains("expires in 13 days"), "{w}");
        assert!(u.status(crl, at).is_some());
        // Not again within the day, again after it.
        assert_eq!(u.due(crl, at + 3_600), Upkeep::Nothing);
        assert!(matches!(u.due(crl, at + DAY), Upkeep::Warn(_)));
        // Expired: a different warning.
        let late = T0 + 182 * DAY;
        let Upkeep::Warn(w) = u.due(crl, late) else {
            panic!("no warning after expiry");
        };
        assert!(w.contains("expired 2 days ago"), "{w}");
    }

    #[test]
    fn with_the_key_it_resigns_well_before_and_never_warns_early() {
        let dir = tempfile::tempdir().unwrap();
        let store = PkiStore::new(dir.path());
        let mut rng = rand_core::OsRng;
        let start = time::OffsetDateTime::from_unix_timestamp(T0).unwrap();
        store
            .init(
                "Test CA",
                time::Duration::days(3650),
                false,
                start,
                &mut rng,
            )
            .unwrap();
        let mut u = CrlUpkeep::new(Some(store.clone()));
        let crl = lifetime(180);
        assert_eq!(u.due(crl, T0 + 149 * DAY), Upkeep::Nothing);
        let at = T0 + 151 * DAY;
        assert_eq!(u.due(crl, at), Upkeep::Resign);
        assert_eq!(
            u.status(crl, at),
            None,
            "a server that re-signs does not warn"
        );
        let before = store.crl_number().unwrap();
        assert_eq!(u.resign(at), Some(before + 1));
        // Until the reload takes the new CRL up, the old lifetime stays in use: no second
        // signature before the retry delay.
        assert_eq!(u.due(crl, at + 5), Upkeep::Nothing);
        let v = Verifier::new(&store.ca_cert_der().unwrap(), [store.crl_der().unwrap()]).unwrap();
        let fresh = CrlLifetime::of(&v);
        assert_eq!(fresh.this_update, at);
        assert!(fresh.next_update > at + 150 * DAY);
        assert_eq!(u.due(fresh, at + 1), Upkeep::Nothing);
        // A short-lived CRL is re-signed at half its lifetime.
        let mut u = CrlUpkeep::new(Some(store));
        let short = lifetime(10);
        assert_eq!(u.due(short, T0 + 4 * DAY), Upkeep::Nothing);
        assert_eq!(u.due(short, T0 + 5 * DAY), Upkeep::Resign);
    }

    #[test]
    fn a_failed_resign_waits_before_trying_again() {
        let dir = tempfile::tempdir().unwrap();
        // An empty directory: re-signing fails (no CA there).
        let mut u = CrlUpkeep::new(Some(PkiStore::new(dir.path())));
        let crl = lifetime(180);
        let at = T0 + 170 * DAY;
        assert_eq!(u.due(crl, at), Upkeep::Resign);
        assert_eq!(u.resign(at), None);
        assert_eq!(u.due(crl, at + 60), Upkeep::Nothing);
        assert_eq!(u.due(crl, at + secs(RESIGN_RETRY)), Upkeep::Resign);
    }
}
