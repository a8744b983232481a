//! A small in-memory repository builder for the scenario tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::BTreeMap;

use herald_manifest::{
    sign_target, with_release_signatures, Ed25519Signer, Envelope, MetaFile, PublicKey,
    ReleaseKeys, RoleKeys, Root, Signer, Snapshot, TargetFile, TargetPath, Targets, Timestamp,
};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

/// A fixed `now` for every test.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap()
}

pub fn in_days(days: i64) -> OffsetDateTime {
    now() + Duration::days(days)
}

/// An Ed25519 signer from a one-byte seed pattern (PKCS#8 v1 document built by hand).
pub fn key(seed: u8) -> Ed25519Signer {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&[seed; 32]);
    Ed25519Signer::from_pkcs8_der(&der).unwrap()
}

pub fn sign(value: &impl serde::Serialize, signers: &[&dyn Signer]) -> Vec<u8> {
    let mut env = Envelope::from_typed(value).unwrap();
    for s in signers {
        env.sign(*s).unwrap();
    }
    env.to_canonical_bytes().unwrap()
}

pub fn sign_value(value: &Value, signers: &[&dyn Signer]) -> Vec<u8> {
    let mut env = Envelope::new(value.clone());
    for s in signers {
        env.sign(*s).unwrap();
    }
    env.to_canonical_bytes().unwrap()
}

/// Keys of a repository: root, targets, snapshot, timestamp, release.
pub struct Keys {
    pub root: Ed25519Signer,
    pub targets: Ed25519Signer,
    pub snapshot: Ed25519Signer,
    pub timestamp: Ed25519Signer,
    pub release: Ed25519Signer,
}

impl Keys {
    pub fn new() -> Self {
        Keys {
            root: key(1),
            targets: key(2),
            snapshot: key(3),
            timestamp: key(4),
            release: key(5),
        }
    }
}

pub fn role_keys(signers: &[&Ed25519Signer], threshold: u32) -> RoleKeys {
    RoleKeys {
        keyids: signers.iter().map(|s| s.key_id().clone()).collect(),
        threshold,
    }
}

pub fn keymap(signers: &[&Ed25519Signer]) -> BTreeMap<herald_manifest::KeyId, PublicKey> {
    signers
        .iter()
        .map(|s| (s.key_id().clone(), s.public_key().clone()))
        .collect()
}

/// Root v`version` with one key per role and, when `with_release`, the release key.
pub fn root(keys: &Keys, version: u64, with_release: bool) -> Root {
    let mut root = Root::new(
        version,
        in_days(365),
        keymap(&[&keys.root, &keys.targets, &keys.snapshot, &keys.timestamp]),
        BTreeMap::from([
            ("root".to_owned(), role_keys(&[&keys.root], 1)),
            ("targets".to_owned(), role_keys(&[&keys.targets], 1)),
            ("snapshot".to_owned(), role_keys(&[&keys.snapshot], 1)),
            ("timestamp".to_owned(), role_keys(&[&keys.timestamp], 1)),
        ]),
    );
    if with_release {
        root.release = Some(ReleaseKeys {
            keys: keymap(&[&keys.release]),
            threshold: 1,
        });
    }
    root
}

pub fn target_entry(
    path: &str,
    content: &[u8],
    release: Option<&Ed25519Signer>,
) -> (TargetPath, TargetFile) {
    let path = TargetPath::new(path).unwrap();
    let sha = herald_manifest::sha256_hex(content);
    let custom = release.map(|r| {
        let sigs = sign_target(&[r as &dyn Signer], &path, content.len() as u64, &sha).unwrap();
        with_release_signatures(None, &sigs)
    });
    let entry = TargetFile {
        length: content.len() as u64,
        hashes: BTreeMap::from([("sha256".to_owned(), sha)]),
        custom,
    };
    (path, entry)
}

/// A signed repository, all at version `version`, with one target `a/file.txt`.
pub struct Repo {
    pub root: Vec<u8>,
    pub targets: Vec<u8>,
    pub snapshot: Vec<u8>,
    pub timestamp: Vec<u8>,
}

pub const CONTENT: &[u8] = b"release payload";

pub fn targets(version: u64, keys: &Keys, with_release: bool) -> Targets {
    let mut t = Targets::new(version, in_days(90));
    let (path, entry) = target_entry("a/file.txt", CONTENT, with_release.then_some(&keys.release));
    t.targets.insert(path, entry);
    t
}

pub fn snapshot(version: u64, targets_bytes: &[u8], targets_version: u64) -> Snapshot {
    Snapshot::new(
        version,
        in_days(7),
        BTreeMap::from([(
            "targets.json".to_owned(),
            MetaFile::of_bytes(targets_version, targets_bytes),
        )]),
    )
}

pub fn timestamp(version: u64, snapshot_bytes: &[u8], snapshot_version: u64) -> Timestamp {
    Timestamp::new(
        version,
        in_days(1),
        MetaFile::of_bytes(snapshot_version, snapshot_bytes),
    )
}

pub fn repo(keys: &Keys, version: u64, with_release: bool) -> Repo {
    let root = sign(&root(keys, 1, with_release), &[&keys.root]);
    let targets = sign(&targets(version, keys, with_release), &[&keys.targets]);
    let snapshot = sign(&snapshot(version, &targets, version), &[&keys.snapshot]);
    let timestamp = sign(&timestamp(version, &snapshot, version), &[&keys.timestamp]);
    Repo {
        root,
        targets,
        snapshot,
        timestamp,
    }
}
