//! Atomic file writes and directory walks.

use std::fs;
use std::path::{Path, PathBuf};

use crate::Error;

/// Writes `bytes` to `path` atomically and durably ([`herald_files::write_atomic`]), creating
/// its folder if needed. Readers see the old content or the new one, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = parent(path)?;
    fs::create_dir_all(dir).map_err(Error::io(dir))?;
    herald_files::write_public(path, bytes).map_err(Error::io(path))
}

/// The folder holding `path`.
pub(crate) fn parent(path: &Path) -> Result<&Path, Error> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Ok(Path::new(".")),
        Some(p) => Ok(p),
        None => Err(Error::Usage(format!("{}: not a file path", path.display()))),
    }
}

/// A temporary name beside `path`, unique to this process.
pub(crate) fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Fsyncs a folder so that renames in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    herald_files::sync_dir(dir).map_err(Error::io(dir))
}

/// Makes the files just written under `dir` (and their renames) durable. On Linux one
/// `syncfs` flushes the whole file system, far cheaper than one fsync per file for releases
/// of many small files; elsewhere every file and folder is fsynced.
pub(crate) fn sync_tree(dir: &Path, files: &[PathBuf]) -> Result<(), Error> {
    #[cfg(target_os = "linux")]
    {
        let _ = files;
        let handle = fs::File::open(dir).map_err(Error::io(dir))?;
        rustix::fs::syncfs(&handle).map_err(|e| Error::Io {
            path: dir.to_path_buf(),
            source: e.into(),
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let mut dirs = Vec::new();
        for file in files {
            fs::File::open(file)
                .and_then(|f| f.sync_all())
                .map_err(Error::io(file))?;
            if let Some(parent) = file.parent() {
                dirs.push(parent.to_path_buf());
            }
        }
        dirs.sort();
        dirs.dedup();
        dirs.into_iter().try_for_each(|d| sync_dir(&d))?;
        sync_dir(dir)
    }
}

/// Every regular file under `root`, as `/`-separated relative paths, sorted. Symbolic links
/// and non-UTF-8 names are refused rather than guessed at.
pub(crate) fn walk_files(root: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), root.to_path_buf())];
    while let Some((prefix, dir)) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(Error::io(&dir))? {
            let entry = entry.map_err(Error::io(&dir))?;
            let path = entry.path();
            let name = entry.file_name().into_string().map_err(|_| {
                Error::Repository(format!("{}: file name is not UTF-8", path.display()))
            })?;
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let kind = entry.file_type().map_err(Error::io(&path))?;
            if kind.is_dir() {
                stack.push((rel, path));
            } else if kind.is_file() {
                out.push((rel, path));
            } else {
                return Err(Error::Repository(format!(
                    "{}: not a regular file or folder (symbolic links are refused)",
                    path.display()
                )));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads a whole file.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, Error> {
    fs::read(path).map_err(Error::io(path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/file.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path().join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn symlink_in_release_folder_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        assert!(walk_files(dir.path()).is_err());
    }
}
