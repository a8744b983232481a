//! Every kind of object `herald-ca` produces lints clean with pkilint, a linter nobody here
//! wrote: the root, the issuing CA, the OCSP signer, the server's TLS certificate, endpoint
//! certificates for P-256, P-384, Ed25519 and RSA keys and one carrying a group (its
//! organizationalUnitName), relay and server-profile certificates,
//! an empty CRL and one with an entry for every reason, and OCSP responses (good, revoked,
//! unknown; with and without a nonce). Findings of severity WARNING or above fail the test;
//! ARCHITECTURE.md ("X.509 profile") lists the warnings Herald accepts, and today there are
//! none.

#![allow(clippy::unwrap_used)]

mod ca_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use ca_support::{ca_cmd, python, run_ok, TestCa};

/// A pkilint command-line tool from the test Python environment.
fn pkilint(tool: &str) -> Command {
    let python = python();
    let bin = python.parent().map(|d| d.join(tool)).unwrap();
    assert!(
        bin.is_file(),
        "{} is missing: install tests/requirements.txt (scripts/install-test-deps) or set \
         HERALD_TEST_PYTHON to a Python with pkilint",
        bin.display()
    );
    Command::new(bin)
}

/// Lints `file` (PEM or DER) with `tool` and the given document options; returns the findings
/// of severity WARNING and above (empty when clean).
fn findings(tool: &str, options: &[&str], file: &Path) -> String {
    let out = pkilint(tool)
        .arg("lint")
        .args(options)
        .args(["-s", "WARNING"])
        .arg(file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Traceback") && !stderr.contains("error:"),
        "{tool} could not lint {}: {stderr}",
        file.display()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn assert_clean(tool: &str, options: &[&str], what: &str, file: &Path) {
    let found = findings(tool, options, file);
    assert!(found.is_empty(), "{what} ({}):\n{found}", file.display());
}

/// The first certificate of a PEM file (the TLS file holds the chain).
fn first_cert(ca: &TestCa, pem: &Path, label: &str) -> PathBuf {
    let out = ca.scratch(&format!("{label}.first.pem"));
    run_ok(
        Command::new("openssl")
            .args(["x509", "-in"])
            .arg(pem)
            .arg("-out")
            .arg(&out),
    );
    out
}

/// Issues a certificate for `name` under `profile` from a new key made by `newkey` (openssl
/// `req -newkey` arguments).
fn issue(ca: &TestCa, name: &str, profile: &str, newkey: &[&str]) -> PathBuf {
    ca.issue_with(name, profile, newkey).1
}

const P256: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
const P384: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"];
const ED25519: &[&str] = &["-newkey", "ed25519"];
const RSA: &[&str] = &["-newkey", "rsa:2048"];

fn crl(ca: &TestCa, label: &str) -> PathBuf {
    let out = ca.scratch(&format!("{label}.crl"));
    run_ok(
        ca_cmd()
            .args(["crl", "--data-dir"])
            .arg(&ca.dir)
            .arg("--out")
            .arg(&out),
    );
    out
}

/// Saves the OCSP response openssl gets for `target` (`-cert FILE` or `-serial N`).
fn ocsp(ca: &TestCa, label: &str, target: &[&str], nonce: bool) -> PathBuf {
    let out = ca.scratch(&format!("{label}.ocsp"));
    let mut cmd = Command::new("openssl");
    cmd.args(["ocsp", "-url", &format!("{}/ocsp", ca.http_url())])
        .arg("-issuer")
        .arg(ca.file("intermediate.crt"))
        .arg("-CAfile")
        .arg(ca.chain_pem())
        .args(target)
        .arg("-respout")
        .arg(&out);
    if !nonce {
        cmd.arg("-no_nonce");
    }
    let text = String::from_utf8_lossy(&run_ok(&mut cmd).stdout).into_owned();
    let status = label.split('-').next().unwrap();
    assert!(text.contains(&format!(": {status}")), "{label}: {text}");
    out
}

#[test]
fn pkilint_finds_no_error_or_warning_in_anything_herald_ca_produces() {
    let mut ca = TestCa::init_with(&[
        "--tls-name",
        "ca.herald.internal",
        "--tls-name",
        "127.0.0.1",
    ]);
    let cert = |label: &str, file: &Path| assert_clean("lint_pkix_cert", &[], label, file);

    cert("root", &ca.file("root.crt"));
    cert("issuing CA", &ca.file("intermediate.crt"));
    cert("OCSP signer", &ca.file("ocsp.crt"));
    cert("server TLS", &first_cert(&ca, &ca.file("tls.crt"), "tls"));
    for (name, key) in [
        ("bars-host-0001", P256),
        ("BARS-HOST-0002", P384),
        ("bars-host-0003", ED25519),
        ("bars-host-0004", RSA),
    ] {
        cert(name, &issue(&ca, name, "endpoint", key));
    }
    // An endpoint moved to a group: its next certificate carries the group as its
    // organizationalUnitName.
    issue(&ca, "bars-host-0005", "endpoint", P256);
    run_ok(
        ca_cmd()
            .args([
                "fleet",
                "set-group",
                "bars-host-0005",
                "pilot",
                "--data-dir",
            ])
            .arg(&ca.dir),
    );
    cert(
        "endpoint in a group",
        &issue(&ca, "bars-host-0005", "endpoint", P256),
    );
    cert("relay", &issue(&ca, "site-relay-0001", "relay", P256));
    cert(
        "server profile",
        &issue(&ca, "relay.site.herald.internal", "server", P256),
    );

    let crl_opts = ["-t", "CRL", "-p", "PKIX"];
    assert_clean("lint_crl", &crl_opts, "empty CRL", &crl(&ca, "empty"));

    // One revoked certificate per reason, typed with RFC 5280's own names.
    let reasons = [
        "unspecified",
        "keyCompromise",
        "cACompromise",
        "affiliationChanged",
        "superseded",
        "cessationOfOperation",
        "privilegeWithdrawn",
        "aACompromise",
    ];
    let mut revoked = Vec::new();
    for (i, reason) in reasons.iter().enumerate() {
        let name = format!("revoked-{i:04}");
        let file = issue(&ca, &name, "endpoint", P256);
        run_ok(
            ca_cmd()
                .args(["cert", "revoke", &name, "--reason", reason, "--data-dir"])
                .arg(&ca.dir),
        );
        revoked.push(file);
    }
    let full = crl(&ca, "full");
    let listed = run_ok(
        Command::new("openssl")
            .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
            .arg(&full),
    );
    let text = String::from_utf8_lossy(&listed.stdout);
    for reason in [
        "Key Compromise",
        "CA Compromise",
        "Affiliation Changed",
        "Superseded",
        "Cessation Of Operation",
        "Privilege Withdrawn",
        "AA Compromise",
    ] {
        assert!(text.contains(reason), "CRL lists {reason}: {text}");
    }
    assert_clean("lint_crl", &crl_opts, "CRL with every reason", &full);

    ca.serve();
    let good = ca.scratch("bars-host-0001.crt");
    let good = good.to_str().unwrap();
    let revoked = revoked[1].to_str().unwrap();
    for nonce in [true, false] {
        let tag = if nonce { "nonce" } else { "cached" };
        for (label, target) in [
            (format!("good-{tag}"), vec!["-cert", good]),
            (format!("revoked-{tag}"), vec!["-cert", revoked]),
            (
                format!("unknown-{tag}"),
                vec!["-serial", "0x42424242424242"],
            ),
        ] {
            let file = ocsp(&ca, &label, &target, nonce);
            assert_clean("lint_ocsp_response", &[], &label, &file);
        }
    }
}

#[test]
fn pkilint_flags_what_herald_ca_used_to_produce() {
    // The lint run above must be able to fail: pkilint reports the faults this profile fixed
    // (single-label dNSName) when given such a certificate.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = dir.join("k.pem");
    let cert = dir.join("c.pem");
    run_ok(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec"])
            .args([
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "1",
            ])
            .args(["-subj", "/CN=bars-host-0001", "-addext"])
            .arg("subjectAltName=DNS:bars-host-0001")
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    let found = findings("lint_pkix_cert", &[], &cert);
    assert!(found.contains("pkix.invalid_domain_name_syntax"), "{found}");
}
