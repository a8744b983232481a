//! Downloading one file whose length and hashes are known in advance, from a list of mirrors,
//! into a staging file.
//!
//! Length and hashes are checked while streaming: the download stops as soon as the server
//! sends more than the declared length, and a file whose hashes do not all match is deleted. An
//! interrupted download is resumed with an HTTP range request; the resumed file is still
//! verified whole (the bytes already on disk are hashed again first). Each mirror is tried in
//! order until one delivers the exact file.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use herald_manifest::{ContentDigests, HashAlgorithm};
use url::Url;

use crate::hashing::ContentHasher;
use crate::transport::{FetchError, Transport};

/// What the verified metadata says the file must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedFile {
    /// Exact length in bytes.
    pub length: u64,
    /// The digest of the whole file under each listed algorithm; every one must match.
    pub digests: BTreeMap<HashAlgorithm, Vec<u8>>,
}

impl ExpectedFile {
    /// A file of `length` bytes with this SHA-256.
    pub fn sha256(length: u64, sha256: [u8; 32]) -> Self {
        ExpectedFile {
            length,
            digests: BTreeMap::from([(HashAlgorithm::Sha256, sha256.to_vec())]),
        }
    }
}

/// Why one attempt at one mirror failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum AttemptError {
    /// The transport failed (unreachable, not found, too slow...).
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The server sent more bytes than the declared length.
    #[error("server sent more than the declared {expected} bytes")]
    TooLong { expected: u64 },
    /// The stream ended before the declared length.
    #[error("server sent {got} of {expected} bytes")]
    TooShort { expected: u64, got: u64 },
    /// The bytes do not have a declared hash.
    #[error("{algorithm} mismatch: expected {expected}, got {got}")]
    HashMismatch {
        algorithm: HashAlgorithm,
        expected: String,
        got: String,
    },
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum DownloadError {
    /// No mirror delivered the file; each attempt's failure is listed.
    #[error("{path}: no mirror delivered a valid file: {}", describe(.attempts))]
    AllMirrorsFailed {
        path: String,
        attempts: Vec<(Url, AttemptError)>,
    },
    /// The target path cannot be expressed as a URL under a mirror.
    #[error("{path}: cannot build a URL under mirror {mirror}")]
    BadUrl { path: String, mirror: Url },
    /// The staging file could not be written.
    #[error("staging file {path}: {source}")]
    Staging {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DownloadError {
    /// True when every mirror answered "not found" (the file is absent, not under attack).
    pub fn is_not_found(&self) -> bool {
        match self {
            DownloadError::AllMirrorsFailed { attempts, .. } => {
                !attempts.is_empty()
                    && attempts
                        .iter()
                        .all(|(_, e)| matches!(e, AttemptError::Fetch(f) if f.is_not_found()))
            }
            _ => false,
        }
    }
}

fn describe(attempts: &[(Url, AttemptError)]) -> String {
    attempts
        .iter()
        .map(|(url, err)| format!("[{url}: {err}]"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The URL of `path` (slash-separated, relative) under a mirror's base URL. Each segment is
/// percent-encoded, so no segment can climb out of the base.
pub fn url_under(base: &Url, path: &str) -> Option<Url> {
    let mut url = base.clone();
    {
        let mut segments = url.path_segments_mut().ok()?;
        segments.pop_if_empty();
        for segment in path.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return None;
            }
            segments.push(segment);
        }
    }
    Some(url)
}

/// Where a download is written. A [`Path`] is opened without following a link at its last
/// component; the install root hands out staging files it opened itself, relative to its state
/// folder ([`crate::install::StagedFile`]), so no link anywhere can redirect the bytes.
pub trait Staging: Sync {
    /// Opens the staging file for reading and writing, creating it if needed, never through
    /// a link; it keeps what an earlier attempt left (for a resume).
    fn open(&self) -> std::io::Result<std::fs::File>;
    /// Where the file is, for messages.
    fn path(&self) -> &Path;
    /// Removes the staging file (its content failed a check).
    fn discard(&self) -> std::io::Result<()>;
}

impl Staging for Path {
    fn open(&self) -> std::io::Result<std::fs::File> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).read(true).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
            options.custom_flags(flags.bits() as i32).mode(0o644);
        }
        let file = options.open(self)?;
        if !file.metadata()?.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(file)
    }

    fn path(&self) -> &Path {
        self
    }

    fn discard(&self) -> std::io::Result<()> {
        std::fs::remove_file(self)
    }
}

impl Staging for PathBuf {
    fn open(&self) -> std::io::Result<std::fs::File> {
        self.as_path().open()
    }

    fn path(&self) -> &Path {
        self
    }

    fn discard(&self) -> std::io::Result<()> {
        self.as_path().discard()
    }
}

/// Downloads `path` from the first mirror that delivers exactly `expected` into `staging`, and
/// returns the length and digests of what it delivered (SHA-256 always, and every algorithm
/// `expected` lists).
///
/// On success `staging` holds the verified bytes; the caller makes a batch of downloads durable
/// at once ([`crate::fsutil::sync_filesystem`]) before relying on them after a crash (large
/// files are written back in the background as they arrive). On failure it holds either
/// nothing or a prefix kept for a later resume, hashed again then; it never holds bytes that
/// failed a check.
pub async fn download_verified(
    transport: &dyn Transport,
    mirrors: &[Url],
    path: &str,
    staging: &(impl Staging + ?Sized),
    expected: &ExpectedFile,
) -> Result<ContentDigests, DownloadError> {
    let mut attempts = Vec::new();
    for mirror in mirrors {
        let url = url_under(mirror, path).ok_or_else(|| DownloadError::BadUrl {
            path: path.to_owned(),
            mirror: mirror.clone(),
        })?;
        let mut result = attempt(transport, &url, staging, expected).await?;
        if let Err(AttemptError::HashMismatch { .. }) = &result {
            // The prefix kept from an earlier attempt may have been the bad part: start over.
            result = attempt(transport, &url, staging, expected).await?;
        }
        match result {
            Ok(digests) => return Ok(digests),
            Err(err) => {
                tracing::warn!(%url, error = %err, "mirror failed, trying the next one");
                attempts.push((url, err));
            }
        }
    }
    Err(DownloadError::AllMirrorsFailed {
        path: path.to_owned(),
        attempts,
    })
}

/// One attempt at one URL. The outer `Result` is a local disk failure (fatal); the inner one
/// is this mirror's failure.
async fn attempt(
    transport: &dyn Transport,
    url: &Url,
    staging: &(impl Staging + ?Sized),
    expected: &ExpectedFile,
) -> Result<Result<ContentDigests, AttemptError>, DownloadError> {
    let io = |source| DownloadError::Staging {
        path: staging.path().to_path_buf(),
        source,
    };
    let mut file = staging.open().map_err(io)?;
    let mut have = file.metadata().map_err(io)?.len();
    if have > expected.length {
        file.set_len(0).map_err(io)?;
        have = 0;
    }
    let new_hasher = || ContentHasher::new(expected.digests.keys().copied());
    let mut hasher = new_hasher();
    if have > 0 {
        hash_prefix(&mut file, have, &mut hasher).map_err(io)?;
    }
    if have == expected.length {
        return finish(&file, hasher, expected, staging.path()).map_err(io);
    }
    let body = match transport.open(url, have).await {
        Ok(body) => body,
        Err(err) => return Ok(Err(err.into())),
    };
    if body.offset != have {
        // The server ignored the range: start from zero.
        file.set_len(0).map_err(io)?;
        hasher = new_hasher();
        have = 0;
    }
    file.seek(SeekFrom::Start(have)).map_err(io)?;
    let mut stream = body.stream;
    let mut flusher = Flusher::default();
    // Chunks are written as they come: over a fast connection they are hundreds of KiB
    // (hyper reads as much as the connection holds), over a slow one system calls are cheap.
    loop {
        let chunk = match stream.try_next().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            // What arrived is kept for a resume; it will be hashed again.
            Err(err) => return Ok(Err(err.into())),
        };
        if have + chunk.len() as u64 > expected.length {
            file.set_len(0).map_err(io)?;
            return Ok(Err(AttemptError::TooLong {
                expected: expected.length,
            }));
        }
        hasher.update(&chunk);
        have += chunk.len() as u64;
        file.write_all(&chunk).map_err(io)?;
        flusher.wrote(&file, chunk.len()).await.map_err(io)?;
    }
    flusher.wait().await.map_err(io)?;
    if have < expected.length {
        return Ok(Err(AttemptError::TooShort {
            expected: expected.length,
            got: have,
        }));
    }
    finish(&file, hasher, expected, staging.path()).map_err(io)
}

/// Bytes written between two background flushes.
const FLUSH_EVERY: u64 = 32 * 1024 * 1024;

/// Starts writing a large download back to disk in the background as it arrives, so the sync
/// at the end (which makes the staged file durable before it can be installed) has little
/// left to do and the disk works while the network does.
#[derive(Default)]
struct Flusher {
    pending: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    since: u64,
}

impl Flusher {
    async fn wrote(&mut self, file: &std::fs::File, bytes: usize) -> std::io::Result<()> {
        self.since += bytes as u64;
        if self.since < FLUSH_EVERY {
            return Ok(());
        }
        self.since = 0;
        self.wait().await?;
        let file = file.try_clone()?;
        self.pending = Some(tokio::task::spawn_blocking(move || file.sync_data()));
        Ok(())
    }

    async fn wait(&mut self) -> std::io::Result<()> {
        match self.pending.take() {
            Some(flush) => flush.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

/// Hashes the first `len` bytes of `file` into `hasher`.
fn hash_prefix(
    file: &mut std::fs::File,
    len: u64,
    hasher: &mut ContentHasher,
) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = file.take(len);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

/// Compares the final hashes; keeps a file that matches every expected one, empties one that
/// does not.
fn finish(
    file: &std::fs::File,
    hasher: ContentHasher,
    expected: &ExpectedFile,
    staging: &Path,
) -> std::io::Result<Result<ContentDigests, AttemptError>> {
    let digests = hasher.finish();
    for (&algorithm, want) in &expected.digests {
        // The hasher computed every expected algorithm; a missing digest fails the check.
        let got = digests.get(algorithm);
        if got != Some(want.as_slice()) {
            file.set_len(0)?;
            tracing::warn!(staging = %staging.display(), %algorithm, "downloaded file failed its hash check");
            return Ok(Err(AttemptError::HashMismatch {
                algorithm,
                expected: hex::encode(want),
                got: got.map(hex::encode).unwrap_or_else(|| "nothing".into()),
            }));
        }
    }
    Ok(Ok(digests))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_under_encodes_segments_and_refuses_climbing() {
        let base = Url::parse("https://mirror.example/repo/targets/").expect("valid URL");
        let url = url_under(&base, "dir/a b#c.bin").expect("valid path");
        assert_eq!(
            url.as_str(),
            "https://mirror.example/repo/targets/dir/a%20b%23c.bin"
        );
        assert!(url_under(&base, "../secret").is_none());
        assert!(url_under(&base, "a//b").is_none());
        let no_slash = Url::parse("https://mirror.example/repo").expect("valid URL");
        assert_eq!(
            url_under(&no_slash, "x").expect("valid path").as_str(),
            "https://mirror.example/repo/x"
        );
    }
}
