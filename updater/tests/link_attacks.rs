//! A local user who can write inside the install root plants symbolic links at every path the
//! updater writes (staging files, the state folder, the journal, `txn/`, `previous/`,
//! quarantine, a destination's folder), also while an install runs. Nothing outside the root
//! may be written, truncated or moved, and no unverified byte may be installed; the updater
//! either replaces the link inside the root or stops with an error that names the path.
//! Also: a download killed half-way never shows among the installed files.

#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use herald_updater::install::InstallRoot;
use sha2::{Digest, Sha256};
use support::{as_tree, SignedRepo};

const BIN: &str = env!("CARGO_BIN_EXE_herald-update");

const V1: &[(&str, &[u8])] = &[("app.bin", b"app version 1"), ("lib/x.so", b"library")];
const V2: &[(&str, &[u8])] = &[("app.bin", b"app version 2"), ("lib/x.so", b"library 2")];

/// An endpoint, and a folder outside its install root holding files the attacker aims at.
struct Endpoint {
    dir: tempfile::TempDir,
    config: PathBuf,
    outside: tempfile::TempDir,
}

impl Endpoint {
    fn new(repo: &SignedRepo, mirror: &url::Url, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("herald-update.toml");
        let text = format!(
            "install_root = {install:?}\nstate_dir = {state:?}\nmirrors = [{mirror:?}]\n\
             trusted_root = {root:?}\nca_bundle = {ca:?}\nrequire_release_signatures = true\n\
             {extra}\n",
            install = dir.path().join("install"),
            state = dir.path().join("state"),
            mirror = mirror.as_str(),
            root = repo.path().join("metadata/1.root.json"),
            ca = support::write_pki(dir.path()).root,
        );
        std::fs::write(&config, text).unwrap();
        std::fs::create_dir(dir.path().join("install")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("victim"), "precious, outside the root").unwrap();
        Endpoint {
            dir,
            config,
            outside,
        }
    }

    fn install(&self) -> PathBuf {
        self.dir.path().join("install")
    }

    fn state(&self) -> PathBuf {
        self.install().join(".herald")
    }

    fn victim(&self) -> PathBuf {
        self.outside.path().join("victim")
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(BIN);
        command.arg("--config").arg(&self.config).args(args);
        command
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut command = self.command(args);
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }

    /// Every file (and link) outside the root's neighbourhood that the attacker aims at.
    fn outside_files(&self) -> BTreeMap<String, Vec<u8>> {
        files_under(self.outside.path())
    }
}

/// Every file under `dir` (links not followed, reported with their target) with its content.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                walk(root, &path, out);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(rel, format!("-> {}", target.display()).into_bytes());
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// What the install root shows to anyone listing it: every file outside the state folder.
fn visible(install: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = files_under(install);
    files.retain(|path, _| path != ".herald" && !path.starts_with(".herald/"));
    files
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

/// The command failed with a message naming `path` as a link it refuses.
fn assert_refused(out: &Output, path: &str) {
    assert_exit(out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(path) && stderr.contains("refusing"),
        "the error names {path} and refuses it: {stderr}"
    );
}

async fn serve(repo: &SignedRepo) -> url::Url {
    support::serve_https(support::dir_router(&repo.path())).await
}

/// Serves `repo`; once `armed` is set, runs `hook` (once) before answering the next request
/// for a target whose URL path contains `name`.
async fn serve_with_hook(
    repo: &SignedRepo,
    name: &'static str,
    armed: Arc<AtomicBool>,
    hook: impl Fn() + Clone + Send + Sync + 'static,
) -> url::Url {
    let router = support::dir_router(&repo.path()).layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let hook = hook.clone();
            let armed = armed.clone();
            async move {
                let path = req.uri().path();
                if path.contains("/targets/")
                    && path.contains(name)
                    && armed.swap(false, Ordering::SeqCst)
                {
                    hook();
                }
                next.run(req).await
            }
        },
    ));
    support::serve_https(router).await
}

#[tokio::test]
async fn link_at_staging_file_is_never_written_through() {
    let repo = SignedRepo::new();
    repo.release(V1);
    let mirror = serve(&repo).await;
    let endpoint = Endpoint::new(&repo, &mirror, "");
    // Where earlier versions staged `lib/x.so`, and where this one does.
    std::fs::create_dir_all(endpoint.install().join("lib")).unwrap();
    symlink(
        endpoint.victim(),
        endpoint.install().join("lib/.x.so.herald-staged"),
    )
    .unwrap();
    std::fs::create_dir_all(endpoint.state().join("staging")).unwrap();
    let name = hex::encode(Sha256::digest(b"app.bin"));
    symlink(
        endpoint.victim(),
        endpoint.state().join("staging").join(name),
    )
    .unwrap();
    let before = endpoint.outside_files();

    assert_exit(&endpoint.run(&["apply"]).await, 0);
    assert_eq!(endpoint.outside_files(), before, "nothing outside written");
    assert_eq!(visible(&endpoint.install()), as_tree(V1));
}

#[tokio::test]
async fn linked_state_folder_is_refused() {
    let repo = SignedRepo::new();
    repo.release(V1);
    let mirror = serve(&repo).await;
    let endpoint = Endpoint::new(&repo, &mirror, "");
    symlink(endpoint.outside.path(), endpoint.state()).unwrap();
    let before = endpoint.outside_files();

    assert_refused(&endpoint.run(&["apply"]).await, ".herald");
    assert_eq!(endpoint.outside_files(), before, "nothing outside written");
    assert!(visible(&endpoint.install()).is_empty(), "nothing installed");
}

#[tokio::test]
async fn link_at_journal_and_state_files_is_replaced_not_followed() {
    let repo = SignedRepo::new();
    repo.release(V1);
    let mirror = serve(&repo).await;
    let endpoint = Endpoint::new(&repo, &mirror, "");
    assert_exit(&endpoint.run(&["apply"]).await, 0);
    // Every name the updater writes a state file under, and the temporary names beside them.
    for name in ["journal.json.tmp", "installed.json.tmp"] {
        symlink(endpoint.victim(), endpoint.state().join(name)).unwrap();
    }
    let before = endpoint.outside_files();
    repo.release(V2);

    assert_exit(&endpoint.run(&["apply"]).await, 0);
    assert_eq!(endpoint.outside_files(), before, "nothing outside written");
    assert_eq!(visible(&endpoint.install()), as_tree(V2));
}

#[tokio::test]
async fn linked_txn_folder_is_refused_by_recovery() {
    let repo = SignedRepo::new();
    repo.release(V1);
    let mirror = serve(&repo).await;
    let endpoint = Endpoint::new(&repo, &mirror, "");
    assert_exit(&endpoint.run(&["apply"]).await, 0);
    repo.release(V2);
    // Killed after the old `app.bin` moved into txn/ and before the new one took its place.
    let mut command = endpoint.command(&["apply"]);
    command.env(herald_updater::agent::CRASH_AT_STEP_VAR, "2");
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), None, "killed by the fault injection");
    assert_eq!(
        std::fs::read(endpoint.state().join("txn/files/app.bin")).unwrap(),
        b"app version 1"
    );
    // The attacker points txn/ at a folder outside holding a file of their choice.
    let fake = endpoint.outside.path().join("txn");
    std::fs::create_dir_all(fake.join("files")).unwrap();
    std::fs::write(fake.join("files/app.bin"), "outside, unverified").unwrap();
    std::fs::remove_dir_all(endpoint.state().join("txn")).unwrap();
    symlink(&fake, endpoint.state().join("txn")).unwrap();
    let before = endpoint.outside_files();

    assert_refused(&endpoint.run(&["check"]).await, "txn");
    assert_eq!(endpoint.outside_files(), before, "nothing outside moved");
    assert!(
        !visible(&endpoint.install())
            .values()
            .any(|c| c == b"outside, unverified"),
        "nothing from outside installed"
    );
}

#[tokio::test]
async fn linked_previous_folder_is_refused_by_rollback() {
    let repo = SignedRepo::new();
    repo.release(V1);
    let mirror = serve(&repo).await;
    let endpoint = Endpoint::new(&repo, &mirror, "");
    assert_exit(&endpoint.run(&["apply"]).await, 0);
    repo.release(V2);
    assert_exit(&endpoint.run(&["apply"]).await, 0);
    // A forged previous release outside the root, consistent with its own files.
    let evil = b"outside, unverified";
    let fake = endpoint.outside.path().join("previous");
    std::fs::create_dir_all(fake.join("files")).unwrap();
    std::fs::write(fake.join("files/app.bin"), evil).unwrap();
    let release = serde_json::json!({
        "version": 1,
        "files": {"app.bin": {"length": evil.len(), "sha256": hex::encode(Sha256::digest(evil))}},
    });
    std::fs::write(fake.join("release.json"), release.to_string()).unwrap();
    std::fs::remove_dir_all(endpoint.state().join("previous")).unwrap();
    symlink(&fake, endpoint.state().join("previous")).unwrap();
    let before = endpoint.outside_files();

    assert_refused(&endpoint.run(&["rollback"]).await, "previous");
    assert_eq!(endpoint.outside_files(), before, "nothing outside moved");
    assert_eq!(
        visible(&endpoint.install()),
        as_tree(V2),
        "installed release kept"
    );
}

#[tokio::test]
async fn linked_quarantine_folder_is_refused() {
    let repo = SignedRepo::new();
    repo.release(V1);
    let mirror = serve(&repo).await;
    let endpoint = Endpoint::new(&repo, &mirror, "quarantine_unlisted = true");
    assert_exit(&endpoint.run(&["apply"]).await, 0);
    std::fs::write(endpoint.install().join("stray.bin"), "stray").unwrap();
    symlink(endpoint.outside.path(), endpoint.state().join("quarantine")).unwrap();
    let before = endpoint.outside_files();
    repo.release(V2);

    assert_refused(&endpoint.run(&["apply"]).await, "quarantine");
    assert_eq!(endpoint.outside_files(), before, "nothing outside written");
    let mut expected = as_tree(V2);
    expected.insert("stray.bin".into(), b"stray".to_vec());
    assert_eq!(
        visible(&endpoint.install()),
        expected,
        "stray file left in place"
    );
}

#[tokio::test]
async fn destination_folder_swapped_for_link_during_download_is_refused() {
    let repo = SignedRepo::new();
    repo.release(V1);
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("x.so"), "precious, outside the root").unwrap();
    let install = Arc::new(std::sync::Mutex::new(PathBuf::new()));
    let armed = Arc::new(AtomicBool::new(false));
    let (hook_install, hook_outside) = (install.clone(), outside.path().to_path_buf());
    let mirror = serve_with_hook(&repo, "x.so", armed.clone(), move || {
        // The folder the new file goes to is swapped for a link out of the root.
        let lib = hook_install.lock().unwrap().join("lib");
        std::fs::rename(&lib, lib.with_file_name("lib.away")).unwrap();
        symlink(&hook_outside, &lib).unwrap();
    })
    .await;
    let endpoint = Endpoint::new(&repo, &mirror, "");
    *install.lock().unwrap() = endpoint.install();
    assert_exit(&endpoint.run(&["apply"]).await, 0);
    repo.release(V2);
    let before = files_under(outside.path());
    armed.store(true, Ordering::SeqCst);

    let out = endpoint.run(&["apply"]).await;
    assert!(!armed.load(Ordering::SeqCst), "the folder was swapped");
    assert_eq!(
        files_under(outside.path()),
        before,
        "nothing outside written or moved"
    );
    assert_refused(&out, "lib");
}

#[test]
fn folder_swapped_for_link_between_listing_and_quarantine_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let (root, _) = InstallRoot::open(dir.path()).unwrap();
    std::fs::create_dir(dir.path().join("lib")).unwrap();
    std::fs::write(dir.path().join("lib/dropped.so"), "not ours").unwrap();
    let unlisted = root.unlisted().unwrap();
    assert_eq!(unlisted, vec!["lib/dropped.so".to_owned()]);
    // Between the listing and the move, `lib` becomes a link to a folder outside.
    std::fs::rename(dir.path().join("lib"), dir.path().join("lib.away")).unwrap();
    std::fs::write(outside.path().join("dropped.so"), "precious").unwrap();
    symlink(outside.path(), dir.path().join("lib")).unwrap();

    let err = root.quarantine(&unlisted).unwrap_err();
    assert!(err.to_string().contains("refusing"), "{err}");
    assert_eq!(
        std::fs::read(outside.path().join("dropped.so")).unwrap(),
        b"precious",
        "nothing moved from outside"
    );
}

/// Serves `repo`; while `hang` is set, a target whose URL path contains `name` is answered
/// with its first half, then nothing more.
async fn serve_hanging(repo: &SignedRepo, name: &'static str, hang: Arc<AtomicBool>) -> url::Url {
    let router = support::dir_router(&repo.path()).layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let hang = hang.clone();
            async move {
                let path = req.uri().path();
                if !(path.contains("/targets/")
                    && path.contains(name)
                    && hang.load(Ordering::SeqCst))
                {
                    return next.run(req).await;
                }
                let full = axum::body::to_bytes(next.run(req).await.into_body(), usize::MAX)
                    .await
                    .unwrap();
                let half = full.slice(..full.len() / 2);
                let body = futures_util::stream::once(async move { Ok::<_, std::io::Error>(half) })
                    .chain(futures_util::stream::pending());
                let mut response: Response = axum::body::Body::from_stream(body).into_response();
                response.headers_mut().insert(
                    axum::http::header::CONTENT_LENGTH,
                    full.len().to_string().parse().unwrap(),
                );
                response
            }
        },
    ));
    support::serve_https(router).await
}

#[tokio::test]
async fn partial_download_after_kill_is_not_among_installed_files() {
    let big: Vec<u8> = (0..512 * 1024u32).map(|i| (i % 251) as u8).collect();
    let files: &[(&str, &[u8])] = &[("app.bin", b"app"), ("plugins/big.so", &big)];
    let repo = SignedRepo::new();
    repo.release(files);
    let hang = Arc::new(AtomicBool::new(true));
    let mirror = serve_hanging(&repo, "big.so", hang.clone()).await;
    let endpoint = Endpoint::new(&repo, &mirror, "");

    let mut child = endpoint.command(&["apply"]).spawn().unwrap();
    // Wait until half of the file is on disk somewhere under the root, then kill -9.
    let half = (big.len() / 2) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let written = |dir: &Path| {
        files_under(dir)
            .values()
            .any(|content| content.len() as u64 == half)
    };
    while !written(&endpoint.install()) {
        assert!(Instant::now() < deadline, "the download never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(
        visible(&endpoint.install()).is_empty(),
        "a partial download is among the installed files: {:?}",
        visible(&endpoint.install()).keys().collect::<Vec<_>>()
    );
    // The next cycle resumes or replaces it, installs the release, and leaves nothing staged.
    hang.store(false, Ordering::SeqCst);
    assert_exit(&endpoint.run(&["apply"]).await, 0);
    assert_eq!(visible(&endpoint.install()), as_tree(files));
    let staged = endpoint.state().join("staging");
    assert!(
        !staged.exists() || std::fs::read_dir(&staged).unwrap().next().is_none(),
        "nothing left staged"
    );
}
