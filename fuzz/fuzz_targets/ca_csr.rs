//! herald-ca's PKCS#10 parser and proof-of-possession check: any bytes (PEM or DER) give a
//! verified request or an error, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(csr) = herald_ca::verify_csr(data) {
        // A request that verified has a key type the policy can judge.
        let _ = csr.key.policy_name();
        assert!(!csr.spki_der.is_empty());
    }
});
