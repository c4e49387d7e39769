//! `aura pki ...`: the deployment's CA, certificates and CRL, kept in one directory.

use std::path::PathBuf;

use anyhow::{Context, Result};
use aura_crypto::OsRng;
use aura_pki::{PkiStore, RevocationReason};
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
    /// Issue a client certificate (extended key usage clientAuth).
    IssueClient {
        /// The client's id; a random UUIDv4 when absent, so ids need encode nothing real.
        #[arg(long)]
        id: Option<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 825, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DAYS)))]
        days: u32,
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
            println!(
                "issued server certificate {name} (serial {}, valid until {})\n  cert: {}\n  key:  {}",
                c.cert.serial.to_hex(),
                date(c.cert.not_after),
                c.cert_path.display(),
                c.key_path.display()
            );
        }
        PkiCommand::IssueClient { id, days } => {
            let c = store
                .issue_client(id.as_deref(), days, now(), &mut OsRng)
                .context("cannot issue a client certificate")?;
            println!(
                "issued client certificate {} (serial {}, valid until {})\n  cert: {}\n  key:  {}",
                c.cert.id,
                c.cert.serial.to_hex(),
                date(c.cert.not_after),
                c.cert_path.display(),
                c.key_path.display()
            );
        }
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
