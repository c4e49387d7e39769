//! Fuzz target: client bundle URIs (`aura_pki::bundle`, docs/PROTOCOL.md §13). The input
//! as a URI (opened with a fixed code), as sealed bytes, and as a plaintext; then as the
//! files of a bundle, sealed and opened again. Nothing may panic; whatever a decoder
//! accepts encodes back to the same input (the URI up to case; a plaintext to the same
//! bundle), and a sealed bundle opens to itself.
#![no_main]

use aura_pki::bundle::{Bundle, BundleError, OneTimeCode, SealedBundle};
use libfuzzer_sys::fuzz_target;
use zeroize::Zeroizing;

const CODE: &str = "0123456789ABCDEFGHJK";

fuzz_target!(|data: &[u8]| {
    let Ok(code) = OneTimeCode::parse(CODE) else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(sealed) = SealedBundle::from_uri(text) {
            assert!(
                sealed.to_uri().eq_ignore_ascii_case(text),
                "an accepted URI re-encodes to another"
            );
            // Opened (a seed sealed under this code) or refused, never a panic.
            match sealed.open(&code) {
                Ok(bundle) => {
                    let again = bundle.to_plaintext().expect("an opened bundle re-encodes");
                    assert_eq!(Bundle::from_plaintext(&again).expect("re-encoded"), bundle);
                }
                Err(BundleError::WrongCode | BundleError::Tampered | BundleError::Malformed(_)) => {
                }
                Err(e) => panic!("open failed in an unexpected way: {e}"),
            }
        }
        let _ = OneTimeCode::parse(text);
    }
    if let Ok(sealed) = SealedBundle::from_bytes(data) {
        assert_eq!(
            sealed.to_bytes(),
            data,
            "accepted sealed bytes re-encode to others"
        );
    }
    if let Ok(bundle) = Bundle::from_plaintext(data) {
        // DEFLATE has many encodings of one file list: the bundle, not the bytes, must
        // come back.
        let again = bundle.to_plaintext().expect("an opened bundle re-encodes");
        assert_eq!(Bundle::from_plaintext(&again).expect("re-encoded"), bundle);
    }
    // The input cut into the files of a bundle: seal, read the URI back, open.
    let mut parts = data.splitn(6, |b| *b == 0xff);
    let mut next = || parts.next().unwrap_or_default().to_vec();
    let (ca_cert, crl, client_cert, toml, key, knock) =
        (next(), next(), next(), next(), next(), next());
    if [&ca_cert, &crl, &client_cert, &toml]
        .iter()
        .any(|p| p.is_empty())
    {
        return;
    }
    let Ok(client_toml) = String::from_utf8(toml) else {
        return;
    };
    let bundle = Bundle {
        ca_cert,
        crl,
        client_cert,
        client_toml,
        client_key: (!key.is_empty()).then(|| Zeroizing::new(key)),
        knock_key: knock.get(..32).map(|k| {
            let mut a = [0u8; 32];
            a.copy_from_slice(k);
            Zeroizing::new(a)
        }),
    };
    let Ok(sealed) = bundle.seal(&code, [7; 16]) else {
        return;
    };
    let back = SealedBundle::from_uri(&sealed.to_uri()).expect("a sealed URI reads back");
    assert_eq!(back.open(&code).expect("opens with its code"), bundle);
});
