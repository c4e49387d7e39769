//! Other systems: not implemented.

use crate::NetcfgError;

pub(crate) fn read(_key: &'static str) -> Result<String, NetcfgError> {
    Err(NetcfgError::Unsupported("sysctl"))
}

pub(crate) fn write(_key: &'static str, _value: &str) -> Result<(), NetcfgError> {
    Err(NetcfgError::Unsupported("sysctl"))
}
