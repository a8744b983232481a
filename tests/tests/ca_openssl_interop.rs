//! OpenSSL and curl accept what `herald-ca` publishes: certificates checked against its CRL,
//! and its OCSP responder (POST and GET forms, SHA-1 and SHA-256 CertIDs, several CertIDs,
//! nonces), before and after a revocation made through the admin API.

#![allow(clippy::unwrap_used)]

mod ca_support;

use std::path::Path;
use std::process::Command;

use ca_support::{combined_output, run_ok, TestCa};

/// `openssl verify -crl_check` with the chain and the CRL fetched from the server.
fn verify_with_crl(ca: &TestCa, cert: &Path) -> (bool, String) {
    let crl_der = ca.scratch("crl.der");
    let status = Command::new("curl")
        .args(["-sf", "-o"])
        .arg(&crl_der)
        .arg(format!("{}/crl/intermediate.crl", ca.http_url()))
        .status()
        .unwrap();
    assert!(status.success(), "CRL downloaded");
    let crl_pem = ca.scratch("crl.pem");
    run_ok(
        Command::new("openssl")
            .args(["crl", "-inform", "DER", "-in"])
            .arg(&crl_der)
            .arg("-out")
            .arg(&crl_pem),
    );
    let out = Command::new("openssl")
        .args(["verify", "-crl_check", "-CAfile"])
        .arg(ca.chain_pem())
        .arg("-CRLfile")
        .arg(&crl_pem)
        .arg(cert)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `openssl ocsp` against the server; returns its combined output.
fn openssl_ocsp(ca: &TestCa, extra: &[&str], certs: &[&Path]) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["ocsp", "-url", &format!("{}/ocsp", ca.http_url())])
        .arg("-issuer")
        .arg(ca.file("intermediate.crt"))
        .arg("-CAfile")
        .arg(ca.chain_pem())
        .args(extra);
    for cert in certs {
        cmd.arg("-cert").arg(cert);
    }
    combined_output(&mut cmd)
}

fn revoke_via_api(ca: &TestCa, serial: &str, reason: &str) {
    let token = ca.admin_token("operator");
    let (status, body) = ca.curl_https(&[
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-H",
        "Content-Type: application/json",
        "-d",
        &format!("{{\"reason\":\"{reason}\"}}"),
        &format!("{}/api/v1/certificates/{serial}/revoke", ca.https_url()),
    ]);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn openssl_verify_crl_check_accepts_fresh_cert_then_rejects_after_revocation() {
    let mut ca = TestCa::init();
    let (_key, cert) = ca.issue("LAPTOP-ACME-0001");
    ca.serve();

    let (ok, text) = verify_with_crl(&ca, &cert);
    assert!(ok, "fresh certificate accepted: {text}");

    revoke_via_api(&ca, &TestCa::serial_of(&cert), "key-compromise");
    let (ok, text) = verify_with_crl(&ca, &cert);
    assert!(!ok, "revoked certificate rejected");
    assert!(text.contains("certificate revoked"), "{text}");
}

#[test]
fn openssl_ocsp_reports_good_then_revoked_with_verified_responder_signature() {
    let mut ca = TestCa::init();
    let (_k1, first) = ca.issue("LAPTOP-ACME-0001");
    let (_k2, second) = ca.issue("LAPTOP-ACME-0002");
    ca.serve();

    // SHA-1 CertID with a nonce (openssl's default).
    let text = openssl_ocsp(&ca, &[], &[&first]);
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(text.contains(": good"), "{text}");

    // SHA-256 CertID, no nonce: served from the pre-signed cache, still verifies.
    let text = openssl_ocsp(&ca, &["-sha256", "-no_nonce"], &[&first]);
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(text.contains(": good"), "{text}");

    revoke_via_api(&ca, &TestCa::serial_of(&first), "superseded");

    for extra in [&[][..], &["-no_nonce"][..], &["-sha256", "-no_nonce"][..]] {
        let text = openssl_ocsp(&ca, extra, &[&first]);
        assert!(text.contains("Response verify OK"), "{extra:?}: {text}");
        assert!(text.contains(": revoked"), "{extra:?}: {text}");
        assert!(text.contains("Reason: superseded"), "{extra:?}: {text}");
    }

    // Two CertIDs in one request: one revoked, one good.
    let text = openssl_ocsp(&ca, &[], &[&first, &second]);
    assert!(text.contains("Response verify OK"), "{text}");
    let first_name = first.display().to_string();
    let second_name = second.display().to_string();
    assert!(text.contains(&format!("{first_name}: revoked")), "{text}");
    assert!(text.contains(&format!("{second_name}: good")), "{text}");
}

#[test]
fn ocsp_get_form_answers_plain_and_percent_encoded_base64() {
    let mut ca = TestCa::init();
    let (_key, cert) = ca.issue("LAPTOP-ACME-0003");
    ca.serve();
    let req = ca.scratch("req.der");
    run_ok(
        Command::new("openssl")
            .args(["ocsp", "-no_nonce", "-issuer"])
            .arg(ca.file("intermediate.crt"))
            .arg("-cert")
            .arg(&cert)
            .arg("-reqout")
            .arg(&req),
    );
    let out = run_ok(
        Command::new("openssl")
            .args(["base64", "-A", "-in"])
            .arg(&req),
    );
    let b64 = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let encoded = b64
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    for form in [b64.clone(), encoded] {
        let resp = ca.scratch("resp.der");
        let out = run_ok(
            Command::new("curl")
                .args(["-s", "-D", "-", "-o"])
                .arg(&resp)
                .arg(format!("{}/ocsp/{form}", ca.http_url())),
        );
        let headers = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        assert!(headers.starts_with("http/1.1 200"), "{headers}");
        assert!(
            headers.contains("content-type: application/ocsp-response"),
            "{headers}"
        );
        assert!(headers.contains("cache-control: max-age="), "{headers}");
        assert!(headers.contains("etag: \""), "{headers}");
        assert!(headers.contains("last-modified: "), "{headers}");
        let text = combined_output(
            Command::new("openssl")
                .args(["ocsp", "-respin"])
                .arg(&resp)
                .arg("-issuer")
                .arg(ca.file("intermediate.crt"))
                .arg("-cert")
                .arg(&cert)
                .arg("-CAfile")
                .arg(ca.chain_pem()),
        );
        assert!(text.contains("Response verify OK"), "{form}: {text}");
        assert!(text.contains(": good"), "{form}: {text}");
    }
}

#[test]
fn ocsp_for_unknown_issuer_is_unauthorized_and_garbage_is_malformed() {
    let mut ca = TestCa::init();
    ca.serve();
    // A certificate of another CA (the example PKI): this responder does not serve it.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys-example/pki");
    let text = combined_output(
        Command::new("openssl")
            .args(["ocsp", "-url", &format!("{}/ocsp", ca.http_url())])
            .arg("-issuer")
            .arg(example.join("intermediate-ca.crt.pem"))
            .arg("-cert")
            .arg(example.join("client.crt.pem")),
    );
    assert!(text.contains("unauthorized"), "{text}");

    let body_file = ca.scratch("garbage.der");
    for body in [
        &b"garbage"[..],
        &[0x30, 0x03, 0x02, 0x01, 0x00],
        &[0x30, 0x84, 0xff],
    ] {
        std::fs::write(&body_file, body).unwrap();
        let out = run_ok(
            Command::new("curl")
                .args(["-s", "-H", "Content-Type: application/ocsp-request"])
                .arg("--data-binary")
                .arg(format!("@{}", body_file.display()))
                .arg(format!("{}/ocsp", ca.http_url())),
        );
        // OCSPResponse { responseStatus malformedRequest (1) }
        assert_eq!(out.stdout, [0x30, 0x03, 0x0a, 0x01, 0x01], "{body:?}");
    }
    let out = run_ok(
        Command::new("curl")
            .args(["-s"])
            .arg(format!("{}/ocsp/not%20base64!", ca.http_url())),
    );
    assert_eq!(out.stdout, [0x30, 0x03, 0x0a, 0x01, 0x01]);
}

#[test]
fn ed25519_ca_interoperates_with_openssl() {
    let mut ca = TestCa::init_with(&["--key-type", "ed25519"]);
    let (_key, cert) = ca.issue("EDGE-0001");
    ca.serve();
    let (ok, text) = verify_with_crl(&ca, &cert);
    assert!(ok, "{text}");
    let text = openssl_ocsp(&ca, &[], &[&cert]);
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(text.contains(": good"), "{text}");
}

#[test]
fn rotated_ocsp_signer_and_tls_certificate_are_used_after_restart() {
    let ca = TestCa::init();
    let (_key, cert) = ca.issue("LAPTOP-ACME-0700");
    let old_signer = std::fs::read_to_string(ca.file("ocsp.crt")).unwrap();
    let old_tls = std::fs::read_to_string(ca.file("tls.crt")).unwrap();
    for what in ["ocsp-signer", "tls"] {
        run_ok(
            ca_support::ca_cmd()
                .args(["rotate", what, "--kdf-iterations", "1000", "--data-dir"])
                .arg(&ca.dir),
        );
    }
    let new_signer = std::fs::read_to_string(ca.file("ocsp.crt")).unwrap();
    assert_ne!(old_signer, new_signer);
    assert_ne!(
        old_tls,
        std::fs::read_to_string(ca.file("tls.crt")).unwrap()
    );
    assert!(std::fs::read_to_string(ca.file("ocsp.key"))
        .unwrap()
        .contains("BEGIN ENCRYPTED PRIVATE KEY"));

    let mut ca = ca;
    ca.serve();
    let resp = ca.scratch("resp.der");
    let text = openssl_ocsp(&ca, &["-respout", resp.to_str().unwrap()], &[&cert]);
    assert!(text.contains("Response verify OK"), "{text}");
    // The response carries the new signer's certificate.
    let resp_text = combined_output(
        Command::new("openssl")
            .args(["ocsp", "-noverify", "-resp_text", "-respin"])
            .arg(&resp),
    );
    let new_serial = combined_output(
        Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(ca.file("ocsp.crt")),
    );
    let new_serial = new_serial.trim().trim_start_matches("serial=").to_owned();
    let pretty: String = new_serial
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(":");
    assert!(resp_text.contains(&pretty), "{pretty} not in {resp_text}");
    let (status, body) = ca.curl_https(&[&format!("{}/healthz", ca.https_url())]);
    assert_eq!(
        (status, body.as_str()),
        (200, "ok\n"),
        "new TLS certificate served"
    );
}
