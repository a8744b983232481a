//! Trust boundaries of the CA's admin side: which role may mint which identity, the lifecycle
//! of admin credentials, the signed audit chain, anonymous enrollment floods, the discovery
//! document and the metrics endpoint.

#![allow(clippy::unwrap_used)]

mod ca_support;

use std::process::Command;

use ca_support::{ca_cmd, python, run_ok, TestCa};
use serde_json::Value;

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
        &post(&operator, r#"{"name":"laptop","profile":"endpoint"}"#, &tokens),
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
    let profiles: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["profile"].as_str().unwrap())
        .collect();
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
        &["-H".into(), bearer(&leaked), format!("{base}/api/v1/admin-tokens")],
    );
    assert_eq!((status, error_code(&v)), (403, "forbidden"), "{v}");

    // The list shows its role, expiry and last use.
    let (status, list) = curl(
        &ca,
        &["-H".into(), bearer(&admin), format!("{base}/api/v1/admin-tokens")],
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
            .args(["admin-token", "create", "--role", "auditor", "--expires", "1m"])
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
    let out = run_ok(
        ca_cmd()
            .args(["audit", "export", "--data-dir"])
            .arg(&ca.dir),
    );
    let entries: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
