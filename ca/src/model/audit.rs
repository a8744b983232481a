//! Audit log entries and their chain hash: each entry's hash covers the previous entry's hash
//! and the entry's fields, so each chain of the log is a hash chain (see `core::audit` for
//! verification and signed checkpoints). A store written by one process holds one chain (0);
//! servers sharing a PostgreSQL store each append to a chain of their own, so that appends of
//! different servers never wait for each other.

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
    /// The chain the entry belongs to (0 for the only chain of a SQLite store).
    pub chain: i64,
    /// Position in its chain, from 1, without gaps.
    pub seq: i64,
    /// The entry.
    #[serde(flatten)]
    pub entry: NewAuditEntry,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// The chain hash of an entry: SHA-256 over the previous hash, the sequence number, the time,
/// the actor, the action and the details, each as its UTF-8 bytes preceded by their length
/// (8 bytes, big-endian), numbers in decimal. The PostgreSQL store computes the same hash in
/// its append statement (`herald_hash_part` in `store::schema`); the store suite verifies
/// entries appended there with this function.
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
