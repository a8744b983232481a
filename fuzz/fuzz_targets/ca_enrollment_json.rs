//! Any bytes as the JSON body of the enrollment API (token creation, enrollment, renewal):
//! parsing gives a request or an error, never a panic, and the certificate request inside an
//! enrollment goes through herald-ca's PKCS#10 parser the same way.

#![no_main]

use herald_token_service::{EnrollRequest, NewTokenRequest, RenewRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<NewTokenRequest>(data);
    let _ = serde_json::from_slice::<RenewRequest>(data);
    if let Ok(request) = serde_json::from_slice::<EnrollRequest>(data) {
        let _ = herald_ca::verify_csr(request.csr.as_bytes());
    }
});
