//! File-system operations relative to open folder handles that never follow a link.
//!
//! Every write the install root makes goes through a [`Dir`]: a handle on a folder opened
//! once, and names resolved one component at a time with `openat(O_NOFOLLOW)`, `mkdirat`,
//! `renameat` and `unlinkat`. A folder swapped for a symbolic link after it was opened cannot
//! redirect anything (the handle still points at the real folder); a link met on the way is
//! refused; a file is created only as a new file (`O_CREAT | O_EXCL`, which never follows a
//! link) after whatever had its name was removed. The paths kept beside the handles serve
//! messages only.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

/// Mode of every file the updater creates: no setuid, not executable, not world-writable.
pub(crate) const FILE_MODE: u32 = 0o644;

/// True when `err` says a name is a symbolic link or not of the kind asked for (a folder where
/// a file is needed or the reverse); such a name is refused, never followed.
pub(crate) fn is_not_plain(err: &io::Error) -> bool {
    let code = err.raw_os_error();
    [Errno::LOOP, Errno::NOTDIR, Errno::ISDIR]
        .iter()
        .any(|e| code == Some(e.raw_os_error()))
}

fn not_plain() -> io::Error {
    io::Error::from(Errno::LOOP)
}

/// An open folder.
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens the folder at `path` (created if missing). The path itself is trusted: it is the
    /// configured install root, and a link there is the administrator's choice.
    pub(crate) fn open_root(path: &Path) -> io::Result<Dir> {
        std::fs::create_dir_all(path)?;
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The folder's path, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in this folder, for messages.
    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Opens the sub-folder `name`; a link or a non-folder there is refused.
    pub(crate) fn sub(&self, name: &str) -> io::Result<Dir> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir {
            fd,
            path: self.path.join(name),
        })
    }

    /// Opens the sub-folder `name`, creating it with `mode` if it does not exist.
    pub(crate) fn sub_create(&self, name: &str, mode: u32) -> io::Result<Dir> {
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(err) => return Err(err.into()),
        }
        self.sub(name)
    }

    /// Opens the folder at the slash-separated relative path `rel`, one component at a time
    /// (creating missing ones when `create`); `None` when one is missing and not created.
    pub(crate) fn walk(&self, rel: &str, create: bool) -> io::Result<Option<Dir>> {
        let mut dir = self.sub(".")?;
        dir.path = self.path.clone();
        for name in rel.split('/').filter(|c| !c.is_empty()) {
            if name == "." || name == ".." {
                return Err(not_plain());
            }
            let next = if create {
                dir.sub_create(name, 0o755)
            } else {
                dir.sub(name)
            };
            dir = match next {
                Ok(next) => next,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(err) => return Err(err),
            };
        }
        Ok(Some(dir))
    }

    /// What `name` is, without following a link; `None` when nothing has that name.
    pub(crate) fn kind(&self, name: &str) -> io::Result<Option<FileType>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(FileType::from_raw_mode(stat.st_mode))),
            Err(Errno::NOENT) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Opens the regular file `name` for reading (and writing when `write`); `None` when it
    /// does not exist. A link, a special file or a file with several hard links is refused.
    pub(crate) fn open_file(&self, name: &str, write: bool) -> io::Result<Option<File>> {
        let access = if write { OFlags::RDWR } else { OFlags::RDONLY };
        // NONBLOCK: opening a FIFO planted at the name must not hang; it is refused below.
        let flags = access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let stat = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile || stat.st_nlink != 1 {
            return Err(not_plain());
        }
        rustix::fs::fcntl_setfl(&fd, OFlags::empty())?;
        Ok(Some(File::from(fd)))
    }

    /// Creates `name` as a new, empty file with mode 0644, after removing whatever had the
    /// name (a file or a link; a folder there is refused). Never follows a link.
    pub(crate) fn create_new(&self, name: &str) -> io::Result<File> {
        self.remove_file(name)?;
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(FILE_MODE),
        )?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(FILE_MODE))?;
        Ok(File::from(fd))
    }

    /// The content of the regular file `name`; `None` when it does not exist.
    pub(crate) fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        let Some(mut file) = self.open_file(name, false)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(Some(bytes))
    }

    /// Length and SHA-256 of the regular file `name`; `None` when there is no regular file
    /// with a single link there (a link is never followed).
    pub(crate) fn hash(&self, name: &str) -> io::Result<Option<(u64, [u8; 32])>> {
        match self.open_file(name, false) {
            Ok(Some(file)) => hash_reader(file).map(Some),
            Ok(None) => Ok(None),
            Err(err) if is_not_plain(&err) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Writes `bytes` to a new temporary file, syncs it, renames it over `name` and syncs the
    /// folder: `name` then holds the old content or the new, never a mix; a link at `name` or
    /// at the temporary name is replaced, never followed.
    pub(crate) fn write_atomic(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        herald_files::write_atomic_at(&self.fd, name, bytes, FILE_MODE)
    }

    /// Renames `from` in this folder to `to` in `to_dir` (a link is moved, not followed; a
    /// link at `to` is replaced), then syncs both folders.
    pub(crate) fn rename(&self, from: &str, to_dir: &Dir, to: &str) -> io::Result<()> {
        rustix::fs::renameat(&self.fd, from, &to_dir.fd, to)?;
        to_dir.sync()?;
        if !std::ptr::eq(self, to_dir) {
            self.sync()?;
        }
        Ok(())
    }

    /// Removes the file or link `name`, if there is one.
    pub(crate) fn remove_file(&self, name: &str) -> io::Result<()> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Removes `name` and, when it is a folder, everything in it (links are removed, never
    /// followed).
    pub(crate) fn remove_all(&self, name: &str) -> io::Result<()> {
        match self.kind(name)? {
            None => Ok(()),
            Some(FileType::Directory) => {
                let sub = self.sub(name)?;
                for (entry, _) in sub.entries()? {
                    sub.remove_all(&entry)?;
                }
                match rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR) {
                    Ok(()) | Err(Errno::NOENT) => Ok(()),
                    Err(err) => Err(err.into()),
                }
            }
            Some(_) => self.remove_file(name),
        }
    }

    /// The names in this folder with their kinds (links reported as links).
    pub(crate) fn entries(&self) -> io::Result<Vec<(String, FileType)>> {
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.fd)? {
            let entry = entry?;
            let raw = entry.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            let name = OsString::from_vec(raw.to_vec())
                .into_string()
                .map_err(|name| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: name is not UTF-8", self.path.join(name).display()),
                    )
                })?;
            let kind = match entry.file_type() {
                FileType::Unknown => self.kind(&name)?.unwrap_or(FileType::Unknown),
                kind => kind,
            };
            out.push((name, kind));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Makes renames and creations in this folder durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd).map_err(io::Error::from)
    }

    /// Makes everything written on this folder's file system durable (Linux: one `syncfs`);
    /// elsewhere the given files of this folder are synced one by one.
    pub(crate) fn sync_filesystem(&self, files: &[&str]) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            let _ = files;
            rustix::fs::syncfs(&self.fd).map_err(io::Error::from)
        }
        #[cfg(not(target_os = "linux"))]
        {
            for name in files {
                if let Some(file) = self.open_file(name, false)? {
                    file.sync_all()?;
                }
            }
            Ok(())
        }
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Length and SHA-256 of everything `reader` yields.
pub(crate) fn hash_reader(mut reader: impl Read) -> io::Result<(u64, [u8; 32])> {
    let mut hasher = Sha256::new();
    let mut length = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        length += n as u64;
    }
    Ok((length, hasher.finalize().into()))
}
