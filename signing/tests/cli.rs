//! End-to-end tests of the `herald-sign` binary; results are read back with the manifest
//! library, as a client would.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use common::*;

fn repo_arg(repo: &Path) -> String {
    repo.display().to_string()
}

#[test]
fn release_reads_back_with_manifest_library() {
    let (_dir, repo, _) = fresh_repo();
    let files = client_read(&repo);
    let expected: Vec<(String, Vec<u8>)> = FILES
        .iter()
        .map(|(p, c)| (p.to_string(), c.to_vec()))
        .collect();
    assert_eq!(files, expected);
    let out = ok(&["verify", "--repo", &repo_arg(&repo)]);
    assert!(out.contains("repository OK"), "{out}");
    assert!(out.contains("release signatures verified"), "{out}");
}

#[test]
fn same_inputs_keys_and_time_give_identical_bytes() {
    let (_a, repo_a, _) = fresh_repo();
    let (_b, repo_b, _) = fresh_repo();
    let files = files_under(&repo_a);
    assert_eq!(files, files_under(&repo_b));
    for rel in files {
        assert_eq!(
            fs::read(repo_a.join(&rel)).unwrap(),
            fs::read(repo_b.join(&rel)).unwrap(),
            "{}",
            rel.display()
        );
    }
}

#[test]
fn tampered_byte_anywhere_fails_verify() {
    let (dir, repo, _) = fresh_repo();
    for rel in files_under(&repo) {
        let copy = dir.path().join("tampered");
        let _ = fs::remove_dir_all(&copy);
        copy_tree(&repo, &copy);
        let path = copy.join(&rel);
        let mut bytes = fs::read(&path).unwrap();
        for i in [bytes.len() / 2, bytes.len() - 2] {
            let mut tampered = bytes.clone();
            tampered[i] ^= 0x01;
            fs::write(&path, &tampered).unwrap();
            let out = run(&["verify", "--repo", &repo_arg(&copy)]);
            assert_eq!(
                out.status.code(),
                Some(1),
                "tampering byte {i} of {} went unnoticed",
                rel.display()
            );
            assert!(!out.stderr.is_empty());
        }
        bytes.clear();
    }
}

#[test]
fn verify_json_reports_result() {
    let (_dir, repo, _) = fresh_repo();
    let out = ok(&["verify", "--repo", &repo_arg(&repo), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["targets"], FILES.len());
    fs::write(repo.join("metadata/timestamp.json"), b"{}").unwrap();
    let out = run(&["verify", "--repo", &repo_arg(&repo), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("timestamp"));
}

#[test]
fn extra_file_in_repository_fails_verify() {
    let (_dir, repo, _) = fresh_repo();
    fs::write(repo.join("targets/app/evil.bin"), b"x").unwrap();
    assert_eq!(
        run(&["verify", "--repo", &repo_arg(&repo)]).status.code(),
        Some(1)
    );
}

#[test]
fn second_release_bumps_versions_and_keeps_old_targets() {
    let (dir, repo, _) = fresh_repo();
    let from2 = dir.path().join("release2");
    release_folder(
        &from2,
        &[("app/readme.txt", b"changed\n"), ("new.txt", b"new\n")],
    );
    release(&repo, &from2);
    let files = client_read(&repo);
    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    let mut expected: Vec<&str> = FILES.iter().map(|(p, _)| *p).collect();
    expected.push("new.txt");
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert_eq!(files[1].1, b"changed\n");
    assert!(repo.join("metadata/2.targets.json").exists());
    assert!(repo.join("metadata/2.snapshot.json").exists());
    ok(&["verify", "--repo", &repo_arg(&repo)]);
}

#[test]
fn prune_drops_targets_missing_from_release() {
    let (dir, repo, _) = fresh_repo();
    let from2 = dir.path().join("release2");
    release_folder(&from2, &[("only.txt", b"only\n")]);
    assert!(release_run(&repo, &from2, &["--prune"], RELEASE_KEYS)
        .status
        .success());
    let names: Vec<String> = client_read(&repo).into_iter().map(|(p, _)| p).collect();
    assert_eq!(names, ["only.txt"]);
}

#[test]
fn timestamp_refresh_bumps_only_timestamp() {
    let (_dir, repo, _) = fresh_repo();
    let before = fs::read(repo.join("metadata/timestamp.json")).unwrap();
    let out = run_env(
        &[
            "timestamp",
            "--repo",
            &repo_arg(&repo),
            "--key",
            &example("timestamp.key.pem"),
        ],
        &[("HERALD_SIGN_NOW", "2026-11-22T00:00:00Z")],
    );
    assert!(out.status.success());
    let after = fs::read(repo.join("metadata/timestamp.json")).unwrap();
    assert_ne!(before, after);
    let env = herald_manifest::Envelope::from_slice(&after).unwrap();
    assert_eq!(env.version(), Some(2));
    assert!(!repo.join("metadata/2.snapshot.json").exists());
    client_read(&repo);
}

#[test]
fn keys_from_environment_variables() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let from = dir.path().join("rel");
    release_folder(&from, FILES);
    init_repo(&repo);
    let pem = |role: &str| fs::read_to_string(example(&format!("{role}.key.pem"))).unwrap();
    let (t, s, ts, r) = (
        pem("targets"),
        pem("snapshot"),
        pem("timestamp"),
        pem("release"),
    );
    let out = run_env(
        &[
            "release",
            "--repo",
            &repo_arg(&repo),
            "--from",
            &from.display().to_string(),
            "--key-env",
            "CI_TARGETS_KEY",
            "--key-env",
            "CI_SNAPSHOT_KEY",
            "--key-env",
            "CI_TIMESTAMP_KEY",
            "--key-env",
            "CI_RELEASE_KEY",
        ],
        &[
            ("CI_TARGETS_KEY", &t),
            ("CI_SNAPSHOT_KEY", &s),
            ("CI_TIMESTAMP_KEY", &ts),
            ("CI_RELEASE_KEY", &r),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(client_read(&repo).len(), FILES.len());
}

#[test]
fn missing_release_key_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let from = dir.path().join("rel");
    release_folder(&from, FILES);
    init_repo(&repo);
    let out = release_run(&repo, &from, &[], &["targets"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("release"));
    assert!(!repo.join("metadata/1.targets.json").exists());
}

fn keygen(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(name).display().to_string();
    ok(&["keygen", "--out", &key]);
    let public = format!("{key}.pub");
    (key, public)
}

#[test]
fn threshold_signing_by_two_people() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let from = dir.path().join("rel");
    release_folder(&from, FILES);
    let (alice, alice_pub) = keygen(dir.path(), "alice.pem");
    let (bob, bob_pub) = keygen(dir.path(), "bob.pem");
    let r = repo_arg(&repo);
    ok(&[
        "init",
        "--repo",
        &r,
        "--root-pub",
        &example("root.pub.pem"),
        "--targets-pub",
        &alice_pub,
        "--targets-pub",
        &bob_pub,
        "--targets-threshold",
        "2",
        "--snapshot-pub",
        &example("snapshot.pub.pem"),
        "--timestamp-pub",
        &example("timestamp.pub.pem"),
        "--key",
        &example("root.key.pem"),
    ]);
    // Alice releases: targets written, but not published.
    let out = ok(&[
        "release",
        "--repo",
        &r,
        "--from",
        &from.display().to_string(),
        "--key",
        &alice,
        "--key",
        &example("snapshot.key.pem"),
        "--key",
        &example("timestamp.key.pem"),
    ]);
    assert!(out.contains("not complete"), "{out}");
    assert!(!repo.join("metadata/timestamp.json").exists());
    // Bob adds his signature later; then the release is published.
    ok(&["sign", "--repo", &r, "--role", "targets", "--key", &bob]);
    ok(&[
        "timestamp",
        "--repo",
        &r,
        "--with-snapshot",
        "--key",
        &example("snapshot.key.pem"),
        "--key",
        &example("timestamp.key.pem"),
    ]);
    assert_eq!(client_read(&repo).len(), FILES.len());
    ok(&["verify", "--repo", &r]);
}

#[test]
fn rotate_root_needs_old_and_new_keys() {
    let (dir, repo, _) = fresh_repo();
    let (new_root, new_root_pub) = keygen(dir.path(), "new-root.pem");
    let r = repo_arg(&repo);
    // Signed by the new key only: staged, not published.
    let out = ok(&[
        "rotate-root",
        "--repo",
        &r,
        "--root-pub",
        &new_root_pub,
        "--key",
        &new_root,
    ]);
    assert!(out.contains("staged"), "{out}");
    assert!(!repo.join("metadata/2.root.json").exists());
    assert!(repo.join("staged/2.root.json").exists());
    // The old root key countersigns: published.
    ok(&[
        "sign",
        "--repo",
        &r,
        "--role",
        "root",
        "--key",
        &example("root.key.pem"),
    ]);
    assert!(repo.join("metadata/2.root.json").exists());
    assert!(!repo.join("staged/2.root.json").exists());
    assert_eq!(
        fs::read(repo.join("metadata/2.root.json")).unwrap(),
        fs::read(repo.join("metadata/root.json")).unwrap()
    );
    client_read(&repo);
    ok(&["verify", "--repo", &r]);
    // A third root signed only by the old (now removed) key is refused by clients: staged.
    let out = ok(&[
        "rotate-root",
        "--repo",
        &r,
        "--key",
        &example("root.key.pem"),
    ]);
    assert!(out.contains("staged"), "{out}");
}

#[test]
fn interrupted_release_leaves_previous_state_for_clients() {
    // A release run that stops after the targets metadata (no snapshot or timestamp keys):
    // clients still see exactly the previous release.
    let (dir, repo, _) = fresh_repo();
    let before = client_read(&repo);
    let from2 = dir.path().join("rel2");
    release_folder(&from2, &[("extra.txt", b"extra\n")]);
    assert!(release_run(&repo, &from2, &[], &["targets", "release"])
        .status
        .success());
    assert_eq!(client_read(&repo), before);
    assert!(!repo.join("metadata/2.snapshot.json").exists());
    ok(&["verify", "--repo", &repo_arg(&repo)]);
    // Publishing later completes it.
    ok(&[
        "timestamp",
        "--repo",
        &repo_arg(&repo),
        "--with-snapshot",
        "--key",
        &example("snapshot.key.pem"),
        "--key",
        &example("timestamp.key.pem"),
    ]);
    assert_eq!(client_read(&repo).len(), before.len() + 1);
}

#[test]
fn release_without_targets_key_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let from = dir.path().join("rel");
    release_folder(&from, FILES);
    init_repo(&repo);
    let out = release_run(&repo, &from, &[], &["release", "snapshot"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("targets key"));
    assert!(!repo.join("metadata/1.targets.json").exists());
}

#[test]
fn bundle_is_deterministic_and_complete() {
    let (dir, repo, _) = fresh_repo();
    let a = dir.path().join("a.zip");
    let b = dir.path().join("b.zip");
    ok(&[
        "bundle",
        "--repo",
        &repo_arg(&repo),
        "--out",
        &a.display().to_string(),
    ]);
    ok(&[
        "bundle",
        "--repo",
        &repo_arg(&repo),
        "--out",
        &b.display().to_string(),
    ]);
    let bytes = fs::read(&a).unwrap();
    assert_eq!(bytes, fs::read(&b).unwrap());
    let mut zip = zip::ZipArchive::new(fs::File::open(&a).unwrap()).unwrap();
    let mut names: Vec<String> = (0..zip.len())
        .map(|i| zip.by_index(i).unwrap().name().to_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = files_under(&repo)
        .into_iter()
        .map(|p| p.display().to_string())
        .collect();
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn bundle_of_broken_repository_refused() {
    let (dir, repo, _) = fresh_repo();
    fs::write(repo.join("metadata/1.targets.json"), b"{}").unwrap();
    let out = dir.path().join("x.zip");
    let res = run(&[
        "bundle",
        "--repo",
        &repo_arg(&repo),
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(res.status.code(), Some(1));
    assert!(!out.exists());
}

#[test]
fn status_json_reports_versions_and_expiry() {
    let (_dir, repo, _) = fresh_repo();
    let out = ok(&["status", "--repo", &repo_arg(&repo), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for role in ["root", "targets", "snapshot", "timestamp"] {
        assert_eq!(v["roles"][role]["version"], 1, "{role}");
        assert_eq!(v["roles"][role]["expired"], false, "{role}");
    }
    assert_eq!(v["roles"]["timestamp"]["expires"], "2026-11-22T12:00:00Z");
    let table = ok(&["status", "--repo", &repo_arg(&repo)]);
    assert!(table.contains("timestamp"));
}

#[test]
fn expired_repository_fails_verify() {
    let (_dir, repo, _) = fresh_repo();
    fails(
        &[
            "verify",
            "--repo",
            &repo_arg(&repo),
            "--now",
            "2026-11-23T00:00:00Z",
        ],
        "expired",
    );
}

#[test]
fn custom_expiry_per_role() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let from = dir.path().join("rel");
    release_folder(&from, FILES);
    init_repo(&repo);
    let flags = ["--expires-timestamp", "6h", "--expires-targets", "30d"];
    assert!(release_run(&repo, &from, &flags, RELEASE_KEYS)
        .status
        .success());
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["status", "--repo", &repo_arg(&repo), "--json"])).unwrap();
    assert_eq!(v["roles"]["timestamp"]["expires"], "2026-11-21T18:00:00Z");
    assert_eq!(v["roles"]["targets"]["expires"], "2026-12-21T12:00:00Z");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (_dir2, repo, _) = fresh_repo();
    for args in [
        vec!["no-such-command"],
        vec![
            "sign",
            "--repo",
            repo.to_str().unwrap(),
            "--role",
            "mirror",
            "--key",
            "x",
        ],
        vec![
            "timestamp",
            "--repo",
            repo.to_str().unwrap(),
            "--expires-timestamp",
            "1 week",
            "--key",
            &example("timestamp.key.pem"),
        ],
        vec![
            "verify",
            "--repo",
            repo.to_str().unwrap(),
            "--now",
            "tomorrow",
        ],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let out = run(&["init", "--repo", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "init without keys");
}

#[test]
fn init_twice_refused() {
    let (_dir, repo, _) = fresh_repo();
    let out = run(&[
        "init",
        "--repo",
        &repo_arg(&repo),
        "--root-pub",
        &example("root.pub.pem"),
        "--targets-pub",
        &example("targets.pub.pem"),
        "--snapshot-pub",
        &example("snapshot.pub.pem"),
        "--timestamp-pub",
        &example("timestamp.pub.pem"),
        "--key",
        &example("root.key.pem"),
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn release_folder_with_symlink_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let from = dir.path().join("rel");
    release_folder(&from, FILES);
    std::os::unix::fs::symlink("/etc/passwd", from.join("passwd")).unwrap();
    init_repo(&repo);
    let out = release_run(&repo, &from, &[], &["targets", "release"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("symbolic"));
}

#[test]
fn keygen_writes_keys_openssl_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "k.pem");
    let out = std::process::Command::new("openssl")
        .args(["pkey", "-in", &key, "-pubout"])
        .output()
        .expect("openssl is installed by scripts/install-test-deps");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        fs::read_to_string(&public).unwrap()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never overwritten by accident.
    assert_eq!(run(&["keygen", "--out", &key]).status.code(), Some(2));
}

#[test]
fn encrypted_key_needs_passphrase_from_environment() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("enc.pem").display().to_string();
    let out = run_env(
        &["keygen", "--out", &key, "--encrypt-env", "MY_PASS"],
        &[("MY_PASS", "s3cret")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fs::read_to_string(&key)
        .unwrap()
        .contains("ENCRYPTED PRIVATE KEY"));
    let repo = dir.path().join("repo").display().to_string();
    let public = format!("{key}.pub");
    let init = |pass: Option<&str>| {
        let args = [
            "init",
            "--repo",
            &repo,
            "--root-pub",
            &public,
            "--targets-pub",
            &example("targets.pub.pem"),
            "--snapshot-pub",
            &example("snapshot.pub.pem"),
            "--timestamp-pub",
            &example("timestamp.pub.pem"),
            "--key",
            &key,
        ];
        match pass {
            Some(p) => run_env(&args, &[("HERALD_SIGN_PASSPHRASE", p)]),
            None => run(&args),
        }
    };
    assert_eq!(init(None).status.code(), Some(1));
    assert_eq!(init(Some("wrong")).status.code(), Some(1));
    assert!(init(Some("s3cret")).status.success());
    // OpenSSL reads the encrypted key too.
    let out = std::process::Command::new("openssl")
        .args(["pkey", "-in", &key, "-passin", "pass:s3cret", "-pubout"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn leftover_partial_target_file_replaced() {
    // An interrupted run can leave a partly written file under a hash-prefixed name that no
    // metadata refers to; the next release must replace it, not trust the name.
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let from = dir.path().join("rel");
    release_folder(&from, FILES);
    init_repo(&repo);
    let (path, content) = FILES[3];
    let sha = herald_manifest::sha256_hex(content);
    fs::write(
        repo.join("targets").join(format!("{sha}.{path}")),
        &content[..3],
    )
    .unwrap();
    release(&repo, &from);
    assert_eq!(client_read(&repo).len(), FILES.len());
    ok(&["verify", "--repo", &repo_arg(&repo)]);
}

#[test]
fn linked_release_verifies_and_shares_files() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let from = dir.path().join("rel");
    release_folder(&from, FILES);
    init_repo(&repo);
    assert!(release_run(&repo, &from, &["--link"], RELEASE_KEYS)
        .status
        .success());
    assert_eq!(client_read(&repo).len(), FILES.len());
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(from.join("top.cfg")).unwrap().nlink(), 2);
    }
}

#[test]
fn verify_with_trusted_root_from_elsewhere() {
    let (dir, repo, _) = fresh_repo();
    let r = repo_arg(&repo);
    let trusted = dir.path().join("trusted-root.json");
    fs::copy(repo.join("metadata/1.root.json"), &trusted).unwrap();
    ok(&[
        "verify",
        "--repo",
        &r,
        "--root",
        &trusted.display().to_string(),
    ]);
    // A root from another repository is not a trust anchor for this one.
    let (_other_dir, other, _) = fresh_repo();
    let (new_root, new_root_pub) = keygen(dir.path(), "other-root.pem");
    let o = repo_arg(&other);
    ok(&[
        "rotate-root",
        "--repo",
        &o,
        "--root-pub",
        &new_root_pub,
        "--key",
        &new_root,
        "--key",
        &example("root.key.pem"),
    ]);
    let foreign = other.join("metadata/2.root.json").display().to_string();
    fails(&["verify", "--repo", &r, "--root", &foreign], "not part of");
}

#[test]
fn missing_key_environment_variable_fails() {
    let (_dir, repo, _) = fresh_repo();
    fails(
        &[
            "timestamp",
            "--repo",
            &repo_arg(&repo),
            "--key-env",
            "HERALD_TEST_NO_SUCH_VARIABLE",
        ],
        "HERALD_TEST_NO_SUCH_VARIABLE",
    );
}

#[test]
fn targets_key_rotation_then_release() {
    let (dir, repo, _) = fresh_repo();
    let r = repo_arg(&repo);
    let (new_targets, new_targets_pub) = keygen(dir.path(), "targets2.pem");
    ok(&[
        "rotate-root",
        "--repo",
        &r,
        "--targets-pub",
        &new_targets_pub,
        "--key",
        &example("root.key.pem"),
    ]);
    assert!(repo.join("metadata/2.root.json").exists());
    // The old targets key no longer counts.
    let from2 = dir.path().join("rel2");
    release_folder(&from2, &[("after-rotation.txt", b"new key\n")]);
    let f = from2.display().to_string();
    let old = run(&[
        "release",
        "--repo",
        &r,
        "--from",
        &f,
        "--key",
        &example("targets.key.pem"),
        "--key",
        &example("release.key.pem"),
    ]);
    assert_eq!(old.status.code(), Some(1));
    ok(&[
        "release",
        "--repo",
        &r,
        "--from",
        &f,
        "--key",
        &new_targets,
        "--key",
        &example("snapshot.key.pem"),
        "--key",
        &example("timestamp.key.pem"),
        "--key",
        &example("release.key.pem"),
    ]);
    assert_eq!(client_read(&repo).len(), FILES.len() + 1);
    ok(&["verify", "--repo", &r]);
}

#[test]
fn snapshot_threshold_of_two_collected_with_sign() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let from = dir.path().join("rel");
    release_folder(&from, FILES);
    let (second, second_pub) = keygen(dir.path(), "snapshot2.pem");
    let r = repo_arg(&repo);
    ok(&[
        "init",
        "--repo",
        &r,
        "--root-pub",
        &example("root.pub.pem"),
        "--targets-pub",
        &example("targets.pub.pem"),
        "--snapshot-pub",
        &example("snapshot.pub.pem"),
        "--snapshot-pub",
        &second_pub,
        "--snapshot-threshold",
        "2",
        "--timestamp-pub",
        &example("timestamp.pub.pem"),
        "--key",
        &example("root.key.pem"),
    ]);
    let out = release(&repo, &from);
    assert!(out.contains("snapshot version 1 is not complete"), "{out}");
    assert!(!repo.join("metadata/timestamp.json").exists());
    ok(&["sign", "--repo", &r, "--role", "snapshot", "--key", &second]);
    ok(&[
        "timestamp",
        "--repo",
        &r,
        "--key",
        &example("timestamp.key.pem"),
    ]);
    assert_eq!(client_read(&repo).len(), FILES.len());
}

#[test]
fn first_root_with_threshold_two_collected_with_sign() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let (second, second_pub) = keygen(dir.path(), "root2.pem");
    let r = repo_arg(&repo);
    let out = ok(&[
        "init",
        "--repo",
        &r,
        "--root-pub",
        &example("root.pub.pem"),
        "--root-pub",
        &second_pub,
        "--root-threshold",
        "2",
        "--targets-pub",
        &example("targets.pub.pem"),
        "--snapshot-pub",
        &example("snapshot.pub.pem"),
        "--timestamp-pub",
        &example("timestamp.pub.pem"),
        "--key",
        &example("root.key.pem"),
    ]);
    assert!(out.contains("staged"), "{out}");
    assert!(!repo.join("metadata/1.root.json").exists());
    ok(&["sign", "--repo", &r, "--role", "root", "--key", &second]);
    assert!(repo.join("metadata/1.root.json").exists());
    assert!(!repo.join("staged/1.root.json").exists());
    let from = dir.path().join("rel");
    release_folder(&from, FILES);
    release(&repo, &from);
    assert_eq!(client_read(&repo).len(), FILES.len());
}

#[test]
fn file_name_unsafe_in_urls_refused() {
    for name in ["a#b.txt", "what?.txt", "100%.txt"] {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let from = dir.path().join("rel");
        release_folder(&from, &[(name, b"x")]);
        init_repo(&repo);
        let out = release_run(&repo, &from, &[], RELEASE_KEYS);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("rename"),
            "{name}"
        );
        assert!(!repo.join("metadata/1.targets.json").exists());
    }
}
