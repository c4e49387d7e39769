//! What an endpoint is configured with: its credentials, its limits and its [`Timers`].
//!
//! Plain data with defaults; nothing here runs. The defaults follow WireGuard's where the
//! roles match, and [`EndpointConfig::new`] gives a working server or client from
//! credentials alone.

use std::time::Duration;

use aura_crypto::aead::Suite;
use aura_pki::Verifier;
use rustls_pki_types::UnixTime;

use crate::error::ProtoError;
use crate::handshake::{Ctx, Identity};
use crate::keys::{DeploymentKeys, DeploymentSecret};
use crate::wire::MIN_DATAGRAM_LEN;

/// Timer settings. Defaults follow WireGuard's where the roles match.
#[derive(Debug, Clone)]
pub struct Timers {
    /// First handshake retransmission; doubles up to [`Timers::handshake_retransmit_max`].
    pub handshake_retransmit: Duration,
    /// Longest gap between handshake retransmissions.
    pub handshake_retransmit_max: Duration,
    /// A handshake with no answer for this long fails with
    /// [`HandshakeError::Timeout`](crate::HandshakeError::Timeout).
    pub handshake_timeout: Duration,
    /// Server: a half-open handshake is forgotten after this long.
    pub pending_timeout: Duration,
    /// Send an empty keepalive when nothing was sent for this long.
    pub keepalive: Duration,
    /// Close the connection when nothing was received for this long.
    pub dead_peer: Duration,
    /// The client starts a new handshake when the session is this old.
    pub rekey_after_time: Duration,
    /// Keys older than this are never used.
    pub reject_after_time: Duration,
    /// The client starts a new handshake after sealing, or opening, this many packets
    /// under one session's keys.
    pub rekey_after_packets: u64,
    /// How long the previous session still decrypts after a rekey.
    pub previous_session_grace: Duration,
    /// Cookie secrets rotate this often; a cookie is accepted for two periods.
    pub cookie_rotation: Duration,
}

/// The longest any timer may be: well inside what `Instant + Duration` can add without
/// overflow on every platform (review L10), and longer than any sensible setting.
pub const MAX_TIMER: Duration = Duration::from_secs(7 * 24 * 3600);

impl Timers {
    /// Checks every duration: above zero and at most [`MAX_TIMER`], so no deadline
    /// arithmetic can overflow; the retransmission cap at least the first retransmission.
    ///
    /// # Errors
    /// [`ProtoError::Config`] naming the timer.
    pub fn validate(&self) -> Result<(), ProtoError> {
        let all = [
            ("handshake_retransmit", self.handshake_retransmit),
            ("handshake_retransmit_max", self.handshake_retransmit_max),
            ("handshake_timeout", self.handshake_timeout),
            ("pending_timeout", self.pending_timeout),
            ("keepalive", self.keepalive),
            ("dead_peer", self.dead_peer),
            ("rekey_after_time", self.rekey_after_time),
            ("reject_after_time", self.reject_after_time),
            ("previous_session_grace", self.previous_session_grace),
            ("cookie_rotation", self.cookie_rotation),
        ];
        for (name, d) in all {
            if d.is_zero() || d > MAX_TIMER {
                return Err(ProtoError::Config(format!(
                    "timer {name} is {d:?}: it must be above zero and at most {MAX_TIMER:?}"
                )));
            }
        }
        if self.handshake_retransmit_max < self.handshake_retransmit {
            return Err(ProtoError::Config(
                "timer handshake_retransmit_max is below handshake_retransmit".into(),
            ));
        }
        if self.rekey_after_packets == 0 {
            return Err(ProtoError::Config(
                "rekey_after_packets must be above zero".into(),
            ));
        }
        Ok(())
    }
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            handshake_retransmit: Duration::from_secs(1),
            handshake_retransmit_max: Duration::from_secs(8),
            handshake_timeout: Duration::from_secs(20),
            pending_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(10),
            dead_peer: Duration::from_secs(30),
            rekey_after_time: Duration::from_secs(120),
            reject_after_time: Duration::from_secs(180),
            // RFC 8446 §5.5: at most 2^24.5 full-size records under one AES-GCM key.
            rekey_after_packets: 1 << 24,
            previous_session_grace: Duration::from_secs(10),
            cookie_rotation: Duration::from_secs(120),
        }
    }
}

/// Everything an endpoint needs.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The deployment's CA certificate (DER): salts the handshake secret.
    pub ca_cert_der: Vec<u8>,
    /// The deployment secret: keys mac1 and cookie replies (the knock key; by default
    /// the CA fallback, [`DeploymentSecret::from_ca`]).
    pub secret: DeploymentSecret,
    /// This side's certificate and key.
    pub identity: Identity,
    /// Verifies peers (chain, validity, role, CRL).
    pub verifier: Verifier,
    /// AEAD suites, most preferred first.
    pub suites: Vec<Suite>,
    /// Session versions offered (client) or accepted (server), most preferred first
    /// (docs/PROTOCOL.md §6); [`crate::wire::SUPPORTED_VERSIONS`] by default. Fewer is
    /// how a test plays an older peer.
    pub versions: Vec<u8>,
    /// Whether to accept incoming handshakes (servers).
    pub accept: bool,
    /// Largest datagram the endpoint emits during the handshake (UDP payload).
    pub max_datagram: usize,
    /// Retransmission, keepalive, rekey and expiry timers.
    pub timers: Timers,
    /// Upper bound on handshakes in progress (server).
    pub max_pending_handshakes: usize,
    /// Handshakes in progress above which a server demands cookies.
    pub cookie_threshold: usize,
    /// Upper bound on handshakes in progress from one source IP address (server).
    pub max_pending_per_source: usize,
}

impl EndpointConfig {
    /// A configuration with default timers and limits.
    pub fn new(ca_cert_der: Vec<u8>, identity: Identity, verifier: Verifier, accept: bool) -> Self {
        Self {
            secret: DeploymentSecret::from_ca(&ca_cert_der),
            ca_cert_der,
            identity,
            verifier,
            suites: Suite::ALL.to_vec(),
            versions: crate::wire::SUPPORTED_VERSIONS.to_vec(),
            accept,
            max_datagram: 1232,
            timers: Timers::default(),
            max_pending_handshakes: 4096,
            cookie_threshold: 256,
            max_pending_per_source: 16,
        }
    }

    /// Checks that an endpoint can work with this configuration.
    ///
    /// # Errors
    /// [`ProtoError::Config`] naming what is unusable.
    pub(crate) fn validate(&self) -> Result<(), ProtoError> {
        if self.max_datagram < MIN_DATAGRAM_LEN {
            return Err(ProtoError::Config(format!(
                "max_datagram {} is below the minimum {MIN_DATAGRAM_LEN}",
                self.max_datagram
            )));
        }
        if self.suites.is_empty() {
            return Err(ProtoError::Config("no AEAD suite enabled".into()));
        }
        if self.versions.is_empty()
            || self
                .versions
                .iter()
                .any(|v| !crate::wire::SUPPORTED_VERSIONS.contains(v))
        {
            return Err(ProtoError::Config(format!(
                "session versions {:?}: each must be one of {:?}, and at least one given",
                self.versions,
                crate::wire::SUPPORTED_VERSIONS
            )));
        }
        self.timers.validate()
    }

    /// What a handshake step needs. Borrows only the configuration, so the caller may hold
    /// other fields of the endpoint mutably.
    pub(crate) fn handshake_ctx<'a>(
        &'a self,
        deployment: &'a DeploymentKeys,
        wall: UnixTime,
        binding: Option<&'a [u8; crate::handshake::BINDING_LEN]>,
    ) -> Ctx<'a> {
        Ctx {
            deployment,
            verifier: &self.verifier,
            identity: &self.identity,
            wall,
            suites: &self.suites,
            versions: &self.versions,
            binding,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review L10: absurd timers are refused by name instead of overflowing a deadline.
    #[test]
    fn timers_out_of_range_are_refused_by_name() {
        assert_eq!(Timers::default().validate(), Ok(()));
        type Spoil = fn(&mut Timers);
        let cases: [(&str, Spoil); 4] = [
            ("keepalive", |t| t.keepalive = Duration::MAX),
            ("dead_peer", |t| t.dead_peer = Duration::ZERO),
            ("reject_after_time", |t| {
                t.reject_after_time = MAX_TIMER + Duration::from_secs(1)
            }),
            ("handshake_retransmit_max", |t| {
                t.handshake_retransmit_max = Duration::from_millis(1)
            }),
        ];
        for (name, spoil) in cases {
            let mut t = Timers::default();
            spoil(&mut t);
            match t.validate() {
                Err(ProtoError::Config(m)) => assert!(m.contains(name), "{m}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}
