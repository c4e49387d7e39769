//! Network namespaces for the root-only test tier: the guard lives in the product crate
//! `aura-netcfg` (`aura demo` uses it too) and is re-exported here, so tests keep
//! writing `aura_testkit::netns::Netns`.
//!
//! A test that cannot run here (not root, no `ip`) asks [`skip_reason`] and prints why
//! instead of failing; CI runs as root, so there the tests run.

pub use aura_netcfg::netns::*;
