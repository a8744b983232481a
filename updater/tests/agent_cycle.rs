//! The service commands of `herald-update` (apply, status, rollback, import-bundle) against a
//! `herald-sign` repository served over real HTTPS on loopback.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::routing::post;
use support::{as_tree, tree, SignedRepo};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_herald-update");

const V1: &[(&str, &[u8])] = &[("app.bin", b"app version 1"), ("lib/x.so", b"library")];
const V2: &[(&str, &[u8])] = &[("app.bin", b"app version 2"), ("share/new.txt", b"new")];

/// Received status reports; the first `fail_first` posts are answered 503.
#[derive(Clone, Default)]
struct Reports {
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    fail_first: Arc<AtomicUsize>,
}

/// An endpoint: its folders and configuration file.
struct Endpoint {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Endpoint {
    fn new(repo: &SignedRepo, mirror: &url::Url, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("herald-update.toml");
        let text = format!(
            "install_root = {install:?}\nstate_dir = {state:?}\nmirrors = [{mirror:?}]\n\
             trusted_root = {root:?}\nca_bundle = {ca:?}\nrequire_release_signatures = true\n\
             status_url = \"{mirror}api/v1/status\"\n{extra}\n",
            install = dir.path().join("install"),
            state = dir.path().join("state"),
            mirror = mirror.as_str(),
            root = repo.path().join("metadata/1.root.json"),
            ca = support::write_pki(dir.path()).root,
        );
        std::fs::write(&config, text).unwrap();
        Endpoint { dir, config }
    }

    fn install(&self) -> PathBuf {
        self.dir.path().join("install")
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut command = std::process::Command::new(BIN);
        command.arg("--config").arg(&self.config).args(args);
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }

    async fn status(&self) -> serde_json::Value {
        let out = self.run(&["status", "--json"]).await;
        assert_exit(&out, 0);
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn serve(repo: &SignedRepo, reports: &Reports) -> url::Url {
    let reports = reports.clone();
    let router = support::dir_router(&repo.path()).route(
        "/api/v1/status",
        post(move |body: axum::body::Bytes| async move {
            if reports
                .fail_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            let value = serde_json::from_slice(&body).unwrap();
            reports.bodies.lock().unwrap().push(value);
            StatusCode::OK
        }),
    );
    support::serve_https(router).await
}

#[tokio::test]
async fn apply_installs_release_then_updates_and_rolls_back() {
    let repo = SignedRepo::new();
    repo.release(V1);
    let reports = Reports::default();
    let mirror = serve(&repo, &reports).await;
    let endpoint = Endpoint::new(&repo, &mirror, "");

    assert_exit(&endpoint.run(&["apply"]).await, 0);
    assert_eq!(tree(&endpoint.install()), as_tree(V1));
    let status = endpoint.status().await;
    assert_eq!(status["installed_version"], 1);
    assert_eq!(status["last_result"], "installed");

    let check = endpoint.run(&["check", "--json"]).await;
    assert_exit(&check, 0);
    let plan: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(plan["changed"].as_array().unwrap().len(), 0);

    repo.release(V2);
    let check = endpoint.run(&["check", "--json"]).await;
    let plan: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(plan["offered_version"], 2);
    assert_eq!(plan["removed"], serde_json::json!(["lib/x.so"]));
    assert_eq!(
        tree(&endpoint.install()),
        as_tree(V1),
        "check changes nothing"
    );

    assert_exit(&endpoint.run(&["apply"]).await, 0);
    assert_eq!(tree(&endpoint.install()), as_tree(V2));

    assert_exit(&endpoint.run(&["rollback"]).await, 0);
    assert_eq!(tree(&endpoint.install()), as_tree(V1));
    assert_eq!(endpoint.status().await["last_result"], "rolled-back");

    let sent = reports.bodies.lock().unwrap().len();
    assert_eq!(sent, 2, "one report per apply, sent when acknowledged");
}

#[tokio::test]
async fn release_signed_without_the_release_key_is_refused_and_install_kept() {
    // The attacker holds the targets, snapshot and timestamp keys, not the release key: its
    // repository declares another release key; its metadata is then served to the endpoint.
    let repo = SignedRepo::new();
    repo.release(V1);
    let evil_key = tempfile::tempdir().unwrap();
    let evil = evil_key.path().join("evil.pem");
    repo.sign(&["keygen".as_ref(), "--out".as_ref(), evil.as_os_str()]);
    let attacker = SignedRepo::with_release_key(&evil_key.path().join("evil.pem.pub"));
    attacker.release_with(V1, &evil);
    attacker.release_with(&[("app.bin", b"malware")], &evil);

    let reports = Reports::default();
    let mirror = serve(&repo, &reports).await;
    let endpoint = Endpoint::new(&repo, &mirror, "");
    assert_exit(&endpoint.run(&["apply"]).await, 0);

    for name in ["2.targets.json", "2.snapshot.json", "timestamp.json"] {
        let from = attacker.path().join("metadata").join(name);
        std::fs::copy(from, repo.path().join("metadata").join(name)).unwrap();
    }
    copy_tree(
        &attacker.path().join("targets"),
        &repo.path().join("targets"),
    );

    let out = endpoint.run(&["apply"]).await;
    assert_exit(&out, 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("release signature"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        tree(&endpoint.install()),
        as_tree(V1),
        "installed release intact"
    );
    let status = endpoint.status().await;
    assert_eq!(status["last_result"], "error");
    assert_eq!(status["installed_version"], 1);
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}

#[tokio::test]
async fn unlisted_file_is_reported_then_quarantined_when_configured() {
    let repo = SignedRepo::new();
    repo.release(V1);
    let mirror = serve(&repo, &Reports::default()).await;
    let endpoint = Endpoint::new(&repo, &mirror, "");
    assert_exit(&endpoint.run(&["apply"]).await, 0);
    std::fs::write(endpoint.install().join("lib/dropped.so"), "not ours").unwrap();
    repo.release(V2);
    assert_exit(&endpoint.run(&["apply"]).await, 0);
    assert_eq!(
        endpoint.status().await["unlisted"],
        serde_json::json!(["lib/dropped.so"])
    );

    let quarantining = Endpoint::new(&repo, &mirror, "quarantine_unlisted = true");
    std::fs::create_dir_all(quarantining.install()).unwrap();
    std::fs::write(quarantining.install().join("stray.bin"), "stray").unwrap();
    assert_exit(&quarantining.run(&["apply"]).await, 0);
    assert_eq!(tree(&quarantining.install()), as_tree(V2));
    assert!(quarantining
        .install()
        .join(".herald/quarantine/stray.bin")
        .exists());
}

#[tokio::test]
async fn status_reports_are_kept_until_acknowledged() {
    let repo = SignedRepo::new();
    repo.release(V1);
    let reports = Reports::default();
    reports.fail_first.store(1, Ordering::SeqCst);
    let mirror = serve(&repo, &reports).await;
    let endpoint = Endpoint::new(&repo, &mirror, "");

    assert_exit(&endpoint.run(&["apply"]).await, 0);
    assert!(
        reports.bodies.lock().unwrap().is_empty(),
        "first post refused"
    );
    let queued = std::fs::read_dir(endpoint.dir.path().join("state/reports"))
        .unwrap()
        .count();
    assert_eq!(queued, 1, "the unacknowledged report stays on disk");

    assert_exit(&endpoint.run(&["apply"]).await, 0);
    let bodies = reports.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "the queued report and the new one");
    assert_eq!(bodies[0]["installed_version"], 1);
    let queued = std::fs::read_dir(endpoint.dir.path().join("state/reports"))
        .unwrap()
        .count();
    assert_eq!(queued, 0);
}

#[tokio::test]
async fn import_bundle_installs_an_offline_release() {
    let repo = SignedRepo::new();
    repo.release(V1);
    let bundle = repo.dir.path().join("bundle.zip");
    repo.sign(&[
        "bundle".as_ref(),
        "--repo".as_ref(),
        repo.path().as_os_str(),
        "--out".as_ref(),
        bundle.as_os_str(),
    ]);
    // No server: the mirror in the configuration is unreachable.
    let endpoint = Endpoint::new(&repo, &url::Url::parse("https://127.0.0.1:9/").unwrap(), "");
    let out = endpoint
        .run(&["import-bundle", bundle.to_str().unwrap()])
        .await;
    assert_exit(&out, 0);
    assert_eq!(tree(&endpoint.install()), as_tree(V1));

    let evil = repo.dir.path().join("evil.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&evil).unwrap());
    zip.start_file("../escape", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut zip, b"x").unwrap();
    zip.finish().unwrap();
    let out = endpoint
        .run(&["import-bundle", evil.to_str().unwrap()])
        .await;
    assert_exit(&out, 1);
    assert!(!endpoint.dir.path().join("state/escape").exists());
    assert_eq!(tree(&endpoint.install()), as_tree(V1));
}

/// A minimal HTTP CONNECT proxy on loopback that counts the tunnels it opens.
async fn connect_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tunnels = Arc::new(AtomicUsize::new(0));
    let count = tunnels.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut client = BufReader::new(client);
                let mut request = String::new();
                client.read_line(&mut request).await.unwrap();
                let target = request.split_whitespace().nth(1).unwrap().to_owned();
                loop {
                    let mut line = String::new();
                    client.read_line(&mut line).await.unwrap();
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                }
                let mut upstream = tokio::net::TcpStream::connect(target).await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let mut client = client.into_inner();
                client
                    .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (format!("http://{addr}"), tunnels)
}

#[tokio::test]
async fn updates_go_through_the_configured_proxy() {
    let repo = SignedRepo::new();
    repo.release(V1);
    let mirror = serve(&repo, &Reports::default()).await;
    let (proxy, tunnels) = connect_proxy().await;
    let endpoint = Endpoint::new(&repo, &mirror, &format!("proxy = {proxy:?}"));
    assert_exit(&endpoint.run(&["apply"]).await, 0);
    assert_eq!(tree(&endpoint.install()), as_tree(V1));
    assert!(
        tunnels.load(Ordering::SeqCst) >= 1,
        "traffic went through the proxy"
    );
}

#[tokio::test]
async fn killed_at_every_install_step_leaves_old_or_new_release() {
    let repo = SignedRepo::new();
    repo.release(V1);
    let mirror = serve(&repo, &Reports::default()).await;
    let endpoint = Endpoint::new(&repo, &mirror, "");
    assert_exit(&endpoint.run(&["apply"]).await, 0);
    repo.release(V2);
    for step in 0..64 {
        if endpoint.status().await["installed_version"] == 2 {
            assert_exit(&endpoint.run(&["rollback"]).await, 0);
        }
        assert_eq!(tree(&endpoint.install()), as_tree(V1));
        let mut command = std::process::Command::new(BIN);
        command
            .arg("--config")
            .arg(&endpoint.config)
            .arg("apply")
            .env(herald_updater::agent::CRASH_AT_STEP_VAR, step.to_string());
        let out = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        // The next start recovers; `check` opens the install root.
        assert_exit(&endpoint.run(&["check"]).await, 0);
        let files = tree(&endpoint.install());
        assert!(
            files == as_tree(V1) || files == as_tree(V2),
            "killed before step {step}: neither release: {:?}",
            files.keys().collect::<Vec<_>>()
        );
        if out.status.success() {
            assert_eq!(files, as_tree(V2));
            assert!(step > 5, "the install was killed at several steps first");
            return;
        }
        assert_eq!(out.status.code(), None, "killed by a signal at step {step}");
    }
    panic!("the install never completed");
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut zip, data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

#[tokio::test]
async fn zip_package_is_unpacked_updated_and_checked() {
    let repo = SignedRepo::new();
    let v1 = zip_of(&[("bin/tool", b"tool 1"), ("README", b"read me")]);
    repo.release(&[("pkg/app.zip", &v1), ("plain.txt", b"plain")]);
    let mirror = serve(&repo, &Reports::default()).await;
    let endpoint = Endpoint::new(&repo, &mirror, "unpack_zip = true");

    assert_exit(&endpoint.run(&["apply"]).await, 0);
    let unpacked: &[(&str, &[u8])] = &[
        ("pkg/app/bin/tool", b"tool 1"),
        ("pkg/app/README", b"read me"),
        ("plain.txt", b"plain"),
    ];
    assert_eq!(tree(&endpoint.install()), as_tree(unpacked));
    let check = endpoint.run(&["check", "--json"]).await;
    let plan: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(
        plan["changed"],
        serde_json::json!([]),
        "unpacked files count as in place"
    );

    let v2 = zip_of(&[("bin/tool", b"tool 2")]);
    repo.release(&[("pkg/app.zip", &v2), ("plain.txt", b"plain")]);
    assert_exit(&endpoint.run(&["apply"]).await, 0);
    let updated: &[(&str, &[u8])] = &[("pkg/app/bin/tool", b"tool 2"), ("plain.txt", b"plain")];
    assert_eq!(tree(&endpoint.install()), as_tree(updated));

    // A signed package with a path-traversal entry is refused before anything is written.
    let evil = zip_of(&[("../../escape", b"x")]);
    repo.release(&[("pkg/app.zip", &evil), ("plain.txt", b"plain")]);
    let out = endpoint.run(&["apply"]).await;
    assert_exit(&out, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("escape"));
    assert_eq!(tree(&endpoint.install()), as_tree(updated));
    assert!(!endpoint.dir.path().join("escape").exists());
}
