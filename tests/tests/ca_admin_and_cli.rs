//! The admin API (tokens and roles, JSON errors), the audit log, the offline root and the key
//! protection rules of `herald-ca`.

#![allow(clippy::unwrap_used)]

mod ca_support;

use std::process::Command;

use ca_support::{ca_cmd, python, run_ok, TestCa};

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

fn assert_json_error(status: u16, body: &str, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    let v: serde_like::Value = serde_like::parse(body);
    assert_eq!(v.code, want_code, "{body}");
    assert!(!v.message.is_empty(), "{body}");
}

/// A tiny reader of `{"error":{"code":"...","message":"..."}}` (the test crate has no JSON
/// dependency).
mod serde_like {
    pub(super) struct Value {
        pub(super) code: String,
        pub(super) message: String,
    }

    fn field(body: &str, name: &str) -> String {
        let key = format!("\"{name}\":\"");
        let start = body.find(&key).map(|i| i + key.len()).unwrap_or(body.len());
        let rest = body.get(start..).unwrap_or("");
        rest.split('"').next().unwrap_or("").to_owned()
    }

    pub(super) fn parse(body: &str) -> Value {
        assert!(body.starts_with("{\"error\":{"), "not a JSON error: {body}");
        Value {
            code: field(body, "code"),
            message: field(body, "message"),
        }
    }
}

#[test]
fn admin_api_unauthenticated_401_beyond_role_403_and_roles_allowed() {
    let mut ca = TestCa::init();
    let (_key, cert) = ca.issue("LAPTOP-ACME-0300");
    let serial = TestCa::serial_of(&cert);
    ca.serve();
    let list = format!("{}/api/v1/certificates", ca.https_url());
    let revoke = format!("{}/api/v1/certificates/{serial}/revoke", ca.https_url());

    let (status, body) = ca.curl_https(&[&list]);
    assert_json_error(status, &body, 401, "unauthenticated");
    let (status, body) = ca.curl_https(&["-H", &bearer("hca_forged_token"), &list]);
    assert_json_error(status, &body, 401, "unauthenticated");

    let auditor = ca.admin_token("auditor");
    let (status, body) = ca.curl_https(&["-H", &bearer(&auditor), &list]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("LAPTOP-ACME-0300"), "{body}");
    let (status, body) = ca.curl_https(&["-X", "POST", "-H", &bearer(&auditor), &revoke]);
    assert_json_error(status, &body, 403, "forbidden");

    let operator = ca.admin_token("operator");
    let csr = std::fs::read_to_string(ca.scratch("LAPTOP-ACME-0300.csr")).unwrap();
    let issue_body = format!(
        "{{\"csr\":{},\"name\":\"LAPTOP-ACME-0301\"}}",
        json_string(&csr)
    );
    let (status, body) = ca.curl_https(&[
        "-X",
        "POST",
        "-H",
        &bearer(&operator),
        "-H",
        "Content-Type: application/json",
        "-d",
        &issue_body,
        &list,
    ]);
    assert_json_error(status, &body, 403, "forbidden");
    let (status, body) = ca.curl_https(&["-X", "POST", "-H", &bearer(&operator), &revoke]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"already_revoked\":false"), "{body}");
    let (status, body) = ca.curl_https(&["-X", "POST", "-H", &bearer(&operator), &revoke]);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"already_revoked\":true"),
        "revocation is permanent: {body}"
    );

    let admin = ca.admin_token("admin");
    let (status, body) = ca.curl_https(&[
        "-X",
        "POST",
        "-H",
        &bearer(&admin),
        "-H",
        "Content-Type: application/json",
        "-d",
        &issue_body,
        &list,
    ]);
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("BEGIN CERTIFICATE"), "{body}");
    assert!(body.contains("\"name\":\"LAPTOP-ACME-0301\""), "{body}");

    // Prometheus metrics count what this server did.
    let (status, metrics) = ca.curl_https(&[&format!("{}/metrics", ca.https_url())]);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("herald_ca_certificates_issued_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("herald_ca_certificates_revoked_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE herald_ca_crl_number gauge"),
        "{metrics}"
    );
}

/// curl arguments for an authenticated JSON POST.
fn post_json(token: &str, body: &str, url: String) -> Vec<String> {
    vec![
        "-X".into(),
        "POST".into(),
        "-H".into(),
        bearer(token),
        "-H".into(),
        "Content-Type: application/json".into(),
        "-d".into(),
        body.into(),
        url,
    ]
}

fn json_string(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}

#[test]
fn every_4xx_answer_is_a_json_error() {
    let mut ca = TestCa::init();
    ca.serve();
    let admin = ca.admin_token("admin");
    let base = ca.https_url();
    let cases: Vec<(Vec<String>, u16, &str)> = vec![
        (vec![format!("{base}/no/such/path")], 404, "not_found"),
        (
            vec!["-X".into(), "DELETE".into(), format!("{base}/healthz")],
            405,
            "method_not_allowed",
        ),
        (
            vec![
                "-H".into(),
                bearer(&admin),
                format!("{base}/api/v1/certificates/zz-not-hex"),
            ],
            400,
            "bad_serial",
        ),
        (
            vec![
                "-H".into(),
                bearer(&admin),
                format!("{base}/api/v1/certificates/abcdef"),
            ],
            404,
            "not_found",
        ),
        (
            post_json(&admin, "{not json", format!("{base}/api/v1/certificates")),
            400,
            "bad_json",
        ),
        (
            post_json(
                &admin,
                "{\"csr\":\"garbage\",\"name\":\"X-1\"}",
                format!("{base}/api/v1/certificates"),
            ),
            400,
            "bad_csr",
        ),
        (
            post_json(
                &admin,
                "{\"reason\":\"bogus\"}",
                format!("{base}/api/v1/certificates/abcdef/revoke"),
            ),
            400,
            "bad_reason",
        ),
        (
            vec![
                "-X".into(),
                "POST".into(),
                "-H".into(),
                bearer(&admin),
                "--data-binary".into(),
                "x".repeat(70 * 1024),
                format!("{base}/api/v1/certificates"),
            ],
            413,
            "too_large",
        ),
    ];
    for (args, want_status, want_code) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, body) = ca.curl_https(&args);
        assert_json_error(status, &body, want_status, want_code);
    }
    // The plain-HTTP listener has no admin API at all.
    let out = run_ok(
        Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}"])
            .arg(format!("{}/api/v1/certificates", ca.http_url())),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n404"), "{text}");
}

#[test]
fn tampered_audit_log_detected_by_audit_verify() {
    let ca = TestCa::init();
    ca.issue("LAPTOP-ACME-0400");
    ca.issue("LAPTOP-ACME-0401");
    let out = run_ok(
        ca_cmd()
            .args(["audit", "verify", "--json", "--data-dir"])
            .arg(&ca.dir),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"first_break\":null"), "{text}");
    assert!(
        text.contains("\"entries\":3"),
        "init and two issuances: {text}"
    );

    let db = ca.file("herald.db");
    let status = Command::new(python())
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             c.execute(\"UPDATE audit SET details = replace(details, '0400', '9999') WHERE seq = 2\"); \
             c.commit()",
        ])
        .arg(&db)
        .status()
        .unwrap();
    assert!(status.success());
    let out = ca_cmd()
        .args(["audit", "verify", "--data-dir"])
        .arg(&ca.dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("entry 2"), "{stderr}");
}

#[test]
fn offline_root_exported_removed_and_server_still_serves() {
    let mut ca = TestCa::init();
    let exported = ca.scratch("root-offline.key");
    run_ok(
        ca_cmd()
            .args(["root", "export", "--data-dir"])
            .arg(&ca.dir)
            .arg("--out")
            .arg(&exported),
    );
    let key = std::fs::read_to_string(&exported).unwrap();
    assert!(
        key.contains("BEGIN ENCRYPTED PRIVATE KEY"),
        "exported key stays encrypted"
    );
    // OpenSSL reads the encrypted key with the passphrase.
    run_ok(
        Command::new("openssl")
            .args(["pkey", "-noout", "-in"])
            .arg(&exported)
            .args(["-passin", &format!("pass:{}", ca_support::PASSPHRASE)]),
    );
    let refused = ca_cmd()
        .args(["root", "remove", "--data-dir"])
        .arg(&ca.dir)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "removal needs --yes");
    run_ok(
        ca_cmd()
            .args(["root", "remove", "--yes", "--data-dir"])
            .arg(&ca.dir),
    );
    assert!(!ca.file("root.key").exists());
    ca.issue("LAPTOP-ACME-0500");
    ca.serve();
    let (status, body) = ca.curl_https(&[&format!("{}/healthz", ca.https_url())]);
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

#[test]
fn keys_need_a_passphrase_unless_explicitly_insecure() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ca_support::ca_cmd()
        .env_remove("HERALD_CA_PASSPHRASE")
        .args(["init", "--data-dir"])
        .arg(tmp.path().join("a"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HERALD_CA_PASSPHRASE"));

    let ca = TestCa::init();
    let wrong = ca_cmd()
        .env("HERALD_CA_PASSPHRASE", "not the passphrase")
        .args(["crl", "--data-dir"])
        .arg(&ca.dir)
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong passphrase"));

    let insecure = TestCa::init_with(&["--insecure-unencrypted-keys"]);
    let key = std::fs::read_to_string(insecure.file("intermediate.key")).unwrap();
    assert!(key.contains("BEGIN PRIVATE KEY"));
    let out = ca_cmd()
        .env_remove("HERALD_CA_PASSPHRASE")
        .args(["crl", "--data-dir"])
        .arg(&insecure.dir)
        .arg("--out")
        .arg(insecure.scratch("crl.der"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("UNENCRYPTED"), "warned at start: {stderr}");
}

#[test]
fn cli_json_output_reads_back() {
    let ca = TestCa::init();
    let (_key, cert) = ca.issue("LAPTOP-ACME-0600");
    let serial = TestCa::serial_of(&cert);
    let list = run_ok(
        ca_cmd()
            .args([
                "cert",
                "list",
                "--json",
                "--name",
                "LAPTOP-ACME-0600",
                "--data-dir",
            ])
            .arg(&ca.dir),
    );
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.starts_with('[') && text.trim_end().ends_with(']'),
        "{text}"
    );
    assert!(text.contains(&format!("\"serial\":\"{serial}\"")), "{text}");
    assert!(text.contains("\"revocation\":null"), "{text}");

    let revoked = run_ok(
        ca_cmd()
            .args([
                "cert",
                "revoke",
                &serial,
                "--reason",
                "superseded",
                "--json",
                "--data-dir",
            ])
            .arg(&ca.dir),
    );
    let text = String::from_utf8_lossy(&revoked.stdout);
    assert!(text.contains("\"reason\":\"superseded\""), "{text}");

    let show = run_ok(
        ca_cmd()
            .args(["cert", "show", &serial, "--json", "--data-dir"])
            .arg(&ca.dir),
    );
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("\"name\":\"LAPTOP-ACME-0600\""), "{text}");
    assert!(text.contains("\"reason\":\"superseded\""), "{text}");

    let pem = run_ok(
        ca_cmd()
            .args(["cert", "show", &serial, "--pem", "--data-dir"])
            .arg(&ca.dir),
    );
    assert_eq!(
        pem.stdout,
        std::fs::read(&cert).unwrap(),
        "the stored certificate is the one issued"
    );

    let missing = ca_cmd()
        .args(["cert", "show", "abcdef", "--data-dir"])
        .arg(&ca.dir)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let bad = ca_cmd()
        .args(["cert", "show", "not-hex", "--data-dir"])
        .arg(&ca.dir)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
