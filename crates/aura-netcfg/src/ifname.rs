//! Interface names, checked before they reach a command, an nftables rule or a netlink
//! request.

use crate::error::NetcfgError;

/// Rejects what cannot be a Linux interface name (so it cannot smuggle syntax into a
/// command or a rule).
pub(crate) fn check_ifname(name: &str) -> Result<(), NetcfgError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\'' && b != b'"');
    if ok {
        Ok(())
    } else {
        Err(NetcfgError::InvalidPlan(format!(
            "{name:?} is not a valid interface name (1-15 printable ASCII characters, no '/', no quotes)"
        )))
    }
}
