//! Scenario tests for how verified targets metadata keeps its listing: an index into the
//! verified bytes, each entry read when looked up. Paths listed twice, unknown members,
//! malformed entries, missing paths and non-canonical documents behave as they do when the
//! whole document is read into typed values.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use herald_manifest::{
    envelope_canonical_bytes, sign_canonical, to_canonical_bytes, Signer, TargetPath, VerifiedRoot,
    VerifiedSnapshot, VerifyError,
};
use serde_json::{json, Value};

/// A targets document whose `signed` part is `signed` byte for byte, signed over those bytes.
fn targets_document(keys: &Keys, signed: &str) -> Vec<u8> {
    let sigs = sign_canonical(signed.as_bytes(), &[&keys.targets as &dyn Signer]).unwrap();
    envelope_canonical_bytes(&sigs, signed.as_bytes()).unwrap()
}

/// A trusted root (release keys when `with_release`) and a snapshot listing `targets`.
fn chain(keys: &Keys, targets: &[u8], with_release: bool) -> (VerifiedRoot, VerifiedSnapshot) {
    let root =
        VerifiedRoot::trust_anchor(&sign(&root(keys, 1, with_release), &[&keys.root])).unwrap();
    let snap = sign(&snapshot(1, targets, 1), &[&keys.snapshot]);
    let ts = sign(&timestamp(1, &snap, 1), &[&keys.timestamp]);
    let ts = root.verify_timestamp(&ts, None, now()).unwrap();
    let snap = root.verify_snapshot(&snap, &ts, None, now()).unwrap();
    (root, snap)
}

/// The `signed` part of targets metadata listing `entries` (JSON text of the `targets`
/// member's inside), in canonical member order.
fn signed_text(entries: &str) -> String {
    format!(
        r#"{{"_type":"targets","expires":"{}","spec_version":"1.0.31","targets":{{{entries}}},"version":1}}"#,
        herald_manifest::tuf_time::format(in_days(90))
    )
}

fn entry_text(content: &[u8]) -> String {
    let (_, entry) = target_entry("unused", content, None);
    String::from_utf8(to_canonical_bytes(&serde_json::to_value(entry).unwrap()).unwrap()).unwrap()
}

#[test]
fn target_listed_twice_verifies_with_its_last_entry() {
    let keys = Keys::new();
    let signed = signed_text(&format!(
        r#""a/file.txt":{},"a/file.txt":{}"#,
        entry_text(b"first"),
        entry_text(b"second")
    ));
    let bytes = targets_document(&keys, &signed);
    let (root, snap) = chain(&keys, &bytes, false);
    let targets = root.verify_targets(&bytes, &snap, now()).unwrap();
    let path = TargetPath::new("a/file.txt").unwrap();
    assert_eq!(targets.paths().count(), 1);
    assert_eq!(targets.target(&path).unwrap().length, 6);
    root.verify_target_content(&targets, &path, b"second")
        .unwrap();
    assert!(root
        .verify_target_content(&targets, &path, b"first")
        .is_err());
}

#[test]
fn unknown_members_of_targets_and_entries_are_kept_and_signed() {
    let keys = Keys::new();
    let mut value = serde_json::to_value(targets(1, &keys, true)).unwrap();
    value["x-vendor"] = json!({"note": ["kept", 1]});
    value["targets"]["a/file.txt"]["x-entry-note"] = json!("kept too");
    value["targets"]["a/file.txt"]["custom"]["app"] = json!({"channel": "beta"});
    let bytes = sign_value(&value, &[&keys.targets]);
    let (root, snap) = chain(&keys, &bytes, true);
    let targets = root.verify_targets(&bytes, &snap, now()).unwrap();
    assert_eq!(targets.signed_value(), &value);
    let path = TargetPath::new("a/file.txt").unwrap();
    let entry = targets.target(&path).unwrap();
    assert_eq!(entry.custom.as_ref().unwrap()["app"]["channel"], "beta");
    root.verify_target_content(&targets, &path, CONTENT)
        .unwrap();
    // The unknown member is covered by the signature.
    let mut tampered: Value = serde_json::from_slice(&bytes).unwrap();
    tampered["signed"]["targets"]["a/file.txt"]["x-entry-note"] = json!("changed");
    let tampered = serde_json::to_vec(&tampered).unwrap();
    let (root, snap) = chain(&keys, &tampered, true);
    let err = root.verify_targets(&tampered, &snap, now()).unwrap_err();
    assert!(matches!(err, VerifyError::Threshold { .. }), "{err}");
}

#[test]
fn lookup_of_a_missing_target_finds_nothing() {
    let keys = Keys::new();
    let repo = repo(&keys, 1, true);
    let (root, snap) = chain(&keys, &repo.targets, true);
    let targets = root.verify_targets(&repo.targets, &snap, now()).unwrap();
    for missing in ["a/file.tx", "a/file.txt2", "a", "b/file.txt", "A/file.txt"] {
        let path = TargetPath::new(missing).unwrap();
        assert!(targets.target(&path).is_none(), "{missing}");
        let err = root
            .verify_target_content(&targets, &path, CONTENT)
            .unwrap_err();
        assert!(matches!(err, VerifyError::NotListed(_)), "{err}");
    }
}

#[test]
fn malformed_entry_never_looked_up_still_refuses_the_metadata() {
    let keys = Keys::new();
    for bad in [
        r#"{"length":"six","hashes":{}}"#,
        r#"{"length":6,"hashes":{"sha256":7}}"#,
        r#"{"length":6}"#,
        r#"{"length":6,"hashes":{},"custom":1e400}"#,
        r#"[]"#,
    ] {
        let signed = signed_text(&format!(
            r#""a/file.txt":{},"z/other":{bad}"#,
            entry_text(CONTENT)
        ));
        let bytes = targets_document(&keys, &signed);
        let (root, snap) = chain(&keys, &bytes, false);
        let err = root.verify_targets(&bytes, &snap, now()).unwrap_err();
        assert!(matches!(err, VerifyError::Fields { .. }), "{bad}: {err}");
    }
}

#[test]
fn non_canonical_targets_verify_against_their_canonical_form() {
    // python-tuf writes indented JSON with members in its own order; the signature is over
    // the canonical form, which is computed from the text.
    let keys = Keys::new();
    let value = serde_json::to_value(targets(1, &keys, true)).unwrap();
    let signature = sign_canonical(
        &to_canonical_bytes(&value).unwrap(),
        &[&keys.targets as &dyn Signer],
    )
    .unwrap();
    let pretty =
        serde_json::to_vec_pretty(&json!({"signed": value, "signatures": signature})).unwrap();
    let (root, snap) = chain(&keys, &pretty, true);
    let targets = root.verify_targets(&pretty, &snap, now()).unwrap();
    let path = TargetPath::new("a/file.txt").unwrap();
    root.verify_target_content(&targets, &path, CONTENT)
        .unwrap();
    assert_eq!(targets.bytes(), &pretty[..]);
}

#[test]
fn targets_given_by_value_are_kept_without_a_copy() {
    let keys = Keys::new();
    let repo = repo(&keys, 1, true);
    let (root, snap) = chain(&keys, &repo.targets, true);
    let given = repo.targets.clone();
    let address = given.as_ptr();
    let targets = root.verify_targets(given, &snap, now()).unwrap();
    assert_eq!(targets.bytes(), &repo.targets[..]);
    assert!(std::ptr::eq(targets.bytes().as_ptr(), address));
}
