//! `aura mask show`: the daily mask a deployment uses on a given day.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use aura_node::options::{ClientOptions, MaskOptions, ServerOptions};
use aura_transport::camo::mask::{self, Mask};
use aura_transport::camo::shape::Profile;
use clap::{Args, Subcommand};
use time::OffsetDateTime;

#[derive(Debug, Args)]
pub struct MaskArgs {
    #[command(subcommand)]
    command: MaskCommand,
}

#[derive(Debug, Subcommand)]
enum MaskCommand {
    /// Print the mask of a day: outer SNI, ALPN order, UDP padding and first-flight size.
    Show {
        /// A server.toml or client.toml of the deployment.
        #[arg(long, default_value = "server.toml")]
        config: PathBuf,
        /// The mask day (YYYY-MM-DD, starting 02:00 UTC). Default: the one in force now.
        #[arg(long, value_parser = parse_date)]
        date: Option<time::Date>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_date(s: &str) -> Result<time::Date, String> {
    mask::parse_day(s).ok_or_else(|| format!("{s:?} is not a date of the form YYYY-MM-DD"))
}

/// The mask inputs and CA file of a server or client configuration.
fn inputs(config: &PathBuf) -> Result<(MaskOptions, PathBuf)> {
    match aura_config::load_server(config) {
        Ok(cfg) => {
            let o = ServerOptions::from_config(&cfg)?;
            Ok((o.carriers.masks, cfg.pki.ca_cert))
        }
        Err(server_err) => match aura_config::load_client(config) {
            Ok(cfg) => {
                let o = ClientOptions::from_config(&cfg)?;
                Ok((o.masks, cfg.pki.ca_cert))
            }
            Err(client_err) => Err(anyhow!(
                "{} is neither a server nor a client configuration:\n  as a server: \
                 {server_err:#}\n  as a client: {client_err:#}",
                config.display()
            )),
        },
    }
}

fn profile_name(p: Profile) -> &'static str {
    match p {
        Profile::HttpsBuckets => "https-buckets",
        Profile::None => "none",
        Profile::Jitter => "jitter",
        Profile::Constant => "constant",
    }
}

fn render(m: &Mask, json: bool) -> Result<String> {
    let start = m.day.midnight().assume_utc().unix_timestamp() + mask::SWITCH_SECS;
    let alpn: Vec<String> = m
        .alpn
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let from = OffsetDateTime::from_unix_timestamp(start)?;
    let until = OffsetDateTime::from_unix_timestamp(start + 86_400)?;
    let fmt = |t: OffsetDateTime| {
        format!(
            "{}T{:02}:{:02}:00Z",
            mask::day_string(t.date()),
            t.hour(),
            t.minute()
        )
    };
    if json {
        return Ok(serde_json::to_string_pretty(&serde_json::json!({
            "day": mask::day_string(m.day),
            "from": fmt(from),
            "until": fmt(until),
            "sni": m.sni,
            "alpn": alpn,
            "udp_padding": profile_name(m.udp_profile),
            "udp_buckets": aura_transport::camo::shape::BUCKET_TABLES[m.buckets],
            "udp_first_flight_bytes": m.first_flight_len,
        }))?);
    }
    Ok(format!(
        "mask of {} ({} to {})\n  outer SNI:         {}\n  ALPN order:        {}\n  UDP padding:       {} {:?}\n  UDP first flight:  {} bytes per datagram\n",
        mask::day_string(m.day),
        fmt(from),
        fmt(until),
        m.sni,
        alpn.join(", "),
        profile_name(m.udp_profile),
        aura_transport::camo::shape::BUCKET_TABLES[m.buckets],
        m.first_flight_len
    ))
}

pub fn run(args: MaskArgs) -> Result<()> {
    match args.command {
        MaskCommand::Show { config, date, json } => {
            let (opts, ca_path) = inputs(&config)?;
            let text = std::fs::read_to_string(&ca_path)
                .with_context(|| format!("cannot read the CA certificate {}", ca_path.display()))?;
            let block = pem::parse(text.as_bytes())
                .with_context(|| format!("the CA certificate {} is not PEM", ca_path.display()))?;
            if block.tag() != "CERTIFICATE" {
                bail!("{} holds no certificate", ca_path.display());
            }
            let seed = opts.seed(block.contents());
            let m = match date {
                Some(d) => seed.mask_for(d),
                None => seed.mask_at(OffsetDateTime::now_utc().unix_timestamp()),
            };
            print!("{}", render(&m, json)?);
            Ok(())
        }
    }
}
