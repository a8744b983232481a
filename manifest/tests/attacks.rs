//! Scenario tests: each names an attack or fault and checks verification rejects it (or, for
//! the positive scenarios, accepts exactly what it should).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use herald_manifest::{
    ContentDigests, Ed25519Signer, Envelope, HashAlgorithm, MetaFile, Signature, Signer,
    TargetPath, VerifiedRoot, VerifiedTargets, VerifyError,
};
use serde_json::json;

fn verify_all(repo: &Repo) -> Result<(VerifiedRoot, VerifiedTargets), VerifyError> {
    let root = VerifiedRoot::trust_anchor(&repo.root)?;
    root.check_expiry(now())?;
    let ts = root.verify_timestamp(&repo.timestamp, None, now())?;
    let snap = root.verify_snapshot(&repo.snapshot, &ts, None, now())?;
    let targets = root.verify_targets(&repo.targets, &snap, now())?;
    Ok((root, targets))
}

fn file_path() -> TargetPath {
    TargetPath::new("a/file.txt").unwrap()
}

#[test]
fn valid_repository_verifies_with_release_signatures() {
    let keys = Keys::new();
    let repo = repo(&keys, 1, true);
    let (root, targets) = verify_all(&repo).unwrap();
    let verified = root
        .verify_target_content(&targets, &file_path(), CONTENT)
        .unwrap();
    assert_eq!(verified.length(), CONTENT.len() as u64);
    let digest = ring::digest::digest(&ring::digest::SHA256, CONTENT);
    root.verify_target_digest(
        &targets,
        &file_path(),
        CONTENT.len() as u64,
        digest.as_ref(),
    )
    .unwrap();
}

#[test]
fn plain_tuf_repository_needs_no_release_signatures() {
    let keys = Keys::new();
    let repo = repo(&keys, 1, false);
    let (root, targets) = verify_all(&repo).unwrap();
    assert!(root.release.is_none());
    root.verify_target_content(&targets, &file_path(), CONTENT)
        .unwrap();
}

/// `bytes` (an envelope) with its signature list edited.
fn edit_signatures(bytes: &[u8], edit: impl FnOnce(&mut Vec<serde_json::Value>)) -> Vec<u8> {
    let mut env: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    edit(env["signatures"].as_array_mut().unwrap());
    serde_json::to_vec(&env).unwrap()
}

/// Verifies `timestamp` under `root_meta` (timestamp threshold 2) and expects exactly one
/// distinct valid key.
fn expect_one_key_of_two(keys: &Keys, root_meta: &herald_manifest::Root, timestamp: &[u8]) {
    let root = VerifiedRoot::trust_anchor(&sign(root_meta, &[&keys.root])).unwrap();
    let err = root.verify_timestamp(timestamp, None, now()).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Threshold {
                valid: 1,
                threshold: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn duplicate_signatures_count_once() {
    let keys = Keys::new();
    let mut root_meta = root(&keys, 1, false);
    root_meta.roles.get_mut("timestamp").unwrap().threshold = 2;
    // The same valid signature listed twice.
    let ts = edit_signatures(&repo(&keys, 1, false).timestamp, |sigs| {
        let sig = sigs[0].clone();
        sigs.push(sig);
    });
    expect_one_key_of_two(&keys, &root_meta, &ts);
}

#[test]
fn duplicate_keyids_count_once() {
    // The same key declared under two key IDs, both listed for the role: still one key.
    let keys = Keys::new();
    let mut root_meta = root(&keys, 1, false);
    let alias = herald_manifest::KeyId::new("alias-of-timestamp-key");
    root_meta
        .keys
        .insert(alias.clone(), keys.timestamp.public_key().clone());
    let role = root_meta.roles.get_mut("timestamp").unwrap();
    role.keyids.push(alias.clone());
    role.keyids.push(keys.timestamp.key_id().clone());
    role.threshold = 2;
    let ts = edit_signatures(&repo(&keys, 1, false).timestamp, |sigs| {
        let sig = sigs[0]["sig"].clone();
        sigs.push(json!({"keyid": alias.as_str(), "sig": sig}));
    });
    expect_one_key_of_two(&keys, &root_meta, &ts);
}

#[test]
fn tampered_signature_rejected() {
    let keys = Keys::new();
    let mut repo = repo(&keys, 1, true);
    let mut env: serde_json::Value = serde_json::from_slice(&repo.snapshot).unwrap();
    let sig = env["signatures"][0]["sig"].as_str().unwrap().to_owned();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    env["signatures"][0]["sig"] = json!(format!("{flipped}{}", &sig[1..]));
    repo.snapshot = serde_json::to_vec(&env).unwrap();
    // Timestamp lists the snapshot's hash, so re-sign the timestamp to reach the signature check.
    repo.timestamp = sign(&timestamp(1, &repo.snapshot, 1), &[&keys.timestamp]);
    let err = verify_all(&repo).unwrap_err();
    assert!(
        matches!(err, VerifyError::Threshold { ref role, .. } if role == "snapshot"),
        "{err}"
    );
}

#[test]
fn tampered_signed_field_rejected() {
    let keys = Keys::new();
    let mut repo = repo(&keys, 1, true);
    let mut env: serde_json::Value = serde_json::from_slice(&repo.timestamp).unwrap();
    env["signed"]["expires"] = json!("2099-01-01T00:00:00Z");
    repo.timestamp = serde_json::to_vec(&env).unwrap();
    assert!(matches!(
        verify_all(&repo).unwrap_err(),
        VerifyError::Threshold { .. }
    ));
}

#[test]
fn signature_by_key_of_another_role_rejected() {
    let keys = Keys::new();
    let mut repo = repo(&keys, 1, true);
    repo.timestamp = sign(&timestamp(1, &repo.snapshot, 1), &[&keys.snapshot]);
    assert!(matches!(
        verify_all(&repo).unwrap_err(),
        VerifyError::Threshold { .. }
    ));
}

#[test]
fn expired_timestamp_rejected() {
    let keys = Keys::new();
    let mut repo = repo(&keys, 1, true);
    let mut ts = timestamp(1, &repo.snapshot, 1);
    ts.expires = now();
    repo.timestamp = sign(&ts, &[&keys.timestamp]);
    let err = verify_all(&repo).unwrap_err();
    assert!(
        matches!(err, VerifyError::Expired { ref role, .. } if role == "timestamp"),
        "{err}"
    );
}

#[test]
fn expired_snapshot_rejected() {
    let keys = Keys::new();
    let mut repo = repo(&keys, 1, true);
    let mut snap = snapshot(1, &repo.targets, 1);
    snap.expires = in_days(-1);
    repo.snapshot = sign(&snap, &[&keys.snapshot]);
    repo.timestamp = sign(&timestamp(1, &repo.snapshot, 1), &[&keys.timestamp]);
    let err = verify_all(&repo).unwrap_err();
    assert!(
        matches!(err, VerifyError::Expired { ref role, .. } if role == "snapshot"),
        "{err}"
    );
}

#[test]
fn expired_targets_rejected() {
    let keys = Keys::new();
    let mut t = targets(1, &keys, true);
    t.expires = in_days(-30);
    let mut repo = repo(&keys, 1, true);
    repo.targets = sign(&t, &[&keys.targets]);
    repo.snapshot = sign(&snapshot(1, &repo.targets, 1), &[&keys.snapshot]);
    repo.timestamp = sign(&timestamp(1, &repo.snapshot, 1), &[&keys.timestamp]);
    let err = verify_all(&repo).unwrap_err();
    assert!(
        matches!(err, VerifyError::Expired { ref role, .. } if role == "targets"),
        "{err}"
    );
}

#[test]
fn expired_root_rejected() {
    let keys = Keys::new();
    let mut r = root(&keys, 1, true);
    r.expires = in_days(-1);
    let root = VerifiedRoot::trust_anchor(&sign(&r, &[&keys.root])).unwrap();
    assert!(matches!(
        root.check_expiry(now()),
        Err(VerifyError::Expired { .. })
    ));
}

#[test]
fn rollback_version_rejected() {
    let keys = Keys::new();
    let v2 = repo(&keys, 2, true);
    let v1 = repo(&keys, 1, true);
    let root = VerifiedRoot::trust_anchor(&v2.root).unwrap();
    let trusted = root.verify_timestamp(&v2.timestamp, None, now()).unwrap();
    let err = root
        .verify_timestamp(&v1.timestamp, Some(&trusted), now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Rollback {
                trusted: 2,
                found: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn snapshot_version_rollback_in_timestamp_rejected() {
    let keys = Keys::new();
    let v2 = repo(&keys, 2, true);
    let root = VerifiedRoot::trust_anchor(&v2.root).unwrap();
    let trusted = root.verify_timestamp(&v2.timestamp, None, now()).unwrap();
    // A newer timestamp pointing at an older snapshot.
    let ts3 = sign(&timestamp(3, &v2.snapshot, 1), &[&keys.timestamp]);
    let err = root
        .verify_timestamp(&ts3, Some(&trusted), now())
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::Rollback { ref role, .. } if role == "snapshot"),
        "{err}"
    );
}

#[test]
fn targets_rollback_in_snapshot_rejected() {
    let keys = Keys::new();
    let v2 = repo(&keys, 2, true);
    let root = VerifiedRoot::trust_anchor(&v2.root).unwrap();
    let ts2 = root.verify_timestamp(&v2.timestamp, None, now()).unwrap();
    let snap2 = root
        .verify_snapshot(&v2.snapshot, &ts2, None, now())
        .unwrap();
    // Snapshot 3 lists targets version 1.
    let t1 = sign(&targets(1, &keys, true), &[&keys.targets]);
    let snap3 = sign(&snapshot(3, &t1, 1), &[&keys.snapshot]);
    let ts3 = root
        .verify_timestamp(
            &sign(&timestamp(3, &snap3, 3), &[&keys.timestamp]),
            Some(&ts2),
            now(),
        )
        .unwrap();
    let err = root
        .verify_snapshot(&snap3, &ts3, Some(&snap2), now())
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::Rollback { ref role, .. } if role == "targets.json"),
        "{err}"
    );
}

#[test]
fn mix_and_match_snapshot_version_rejected() {
    // Timestamp says snapshot v2; an attacker serves a validly signed snapshot v1.
    let keys = Keys::new();
    let v1 = repo(&keys, 1, true);
    let root = VerifiedRoot::trust_anchor(&v1.root).unwrap();
    let mut meta = MetaFile::version(2);
    meta.length = None;
    let ts = sign(
        &herald_manifest::Timestamp::new(2, in_days(1), meta),
        &[&keys.timestamp],
    );
    let ts = root.verify_timestamp(&ts, None, now()).unwrap();
    let err = root
        .verify_snapshot(&v1.snapshot, &ts, None, now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Version {
                expected: 2,
                found: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn snapshot_hash_mismatch_rejected() {
    let keys = Keys::new();
    let mut repo = repo(&keys, 1, true);
    // A different, validly signed snapshot of the same version.
    let mut snap = snapshot(1, &repo.targets, 1);
    snap.expires = in_days(6);
    repo.snapshot = sign(&snap, &[&keys.snapshot]);
    let err = verify_all(&repo).unwrap_err();
    assert!(
        matches!(err, VerifyError::Hash { .. } | VerifyError::Length { .. }),
        "{err}"
    );
}

#[test]
fn targets_length_mismatch_rejected() {
    let keys = Keys::new();
    let mut repo = repo(&keys, 1, true);
    repo.targets.push(b' ');
    assert!(matches!(
        verify_all(&repo).unwrap_err(),
        VerifyError::Length { .. }
    ));
}

#[test]
fn wrong_role_type_rejected() {
    let keys = Keys::new();
    let repo = repo(&keys, 1, true);
    let root = VerifiedRoot::trust_anchor(&repo.root).unwrap();
    let err = root
        .verify_timestamp(&repo.snapshot, None, now())
        .unwrap_err();
    assert!(matches!(err, VerifyError::WrongType { .. }), "{err}");
}

#[test]
fn zero_threshold_rejected() {
    let keys = Keys::new();
    let mut r = root(&keys, 1, true);
    r.roles.get_mut("root").unwrap().threshold = 0;
    let err = VerifiedRoot::trust_anchor(&sign(&r, &[&keys.root])).unwrap_err();
    assert!(matches!(err, VerifyError::BadRole { .. }), "{err}");
}

#[test]
fn unsupported_spec_version_rejected() {
    let keys = Keys::new();
    let mut r = root(&keys, 1, true);
    r.spec_version = "2.0.0".into();
    let err = VerifiedRoot::trust_anchor(&sign(&r, &[&keys.root])).unwrap_err();
    assert!(matches!(err, VerifyError::SpecVersion { .. }), "{err}");
}

/// Root version 1 of `keys`, trusted.
fn trusted_v1(keys: &Keys) -> VerifiedRoot {
    VerifiedRoot::trust_anchor(&sign(&root(keys, 1, true), &[&keys.root])).unwrap()
}

/// Root version 2 whose only root key is `new_root_key`.
fn root_v2_with_root_key(keys: &Keys, new_root_key: &Ed25519Signer) -> herald_manifest::Root {
    let mut r2 = root(keys, 2, true);
    r2.keys.insert(
        new_root_key.key_id().clone(),
        new_root_key.public_key().clone(),
    );
    r2.roles.get_mut("root").unwrap().keyids = vec![new_root_key.key_id().clone()];
    r2
}

#[test]
fn root_rotation_signed_by_old_and_new_accepted() {
    let keys = Keys::new();
    let new_root_key = key(9);
    let r2 = root_v2_with_root_key(&keys, &new_root_key);
    let both = sign(&r2, &[&keys.root, &new_root_key]);
    let v2 = trusted_v1(&keys).verify_next_root(&both).unwrap();
    assert_eq!(v2.version, 2);
}

#[test]
fn root_rotation_without_old_threshold_rejected() {
    let keys = Keys::new();
    let attacker = key(66);
    let r2 = root_v2_with_root_key(&keys, &attacker);
    let err = trusted_v1(&keys)
        .verify_next_root(&sign(&r2, &[&attacker]))
        .unwrap_err();
    assert!(matches!(err, VerifyError::Threshold { .. }), "{err}");
}

#[test]
fn root_rotation_without_new_threshold_rejected() {
    let keys = Keys::new();
    let r2 = root_v2_with_root_key(&keys, &key(9));
    let err = trusted_v1(&keys)
        .verify_next_root(&sign(&r2, &[&keys.root]))
        .unwrap_err();
    assert!(matches!(err, VerifyError::Threshold { .. }), "{err}");
}

#[test]
fn root_version_skip_and_replay_rejected() {
    let keys = Keys::new();
    let v1 = VerifiedRoot::trust_anchor(&sign(&root(&keys, 1, true), &[&keys.root])).unwrap();
    let err = v1
        .verify_next_root(&sign(&root(&keys, 3, true), &[&keys.root]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Version {
                expected: 2,
                found: 3,
                ..
            }
        ),
        "{err}"
    );
    let err = v1
        .verify_next_root(&sign(&root(&keys, 1, true), &[&keys.root]))
        .unwrap_err();
    assert!(matches!(err, VerifyError::Rollback { .. }), "{err}");
}

#[test]
fn unknown_fields_preserved_through_verification() {
    let keys = Keys::new();
    let mut value = serde_json::to_value(root(&keys, 1, true)).unwrap();
    value["x-vendor"] = json!({"nested": ["kept", 1, null]});
    value["keys"][keys.root.key_id().as_str()]["x-owner"] = json!("alice");
    let bytes = sign_value(&value, &[&keys.root]);
    let root = VerifiedRoot::trust_anchor(&bytes).unwrap();
    assert_eq!(root.signed_value(), &value);
    assert_eq!(root.bytes(), &bytes[..]);
    // Removing the unknown member breaks the signature: it was covered by it.
    let mut env: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    env["signed"].as_object_mut().unwrap().remove("x-vendor");
    assert!(VerifiedRoot::trust_anchor(&serde_json::to_vec(&env).unwrap()).is_err());
}

#[test]
fn tampered_target_content_rejected() {
    let keys = Keys::new();
    let (root, targets) = verify_all(&repo(&keys, 1, true)).unwrap();
    let err = root
        .verify_target_content(&targets, &file_path(), b"release paylOad")
        .unwrap_err();
    assert!(matches!(err, VerifyError::Hash { .. }), "{err}");
    let err = root
        .verify_target_content(&targets, &file_path(), b"release payload!")
        .unwrap_err();
    assert!(matches!(err, VerifyError::Length { .. }), "{err}");
}

#[test]
fn unlisted_target_rejected() {
    let keys = Keys::new();
    let (root, targets) = verify_all(&repo(&keys, 1, true)).unwrap();
    let err = root
        .verify_target_content(&targets, &TargetPath::new("a/other.txt").unwrap(), CONTENT)
        .unwrap_err();
    assert!(matches!(err, VerifyError::NotListed(_)), "{err}");
}

fn repo_with_target_custom(keys: &Keys, custom: Option<serde_json::Value>) -> Repo {
    let mut t = targets(1, keys, true);
    t.targets.get_mut(&file_path()).unwrap().custom = custom;
    let mut repo = repo(keys, 1, true);
    repo.targets = sign(&t, &[&keys.targets]);
    repo.snapshot = sign(&snapshot(1, &repo.targets, 1), &[&keys.snapshot]);
    repo.timestamp = sign(&timestamp(1, &repo.snapshot, 1), &[&keys.timestamp]);
    repo
}

#[test]
fn missing_release_signature_rejected() {
    // Repository keys alone are not enough when root declares release keys.
    let keys = Keys::new();
    let (root, targets) = verify_all(&repo_with_target_custom(&keys, None)).unwrap();
    let err = root
        .verify_target_content(&targets, &file_path(), CONTENT)
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::ReleaseThreshold { valid: 0, .. }),
        "{err}"
    );
}

#[test]
fn release_signature_by_unknown_key_rejected() {
    let keys = Keys::new();
    let rogue = key(77);
    let (_, entry) = target_entry("a/file.txt", CONTENT, Some(&rogue));
    let (root, targets) = verify_all(&repo_with_target_custom(&keys, entry.custom)).unwrap();
    assert!(root
        .verify_target_content(&targets, &file_path(), CONTENT)
        .is_err());
}

#[test]
fn release_signature_for_other_path_rejected() {
    // A valid release signature for another file, copied onto this one.
    let keys = Keys::new();
    let (_, entry) = target_entry("a/other.txt", CONTENT, Some(&keys.release));
    let (root, targets) = verify_all(&repo_with_target_custom(&keys, entry.custom)).unwrap();
    assert!(matches!(
        root.verify_target_content(&targets, &file_path(), CONTENT),
        Err(VerifyError::ReleaseThreshold { .. })
    ));
}

#[test]
fn duplicate_release_signatures_count_once() {
    let keys = Keys::new();
    let mut r = root(&keys, 1, true);
    r.release.as_mut().unwrap().threshold = 2;
    let (_, entry) = target_entry("a/file.txt", CONTENT, Some(&keys.release));
    let mut custom = entry.custom.unwrap();
    let sig = custom["x-herald-signatures"][0].clone();
    custom["x-herald-signatures"] = json!([sig.clone(), sig]);
    let mut repo = repo_with_target_custom(&keys, Some(custom));
    repo.root = sign(&r, &[&keys.root]);
    let (root, targets) = verify_all(&repo).unwrap();
    assert!(matches!(
        root.verify_target_content(&targets, &file_path(), CONTENT),
        Err(VerifyError::ReleaseThreshold {
            valid: 1,
            threshold: 2,
            ..
        })
    ));
}

#[test]
fn metadata_signature_is_not_a_release_signature() {
    // Domain separation: a signature by the release key over something else never counts.
    let keys = Keys::new();
    let other = keys.release.sign(b"{\"path\":\"a/file.txt\"}").unwrap();
    let custom = json!({"x-herald-signatures": [Signature {
        keyid: keys.release.key_id().clone(),
        sig: hex::encode(other),
    }]});
    let (root, targets) = verify_all(&repo_with_target_custom(&keys, Some(custom))).unwrap();
    assert!(root
        .verify_target_content(&targets, &file_path(), CONTENT)
        .is_err());
}

#[test]
fn delegated_targets_verified_and_matched() {
    let keys = Keys::new();
    let delegate = key(20);
    let mut top = targets(1, &keys, true);
    top.delegations = Some(herald_manifest::Delegations {
        keys: keymap(&[&delegate]),
        roles: vec![herald_manifest::DelegatedRole {
            name: "tools".into(),
            keyids: vec![delegate.key_id().clone()],
            threshold: 1,
            terminating: true,
            paths: Some(vec!["tools/*".into()]),
            path_hash_prefixes: None,
        }],
    });
    let mut tools = herald_manifest::Targets::new(1, in_days(30));
    let (p, e) = target_entry("tools/x", b"x", Some(&keys.release));
    tools.targets.insert(p.clone(), e);
    let top_bytes = sign(&top, &[&keys.targets]);
    let tools_bytes = sign(&tools, &[&delegate]);
    let mut snap = snapshot(1, &top_bytes, 1);
    snap.meta
        .insert("tools.json".into(), MetaFile::of_bytes(1, &tools_bytes));
    let snap_bytes = sign(&snap, &[&keys.snapshot]);
    let ts_bytes = sign(&timestamp(1, &snap_bytes, 1), &[&keys.timestamp]);
    let root = VerifiedRoot::trust_anchor(&sign(&root(&keys, 1, true), &[&keys.root])).unwrap();
    let ts = root.verify_timestamp(&ts_bytes, None, now()).unwrap();
    let snap = root.verify_snapshot(&snap_bytes, &ts, None, now()).unwrap();
    let top = root.verify_targets(&top_bytes, &snap, now()).unwrap();
    assert!(top.target(&p).is_none());
    let roles: Vec<_> = top.delegations_for(&p).map(|r| r.name.clone()).collect();
    assert_eq!(roles, ["tools"]);
    let tools = top
        .verify_delegated("tools", &tools_bytes, &snap, now())
        .unwrap();
    root.verify_target_content(&tools, &p, b"x").unwrap();
    // Signed by the top-level targets key instead of the delegated key: rejected.
    let wrong = sign(
        &herald_manifest::Targets::new(1, in_days(30)),
        &[&keys.targets],
    );
    assert!(top.verify_delegated("tools", &wrong, &snap, now()).is_err());
    assert!(matches!(
        top.verify_delegated("nobody", &tools_bytes, &snap, now()),
        Err(VerifyError::NotDelegated { .. })
    ));
}

#[test]
fn path_traversal_target_name_rejected() {
    let keys = Keys::new();
    let mut value = serde_json::to_value(targets(1, &keys, false)).unwrap();
    value["targets"]["../../etc/passwd"] = json!({"length": 1, "hashes": {"sha256": "00"}});
    let bytes = sign_value(&value, &[&keys.targets]);
    let snap = sign(&snapshot(1, &bytes, 1), &[&keys.snapshot]);
    let ts = sign(&timestamp(1, &snap, 1), &[&keys.timestamp]);
    let root = VerifiedRoot::trust_anchor(&sign(&root(&keys, 1, false), &[&keys.root])).unwrap();
    let ts = root.verify_timestamp(&ts, None, now()).unwrap();
    let snap = root.verify_snapshot(&snap, &ts, None, now()).unwrap();
    let err = root.verify_targets(&bytes, &snap, now()).unwrap_err();
    assert!(matches!(err, VerifyError::Fields { .. }), "{err}");
}

#[test]
fn garbage_bytes_rejected_without_panic() {
    let keys = Keys::new();
    let root = VerifiedRoot::trust_anchor(&sign(&root(&keys, 1, false), &[&keys.root])).unwrap();
    for bytes in [
        &b""[..],
        b"{",
        b"[1]",
        b"{\"signed\":{},\"signatures\":[]}",
        &[0xff, 0xfe],
    ] {
        assert!(root.verify_timestamp(bytes, None, now()).is_err());
    }
    let _ = Envelope::from_slice(b"{\"signed\":{\"a\":1.5},\"signatures\":[]}")
        .unwrap()
        .signed_bytes()
        .unwrap_err();
}

#[test]
fn streamed_target_digest_mismatch_rejected() {
    let keys = Keys::new();
    let (root, targets) = verify_all(&repo(&keys, 1, true)).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, CONTENT);
    let len = CONTENT.len() as u64;
    let err = root
        .verify_target_digest(&targets, &file_path(), len + 1, digest.as_ref())
        .unwrap_err();
    assert!(matches!(err, VerifyError::Length { .. }), "{err}");
    let other = ring::digest::digest(&ring::digest::SHA256, b"other");
    let err = root
        .verify_target_digest(&targets, &file_path(), len, other.as_ref())
        .unwrap_err();
    assert!(matches!(err, VerifyError::Hash { .. }), "{err}");
}

#[test]
fn signatures_checked_in_memory_match_file_verification() {
    // The repository-tool entry points agree with full verification.
    let keys = Keys::new();
    let repo = repo(&keys, 1, true);
    let root = VerifiedRoot::trust_anchor(&repo.root).unwrap();
    let env = Envelope::from_slice(&repo.snapshot).unwrap();
    root.check_envelope_signatures(herald_manifest::RoleType::Snapshot, &env)
        .unwrap();
    root.check_role_signatures(herald_manifest::RoleType::Snapshot, &repo.snapshot)
        .unwrap();
    // The right keys, the wrong role.
    assert!(matches!(
        root.check_envelope_signatures(herald_manifest::RoleType::Timestamp, &env),
        Err(VerifyError::WrongType { .. })
    ));
    let canonical = env.signed_bytes().unwrap();
    assert!(root
        .check_signatures(
            herald_manifest::RoleType::Targets,
            &canonical,
            env.signatures()
        )
        .is_err());
}

#[test]
fn snapshot_rollback_against_trusted_snapshot_rejected() {
    // Even with a timestamp that agrees, a snapshot older than the trusted one is refused.
    let keys = Keys::new();
    let v2 = repo(&keys, 2, true);
    let v1 = repo(&keys, 1, true);
    let root = VerifiedRoot::trust_anchor(&v2.root).unwrap();
    let ts2 = root.verify_timestamp(&v2.timestamp, None, now()).unwrap();
    let trusted = root
        .verify_snapshot(&v2.snapshot, &ts2, None, now())
        .unwrap();
    let ts1 = root.verify_timestamp(&v1.timestamp, None, now()).unwrap();
    let err = root
        .verify_snapshot(&v1.snapshot, &ts1, Some(&trusted), now())
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::Rollback { ref role, trusted: 2, found: 1 } if role == "snapshot"),
        "{err}"
    );
}

#[test]
fn same_version_timestamp_with_other_content_keeps_the_trusted_one() {
    // The repository republishes timestamp v2 naming snapshot v100: the trusted v2 stays.
    let keys = Keys::new();
    let v2 = repo(&keys, 2, true);
    let root = VerifiedRoot::trust_anchor(&v2.root).unwrap();
    let trusted = root.verify_timestamp(&v2.timestamp, None, now()).unwrap();
    let mut other = timestamp(2, &v2.snapshot, 100);
    other.meta.get_mut("snapshot.json").unwrap().length = None;
    let other = sign(&other, &[&keys.timestamp]);
    let kept = root
        .verify_timestamp(&other, Some(&trusted), now())
        .unwrap();
    assert_eq!(kept.bytes(), trusted.bytes());
    assert_eq!(kept.snapshot_meta().unwrap().version, 2);
    // The snapshot the trusted timestamp names still verifies against what was kept.
    root.verify_snapshot(&v2.snapshot, &kept, None, now())
        .unwrap();
}

#[test]
fn same_version_timestamp_is_still_checked_for_signatures_and_expiry() {
    let keys = Keys::new();
    let v2 = repo(&keys, 2, true);
    let root = VerifiedRoot::trust_anchor(&v2.root).unwrap();
    let trusted = root.verify_timestamp(&v2.timestamp, None, now()).unwrap();
    // Signed by the wrong key: rejected, even at the same version.
    let forged = sign(&timestamp(2, &v2.snapshot, 2), &[&keys.snapshot]);
    let err = root
        .verify_timestamp(&forged, Some(&trusted), now())
        .unwrap_err();
    assert!(matches!(err, VerifyError::Threshold { .. }), "{err}");
    // The kept timestamp must not have expired (freeze attack).
    let later = in_days(2);
    let err = root
        .verify_timestamp(&v2.timestamp, Some(&trusted), later)
        .unwrap_err();
    assert!(matches!(err, VerifyError::Expired { .. }), "{err}");
}

/// A repository (plain TUF, or with release keys) whose only target `a/file.txt` is listed
/// with `hashes`, verified up to its targets.
fn verify_with_hashes(
    keys: &Keys,
    with_release: bool,
    hashes: &[(&str, String)],
) -> (VerifiedRoot, VerifiedTargets) {
    let mut t = targets(1, keys, with_release);
    let entry = t.targets.get_mut(&file_path()).unwrap();
    entry.hashes = hashes
        .iter()
        .map(|(a, h)| ((*a).to_owned(), h.clone()))
        .collect();
    let targets_bytes = sign(&t, &[&keys.targets]);
    let snap = sign(&snapshot(1, &targets_bytes, 1), &[&keys.snapshot]);
    let ts = sign(&timestamp(1, &snap, 1), &[&keys.timestamp]);
    let root = sign(&root(keys, 1, with_release), &[&keys.root]);
    verify_all(&Repo {
        root,
        targets: targets_bytes,
        snapshot: snap,
        timestamp: ts,
    })
    .unwrap()
}

fn hex_digest(algorithm: HashAlgorithm, bytes: &[u8]) -> String {
    hex::encode(algorithm.digest(bytes))
}

#[test]
fn target_listing_only_sha512_or_only_sha384_verifies() {
    let keys = Keys::new();
    for algorithm in [HashAlgorithm::Sha512, HashAlgorithm::Sha384] {
        let hashes = [(algorithm.name(), hex_digest(algorithm, CONTENT))];
        // With release signatures: their statement names the content's SHA-256.
        let (root, targets) = verify_with_hashes(&keys, true, &hashes);
        let verified = root
            .verify_target_content(&targets, &file_path(), CONTENT)
            .unwrap();
        assert_eq!(verified.sha256(), herald_manifest::sha256_hex(CONTENT));
        let digests = ContentDigests::of(CONTENT, [algorithm]);
        root.verify_target_digests(&targets, &file_path(), &digests)
            .unwrap();
        // Other content under the same name: rejected by that algorithm.
        let err = root
            .verify_target_content(&targets, &file_path(), b"other content!!")
            .unwrap_err();
        assert!(
            matches!(err, VerifyError::Hash { ref algorithm, .. } if algorithm != "sha256"),
            "{err}"
        );
    }
}

#[test]
fn every_listed_supported_hash_must_match() {
    // SHA-256 right, SHA-512 of other content: rejected, on both paths.
    let keys = Keys::new();
    let hashes = [
        ("sha256", hex_digest(HashAlgorithm::Sha256, CONTENT)),
        (
            "sha512",
            hex_digest(HashAlgorithm::Sha512, b"other content!!"),
        ),
    ];
    let (root, targets) = verify_with_hashes(&keys, false, &hashes);
    let err = root
        .verify_target_content(&targets, &file_path(), CONTENT)
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::Hash { ref algorithm, .. } if algorithm == "sha512"),
        "{err}"
    );
    let digests = ContentDigests::of(CONTENT, [HashAlgorithm::Sha512]);
    let err = root
        .verify_target_digests(&targets, &file_path(), &digests)
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::Hash { ref algorithm, .. } if algorithm == "sha512"),
        "{err}"
    );
    // Only SHA-256 computed: SHA-512 cannot be skipped.
    let digest = HashAlgorithm::Sha256.digest(CONTENT);
    let err = root
        .verify_target_digest(&targets, &file_path(), CONTENT.len() as u64, &digest)
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::DigestNotComputed { ref algorithm, .. } if algorithm == "sha512"),
        "{err}"
    );
}

#[test]
fn target_listing_only_unsupported_hashes_is_refused_with_clear_error() {
    let keys = Keys::new();
    let hashes = [("md5", "00".repeat(16)), ("blake2b-256", "11".repeat(32))];
    let (root, targets) = verify_with_hashes(&keys, false, &hashes);
    let err = root
        .verify_target_content(&targets, &file_path(), CONTENT)
        .unwrap_err();
    assert!(matches!(err, VerifyError::NoSupportedHash { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("blake2b-256, md5") && message.contains("sha512"),
        "{message}"
    );
}

#[test]
fn duplicate_keyid_in_signatures_rejected() {
    // Threshold 1 met by the first entry; the same key ID listed again is still refused.
    let keys = Keys::new();
    let repo = repo(&keys, 1, false);
    let root = VerifiedRoot::trust_anchor(&repo.root).unwrap();
    let duplicated = |bytes: &[u8]| {
        edit_signatures(bytes, |sigs| {
            let sig = sigs[0].clone();
            sigs.push(sig);
        })
    };
    let err = root
        .verify_timestamp(&duplicated(&repo.timestamp), None, now())
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::DuplicateSignature { ref role, .. } if role == "timestamp"),
        "{err}"
    );
    // Another signature value under the same key ID: refused too.
    let ts = edit_signatures(&repo.timestamp, |sigs| {
        let mut sig = sigs[0].clone();
        sig["sig"] = json!("00".repeat(64));
        sigs.push(sig);
    });
    let err = root.verify_timestamp(&ts, None, now()).unwrap_err();
    assert!(
        matches!(err, VerifyError::DuplicateSignature { .. }),
        "{err}"
    );
    // Root (trust anchor and repository-tool checks) follows the same rule.
    let err = VerifiedRoot::trust_anchor(&duplicated(&repo.root)).unwrap_err();
    assert!(
        matches!(err, VerifyError::DuplicateSignature { .. }),
        "{err}"
    );
    let err = root
        .check_role_signatures(
            herald_manifest::RoleType::Timestamp,
            &duplicated(&repo.timestamp),
        )
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::DuplicateSignature { .. }),
        "{err}"
    );
}
