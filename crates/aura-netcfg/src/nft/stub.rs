//! Other systems: no nftables; every call fails with `Unsupported`.

use std::path::{Path, PathBuf};

use crate::error::NetcfgError;

pub(crate) fn resolve_program(_configured: Option<&Path>) -> Result<PathBuf, NetcfgError> {
    Err(NetcfgError::Unsupported("nftables NAT"))
}

pub(crate) async fn apply(
    _program: &Path,
    _payload: &str,
    _action: &str,
) -> Result<(), NetcfgError> {
    Err(NetcfgError::Unsupported("nftables NAT"))
}

pub(super) async fn list_tables(_program: &Path) -> Result<String, NetcfgError> {
    Err(NetcfgError::Unsupported("nftables NAT"))
}
