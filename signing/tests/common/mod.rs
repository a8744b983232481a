//! Helpers for the `herald-sign` tests: run the binary, use the example keys, read a
//! repository back with the manifest library.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use herald_manifest::{tuf_time, TargetPath, VerifiedRoot, VerifiedTargets};
use time::OffsetDateTime;

/// The fixed time every test signs at.
pub const NOW: &str = "2026-11-21T12:00:00Z";

pub fn now() -> OffsetDateTime {
    tuf_time::parse(NOW).unwrap()
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// An example key file: `ROLE.key.pem` or `ROLE.pub.pem`.
pub fn example(name: &str) -> String {
    workspace()
        .join("keys-example/signing")
        .join(name)
        .display()
        .to_string()
}

/// Runs `herald-sign` with `args` at [`NOW`], with extra environment variables.
pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald-sign"));
    cmd.args(args)
        .env("HERALD_SIGN_NOW", NOW)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("HERALD_SIGN_PASSPHRASE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub fn run(args: &[&str]) -> Output {
    run_env(args, &[])
}

/// Runs and asserts success, returning stdout.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "herald-sign {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs and asserts failure (exit code 1) with `needle` in the one-line message.
pub fn fails(args: &[&str], needle: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "herald-sign {args:?}: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
}

/// Writes a release folder with a few files.
pub fn release_folder(dir: &Path, files: &[(&str, &[u8])]) {
    for (name, content) in files {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
}

pub const FILES: &[(&str, &[u8])] = &[
    ("app/bin/tool", b"#!/bin/sh\necho tool\n"),
    ("app/readme.txt", b"Herald test release\n"),
    (
        "docs/notes d'\u{e9}t\u{e9} (1).txt",
        b"spaces, quote and non-ASCII in a name\n",
    ),
    ("top.cfg", b"key = 1\n"),
];

/// `init` with the example keys (one per role, release key included).
pub fn init_repo(repo: &Path) {
    let repo = repo.display().to_string();
    ok(&[
        "init",
        "--repo",
        &repo,
        "--root-pub",
        &example("root.pub.pem"),
        "--targets-pub",
        &example("targets.pub.pem"),
        "--snapshot-pub",
        &example("snapshot.pub.pem"),
        "--timestamp-pub",
        &example("timestamp.pub.pem"),
        "--release-pub",
        &example("release.pub.pem"),
        "--key",
        &example("root.key.pem"),
    ]);
}

/// The example keys `release` needs: every role but root.
pub const RELEASE_KEYS: &[&str] = &["targets", "snapshot", "timestamp", "release"];

/// Runs `release` of `from` into `repo` with `flags` and the example keys of `roles`.
pub fn release_run(repo: &Path, from: &Path, flags: &[&str], roles: &[&str]) -> Output {
    let mut args: Vec<String> = vec![
        "release".into(),
        "--repo".into(),
        repo.display().to_string(),
        "--from".into(),
        from.display().to_string(),
    ];
    args.extend(flags.iter().map(|f| f.to_string()));
    for role in roles {
        args.push("--key".into());
        args.push(example(&format!("{role}.key.pem")));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&refs)
}

/// `release` with every example key except root; asserts success and returns stdout.
pub fn release(repo: &Path, from: &Path) -> String {
    let out = release_run(repo, from, &[], RELEASE_KEYS);
    assert!(
        out.status.success(),
        "release failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A repository with [`FILES`] released once. Returns (tempdir, repo path, release folder).
pub fn fresh_repo() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let from = dir.path().join("release");
    release_folder(&from, FILES);
    init_repo(&repo);
    release(&repo, &from);
    (dir, repo, from)
}

/// Verifies a repository's current metadata as a TUF client would, with the manifest library,
/// starting from `1.root.json`: the newest root and the top-level targets.
pub fn verified_targets(repo: &Path) -> (VerifiedRoot, VerifiedTargets) {
    let meta = repo.join("metadata");
    let mut root =
        VerifiedRoot::trust_anchor(&fs::read(meta.join("1.root.json")).unwrap()).unwrap();
    let mut v = 2;
    while let Ok(bytes) = fs::read(meta.join(format!("{v}.root.json"))) {
        root = root.verify_next_root(&bytes).unwrap();
        v += 1;
    }
    root.check_expiry(now()).unwrap();
    let ts = root
        .verify_timestamp(&fs::read(meta.join("timestamp.json")).unwrap(), None, now())
        .unwrap();
    let sv = ts.snapshot_meta().unwrap().version;
    let snap = root
        .verify_snapshot(
            &fs::read(meta.join(format!("{sv}.snapshot.json"))).unwrap(),
            &ts,
            None,
            now(),
        )
        .unwrap();
    let tv = snap.meta["targets.json"].version;
    let targets = root
        .verify_targets(
            fs::read(meta.join(format!("{tv}.targets.json"))).unwrap(),
            &snap,
            now(),
        )
        .unwrap();
    (root, targets)
}

/// Reads a repository as a TUF client would ([`verified_targets`]); returns the target
/// contents by path, verified.
pub fn client_read(repo: &Path) -> Vec<(String, Vec<u8>)> {
    let (root, targets) = verified_targets(repo);
    let mut out = Vec::new();
    for (path, entry) in targets.targets() {
        let stored = repo
            .join("targets")
            .join(path.with_hash_prefix(entry.sha256().unwrap()));
        let content = fs::read(stored).unwrap();
        let p = TargetPath::new(path.as_str()).unwrap();
        root.verify_target_content(&targets, &p, &content).unwrap();
        out.push((path.to_string(), content));
    }
    out
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Copies a folder tree.
pub fn copy_tree(from: &Path, to: &Path) {
    for rel in files_under(from) {
        let dest = to.join(&rel);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(from.join(&rel), dest).unwrap();
    }
}
