//! Canonical JSON against the committed test vectors (produced by securesystemslib).
#![allow(clippy::unwrap_used)]

use herald_manifest::{to_canonical_bytes, CanonicalError};
use serde_json::Value;

#[test]
fn canonical_json_matches_securesystemslib_vectors() {
    let doc: Value = serde_json::from_str(include_str!("vectors/canonical-json.json")).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() > 20);
    for v in vectors {
        let input: Value = serde_json::from_str(v["input"].as_str().unwrap()).unwrap();
        let out = to_canonical_bytes(&input);
        match v.get("canonical") {
            Some(expected) => assert_eq!(
                String::from_utf8(out.unwrap()).unwrap(),
                expected.as_str().unwrap(),
                "input {}",
                v["input"]
            ),
            None => assert!(
                matches!(out, Err(CanonicalError::NonInteger(_))),
                "input {}",
                v["input"]
            ),
        }
    }
}
