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
//!
//! Servers sharing a PostgreSQL store append to chains of their own (so that they never wait
//! for each other); each chain is verified on its own, and a checkpoint signs the heads of all
//! chains together, so the chains are merged under one signature. A log of one chain (every
//! SQLite store) is checkpointed exactly as before chains existed (format v1).

use std::path::Path;

use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use crate::core::config::DataLayout;
use crate::core::keys::{KeyError, KeyProtection, Passphrase};
use crate::model::audit::{chain_hash, AuditEntry, GENESIS_HASH};
use crate::store::{read_tx, Store, StoreError};

/// The first break found in the log.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChainBreak {
    /// The chain where the break was found.
    pub chain: i64,
    /// The sequence number (in that chain) where the break was found.
    pub seq: i64,
    /// What is wrong.
    pub problem: String,
}

/// The head of one chain of the log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChainHead {
    /// The chain's number.
    pub chain: i64,
    /// Its entries (the sequence number of its last entry).
    pub entries: i64,
    /// Hash of its last entry (hex).
    pub head: String,
}

/// The result of verifying the log.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// Number of entries read, in all chains.
    pub entries: u64,
    /// Hash of the last entry when the log is one chain (anchor it elsewhere to detect
    /// truncation); for several chains, the hash of their heads (see [`heads_hash`]).
    pub head: String,
    /// The head of each chain, in chain order.
    pub chains: Vec<ChainHead>,
    /// The first break, if any.
    pub first_break: Option<ChainBreak>,
}

/// One hash for several chains' heads: SHA-256 (hex) of one line `CHAIN ENTRIES HEAD` per
/// chain, in chain order. A log that is one chain 0 (or empty) has that chain's head instead,
/// as before the log had chains.
pub(crate) fn heads_hash(chains: &[ChainHead]) -> String {
    match chains {
        [] => GENESIS_HASH.to_owned(),
        [only] if only.chain == 0 => only.head.clone(),
        several => {
            let text: String = several
                .iter()
                .map(|c| format!("{} {} {}\n", c.chain, c.entries, c.head))
                .collect();
            hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
        }
    }
}

/// `problem`, naming the chain unless it is chain 0 (the only chain of most logs).
fn in_chain(chain: i64, problem: String) -> String {
    if chain == 0 {
        problem
    } else {
        format!("chain {chain}: {problem}")
    }
}

/// Checks entries handed over in log order (chain by chain, each in sequence): sequence
/// numbers from 1 without gaps, links and hashes, each chain on its own.
struct Walk {
    chains: Vec<ChainHead>,
    expected_seq: i64,
    prev: String,
    entries: u64,
    first_break: Option<ChainBreak>,
}

impl Walk {
    fn new() -> Self {
        Self {
            chains: Vec::new(),
            expected_seq: 1,
            prev: GENESIS_HASH.to_owned(),
            entries: 0,
            first_break: None,
        }
    }

    fn visit(&mut self, e: &AuditEntry) {
        self.entries += 1;
        if self.chains.last().is_none_or(|c| c.chain != e.chain) {
            self.chains.push(ChainHead {
                chain: e.chain,
                entries: 0,
                head: GENESIS_HASH.to_owned(),
            });
            self.expected_seq = 1;
            GENESIS_HASH.clone_into(&mut self.prev);
        }
        if let Some(head) = self.chains.last_mut() {
            head.entries = e.seq;
            head.head.clone_from(&e.hash);
        }
        if self.first_break.is_some() {
            return;
        }
        let problem = if e.seq != self.expected_seq {
            Some(format!(
                "entry {} is missing (found {})",
                self.expected_seq, e.seq
            ))
        } else if e.prev_hash != self.prev {
            Some("link to the previous entry does not match".to_owned())
        } else if chain_hash(&e.prev_hash, e.seq, &e.entry) != e.hash {
            Some("entry content does not match its hash (altered)".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            self.first_break = Some(ChainBreak {
                chain: e.chain,
                seq: e.seq,
                problem: in_chain(e.chain, problem),
            });
        }
        self.expected_seq = e.seq + 1;
        self.prev.clone_from(&e.hash);
    }

    fn finish(self) -> AuditReport {
        AuditReport {
            entries: self.entries,
            head: heads_hash(&self.chains),
            chains: self.chains,
            first_break: self.first_break,
        }
    }
}

/// Walks the whole log and checks, chain by chain, sequence numbers, links and hashes.
pub fn verify(store: &dyn Store) -> Result<AuditReport, StoreError> {
    let mut walk = Walk::new();
    read_tx(store, |tx| tx.for_each_audit(&mut |e| walk.visit(&e)))?;
    Ok(walk.finish())
}

/// The format (and signature context) of checkpoints of a log that is one chain 0.
pub(crate) const CHECKPOINT_FORMAT: &str = "herald-audit-checkpoint-v1";

/// The format of checkpoints of a log of several chains: also signs each chain's head.
pub(crate) const CHECKPOINT_FORMAT_CHAINS: &str = "herald-audit-checkpoint-v2";

/// A signed statement of the audit log's head: "the log had `entries` entries, the last with
/// hash `head`, at `time`" (format v1, a log of one chain), or "... and these chains with
/// these heads" (format v2). Kept outside the CA, it lets [`verify_against`] detect a log cut
/// or rewritten after it was taken.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// [`CHECKPOINT_FORMAT`], or [`CHECKPOINT_FORMAT_CHAINS`] for several chains.
    pub format: String,
    /// Number of entries covered (v1: the sequence number of the head; 0 for an empty log;
    /// v2: of all chains).
    pub entries: i64,
    /// v1: hash of entry `entries` (hex); v2: [`heads_hash`] of `chains`.
    pub head: String,
    /// v2 only: the head of each chain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chains: Vec<ChainHead>,
    /// When the checkpoint was signed, Unix seconds.
    pub time: i64,
    /// The audit key's Ed25519 public key (hex).
    pub public_key: String,
    /// Ed25519 signature (hex) over [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    /// The signed bytes: format, entries, head and time, one per line, then (v2) one line
    /// `CHAIN ENTRIES HEAD` per chain.
    fn message(format: &str, entries: i64, head: &str, time: i64, chains: &[ChainHead]) -> Vec<u8> {
        let mut text = format!("{format}\n{entries}\n{head}\n{time}\n");
        for c in chains {
            text.push_str(&format!("{} {} {}\n", c.chain, c.entries, c.head));
        }
        text.into_bytes()
    }

    /// The heads this checkpoint vouches for: v1 speaks of chain 0 alone.
    fn heads(&self) -> Vec<ChainHead> {
        if self.format == CHECKPOINT_FORMAT {
            vec![ChainHead {
                chain: 0,
                entries: self.entries,
                head: self.head.clone(),
            }]
        } else {
            self.chains.clone()
        }
    }

    /// Checks the format and the signature; with `trusted_key`, also that this key signed it.
    pub fn check_signature(&self, trusted_key: Option<&[u8]>) -> Result<(), String> {
        let consistent = match self.format.as_str() {
            CHECKPOINT_FORMAT => self.chains.is_empty(),
            CHECKPOINT_FORMAT_CHAINS => {
                !self.chains.is_empty()
                    && self.head == heads_hash(&self.chains)
                    && self.entries == self.chains.iter().map(|c| c.entries).sum::<i64>()
            }
            _ => {
                return Err(format!(
                    "not a Herald audit checkpoint (format {:?})",
                    self.format
                ))
            }
        };
        if !consistent {
            return Err("the checkpoint's chains do not match its head and entries".to_owned());
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
                &Self::message(
                    &self.format,
                    self.entries,
                    &self.head,
                    self.time,
                    &self.chains,
                ),
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

    /// Verifies the log and signs a checkpoint of its heads. A broken log is not signed.
    pub(crate) fn checkpoint(
        &self,
        store: &dyn Store,
    ) -> Result<Result<Checkpoint, ChainBreak>, StoreError> {
        self.sign(verify(store)?)
    }

    /// Signs a checkpoint of a verified log's heads, unless the log is broken.
    fn sign(&self, report: AuditReport) -> Result<Result<Checkpoint, ChainBreak>, StoreError> {
        if let Some(broken) = report.first_break {
            return Ok(Err(broken));
        }
        let entries = i64::try_from(report.entries)
            .map_err(|_| StoreError::OutOfRange("the audit log's length".into()))?;
        let time = crate::model::time::now_unix();
        // One chain 0 (or none): v1, as before chains existed; several: v2 with every head.
        let (format, chains) = if report.chains.iter().all(|c| c.chain == 0) {
            (CHECKPOINT_FORMAT, Vec::new())
        } else {
            (CHECKPOINT_FORMAT_CHAINS, report.chains)
        };
        let message = Checkpoint::message(format, entries, &report.head, time, &chains);
        Ok(Ok(Checkpoint {
            format: format.to_owned(),
            entries,
            head: report.head,
            chains,
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

/// Verifies the log, then holds each chain against the checkpoint (whose signature the
/// caller has checked): a chain with fewer entries than the checkpoint names (or missing) was
/// truncated; a chain whose entry at the checkpoint's position has another hash was rewritten
/// (even if recomputed since).
pub fn verify_against(
    store: &dyn Store,
    checkpoint: &Checkpoint,
) -> Result<AuditReport, StoreError> {
    let mut held = HeldAgainst::new(checkpoint);
    read_tx(store, |tx| tx.for_each_audit(&mut |e| held.visit(&e)))?;
    Ok(held.finish())
}

/// A [`Walk`] that also notes the hashes at a checkpoint's positions.
struct HeldAgainst<'c> {
    checkpoint: &'c Checkpoint,
    heads: Vec<ChainHead>,
    /// The hash found at each checkpointed position.
    found: Vec<Option<String>>,
    walk: Walk,
}

impl<'c> HeldAgainst<'c> {
    fn new(checkpoint: &'c Checkpoint) -> Self {
        let heads = checkpoint.heads();
        let found = heads
            .iter()
            .map(|h| (h.entries == 0).then(|| GENESIS_HASH.to_owned()))
            .collect();
        Self {
            checkpoint,
            heads,
            found,
            walk: Walk::new(),
        }
    }

    fn visit(&mut self, e: &AuditEntry) {
        for (head, found) in self.heads.iter().zip(self.found.iter_mut()) {
            if e.chain == head.chain && e.seq == head.entries {
                *found = Some(e.hash.clone());
            }
        }
        self.walk.visit(e);
    }

    fn finish(self) -> AuditReport {
        let mut report = self.walk.finish();
        if report.first_break.is_none() {
            report.first_break = held_against(&report, self.checkpoint, &self.heads, &self.found);
        }
        report
    }
}

/// The first chain of `heads` that `report`'s log no longer holds as the checkpoint saw it.
fn held_against(
    report: &AuditReport,
    checkpoint: &Checkpoint,
    heads: &[ChainHead],
    at_checkpoint: &[Option<String>],
) -> Option<ChainBreak> {
    let when = crate::model::time::format_time(checkpoint.time);
    heads.iter().zip(at_checkpoint).find_map(|(head, found)| {
        let entries = report
            .chains
            .iter()
            .find(|c| c.chain == head.chain)
            .map_or(0, |c| c.entries);
        if entries < head.entries {
            Some(ChainBreak {
                chain: head.chain,
                seq: entries + 1,
                problem: in_chain(
                    head.chain,
                    format!(
                        "the log was truncated: the checkpoint of {when} covers {} entries, only {entries} remain",
                        head.entries
                    ),
                ),
            })
        } else if found.as_deref() != Some(head.head.as_str()) {
            Some(ChainBreak {
                chain: head.chain,
                seq: head.entries,
                problem: in_chain(
                    head.chain,
                    format!(
                        "the log was rewritten: entry {} does not match the checkpoint of {when}",
                        head.entries
                    ),
                ),
            })
        } else {
            None
        }
    })
}

/// Visits the entries with `from <= seq` (in every chain), at most `limit` of them, in order.
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

    /// A valid chain `chain` of `n` entries, as a server appending to it writes them.
    fn chain_entries(chain: i64, n: i64) -> Vec<AuditEntry> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let entry = NewAuditEntry {
                    time: 1,
                    actor: format!("server-{chain}"),
                    action: "issue".into(),
                    details: format!("{{\"seq\":{seq}}}"),
                };
                let hash = chain_hash(&prev, seq, &entry);
                AuditEntry {
                    chain,
                    seq,
                    entry,
                    prev_hash: std::mem::replace(&mut prev, hash.clone()),
                    hash,
                }
            })
            .collect()
    }

    fn walk(entries: &[AuditEntry]) -> AuditReport {
        let mut walk = Walk::new();
        entries.iter().for_each(|e| walk.visit(e));
        walk.finish()
    }

    fn held(entries: &[AuditEntry], checkpoint: &Checkpoint) -> AuditReport {
        let mut held = HeldAgainst::new(checkpoint);
        entries.iter().for_each(|e| held.visit(e));
        held.finish()
    }

    #[test]
    fn chains_of_several_servers_verified_each_on_its_own() {
        let log = [chain_entries(0, 3), chain_entries(1, 2)].concat();
        let report = walk(&log);
        assert_eq!(report.first_break, None);
        assert_eq!(report.entries, 5);
        assert_eq!(
            report
                .chains
                .iter()
                .map(|c| (c.chain, c.entries))
                .collect::<Vec<_>>(),
            [(0, 3), (1, 2)]
        );
        assert_eq!(report.head, heads_hash(&report.chains));
        assert_ne!(report.head, log[2].hash, "not one chain's head");
    }

    #[test]
    fn altered_entry_in_second_chain_detected_and_named() {
        let mut log = [chain_entries(0, 3), chain_entries(1, 3)].concat();
        log[4].entry.actor = "mallory".into();
        let broken = walk(&log).first_break.unwrap();
        assert_eq!((broken.chain, broken.seq), (1, 2));
        assert!(
            broken.problem.starts_with("chain 1: "),
            "{}",
            broken.problem
        );
        // A chain that starts after its first entry was removed is broken too.
        let log = [chain_entries(0, 2), chain_entries(1, 3)[1..].to_vec()].concat();
        let broken = walk(&log).first_break.unwrap();
        assert_eq!((broken.chain, broken.seq), (1, 2));
        assert!(
            broken.problem.contains("entry 1 is missing"),
            "{}",
            broken.problem
        );
    }

    #[test]
    fn checkpoint_of_one_chain_keeps_the_first_format() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = signer(dir.path())
            .sign(walk(&chain_entries(0, 4)))
            .unwrap()
            .unwrap();
        assert_eq!(checkpoint.format, CHECKPOINT_FORMAT);
        assert!(checkpoint.chains.is_empty());
        assert_eq!(checkpoint.entries, 4);
        let json = serde_json::to_value(&checkpoint).unwrap();
        assert!(json.get("chains").is_none(), "{json}");
    }

    #[test]
    fn truncated_or_dropped_chain_detected_against_checkpoint_of_several_chains() {
        let dir = tempfile::tempdir().unwrap();
        let signer = signer(dir.path());
        let log = [
            chain_entries(0, 3),
            chain_entries(1, 4),
            chain_entries(2, 2),
        ]
        .concat();
        let checkpoint = signer.sign(walk(&log)).unwrap().unwrap();
        assert_eq!(checkpoint.format, CHECKPOINT_FORMAT_CHAINS);
        assert_eq!(checkpoint.entries, 9);
        assert_eq!(
            checkpoint.check_signature(Some(signer.public_key())),
            Ok(())
        );
        assert_eq!(held(&log, &checkpoint).first_break, None);
        // Entries appended to any chain after the checkpoint are fine.
        let longer = [
            chain_entries(0, 5),
            chain_entries(1, 4),
            chain_entries(2, 3),
        ]
        .concat();
        assert_eq!(held(&longer, &checkpoint).first_break, None);
        // Chain 1 cut after its second entry: the chain alone still verifies.
        let cut = [
            chain_entries(0, 3),
            chain_entries(1, 2),
            chain_entries(2, 2),
        ]
        .concat();
        assert_eq!(walk(&cut).first_break, None, "the chains alone cannot tell");
        let broken = held(&cut, &checkpoint).first_break.unwrap();
        assert_eq!((broken.chain, broken.seq), (1, 3));
        assert!(broken.problem.contains("truncated"), "{}", broken.problem);
        // Chain 2 removed whole.
        let dropped = [chain_entries(0, 3), chain_entries(1, 4)].concat();
        let broken = held(&dropped, &checkpoint).first_break.unwrap();
        assert_eq!((broken.chain, broken.seq), (2, 1));
        assert!(broken.problem.contains("truncated"), "{}", broken.problem);
        // Chain 1 rewritten and recomputed: same length, another hash.
        let mut rewritten = chain_entries(1, 4);
        rewritten.iter_mut().for_each(|e| e.entry.time = 2);
        let mut prev = GENESIS_HASH.to_owned();
        for e in &mut rewritten {
            e.prev_hash.clone_from(&prev);
            e.hash = chain_hash(&e.prev_hash, e.seq, &e.entry);
            prev.clone_from(&e.hash);
        }
        let log = [chain_entries(0, 3), rewritten, chain_entries(2, 2)].concat();
        assert_eq!(walk(&log).first_break, None, "the chains alone cannot tell");
        let broken = held(&log, &checkpoint).first_break.unwrap();
        assert_eq!((broken.chain, broken.seq), (1, 4));
        assert!(broken.problem.contains("rewritten"), "{}", broken.problem);
    }

    #[test]
    fn checkpoint_of_several_chains_with_altered_heads_refused() {
        let dir = tempfile::tempdir().unwrap();
        let signer = signer(dir.path());
        let log = [chain_entries(0, 3), chain_entries(1, 4)].concat();
        let checkpoint = signer.sign(walk(&log)).unwrap().unwrap();
        // A lower count for chain 1 would let a truncation pass: the head no longer matches.
        let mut lowered = checkpoint.clone();
        lowered.chains[1].entries = 2;
        assert!(lowered.check_signature(None).is_err());
        // Recomputing head and entries does not help: the signature covers every chain.
        lowered.head = heads_hash(&lowered.chains);
        lowered.entries = 5;
        let refused = lowered.check_signature(None).unwrap_err();
        assert!(refused.contains("signature is invalid"), "{refused}");
        // A chain left out.
        let mut fewer = checkpoint.clone();
        fewer.chains.pop();
        assert!(fewer.check_signature(None).is_err());
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
