//! Per-file release signatures (Herald extension to TUF).
//!
//! Root declares release keys and a threshold in its `x-herald-release` member. Each target's
//! `custom` member carries, under `x-herald-signatures`, a list of `{"keyid", "sig"}` objects:
//! release-key signatures over the target statement, the canonical JSON of
//!
//! ```json
//! {"domain":"herald-target-v1","length":LENGTH,"path":"PATH","sha256":"HEX"}
//! ```
//!
//! (members sorted, no whitespace, `sha256` in lowercase hex). The domain string keeps these
//! signatures from ever being valid as signatures of metadata, and vice versa.

use serde_json::{json, Map, Value};

use crate::canonical::to_canonical_bytes;
use crate::envelope::Signature;
use crate::keys::{KeyError, Signer};
use crate::path::TargetPath;

/// Domain separation string of the target statement.
pub const TARGET_STATEMENT_DOMAIN: &str = "herald-target-v1";

/// Name of the `custom` member holding release signatures.
pub const RELEASE_SIGNATURES_FIELD: &str = "x-herald-signatures";

/// The bytes release keys sign for a target.
pub fn target_statement(path: &TargetPath, length: u64, sha256_hex: &str) -> Vec<u8> {
    let value = json!({
        "domain": TARGET_STATEMENT_DOMAIN,
        "path": path.as_str(),
        "length": length,
        "sha256": sha256_hex.to_ascii_lowercase(),
    });
    // Strings and an integer only: canonical encoding cannot fail.
    to_canonical_bytes(&value).unwrap_or_default()
}

/// Signs the target statement with every signer, returning the signatures sorted by key ID.
pub fn sign_target(
    signers: &[&dyn Signer],
    path: &TargetPath,
    length: u64,
    sha256_hex: &str,
) -> Result<Vec<Signature>, KeyError> {
    let statement = target_statement(path, length, sha256_hex);
    let mut sigs = signers
        .iter()
        .map(|s| {
            Ok(Signature {
                keyid: s.key_id().clone(),
                sig: hex::encode(s.sign(&statement)?),
            })
        })
        .collect::<Result<Vec<_>, KeyError>>()?;
    sigs.sort_by(|a, b| a.keyid.cmp(&b.keyid));
    Ok(sigs)
}

/// Returns `custom` with its release signatures set to `sigs` (other members kept).
pub fn with_release_signatures(custom: Option<Value>, sigs: &[Signature]) -> Value {
    let mut map = match custom {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    map.insert(
        RELEASE_SIGNATURES_FIELD.into(),
        serde_json::to_value(sigs).unwrap_or(Value::Null),
    );
    Value::Object(map)
}

/// The release signatures listed in a target's `custom` member (malformed entries skipped).
pub fn release_signatures(custom: Option<&Value>) -> Vec<Signature> {
    custom
        .and_then(|c| c.get(RELEASE_SIGNATURES_FIELD))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn statement_format_is_stable() {
        let p = TargetPath::new("bin/tool").unwrap();
        assert_eq!(
            String::from_utf8(target_statement(&p, 4096, "ABcd")).unwrap(),
            r#"{"domain":"herald-target-v1","length":4096,"path":"bin/tool","sha256":"abcd"}"#
        );
    }

    #[test]
    fn custom_members_kept() {
        let custom = json!({"app": 1});
        let out = with_release_signatures(Some(custom), &[]);
        assert_eq!(out["app"], 1);
        assert_eq!(out[RELEASE_SIGNATURES_FIELD], json!([]));
    }
}
