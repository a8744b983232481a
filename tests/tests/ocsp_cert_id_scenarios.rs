//! OCSP CertIDs against the real `herald-ca serve`, checked by Python `cryptography`: the
//! pre-signed cache answers every client with Herald's canonical CertID, so a request with
//! bloated hash-algorithm parameters cannot poison it for the next client; a negative or
//! non-minimal serial is never answered `good`.

#![allow(clippy::unwrap_used)]

mod ca_support;

use std::path::Path;
use std::process::Command;

use ca_support::{python, TestCa};

/// Builds CertIDs by hand (DER) from the one `cryptography` computes for the leaf, posts them
/// to the responder and checks the answers. Modes: `poison`, `serials`.
const OCSP_PY: &str = r#"
import sys, urllib.request
from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

mode, d, leaf_path, url = sys.argv[1:5]
load = lambda p: x509.load_pem_x509_certificate(open(p, "rb").read())
inter, leaf = load(f"{d}/intermediate.crt"), load(leaf_path)

def tlv(tag, content):
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content

SHA1 = bytes.fromhex("06052b0e03021a")

def request(params, serial_content):
    ordinary = ocsp.OCSPRequestBuilder().add_certificate(leaf, inter, hashes.SHA1()).build()
    cert_id = tlv(0x30, tlv(0x30, SHA1 + params)
                  + tlv(0x04, ordinary.issuer_name_hash)
                  + tlv(0x04, ordinary.issuer_key_hash)
                  + tlv(0x02, serial_content))
    return tlv(0x30, tlv(0x30, tlv(0x30, tlv(0x30, cert_id))))

def post(der):
    req = urllib.request.Request(url, data=der, headers={"Content-Type": "application/ocsp-request"})
    return urllib.request.urlopen(req, timeout=10).read()

def check_ordinary():
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, inter, hashes.SHA1()).build()
    resp = ocsp.load_der_ocsp_response(post(req.public_bytes(serialization.Encoding.DER)))
    assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL, resp.response_status
    assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD, resp.certificate_status
    assert resp.serial_number == req.serial_number
    assert resp.issuer_name_hash == req.issuer_name_hash
    assert resp.issuer_key_hash == req.issuer_key_hash
    assert isinstance(resp.hash_algorithm, hashes.SHA1)
    signer = resp.certificates[0]
    signer.verify_directly_issued_by(inter)
    signer.public_key().verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(resp.signature_hash_algorithm))

magnitude = leaf.serial_number.to_bytes((leaf.serial_number.bit_length() + 7) // 8, "big")
minimal = (b"\x00" + magnitude) if magnitude[0] & 0x80 else magnitude

if mode == "poison":
    # 4,000 bytes of hash-algorithm parameters, asked first: whatever it gets, it must not
    # decide what the next, ordinary client receives.
    post(request(tlv(0x04, b"\xaa" * 4000), minimal))
    check_ordinary()
    check_ordinary()
elif mode == "serials":
    assert magnitude[0] & 0x80, "the leaf's serial needs its high bit set"
    for name, content in [("negative", magnitude), ("non-minimal", b"\x00" + minimal)]:
        raw = post(request(tlv(0x05, b""), content))
        resp = ocsp.load_der_ocsp_response(raw)
        if resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL:
            assert resp.certificate_status != ocsp.OCSPCertStatus.GOOD, f"{name} serial answered good"
    check_ordinary()
print("python-ok")
"#;

fn run_python(mode: &str, ca: &TestCa, cert: &Path) {
    let out = Command::new(python())
        .args(["-c", OCSP_PY, mode])
        .arg(&ca.dir)
        .arg(cert)
        .arg(format!("{}/ocsp", ca.http_url()))
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("python-ok"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hash_parameters_do_not_poison_the_ocsp_cache_for_the_next_client() {
    let mut ca = TestCa::init();
    let (_key, cert) = ca.issue("KIOSK-0001");
    ca.serve();
    run_python("poison", &ca, &cert);
}

#[test]
fn negative_or_non_minimal_serial_is_never_good() {
    let mut ca = TestCa::init();
    // A certificate whose serial has its high bit set: its magnitude bytes, sent without the
    // leading zero, read as a negative number.
    let cert = (1..=40)
        .map(|i| ca.issue(&format!("KIOSK-{i:04}")).1)
        .find(|cert| {
            let serial = TestCa::serial_of(cert);
            u8::from_str_radix(&serial[..2], 16).unwrap() >= 0x80
        })
        .expect("one of 40 random serials has its high bit set");
    ca.serve();
    run_python("serials", &ca, &cert);
}
