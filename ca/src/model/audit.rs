//! Audit log entries and their chain hash: each entry's hash covers the previous entry's hash
//! and the entry's fields, so the log is a hash chain (see `core::audit` for verification and
//! signed checkpoints).

use serde::Serialize;

/// The `prev_hash` of the first entry.
pub(crate) const GENESIS_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// An entry about to be appended.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NewAuditEntry {
    /// Unix seconds.
    pub time: i64,
    /// Who acted: `cli`, `admin-token:<id>`, `system`.
    pub actor: String,
    /// What was done: `init`, `issue`, `revoke`, `admin-token-create`, ...
    pub action: String,
    /// Details as compact JSON.
    pub details: String,
}

impl NewAuditEntry {
    /// An entry stamped with the current time.
    pub fn now(actor: &str, action: &str, details: serde_json::Value) -> Self {
        Self {
            time: crate::model::time::now_unix(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            details: details.to_string(),
        }
    }
}

/// An entry as stored.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// Position in the log, from 1, without gaps.
    pub seq: i64,
    /// The entry.
    #[serde(flatten)]
    pub entry: NewAuditEntry,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// The chain hash of an entry.
pub(crate) fn chain_hash(prev_hash: &str, seq: i64, e: &NewAuditEntry) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [
        prev_hash,
        &seq.to_string(),
        &e.time.to_string(),
        &e.actor,
        &e.action,
        &e.details,
    ] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    hex::encode(ctx.finish().as_ref())
}
