//! Bundle URIs (`aura_pki::bundle`, docs/PROTOCOL.md §13): round trips, every way a URI
//! or a code can be wrong, and a frozen vector.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aura_pki::bundle::{
    Bundle, BundleError, BundleFiles, HEADER_LEN, OneTimeCode, SALT_LEN, SealedBundle, URI_PREFIX,
    key_matches_certificate,
};
use aura_pki::{PkiStore, knock};
use common::{rng, t0};
use rand_core::RngCore;
use time::Duration;
use zeroize::Zeroizing;

/// The files of a real bundle, as `aura provision-client` writes them: a CA, a CRL, a
/// client certificate and key, the knock key and a client.toml.
fn real_files(dir: &std::path::Path) -> BundleFiles {
    let store = PkiStore::new(dir);
    let mut r = rng(7);
    store
        .init(
            "vpn.example.com CA",
            Duration::days(3650),
            false,
            t0(),
            &mut r,
        )
        .unwrap();
    let issued = store
        .issue_client(Some("alice"), 825, t0(), &mut r)
        .unwrap();
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap();
    BundleFiles {
        ca_cert: read(store.ca_cert_path()),
        crl: read(store.crl_path()),
        client_cert: issued.cert.cert_pem.clone(),
        client_toml: "[client]\nserver = \"203.0.113.7\"\nserver_name = \"vpn.example.com\"\n\
                      [transport]\ncarriers = [\"udp\", \"quic\", \"tls\"]\n[pki]\n\
                      ca_cert = \"ca.crt\"\ncert = \"client.crt\"\nkey = \"client.key\"\n\
                      crl = \"crl.pem\"\nknock_key = \"knock.key\"\n"
            .into(),
        client_key: issued.cert.key_pem.clone(),
        knock_key: Some(Zeroizing::new(read(store.knock_key_path()))),
    }
}

fn code(text: &str) -> OneTimeCode {
    OneTimeCode::parse(text).unwrap()
}

/// A small bundle with every entry (not real DER: the format does not parse the files).
fn small() -> Bundle {
    Bundle {
        ca_cert: b"ca certificate".to_vec(),
        crl: b"revocation list".to_vec(),
        client_cert: b"client certificate".to_vec(),
        client_toml: "[client]\nserver = \"192.0.2.1\"\n".into(),
        client_key: Some(Zeroizing::new(b"private key".to_vec())),
        knock_key: Some(Zeroizing::new([0x4b; 32])),
    }
}

#[test]
fn a_real_bundle_round_trips_through_files_plaintext_and_uri() {
    let dir = tempfile::tempdir().unwrap();
    let files = real_files(dir.path());
    let bundle = Bundle::from_files(&files).unwrap();
    // Back to the very bytes provision-client wrote.
    assert_eq!(bundle.to_files(), files);
    assert_eq!(
        Bundle::from_plaintext(&bundle.to_plaintext().unwrap()).unwrap(),
        bundle
    );
    let (sealed, code) = bundle.seal_with_rng(&mut rng(9)).unwrap();
    let uri = sealed.to_uri();
    assert!(uri.starts_with(URI_PREFIX));
    assert!(
        uri[URI_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)),
        "the data is upper-case base32 (QR alphanumeric)"
    );
    let typed = OneTimeCode::parse(&code.grouped().to_lowercase()).unwrap();
    let opened = SealedBundle::from_uri(&uri).unwrap().open(&typed).unwrap();
    assert_eq!(opened, bundle);
    assert_eq!(opened.to_files(), files);
    // Case does not matter anywhere in the URI.
    let lower = uri.to_ascii_lowercase();
    assert_eq!(SealedBundle::from_uri(&lower).unwrap(), sealed);
    assert_eq!(
        SealedBundle::from_bytes(&sealed.to_bytes()).unwrap(),
        sealed
    );
    let files_len: usize = files.entries().iter().map(|e| e.1.len()).sum();
    let der_len = bundle.ca_cert.len()
        + bundle.crl.len()
        + bundle.client_cert.len()
        + bundle.client_key.as_ref().unwrap().len()
        + 32
        + bundle.client_toml.len();
    eprintln!(
        "real bundle: {files_len} bytes of files, {der_len} bytes binary, {} bytes plaintext \
         (compressed), {} bytes sealed, URI {} characters",
        bundle.to_plaintext().unwrap().len(),
        sealed.to_bytes().len(),
        uri.len()
    );
    // Two seals of one bundle share nothing: fresh code and salt each time.
    let (again, code2) = bundle.seal_with_rng(&mut rng(10)).unwrap();
    assert_ne!(again.to_uri(), uri);
    assert_eq!(again.open(&code), Err(BundleError::WrongCode));
    assert_eq!(again.open(&code2).unwrap(), bundle);
}

#[test]
fn bundles_without_key_or_knock_key_round_trip() {
    let mut b = small();
    for (key, knock) in [(true, false), (false, true), (false, false)] {
        b.client_key = key.then(|| Zeroizing::new(b"k".to_vec()));
        b.knock_key = knock.then(|| Zeroizing::new([1; 32]));
        let c = code("ABCDE-FGHJK-MNPQR-STVWX");
        let sealed = b.seal(&c, [3; SALT_LEN]).unwrap();
        let back = SealedBundle::from_uri(&sealed.to_uri()).unwrap();
        assert_eq!(back.open(&c).unwrap(), b);
        let files = b.to_files();
        assert_eq!(files.client_key.is_some(), key);
        assert_eq!(files.knock_key.is_some(), knock);
        let names: Vec<&str> = files.entries().iter().map(|e| e.0).collect();
        assert_eq!(names.contains(&"client.key"), key);
        assert_eq!(names.contains(&"knock.key"), knock);
    }
}

#[test]
fn files_get_their_modes_and_bad_pem_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = real_files(dir.path());
    for (name, _, mode) in files.entries() {
        let expected = match name {
            "ca.crt" | "crl.pem" | "client.crt" => 0o644,
            "client.key" | "knock.key" | "client.toml" => 0o600,
            other => panic!("unexpected file {other}"),
        };
        assert_eq!(mode, expected, "{name}");
    }
    let swapped = BundleFiles {
        crl: files.ca_cert.clone(),
        ..files.clone()
    };
    let e = Bundle::from_files(&swapped).unwrap_err();
    assert!(
        matches!(
            &e,
            BundleError::BadFile {
                file: "crl.pem",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("X509 CRL"), "{e}");
    let bad_knock = BundleFiles {
        knock_key: Some(Zeroizing::new("junk".into())),
        ..files.clone()
    };
    assert!(matches!(
        Bundle::from_files(&bad_knock),
        Err(BundleError::BadFile {
            file: "knock.key",
            ..
        })
    ));
    // The key belongs to the certificate; another key does not.
    let cert = aura_pki::cert_der_from_pem(&files.client_cert).unwrap();
    let key = files.client_key.clone().unwrap();
    assert!(key_matches_certificate(&key, &cert).unwrap());
    let other = aura_pki::new_client_key("bob").unwrap();
    assert!(!key_matches_certificate(&other.key_pem, &cert).unwrap());
    assert!(key_matches_certificate("junk", &cert).is_err());
    assert!(key_matches_certificate(&key, b"junk").is_err());
}

#[test]
fn a_wrong_code_is_told_from_an_altered_bundle() {
    let c = code("0123456789ABCDEFGHJK");
    let sealed = small().seal(&c, [9; SALT_LEN]).unwrap();
    assert_eq!(
        sealed.open(&code("0123456789ABCDEFGHJM")),
        Err(BundleError::WrongCode)
    );
    let bytes = sealed.to_bytes();
    // Every bit of every byte, flipped: each part of the layout fails its own way.
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut t = bytes.clone();
            t[i] ^= 1 << bit;
            let got = SealedBundle::from_bytes(&t).and_then(|s| s.open(&c));
            let ok = match i {
                0 => matches!(got, Err(BundleError::UnknownVersion(_))),
                // Salt and check value: another key, so the check fails.
                1..=20 => got == Err(BundleError::WrongCode),
                // Length: the bytes no longer match it.
                21 | 22 => matches!(
                    got,
                    Err(BundleError::Truncated { .. } | BundleError::TrailingData(_))
                ),
                _ => got == Err(BundleError::Tampered),
            };
            assert!(ok, "byte {i} bit {bit}: {got:?}");
        }
    }
    // Every character of the URI's data replaced by another base32 character.
    let uri = sealed.to_uri();
    for i in URI_PREFIX.len()..uri.len() {
        let mut t = uri.clone().into_bytes();
        t[i] = if t[i] == b'A' { b'B' } else { b'A' };
        let t = String::from_utf8(t).unwrap();
        assert!(
            SealedBundle::from_uri(&t).and_then(|s| s.open(&c)).is_err(),
            "character {i}"
        );
    }
}

#[test]
fn truncated_uris_say_so() {
    let c = code("0123456789ABCDEFGHJK");
    let sealed = small().seal(&c, [9; SALT_LEN]).unwrap();
    let uri = sealed.to_uri();
    for cut in URI_PREFIX.len()..uri.len() {
        let got = SealedBundle::from_uri(&uri[..cut]);
        assert!(
            matches!(got, Err(BundleError::Truncated { .. })),
            "cut at {cut}: {got:?}"
        );
    }
    let e = SealedBundle::from_uri(&uri[..uri.len() - 10]).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    // Cut before the data: not a bundle URI any more.
    for cut in 0..URI_PREFIX.len() - 1 {
        let got = SealedBundle::from_uri(&uri[..cut]);
        assert!(
            matches!(got, Err(BundleError::NotAUri(_))),
            "cut at {cut}: {got:?}"
        );
    }
    let bytes = sealed.to_bytes();
    for cut in 0..bytes.len() {
        let got = SealedBundle::from_bytes(&bytes[..cut]);
        assert!(
            matches!(got, Err(BundleError::Truncated { .. })),
            "{cut}: {got:?}"
        );
    }
    // Extra bytes, or characters that make no whole byte.
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        SealedBundle::from_bytes(&longer),
        Err(BundleError::TrailingData(_))
    ));
    for extra in ["A", "AB", "ABCDEFGH"] {
        let got = SealedBundle::from_uri(&format!("{uri}{extra}"));
        assert!(
            matches!(got, Err(BundleError::TrailingData(_))),
            "{extra}: {got:?}"
        );
    }
}

#[test]
fn other_versions_and_other_uris_are_named() {
    let c = code("0123456789ABCDEFGHJK");
    let sealed = small().seal(&c, [9; SALT_LEN]).unwrap();
    let uri = sealed.to_uri();
    let data = &uri[URI_PREFIX.len()..];
    let e = SealedBundle::from_uri(&format!("aura://import/v2/{data}")).unwrap_err();
    assert_eq!(e, BundleError::UnknownVersion("v2".into()));
    assert!(e.to_string().contains("v1"), "{e}");
    assert_eq!(
        SealedBundle::from_uri(&format!("AURA://IMPORT/V17/{data}")).unwrap_err(),
        BundleError::UnknownVersion("v17".into())
    );
    let mut bytes = sealed.to_bytes();
    bytes[0] = 2;
    assert_eq!(
        SealedBundle::from_bytes(&bytes).unwrap_err(),
        BundleError::UnknownVersion("byte 2".into())
    );
    for not in [
        "",
        "https://example.com/",
        "aura:/import/v1/AAAA",
        "aura://export/v1/AAAA",
        "aura://import/",
        "aura://import/latest/AAAA",
        "aura://import/v/AAAA",
        "aura://impört/v1/AAAA",
    ] {
        let got = SealedBundle::from_uri(not);
        assert!(
            matches!(got, Err(BundleError::NotAUri(_))),
            "{not:?}: {got:?}"
        );
    }
    let got = SealedBundle::from_uri(&format!("{URI_PREFIX}{}1{}", &data[..5], &data[5..]));
    assert_eq!(
        got,
        Err(BundleError::BadCharacter {
            position: URI_PREFIX.len() + 6,
            found: '1'
        })
    );
    assert!(matches!(
        SealedBundle::from_uri(&format!(" {uri}")),
        Err(BundleError::NotAUri(_))
    ));
}

#[test]
fn plaintexts_that_break_the_format_are_refused() {
    let good = small().to_plaintext().unwrap();
    assert_eq!(Bundle::from_plaintext(&good).unwrap(), small());
    let files = |list: &[u8]| {
        let z = stored_deflate(list);
        let mut p = vec![3, (z.len() >> 8) as u8, z.len() as u8];
        p.extend_from_slice(&z);
        p
    };
    let entry = |t: u8, v: &[u8]| {
        let mut e = vec![t, (v.len() >> 8) as u8, v.len() as u8];
        e.extend_from_slice(v);
        e
    };
    let list = [
        entry(1, b"ca"),
        entry(2, b"crl"),
        entry(3, b"cert"),
        entry(4, b"toml"),
    ]
    .concat();
    assert!(Bundle::from_plaintext(&files(&list)).is_ok());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("cut tag", vec![3, 0]),
        ("cut value", vec![3, 0, 9, 1, 2]),
        ("no files entry", entry(1, b"key")),
        ("unknown entry", [entry(9, b"x"), files(&list)].concat()),
        (
            "knock before key",
            [entry(2, &[0; 32]), entry(1, b"k"), files(&list)].concat(),
        ),
        (
            "short knock key",
            [entry(2, &[0; 31]), files(&list)].concat(),
        ),
        ("empty key", [entry(1, b""), files(&list)].concat()),
        ("after files", [files(&list), vec![0]].concat()),
        ("not deflate", entry(3, &[0xff; 8])),
        (
            "files out of order",
            files(
                &[
                    entry(2, b"crl"),
                    entry(1, b"ca"),
                    entry(3, b"c"),
                    entry(4, b"t"),
                ]
                .concat(),
            ),
        ),
        (
            "a file missing",
            files(&[entry(1, b"ca"), entry(2, b"crl"), entry(3, b"c")].concat()),
        ),
        ("after file list", files(&[list.clone(), vec![0]].concat())),
        (
            "empty file",
            files(
                &[
                    entry(1, b""),
                    entry(2, b"crl"),
                    entry(3, b"c"),
                    entry(4, b"t"),
                ]
                .concat(),
            ),
        ),
        (
            "toml not utf-8",
            files(
                &[
                    entry(1, b"ca"),
                    entry(2, b"crl"),
                    entry(3, b"c"),
                    entry(4, &[0xff]),
                ]
                .concat(),
            ),
        ),
    ];
    for (what, p) in cases {
        let got = Bundle::from_plaintext(&p);
        assert!(
            matches!(got, Err(BundleError::Malformed(_))),
            "{what}: {got:?}"
        );
    }
}

/// `data` as raw DEFLATE in one stored block (RFC 1951 §3.2.4): a file list of the
/// test's choosing, which the sealer's compressor would never be asked to write.
fn stored_deflate(data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(data.len()).unwrap();
    let mut out = vec![1];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn too_large_bundles_are_refused_when_sealed() {
    let mut b = small();
    b.crl = vec![0x30; 70_000];
    let e = b
        .seal(&code("0123456789ABCDEFGHJK"), [0; SALT_LEN])
        .unwrap_err();
    assert!(matches!(e, BundleError::TooLarge { .. }), "{e}");
    // Random content does not compress: with a large key beside it, the sealed part
    // outgrows its length field.
    let mut b = small();
    let mut r = rng(3);
    let mut noise = || {
        let mut n = vec![0u8; 20_000];
        r.fill_bytes(&mut n);
        n
    };
    b.crl = noise();
    b.ca_cert = noise();
    b.client_cert = noise();
    b.client_key = Some(Zeroizing::new(vec![7; 10_000]));
    let e = b
        .seal(&code("0123456789ABCDEFGHJK"), [0; SALT_LEN])
        .unwrap_err();
    assert!(matches!(e, BundleError::TooLarge { .. }), "{e}");
}

/// The frozen vector: fixed code and salt (the nonce is derived from both) over a small
/// bundle. Opening it checks the format; sealing again checks that the sealer still
/// writes it, byte for byte (a change in the DEFLATE encoder's output would show here
/// first, and only here). The check value pins the key derivation on its own. An
/// independent implementation of docs/PROTOCOL.md §13 (Python: hmac, hashlib, AES-GCM
/// from `cryptography`, zlib) opened this URI to the same entries.
#[test]
fn frozen_vector() {
    const URI: &str = "aura://import/v1/AEAACAQDAQCQMBYIBEFAWDANBYH2KF3KMAAJS2H7LQQYTDIJQSFTT6D6\
                       2HIF2DRZTQYCQFPJVM2B52PJGQQITZ46H5WJFNXCHOQOV62K6FM3WI6T7LF4H32LKZMLNXBH\
                       ZE5Z6J3PSVL4FUV4ORAP7KKXGYPHEIRPXUG5IWMPLPDXKZ5UPUIE3DFO3SRAVJ54GEXKOMJF\
                       45FJGJYVR625VAZ6VK72E7WEKI7RE2Y2P6EFTO2YKGDSS4K4UNJZXDIJRFD5VC5BJ3AK6MEV\
                       GSASXNKT5M";
    let c = code("01234-56789-ABCDE-FGHJK");
    let salt: [u8; SALT_LEN] = std::array::from_fn(|i| i as u8);
    let sealed = SealedBundle::from_uri(URI).unwrap();
    assert_eq!(sealed.open(&c).unwrap(), small());
    let bytes = sealed.to_bytes();
    assert_eq!(bytes[0], 1, "version");
    assert_eq!(bytes[1..1 + SALT_LEN], salt);
    assert_eq!(hex(&bytes[17..21]), "a5176a60", "check value");
    assert_eq!(
        hex(&bytes[21..23]),
        "0099",
        "length of the sealed part: 153"
    );
    assert_eq!(bytes.len(), HEADER_LEN + 153);
    let again = small().seal(&c, salt).unwrap();
    assert_eq!(again.to_uri(), URI);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn knock_keys_keep_their_file_form() {
    let key = knock::generate(&mut rng(5));
    let b = Bundle {
        knock_key: Some(key.clone()),
        ..small()
    };
    assert_eq!(*b.to_files().knock_key.unwrap(), *knock::to_pem(&key));
}
