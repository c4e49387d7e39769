//! AEAD known answers: RFC 8439 (ChaCha20-Poly1305) and NIST GCM (AES-256-GCM).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aura_crypto::CryptoError;
use aura_crypto::aead::{AeadKey, Suite, TAG_LEN};

struct Vector {
    name: &'static str,
    suite: Suite,
    key: &'static str,
    nonce: &'static str,
    aad: &'static str,
    pt: &'static str,
    ct: &'static str,
    tag: &'static str,
}

const VECTORS: &[Vector] = &[
    Vector {
        name: "RFC 8439 2.8.2",
        suite: Suite::ChaCha20Poly1305,
        key: "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
        nonce: "070000004041424344454647",
        aad: "50515253c0c1c2c3c4c5c6c7",
        pt: "4c616469657320616e642047656e746c656d656e206f662074686520636c617373206f66202739393a204966204920636f756c64206f6666657220796f75206f6e6c79206f6e652074697020666f7220746865206675747572652c2073756e73637265656e20776f756c642062652069742e",
        ct: "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116",
        tag: "1ae10b594f09e26a7e902ecbd0600691",
    },
    Vector {
        name: "RFC 8439 A.5",
        suite: Suite::ChaCha20Poly1305,
        key: "1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0",
        nonce: "000000000102030405060708",
        aad: "f33388860000000000004e91",
        pt: "496e7465726e65742d4472616674732061726520647261667420646f63756d656e74732076616c696420666f722061206d6178696d756d206f6620736978206d6f6e74687320616e64206d617920626520757064617465642c207265706c616365642c206f72206f62736f6c65746564206279206f7468657220646f63756d656e747320617420616e792074696d652e20497420697320696e617070726f70726961746520746f2075736520496e7465726e65742d447261667473206173207265666572656e6365206d6174657269616c206f7220746f2063697465207468656d206f74686572207468616e206173202fe2809c776f726b20696e2070726f67726573732e2fe2809d",
        ct: "64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb24c6cfc18755d43eea09ee94e382d26b0bdb7b73c321b0100d4f03b7f355894cf332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c8559797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4b9166c767b804d46a59b5216cde7a4e99040c5a40433225ee282a1b0a06c523eaf4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a1049e617d91d361094fa68f0ff77987130305beaba2eda04df997b714d6c6f2c29a6ad5cb4022b02709b",
        tag: "eead9d67890cbb22392336fea1851f38",
    },
    Vector {
        name: "GCM spec test case 14",
        suite: Suite::Aes256Gcm,
        key: "0000000000000000000000000000000000000000000000000000000000000000",
        nonce: "000000000000000000000000",
        aad: "",
        pt: "00000000000000000000000000000000",
        ct: "cea7403d4d606b6e074ec5d3baf39d18",
        tag: "d0d1c8a799996bf0265b98b5d48ab919",
    },
    Vector {
        name: "GCM spec test case 15",
        suite: Suite::Aes256Gcm,
        key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        nonce: "cafebabefacedbaddecaf888",
        aad: "",
        pt: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
        ct: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
        tag: "b094dac5d93471bdec1a502270e3cc6c",
    },
    Vector {
        name: "GCM spec test case 16",
        suite: Suite::Aes256Gcm,
        key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        nonce: "cafebabefacedbaddecaf888",
        aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        pt: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        ct: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        tag: "76fc6ece0f4e1768cddf8853bb2d551b",
    },
    Vector {
        name: "NIST CAVP gcmEncryptExtIV256 Keylen=256 IVlen=96 PTlen=128 AADlen=160 Count=0",
        suite: Suite::Aes256Gcm,
        key: "83688deb4af8007f9b713b47cfa6c73e35ea7a3aa4ecdb414dded03bf7a0fd3a",
        nonce: "0b459724904e010a46901cf3",
        aad: "794a14ccd178c8ebfd1379dc704c5e208f9d8424",
        pt: "33d893a2114ce06fc15d55e454cf90c3",
        ct: "cc66bee423e3fcd4c0865715e9586696",
        tag: "0fb291bd3dba94a1dfd8b286cfb97ac5",
    },
];

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

#[test]
fn seal_matches_known_answers() {
    for v in VECTORS {
        let key = AeadKey::new(v.suite, &h(v.key)).unwrap();
        let nonce: [u8; 12] = h(v.nonce).try_into().unwrap();
        let pt = h(v.pt);
        let mut buf = pt.clone();
        buf.resize(pt.len() + TAG_LEN, 0);
        let n = key
            .seal_in_place(&nonce, &h(v.aad), &mut buf, pt.len())
            .unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(
            hex::encode(&buf[..pt.len()]),
            v.ct,
            "{}: ciphertext",
            v.name
        );
        assert_eq!(hex::encode(&buf[pt.len()..]), v.tag, "{}: tag", v.name);
    }
}

#[test]
fn open_matches_known_answers_and_rejects_forgeries() {
    for v in VECTORS {
        let key = AeadKey::new(v.suite, &h(v.key)).unwrap();
        let nonce: [u8; 12] = h(v.nonce).try_into().unwrap();
        let mut sealed = h(v.ct);
        sealed.extend(h(v.tag));
        let mut buf = sealed.clone();
        let pt = key.open_in_place(&nonce, &h(v.aad), &mut buf).unwrap();
        assert_eq!(hex::encode(pt), v.pt, "{}", v.name);

        let mut forged = sealed.clone();
        let last = forged.len() - 1;
        forged[last] ^= 0x80;
        assert_eq!(
            key.open_in_place(&nonce, &h(v.aad), &mut forged)
                .unwrap_err(),
            CryptoError::DecryptFailed,
            "{}: forged tag accepted",
            v.name
        );
    }
}
