//! Canonical JSON as The Update Framework defines it (the OLPC dialect implemented by
//! securesystemslib's `encode_canonical`).
//!
//! Rules: objects have their members sorted by key (Unicode code point order, which is the
//! byte order of UTF-8), no insignificant whitespace, strings escape only `\` and `"` (every
//! other character, control characters included, is written as is, UTF-8 encoded), numbers
//! must be integers, and `true`, `false`, `null` are written as such. Floating-point numbers
//! cannot be encoded.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
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

/// Why JSON text could not be put in canonical form.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JsonCanonicalError {
    /// Not JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// JSON without a canonical form.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    /// Nested deeper than a JSON value may be read.
    #[error("nested more than {MAX_NESTING} levels deep")]
    TooDeep,
}

/// How deep arrays and objects may nest: as deep as serde_json reads a `Value`.
const MAX_NESTING: usize = 127;

/// The canonical JSON of JSON text, written as the text is walked, without building a JSON
/// tree: each object's members are sorted while the values stay slices of the text. The
/// result is what [`to_canonical_bytes`] gives for the text read as a `Value` (a member
/// repeated in an object counts with its last value), and the same texts are refused.
pub(crate) fn canonical_from_json(json: &[u8]) -> Result<Vec<u8>, JsonCanonicalError> {
    let raw: &RawValue = serde_json::from_slice(json)?;
    let mut out = Vec::with_capacity(json.len());
    write_raw(raw, &mut out, 1)?;
    Ok(out)
}

fn write_raw(raw: &RawValue, out: &mut Vec<u8>, level: usize) -> Result<(), JsonCanonicalError> {
    let text = raw.get();
    let nested = matches!(text.as_bytes().first(), Some(b'{' | b'['));
    if nested && level > MAX_NESTING {
        return Err(JsonCanonicalError::TooDeep);
    }
    match text.as_bytes().first() {
        Some(b'{') => {
            let Members(mut members) = serde_json::from_str(text)?;
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            members.dedup_by(|later, kept| {
                if later.0 != kept.0 {
                    return false;
                }
                kept.1 = later.1;
                true
            });
            out.push(b'{');
            for (i, (key, value)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(&key, out);
                out.push(b':');
                write_raw(value, out, level + 1)?;
            }
            out.push(b'}');
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            out.push(b'[');
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_raw(item, out, level + 1)?;
            }
            out.push(b']');
        }
        _ => write_canonical(&serde_json::from_str::<Value>(text)?, out)?,
    }
    Ok(())
}

/// An object's members in the order received, values as slices of the text.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for MembersVisitor<'a> {
            type Value = Members<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'a>, A::Error> {
                let mut members = Vec::new();
                while let Some(Key(key)) = map.next_key()? {
                    members.push((key, map.next_value()?));
                }
                Ok(Members(members))
            }
        }

        deserializer.deserialize_map(MembersVisitor(std::marker::PhantomData))
    }
}

/// A member name, borrowed from the text unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for KeyVisitor<'a> {
            type Value = Key<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(KeyVisitor(std::marker::PhantomData))
    }
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

    /// Walking the text gives what reading it into a `Value` gives, and refuses the same.
    #[test]
    fn canonical_from_text_matches_canonical_from_value() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let deep_objects = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
        for text in [
            r#"{ "b" : 1 , "a" : [ true , null , false ] }"#.to_owned(),
            r#"{"z":{"y":[{"b":2,"a":1}],"x":"\u00e9\"\\\n"},"a":-0}"#.to_owned(),
            r#"{"a":1,"b":2,"a":3}"#.to_owned(),
            r#"{"\u0062":1,"a":2,"b":3}"#.to_owned(),
            r#"{"é":1,"z":2,"\ud83d\ude00":3}"#.to_owned(),
            r#"[18446744073709551615,-9223372036854775808,0]"#.to_owned(),
            r#""\ud800""#.to_owned(),
            r#"{"\ud800":1}"#.to_owned(),
            r#"{"a":1.5}"#.to_owned(),
            r#"{"a":1e400}"#.to_owned(),
            r#"{"a":1,}"#.to_owned(),
            deep(127),
            deep(128),
            deep_objects(127),
            deep_objects(128),
        ] {
            let by_value = serde_json::from_str::<Value>(&text)
                .map_err(|e| e.to_string())
                .and_then(|v| to_canonical_bytes(&v).map_err(|e| e.to_string()));
            let by_text = canonical_from_json(text.as_bytes()).map_err(|e| e.to_string());
            assert_eq!(
                by_value.is_ok(),
                by_text.is_ok(),
                "{text}: {by_value:?} {by_text:?}"
            );
            if let (Ok(a), Ok(b)) = (by_value, by_text) {
                assert_eq!(a, b, "{text}");
            }
        }
    }

    #[test]
    fn negative_and_large_integers() {
        assert_eq!(enc(&json!([-3, u64::MAX])), "[-3,18446744073709551615]");
    }
}
