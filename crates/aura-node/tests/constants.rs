//! The wire numbers `aura-config` copies (it sits below the protocol and transport crates
//! and cannot import them), tied to their sources: a change on either side fails here.

use aura_config::{
    AURA_DATA_OVERHEAD, MAX_PADDING_PROFILE, QUIC_EARLY_DATAGRAM_MAX, UDP_CAMO_OVERHEAD,
};
use aura_transport::camo::datagram;
use aura_transport::camo::shape::Profile;
use aura_transport::carrier::quic;

#[test]
fn config_constants_match_their_sources() {
    assert_eq!(usize::from(AURA_DATA_OVERHEAD), aura_proto::DATA_OVERHEAD);
    assert_eq!(usize::from(UDP_CAMO_OVERHEAD), datagram::DATA_FORM_OVERHEAD);
    assert_eq!(
        usize::from(QUIC_EARLY_DATAGRAM_MAX),
        quic::EARLY_DATAGRAM_MAX
    );
    assert!(Profile::from_index(MAX_PADDING_PROFILE).is_some());
    assert!(Profile::from_index(MAX_PADDING_PROFILE + 1).is_none());
}
