//! Targets metadata written straight into canonical JSON.
//!
//! A release of 100,000 files would need gigabytes as a generic JSON tree (every object is a
//! B-tree of its own); this writer keeps one compact entry per file and emits the canonical
//! bytes directly, building the JSON value of one entry at a time.

use std::collections::BTreeMap;

use herald_manifest::{
    tuf_time, with_release_signatures, write_canonical, CanonicalError, Delegations, Signature,
    TargetFile, TargetPath, Targets, SPEC_VERSION,
};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// One target of the document being built.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// A file of this release.
    Fresh {
        /// Length in bytes.
        length: u64,
        /// SHA-256, lowercase hex.
        sha256: String,
        /// Release signatures (none for a plain TUF repository).
        signatures: Vec<Signature>,
    },
    /// A target kept from the previous targets version.
    Listed(TargetFile),
}

impl Entry {
    fn to_value(&self) -> Result<Value, CanonicalError> {
        Ok(match self {
            Entry::Fresh {
                length,
                sha256,
                signatures,
            } => {
                let mut value = json!({"length": length, "hashes": {"sha256": sha256}});
                if !signatures.is_empty() {
                    value["custom"] = with_release_signatures(None, signatures);
                }
                value
            }
            Entry::Listed(file) => serde_json::to_value(file).unwrap_or(Value::Null),
        })
    }
}

/// Targets metadata under construction.
#[derive(Debug, Clone)]
pub(crate) struct TargetsDoc {
    pub(crate) version: u64,
    pub(crate) expires: OffsetDateTime,
    pub(crate) delegations: Option<Delegations>,
    pub(crate) entries: BTreeMap<TargetPath, Entry>,
    /// The rollout policy (`x-herald-rollout`), if the repository has one.
    pub(crate) rollout: Option<Value>,
}

impl TargetsDoc {
    /// Starts from an earlier targets version, keeping its targets and delegations.
    pub(crate) fn from_previous(previous: Targets) -> Self {
        TargetsDoc {
            version: previous.version,
            expires: previous.expires,
            delegations: previous.delegations,
            rollout: previous.rollout,
            entries: previous
                .targets
                .into_iter()
                .map(|(p, f)| (p, Entry::Listed(f)))
                .collect(),
        }
    }

    /// The canonical JSON of the `signed` part: members in sorted order (`_type`,
    /// `delegations`, `expires`, `spec_version`, `targets`, `version`, `x-herald-rollout`),
    /// targets sorted by path (a `BTreeMap` of strings iterates in byte order, which is
    /// canonical order).
    pub(crate) fn canonical(&self) -> Result<Vec<u8>, CanonicalError> {
        let mut out = Vec::with_capacity(self.entries.len() * 420 + 512);
        out.extend_from_slice(b"{\"_type\":\"targets\",");
        if let Some(delegations) = &self.delegations {
            out.extend_from_slice(b"\"delegations\":");
            write_canonical(
                &serde_json::to_value(delegations).unwrap_or(Value::Null),
                &mut out,
            )?;
            out.push(b',');
        }
        out.extend_from_slice(b"\"expires\":");
        write_canonical(&Value::String(tuf_time::format(self.expires)), &mut out)?;
        out.extend_from_slice(b",\"spec_version\":");
        write_canonical(&Value::String(SPEC_VERSION.into()), &mut out)?;
        out.extend_from_slice(b",\"targets\":{");
        for (i, (path, entry)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_canonical(&Value::String(path.as_str().into()), &mut out)?;
            out.push(b':');
            write_canonical(&entry.to_value()?, &mut out)?;
        }
        out.extend_from_slice(b"},\"version\":");
        out.extend_from_slice(self.version.to_string().as_bytes());
        if let Some(rollout) = &self.rollout {
            out.extend_from_slice(b",\"x-herald-rollout\":");
            write_canonical(rollout, &mut out)?;
        }
        out.push(b'}');
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use herald_manifest::{DelegatedRole, Envelope, KeyId};

    fn sig(k: &str) -> Signature {
        Signature {
            keyid: KeyId::new(k),
            sig: "ab".repeat(8),
        }
    }

    #[test]
    fn direct_writer_matches_generic_canonical_json() {
        let expires = tuf_time::parse("2030-01-01T00:00:00Z").unwrap();
        let mut previous = Targets::new(4, expires);
        previous.targets.insert(
            TargetPath::new("z/old \"quoted\" name").unwrap(),
            TargetFile {
                length: 3,
                hashes: BTreeMap::from([
                    ("sha256".into(), "00".into()),
                    ("sha512".into(), "11".into()),
                ]),
                custom: Some(json!({"app": {"b": 1, "a": [true, null]}})),
            },
        );
        previous.delegations = Some(Delegations {
            keys: BTreeMap::new(),
            roles: vec![DelegatedRole {
                name: "r".into(),
                keyids: vec![KeyId::new("k")],
                threshold: 1,
                terminating: true,
                paths: Some(vec!["z/*".into()]),
                path_hash_prefixes: None,
            }],
        });
        previous.rollout =
            Some(json!({"format": 1, "channels": {}, "releases": {"5": {"channel": "stable"}}}));
        let mut doc = TargetsDoc::from_previous(previous.clone());
        doc.version = 5;
        for (path, sigs) in [("a/é.bin", vec![sig("k2"), sig("k1")]), ("B", vec![])] {
            doc.entries.insert(
                TargetPath::new(path).unwrap(),
                Entry::Fresh {
                    length: 10,
                    sha256: "cd".repeat(32),
                    signatures: sigs,
                },
            );
        }
        // The same document through the generic path: typed view, JSON value, canonical.
        let mut typed = previous;
        typed.version = 5;
        for (path, entry) in &doc.entries {
            typed.targets.insert(
                path.clone(),
                serde_json::from_value(entry.to_value().unwrap()).unwrap(),
            );
        }
        let generic = Envelope::from_typed(&typed)
            .unwrap()
            .signed_bytes()
            .unwrap();
        assert_eq!(
            String::from_utf8(doc.canonical().unwrap()).unwrap(),
            String::from_utf8(generic).unwrap()
        );
    }
}
