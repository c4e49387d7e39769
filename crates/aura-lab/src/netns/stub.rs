//! Other systems: network namespaces do not exist.

/// Why: not Linux.
pub(super) fn unsupported() -> Option<String> {
    Some("network namespaces need Linux".into())
}

/// Not checked where namespaces do not exist.
pub(super) fn is_root() -> bool {
    false
}

/// Always fails.
pub(super) fn enter(path: &str) -> Result<(), String> {
    Err(format!(
        "cannot enter {path}: network namespaces need Linux"
    ))
}
