//! Signed phased rollouts through the whole chain with the three real binaries: `herald-ca
//! serve` issues the endpoints' certificates (their group, from the enrollment token, as the
//! certificate's OU), serves the repository over mutual TLS and receives the status reports;
//! `herald-sign` publishes releases to a channel with a pilot group and widens the rollout,
//! asking the CA's `GET /api/v1/fleet/releases` first; `herald-update enroll` and `apply` run
//! on each endpoint, evaluate the signed policy for the group in their own certificate, run
//! their health check, roll back and report. The CA's counts come from those reports alone.

#![allow(clippy::unwrap_used)]

mod ca_support;
mod enroll_support;
mod release_support;

use std::path::{Path, PathBuf};
use std::process::Output;

use ca_support::{ca_cmd, run_ok};
use enroll_support::{runtime, token_in_group, units_of, Site};
use release_support::{targets_version, write_release, Endpoint, Signer};

/// One enrolled endpoint of the fleet.
struct Member {
    name: String,
    group: &'static str,
    endpoint: Endpoint,
}

/// A CA serving a signed repository, the signer, and endpoints enrolled with `herald-update`.
struct Chain {
    site: Site,
    signer: Signer,
    /// Keeps the signer's keys.
    _keys: tempfile::TempDir,
    members: Vec<Member>,
}

/// Configuration of a health check that fails while `DIR/unhealthy` exists.
fn health_check(dir: &Path) -> String {
    format!(
        "[hooks]\nhealth_check = [\"/bin/sh\", \"-c\", \
         \"if [ -e {dir}/unhealthy ]; then echo acme service not answering >&2; exit 1; fi\"]\n\
         timeout_secs = 30\n",
        dir = dir.display()
    )
}

impl Chain {
    /// A served CA whose repository `herald-sign` created, and one endpoint per entry of
    /// `groups`, enrolled with a token of that group (in parallel); `extra` gives each
    /// endpoint's extra configuration from its folder.
    fn start(groups: &[&'static str], extra: impl Fn(&Path) -> String + Sync) -> Self {
        let keys = tempfile::tempdir().unwrap();
        let signer = Signer::new(keys.path());
        let site = Site::start_with(|ca| {
            // Beside the data folder, as quickstart places it, never in it.
            signer.init(&ca.scratch("repo"));
            ca.serve_repository(&ca.scratch("repo"), true);
        });
        let tokens: Vec<String> = runtime().block_on(async {
            let mut tokens = Vec::new();
            for group in groups {
                let created = token_in_group(&site, group, group).await;
                tokens.push(created["token"].as_str().unwrap().to_owned());
            }
            tokens
        });
        let server = site.ca.https_url();
        let fingerprint = site.fingerprint();
        let https = site.ca.https.to_string();
        let root = site.ca.scratch("repo/metadata/1.root.json");
        let members = std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .iter()
                .zip(&tokens)
                .enumerate()
                .map(|(i, (&group, token))| {
                    let dir = site.ca.scratch(&format!("endpoint-{i}"));
                    let (server, fingerprint, https, root, extra) =
                        (&server, &fingerprint, &https, &root, &extra);
                    scope.spawn(move || {
                        let endpoint = Endpoint::new(&dir, https, root, &extra(&dir));
                        let name = endpoint.enroll(server, token, fingerprint);
                        Member {
                            name,
                            group,
                            endpoint,
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        Self {
            site,
            signer,
            _keys: keys,
            members,
        }
    }

    fn repo(&self) -> PathBuf {
        self.site.ca.scratch("repo")
    }

    /// Publishes release `version` of the app with `herald-sign release ARGS`.
    fn release(&self, version: &str, args: &[&str]) {
        let dist = self.site.ca.scratch(&format!("dist-{version}"));
        write_release(&dist, version);
        self.signer.release_with(&self.repo(), &dist, args);
    }

    /// Release 1 on channel stable for everyone, installed everywhere.
    fn everyone_on_the_first_release(&self) {
        self.release("1", &["--channel", "stable"]);
        self.apply_all_ok();
    }

    /// Release 2 on channel stable for the pilot group only (0% of the others); returns its
    /// number (the targets version it was published in).
    fn second_release_to_the_pilots(&self) -> u64 {
        let plan: Vec<&str> = "--channel stable --pilot-group pilot --percent 0%"
            .split(' ')
            .collect();
        self.release("2", &plan);
        targets_version(&self.repo())
    }

    /// Runs `herald-update apply` on the members `which` selects, in parallel; returns their
    /// outputs by member index.
    fn apply_where(&self, which: impl Fn(&Member) -> bool) -> Vec<(usize, Output)> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .members
                .iter()
                .enumerate()
                .filter(|(_, m)| which(m))
                .map(|(i, m)| scope.spawn(move || (i, m.endpoint.apply())))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    /// `apply` on every member; each must succeed.
    fn apply_all_ok(&self) {
        for (i, out) in self.apply_where(|_| true) {
            assert!(
                out.status.success(),
                "{}: {}",
                self.members[i].name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// The release of the app a member has installed, read from its install root.
    fn app_release(&self, i: usize) -> String {
        self.members[i].endpoint.installed("app.txt")
    }

    /// `herald-ca fleet releases --json`.
    fn releases_cli(&self) -> serde_json::Value {
        let out = run_ok(
            ca_cmd()
                .args(["fleet", "releases", "--json", "--data-dir"])
                .arg(&self.site.ca.dir),
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `GET /api/v1/fleet/releases` with `bearer`; returns the status and the JSON answer.
    fn releases_api(&self, bearer: &str) -> (u16, serde_json::Value) {
        runtime().block_on(async {
            let response = self
                .site
                .client()
                .get(format!(
                    "{}/api/v1/fleet/releases",
                    self.site.ca.https_url()
                ))
                .bearer_auth(bearer)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap();
            (
                status,
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            )
        })
    }

    /// An auditor admin token, written to a file as `--admin-token-file` reads it.
    fn auditor_token_file(&self) -> PathBuf {
        let file = self.site.ca.scratch("auditor.token");
        std::fs::write(&file, format!("{}\n", self.site.ca.admin_token("auditor"))).unwrap();
        file
    }

    /// `herald-sign rollout advance` of channel stable to `percent`, asking the CA first with
    /// `--max-failure-rate max`.
    fn advance_checked(&self, percent: &str, max: &str, token_file: &Path) -> Output {
        let root = self.site.ca.file("root.crt");
        self.signer.rollout(
            &self.repo(),
            &[
                "advance",
                "--channel",
                "stable",
                "--percent",
                percent,
                "--fleet-url",
                &self.site.ca.https_url(),
                "--admin-token-file",
                token_file.to_str().unwrap(),
                "--ca-cert",
                root.to_str().unwrap(),
                "--max-failure-rate",
                max,
            ],
        )
    }
}

/// A row of the releases summary of channel stable.
fn row(release: u64, group: &str, counts: [u64; 5]) -> serde_json::Value {
    serde_json::json!({
        "channel": "stable", "release": release, "group": group,
        "installed": counts[0], "pending": counts[1], "failed": counts[2],
        "rolled_back": counts[3], "held": counts[4],
    })
}

const GROUPS: [&str; 6] = ["pilot", "default", "pilot", "default", "default", "default"];

#[test]
fn pilot_group_installs_first_and_the_ca_counts_it() {
    let chain = Chain::start(&GROUPS, |_| String::new());
    for member in &chain.members {
        assert!(
            member.name.starts_with(&format!("{}-", member.group)),
            "{} enrolled with a {} token",
            member.name,
            member.group
        );
    }
    chain.everyone_on_the_first_release();
    let second = chain.second_release_to_the_pilots();
    chain.apply_all_ok();

    for (i, member) in chain.members.iter().enumerate() {
        let (expected_app, expected_state) = if member.group == "pilot" {
            ("my app, release 2\n", "installed")
        } else {
            ("my app, release 1\n", "pending")
        };
        assert_eq!(chain.app_release(i), expected_app, "{}", member.name);
        let status = member.endpoint.status();
        assert_eq!(status["channel"], "stable", "{}: {status}", member.name);
        assert_eq!(status["release"], second, "{}: {status}", member.name);
        assert_eq!(status["state"], expected_state, "{}: {status}", member.name);
    }

    // The CA counts each endpoint's latest report by the group in its certificate.
    let expected = serde_json::json!({"releases": [
        row(second, "default", [0, 4, 0, 0, 0]),
        row(second, "pilot", [2, 0, 0, 0, 0]),
    ]});
    assert_eq!(chain.releases_cli(), expected);
    let auditor = chain.site.ca.admin_token("auditor");
    assert_eq!(chain.releases_api(&auditor), (200, expected));
}

#[test]
fn advance_refuses_when_the_cas_failure_rate_is_over_the_threshold() {
    let chain = Chain::start(&GROUPS, health_check);
    chain.everyone_on_the_first_release();
    // The first pilot's service stops answering: release 2 fails its health check there.
    let failing = 0;
    assert_eq!(chain.members[failing].group, "pilot");
    std::fs::write(chain.members[failing].endpoint.dir.join("unhealthy"), "").unwrap();
    let second = chain.second_release_to_the_pilots();
    for (i, out) in chain.apply_where(|_| true) {
        let expected = if i == failing { 1 } else { 0 };
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{}: {}",
            chain.members[i].name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        chain.app_release(failing),
        "my app, release 1\n",
        "rolled back"
    );
    let status = chain.members[failing].endpoint.status();
    assert_eq!(status["state"], "rolled_back", "{status}");
    assert!(
        status["reason"]
            .as_str()
            .unwrap()
            .contains("acme service not answering"),
        "{status}"
    );
    let expected = serde_json::json!({"releases": [
        row(second, "default", [0, 4, 0, 0, 0]),
        row(second, "pilot", [1, 0, 0, 1, 0]),
    ]});
    assert_eq!(chain.releases_cli(), expected);

    // One of the two endpoints with an outcome rolled back: 50%, above 2%.
    let token = chain.auditor_token_file();
    let refused = chain.advance_checked("100%", "2%", &token);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refusing to widen"), "{stderr}");
    assert!(stderr.contains("1 failed or rolled back of 2"), "{stderr}");
    assert_eq!(targets_version(&chain.repo()), second, "nothing published");
    // Another cycle everywhere changes nothing: the rolled-back endpoint does not try release 2
    // again and keeps reporting it rolled back, the others keep release 1.
    chain.apply_all_ok();
    assert_eq!(chain.releases_cli(), expected);
    for (i, member) in chain.members.iter().enumerate() {
        if member.group == "default" || i == failing {
            assert_eq!(
                chain.app_release(i),
                "my app, release 1\n",
                "{}",
                member.name
            );
        }
    }

    // With a threshold above the real rate, the rollout widens and the others install it.
    let widened = chain.advance_checked("100%", "60%", &token);
    assert!(
        widened.status.success(),
        "{}",
        String::from_utf8_lossy(&widened.stderr)
    );
    assert_eq!(targets_version(&chain.repo()), second + 1);
    for (i, out) in chain.apply_where(|m| m.group == "default") {
        assert!(
            out.status.success(),
            "{}: {}",
            chain.members[i].name,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(chain.app_release(i), "my app, release 2\n");
    }
    assert_eq!(
        chain.releases_cli(),
        serde_json::json!({"releases": [
            row(second, "default", [4, 0, 0, 0, 0]),
            row(second, "pilot", [1, 0, 0, 1, 0]),
        ]})
    );
}

#[test]
fn an_endpoint_moved_to_another_group_is_offered_its_new_groups_release_after_renewal() {
    let chain = Chain::start(&GROUPS, |_| String::new());
    chain.everyone_on_the_first_release();
    let second = chain.second_release_to_the_pilots();
    chain.apply_all_ok();
    let moved = 1;
    let (name, endpoint) = (&chain.members[moved].name, &chain.members[moved].endpoint);
    assert_eq!(chain.members[moved].group, "default");
    run_ok(
        ca_cmd()
            .args(["fleet", "set-group", name, "pilot", "--data-dir"])
            .arg(&chain.site.ca.dir),
    );

    // Until it renews, its certificate still names the group default: no release 2.
    endpoint.apply_ok("update before renewal");
    assert_eq!(chain.app_release(moved), "my app, release 1\n");
    assert_eq!(endpoint.status()["state"], "pending");

    // Not due yet: `renew` without `--force` leaves the certificate as it is.
    let before = std::fs::read_to_string(endpoint.state.join("identity/cert.pem")).unwrap();
    let out = run_ok(endpoint.update().arg("renew"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not due"),
        "{out:?}"
    );
    let unchanged = std::fs::read_to_string(endpoint.state.join("identity/cert.pem")).unwrap();
    assert_eq!(unchanged, before);

    // Renewed now: the new certificate carries the group the CA recorded, under the same name.
    let out = run_ok(endpoint.update().args(["renew", "--force"]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("renewed the certificate of {name}"),
    );
    let certificate = std::fs::read_to_string(endpoint.state.join("identity/cert.pem")).unwrap();
    assert_eq!(units_of(&chain.site, "renewed", &certificate), ["pilot"]);

    endpoint.apply_ok("update after renewal");
    assert_eq!(chain.app_release(moved), "my app, release 2\n");
    let status = endpoint.status();
    assert_eq!(
        (&status["release"], &status["state"]),
        (&second.into(), &"installed".into()),
        "{status}"
    );
    assert_eq!(
        chain.releases_cli(),
        serde_json::json!({"releases": [
            row(second, "default", [0, 3, 0, 0, 0]),
            row(second, "pilot", [3, 0, 0, 0, 0]),
        ]})
    );
}
