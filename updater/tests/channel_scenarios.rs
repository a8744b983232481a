//! The updater trusts no redirect and no plain channel: over real HTTPS on loopback, a mirror
//! or a status endpoint that redirects to plain HTTP or to another origin is not followed;
//! plain HTTP is refused unless allowed; enrollment, renewal and relay bootstrap accept only
//! `https://`; and a discovery document that never ends, or never arrives, is cut off.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use futures_util::StreamExt;
use herald_token_client::{BootstrapError, DISCOVERY_TIMEOUT};
use herald_updater::enroll::{EnrollError, IdentityFiles};
use herald_updater::transport::{fetch_bounded, FetchError, HttpsConfig, HttpsTransport};
use url::Url;

type Hits = Arc<AtomicUsize>;

/// A server (HTTPS or plain HTTP) that counts every request it gets and answers `file`.
async fn counting(https: bool) -> (Url, Hits) {
    let hits = Hits::default();
    let count = |State(hits): State<Hits>| async move {
        hits.fetch_add(1, Ordering::SeqCst);
        "secret-free content"
    };
    let router = Router::new()
        .fallback(get(count).post(count))
        .with_state(hits.clone());
    let base = if https {
        support::serve_https(router).await
    } else {
        support::serve_http(router).await
    };
    (base, hits)
}

/// An HTTPS server whose every path answers with a redirect (307, keeping the method and
/// body) to the same path below `target`, except `/here/...`, answered `here`.
async fn redirecting_to(target: Option<Url>) -> Url {
    let router = Router::new()
        .route("/here/{*rest}", get(|| async { "here" }))
        .fallback(move |uri: axum::http::Uri| {
            let target = target.clone();
            async move {
                let path = uri.path().trim_start_matches('/');
                let to = match &target {
                    Some(base) => base.join(path).unwrap().to_string(),
                    None => format!("/here/{path}"),
                };
                Redirect::temporary(&to).into_response()
            }
        });
    support::serve_https(router).await
}

fn transport(allow_plain_http: bool) -> HttpsTransport {
    HttpsTransport::new(&HttpsConfig {
        trust_anchors_pem: Some(support::trust_anchor()),
        // A client certificate, so that a followed redirect would hand it over.
        client_identity_pem: Some(client_identity()),
        allow_plain_http,
        ..HttpsConfig::default()
    })
    .unwrap()
}

fn client_identity() -> Vec<u8> {
    let pki = herald_keys_example::pki::client_key();
    let mut pem = std::fs::read(pki).unwrap();
    pem.push(b'\n');
    pem.extend(std::fs::read(herald_keys_example::pki::client_cert()).unwrap());
    pem
}

#[tokio::test]
async fn redirect_from_https_to_plain_http_is_refused() {
    let (plain, hits) = counting(false).await;
    let mirror = redirecting_to(Some(plain)).await;
    // Even with plain HTTP allowed for mirrors, a downgrade by redirect is not followed.
    for allow_plain_http in [false, true] {
        let url = mirror.join("metadata/timestamp.json").unwrap();
        let err = fetch_bounded(&transport(allow_plain_http), &url, 1 << 20)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("redirect"), "{err}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the plain server was reached"
    );
}

#[tokio::test]
async fn redirect_to_another_origin_is_refused() {
    // Another port of the same host is another origin, with a certificate the client trusts.
    let (other, hits) = counting(true).await;
    let mirror = redirecting_to(Some(other)).await;
    let url = mirror.join("targets/app.bin").unwrap();
    let err = fetch_bounded(&transport(false), &url, 1 << 20)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("redirect"), "{err}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the other origin was reached"
    );
}

#[tokio::test]
async fn redirect_within_the_same_origin_is_followed() {
    let mirror = redirecting_to(None).await;
    let url = mirror.join("metadata/timestamp.json").unwrap();
    let body = fetch_bounded(&transport(false), &url, 1 << 20)
        .await
        .unwrap();
    assert_eq!(body, b"here");
}

#[tokio::test]
async fn status_report_is_not_redirected_to_another_origin() {
    let (other, hits) = counting(true).await;
    let status = redirecting_to(Some(other)).await;
    let url = status.join("api/v1/status").unwrap();
    let err = transport(false)
        .post_json(&url, br#"{"installed_version":1}"#.to_vec(), &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("redirect"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the report went elsewhere");
}

#[tokio::test]
async fn plain_http_refused_unless_allowed() {
    let (plain, hits) = counting(false).await;
    let url = plain.join("metadata/timestamp.json").unwrap();
    let err = fetch_bounded(&transport(false), &url, 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Unreachable { .. }), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    fetch_bounded(&transport(true), &url, 1 << 20)
        .await
        .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

/// The SHA-256 fingerprint of the example root, as an operator would pin it.
fn example_root_fingerprint() -> String {
    use sha2::Digest;
    let pem = std::fs::read(herald_keys_example::pki::root_ca_cert()).unwrap();
    let (_, der) = der::pem::decode_vec(&pem).unwrap();
    hex::encode(sha2::Sha256::digest(der))
}

/// A discovery document naming the example root, the one the pin expects.
fn example_discovery() -> String {
    let root = std::fs::read_to_string(herald_keys_example::pki::root_ca_cert()).unwrap();
    serde_json::json!({ "root_pem": root }).to_string()
}

#[tokio::test]
async fn enroll_over_plain_http_is_refused() {
    let hits = Hits::default();
    let discovery = example_discovery();
    let router = Router::new()
        .route(
            "/.well-known/herald",
            get(move |State(hits): State<Hits>| async move {
                hits.fetch_add(1, Ordering::SeqCst);
                discovery
            }),
        )
        .route(
            "/api/v1/enroll",
            post(|State(hits): State<Hits>| async move {
                hits.fetch_add(1, Ordering::SeqCst);
                "{}"
            }),
        )
        .with_state(hits.clone());
    let server = support::serve_http(router).await;
    let dir = tempfile::tempdir().unwrap();
    let files = IdentityFiles::in_state_dir(dir.path());
    let err = herald_updater::enroll::enroll(&server, "token", &example_root_fingerprint(), &files)
        .await
        .unwrap_err();
    assert!(
        matches!(err, EnrollError::Bootstrap(BootstrapError::NotHttps { .. })),
        "{err}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a request went out in clear"
    );
    assert!(!files.exists());
}

#[tokio::test]
async fn relay_bootstrap_over_plain_http_is_refused() {
    let (plain, hits) = counting(false).await;
    let dir = tempfile::tempdir().unwrap();
    let state = herald_token_service::relay::RelayState::new(dir.path());
    let err = herald_token_service::relay::enroll_relay(
        plain.as_str(),
        Some("token"),
        &example_root_fingerprint(),
        &state,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("https"), "{err}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a request went out in clear"
    );
}

#[tokio::test]
async fn renewal_over_plain_http_is_refused() {
    let (plain, hits) = counting(false).await;
    // A stored identity whose discovery document names a plain-HTTP renewal URL.
    let dir = tempfile::tempdir().unwrap();
    let files = IdentityFiles::in_state_dir(dir.path());
    let identity_dir = dir.path().join("identity");
    std::fs::create_dir_all(&identity_dir).unwrap();
    std::fs::write(files.identity_pem(), client_identity()).unwrap();
    std::fs::copy(herald_keys_example::pki::client_cert(), files.cert_pem()).unwrap();
    std::fs::copy(herald_keys_example::pki::root_ca_cert(), files.ca_pem()).unwrap();
    let renew_url = plain.join("api/v1/renew").unwrap();
    let discovery = serde_json::json!({ "root_pem": "", "renew_url": renew_url.as_str() });
    std::fs::write(files.discovery(), discovery.to_string()).unwrap();
    let err = herald_updater::enroll::renew_if_due(&files, true)
        .await
        .unwrap_err();
    assert!(matches!(err, EnrollError::Http { .. }), "{err}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the renewal went out in clear"
    );
}

/// An HTTPS server whose discovery document is `body`.
async fn discovery_server(body: fn() -> Body) -> Url {
    let router = Router::new().route("/.well-known/herald", get(move || async move { body() }));
    support::serve_https(router).await
}

fn endless() -> Body {
    let chunk = Bytes::from(vec![b' '; 64 * 1024]);
    let stream = futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
    Body::from_stream(stream)
}

fn stalled() -> Body {
    let stream = futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from("{")) })
        .chain(futures_util::stream::pending());
    Body::from_stream(stream)
}

/// Enrolls against `server`, which must fail within `deadline` (a liveness bound: before the
/// limits, an endless answer was read for ever).
async fn enroll_fails_within(server: &Url, deadline: Duration) -> EnrollError {
    let dir = tempfile::tempdir().unwrap();
    let files = IdentityFiles::in_state_dir(dir.path());
    let pin = example_root_fingerprint();
    let enroll = herald_updater::enroll::enroll(server, "token", &pin, &files);
    tokio::time::timeout(deadline, enroll)
        .await
        .expect("enrollment still reading the discovery document")
        .unwrap_err()
}

#[tokio::test]
async fn endless_discovery_document_is_cut_off() {
    let server = discovery_server(endless).await;
    let err = enroll_fails_within(&server, Duration::from_secs(10)).await;
    assert!(
        matches!(err, EnrollError::Bootstrap(BootstrapError::TooLarge { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn stalled_discovery_document_times_out() {
    let server = discovery_server(stalled).await;
    let err = enroll_fails_within(&server, DISCOVERY_TIMEOUT + Duration::from_secs(10)).await;
    assert!(
        matches!(err, EnrollError::Bootstrap(BootstrapError::Timeout { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn relay_bootstrap_with_endless_discovery_is_cut_off() {
    let server = discovery_server(endless).await;
    let dir = tempfile::tempdir().unwrap();
    let state = herald_token_service::relay::RelayState::new(dir.path());
    let pin = example_root_fingerprint();
    let bootstrap =
        herald_token_service::relay::enroll_relay(server.as_str(), Some("token"), &pin, &state);
    let err = tokio::time::timeout(Duration::from_secs(10), bootstrap)
        .await
        .expect("relay still reading the discovery document")
        .unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
}
