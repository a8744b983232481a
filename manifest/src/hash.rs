//! The hash algorithms a target may be listed with, and the digests a caller computes of a
//! target's content.
//!
//! TUF lets targets metadata list any set of hash algorithms. Herald verifies SHA-256, SHA-384
//! and SHA-512; every one of them that is listed must match, and at least one must be listed.
//! SHA-256 of the content is always computed as well (Herald's per-file release statement and
//! install records name the content by it), whether or not it is listed.

use std::collections::BTreeMap;
use std::fmt;

use ring::digest;

use crate::metadata::TargetFile;
use crate::path::TargetPath;
use crate::verify::VerifyError;

/// A hash algorithm Herald verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HashAlgorithm {
    /// SHA-256 (`sha256`).
    Sha256,
    /// SHA-384 (`sha384`).
    Sha384,
    /// SHA-512 (`sha512`).
    Sha512,
}

impl HashAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [HashAlgorithm; 3] = [
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha384,
        HashAlgorithm::Sha512,
    ];

    /// The name metadata lists it under (`sha256`, ...).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Sha384 => "sha384",
            HashAlgorithm::Sha512 => "sha512",
        }
    }

    /// The algorithm listed under `name`, if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        HashAlgorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Length of a digest in bytes.
    pub fn output_len(self) -> usize {
        self.ring().output_len()
    }

    /// The digest of `bytes`.
    pub fn digest(self, bytes: &[u8]) -> Vec<u8> {
        digest::digest(self.ring(), bytes).as_ref().to_vec()
    }

    fn ring(self) -> &'static digest::Algorithm {
        match self {
            HashAlgorithm::Sha256 => &digest::SHA256,
            HashAlgorithm::Sha384 => &digest::SHA384,
            HashAlgorithm::Sha512 => &digest::SHA512,
        }
    }
}

impl fmt::Display for HashAlgorithm {
    /// The usual spelling: `SHA-256`, `SHA-384`, `SHA-512`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashAlgorithm::Sha256 => "SHA-256",
            HashAlgorithm::Sha384 => "SHA-384",
            HashAlgorithm::Sha512 => "SHA-512",
        })
    }
}

/// The length and digests of a file's content, as the caller computed them (for instance
/// while streaming it to disk). Verification compares them with what metadata lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDigests {
    length: u64,
    digests: BTreeMap<HashAlgorithm, Vec<u8>>,
}

impl ContentDigests {
    /// Digests of content of `length` bytes, none given yet.
    pub fn new(length: u64) -> Self {
        ContentDigests {
            length,
            digests: BTreeMap::new(),
        }
    }

    /// Adds the `algorithm` digest of the content.
    pub fn with(mut self, algorithm: HashAlgorithm, digest: impl Into<Vec<u8>>) -> Self {
        self.digests.insert(algorithm, digest.into());
        self
    }

    /// Computes the length and the given digests of `content` (SHA-256 always).
    pub fn of(content: &[u8], algorithms: impl IntoIterator<Item = HashAlgorithm>) -> Self {
        let mut digests = ContentDigests::new(content.len() as u64)
            .with(HashAlgorithm::Sha256, HashAlgorithm::Sha256.digest(content));
        for algorithm in algorithms {
            if !digests.digests.contains_key(&algorithm) {
                digests = digests.with(algorithm, algorithm.digest(content));
            }
        }
        digests
    }

    /// The content's length.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// The `algorithm` digest, if computed.
    pub fn get(&self, algorithm: HashAlgorithm) -> Option<&[u8]> {
        self.digests.get(&algorithm).map(Vec::as_slice)
    }
}

impl TargetFile {
    /// The digests listed for the algorithms Herald supports, decoded, in algorithm order
    /// (SHA-256 first). Algorithms Herald does not know are skipped; when none is left the
    /// target cannot be verified ([`VerifyError::NoSupportedHash`]). A supported hash that is
    /// not hex of the algorithm's length is an error ([`VerifyError::BadHashValue`]).
    pub fn expected_digests(
        &self,
        path: &TargetPath,
    ) -> Result<BTreeMap<HashAlgorithm, Vec<u8>>, VerifyError> {
        let what = || format!("target {path}");
        let mut expected = BTreeMap::new();
        for (name, value) in &self.hashes {
            let Some(algorithm) = HashAlgorithm::from_name(name) else {
                continue;
            };
            let digest = hex::decode(value)
                .ok()
                .filter(|d| d.len() == algorithm.output_len())
                .ok_or_else(|| VerifyError::BadHashValue {
                    what: what(),
                    algorithm: name.clone(),
                })?;
            expected.insert(algorithm, digest);
        }
        if expected.is_empty() {
            return Err(VerifyError::NoSupportedHash {
                what: what(),
                listed: self.hashes.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        Ok(expected)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(hashes: &[(&str, String)]) -> TargetFile {
        TargetFile {
            length: 1,
            hashes: hashes
                .iter()
                .map(|(a, h)| ((*a).to_owned(), h.clone()))
                .collect(),
            custom: None,
        }
    }

    fn path() -> TargetPath {
        TargetPath::new("f").unwrap()
    }

    #[test]
    fn names_round_trip() {
        for algorithm in HashAlgorithm::ALL {
            assert_eq!(HashAlgorithm::from_name(algorithm.name()), Some(algorithm));
            assert_eq!(algorithm.digest(b"x").len(), algorithm.output_len());
        }
        assert_eq!(HashAlgorithm::from_name("md5"), None);
    }

    #[test]
    fn unsupported_only_hashes_are_refused_naming_them() {
        let err = entry(&[("md5", "00".into()), ("blake2b", "11".into())])
            .expected_digests(&path())
            .unwrap_err();
        assert!(matches!(err, VerifyError::NoSupportedHash { .. }), "{err}");
        assert!(err.to_string().contains("blake2b, md5"), "{err}");
    }

    #[test]
    fn malformed_supported_hash_is_refused() {
        let err = entry(&[("sha512", "abcd".into())])
            .expected_digests(&path())
            .unwrap_err();
        assert!(matches!(err, VerifyError::BadHashValue { .. }), "{err}");
    }

    #[test]
    fn unknown_algorithms_are_skipped_beside_supported_ones() {
        let sha384 = hex::encode(HashAlgorithm::Sha384.digest(b"x"));
        let expected = entry(&[("md5", "00".into()), ("sha384", sha384)])
            .expected_digests(&path())
            .unwrap();
        assert_eq!(
            expected.keys().copied().collect::<Vec<_>>(),
            [HashAlgorithm::Sha384]
        );
    }

    #[test]
    fn content_digests_always_hold_sha256() {
        let d = ContentDigests::of(b"abc", [HashAlgorithm::Sha512]);
        assert_eq!(d.length(), 3);
        assert!(d.get(HashAlgorithm::Sha256).is_some());
        assert!(d.get(HashAlgorithm::Sha512).is_some());
        assert!(d.get(HashAlgorithm::Sha384).is_none());
    }
}
