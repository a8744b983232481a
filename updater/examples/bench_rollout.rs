//! Benchmark: what evaluating the signed rollout policy adds to an update check, for a
//! repository of 10,000 targets.
//!
//! ```text
//! cargo run --release --locked -p herald-updater --example bench-rollout
//! ```
//!
//! Two repositories made by `herald-sign` hold the same 10,000 files: one as a plain release
//! (every endpoint installs every target), one as release 1 of channel `stable` under a
//! signed rollout policy (the files listed as `releases/1/...`). The endpoint has a client
//! certificate naming it and its group. Measured in the same process, in alternating rounds
//! (`HERALD_BENCH_RUNS`, default 30, each):
//!
//! - the whole update check, `Agent::check` (refresh against a `file://` mirror, trusted
//!   metadata already local, then the plan: which files to install) with and without the
//!   policy;
//! - the policy's decision alone: read and check the policy from the verified targets
//!   metadata, read the endpoint's name and group from its certificate, evaluate
//!   (`HERALD_BENCH_ITERATIONS`, default 1,000, per run);
//! - listing the files to install: with the policy, the release's 10,000 targets
//!   (`Client::release_targets`), which replaces, without it, every target of the repository
//!   (`Client::all_targets`).
//!
//! Prints a Markdown table of medians.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;

use herald_manifest::rollout::Endpoint;
use herald_manifest::{VerifiedRoot, VerifiedTargets};
use herald_updater::agent::Agent;
use herald_updater::config::Config;
use herald_updater::transport::{HttpsConfig, HttpsTransport};
use herald_updater::tuf::{init_trusted_root, Client};
use support::SignedRepo;

const TARGETS: usize = 10_000;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn release_folder(dir: &Path) {
    for i in 0..TARGETS {
        let sub = dir.join(format!("d{:03}", i % 100));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{i:06}.txt")), format!("file {i}\n")).unwrap();
    }
}

fn build_repo(work: &Path, flags: &[&str]) -> SignedRepo {
    let repo = SignedRepo::new();
    let folder = work.join("release");
    let _ = std::fs::remove_dir_all(&folder);
    release_folder(&folder);
    let flags: Vec<&std::ffi::OsStr> = flags.iter().map(std::ffi::OsStr::new).collect();
    repo.release_dir(
        &folder,
        &herald_keys_example::signing::private_key("release"),
        &flags,
    );
    repo
}

/// Writes a client certificate for `LAPTOP-ACME-0042` in group `pilot`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "LAPTOP-ACME-0042");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "pilot");
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

fn agent(work: &Path, name: &str, repo: &SignedRepo, cert: &(PathBuf, PathBuf)) -> Agent {
    let dir = work.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config {
        install_root: Some(dir.join("install")),
        state_dir: Some(dir.join("state")),
        mirrors: vec![url::Url::from_directory_path(repo.path())
            .unwrap()
            .to_string()],
        trusted_root: Some(repo.path().join("metadata/1.root.json")),
        client_cert: Some(cert.0.clone()),
        client_key: Some(cert.1.clone()),
        require_release_signatures: true,
        ..Config::default()
    };
    Agent::new(config).unwrap()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The verified top-level targets metadata of `repo`, as the updater holds it after a
/// refresh.
fn verified_targets(repo: &SignedRepo, now: time::OffsetDateTime) -> VerifiedTargets {
    let meta = repo.path().join("metadata");
    let read = |name: &str| std::fs::read(meta.join(name)).unwrap();
    let root = VerifiedRoot::trust_anchor(&read("1.root.json")).unwrap();
    let timestamp = root
        .verify_timestamp(&read("timestamp.json"), None, now)
        .unwrap();
    let version = timestamp.snapshot_meta().unwrap().version;
    let snapshot = root
        .verify_snapshot(
            &read(&format!("{version}.snapshot.json")),
            &timestamp,
            None,
            now,
        )
        .unwrap();
    let version = snapshot.meta["targets.json"].version;
    root.verify_targets(read(&format!("{version}.targets.json")), &snapshot, now)
        .unwrap()
}

/// The policy's decision for one update check: read and check the policy, read the
/// endpoint's identity from its certificate, evaluate. Returns the release to install.
fn decide(targets: &VerifiedTargets, cert: &Path) -> u64 {
    let policy = targets.rollout_policy().unwrap().unwrap();
    let pem = std::fs::read_to_string(cert).unwrap();
    let der = herald_token_client::first_certificate_der(&pem).unwrap();
    let identity = herald_token_client::identity_of_certificate(&der).unwrap();
    let offer = policy.evaluate(&Endpoint {
        name: Some(&identity.name),
        group: identity.group.as_str(),
        channel: None,
        installed: None,
    });
    offer.install.unwrap()
}

/// A TUF client of `repo` (a `file://` mirror), refreshed.
async fn client(work: &Path, name: &str, repo: &SignedRepo) -> Client {
    let dir = work.join(format!("client-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    init_trusted_root(
        &dir,
        &std::fs::read(repo.path().join("metadata/1.root.json")).unwrap(),
    )
    .unwrap();
    let transport = Arc::new(HttpsTransport::new(&HttpsConfig::default()).unwrap());
    let url = url::Url::from_directory_path(repo.path().join("metadata")).unwrap();
    let mut client = Client::new(transport, url, dir);
    client
        .refresh(herald_updater::tuf::system_now())
        .await
        .unwrap();
    client
}

/// Median time of `runs` rounds of `iterations` calls of `work`, per call.
fn per_call(runs: usize, iterations: usize, mut work: impl FnMut()) -> Duration {
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        for _ in 0..iterations {
            work();
        }
        times.push(start.elapsed() / iterations as u32);
    }
    median(times)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let runs = env_number("HERALD_BENCH_RUNS", 30);
    let iterations = env_number("HERALD_BENCH_ITERATIONS", 1000);
    let work = tempfile::tempdir().unwrap();
    let plain = build_repo(work.path(), &[]);
    let phased = build_repo(
        work.path(),
        &[
            "--channel",
            "stable",
            "--percent",
            "10%",
            "--pilot-group",
            "pilot",
        ],
    );
    eprintln!("built two repositories of {TARGETS} targets");
    let cert = certificate(work.path());
    let now = herald_updater::tuf::system_now();

    let without = agent(work.path(), "plain", &plain, &cert);
    let with = agent(work.path(), "phased", &phased, &cert);
    // First checks store the trusted metadata locally, as on an endpoint that polled before.
    let plan = without.check(now).await.unwrap();
    assert_eq!(plan.changed.len(), TARGETS);
    let plan = with.check(now).await.unwrap();
    assert_eq!(
        plan.changed.len(),
        TARGETS,
        "the pilot endpoint gets release 1"
    );
    assert_eq!(
        plan.changed[0].0, "d000/f000000.txt",
        "installed below the release folder"
    );

    let (mut plain_times, mut phased_times) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let start = Instant::now();
        without.check(now).await.unwrap();
        plain_times.push(start.elapsed());
        let start = Instant::now();
        with.check(now).await.unwrap();
        phased_times.push(start.elapsed());
    }

    let targets = verified_targets(&phased, now);
    let decision = per_call(runs.min(10), iterations, || {
        assert_eq!(decide(&targets, &cert.0), 1);
    });
    let plain_client = client(work.path(), "plain", &plain).await;
    let phased_client = client(work.path(), "phased", &phased).await;
    let (mut listing, mut selection) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let start = Instant::now();
        assert_eq!(plain_client.all_targets().await.unwrap().len(), TARGETS);
        listing.push(start.elapsed());
        let start = Instant::now();
        assert_eq!(phased_client.release_targets(1).unwrap().len(), TARGETS);
        selection.push(start.elapsed());
    }

    let (plain_median, phased_median) = (median(plain_times), median(phased_times));
    let (listing, selection) = (median(listing), median(selection));
    let us = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6);
    let difference = |without: Duration, with: Duration| {
        if with >= without {
            format!("+{}", ms(with - without))
        } else {
            format!("-{}", ms(without - with))
        }
    };
    println!("| measure (10,000 targets) | without policy | with policy | difference |");
    println!("|---|---|---|---|");
    println!(
        "| update check (`Agent::check`: refresh and plan), median of {runs} | {} | {} | {} |",
        ms(plain_median),
        ms(phased_median),
        difference(plain_median, phased_median)
    );
    println!(
        "| the policy's decision (read and check the policy, read the certificate, \
         evaluate), median of {} x {iterations} | - | {} | +{} |",
        runs.min(10),
        us(decision),
        us(decision)
    );
    println!(
        "| the files to install (every target / the release's targets), median of {runs} | \
         {} | {} | {} |",
        ms(listing),
        ms(selection),
        difference(listing, selection)
    );
}
