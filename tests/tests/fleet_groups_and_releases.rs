//! Endpoint groups and rollout progress against the real `herald-ca serve` over HTTPS: the
//! group travels from the enrollment token into the certificate (its one organizationalUnitName,
//! read back with OpenSSL) and the fleet view; an operator moves an endpoint and its next
//! renewal carries the new group; a report never changes a group, whatever it claims; the
//! releases summary counts each endpoint's latest report once, the same over the API and the
//! CLI; and each route checks its role.

#![allow(clippy::unwrap_used)]

mod ca_support;
mod enroll_support;

use ca_support::{ca_cmd, run_ok};
use enroll_support::{
    client_with, code, enroll_with, key_and_csr, post, renew, report, runtime, set_group,
    token_in_group, units_of, Site,
};

/// `GET path` with `bearer`; returns the status and the JSON answer.
async fn get(site: &Site, path: &str, bearer: Option<&str>) -> (u16, serde_json::Value) {
    let mut request = site.client().get(format!("{}{path}", site.ca.https_url()));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// The names of a fleet listing.
fn names(listing: &serde_json::Value) -> Vec<String> {
    listing["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn group_travels_from_token_to_certificate_to_fleet_view() {
    let site = Site::start();
    let (pilot_name, plain_name) = runtime().block_on(async {
        let created = token_in_group(&site, "kiosk", "pilot").await;
        assert_eq!(created["group"], "pilot");
        let (pilot_name, _, issued) = enroll_with(&site, created["token"].as_str().unwrap()).await;
        assert_eq!(
            units_of(&site, "pilot", issued["certificate_pem"].as_str().unwrap()),
            ["pilot"]
        );
        let plain = site.create_token(&site.client(), "kiosk").await;
        assert_eq!(plain["group"], "default");
        let (plain_name, _, issued) = enroll_with(&site, plain["token"].as_str().unwrap()).await;
        assert_eq!(
            units_of(&site, "plain", issued["certificate_pem"].as_str().unwrap()),
            ["default"]
        );

        let (status, pilots) = get(&site, "/api/v1/fleet?group=pilot", Some(&site.operator)).await;
        assert_eq!(status, 200, "{pilots}");
        assert_eq!(names(&pilots), [pilot_name.as_str()]);
        assert_eq!(pilots["endpoints"][0]["group"], "pilot");
        assert_eq!(pilots["endpoints"][0]["certificate_group"], "pilot");
        let (_, everyone) = get(&site, "/api/v1/fleet", Some(&site.operator)).await;
        assert_eq!(names(&everyone).len(), 2);
        let (status, bad) = get(&site, "/api/v1/fleet?group=Pilots", Some(&site.operator)).await;
        assert_eq!((status, code(&bad)), (400, "bad_group"), "{bad}");
        (pilot_name, plain_name)
    });
    let listed = run_ok(
        ca_cmd()
            .args([
                "fleet",
                "list",
                "--json",
                "--group",
                "default",
                "--data-dir",
            ])
            .arg(&site.ca.dir),
    );
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(names(&listed), [plain_name]);
    let shown = run_ok(
        ca_cmd()
            .args(["fleet", "show", &pilot_name, "--data-dir"])
            .arg(&site.ca.dir),
    );
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("group:             pilot\n"), "{shown}");
    let audit = site.audit_details("token-create");
    assert_eq!(audit[0]["group"], "pilot", "{audit:?}");
}

#[test]
fn token_with_invalid_group_or_group_on_server_profile_refused() {
    let site = Site::start();
    runtime().block_on(async {
        let admin = site.ca.admin_token("admin");
        for (body, status, expected) in [
            (
                serde_json::json!({"name": "kiosk", "group": "Pilot Group"}),
                400,
                "bad_group",
            ),
            (
                serde_json::json!({"name": "web", "profile": "server", "group": "pilot"}),
                422,
                "policy",
            ),
        ] {
            let (got, answer) = post(
                site.client()
                    .post(format!("{}/api/v1/tokens", site.ca.https_url()))
                    .bearer_auth(&admin),
                &body,
            )
            .await;
            assert_eq!((got, code(&answer)), (status, expected), "{body}: {answer}");
        }
    });
    let refused = ca_cmd()
        .args(["token", "create", "--name", "kiosk", "--group", "-pilot"])
        .arg("--data-dir")
        .arg(&site.ca.dir)
        .output()
        .unwrap();
    assert_eq!(
        refused.status.code(),
        Some(2),
        "a malformed group is a usage error"
    );
    assert!(site.audit_details("token-create").is_empty());
}

#[test]
fn report_claiming_another_group_changes_nothing() {
    let site = Site::start();
    runtime().block_on(async {
        let created = site.create_token(&site.client(), "till").await;
        let (name, identity, _) = enroll_with(&site, created["token"].as_str().unwrap()).await;
        report(
            &site,
            &identity,
            serde_json::json!({
                "group": "pilot",
                "groups": ["pilot"],
                "channel": "stable",
                "release": 7,
                "state": "installed",
            }),
        )
        .await;
        let (_, shown) = get(
            &site,
            &format!("/api/v1/fleet/{name}"),
            Some(&site.operator),
        )
        .await;
        assert_eq!(shown["group"], "default", "{shown}");
        assert_eq!(shown["certificate_group"], "default", "{shown}");
        assert_eq!(shown["state"], "installed", "{shown}");
        let (_, pilots) = get(&site, "/api/v1/fleet?group=pilot", Some(&site.operator)).await;
        assert!(names(&pilots).is_empty(), "{pilots}");
        let (_, releases) = get(&site, "/api/v1/fleet/releases", Some(&site.operator)).await;
        assert_eq!(
            releases,
            serde_json::json!({"releases": [{
                "channel": "stable", "release": 7, "group": "default",
                "installed": 1, "pending": 0, "failed": 0, "rolled_back": 0, "held": 0,
            }]})
        );
    });
    assert!(
        site.audit_details("endpoint-group-set").is_empty(),
        "a report writes no group"
    );
}

#[test]
fn set_group_then_renewal_changes_the_certificates_unit() {
    let site = Site::start();
    runtime().block_on(async {
        let created = site.create_token(&site.client(), "pos").await;
        let (name, identity, _) = enroll_with(&site, created["token"].as_str().unwrap()).await;
        let (status, change) = set_group(&site, &name, "kiosks", &site.operator).await;
        assert_eq!(status, 200, "{change}");
        assert_eq!(
            change,
            serde_json::json!({
                "name": name, "group": "kiosks", "previous": "default",
                "certificate_group": "default",
            })
        );
        // Until it renews, the endpoint follows its certificate's group; the fleet shows both.
        let (_, shown) = get(
            &site,
            &format!("/api/v1/fleet/{name}"),
            Some(&site.operator),
        )
        .await;
        assert_eq!(
            (&shown["group"], &shown["certificate_group"]),
            (&"kiosks".into(), &"default".into())
        );

        // The store records issue times to the second and the fleet view shows the newest
        // certificate by that time: renew in a later second than the enrollment.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let (_, csr) = key_and_csr("renewed");
        let endpoint = client_with(&site.root_pem, Some(&identity));
        let (status, renewed) = renew(&endpoint, &site.ca.https_url(), &identity, &csr)
            .await
            .unwrap();
        assert_eq!(status, 200, "{renewed}");
        assert_eq!(
            units_of(
                &site,
                "renewed",
                renewed["certificate_pem"].as_str().unwrap()
            ),
            ["kiosks"]
        );
        let (_, shown) = get(
            &site,
            &format!("/api/v1/fleet/{name}"),
            Some(&site.operator),
        )
        .await;
        assert_eq!(shown["certificate_group"], "kiosks", "{shown}");

        let (status, unknown) = set_group(&site, "nobody-0001", "kiosks", &site.operator).await;
        assert_eq!((status, code(&unknown)), (404, "not_found"), "{unknown}");
        let (status, bad) = set_group(&site, &name, "KIOSKS", &site.operator).await;
        assert_eq!((status, code(&bad)), (400, "bad_group"), "{bad}");
    });
    let audit = site.audit_details("endpoint-group-set");
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        (&audit[0]["group"], &audit[0]["previous"]),
        (&"kiosks".into(), &"default".into())
    );
    let renewals = site.audit_details("issue");
    assert_eq!(renewals.last().unwrap()["group"], "kiosks", "{renewals:?}");
}

#[test]
fn set_group_from_the_cli_is_audited_and_reaches_the_next_certificate() {
    let site = Site::start();
    let (_, cert) = site.ca.issue("desk-0001");
    let moved = run_ok(
        ca_cmd()
            .args([
                "fleet",
                "set-group",
                "desk-0001",
                "pilot",
                "--json",
                "--data-dir",
            ])
            .arg(&site.ca.dir),
    );
    let moved: serde_json::Value = serde_json::from_slice(&moved.stdout).unwrap();
    assert_eq!(moved["previous"], "default");
    assert_eq!(moved["certificate_group"], "default");
    let before = std::fs::read_to_string(&cert).unwrap();
    assert_eq!(units_of(&site, "before", &before), ["default"]);
    // An operator re-issuing by hand gets the recorded group as well.
    let (_, again) = site.ca.issue("desk-0001");
    let again = std::fs::read_to_string(again).unwrap();
    assert_eq!(units_of(&site, "again", &again), ["pilot"]);
    let audit = site.audit_details("endpoint-group-set");
    assert_eq!(audit[0]["name"], "desk-0001");
    let unknown = ca_cmd()
        .args(["fleet", "set-group", "nobody-0001", "pilot", "--data-dir"])
        .arg(&site.ca.dir)
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no endpoint named nobody-0001"));
}

#[test]
fn releases_summary_counts_latest_reports_the_same_over_api_and_cli() {
    let site = Site::start();
    let api = runtime().block_on(async {
        let mut endpoints = Vec::new();
        for group in ["pilot", "pilot", "pilot", "default", "default"] {
            let created = token_in_group(&site, "shop", group).await;
            let (_, identity, _) = enroll_with(&site, created["token"].as_str().unwrap()).await;
            endpoints.push(identity);
        }
        let stable = |release: u64, state: &str| {
            serde_json::json!({"channel": "stable", "release": release, "state": state})
        };
        report(&site, &endpoints[0], stable(7, "installed")).await;
        report(&site, &endpoints[1], stable(7, "installed")).await;
        report(&site, &endpoints[2], stable(7, "installed")).await;
        // A health check failed afterwards: only the latest report counts.
        report(
            &site,
            &endpoints[2],
            serde_json::json!({"channel": "stable", "release": 7, "state": "rolled_back",
                               "reason": "health check exited 3"}),
        )
        .await;
        report(&site, &endpoints[3], stable(7, "pending")).await;
        report(&site, &endpoints[4], stable(6, "held")).await;
        let (status, api) = get(&site, "/api/v1/fleet/releases", Some(&site.operator)).await;
        assert_eq!(status, 200, "{api}");
        api
    });
    let row = |release: u64, group: &str, counts: [u64; 5]| {
        serde_json::json!({
            "channel": "stable", "release": release, "group": group,
            "installed": counts[0], "pending": counts[1], "failed": counts[2],
            "rolled_back": counts[3], "held": counts[4],
        })
    };
    assert_eq!(
        api,
        serde_json::json!({"releases": [
            row(6, "default", [0, 0, 0, 0, 1]),
            row(7, "default", [0, 1, 0, 0, 0]),
            row(7, "pilot", [2, 0, 0, 1, 0]),
        ]})
    );
    let cli = run_ok(
        ca_cmd()
            .args(["fleet", "releases", "--json", "--data-dir"])
            .arg(&site.ca.dir),
    );
    let cli: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(cli, api);
    let table = run_ok(
        ca_cmd()
            .args(["fleet", "releases", "--data-dir"])
            .arg(&site.ca.dir),
    );
    let table = String::from_utf8_lossy(&table.stdout);
    let pilot: Vec<&str> = table.lines().last().unwrap().split_whitespace().collect();
    assert_eq!(
        pilot,
        ["stable", "7", "pilot", "2", "0", "0", "1", "0"],
        "{table}"
    );
}

#[test]
fn fleet_group_and_releases_routes_check_roles() {
    let site = Site::start();
    runtime().block_on(async {
        let created = site.create_token(&site.client(), "pos").await;
        let (name, _, _) = enroll_with(&site, created["token"].as_str().unwrap()).await;
        let auditor = site.ca.admin_token("auditor");
        for path in ["/api/v1/fleet/releases", "/api/v1/fleet?group=default"] {
            let (status, _) = get(&site, path, Some(&auditor)).await;
            assert_eq!(status, 200, "auditor reads {path}");
            let (status, body) = get(&site, path, None).await;
            assert_eq!((status, code(&body)), (401, "unauthenticated"), "{path}");
            let (status, body) = get(&site, path, Some("adm_not-a-token")).await;
            assert_eq!(status, 401, "{path}: {body}");
        }
        let (status, body) = set_group(&site, &name, "pilot", &auditor).await;
        assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");
        let (status, body) = post(
            site.client()
                .post(format!("{}/api/v1/fleet/{name}/group", site.ca.https_url())),
            &serde_json::json!({"group": "pilot"}),
        )
        .await;
        assert_eq!((status, code(&body)), (401, "unauthenticated"), "{body}");
        let (_, shown) = get(&site, &format!("/api/v1/fleet/{name}"), Some(&auditor)).await;
        assert_eq!(shown["group"], "default", "refused changes change nothing");
        let (status, body) = set_group(&site, &name, "pilot", &site.operator).await;
        assert_eq!(status, 200, "{body}");
    });
}
