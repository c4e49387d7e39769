//! Other systems: not implemented.

use crate::error::NetcfgError;

pub(crate) fn read(_key: &'static str) -> Result<String, NetcfgError> {
    Err(NetcfgError::Unsupported("sysctl"))
}

pub(crate) fn write(_key: &'static str, _value: &str) -> Result<(), NetcfgError> {
    Err(NetcfgError::Unsupported("sysctl"))
}

pub(crate) fn journal_record(_key: &'static str, _previous: &str) {}

pub(crate) fn journal_forget(_key: &'static str) {}

pub(crate) fn journal_recorded(_key: &'static str) -> Option<String> {
    None
}

pub(crate) fn accept_ra_interfaces() -> Vec<String> {
    Vec::new()
}
