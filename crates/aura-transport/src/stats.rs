//! What a driver counts besides each connection's traffic: completed handshakes by
//! carrier, refused handshakes by reason, datagrams the protocol endpoint dropped by
//! reason, and the UDP camouflage's refusals. Read by the daemons' metrics.
//!
//! Nothing here is touched per packet of a live session. The driver keeps plain counts
//! in its task (a refused datagram adds one to an integer it owns) and copies them where
//! other tasks can read them ([`DriverStats`] behind a mutex) once a second, and at once
//! after each handshake.
//!
//! [`ListenerCounters`] gathers a server's counters from every layer of its listeners
//! (the driver, the QUIC listener, the TLS and QUIC knocks) without keeping any of them
//! running.

use std::sync::{Arc, Mutex, PoisonError};

use aura_pki::VerifyError;
use aura_proto::{DropReason, HandshakeError};

use crate::camo::datagram::Refusals;
use crate::camo::quic_knock::QuicKnock;
use crate::camo::tls_knock::TlsKnock;
use crate::carrier::Carrier;
use crate::carrier::quic::{QuicCounters, QuicStats};

/// Every carrier, in the order [`DriverStats::handshakes`] counts them.
pub const CARRIERS: [Carrier; 4] = [Carrier::Udp, Carrier::Quic, Carrier::Tls, Carrier::Mem];

fn carrier_index(c: Carrier) -> usize {
    match c {
        Carrier::Udp => 0,
        Carrier::Quic => 1,
        Carrier::Tls => 2,
        Carrier::Mem => 3,
    }
}

/// Why a handshake was refused, as the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The peer's certificate is on the CRL.
    CertificateRevoked,
    /// The peer's certificate is expired or not valid yet.
    CertificateExpired,
    /// The peer's certificate is not from this deployment's CA.
    CertificateUnknownIssuer,
    /// The peer's certificate was refused for another reason (role, name, this side's
    /// CRL).
    CertificateOther,
    /// The transcript signature does not verify.
    BadSignature,
    /// The finished MAC does not match.
    BadFinished,
    /// A handshake message could not be decoded.
    Malformed,
    /// A handshake message did not authenticate.
    Decrypt,
    /// An invalid key exchange value.
    Kem,
    /// No protocol version or cipher suite in common.
    NoCommonParameters,
    /// Anything else (a client's reasons: refused by the server, timed out, ...).
    Other,
}

impl HandshakeFailure {
    /// Every reason, in the order [`DriverStats::handshake_failures`] counts them.
    pub const ALL: [Self; 11] = [
        Self::CertificateRevoked,
        Self::CertificateExpired,
        Self::CertificateUnknownIssuer,
        Self::CertificateOther,
        Self::BadSignature,
        Self::BadFinished,
        Self::Malformed,
        Self::Decrypt,
        Self::Kem,
        Self::NoCommonParameters,
        Self::Other,
    ];

    /// The reason of `e`.
    pub fn of(e: &HandshakeError) -> Self {
        match e {
            HandshakeError::PeerCertificate(v) => match v {
                VerifyError::Revoked => Self::CertificateRevoked,
                VerifyError::Expired { .. } | VerifyError::NotYetValid { .. } => {
                    Self::CertificateExpired
                }
                VerifyError::UnknownIssuer(_) => Self::CertificateUnknownIssuer,
                _ => Self::CertificateOther,
            },
            HandshakeError::BadSignature => Self::BadSignature,
            HandshakeError::BadFinished => Self::BadFinished,
            HandshakeError::Malformed(_) => Self::Malformed,
            HandshakeError::Decrypt => Self::Decrypt,
            HandshakeError::Kem(_) => Self::Kem,
            HandshakeError::NoCommonVersion(_) | HandshakeError::NoCommonSuite(_) => {
                Self::NoCommonParameters
            }
            _ => Self::Other,
        }
    }

    /// The label value: `certificate_revoked`, `bad_signature`, ...
    pub fn name(self) -> &'static str {
        match self {
            Self::CertificateRevoked => "certificate_revoked",
            Self::CertificateExpired => "certificate_expired",
            Self::CertificateUnknownIssuer => "certificate_unknown_issuer",
            Self::CertificateOther => "certificate_other",
            Self::BadSignature => "bad_signature",
            Self::BadFinished => "bad_finished",
            Self::Malformed => "malformed",
            Self::Decrypt => "decrypt",
            Self::Kem => "kem",
            Self::NoCommonParameters => "no_common_parameters",
            Self::Other => "other",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Why the protocol endpoint dropped a datagram that reached it (after the UDP
/// camouflage, whose refusals are [`Refusals`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramDrop {
    /// Not decodable.
    Malformed,
    /// mac1 missing or wrong.
    BadMac1,
    /// Under load, without a valid cookie.
    CookieRequired,
    /// No session or handshake has its index.
    UnknownIndex,
    /// A counter already seen or too old.
    Replay,
    /// Did not authenticate.
    Decrypt,
    /// The session's keys expired.
    Expired,
    /// A handshake message no handshake waits for.
    Unexpected,
    /// The handshake table is full.
    Overloaded,
}

impl DatagramDrop {
    /// Every reason, in the order [`DriverStats::datagram_drops`] counts them.
    pub const ALL: [Self; 9] = [
        Self::Malformed,
        Self::BadMac1,
        Self::CookieRequired,
        Self::UnknownIndex,
        Self::Replay,
        Self::Decrypt,
        Self::Expired,
        Self::Unexpected,
        Self::Overloaded,
    ];

    /// The reason of `r`; `None` for a failed handshake (counted as one).
    pub fn of(r: &DropReason) -> Option<Self> {
        Some(match r {
            DropReason::Malformed(_) | DropReason::OffloadNotNegotiated => Self::Malformed,
            DropReason::BadMac1 => Self::BadMac1,
            DropReason::CookieRequired => Self::CookieRequired,
            DropReason::UnknownIndex => Self::UnknownIndex,
            DropReason::Replay => Self::Replay,
            DropReason::Decrypt => Self::Decrypt,
            DropReason::Expired => Self::Expired,
            DropReason::Unexpected => Self::Unexpected,
            DropReason::Overloaded => Self::Overloaded,
            _ => return None,
        })
    }

    /// The label value: `replay`, `decrypt`, ...
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadMac1 => "bad_mac1",
            Self::CookieRequired => "cookie_required",
            Self::UnknownIndex => "unknown_index",
            Self::Replay => "replay",
            Self::Decrypt => "decrypt",
            Self::Expired => "expired",
            Self::Unexpected => "unexpected",
            Self::Overloaded => "overloaded",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// A copy of a driver's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Connections whose first handshake completed, by carrier ([`CARRIERS`] order).
    pub handshakes: [u64; CARRIERS.len()],
    /// Handshakes refused, by reason ([`HandshakeFailure::ALL`] order).
    pub handshake_failures: [u64; HandshakeFailure::ALL.len()],
    /// Datagrams the protocol endpoint dropped, by reason ([`DatagramDrop::ALL`] order).
    pub datagram_drops: [u64; DatagramDrop::ALL.len()],
    /// What the UDP camouflage refused (a server's knock checks) or dropped as chaff.
    pub knock: Refusals,
    /// A server worker: datagrams it read for another worker's session (a client that
    /// moved) and handed over.
    pub handed_over: u64,
    /// … and those it dropped because that worker's queue was full.
    pub handover_drops: u64,
}

impl DriverStats {
    /// Completed handshakes over `carrier`.
    pub fn handshakes_over(&self, carrier: Carrier) -> u64 {
        self.handshakes[carrier_index(carrier)]
    }

    /// Refused handshakes for `reason`.
    pub fn failures(&self, reason: HandshakeFailure) -> u64 {
        self.handshake_failures[reason.index()]
    }

    /// Dropped datagrams for `reason`.
    pub fn drops(&self, reason: DatagramDrop) -> u64 {
        self.datagram_drops[reason.index()]
    }

    pub(crate) fn handshake_completed(&mut self, carrier: Carrier) {
        let n = &mut self.handshakes[carrier_index(carrier)];
        *n = n.saturating_add(1);
    }

    pub(crate) fn handshake_failed(&mut self, e: &HandshakeError) {
        let n = &mut self.handshake_failures[HandshakeFailure::of(e).index()];
        *n = n.saturating_add(1);
    }

    pub(crate) fn dropped(&mut self, r: &DropReason) {
        if let Some(d) = DatagramDrop::of(r) {
            let n = &mut self.datagram_drops[d.index()];
            *n = n.saturating_add(1);
        }
    }
}

/// Where a driver publishes its counters.
pub(crate) type SharedDriverStats = Arc<Mutex<DriverStats>>;

pub(crate) fn read(shared: &SharedDriverStats) -> DriverStats {
    *shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DriverStats {
    /// Adds `other`'s counts to these (the workers of one server, summed).
    pub fn merge(&mut self, other: &Self) {
        let add = |a: &mut [u64], b: &[u64]| {
            for (x, y) in a.iter_mut().zip(b) {
                *x = x.saturating_add(*y);
            }
        };
        add(&mut self.handshakes, &other.handshakes);
        add(&mut self.handshake_failures, &other.handshake_failures);
        add(&mut self.datagram_drops, &other.datagram_drops);
        let (k, o) = (&mut self.knock, &other.knock);
        k.chaff = k.chaff.saturating_add(o.chaff);
        k.invalid = k.invalid.saturating_add(o.invalid);
        k.stale = k.stale.saturating_add(o.stale);
        k.replay = k.replay.saturating_add(o.replay);
        self.handed_over = self.handed_over.saturating_add(other.handed_over);
        self.handover_drops = self.handover_drops.saturating_add(other.handover_drops);
    }
}

/// Knock refusals of one carrier: (no valid knock, stale, replayed).
pub type KnockRefusals = (u64, u64, u64);

/// A copy of a server's listener counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// The driver's.
    pub driver: DriverStats,
    /// The QUIC listener's, when QUIC is on.
    pub quic: Option<QuicStats>,
    /// ClientHellos the TLS carrier's knock refused, when the knock is on.
    pub tls_knock: Option<KnockRefusals>,
    /// Connection ids the QUIC carrier's knock refused, when the knock is on.
    pub quic_knock: Option<KnockRefusals>,
}

/// A server's listener counters, readable from any task; holding them keeps nothing
/// running.
#[derive(Clone)]
pub struct ListenerCounters {
    /// Each worker's driver counters, in worker order.
    pub(crate) workers: Vec<SharedDriverStats>,
    pub(crate) quic: Option<Arc<QuicCounters>>,
    pub(crate) tls_knock: Option<Arc<TlsKnock>>,
    pub(crate) quic_knock: Option<Arc<QuicKnock>>,
}

impl std::fmt::Debug for ListenerCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerCounters")
            .field("stats", &self.snapshot())
            .finish()
    }
}

impl ListenerCounters {
    /// A copy of every counter.
    pub fn snapshot(&self) -> ListenerStats {
        ListenerStats {
            driver: self
                .per_worker()
                .iter()
                .fold(DriverStats::default(), |mut sum, w| {
                    sum.merge(w);
                    sum
                }),
            quic: self.quic.as_ref().map(|q| q.stats()),
            tls_knock: self.tls_knock.as_ref().map(|k| k.refused()),
            quic_knock: self.quic_knock.as_ref().map(|k| k.refused()),
        }
    }

    /// Each worker's driver counters, in worker order.
    pub fn per_worker(&self) -> Vec<DriverStats> {
        self.workers.iter().map(read).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_counted_under_their_own_name() {
        let mut s = DriverStats::default();
        s.handshake_failed(&HandshakeError::PeerCertificate(VerifyError::Revoked));
        s.handshake_failed(&HandshakeError::BadFinished);
        s.handshake_failed(&HandshakeError::Timeout);
        s.dropped(&DropReason::Replay);
        s.dropped(&DropReason::Replay);
        s.dropped(&DropReason::Handshake(HandshakeError::Decrypt));
        s.handshake_completed(Carrier::Tls);
        assert_eq!(s.failures(HandshakeFailure::CertificateRevoked), 1);
        assert_eq!(s.failures(HandshakeFailure::BadFinished), 1);
        assert_eq!(s.failures(HandshakeFailure::Other), 1);
        assert_eq!(s.handshake_failures.iter().sum::<u64>(), 3);
        assert_eq!(s.drops(DatagramDrop::Replay), 2);
        assert_eq!(
            s.datagram_drops.iter().sum::<u64>(),
            2,
            "a failed handshake is no drop"
        );
        assert_eq!(s.handshakes_over(Carrier::Tls), 1);
        assert_eq!(s.handshakes.iter().sum::<u64>(), 1);
        // Every name is distinct.
        let mut names: Vec<_> = HandshakeFailure::ALL.iter().map(|r| r.name()).collect();
        names.extend(DatagramDrop::ALL.iter().map(|r| r.name()));
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n - 2, "malformed and decrypt name both kinds");
    }
}
