//! Rollout progress in the web console, over HTTPS without a browser: endpoints enrolled into
//! groups report where they stand with the release their rollout offers them; an auditor's
//! dashboard shows the counts per release and group, the endpoint list filters by group and
//! shows each endpoint's group and releases, and an operator's move of an endpoint reaches the
//! list at once. The pages stay script-free under the console's one Content-Security-Policy.

#![allow(clippy::unwrap_used)]

mod ca_support;
mod enroll_support;

use ca_support::{ca_cmd, run_ok, TestCa};
use enroll_support::{enroll_with, report, runtime, set_group, token_in_group, Site};
use herald_e2e::console::sign_in_without_mfa;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An HTTPS client for the console: trusts the CA's root and follows no redirect.
fn browserless(site: &Site) -> reqwest::Client {
    enroll_support::client_builder(&site.root_pem, None)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Creates a console account with `role` and no second factor, signs it in and sets its
/// password; returns the session cookie's value.
async fn signed_in(site: &Site, http: &reqwest::Client, name: &str, role: &str) -> String {
    let added = run_ok(
        ca_cmd()
            .args([
                "admin", "user", "add", name, "--role", role, "--no-mfa", "--json",
            ])
            .arg("--data-dir")
            .arg(&site.ca.dir),
    );
    let added: serde_json::Value = serde_json::from_slice(&added.stdout).unwrap();
    let once = added["one_time_password"].as_str().unwrap();
    let password = "rollout progress 2026";
    sign_in_without_mfa(http, &site.ca.https_url(), name, once, password).await
}

/// `GET path` of the console with `session`; checks the answer's security headers and that it
/// carries no script; returns its status and body.
async fn page(ca: &TestCa, http: &reqwest::Client, session: &str, path: &str) -> (u16, String) {
    let response = http
        .get(format!("{}{path}", ca.https_url()))
        .header("cookie", format!("__Host-herald-session={session}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let csp = response
        .headers()
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.text().await.unwrap();
    assert_eq!(csp.as_deref(), Some(CSP), "{path}");
    assert!(!body.contains("<script"), "{path} carries a script");
    (status, body)
}

/// The cells of each row of the table with `id`, as text.
fn table_rows(html: &str, id: &str) -> Vec<Vec<String>> {
    let start = html
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id}: {html}"));
    let end = start + html[start..].find("</table>").unwrap();
    let body = &html[start..end];
    let body = &body[body.find("<tbody>").unwrap()..];
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let cell = &cell[cell.find('>').unwrap() + 1..];
                    let cell = &cell[..cell.find("</td>").unwrap()];
                    let mut text = String::new();
                    let mut in_tag = false;
                    for c in cell.chars() {
                        match c {
                            '<' => in_tag = true,
                            '>' => in_tag = false,
                            c if !in_tag => text.push(c),
                            _ => {}
                        }
                    }
                    text.trim().to_owned()
                })
                .collect()
        })
        .collect()
}

/// The names in the endpoint list of a page, in order.
fn listed(html: &str) -> Vec<String> {
    if html.contains("No endpoint matches.") {
        return Vec::new();
    }
    table_rows(html, "endpoints")
        .into_iter()
        .map(|row| row[0].clone())
        .collect()
}

#[test]
fn dashboard_shows_rollout_progress_and_the_endpoint_list_filters_by_group() {
    let site = Site::start();
    let http = browserless(&site);
    runtime().block_on(async {
        let mut pilots = Vec::new();
        for _ in 0..3 {
            let token = token_in_group(&site, "till", "pilot").await;
            pilots.push(enroll_with(&site, token["token"].as_str().unwrap()).await);
        }
        let mut others = Vec::new();
        for _ in 0..2 {
            let token = token_in_group(&site, "kiosk", "default").await;
            others.push(enroll_with(&site, token["token"].as_str().unwrap()).await);
        }
        let stable =
            |state: &str| serde_json::json!({"channel": "stable", "release": 7, "state": state});
        report(&site, &pilots[0].1, stable("installed")).await;
        report(&site, &pilots[1].1, stable("installed")).await;
        report(&site, &pilots[2].1, stable("installed")).await;
        // Its health check failed after the install: only this latest report counts.
        report(
            &site,
            &pilots[2].1,
            serde_json::json!({"channel": "stable", "release": 7, "state": "rolled_back",
                               "reason": "health check exited 3"}),
        )
        .await;
        report(&site, &others[0].1, stable("pending")).await;
        report(&site, &others[1].1, stable("failed")).await;

        // Signed out, the dashboard shows nothing but the way to the sign-in page.
        let anonymous = http
            .get(format!("{}/ui/", site.ca.https_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 303);
        assert!(!anonymous.text().await.unwrap().contains("rollout"));

        // The auditor role (the lowest) sees the counts.
        let session = signed_in(&site, &http, "audra", "auditor").await;
        let (status, dashboard) = page(&site.ca, &http, &session, "/ui/").await;
        assert_eq!(status, 200);
        assert!(dashboard.contains("<h2 id=\"releases\">Releases</h2>"));
        let header = [
            "Channel",
            "Release",
            "Group",
            "Installed",
            "Pending",
            "Failed",
        ];
        for column in header.iter().chain(&["Rolled back", "Held"]) {
            assert!(dashboard.contains(&format!(">{column}</th>")), "{column}");
        }
        let row = |group: &str, counts: [u32; 5]| {
            let mut row = vec!["stable".to_owned(), "7".to_owned(), group.to_owned()];
            row.extend(counts.iter().map(u32::to_string));
            row
        };
        assert_eq!(
            table_rows(&dashboard, "rollout"),
            [
                row("default", [0, 1, 1, 0, 0]),
                row("pilot", [2, 0, 0, 1, 0])
            ],
            "per release and group: installed, pending, failed, rolled back, held"
        );
        assert!(dashboard.contains("href=\"/ui/endpoints?group=pilot\""));

        // The endpoint list, filtered by group, shows each endpoint's group and releases.
        let (status, list) = page(&site.ca, &http, &session, "/ui/endpoints?group=pilot").await;
        assert_eq!(status, 200);
        let mut pilot_names: Vec<String> = pilots.iter().map(|p| p.0.clone()).collect();
        pilot_names.sort();
        assert_eq!(listed(&list), pilot_names);
        let rows = table_rows(&list, "endpoints");
        assert!(rows.iter().all(|r| r[1] == "pilot"), "{rows:?}");
        let offered: Vec<&str> = rows.iter().map(|r| r[4].as_str()).collect();
        assert_eq!(
            offered
                .iter()
                .filter(|o| **o == "release 7 installed")
                .count(),
            2,
            "{offered:?}"
        );
        assert!(offered.contains(&"release 7 rolled_back"), "{offered:?}");
        let (_, list) = page(&site.ca, &http, &session, "/ui/endpoints?group=default").await;
        let mut other_names: Vec<String> = others.iter().map(|o| o.0.clone()).collect();
        other_names.sort();
        assert_eq!(listed(&list), other_names);
        let (_, list) = page(&site.ca, &http, &session, "/ui/endpoints?group=kiosks").await;
        assert!(listed(&list).is_empty());

        // The detail page names the group and the release offered.
        let (_, detail) = page(
            &site.ca,
            &http,
            &session,
            &format!("/ui/endpoints/{}", pilots[2].0),
        )
        .await;
        assert!(detail.contains("health check exited 3"), "{detail}");
        assert!(detail.contains("rollout-rolled_back"), "{detail}");

        // An operator moves an endpoint: the list follows at once; the dashboard keeps counting
        // its report under the group of the certificate that proved it.
        let moved = &others[0].0;
        let (status, body) = set_group(&site, moved, "pilot", &site.operator).await;
        assert_eq!(status, 200, "{body}");
        let (_, list) = page(&site.ca, &http, &session, "/ui/endpoints?group=pilot").await;
        assert!(listed(&list).contains(moved), "{list}");
        let (_, list) = page(&site.ca, &http, &session, "/ui/endpoints?group=default").await;
        assert_eq!(listed(&list), [others[1].0.clone()]);
        let (_, dashboard) = page(&site.ca, &http, &session, "/ui/").await;
        assert_eq!(
            table_rows(&dashboard, "rollout"),
            [
                row("default", [0, 1, 1, 0, 0]),
                row("pilot", [2, 0, 0, 1, 0])
            ]
        );
    });
}

#[test]
fn dashboard_without_rollout_reports_says_so() {
    let site = Site::start();
    let http = browserless(&site);
    runtime().block_on(async {
        let session = signed_in(&site, &http, "otto", "operator").await;
        let (status, dashboard) = page(&site.ca, &http, &session, "/ui/").await;
        assert_eq!(status, 200);
        assert!(dashboard.contains("id=\"rollout-none\""), "{dashboard}");
        assert!(!dashboard.contains("<table id=\"rollout\""));
    });
}
