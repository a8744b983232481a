//! The authority core: CA keys, issuance policy and the pre-signing lint, certificate requests,
//! issuance and revocation, CRLs and OCSP, enrollment tokens, admin credentials, console
//! accounts and sessions, the audit log, the fleet's view (endpoint groups, rollout progress)
//! and the CA's configuration. It sees the store only through its traits and never names a
//! backend, an HTTP type or a command-line type.

pub(crate) mod accounts;
pub(crate) mod admin;
pub(crate) mod audit;
pub(crate) mod authority;
pub(crate) mod config;
pub(crate) mod console;
pub(crate) mod crl;
pub(crate) mod csr;
pub(crate) mod enrollment;
pub(crate) mod fleet;
pub(crate) mod groups;
pub(crate) mod keys;
pub(crate) mod limits;
pub(crate) mod lint;
pub(crate) mod metrics;
pub(crate) mod ocsp;
pub mod policy;
pub(crate) mod releases;
pub(crate) mod sessions;
pub(crate) mod totp;
