//! Downloads over real HTTPS on loopback: mirror failover, resume after a cut connection,
//! endless data, a tampered file and slow retrieval.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use herald_updater::download::{download_verified, AttemptError, DownloadError, ExpectedFile};
use herald_updater::transport::{fetch_bounded, FetchError, HttpsConfig, HttpsTransport, Timeouts};
use sha2::{Digest, Sha256};

const LEN: usize = 300_000;

fn content() -> Vec<u8> {
    (0..LEN).map(|i| (i * 7 % 251) as u8).collect()
}

fn expected() -> ExpectedFile {
    ExpectedFile::sha256(LEN as u64, Sha256::digest(content()).into())
}

#[derive(Clone, Default)]
struct Hits(Arc<AtomicUsize>);

/// The start of a `Range: bytes=N-` header.
fn range_start(headers: &HeaderMap) -> Option<usize> {
    let value = headers.get(header::RANGE)?.to_str().ok()?;
    value
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

/// Serves `data`, honouring an open-ended range request.
fn ranged(data: Vec<u8>, headers: &HeaderMap) -> Response {
    match range_start(headers) {
        Some(start) if start < data.len() => {
            let total = data.len();
            let range = format!("bytes {start}-{}/{total}", total - 1);
            (
                StatusCode::PARTIAL_CONTENT,
                [(header::CONTENT_RANGE, range)],
                data[start..].to_vec(),
            )
                .into_response()
        }
        _ => data.into_response(),
    }
}

async fn good(headers: HeaderMap) -> Response {
    ranged(content(), &headers)
}

/// First request: half the file then a broken connection; later requests: served properly.
async fn cut_once(State(hits): State<Hits>, headers: HeaderMap) -> Response {
    if hits.0.fetch_add(1, Ordering::SeqCst) == 0 {
        let half = Bytes::from(content()[..LEN / 2].to_vec());
        let stream = futures_util::stream::unfold(Some(half), |state| async move {
            match state {
                Some(half) => Some((Ok(half), None)),
                None => {
                    // Let the first half reach the client before the connection breaks.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Some((Err(std::io::Error::other("connection cut")), None))
                }
            }
        });
        return ([(header::CONTENT_LENGTH, LEN)], Body::from_stream(stream)).into_response();
    }
    ranged(content(), &headers)
}

async fn endless() -> Response {
    let chunk = Bytes::from(vec![0u8; 64 * 1024]);
    let stream = futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
    Body::from_stream(stream).into_response()
}

async fn tampered() -> Response {
    let mut data = content();
    data[LEN / 3] ^= 0x01;
    data.into_response()
}

async fn slow() -> Response {
    let stream = futures_util::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), ()))
    });
    Body::from_stream(stream).into_response()
}

async fn repo() -> (url::Url, Hits) {
    let hits = Hits::default();
    let router = Router::new()
        .route("/good/file.bin", get(good))
        .route("/cut/file.bin", get(cut_once))
        .route("/endless/file.bin", get(endless))
        .route("/tampered/file.bin", get(tampered))
        .route("/slow/file.bin", get(slow))
        .with_state(hits.clone());
    (support::serve_https(router).await, hits)
}

fn transport(timeouts: Timeouts) -> HttpsTransport {
    HttpsTransport::new(&HttpsConfig {
        trust_anchors_pem: Some(support::trust_anchor()),
        timeouts,
        ..HttpsConfig::default()
    })
    .unwrap()
}

fn mirror(base: &url::Url, name: &str) -> url::Url {
    base.join(&format!("{name}/")).unwrap()
}

/// Downloads `file.bin` from the one mirror `name`, expecting a failure; returns how the
/// attempt failed and how many bytes the staging file kept.
async fn failed_attempt(base: &url::Url, name: &str, timeouts: Timeouts) -> (AttemptError, u64) {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("file.bin.part");
    let t = transport(timeouts);
    let err = download_verified(&t, &[mirror(base, name)], "file.bin", &staging, &expected())
        .await
        .unwrap_err();
    let DownloadError::AllMirrorsFailed { mut attempts, .. } = err else {
        panic!("unexpected error {err}");
    };
    let kept = std::fs::metadata(&staging).map(|m| m.len()).unwrap_or(0);
    (attempts.remove(0).1, kept)
}

#[tokio::test]
async fn mirror_failover_when_first_mirrors_fail() {
    let (base, _) = repo().await;
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("file.bin.part");
    let mirrors = [
        support::dead_mirror().await,
        mirror(&base, "missing"),
        mirror(&base, "tampered"),
        mirror(&base, "good"),
    ];
    let t = transport(Timeouts::default());
    download_verified(&t, &mirrors, "file.bin", &staging, &expected())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&staging).unwrap(), content());
}

#[tokio::test]
async fn resume_after_cut_connection_is_verified_whole() {
    let (base, hits) = repo().await;
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("file.bin.part");
    let t = transport(Timeouts::default());
    let mirrors = [mirror(&base, "cut")];

    let first = download_verified(&t, &mirrors, "file.bin", &staging, &expected()).await;
    assert!(first.is_err(), "the cut connection must fail the first try");
    let kept = std::fs::metadata(&staging).unwrap().len();
    assert!(
        kept > 0 && kept < LEN as u64,
        "a partial prefix is kept: {kept}"
    );

    download_verified(&t, &mirrors, "file.bin", &staging, &expected())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&staging).unwrap(), content());
    assert_eq!(hits.0.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn endless_data_stops_at_declared_length() {
    let (base, _) = repo().await;
    let (err, kept) = failed_attempt(&base, "endless", Timeouts::default()).await;
    assert!(matches!(err, AttemptError::TooLong { .. }), "{err}");
    assert_eq!(kept, 0);

    let t = transport(Timeouts::default());
    let metadata_url = mirror(&base, "endless").join("file.bin").unwrap();
    let err = fetch_bounded(&t, &metadata_url, 1024 * 1024)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::TooLarge {
                limit: 1_048_576,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn tampered_file_is_rejected_and_discarded() {
    let (base, _) = repo().await;
    let (err, kept) = failed_attempt(&base, "tampered", Timeouts::default()).await;
    assert!(matches!(err, AttemptError::HashMismatch { .. }), "{err}");
    assert_eq!(kept, 0, "no bad byte kept");
}

#[tokio::test]
async fn slow_retrieval_is_aborted() {
    let (base, _) = repo().await;
    let timeouts = Timeouts {
        min_bytes_per_second: 1000,
        grace: Duration::from_millis(500),
        ..Timeouts::default()
    };
    let (err, _) = failed_attempt(&base, "slow", timeouts).await;
    assert!(
        matches!(err, AttemptError::Fetch(FetchError::TooSlow { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn missing_everywhere_is_reported_as_not_found() {
    let (base, _) = repo().await;
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("file.bin.part");
    let t = transport(Timeouts::default());
    let err = download_verified(
        &t,
        &[mirror(&base, "missing")],
        "file.bin",
        &staging,
        &expected(),
    )
    .await
    .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn untrusted_server_certificate_is_refused() {
    let (base, _) = repo().await;
    // Trust a certificate that did not issue the server certificate.
    let unrelated = std::fs::read(herald_keys_example::pki::client_cert()).unwrap();
    let t = HttpsTransport::new(&HttpsConfig {
        trust_anchors_pem: Some(unrelated),
        ..HttpsConfig::default()
    })
    .unwrap();
    let url = mirror(&base, "good").join("file.bin").unwrap();
    let err = fetch_bounded(&t, &url, 1 << 20).await.unwrap_err();
    assert!(matches!(err, FetchError::Unreachable { .. }), "{err}");
}
