//! Aura's namespace lab: a throwaway network on this machine for `aura demo` and the
//! end-to-end test tier, the guards that start and end the `aura` processes run in it,
//! and the edits both make to a freshly written deployment.
//!
//! # Role
//! - [`netns`]: one network namespace, created under a unique name and deleted on drop,
//!   with shell scripts, programs and Rust code run inside; [`netns::skip_reason`] tells
//!   a caller that cannot use namespaces here (not Linux, not root, no `ip`) why.
//! - [`lab`]: the demo's topology (a server, an "internet" host that can only answer the
//!   server, and client hosts) and a TCP transfer between two of its hosts that checks
//!   every byte.
//! - [`procs`]: [`Proc`] and [`Procs`], guards over child processes: SIGTERM, a grace
//!   period, then SIGKILL, and always reaped; with each process's log file at hand.
//! - [`deploy`]: text edits of the `server.toml` and `client.toml` that
//!   `aura server-init` and `aura provision-client` wrote (one key of one table), so a
//!   lab run can point daemons at its own admin sockets and carriers.
//!
//! This is test and demo machinery: the daemons never use it. It depends on no other
//! Aura crate except `aura-config` (for its TOML quoting).
//!
//! # Guarantees
//! - Every namespace is removed on drop, on every path (panics included): a
//!   [`netns::Netns`] deletes itself, and a [`lab::Lab`] is made of them, removing what
//!   it had built when its construction fails half-way.
//! - Every child process held by a [`Procs`] is ended (SIGTERM, then SIGKILL after
//!   [`procs::STOP_GRACE`]) and reaped on drop, newest first; declare the `Procs` after
//!   the [`lab::Lab`] so the processes end before their namespaces go.
//! - Every blocking wait is bounded: transfers by their timeout, process stops by the
//!   grace period.
//! - No `unsafe`. Errors come back as readable text (`io::Error` when spawning); nothing
//!   panics on what a caller passes in, except indexing a [`Procs`] with a number it
//!   never handed out ([`Procs::get`] returns `None` instead).
//!
//! Namespaces need Linux and root; elsewhere the constructors return an error and
//! [`netns::skip_reason`] always gives a reason.
//!
//! # Example
//! ```no_run
//! use std::time::Duration;
//! use aura_lab::lab::{self, Lab};
//! use aura_lab::Procs;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! if let Some(why) = aura_lab::netns::skip_reason(&[]) {
//!     eprintln!("skipping: {why}");
//!     return Ok(());
//! }
//! let lab = Lab::new("example", 1)?;
//! // Declared after the lab: dropped first, so its processes end before the namespaces.
//! let mut procs = Procs::new();
//! let mut sleeper = lab.server().command("sleep");
//! sleeper.arg("600");
//! let i = procs.spawn("sleeper", &mut sleeper, std::env::temp_dir().join("sleeper.log"))?;
//! let report = lab::transfer(
//!     lab.client(1).ok_or("no client host")?,
//!     lab.server(),
//!     lab.server_ip(1),
//!     5201,
//!     1 << 20,
//!     Duration::from_secs(10),
//! )?;
//! assert_eq!(report.bytes, 1 << 20);
//! procs.stop(i); // SIGTERM; or let the drop do it
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod deploy;
pub mod lab;
pub mod netns;
pub mod procs;

pub use procs::{Proc, Procs};
