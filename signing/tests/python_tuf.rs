//! Interoperability with python-tuf (PyPI `tuf`, see tests/requirements.txt): its client
//! reads repositories made by `herald-sign` over real HTTP, and the manifest library reads
//! repositories made by its Metadata API.
//!
//! Python comes from HERALD_TEST_PYTHON, or `.venv/bin/python` in the workspace (both set up
//! by `scripts/test`).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use herald_manifest::{TargetPath, VerifiedRoot, VerifyError};

fn python() -> PathBuf {
    let path = std::env::var_os("HERALD_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/python"));
    assert!(
        path.exists(),
        "{} missing: run scripts/install-test-deps (or set HERALD_TEST_PYTHON)",
        path.display()
    );
    path
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// Runs python-tuf's client at the time the test repositories are signed ([`NOW`]): it reads
/// the system clock through the C library, which faketime sets (the clock then runs on from
/// there), so expiry is checked exactly as on the day of signing whatever today's date is.
fn ngclient(repo: &Path, work: &Path, targets: &[&str]) -> Output {
    let signing_time = format!("@{}", NOW.trim_end_matches('Z').replace('T', " "));
    Command::new("faketime")
        .env("TZ", "UTC")
        .args(["-f", &signing_time])
        .arg(python())
        .arg(script("ngclient_download.py"))
        .arg(repo)
        .arg(work)
        .args(targets)
        .output()
        .unwrap()
}

#[test]
fn python_tuf_client_downloads_from_herald_sign_repository() {
    let (dir, repo, _) = fresh_repo();
    // Rotate the root key (signed by old and new key) and release again, so the client also
    // walks a root rotation and a second targets version.
    let new_root = dir.path().join("new-root.pem").display().to_string();
    ok(&["keygen", "--out", &new_root]);
    let r = repo.display().to_string();
    ok(&[
        "rotate-root",
        "--repo",
        &r,
        "--root-pub",
        &format!("{new_root}.pub"),
        "--key",
        &new_root,
        "--key",
        &example("root.key.pem"),
    ]);
    let from2 = dir.path().join("rel2");
    release_folder(&from2, &[("app/readme.txt", b"second release\n")]);
    release(&repo, &from2);

    let paths: Vec<&str> = FILES.iter().map(|(p, _)| *p).collect();
    let out = ngclient(&repo, &dir.path().join("client"), &paths);
    assert!(
        out.status.success(),
        "python-tuf refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["root_version"], 2);
    assert_eq!(report["targets_version"], 2);
    for (path, content) in client_read(&repo) {
        assert_eq!(
            report["downloaded"][&path],
            herald_manifest::sha256_hex(&content),
            "{path}"
        );
    }
}

#[test]
fn python_tuf_client_rejects_tampered_target() {
    let (dir, repo, _) = fresh_repo();
    let stored = files_under(&repo.join("targets"))
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".top.cfg"))
        .unwrap();
    let path = repo.join("targets").join(stored);
    let mut bytes = fs::read(&path).unwrap();
    bytes[0] ^= 0x20;
    fs::write(&path, bytes).unwrap();
    let out = ngclient(&repo, &dir.path().join("client"), &["top.cfg"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hash") || err.contains("Hash"), "{err}");
}

#[test]
fn python_tuf_client_rejects_tampered_timestamp_signature() {
    let (dir, repo, _) = fresh_repo();
    let path = repo.join("metadata/timestamp.json");
    let text = fs::read_to_string(&path).unwrap();
    let i = text.find("\"sig\":\"").unwrap() + 7;
    let mut bytes = text.into_bytes();
    bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
    fs::write(&path, bytes).unwrap();
    let out = ngclient(&repo, &dir.path().join("client"), &["top.cfg"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UnsignedMetadataError"), "{err}");
}

/// A repository made by python-tuf's Metadata API, in a temporary folder.
fn python_tuf_repo() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pyrepo");
    let status = Command::new(python())
        .arg(script("make_tuf_repo.py"))
        .arg(&out)
        .arg(now().unix_timestamp().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    (dir, out)
}

fn read(repo: &Path, rel: &str) -> Vec<u8> {
    fs::read(repo.join(rel)).unwrap()
}

fn trusted_root(repo: &Path) -> VerifiedRoot {
    let v1 = VerifiedRoot::trust_anchor(&read(repo, "metadata/1.root.json")).unwrap();
    let v2 = v1
        .verify_next_root(&read(repo, "metadata/2.root.json"))
        .unwrap();
    v2.check_expiry(now()).unwrap();
    v2
}

#[test]
fn manifest_verifies_python_tuf_repository() {
    let (_dir, repo) = python_tuf_repo();
    let root = trusted_root(&repo);
    assert_eq!(root.version, 2);
    // Unknown members survive verification.
    assert_eq!(root.signed_value()["x-vendor-note"]["kept"][1], "two");
    let ts = root
        .verify_timestamp(&read(&repo, "metadata/timestamp.json"), None, now())
        .unwrap();
    // Snapshot signed with RSASSA-PSS.
    let snap = root
        .verify_snapshot(&read(&repo, "metadata/1.snapshot.json"), &ts, None, now())
        .unwrap();
    // Targets signed with ECDSA P-256.
    let targets = root
        .verify_targets(read(&repo, "metadata/1.targets.json"), &snap, now())
        .unwrap();
    let file = TargetPath::new("file.txt").unwrap();
    let entry = targets.target(&file).unwrap();
    let stored = read(
        &repo,
        &format!("targets/{}", file.with_hash_prefix(entry.sha256().unwrap())),
    );
    root.verify_target_content(&targets, &file, &stored)
        .unwrap();
    // Delegated role, Ed25519.
    let tool = TargetPath::new("tools/tool.bin").unwrap();
    let role = targets.delegations_for(&tool).next().unwrap().name.clone();
    let tools = targets
        .verify_delegated(&role, read(&repo, "metadata/1.tools.json"), &snap, now())
        .unwrap();
    let entry = tools.target(&tool).unwrap();
    let stored = read(
        &repo,
        &format!("targets/{}", tool.with_hash_prefix(entry.sha256().unwrap())),
    );
    root.verify_target_content(&tools, &tool, &stored).unwrap();
}

#[test]
fn python_tuf_repository_tampered_signature_rejected() {
    let (_dir, repo) = python_tuf_repo();
    let root = trusted_root(&repo);
    let ts = root
        .verify_timestamp(&read(&repo, "metadata/timestamp.json"), None, now())
        .unwrap();
    let snap = root
        .verify_snapshot(&read(&repo, "metadata/1.snapshot.json"), &ts, None, now())
        .unwrap();
    let mut env: serde_json::Value =
        serde_json::from_slice(&read(&repo, "metadata/1.targets.json")).unwrap();
    let sig = env["signatures"][0]["sig"].as_str().unwrap().to_owned();
    let mid = sig.len() / 2;
    let flipped = if &sig[mid..mid + 1] == "a" { "b" } else { "a" };
    env["signatures"][0]["sig"] = format!("{}{flipped}{}", &sig[..mid], &sig[mid + 1..]).into();
    let err = root
        .verify_targets(serde_json::to_vec(&env).unwrap(), &snap, now())
        .unwrap_err();
    assert!(matches!(err, VerifyError::Threshold { .. }), "{err}");
}

#[test]
fn python_tuf_repository_expired_role_rejected() {
    let (_dir, repo) = python_tuf_repo();
    let root = trusted_root(&repo);
    let err = root
        .verify_timestamp(&read(&repo, "variants/timestamp-expired.json"), None, now())
        .unwrap_err();
    assert!(matches!(err, VerifyError::Expired { .. }), "{err}");
}

#[test]
fn python_tuf_repository_rolled_back_version_rejected() {
    let (_dir, repo) = python_tuf_repo();
    let root = trusted_root(&repo);
    let trusted = root
        .verify_timestamp(&read(&repo, "metadata/timestamp.json"), None, now())
        .unwrap();
    let err = root
        .verify_timestamp(
            &read(&repo, "variants/timestamp-v1.json"),
            Some(&trusted),
            now(),
        )
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
