//! The hash-chained, append-only audit log, and signed checkpoints of its head.
//!
//! Each entry's hash is SHA-256 over the previous entry's hash and the entry's fields, so an
//! altered, removed or reordered entry breaks the chain and [`verify`] reports where. The
//! chain alone is unkeyed: whoever can write the store can cut its tail, or rewrite an entry
//! and recompute every hash after it, and the chain still verifies. A [`Checkpoint`] closes
//! that: the CA signs (entries, head hash) with its audit key (Ed25519, `audit.key`, only in
//! the data folder), operators keep checkpoints elsewhere, and [`verify_against`] then reports
//! a log shorter than a checkpoint (truncated) or whose entry at the checkpoint's position has
//! another hash (rewritten), even when the chain itself is consistent.

use std::path::Path;

use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use crate::core::config::DataLayout;
use crate::core::keys::{KeyError, KeyProtection, Passphrase};
use crate::model::audit::{chain_hash, AuditEntry, GENESIS_HASH};
use crate::store::{read_tx, Store, StoreError};

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

/// The format (and signature context) of checkpoints.
pub(crate) const CHECKPOINT_FORMAT: &str = "herald-audit-checkpoint-v1";

/// A signed statement of the audit log's head: "the log had `entries` entries, the last with
/// hash `head`, at `time`". Kept outside the CA, it lets [`verify_against`] detect a log cut
/// or rewritten after it was taken.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Always [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// Number of entries covered (the sequence number of the head; 0 for an empty log).
    pub entries: i64,
    /// Hash of entry `entries` (hex).
    pub head: String,
    /// When the checkpoint was signed, Unix seconds.
    pub time: i64,
    /// The audit key's Ed25519 public key (hex).
    pub public_key: String,
    /// Ed25519 signature (hex) over [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    /// The signed bytes: format, entries, head and time, one per line.
    fn message(format: &str, entries: i64, head: &str, time: i64) -> Vec<u8> {
        format!("{format}\n{entries}\n{head}\n{time}\n").into_bytes()
    }

    /// Checks the format and the signature; with `trusted_key`, also that this key signed it.
    pub fn check_signature(&self, trusted_key: Option<&[u8]>) -> Result<(), String> {
        if self.format != CHECKPOINT_FORMAT {
            return Err(format!(
                "not a Herald audit checkpoint (format {:?})",
                self.format
            ));
        }
        let key = hex::decode(&self.public_key).map_err(|_| "public_key is not hex".to_owned())?;
        let signature =
            hex::decode(&self.signature).map_err(|_| "signature is not hex".to_owned())?;
        if let Some(trusted) = trusted_key {
            if trusted != key.as_slice() {
                return Err(
                    "the checkpoint was signed by another key than this CA's audit key".to_owned(),
                );
            }
        }
        UnparsedPublicKey::new(&ED25519, &key)
            .verify(
                &Self::message(&self.format, self.entries, &self.head, self.time),
                &signature,
            )
            .map_err(|_| "the checkpoint's signature is invalid".to_owned())
    }
}

/// The CA's audit key, which signs checkpoints.
pub(crate) struct AuditSigner {
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditSigner")
    }
}

/// `audit.key`: the private key, protected like the other CA keys.
fn key_path(layout: &DataLayout) -> std::path::PathBuf {
    layout.key("audit")
}

/// `audit.pub`: the public key (hex), for verifiers.
pub(crate) fn public_key_path(layout: &DataLayout) -> std::path::PathBuf {
    layout.dir().join("audit.pub")
}

fn from_pkcs8(der: &[u8], path: &Path) -> Result<Ed25519KeyPair, KeyError> {
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| KeyError::Format {
        path: path.to_path_buf(),
        detail: format!("not an Ed25519 key: {e}"),
    })
}

impl AuditSigner {
    /// Generates a new audit key and writes `audit.key` (protected as asked) and `audit.pub`.
    pub(crate) fn create(
        layout: &DataLayout,
        protection: &KeyProtection,
    ) -> Result<Self, KeyError> {
        let pair = crate::core::keys::generate(crate::core::keys::CaKeyType::Ed25519)?;
        let path = key_path(layout);
        let key = from_pkcs8(&pair.serialize_der(), &path)?;
        crate::core::keys::write_key(&path, &pair, protection)?;
        let public = public_key_path(layout);
        herald_files::write_public(
            &public,
            format!("{}\n", hex::encode(key.public_key().as_ref())).as_bytes(),
        )
        .map_err(|source| KeyError::Write {
            path: public,
            source,
        })?;
        Ok(Self { key })
    }

    /// Reads `audit.key`; a data folder made before audit keys existed gets one now
    /// (encrypted with `passphrase` unless the CA's keys are stored unencrypted).
    pub(crate) fn open(
        layout: &DataLayout,
        passphrase: Option<&Passphrase>,
        insecure_unencrypted: bool,
    ) -> Result<Self, KeyError> {
        let path = key_path(layout);
        if !path.exists() {
            let protection = match (insecure_unencrypted, passphrase) {
                (true, _) => KeyProtection::InsecureUnencrypted,
                (false, Some(p)) => KeyProtection::Encrypted {
                    passphrase: p.clone(),
                    iterations: crate::core::keys::DEFAULT_KDF_ITERATIONS,
                },
                (false, None) => return Err(KeyError::PassphraseNeeded { path }),
            };
            tracing::info!(path = %path.display(), "creating the audit checkpoint key");
            return Self::create(layout, &protection);
        }
        let pair = crate::core::keys::read_key(&path, passphrase)?;
        Ok(Self {
            key: from_pkcs8(&pair.serialize_der(), &path)?,
        })
    }

    /// The Ed25519 public key.
    pub(crate) fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    /// Verifies the chain and signs a checkpoint of its head. A broken chain is not signed.
    pub(crate) fn checkpoint(
        &self,
        store: &dyn Store,
    ) -> Result<Result<Checkpoint, ChainBreak>, StoreError> {
        let report = verify(store)?;
        if let Some(broken) = report.first_break {
            return Ok(Err(broken));
        }
        let entries = i64::try_from(report.entries)
            .map_err(|_| StoreError::OutOfRange("the audit log's length".into()))?;
        let time = crate::model::time::now_unix();
        let message = Checkpoint::message(CHECKPOINT_FORMAT, entries, &report.head, time);
        Ok(Ok(Checkpoint {
            format: CHECKPOINT_FORMAT.to_owned(),
            entries,
            head: report.head,
            time,
            public_key: hex::encode(self.public_key()),
            signature: hex::encode(self.key.sign(&message).as_ref()),
        }))
    }
}

/// The audit key's public key as `audit.pub` in the data folder holds it, if present.
pub(crate) fn read_public_key(layout: &DataLayout) -> Result<Option<Vec<u8>>, String> {
    let path = public_key_path(layout);
    match std::fs::read_to_string(&path) {
        Ok(text) => hex::decode(text.trim())
            .map(Some)
            .map_err(|_| format!("{}: not a hex public key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Verifies the chain, then holds it against a checkpoint whose signature the caller has
/// checked: a log with fewer entries than the checkpoint was truncated; a log whose entry at
/// the checkpoint's position has another hash was rewritten (even if recomputed since).
pub fn verify_against(
    store: &dyn Store,
    checkpoint: &Checkpoint,
) -> Result<AuditReport, StoreError> {
    let mut at_checkpoint = (checkpoint.entries == 0).then(|| GENESIS_HASH.to_owned());
    let mut report = read_tx(store, |tx| {
        tx.for_each_audit(&mut |e| {
            if e.seq == checkpoint.entries {
                at_checkpoint = Some(e.hash);
            }
        })
    })
    .and_then(|()| verify(store))?;
    if report.first_break.is_some() {
        return Ok(report);
    }
    let entries = i64::try_from(report.entries).unwrap_or(i64::MAX);
    report.first_break = if entries < checkpoint.entries {
        Some(ChainBreak {
            seq: entries + 1,
            problem: format!(
                "the log was truncated: the checkpoint of {} covers {} entries, only {entries} remain",
                crate::model::time::format_time(checkpoint.time),
                checkpoint.entries
            ),
        })
    } else if at_checkpoint.as_deref() != Some(checkpoint.head.as_str()) {
        Some(ChainBreak {
            seq: checkpoint.entries,
            problem: format!(
                "the log was rewritten: entry {} does not match the checkpoint of {}",
                checkpoint.entries,
                crate::model::time::format_time(checkpoint.time)
            ),
        })
    } else {
        None
    };
    Ok(report)
}

/// Visits the entries with `from <= seq`, at most `limit` of them, in order.
pub(crate) fn entries(
    store: &dyn Store,
    from: i64,
    limit: usize,
    visit: &mut dyn FnMut(AuditEntry),
) -> Result<(), StoreError> {
    let mut left = limit;
    read_tx(store, |tx| {
        tx.for_each_audit(&mut |e| {
            if e.seq >= from && left > 0 {
                left -= 1;
                visit(e);
            }
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::audit::NewAuditEntry;
    use crate::store::{write_tx, SqliteStore};

    fn signer(dir: &Path) -> AuditSigner {
        AuditSigner::create(&DataLayout::new(dir), &KeyProtection::InsecureUnencrypted).unwrap()
    }

    /// Rewrites entry `seq`'s actor and recomputes every hash from it on, as someone with
    /// write access to the database (and this source code) could.
    fn rewrite_and_recompute(db: &Path, seq: i64) {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = ?1", [seq])
            .unwrap();
        let rows: Vec<(i64, i64, String, String, String)> = conn
            .prepare(
                "SELECT seq, time, actor, action, details FROM audit WHERE seq >= ?1 ORDER BY seq",
            )
            .unwrap()
            .query_map([seq], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut prev: String = conn
            .query_row("SELECT hash FROM audit WHERE seq = ?1", [seq - 1], |r| {
                r.get(0)
            })
            .unwrap();
        for (seq, time, actor, action, details) in rows {
            let hash = chain_hash(
                &prev,
                seq,
                &NewAuditEntry {
                    time,
                    actor,
                    action,
                    details,
                },
            );
            conn.execute(
                "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
                rusqlite::params![prev, hash, seq],
            )
            .unwrap();
            prev = hash;
        }
    }

    #[test]
    fn truncated_audit_chain_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_entries(dir.path(), 5);
        let checkpoint = signer(dir.path()).checkpoint(&store).unwrap().unwrap();
        assert_eq!(checkpoint.entries, 5);
        drop(store);
        let conn = rusqlite::Connection::open(dir.path().join("db")).unwrap();
        conn.execute("DELETE FROM audit WHERE seq > 3", []).unwrap();
        drop(conn);
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        assert_eq!(
            verify(&store).unwrap().first_break,
            None,
            "the chain alone cannot tell"
        );
        let report = verify_against(&store, &checkpoint).unwrap();
        let broken = report.first_break.unwrap();
        assert_eq!(broken.seq, 4);
        assert!(broken.problem.contains("truncated"), "{}", broken.problem);
    }

    #[test]
    fn recomputed_audit_chain_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_entries(dir.path(), 5);
        let checkpoint = signer(dir.path()).checkpoint(&store).unwrap().unwrap();
        // Entries appended after the checkpoint are fine.
        write_tx(&store, |tx| {
            tx.append_audit(&NewAuditEntry::now("cli", "later", serde_json::json!({})))
        })
        .unwrap();
        assert_eq!(
            verify_against(&store, &checkpoint).unwrap().first_break,
            None
        );
        drop(store);
        rewrite_and_recompute(&dir.path().join("db"), 2);
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        assert_eq!(
            verify(&store).unwrap().first_break,
            None,
            "the chain alone cannot tell"
        );
        let broken = verify_against(&store, &checkpoint)
            .unwrap()
            .first_break
            .unwrap();
        assert_eq!(broken.seq, 5);
        assert!(broken.problem.contains("rewritten"), "{}", broken.problem);
    }

    #[test]
    fn forged_or_foreign_checkpoint_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_entries(dir.path(), 2);
        let signer = signer(dir.path());
        let mut checkpoint = signer.checkpoint(&store).unwrap().unwrap();
        assert_eq!(
            checkpoint.check_signature(Some(signer.public_key())),
            Ok(())
        );
        let other = tempfile::tempdir().unwrap();
        let foreign = self::signer(other.path());
        assert!(checkpoint
            .check_signature(Some(foreign.public_key()))
            .is_err());
        checkpoint.entries = 1;
        assert!(
            checkpoint.check_signature(None).is_err(),
            "altered checkpoint"
        );
    }

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
