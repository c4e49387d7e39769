//! The recorded [`Change`]s and the [`Backend`] that performs them: the real host
//! through each concern's `imp`, or a [`MemoryHost`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::error::NetcfgError;
use crate::memory::MemoryHost;
use crate::routes::{DefaultRoute, Lookup, RouteSpec};
use crate::{dns, forwarding, killswitch, nat, nft, routes};

/// One change to the host, with what is needed to revert it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// A sysctl was set to `value`; it was `previous`.
    Sysctl {
        key: &'static str,
        previous: String,
        value: String,
    },
    /// One of Aura's nftables tables was (re)created by `payload`; `undo` deletes it.
    NftTable {
        table: nft::AuraTable,
        payload: String,
        undo: String,
    },
    /// A route was added.
    Route(RouteSpec),
    /// systemd-resolved: link `ifindex` (the TUN) resolves with `servers`, for every name.
    ResolvedLink {
        ifindex: u32,
        servers: Vec<IpAddr>,
        /// The system bus (`None`: the default one).
        bus: Option<String>,
    },
    /// The resolver file at `path` was rewritten with `content`; it was `previous`.
    Dns {
        path: PathBuf,
        previous: dns::Previous,
        content: String,
    },
}

impl Change {
    /// The command that makes the change, as an operator would type it.
    pub(crate) fn apply_cmd(&self) -> String {
        match self {
            Self::Sysctl { key, value, .. } => format!("sysctl -w {key}={value}"),
            Self::NftTable { payload, .. } => nft::show_batch(payload),
            Self::Route(r) => format!("ip route add {r}"),
            Self::ResolvedLink {
                ifindex, servers, ..
            } => {
                let list: Vec<String> = servers.iter().map(ToString::to_string).collect();
                format!(
                    "resolvectl dns {ifindex} {}; resolvectl domain {ifindex} '~.'; \
                     resolvectl default-route {ifindex} true",
                    list.join(" ")
                )
            }
            Self::Dns { path, content, .. } => {
                let servers: Vec<&str> = content
                    .lines()
                    .filter_map(|l| l.strip_prefix("nameserver "))
                    .collect();
                format!(
                    "write {} (nameserver {})",
                    path.display(),
                    servers.join(", ")
                )
            }
        }
    }

    /// The command that reverts it.
    pub(crate) fn undo_cmd(&self) -> String {
        match self {
            Self::Sysctl { key, previous, .. } => format!("sysctl -w {key}={previous}"),
            Self::NftTable { undo, .. } => nft::show_batch(undo),
            Self::Route(r) => format!("ip route del {r}"),
            Self::Dns { path, .. } => format!("restore {}", path.display()),
            Self::ResolvedLink { ifindex, .. } => format!("resolvectl revert {ifindex}"),
        }
    }
}

/// Where changes go.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// The host this process runs on (in the calling thread's network namespace).
    System {
        /// `nft` to run; `None`: found on `PATH` or in the sbin dirs.
        nft: Option<PathBuf>,
    },
    /// The in-memory double.
    Memory(MemoryHost),
}

impl Backend {
    fn nft_program(&self) -> Result<PathBuf, NetcfgError> {
        match self {
            Self::System { nft: program } => nft::resolve_program(program.as_deref()),
            Self::Memory(_) => Ok(PathBuf::from("nft")),
        }
    }

    pub(crate) fn read_sysctl(&self, key: &'static str) -> Result<String, NetcfgError> {
        match self {
            Self::System { .. } => forwarding::imp::read(key),
            Self::Memory(m) => m.read_sysctl(key),
        }
    }

    pub(crate) fn write_sysctl(&self, key: &'static str, value: &str) -> Result<(), NetcfgError> {
        match self {
            Self::System { .. } => forwarding::imp::write(key, value),
            Self::Memory(m) => m.write_sysctl(key, value),
        }
    }

    pub(crate) async fn nft_has_table(&self, table: &nft::AuraTable) -> Result<bool, NetcfgError> {
        match self {
            Self::System { .. } => nft::has_table(&self.nft_program()?, table).await,
            Self::Memory(m) => m.nft_has_table(table.name()),
        }
    }

    /// Checks that `nft` can be found, without running it.
    pub(crate) fn nft_present(&self) -> Result<(), NetcfgError> {
        match self {
            Self::System { .. } => self.nft_program().map(drop),
            Self::Memory(m) => m.nft_has_table(nat::TABLE.name()).map(drop),
        }
    }

    pub(crate) async fn nft_delete_table(&self, table: &nft::AuraTable) -> Result<(), NetcfgError> {
        match self {
            Self::System { .. } => {
                let undo = table.delete_batch()?;
                let action = format!("deleting table inet {}", table.name());
                nft::apply(&self.nft_program()?, &undo, &action).await
            }
            Self::Memory(m) => m.nft_delete_table(table.name()),
        }
    }

    /// Makes the kill switch's DIRECT sets hold exactly `direct`.
    pub(crate) async fn kill_switch_direct(
        &self,
        direct: &[(IpAddr, u8)],
    ) -> Result<(), NetcfgError> {
        match self {
            Self::System { .. } => {
                let batch = killswitch::set_batch(direct)?;
                nft::apply(
                    &self.nft_program()?,
                    &batch,
                    "updating the kill switch's DIRECT sets",
                )
                .await
            }
            Self::Memory(m) => m.set_kill_switch_direct(direct),
        }
    }

    pub(crate) async fn link_index(&self, name: &str) -> Result<u32, NetcfgError> {
        match self {
            Self::System { .. } => routes::imp::link_index(name).await,
            Self::Memory(m) => m.link_index(name),
        }
    }

    pub(crate) async fn default_route(&self) -> Result<DefaultRoute, NetcfgError> {
        match self {
            Self::System { .. } => routes::imp::default_route().await,
            Self::Memory(m) => m.default_route(),
        }
    }

    pub(crate) async fn default_route6(&self) -> Result<Option<DefaultRoute>, NetcfgError> {
        match self {
            Self::System { .. } => routes::imp::default_route6().await,
            Self::Memory(m) => Ok(m.default_route6()),
        }
    }

    /// The interfaces that stop accepting router advertisements once IPv6 forwarding is
    /// on (`accept_ra = 1`); none on the in-memory double.
    pub(crate) fn accept_ra_interfaces(&self) -> Vec<String> {
        match self {
            Self::System { .. } => forwarding::imp::accept_ra_interfaces(),
            Self::Memory(_) => Vec::new(),
        }
    }

    pub(crate) async fn lookup(&self, addr: IpAddr) -> Result<Option<Lookup>, NetcfgError> {
        match self {
            Self::System { .. } => routes::imp::lookup(addr).await,
            Self::Memory(m) => Ok(m.lookup(addr)),
        }
    }

    pub(crate) async fn own_routes(&self) -> Result<Vec<RouteSpec>, NetcfgError> {
        match self {
            Self::System { .. } => routes::imp::own_routes().await,
            Self::Memory(m) => Ok(m.own_routes()),
        }
    }

    pub(crate) async fn route_del(&self, spec: &RouteSpec) -> Result<bool, NetcfgError> {
        match self {
            Self::System { .. } => routes::imp::del(spec).await,
            Self::Memory(m) => m.route_del(spec),
        }
    }

    /// What the resolver file at `path` is now.
    pub(crate) fn dns_previous(&self, path: &Path) -> Result<dns::Previous, NetcfgError> {
        match self {
            Self::System { .. } => dns::read_previous(path),
            Self::Memory(m) => Ok(m.resolv_previous()),
        }
    }

    /// The text the system resolves with now.
    pub(crate) fn dns_text(&self, path: &Path) -> String {
        match self {
            Self::System { .. } => dns::current_text(path),
            Self::Memory(m) => m.resolv_conf().unwrap_or_default(),
        }
    }

    /// Whether systemd-resolved manages DNS here (real host only).
    pub(crate) async fn resolved_manages(&self, resolv_conf: &Path, bus: Option<&str>) -> bool {
        match self {
            Self::System { .. } => crate::resolved::manages(resolv_conf, bus).await,
            Self::Memory(_) => false,
        }
    }

    /// Puts back what a run that did not undo left in the resolver file (real host
    /// only); the journal is forgotten. Whether anything was put back.
    pub(crate) fn dns_leftover(&self) -> Result<bool, NetcfgError> {
        match self {
            Self::System { .. } => {
                let Some((path, previous)) = dns::journal_recorded() else {
                    return Ok(false);
                };
                let restored = dns::revert(&path, &previous)?;
                dns::journal_forget();
                Ok(restored)
            }
            Self::Memory(_) => Ok(false),
        }
    }

    /// What a run that did not undo recorded as the previous value of `key` (real host
    /// only), forgotten once read.
    pub(crate) fn take_journal(&self, key: &'static str) -> Option<String> {
        match self {
            Self::System { .. } => {
                let v = forwarding::imp::journal_recorded(key);
                forwarding::imp::journal_forget(key);
                v
            }
            Self::Memory(_) => None,
        }
    }

    /// Makes `change`; `Ok(false)` when the host already had it (then it is not ours
    /// to revert).
    pub(crate) async fn apply(&self, change: &Change) -> Result<bool, NetcfgError> {
        match (self, change) {
            (
                Self::System { .. },
                Change::Sysctl {
                    key,
                    value,
                    previous,
                },
            ) => {
                forwarding::imp::journal_record(key, previous);
                let written = forwarding::imp::write(key, value);
                if written.is_err() {
                    forwarding::imp::journal_forget(key);
                }
                written.map(|()| true)
            }
            (Self::Memory(m), Change::Sysctl { key, value, .. }) => {
                m.write_sysctl(key, value).map(|()| true)
            }
            (Self::System { .. }, Change::NftTable { table, payload, .. }) => {
                let program = self.nft_program()?;
                let action = format!("applying table inet {}", table.name());
                nft::apply(&program, payload, &action).await.map(|()| true)
            }
            (Self::Memory(m), Change::NftTable { table, payload, .. }) => {
                m.nft_replace_table(table.name(), payload).map(|()| true)
            }
            (Self::System { .. }, Change::Route(r)) => routes::imp::add(r).await,
            (Self::Memory(m), Change::Route(r)) => m.route_add(r),
            (
                Self::System { .. },
                Change::Dns {
                    path,
                    previous,
                    content,
                },
            ) => {
                dns::journal_record(path, previous)?;
                let written = dns::write_file(path, content.as_bytes());
                if written.is_err() {
                    dns::journal_forget();
                }
                written.map(|()| true)
            }
            (Self::Memory(m), Change::Dns { content, .. }) => {
                m.set_resolv_conf(Some(content.as_str()));
                Ok(true)
            }
            (
                Self::System { .. },
                Change::ResolvedLink {
                    ifindex,
                    servers,
                    bus,
                },
            ) => crate::resolved::set_link(bus.as_deref(), *ifindex, servers)
                .await
                .map(|()| true),
            (Self::Memory(_), Change::ResolvedLink { .. }) => Err(NetcfgError::Unsupported(
                "systemd-resolved on the in-memory host",
            )),
        }
    }

    /// Reverts `change`.
    pub(crate) async fn revert(&self, change: &Change) -> Result<(), NetcfgError> {
        match (self, change) {
            (Self::System { .. }, Change::Sysctl { key, previous, .. }) => {
                forwarding::imp::write(key, previous)?;
                forwarding::imp::journal_forget(key);
                Ok(())
            }
            (Self::Memory(m), Change::Sysctl { key, previous, .. }) => {
                m.write_sysctl(key, previous)
            }
            (_, Change::NftTable { table, .. }) => self.nft_delete_table(table).await,
            (_, Change::Route(r)) => {
                if !self.route_del(r).await? {
                    tracing::debug!(route = %r, "route already gone");
                }
                Ok(())
            }
            (Self::System { .. }, Change::Dns { path, previous, .. }) => {
                dns::revert(path, previous)?;
                dns::journal_forget();
                Ok(())
            }
            (Self::Memory(m), Change::Dns { previous, .. }) => {
                m.restore_resolv(previous);
                Ok(())
            }
            (Self::System { .. }, Change::ResolvedLink { ifindex, bus, .. }) => {
                crate::resolved::revert_link(bus.as_deref(), *ifindex).await
            }
            (Self::Memory(_), Change::ResolvedLink { .. }) => Ok(()),
        }
    }
}
