//! `aura generate` (hidden): shell completions and man pages, both derived from the
//! command-line definition itself, so they can never drift from what `aura` accepts.
//! `dist/build-deb.sh` runs it to put them in the Debian package.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Subcommand, ValueEnum};

/// Write shell completions or man pages for `aura`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Shell completion scripts: aura.bash, _aura (zsh), aura.fish.
    Completions {
        /// The shell to write a script for. Repeatable.
        #[arg(long, value_enum, required = true)]
        shell: Vec<Shell>,
        /// Directory to write into (created when missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Man pages (section 1): aura.1 and one page per command and subcommand
    /// (aura-server.1, aura-pki-init.1, ...).
    Man {
        /// Directory to write into (created when missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// The shells the package carries completions for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    fn generator(self) -> clap_complete::Shell {
        match self {
            Self::Bash => clap_complete::Shell::Bash,
            Self::Zsh => clap_complete::Shell::Zsh,
            Self::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// Runs `aura generate`; prints each file written, one per line.
pub fn run(args: GenerateArgs) -> Result<()> {
    let written = match args.what {
        What::Completions { shell, out } => completions(&shell, &out)?,
        What::Man { out } => man_pages(&out)?,
    };
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

fn create_dir(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))
}

/// One completion script per shell in `shells`, named as each shell expects.
fn completions(shells: &[Shell], out: &Path) -> Result<Vec<PathBuf>> {
    create_dir(out)?;
    let mut cmd = crate::Cli::command();
    let name = cmd.get_name().to_owned();
    let mut written = Vec::new();
    for shell in shells {
        let path = clap_complete::generate_to(shell.generator(), &mut cmd, &name, out)
            .with_context(|| {
                format!(
                    "cannot write the {shell:?} completions to {}",
                    out.display()
                )
            })?;
        written.push(path);
    }
    Ok(written)
}

/// A page for `aura` and for every command under it that `--help` lists, named after
/// the command's path (`aura-pki-init.1`); `help` and hidden commands get none.
fn man_pages(out: &Path) -> Result<Vec<PathBuf>> {
    create_dir(out)?;
    let mut cmd = crate::Cli::command().disable_help_subcommand(true);
    // Fills in each subcommand's display name (`aura-pki-init`), which names its page.
    cmd.build();
    let mut written = Vec::new();
    write_pages(cmd, out, &mut written)?;
    written.sort();
    Ok(written)
}

fn write_pages(cmd: clap::Command, out: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), out, written)?;
    }
    let page = clap_mangen::Man::new(cmd)
        .source(format!("aura {}", env!("CARGO_PKG_VERSION")))
        .manual("Aura");
    let path = page
        .generate_to(out)
        .with_context(|| format!("cannot write a man page to {}", out.display()))?;
    written.push(path);
    Ok(())
}
