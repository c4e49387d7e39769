//! `aura route add|list|remove`: the running client's split-tunnel rules, changed live over
//! its admin socket; `--persist` writes the change to client.toml too.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use aura_node::admin::{self, Request, Response, RouteRule};
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct RouteArgs {
    /// The client's admin socket.
    #[arg(long, global = true, default_value = aura_config::DEFAULT_CLIENT_ADMIN_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: RouteCommand,
}

#[derive(Debug, Subcommand)]
enum RouteCommand {
    /// Every rule, its kind, what it covers and where it goes.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a rule to the running client (through the tunnel at once if it is up).
    Add {
        /// Outside the tunnel.
        #[arg(long, conflicts_with = "vpn", required_unless_present = "vpn")]
        direct: bool,
        /// Through the tunnel (inside a DIRECT network).
        #[arg(long)]
        vpn: bool,
        /// A network (`10.0.0.0/8`, `2001:db8::/32`, one address) or a domain
        /// (`example.com`, or `*.example.com` for it and every name under it).
        rule: String,
        #[command(flatten)]
        persist: Persist,
    },
    /// Remove a rule from the running client.
    Remove {
        /// The rule's network or domain, as `aura route list` shows it.
        rule: String,
        #[command(flatten)]
        persist: Persist,
    },
}

#[derive(Debug, Args)]
struct Persist {
    /// Also write the change to the client's configuration file (`--config`), so it
    /// outlives a restart.
    #[arg(long, requires = "config")]
    persist: bool,
    /// The client's configuration file, for `--persist`.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

async fn ask(socket: &Path, req: &Request) -> Result<Vec<RouteRule>> {
    let resp = admin::request(socket, req)
        .await
        .with_context(|| format!("no Aura client answers on {}", socket.display()))?;
    match resp {
        Response::Routes { rules } => Ok(rules),
        Response::Error { message } => bail!("the client refused: {message}"),
        _ => bail!("{} is not a client's admin socket", socket.display()),
    }
}

fn show(rules: &[RouteRule]) {
    println!(
        "{:<6}  {:<22}  {:<6}  {:<22}  VIA",
        "KIND", "RULE", "ORIGIN", "COVERS"
    );
    for r in rules {
        let covers = match r.covers.as_slice() {
            [] => "-".to_owned(),
            [one] => one.clone(),
            [first, rest @ ..] => format!("{first} (+{})", rest.len()),
        };
        println!(
            "{:<6}  {:<22}  {:<6}  {:<22}  {}",
            r.kind, r.rule, r.origin, covers, r.via
        );
    }
}

pub async fn run(a: RouteArgs) -> Result<()> {
    match a.command {
        RouteCommand::List { json } => {
            let rules = ask(&a.socket, &Request::RouteList).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rules)?);
            } else {
                show(&rules);
            }
        }
        RouteCommand::Add {
            direct,
            vpn: _,
            rule,
            persist,
        } => {
            let kind = if direct { "direct" } else { "vpn" };
            let req = Request::RouteAdd {
                kind: kind.into(),
                rule: rule.clone(),
            };
            let rules = ask(&a.socket, &req).await?;
            if let (true, Some(config)) = (persist.persist, &persist.config) {
                edit_config(config, |text| Ok(add_rule(text, kind, &rule)))?;
            }
            show(&rules);
        }
        RouteCommand::Remove { rule, persist } => {
            let rules = ask(&a.socket, &Request::RouteRemove { rule: rule.clone() }).await?;
            if let (true, Some(config)) = (persist.persist, &persist.config) {
                edit_config(config, |text| remove_rule(text, &rule))?;
            }
            show(&rules);
        }
    }
    Ok(())
}

/// Rewrites `path` through `edit`, keeping its mode; the result must still be a valid
/// client configuration, or nothing is written.
fn edit_config(path: &Path, edit: impl FnOnce(&str) -> Result<String>) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let new = edit(&text)?;
    let base = path.parent().unwrap_or(Path::new("."));
    aura_config::parse_client(&new, base)
        .and_then(|c| c.validate().map(|()| c))
        .with_context(|| {
            format!(
                "the change would leave {} invalid: not written (the running client has it)",
                path.display()
            )
        })?;
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o644);
    aura_pki::write_atomic(path, new.as_bytes(), mode)?;
    println!("{} updated", path.display());
    Ok(())
}

/// `text` with a `[[tunnel.split.<kind>]]` table for `rule` (a network, else a domain)
/// appended.
fn add_rule(text: &str, kind: &str, rule: &str) -> String {
    let mut out = text.to_owned();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    let key = if rule.parse::<aura_config::IpCidr>().is_ok() {
        "cidr"
    } else {
        "domain"
    };
    out.push_str(&format!(
        "\n[[tunnel.split.{kind}]]\n{key} = {}\n",
        aura_config::toml_string(rule)
    ));
    out
}

/// A rule's value as written in a file or on the command line: a network, else a domain.
#[derive(PartialEq)]
enum RuleText {
    Net(aura_config::IpCidr),
    Domain(aura_config::DomainPattern),
}

impl RuleText {
    fn parse(text: &str) -> Option<Self> {
        text.parse()
            .map(Self::Net)
            .ok()
            .or_else(|| text.parse().map(Self::Domain).ok())
    }
}

/// `text` without the `[[tunnel.split.direct]]` or `[[tunnel.split.vpn]]` table whose
/// cidr or domain is `rule` (every line from its header to the next table header).
fn remove_rule(text: &str, rule: &str) -> Result<String> {
    let Some(target) = RuleText::parse(rule) else {
        bail!("{rule:?} is neither a network nor a domain");
    };
    let lines: Vec<&str> = text.lines().collect();
    let is_header = |l: &str| l.trim_start().starts_with('[');
    // The same rule however it was written (`10.0.0.1` is `10.0.0.1/32`, `Example.com.`
    // is `example.com`).
    let wanted = |l: &str| {
        let t = l.trim();
        ["cidr", "domain"].iter().any(|key| {
            t.strip_prefix(key)
                .map(str::trim_start)
                .and_then(|r| r.strip_prefix('='))
                .and_then(|v| RuleText::parse(v.trim().trim_matches('"')))
                .is_some_and(|r| r == target)
        })
    };
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        if t == "[[tunnel.split.direct]]" || t == "[[tunnel.split.vpn]]" {
            let mut end = (i + 1..lines.len())
                .find(|&j| is_header(lines[j]))
                .unwrap_or(lines.len());
            // Blank lines before the next table stay with it.
            while end > i + 1 && end < lines.len() && lines[end - 1].trim().is_empty() {
                end -= 1;
            }
            if lines[i + 1..end].iter().any(|l| wanted(l)) {
                let mut kept: Vec<&str> = lines[..i].to_vec();
                // The blank line before the table goes with it.
                if kept.last().is_some_and(|l| l.trim().is_empty()) {
                    kept.pop();
                }
                kept.extend_from_slice(&lines[end..]);
                let mut out = kept.join("\n");
                out.push('\n');
                return Ok(out);
            }
            i = end;
        } else {
            i += 1;
        }
    }
    bail!("no [[tunnel.split]] rule for {rule} in the file")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rules_are_appended_and_removed_by_their_cidr() {
        let base = "[client]\nserver = \"s\"\n\n[[tunnel.split.direct]]\ncidr = \"10.0.0.0/8\"\n";
        let added = add_rule(base, "vpn", "10.1.0.0/16");
        assert!(
            added.ends_with("\n[[tunnel.split.vpn]]\ncidr = \"10.1.0.0/16\"\n"),
            "{added}"
        );
        let removed = remove_rule(&added, "10.0.0.0/8").unwrap();
        assert_eq!(
            removed,
            "[client]\nserver = \"s\"\n\n[[tunnel.split.vpn]]\ncidr = \"10.1.0.0/16\"\n"
        );
        let removed = remove_rule(&removed, "10.1.0.0/16").unwrap();
        assert_eq!(removed, "[client]\nserver = \"s\"\n");
        let one = add_rule(base, "direct", "192.0.2.9");
        assert_eq!(remove_rule(&one, "192.0.2.9/32").unwrap(), base);
        assert!(remove_rule(base, "192.168.0.0/16").is_err());
        let domain = add_rule(base, "direct", "*.example.com");
        assert!(
            domain.ends_with("\n[[tunnel.split.direct]]\ndomain = \"*.example.com\"\n"),
            "{domain}"
        );
        assert_eq!(remove_rule(&domain, "*.Example.com.").unwrap(), base);
        assert!(remove_rule(&domain, "example.com").is_err());
        assert!(remove_rule(base, "not a rule").is_err());
    }
}
