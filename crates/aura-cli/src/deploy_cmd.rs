//! `aura server-init` and `aura provision-client`: a deployment in two commands.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use aura_config::toml_string;
use aura_crypto::OsRng;
use aura_pki::{PkiStore, write_atomic};
use clap::Args;
use time::{Duration, OffsetDateTime};

#[derive(Debug, Args)]
pub struct ServerInitArgs {
    /// Directory for the deployment: server.toml and pki/ are written here.
    #[arg(long)]
    dir: PathBuf,
    /// The server's DNS name (its certificate carries it; clients check it).
    #[arg(long)]
    name: String,
    /// Address the carriers listen on.
    #[arg(long, default_value = "0.0.0.0")]
    listen: IpAddr,
    /// Extra names or IP addresses for the server certificate. Repeatable.
    #[arg(long = "san", value_name = "NAME|IP")]
    sans: Vec<String>,
    /// Replace an existing deployment in DIR (its CA and every certificate it issued).
    #[arg(long)]
    force: bool,
    /// Knock (the default): clients prove membership with the deployment's knock key in
    /// their first flight; strangers get silence on UDP and a web server on QUIC and TLS.
    #[arg(long, conflicts_with = "disable_knock")]
    enable_knock: bool,
    /// No knock key: the camouflage is keyed by the CA certificate only, and anyone who
    /// holds ca.crt gets answers.
    #[arg(long)]
    disable_knock: bool,
    /// An outer SNI for the daily mask's palette. Repeatable. Default: the server's name.
    #[arg(long = "sni", value_name = "NAME")]
    sni_palette: Vec<String>,
    /// Forward strangers on the TLS carrier, untouched, to this real site (host:port);
    /// written as [server.decoy] upstream. Default: a built-in page.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "disable_knock")]
    decoy_upstream: Option<String>,
}

#[derive(Debug, Args)]
pub struct ProvisionClientArgs {
    /// The deployment directory written by `aura server-init`.
    #[arg(long)]
    dir: PathBuf,
    /// The client's id; a random UUIDv4 when absent.
    #[arg(long)]
    id: Option<String>,
    /// Where to write the bundle. Default: DIR/clients/<id>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The address clients dial (IP or DNS name). Default: the server's name.
    #[arg(long)]
    server: Option<String>,
    /// Replace an existing bundle directory.
    #[arg(long)]
    force: bool,
}

/// A TOML array of strings.
fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| toml_string(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// The `[transport]` lines beyond the carriers, shared by server and client files.
fn transport_extra(knock: bool, sni_palette: &[String]) -> String {
    let mut t = String::new();
    if !knock {
        t.push_str("knock = false\n");
    }
    if !sni_palette.is_empty() {
        t.push_str(&format!("sni_palette = {}\n", toml_list(sni_palette)));
    }
    t
}

fn server_toml(
    name: &str,
    listen: IpAddr,
    knock: bool,
    sni_palette: &[String],
    decoy_upstream: Option<&str>,
) -> String {
    let knock_key = if knock {
        "knock_key = \"pki/knock.key\"\n"
    } else {
        ""
    };
    let decoy = decoy_upstream.map_or(String::new(), |u| {
        format!("\n[server.decoy]\nupstream = {}\n", toml_string(u))
    });
    format!(
        "# Written by `aura server-init`. Every key and its default: config/server.toml.example.\n\
         \n\
         [server]\n\
         name = {name}\n\
         listen = {listen}\n\
         \n\
         [server.pool]\n\
         cidr = \"10.77.0.0/24\"\n\
         strategy = \"static_or_dynamic\"\n\
         \n\
         [server.nat]\n\
         auto = true\n\
         {decoy}\
         \n\
         [transport]\n\
         carriers = [\"udp\", \"quic\", \"tls\"]\n\
         {transport}\
         \n\
         [pki]\n\
         ca_cert = \"pki/ca.crt\"\n\
         cert = {cert}\n\
         key = {key}\n\
         crl = \"pki/crl.pem\"\n\
         ca_key = \"pki/ca.key\"\n\
         {knock_key}",
        transport = transport_extra(knock, sni_palette),
        decoy = decoy,
        name = toml_string(name),
        listen = toml_string(&listen.to_string()),
        cert = toml_string(&format!("pki/servers/{name}.crt")),
        key = toml_string(&format!("pki/servers/{name}.key")),
    )
}

fn client_toml(server: &str, server_name: &str, knock: bool, sni_palette: &[String]) -> String {
    let knock_key = if knock {
        "knock_key = \"knock.key\"\n"
    } else {
        ""
    };
    format!(
        "# Written by `aura provision-client`. Every key and its default: config/client.toml.example.\n\
         \n\
         [client]\n\
         server = {server}\n\
         server_name = {server_name}\n\
         \n\
         [transport]\n\
         carriers = [\"udp\", \"quic\", \"tls\"]\n\
         {transport}\
         \n\
         [pki]\n\
         ca_cert = \"ca.crt\"\n\
         cert = \"client.crt\"\n\
         key = \"client.key\"\n\
         crl = \"crl.pem\"\n\
         {knock_key}",
        transport = transport_extra(knock, sni_palette),
        server = toml_string(server),
        server_name = toml_string(server_name),
    )
}

pub fn server_init(a: ServerInitArgs) -> Result<()> {
    let config_path = a.dir.join("server.toml");
    if !a.force && config_path.exists() {
        bail!(
            "{} already exists: refusing to replace a deployment (use --force)",
            config_path.display()
        );
    }
    let pki_dir = a.dir.join("pki");
    let store = PkiStore::new(&pki_dir);
    let now = OffsetDateTime::now_utc();
    let created_dir = !a.dir.exists();
    let result = (|| -> Result<()> {
        store
            .init(
                &format!("{} CA", a.name),
                Duration::days(3650),
                a.force,
                now,
                &mut OsRng,
            )
            .with_context(|| format!("cannot create the CA in {}", pki_dir.display()))?;
        let mut sans = a.sans.clone();
        if !a.listen.is_unspecified() {
            sans.push(a.listen.to_string());
        }
        store
            .issue_server(&a.name, &sans, 825, now, &mut OsRng)
            .with_context(|| format!("cannot issue the server certificate for {}", a.name))?;
        let knock = a.enable_knock || !a.disable_knock;
        if !knock {
            // The CA made its knock key; a deployment without knock holds none.
            let _ = fs::remove_file(store.knock_key_path());
        }
        write_atomic(
            &config_path,
            server_toml(
                &a.name,
                a.listen,
                knock,
                &a.sni_palette,
                a.decoy_upstream.as_deref(),
            )
            .as_bytes(),
            0o644,
        )?;
        aura_config::load_server(&config_path)
            .with_context(|| format!("the written {} does not validate", config_path.display()))?;
        Ok(())
    })();
    if let Err(e) = result {
        // Leave nothing half-made behind when the directory was ours.
        if created_dir {
            let _ = fs::remove_dir_all(&a.dir);
        }
        return Err(e);
    }
    println!(
        "deployment for {} written to {}\n  config: {}\n  CA:     {}\nnext: aura provision-client --dir {} [--id ID]",
        a.name,
        a.dir.display(),
        config_path.display(),
        store.ca_cert_path().display(),
        a.dir.display()
    );
    Ok(())
}

pub fn provision_client(a: ProvisionClientArgs) -> Result<()> {
    let server_cfg_path = a.dir.join("server.toml");
    let server_cfg = aura_config::load_server(&server_cfg_path).with_context(|| {
        format!(
            "cannot read the deployment's {} (run `aura server-init` first)",
            server_cfg_path.display()
        )
    })?;
    let server_name = server_cfg.server.name.clone();
    if let Some(id) = &a.id {
        aura_pki::names::validate_client_id(id).with_context(|| format!("bad client id {id:?}"))?;
    }
    let out = match (&a.out, &a.id) {
        (Some(o), _) => o.clone(),
        (None, Some(id)) => a.dir.join("clients").join(id),
        (None, None) => PathBuf::new(),
    };
    if !out.as_os_str().is_empty() && out.exists() && !a.force {
        bail!(
            "{} already exists: refusing to overwrite (use --force)",
            out.display()
        );
    }
    let store = PkiStore::new(a.dir.join("pki"));
    let issued = store
        .issue_client(a.id.as_deref(), 825, OffsetDateTime::now_utc(), &mut OsRng)
        .context("cannot issue the client certificate")?;
    let id = issued.cert.id.clone();
    let out = if out.as_os_str().is_empty() {
        a.dir.join("clients").join(&id)
    } else {
        out
    };
    let result = (|| -> Result<()> {
        if out.exists() && !a.force {
            bail!(
                "{} already exists: refusing to overwrite (use --force)",
                out.display()
            );
        }
        fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
        let read = |p: &Path| fs::read(p).with_context(|| format!("cannot read {}", p.display()));
        write_atomic(&out.join("ca.crt"), &read(&store.ca_cert_path())?, 0o644)?;
        write_atomic(&out.join("crl.pem"), &read(&store.crl_path())?, 0o644)?;
        if let Some(k) = &server_cfg.pki.knock_key {
            write_atomic(
                &out.join("knock.key"),
                &zeroize::Zeroizing::new(read(k)?),
                0o600,
            )?;
        }
        write_atomic(
            &out.join("client.crt"),
            issued.cert.cert_pem.as_bytes(),
            0o644,
        )?;
        write_atomic(
            &out.join("client.key"),
            issued.cert.key_pem.as_bytes(),
            0o600,
        )?;
        let server = a.server.clone().unwrap_or_else(|| server_name.clone());
        let client_path = out.join("client.toml");
        write_atomic(
            &client_path,
            client_toml(
                &server,
                &server_name,
                server_cfg.transport.knock,
                server_cfg
                    .transport
                    .sni_palette
                    .as_deref()
                    .unwrap_or_default(),
            )
            .as_bytes(),
            0o644,
        )?;
        aura_config::load_client(&client_path)
            .with_context(|| format!("the written {} does not validate", client_path.display()))?;
        Ok(())
    })();
    if let Err(e) = result {
        // Undo: the certificate is revoked so it cannot be used, the bundle removed.
        let _ = store.revoke(
            &issued.cert.serial.to_hex(),
            aura_pki::RevocationReason::CessationOfOperation,
            OffsetDateTime::now_utc(),
        );
        let _ = fs::remove_dir_all(&out);
        return Err(e);
    }
    println!(
        "client {id} provisioned: copy {} to the device and run `aura client --config client.toml` there",
        out.display()
    );
    Ok(())
}
