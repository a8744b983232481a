//! Typed views of the four TUF 1.0 roles and of delegations.
//!
//! These views are read from (and, when building a repository, written to) the generic JSON
//! value of a role's `signed` part. Members a view does not know are not lost: verification
//! keeps the generic value, and signatures are always computed over it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::keys::{KeyId, PublicKey};
use crate::path::TargetPath;
use crate::sha256_hex;

/// The TUF specification version Herald writes.
pub const SPEC_VERSION: &str = "1.0.31";

/// Name of the root member holding the release (per-file signing) keys.
pub const RELEASE_KEYS_FIELD: &str = "x-herald-release";

/// The four top-level roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RoleType {
    /// `root`.
    Root,
    /// `targets` (top-level or delegated).
    Targets,
    /// `snapshot`.
    Snapshot,
    /// `timestamp`.
    Timestamp,
}

impl RoleType {
    /// The role's name, as in `_type` and in root's `roles`.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleType::Root => "root",
            RoleType::Targets => "targets",
            RoleType::Snapshot => "snapshot",
            RoleType::Timestamp => "timestamp",
        }
    }

    /// All four roles, root first.
    pub const ALL: [RoleType; 4] = [
        RoleType::Root,
        RoleType::Targets,
        RoleType::Snapshot,
        RoleType::Timestamp,
    ];
}

/// TUF's date-time format, `YYYY-MM-DDTHH:MM:SSZ`.
pub mod tuf_time {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::format_description::BorrowedFormatItem;
    use time::macros::format_description;
    use time::{OffsetDateTime, PrimitiveDateTime};

    const FORMAT: &[BorrowedFormatItem<'static>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

    /// Formats a time in TUF's format (UTC).
    pub fn format(t: OffsetDateTime) -> String {
        t.to_offset(time::UtcOffset::UTC)
            .format(FORMAT)
            .unwrap_or_else(|_| "invalid-time".into())
    }

    /// Parses a time in TUF's format.
    pub fn parse(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
        PrimitiveDateTime::parse(s, FORMAT).map(PrimitiveDateTime::assume_utc)
    }

    pub(crate) fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*t))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The keys and threshold of a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    /// IDs of the keys allowed to sign the role.
    pub keyids: Vec<KeyId>,
    /// How many distinct keys must sign.
    pub threshold: u32,
}

/// The release (per-file signing) keys declared by root (Herald extension).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseKeys {
    /// The release keys, by key ID.
    pub keys: BTreeMap<KeyId, PublicKey>,
    /// How many distinct release keys must sign each target.
    pub threshold: u32,
}

/// Root metadata (TUF 1.0 section 4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    /// Always `root`.
    #[serde(rename = "_type")]
    pub role_type: String,
    /// The specification version.
    pub spec_version: String,
    /// The metadata version.
    pub version: u64,
    /// Expiry.
    #[serde(with = "tuf_time")]
    pub expires: OffsetDateTime,
    /// Whether the repository uses consistent snapshots.
    #[serde(default)]
    pub consistent_snapshot: bool,
    /// Every key of the top-level roles.
    pub keys: BTreeMap<KeyId, PublicKey>,
    /// Keys and threshold of each top-level role.
    pub roles: BTreeMap<String, RoleKeys>,
    /// Release keys (Herald extension); none for a plain TUF repository.
    #[serde(
        rename = "x-herald-release",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub release: Option<ReleaseKeys>,
}

/// What a snapshot or timestamp says of another metadata file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaFile {
    /// The file's version.
    pub version: u64,
    /// The file's length in bytes, if listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// The file's hashes (algorithm to hex), if listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<BTreeMap<String, String>>,
}

impl MetaFile {
    /// An entry with only a version.
    pub fn version(version: u64) -> Self {
        MetaFile {
            version,
            length: None,
            hashes: None,
        }
    }

    /// An entry with version, length and SHA-256 of `bytes`.
    pub fn of_bytes(version: u64, bytes: &[u8]) -> Self {
        MetaFile {
            version,
            length: Some(bytes.len() as u64),
            hashes: Some(BTreeMap::from([("sha256".to_owned(), sha256_hex(bytes))])),
        }
    }
}

/// Timestamp metadata (TUF 1.0 section 4.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    /// Always `timestamp`.
    #[serde(rename = "_type")]
    pub role_type: String,
    /// The specification version.
    pub spec_version: String,
    /// The metadata version.
    pub version: u64,
    /// Expiry.
    #[serde(with = "tuf_time")]
    pub expires: OffsetDateTime,
    /// Exactly one entry, `snapshot.json`.
    pub meta: BTreeMap<String, MetaFile>,
}

/// Snapshot metadata (TUF 1.0 section 4.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Always `snapshot`.
    #[serde(rename = "_type")]
    pub role_type: String,
    /// The specification version.
    pub spec_version: String,
    /// The metadata version.
    pub version: u64,
    /// Expiry.
    #[serde(with = "tuf_time")]
    pub expires: OffsetDateTime,
    /// One entry per targets metadata file (`targets.json`, `ROLE.json`).
    pub meta: BTreeMap<String, MetaFile>,
}

/// One target file as targets metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFile {
    /// Length in bytes.
    pub length: u64,
    /// Hashes, algorithm to hex.
    pub hashes: BTreeMap<String, String>,
    /// Application data; Herald keeps per-file release signatures here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<Value>,
}

impl TargetFile {
    /// The SHA-256 hex digest, if listed.
    pub fn sha256(&self) -> Option<&str> {
        self.hashes.get("sha256").map(String::as_str)
    }
}

/// A delegated targets role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegatedRole {
    /// The role's name; its metadata is `NAME.json`.
    pub name: String,
    /// IDs of the keys allowed to sign it (looked up in the delegating role's `keys`).
    pub keyids: Vec<KeyId>,
    /// How many distinct keys must sign.
    pub threshold: u32,
    /// When true, no later delegation is consulted for paths this role matches.
    #[serde(default)]
    pub terminating: bool,
    /// Shell-style patterns of the paths the role is trusted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// Hex prefixes of the SHA-256 of the paths the role is trusted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hash_prefixes: Option<Vec<String>>,
}

impl DelegatedRole {
    /// Whether the role is trusted for `path` (TUF 1.0 section 4.5, `paths` matched segment
    /// by segment with `*` and `?` wildcards that never cross a `/`, as python-tuf does).
    pub fn matches(&self, path: &TargetPath) -> bool {
        if let Some(patterns) = &self.paths {
            return patterns.iter().any(|p| pattern_matches(p, path.as_str()));
        }
        if let Some(prefixes) = &self.path_hash_prefixes {
            let digest = sha256_hex(path.as_str().as_bytes());
            return prefixes.iter().any(|p| digest.starts_with(p.as_str()));
        }
        false
    }
}

fn pattern_matches(pattern: &str, path: &str) -> bool {
    let pattern_segments: Vec<&str> = pattern.split('/').collect();
    let path_segments: Vec<&str> = path.split('/').collect();
    pattern_segments.len() == path_segments.len()
        && pattern_segments
            .iter()
            .zip(&path_segments)
            .all(|(p, s)| glob_segment(p.as_bytes(), s.as_bytes()))
}

/// `*` matches any run of bytes, `?` one byte, everything else itself.
fn glob_segment(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The delegations of a targets role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegations {
    /// Keys of the delegated roles.
    pub keys: BTreeMap<KeyId, PublicKey>,
    /// The delegated roles, in priority order.
    pub roles: Vec<DelegatedRole>,
}

/// Targets metadata (TUF 1.0 section 4.5), top-level or delegated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    /// Always `targets`.
    #[serde(rename = "_type")]
    pub role_type: String,
    /// The specification version.
    pub spec_version: String,
    /// The metadata version.
    pub version: u64,
    /// Expiry.
    #[serde(with = "tuf_time")]
    pub expires: OffsetDateTime,
    /// The targets, by path.
    pub targets: BTreeMap<TargetPath, TargetFile>,
    /// Delegations to other targets roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<Delegations>,
    /// The rollout policy (Herald extension, `x-herald-rollout`), as signed; read it with
    /// [`Targets::rollout_policy`].
    #[serde(
        rename = "x-herald-rollout",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub rollout: Option<Value>,
}

impl Targets {
    /// Empty targets metadata.
    pub fn new(version: u64, expires: OffsetDateTime) -> Self {
        Targets {
            role_type: RoleType::Targets.as_str().into(),
            spec_version: SPEC_VERSION.into(),
            version,
            expires,
            targets: BTreeMap::new(),
            delegations: None,
            rollout: None,
        }
    }
}

impl Snapshot {
    /// Snapshot metadata listing `meta`.
    pub fn new(version: u64, expires: OffsetDateTime, meta: BTreeMap<String, MetaFile>) -> Self {
        Snapshot {
            role_type: RoleType::Snapshot.as_str().into(),
            spec_version: SPEC_VERSION.into(),
            version,
            expires,
            meta,
        }
    }
}

impl Timestamp {
    /// Timestamp metadata pointing at `snapshot`.
    pub fn new(version: u64, expires: OffsetDateTime, snapshot: MetaFile) -> Self {
        Timestamp {
            role_type: RoleType::Timestamp.as_str().into(),
            spec_version: SPEC_VERSION.into(),
            version,
            expires,
            meta: BTreeMap::from([("snapshot.json".to_owned(), snapshot)]),
        }
    }

    /// The `snapshot.json` entry.
    pub fn snapshot_meta(&self) -> Option<&MetaFile> {
        self.meta.get("snapshot.json")
    }
}

impl Root {
    /// Root metadata with the given keys and roles.
    pub fn new(
        version: u64,
        expires: OffsetDateTime,
        keys: BTreeMap<KeyId, PublicKey>,
        roles: BTreeMap<String, RoleKeys>,
    ) -> Self {
        Root {
            role_type: RoleType::Root.as_str().into(),
            spec_version: SPEC_VERSION.into(),
            version,
            expires,
            consistent_snapshot: true,
            keys,
            roles,
            release: None,
        }
    }

    /// Keys and threshold of a top-level role.
    pub fn role(&self, role: RoleType) -> Option<&RoleKeys> {
        self.roles.get(role.as_str())
    }
}

/// Common header of every role, read before the full view.
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    #[serde(rename = "_type")]
    pub(crate) role_type: String,
    pub(crate) spec_version: String,
    pub(crate) version: u64,
    #[serde(with = "tuf_time")]
    pub(crate) expires: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn role(paths: Option<Vec<&str>>, prefixes: Option<Vec<&str>>) -> DelegatedRole {
        DelegatedRole {
            name: "r".into(),
            keyids: vec![],
            threshold: 1,
            terminating: false,
            paths: paths.map(|v| v.into_iter().map(String::from).collect()),
            path_hash_prefixes: prefixes.map(|v| v.into_iter().map(String::from).collect()),
        }
    }

    #[test]
    fn delegation_paths_match_per_segment() {
        let r = role(Some(vec!["bin/*", "doc/?.txt"]), None);
        assert!(r.matches(&TargetPath::new("bin/tool").unwrap()));
        assert!(!r.matches(&TargetPath::new("bin/sub/tool").unwrap()));
        assert!(r.matches(&TargetPath::new("doc/a.txt").unwrap()));
        assert!(!r.matches(&TargetPath::new("doc/ab.txt").unwrap()));
        assert!(!r.matches(&TargetPath::new("other").unwrap()));
    }

    #[test]
    fn delegation_hash_prefix_matches() {
        let path = TargetPath::new("file.txt").unwrap();
        let digest = sha256_hex(b"file.txt");
        assert!(role(None, Some(vec![&digest[..2]])).matches(&path));
        let other = if digest.starts_with('0') { "1" } else { "0" };
        assert!(!role(None, Some(vec![other])).matches(&path));
    }

    #[test]
    fn glob_star_backtracks() {
        assert!(glob_segment(b"*.tar.gz", b"a.b.tar.gz"));
        assert!(glob_segment(b"a*b*c", b"aXbYbZc"));
        assert!(!glob_segment(b"a*b", b"aXc"));
    }

    #[test]
    fn tuf_time_round_trip() {
        let t = tuf_time::parse("2030-01-02T03:04:05Z").unwrap();
        assert_eq!(tuf_time::format(t), "2030-01-02T03:04:05Z");
        assert!(tuf_time::parse("2030-01-02 03:04:05").is_err());
    }
}
