//! The one error type of this crate.

use std::fmt;
use std::path::PathBuf;

/// Why a configuration could not be loaded. Every variant is a local misconfiguration
/// (or an unreadable file); none is a bug or a peer's fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file itself could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has a key this version does not know, misses a
    /// required key, or holds a value of the wrong type or syntax.
    #[error("{}", ParseDisplay(self))]
    Parse {
        /// The file, when known (`load_*` sets it, `parse_*` cannot).
        path: Option<PathBuf>,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column (in characters) of the offending text.
        column: usize,
        /// Dotted key the error is about (`server.pool.cidr`), when it could be told.
        key: Option<String>,
        /// The parser's message (`unknown field `cdir`, expected one of ...`).
        message: String,
    },
    /// The file parsed, but some values are unusable. Every problem found is listed.
    #[error("{}", ProblemsDisplay(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The problems of a [`ConfigError::Invalid`] error; empty for other variants.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(p) => p,
            _ => &[],
        }
    }
}

/// One unusable value: the dotted key it sits under and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `server.pool.cidr` or `server.pool.static.alice`.
    pub key: String,
    /// What is wrong, naming the offending value.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

struct ProblemsDisplay<'a>(&'a [Problem]);

impl fmt::Display for ProblemsDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

struct ParseDisplay<'a>(&'a ConfigError);

impl fmt::Display for ParseDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ConfigError::Parse {
            path,
            line,
            column,
            key,
            message,
        } = self.0
        else {
            return Ok(());
        };
        if let Some(path) = path {
            write!(f, "{}: ", path.display())?;
        }
        write!(f, "line {line}, column {column}: ")?;
        if let Some(key) = key {
            write!(f, "{key}: ")?;
        }
        f.write_str(message)
    }
}

/// Collects problems while validating.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub(crate) Vec<Problem>);

impl Problems {
    pub(crate) fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(key, message));
    }

    /// `Err(ConfigError::Invalid)` when anything was collected.
    pub(crate) fn finish(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self.0))
        }
    }
}
