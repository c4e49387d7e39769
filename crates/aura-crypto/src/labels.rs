//! Every domain-separation label Aura feeds to a hash, MAC or KDF.
//!
//! Keeping them in one module makes two properties reviewable at a glance: no two
//! uses share a label, and every label names the protocol version it belongs to.
//! Changing any byte here changes the wire protocol (see docs/PROTOCOL.md).

/// Salt of the HKDF-Extract that combines the X25519 and ML-KEM-768 shared secrets.
pub const HYBRID_KEM_COMBINER: &[u8] = b"aura/v1 hybrid-kem x25519+ml-kem-768";

/// Prefix of every HKDF-Expand `info` built by [`crate::kdf::expand_label`].
pub const EXPAND_PREFIX: &[u8] = b"aura/v1 ";

/// All labels, for the uniqueness test.
#[cfg(test)]
pub(crate) const ALL: &[&[u8]] = &[HYBRID_KEM_COMBINER, EXPAND_PREFIX];

#[cfg(test)]
mod tests {
    use super::ALL;

    #[test]
    fn labels_are_distinct_and_versioned() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(
                a.starts_with(b"aura/v1"),
                "label {i} lacks the version prefix"
            );
            for b in &ALL[i + 1..] {
                assert_ne!(a, b, "duplicate label");
                assert!(
                    !b.starts_with(a) || a == &super::EXPAND_PREFIX,
                    "label is a prefix of another"
                );
            }
        }
    }
}
