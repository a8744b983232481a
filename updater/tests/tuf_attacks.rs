//! One test per TUF attack, against a hostile python-tuf repository served over real HTTPS
//! on loopback, through the updater's client workflow.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::IntoResponse;
use axum::routing::get;
use herald_manifest::{TargetPath, VerifyError};
use herald_updater::download::{AttemptError, DownloadError};
use herald_updater::transport::{FetchError, HttpsConfig, HttpsTransport, Timeouts};
use herald_updater::tuf::{init_trusted_root, system_now, Client, ClientError};
use support::PyRepo;
use url::Url;

/// A client over HTTPS for `base`, trusting the repository's first root.
fn client_for(repo: &PyRepo, base: &Url, md: &std::path::Path, timeouts: Timeouts) -> Client {
    let root = std::fs::read(repo.metadata("1.root.json")).unwrap();
    init_trusted_root(md, &root).unwrap();
    let transport = HttpsTransport::new(&HttpsConfig {
        trust_anchors_pem: Some(support::trust_anchor()),
        timeouts,
        ..HttpsConfig::default()
    })
    .unwrap();
    Client::new(
        Arc::new(transport),
        base.join("metadata/").unwrap(),
        md.to_path_buf(),
    )
}

/// Serves the repository over HTTPS and returns a client with a fresh metadata folder.
async fn setup(repo: &PyRepo) -> (Client, Url, tempfile::TempDir) {
    let base = support::serve_https(support::dir_router(&repo.published())).await;
    let md = tempfile::tempdir().unwrap();
    let client = client_for(repo, &base, md.path(), Timeouts::default());
    (client, base, md)
}

fn path(p: &str) -> TargetPath {
    TargetPath::new(p).unwrap()
}

async fn download(
    client: &Client,
    base: &Url,
    target: &str,
) -> Result<std::path::PathBuf, ClientError> {
    let found = client.find_target(&path(target)).await?;
    let dir = tempfile::tempdir().unwrap().keep();
    let staging = dir.join("staged");
    client
        .download_target(&found, &[base.join("targets/").unwrap()], &staging)
        .await?;
    Ok(staging)
}

#[tokio::test]
async fn arbitrary_installation_of_modified_target_is_refused() {
    let repo = PyRepo::new(&["--no-consistent"]);
    repo.run(&["add-target", "app.bin", "genuine"]);
    std::fs::write(repo.published().join("targets/app.bin"), "malware").unwrap();
    let (mut client, base, _md) = setup(&repo).await;
    client.refresh(system_now()).await.unwrap();
    let err = download(&client, &base, "app.bin").await.unwrap_err();
    let ClientError::Download(err) = err else {
        panic!("unexpected {err}");
    };
    let DownloadError::AllMirrorsFailed { attempts, .. } = *err else {
        panic!("unexpected {err}");
    };
    assert!(matches!(
        attempts[0].1,
        AttemptError::TooLong { .. } | AttemptError::HashMismatch { .. }
    ));
}

#[tokio::test]
async fn endless_data_in_timestamp_is_cut_at_the_size_limit() {
    let repo = PyRepo::new(&[]);
    std::fs::write(
        repo.metadata("timestamp.json"),
        vec![b' '; 10 * 1024 * 1024],
    )
    .unwrap();
    let (mut client, _base, _md) = setup(&repo).await;
    let err = client.refresh(system_now()).await.unwrap_err();
    let ClientError::Fetch { source, .. } = &err else {
        panic!("unexpected {err}");
    };
    assert!(matches!(**source, FetchError::TooLarge { .. }), "{err}");
}

#[tokio::test]
async fn extraneous_dependency_signed_by_unauthorised_delegate_is_not_found() {
    let repo = PyRepo::new(&[]);
    repo.run(&["delegate", "team", "team/*"]);
    // The delegate signs a path outside what it is trusted for.
    repo.run(&["add-target", "core/libc.so", "evil libc", "--role", "team"]);
    repo.run(&["add-target", "team/tool", "team tool", "--role", "team"]);
    let (mut client, base, _md) = setup(&repo).await;
    client.refresh(system_now()).await.unwrap();
    let err = client.find_target(&path("core/libc.so")).await.unwrap_err();
    assert!(matches!(err, ClientError::TargetNotFound(_)), "{err}");
    download(&client, &base, "team/tool").await.unwrap();
}

#[tokio::test]
async fn fast_forward_attack_is_recovered_after_timestamp_key_rotation() {
    let repo = PyRepo::new(&[]);
    let (mut client, _base, _md) = setup(&repo).await;
    client.refresh(system_now()).await.unwrap();
    // An attacker with the timestamp key pushes the version far ahead.
    repo.run(&["timestamp-version", "1000"]);
    client.refresh(system_now()).await.unwrap();
    // Back to the genuine, lower versions: refused while the compromised key is trusted...
    repo.run(&["publish"]);
    let err = client.refresh(system_now()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(VerifyError::Rollback { .. })),
        "{err}"
    );
    // ...and accepted once root rotates the timestamp key.
    repo.run(&["rotate", "timestamp"]);
    client.refresh(system_now()).await.unwrap();
}

#[tokio::test]
async fn indefinite_freeze_with_expired_metadata_is_refused() {
    let repo = PyRepo::new(&[]);
    let (mut client, _base, _md) = setup(&repo).await;
    client.refresh(system_now()).await.unwrap();
    // A mirror keeps serving the same metadata: fine until it expires.
    let later = system_now() + time::Duration::days(31);
    let err = client.refresh(later).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(VerifyError::Expired { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn malicious_mirror_cannot_block_an_update_served_by_another_mirror() {
    let repo = PyRepo::new(&["--no-consistent"]);
    repo.run(&["add-target", "app.bin", "genuine"]);
    let evil = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(evil.path().join("targets")).unwrap();
    std::fs::write(evil.path().join("targets/app.bin"), "garbage").unwrap();
    let evil_base = support::serve_https(support::dir_router(evil.path())).await;
    let (mut client, base, _md) = setup(&repo).await;
    client.refresh(system_now()).await.unwrap();
    let found = client.find_target(&path("app.bin")).await.unwrap();
    let staging = evil.path().join("staged");
    let mirrors = [
        evil_base.join("targets/").unwrap(),
        base.join("targets/").unwrap(),
    ];
    client
        .download_target(&found, &mirrors, &staging)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&staging).unwrap(), b"genuine");
}

#[tokio::test]
async fn mix_and_match_of_targets_versions_is_refused() {
    let repo = PyRepo::new(&["--no-consistent"]);
    repo.run(&["add-target", "a.bin", "a1"]);
    let old_targets = std::fs::read(repo.metadata("targets.json")).unwrap();
    repo.run(&["add-target", "b.bin", "b1"]);
    // The snapshot lists the new targets version, the mirror serves the old file.
    std::fs::write(repo.metadata("targets.json"), old_targets).unwrap();
    let (mut client, _base, _md) = setup(&repo).await;
    let err = client.refresh(system_now()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(VerifyError::Version { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn rollback_to_older_timestamp_is_refused() {
    let repo = PyRepo::new(&[]);
    let old_timestamp = std::fs::read(repo.metadata("timestamp.json")).unwrap();
    repo.run(&["publish"]);
    let (mut client, _base, md) = setup(&repo).await;
    client.refresh(system_now()).await.unwrap();
    let trusted = std::fs::read(md.path().join("timestamp.json")).unwrap();
    std::fs::write(repo.metadata("timestamp.json"), old_timestamp).unwrap();
    let err = client.refresh(system_now()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(VerifyError::Rollback { .. })),
        "{err}"
    );
    assert_eq!(
        std::fs::read(md.path().join("timestamp.json")).unwrap(),
        trusted,
        "the rejected timestamp did not replace the trusted one"
    );
}

#[tokio::test]
async fn key_compromise_below_threshold_is_refused() {
    let repo = PyRepo::new(&[]);
    repo.run(&["threshold", "targets", "2"]);
    let (mut client, _base, _md) = setup(&repo).await;
    client.refresh(system_now()).await.unwrap();
    // One compromised targets key signs alone.
    repo.run(&["sign-only", "targets", "1"]);
    repo.run(&["add-target", "evil.bin", "evil"]);
    let err = client.refresh(system_now()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(VerifyError::Threshold { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn wrong_software_served_under_a_listed_name_is_refused() {
    let repo = PyRepo::new(&["--no-consistent"]);
    repo.run(&["add-target", "tool-a.bin", "tool A, same length"]);
    repo.run(&["add-target", "tool-b.bin", "tool B, same length"]);
    // Another genuine, signed file served in place of the one asked for.
    std::fs::copy(
        repo.published().join("targets/tool-b.bin"),
        repo.published().join("targets/tool-a.bin"),
    )
    .unwrap();
    let (mut client, base, _md) = setup(&repo).await;
    client.refresh(system_now()).await.unwrap();
    let err = download(&client, &base, "tool-a.bin").await.unwrap_err();
    assert!(err.to_string().contains("SHA-256 mismatch"), "{err}");
}

#[tokio::test]
async fn slow_retrieval_of_metadata_is_aborted() {
    let repo = PyRepo::new(&[]);
    let slow = || async {
        let stream = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Some((Ok::<_, std::io::Error>(bytes::Bytes::from_static(b" ")), ()))
        });
        Body::from_stream(stream).into_response()
    };
    let router =
        support::dir_router(&repo.published()).route("/metadata/timestamp.json", get(slow));
    let base = support::serve_https(router).await;
    let md = tempfile::tempdir().unwrap();
    let timeouts = Timeouts {
        min_bytes_per_second: 100,
        grace: Duration::from_millis(500),
        ..Timeouts::default()
    };
    let mut client = client_for(&repo, &base, md.path(), timeouts);
    let err = client.refresh(system_now()).await.unwrap_err();
    let ClientError::Fetch { source, .. } = &err else {
        panic!("unexpected {err}");
    };
    assert!(matches!(**source, FetchError::TooSlow { .. }), "{err}");
}
