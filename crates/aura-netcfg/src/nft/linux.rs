//! Linux: runs the `nft` binary (package `nftables`), a JSON batch on stdin, bounded by a
//! timeout.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::error::NetcfgError;

/// Longest an `nft` invocation may take before it is killed.
const NFT_TIMEOUT: Duration = Duration::from_secs(30);
/// Where `nft` lives when `PATH` (e.g. under a service manager) lacks the sbin dirs.
const NFT_FALLBACKS: [&str; 3] = ["/usr/sbin/nft", "/sbin/nft", "/usr/local/sbin/nft"];

/// The `nft` to run: `configured` if given, else the first `nft` on `PATH`, else a
/// usual sbin location.
pub(crate) fn resolve_program(configured: Option<&Path>) -> Result<PathBuf, NetcfgError> {
    if let Some(p) = configured {
        return Ok(p.to_path_buf());
    }
    let from_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("nft"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(NFT_FALLBACKS.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .ok_or_else(|| NetcfgError::NftNotFound {
            program: PathBuf::from("nft"),
        })
}

/// Runs `program args..` with `stdin`, returns stdout; a clear error on absence,
/// failure or timeout.
async fn run(
    program: &Path,
    args: &[&str],
    stdin: Option<&str>,
    action: &str,
) -> Result<String, NetcfgError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        ErrorKind::NotFound => NetcfgError::NftNotFound {
            program: program.to_path_buf(),
        },
        _ => NetcfgError::Io {
            action: format!("starting {} while {action}", program.display()),
            source: e,
        },
    })?;
    let io_err = |source| NetcfgError::Io {
        action: format!("talking to {} while {action}", program.display()),
        source,
    };
    let work = async {
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).await.map_err(io_err)?;
            pipe.shutdown().await.map_err(io_err)?;
        }
        child.wait_with_output().await.map_err(io_err)
    };
    let out = tokio::time::timeout(NFT_TIMEOUT, work)
        .await
        .map_err(|_| NetcfgError::Timeout(action.to_owned()))??;
    if !out.status.success() {
        return Err(NetcfgError::Nft {
            action: action.to_owned(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Applies one JSON batch atomically (`nft -j -f -`).
pub(crate) async fn apply(program: &Path, payload: &str, action: &str) -> Result<(), NetcfgError> {
    run(program, &["-j", "-f", "-"], Some(payload), action)
        .await
        .map(drop)
}

/// The host's tables, as `nft -j list tables` prints them.
pub(super) async fn list_tables(program: &Path) -> Result<String, NetcfgError> {
    run(
        program,
        &["-j", "list", "tables"],
        None,
        "listing nftables tables",
    )
    .await
}
