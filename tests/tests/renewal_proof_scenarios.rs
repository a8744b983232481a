//! Renewal and status reports are proved end to end, never vouched for: the endpoint signs
//! each request with its current key; whoever carries it (a relay, or someone holding a relay
//! certificate) can neither renew another certificate onto its own key, nor renew a
//! certificate that is not meant to renew, nor replay or delay a proof, nor put words in an
//! endpoint's status report. Status reports cross relays and are attributed to the endpoint
//! whose key signed them, with the relay chain audited.

#![allow(clippy::unwrap_used)]

mod ca_support;
mod enroll_support;

use base64::Engine;
use enroll_support::{
    client_with, code, enroll, identity, key_and_csr, post_with, proof, renew, renewal_body,
    runtime, RelayProcess, Site,
};
use herald_token_service::{Proof, Purpose, PROOF_HEADER};
use herald_wire::RELAY_CHAIN;

/// The header today's relays used to vouch for an endpoint's certificate.
const VOUCHED_CERTIFICATE: &str = "x-herald-client-certificate";

/// An identity (key then chain, PEM) enrolled with a token for `base` of `profile`, and the
/// answer of the enrollment.
async fn enrolled(site: &Site, base: &str, profile: &str) -> (Vec<u8>, serde_json::Value) {
    let token = site.cli_token(base, profile);
    let (key, csr) = key_and_csr(base);
    let (status, issued) = enroll(&site.client(), &site.ca.https_url(), &token, &csr).await;
    assert_eq!(status, 200, "{issued}");
    (identity(&key, &issued), issued)
}

/// The DER of the first certificate of a PEM text, base64.
fn der_base64(pem: &str) -> String {
    let at = pem.find("-----BEGIN CERTIFICATE-----").unwrap();
    let der = herald_token_client::first_certificate_der(&pem[at..]).unwrap();
    base64::engine::general_purpose::STANDARD.encode(der)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn relay_renewal_impersonation_refused() {
    let site = Site::start();
    runtime().block_on(async {
        let (_, victim) = enrolled(&site, "pos", "endpoint").await;
        let (relay_pem, relay) = enrolled(&site, "relay", "relay").await;
        let holder = client_with(&site.root_pem, Some(&relay_pem));
        let url = format!("{}/api/v1/renew", site.ca.https_url());
        // The relay holder renews the endpoint's (public) certificate onto its own key.
        let (own_key, own_csr) = key_and_csr("pos");
        let body = renewal_body(&own_csr);
        let victim_der = der_base64(victim["certificate_pem"].as_str().unwrap());
        let (status, answer) = post_with(
            &holder,
            &url,
            &body,
            &[(VOUCHED_CERTIFICATE, victim_der.as_str())],
        )
        .await
        .unwrap();
        assert_eq!((status, code(&answer)), (401, "proof_required"), "{answer}");
        // With a proof naming the endpoint's certificate but signed with its own key, as a
        // relay in a relay chain.
        let der = base64::engine::general_purpose::STANDARD
            .decode(&victim_der)
            .unwrap();
        let forged = Proof::sign(Purpose::Renew, &der, body.as_bytes(), &own_key, now())
            .unwrap()
            .to_header();
        let (status, answer) = post_with(
            &holder,
            &url,
            &body,
            &[
                (PROOF_HEADER, forged.as_str()),
                (RELAY_CHAIN, relay["serial"].as_str().unwrap()),
            ],
        )
        .await
        .unwrap();
        assert_eq!((status, code(&answer)), (403, "bad_proof"), "{answer}");
    });
    assert_eq!(site.certificates_named("pos-0001"), 1, "nothing issued");
    assert!(
        site.audit_actions().iter().all(|a| a != "renew"),
        "no renewal recorded"
    );
}

#[test]
fn server_certificate_renewal_refused() {
    let site = Site::start();
    // A relay operator holds the key of its TLS server certificate and a relay identity.
    let (cert, key) = enroll_support::localhost_tls(&site.ca, "site");
    let mut server_pem = std::fs::read(&key).unwrap();
    server_pem.extend(std::fs::read(&cert).unwrap());
    runtime().block_on(async {
        let (relay_pem, relay) = enrolled(&site, "relay", "relay").await;
        let holder = client_with(&site.root_pem, Some(&relay_pem));
        let url = format!("{}/api/v1/renew", site.ca.https_url());
        let (_, csr) = key_and_csr("localhost");
        let body = renewal_body(&csr);
        let server_der = der_base64(&String::from_utf8_lossy(&server_pem));
        let (status, answer) = post_with(
            &holder,
            &url,
            &body,
            &[(VOUCHED_CERTIFICATE, server_der.as_str())],
        )
        .await
        .unwrap();
        assert_eq!((status, code(&answer)), (401, "proof_required"), "{answer}");
        // Even proved with the server certificate's own key, a server profile never renews.
        let proved = proof(&server_pem, Purpose::Renew, body.as_bytes(), 0);
        let (status, answer) = post_with(
            &holder,
            &url,
            &body,
            &[
                (PROOF_HEADER, proved.as_str()),
                (RELAY_CHAIN, relay["serial"].as_str().unwrap()),
            ],
        )
        .await
        .unwrap();
        assert_eq!((status, code(&answer)), (403, "not_renewable"), "{answer}");
    });
    assert_eq!(site.certificates_named("localhost"), 1, "nothing issued");
}

#[test]
fn replayed_renewal_proof_refused() {
    let site = Site::start();
    runtime().block_on(async {
        let (identity_pem, _) = enrolled(&site, "kiosk", "endpoint").await;
        let endpoint = client_with(&site.root_pem, Some(&identity_pem));
        let (_, csr) = key_and_csr("kiosk");
        let body = renewal_body(&csr);
        let proved = proof(&identity_pem, Purpose::Renew, body.as_bytes(), 0);
        let url = format!("{}/api/v1/renew", site.ca.https_url());
        let headers = [(PROOF_HEADER, proved.as_str())];
        let (status, answer) = post_with(&endpoint, &url, &body, &headers).await.unwrap();
        assert_eq!(status, 200, "{answer}");
        let (status, answer) = post_with(&endpoint, &url, &body, &headers).await.unwrap();
        assert_eq!((status, code(&answer)), (403, "replayed_proof"), "{answer}");
    });
    assert_eq!(site.certificates_named("kiosk-0001"), 2, "one renewal only");
}

#[test]
fn stale_renewal_proof_refused() {
    let site = Site::start();
    runtime().block_on(async {
        let (identity_pem, _) = enrolled(&site, "scale", "endpoint").await;
        let endpoint = client_with(&site.root_pem, Some(&identity_pem));
        let url = format!("{}/api/v1/renew", site.ca.https_url());
        // Made ten minutes ago, or ten minutes ahead: outside the five-minute window.
        for age in [600, -600] {
            let (_, csr) = key_and_csr("scale");
            let body = renewal_body(&csr);
            let proved = proof(&identity_pem, Purpose::Renew, body.as_bytes(), age);
            let (status, answer) =
                post_with(&endpoint, &url, &body, &[(PROOF_HEADER, proved.as_str())])
                    .await
                    .unwrap();
            assert_eq!((status, code(&answer)), (403, "stale_proof"), "{answer}");
        }
        // A fresh proof renews.
        let (_, csr) = key_and_csr("scale");
        let (status, answer) = renew(&endpoint, &site.ca.https_url(), &identity_pem, &csr)
            .await
            .unwrap();
        assert_eq!(status, 200, "{answer}");
    });
    assert_eq!(site.certificates_named("scale-0001"), 2);
}

#[test]
fn status_report_through_two_relays_attributed_to_the_endpoint() {
    let site = Site::start();
    let (_near, far) = site.two_relays();
    runtime().block_on(async {
        let (identity_pem, issued) = enrolled(&site, "till", "endpoint").await;
        let endpoint = client_with(&site.root_pem, Some(&identity_pem));
        let discovery: serde_json::Value = endpoint
            .get(format!("{}/.well-known/herald", far.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let status_url = discovery["status_url"].as_str().unwrap().to_owned();
        assert_eq!(status_url, format!("{}/api/v1/status", far.url));
        // The body's name is ignored: the proof says who reports.
        let body = serde_json::json!({
            "name": "someone-else-0001",
            "installed_version": 5,
            "last_result": "installed",
        })
        .to_string();
        let proved = proof(&identity_pem, Purpose::Status, body.as_bytes(), 0);
        let (status, ack) = post_with(
            &endpoint,
            &status_url,
            &body,
            &[(PROOF_HEADER, proved.as_str())],
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{ack}");
        assert_eq!(ack["name"], issued["name"]);
        let shown: serde_json::Value = site
            .client()
            .get(format!("{}/api/v1/fleet/till-0001", site.ca.https_url()))
            .bearer_auth(&site.operator)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(shown["installed_version"], 5, "{shown}");
    });
    let audited = site.audit_details("status-relayed");
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0]["name"], "till-0001");
    let relays: Vec<&str> = audited[0]["relays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hop| hop["name"].as_str().unwrap())
        .collect();
    // Nearest the endpoint first: the far relay enrolled second.
    assert_eq!(relays, ["relay-0002", "relay-0001"]);
}

#[test]
fn relay_forging_the_endpoint_name_of_a_status_report_refused() {
    let site = Site::start();
    runtime().block_on(async {
        let (victim_pem, victim) = enrolled(&site, "pump", "endpoint").await;
        let (relay_pem, relay) = enrolled(&site, "relay", "relay").await;
        let holder = client_with(&site.root_pem, Some(&relay_pem));
        let url = format!("{}/api/v1/status", site.ca.https_url());
        let chain = relay["serial"].as_str().unwrap();
        let forged_body = serde_json::json!({
            "name": "pump-0001",
            "installed_version": 666,
            "last_result": "installed",
        })
        .to_string();
        // A relay that names the endpoint in the body, without its proof.
        let (status, answer) = post_with(&holder, &url, &forged_body, &[(RELAY_CHAIN, chain)])
            .await
            .unwrap();
        assert_eq!((status, code(&answer)), (401, "proof_required"), "{answer}");
        // A proof for the endpoint's certificate signed with the relay's key.
        let relay_key = rcgen::KeyPair::from_pem(&String::from_utf8_lossy(&relay_pem)).unwrap();
        let victim_der = base64::engine::general_purpose::STANDARD
            .decode(der_base64(victim["certificate_pem"].as_str().unwrap()))
            .unwrap();
        let forged = Proof::sign(
            Purpose::Status,
            &victim_der,
            forged_body.as_bytes(),
            &relay_key,
            now(),
        )
        .unwrap()
        .to_header();
        let (status, answer) = post_with(
            &holder,
            &url,
            &forged_body,
            &[(PROOF_HEADER, forged.as_str()), (RELAY_CHAIN, chain)],
        )
        .await
        .unwrap();
        assert_eq!((status, code(&answer)), (403, "bad_proof"), "{answer}");
        // The endpoint's own proof, with the report changed on the way.
        let genuine_body = serde_json::json!({"installed_version": 4}).to_string();
        let genuine = proof(&victim_pem, Purpose::Status, genuine_body.as_bytes(), 0);
        let (status, answer) = post_with(
            &holder,
            &url,
            &forged_body,
            &[(PROOF_HEADER, genuine.as_str()), (RELAY_CHAIN, chain)],
        )
        .await
        .unwrap();
        assert_eq!((status, code(&answer)), (400, "bad_proof"), "{answer}");
        let shown: serde_json::Value = site
            .client()
            .get(format!("{}/api/v1/fleet/pump-0001", site.ca.https_url()))
            .bearer_auth(&site.operator)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(shown["last_seen"], serde_json::Value::Null, "{shown}");
    });
    assert!(
        site.audit_details("status-relayed").is_empty(),
        "nothing recorded for the endpoint"
    );
}

#[test]
fn endpoint_renews_through_a_relay_with_its_own_proof() {
    let site = Site::start();
    let fingerprint = site.fingerprint();
    let relay = RelayProcess::start(
        &site.ca,
        "site",
        &site.ca.https_url(),
        &site.cli_token("relay", "relay"),
        &fingerprint,
    );
    let state = site.ca.scratch("endpoint");
    let out = herald_e2e::herald_bin("herald-update")
        .args(["enroll", "--server", &relay.url])
        .args(["--token", &site.cli_token("shop", "endpoint")])
        .args(["--root-fingerprint", &fingerprint, "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The agent's renewal (as `herald-update run` does it when due), through the relay.
    let files = herald_updater::enroll::IdentityFiles::in_state_dir(&state);
    let renewed = runtime()
        .block_on(herald_updater::enroll::renew_if_due(&files, true))
        .unwrap();
    assert_eq!(renewed.as_deref(), Some("shop-0001"));
    assert_eq!(site.certificates_named("shop-0001"), 2);
    let audited = site.audit_details("renew");
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0]["relays"][0]["name"], "relay-0001");
}
