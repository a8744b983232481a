//! Shared set-up for the scenarios that run the whole chain with the real binaries: the
//! release signer (`herald-sign`) with its keys and repository, and endpoints running
//! `herald-update` (`enroll`, `apply`, `status`) against a CA on loopback.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use herald_e2e::herald_bin;

use crate::ca_support::{run_ok, stdout_of};

/// The repository's roles, each with its own key.
const ROLES: [&str; 5] = ["root", "targets", "snapshot", "timestamp", "release"];

/// The release signer's keys and commands.
pub struct Signer {
    keys: PathBuf,
}

impl Signer {
    /// Generates one key per role in `dir/keys`.
    pub fn new(dir: &Path) -> Self {
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys).expect("keys folder");
        for role in ROLES {
            run_ok(
                herald_bin("herald-sign")
                    .args(["keygen", "--out"])
                    .arg(keys.join(format!("{role}.pem"))),
            );
        }
        Self { keys }
    }

    fn key(&self, role: &str, public: bool) -> PathBuf {
        let ext = if public { "pem.pub" } else { "pem" };
        self.keys.join(format!("{role}.{ext}"))
    }

    /// `herald-sign init`: a new repository in `repo` trusting these keys.
    pub fn init(&self, repo: &Path) {
        let mut cmd = herald_bin("herald-sign");
        cmd.args(["init", "--repo"]).arg(repo);
        for role in ROLES {
            cmd.arg(format!("--{role}-pub")).arg(self.key(role, true));
        }
        run_ok(cmd.arg("--key").arg(self.key("root", false)));
    }

    /// `herald-sign release` of the folder `from`, which must succeed.
    pub fn release(&self, repo: &Path, from: &Path) {
        self.release_with(repo, from, &[]);
    }

    /// `herald-sign release` of the folder `from` with extra arguments (`--channel`, ...).
    pub fn release_with(&self, repo: &Path, from: &Path, extra: &[&str]) {
        let mut cmd = herald_bin("herald-sign");
        cmd.args(["release", "--repo"])
            .arg(repo)
            .arg("--from")
            .arg(from)
            .args(extra);
        for role in ["targets", "snapshot", "timestamp", "release"] {
            cmd.arg("--key").arg(self.key(role, false));
        }
        run_ok(&mut cmd);
    }

    /// `herald-sign rollout ARGS` with the targets, snapshot and timestamp keys (it may fail).
    pub fn rollout(&self, repo: &Path, args: &[&str]) -> Output {
        let mut cmd = herald_bin("herald-sign");
        cmd.arg("rollout").args(args).arg("--repo").arg(repo);
        for role in ["targets", "snapshot", "timestamp"] {
            cmd.arg("--key").arg(self.key(role, false));
        }
        cmd.output().expect("herald-sign runs")
    }
}

/// The version of the repository's newest targets metadata (the newest release's number).
pub fn targets_version(repo: &Path) -> u64 {
    let text = std::fs::read_to_string(repo.join("metadata/timestamp.json")).expect("timestamp");
    let timestamp: serde_json::Value = serde_json::from_str(&text).expect("timestamp JSON");
    let snapshot_version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
        .as_u64()
        .expect("snapshot version");
    let text =
        std::fs::read_to_string(repo.join(format!("metadata/{snapshot_version}.snapshot.json")))
            .expect("snapshot");
    let snapshot: serde_json::Value = serde_json::from_str(&text).expect("snapshot JSON");
    snapshot["signed"]["meta"]["targets.json"]["version"]
        .as_u64()
        .expect("targets version")
}

/// Writes a release's files (`app.txt`, `bin/tool`) for `version` into `dir`.
pub fn write_release(dir: &Path, version: &str) {
    std::fs::create_dir_all(dir.join("bin")).expect("release folder");
    std::fs::write(dir.join("app.txt"), format!("my app, release {version}\n"))
        .expect("app.txt written");
    std::fs::write(dir.join("bin/tool"), format!("tool {version}\n")).expect("tool written");
}

/// One endpoint: its configuration file and folders, all below one folder.
pub struct Endpoint {
    /// The endpoint's folder.
    pub dir: PathBuf,
    /// Its `herald-update` configuration.
    pub config: PathBuf,
    /// Its state folder (identity, status, queued reports).
    pub state: PathBuf,
    /// Its install root.
    pub install: PathBuf,
}

impl Endpoint {
    /// An endpoint in `dir` that updates from the repository the CA at `https` (host:port)
    /// serves at `/repo/`, trusting `trusted_root` (the repository's first root metadata),
    /// reports to that CA, and has the `extra` configuration lines.
    pub fn new(dir: &Path, https: &str, trusted_root: &Path, extra: &str) -> Self {
        std::fs::create_dir_all(dir).expect("endpoint folder");
        let state = dir.join("state");
        let install = dir.join("app");
        let config = dir.join("herald-update.toml");
        let toml = format!(
            "install_root = {install:?}\nstate_dir = {state:?}\n\
             mirrors = [\"https://{https}/repo/\"]\n\
             trusted_root = {root:?}\nrequire_release_signatures = true\n\
             status_url = \"https://{https}/api/v1/status\"\nlog_level = \"warn\"\n{extra}\n",
            install = install.display().to_string(),
            state = state.display().to_string(),
            root = trusted_root.display().to_string(),
        );
        std::fs::write(&config, toml).expect("configuration written");
        Self {
            dir: dir.to_path_buf(),
            config,
            state,
            install,
        }
    }

    /// `herald-update enroll` with `token` at `server` (an `https://` URL) pinning the root
    /// `fingerprint`; returns the name the CA gave the endpoint.
    pub fn enroll(&self, server: &str, token: &str, fingerprint: &str) -> String {
        let out = stdout_of(
            herald_bin("herald-update")
                .args(["enroll", "--server", server])
                .args(["--token", token, "--root-fingerprint", fingerprint])
                .arg("--state-dir")
                .arg(&self.state),
        );
        out.lines()
            .find_map(|l| l.strip_prefix("enrolled as "))
            .unwrap_or_else(|| panic!("enroll printed {out:?}"))
            .trim()
            .to_owned()
    }

    /// `herald-update --config CONFIG` (add the command).
    pub fn update(&self) -> Command {
        let mut cmd = herald_bin("herald-update");
        cmd.arg("--config")
            .arg(&self.config)
            .env("HERALD_LOG", "warn");
        cmd
    }

    /// `herald-update apply` (it may fail).
    pub fn apply(&self) -> Output {
        self.update()
            .arg("apply")
            .output()
            .expect("herald-update runs")
    }

    /// `apply`, which must succeed.
    pub fn apply_ok(&self, what: &str) {
        let out = self.apply();
        assert!(
            out.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `herald-update status --json`.
    pub fn status(&self) -> serde_json::Value {
        let out = stdout_of(self.update().args(["status", "--json"]));
        serde_json::from_str(&out).expect("status --json prints JSON")
    }

    /// The content of an installed file.
    pub fn installed(&self, file: &str) -> String {
        std::fs::read_to_string(self.install.join(file)).expect("installed file readable")
    }
}
