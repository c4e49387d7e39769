//! A client bundle as one sealed URI, `aura://import/v1/<base32>`, opened with a one-time
//! code that travels apart from it (docs/PROTOCOL.md §13, docs/adr/0015).
//!
//! Layers, from the outside in:
//!
//! 1. **Text.** [`URI_PREFIX`] then the sealed bytes in base32 (RFC 4648 alphabet, upper
//!    case, no padding). Base32 upper case is in the QR alphanumeric set, so a QR code holds
//!    the data in 5.5 bits per character instead of 8.
//! 2. **Sealed bytes** ([`SealedBundle`]): a 23-byte header (version, salt, check value,
//!    length) then AES-256-GCM ciphertext and tag; the header is the associated data. The
//!    key, the nonce and the check value come from HKDF over the salt and the
//!    [`OneTimeCode`].
//! 3. **Plaintext** ([`Bundle::to_plaintext`]): entries `tag || u16 length || value`: the
//!    client key (PKCS#8 DER, absent when the device made its own), the knock key (32
//!    bytes, absent when the deployment has none), then the public files, compressed with
//!    raw DEFLATE. The secrets never pass through the compressor.
//! 4. **File list**: entries for `ca.crt`, `crl.pem`, `client.crt` (DER) and
//!    `client.toml` (UTF-8), each once and in that order.
//!
//! Every decoder is strict: whatever it accepts encodes back to the same bytes (the
//! compressed file list excepted: DEFLATE has many encodings of one input). No panics on
//! any input; errors name the problem (a truncated URI, a wrong code, an altered bundle
//! and an unknown version are told apart).
//!
//! ```
//! use aura_pki::bundle::{Bundle, OneTimeCode, SealedBundle};
//! let bundle = Bundle {
//!     ca_cert: b"ca".to_vec(),
//!     crl: b"crl".to_vec(),
//!     client_cert: b"cert".to_vec(),
//!     client_toml: "[client]\n".into(),
//!     client_key: None,
//!     knock_key: None,
//! };
//! let (sealed, code) = bundle.seal_with_rng(&mut rand_core::OsRng)?;
//! let uri = sealed.to_uri();
//! assert!(uri.starts_with("aura://import/v1/"));
//! let typed = OneTimeCode::parse(&code.grouped())?;
//! assert_eq!(SealedBundle::from_uri(&uri)?.open(&typed)?, bundle);
//! # Ok::<(), aura_pki::bundle::BundleError>(())
//! ```

use std::fmt;

use aura_crypto::aead::{AeadKey, NONCE_LEN, Suite, TAG_LEN};
use aura_crypto::kdf::{self, Secret};
use aura_crypto::labels;
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};
use rand_core::{CryptoRng, RngCore};
use rcgen::KeyPair;
use zeroize::{Zeroize, Zeroizing};

use crate::ca::{pem_block, pem_encode};
use crate::knock::{self, KNOCK_KEY_BYTES};

/// What every bundle URI of this version starts with (compared without regard to case).
pub const URI_PREFIX: &str = "aura://import/v1/";
/// The scheme and the authority: what tells a bundle URI from anything else.
const URI_SCHEME: &str = "aura://";
/// The authority and path segment before the version.
const URI_KIND: &str = "import/";
/// The version this code reads and writes: the first byte of the sealed bytes, and `v1` in
/// the URI's path.
pub const VERSION: u8 = 1;
/// Length of the random salt in the header.
pub const SALT_LEN: usize = 16;
/// Length of the check value in the header.
pub const CHECK_LEN: usize = 4;
/// Length of the header: version, salt, check value, u16 length of what follows.
pub const HEADER_LEN: usize = 1 + SALT_LEN + CHECK_LEN + 2;
/// The largest sealed part (ciphertext and tag) the length field can announce.
pub const MAX_SEALED_LEN: usize = u16::MAX as usize;
/// The largest file list, uncompressed: what an opener inflates at most.
pub const MAX_FILES_LEN: usize = 60 * 1024;
/// Characters in a one-time code (100 bits).
pub const CODE_LEN: usize = 20;
/// The one-time code's alphabet: Crockford's base32 (no I, L, O, U).
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// The URI's alphabet: RFC 4648 base32.
const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// DEFLATE level of the file list (miniz's best).
const DEFLATE_LEVEL: u8 = 10;

/// Entry tags of the plaintext.
mod tag {
    pub const CLIENT_KEY: u8 = 1;
    pub const KNOCK_KEY: u8 = 2;
    pub const FILES: u8 = 3;
}

/// Entry tags of the file list.
mod file_tag {
    pub const CA_CERT: u8 = 1;
    pub const CRL: u8 = 2;
    pub const CLIENT_CERT: u8 = 3;
    pub const CLIENT_TOML: u8 = 4;
}

/// The names a bundle's files have in a bundle directory, and their modes.
pub mod file {
    /// The CA certificate (PEM).
    pub const CA_CERT: &str = "ca.crt";
    /// The CA's CRL (PEM).
    pub const CRL: &str = "crl.pem";
    /// The client's certificate (PEM).
    pub const CLIENT_CERT: &str = "client.crt";
    /// The client's private key (PKCS#8 PEM).
    pub const CLIENT_KEY: &str = "client.key";
    /// The deployment's knock key.
    pub const KNOCK_KEY: &str = "knock.key";
    /// The client's configuration.
    pub const CLIENT_TOML: &str = "client.toml";
    /// Mode of the public files.
    pub const PUBLIC_MODE: u32 = 0o644;
    /// Mode of the keys and of client.toml.
    pub const PRIVATE_MODE: u32 = 0o600;
}

/// Why a bundle could not be sealed, read or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The text is not an `aura://import/` URI at all.
    #[error("not a bundle URI: {0} (a bundle URI starts with {URI_PREFIX})")]
    NotAUri(&'static str),
    /// A version this code does not read.
    #[error(
        "unknown bundle version {0}: this aura reads v1 only (was the bundle made by a newer aura?)"
    )]
    UnknownVersion(String),
    /// A character outside base32 in the URI's data.
    #[error(
        "the bundle URI has {found:?} at character {position}, which base32 does not use \
         (only A-Z and 2-7): it was altered or mistyped"
    )]
    BadCharacter {
        /// Its position in the URI, from 1.
        position: usize,
        /// The character.
        found: char,
    },
    /// Fewer bytes than the header announces, or no whole header.
    #[error(
        "the bundle URI is truncated: it holds {have} of the {need} bytes it should \
         (copy all of it)"
    )]
    Truncated {
        /// Bytes present.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
    /// More bytes than the header announces, or characters that make no whole byte.
    #[error("the bundle URI has {0} past its end: it was altered")]
    TrailingData(String),
    /// The one-time code is not 20 characters of its alphabet.
    #[error("malformed one-time code: {0}")]
    BadCode(String),
    /// The check value does not match the code: the code is not this bundle's.
    #[error(
        "wrong code: this one-time code does not open this bundle (check it for typos, and \
         that it was printed with this URI)"
    )]
    WrongCode,
    /// The code is right but authentication failed: the sealed bytes were changed.
    #[error(
        "the bundle was altered or damaged: the code matches but the contents fail authentication"
    )]
    Tampered,
    /// Authenticated content that breaks the format (written by a broken sealer).
    #[error("malformed bundle contents: {0}")]
    Malformed(String),
    /// Too large for the format.
    #[error("the bundle is too large: {what} is {len} bytes, at most {max}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A file of a bundle directory is unusable.
    #[error("{file}: {reason}")]
    BadFile {
        /// The file's name.
        file: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The crypto backend failed (a bug, not an input problem).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// A client bundle's contents in binary form: what `aura provision-client` writes as files.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The CA certificate (DER).
    pub ca_cert: Vec<u8>,
    /// The CA's CRL (DER).
    pub crl: Vec<u8>,
    /// The client's certificate (DER).
    pub client_cert: Vec<u8>,
    /// client.toml.
    pub client_toml: String,
    /// The client's private key (PKCS#8 DER); `None` when the device made its own.
    pub client_key: Option<Zeroizing<Vec<u8>>>,
    /// The deployment's knock key; `None` when it has none.
    pub knock_key: Option<Zeroizing<[u8; KNOCK_KEY_BYTES]>>,
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("ca_cert", &format_args!("{} bytes", self.ca_cert.len()))
            .field("crl", &format_args!("{} bytes", self.crl.len()))
            .field(
                "client_cert",
                &format_args!("{} bytes", self.client_cert.len()),
            )
            .field(
                "client_toml",
                &format_args!("{} bytes", self.client_toml.len()),
            )
            .field("client_key", &self.client_key.as_ref().map(|_| "[elided]"))
            .field("knock_key", &self.knock_key.as_ref().map(|_| "[elided]"))
            .finish()
    }
}

/// A bundle's files as text, named by [`file`]: what a bundle directory holds.
#[derive(Clone, PartialEq, Eq)]
pub struct BundleFiles {
    /// ca.crt.
    pub ca_cert: String,
    /// crl.pem.
    pub crl: String,
    /// client.crt.
    pub client_cert: String,
    /// client.toml.
    pub client_toml: String,
    /// client.key, if the bundle carries the key.
    pub client_key: Option<Zeroizing<String>>,
    /// knock.key, if the deployment has one.
    pub knock_key: Option<Zeroizing<String>>,
}

impl fmt::Debug for BundleFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundleFiles")
            .field("client_key", &self.client_key.as_ref().map(|_| "[elided]"))
            .field("knock_key", &self.knock_key.as_ref().map(|_| "[elided]"))
            .finish_non_exhaustive()
    }
}

impl BundleFiles {
    /// Every file present: its name, its content and the mode to write it with. Public
    /// files first, so a reader never finds a key without its certificate.
    pub fn entries(&self) -> Vec<(&'static str, &[u8], u32)> {
        let mut v = vec![
            (file::CA_CERT, self.ca_cert.as_bytes(), file::PUBLIC_MODE),
            (file::CRL, self.crl.as_bytes(), file::PUBLIC_MODE),
            (
                file::CLIENT_CERT,
                self.client_cert.as_bytes(),
                file::PUBLIC_MODE,
            ),
        ];
        if let Some(k) = &self.knock_key {
            v.push((file::KNOCK_KEY, k.as_bytes(), file::PRIVATE_MODE));
        }
        if let Some(k) = &self.client_key {
            v.push((file::CLIENT_KEY, k.as_bytes(), file::PRIVATE_MODE));
        }
        v.push((
            file::CLIENT_TOML,
            self.client_toml.as_bytes(),
            file::PRIVATE_MODE,
        ));
        v
    }
}

impl Bundle {
    /// Reads a bundle's files (PEM) into their binary form.
    ///
    /// # Errors
    /// [`BundleError::BadFile`] naming the file that is not the PEM it should be.
    pub fn from_files(files: &BundleFiles) -> Result<Self, BundleError> {
        let bad = |file: &'static str| {
            move |e: crate::PkiError| BundleError::BadFile {
                file,
                reason: error_chain(&e),
            }
        };
        let client_key = match &files.client_key {
            Some(text) => Some(Zeroizing::new(
                pem_block(text, "PRIVATE KEY", "client key").map_err(bad(file::CLIENT_KEY))?,
            )),
            None => None,
        };
        let knock_key = match &files.knock_key {
            Some(text) => Some(knock::from_pem(text).map_err(bad(file::KNOCK_KEY))?),
            None => None,
        };
        Ok(Self {
            ca_cert: pem_block(&files.ca_cert, "CERTIFICATE", "CA certificate")
                .map_err(bad(file::CA_CERT))?,
            crl: pem_block(&files.crl, "X509 CRL", "CRL").map_err(bad(file::CRL))?,
            client_cert: pem_block(&files.client_cert, "CERTIFICATE", "client certificate")
                .map_err(bad(file::CLIENT_CERT))?,
            client_toml: files.client_toml.clone(),
            client_key,
            knock_key,
        })
    }

    /// The bundle's files as `aura provision-client` writes them (PEM with `\n` line ends;
    /// knock.key as [`knock::to_pem`] writes it).
    pub fn to_files(&self) -> BundleFiles {
        BundleFiles {
            ca_cert: pem_encode("CERTIFICATE", &self.ca_cert),
            crl: pem_encode("X509 CRL", &self.crl),
            client_cert: pem_encode("CERTIFICATE", &self.client_cert),
            client_toml: self.client_toml.clone(),
            client_key: self
                .client_key
                .as_ref()
                .map(|k| Zeroizing::new(pem_encode("PRIVATE KEY", k))),
            knock_key: self.knock_key.as_ref().map(|k| knock::to_pem(k)),
        }
    }

    /// The plaintext that gets sealed (layer 3 of the module docs).
    ///
    /// # Errors
    /// [`BundleError::TooLarge`] when a file or the whole exceeds what the format holds.
    pub fn to_plaintext(&self) -> Result<Zeroizing<Vec<u8>>, BundleError> {
        let mut list = Vec::new();
        for (t, value, what) in [
            (file_tag::CA_CERT, &self.ca_cert[..], "ca.crt"),
            (file_tag::CRL, &self.crl[..], "crl.pem"),
            (file_tag::CLIENT_CERT, &self.client_cert[..], "client.crt"),
            (
                file_tag::CLIENT_TOML,
                self.client_toml.as_bytes(),
                "client.toml",
            ),
        ] {
            push_entry(&mut list, t, value, what)?;
        }
        if list.len() > MAX_FILES_LEN {
            return Err(BundleError::TooLarge {
                what: "the file list",
                len: list.len(),
                max: MAX_FILES_LEN,
            });
        }
        let files = miniz_oxide::deflate::compress_to_vec(&list, DEFLATE_LEVEL);
        let key_len = self.client_key.as_ref().map_or(0, |k| 3 + k.len());
        let knock_len = self.knock_key.as_ref().map_or(0, |_| 3 + KNOCK_KEY_BYTES);
        // Sized once: the secrets are never copied into a buffer that is freed unwiped.
        let mut out = Zeroizing::new(Vec::with_capacity(key_len + knock_len + 3 + files.len()));
        if let Some(k) = &self.client_key {
            push_entry(&mut out, tag::CLIENT_KEY, k, "client.key")?;
        }
        if let Some(k) = &self.knock_key {
            push_entry(&mut out, tag::KNOCK_KEY, &k[..], "knock.key")?;
        }
        push_entry(&mut out, tag::FILES, &files, "the compressed files")?;
        Ok(out)
    }

    /// Reads a plaintext (layer 3).
    ///
    /// # Errors
    /// [`BundleError::Malformed`] saying what breaks the format.
    pub fn from_plaintext(data: &[u8]) -> Result<Self, BundleError> {
        let mut r = Reader(data);
        let mut entry = r.entry()?;
        let mut client_key = None;
        if entry.0 == tag::CLIENT_KEY {
            if entry.1.is_empty() {
                return Err(malformed("an empty client key"));
            }
            client_key = Some(Zeroizing::new(entry.1.to_vec()));
            entry = r.entry()?;
        }
        let mut knock_key = None;
        if entry.0 == tag::KNOCK_KEY {
            let key: [u8; KNOCK_KEY_BYTES] = entry.1.try_into().map_err(|_| {
                malformed(format!(
                    "a knock key of {} bytes (it has {KNOCK_KEY_BYTES})",
                    entry.1.len()
                ))
            })?;
            knock_key = Some(Zeroizing::new(key));
            entry = r.entry()?;
        }
        if entry.0 != tag::FILES {
            return Err(malformed(format!(
                "entry {} where the files belong (entries 1, 2, 3 in that order)",
                entry.0
            )));
        }
        if !r.0.is_empty() {
            return Err(malformed(format!(
                "{} bytes after the files entry",
                r.0.len()
            )));
        }
        let list = inflate(entry.1)?;
        let mut r = Reader(&list);
        let mut field = |t: u8, what: &str| -> Result<Vec<u8>, BundleError> {
            let (got, value) = r.entry()?;
            if got != t {
                return Err(malformed(format!(
                    "file entry {got} where {what} (entry {t}) belongs"
                )));
            }
            if value.is_empty() {
                return Err(malformed(format!("an empty {what}")));
            }
            Ok(value.to_vec())
        };
        let ca_cert = field(file_tag::CA_CERT, "ca.crt")?;
        let crl = field(file_tag::CRL, "crl.pem")?;
        let client_cert = field(file_tag::CLIENT_CERT, "client.crt")?;
        let toml = field(file_tag::CLIENT_TOML, "client.toml")?;
        if !r.0.is_empty() {
            return Err(malformed(format!(
                "{} bytes after the file list",
                r.0.len()
            )));
        }
        let client_toml =
            String::from_utf8(toml).map_err(|_| malformed("a client.toml that is not UTF-8"))?;
        Ok(Self {
            ca_cert,
            crl,
            client_cert,
            client_toml,
            client_key,
            knock_key,
        })
    }

    /// Seals the bundle under `code` with `salt`. Deterministic: the same inputs give the
    /// same bytes (the frozen vector relies on it).
    ///
    /// # Errors
    /// [`BundleError::TooLarge`]; [`BundleError::Internal`] if the crypto backend fails.
    pub fn seal(
        &self,
        code: &OneTimeCode,
        salt: [u8; SALT_LEN],
    ) -> Result<SealedBundle, BundleError> {
        let plaintext = self.to_plaintext()?;
        let sealed_len = plaintext.len() + TAG_LEN;
        if sealed_len > MAX_SEALED_LEN {
            return Err(BundleError::TooLarge {
                what: "the sealed bundle",
                len: sealed_len,
                max: MAX_SEALED_LEN,
            });
        }
        let keys = SealKeys::derive(&salt, code)?;
        let mut sealed = SealedBundle {
            salt,
            check: keys.check,
            sealed: Vec::new(),
        };
        let header = sealed.header(sealed_len);
        let mut buf = Zeroizing::new(vec![0u8; sealed_len]);
        buf[..plaintext.len()].copy_from_slice(&plaintext);
        keys.aead()?
            .seal_in_place(&keys.nonce, &header, &mut buf, plaintext.len())
            .map_err(|_| BundleError::Internal("aead seal"))?;
        sealed.sealed = buf.to_vec();
        Ok(sealed)
    }

    /// Seals the bundle under a fresh code and salt from `rng`; returns both.
    ///
    /// # Errors
    /// As [`Bundle::seal`].
    pub fn seal_with_rng<R: RngCore + CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
    ) -> Result<(SealedBundle, OneTimeCode), BundleError> {
        let code = OneTimeCode::generate(rng);
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        Ok((self.seal(&code, salt)?, code))
    }
}

/// Whether the PKCS#8 PEM private key `key_pem` is the key of the certificate `cert_der`.
///
/// # Errors
/// [`BundleError::BadFile`] when either cannot be read.
pub fn key_matches_certificate(key_pem: &str, cert_der: &[u8]) -> Result<bool, BundleError> {
    let der = Zeroizing::new(
        pem_block(key_pem, "PRIVATE KEY", "client key").map_err(|e| BundleError::BadFile {
            file: file::CLIENT_KEY,
            reason: error_chain(&e),
        })?,
    );
    let key = KeyPair::try_from(der.as_slice()).map_err(|e| BundleError::BadFile {
        file: file::CLIENT_KEY,
        reason: format!("unreadable private key: {e}"),
    })?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|e| BundleError::BadFile {
            file: file::CLIENT_CERT,
            reason: format!("unparsable certificate: {e}"),
        })?;
    Ok(key.public_key_raw() == cert.public_key().subject_public_key.data.as_ref())
}

/// A sealed bundle: the header's salt and check value, and the ciphertext with its tag.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBundle {
    salt: [u8; SALT_LEN],
    check: [u8; CHECK_LEN],
    sealed: Vec<u8>,
}

impl fmt::Debug for SealedBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedBundle")
            .field("sealed", &format_args!("{} bytes", self.sealed.len()))
            .finish_non_exhaustive()
    }
}

impl SealedBundle {
    fn header(&self, sealed_len: usize) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = VERSION;
        h[1..1 + SALT_LEN].copy_from_slice(&self.salt);
        h[1 + SALT_LEN..1 + SALT_LEN + CHECK_LEN].copy_from_slice(&self.check);
        // The sealer refuses anything longer, and the reader cannot produce it.
        let len = u16::try_from(sealed_len).unwrap_or(u16::MAX);
        h[HEADER_LEN - 2..].copy_from_slice(&len.to_be_bytes());
        h
    }

    /// The sealed bytes (layer 2).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.sealed.len());
        out.extend_from_slice(&self.header(self.sealed.len()));
        out.extend_from_slice(&self.sealed);
        out
    }

    /// Reads sealed bytes (layer 2). Does not decrypt.
    ///
    /// # Errors
    /// [`BundleError::UnknownVersion`], [`BundleError::Truncated`],
    /// [`BundleError::TrailingData`], [`BundleError::Malformed`] (a sealed part too short
    /// to hold a tag).
    pub fn from_bytes(data: &[u8]) -> Result<Self, BundleError> {
        match data.first() {
            None => {
                return Err(BundleError::Truncated {
                    have: 0,
                    need: HEADER_LEN,
                });
            }
            Some(&VERSION) => {}
            Some(v) => return Err(BundleError::UnknownVersion(format!("byte {v}"))),
        }
        let Some((header, rest)) = data.split_at_checked(HEADER_LEN) else {
            return Err(BundleError::Truncated {
                have: data.len(),
                need: HEADER_LEN,
            });
        };
        let len = usize::from(u16::from_be_bytes([
            header[HEADER_LEN - 2],
            header[HEADER_LEN - 1],
        ]));
        if rest.len() < len {
            return Err(BundleError::Truncated {
                have: data.len(),
                need: HEADER_LEN + len,
            });
        }
        if rest.len() > len {
            return Err(BundleError::TrailingData(format!(
                "{} bytes",
                rest.len() - len
            )));
        }
        if len <= TAG_LEN {
            return Err(malformed(format!(
                "a sealed part of {len} bytes (more than a {TAG_LEN}-byte tag is needed)"
            )));
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&header[1..1 + SALT_LEN]);
        let mut check = [0u8; CHECK_LEN];
        check.copy_from_slice(&header[1 + SALT_LEN..1 + SALT_LEN + CHECK_LEN]);
        Ok(Self {
            salt,
            check,
            sealed: rest.to_vec(),
        })
    }

    /// The URI (layer 1): [`URI_PREFIX`] then the sealed bytes in upper-case base32.
    pub fn to_uri(&self) -> String {
        let mut uri = String::from(URI_PREFIX);
        base32_encode(&self.to_bytes(), &mut uri);
        uri
    }

    /// Reads a URI (layer 1), ignoring case. Does not decrypt. Surrounding whitespace is
    /// not accepted: trim it first.
    ///
    /// # Errors
    /// [`BundleError::NotAUri`], [`BundleError::UnknownVersion`],
    /// [`BundleError::BadCharacter`], then as [`SealedBundle::from_bytes`].
    pub fn from_uri(text: &str) -> Result<Self, BundleError> {
        let rest = strip_prefix_ci(text, URI_SCHEME)
            .ok_or(BundleError::NotAUri("it does not start with aura://"))?;
        let rest = strip_prefix_ci(rest, URI_KIND).ok_or(BundleError::NotAUri(
            "an aura:// URI, but not an aura://import/ bundle",
        ))?;
        let (version, data) = rest.split_once('/').unwrap_or((rest, ""));
        if !version.eq_ignore_ascii_case("v1") {
            let numbered = version.len() > 1
                && version.starts_with(['v', 'V'])
                && version[1..].bytes().all(|b| b.is_ascii_digit());
            if numbered {
                return Err(BundleError::UnknownVersion(version.to_ascii_lowercase()));
            }
            return Err(BundleError::NotAUri("no version (v1) after aura://import/"));
        }
        let offset = text.len() - data.len();
        let (bytes, ragged) = base32_decode(data, offset)?;
        let sealed = Self::from_bytes(&bytes)?;
        if ragged {
            return Err(BundleError::TrailingData(
                "characters that make no whole byte".into(),
            ));
        }
        Ok(sealed)
    }

    /// Opens the bundle with `code`.
    ///
    /// # Errors
    /// [`BundleError::WrongCode`] when the code is not this bundle's,
    /// [`BundleError::Tampered`] when the code is right but the bytes were changed,
    /// [`BundleError::Malformed`] when the authenticated contents break the format.
    pub fn open(&self, code: &OneTimeCode) -> Result<Bundle, BundleError> {
        let keys = SealKeys::derive(&self.salt, code)?;
        if !kdf::ct_eq(&keys.check, &self.check) {
            return Err(BundleError::WrongCode);
        }
        let header = self.header(self.sealed.len());
        let mut buf = Zeroizing::new(self.sealed.clone());
        let plaintext = keys
            .aead()?
            .open_in_place(&keys.nonce, &header, &mut buf)
            .map_err(|_| BundleError::Tampered)?;
        Bundle::from_plaintext(plaintext)
    }
}

/// A one-time code: 20 characters of Crockford's base32, 100 random bits, shown as four
/// groups of five (`7K3QD-…`). Zeroized on drop; its `Debug` hides it.
#[derive(Clone)]
pub struct OneTimeCode(Zeroizing<[u8; CODE_LEN]>);

impl fmt::Debug for OneTimeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneTimeCode(..)")
    }
}

impl OneTimeCode {
    /// A fresh code from `rng`.
    pub fn generate<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut raw = Zeroizing::new([0u8; CODE_LEN]);
        rng.fill_bytes(&mut raw[..]);
        let mut code = Zeroizing::new([0u8; CODE_LEN]);
        for (c, r) in code.iter_mut().zip(raw.iter()) {
            // 256 is a multiple of 32: every symbol is equally likely.
            *c = CODE_ALPHABET[usize::from(r & 31)];
        }
        Self(code)
    }

    /// Reads a code as a person types it: case, spaces and dashes do not matter, and
    /// O, I and L are read as 0, 1 and 1.
    ///
    /// # Errors
    /// [`BundleError::BadCode`] naming the character or the length at fault.
    pub fn parse(text: &str) -> Result<Self, BundleError> {
        let mut code = Zeroizing::new([0u8; CODE_LEN]);
        let mut n = 0usize;
        for ch in text.chars() {
            if ch == '-' || ch.is_whitespace() {
                continue;
            }
            let c = match ch.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            };
            let valid = c.is_ascii() && CODE_ALPHABET.contains(&(c as u8));
            if !valid {
                return Err(BundleError::BadCode(format!(
                    "{ch:?} is not a code character (0-9 and A-Z without U)"
                )));
            }
            if n < CODE_LEN {
                code[n] = c as u8;
            }
            n += 1;
        }
        if n != CODE_LEN {
            return Err(BundleError::BadCode(format!(
                "{n} characters where a code has {CODE_LEN} (four groups of five)"
            )));
        }
        Ok(Self(code))
    }

    /// The code in four groups of five, as printed for a person to type.
    pub fn grouped(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(CODE_LEN + 3));
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 && i % 5 == 0 {
                s.push('-');
            }
            s.push(char::from(*c));
        }
        s
    }
}

/// Key, nonce and check value of one (salt, code).
struct SealKeys {
    key: Secret,
    nonce: [u8; NONCE_LEN],
    check: [u8; CHECK_LEN],
}

impl SealKeys {
    fn derive(salt: &[u8; SALT_LEN], code: &OneTimeCode) -> Result<Self, BundleError> {
        let prk = kdf::extract(labels::BUNDLE_SEAL, &[salt, &code.0[..]]);
        let internal = |_| BundleError::Internal("hkdf expand");
        let key = kdf::expand_secret(&prk, labels::expand::BUNDLE_KEY, b"").map_err(internal)?;
        let mut nonce = [0u8; NONCE_LEN];
        kdf::expand_label(&prk, labels::expand::BUNDLE_NONCE, b"", &mut nonce).map_err(internal)?;
        let mut check = [0u8; CHECK_LEN];
        kdf::expand_label(&prk, labels::expand::BUNDLE_CHECK, b"", &mut check).map_err(internal)?;
        Ok(Self { key, nonce, check })
    }

    fn aead(&self) -> Result<AeadKey, BundleError> {
        AeadKey::new(Suite::Aes256Gcm, self.key.expose())
            .map_err(|_| BundleError::Internal("aead key setup"))
    }
}

impl Drop for SealKeys {
    fn drop(&mut self) {
        self.nonce.zeroize();
        self.check.zeroize();
    }
}

fn malformed(why: impl Into<String>) -> BundleError {
    BundleError::Malformed(why.into())
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

fn push_entry(
    out: &mut Vec<u8>,
    t: u8,
    value: &[u8],
    what: &'static str,
) -> Result<(), BundleError> {
    let len = u16::try_from(value.len()).map_err(|_| BundleError::TooLarge {
        what,
        len: value.len(),
        max: usize::from(u16::MAX),
    })?;
    out.push(t);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

/// Entries `tag || u16_be length || value`.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn entry(&mut self) -> Result<(u8, &'a [u8]), BundleError> {
        let [t, a, b, rest @ ..] = self.0 else {
            return Err(malformed("an entry cut short in its tag or length"));
        };
        let len = usize::from(u16::from_be_bytes([*a, *b]));
        let Some((value, rest)) = rest.split_at_checked(len) else {
            return Err(malformed(format!(
                "entry {t} announces {len} bytes, {} remain",
                rest.len()
            )));
        };
        self.0 = rest;
        Ok((*t, value))
    }
}

/// Inflates raw DEFLATE into at most [`MAX_FILES_LEN`] bytes; every input byte must be
/// part of the stream.
fn inflate(data: &[u8]) -> Result<Vec<u8>, BundleError> {
    let mut out = vec![0u8; MAX_FILES_LEN];
    let mut state = Box::<DecompressorOxide>::default();
    let (status, read, written) = decompress(
        &mut state,
        data,
        &mut out,
        0,
        inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
    );
    match status {
        TINFLStatus::Done if read == data.len() => {
            out.truncate(written);
            Ok(out)
        }
        TINFLStatus::Done => Err(malformed(format!(
            "{} bytes after the compressed files",
            data.len() - read
        ))),
        TINFLStatus::HasMoreOutput => Err(malformed(format!(
            "the files inflate to more than {MAX_FILES_LEN} bytes"
        ))),
        other => Err(malformed(format!(
            "the compressed files do not inflate ({other:?})"
        ))),
    }
}

/// `text` without `prefix`, compared without regard to ASCII case.
fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// RFC 4648 base32, upper case, no padding.
fn base32_encode(data: &[u8], out: &mut String) {
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32_ALPHABET[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(
            BASE32_ALPHABET[((acc << (5 - bits)) & 31) as usize],
        ));
    }
}

/// Base32 of either case. Returns the whole bytes, and whether the end is ragged: left-over
/// bits that make no character of an encoder's output (5 or more, or not zero).
/// `offset` is the data's position in the URI, for error messages.
fn base32_decode(text: &str, offset: usize) -> Result<(Vec<u8>, bool), BundleError> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for (i, ch) in text.char_indices() {
        let v = match ch {
            'A'..='Z' => ch as u32 - 'A' as u32,
            'a'..='z' => ch as u32 - 'a' as u32,
            '2'..='7' => ch as u32 - '2' as u32 + 26,
            _ => {
                return Err(BundleError::BadCharacter {
                    position: offset + i + 1,
                    found: ch,
                });
            }
        };
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok((out, bits >= 5 || acc != 0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn base32_matches_rfc_4648_and_refuses_ragged_ends() {
        // RFC 4648 §10, without padding.
        for (plain, enc) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            let mut s = String::new();
            base32_encode(plain.as_bytes(), &mut s);
            assert_eq!(s, enc);
            assert_eq!(
                base32_decode(enc, 0).unwrap(),
                (plain.as_bytes().to_vec(), false)
            );
            let lower = enc.to_ascii_lowercase();
            assert_eq!(base32_decode(&lower, 0).unwrap().0, plain.as_bytes());
        }
        // A character too many, or non-zero left-over bits: ragged.
        assert!(base32_decode("MZXW6Y", 0).unwrap().1);
        assert!(base32_decode("MZ", 0).unwrap().1);
        assert!(base32_decode("M", 0).unwrap().1);
        assert_eq!(
            base32_decode("MZ1", 10),
            Err(BundleError::BadCharacter {
                position: 13,
                found: '1'
            })
        );
    }

    #[test]
    fn codes_are_uniform_over_the_alphabet_and_read_as_typed() {
        let mut rng = rand_core::OsRng;
        let code = OneTimeCode::generate(&mut rng);
        let shown = code.grouped();
        assert_eq!(shown.len(), 23);
        assert_eq!(shown.matches('-').count(), 3);
        let again = OneTimeCode::parse(&shown.to_lowercase()).unwrap();
        assert_eq!(*again.0, *code.0);
        let spaced = OneTimeCode::parse(" 0123 4567 89ab cdef ghjk ").unwrap();
        assert_eq!(&spaced.0[..], b"0123456789ABCDEFGHJK");
        let confusable = OneTimeCode::parse("oIl23-45678-9ABCD-EFGHJ").unwrap();
        assert_eq!(&confusable.0[..], b"01123456789ABCDEFGHJ");
        for bad in [
            "0123456789ABCDEFGHJ",
            "0123456789ABCDEFGHJKM",
            "0123456789ABCDEFGHJU",
            "",
        ] {
            assert!(
                matches!(OneTimeCode::parse(bad), Err(BundleError::BadCode(_))),
                "{bad:?}"
            );
        }
        assert!(!format!("{code:?}").contains(&shown[..5]));
        // Every symbol turns up, none outside the alphabet.
        let mut seen = [false; 32];
        for _ in 0..200 {
            for c in OneTimeCode::generate(&mut rng).0.iter() {
                let i = CODE_ALPHABET.iter().position(|a| a == c).unwrap();
                seen[i] = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn inflate_refuses_bombs_and_trailing_bytes() {
        let big = vec![0u8; MAX_FILES_LEN + 1];
        let z = miniz_oxide::deflate::compress_to_vec(&big, 6);
        assert!(matches!(inflate(&z), Err(BundleError::Malformed(m)) if m.contains("more than")));
        let ok = miniz_oxide::deflate::compress_to_vec(b"files", 6);
        assert_eq!(inflate(&ok).unwrap(), b"files");
        let mut trailing = ok.clone();
        trailing.push(0);
        assert!(
            matches!(inflate(&trailing), Err(BundleError::Malformed(m)) if m.contains("after"))
        );
        assert!(inflate(&ok[..ok.len() - 1]).is_err());
        assert!(inflate(&[]).is_err());
    }
}
