//! Enrollment and renewal scenarios against the real `herald-ca serve` over HTTPS: one-time
//! tokens, unique names, proof of possession, lost responses, concurrency, renewal.

#![allow(clippy::unwrap_used)]

mod ca_support;
mod enroll_support;

use std::collections::BTreeSet;
use std::process::Command;

use ca_support::{ca_cmd, run_ok};
use enroll_support::{client_with, code, enroll, identity, key_and_csr, renew, runtime, Site};

fn token_of(created: &serde_json::Value) -> String {
    created["token"].as_str().unwrap().to_owned()
}

#[test]
fn token_replay_with_another_key_refused_and_audited() {
    let site = Site::start();
    runtime().block_on(async {
        let client = site.client();
        let created = site.create_token(&client, "kiosk").await;
        let token = token_of(&created);
        let (_, first_csr) = key_and_csr("kiosk");
        let (status, issued) = enroll(&client, &site.ca.https_url(), &token, &first_csr).await;
        assert_eq!(status, 200, "{issued}");
        assert_eq!(issued["name"], "kiosk-0001");
        let (_, replay_csr) = key_and_csr("kiosk");
        let (status, body) = enroll(&client, &site.ca.https_url(), &token, &replay_csr).await;
        assert_eq!((status, code(&body)), (409, "token_used"), "{body}");
    });
    assert_eq!(site.certificates_named("kiosk-0001"), 1);
    let actions = site.audit_actions();
    assert_eq!(actions.last().map(String::as_str), Some("enroll-refused"));
}

#[test]
fn expired_token_refused_and_left_unused() {
    let site = Site::start();
    runtime().block_on(async {
        let client = site.client();
        let created = site.create_token(&client, "late").await;
        // The token's expiry passes.
        site.sql(&format!(
            "UPDATE enrollment_tokens SET expires_at = 1 WHERE id = '{}'",
            created["id"].as_str().unwrap()
        ));
        let (_, csr) = key_and_csr("late");
        let (status, body) = enroll(&client, &site.ca.https_url(), &token_of(&created), &csr).await;
        assert_eq!((status, code(&body)), (403, "token_expired"), "{body}");
    });
    assert_eq!(site.certificates_named("late-0001"), 0);
    let out = run_ok(
        ca_cmd()
            .args(["token", "list", "--json", "--data-dir"])
            .arg(&site.ca.dir),
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["status"], "expired");
}

#[test]
fn wrong_proof_of_possession_refused_and_token_still_usable() {
    let site = Site::start();
    runtime().block_on(async {
        let client = site.client();
        let token = token_of(&site.create_token(&client, "pop").await);
        // A request whose public key was swapped for another one: its signature no longer
        // verifies, so it proves possession of nothing.
        let (_, csr) = key_and_csr("pop");
        let (other_key, _) = key_and_csr("pop");
        let (_, mut der) = der::pem::decode_vec(csr.as_bytes()).unwrap();
        let own = spki_key_bytes(&der);
        let other = rcgen::PublicKeyData::der_bytes(&other_key).to_vec();
        let at = der.windows(own.len()).position(|w| w == own).unwrap();
        der[at..at + own.len()].copy_from_slice(&other);
        let forged =
            der::pem::encode_string("CERTIFICATE REQUEST", der::pem::LineEnding::LF, &der).unwrap();
        let (status, body) = enroll(&client, &site.ca.https_url(), &token, &forged).await;
        assert_eq!((status, code(&body)), (400, "bad_csr"), "{body}");
        // Nothing was burnt: the genuine request still enrolls.
        let (status, body) = enroll(&client, &site.ca.https_url(), &token, &csr).await;
        assert_eq!(status, 200, "{body}");
    });
}

#[test]
fn request_asking_for_another_name_gets_the_token_name() {
    let site = Site::start();
    let pem = runtime().block_on(async {
        let client = site.client();
        let token = token_of(&site.create_token(&client, "cam").await);
        let (_, csr) = key_and_csr("admin-console");
        let (status, issued) = enroll(&client, &site.ca.https_url(), &token, &csr).await;
        assert_eq!(status, 200, "{issued}");
        assert_eq!(
            issued["name"], "cam-0001",
            "the response says which name was issued"
        );
        issued["certificate_pem"].as_str().unwrap().to_owned()
    });
    let file = site.ca.scratch("cam.pem");
    std::fs::write(&file, pem).unwrap();
    let out = run_ok(
        Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-subject",
                "-ext",
                "subjectAltName",
                "-in",
            ])
            .arg(&file),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cam-0001"), "{text}");
    assert!(
        !text.contains("admin-console"),
        "requested name copied: {text}"
    );
}

/// A served CA that lets one client address (these scenarios send 1,000 concurrent requests
/// from 127.0.0.1) hold more connections than the default cap per client address.
fn thousand_connection_site() -> Site {
    Site::start_with(|ca| ca.set_config("max_connections_per_client", "2000"))
}

#[test]
fn thousand_concurrent_enrollments_with_one_token_give_one_certificate() {
    let site = thousand_connection_site();
    let outcomes = runtime().block_on(async {
        let client = site.client();
        let token = token_of(&site.create_token(&client, "race").await);
        let csrs: Vec<String> = (0..1000).map(|_| key_and_csr("race").1).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for csr in csrs {
            let client = client.clone();
            let token = token.clone();
            let base = site.ca.https_url();
            tasks.spawn(async move { enroll(&client, &base, &token, &csr).await });
        }
        let mut outcomes = Vec::new();
        while let Some(result) = tasks.join_next().await {
            let (status, body) = result.unwrap();
            outcomes.push((status, code(&body).to_owned()));
        }
        outcomes
    });
    let ok = outcomes.iter().filter(|(s, _)| *s == 200).count();
    let used = outcomes
        .iter()
        .filter(|(s, c)| *s == 409 && c == "token_used")
        .count();
    assert_eq!((ok, used), (1, 999), "{outcomes:?}");
    assert_eq!(site.certificates_named("race-0001"), 1);
}

#[test]
fn thousand_concurrent_token_creations_on_two_servers_give_distinct_names() {
    let site = thousand_connection_site();
    // A second server on the same store.
    let second_server = enroll_support::SecondServer::start(&site.ca);
    let second = second_server.https;
    let names = runtime().block_on(async {
        let client = site.client();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..1000 {
            let client = client.clone();
            let url = if i % 2 == 0 {
                site.ca.https_url()
            } else {
                format!("https://{second}")
            };
            let operator = site.operator.clone();
            tasks.spawn(async move {
                enroll_support::post(
                    client
                        .post(format!("{url}/api/v1/tokens"))
                        .bearer_auth(operator),
                    &serde_json::json!({"name": "fleet"}),
                )
                .await
            });
        }
        let mut names = Vec::new();
        while let Some(result) = tasks.join_next().await {
            let (status, body) = result.unwrap();
            assert_eq!(status, 201, "{body}");
            names.push(body["name"].as_str().unwrap().to_owned());
        }
        names
    });
    let distinct: BTreeSet<&String> = names.iter().collect();
    assert_eq!(distinct.len(), 1000);
    let expected: BTreeSet<String> = (1..=1000).map(|n| format!("fleet-{n:04}")).collect();
    assert_eq!(
        distinct.into_iter().cloned().collect::<BTreeSet<_>>(),
        expected
    );
}

#[test]
fn lost_response_retry_returns_the_same_certificate() {
    let site = Site::start();
    runtime().block_on(async {
        let client = site.client();
        let token = token_of(&site.create_token(&client, "retry").await);
        let (_, csr) = key_and_csr("retry");
        let (s1, first) = enroll(&client, &site.ca.https_url(), &token, &csr).await;
        // The answer was lost; the endpoint sends the same request again.
        let (s2, second) = enroll(&client, &site.ca.https_url(), &token, &csr).await;
        assert_eq!((s1, s2), (200, 200), "{second}");
        assert_eq!(first["serial"], second["serial"]);
        assert_eq!(first["certificate_pem"], second["certificate_pem"]);
    });
    assert_eq!(site.certificates_named("retry-0001"), 1);
}

#[test]
fn renewal_keeps_the_name_and_a_revoked_certificate_is_refused() {
    let site = Site::start();
    let base = site.ca.https_url();
    let (identity_pem, serial) = runtime().block_on(async {
        let client = site.client();
        let token = token_of(&site.create_token(&client, "renew").await);
        let (key, csr) = key_and_csr("renew");
        let (_, issued) = enroll(&client, &base, &token, &csr).await;
        let identity_pem = identity(&key, &issued);
        let mtls = client_with(&site.root_pem, Some(&identity_pem));
        let (_, new_csr) = key_and_csr("renew");
        let (status, renewed) = renew(&mtls, &base, &identity_pem, &new_csr).await.unwrap();
        assert_eq!(status, 200, "{renewed}");
        assert_eq!(renewed["name"], "renew-0001");
        assert_ne!(renewed["serial"], issued["serial"]);
        // Without a client certificate, no renewal.
        let (status, body) = renew(&client, &base, &identity_pem, &new_csr)
            .await
            .unwrap();
        assert_eq!((status, code(&body)), (401, "client_certificate_required"));
        (identity_pem, issued["serial"].as_str().unwrap().to_owned())
    });
    run_ok(
        ca_cmd()
            .args(["cert", "revoke", "--data-dir"])
            .arg(&site.ca.dir)
            .arg(&serial),
    );
    let outcome = runtime().block_on(async {
        let mtls = client_with(&site.root_pem, Some(&identity_pem));
        let (_, csr) = key_and_csr("renew");
        renew(&mtls, &base, &identity_pem, &csr).await
    });
    // Refused during the TLS handshake, or by the renewal rules if a connection got through.
    match outcome {
        Err(_) => {}
        Ok((status, body)) => {
            assert_eq!(
                (status, code(&body)),
                (403, "certificate_revoked"),
                "{body}"
            )
        }
    }
    assert_eq!(
        site.certificates_named("renew-0001"),
        2,
        "no certificate after revocation"
    );
}

#[test]
fn discovery_document_is_enough_for_an_endpoint_to_enroll() {
    let site = Site::start();
    let token =
        runtime().block_on(async { token_of(&site.create_token(&site.client(), "edge").await) });
    let state = site.ca.scratch("endpoint");
    let out = run_ok(
        herald_e2e::herald_bin("herald-update")
            .args(["enroll", "--server", &site.ca.https_url()])
            .args(["--token", &token, "--root-fingerprint", &site.fingerprint()])
            .arg("--state-dir")
            .arg(&state),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("edge-0001"), "{said}");
    let dir = state.join("identity");
    for file in ["identity.pem", "cert.pem", "ca.pem", "discovery.json"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("identity.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let discovery: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("discovery.json")).unwrap()).unwrap();
    assert_eq!(
        discovery["renew_url"],
        format!("{}/api/v1/renew", site.ca.https_url())
    );
    assert_eq!(site.certificates_named("edge-0001"), 1);
}

/// The 65-byte uncompressed P-256 point of the request's public key.
fn spki_key_bytes(der: &[u8]) -> Vec<u8> {
    let at = der
        .windows(3)
        .position(|w| w == [0x03, 0x42, 0x00])
        .unwrap();
    der[at + 3..at + 3 + 65].to_vec()
}

#[test]
fn revoked_or_hand_issued_names_are_never_handed_out_again() {
    let site = Site::start();
    // A certificate issued by hand already carries name-0002.
    site.ca.issue("name-0002");
    runtime().block_on(async {
        let client = site.client();
        let first = site.create_token(&client, "name").await;
        assert_eq!(first["name"], "name-0001");
        let (_, csr) = key_and_csr("name");
        let (_, issued) = enroll(&client, &site.ca.https_url(), &token_of(&first), &csr).await;
        let serial = issued["serial"].as_str().unwrap().to_owned();
        run_ok(
            ca_cmd()
                .args(["cert", "revoke", "--data-dir"])
                .arg(&site.ca.dir)
                .arg(&serial),
        );
        let next = site.create_token(&client, "name").await;
        assert_eq!(
            next["name"], "name-0003",
            "revoked 0001 and hand-issued 0002 skipped"
        );
    });
}

#[test]
fn revoked_token_refused() {
    let site = Site::start();
    runtime().block_on(async {
        let client = site.client();
        let created = site.create_token(&client, "gone").await;
        let id = created["id"].as_str().unwrap();
        let response = client
            .post(format!("{}/api/v1/tokens/{id}/revoke", site.ca.https_url()))
            .bearer_auth(&site.operator)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let (_, csr) = key_and_csr("gone");
        let (status, body) = enroll(&client, &site.ca.https_url(), &token_of(&created), &csr).await;
        assert_eq!((status, code(&body)), (403, "token_revoked"), "{body}");
        // Without the operator role, no token.
        let (status, body) = enroll_support::post(
            client.post(format!("{}/api/v1/tokens", site.ca.https_url())),
            &serde_json::json!({"name": "gone"}),
        )
        .await;
        assert_eq!((status, code(&body)), (401, "unauthenticated"));
    });
    let out = run_ok(
        ca_cmd()
            .args(["token", "list", "--json", "--data-dir"])
            .arg(&site.ca.dir),
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["status"], "revoked");
}

#[test]
fn endpoint_rerun_after_lost_answer_gets_the_same_certificate() {
    let site = Site::start();
    let token =
        runtime().block_on(async { token_of(&site.create_token(&site.client(), "lost").await) });
    let state = site.ca.scratch("endpoint-lost");
    let enroll = || {
        let mut command = herald_e2e::herald_bin("herald-update");
        command
            .args(["enroll", "--server", &site.ca.https_url()])
            .args(["--token", &token, "--root-fingerprint", &site.fingerprint()])
            .arg("--state-dir")
            .arg(&state);
        command.output().unwrap()
    };
    // The answer arrives but cannot be stored: as if the endpoint died with it in flight.
    let blocker = state.join("identity/cert.pem");
    std::fs::create_dir_all(&blocker).unwrap();
    let first = enroll();
    assert_eq!(first.status.code(), Some(1), "the first run fails");
    assert_eq!(site.certificates_named("lost-0001"), 1, "the server issued");
    assert!(state.join("identity/pending-key.pem").is_file(), "key kept");

    std::fs::remove_dir(&blocker).unwrap();
    let second = enroll();
    assert_eq!(
        second.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(
        site.certificates_named("lost-0001"),
        1,
        "the same certificate"
    );
    assert!(!state.join("identity/pending-key.pem").exists());
}

#[test]
fn endpoint_refuses_a_server_whose_root_does_not_match_the_pin() {
    let site = Site::start();
    let token =
        runtime().block_on(async { token_of(&site.create_token(&site.client(), "pin").await) });
    let state = site.ca.scratch("endpoint-pin");
    let out = herald_e2e::herald_bin("herald-update")
        .args(["enroll", "--server", &site.ca.https_url()])
        .args(["--token", &token, "--root-fingerprint", &"00".repeat(32)])
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fingerprint"));
    assert!(
        !state.join("identity").exists(),
        "nothing generated or sent"
    );
    assert_eq!(site.certificates_named("pin-0001"), 0);
}

#[test]
fn doctor_reports_the_enrolled_identity_and_checks_its_urls() {
    let site = Site::start();
    let token =
        runtime().block_on(async { token_of(&site.create_token(&site.client(), "doc").await) });
    let state = site.ca.scratch("endpoint-doctor");
    let out = herald_e2e::herald_bin("herald-update")
        .args(["enroll", "--server", &site.ca.https_url()])
        .args(["--token", &token, "--root-fingerprint", &site.fingerprint()])
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = site.ca.scratch("endpoint-doctor.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\ninstall_root = \"{}\"\n",
            state.display(),
            state.display()
        ),
    )
    .unwrap();
    let doctor = || {
        let out = herald_e2e::herald_bin("herald-update")
            .arg("--config")
            .arg(&config)
            .arg("doctor")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let line = |report: &str, check: &str| {
        report
            .lines()
            .find(|l| {
                l.get(6..)
                    .is_some_and(|rest| rest.starts_with(&format!("{check}:")))
            })
            .unwrap_or_else(|| panic!("no {check} line in:\n{report}"))
            .to_owned()
    };
    let report = doctor();
    let tls = line(&report, "tls settings");
    assert!(
        tls.contains("enrolled root") && tls.contains("enrolled identity"),
        "{report}"
    );
    assert!(
        line(&report, "identity").contains("CN=doc-0001"),
        "{report}"
    );
    for check in [
        "identity expiry",
        "enroll_url",
        "renew_url",
        "ocsp_url",
        "crl_url",
        "revocation",
    ] {
        assert!(
            line(&report, check).starts_with("ok "),
            "{check}:\n{report}"
        );
    }

    run_ok(
        ca_cmd()
            .args(["cert", "revoke", "doc-0001", "--data-dir"])
            .arg(&site.ca.dir),
    );
    // The server publishes a new CRL and refuses the revoked certificate in mutual TLS.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let report = doctor();
        if line(&report, "revocation").starts_with("FAIL") {
            assert!(line(&report, "revocation").contains("revoked"), "{report}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "doctor never saw the revocation:\n{report}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}
