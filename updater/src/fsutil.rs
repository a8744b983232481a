//! Small file-system helpers shared by the metadata store and the install root: durable
//! atomic writes and streaming hashes.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use herald_manifest::{ContentDigests, HashAlgorithm};

use crate::hashing::ContentHasher;

/// Writes `bytes` to a temporary file beside `path`, syncs it, renames it over `path` and
/// syncs the folder: after a crash `path` holds the old content or the new, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Syncs a folder, making renames and creations in it durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

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
