//! The install root: atomic installation of a verified release, crash recovery and rollback.
//!
//! # Layout
//!
//! ```text
//! ROOT/                         files of the installed release, at their target paths
//! ROOT/.herald/                 the updater's state (mode 0700; refused if it is a link)
//! ROOT/.herald/staging/HASH     a verified (or partial) download of one target, named by the
//!                               SHA-256 of its target path, waiting to be renamed into place
//! ROOT/.herald/installed.json   the installed release: version and every file's length/SHA-256
//! ROOT/.herald/journal.json     present only while an install is in progress
//! ROOT/.herald/txn/             files replaced or removed by the install in progress
//! ROOT/.herald/previous/        the release before the installed one, for rollback
//! ROOT/.herald/quarantine/      unlisted files moved away, when configured
//! ROOT/.herald/rollout.json     releases that failed or were rolled back, not to retry
//! ```
//!
//! # Protocol
//!
//! An install writes the journal (the new release, the old release, one entry per changed
//! file), then for each entry moves the old file into `txn/` and renames the staged file into
//! place, then writes `installed.json`, then marks the journal committed (the commit point),
//! then moves `txn/` to `previous/` and deletes the journal. Every write is synced and every
//! rename is followed by a sync of its folder.
//!
//! On a failure or a crash at any step nothing is cleaned up in place: the next
//! [`InstallRoot::open`] reads the journal and either finishes a committed install or undoes
//! an uncommitted one, entry by entry, in a way that is itself safe to interrupt and repeat.
//! So after any crash and the next start, the installed set is exactly the old release or the
//! new one. Downloads are staged under the state folder, never among the installed files, so
//! a partial download left by a crash is invisible to whatever lists the install root; the
//! next cycle resumes it (it is verified whole again) and a committed install removes it.
//!
//! # Safety
//!
//! Target paths are [`TargetPath`]s (no `..`, no absolute paths). Every file operation goes
//! through [`crate::safefs`]: relative to a handle on the install root or on the state folder,
//! opened once, one path component at a time, never following a link (`O_NOFOLLOW`,
//! `openat`/`mkdirat`/`renameat`/`unlinkat`). A link on the way to a file is refused; a link
//! where the updater creates a file is removed and the file created new (`O_EXCL`). So a
//! folder swapped for a link at any moment cannot redirect a write outside the root. Files are
//! created with mode 0644 whatever the source said (no setuid, no world-writable files). A
//! file already in place counts as installed only if its content hashes to the verified
//! SHA-256: a name alone is never trusted.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use herald_manifest::{TargetPath, VerifiedTarget};
use rustix::fs::FileType;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::safefs::{hash_reader, is_not_plain, Dir};
use crate::zipcheck::{check_archive, ZipCheckError, ZipLimits};

/// Name of the updater's state folder inside the install root. No target may live under it.
pub const STATE_DIR: &str = ".herald";
/// Suffix of the staged files of earlier versions (staged beside their destination); no
/// target name may end with it, and leftovers are removed once an install commits.
pub const STAGED_SUFFIX: &str = ".herald-staged";
/// Folder of staged downloads, inside the state folder.
const STAGING_DIR: &str = "staging";
/// What the updater remembers of rollouts (releases that failed or were rolled back),
/// inside the state folder.
const ROLLOUT_MEMORY: &str = "rollout.json";

/// A file of an installed release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Length in bytes.
    pub length: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// A release as installed: its version and every file it consists of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The version of the targets metadata the release came from.
    pub version: u64,
    /// Every file, by target path.
    pub files: BTreeMap<String, FileRecord>,
    /// Zip targets unpacked into the install root, by target path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub packages: BTreeMap<String, PackageRecord>,
}

/// A zip target that was unpacked: its own verified length and hash, and the files it gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRecord {
    /// The zip file's record, as verified against the metadata.
    pub zip: FileRecord,
    /// The paths of the files unpacked from it.
    pub files: Vec<String>,
}

/// Why an install-root operation failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum InstallError {
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A state file is not what this version writes.
    #[error("{path}: corrupt state file: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A target path collides with the updater's own names.
    #[error("target {0}: reserved name (.herald/ or *.herald-staged)")]
    ReservedPath(String),
    /// A folder on the way to a file (or the state folder) is a symbolic link or not a folder.
    #[error("{0}: not a plain folder inside the install root; refusing to write through it")]
    UnsafeFolder(PathBuf),
    /// A file the updater reads or replaces is a symbolic link, a folder, a special file or
    /// has several hard links.
    #[error("{0}: a link or not a plain file; refusing to follow it")]
    NotPlainFile(PathBuf),
    /// A staged file does not have the verified length and hash.
    #[error("{0}: staged file does not match its verified length and SHA-256")]
    StagedMismatch(PathBuf),
    /// Rollback was asked for, but no previous release is kept.
    #[error("no previous release to roll back to")]
    NoPrevious,
    /// A zip target could not be unpacked.
    #[error("package {0}: {1}")]
    Unpack(String, #[source] Box<ZipCheckError>),
    /// A path is not a valid target path.
    #[error("{path}: {source}")]
    BadPath {
        path: String,
        #[source]
        source: herald_manifest::PathError,
    },
    /// A crash was simulated at this step (tests only).
    #[error("simulated crash at step {0}")]
    SimulatedCrash(usize),
}

/// How a simulated crash stops an install (fault injection for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Return [`InstallError::SimulatedCrash`] at once, cleaning up nothing.
    Error,
    /// Abort the process, as a power cut or `kill -9` would.
    Abort,
}

/// What [`InstallRoot::open`] found and did about an interrupted install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing was interrupted.
    Clean,
    /// An install had committed; its last steps were finished.
    Finished,
    /// An install had not committed; it was undone.
    Undone,
}

/// A staging file of the install root, opened by [`InstallRoot::stage`] relative to the state
/// folder without following any link; downloads write through this handle only.
#[derive(Debug)]
pub struct StagedFile {
    file: fs::File,
    dir: Dir,
    name: String,
    path: PathBuf,
}

impl crate::download::Staging for StagedFile {
    fn open(&self) -> std::io::Result<fs::File> {
        self.file.try_clone()
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn discard(&self) -> std::io::Result<()> {
        self.dir.remove_file(&self.name)
    }
}

/// Part of a new release whose content was verified: a target staged by a verified download
/// or found in place with the verified content, or a verified zip target with the files
/// unpacked from it. Only the updater's verification steps create these.
///
/// Its destination is the target's path, or, for a release of a signed rollout policy, the
/// target's path below the release's folder (`releases/N/app.bin` installs as `app.bin`).
#[derive(Debug, Clone)]
pub struct ReadyFile {
    target: VerifiedTarget,
    /// The destination when it is not the target's path (no second copy of every path of a
    /// repository without a rollout policy).
    dest: Option<TargetPath>,
    contents: Contents,
}

#[derive(Debug, Clone)]
enum Contents {
    /// The target itself, staged under this name (changed) or in place.
    File(Option<String>),
    /// Files unpacked from the target: path, record, staging name (`None`: in place).
    Unpacked(Vec<(String, FileRecord, Option<String>)>),
}

impl ReadyFile {
    /// A verified download for `dest` (`None`: the target's path), staged in `staged` (from
    /// [`InstallRoot::stage`]).
    pub(crate) fn staged(
        target: VerifiedTarget,
        dest: Option<TargetPath>,
        staged: StagedFile,
    ) -> Self {
        ReadyFile {
            target,
            dest,
            contents: Contents::File(Some(staged.name)),
        }
    }

    /// A file found at its destination `dest` (`None`: the target's path) with the verified
    /// content.
    pub(crate) fn in_place(target: VerifiedTarget, dest: Option<TargetPath>) -> Self {
        ReadyFile {
            target,
            dest,
            contents: Contents::File(None),
        }
    }

    /// A verified zip target for `dest` (`None`: the target's path) and the files unpacked
    /// from it (each staged, or in place).
    pub(crate) fn unpacked(
        target: VerifiedTarget,
        dest: Option<TargetPath>,
        files: Vec<(String, FileRecord, Option<String>)>,
    ) -> Self {
        ReadyFile {
            target,
            dest,
            contents: Contents::Unpacked(files),
        }
    }

    /// The verified target.
    pub fn target(&self) -> &VerifiedTarget {
        &self.target
    }

    /// Where it is installed, relative to the install root.
    pub fn dest(&self) -> &TargetPath {
        self.dest.as_ref().unwrap_or(self.target.path())
    }

    /// True when something must be moved into place (it changed).
    pub fn is_staged(&self) -> bool {
        match &self.contents {
            Contents::File(staged) => staged.is_some(),
            Contents::Unpacked(files) => files.iter().any(|(_, _, s)| s.is_some()),
        }
    }
}

/// One changed path of an install in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    path: String,
    /// The staged file to move into place, relative to the root; `None` removes the path.
    staged: Option<String>,
    /// Whether a file was in place before (it is moved to `txn/files/` first).
    had_old: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Journal {
    release: Release,
    previous: Option<Release>,
    entries: Vec<Entry>,
    committed: bool,
}

/// The folder an updater manages.
#[derive(Debug)]
pub struct InstallRoot {
    root: PathBuf,
    /// Handle on the root, opened once.
    dir: Dir,
    /// Handle on the state folder, opened once (never through a link).
    state: Dir,
    /// Fault injection: stop before step N of an install (see [`CrashMode`]).
    crash_at: Option<(usize, CrashMode)>,
    steps: std::cell::Cell<usize>,
}

impl InstallRoot {
    /// Opens (creating if needed) an install root and recovers from any interrupted install.
    /// A state folder that is a symbolic link (or not a folder) is refused.
    pub fn open(root: impl Into<PathBuf>) -> Result<(Self, Recovery), InstallError> {
        let root = root.into();
        let dir = Dir::open_root(&root).map_err(io_err("open", &root))?;
        let state = dir
            .sub_create(STATE_DIR, 0o700)
            .map_err(folder_err("open", dir.join(STATE_DIR)))?;
        let this = InstallRoot {
            root,
            dir,
            state,
            crash_at: None,
            steps: std::cell::Cell::new(0),
        };
        let recovery = this.recover()?;
        Ok((this, recovery))
    }

    /// Makes the next install stop, as if the process died, just before its step `step`
    /// (counted from 0). For crash-injection tests.
    pub fn simulate_crash_at(&mut self, step: usize, mode: CrashMode) {
        self.crash_at = Some((step, mode));
        self.steps.set(0);
    }

    /// The folder managed.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The installed release, if any.
    pub fn installed(&self) -> Result<Option<Release>, InstallError> {
        read_json(&self.state, "installed.json")
    }

    /// The rollout memory kept in the state folder (`.herald/rollout.json`), if any.
    pub fn rollout_memory<T: for<'de> Deserialize<'de>>(&self) -> Result<Option<T>, InstallError> {
        read_json(&self.state, ROLLOUT_MEMORY)
    }

    /// Replaces the rollout memory, atomically and durably.
    pub fn set_rollout_memory<T: Serialize>(&self, memory: &T) -> Result<(), InstallError> {
        write_json_atomic(&self.state, ROLLOUT_MEMORY, memory)
    }

    /// The release kept for rollback, if any.
    pub fn previous(&self) -> Result<Option<Release>, InstallError> {
        match self.state_sub("previous", false)? {
            Some(previous) => read_json(&previous, "release.json"),
            None => Ok(None),
        }
    }

    /// Opens the staging file of `target` for a download, under the state folder. What an
    /// interrupted download left there is kept for a resume (the download verifies the whole
    /// file again); anything else at the name (a link, a folder, a hard link) is removed and
    /// the file created new. Refuses a target whose destination lies through a link.
    pub fn stage(&self, target: &TargetPath) -> Result<StagedFile, InstallError> {
        self.stage_file(target.as_str(), false)
    }

    fn stage_file(&self, path: &str, fresh: bool) -> Result<StagedFile, InstallError> {
        check_reserved(path)?;
        self.dest_exists(path)?;
        let dir = self.state_create(STAGING_DIR)?;
        let name = hex::encode(Sha256::digest(path.as_bytes()));
        let file_path = dir.join(&name);
        let kept = if fresh {
            None
        } else {
            match dir.open_file(&name, true) {
                Ok(kept) => kept,
                Err(err) if is_not_plain(&err) => None,
                Err(err) => return Err(io_err("open", &file_path)(err)),
            }
        };
        let file = match kept {
            Some(file) => file,
            None => {
                dir.remove_all(&name)
                    .map_err(io_err("remove", &file_path))?;
                dir.create_new(&name)
                    .map_err(file_err("create", file_path.clone()))?
            }
        };
        Ok(StagedFile {
            file,
            dir,
            name,
            path: file_path,
        })
    }

    /// Installs a release atomically: `files` is the complete verified file set of the new
    /// release, each either staged or already in place. Files of the old release that the new
    /// one does not list are removed (and kept for rollback).
    pub fn install(&self, version: u64, files: &[ReadyFile]) -> Result<(), InstallError> {
        let mut release = Release {
            version,
            files: BTreeMap::new(),
            packages: BTreeMap::new(),
        };
        let mut sources = BTreeMap::new();
        for file in files {
            let target_path = file.dest().as_str().to_owned();
            let record = FileRecord {
                length: file.target.length(),
                sha256: file.target.sha256().to_owned(),
            };
            let parts = match &file.contents {
                Contents::File(staged) => vec![(target_path, record, staged.clone())],
                Contents::Unpacked(parts) => {
                    release.packages.insert(
                        target_path,
                        PackageRecord {
                            zip: record,
                            files: parts.iter().map(|(p, _, _)| p.clone()).collect(),
                        },
                    );
                    parts.clone()
                }
            };
            for (path, record, staged) in parts {
                check_reserved(&path)?;
                if let Some(staged) = staged {
                    sources.insert(path.clone(), staged);
                }
                release.files.insert(path, record);
            }
        }
        self.transact(release, sources)
    }

    /// Unpacks a verified zip target for `dest` (`None`: the target's path), downloaded to
    /// `staged`: each entry is staged for `PACKAGE/ENTRY`, where PACKAGE is the destination
    /// without `.zip`. Entries are checked before anything is written ([`crate::zipcheck`]).
    pub(crate) fn unpack(
        &self,
        zip: VerifiedTarget,
        dest: Option<TargetPath>,
        staged: StagedFile,
    ) -> Result<ReadyFile, InstallError> {
        use crate::download::Staging;
        let path = dest.as_ref().unwrap_or(zip.path()).as_str();
        let prefix = path.strip_suffix(".zip").unwrap_or(path);
        let unpack_err = |e: ZipCheckError| InstallError::Unpack(path.to_owned(), Box::new(e));
        let mut file = staged.open().map_err(io_err("open", &staged.path))?;
        file.seek(SeekFrom::Start(0))
            .map_err(io_err("read", &staged.path))?;
        let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
            .map_err(|e| unpack_err(e.into()))?;
        let entries = check_archive(&mut archive, &ZipLimits::default()).map_err(unpack_err)?;
        let mut parts = Vec::with_capacity(entries.len());
        for entry in entries {
            let file_path = format!("{prefix}/{}", entry.path.as_str());
            TargetPath::new(file_path.as_str()).map_err(|source| InstallError::BadPath {
                path: file_path.clone(),
                source,
            })?;
            let out = self.stage_file(&file_path, true)?;
            let mut reader = std::io::Read::take(
                archive
                    .by_index(entry.index)
                    .map_err(|e| unpack_err(e.into()))?,
                entry.size + 1,
            );
            let mut writer = &out.file;
            let written =
                std::io::copy(&mut reader, &mut writer).map_err(io_err("write", &out.path))?;
            if written > entry.size {
                return Err(unpack_err(ZipCheckError::Overflow(entry.path.to_string())));
            }
            let (length, sha256) = hash_staged(&out)?;
            let record = FileRecord {
                length,
                sha256: hex::encode(sha256),
            };
            parts.push((file_path, record, Some(out.name)));
        }
        staged.discard().map_err(io_err("remove", &staged.path))?;
        Ok(ReadyFile::unpacked(zip, dest, parts))
    }

    /// Length and SHA-256 of the regular file at the target path `path`; `None` when there is
    /// none (a link, or a folder on the way that is a link, counts as none).
    pub fn hash(&self, path: &str) -> Result<Option<(u64, [u8; 32])>, InstallError> {
        check_reserved(path)?;
        let (dir, name) = match self.locate(&self.dir, path, false) {
            Ok(Some(found)) => found,
            Ok(None) | Err(InstallError::UnsafeFolder(_)) => return Ok(None),
            Err(err) => return Err(err),
        };
        dir.hash(&name).map_err(io_err("read", &dir.join(&name)))
    }

    /// True when `path` holds exactly the content of `record` (a regular file, not a link).
    pub fn holds(&self, path: &str, record: &FileRecord) -> Result<bool, InstallError> {
        Ok(matches(self.hash(path)?, record))
    }

    /// Goes back to the previous release. The release rolled back from becomes the previous
    /// one, so a second rollback goes forward again.
    pub fn rollback(&self) -> Result<(), InstallError> {
        let previous = self.previous()?.ok_or(InstallError::NoPrevious)?;
        let kept = self
            .state_sub("previous", false)?
            .ok_or(InstallError::NoPrevious)?;
        let mut sources = BTreeMap::new();
        for (path, record) in &previous.files {
            if self.holds(path, record)? {
                continue;
            }
            let backup_path = kept.join("files").join(path);
            let backup = self
                .locate(&kept, &format!("files/{path}"), false)?
                .map(|(dir, name)| dir.open_file(&name, false))
                .transpose()
                .map_err(file_err("open", backup_path.clone()))?
                .flatten()
                .ok_or_else(|| InstallError::StagedMismatch(backup_path.clone()))?;
            // Stage a copy, then check the copy: what is installed is what was hashed.
            let staged = self.stage_file(path, true)?;
            let mut writer = &staged.file;
            std::io::copy(&mut &backup, &mut writer).map_err(io_err("copy to", &staged.path))?;
            if !matches(Some(hash_staged(&staged)?), record) {
                return Err(InstallError::StagedMismatch(backup_path));
            }
            sources.insert(path.clone(), staged.name);
        }
        self.transact(previous, sources)
    }

    /// Files under the root that the installed release does not list (the updater's own state
    /// and staged files excepted), as target-style paths. Links are listed, never followed.
    pub fn unlisted(&self) -> Result<Vec<String>, InstallError> {
        let listed = self.installed()?.map(|r| r.files).unwrap_or_default();
        let mut found = Vec::new();
        walk_tree(&self.dir, "", &mut |_, _, rel| {
            if !rel.ends_with(STAGED_SUFFIX) && !listed.contains_key(&rel) {
                found.push(rel);
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// Moves the given unlisted files into `.herald/quarantine/`, keeping their paths. A
    /// folder on the way that is (or became) a link is refused.
    pub fn quarantine(&self, paths: &[String]) -> Result<(), InstallError> {
        let quarantine = self.state_create("quarantine")?;
        for path in paths {
            TargetPath::new(path.as_str()).map_err(|source| InstallError::BadPath {
                path: path.clone(),
                source,
            })?;
            check_reserved(path)?;
            let (from_dir, from) = self.locate(&self.dir, path, false)?.ok_or_else(|| {
                io_err("quarantine", &self.root.join(path))(std::io::ErrorKind::NotFound.into())
            })?;
            let (to_dir, to) = self.locate_create(&quarantine, path)?;
            from_dir
                .rename(&from, &to_dir, &to)
                .map_err(io_err("quarantine", &from_dir.join(&from)))?;
        }
        Ok(())
    }

    /// Opens the state sub-folder `name` (creating it when `create`); a link is refused.
    fn state_sub(&self, name: &str, create: bool) -> Result<Option<Dir>, InstallError> {
        let opened = if create {
            self.state.sub_create(name, 0o700)
        } else {
            self.state.sub(name)
        };
        match opened {
            Ok(dir) => Ok(Some(dir)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(folder_err("open", self.state.join(name))(err)),
        }
    }

    fn state_create(&self, name: &str) -> Result<Dir, InstallError> {
        self.state_sub(name, true)?
            .ok_or_else(|| InstallError::UnsafeFolder(self.state.join(name)))
    }

    /// The folder holding `rel` (relative to `base`) and its last name, walked one component
    /// at a time without following links; `None` when a folder on the way is missing (and
    /// `create` is false).
    fn locate(
        &self,
        base: &Dir,
        rel: &str,
        create: bool,
    ) -> Result<Option<(Dir, String)>, InstallError> {
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        if name.is_empty() || name == "." || name == ".." {
            return Err(InstallError::UnsafeFolder(base.join(rel)));
        }
        let dir = base
            .walk(parent, create)
            .map_err(folder_err("open", base.join(parent)))?;
        Ok(dir.map(|dir| (dir, name.to_owned())))
    }

    fn locate_create(&self, base: &Dir, rel: &str) -> Result<(Dir, String), InstallError> {
        self.locate(base, rel, true)?
            .ok_or_else(|| InstallError::UnsafeFolder(base.join(rel)))
    }

    /// Where the journal's staged name `staged` (relative to the root) is: names under the
    /// state folder are resolved from its handle; others are staged files of earlier versions.
    fn staged_location(&self, staged: &str) -> Result<Option<(Dir, String)>, InstallError> {
        match staged
            .strip_prefix(STATE_DIR)
            .and_then(|s| s.strip_prefix('/'))
        {
            Some(rest) => self.locate(&self.state, rest, false),
            None => self.locate(&self.dir, staged, false),
        }
    }

    /// True when something (a file or a link) is at the destination of `path`. A folder on
    /// the way that is a link, or a folder at the destination itself, is refused.
    fn dest_exists(&self, path: &str) -> Result<bool, InstallError> {
        let Some((dir, name)) = self.locate(&self.dir, path, false)? else {
            return Ok(false);
        };
        match dir
            .kind(&name)
            .map_err(io_err("inspect", &dir.join(&name)))?
        {
            None => Ok(false),
            Some(FileType::Directory) => Err(InstallError::UnsafeFolder(dir.join(&name))),
            Some(_) => Ok(true),
        }
    }

    /// Counts one step of an install; fails if a crash is simulated here.
    fn step(&self) -> Result<(), InstallError> {
        let n = self.steps.get();
        self.steps.set(n + 1);
        match self.crash_at {
            Some((step, CrashMode::Abort)) if step == n => {
                eprintln!("fault injection: aborting before install step {n}");
                std::process::abort();
            }
            Some((step, CrashMode::Error)) if step == n => {
                return Err(InstallError::SimulatedCrash(n))
            }
            _ => {}
        }
        Ok(())
    }

    /// The install protocol (see the module documentation). `sources` maps target paths to
    /// their staging names.
    fn transact(
        &self,
        release: Release,
        sources: BTreeMap<String, String>,
    ) -> Result<(), InstallError> {
        let previous = self.installed()?;
        let old_files = previous.as_ref().map(|r| &r.files);
        let staging = self.state_create(STAGING_DIR)?;
        let mut entries = Vec::new();
        for path in release.files.keys() {
            if let Some(name) = sources.get(path) {
                entries.push(Entry {
                    path: path.clone(),
                    staged: Some(format!("{STATE_DIR}/{STAGING_DIR}/{name}")),
                    had_old: self.dest_exists(path)?,
                });
            }
        }
        for path in old_files.into_iter().flat_map(|f| f.keys()) {
            if !release.files.contains_key(path) && self.dest_exists(path)? {
                entries.push(Entry {
                    path: path.clone(),
                    staged: None,
                    had_old: true,
                });
            }
        }
        // Staged downloads are written without a sync each; make them all durable at once
        // before anything points at them.
        if !sources.is_empty() {
            let names: Vec<&str> = sources.values().map(String::as_str).collect();
            staging
                .sync_filesystem(&names)
                .map_err(io_err("sync staged files under", staging.path()))?;
        }
        self.state
            .remove_all("txn")
            .map_err(io_err("remove", &self.state.join("txn")))?;
        let txn = self.state_create("txn")?;
        let txn_files = txn
            .sub_create("files", 0o700)
            .map_err(folder_err("create folder", txn.join("files")))?;
        let mut journal = Journal {
            release,
            previous,
            entries,
            committed: false,
        };
        self.step()?;
        write_json_atomic(&self.state, "journal.json", &journal)?;
        for entry in &journal.entries {
            let (dest_dir, dest) = self.locate_create(&self.dir, &entry.path)?;
            if entry.had_old {
                self.step()?;
                let (backup_dir, backup) = self.locate_create(&txn_files, &entry.path)?;
                dest_dir
                    .rename(&dest, &backup_dir, &backup)
                    .map_err(io_err("move aside", &dest_dir.join(&dest)))?;
            }
            if let Some(staged) = &entry.staged {
                self.step()?;
                let (staged_dir, name) = self
                    .staged_location(staged)?
                    .ok_or_else(|| InstallError::StagedMismatch(self.root.join(staged)))?;
                staged_dir
                    .rename(&name, &dest_dir, &dest)
                    .map_err(io_err("rename to", &dest_dir.join(&dest)))?;
            }
        }
        self.step()?;
        write_json_atomic(&self.state, "installed.json", &journal.release)?;
        self.step()?;
        journal.committed = true;
        write_json_atomic(&self.state, "journal.json", &journal)?;
        self.step()?;
        self.finish(&journal)
    }

    /// After the commit point: keep the replaced files as the previous release, drop the
    /// journal and the staged files left by interrupted downloads. Safe to repeat.
    fn finish(&self, journal: &Journal) -> Result<(), InstallError> {
        if let Some(txn) = self.state_sub("txn", false)? {
            match &journal.previous {
                Some(old) => write_json_atomic(&txn, "release.json", old)?,
                None => txn
                    .remove_file("release.json")
                    .map_err(io_err("remove", &txn.join("release.json")))?,
            }
            self.state
                .remove_all("previous")
                .map_err(io_err("remove", &self.state.join("previous")))?;
            self.state
                .rename("txn", &self.state, "previous")
                .map_err(io_err("rename to", &self.state.join("previous")))?;
        }
        write_json_atomic(&self.state, "installed.json", &journal.release)?;
        self.remove_state_file("journal.json")?;
        self.state
            .sync()
            .map_err(io_err("sync folder", self.state.path()))?;
        // Staged files left by earlier interrupted downloads are orphans now.
        self.state
            .remove_all(STAGING_DIR)
            .map_err(io_err("remove", &self.state.join(STAGING_DIR)))?;
        walk_tree(&self.dir, "", &mut |dir, name, rel| {
            if rel.ends_with(STAGED_SUFFIX) {
                dir.remove_file(name)
                    .map_err(io_err("remove", &dir.join(name)))?;
            }
            Ok(())
        })
    }

    fn remove_state_file(&self, name: &str) -> Result<(), InstallError> {
        self.state
            .remove_file(name)
            .map_err(io_err("remove", &self.state.join(name)))
    }

    /// Finishes or undoes an interrupted install.
    fn recover(&self) -> Result<Recovery, InstallError> {
        let Some(journal) = read_json::<Journal>(&self.state, "journal.json")? else {
            self.state
                .remove_all("txn")
                .map_err(io_err("remove", &self.state.join("txn")))?;
            return Ok(Recovery::Clean);
        };
        if journal.committed {
            self.finish(&journal)?;
            return Ok(Recovery::Finished);
        }
        let txn_files = match self.state_sub("txn", false)? {
            Some(txn) => txn
                .walk("files", false)
                .map_err(folder_err("open", txn.join("files")))?,
            None => None,
        };
        for entry in journal.entries.iter().rev() {
            if let Some(staged) = &entry.staged {
                if let Some((dir, name)) = self.staged_location(staged)? {
                    dir.remove_file(&name)
                        .map_err(io_err("remove", &dir.join(&name)))?;
                }
            }
            let backup = match &txn_files {
                Some(files) if entry.had_old => self.locate(files, &entry.path, false)?,
                _ => None,
            };
            if entry.had_old {
                let Some((backup_dir, backup)) = backup else {
                    continue;
                };
                let present = backup_dir
                    .kind(&backup)
                    .map_err(io_err("inspect", &backup_dir.join(&backup)))?;
                if present.is_some() {
                    let (dest_dir, dest) = self.locate_create(&self.dir, &entry.path)?;
                    backup_dir
                        .rename(&backup, &dest_dir, &dest)
                        .map_err(io_err("restore", &dest_dir.join(&dest)))?;
                }
            } else if let Some((dest_dir, dest)) = self.locate(&self.dir, &entry.path, false)? {
                dest_dir
                    .remove_file(&dest)
                    .map_err(io_err("remove", &dest_dir.join(&dest)))?;
            }
        }
        match &journal.previous {
            Some(old) => write_json_atomic(&self.state, "installed.json", old)?,
            None => self.remove_state_file("installed.json")?,
        }
        self.state
            .remove_all("txn")
            .map_err(io_err("remove", &self.state.join("txn")))?;
        self.remove_state_file("journal.json")?;
        self.state
            .sync()
            .map_err(io_err("sync folder", self.state.path()))?;
        Ok(Recovery::Undone)
    }
}

/// Refuses target paths that collide with the updater's own names.
fn check_reserved(path: &str) -> Result<(), InstallError> {
    let first = path.split('/').next().unwrap_or_default();
    if first == STATE_DIR || path.ends_with(STAGED_SUFFIX) {
        return Err(InstallError::ReservedPath(path.to_owned()));
    }
    Ok(())
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> InstallError + 'a {
    move |source| InstallError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Like [`io_err`], but a link or a non-folder where a folder is needed is
/// [`InstallError::UnsafeFolder`].
fn folder_err(op: &'static str, path: PathBuf) -> impl FnOnce(std::io::Error) -> InstallError {
    move |source| {
        if is_not_plain(&source) {
            InstallError::UnsafeFolder(path)
        } else {
            InstallError::Io { op, path, source }
        }
    }
}

/// Like [`io_err`], but a link or a non-file where a file is needed is
/// [`InstallError::NotPlainFile`].
fn file_err(op: &'static str, path: PathBuf) -> impl FnOnce(std::io::Error) -> InstallError {
    move |source| {
        if is_not_plain(&source) {
            InstallError::NotPlainFile(path)
        } else {
            InstallError::Io { op, path, source }
        }
    }
}

/// True when a hashed file has exactly the length and SHA-256 of `record`.
fn matches(hashed: Option<(u64, [u8; 32])>, record: &FileRecord) -> bool {
    hashed.is_some_and(|(length, sha256)| {
        length == record.length && hex::encode(sha256).eq_ignore_ascii_case(&record.sha256)
    })
}

/// Length and SHA-256 of what was written to a staging file.
fn hash_staged(staged: &StagedFile) -> Result<(u64, [u8; 32]), InstallError> {
    let mut file = &staged.file;
    file.seek(SeekFrom::Start(0))
        .and_then(|_| hash_reader(file))
        .map_err(io_err("read", &staged.path))
}

fn read_json<T: for<'de> Deserialize<'de>>(
    dir: &Dir,
    name: &str,
) -> Result<Option<T>, InstallError> {
    let path = dir.join(name);
    let Some(bytes) = dir.read(name).map_err(file_err("read", path.clone()))? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| InstallError::State { path, source })
}

/// Writes JSON atomically and durably; a link at the name or at its temporary name is
/// replaced, never followed.
fn write_json_atomic<T: Serialize>(dir: &Dir, name: &str, value: &T) -> Result<(), InstallError> {
    let path = dir.join(name);
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| InstallError::State {
        path: path.clone(),
        source,
    })?;
    dir.write_atomic(name, &bytes)
        .map_err(file_err("write", path))
}

/// Calls `visit(folder, name, relative path)` for every entry under `dir` that is not a
/// folder (links included, never followed), skipping the state folder at the top.
fn walk_tree(
    dir: &Dir,
    prefix: &str,
    visit: &mut dyn FnMut(&Dir, &str, String) -> Result<(), InstallError>,
) -> Result<(), InstallError> {
    let entries = dir.entries().map_err(io_err("list", dir.path()))?;
    for (name, kind) in entries {
        if prefix.is_empty() && name == STATE_DIR {
            continue;
        }
        let rel = format!("{prefix}{name}");
        if kind == FileType::Directory {
            let sub = dir
                .sub(&name)
                .map_err(folder_err("open", dir.join(&name)))?;
            walk_tree(&sub, &format!("{rel}/"), visit)?;
        } else {
            visit(dir, &name, rel)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use sha2::{Digest, Sha256};

    use super::*;

    fn record(content: &[u8]) -> FileRecord {
        FileRecord {
            length: content.len() as u64,
            sha256: hex::encode(Sha256::digest(content)),
        }
    }

    fn release(version: u64, files: &[(&str, &[u8])]) -> Release {
        Release {
            version,
            files: files
                .iter()
                .map(|(p, c)| ((*p).to_owned(), record(c)))
                .collect(),
            packages: BTreeMap::new(),
        }
    }

    /// Stages the files of `files` that are not already in place and installs the release.
    fn install_files(
        root: &InstallRoot,
        version: u64,
        files: &[(&str, &[u8])],
    ) -> Result<(), InstallError> {
        let mut sources = BTreeMap::new();
        for (path, content) in files {
            if root.holds(path, &record(content))? {
                continue;
            }
            let staged = root.stage(&TargetPath::new(*path).unwrap())?;
            (&staged.file).write_all(content).unwrap();
            sources.insert((*path).to_owned(), staged.name);
        }
        root.transact(release(version, files), sources)
    }

    /// Every file under the root, outside the state folder, with its content.
    fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
        let dir = Dir::open_root(root).unwrap();
        let mut found = Vec::new();
        walk_tree(&dir, "", &mut |_, _, rel| {
            found.push(rel);
            Ok(())
        })
        .unwrap();
        found
            .into_iter()
            .map(|p| {
                let content = fs::read(root.join(&p)).unwrap();
                (p, content)
            })
            .collect()
    }

    fn as_tree(files: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        files
            .iter()
            .map(|(p, c)| ((*p).to_owned(), c.to_vec()))
            .collect()
    }

    const V1: &[(&str, &[u8])] = &[
        ("app.bin", b"app version 1"),
        ("old.conf", b"only in v1"),
        ("lib/shared.so", b"shared, unchanged"),
        ("lib/plugin.so", b"plugin v1"),
    ];
    const V2: &[(&str, &[u8])] = &[
        ("app.bin", b"app version 2, longer"),
        ("lib/shared.so", b"shared, unchanged"),
        ("lib/plugin.so", b"plugin v2"),
        ("share/new/data.txt", b"new in v2"),
    ];

    #[test]
    fn crash_at_every_step_leaves_old_or_new() {
        let mut saw_old = false;
        let mut saw_new = false;
        for crash_at in 0..64 {
            let dir = tempfile::tempdir().unwrap();
            let (mut root, _) = InstallRoot::open(dir.path()).unwrap();
            install_files(&root, 1, V1).unwrap();
            root.simulate_crash_at(crash_at, CrashMode::Error);
            let result = install_files(&root, 2, V2);
            let crashed = matches!(result, Err(InstallError::SimulatedCrash(_)));
            drop(root);

            let (root, recovery) = InstallRoot::open(dir.path()).unwrap();
            let installed = root.installed().unwrap().unwrap();
            let files = tree(dir.path());
            if installed.version == 1 {
                assert_eq!(files, as_tree(V1), "crash at {crash_at}: not exactly v1");
                assert_eq!(installed, release(1, V1));
                saw_old = true;
            } else {
                assert_eq!(files, as_tree(V2), "crash at {crash_at}: not exactly v2");
                assert_eq!(installed, release(2, V2));
                saw_new = true;
            }
            assert!(!dir.path().join(".herald/journal.json").exists());
            if !crashed {
                result.unwrap();
                assert_eq!(recovery, Recovery::Clean);
                assert_eq!(installed.version, 2);
                assert!(
                    saw_old && saw_new,
                    "crashes fell on both sides of the commit"
                );
                return;
            }
        }
        panic!("the install has more steps than the test expects");
    }

    #[test]
    fn rollback_restores_previous_release_and_forward_again() {
        let dir = tempfile::tempdir().unwrap();
        let (root, _) = InstallRoot::open(dir.path()).unwrap();
        install_files(&root, 1, V1).unwrap();
        install_files(&root, 2, V2).unwrap();
        assert_eq!(tree(dir.path()), as_tree(V2));

        root.rollback().unwrap();
        assert_eq!(tree(dir.path()), as_tree(V1));
        assert_eq!(root.installed().unwrap().unwrap().version, 1);

        root.rollback().unwrap();
        assert_eq!(tree(dir.path()), as_tree(V2));
        assert_eq!(root.installed().unwrap().unwrap().version, 2);
    }

    #[test]
    fn rollback_without_previous_release_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (root, _) = InstallRoot::open(dir.path()).unwrap();
        assert!(matches!(root.rollback(), Err(InstallError::NoPrevious)));
        install_files(&root, 1, V1).unwrap();
        // The first release has nothing before it to go back to.
        assert!(matches!(root.rollback(), Err(InstallError::NoPrevious)));
        assert_eq!(tree(dir.path()), as_tree(V1));
    }

    #[test]
    fn tampered_backup_is_not_restored_by_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let (root, _) = InstallRoot::open(dir.path()).unwrap();
        install_files(&root, 1, V1).unwrap();
        install_files(&root, 2, V2).unwrap();
        fs::write(dir.path().join(".herald/previous/files/app.bin"), b"evil").unwrap();
        let err = root.rollback().unwrap_err();
        assert!(matches!(err, InstallError::StagedMismatch(_)), "{err}");
        assert_eq!(tree(dir.path()), as_tree(V2), "installed release untouched");
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_folder_out_of_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let (root, _) = InstallRoot::open(dir.path()).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("lib")).unwrap();
        let err = install_files(&root, 1, V1).unwrap_err();
        assert!(matches!(err, InstallError::UnsafeFolder(_)), "{err}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn installed_files_are_not_setuid_or_world_writable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (root, _) = InstallRoot::open(dir.path()).unwrap();
        let target = TargetPath::new("tool").unwrap();
        let staged = root.stage(&target).unwrap();
        (&staged.file).write_all(b"#!/bin/sh\n").unwrap();
        root.transact(
            release(1, &[("tool", b"#!/bin/sh\n")]),
            BTreeMap::from([("tool".to_owned(), staged.name)]),
        )
        .unwrap();
        let mode = fs::metadata(dir.path().join("tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o644);
    }

    #[test]
    fn reserved_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (root, _) = InstallRoot::open(dir.path()).unwrap();
        for path in [".herald/installed.json", "x/.y.herald-staged"] {
            let err = root.stage(&TargetPath::new(path).unwrap()).unwrap_err();
            assert!(
                matches!(err, InstallError::ReservedPath(_)),
                "{path}: {err}"
            );
        }
    }

    #[test]
    fn unlisted_files_are_reported_and_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let (root, _) = InstallRoot::open(dir.path()).unwrap();
        install_files(&root, 1, V1).unwrap();
        fs::write(dir.path().join("lib/dropped.so"), b"not ours").unwrap();
        let unlisted = root.unlisted().unwrap();
        assert_eq!(unlisted, vec!["lib/dropped.so".to_owned()]);
        root.quarantine(&unlisted).unwrap();
        assert!(!dir.path().join("lib/dropped.so").exists());
        assert_eq!(
            fs::read(dir.path().join(".herald/quarantine/lib/dropped.so")).unwrap(),
            b"not ours"
        );
        assert!(root.unlisted().unwrap().is_empty());
        assert!(root.quarantine(&["../escape".to_owned()]).is_err());
    }
}
