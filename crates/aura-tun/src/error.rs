//! The crate's error type.

use std::io;

/// Everything that can go wrong with a TUN device.
///
/// Grouped for operators: *local configuration* ([`TunError::InvalidName`],
/// [`TunError::InvalidConfig`], [`TunError::NameTaken`]), *environment*
/// ([`TunError::PermissionDenied`], [`TunError::NoTunDevice`], [`TunError::Unsupported`]),
/// *caller bug* ([`TunError::BadBatch`], [`TunError::BufferTooSmall`],
/// [`TunError::InvalidPacket`]), and *runtime* ([`TunError::Io`], [`TunError::Closed`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TunError {
    /// The interface name is not one the kernel accepts.
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidName {
        /// The name asked for.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A [`crate::TunConfig`] value is out of range.
    #[error("invalid TUN configuration: {0}")]
    InvalidConfig(String),
    /// An interface with this name already exists (or a TUN of that name is in use).
    #[error("interface name {name:?} is already taken")]
    NameTaken {
        /// The name asked for.
        name: String,
    },
    /// Creating or configuring the interface needs root or `CAP_NET_ADMIN`.
    #[error("permission denied creating TUN device (run as root or grant CAP_NET_ADMIN)")]
    PermissionDenied {
        /// The system's answer.
        #[source]
        source: io::Error,
    },
    /// `/dev/net/tun` is missing or the `tun` kernel module is not available.
    #[error("no TUN support: /dev/net/tun is missing or the tun module is not loaded")]
    NoTunDevice {
        /// The system's answer.
        #[source]
        source: io::Error,
    },
    /// TUN devices are not implemented on this operating system.
    #[error("TUN devices are not supported on this platform ({platform})")]
    Unsupported {
        /// `std::env::consts::OS`.
        platform: &'static str,
    },
    /// The batch arguments do not fit together (e.g. more lengths than buffers, empty batch,
    /// headroom below [`crate::MIN_HEADROOM`], too few buffers for offload).
    #[error("bad batch: {0}")]
    BadBatch(String),
    /// A buffer is shorter than the batch needs.
    #[error("buffer {index} holds {have} bytes but {need} are needed")]
    BufferTooSmall {
        /// Position in the batch.
        index: usize,
        /// Bytes needed (headroom included).
        need: usize,
        /// Bytes the buffer holds (`len()`).
        have: usize,
    },
    /// A packet handed to `send_batch` is not an IP packet the device accepts.
    #[error("invalid packet at batch position {index}: {reason}")]
    InvalidPacket {
        /// Position in the batch.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The other end of a [`crate::MemTun`] is gone.
    #[error("device closed")]
    Closed,
    /// Any other system error, with the operation that failed.
    #[error("TUN {op} failed")]
    Io {
        /// `create`, `read`, `write`, ...
        op: &'static str,
        /// The system's answer.
        #[source]
        source: io::Error,
    },
}
