//! Canonical JSON as The Update Framework defines it (the OLPC dialect implemented by
//! securesystemslib's `encode_canonical`).
//!
//! Rules: objects have their members sorted by key (Unicode code point order, which is the
//! byte order of UTF-8), no insignificant whitespace, strings escape only `\` and `"` (every
//! other character, control characters included, is written as is, UTF-8 encoded), numbers
//! must be integers, and `true`, `false`, `null` are written as such. Floating-point numbers
//! cannot be encoded.

use serde_json::Value;

/// Why a JSON value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// Canonical JSON has no floating-point numbers.
    #[error("canonical JSON cannot encode the non-integer number {0}")]
    NonInteger(String),
}

/// Encodes `value` as canonical JSON bytes.
pub fn to_canonical_bytes(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out)?;
    Ok(out)
}

/// Appends the canonical JSON encoding of `value` to `out`.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                out.extend_from_slice(n.to_string().as_bytes());
            } else {
                return Err(CanonicalError::NonInteger(n.to_string()));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // The map may keep insertion order (serde_json's `preserve_order` feature can be
            // enabled by any crate in a build), so sort explicitly.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_canonical(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for &byte in s.as_bytes() {
        if byte == b'\\' || byte == b'"' {
            out.push(b'\\');
        }
        out.push(byte);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn enc(v: &Value) -> String {
        String::from_utf8(to_canonical_bytes(v).unwrap()).unwrap()
    }

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        assert_eq!(
            enc(&json!({"b": 1, "a": [true, null, false]})),
            r#"{"a":[true,null,false],"b":1}"#
        );
    }

    #[test]
    fn escapes_only_backslash_and_quote() {
        assert_eq!(enc(&json!("a\"b\\c\nd\u{1}é")), "\"a\\\"b\\\\c\nd\u{1}é\"");
    }

    #[test]
    fn float_rejected() {
        assert!(matches!(
            to_canonical_bytes(&json!(1.5)),
            Err(CanonicalError::NonInteger(_))
        ));
    }

    #[test]
    fn negative_and_large_integers() {
        assert_eq!(enc(&json!([-3, u64::MAX])), "[-3,18446744073709551615]");
    }
}
