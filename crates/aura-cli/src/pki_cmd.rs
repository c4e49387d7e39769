//! `aura pki ...`: the deployment's CA, certificates and CRL, kept in one directory.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use aura_crypto::OsRng;
use aura_pki::{ClientRequest, PkiStore, RevocationReason, write_atomic};
use clap::{Args, Subcommand};
use time::{Duration, OffsetDateTime};

/// Longest validity accepted for any certificate: 100 years.
const MAX_DAYS: u32 = 36_500;

#[derive(Debug, Args)]
pub struct PkiArgs {
    /// The PKI directory (ca.crt, ca.key, crl.pem, index.json, servers/, clients/).
    #[arg(long, global = true, default_value = "pki", env = "AURA_PKI_DIR")]
    dir: PathBuf,
    #[command(subcommand)]
    command: PkiCommand,
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Create the certificate authority (ECDSA P-256, self-signed) and an empty CRL.
    Init {
        /// The CA's common name.
        #[arg(long, default_value = "Aura CA")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DAYS)))]
        days: u32,
        /// Replace an existing CA. Every certificate it issued stops verifying.
        #[arg(long)]
        force: bool,
    },
    /// Issue a server certificate (extended key usage serverAuth).
    IssueServer {
        /// The server's DNS name; clients check it against the certificate.
        #[arg(long)]
        name: String,
        /// More subject alternative names: DNS names or IP addresses. Repeatable.
        #[arg(long = "san", value_name = "NAME|IP")]
        sans: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 825, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DAYS)))]
        days: u32,
    },
    /// Issue a client certificate (extended key usage clientAuth) with a fresh key. The
    /// key is written to OUT only, never kept in the PKI directory: move it to the device.
    IssueClient {
        /// The client's id; a random UUIDv4 when absent, so ids need encode nothing real.
        #[arg(long)]
        id: Option<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 825, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DAYS)))]
        days: u32,
        /// Directory for <id>.crt and <id>.key.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Sign a device's certificate request (from `aura client keygen` or `openssl req`,
    /// ECDSA P-256) as a client certificate. The device keeps its key; the CA decides
    /// the id, validity and usage.
    Sign {
        /// The request (PEM).
        #[arg(long)]
        csr: PathBuf,
        /// The client id; default: the id the request proposes (its subject CN), else a
        /// random UUIDv4.
        #[arg(long)]
        id: Option<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 825, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DAYS)))]
        days: u32,
        /// Where to write the certificate. Default: <id>.crt in the current directory.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revoke a certificate by id or serial and re-issue the CRL.
    Revoke {
        /// A client id, a server name, or a serial number (hex).
        target: String,
        /// RFC 5280 reason: unspecified, key-compromise, ca-compromise,
        /// affiliation-changed, superseded, cessation-of-operation, privilege-withdrawn.
        #[arg(long, default_value = "unspecified", value_parser = parse_reason)]
        reason: RevocationReason,
    },
    /// List issued certificates.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-sign the CRL with a new number and next-update time (run before it expires).
    Crl,
    /// Make the deployment's knock key (knock.key) when the directory has none. An
    /// existing key is kept; `pki init --force` makes a new one with the new CA.
    KnockKey,
}

fn parse_reason(s: &str) -> Result<RevocationReason, String> {
    s.parse::<RevocationReason>().map_err(|e| e.to_string())
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn date(t: OffsetDateTime) -> String {
    let d = t.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

pub fn run(args: PkiArgs) -> Result<()> {
    let store = PkiStore::new(&args.dir);
    let dir = args.dir.display();
    match args.command {
        PkiCommand::Init { name, days, force } => {
            let ca = store
                .init(
                    &name,
                    Duration::days(i64::from(days)),
                    force,
                    now(),
                    &mut OsRng,
                )
                .with_context(|| format!("cannot create a CA in {dir}"))?;
            println!(
                "created CA \"{name}\" in {dir} (valid until {}); CRL at {}",
                date(ca.not_after()),
                store.crl_path().display()
            );
        }
        PkiCommand::IssueServer { name, sans, days } => {
            let c = store
                .issue_server(&name, &sans, days, now(), &mut OsRng)
                .with_context(|| format!("cannot issue a server certificate for {name}"))?;
            let key = c
                .key_path
                .as_deref()
                .map_or_else(String::new, |k| format!("\n  key:  {}", k.display()));
            println!(
                "issued server certificate {name} (serial {}, valid until {})\n  cert: {}{key}",
                c.cert.serial.to_hex(),
                date(c.cert.not_after),
                c.cert_path.display(),
            );
        }
        PkiCommand::IssueClient { id, days, out } => issue_client(&store, id, days, &out)?,
        PkiCommand::Sign { csr, id, days, out } => sign(&store, &csr, id, days, out)?,
        PkiCommand::Revoke { target, reason } => {
            let r = store
                .revoke(&target, reason, now())
                .with_context(|| format!("cannot revoke {target}"))?;
            println!(
                "revoked {} {} (serial {}, reason {reason}); CRL number {} written to {}",
                r.entry.role.as_str(),
                r.entry.id,
                r.entry.serial.to_hex(),
                r.crl.number,
                store.crl_path().display()
            );
        }
        PkiCommand::List { json } => {
            let entries = store
                .list()
                .with_context(|| format!("cannot list certificates in {dir}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                println!(
                    "{:<36}  {:<6}  {:<32}  {:<10}  REVOKED",
                    "ID", "ROLE", "SERIAL", "NOT-AFTER"
                );
                for e in entries {
                    let revoked = e.revoked.map_or_else(
                        || "-".to_owned(),
                        |r| format!("{} ({})", date(r.at), r.reason),
                    );
                    println!(
                        "{:<36}  {:<6}  {:<32}  {:<10}  {revoked}",
                        e.id,
                        e.role.as_str(),
                        e.serial.to_hex(),
                        date(e.not_after)
                    );
                }
            }
        }
        PkiCommand::KnockKey => {
            let (path, made) = store
                .ensure_knock_key(&mut OsRng)
                .with_context(|| format!("cannot make the knock key in {dir}"))?;
            if made {
                println!(
                    "knock key written to {}: set pki.knock_key to it in server.toml and give \
                     a copy to every client (provision-client does)",
                    path.display()
                );
            } else {
                println!("{} already holds the knock key; kept", path.display());
            }
        }
        PkiCommand::Crl => {
            let crl = store
                .regenerate_crl(now())
                .with_context(|| format!("cannot re-issue the CRL in {dir}"))?;
            println!(
                "CRL number {} written to {}",
                crl.number,
                store.crl_path().display()
            );
        }
    }
    Ok(())
}

/// Refuses to replace an existing file.
fn refuse_existing(path: &Path) -> Result<()> {
    if path.exists() {
        bail!(
            "{} already exists: refusing to overwrite it",
            path.display()
        );
    }
    Ok(())
}

/// Revokes a certificate whose files could not be delivered, so it is never usable.
fn withdraw(store: &PkiStore, serial: &aura_pki::Serial) {
    let _ = store.revoke(
        &serial.to_hex(),
        RevocationReason::CessationOfOperation,
        now(),
    );
}

fn issue_client(store: &PkiStore, id: Option<String>, days: u32, out: &Path) -> Result<()> {
    if let Some(id) = &id {
        aura_pki::names::validate_client_id(id).with_context(|| format!("bad client id {id:?}"))?;
        refuse_existing(&out.join(format!("{id}.key")))?;
    }
    let c = store
        .issue_client(id.as_deref(), days, now(), &mut OsRng)
        .context("cannot issue a client certificate")?;
    let cert_out = out.join(format!("{}.crt", c.cert.id));
    let key_out = out.join(format!("{}.key", c.cert.id));
    let delivered = (|| -> Result<()> {
        let key = c
            .cert
            .key_pem
            .as_ref()
            .context("the CA returned no key for a fresh client certificate")?;
        refuse_existing(&key_out)?;
        fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        write_atomic(&key_out, key.as_bytes(), 0o600)?;
        write_atomic(&cert_out, c.cert.cert_pem.as_bytes(), 0o644)?;
        Ok(())
    })();
    if let Err(e) = delivered {
        withdraw(store, &c.cert.serial);
        let _ = fs::remove_file(&key_out);
        return Err(e.context("the certificate was revoked again"));
    }
    println!(
        "issued client certificate {} (serial {}, valid until {})\n  cert: {}\n  key:  {} \
         (not kept in {}: move it to the device)",
        c.cert.id,
        c.cert.serial.to_hex(),
        date(c.cert.not_after),
        cert_out.display(),
        key_out.display(),
        store.dir().display()
    );
    Ok(())
}

fn sign(
    store: &PkiStore,
    csr: &Path,
    id: Option<String>,
    days: u32,
    out: Option<PathBuf>,
) -> Result<()> {
    let text = fs::read_to_string(csr).with_context(|| format!("cannot read {}", csr.display()))?;
    let request =
        ClientRequest::from_pem(&text).with_context(|| format!("in {}", csr.display()))?;
    let id = id.or_else(|| request.proposed_id().map(str::to_owned));
    if let (Some(id), None) = (&id, &out) {
        refuse_existing(Path::new(&format!("{id}.crt")))?;
    }
    if let Some(o) = &out {
        refuse_existing(o)?;
    }
    let c = store
        .sign_client_request(&request, id.as_deref(), days, now(), &mut OsRng)
        .with_context(|| format!("cannot sign {}", csr.display()))?;
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{}.crt", c.cert.id)));
    if let Err(e) = write_atomic(&out, c.cert.cert_pem.as_bytes(), 0o644) {
        withdraw(store, &c.cert.serial);
        return Err(anyhow::Error::new(e).context("the certificate was revoked again"));
    }
    println!(
        "signed client certificate {} (serial {}, valid until {}) for the key in {}\n  cert: {}\n\
         give it to the device as client.crt, beside its client.key",
        c.cert.id,
        c.cert.serial.to_hex(),
        date(c.cert.not_after),
        csr.display(),
        out.display(),
    );
    Ok(())
}
