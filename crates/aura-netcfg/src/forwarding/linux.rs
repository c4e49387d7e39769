//! Linux: sysctls through `/proc/sys`. The file is opened by the calling thread, so
//! it belongs to that thread's network namespace.

use std::path::PathBuf;

use crate::NetcfgError;

fn path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

/// The current value, trimmed.
pub(crate) fn read(key: &'static str) -> Result<String, NetcfgError> {
    std::fs::read_to_string(path(key))
        .map(|s| s.trim().to_owned())
        .map_err(|source| NetcfgError::Sysctl { key, source })
}

/// Writes `value`.
pub(crate) fn write(key: &'static str, value: &str) -> Result<(), NetcfgError> {
    std::fs::write(path(key), format!("{value}\n"))
        .map_err(|source| NetcfgError::Sysctl { key, source })
}
