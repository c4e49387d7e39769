//! The deployment's knock key file (`knock.key`): 32 random bytes that prove membership
//! in a first flight (docs/PROTOCOL.md §3). It sits beside the CA, goes into every client
//! bundle, and is never part of `ca.crt`.
//!
//! ```text
//! -----BEGIN AURA KNOCK KEY-----
//! <base64 of 32 bytes>
//! -----END AURA KNOCK KEY-----
//! ```

use std::path::Path;

use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::PkiError;

/// The PEM label.
pub const KNOCK_KEY_LABEL: &str = "AURA KNOCK KEY";
/// Length of a knock key.
pub const KNOCK_KEY_BYTES: usize = 32;

/// A fresh knock key.
pub fn generate<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Zeroizing<[u8; KNOCK_KEY_BYTES]> {
    let mut k = Zeroizing::new([0u8; KNOCK_KEY_BYTES]);
    rng.fill_bytes(&mut k[..]);
    k
}

/// The file's text for `key`.
pub fn to_pem(key: &[u8; KNOCK_KEY_BYTES]) -> Zeroizing<String> {
    Zeroizing::new(pem::encode(&pem::Pem::new(KNOCK_KEY_LABEL, key.to_vec())))
}

/// Parses a knock key file's text.
///
/// # Errors
/// [`PkiError::BadPem`] when the text is not one `AURA KNOCK KEY` block of 32 bytes.
pub fn from_pem(text: &str) -> Result<Zeroizing<[u8; KNOCK_KEY_BYTES]>, PkiError> {
    let bad = |why: String| PkiError::BadPem {
        what: "knock key",
        source: why.into(),
    };
    let block = pem::parse(text).map_err(|e| bad(e.to_string()))?;
    if block.tag() != KNOCK_KEY_LABEL {
        return Err(bad(format!(
            "a {:?} block where an {KNOCK_KEY_LABEL:?} block belongs",
            block.tag()
        )));
    }
    let bytes = Zeroizing::new(block.into_contents());
    let key: [u8; KNOCK_KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| {
        bad(format!(
            "{} bytes where a knock key has {KNOCK_KEY_BYTES}",
            bytes.len()
        ))
    })?;
    Ok(Zeroizing::new(key))
}

/// Reads a knock key file.
///
/// # Errors
/// [`PkiError::Io`] when it cannot be read, [`PkiError::File`] naming it when its content
/// is not a knock key.
pub fn read(path: &Path) -> Result<Zeroizing<[u8; KNOCK_KEY_BYTES]>, PkiError> {
    let text =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|e| PkiError::io("read", path, e))?);
    from_pem(&text).map_err(|e| PkiError::File {
        path: path.to_owned(),
        source: Box::new(e),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_rejection() {
        let k = generate(&mut rand_core::OsRng);
        let text = to_pem(&k);
        assert!(text.starts_with("-----BEGIN AURA KNOCK KEY-----"));
        assert_eq!(*from_pem(&text).unwrap(), *k);
        // Frozen: 32 bytes 0..31.
        let fixed: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(
            to_pem(&fixed).replace("\r\n", "\n").as_str(),
            "-----BEGIN AURA KNOCK KEY-----\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n-----END AURA KNOCK KEY-----\n"
        );
        for bad in [
            "",
            "not pem",
            "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n-----END CERTIFICATE-----\n",
            "-----BEGIN AURA KNOCK KEY-----\nAAECAw==\n-----END AURA KNOCK KEY-----\n",
        ] {
            assert!(from_pem(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn read_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("knock.key");
        std::fs::write(&p, "garbage").unwrap();
        let e = read(&p).unwrap_err();
        assert!(format!("{e}").contains("knock.key"), "{e}");
        assert!(read(&dir.path().join("missing")).is_err());
    }
}
