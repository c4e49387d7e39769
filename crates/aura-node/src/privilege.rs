//! `run_as` for the daemons: what each keeps and which directories it hands to the user,
//! from its configuration. The drop itself is [`aura_netcfg::privilege`]; `aura server`
//! and `aura client` call [`drop_for_server`] or [`drop_for_client`] before their async
//! runtime starts (capabilities are per thread).

use std::path::{Path, PathBuf};

use aura_config::{ClientConfig, ClientDns, ServerConfig};
use aura_netcfg::privilege::{self, Dropped, Keep, RunAs};

use crate::DaemonError;

/// What a daemon will do about privileges: looked up and checked before anything
/// changes, applied by [`Plan::apply`].
#[derive(Debug)]
pub struct Plan {
    key: &'static str,
    user: RunAs,
    keep: Keep,
    dirs: Vec<PathBuf>,
}

fn plan_error(key: &'static str, e: impl std::fmt::Display) -> DaemonError {
    DaemonError::Config {
        key,
        problem: e.to_string(),
    }
}

/// The directories handed to the user: the role's own under `/run/aura` (its lock,
/// journals and default admin socket; the other role's is not touched), and the admin
/// socket's directory when it does not exist yet (it is made for the user). An existing
/// directory elsewhere is left as it is: the user must be able to write in it, or
/// binding the socket fails naming the path.
fn dirs(role: aura_netcfg::Role, admin_socket: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![aura_netcfg::instance::role_dir(role)];
    if let Some(parent) = admin_socket.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
        && !dirs.iter().any(|d| d == parent)
    {
        dirs.push(parent.to_owned());
    }
    dirs
}

impl Plan {
    /// The server's plan: `CAP_NET_BIND_SERVICE` too when a carrier listens below 1024
    /// or the DNS forwarder runs (port 53).
    ///
    /// # Errors
    /// `server.run_as` naming a user this host does not have.
    pub fn server(cfg: &ServerConfig) -> Result<Option<Self>, DaemonError> {
        let Some(name) = &cfg.server.run_as else {
            return Ok(None);
        };
        let user = RunAs::lookup(name).map_err(|e| plan_error("server.run_as", e))?;
        let t = &cfg.transport;
        let ports = [
            (aura_config::Carrier::Udp, t.udp_port),
            (aura_config::Carrier::Quic, t.quic_port),
            (aura_config::Carrier::Tls, t.tls_port),
        ];
        let low_carrier = ports
            .iter()
            .any(|(c, port)| t.carriers.contains(c) && *port < 1024);
        let forwarder = cfg.server.dns.is_none();
        Ok(Some(Self {
            key: "server.run_as",
            user,
            keep: Keep {
                bind_low_ports: low_carrier || forwarder,
            },
            dirs: dirs(aura_netcfg::Role::Server, &cfg.server.admin_socket),
        }))
    }

    /// The client's plan: `CAP_NET_BIND_SERVICE` too when it runs its DNS stub (port
    /// 53). A client that would point the system's resolver file at the tunnel refuses:
    /// the user could not put the file back on exit. systemd-resolved (a link's DNS over
    /// D-Bus, allowed to a holder of `CAP_NET_ADMIN`) works.
    ///
    /// # Errors
    /// `client.run_as` naming a user this host does not have, or the resolver file case
    /// above.
    pub fn client(cfg: &ClientConfig, resolv_conf: &Path) -> Result<Option<Self>, DaemonError> {
        let Some(name) = &cfg.client.run_as else {
            return Ok(None);
        };
        let user = RunAs::lookup(name).map_err(|e| plan_error("client.run_as", e))?;
        let dns = cfg.client.dns != ClientDns::Off;
        if dns && !resolved_manages(resolv_conf) {
            return Err(plan_error(
                "client.run_as",
                format!(
                    "this host's DNS is set in {} (no systemd-resolved), which user {name:?} \
                     could not restore when the client stops: set [client] dns = \"off\", \
                     use systemd-resolved, or remove run_as",
                    resolv_conf.display()
                ),
            ));
        }
        Ok(Some(Self {
            key: "client.run_as",
            user,
            keep: Keep {
                bind_low_ports: dns,
            },
            dirs: dirs(aura_netcfg::Role::Client, &cfg.client.admin_socket),
        }))
    }

    /// Drops to the user. Call while the process has one thread, before the runtime.
    ///
    /// # Errors
    /// The step that failed, under the `run_as` key.
    pub fn apply(&self) -> Result<(), DaemonError> {
        match privilege::drop_to(&self.user, self.keep, &self.dirs)
            .map_err(|e| plan_error(self.key, e))?
        {
            Dropped::Dropped => tracing::info!(
                user = %self.user.name,
                uid = self.user.uid,
                kept = ?self.keep.names(),
                "privileges dropped"
            ),
            Dropped::AlreadyUser => tracing::info!(
                user = %self.user.name,
                "already running as the run_as user: nothing to drop"
            ),
        }
        Ok(())
    }
}

/// Whether `/etc/resolv.conf` is systemd-resolved's (a link into `/run/systemd/resolve`).
fn resolved_manages(resolv_conf: &Path) -> bool {
    std::fs::read_link(resolv_conf).is_ok_and(|t| t.to_string_lossy().contains("systemd/resolve/"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn server(extra: &str, transport: &str) -> ServerConfig {
        toml::from_str(&format!(
            "[server]\nname = \"vpn.test\"\n{extra}\n[transport]\n{transport}\n\
             [pki]\nca_cert = \"a\"\ncert = \"b\"\nkey = \"c\"\ncrl = \"d\"\n"
        ))
        .unwrap()
    }

    fn client(extra: &str) -> ClientConfig {
        toml::from_str(&format!(
            "[client]\nserver = \"192.0.2.1\"\n{extra}\n[pki]\nca_cert = \"a\"\ncert = \"b\"\n\
             key = \"c\"\ncrl = \"d\"\nknock_key = \"e\"\n"
        ))
        .unwrap()
    }

    #[test]
    fn no_run_as_no_plan() {
        assert!(Plan::server(&server("", "")).unwrap().is_none());
        let none = Path::new("/nonexistent");
        assert!(Plan::client(&client(""), none).unwrap().is_none());
    }

    #[test]
    fn a_missing_user_is_a_clear_error() {
        let e = Plan::server(&server("run_as = \"aura-no-such-user\"", "")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("server.run_as: no user \"aura-no-such-user\""),
            "{e}"
        );
    }

    #[test]
    fn low_ports_keep_bind_service() {
        // Defaults: TLS and QUIC on 443, and the DNS forwarder on 53.
        let p = Plan::server(&server("run_as = \"nobody\"", ""))
            .unwrap()
            .unwrap();
        assert!(p.keep.bind_low_ports);
        // High ports and named resolvers: nothing below 1024.
        let p = Plan::server(&server(
            "run_as = \"nobody\"\ndns = [\"192.0.2.53\"]",
            "udp_port = 8443\nquic_port = 8444\ntls_port = 8445",
        ))
        .unwrap()
        .unwrap();
        assert!(!p.keep.bind_low_ports);
        assert_eq!(p.dirs, [PathBuf::from("/run/aura/server")]);
    }

    #[test]
    fn a_client_on_a_resolver_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("resolv.conf");
        std::fs::write(&file, "nameserver 192.0.2.53\n").unwrap();
        let e = Plan::client(&client("run_as = \"nobody\""), &file).unwrap_err();
        assert!(e.to_string().starts_with("client.run_as: "), "{e}");
        assert!(e.to_string().contains("dns = \"off\""), "{e}");
        // DNS off: no stub, nothing kept but CAP_NET_ADMIN.
        let p = Plan::client(&client("run_as = \"nobody\"\ndns = \"off\""), &file)
            .unwrap()
            .unwrap();
        assert!(!p.keep.bind_low_ports);
        // systemd-resolved's link: allowed, with the stub's port.
        let link = dir.path().join("link.conf");
        std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", &link).unwrap();
        let p = Plan::client(&client("run_as = \"nobody\""), &link)
            .unwrap()
            .unwrap();
        assert!(p.keep.bind_low_ports);
    }
}
