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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_round_trip() {
        for algorithm in HashAlgorithm::ALL {
            assert_eq!(HashAlgorithm::from_name(algorithm.name()), Some(algorithm));
            assert_eq!(algorithm.digest(b"x").len(), algorithm.output_len());
        }
        assert_eq!(HashAlgorithm::from_name("md5"), None);
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
