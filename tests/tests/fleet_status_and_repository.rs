//! Fleet status reports and repository hosting against the real `herald-ca serve` over HTTPS:
//! the endpoint's name comes from its client certificate, never from the report; reports and
//! repository files need a valid, unrevoked certificate; a revocation ends access at once, also
//! on a connection opened before it; the fleet view needs an admin token.

#![allow(clippy::unwrap_used)]

mod ca_support;
mod enroll_support;

use std::path::Path;

use ca_support::{ca_cmd, run_ok, TestCa};
use enroll_support::{client_with, code, enroll, identity, key_and_csr, post, runtime, Site};

/// Adds a `[repository]` section serving the folder `repo` of the data folder, with one file.
fn with_repository(require_client_cert: bool) -> impl FnOnce(&TestCa) {
    move |ca: &TestCa| {
        let repo = ca.file("repo");
        std::fs::create_dir_all(repo.join("metadata")).unwrap();
        std::fs::write(repo.join("metadata/timestamp.json"), "{\"signed\":{}}\n").unwrap();
        ca.serve_repository(Path::new("repo"), require_client_cert);
    }
}

/// Enrolls one endpoint with a `base` token; returns its name and an HTTPS client carrying
/// its identity.
async fn enrolled(site: &Site, base: &str) -> (String, reqwest::Client) {
    let (name, identity) = enrolled_identity(site, base).await;
    (name, client_with(&site.root_pem, Some(&identity)))
}

/// Enrolls one endpoint with a `base` token; returns its name and identity (key and chain).
async fn enrolled_identity(site: &Site, base: &str) -> (String, Vec<u8>) {
    let client = site.client();
    let created = site.create_token(&client, base).await;
    let (key, csr) = key_and_csr(base);
    let (status, issued) = enroll(
        &client,
        &site.ca.https_url(),
        created["token"].as_str().unwrap(),
        &csr,
    )
    .await;
    assert_eq!(status, 200, "{issued}");
    let name = issued["name"].as_str().unwrap().to_owned();
    (name, identity(&key, &issued))
}

async fn get_json(request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("body read");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// `GET /api/v1/fleet/{name}` with the operator token.
async fn fleet_entry(site: &Site, name: &str) -> (u16, serde_json::Value) {
    get_json(
        site.client()
            .get(format!("{}/api/v1/fleet/{name}", site.ca.https_url()))
            .bearer_auth(&site.operator),
    )
    .await
}

#[test]
fn report_name_comes_from_certificate_not_body() {
    let site = Site::start();
    runtime().block_on(async {
        let (name, endpoint) = enrolled(&site, "till").await;
        let url = format!("{}/api/v1/status", site.ca.https_url());
        let (status, ack) = post(
            endpoint.post(&url),
            &serde_json::json!({
                "name": "someone-else-0001",
                "installed_version": 7,
                "last_check": "2026-01-01T00:00:00Z",
                "last_result": "error",
                "last_error": "mirror unreachable",
                "unlisted": ["stray.dll"],
            }),
        )
        .await;
        assert_eq!(status, 200, "{ack}");
        assert_eq!(ack["acknowledged"], true);
        assert_eq!(ack["name"], name.as_str());

        let (status, shown) = fleet_entry(&site, &name).await;
        assert_eq!(status, 200, "{shown}");
        assert_eq!(shown["installed_version"], 7);
        assert_eq!(shown["last_error"], "mirror unreachable");
        assert_eq!(shown["unlisted"][0], "stray.dll");
        assert_eq!(shown["certificate"], "valid");
        let (status, other) = get_json(
            site.client()
                .get(format!(
                    "{}/api/v1/fleet/someone-else-0001",
                    site.ca.https_url()
                ))
                .bearer_auth(&site.operator),
        )
        .await;
        assert_eq!(status, 404, "{other}");
    });
    let out = run_ok(
        ca_cmd()
            .args(["fleet", "list", "--json", "--data-dir"])
            .arg(&site.ca.dir),
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = listed["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["till-0001"]);
    let unknown = ca_cmd()
        .args(["fleet", "show", "someone-else-0001", "--data-dir"])
        .arg(&site.ca.dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no endpoint named someone-else-0001"),
        "{stderr}"
    );
}

#[test]
fn report_without_client_certificate_refused() {
    let site = Site::start();
    runtime().block_on(async {
        let (status, body) = post(
            site.client()
                .post(format!("{}/api/v1/status", site.ca.https_url())),
            &serde_json::json!({"installed_version": 1}),
        )
        .await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(code(&body), "client_certificate_required");
    });
}

#[test]
fn malformed_report_refused_and_nothing_recorded() {
    let site = Site::start();
    runtime().block_on(async {
        let (name, endpoint) = enrolled(&site, "pump").await;
        let url = format!("{}/api/v1/status", site.ca.https_url());
        for bad in [
            serde_json::json!("not an object"),
            serde_json::json!({"installed_version": -3}),
            serde_json::json!({"unlisted": "not a list"}),
        ] {
            let (status, body) = post(endpoint.post(&url), &bad).await;
            assert_eq!(status, 400, "{bad}: {body}");
            assert_eq!(code(&body), "bad_report");
        }
        let (_, shown) = fleet_entry(&site, &name).await;
        assert_eq!(shown["last_seen"], serde_json::Value::Null, "{shown}");
    });
}

#[test]
fn report_with_a_release_beyond_the_store_range_is_a_bad_request_not_a_server_error() {
    let site = Site::start();
    runtime().block_on(async {
        let (name, endpoint) = enrolled(&site, "till").await;
        let (status, body) = post(
            endpoint.post(format!("{}/api/v1/status", site.ca.https_url())),
            &serde_json::json!({"installed_version": u64::MAX}),
        )
        .await;
        assert_eq!(
            status, 400,
            "the endpoint's mistake, not the server's: {body}"
        );
        assert_eq!(code(&body), "bad_report");
        let (_, shown) = fleet_entry(&site, &name).await;
        assert_eq!(shown["last_seen"], serde_json::Value::Null, "{shown}");
    });
}

#[test]
fn oversized_report_fields_cut_and_acknowledged() {
    let site = Site::start();
    runtime().block_on(async {
        let (name, endpoint) = enrolled(&site, "gate").await;
        let unlisted: Vec<String> = (0..500).map(|i| format!("stray-{i}.bin")).collect();
        let (status, ack) = post(
            endpoint.post(format!("{}/api/v1/status", site.ca.https_url())),
            &serde_json::json!({
                "installed_version": 2,
                "last_result": "e".repeat(1000),
                "last_error": "x".repeat(20_000),
                "unlisted": unlisted,
            }),
        )
        .await;
        assert_eq!(
            status, 200,
            "an oversized report must not block the queue: {ack}"
        );
        let (_, shown) = fleet_entry(&site, &name).await;
        assert_eq!(shown["installed_version"], 2);
        assert_eq!(shown["last_error"].as_str().unwrap().len(), 4096);
        assert_eq!(shown["last_result"].as_str().unwrap().len(), 64);
        assert_eq!(shown["unlisted"].as_array().unwrap().len(), 200);
        assert_eq!(shown["unlisted"][0], "stray-0.bin");
    });
}

#[test]
fn fleet_api_requires_admin_token() {
    let site = Site::start();
    runtime().block_on(async {
        let url = format!("{}/api/v1/fleet", site.ca.https_url());
        let (status, body) = get_json(site.client().get(&url)).await;
        assert_eq!(status, 401, "{body}");
        let (status, body) = get_json(site.client().get(&url).bearer_auth("hca_00_wrong")).await;
        assert_eq!(status, 401, "{body}");
        let (status, body) = get_json(site.client().get(&url).bearer_auth(&site.operator)).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["endpoints"].is_array(), "{body}");
    });
}

#[test]
fn repository_needs_client_certificate_and_revocation_ends_access_at_once() {
    let site = Site::start_with(with_repository(true));
    runtime().block_on(async {
        let url = format!("{}/repo/metadata/timestamp.json", site.ca.https_url());
        let (status, body) = get_json(site.client().get(&url)).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(code(&body), "client_certificate_required");

        let (name, identity) = enrolled_identity(&site, "kiosk").await;
        let endpoint = client_with(&site.root_pem, Some(&identity));
        let response = endpoint.get(&url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.text().await.unwrap(), "{\"signed\":{}}\n");

        // Revoked while the endpoint's connection stays open in its pool.
        run_ok(
            ca_cmd()
                .args(["cert", "revoke", &name, "--data-dir"])
                .arg(&site.ca.dir),
        );
        // The endpoint's kept-alive connection: refused by the per-request check.
        let response = endpoint.get(&url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 403);
        let body: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(code(&body), "certificate_revoked");
        // A new connection with the revoked certificate is refused in the handshake.
        let fresh = client_with(&site.root_pem, Some(&identity));
        let refused = fresh.get(&url).send().await;
        assert!(
            refused.is_err(),
            "a revoked certificate got an answer: {refused:?}"
        );
    });
}

#[test]
fn repository_path_traversal_refused() {
    let site = Site::start_with(with_repository(false));
    runtime().block_on(async {
        let base = site.ca.https_url();
        let client = site.client();
        let (status, _) =
            get_json(client.get(format!("{base}/repo/metadata/timestamp.json"))).await;
        assert_eq!(
            status, 200,
            "served without a certificate when not required"
        );
        for path in [
            "/repo/../config.toml",
            "/repo/%2e%2e/config.toml",
            "/repo/metadata/..%2f..%2fconfig.toml",
            "/repo/..%5cconfig.toml",
        ] {
            let response = client.get(format!("{base}{path}")).send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            assert_ne!(status, 200, "{path} served: {text}");
            assert!(!text.contains("[server]"), "{path} leaked config.toml");
        }
    });
}

#[test]
fn repository_link_to_the_data_folder_is_not_served() {
    let site = Site::start_with(|ca: &TestCa| {
        with_repository(false)(ca);
        let repo = ca.file("repo");
        // Stray links: to a secret of the data folder, to the data folder itself, and even one
        // that stays inside the repository (links are refused, wherever they point).
        std::os::unix::fs::symlink(ca.file("config.toml"), repo.join("leak.toml")).unwrap();
        std::os::unix::fs::symlink(&ca.dir, repo.join("metadata/data")).unwrap();
        std::os::unix::fs::symlink(
            repo.join("metadata/timestamp.json"),
            repo.join("metadata/alias.json"),
        )
        .unwrap();
    });
    runtime().block_on(async {
        let base = site.ca.https_url();
        let client = site.client();
        let (status, _) =
            get_json(client.get(format!("{base}/repo/metadata/timestamp.json"))).await;
        assert_eq!(status, 200, "the real file is served");
        for path in [
            "/repo/leak.toml",
            "/repo/metadata/data/config.toml",
            "/repo/metadata/%64ata/config.toml",
            "/repo/metadata/alias.json",
        ] {
            let response = client.get(format!("{base}{path}")).send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            assert_eq!(status, 404, "{path} served: {text}");
            assert!(!text.contains("[server]"), "{path} leaked config.toml");
        }
    });
}
