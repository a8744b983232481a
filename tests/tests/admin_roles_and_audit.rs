//! Trust boundaries of the CA's admin side: which role may mint which identity, the lifecycle
//! of admin credentials, the signed audit chain, anonymous enrollment floods, the discovery
//! document and the metrics endpoint.

#![allow(clippy::unwrap_used)]

mod ca_support;
mod enroll_support;

use std::process::Command;

use ca_support::{ca_cmd, free_addr, python, run_ok, TestCa};
use serde_json::Value;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The audit log as `herald-ca audit export` writes it (JSON lines).
fn audit_entries(ca: &TestCa) -> Vec<Value> {
    let out = run_ok(
        ca_cmd()
            .args(["audit", "export", "--data-dir"])
            .arg(&ca.dir),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A random enrollment token nobody issued.
fn random_token(i: usize) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("het_{nanos:x}{i:08x}")
}

/// Sends an enrollment with `token`; returns status, Retry-After and the error code.
async fn enroll_raw(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    csr: &str,
) -> (u16, Option<u64>, String) {
    let response = client
        .post(format!("{base}/api/v1/enroll"))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "token": token, "csr": csr }).to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or_default();
    (status, retry_after, error_code(&body).to_owned())
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// curl arguments for an authenticated JSON POST.
fn post(token: &str, body: &str, url: &str) -> Vec<String> {
    [
        "-X",
        "POST",
        "-H",
        &bearer(token),
        "-H",
        "Content-Type: application/json",
        "-d",
        body,
        url,
    ]
    .map(str::to_owned)
    .to_vec()
}

fn curl(ca: &TestCa, args: &[String]) -> (u16, Value) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, body) = ca.curl_https(&args);
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, value)
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// Runs SQL on the CA's SQLite store (python's sqlite3, as an attacker with the file would).
fn sqlite(ca: &TestCa, sql: &str) {
    let status = Command::new(python())
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()",
        ])
        .arg(ca.file("herald.db"))
        .arg(sql)
        .status()
        .unwrap();
    assert!(status.success(), "{sql}");
}

#[test]
fn operator_minting_relay_identity_refused() {
    let mut ca = TestCa::init();
    ca.serve();
    let tokens = format!("{}/api/v1/tokens", ca.https_url());
    let operator = ca.admin_token("operator");
    for profile in ["relay", "server"] {
        let body = format!("{{\"name\":\"site\",\"profile\":\"{profile}\"}}");
        let (status, v) = curl(&ca, &post(&operator, &body, &tokens));
        assert_eq!((status, error_code(&v)), (403, "forbidden_profile"), "{v}");
    }
    let (status, v) = curl(
        &ca,
        &post(
            &operator,
            r#"{"name":"laptop","profile":"endpoint"}"#,
            &tokens,
        ),
    );
    assert_eq!(status, 201, "{v}");
    let admin = ca.admin_token("admin");
    let (status, v) = curl(
        &ca,
        &post(&admin, r#"{"name":"site","profile":"relay"}"#, &tokens),
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["profile"], "relay");
    // Only the endpoint token and the admin's relay token exist: the refusals wrote nothing.
    let out = run_ok(
        ca_cmd()
            .args(["token", "list", "--json", "--data-dir"])
            .arg(&ca.dir),
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut profiles: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["profile"].as_str().unwrap())
        .collect();
    profiles.sort_unstable();
    assert_eq!(profiles, ["endpoint", "relay"]);
}

#[test]
fn token_policy_in_config_lets_operators_create_more_profiles() {
    let mut ca = TestCa::init();
    let config = ca.file("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[token_policy]\noperator = [\"endpoint\", \"server\"]\n");
    std::fs::write(&config, text).unwrap();
    ca.serve();
    let tokens = format!("{}/api/v1/tokens", ca.https_url());
    let operator = ca.admin_token("operator");
    let (status, v) = curl(
        &ca,
        &post(&operator, r#"{"name":"web","profile":"server"}"#, &tokens),
    );
    assert_eq!(status, 201, "{v}");
    let (status, v) = curl(
        &ca,
        &post(&operator, r#"{"name":"site","profile":"relay"}"#, &tokens),
    );
    assert_eq!((status, error_code(&v)), (403, "forbidden_profile"), "{v}");
}

#[test]
fn leaked_admin_token_cut_off_by_revocation_and_expiry() {
    let mut ca = TestCa::init();
    ca.serve();
    let base = ca.https_url();
    let admin = ca.admin_token("admin");
    let admin_id = admin.split('_').nth(1).unwrap().to_owned();
    // An admin creates an operator credential with an expiry through the API.
    let (status, created) = curl(
        &ca,
        &post(
            &admin,
            r#"{"role":"operator","label":"ci","expires":"1h"}"#,
            &format!("{base}/api/v1/admin-tokens"),
        ),
    );
    assert_eq!(status, 201, "{created}");
    let leaked = created["token"].as_str().unwrap().to_owned();
    let leaked_id = created["id"].as_str().unwrap().to_owned();
    assert!(created["expires_at"].as_i64().is_some(), "{created}");
    let certs = format!("{base}/api/v1/certificates");
    let (status, _) = curl(&ca, &["-H".into(), bearer(&leaked), certs.clone()]);
    assert_eq!(status, 200);
    // Operators cannot manage credentials.
    let (status, v) = curl(
        &ca,
        &[
            "-H".into(),
            bearer(&leaked),
            format!("{base}/api/v1/admin-tokens"),
        ],
    );
    assert_eq!((status, error_code(&v)), (403, "forbidden"), "{v}");

    // The list shows its role, expiry and last use.
    let (status, list) = curl(
        &ca,
        &[
            "-H".into(),
            bearer(&admin),
            format!("{base}/api/v1/admin-tokens"),
        ],
    );
    assert_eq!(status, 200, "{list}");
    let entry = list["admin_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == leaked_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["role"], "operator");
    assert_eq!(entry["status"], "active");
    assert!(entry["last_used_at"].as_i64().is_some(), "{entry}");
    assert!(entry.get("hash").is_none(), "no hash in listings: {entry}");

    // Revoked: refused from the next call on, without touching the database by hand.
    let (status, v) = curl(
        &ca,
        &post(
            &admin,
            "",
            &format!("{base}/api/v1/admin-tokens/{leaked_id}/revoke"),
        ),
    );
    assert_eq!(status, 200, "{v}");
    let (status, v) = curl(&ca, &["-H".into(), bearer(&leaked), certs.clone()]);
    assert_eq!((status, error_code(&v)), (401, "unauthenticated"), "{v}");
    let out = run_ok(
        ca_cmd()
            .args(["admin-token", "list", "--json", "--data-dir"])
            .arg(&ca.dir),
    );
    let cli_list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        cli_list
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == leaked_id.as_str() && t["status"] == "revoked"),
        "{cli_list}"
    );

    // Expired: a CLI-created credential past its expiry is refused.
    let out = run_ok(
        ca_cmd()
            .args([
                "admin-token",
                "create",
                "--role",
                "auditor",
                "--expires",
                "1m",
            ])
            .args(["--json", "--data-dir"])
            .arg(&ca.dir),
    );
    let short: Value = serde_json::from_slice(&out.stdout).unwrap();
    let short_token = short["token"].as_str().unwrap();
    let (status, _) = curl(&ca, &["-H".into(), bearer(short_token), certs.clone()]);
    assert_eq!(status, 200);
    sqlite(
        &ca,
        &format!(
            "UPDATE admin_tokens SET expires_at = 1 WHERE id = '{}'",
            short["id"].as_str().unwrap()
        ),
    );
    let (status, v) = curl(&ca, &["-H".into(), bearer(short_token), certs]);
    assert_eq!((status, error_code(&v)), (401, "unauthenticated"), "{v}");

    // Creation and revocation are audited with the acting credential's id.
    let entries = audit_entries(&ca);
    let actor = format!("admin-token:{admin_id}");
    for action in ["admin-token-create", "admin-token-revoke"] {
        assert!(
            entries
                .iter()
                .any(|e| e["action"] == action && e["actor"] == actor.as_str()),
            "{action} by {actor} not audited"
        );
    }
    // The revoke subcommand of the CLI: unknown ids are an error.
    let out = ca_cmd()
        .args(["admin-token", "revoke", "0000", "--data-dir"])
        .arg(&ca.dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn discovery_never_built_from_the_host_header() {
    let mut ca = TestCa::init();
    ca.serve();
    let (status, doc) = curl(
        &ca,
        &[
            "-H".into(),
            "Host: attacker.example".into(),
            format!("{}/.well-known/herald", ca.https_url()),
        ],
    );
    assert_eq!(status, 200, "{doc}");
    let want = format!("{}/api/v1/enroll", ca.https_url());
    assert_eq!(doc["enroll_url"], want.as_str(), "{doc}");
    assert!(!doc.to_string().contains("attacker"), "{doc}");
}

#[test]
fn audit_flood_of_random_tokens_adds_few_entries() {
    let mut ca = TestCa::init();
    // Limits out of the way: this is about what refusals write, not how many are answered.
    ca.set_config("failed_attempts_burst", "1000000");
    ca.set_config("unknown_token_audit_secs", "1");
    ca.serve();
    let before = audit_entries(&ca).len();
    let root = std::fs::read_to_string(ca.file("root.crt")).unwrap();
    let base = ca.https_url();
    let (_, csr) = enroll_support::key_and_csr("flood");
    let codes = runtime().block_on(async {
        let client = enroll_support::client_with(&root, None);
        let mut tasks = tokio::task::JoinSet::new();
        let mut codes = Vec::new();
        for i in 0..2000 {
            let (client, base, csr) = (client.clone(), base.clone(), csr.clone());
            tasks.spawn(async move { enroll_raw(&client, &base, &random_token(i), &csr).await });
            if tasks.len() >= 32 {
                codes.push(tasks.join_next().await.unwrap().unwrap());
            }
        }
        while let Some(done) = tasks.join_next().await {
            codes.push(done.unwrap());
        }
        codes
    });
    assert!(
        codes
            .iter()
            .all(|(s, _, c)| *s == 401 && c == "invalid_token"),
        "{:?}",
        codes.iter().find(|(s, _, _)| *s != 401)
    );
    // The aggregated entries are written once their interval is over.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let added = loop {
        let entries = audit_entries(&ca);
        let added: Vec<Value> = entries[before..].to_vec();
        let counted: u64 = added
            .iter()
            .filter(|e| e["action"] == "enroll-refused-unknown-tokens")
            .map(|e| {
                let details: Value = serde_json::from_str(e["details"].as_str().unwrap()).unwrap();
                assert_eq!(details["source"], "127.0.0.1", "{details}");
                details["count"].as_u64().unwrap()
            })
            .sum();
        if counted == 2000 || std::time::Instant::now() > deadline {
            assert_eq!(
                counted, 2000,
                "every refusal counted in the aggregate: {added:?}"
            );
            break added;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        added.len() <= 20,
        "2,000 anonymous refusals wrote {} audit entries",
        added.len()
    );
    let (status, metrics) = ca.curl_https(&[&format!("{}/metrics", ca.https_url())]);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("herald_ca_enrollments_unknown_token_total 2000\n"),
        "{metrics}"
    );
}

#[test]
fn enrollment_guessing_rate_limited_with_429() {
    let mut ca = TestCa::init();
    ca.serve();
    let root = std::fs::read_to_string(ca.file("root.crt")).unwrap();
    let base = ca.https_url();
    let operator = ca.admin_token("operator");
    let (_, csr) = enroll_support::key_and_csr("guess");
    runtime().block_on(async {
        let client = enroll_support::client_with(&root, None);
        // A real token, created before the guessing starts.
        let (status, created) = enroll_support::post(
            client
                .post(format!("{base}/api/v1/tokens"))
                .bearer_auth(&operator),
            &serde_json::json!({ "name": "guess" }),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        let mut answers = Vec::new();
        for i in 0..40 {
            answers.push(enroll_raw(&client, &base, &random_token(i), &csr).await);
        }
        let refused = answers.iter().filter(|(s, _, _)| *s == 401).count();
        assert_eq!(
            refused, 30,
            "the default burst of failed attempts: {answers:?}"
        );
        for (status, retry_after, code) in &answers[30..] {
            assert_eq!((*status, code.as_str()), (429, "rate_limited"));
            assert!(
                retry_after.is_some_and(|s| (1..=60).contains(&s)),
                "{retry_after:?}"
            );
        }
        // The address is held back for enrollment and renewal alike, even with a real token.
        let token = created["token"].as_str().unwrap();
        let (status, _, _) = enroll_raw(&client, &base, token, &csr).await;
        assert_eq!(status, 429);
        let renew = client
            .post(format!("{base}/api/v1/renew"))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "csr": csr }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(renew.status().as_u16(), 429);
    });
    let (_, metrics) = ca.curl_https(&[&format!("{}/metrics", ca.https_url())]);
    assert!(
        metrics.contains("herald_ca_rate_limited_total 12\n"),
        "{metrics}"
    );
}

#[test]
fn audit_checkpoint_kept_elsewhere_detects_truncation() {
    let mut ca = TestCa::init();
    ca.issue("LAPTOP-0001");
    ca.issue("LAPTOP-0002");
    let kept = ca.scratch("checkpoint.json");
    run_ok(
        ca_cmd()
            .args(["audit", "checkpoint", "--data-dir"])
            .arg(&ca.dir)
            .arg("--out")
            .arg(&kept),
    );
    let dir = ca.dir.clone();
    let verify = |checkpoint: bool| {
        let mut cmd = ca_cmd();
        cmd.args(["audit", "verify", "--data-dir"]).arg(&dir);
        if checkpoint {
            cmd.arg("--checkpoint").arg(&kept);
        }
        cmd.output().unwrap()
    };
    assert!(verify(true).status.success());
    // Cut the tail: the chain alone still verifies; against the checkpoint it does not.
    sqlite(
        &ca,
        "DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit)",
    );
    assert!(verify(false).status.success());
    let out = verify(true);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("truncated"), "{stderr}");
    // A checkpoint whose signature does not hold is refused.
    let text = std::fs::read_to_string(&kept).unwrap();
    let forged = text.replacen("\"entries\": 3", "\"entries\": 2", 1);
    assert_ne!(forged, text);
    std::fs::write(&kept, forged).unwrap();
    let out = verify(true);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signature"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The auditor role reads entries and checkpoints over the API.
    ca.serve();
    let auditor = ca.admin_token("auditor");
    let (status, page) = curl(
        &ca,
        &[
            "-H".into(),
            bearer(&auditor),
            format!("{}/api/v1/audit?from=2&limit=1", ca.https_url()),
        ],
    );
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    assert_eq!(page["entries"][0]["seq"], 2);
    assert_eq!(page["next"], 3);
    let (status, checkpoint) = curl(
        &ca,
        &[
            "-H".into(),
            bearer(&auditor),
            format!("{}/api/v1/audit/checkpoint", ca.https_url()),
        ],
    );
    assert_eq!(status, 200, "{checkpoint}");
    std::fs::write(&kept, checkpoint.to_string()).unwrap();
    assert!(
        verify(true).status.success(),
        "a server checkpoint verifies"
    );
}

#[test]
fn metrics_on_own_listener_behind_a_token() {
    let mut ca = TestCa::init();
    let metrics_addr = free_addr();
    ca.set_config(
        "require_token",
        &format!("true\nlisten = \"{metrics_addr}\""),
    );
    ca.serve();
    let auditor = ca.admin_token("auditor");
    let (status, _) = ca.curl_https(&[&format!("{}/metrics", ca.https_url())]);
    assert_eq!(status, 404, "not on the HTTPS listener");
    let plain = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(plain(&[&format!("{}/metrics", ca.http_url())]), "404");
    let url = format!("http://{metrics_addr}/metrics");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while plain(&[&url]) == "000" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(plain(&[&url]), "401");
    assert_eq!(plain(&["-H", &bearer(&auditor), &url]), "200");
}

#[test]
fn enrollment_guessing_through_a_relay_rate_limited_by_the_relay() {
    // The server's own limit out of the way: the 429s can only come from the relay.
    let site =
        enroll_support::Site::start_with(|ca| ca.set_config("failed_attempts_burst", "1000000"));
    let relay = enroll_support::RelayProcess::start(
        &site.ca,
        "guarded",
        &site.ca.https_url(),
        &site.cli_token("guarded", "relay"),
        &site.fingerprint(),
    );
    let root = std::fs::read_to_string(site.ca.file("root.crt")).unwrap();
    let (_, csr) = enroll_support::key_and_csr("guess");
    let answers = runtime().block_on(async {
        let client = enroll_support::client_with(&root, None);
        let mut answers = Vec::new();
        for i in 0..40 {
            answers.push(enroll_raw(&client, &relay.url, &random_token(i), &csr).await);
        }
        answers
    });
    let refused = answers.iter().filter(|(s, _, _)| *s == 401).count();
    assert_eq!(
        refused, 30,
        "the default burst of failed attempts: {answers:?}"
    );
    for (status, retry_after, code) in &answers[30..] {
        assert_eq!((*status, code.as_str()), (429, "rate_limited"));
        assert!(retry_after.is_some(), "{answers:?}");
    }
}
