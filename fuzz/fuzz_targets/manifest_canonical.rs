//! Any bytes as a signed envelope: parsing and canonical encoding never panic, and canonical
//! encoding is stable (encoding the parse of a canonical form gives the same bytes). OLPC
//! canonical JSON writes control characters raw, so a canonical form holding one is not
//! JSON and is skipped by the stability check.
#![no_main]

use herald_manifest::{to_canonical_bytes, Envelope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::from_slice(data) {
        let _ = env.signed_bytes();
        let _ = env.role_type();
        let _ = env.version();
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(canonical) = to_canonical_bytes(&value) {
            let raw_control = canonical.iter().any(|&b| b < 0x20);
            match serde_json::from_slice::<serde_json::Value>(&canonical) {
                Ok(reparsed) => {
                    let again = to_canonical_bytes(&reparsed).expect("still integers only");
                    assert_eq!(canonical, again, "canonical encoding is not stable");
                }
                Err(e) => assert!(raw_control, "canonical form is not JSON: {e}"),
            }
        }
    }
});
