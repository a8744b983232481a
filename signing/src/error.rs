//! Errors of `herald-sign`, by stage.

use std::path::{Path, PathBuf};

use crate::{EXIT_FAILURE, EXIT_USAGE};

/// Errors that end a `herald-sign` run.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum Error {
    /// Bad arguments (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A key could not be loaded or used.
    #[error("key from {origin}: {reason}")]
    Key { origin: String, reason: String },
    /// A metadata file failed verification.
    #[error("{file}: {source}")]
    Verify {
        file: String,
        source: herald_manifest::VerifyError,
    },
    /// A metadata file could not be read or written as an envelope.
    #[error("{file}: {source}")]
    Envelope {
        file: String,
        source: herald_manifest::EnvelopeError,
    },
    /// The fleet's progress could not be read.
    #[error("fleet {url}: {reason}")]
    Fleet { url: String, reason: String },
    /// The repository is not in a state that allows the command (missing or unexpected files,
    /// missing signatures...).
    #[error("{0}")]
    Repository(String),
}

impl Error {
    /// The documented process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }

    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
