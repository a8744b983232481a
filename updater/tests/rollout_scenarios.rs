//! Signed phased rollouts on loopback: a fleet of 50 simulated endpoints (each its own state
//! folder, install root, configuration and client certificate naming it and its group) runs
//! the real `herald-update` binary against one repository built and steered with
//! `herald-sign` (`release --channel`, `rollout advance|pause|resume|abort|hold|follow`),
//! served over HTTPS. Attacks: a mirror changing the percentage, an endpoint claiming another
//! group, a replayed rollout step.
//!
//! Membership is checked against the documented function, computed here independently:
//! SHA-256 of `herald-rollout-v1` NUL NAME NUL RELEASE, first 8 bytes big-endian, modulo
//! 10,000, below the rollout's basis points.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use herald_updater::agent::StatusReport;
use herald_wire::RolloutState;
use sha2::{Digest, Sha256};
use support::{as_tree, tree, SignedRepo};
use url::Url;

const BIN: &str = env!("CARGO_BIN_EXE_herald-update");

/// Endpoints in the fleet.
const FLEET: usize = 50;

/// Updaters run at the same time.
const PARALLEL: usize = 8;

const V1: &[(&str, &[u8])] = &[("app.bin", b"app 1"), ("lib/x.so", b"lib 1")];
const V2: &[(&str, &[u8])] = &[
    ("app.bin", b"app 2"),
    ("lib/x.so", b"lib 1"),
    ("new.txt", b"2"),
];
const V3: &[(&str, &[u8])] = &[("app.bin", b"app 3"), ("lib/x.so", b"lib 3")];
const BETA: &[(&str, &[u8])] = &[("app.bin", b"app beta"), ("lib/x.so", b"lib beta")];

/// The admin token the fleet summary stub expects.
const FLEET_TOKEN: &str = "fleet-auditor-token";

/// The membership bucket as documented, computed without Herald's code.
fn documented_bucket(name: &str, release: u64) -> u32 {
    let digest = Sha256::digest(format!("herald-rollout-v1\0{name}\0{release}").as_bytes());
    let first: [u8; 8] = digest[..8].try_into().unwrap();
    (u64::from_be_bytes(first) % 10_000) as u32
}

/// What the HTTPS server serves besides the repository: files a malicious mirror substitutes,
/// and the fleet releases summary (a stand-in for the CA's auditor API).
#[derive(Clone, Default)]
struct Served {
    overrides: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    fleet: Arc<Mutex<serde_json::Value>>,
    fleet_requests: Arc<AtomicUsize>,
}

async fn serve(repo: &SignedRepo, served: &Served) -> Url {
    let fleet = served.clone();
    let overrides = served.clone();
    let router = Router::new()
        .route(
            "/api/v1/fleet/releases",
            get(move |headers: HeaderMap| {
                let fleet = fleet.clone();
                async move {
                    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
                        == Some(&format!("Bearer {FLEET_TOKEN}"));
                    if !authorized {
                        return StatusCode::UNAUTHORIZED.into_response();
                    }
                    fleet.fleet_requests.fetch_add(1, Ordering::SeqCst);
                    axum::Json(fleet.fleet.lock().unwrap().clone()).into_response()
                }
            }),
        )
        .fallback_service(tower_http::services::ServeDir::new(repo.path()))
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let overrides = overrides.clone();
                async move {
                    let substituted = overrides
                        .overrides
                        .lock()
                        .unwrap()
                        .get(request.uri().path())
                        .cloned();
                    match substituted {
                        Some(bytes) => bytes.into_response(),
                        None => next.run(request).await,
                    }
                }
            },
        ));
    support::serve_https(router).await
}

/// One simulated endpoint.
struct Endpoint {
    name: String,
    group: String,
    dir: PathBuf,
}

impl Endpoint {
    fn config(&self) -> PathBuf {
        self.dir.join("herald-update.toml")
    }

    fn install(&self) -> PathBuf {
        self.dir.join("install")
    }

    /// Writes the configuration: the repository, the test TLS root, its certificate, and
    /// `extra` settings.
    fn configure(&self, fleet: &Fleet, extra: &str) {
        let text = format!(
            "install_root = {install:?}\nstate_dir = {state:?}\nmirrors = [{mirror:?}]\n\
             trusted_root = {root:?}\nca_bundle = {ca:?}\nrequire_release_signatures = true\n\
             client_cert = {cert:?}\nclient_key = {key:?}\n{extra}\n",
            install = self.install(),
            state = self.dir.join("state"),
            mirror = fleet.mirror.as_str(),
            root = fleet.repo.path().join("metadata/1.root.json"),
            ca = fleet.tls_root,
            cert = self.dir.join("cert.pem"),
            key = self.dir.join("key.pem"),
        );
        std::fs::write(self.config(), text).unwrap();
    }

    /// A client certificate naming the endpoint (CN) and its group (one OU; none for
    /// `default`), as the CA issues them.
    fn certify(&self, group: &str) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, self.name.as_str());
        if group != "default" {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationalUnitName, group);
        }
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(self.dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(self.dir.join("key.pem"), key.serialize_pem()).unwrap();
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut command = std::process::Command::new(BIN);
        command.arg("--config").arg(self.config()).args(args);
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }

    /// The status the last cycle recorded (the body of its report).
    fn status(&self) -> StatusReport {
        let bytes = std::fs::read(self.dir.join("state/status.json")).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Every installed file with its content.
    fn tree(&self) -> BTreeMap<String, Vec<u8>> {
        tree(&self.install())
    }

    /// Lines the health check appended to its log: how often it ran.
    fn health_checks(&self) -> usize {
        std::fs::read_to_string(self.dir.join("checks.log"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The fleet: a repository, its HTTPS mirror, 50 endpoints.
struct Fleet {
    dir: tempfile::TempDir,
    repo: SignedRepo,
    served: Served,
    mirror: Url,
    tls_root: PathBuf,
    endpoints: Vec<Endpoint>,
}

impl Fleet {
    /// 50 endpoints `EP-0001`..`EP-0050`; `group_of(i)` gives endpoint i's group and
    /// `extra_of(i)` extra configuration.
    async fn new(
        group_of: impl Fn(usize) -> &'static str,
        extra_of: impl Fn(usize) -> String,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = SignedRepo::new();
        let served = Served::default();
        let mirror = serve(&repo, &served).await;
        let tls_root = support::write_pki(dir.path()).root;
        let mut fleet = Fleet {
            endpoints: Vec::new(),
            dir,
            repo,
            served,
            mirror,
            tls_root,
        };
        for i in 0..FLEET {
            let endpoint = Endpoint {
                name: format!("EP-{:04}", i + 1),
                group: group_of(i).to_owned(),
                dir: fleet.dir.path().join(format!("ep{i}")),
            };
            std::fs::create_dir_all(&endpoint.dir).unwrap();
            endpoint.certify(&endpoint.group);
            endpoint.configure(&fleet, &extra_of(i));
            fleet.endpoints.push(endpoint);
        }
        fleet
    }

    async fn plain() -> Self {
        Fleet::new(|_| "default", |_| String::new()).await
    }

    /// `herald-sign release --channel ...` of `files`.
    fn release(&self, files: &[(&str, &[u8])], flags: &[&str]) {
        let folder = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let file = folder.path().join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, content).unwrap();
        }
        let flags: Vec<&OsStr> = flags.iter().map(OsStr::new).collect();
        self.repo.release_dir(
            folder.path(),
            &herald_keys_example::signing::private_key("release"),
            &flags,
        );
    }

    /// `herald-sign rollout ARGS` with the targets, snapshot and timestamp keys, on a thread
    /// of its own (as the binary, outside the test's runtime, which keeps serving).
    async fn rollout(&self, args: &[&str]) -> Result<(), herald_signing::Error> {
        use clap::Parser;
        let key = herald_keys_example::signing::private_key;
        let mut argv: Vec<std::ffi::OsString> = vec!["herald-sign".into(), "rollout".into()];
        argv.extend(args.iter().map(Into::into));
        argv.extend(["--repo".into(), self.repo.path().into_os_string()]);
        for role in ["targets", "snapshot", "timestamp"] {
            argv.extend(["--key".into(), key(role).into_os_string()]);
        }
        tokio::task::spawn_blocking(move || {
            herald_signing::run(herald_signing::Cli::try_parse_from(argv).unwrap())
        })
        .await
        .unwrap()
    }

    async fn rollout_owned(&self, args: Vec<String>) -> Result<(), herald_signing::Error> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.rollout(&args).await
    }

    async fn rollout_ok(&self, args: &[&str]) {
        if let Err(e) = self.rollout(args).await {
            panic!("rollout {args:?}: {e}");
        }
    }

    /// Runs `herald-update apply` on the endpoints `which` selects, at most [`PARALLEL`] at
    /// once; returns their outputs by endpoint index.
    async fn apply_where(&self, which: impl Fn(usize) -> bool) -> BTreeMap<usize, Output> {
        let chosen: Vec<usize> = (0..self.endpoints.len()).filter(|&i| which(i)).collect();
        futures_util::stream::iter(chosen)
            .map(|i| async move { (i, self.endpoints[i].run(&["apply"]).await) })
            .buffer_unordered(PARALLEL)
            .collect()
            .await
    }

    /// Runs `apply` everywhere and asserts that every run exits 0.
    async fn apply_all_ok(&self) {
        for (i, out) in self.apply_where(|_| true).await {
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}: {}",
                self.endpoints[i].name,
                stderr(&out)
            );
        }
    }

    /// The endpoints (by index) holding exactly `files`.
    fn holding(&self, files: &[(&str, &[u8])]) -> BTreeSet<usize> {
        let expected = as_tree(files);
        (0..self.endpoints.len())
            .filter(|&i| self.endpoints[i].tree() == expected)
            .collect()
    }

    /// The endpoints whose documented bucket for `release` is below `basis_points`.
    fn members(&self, release: u64, basis_points: u32) -> BTreeSet<usize> {
        (0..self.endpoints.len())
            .filter(|&i| documented_bucket(&self.endpoints[i].name, release) < basis_points)
            .collect()
    }

    /// The fleet releases summary as the CA computes it from each endpoint's latest report
    /// and the group it recorded for the endpoint: one row per channel, release and group.
    fn summary(&self) -> serde_json::Value {
        let mut rows: BTreeMap<(String, u64, String), BTreeMap<&str, u64>> = BTreeMap::new();
        for endpoint in &self.endpoints {
            let status = endpoint.status();
            let (Some(channel), Some(release), Some(state)) =
                (status.channel, status.release, status.state)
            else {
                continue;
            };
            let row = rows
                .entry((channel, release, endpoint.group.clone()))
                .or_default();
            *row.entry(state.as_str()).or_default() += 1;
        }
        let releases: Vec<serde_json::Value> = rows
            .into_iter()
            .map(|((channel, release, group), counts)| {
                let count = |s: RolloutState| counts.get(s.as_str()).copied().unwrap_or(0);
                serde_json::json!({
                    "channel": channel, "release": release, "group": group,
                    "installed": count(RolloutState::Installed),
                    "pending": count(RolloutState::Pending),
                    "failed": count(RolloutState::Failed),
                    "rolled_back": count(RolloutState::RolledBack),
                    "held": count(RolloutState::Held),
                })
            })
            .collect();
        serde_json::json!({ "releases": releases })
    }

    fn targets_version(&self) -> u64 {
        let bytes = std::fs::read(self.repo.path().join("metadata/timestamp.json")).unwrap();
        let ts: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let snapshot = ts["signed"]["meta"]["snapshot.json"]["version"]
            .as_u64()
            .unwrap();
        let bytes = std::fs::read(
            self.repo
                .path()
                .join(format!("metadata/{snapshot}.snapshot.json")),
        )
        .unwrap();
        let snap: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        snap["signed"]["meta"]["targets.json"]["version"]
            .as_u64()
            .unwrap()
    }
}

/// Release 1 to every endpoint, then release 2 to 10% of them.
async fn fleet_at_ten_percent() -> Fleet {
    let fleet = Fleet::plain().await;
    fleet.release(V1, &["--channel", "stable"]);
    fleet.apply_all_ok().await;
    assert_eq!(fleet.holding(V1).len(), FLEET, "release 1 reached everyone");
    fleet.release(V2, &["--channel", "stable", "--percent", "10%"]);
    fleet.apply_all_ok().await;
    fleet
}

#[tokio::test]
async fn at_ten_percent_exactly_the_selected_endpoints_install_and_the_rest_report_pending() {
    let fleet = fleet_at_ten_percent().await;
    let selected = fleet.members(2, 1000);
    // 13 of these 50 names fall in the first 10% of buckets for release 2; over 10,000 names
    // the share is 10% (a unit test of the membership function checks the spread).
    assert!(
        (1..FLEET / 2).contains(&selected.len()),
        "some but not most of the fleet: {selected:?}"
    );
    assert_eq!(
        fleet.holding(V2),
        selected,
        "exactly the selected endpoints"
    );
    assert_eq!(fleet.holding(V1).len(), FLEET - selected.len());
    for (i, endpoint) in fleet.endpoints.iter().enumerate() {
        let status = endpoint.status();
        assert_eq!(status.channel.as_deref(), Some("stable"));
        assert_eq!(
            status.release,
            Some(2),
            "{}: counted against release 2",
            endpoint.name
        );
        if selected.contains(&i) {
            assert_eq!(status.state, Some(RolloutState::Installed));
            assert_eq!(status.installed_version, Some(2));
        } else {
            assert_eq!(
                status.state,
                Some(RolloutState::Pending),
                "{}",
                endpoint.name
            );
            assert_eq!(status.installed_version, Some(1));
        }
    }
}

#[tokio::test]
async fn widening_to_fifty_percent_keeps_the_first_ten_percent_and_adds_more() {
    let fleet = fleet_at_ten_percent().await;
    let first = fleet.holding(V2);
    fleet
        .rollout_ok(&["advance", "--channel", "stable", "--percent", "50%"])
        .await;
    fleet.apply_all_ok().await;
    let wider = fleet.holding(V2);
    assert_eq!(wider, fleet.members(2, 5000));
    assert!(first.is_subset(&wider), "the first 10% stay in");
    assert!(
        wider.len() > first.len() + 5,
        "{} then {}",
        first.len(),
        wider.len()
    );
    assert_eq!(fleet.holding(V1).len(), FLEET - wider.len());
}

#[tokio::test]
async fn pause_stops_new_installs() {
    let fleet = Fleet::plain().await;
    fleet.release(V1, &["--channel", "stable"]);
    fleet.apply_all_ok().await;
    fleet.release(V2, &["--channel", "stable", "--percent", "50%"]);
    let members = fleet.members(2, 5000);
    // Half the fleet polls before the operator pauses, the rest after.
    let early = |i: usize| i < FLEET / 2;
    for (_, out) in fleet.apply_where(early).await {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let installed_before_pause: BTreeSet<usize> =
        members.iter().copied().filter(|&i| early(i)).collect();
    assert_eq!(fleet.holding(V2), installed_before_pause);

    fleet.rollout_ok(&["pause", "--channel", "stable"]).await;
    fleet.apply_all_ok().await;
    assert_eq!(
        fleet.holding(V2),
        installed_before_pause,
        "no new install while paused; those done keep it"
    );
    let waiting: Vec<usize> = members.iter().copied().filter(|&i| !early(i)).collect();
    assert!(!waiting.is_empty());
    for &i in &waiting {
        let status = fleet.endpoints[i].status();
        assert_eq!(status.state, Some(RolloutState::Pending));
        assert_eq!(status.reason.as_deref(), Some("the rollout is paused"));
    }

    fleet.rollout_ok(&["resume", "--channel", "stable"]).await;
    fleet.apply_all_ok().await;
    assert_eq!(fleet.holding(V2), members);
}

#[tokio::test]
async fn a_pilot_group_installs_before_everyone() {
    let pilots = |i: usize| i < 5;
    let fleet = Fleet::new(
        |i| if pilots(i) { "pilot" } else { "default" },
        |_| String::new(),
    )
    .await;
    fleet.release(V1, &["--channel", "stable"]);
    fleet.apply_all_ok().await;
    fleet.release(
        V2,
        &[
            "--channel",
            "stable",
            "--pilot-group",
            "pilot",
            "--percent",
            "0%",
        ],
    );
    fleet.apply_all_ok().await;
    assert_eq!(fleet.holding(V2), (0..5).collect::<BTreeSet<_>>());
    assert_eq!(fleet.holding(V1).len(), FLEET - 5);

    fleet
        .rollout_ok(&["advance", "--channel", "stable", "--percent", "100%"])
        .await;
    fleet.apply_all_ok().await;
    assert_eq!(fleet.holding(V2).len(), FLEET, "then everyone");
}

#[tokio::test]
async fn a_beta_channel_endpoint_gets_the_beta_release_and_a_stable_one_does_not() {
    // Endpoints 0-9 follow beta by configuration, 10-14 by their group (`testers`, which the
    // signed policy maps to beta); the others follow stable.
    let fleet = Fleet::new(
        |i| {
            if (10..15).contains(&i) {
                "testers"
            } else {
                "default"
            }
        },
        |i| {
            if i < 10 {
                "channel = \"beta\"".into()
            } else {
                String::new()
            }
        },
    )
    .await;
    fleet.release(V1, &["--channel", "stable"]);
    fleet.release(BETA, &["--channel", "beta"]);
    fleet
        .rollout_ok(&["follow", "--group", "testers", "--channel", "beta"])
        .await;
    fleet.apply_all_ok().await;
    assert_eq!(fleet.holding(BETA), (0..15).collect::<BTreeSet<_>>());
    assert_eq!(fleet.holding(V1), (15..FLEET).collect::<BTreeSet<_>>());
    let beta = fleet.endpoints[12].status();
    assert_eq!(
        (beta.channel.as_deref(), beta.release),
        (Some("beta"), Some(2))
    );
    let stable = fleet.endpoints[20].status();
    assert_eq!(
        (stable.channel.as_deref(), stable.release),
        (Some("stable"), Some(1))
    );
}

#[tokio::test]
async fn a_held_endpoint_stays() {
    // Endpoint 2 is held by name and group `frozen` (endpoints 3-5) by the signed policy;
    // endpoint 6 holds itself in its configuration.
    let fleet = Fleet::new(
        |i| {
            if (3..6).contains(&i) {
                "frozen"
            } else {
                "default"
            }
        },
        |i| {
            if i == 6 {
                "hold = true".into()
            } else {
                String::new()
            }
        },
    )
    .await;
    fleet.release(V1, &["--channel", "stable"]);
    for (i, out) in fleet.apply_where(|i| i != 6).await {
        assert_eq!(out.status.code(), Some(0), "{i}: {}", stderr(&out));
    }
    fleet.endpoints[6].configure(&fleet, "");
    let out = fleet.endpoints[6].run(&["apply"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    fleet.endpoints[6].configure(&fleet, "hold = true");

    fleet
        .rollout_ok(&["hold", "--endpoint", "EP-0003", "--group", "frozen"])
        .await;
    fleet.release(V2, &["--channel", "stable"]);
    let release = fleet.targets_version();
    fleet.apply_all_ok().await;
    let held: BTreeSet<usize> = (2..7).collect();
    assert_eq!(fleet.holding(V1), held);
    assert_eq!(fleet.holding(V2).len(), FLEET - held.len());
    for &i in &held {
        let status = fleet.endpoints[i].status();
        assert_eq!(
            status.state,
            Some(RolloutState::Held),
            "{}",
            fleet.endpoints[i].name
        );
        assert_eq!(
            status.release,
            Some(release),
            "held back from the current release"
        );
    }
    assert!(fleet.endpoints[6]
        .status()
        .reason
        .unwrap()
        .contains("hold = true"));

    fleet
        .rollout_ok(&["unhold", "--endpoint", "EP-0003", "--group", "frozen"])
        .await;
    fleet.endpoints[6].configure(&fleet, "");
    fleet.apply_all_ok().await;
    assert_eq!(fleet.holding(V2).len(), FLEET, "released, they update");
}

/// Configuration of a health check that fails while `DIR/unhealthy` exists, logging each
/// run to `DIR/checks.log`.
fn health_check(dir: &Path) -> String {
    format!(
        "[hooks]\nhealth_check = [\"/bin/sh\", \"-c\", \"echo ran >> {dir}/checks.log; \
         if [ -e {dir}/unhealthy ]; then echo acme service not answering >&2; exit 1; fi\"]\n\
         timeout_secs = 20\n",
        dir = dir.display()
    )
}

#[tokio::test]
async fn a_failing_health_check_rolls_back_exactly_the_failing_endpoints_and_reports_it() {
    let fleet = Fleet::plain().await;
    for endpoint in &fleet.endpoints {
        endpoint.configure(&fleet, &health_check(&endpoint.dir));
    }
    fleet.release(V1, &["--channel", "stable"]);
    fleet.apply_all_ok().await;
    let failing: BTreeSet<usize> = [3, 17, 29, 41].into();
    for &i in &failing {
        std::fs::write(fleet.endpoints[i].dir.join("unhealthy"), "").unwrap();
    }
    fleet.release(V2, &["--channel", "stable"]);
    for (i, out) in fleet.apply_where(|_| true).await {
        let expected = if failing.contains(&i) { 1 } else { 0 };
        assert_eq!(out.status.code(), Some(expected), "{i}: {}", stderr(&out));
    }
    assert_eq!(
        fleet.holding(V1),
        failing,
        "exactly the failing endpoints rolled back"
    );
    assert_eq!(fleet.holding(V2).len(), FLEET - failing.len());
    for &i in &failing {
        let status = fleet.endpoints[i].status();
        assert_eq!(status.state, Some(RolloutState::RolledBack));
        assert_eq!(status.release, Some(2));
        assert_eq!(status.installed_version, Some(1));
        let reason = status.reason.unwrap();
        assert!(reason.contains("health_check"), "{reason}");
        assert!(reason.contains("acme service not answering"), "{reason}");
    }
    let healthy = fleet.endpoints[0].status();
    assert_eq!(healthy.state, Some(RolloutState::Installed));
    assert_eq!(healthy.reason, None);

    // The failing endpoints do not retry release 2...
    let checks: Vec<usize> = failing
        .iter()
        .map(|&i| fleet.endpoints[i].health_checks())
        .collect();
    fleet.apply_all_ok().await;
    assert_eq!(fleet.holding(V1), failing);
    let again: Vec<usize> = failing
        .iter()
        .map(|&i| fleet.endpoints[i].health_checks())
        .collect();
    assert_eq!(
        checks, again,
        "release 2 was not installed and checked again"
    );
    assert_eq!(
        fleet.endpoints[3].status().state,
        Some(RolloutState::RolledBack)
    );

    // ...until a newer release is published.
    for &i in &failing {
        std::fs::remove_file(fleet.endpoints[i].dir.join("unhealthy")).unwrap();
    }
    fleet.release(V3, &["--channel", "stable"]);
    fleet.apply_all_ok().await;
    assert_eq!(fleet.holding(V3).len(), FLEET);
}

#[tokio::test]
async fn abort_returns_everyone_to_the_previous_release() {
    let fleet = Fleet::plain().await;
    fleet.release(V1, &["--channel", "stable"]);
    fleet.apply_all_ok().await;
    fleet.release(V2, &["--channel", "stable", "--percent", "50%"]);
    fleet.apply_all_ok().await;
    assert_eq!(fleet.holding(V2), fleet.members(2, 5000));
    let before = fleet.targets_version();

    fleet.rollout_ok(&["abort", "--channel", "stable"]).await;
    assert_eq!(
        fleet.targets_version(),
        before + 1,
        "a newer signed version"
    );
    fleet.apply_all_ok().await;
    assert_eq!(fleet.holding(V1).len(), FLEET, "everyone back on release 1");
    for endpoint in &fleet.endpoints {
        let status = endpoint.status();
        assert_eq!(status.release, Some(1));
        assert_eq!(status.state, Some(RolloutState::Installed));
    }
}

#[tokio::test]
async fn advance_refuses_at_a_failure_rate_over_its_threshold() {
    let fleet = Fleet::plain().await;
    for endpoint in &fleet.endpoints {
        endpoint.configure(&fleet, &health_check(&endpoint.dir));
    }
    fleet.release(V1, &["--channel", "stable"]);
    fleet.apply_all_ok().await;
    fleet.release(V2, &["--channel", "stable", "--percent", "50%"]);
    let members = fleet.members(2, 5000);
    let failing: BTreeSet<usize> = members.iter().copied().take(2).collect();
    for &i in &failing {
        std::fs::write(fleet.endpoints[i].dir.join("unhealthy"), "").unwrap();
    }
    fleet.apply_where(|_| true).await;
    assert_eq!(fleet.holding(V2).len(), members.len() - failing.len());

    *fleet.served.fleet.lock().unwrap() = fleet.summary();
    let token = fleet.dir.path().join("admin-token");
    std::fs::write(&token, format!("{FLEET_TOKEN}\n")).unwrap();
    let (url, ca) = (
        fleet.mirror.to_string(),
        fleet.tls_root.display().to_string(),
    );
    let token = token.display().to_string();
    let advance = |max: &'static str| {
        fleet.rollout_owned(vec![
            "advance".into(),
            "--channel".into(),
            "stable".into(),
            "--percent".into(),
            "100%".into(),
            "--fleet-url".into(),
            url.clone(),
            "--max-failure-rate".into(),
            max.into(),
            "--admin-token-file".into(),
            token.clone(),
            "--ca-cert".into(),
            ca.clone(),
        ])
    };
    let before = fleet.targets_version();
    let err = advance("2%").await.unwrap_err();
    assert_eq!(err.exit_code(), 1);
    let message = err.to_string();
    assert!(message.contains("refusing to widen"), "{message}");
    assert!(
        message.contains(&format!("2 failed or rolled back of {}", members.len())),
        "{message}"
    );
    assert_eq!(fleet.targets_version(), before, "nothing published");
    assert_eq!(fleet.served.fleet_requests.load(Ordering::SeqCst), 1);

    advance("50%").await.unwrap();
    assert_eq!(fleet.targets_version(), before + 1);
    fleet.apply_where(|_| true).await;
    assert_eq!(fleet.holding(V2).len(), FLEET - failing.len());
}

#[tokio::test]
async fn a_mirror_serving_a_changed_percentage_is_refused() {
    let fleet = fleet_at_ten_percent().await;
    let selected = fleet.holding(V2);
    let metadata = fleet.repo.path().join("metadata");
    let read_json = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(metadata.join(name)).unwrap()).unwrap()
    };
    let timestamp = read_json("timestamp.json");
    let snapshot_version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
        .as_u64()
        .unwrap();
    let snapshot = read_json(&format!("{snapshot_version}.snapshot.json"));
    let targets_version = snapshot["signed"]["meta"]["targets.json"]["version"]
        .as_u64()
        .unwrap();

    // The mirror widens the rollout to 100% in a new step of its own: targets, snapshot and
    // timestamp rewritten, one version up, lengths and hashes consistent, signatures kept.
    let mut targets = read_json(&format!("{targets_version}.targets.json"));
    targets["signed"]["x-herald-rollout"]["channels"]["stable"]["basis_points"] = 10000.into();
    targets["signed"]["version"] = (targets_version + 1).into();
    let targets_bytes = serde_json::to_vec(&targets).unwrap();
    let mut forged_snapshot = snapshot.clone();
    forged_snapshot["signed"]["version"] = (snapshot_version + 1).into();
    forged_snapshot["signed"]["meta"]["targets.json"] = serde_json::json!({
        "version": targets_version + 1,
        "length": targets_bytes.len(),
        "hashes": {"sha256": hex::encode(Sha256::digest(&targets_bytes))},
    });
    let snapshot_bytes = serde_json::to_vec(&forged_snapshot).unwrap();
    let mut forged_timestamp = timestamp.clone();
    forged_timestamp["signed"]["version"] =
        (timestamp["signed"]["version"].as_u64().unwrap() + 1).into();
    forged_timestamp["signed"]["meta"]["snapshot.json"] = serde_json::json!({
        "version": snapshot_version + 1,
        "length": snapshot_bytes.len(),
        "hashes": {"sha256": hex::encode(Sha256::digest(&snapshot_bytes))},
    });
    {
        let mut overrides = fleet.served.overrides.lock().unwrap();
        overrides.insert(
            format!("/metadata/{}.targets.json", targets_version + 1),
            targets_bytes,
        );
        overrides.insert(
            format!("/metadata/{}.snapshot.json", snapshot_version + 1),
            snapshot_bytes,
        );
        overrides.insert(
            "/metadata/timestamp.json".into(),
            serde_json::to_vec(&forged_timestamp).unwrap(),
        );
    }
    for (i, out) in fleet.apply_where(|_| true).await {
        assert_eq!(out.status.code(), Some(1), "{i} accepted forged metadata");
        let message = stderr(&out);
        assert!(message.contains("timestamp metadata"), "{message}");
        assert!(message.contains("valid signature"), "{message}");
    }
    assert_eq!(
        fleet.holding(V2),
        selected,
        "nobody outside the 10% installed"
    );

    // The same change in the targets file alone: its hash no longer matches the snapshot.
    let mut tampered = read_json(&format!("{targets_version}.targets.json"));
    tampered["signed"]["x-herald-rollout"]["channels"]["stable"]["basis_points"] = 10000.into();
    *fleet.served.overrides.lock().unwrap() = HashMap::from([(
        format!("/metadata/{targets_version}.targets.json"),
        serde_json::to_vec(&tampered).unwrap(),
    )]);
    let fresh = &fleet.endpoints[*fleet
        .members(2, 10_000)
        .difference(&selected)
        .next()
        .unwrap()];
    std::fs::remove_dir_all(fresh.dir.join("state/metadata")).unwrap();
    let out = fresh.run(&["apply"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("targets metadata"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fresh.tree(), as_tree(V1));
}

#[tokio::test]
async fn an_endpoint_claiming_another_group_is_offered_what_its_certificate_says() {
    let fleet = Fleet::plain().await;
    fleet.release(V1, &["--channel", "stable"]);
    fleet.apply_all_ok().await;
    fleet.release(
        V2,
        &[
            "--channel",
            "stable",
            "--pilot-group",
            "pilot",
            "--percent",
            "0%",
        ],
    );
    let endpoint = &fleet.endpoints[0];

    // Its configuration cannot name a group: the setting does not exist.
    endpoint.configure(&fleet, "group = \"pilot\"");
    let out = endpoint.run(&["apply"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("group"), "{}", stderr(&out));
    assert_eq!(endpoint.tree(), as_tree(V1));

    // Its status and queued report may say anything: what it is offered comes from the
    // signed policy and its certificate (OU absent: `default`).
    endpoint.configure(&fleet, "");
    let mut claimed = endpoint.status();
    claimed.channel = Some("stable".into());
    claimed.state = Some(RolloutState::Installed);
    let mut forged = serde_json::to_value(&claimed).unwrap();
    forged["group"] = "pilot".into();
    std::fs::write(
        endpoint.dir.join("state/status.json"),
        serde_json::to_vec(&forged).unwrap(),
    )
    .unwrap();
    let out = endpoint.run(&["apply"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(endpoint.tree(), as_tree(V1));
    assert_eq!(endpoint.status().state, Some(RolloutState::Pending));

    // Only a certificate naming the group (as the CA issues after an operator's change)
    // changes the offer.
    endpoint.certify("pilot");
    let out = endpoint.run(&["apply"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(endpoint.tree(), as_tree(V2));
}

#[tokio::test]
async fn replaying_an_old_rollout_step_is_refused() {
    let fleet = fleet_at_ten_percent().await;
    let metadata = fleet.repo.path().join("metadata");
    let ten_percent_timestamp = std::fs::read(metadata.join("timestamp.json")).unwrap();
    fleet
        .rollout_ok(&["advance", "--channel", "stable", "--percent", "50%"])
        .await;
    fleet.apply_all_ok().await;
    let at_fifty = fleet.holding(V2);
    assert_eq!(at_fifty, fleet.members(2, 5000));

    // The mirror serves the 10% step again: every file of it is validly signed.
    fleet
        .served
        .overrides
        .lock()
        .unwrap()
        .insert("/metadata/timestamp.json".into(), ten_percent_timestamp);
    for (i, out) in fleet.apply_where(|_| true).await {
        assert_eq!(out.status.code(), Some(1), "{i} took the replayed step");
        assert!(stderr(&out).contains("rollback"), "{}", stderr(&out));
    }
    assert_eq!(
        fleet.holding(V2),
        at_fifty,
        "no endpoint went back to the 10% step"
    );
    let status = fleet.endpoints[0].status();
    assert_eq!(status.last_result.as_deref(), Some("error"));
}

#[tokio::test]
async fn signed_release_hooks_run_only_where_the_configuration_allows_them() {
    let fleet = Fleet::plain().await;
    fleet.release(V1, &["--channel", "stable"]);
    let allowing = |i: usize| i < 3;
    let (allow, deny) = (&fleet.endpoints[0], &fleet.endpoints[3]);
    for (i, endpoint) in fleet.endpoints.iter().enumerate().take(6) {
        let extra = if allowing(i) {
            "allow_release_hooks = true"
        } else {
            ""
        };
        endpoint.configure(&fleet, extra);
    }
    for (_, out) in fleet.apply_where(|i| i < 6).await {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    // Release 2 asks for a health check that fails everywhere.
    let hooks = fleet.dir.path().join("hooks.toml");
    std::fs::write(
        &hooks,
        "health_check = [\"/bin/sh\", \"-c\", \"echo release check failed >&2; exit 7\"]\n",
    )
    .unwrap();
    fleet.release(
        V2,
        &["--channel", "stable", "--hooks", hooks.to_str().unwrap()],
    );
    for (i, out) in fleet.apply_where(|i| i < 6).await {
        let expected = if allowing(i) { 1 } else { 0 };
        assert_eq!(out.status.code(), Some(expected), "{i}: {}", stderr(&out));
    }
    assert_eq!(allow.tree(), as_tree(V1));
    let reason = allow.status().reason.unwrap();
    assert!(
        reason.contains("health_check release `/bin/sh` exited with status 7"),
        "{reason}"
    );
    assert!(reason.contains("release check failed"), "{reason}");
    assert_eq!(
        deny.tree(),
        as_tree(V2),
        "release hooks are not run by default"
    );
}

#[tokio::test]
async fn a_failing_pre_install_hook_cancels_the_install_and_reports_failed() {
    let fleet = Fleet::plain().await;
    let endpoint = &fleet.endpoints[0];
    let gate = endpoint.dir.join("maintenance-window-closed");
    endpoint.configure(
        &fleet,
        &format!(
            "[hooks]\npre_install = [\"/bin/sh\", \"-c\", \"if [ -e {} ]; then echo not now; \
             exit 1; fi\"]\n",
            gate.display()
        ),
    );
    fleet.release(V1, &["--channel", "stable"]);
    assert_eq!(endpoint.run(&["apply"]).await.status.code(), Some(0));
    std::fs::write(&gate, "").unwrap();
    fleet.release(V2, &["--channel", "stable"]);
    let out = endpoint.run(&["apply"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(endpoint.tree(), as_tree(V1), "nothing installed");
    let status = endpoint.status();
    assert_eq!(status.state, Some(RolloutState::Failed));
    assert_eq!(status.release, Some(2));
    assert!(status.reason.unwrap().contains("not now"));

    // Not remembered: the next cycle tries again.
    std::fs::remove_file(&gate).unwrap();
    let out = endpoint.run(&["apply"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(endpoint.tree(), as_tree(V2));
    assert_eq!(endpoint.status().state, Some(RolloutState::Installed));
}
