//! The repository folder: where each file lives, and reading its current state.

use std::fs;
use std::path::{Path, PathBuf};

use herald_manifest::{Envelope, RoleType, VerifiedRoot};

use crate::fsutil::read;
use crate::Error;

/// A repository folder.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
}

/// What a file name in `metadata/` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MetadataName {
    /// `N.ROLE.json`.
    Versioned(u64, String),
    /// `root.json`, the copy of the newest root.
    RootCopy,
    /// `timestamp.json`.
    Timestamp,
}

impl MetadataName {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "root.json" => return Some(MetadataName::RootCopy),
            "timestamp.json" => return Some(MetadataName::Timestamp),
            _ => {}
        }
        let stem = name.strip_suffix(".json")?;
        let (version, role) = stem.split_once('.')?;
        if version.starts_with('0') || role.is_empty() {
            return None;
        }
        Some(MetadataName::Versioned(version.parse().ok()?, role.into()))
    }
}

impl Layout {
    pub(crate) fn new(root: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
        }
    }

    pub(crate) fn metadata_dir(&self) -> PathBuf {
        self.root.join("metadata")
    }

    pub(crate) fn targets_dir(&self) -> PathBuf {
        self.root.join("targets")
    }

    pub(crate) fn staged_dir(&self) -> PathBuf {
        self.root.join("staged")
    }

    /// `metadata/NAME`.
    pub(crate) fn metadata(&self, name: &str) -> PathBuf {
        self.metadata_dir().join(name)
    }

    /// `metadata/N.ROLE.json`.
    pub(crate) fn versioned(&self, version: u64, role: &str) -> PathBuf {
        self.metadata(&format!("{version}.{role}.json"))
    }

    /// Versions of `role` present in `metadata/`, ascending.
    pub(crate) fn versions(&self, role: &str) -> Result<Vec<u64>, Error> {
        let dir = self.metadata_dir();
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(Error::io(&dir))? {
            let entry = entry.map_err(Error::io(&dir))?;
            if let Some(MetadataName::Versioned(v, r)) =
                entry.file_name().to_str().and_then(MetadataName::parse)
            {
                if r == role {
                    out.push(v);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// The newest version of `role` and its bytes.
    pub(crate) fn newest(&self, role: &str) -> Result<Option<(u64, Vec<u8>)>, Error> {
        match self.versions(role)?.last() {
            Some(&v) => Ok(Some((v, read(&self.versioned(v, role))?))),
            None => Ok(None),
        }
    }

    /// Verifies the chain of published roots from `1.root.json` (self-signed) to the newest.
    /// Expiry is not checked: building a repository must work with an expired root in order
    /// to replace it.
    pub(crate) fn root_chain(&self) -> Result<Vec<VerifiedRoot>, Error> {
        let versions = self.versions("root")?;
        if versions.is_empty() {
            return Err(Error::Repository(format!(
                "{}: no root metadata; run `herald-sign init` first",
                self.metadata_dir().display()
            )));
        }
        let mut chain: Vec<VerifiedRoot> = Vec::with_capacity(versions.len());
        for (i, &v) in versions.iter().enumerate() {
            if v != i as u64 + 1 {
                return Err(Error::Repository(format!(
                    "metadata/{}.root.json is missing (root versions must be consecutive from 1)",
                    i + 1
                )));
            }
            let file = format!("metadata/{v}.root.json");
            let bytes = read(&self.versioned(v, "root"))?;
            let next = match chain.last() {
                None => VerifiedRoot::trust_anchor(&bytes),
                Some(prev) => prev.verify_next_root(&bytes),
            }
            .map_err(|source| Error::Verify { file, source })?;
            chain.push(next);
        }
        Ok(chain)
    }

    /// The newest published root, verified through the chain.
    pub(crate) fn current_root(&self) -> Result<VerifiedRoot, Error> {
        let mut chain = self.root_chain()?;
        chain
            .pop()
            .ok_or_else(|| Error::Repository("no root metadata".into()))
    }
}

/// Parses an envelope read from `file`.
pub(crate) fn parse_envelope(file: &str, bytes: &[u8]) -> Result<Envelope, Error> {
    Envelope::from_slice(bytes).map_err(|source| Error::Envelope {
        file: file.into(),
        source,
    })
}

/// Parses the typed view of an envelope's `signed` part.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(
    file: &str,
    env: &Envelope,
) -> Result<T, Error> {
    T::deserialize(env.signed())
        .map_err(|e| Error::Repository(format!("{file}: invalid metadata: {e}")))
}

/// Role names accepted by `sign --role`.
pub(crate) fn role_from_name(name: &str) -> Result<RoleType, Error> {
    RoleType::ALL
        .into_iter()
        .find(|r| r.as_str() == name)
        .ok_or_else(|| {
            Error::Usage(format!(
                "unknown role {name:?}: expected root, targets, snapshot or timestamp"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_names_parse() {
        assert_eq!(
            MetadataName::parse("12.targets.json"),
            Some(MetadataName::Versioned(12, "targets".into()))
        );
        assert_eq!(
            MetadataName::parse("root.json"),
            Some(MetadataName::RootCopy)
        );
        assert_eq!(
            MetadataName::parse("timestamp.json"),
            Some(MetadataName::Timestamp)
        );
        for bad in [
            "x.json",
            "01.root.json",
            "1..json",
            "1.root",
            "snapshot.json",
        ] {
            assert_eq!(MetadataName::parse(bad), None, "{bad}");
        }
    }
}
