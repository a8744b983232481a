//! Durable file writes, one rule for all of Herald.
//!
//! [`write_atomic`] and [`write_atomic_at`] write the new content to a fresh temporary file in
//! the same folder (created with `O_CREAT | O_EXCL | O_NOFOLLOW`, so a link planted at its name
//! is never followed), fsync it, rename it over the target (a link at the target is replaced,
//! not followed), then fsync the folder so the rename itself survives a crash. Readers see the
//! old content or the new one, never a mix, and after the call returns `Ok` the new content is
//! on disk. Every error is reported; on error the temporary file is removed and the target is
//! left as it was.
//!
//! Herald runs on Unix; the file operations go through `rustix` relative to a folder handle.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags};

/// Mode of files only their owner may read: keys, tokens, passphrases.
pub const PRIVATE: u32 = 0o600;
/// Mode of files anyone may read: certificates, configuration, metadata.
pub const PUBLIC: u32 = 0o644;

/// Writes `bytes` to `path` atomically and durably with permission bits `mode` (see the crate
/// documentation). The folder must exist.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let (dir, name) = split(path)?;
    write_atomic_at(&open_dir(dir)?, name, bytes, mode)
}

/// [`write_atomic`] with mode [`PRIVATE`].
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic(path, bytes, PRIVATE)
}

/// [`write_atomic`] with mode [`PUBLIC`].
pub fn write_public(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic(path, bytes, PUBLIC)
}

/// [`write_atomic`] for the file `name` in the open folder `dir`: the folder cannot be swapped
/// for a link between the check and the write.
pub fn write_atomic_at(dir: impl AsFd, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = dir.as_fd();
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a file name"),
        ));
    }
    let tmp = temp_name(name);
    let written = (|| {
        let file = rustix::fs::openat(
            dir,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        // The mode asked for, whatever the process's umask.
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
        write_all(&file, bytes)?;
        rustix::fs::fsync(&file)?;
        rustix::fs::renameat(dir, tmp.as_str(), dir, name)?;
        Ok::<_, io::Error>(())
    })();
    if let Err(e) = written {
        // The temporary file is ours alone; the error that matters is the first one.
        let _cleanup = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
        return Err(e);
    }
    rustix::fs::fsync(dir)?;
    Ok(())
}

/// Fsyncs the folder at `path`, making renames and creations in it durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    Ok(rustix::fs::fsync(open_dir(path)?)?)
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The folder and file name of `path` (a bare name is in the current folder).
fn split(path: &Path) -> io::Result<(&Path, &str)> {
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((dir, name))
}

/// A temporary name beside `name`, unique to this process and call.
fn temp_name(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(".{name}.{}-{n}.tmp", std::process::id())
}

fn write_all(file: &OwnedFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(file, bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_content_with_the_mode_asked_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_atomic(&path, b"old", PUBLIC).unwrap();
        write_atomic(&path, b"new", PRIVATE).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, PRIVATE);
        assert_eq!(names(dir.path()), ["key.pem"]);
    }

    #[test]
    fn a_link_at_the_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"keep").unwrap();
        let path = dir.path().join("state.json");
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        write_atomic(&path, b"{}", PUBLIC).unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
    }

    #[test]
    fn failures_are_reported_and_leave_the_target_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-folder").join("file");
        assert!(write_atomic(&missing, b"x", PUBLIC).is_err());
        let path = dir.path().join("a");
        write_atomic(&path, b"first", PUBLIC).unwrap();
        // Renaming a file over a folder fails after the temporary file was written.
        let folder = dir.path().join("folder");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("inside"), b"x").unwrap();
        assert!(write_atomic(&folder, b"second", PUBLIC).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(names(dir.path()), ["a", "folder"], "no temporary file left");
        assert!(write_atomic_at(open_dir(dir.path()).unwrap(), "../x", b"", PUBLIC).is_err());
    }
}
