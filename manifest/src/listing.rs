//! Verified targets metadata in compact form: the header and delegations as typed values, the
//! `targets` member as an index from each path to its entry's bytes inside the verified
//! document.
//!
//! A repository of 100,000 targets is a document of about 37 MB. Reading every entry into
//! a [`TargetFile`] (a map of hashes, a generic JSON value for `custom`) costs several times
//! that in memory; the index costs a path and two offsets per target, and an entry is read
//! into a [`TargetFile`] only when it is looked up. Every entry is still checked when the
//! document is read ([`EntryCheck`] accepts exactly what [`TargetFile`] accepts, without
//! keeping anything), so metadata with a malformed entry is refused as a whole, as before.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use time::OffsetDateTime;

use crate::metadata::{tuf_time, Delegations, TargetFile};
use crate::path::TargetPath;

/// Targets metadata (top-level or delegated) as verification keeps it: the members other
/// than `targets` typed, and an index of the targets it lists. The entries themselves are
/// read from the verified bytes when asked for ([`crate::VerifiedTargets::target`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetsIndex {
    /// Always `targets`.
    pub role_type: String,
    /// The specification version.
    pub spec_version: String,
    /// The metadata version.
    pub version: u64,
    /// Expiry.
    pub expires: OffsetDateTime,
    /// Delegations to other targets roles.
    pub delegations: Option<Delegations>,
    /// The rollout policy (Herald extension, `x-herald-rollout`) as signed, a small document
    /// kept as is; read it with [`TargetsIndex::rollout_policy`].
    pub rollout: Option<Value>,
    /// One entry per listed path, sorted by path.
    entries: Vec<IndexEntry>,
}

/// Where the entry of one path lies in the verified document.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IndexEntry {
    path: TargetPath,
    start: usize,
    end: usize,
}

impl TargetsIndex {
    /// Reads the `signed` member of a targets document. `signed` must be a part of
    /// `document`; the index records where each entry lies in `document`.
    pub(crate) fn parse(signed: &[u8], document: &[u8]) -> Result<Self, serde_json::Error> {
        let fields: Fields<'_> = serde_json::from_slice(signed)?;
        let base = document.as_ptr() as usize;
        let mut entries = Vec::with_capacity(fields.targets.0.len());
        for (path, raw) in fields.targets.0 {
            let text = raw.get().as_bytes();
            let start = (text.as_ptr() as usize).wrapping_sub(base);
            let end = start.wrapping_add(text.len());
            // The parser borrows from its input, so the entry lies inside `document`.
            match document.get(start..end) {
                Some(found) if std::ptr::eq(found, text) => {}
                _ => return Err(de::Error::custom("target entry outside the document")),
            }
            entries.push(IndexEntry { path, start, end });
        }
        // Sorted by path, as a map is; when a path is listed twice, the last entry counts
        // (as reading the member into a map does).
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries.dedup_by(|later, kept| {
            if later.path != kept.path {
                return false;
            }
            (kept.start, kept.end) = (later.start, later.end);
            true
        });
        Ok(TargetsIndex {
            role_type: fields.role_type,
            spec_version: fields.spec_version,
            version: fields.version,
            expires: fields.expires,
            delegations: fields.delegations,
            rollout: fields.rollout,
            entries,
        })
    }

    /// How many targets are listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no target is listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The listed paths, in order.
    pub fn paths(&self) -> impl ExactSizeIterator<Item = &TargetPath> + '_ {
        self.entries.iter().map(|e| &e.path)
    }

    /// Whether `path` is listed.
    pub fn contains(&self, path: &TargetPath) -> bool {
        self.find(path).is_some()
    }

    fn find(&self, path: &TargetPath) -> Option<&IndexEntry> {
        self.entries
            .binary_search_by(|e| e.path.cmp(path))
            .ok()
            .and_then(|i| self.entries.get(i))
    }

    /// The entry of `path`, read from `document` (the verified bytes this index was made
    /// from).
    pub(crate) fn entry(&self, document: &[u8], path: &TargetPath) -> Option<TargetFile> {
        self.find(path).and_then(|e| read_entry(document, e))
    }

    /// Every entry, in path order, read from `document`.
    pub(crate) fn entries<'a>(
        &'a self,
        document: &'a [u8],
    ) -> impl Iterator<Item = (&'a TargetPath, TargetFile)> + 'a {
        self.entries_from(document, None)
    }

    /// The entries whose path is `start` or sorts after it (all of them for `None`), in path
    /// order, read from `document`.
    pub(crate) fn entries_from<'a>(
        &'a self,
        document: &'a [u8],
        start: Option<&TargetPath>,
    ) -> impl Iterator<Item = (&'a TargetPath, TargetFile)> + 'a {
        let first = start.map_or(0, |start| self.entries.partition_point(|e| e.path < *start));
        // A slice iterator skips in constant time.
        self.entries
            .iter()
            .skip(first)
            .filter_map(move |e| read_entry(document, e).map(|file| (&e.path, file)))
    }
}

/// Reads one indexed entry. Every entry passed [`EntryCheck`] when the index was made, which
/// accepts exactly what [`TargetFile`] accepts, so this finds what the check found.
fn read_entry(document: &[u8], entry: &IndexEntry) -> Option<TargetFile> {
    let read = document
        .get(entry.start..entry.end)
        .and_then(|bytes| serde_json::from_slice(bytes).ok());
    debug_assert!(
        read.is_some(),
        "entry of {} checked when indexed",
        entry.path
    );
    read
}

/// The members of targets metadata, as [`crate::Targets`] has them, with the `targets`
/// member kept as raw entries.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "_type")]
    role_type: String,
    spec_version: String,
    version: u64,
    #[serde(with = "tuf_time")]
    expires: OffsetDateTime,
    #[serde(borrow)]
    targets: Listing<'a>,
    #[serde(default)]
    delegations: Option<Delegations>,
    #[serde(rename = "x-herald-rollout", default)]
    rollout: Option<Value>,
}

/// The `targets` member: each path (checked) with its entry as received (checked, then kept
/// as a slice of the input).
struct Listing<'a>(Vec<(TargetPath, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Listing<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListingVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for ListingVisitor<'a> {
            type Value = Listing<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of target paths to target files")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Listing<'a>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(path) = map.next_key::<TargetPath>()? {
                    let raw: &'a RawValue = map.next_value()?;
                    serde_json::from_str::<EntryCheck>(raw.get())
                        .map_err(|e| de::Error::custom(format_args!("target {path}: {e}")))?;
                    entries.push((path, raw));
                }
                Ok(Listing(entries))
            }
        }

        deserializer.deserialize_map(ListingVisitor(PhantomData))
    }
}

/// Accepts exactly the JSON that [`TargetFile`] accepts (same members, same types, the same
/// defaults and the same handling of unknown and repeated members), keeping nothing.
#[derive(Deserialize)]
#[allow(dead_code)] // Read only to be checked.
struct EntryCheck {
    length: u64,
    hashes: StringMap,
    #[serde(default)]
    custom: Option<AnyJson>,
}

/// A map of strings to strings, as `BTreeMap<String, String>` reads one.
struct StringMap;

impl<'de> Deserialize<'de> for StringMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor;

        impl<'de> Visitor<'de> for MapVisitor {
            type Value = StringMap;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StringMap, A::Error> {
                while map.next_entry::<AnyString, AnyString>()?.is_some() {}
                Ok(StringMap)
            }
        }

        deserializer.deserialize_map(MapVisitor)
    }
}

/// A string, as `String` reads one.
struct AnyString;

impl<'de> Deserialize<'de> for AnyString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StringVisitor;

        impl Visitor<'_> for StringVisitor {
            type Value = AnyString;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<AnyString, E> {
                Ok(AnyString)
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<AnyString, E> {
                match std::str::from_utf8(v) {
                    Ok(_) => Ok(AnyString),
                    Err(_) => Err(de::Error::invalid_value(de::Unexpected::Bytes(v), &self)),
                }
            }
        }

        deserializer.deserialize_string(StringVisitor)
    }
}

/// Any JSON value, as `serde_json::Value` reads one: every number is read (so numbers out of
/// range fail as they do for `Value`, where skipping a value would not look at them), every
/// string decoded, nested arrays and objects walked.
struct AnyJson;

impl<'de> Deserialize<'de> for AnyJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AnyVisitor;

        impl<'de> Visitor<'de> for AnyVisitor {
            type Value = AnyJson;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any valid JSON value")
            }

            fn visit_bool<E>(self, _: bool) -> Result<AnyJson, E> {
                Ok(AnyJson)
            }

            fn visit_i64<E>(self, _: i64) -> Result<AnyJson, E> {
                Ok(AnyJson)
            }

            fn visit_u64<E>(self, _: u64) -> Result<AnyJson, E> {
                Ok(AnyJson)
            }

            fn visit_f64<E>(self, _: f64) -> Result<AnyJson, E> {
                Ok(AnyJson)
            }

            fn visit_str<E>(self, _: &str) -> Result<AnyJson, E> {
                Ok(AnyJson)
            }

            fn visit_none<E>(self) -> Result<AnyJson, E> {
                Ok(AnyJson)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<AnyJson, D::Error> {
                AnyJson::deserialize(d)
            }

            fn visit_unit<E>(self) -> Result<AnyJson, E> {
                Ok(AnyJson)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyJson, A::Error> {
                while seq.next_element::<AnyJson>()?.is_some() {}
                Ok(AnyJson)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyJson, A::Error> {
                while map.next_entry::<AnyString, AnyJson>()?.is_some() {}
                Ok(AnyJson)
            }
        }

        deserializer.deserialize_any(AnyVisitor)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The check and the full read agree on every entry, valid or not.
    #[test]
    fn entry_check_accepts_exactly_what_target_file_accepts() {
        let sha = "a".repeat(64);
        for entry in [
            format!(r#"{{"length":1,"hashes":{{"sha256":"{sha}"}}}}"#),
            format!(r#"{{"length":1,"hashes":{{"sha256":"{sha}"}},"custom":null}}"#),
            format!(
                r#"{{"length":1,"hashes":{{"sha256":"{sha}"}},"custom":{{"a":[1,-2,3.5,"x",null,true,{{}}]}}}}"#
            ),
            format!(r#"{{"length":1,"hashes":{{"sha256":"{sha}","sha256":"b"}},"x-extra":1e400}}"#),
            format!(r#"{{"length":1,"hashes":{{"sha256":"{sha}"}},"custom":1e400}}"#),
            format!(r#"{{"length":1,"hashes":{{"sha256":"{sha}"}},"custom":"\ud800"}}"#),
            format!(r#"{{"length":1,"hashes":{{"sha256":"{sha}"}},"custom":{{"\ud800":1}}}}"#),
            r#"{"length":1,"length":2,"hashes":{}}"#.to_owned(),
            format!(r#"[1,{{"sha256":"{sha}"}}]"#),
            format!(r#"[1,{{"sha256":"{sha}"}},{{"k":1}}]"#),
            r#"{"length":-1,"hashes":{}}"#.to_owned(),
            r#"{"length":1.5,"hashes":{}}"#.to_owned(),
            r#"{"length":1,"hashes":{"sha256":1}}"#.to_owned(),
            r#"{"length":1,"hashes":["sha256"]}"#.to_owned(),
            r#"{"length":1}"#.to_owned(),
            r#"{"hashes":{}}"#.to_owned(),
            r#"{"length":1,"hashes":{},"custom":[[[[[[[[[[[[]]]]]]]]]]]]}"#.to_owned(),
            format!(
                r#"{{"length":1,"hashes":{{}},"custom":{}{}}}"#,
                "[".repeat(200),
                "]".repeat(200)
            ),
            "null".to_owned(),
            "1".to_owned(),
        ] {
            let full = serde_json::from_str::<TargetFile>(&entry).is_ok();
            let check = serde_json::from_str::<EntryCheck>(&entry).is_ok();
            assert_eq!(full, check, "{entry}");
        }
    }

    fn document(targets: &str) -> String {
        format!(
            r#"{{"signed":{{"_type":"targets","spec_version":"1.0.31","version":1,"expires":"2030-01-01T00:00:00Z","targets":{targets}}},"signatures":[]}}"#
        )
    }

    fn index(doc: &str) -> Result<TargetsIndex, serde_json::Error> {
        let start = doc.find(r#"{"_type""#).unwrap();
        let end = doc.rfind(r#","signatures""#).unwrap() - 1;
        TargetsIndex::parse(&doc.as_bytes()[start..=end], doc.as_bytes())
    }

    #[test]
    fn lookups_read_the_entry_of_the_path() {
        let doc = document(
            r#"{"b/two":{"length":2,"hashes":{"sha256":"22"}},"a/one":{"length":1,"hashes":{"sha256":"11"},"custom":{"k":"v"}}}"#,
        );
        let idx = index(&doc).unwrap();
        assert_eq!(idx.len(), 2);
        let paths: Vec<&str> = idx.paths().map(TargetPath::as_str).collect();
        assert_eq!(paths, ["a/one", "b/two"]);
        let one = idx
            .entry(doc.as_bytes(), &TargetPath::new("a/one").unwrap())
            .unwrap();
        assert_eq!(one.length, 1);
        assert_eq!(one.sha256(), Some("11"));
        assert_eq!(one.custom, Some(serde_json::json!({"k": "v"})));
        let missing = TargetPath::new("a/none").unwrap();
        assert!(idx.entry(doc.as_bytes(), &missing).is_none());
        assert!(!idx.contains(&missing));
        let all: Vec<u64> = idx.entries(doc.as_bytes()).map(|(_, f)| f.length).collect();
        assert_eq!(all, [1, 2]);
    }

    #[test]
    fn entries_from_a_path_start_at_the_first_path_not_before_it() {
        let doc = document(
            r#"{"c":{"length":3,"hashes":{}},"a":{"length":1,"hashes":{}},"b/x":{"length":2,"hashes":{}}}"#,
        );
        let idx = index(&doc).unwrap();
        let from = |start: &str| -> Vec<u64> {
            let start = TargetPath::new(start).unwrap();
            idx.entries_from(doc.as_bytes(), Some(&start))
                .map(|(_, f)| f.length)
                .collect()
        };
        assert_eq!(from("a"), [1, 2, 3]);
        assert_eq!(from("b"), [2, 3]);
        assert_eq!(from("b/y"), [3]);
        assert!(from("d").is_empty());
    }

    #[test]
    fn the_rollout_policy_is_kept_as_signed() {
        let doc = r#"{"signed":{"_type":"targets","spec_version":"1.0.31","version":1,"expires":"2030-01-01T00:00:00Z","targets":{},"x-herald-rollout":{"format":1}},"signatures":[]}"#;
        assert_eq!(
            index(doc).unwrap().rollout,
            Some(serde_json::json!({"format": 1}))
        );
        assert_eq!(index(&document("{}")).unwrap().rollout, None);
    }

    #[test]
    fn a_path_listed_twice_keeps_its_last_entry() {
        let doc = document(
            r#"{"p":{"length":1,"hashes":{}},"q":{"length":5,"hashes":{}},"p":{"length":2,"hashes":{}},"p":{"length":3,"hashes":{}}}"#,
        );
        let idx = index(&doc).unwrap();
        assert_eq!(idx.len(), 2);
        let p = idx
            .entry(doc.as_bytes(), &TargetPath::new("p").unwrap())
            .unwrap();
        assert_eq!(p.length, 3);
    }

    #[test]
    fn a_malformed_entry_refuses_the_whole_document() {
        let doc = document(r#"{"ok":{"length":1,"hashes":{}},"bad":{"length":"one","hashes":{}}}"#);
        let err = index(&doc).unwrap_err();
        assert!(err.to_string().contains("target bad"), "{err}");
        assert!(index(&document(r#"{"../x":{"length":1,"hashes":{}}}"#)).is_err());
        assert!(index(&document(r#"[]"#)).is_err());
    }
}
