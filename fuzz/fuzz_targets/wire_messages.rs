//! Fuzz target: the handshake message decoders (Init, Resp, Auth) and the data header.
//! Whenever a decoder accepts some bytes, encoding the result must give back exactly those
//! bytes.
#![no_main]

use aura_proto::wire::{AuthMsg, DATA_HEADER_LEN, DataHeader, InitMsg, RespMsg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = InitMsg::decode(data) {
        assert_eq!(m.encode(), data);
    }
    if let Ok(m) = RespMsg::decode(data) {
        assert_eq!(m.encode(), data);
    }
    if let Ok(m) = AuthMsg::decode(data) {
        assert_eq!(m.encode(), data);
    }
    if let Ok(h) = DataHeader::read(data) {
        let mut out = [0u8; DATA_HEADER_LEN];
        h.write(&mut out);
        assert_eq!(&out[..], &data[..DATA_HEADER_LEN]);
    }
});
