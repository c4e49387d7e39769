//! Other systems: no nftables.

use std::path::{Path, PathBuf};

use crate::NetcfgError;

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

pub(crate) async fn has_table(_program: &Path) -> Result<bool, NetcfgError> {
    Err(NetcfgError::Unsupported("nftables NAT"))
}
