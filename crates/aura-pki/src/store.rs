//! The file edge: a PKI directory as used by `aura pki`.
//!
//! ```text
//! DIR/ca.crt              CA certificate (PEM, 0644)
//! DIR/ca.key              CA private key (PKCS#8 PEM, 0600)
//! DIR/crl.pem             current CRL (PEM, 0644)
//! DIR/knock.key           the deployment's knock key (PEM, 0600; crate::knock)
//! DIR/index.json          issued certificates, revocations and the CRL number
//! DIR/servers/<name>.crt  server certificates (0644) and .key (0600)
//! DIR/clients/<id>.crt    client certificates (0644); never a client key
//! ```
//!
//! A client's private key is handed to the caller (who writes it into the client's
//! bundle) or never seen at all ([`PkiStore::sign_client_request`]): the CA host keeps no
//! key but its own and the servers'.
//!
//! Every file is replaced atomically (temporary file in the same directory, write, fsync,
//! rename, fsync the directory). An operation that writes several files undoes the files
//! it already wrote if a later step fails, restoring their previous contents. Every
//! operation that writes holds an exclusive `flock` on the directory's lock file, so two
//! `aura pki` commands (or a server re-signing its CRL) never interleave.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::ca::{cert_der_from_pem, crl_der_from_pem};
use crate::names::{random_client_id, validate_ca_name, validate_client_id, validate_server_name};
use crate::time_fmt::x509_time;
use crate::{
    CertificateAuthority, ClientRequest, IssuedCert, PkiError, RevocationReason, RevokedCert, Role,
    Serial, SignedCrl, Validity, Verifier,
};

/// Default CRL lifetime: nextUpdate = now + 180 days.
pub const DEFAULT_CRL_VALIDITY_DAYS: u32 = 180;

/// Format version of `index.json`.
const INDEX_VERSION: u32 = 1;

const CA_CERT_FILE: &str = "ca.crt";
const CA_KEY_FILE: &str = "ca.key";
const CRL_FILE: &str = "crl.pem";
const KNOCK_KEY_FILE: &str = "knock.key";
const INDEX_FILE: &str = "index.json";

const MODE_SECRET: u32 = 0o600;
const MODE_PUBLIC: u32 = 0o644;
const MODE_DIR: u32 = 0o700;

/// One issued certificate, as recorded in `index.json` and shown by `aura pki list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Entry {
    /// Client id or server name (the CN).
    pub id: String,
    /// Server or client.
    pub role: Role,
    /// Serial number (lowercase hex).
    pub serial: Serial,
    /// Expiry (RFC 3339 in JSON).
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// `null` while valid; when and why it was revoked otherwise.
    pub revoked: Option<Revocation>,
}

/// When and why a certificate was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Revocation {
    /// Revocation time (RFC 3339 in JSON).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Reason (kebab-case in JSON).
    pub reason: RevocationReason,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Index {
    version: u32,
    /// Number of the CRL currently in `crl.pem`.
    crl_number: u64,
    entries: Vec<Entry>,
}

/// A certificate issued into the store.
#[derive(Debug)]
#[non_exhaustive]
pub struct StoredCert {
    /// The certificate and key.
    pub cert: IssuedCert,
    /// Where the certificate was written.
    pub cert_path: PathBuf,
    /// Where the key was written (mode 0600): servers only. A client's key is in
    /// [`IssuedCert::key_pem`] (or with the device that made the request), never on disk
    /// here.
    pub key_path: Option<PathBuf>,
}

/// The result of a revocation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Revoked {
    /// The entry, now carrying its revocation.
    pub entry: Entry,
    /// The new CRL written to `crl.pem`.
    pub crl: SignedCrl,
}

/// A PKI directory. Creating the handle does no I/O.
#[derive(Debug, Clone)]
pub struct PkiStore {
    dir: PathBuf,
    crl_validity: Duration,
}

impl PkiStore {
    /// A store rooted at `dir`, with the default CRL lifetime
    /// ([`DEFAULT_CRL_VALIDITY_DAYS`]).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PkiStore {
            dir: dir.into(),
            crl_validity: Duration::days(i64::from(DEFAULT_CRL_VALIDITY_DAYS)),
        }
    }

    /// Sets how long each newly signed CRL is valid (nextUpdate = now + `days`).
    pub fn with_crl_validity_days(mut self, days: u32) -> Self {
        self.crl_validity = Duration::days(i64::from(days));
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR/ca.crt`.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// `DIR/knock.key`.
    pub fn knock_key_path(&self) -> PathBuf {
        self.dir.join(KNOCK_KEY_FILE)
    }

    /// Makes `knock.key` when the directory has none (a CA made before knock keys
    /// existed); returns its path and whether it was made now. An existing key is kept:
    /// clients hold it.
    ///
    /// # Errors
    /// No CA in the directory, or the file cannot be written.
    pub fn ensure_knock_key<R: RngCore + CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
    ) -> Result<(PathBuf, bool), PkiError> {
        if !exists(&self.ca_cert_path())? {
            return Err(PkiError::NoCa {
                dir: self.dir.clone(),
            });
        }
        let _lock = lock_dir(&self.dir)?;
        let path = self.knock_key_path();
        if exists(&path)? {
            crate::knock::read(&path)?;
            return Ok((path, false));
        }
        let key = crate::knock::generate(rng);
        write_atomic(&path, crate::knock::to_pem(&key).as_bytes(), MODE_SECRET)?;
        Ok((path, true))
    }

    /// `DIR/ca.key`.
    pub fn ca_key_path(&self) -> PathBuf {
        self.dir.join(CA_KEY_FILE)
    }

    /// `DIR/crl.pem`.
    pub fn crl_path(&self) -> PathBuf {
        self.dir.join(CRL_FILE)
    }

    /// `DIR/index.json`.
    pub fn index_path(&self) -> PathBuf {
        self.dir.join(INDEX_FILE)
    }

    /// `(certificate, key)` paths for an id of the given role.
    pub fn cert_paths(&self, role: Role, id: &str) -> (PathBuf, PathBuf) {
        let sub = self.dir.join(match role {
            Role::Server => "servers",
            Role::Client => "clients",
        });
        (sub.join(format!("{id}.crt")), sub.join(format!("{id}.key")))
    }

    /// Creates the directory (mode 0700) if needed and writes a new CA valid from `now`
    /// for `lifetime`, a new knock key, an empty CRL (number 1) and an empty index.
    ///
    /// Refuses, naming the file, if `ca.key` or `ca.crt` exists, unless `force`.
    pub fn init<R: RngCore + CryptoRng + ?Sized>(
        &self,
        ca_name: &str,
        lifetime: Duration,
        force: bool,
        now: OffsetDateTime,
        rng: &mut R,
    ) -> Result<CertificateAuthority, PkiError> {
        let validity = Validity::starting_at(now, lifetime)?;
        validate_ca_name(ca_name)?;
        create_dir(&self.dir)?;
        let _lock = lock_dir(&self.dir)?;
        if !force {
            for path in [self.ca_key_path(), self.ca_cert_path()] {
                if exists(&path)? {
                    return Err(PkiError::AlreadyInitialized { path });
                }
            }
        }
        let ca = CertificateAuthority::generate(ca_name, validity, Serial::random(rng))?;
        let index = Index {
            version: INDEX_VERSION,
            crl_number: 1,
            entries: Vec::new(),
        };
        let crl = self.sign_crl(&ca, &index, now)?;
        // The knock key rotates with the CA.
        let knock = crate::knock::to_pem(&crate::knock::generate(rng));

        let mut txn = Txn::default();
        txn.write(&self.ca_key_path(), ca.key_pem().as_bytes(), MODE_SECRET)?;
        txn.write(&self.knock_key_path(), knock.as_bytes(), MODE_SECRET)?;
        txn.write(&self.ca_cert_path(), ca.cert_pem().as_bytes(), MODE_PUBLIC)?;
        txn.write(&self.crl_path(), crl.pem.as_bytes(), MODE_PUBLIC)?;
        txn.write(&self.index_path(), &index_bytes(&index)?, MODE_PUBLIC)?;
        txn.commit();
        Ok(ca)
    }

    /// Loads the CA from `ca.crt` and `ca.key`.
    pub fn load_ca(&self) -> Result<CertificateAuthority, PkiError> {
        let (cert_path, key_path) = (self.ca_cert_path(), self.ca_key_path());
        if !exists(&cert_path)? && !exists(&key_path)? {
            return Err(PkiError::NoCa {
                dir: self.dir.clone(),
            });
        }
        let cert_pem = read_string(&cert_path)?;
        let key_pem = Zeroizing::new(read_string(&key_path)?);
        CertificateAuthority::from_pem(&cert_pem, &key_pem).map_err(|e| {
            let path = match &e {
                PkiError::BadPem {
                    what: "CA certificate",
                    ..
                }
                | PkiError::BadCertificate { .. } => cert_path,
                _ => key_path,
            };
            e.in_file(path)
        })
    }

    /// Issues a server certificate for `name` (plus `sans`) valid for `validity_days`
    /// from `now`, writes `servers/<name>.crt` and `.key`, and records it.
    pub fn issue_server<R: RngCore + CryptoRng + ?Sized>(
        &self,
        name: &str,
        sans: &[String],
        validity_days: u32,
        now: OffsetDateTime,
        rng: &mut R,
    ) -> Result<StoredCert, PkiError> {
        let name = validate_server_name(name)?;
        self.issue(Role::Server, &name, validity_days, now, rng, |ca, v, s| {
            ca.issue_server(&name, sans, v, s)
        })
    }

    /// Issues a client certificate for `id` (a random UUIDv4 from `rng` if `None`) valid
    /// for `validity_days` from `now` with a fresh key, writes `clients/<id>.crt` and
    /// records it. The key is only returned, in [`IssuedCert::key_pem`].
    pub fn issue_client<R: RngCore + CryptoRng + ?Sized>(
        &self,
        id: Option<&str>,
        validity_days: u32,
        now: OffsetDateTime,
        rng: &mut R,
    ) -> Result<StoredCert, PkiError> {
        let id = match id {
            Some(id) => id.to_owned(),
            None => random_client_id(rng),
        };
        validate_client_id(&id)?;
        self.issue(Role::Client, &id, validity_days, now, rng, |ca, v, s| {
            ca.issue_client(&id, v, s)
        })
    }

    /// Signs a verified client request: the certificate (for the request's key) is
    /// written to `clients/<id>.crt` and recorded. `id` overrides the id the request
    /// proposes; with neither, a random UUIDv4 from `rng`.
    pub fn sign_client_request<R: RngCore + CryptoRng + ?Sized>(
        &self,
        request: &ClientRequest,
        id: Option<&str>,
        validity_days: u32,
        now: OffsetDateTime,
        rng: &mut R,
    ) -> Result<StoredCert, PkiError> {
        let id = match id.or(request.proposed_id()) {
            Some(id) => id.to_owned(),
            None => random_client_id(rng),
        };
        validate_client_id(&id)?;
        self.issue(Role::Client, &id, validity_days, now, rng, |ca, v, s| {
            ca.issue_client_for(&id, request, v, s)
        })
    }

    fn issue<R: RngCore + CryptoRng + ?Sized>(
        &self,
        role: Role,
        id: &str,
        validity_days: u32,
        now: OffsetDateTime,
        rng: &mut R,
        sign: impl FnOnce(&CertificateAuthority, Validity, Serial) -> Result<IssuedCert, PkiError>,
    ) -> Result<StoredCert, PkiError> {
        let validity = Validity::days_from(now, validity_days)?;
        let _lock = lock_dir(&self.dir)?;
        let ca = self.load_ca()?;
        let mut index = self.load_index()?;
        if let Some(active) = index
            .entries
            .iter()
            .find(|e| e.id == id && e.revoked.is_none())
        {
            return Err(PkiError::Duplicate {
                id: active.id.clone(),
                role: active.role,
                serial: active.serial.clone(),
            });
        }
        let serial = loop {
            let s = Serial::random(rng);
            if !index.entries.iter().any(|e| e.serial == s) {
                break s;
            }
        };
        let cert = sign(&ca, validity, serial)?;
        index.entries.push(Entry {
            id: cert.id.clone(),
            role,
            serial: cert.serial.clone(),
            not_after: cert.not_after,
            revoked: None,
        });

        let (cert_path, key_path) = self.cert_paths(role, &cert.id);
        if let Some(parent) = cert_path.parent() {
            create_dir(parent)?;
        }
        let mut txn = Txn::default();
        // Only a server's key is kept here: the server host runs from this directory.
        let key_path = match (role, &cert.key_pem) {
            (Role::Server, Some(key)) => {
                txn.write(&key_path, key.as_bytes(), MODE_SECRET)?;
                Some(key_path)
            }
            _ => None,
        };
        txn.write(&cert_path, cert.cert_pem.as_bytes(), MODE_PUBLIC)?;
        txn.write(&self.index_path(), &index_bytes(&index)?, MODE_PUBLIC)?;
        txn.commit();
        Ok(StoredCert {
            cert,
            cert_path,
            key_path,
        })
    }

    /// Revokes the certificate named by `id_or_serial` (the active certificate with that
    /// id, or the certificate with that serial), increments the CRL number and rewrites
    /// `crl.pem` (nextUpdate = now + the CRL lifetime).
    pub fn revoke(
        &self,
        id_or_serial: &str,
        reason: RevocationReason,
        now: OffsetDateTime,
    ) -> Result<Revoked, PkiError> {
        let _lock = lock_dir(&self.dir)?;
        let ca = self.load_ca()?;
        let mut index = self.load_index()?;
        let pos = resolve(&index.entries, id_or_serial)?;
        let revocation = Revocation {
            at: x509_time(now),
            reason,
        };
        let entry = index
            .entries
            .get_mut(pos)
            .ok_or_else(|| PkiError::UnknownCertificate(id_or_serial.to_owned()))?;
        entry.revoked = Some(revocation);
        let entry = entry.clone();
        let crl = self.bump_and_write_crl(&ca, &mut index, now)?;
        Ok(Revoked { entry, crl })
    }

    /// Re-signs the CRL with a new CRL number and a fresh nextUpdate (now + the CRL
    /// lifetime). Run it periodically so peers never see an expired CRL.
    pub fn regenerate_crl(&self, now: OffsetDateTime) -> Result<SignedCrl, PkiError> {
        let _lock = lock_dir(&self.dir)?;
        let ca = self.load_ca()?;
        let mut index = self.load_index()?;
        self.bump_and_write_crl(&ca, &mut index, now)
    }

    /// Every certificate in the index, in issue order.
    pub fn list(&self) -> Result<Vec<Entry>, PkiError> {
        Ok(self.load_index()?.entries)
    }

    /// The current CRL number.
    pub fn crl_number(&self) -> Result<u64, PkiError> {
        Ok(self.load_index()?.crl_number)
    }

    /// The current CRL, DER.
    pub fn crl_der(&self) -> Result<Vec<u8>, PkiError> {
        let path = self.crl_path();
        crl_der_from_pem(&read_string(&path)?).map_err(|e| e.in_file(path))
    }

    /// The CA certificate, DER.
    pub fn ca_cert_der(&self) -> Result<Vec<u8>, PkiError> {
        let path = self.ca_cert_path();
        cert_der_from_pem(&read_string(&path)?).map_err(|e| e.in_file(path))
    }

    /// A [`Verifier`] for the stored CA and CRL.
    pub fn verifier(&self) -> Result<Verifier, PkiError> {
        if !exists(&self.ca_cert_path())? {
            return Err(PkiError::NoCa {
                dir: self.dir.clone(),
            });
        }
        Verifier::new(&self.ca_cert_der()?, [self.crl_der()?]).map_err(PkiError::Verifier)
    }

    fn bump_and_write_crl(
        &self,
        ca: &CertificateAuthority,
        index: &mut Index,
        now: OffsetDateTime,
    ) -> Result<SignedCrl, PkiError> {
        index.crl_number = index
            .crl_number
            .checked_add(1)
            .ok_or(PkiError::CrlNumberExhausted)?;
        let crl = self.sign_crl(ca, index, now)?;
        let mut txn = Txn::default();
        txn.write(&self.index_path(), &index_bytes(index)?, MODE_PUBLIC)?;
        txn.write(&self.crl_path(), crl.pem.as_bytes(), MODE_PUBLIC)?;
        txn.commit();
        Ok(crl)
    }

    fn sign_crl(
        &self,
        ca: &CertificateAuthority,
        index: &Index,
        now: OffsetDateTime,
    ) -> Result<SignedCrl, PkiError> {
        let next_update = now
            .checked_add(self.crl_validity)
            .ok_or(PkiError::InvalidValidity("the CRL lifetime is too long"))?;
        let revoked: Vec<RevokedCert> = index
            .entries
            .iter()
            .filter_map(|e| {
                e.revoked.map(|r| RevokedCert {
                    serial: e.serial.clone(),
                    revoked_at: r.at,
                    reason: r.reason,
                })
            })
            .collect();
        ca.sign_crl(index.crl_number, now, next_update, &revoked)
    }

    fn load_index(&self) -> Result<Index, PkiError> {
        let path = self.index_path();
        if !exists(&path)? && !exists(&self.ca_key_path())? {
            return Err(PkiError::NoCa {
                dir: self.dir.clone(),
            });
        }
        let text = read_string(&path)?;
        let corrupt = |reason: String, source| PkiError::CorruptIndex {
            path: path.clone(),
            reason,
            source,
        };
        let index: Index = serde_json::from_str(&text)
            .map_err(|e| corrupt("not a valid Aura PKI index".into(), Some(e)))?;
        if index.version != INDEX_VERSION {
            return Err(corrupt(
                format!("unsupported index version {}", index.version),
                None,
            ));
        }
        for e in &index.entries {
            let valid = match e.role {
                Role::Client => validate_client_id(&e.id).is_ok(),
                Role::Server => validate_server_name(&e.id).is_ok(),
            };
            if !valid {
                return Err(corrupt(format!("invalid {} id {:?}", e.role, e.id), None));
            }
        }
        Ok(index)
    }
}

/// Finds the entry `query` refers to: the active entry with that id, else the entry with
/// that serial.
fn resolve(entries: &[Entry], query: &str) -> Result<usize, PkiError> {
    let already = |e: &Entry, at: OffsetDateTime| PkiError::AlreadyRevoked {
        id: e.id.clone(),
        serial: e.serial.clone(),
        at,
    };
    if let Some(pos) = entries
        .iter()
        .position(|e| e.id == query && e.revoked.is_none())
    {
        return Ok(pos);
    }
    if let Ok(serial) = query.parse::<Serial>()
        && let Some(pos) = entries.iter().position(|e| e.serial == serial)
    {
        return match entries.get(pos) {
            Some(
                e @ Entry {
                    revoked: Some(r), ..
                },
            ) => Err(already(e, r.at)),
            _ => Ok(pos),
        };
    }
    if let Some((e, r)) = entries
        .iter()
        .rev()
        .find_map(|e| (e.id == query).then_some(e).zip(e.revoked))
    {
        return Err(already(e, r.at));
    }
    Err(PkiError::UnknownCertificate(query.to_owned()))
}

fn index_bytes(index: &Index) -> Result<Vec<u8>, PkiError> {
    let mut bytes = serde_json::to_vec_pretty(index).map_err(|e| PkiError::CorruptIndex {
        path: PathBuf::from(INDEX_FILE),
        reason: "cannot serialize the index".into(),
        source: Some(e),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

// ---- file primitives ---------------------------------------------------------------------

fn exists(path: &Path) -> Result<bool, PkiError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(PkiError::io("access", path, e)),
    }
}

fn read_string(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|e| PkiError::io("read", path, e))
}

/// Takes the store's exclusive lock (`DIR/.lock`, an advisory `flock`), so concurrent
/// `aura pki` commands on one directory run one after another. Returns `None` when the
/// directory does not exist: the caller then fails with "no CA" without creating it.
fn lock_dir(dir: &Path) -> Result<Option<fs::File>, PkiError> {
    if !exists(dir)? {
        return Ok(None);
    }
    let path = dir.join(".lock");
    let mut opts = fs::OpenOptions::new();
    opts.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, MODE_SECRET);
    let file = opts
        .open(&path)
        .map_err(|e| PkiError::io("open lock file", &path, e))?;
    file.lock().map_err(|e| PkiError::io("lock", &path, e))?;
    Ok(Some(file))
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, MODE_DIR);
    builder
        .create(dir)
        .map_err(|e| PkiError::io("create directory", dir, e))
}

fn open_new(path: &Path, mode: u32) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Replaces `path` with `data` atomically: a temporary file next to it is written with
/// `mode` (Unix permission bits, less the umask), fsynced and renamed over `path`, then
/// the directory is fsynced. On failure the temporary file is removed and `path` is
/// untouched. Every file the store writes goes through it; it is exported for other
/// writers of files that must never be seen half-written.
///
/// # Errors
/// [`PkiError::Io`] naming the step that failed and `path` (its directory for the final
/// sync).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (tmp, mut file) = loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp.{}.{n}", std::process::id()));
        match open_new(&tmp, mode) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(PkiError::io("write", path, e)),
        }
    };
    let written = file.write_all(data).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(PkiError::io("write", path, e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(PkiError::io("replace", path, e));
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| PkiError::io("sync directory", dir, e))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

struct Previous {
    data: Zeroizing<Vec<u8>>,
    mode: u32,
}

/// A multi-file write: files written through it are restored to their previous contents
/// (or removed) when it is dropped without [`Txn::commit`].
#[derive(Default)]
struct Txn {
    written: Vec<(PathBuf, Option<Previous>)>,
}

impl Txn {
    fn write(&mut self, path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
        let previous = match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_file() => Some(Previous {
                data: Zeroizing::new(fs::read(path).map_err(|e| PkiError::io("read", path, e))?),
                mode: file_mode(&meta),
            }),
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(PkiError::io("access", path, e)),
        };
        write_atomic(path, data, mode)?;
        self.written.push((path.to_owned(), previous));
        Ok(())
    }

    fn commit(mut self) {
        self.written.clear();
    }
}

impl Drop for Txn {
    fn drop(&mut self) {
        // Best effort: the operation already failed and its error is what gets reported.
        for (path, previous) in self.written.drain(..).rev() {
            match previous {
                Some(prev) => {
                    let _ = write_atomic(&path, &prev.data, prev.mode);
                }
                None => {
                    let _ = fs::remove_file(&path);
                    let _ = sync_dir(parent_dir(&path));
                }
            }
        }
    }
}

#[cfg(unix)]
fn file_mode(meta: &fs::Metadata) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777
}

#[cfg(not(unix))]
fn file_mode(_meta: &fs::Metadata) -> u32 {
    MODE_PUBLIC
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn entry(id: &str, serial: &str, revoked: bool) -> Entry {
        Entry {
            id: id.into(),
            role: Role::Client,
            serial: serial.parse().unwrap(),
            not_after: OffsetDateTime::UNIX_EPOCH,
            revoked: revoked.then_some(Revocation {
                at: OffsetDateTime::UNIX_EPOCH,
                reason: RevocationReason::Superseded,
            }),
        }
    }

    #[test]
    fn resolve_prefers_active_id_then_serial() {
        let entries = vec![
            entry("alice", "01", true),
            entry("alice", "02", false),
            entry("bob", "03", true),
        ];
        assert_eq!(resolve(&entries, "alice").unwrap(), 1);
        assert!(matches!(
            resolve(&entries, "01").unwrap_err(),
            PkiError::AlreadyRevoked { .. }
        ));
        assert_eq!(resolve(&entries, "02").unwrap(), 1);
        assert!(matches!(
            resolve(&entries, "bob").unwrap_err(),
            PkiError::AlreadyRevoked { .. }
        ));
        assert!(matches!(
            resolve(&entries, "carol").unwrap_err(),
            PkiError::UnknownCertificate(_)
        ));
        assert!(matches!(
            resolve(&entries, "ff").unwrap_err(),
            PkiError::UnknownCertificate(_)
        ));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn txn_rolls_back_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        let new = dir.path().join("new");
        fs::write(&old, b"before").unwrap();
        {
            let mut txn = Txn::default();
            txn.write(&old, b"after", 0o644).unwrap();
            txn.write(&new, b"fresh", 0o644).unwrap();
            assert_eq!(fs::read(&old).unwrap(), b"after");
        }
        assert_eq!(fs::read(&old).unwrap(), b"before");
        assert!(!new.exists());
        {
            let mut txn = Txn::default();
            txn.write(&new, b"kept", 0o644).unwrap();
            txn.commit();
        }
        assert_eq!(fs::read(&new).unwrap(), b"kept");
    }
}
