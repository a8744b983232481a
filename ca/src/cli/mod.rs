//! The composition root: command-line arguments, the environment, opening the store and
//! handing it to the authority, printing, and exit codes. The only layer that may name every
//! other one.

pub(crate) mod args;
mod commands;

pub use commands::{open_configured_store, open_store};
mod fleet;
mod relay;

use crate::core::accounts::AccountError;
use crate::core::admin::AdminTokenError;
use crate::core::authority::{IssueError, RevokeError, SetupError};
use crate::core::crl::CrlError;
use crate::core::keys::KeyError;
use crate::server::ServeError;
use crate::store::StoreError;

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for a failure of the requested operation (including refusals, configuration
/// and relay failures).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a usage error: the command line itself is wrong.
pub const EXIT_USAGE: u8 = 2;

/// Errors that end a `herald-ca` run.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is inconsistent or a value on it is malformed.
    #[error("{0}")]
    Usage(String),
    /// The data folder or its configuration cannot be used as asked.
    #[error("{0}")]
    Config(String),
    /// The operation was refused (a token that cannot be used, a file that exists, ...).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error(transparent)]
    Revoke(#[from] RevokeError),
    #[error(transparent)]
    Crl(#[from] CrlError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    AdminToken(#[from] AdminTokenError),
    /// A console account operation failed (no such account, name taken, ...).
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Relay(#[from] herald_token_service::relay::RelayError),
    /// Writing the command's output failed.
    #[error("cannot write the output: {0}")]
    Output(String),
    #[error("{path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("no certificate matches {0}")]
    NotFound(String),
    /// No endpoint of the fleet has this name (no endpoint certificate, no status report).
    #[error("no endpoint named {0} (see `herald-ca fleet list`)")]
    NoEndpoint(String),
    /// An audit checkpoint cannot be used (malformed, bad signature, another CA's key).
    #[error("audit checkpoint {path}: {problem}")]
    AuditCheckpoint {
        path: std::path::PathBuf,
        problem: String,
    },
    #[error("audit log broken at entry {seq}: {problem}")]
    AuditBroken { seq: i64, problem: String },
}

impl Error {
    /// The documented process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }
}

/// Runs one `herald-ca` command.
pub async fn run(cli: args::Cli) -> Result<(), Error> {
    commands::run(cli).await
}

/// Installs the global tracing subscriber at the given level (`RUST_LOG` syntax accepted;
/// an unparsable level falls back to `info`, with a warning).
pub fn init_logging(level: &str) {
    let (filter, bad_level) = match tracing_subscriber::EnvFilter::try_new(level) {
        Ok(filter) => (filter, None),
        Err(e) => (tracing_subscriber::EnvFilter::new("info"), Some(e)),
    };
    // A second initialisation (tests run several commands in one process) keeps the first.
    if tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .is_ok()
    {
        if let Some(e) = bad_level {
            tracing::warn!(level, error = %e, "unusable log level; logging at info");
        }
    }
}
