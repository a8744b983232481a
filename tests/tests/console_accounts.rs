//! Console accounts from the command line (`herald-ca admin user ...`) and over the admin API
//! (admin role only): one-time passwords shown once, resets, disabling, audit entries, exit
//! codes.

#![allow(clippy::unwrap_used)]

mod ca_support;
use ca_support::{ca_cmd, run_ok, TestCa};

fn user(ca: &TestCa, args: &[&str]) -> std::process::Output {
    ca_cmd()
        .args(["admin", "user"])
        .args(args)
        .arg("--data-dir")
        .arg(&ca.dir)
        .output()
        .unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn admin_user_commands_manage_accounts() {
    let ca = TestCa::init();
    let added = user(&ca, &["add", "alice", "--role", "operator"]);
    assert!(added.status.success());
    let password = stdout(&added);
    assert_eq!(password.len(), 23, "four groups of five: {password}");
    let listed = stdout(&user(&ca, &["list", "--json"]));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["name"], "alice");
    assert_eq!(listed[0]["role"], "operator");
    assert_eq!(listed[0]["status"], "first-sign-in");
    assert_eq!(listed[0]["mfa"], "pending");
    assert!(
        !listed.to_string().contains(&password),
        "the password is never listed"
    );

    let again = user(&ca, &["passwd", "alice"]);
    assert!(again.status.success());
    assert_ne!(stdout(&again), password, "a new one-time password");
    assert!(user(&ca, &["reset-mfa", "alice"]).status.success());
    assert!(user(&ca, &["disable", "alice"]).status.success());
    let table = stdout(&user(&ca, &["list"]));
    assert!(table.contains("disabled"), "{table}");

    let taken = user(&ca, &["add", "alice", "--role", "admin"]);
    assert_eq!(taken.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&taken.stderr).contains("exists"));
    let unknown = user(&ca, &["disable", "nobody"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no account named nobody"));
    let bad_role = user(&ca, &["add", "bob", "--role", "root"]);
    assert_eq!(bad_role.status.code(), Some(2));
    let bad_name = user(&ca, &["add", "bad name", "--role", "auditor"]);
    assert_eq!(bad_name.status.code(), Some(1));

    let audit = run_ok(ca_cmd().args(["audit", "show", "--data-dir"]).arg(&ca.dir));
    let audit = String::from_utf8_lossy(&audit.stdout);
    for action in [
        "account-create",
        "account-password-reset",
        "account-reset-mfa",
        "account-disable",
    ] {
        assert!(audit.contains(action), "no {action}:\n{audit}");
    }
}

#[test]
fn accounts_api_is_for_admins_only() {
    let mut ca = TestCa::init();
    ca.serve();
    let admin = ca.admin_token("admin");
    let operator = ca.admin_token("operator");
    let url = format!("{}/api/v1/accounts", ca.https_url());
    let post = |token: &str, url: &str, body: &str| {
        ca.curl_https(&[
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            url,
        ])
    };
    let (status, body) = post(&operator, &url, r#"{"name":"carol","role":"admin"}"#);
    assert_eq!(status, 403, "{body}");
    let (status, body) = post(&admin, &url, r#"{"name":"carol","role":"auditor"}"#);
    assert_eq!(status, 201, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["role"], "auditor");
    assert_eq!(created["one_time_password"].as_str().unwrap().len(), 23);
    let (status, _) = post(&admin, &url, r#"{"name":"carol","role":"auditor"}"#);
    assert_eq!(status, 409);
    let (status, body) = ca.curl_https(&["-H", &format!("Authorization: Bearer {admin}"), &url]);
    assert_eq!(status, 200);
    assert!(
        body.contains("\"carol\"") && !body.contains("password_hash"),
        "{body}"
    );
    let (status, body) = post(&admin, &format!("{url}/carol/password"), "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("one_time_password"));
    let (status, _) = post(&operator, &format!("{url}/carol/disable"), "");
    assert_eq!(status, 403);
    let (status, _) = post(&admin, &format!("{url}/carol/disable"), "");
    assert_eq!(status, 200);
    let (status, _) = post(&admin, &format!("{url}/nobody/disable"), "");
    assert_eq!(status, 404);
}
