//! `herald-sign release --channel` and `herald-sign rollout`: the signed rollout policy each
//! command publishes, read back with the manifest library as an endpoint reads it.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use herald_manifest::rollout::{RolloutPolicy, BUCKETS};
use herald_manifest::VerifiedTargets;

const V1: &[(&str, &[u8])] = &[("app.bin", b"app 1"), ("lib/x.so", b"lib 1")];
const V2: &[(&str, &[u8])] = &[("app.bin", b"app 2"), ("lib/x.so", b"lib 1")];
const V3: &[(&str, &[u8])] = &[("app.bin", b"app 3")];

struct Repo {
    dir: tempfile::TempDir,
    repo: PathBuf,
}

impl Repo {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        init_repo(&repo);
        Repo { dir, repo }
    }

    fn arg(&self) -> String {
        self.repo.display().to_string()
    }

    /// `release --channel CHANNEL FLAGS` of `files`; returns the process output.
    fn release(&self, files: &[(&str, &[u8])], flags: &[&str]) -> std::process::Output {
        let from = self.dir.path().join(format!("release-{}", rand_suffix()));
        release_folder(&from, files);
        release_run(&self.repo, &from, flags, RELEASE_KEYS)
    }

    fn release_ok(&self, files: &[(&str, &[u8])], flags: &[&str]) -> String {
        let out = self.release(files, flags);
        assert!(
            out.status.success(),
            "release {flags:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `rollout ACTION ARGS` with the targets, snapshot and timestamp keys.
    fn rollout(&self, args: &[&str]) -> std::process::Output {
        let mut all: Vec<String> = vec!["rollout".into()];
        all.extend(args.iter().map(|a| a.to_string()));
        all.extend(["--repo".into(), self.arg()]);
        for role in ["targets", "snapshot", "timestamp"] {
            all.extend(["--key".into(), example(&format!("{role}.key.pem"))]);
        }
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        run(&refs)
    }

    fn rollout_ok(&self, args: &[&str]) -> String {
        let out = self.rollout(args);
        assert!(
            out.status.success(),
            "rollout {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn rollout_fails(&self, args: &[&str], code: i32, needle: &str) {
        let before = self.published_targets_version();
        let out = self.rollout(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "rollout {args:?}: {stderr}");
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
        assert_eq!(
            self.published_targets_version(),
            before,
            "a refused action publishes nothing"
        );
    }

    /// The published targets metadata, verified from `1.root.json` as a client does.
    fn published(&self) -> VerifiedTargets {
        verified_targets(&self.repo).1
    }

    fn published_targets_version(&self) -> u64 {
        self.published().version
    }

    fn policy(&self) -> RolloutPolicy {
        self.published().rollout_policy().unwrap().unwrap()
    }

    fn paths(&self) -> Vec<String> {
        self.published().paths().map(|p| p.to_string()).collect()
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst).to_string()
}

fn verify_ok(repo: &Path) {
    let out = ok(&["verify", "--repo", &repo.display().to_string()]);
    assert!(out.contains("repository OK"), "{out}");
}

#[test]
fn release_to_a_channel_lists_its_files_under_its_number_and_signs_the_plan() {
    let repo = Repo::new();
    repo.release_ok(V1, &["--channel", "stable"]);
    let policy = repo.policy();
    let stable = &policy.channels["stable"];
    assert_eq!(
        (stable.current, stable.previous, stable.basis_points),
        (1, None, BUCKETS)
    );
    assert_eq!(repo.paths(), ["releases/1/app.bin", "releases/1/lib/x.so"]);

    let out = repo.release_ok(
        V2,
        &[
            "--channel",
            "stable",
            "--pilot-group",
            "pilot",
            "--percent",
            "10%",
        ],
    );
    assert!(out.contains("release 2 on channel stable"), "{out}");
    let stable = &repo.policy().channels["stable"];
    assert_eq!(stable.current, 2);
    assert_eq!(stable.previous, Some(1), "release 1 had reached everyone");
    assert_eq!(stable.groups, ["pilot"]);
    assert_eq!(stable.basis_points, 1000);
    assert_eq!(
        repo.paths(),
        [
            "releases/1/app.bin",
            "releases/1/lib/x.so",
            "releases/2/app.bin",
            "releases/2/lib/x.so"
        ],
        "the previous release stays listed for the endpoints outside the rollout"
    );
    verify_ok(&repo.repo);
}

#[test]
fn a_release_superseding_an_unfinished_rollout_keeps_the_finished_one_as_previous() {
    let repo = Repo::new();
    repo.release_ok(V1, &["--channel", "stable"]);
    repo.release_ok(V2, &["--channel", "stable", "--percent", "10%"]);
    repo.release_ok(V3, &["--channel", "stable", "--percent", "5%"]);
    let policy = repo.policy();
    let stable = &policy.channels["stable"];
    assert_eq!((stable.current, stable.previous), (3, Some(1)));
    assert_eq!(
        policy.releases.keys().copied().collect::<Vec<_>>(),
        [1, 3],
        "release 2, superseded before it reached everyone, is dropped"
    );
    assert!(!repo.paths().iter().any(|p| p.starts_with("releases/2/")));
    verify_ok(&repo.repo);
}

#[test]
fn advance_widens_and_never_narrows() {
    let repo = Repo::new();
    repo.release_ok(V1, &["--channel", "stable"]);
    repo.release_ok(V2, &["--channel", "stable", "--percent", "10%"]);
    let before = repo.published_targets_version();
    let out = repo.rollout_ok(&["advance", "--channel", "stable", "--percent", "50%"]);
    assert!(out.contains("rolled out to 50%"), "{out}");
    assert_eq!(repo.published_targets_version(), before + 1);
    assert_eq!(repo.policy().channels["stable"].basis_points, 5000);
    repo.rollout_ok(&["advance", "--channel", "stable", "--pilot-group", "kiosks"]);
    assert_eq!(repo.policy().channels["stable"].groups, ["kiosks"]);

    repo.rollout_fails(
        &["advance", "--channel", "stable", "--percent", "20%"],
        2,
        "advance only widens",
    );
    repo.rollout_fails(&["advance", "--channel", "stable"], 2, "--percent");
    repo.rollout_fails(
        &["advance", "--channel", "beta", "--percent", "20%"],
        1,
        "no channel beta",
    );
    repo.rollout_fails(
        &["advance", "--channel", "stable", "--percent", "101%"],
        2,
        "0% to 100%",
    );
    verify_ok(&repo.repo);
}

#[test]
fn pause_and_resume_flip_the_signed_flag_and_advance_waits_for_resume() {
    let repo = Repo::new();
    repo.release_ok(V1, &["--channel", "stable"]);
    repo.release_ok(V2, &["--channel", "stable", "--percent", "10%"]);
    repo.rollout_ok(&["pause", "--channel", "stable"]);
    assert!(repo.policy().channels["stable"].paused);
    repo.rollout_fails(&["pause", "--channel", "stable"], 2, "nothing to change");
    repo.rollout_fails(
        &["advance", "--channel", "stable", "--percent", "50%"],
        1,
        "paused",
    );
    repo.rollout_ok(&["resume", "--channel", "stable"]);
    assert!(!repo.policy().channels["stable"].paused);
}

#[test]
fn abort_publishes_the_previous_release_as_current_in_a_newer_version() {
    let repo = Repo::new();
    repo.release_ok(V1, &["--channel", "stable"]);
    repo.rollout_fails(&["abort", "--channel", "stable"], 1, "no previous release");
    repo.release_ok(V2, &["--channel", "stable", "--percent", "10%"]);
    let before = repo.published_targets_version();
    let out = repo.rollout_ok(&["abort", "--channel", "stable"]);
    assert!(out.contains("release 1 is current again"), "{out}");
    assert_eq!(
        repo.published_targets_version(),
        before + 1,
        "versions only grow"
    );
    let policy = repo.policy();
    let stable = &policy.channels["stable"];
    assert_eq!(
        (stable.current, stable.previous, stable.basis_points),
        (1, None, BUCKETS)
    );
    assert_eq!(policy.releases.keys().copied().collect::<Vec<_>>(), [1]);
    assert_eq!(repo.paths(), ["releases/1/app.bin", "releases/1/lib/x.so"]);
    verify_ok(&repo.repo);
}

#[test]
fn hold_pin_and_follow_are_signed_policy() {
    let repo = Repo::new();
    repo.release_ok(V1, &["--channel", "stable"]);
    repo.release_ok(V2, &["--channel", "beta"]);
    repo.rollout_ok(&["hold", "--endpoint", "KIOSK-0007", "--group", "frozen"]);
    repo.rollout_ok(&["pin", "--release", "1", "--group", "kiosks"]);
    repo.rollout_ok(&["follow", "--group", "testers", "--channel", "beta"]);
    let policy = repo.policy();
    assert_eq!(policy.holds.endpoints, ["KIOSK-0007"]);
    assert_eq!(policy.holds.groups, ["frozen"]);
    assert_eq!(policy.pins.len(), 1);
    assert_eq!(
        (policy.pins[0].release, &policy.pins[0].groups[..]),
        (1, &["kiosks".to_owned()][..])
    );
    assert_eq!(policy.group_channels["testers"], "beta");

    repo.rollout_fails(
        &["pin", "--release", "7", "--group", "kiosks"],
        1,
        "release 7 is not listed",
    );
    repo.rollout_fails(&["hold"], 2, "--endpoint");
    repo.rollout_fails(&["hold", "--group", "Not A Group"], 2, "a-z, 0-9");

    let status = ok(&["rollout", "status", "--repo", &repo.arg()]);
    for needle in [
        "channel stable: release 1",
        "channel beta: release 2",
        "group testers follows channel beta",
        "held: endpoint KIOSK-0007, group frozen",
        "pinned to release 1: group kiosks",
    ] {
        assert!(status.contains(needle), "{needle:?} not in {status}");
    }

    repo.rollout_ok(&["unhold", "--endpoint", "KIOSK-0007", "--group", "frozen"]);
    repo.rollout_ok(&["unpin", "--group", "kiosks"]);
    repo.rollout_ok(&["follow", "--group", "testers", "--channel", "stable"]);
    let policy = repo.policy();
    assert!(policy.holds.is_empty() && policy.pins.is_empty());
    assert!(policy.group_channels.is_empty());
    verify_ok(&repo.repo);
}

#[test]
fn a_pinned_release_stays_listed_after_newer_releases() {
    let repo = Repo::new();
    repo.release_ok(V1, &["--channel", "stable"]);
    repo.rollout_ok(&["pin", "--release", "1", "--endpoint", "LAB-0001"]);
    repo.release_ok(V2, &["--channel", "stable"]);
    repo.release_ok(V3, &["--channel", "stable"]);
    let policy = repo.policy();
    assert_eq!(
        policy.releases.keys().copied().collect::<Vec<_>>(),
        [1, 3, 4],
        "1 is pinned, 3 previous, 4 current"
    );
}

#[test]
fn release_hooks_are_signed_into_the_policy() {
    let repo = Repo::new();
    let hooks = repo.dir.path().join("hooks.toml");
    fs::write(
        &hooks,
        "health_check = [\"/usr/local/bin/acme-health\", \"--quick\"]\ntimeout_secs = 20\n",
    )
    .unwrap();
    repo.release_ok(
        V1,
        &[
            "--channel",
            "stable",
            "--hooks",
            &hooks.display().to_string(),
        ],
    );
    let hooks_read = repo.policy().releases[&1].hooks.clone().unwrap();
    assert_eq!(
        hooks_read.health_check,
        ["/usr/local/bin/acme-health", "--quick"]
    );
    assert_eq!(hooks_read.timeout_secs, Some(20));

    fs::write(&hooks, "health_check = [\"x\"]\ntimeout_secs = 0\n").unwrap();
    let out = repo.release(
        V2,
        &[
            "--channel",
            "stable",
            "--hooks",
            &hooks.display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    fs::write(&hooks, "healthcheck = [\"x\"]\n").unwrap();
    let out = repo.release(
        V2,
        &[
            "--channel",
            "stable",
            "--hooks",
            &hooks.display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "unknown hook names are refused");
}

#[test]
fn release_without_a_channel_keeps_the_policy_and_its_releases() {
    let repo = Repo::new();
    repo.release_ok(V1, &["--channel", "stable"]);
    repo.release_ok(&[("extra.txt", b"outside any release")], &["--prune"]);
    assert_eq!(
        repo.paths(),
        ["extra.txt", "releases/1/app.bin", "releases/1/lib/x.so"]
    );
    assert_eq!(repo.policy().channels["stable"].current, 1);
    let out = repo.release(V2, &["--channel", "stable", "--prune"]);
    assert_eq!(out.status.code(), Some(2), "--prune and --channel conflict");
}

#[test]
fn rollout_without_a_policy_says_how_to_start() {
    let (_dir, repo, _) = fresh_repo();
    let out = run(&[
        "rollout",
        "pause",
        "--channel",
        "stable",
        "--repo",
        &repo.display().to_string(),
        "--key",
        &example("targets.key.pem"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--channel CHANNEL"));
}

#[test]
fn verify_reports_an_inconsistent_signed_policy() {
    // A targets version signed with the real targets key whose policy names a release it
    // does not list (herald-sign never writes one; another tool might).
    let repo = Repo::new();
    repo.release_ok(V1, &["--channel", "stable"]);
    let meta = repo.repo.join("metadata");
    let env =
        herald_manifest::Envelope::from_slice(&fs::read(meta.join("1.targets.json")).unwrap())
            .unwrap();
    let mut signed = env.signed().clone();
    signed["version"] = 2.into();
    signed["x-herald-rollout"]["channels"]["stable"]["current"] = 99.into();
    let mut forged = herald_manifest::Envelope::new(signed);
    let key = herald_signing::parse_private_key_pem(
        &fs::read_to_string(example("targets.key.pem")).unwrap(),
        "targets key",
        None,
    )
    .unwrap();
    forged.sign(&key).unwrap();
    fs::write(
        meta.join("2.targets.json"),
        forged.to_canonical_bytes().unwrap(),
    )
    .unwrap();
    ok(&[
        "timestamp",
        "--with-snapshot",
        "--repo",
        &repo.arg(),
        "--key",
        &example("snapshot.key.pem"),
        "--key",
        &example("timestamp.key.pem"),
    ]);
    fails(
        &["verify", "--repo", &repo.arg()],
        "names release 99, which is not listed",
    );
}

#[test]
fn group_and_channel_names_are_checked_by_the_group_rule() {
    let repo = Repo::new();
    repo.release_ok(V1, &["--channel", "stable"]);
    repo.rollout_fails(
        &["follow", "--group", "Testers", "--channel", "beta"],
        2,
        "invalid group \"Testers\"",
    );
    repo.rollout_fails(
        &["follow", "--group", "testers", "--channel", "Beta"],
        2,
        herald_manifest::rollout::CHANNEL_NAME_RULE,
    );
    repo.rollout_ok(&["follow", "--group", "testers", "--channel", "beta"]);
    assert_eq!(repo.policy().group_channels["testers"], "beta");
}
