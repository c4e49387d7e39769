//! `aura client import`: a client bundle onto this device, from an `aura://import/v1/` URI
//! (sealed with a one-time code; docs/PROTOCOL.md §13), a file holding one, or a bundle
//! directory. All or nothing: the files appear together, with their modes, or not at all.
//! Also what `aura provision-client --uri/--qr` shares with it: reading a bundle
//! directory, and sealing it into a URI.

use std::fs;
use std::io::{self, BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use aura_netcfg::privilege::RunAs;
use aura_pki::bundle::{
    Bundle, BundleError, BundleFiles, OneTimeCode, SealedBundle, file, key_matches_certificate,
};
use aura_pki::{VerifyError, write_atomic};
use clap::Args;
use zeroize::Zeroizing;

/// Where `aura client import` writes without `--dir`: the bundle `aura-client@client`
/// runs (README's layout).
pub const DEFAULT_DIR: &str = "/etc/aura/client";

/// The environment variable that may hold the one-time code.
const CODE_ENV: &str = "AURA_IMPORT_CODE";

/// The largest file `import` reads as a URI.
const MAX_URI_FILE: u64 = 1 << 20;

/// Tries at the code prompt before giving up.
const PROMPT_TRIES: usize = 3;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// An aura://import/v1/ URI (from `aura provision-client --uri` or its QR code), a
    /// file holding one, or a bundle directory written by `aura provision-client`.
    #[arg(value_name = "URI|FILE|DIR")]
    source: String,
    /// The one-time code printed with the URI. Without it: the AURA_IMPORT_CODE
    /// environment variable, else a prompt on the terminal (preferred: a code on the
    /// command line shows in the process list and the shell's history).
    #[arg(long, env = CODE_ENV, hide_env_values = true, value_name = "CODE")]
    code: Option<String>,
    /// The directory to write ca.crt, crl.pem, client.crt, client.key, knock.key and
    /// client.toml into (created with mode 0700 if missing). /etc/aura/NAME is the
    /// bundle `systemctl enable --now aura-client@NAME` runs.
    #[arg(long, default_value = DEFAULT_DIR)]
    dir: PathBuf,
    /// Replace the client.key and client.toml already in DIR.
    #[arg(long)]
    force: bool,
    /// Run the client as this user ([client] run_as, written into client.toml): the
    /// files become readable by the user's group (keys 0640, the directory 0750), root
    /// keeps them.
    #[arg(long, value_name = "USER")]
    run_as: Option<String>,
}

/// `aura client import`.
pub fn run(a: ImportArgs) -> Result<()> {
    // Before anything is read or written: a user that does not exist stops here.
    let user = a
        .run_as
        .as_deref()
        .map(aura_netcfg::privilege::RunAs::lookup)
        .transpose()
        .context("--run-as")?;
    let (mut files, from) = load(&a.source, a.code)?;
    let checked = check(&files, &a.dir)?;
    if let Some(u) = &user {
        files.client_toml = aura_lab::deploy::set_key(
            &files.client_toml,
            "[client]",
            "run_as",
            &aura_lab::deploy::toml_string(&u.name),
        )
        .map_err(|e| anyhow::anyhow!("cannot set run_as in client.toml: {e}"))?;
    }
    install(&a.dir, &files, a.force, user.as_ref())?;
    let names: Vec<&str> = files.entries().iter().map(|e| e.0).collect();
    let config = a.dir.join(file::CLIENT_TOML);
    println!(
        "client {} imported from {from} into {}: {}\nnext: aura client --config {}",
        checked.id,
        a.dir.display(),
        names.join(", "),
        config.display()
    );
    Ok(())
}

/// The bundle's files from `source`, and a word on where they came from.
fn load(source: &str, code: Option<String>) -> Result<(BundleFiles, &'static str)> {
    let code = code.map(Zeroizing::new);
    if looks_like_uri(source) {
        return Ok((open_uri(source.trim(), code)?, "the URI"));
    }
    let path = Path::new(source);
    let meta = fs::metadata(path).with_context(|| {
        format!("{source} is neither an aura://import/ URI nor a file or directory that exists")
    })?;
    if meta.is_dir() {
        let files = read_bundle_dir(path)?;
        // Checks the PEM of every file before anything is written.
        Bundle::from_files(&files).with_context(|| format!("in the bundle {source}"))?;
        return Ok((files, "the bundle directory"));
    }
    if meta.len() > MAX_URI_FILE {
        bail!(
            "{source} is {} bytes: too large to hold a bundle URI",
            meta.len()
        );
    }
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read {source} (a URI file is text)"))?;
    let text = text.trim();
    if !looks_like_uri(text) {
        bail!("{source} holds no aura://import/ URI");
    }
    Ok((open_uri(text, code)?, "the URI file"))
}

fn looks_like_uri(text: &str) -> bool {
    text.trim_start()
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("aura:"))
}

/// Reads and opens a URI with the code from `code`, the environment (clap reads it into
/// `code`) or a prompt.
fn open_uri(uri: &str, code: Option<Zeroizing<String>>) -> Result<BundleFiles> {
    let sealed = SealedBundle::from_uri(uri).context("cannot read the bundle URI")?;
    let opened = match code {
        Some(c) => {
            let code = OneTimeCode::parse(&c).context("cannot use the one-time code")?;
            sealed.open(&code).context("cannot open the bundle")?
        }
        None => prompt_and_open(&sealed)?,
    };
    Ok(opened.to_files())
}

/// Asks for the code on the terminal until it opens the bundle (at most
/// [`PROMPT_TRIES`] times; a tampered bundle ends at once).
fn prompt_and_open(sealed: &SealedBundle) -> Result<Bundle> {
    if !io::stdin().is_terminal() {
        bail!(
            "no one-time code: give --code CODE or set {CODE_ENV} (there is no terminal to \
             ask on)"
        );
    }
    let mut last = None;
    for _ in 0..PROMPT_TRIES {
        eprint!("one-time code (printed beside the QR code or the URI): ");
        io::stderr().flush().ok();
        // Sized once, so reading never leaves a copy of the code in a freed buffer.
        let mut line = Zeroizing::new(String::with_capacity(256));
        if io::stdin().lock().read_line(&mut line)? == 0 {
            break;
        }
        let attempt = OneTimeCode::parse(&line).and_then(|code| sealed.open(&code));
        match attempt {
            Ok(b) => return Ok(b),
            Err(e @ (BundleError::WrongCode | BundleError::BadCode(_))) => {
                eprintln!("{e}");
                last = Some(e);
            }
            Err(e) => return Err(e).context("cannot open the bundle"),
        }
    }
    match last {
        Some(e) => Err(e).context("cannot open the bundle"),
        None => bail!("no one-time code given"),
    }
}

/// Reads a bundle directory as `aura provision-client` writes it.
pub fn read_bundle_dir(dir: &Path) -> Result<BundleFiles> {
    let read = |name: &str| {
        let p = dir.join(name);
        fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))
    };
    let optional = |name: &str| -> Result<Option<Zeroizing<String>>> {
        let p = dir.join(name);
        match fs::read_to_string(&p) {
            Ok(s) => Ok(Some(Zeroizing::new(s))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
        }
    };
    Ok(BundleFiles {
        ca_cert: read(file::CA_CERT)?,
        crl: read(file::CRL)?,
        client_cert: read(file::CLIENT_CERT)?,
        client_toml: read(file::CLIENT_TOML)?,
        client_key: optional(file::CLIENT_KEY)?,
        knock_key: optional(file::KNOCK_KEY)?,
    })
}

/// client.toml without comment lines and blank lines, when that parses to the very same
/// configuration (it always does for what provision-client writes); else `text` itself.
pub fn compact_toml(text: &str, base: &Path) -> String {
    let compact: String = text
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#')
        })
        .flat_map(|l| [l, "\n"])
        .collect();
    match (
        aura_config::parse_client(text, base),
        aura_config::parse_client(&compact, base),
    ) {
        (Ok(a), Ok(b)) if a == b => compact,
        _ => text.to_owned(),
    }
}

/// The bundle in `dir` sealed into a URI under a fresh one-time code (client.toml
/// without its comments: they cost QR modules and say nothing to the client).
pub fn seal_bundle_dir(dir: &Path) -> Result<(String, OneTimeCode)> {
    let mut files = read_bundle_dir(dir)?;
    files.client_toml = compact_toml(&files.client_toml, dir);
    let b = Bundle::from_files(&files).with_context(|| format!("in {}", dir.display()))?;
    let (sealed, code) = b
        .seal_with_rng(&mut aura_crypto::OsRng)
        .context("cannot seal the bundle")?;
    Ok((sealed.to_uri(), code))
}

/// What the checks found out.
struct Checked {
    id: String,
}

/// Everything that can be known before writing: the certificate chains to the CA and is
/// not revoked, the key is the certificate's (the bundle's, or this device's own when the
/// bundle has none), and client.toml names the files as they will be written.
fn check(files: &BundleFiles, dir: &Path) -> Result<Checked> {
    let b = Bundle::from_files(files)?;
    let verifier = aura_pki::Verifier::new(&b.ca_cert, [&b.crl])
        .context("the bundle's ca.crt and crl.pem do not go together")?;
    let now = rustls_pki_types::UnixTime::now();
    let id = match verifier.verify_client(&b.client_cert, now) {
        Ok(peer) => peer.id,
        // A clock far off, or a bundle left lying around: the files are still the right
        // ones, and the client says the same when it starts.
        Err(
            e @ (VerifyError::Expired { .. }
            | VerifyError::NotYetValid { .. }
            | VerifyError::CrlExpired { .. }
            | VerifyError::CrlNotYetValid { .. }),
        ) => {
            eprintln!("warning: the bundle's client.crt: {e}");
            String::from("(unverified)")
        }
        Err(e) => {
            return Err(e).context("the bundle's client.crt is not a client certificate of its CA");
        }
    };
    match &files.client_key {
        Some(key) => {
            if !key_matches_certificate(key, &b.client_cert)? {
                bail!("the bundle's client.key is not the key of its client.crt");
            }
        }
        None => {
            let own = dir.join(file::CLIENT_KEY);
            let key = match fs::read_to_string(&own) {
                Ok(k) => Zeroizing::new(k),
                Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
                    "the bundle has no client.key: it was issued for a device's own key \
                     (`aura client keygen`), and {} has none; import it into the directory \
                     that holds that key",
                    dir.display()
                ),
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot read {}", own.display()));
                }
            };
            if !key_matches_certificate(&key, &b.client_cert)
                .with_context(|| format!("in {}", own.display()))?
            {
                bail!(
                    "the bundle's client.crt was issued for another key than {}",
                    own.display()
                );
            }
        }
    }
    let cfg = aura_config::parse_client(&files.client_toml, dir)
        .context("the bundle's client.toml does not parse")?;
    let expect = |key: &str, got: Option<&Path>, name: Option<&str>| -> Result<()> {
        let want = name.map(|n| dir.join(n));
        if got != want.as_deref() {
            bail!(
                "the bundle's client.toml names {} for pki.{key}, where the bundle puts {}",
                got.map_or("nothing".into(), |p| p.display().to_string()),
                want.map_or("nothing".into(), |p| p.display().to_string())
            );
        }
        Ok(())
    };
    expect("ca_cert", Some(&cfg.pki.ca_cert), Some(file::CA_CERT))?;
    expect("crl", Some(&cfg.pki.crl), Some(file::CRL))?;
    expect("cert", Some(&cfg.pki.cert), Some(file::CLIENT_CERT))?;
    expect("key", Some(&cfg.pki.key), Some(file::CLIENT_KEY))?;
    expect(
        "knock_key",
        cfg.pki.knock_key.as_deref(),
        files.knock_key.as_ref().map(|_| file::KNOCK_KEY),
    )?;
    Ok(Checked { id })
}

/// Writes the bundle's files into `dir`: all of them, or none.
fn install(dir: &Path, files: &BundleFiles, force: bool, user: Option<&RunAs>) -> Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => install_into(dir, files, force, user),
        Ok(_) => bail!("{} exists and is not a directory", dir.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => install_fresh(dir, files, user),
        Err(e) => Err(e).with_context(|| format!("cannot look at {}", dir.display())),
    }
}

/// A new directory: the files are written and checked in a hidden sibling, which is then
/// renamed into place in one step.
fn install_fresh(dir: &Path, files: &BundleFiles, user: Option<&RunAs>) -> Result<()> {
    let Some(name) = dir.file_name() else {
        bail!("{} cannot be a bundle directory", dir.display());
    };
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let created = first_missing(&parent);
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let staging = parent.join(format!(
        ".{}.import.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        create_private_dir(&staging)?;
        for (n, data, mode) in files.entries() {
            write_atomic(&staging.join(n), data, mode)?;
        }
        if let Some(u) = user {
            share_with(&staging, files, u)?;
        }
        aura_config::load_client(staging.join(file::CLIENT_TOML))
            .context("the imported client.toml does not validate")?;
        fs::rename(&staging, dir)
            .with_context(|| format!("cannot move the bundle into {}", dir.display()))?;
        fs::File::open(&parent)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync {}", parent.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
        if let Some(top) = created {
            let _ = fs::remove_dir_all(top);
        }
    }
    result
}

/// The outermost ancestor of `path` (itself included) that does not exist yet.
fn first_missing(path: &Path) -> Option<PathBuf> {
    let mut missing = None;
    for p in path.ancestors() {
        if p.as_os_str().is_empty() || p.exists() {
            break;
        }
        missing = Some(p.to_path_buf());
    }
    missing
}

fn create_private_dir(path: &Path) -> Result<()> {
    let mut b = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// An existing directory: nothing is replaced that holds a client already (without
/// `force`); each file is replaced atomically, and if any step fails every file is put
/// back as it was.
fn install_into(dir: &Path, files: &BundleFiles, force: bool, user: Option<&RunAs>) -> Result<()> {
    if !force {
        let key = dir.join(file::CLIENT_KEY);
        if files.client_key.is_some() && key.exists() {
            bail!(
                "{} already exists: refusing to replace this device's key (use --force)",
                key.display()
            );
        }
        let config = dir.join(file::CLIENT_TOML);
        if config.exists() {
            bail!(
                "{} already exists: refusing to replace a configured client (use --force)",
                config.display()
            );
        }
    }
    let mut journal = Journal::default();
    let result = (|| -> Result<()> {
        for (n, data, mode) in files.entries() {
            journal.put(&dir.join(n), data, mode)?;
        }
        if let Some(u) = user {
            share_with(dir, files, u)?;
        }
        aura_config::load_client(dir.join(file::CLIENT_TOML))
            .context("the imported client.toml does not validate")?;
        Ok(())
    })();
    if result.is_err() {
        journal.restore();
    }
    result
}

/// Gives `dir` and the bundle's files in it to `user`'s group (root keeps them): the
/// directory 0750, private files 0640, public ones 0644.
fn share_with(dir: &Path, files: &BundleFiles, user: &RunAs) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let give = |path: &Path, mode: u32| -> Result<()> {
        std::os::unix::fs::chown(path, Some(0), Some(user.gid))
            .with_context(|| format!("cannot give {} to group of {}", path.display(), user.name))?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()))
    };
    give(dir, 0o750)?;
    for (n, _, mode) in files.entries() {
        let shared = if mode == file::PRIVATE_MODE {
            0o640
        } else {
            mode
        };
        give(&dir.join(n), shared)?;
    }
    Ok(())
}

/// What a file held before it was replaced, and its mode.
type Before = Option<(Zeroizing<Vec<u8>>, u32)>;

/// Files replaced so far, with what each held before.
#[derive(Default)]
struct Journal(Vec<(PathBuf, Before)>);

impl Journal {
    fn put(&mut self, path: &Path, data: &[u8], mode: u32) -> Result<()> {
        let before = match fs::read(path) {
            Ok(old) => {
                let old = Zeroizing::new(old);
                let m = fs::metadata(path).map(|m| permissions(&m)).unwrap_or(mode);
                Some((old, m))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        self.0.push((path.to_owned(), before));
        write_atomic(path, data, mode)?;
        Ok(())
    }

    fn restore(self) {
        for (path, before) in self.0.into_iter().rev() {
            match before {
                Some((data, mode)) => {
                    let _ = write_atomic(&path, &data, mode);
                }
                None => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }
}

#[cfg(unix)]
fn permissions(m: &fs::Metadata) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777
}

#[cfg(not(unix))]
fn permissions(_: &fs::Metadata) -> u32 {
    0o600
}
