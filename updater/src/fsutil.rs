//! Small file-system helpers shared by the metadata store and the install root: streaming
//! hashes and file-system syncs (durable writes are `herald_files`).

use std::fs;
use std::io::Read;
use std::path::Path;

use herald_manifest::{ContentDigests, HashAlgorithm};

use crate::hashing::ContentHasher;

/// Length, SHA-256 and the digests under `algorithms` of a regular file (links are not
/// followed); `None` when there is no regular file at `path`.
pub(crate) fn hash_file_with(
    path: &Path,
    algorithms: impl IntoIterator<Item = HashAlgorithm>,
) -> std::io::Result<Option<ContentDigests>> {
    let mut hasher = ContentHasher::new(algorithms);
    let length = read_regular_file(path, |chunk| hasher.update(chunk))?;
    Ok(length.map(|_| hasher.finish()))
}

/// Feeds the content of the regular file at `path` to `consume` and returns its length;
/// `None` when there is no regular file there (links are not followed).
fn read_regular_file(path: &Path, mut consume: impl FnMut(&[u8])) -> std::io::Result<Option<u64>> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Ok(None),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    }
    let mut file = fs::File::open(path)?;
    let mut length = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        consume(&buf[..n]);
        length += n as u64;
    }
    Ok(Some(length))
}

/// Makes everything written on the file system holding `path` durable: one `syncfs` on Linux
/// (far cheaper than one fsync per file for a batch of downloads); elsewhere the files listed
/// are synced one by one.
pub(crate) fn sync_filesystem(path: &Path, files: &[&Path]) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let _ = files;
        let handle = fs::File::open(path)?;
        rustix::fs::syncfs(&handle).map_err(std::io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        for file in files {
            fs::File::open(file)?.sync_all()?;
        }
        Ok(())
    }
}
