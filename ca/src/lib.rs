//! Herald's certification manager: CA keys, issuance policy, certificate store, revocation,
//! CRL and OCSP production, the admin API and the server. The `herald-ca` binary is a thin
//! wrapper around [`run`].
//!
//! The crate is built in layers; every import points down (ARCHITECTURE.md has the picture,
//! and `tests/layers.rs` checks the rule):
//!
//! ```text
//! cli     composition root: arguments, environment, store::open, printing, exit codes
//! server  sockets, rustls, the client-certificate verifier, the connection governor
//! http    axum routes and handlers; the only layer that knows status codes
//! core    authority, CRL, OCSP, CSR, policy, keys, admin, fleet, enrollment, audit, config
//! store   the Store traits and records; the sqlite and postgres backends; open
//! model   serials, revocation reasons, audit entries, encodings, times
//! ```
//!
//! Architecture invariant: only this crate ever touches a CA private key.

#![forbid(unsafe_code)]

mod cli;
mod core;
mod http;
mod model;
mod server;
pub mod store;

pub use crate::cli::args::{
    AdminCommand, AdminTokenCommand, AuditCommand, CertCommand, Cli, Command, ConnectionLimitArgs,
    DataDir, FleetCommand, InitArgs, KeyArgs, ListenArgs, RelayArgs, RootCommand, RotateArgs,
    RotateWhat, TokenCommand, UserCommand,
};
pub use crate::cli::{
    init_logging, open_configured_store, open_store, run, Error, EXIT_FAILURE, EXIT_OK, EXIT_USAGE,
};
pub use crate::core::accounts::AccountError;
pub use crate::core::admin::AdminTokenError;
pub use crate::core::audit::{
    verify as verify_audit_log, verify_against as verify_audit_log_against, AuditReport,
    ChainBreak, Checkpoint,
};
pub use crate::core::authority::{
    init, Authority, InitOptions, InitSummary, IssueError, Issued, KeyAccess, OpenStore,
    PublishedCrl, RevokeError, RevokeTarget, ServiceKind, SetupError, ISSUER_ID,
};
pub use crate::core::config::{
    ClientAuth, Config, ConfigError, DataLayout, RepositorySection, TokenPolicy,
};
pub use crate::core::crl::CrlError;
pub use crate::core::csr::{parse_and_verify as verify_csr, CsrError, KeyKind, VerifiedCsr};
pub use crate::core::keys::{CaKeyType, KeyError, KeyProtection, Passphrase};
pub use crate::core::limits::Limits;
pub use crate::core::lint::LintError;
pub use crate::core::metrics::Metrics;
pub use crate::core::ocsp::{
    decode_get_path as decode_ocsp_get_path, parse_request as parse_ocsp_request, CacheInfo,
    OcspAnswer, OcspResponder, ParsedRequest as ParsedOcspRequest, Refusal as OcspRefusal,
    MAX_CERT_IDS,
};
pub use crate::core::policy;
pub use crate::model::audit::{AuditEntry, NewAuditEntry};
pub use crate::model::revocation::{Reason, ReasonParseError};
pub use crate::model::serial::{random as random_serial, Serial, SerialParseError};
pub use crate::server::ServeError;
pub use crate::store::open::StoreSection;
