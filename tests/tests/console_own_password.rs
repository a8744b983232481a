//! Changing one's own password in the web console, over HTTPS without a browser: the current
//! password is checked (a wrong one is a failed sign-in), the new one is given twice and
//! follows the length rule, the form needs its CSRF token, the change is audited, and every
//! other session of the account ends while the one it was made in stays.

#![allow(clippy::unwrap_used)]

mod ca_support;
mod enroll_support;

use ca_support::{ca_cmd, run_ok};
use enroll_support::{runtime, Site};
use herald_e2e::console::{cookie, csrf_in, sign_in_without_mfa};

const FIRST: &str = "my first long password";
const SECOND: &str = "my second long password";

/// An HTTPS client for the console: trusts the CA's root and follows no redirect.
fn browserless(site: &Site) -> reqwest::Client {
    enroll_support::client_builder(&site.root_pem, None)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in as `name` with `password` (an account without a second factor that finished its
/// set-up); the new session cookie, or `None` when refused.
async fn sign_in(http: &reqwest::Client, base: &str, name: &str, password: &str) -> Option<String> {
    let form = http.get(format!("{base}/ui/login")).send().await.unwrap();
    let login = cookie(&form, "__Host-herald-login").unwrap();
    let csrf = csrf_in(&form.text().await.unwrap());
    let answer = http
        .post(format!("{base}/ui/login"))
        .header("cookie", format!("__Host-herald-login={login}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", name),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    if answer.status() != 303 {
        return None;
    }
    cookie(&answer, "__Host-herald-session")
}

/// `GET path` with `session`: status and body.
async fn get(http: &reqwest::Client, base: &str, session: &str, path: &str) -> (u16, String) {
    let answer = http
        .get(format!("{base}{path}"))
        .header("cookie", format!("__Host-herald-session={session}"))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap())
}

/// `POST /ui/account/password` with `session` and `fields`: status and body.
async fn change(
    http: &reqwest::Client,
    base: &str,
    session: &str,
    fields: &[(&str, &str)],
) -> (u16, String) {
    let answer = http
        .post(format!("{base}/ui/account/password"))
        .header("cookie", format!("__Host-herald-session={session}"))
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap())
}

#[test]
fn a_signed_in_account_changes_its_own_password_and_its_other_sessions_end() {
    let site = Site::start();
    let http = browserless(&site);
    let base = site.ca.https_url();
    let added = run_ok(
        ca_cmd()
            .args([
                "admin", "user", "add", "dana", "--role", "auditor", "--no-mfa", "--json",
            ])
            .arg("--data-dir")
            .arg(&site.ca.dir),
    );
    let added: serde_json::Value = serde_json::from_slice(&added.stdout).unwrap();
    let once = added["one_time_password"].as_str().unwrap();
    runtime().block_on(async {
        let here = sign_in_without_mfa(&http, &base, "dana", once, FIRST).await;
        let elsewhere = sign_in(&http, &base, "dana", FIRST).await.unwrap();

        // The page is linked from the header and has the labelled form.
        let (status, dashboard) = get(&http, &base, &here, "/ui/").await;
        assert_eq!(status, 200);
        assert!(dashboard.contains("href=\"/ui/account\""), "{dashboard}");
        let (status, page) = get(&http, &base, &here, "/ui/account").await;
        assert_eq!(status, 200, "{page}");
        for needed in [
            "action=\"/ui/account/password\"",
            "<label for=\"current_password\">",
            "autocomplete=\"current-password\"",
            "<label for=\"new_password\">",
            "<label for=\"new_password2\">",
            "autocomplete=\"new-password\"",
            "minlength=\"12\"",
        ] {
            assert!(page.contains(needed), "no {needed}: {page}");
        }
        let csrf = csrf_in(&page);
        let (status, _) = get(&http, &base, &elsewhere, "/ui/account").await;
        assert_eq!(status, 200);

        // Refusals change nothing.
        let (status, body) = change(
            &http,
            &base,
            &here,
            &[
                ("current_password", FIRST),
                ("new_password", SECOND),
                ("new_password2", SECOND),
            ],
        )
        .await;
        assert_eq!(status, 403, "no CSRF token: {body}");
        let (status, body) = change(
            &http,
            &base,
            &here,
            &[
                ("csrf", &csrf),
                ("current_password", FIRST),
                ("new_password", SECOND),
                ("new_password2", "my second long passwort"),
            ],
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("differ"), "{body}");
        let (status, body) = change(
            &http,
            &base,
            &here,
            &[
                ("csrf", &csrf),
                ("current_password", FIRST),
                ("new_password", "too short"),
                ("new_password2", "too short"),
            ],
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("at least 12 characters"), "{body}");
        let (status, body) = change(
            &http,
            &base,
            &here,
            &[
                ("csrf", &csrf),
                ("current_password", "not my password at all"),
                ("new_password", SECOND),
                ("new_password2", SECOND),
            ],
        )
        .await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("action=\"/ui/account/password\""), "{body}");
        let failed = site.audit_details("console-login-failed");
        assert_eq!(
            failed.len(),
            1,
            "a wrong current password is a failed sign-in"
        );
        assert_eq!(failed[0]["reason"], "wrong password");
        assert!(!site
            .audit_actions()
            .contains(&"account-password-change".to_owned()));
        let (status, _) = get(&http, &base, &elsewhere, "/ui/").await;
        assert_eq!(status, 200, "no session ended on a refusal");
        let again = sign_in(&http, &base, "dana", FIRST).await;
        assert!(again.is_some(), "the first password still signs in");

        // The change: this session stays, the others end, the old password is refused.
        let (status, body) = change(
            &http,
            &base,
            &here,
            &[
                ("csrf", &csrf),
                ("current_password", FIRST),
                ("new_password", SECOND),
                ("new_password2", SECOND),
            ],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("id=\"password-changed\""), "{body}");
        let (status, _) = get(&http, &base, &here, "/ui/account").await;
        assert_eq!(status, 200, "the session of the change stays");
        for ended in [&elsewhere, &again.unwrap()] {
            let (status, _) = get(&http, &base, ended, "/ui/").await;
            assert_eq!(status, 303, "another session of the account ended");
        }
        assert!(sign_in(&http, &base, "dana", FIRST).await.is_none());
        assert!(sign_in(&http, &base, "dana", SECOND).await.is_some());
        let changed = site.audit_details("account-password-change");
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0]["account"], "dana");
    });
}
