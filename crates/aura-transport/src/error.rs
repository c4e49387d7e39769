//! The transport layer's errors.
//!
//! Every message names its cause, so one line (`{e}`) tells the whole story. Causes are
//! typed fields to match on; apart from the IO and protocol errors (`Bind`, `Io`, `Proto`)
//! they are not also returned by `source()`, so a chain printer (`{e:#}`) does not repeat
//! them.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use quinn::crypto::rustls::NoInitialCipherSuite;

use crate::carrier::Carrier;

/// Errors of the transport layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Binding a listener failed.
    #[error("cannot listen on {carrier} {addr}: {source}")]
    Bind {
        /// The carrier.
        carrier: Carrier,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An IO error.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The protocol core refused the configuration or the operation.
    #[error("protocol: {0}")]
    Proto(#[from] aura_proto::ProtoError),
    /// The Aura handshake failed.
    #[error("handshake with {addr} over {carrier} failed: {error}")]
    Handshake {
        /// The carrier.
        carrier: Carrier,
        /// The server address.
        addr: SocketAddr,
        /// Why.
        error: aura_proto::HandshakeError,
    },
    /// No dial attempt succeeded; each attempt with its own error, in the order tried.
    #[error("could not connect: {}", Attempts(.0))]
    AllAttemptsFailed(Vec<FailedAttempt>),
    /// A dial attempt got no answer in the time allowed.
    #[error("no answer within {0:?}")]
    NoAnswer(Duration),
    /// The connection or the driver is gone.
    #[error("connection closed")]
    Closed,
    /// The outer TLS layer (of the QUIC and TLS carriers) failed: its configuration, the
    /// outer certificate, the server name, or the outer handshake.
    #[error("TLS: {0}")]
    Tls(OuterTlsError),
    /// The client's CA certificate or CRLs cannot make a certificate verifier.
    #[error("client verifier: {0}")]
    Verifier(aura_pki::VerifyError),
    /// The configuration cannot be used as it stands.
    #[error("configuration: {0}")]
    Config(ConfigError),
    /// A relay refused to extend a circuit.
    #[error("relay {relay} refused to extend the circuit to {to}: {reason}")]
    CircuitFailed {
        /// The relay.
        relay: SocketAddr,
        /// The hop asked for.
        to: SocketAddr,
        /// The relay's reason.
        reason: String,
    },
    /// A server asked to extend a circuit does not act as a relay.
    #[error("{relay} is not a relay: {what}")]
    NotARelay {
        /// The server.
        relay: SocketAddr,
        /// What it did instead.
        what: &'static str,
    },
    /// The forwarded decoy's upstream does not resolve.
    #[error("server.decoy.upstream {upstream:?}: {problem}")]
    DecoyUpstream {
        /// As configured.
        upstream: String,
        /// Why it does not resolve.
        problem: String,
    },
}

/// One failed dial attempt.
#[derive(Debug)]
pub struct FailedAttempt {
    /// The carrier tried.
    pub carrier: Carrier,
    /// The address tried.
    pub addr: SocketAddr,
    /// Why it failed.
    pub error: TransportError,
}

impl fmt::Display for FailedAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.carrier, self.addr, self.error)
    }
}

/// Failed attempts on one line, separated by `; `.
struct Attempts<'a>(&'a [FailedAttempt]);

impl fmt::Display for Attempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no carrier and address to try");
        }
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

/// Why the outer TLS layer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OuterTlsError {
    /// rustls refused the server's protocol versions (a bug: they are fixed).
    #[error("server configuration: {0}")]
    ServerConfig(rustls::Error),
    /// rustls refused the client's protocol versions (a bug: they are fixed).
    #[error("client configuration: {0}")]
    ClientConfig(rustls::Error),
    /// The outer certificate chain or key is unusable.
    #[error("outer certificate: {0}")]
    Certificate(rustls::Error),
    /// QUIC cannot use the server's outer TLS configuration (a bug: the provider has the
    /// suite QUIC needs).
    #[error("QUIC server: {0}")]
    QuicServer(NoInitialCipherSuite),
    /// QUIC cannot use the client's outer TLS configuration (a bug, as above).
    #[error("QUIC client: {0}")]
    QuicClient(NoInitialCipherSuite),
    /// The outer server name (SNI) is not a valid DNS name or IP address.
    #[error("invalid server name {0:?}")]
    InvalidServerName(String),
    /// The outer handshake failed. The IO error wraps the `rustls::Error` when rustls
    /// refused the handshake (`get_ref()`), and is a plain IO error when the connection
    /// broke during it.
    #[error("outer handshake with {addr}: {error}")]
    Handshake {
        /// The server address.
        addr: SocketAddr,
        /// Why.
        error: io::Error,
    },
}

/// A configuration the transport cannot run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A listener configuration names no carrier.
    #[error("no carrier configured")]
    NoCarrier,
    /// QUIC or TLS is configured without an outer certificate.
    #[error("QUIC and TLS carriers need an outer certificate")]
    NoOuterIdentity,
    /// A dial target names the in-memory carrier, but no in-memory network is given.
    #[error("the in-memory carrier needs an in-memory network to dial into")]
    InMemoryDial,
    /// The QUIC idle timeout is beyond what QUIC can express.
    #[error("QUIC idle timeout too large")]
    QuicIdleTimeout,
    /// A server needs 1 to [`crate::carrier::udp::MAX_WORKERS`] workers.
    #[error("{0} workers: a server runs 1 to {max}", max = crate::carrier::udp::MAX_WORKERS)]
    Workers(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(carrier: Carrier, port: u16, error: TransportError) -> FailedAttempt {
        FailedAttempt {
            carrier,
            addr: SocketAddr::from(([192, 0, 2, 1], port)),
            error,
        }
    }

    #[test]
    fn all_attempts_read_on_one_line() {
        let e = TransportError::AllAttemptsFailed(vec![
            attempt(
                Carrier::Udp,
                51820,
                TransportError::NoAnswer(Duration::from_secs(5)),
            ),
            attempt(
                Carrier::Tls,
                443,
                TransportError::Io(io::Error::new(io::ErrorKind::ConnectionRefused, "refused")),
            ),
        ]);
        assert_eq!(
            e.to_string(),
            "could not connect: udp 192.0.2.1:51820: no answer within 5s; \
             tls 192.0.2.1:443: refused"
        );
    }

    #[test]
    fn configuration_errors_say_so() {
        assert_eq!(
            TransportError::Config(ConfigError::NoOuterIdentity).to_string(),
            "configuration: QUIC and TLS carriers need an outer certificate"
        );
    }
}
