//! Any bytes as root, timestamp, snapshot, targets or delegated targets metadata, and as a
//! target's content: the verifier returns an error or a verdict, never panics.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use herald_manifest::{
    DelegatedRole, Delegations, Ed25519Signer, Envelope, MetaFile, ReleaseKeys, RoleKeys, Root,
    Signer, Snapshot, TargetPath, Targets, Timestamp, VerifiedRoot, VerifiedSnapshot,
    VerifiedTargets, VerifiedTimestamp,
};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

struct Trusted {
    root: VerifiedRoot,
    timestamp: VerifiedTimestamp,
    snapshot: VerifiedSnapshot,
    targets: VerifiedTargets,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_900_000_000).expect("constant time is valid")
}

fn signer() -> Ed25519Signer {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&[7u8; 32]);
    Ed25519Signer::from_pkcs8_der(&der).expect("fixed key is valid")
}

fn sign<T: serde::Serialize>(value: &T, key: &Ed25519Signer) -> Vec<u8> {
    let mut env = Envelope::from_typed(value).expect("typed metadata serializes");
    env.sign(key).expect("signing works");
    env.to_canonical_bytes().expect("integers only")
}

/// A small valid repository, one key for every role, so that fuzzed input reaches every
/// verification step.
fn trusted() -> &'static Trusted {
    static TRUSTED: OnceLock<Trusted> = OnceLock::new();
    TRUSTED.get_or_init(|| {
        let key = signer();
        let id = key.key_id().clone();
        let keys = BTreeMap::from([(id.clone(), key.public_key().clone())]);
        let role = RoleKeys {
            keyids: vec![id.clone()],
            threshold: 1,
        };
        let roles = ["root", "targets", "snapshot", "timestamp"]
            .into_iter()
            .map(|r| (r.to_owned(), role.clone()))
            .collect();
        let expires = now() + time::Duration::days(1);
        let mut root = Root::new(1, expires, keys.clone(), roles);
        root.release = Some(ReleaseKeys {
            keys: keys.clone(),
            threshold: 1,
        });
        let root = VerifiedRoot::trust_anchor(&sign(&root, &key)).expect("valid root");
        let ts = Timestamp::new(1, expires, MetaFile::version(1));
        let timestamp = root
            .verify_timestamp(&sign(&ts, &key), None, now())
            .expect("valid");
        let meta = BTreeMap::from([
            ("targets.json".to_owned(), MetaFile::version(1)),
            ("fuzzed.json".to_owned(), MetaFile::version(1)),
        ]);
        let snap = sign(&Snapshot::new(1, expires, meta), &key);
        let snapshot = root
            .verify_snapshot(&snap, &timestamp, None, now())
            .expect("valid");
        let mut targets = Targets::new(1, expires);
        targets.delegations = Some(Delegations {
            keys,
            roles: vec![DelegatedRole {
                name: "fuzzed".into(),
                keyids: vec![id],
                threshold: 1,
                terminating: false,
                paths: Some(vec!["*".into()]),
                path_hash_prefixes: None,
            }],
        });
        let targets = root
            .verify_targets(&sign(&targets, &key), &snapshot, now())
            .expect("valid");
        Trusted {
            root,
            timestamp,
            snapshot,
            targets,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let t = trusted();
    let _ = VerifiedRoot::trust_anchor(data);
    let _ = t.root.verify_next_root(data);
    let _ = t.root.verify_timestamp(data, Some(&t.timestamp), now());
    let _ = t
        .root
        .verify_snapshot(data, &t.timestamp, Some(&t.snapshot), now());
    let _ = t.root.verify_targets(data, &t.snapshot, now());
    if let Ok(delegated) = t
        .targets
        .verify_delegated("fuzzed", data, &t.snapshot, now())
    {
        for path in delegated.paths() {
            // Every entry was checked when the metadata was read: each one reads back.
            assert!(delegated.target(path).is_some(), "{path} listed but unreadable");
            let _ = t.root.verify_target_content(&delegated, path, data);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(path) = TargetPath::new(text) {
            let _ = t.targets.delegations_for(&path).count();
            let _ = t.root.verify_target_content(&t.targets, &path, data);
        }
    }
});
