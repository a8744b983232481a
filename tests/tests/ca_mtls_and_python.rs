//! Mutual TLS with curl (a client certificate is served, then refused once revoked) and Python
//! `cryptography` checking the signatures of Herald's certificates, CRL and OCSP responses.

#![allow(clippy::unwrap_used)]

mod ca_support;

use std::process::Command;

use ca_support::{python, run_ok, TestCa};

fn curl_with_client_cert(
    ca: &TestCa,
    key: &std::path::Path,
    cert: &std::path::Path,
) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(ca.file("root.crt"))
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .arg(format!("{}/healthz", ca.https_url()))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn curl_client_cert_served_then_refused_after_revocation() {
    let mut ca = TestCa::init();
    let (key, cert) = ca.issue("LAPTOP-ACME-0100");
    ca.serve();

    let (ok, body) = curl_with_client_cert(&ca, &key, &cert);
    assert!(
        ok && body == "ok\n",
        "valid client certificate served: {body}"
    );

    run_ok(
        ca_support::ca_cmd()
            .args([
                "cert",
                "revoke",
                "LAPTOP-ACME-0100",
                "--reason",
                "key-compromise",
            ])
            .arg("--data-dir")
            .arg(&ca.dir),
    );
    let (ok, _) = curl_with_client_cert(&ca, &key, &cert);
    assert!(
        !ok,
        "revoked client certificate refused during the handshake"
    );

    // Clients without a certificate are still served (admin calls use tokens).
    let (status, body) = ca.curl_https(&[&format!("{}/healthz", ca.https_url())]);
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

const CHECK_PY: &str = r#"
import sys
from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

d = sys.argv[1]
def load(name):
    return x509.load_pem_x509_certificate(open(f"{d}/{name}", "rb").read())
root, inter, responder = load("root.crt"), load("intermediate.crt"), load("ocsp.crt")
leaf = x509.load_pem_x509_certificate(open(sys.argv[2], "rb").read())
root.verify_directly_issued_by(root)
inter.verify_directly_issued_by(root)
responder.verify_directly_issued_by(inter)
leaf.verify_directly_issued_by(inter)
assert leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "LAPTOP-ACME-0200"
eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
assert x509.ExtendedKeyUsageOID.CLIENT_AUTH in eku
assert leaf.serial_number > 0 and leaf.serial_number.bit_length() > 64
aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
assert any(a.access_method == x509.AuthorityInformationAccessOID.OCSP for a in aia)
leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints)
assert x509.ExtendedKeyUsageOID.OCSP_SIGNING in responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
responder.extensions.get_extension_for_class(x509.OCSPNoCheck)

crl = x509.load_der_x509_crl(open(sys.argv[3], "rb").read())
assert crl.is_signature_valid(inter.public_key())
assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
assert number >= 2, number

resp = ocsp.load_der_ocsp_response(open(sys.argv[4], "rb").read())
assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
assert resp.certificate_status == ocsp.OCSPCertStatus.REVOKED
assert resp.serial_number == leaf.serial_number
signer = resp.certificates[0]
signer.verify_directly_issued_by(inter)
signer.public_key().verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(resp.signature_hash_algorithm))
print("python-ok")
"#;

#[test]
fn python_cryptography_checks_certificates_crl_and_ocsp_signatures() {
    let mut ca = TestCa::init();
    let (_key, cert) = ca.issue("LAPTOP-ACME-0200");
    ca.serve();
    run_ok(
        ca_support::ca_cmd()
            .args(["cert", "revoke", "LAPTOP-ACME-0200", "--data-dir"])
            .arg(&ca.dir),
    );
    // The CRL as produced by the CLI (it signs a new one on each revocation).
    let crl = ca.scratch("crl.der");
    run_ok(
        ca_support::ca_cmd()
            .args(["crl", "--data-dir"])
            .arg(&ca.dir)
            .arg("--out")
            .arg(&crl),
    );
    // An OCSP response straight from the server (it notices the CLI's revocation).
    let resp = ca.scratch("resp.der");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let out = Command::new("openssl")
            .args([
                "ocsp",
                "-no_nonce",
                "-url",
                &format!("{}/ocsp", ca.http_url()),
            ])
            .arg("-issuer")
            .arg(ca.file("intermediate.crt"))
            .arg("-cert")
            .arg(&cert)
            .arg("-respout")
            .arg(&resp)
            .arg("-noverify")
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains(": revoked") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server never reported the revocation made by the CLI"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = Command::new(python())
        .args(["-c", CHECK_PY])
        .arg(&ca.dir)
        .arg(&cert)
        .arg(&crl)
        .arg(&resp)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("python-ok"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
