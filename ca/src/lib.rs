//! Herald's certification manager: CA keys, issuance policy, certificate store, revocation,
//! CRL and OCSP production, the admin API and the server. The `herald-ca` binary is a thin
//! wrapper around [`run`].
//!
//! Layers, from the inside out: the authority core ([`Authority`]: issue, revoke, CRL, OCSP),
//! the issuance [`policy`], the [`store`] trait with its SQLite implementation, and the HTTP
//! handlers of the server, which only call the authority.
//!
//! Architecture invariant: only this crate ever touches a CA private key.

#![forbid(unsafe_code)]

mod api;
mod audit;
mod authority;
mod cli;
mod commands;
mod config;
mod crl;
mod csr;
mod enrollment;
mod fleet;
mod fsutil;
mod governor;
mod keys;
mod lint;
mod ocsp;
pub mod policy;
mod repo;
mod revocation;
mod serial;
mod server;
pub mod store;
pub mod store_pg;
mod text;

pub use audit::{
    verify as verify_audit_log, verify_against as verify_audit_log_against, AuditEntry,
    AuditReport, ChainBreak, Checkpoint, NewAuditEntry,
};
pub use authority::{
    init, Authority, CrlError, InitOptions, InitSummary, IssueError, Issued, KeyAccess, Metrics,
    PublishedCrl, RevokeError, RevokeTarget, ServiceKind, SetupError, ISSUER_ID,
};
pub use cli::{
    AdminTokenCommand, AuditCommand, CertCommand, Cli, Command, ConnectionLimitArgs, DataDir,
    FleetCommand, InitArgs, KeyArgs, ListenArgs, RelayArgs, RootCommand, RotateArgs, RotateWhat,
    TokenCommand,
};
pub use config::{
    ClientAuth, Config, ConfigError, DataLayout, RepositorySection, StoreSection, TokenPolicy,
};
pub use csr::{parse_and_verify as verify_csr, CsrError, KeyKind, VerifiedCsr};
pub use governor::Limits;
pub use keys::{CaKeyType, KeyError, KeyProtection, Passphrase};
pub use lint::LintError;
pub use ocsp::{
    decode_get_path as decode_ocsp_get_path, parse_request as parse_ocsp_request, CacheInfo,
    OcspAnswer, OcspResponder, ParsedRequest as ParsedOcspRequest, Refusal as OcspRefusal,
    MAX_CERT_IDS,
};
pub use revocation::{Reason, ReasonParseError};
pub use serial::{random as random_serial, Serial, SerialParseError};
pub use server::ServeError;

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for a failure of the requested operation.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a usage error.
pub const EXIT_USAGE: u8 = 2;

/// Errors that end a `herald-ca` run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is inconsistent.
    #[error("{0}")]
    Usage(String),
    /// Setting up or opening the CA failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// Issuance failed.
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// Revocation failed.
    #[error(transparent)]
    Revoke(#[from] RevokeError),
    /// CRL production failed.
    #[error(transparent)]
    Crl(#[from] CrlError),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Key handling failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The certificate was not found.
    #[error("no certificate matches {0}")]
    NotFound(String),
    /// No endpoint of the fleet has this name (no endpoint certificate, no status report).
    #[error("no endpoint named {0} (see `herald-ca fleet list`)")]
    NoEndpoint(String),
    /// An audit checkpoint cannot be used (malformed, bad signature, another CA's key).
    #[error("audit checkpoint {path}: {problem}")]
    AuditCheckpoint {
        /// The checkpoint file.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The audit log's chain is broken.
    #[error("audit log broken at entry {seq}: {problem}")]
    AuditBroken {
        /// Where.
        seq: i64,
        /// What.
        problem: String,
    },
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
pub async fn run(cli: Cli) -> Result<(), Error> {
    commands::run(cli).await
}

/// Installs the global tracing subscriber at the given level (`RUST_LOG` syntax accepted).
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second initialisation (tests) is harmless; ignore its error.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The current time, Unix seconds.
pub(crate) fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
