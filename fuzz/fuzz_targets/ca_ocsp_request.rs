//! herald-ca's OCSP request parsing, in both forms a client can send: the DER body of a POST,
//! and the URL-encoded base64 path of a GET. Any input gives a parsed request or a refusal
//! (malformedRequest), never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fn check(der: &[u8]) {
    if let Ok(req) = herald_ca::parse_ocsp_request(der) {
        assert!(!req.cert_ids.is_empty() && req.cert_ids.len() <= herald_ca::MAX_CERT_IDS);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Ok(path) = std::str::from_utf8(data) {
        if let Some(der) = herald_ca::decode_ocsp_get_path(path) {
            check(&der);
        }
    }
});
