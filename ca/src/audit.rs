//! The hash-chained, append-only audit log.
//!
//! Each entry's hash is SHA-256 over the previous entry's hash and the entry's fields, so an
//! altered, removed or reordered entry breaks the chain and [`verify`] reports where.

use serde::Serialize;

use crate::store::{read_tx, Store, StoreError};

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
            time: crate::now_unix(),
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
    crate::hex(ctx.finish().as_ref())
}

/// The first break found in the chain.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChainBreak {
    /// The sequence number where the break was found.
    pub seq: i64,
    /// What is wrong.
    pub problem: String,
}

/// The result of verifying the log.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// Number of entries read.
    pub entries: u64,
    /// Hash of the last entry (anchor it elsewhere to detect truncation).
    pub head: String,
    /// The first break, if any.
    pub first_break: Option<ChainBreak>,
}

/// Walks the whole log and checks sequence numbers, links and hashes.
pub fn verify(store: &dyn Store) -> Result<AuditReport, StoreError> {
    read_tx(store, |tx| {
        let mut expected_seq = 1;
        let mut prev = GENESIS_HASH.to_owned();
        let mut entries = 0;
        let mut first_break = None;
        tx.for_each_audit(&mut |e| {
            entries += 1;
            if first_break.is_some() {
                return;
            }
            let problem = if e.seq != expected_seq {
                Some(format!("entry {expected_seq} is missing (found {})", e.seq))
            } else if e.prev_hash != prev {
                Some("link to the previous entry does not match".to_owned())
            } else if chain_hash(&e.prev_hash, e.seq, &e.entry) != e.hash {
                Some("entry content does not match its hash (altered)".to_owned())
            } else {
                None
            };
            if let Some(problem) = problem {
                first_break = Some(ChainBreak {
                    seq: e.seq,
                    problem,
                });
            }
            expected_seq = e.seq + 1;
            prev = e.hash;
        })?;
        Ok(AuditReport {
            entries,
            head: prev,
            first_break,
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::{write_tx, SqliteStore};

    fn store_with_entries(dir: &std::path::Path, n: usize) -> SqliteStore {
        let store = SqliteStore::open(&dir.join("db")).unwrap();
        for i in 0..n {
            write_tx(&store, |tx| {
                tx.append_audit(&NewAuditEntry::now(
                    "cli",
                    "test",
                    serde_json::json!({ "i": i }),
                ))
            })
            .unwrap();
        }
        store
    }

    #[test]
    fn intact_chain_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_entries(dir.path(), 5);
        let report = verify(&store).unwrap();
        assert_eq!(report.entries, 5);
        assert_eq!(report.first_break, None);
    }

    #[test]
    fn altered_audit_entry_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_entries(dir.path(), 5);
        drop(store);
        let conn = rusqlite::Connection::open(dir.path().join("db")).unwrap();
        conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 3", [])
            .unwrap();
        drop(conn);
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let report = verify(&store).unwrap();
        assert_eq!(report.first_break.unwrap().seq, 3);
    }

    #[test]
    fn removed_audit_entry_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_entries(dir.path(), 5);
        drop(store);
        let conn = rusqlite::Connection::open(dir.path().join("db")).unwrap();
        conn.execute("DELETE FROM audit WHERE seq = 2", []).unwrap();
        drop(conn);
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let report = verify(&store).unwrap();
        assert_eq!(report.first_break.unwrap().seq, 3);
    }
}
