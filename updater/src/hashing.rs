//! Hashing content as it streams by, with every algorithm a target lists (SHA-256 always, since
//! release statements and install records name content by it).

use herald_manifest::{ContentDigests, HashAlgorithm};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// Computes the length, SHA-256 and the requested SHA-384 / SHA-512 of a stream of chunks.
pub(crate) struct ContentHasher {
    length: u64,
    sha256: Sha256,
    sha384: Option<Sha384>,
    sha512: Option<Sha512>,
}

impl ContentHasher {
    /// A hasher for SHA-256 and each of `algorithms`.
    pub(crate) fn new(algorithms: impl IntoIterator<Item = HashAlgorithm>) -> Self {
        let mut hasher = ContentHasher {
            length: 0,
            sha256: Sha256::new(),
            sha384: None,
            sha512: None,
        };
        for algorithm in algorithms {
            match algorithm {
                HashAlgorithm::Sha256 => {}
                HashAlgorithm::Sha384 => hasher.sha384 = Some(Sha384::new()),
                HashAlgorithm::Sha512 => hasher.sha512 = Some(Sha512::new()),
            }
        }
        hasher
    }

    /// Feeds the next chunk.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.length += bytes.len() as u64;
        self.sha256.update(bytes);
        if let Some(h) = &mut self.sha384 {
            h.update(bytes);
        }
        if let Some(h) = &mut self.sha512 {
            h.update(bytes);
        }
    }

    /// The length and digests of everything fed.
    pub(crate) fn finish(self) -> ContentDigests {
        let mut digests = ContentDigests::new(self.length)
            .with(HashAlgorithm::Sha256, self.sha256.finalize().to_vec());
        if let Some(h) = self.sha384 {
            digests = digests.with(HashAlgorithm::Sha384, h.finalize().to_vec());
        }
        if let Some(h) = self.sha512 {
            digests = digests.with(HashAlgorithm::Sha512, h.finalize().to_vec());
        }
        digests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_digests_match_one_shot_digests() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut hasher = ContentHasher::new([HashAlgorithm::Sha384, HashAlgorithm::Sha512]);
        for chunk in data.chunks(777) {
            hasher.update(chunk);
        }
        let streamed = hasher.finish();
        assert_eq!(streamed, ContentDigests::of(&data, HashAlgorithm::ALL));
        let only_sha256 = ContentHasher::new([]).finish();
        assert_eq!(only_sha256.get(HashAlgorithm::Sha512), None);
        assert!(only_sha256.get(HashAlgorithm::Sha256).is_some());
    }
}
