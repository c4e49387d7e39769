//! `aura server-init` and `aura provision-client`: a deployment in two commands.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use aura_config::toml_string;
use aura_crypto::OsRng;
use aura_pki::{ClientRequest, PkiStore, write_atomic};
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
    /// Grant cover traffic to clients that ask ([server.cover]); bundles written by
    /// `aura provision-client` then ask for the "https" profile.
    #[arg(long)]
    enable_cover_traffic: bool,
    /// Run the server as this user after start-up ([server] run_as), keeping only
    /// CAP_NET_ADMIN and CAP_NET_BIND_SERVICE. The files the server reads become
    /// readable by the user's group; the CA key stays root's, so the server does not
    /// re-sign the CRL itself (re-sign with `aura pki crl`, then reload).
    #[arg(long, value_name = "USER")]
    run_as: Option<String>,
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
    /// The device's certificate request (from `aura client keygen`): the certificate is
    /// issued for the device's own key, and the bundle carries no key at all.
    #[arg(long, value_name = "FILE")]
    csr: Option<PathBuf>,
    /// The cover traffic the client asks for: off, idle, bursts or https. Default: https
    /// when the deployment grants cover traffic, else off.
    #[arg(long, value_name = "PROFILE", value_parser = ["off", "idle", "bursts", "https"])]
    cover: Option<String>,
    /// Also print the bundle as one aura://import/v1/ URI, sealed under a one-time code
    /// that is printed apart from it (on stderr); on the device, `aura client import URI`
    /// asks for the code. The bundle directory is written all the same.
    #[arg(long)]
    uri: bool,
    /// Also print that URI as a QR code in the terminal (the code apart, below it, never
    /// inside). Fails, provisioning nothing, when the URI does not fit one QR code.
    #[arg(long)]
    qr: bool,
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
    cover: bool,
    run_as: Option<&str>,
) -> String {
    let knock_key = if knock {
        "knock_key = \"pki/knock.key\"\n"
    } else {
        ""
    };
    let mut decoy = decoy_upstream.map_or(String::new(), |u| {
        format!("\n[server.decoy]\nupstream = {}\n", toml_string(u))
    });
    if cover {
        decoy.push_str("\n[server.cover]\nenabled = true\n");
    }
    format!(
        "# Written by `aura server-init`. Every key and its default: config/server.toml.example.\n\
         \n\
         [server]\n\
         name = {name}\n\
         listen = {listen}\n\
         {run_as}\
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
         {ca_key}\
         {knock_key}",
        run_as = run_as.map_or(String::new(), |u| format!("run_as = {}\n", toml_string(u))),
        // The CA key is root's: a server that drops privileges cannot re-sign with it.
        ca_key = if run_as.is_some() {
            ""
        } else {
            "ca_key = \"pki/ca.key\"\n"
        },
        transport = transport_extra(knock, sni_palette),
        decoy = decoy,
        name = toml_string(name),
        listen = toml_string(&listen.to_string()),
        cert = toml_string(&format!("pki/servers/{name}.crt")),
        key = toml_string(&format!("pki/servers/{name}.key")),
    )
}

fn client_toml(
    server: &str,
    server_name: &str,
    knock: bool,
    sni_palette: &[String],
    cover: &str,
) -> String {
    let mut transport = transport_extra(knock, sni_palette);
    if cover != "off" {
        transport.push_str(&format!("cover = {}\n", toml_string(cover)));
    }
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
        server = toml_string(server),
        server_name = toml_string(server_name),
    )
}

/// Makes what a server running as `user` reads readable by its group (root keeps
/// ownership, so the server cannot change them): the deployment and PKI directories
/// (0750), the configuration, CA certificate, CRL, the server's certificate, key and the
/// knock key (0640). The CA key and the issued clients' keys stay root's alone.
fn share_with(
    user: &aura_netcfg::privilege::RunAs,
    dir: &std::path::Path,
    config: &std::path::Path,
    store: &PkiStore,
    name: &str,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (cert, key) = store.cert_paths(aura_pki::Role::Server, name);
    let dirs = [
        dir.to_owned(),
        store
            .ca_cert_path()
            .parent()
            .map(ToOwned::to_owned)
            .unwrap_or_default(),
        cert.parent().map(ToOwned::to_owned).unwrap_or_default(),
    ];
    let files = [
        config.to_owned(),
        store.ca_cert_path(),
        store.crl_path(),
        cert,
        key,
        store.knock_key_path(),
    ];
    let give = |path: &std::path::Path, mode: u32| -> Result<()> {
        std::os::unix::fs::chown(path, Some(0), Some(user.gid))
            .with_context(|| format!("cannot give {} to group of {}", path.display(), user.name))?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()))
    };
    for d in dirs.iter().filter(|d| !d.as_os_str().is_empty()) {
        give(d, 0o750)?;
    }
    for f in files.iter().filter(|f| f.exists()) {
        give(f, 0o640)?;
    }
    Ok(())
}

pub fn server_init(a: ServerInitArgs) -> Result<()> {
    let config_path = a.dir.join("server.toml");
    if !a.force && config_path.exists() {
        bail!(
            "{} already exists: refusing to replace a deployment (use --force)",
            config_path.display()
        );
    }
    // Before anything is written: a user that does not exist stops here.
    let run_as = a
        .run_as
        .as_deref()
        .map(aura_netcfg::privilege::RunAs::lookup)
        .transpose()
        .context("--run-as")?;
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
                a.enable_cover_traffic,
                a.run_as.as_deref(),
            )
            .as_bytes(),
            0o644,
        )?;
        aura_config::load_server(&config_path)
            .with_context(|| format!("the written {} does not validate", config_path.display()))?;
        if let Some(user) = &run_as {
            share_with(user, &a.dir, &config_path, &store, &a.name)?;
        }
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
    let request = match &a.csr {
        Some(path) => {
            let text = fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Some(ClientRequest::from_pem(&text).with_context(|| format!("in {}", path.display()))?)
        }
        None => None,
    };
    let wanted_id = a.id.clone().or_else(|| {
        request
            .as_ref()
            .and_then(|r| r.proposed_id().map(str::to_owned))
    });
    if let Some(id) = &a.id {
        aura_pki::names::validate_client_id(id).with_context(|| format!("bad client id {id:?}"))?;
    }
    let out = match (&a.out, &wanted_id) {
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
    let now = OffsetDateTime::now_utc();
    let issued = match &request {
        Some(r) => store.sign_client_request(r, wanted_id.as_deref(), 825, now, &mut OsRng),
        None => store.issue_client(wanted_id.as_deref(), 825, now, &mut OsRng),
    }
    .context("cannot issue the client certificate")?;
    let id = issued.cert.id.clone();
    let out = if out.as_os_str().is_empty() {
        a.dir.join("clients").join(&id)
    } else {
        out
    };
    let created_out = !out.exists();
    let mut files = Written::default();
    let mut sealed = None;
    let result = (|| -> Result<()> {
        if out.exists() && !a.force {
            bail!(
                "{} already exists: refusing to overwrite (use --force)",
                out.display()
            );
        }
        fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
        let read = |p: &Path| fs::read(p).with_context(|| format!("cannot read {}", p.display()));
        files.put(&out.join("ca.crt"), &read(&store.ca_cert_path())?, 0o644)?;
        files.put(&out.join("crl.pem"), &read(&store.crl_path())?, 0o644)?;
        if let Some(k) = &server_cfg.pki.knock_key {
            let key = zeroize::Zeroizing::new(read(k)?);
            files.put(&out.join("knock.key"), &key, 0o600)?;
        }
        files.put(
            &out.join("client.crt"),
            issued.cert.cert_pem.as_bytes(),
            0o644,
        )?;
        // The only copy of a fresh key is the bundle's; with --csr the device has it.
        if let Some(key) = &issued.cert.key_pem {
            files.put(&out.join("client.key"), key.as_bytes(), 0o600)?;
        }
        let server = a.server.clone().unwrap_or_else(|| server_name.clone());
        let client_path = out.join("client.toml");
        let text = client_toml(
            &server,
            &server_name,
            server_cfg.transport.knock,
            server_cfg
                .transport
                .sni_palette
                .as_deref()
                .unwrap_or_default(),
            a.cover
                .as_deref()
                .unwrap_or(if server_cfg.server.cover.enabled {
                    "https"
                } else {
                    "off"
                }),
        );
        files.put(&client_path, text.as_bytes(), 0o644)?;
        if out.join("client.key").exists() {
            aura_config::load_client(&client_path).with_context(|| {
                format!("the written {} does not validate", client_path.display())
            })?;
        } else {
            // A bundle for a device's own key, away from that key: everything but the
            // key file is checked here; the device checks the rest (`aura client import`
            // puts the bundle beside its key and loads it).
            aura_config::parse_client(&text, &out)
                .with_context(|| format!("the written {} does not parse", client_path.display()))?;
        }
        if a.uri || a.qr {
            // Sealed from the files just written, so the URI holds what the directory does.
            let (uri, code) = crate::import_cmd::seal_bundle_dir(&out)?;
            let qr = match a.qr {
                true => Some(crate::qr::render(&uri, crate::qr::colors_wanted())?),
                false => None,
            };
            sealed = Some((uri, code, qr));
        }
        Ok(())
    })();
    if let Err(e) = result {
        // Undo: the certificate is revoked so it cannot be used, the bundle removed.
        let _ = store.revoke(
            &issued.cert.serial.to_hex(),
            aura_pki::RevocationReason::CessationOfOperation,
            OffsetDateTime::now_utc(),
        );
        // Only what this run did: --force into a device's directory must never take its
        // key (or anything else already there) with it.
        if created_out {
            let _ = fs::remove_dir_all(&out);
        } else {
            files.restore();
        }
        return Err(e);
    }
    if let Some((uri, code, qr)) = sealed {
        print_sealed(
            &id,
            &out,
            request.is_some(),
            a.uri,
            &uri,
            &code,
            qr.as_ref(),
        );
    } else if request.is_some() {
        println!(
            "client {id} provisioned for the device's own key: copy {} to the device, beside \
             its client.key, and run `aura client --config client.toml` there",
            out.display()
        );
    } else {
        println!(
            "client {id} provisioned: move {} to the device (its client.key is the only copy; \
             delete the bundle here once moved) and run `aura client --config client.toml` there",
            out.display()
        );
    }
    Ok(())
}

/// What `provision-client --uri/--qr` prints: the QR code and the URI on stdout (so
/// `--uri > FILE` keeps only the URI), everything else on stderr, the one-time code last
/// and apart from both.
fn print_sealed(
    id: &str,
    out: &Path,
    own_key: bool,
    show_uri: bool,
    uri: &str,
    code: &aura_pki::bundle::OneTimeCode,
    qr: Option<&crate::qr::TerminalQr>,
) {
    let key = if own_key {
        "for the device's own key (import it into the directory that holds client.key)"
    } else {
        "with its key"
    };
    eprintln!(
        "client {id} provisioned {key}; the bundle is in {} and, sealed, in the {} below \
         (delete the directory once the device has imported it)",
        out.display(),
        if qr.is_some() { "QR code" } else { "URI" }
    );
    if let Some(qr) = qr {
        print!("{}", qr.text);
    }
    if show_uri {
        println!("{uri}");
    }
    let _ = std::io::Write::flush(&mut std::io::stdout());
    if let Some(qr) = qr {
        eprintln!(
            "QR code: version {}, {}x{} modules, error correction {}, {} columns by {} \
             lines (widen the terminal if its lines wrap)",
            qr.version, qr.modules, qr.modules, qr.level, qr.columns, qr.lines
        );
    }
    eprintln!(
        "bundle URI: {} characters\n\
         on the device: aura client import URI|FILE [--dir /etc/aura/NAME]\n\
         one-time code: {}\n\
         give the code apart from the URI or QR code (say it, or send it another way): \
         either alone does not open the bundle",
        uri.len(),
        code.grouped().as_str()
    );
}

/// Files a command wrote, with what each held before, so a failure can put them back.
#[derive(Default)]
struct Written(Vec<(PathBuf, Option<zeroize::Zeroizing<Vec<u8>>>)>);

impl Written {
    fn put(&mut self, path: &Path, data: &[u8], mode: u32) -> Result<()> {
        let before = fs::read(path).ok().map(zeroize::Zeroizing::new);
        self.0.push((path.to_owned(), before));
        write_atomic(path, data, mode)?;
        Ok(())
    }

    /// Restores every file to what it held before (or removes it), newest first.
    fn restore(self) {
        for (path, before) in self.0.into_iter().rev() {
            let _ = match before {
                Some(data) => fs::write(&path, &*data),
                None => fs::remove_file(&path),
            };
        }
    }
}
