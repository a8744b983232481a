//! The committed example keys parse with OpenSSL, chain correctly and carry their banner.

use std::path::Path;
use std::process::Command;

use herald_keys_example::{dir, pki, signing};

/// Runs openssl with the given arguments and returns stdout, failing the test on error.
fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("example paths are UTF-8")
}

fn text_of_cert(path: &Path) -> String {
    openssl(&["x509", "-in", path_str(path), "-noout", "-text"])
}

/// A certificate's notBefore or notAfter (`-startdate` / `-enddate`) as Unix seconds.
fn cert_time(path: &Path, which: &str) -> i64 {
    let out = openssl(&[
        "x509",
        "-in",
        path_str(path),
        "-noout",
        which,
        "-dateopt",
        "iso_8601",
    ]);
    let (_, value) = out
        .trim_end()
        .split_once('=')
        .expect("openssl prints NAME=DATE");
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    time::PrimitiveDateTime::parse(value, &format)
        .expect("ISO 8601 date from openssl")
        .assume_utc()
        .unix_timestamp()
}

#[test]
fn every_certificate_chains_to_the_example_root() {
    let root = pki::root_ca_cert();
    let inter = pki::intermediate_ca_cert();
    for leaf in [
        pki::client_cert(),
        pki::ocsp_signer_cert(),
        pki::server_cert(),
    ] {
        // At a moment inside the leaf's validity, so the chain is checked the same way
        // whatever today's date is (the example PKI expires; regenerating it is the answer).
        let inside = (cert_time(&leaf, "-startdate") + 3600).to_string();
        let out = openssl(&[
            "verify",
            "-attime",
            &inside,
            "-CAfile",
            path_str(&root),
            "-untrusted",
            path_str(&inter),
            path_str(&leaf),
        ]);
        assert!(out.trim_end().ends_with(": OK"), "{out}");
    }
}

#[test]
fn pki_banner_states_when_the_example_certificates_expire() {
    let leaves = [
        pki::client_cert(),
        pki::ocsp_signer_cert(),
        pki::server_cert(),
    ];
    let not_after = cert_time(&leaves[0], "-enddate");
    for leaf in &leaves {
        assert_eq!(cert_time(leaf, "-enddate"), not_after, "{}", leaf.display());
    }
    let day = time::OffsetDateTime::from_unix_timestamp(not_after)
        .expect("notAfter is a valid time")
        .date();
    let stated = format!("The example certificates expire on {day}");
    for entry in std::fs::read_dir(dir().join("pki")).expect("example folder exists") {
        let path = entry.expect("readable folder entry").path();
        let text = std::fs::read_to_string(&path).expect("example file is text");
        assert!(
            text.contains(&stated),
            "{}: banner lacks \"{stated}\"",
            path.display()
        );
    }
}

#[test]
fn every_private_key_parses_and_matches_its_certificate() {
    let pairs = [
        (pki::root_ca_key(), pki::root_ca_cert()),
        (pki::intermediate_ca_key(), pki::intermediate_ca_cert()),
        (pki::client_key(), pki::client_cert()),
        (pki::ocsp_signer_key(), pki::ocsp_signer_cert()),
        (pki::server_key(), pki::server_cert()),
    ];
    for (key, cert) in pairs {
        let from_key = openssl(&["pkey", "-in", path_str(&key), "-pubout"]);
        let from_cert = openssl(&["x509", "-in", path_str(&cert), "-noout", "-pubkey"]);
        assert_eq!(
            from_key,
            from_cert,
            "{} does not match {}",
            key.display(),
            cert.display()
        );
    }
}

#[test]
fn ed25519_signing_keys_parse_and_match_their_public_keys() {
    for role in signing::ROLES {
        let private = signing::private_key(role);
        let public = signing::public_key(role);
        let text = openssl(&["pkey", "-in", path_str(&private), "-noout", "-text"]);
        assert!(text.starts_with("ED25519 Private-Key"), "{role}: {text}");
        let derived = openssl(&["pkey", "-in", path_str(&private), "-pubout"]);
        let stored = openssl(&["pkey", "-pubin", "-in", path_str(&public)]);
        assert_eq!(
            derived, stored,
            "{role}: public key does not match private key"
        );
    }
}

#[test]
fn ocsp_signer_is_delegated_with_nocheck() {
    let text = text_of_cert(&pki::ocsp_signer_cert());
    assert!(text.contains("OCSP Signing"), "{text}");
    assert!(text.contains("OCSP No Check"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
}

#[test]
fn client_certificate_is_for_client_authentication_only() {
    let text = text_of_cert(&pki::client_cert());
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(!text.contains("TLS Web Server Authentication"), "{text}");
    assert!(text.contains("EXAMPLE-LAPTOP-0001"), "{text}");
}

#[test]
fn every_example_file_says_it_is_not_for_production() {
    let mut seen = 0;
    for sub in ["pki", "signing"] {
        for entry in std::fs::read_dir(dir().join(sub)).expect("example folder exists") {
            let path = entry.expect("readable folder entry").path();
            let text = std::fs::read_to_string(&path).expect("example file is text");
            assert!(
                text.starts_with("# EXAMPLE ONLY - NEVER USE IN PRODUCTION."),
                "{} lacks the example banner",
                path.display()
            );
            seen += 1;
        }
    }
    // 11 PKI files and a key pair for each of the 5 signing roles.
    assert_eq!(seen, 11 + 2 * signing::ROLES.len());
}
