//! The install root: atomic installation of a verified release, crash recovery and rollback.
//!
//! # Layout
//!
//! ```text
//! ROOT/                         files of the installed release, at their target paths
//! ROOT/dir/.NAME.herald-staged  a verified download waiting to be renamed to ROOT/dir/NAME
//! ROOT/.herald/installed.json   the installed release: version and every file's length/SHA-256
//! ROOT/.herald/journal.json     present only while an install is in progress
//! ROOT/.herald/txn/             files replaced or removed by the install in progress
//! ROOT/.herald/previous/        the release before the installed one, for rollback
//! ROOT/.herald/quarantine/      unlisted files moved away, when configured
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
//! new one.
//!
//! # Safety
//!
//! Target paths are [`TargetPath`]s (no `..`, no absolute paths). Every folder on the way to a
//! file is checked to be a real folder, never a symbolic link, so nothing is written outside
//! the root. Files are created with mode 0644 whatever the source said (no setuid, no
//! world-writable files). A file already in place counts as installed only if its content
//! hashes to the verified SHA-256: a name alone is never trusted.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use herald_manifest::{TargetPath, VerifiedTarget};

use crate::zipcheck::{extract_checked, ZipCheckError, ZipLimits};
use serde::{Deserialize, Serialize};

/// Name of the updater's state folder inside the install root. No target may live under it.
pub const STATE_DIR: &str = ".herald";
/// Suffix of staged files. No target name may end with it.
pub const STAGED_SUFFIX: &str = ".herald-staged";

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
pub enum InstallError {
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A state file is not what this version writes.
    #[error("{path}: corrupt state file: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A target path collides with the updater's own names.
    #[error("target {0}: reserved name (.herald/ or *.herald-staged)")]
    ReservedPath(String),
    /// A folder on the way to a target is a symbolic link or not a folder.
    #[error("{0}: not a plain folder inside the install root; refusing to write through it")]
    UnsafeFolder(PathBuf),
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
        /// The path.
        path: String,
        /// The cause.
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

/// Part of a new release whose content was verified: a target staged beside its destination
/// by a verified download or found in place with the verified content, or a verified zip
/// target with the files unpacked from it. Only the updater's verification steps create these.
#[derive(Debug, Clone)]
pub struct ReadyFile {
    target: VerifiedTarget,
    contents: Contents,
}

#[derive(Debug, Clone)]
enum Contents {
    /// The target itself, staged (changed) or in place.
    File(Option<PathBuf>),
    /// Files unpacked from the target: path, record, staged file (`None`: in place).
    Unpacked(Vec<(String, FileRecord, Option<PathBuf>)>),
}

impl ReadyFile {
    /// A verified download staged at `staged` (from [`InstallRoot::staging_path`]).
    pub(crate) fn staged(target: VerifiedTarget, staged: PathBuf) -> Self {
        ReadyFile {
            target,
            contents: Contents::File(Some(staged)),
        }
    }

    /// A file found at its destination with the verified content.
    pub(crate) fn in_place(target: VerifiedTarget) -> Self {
        ReadyFile {
            target,
            contents: Contents::File(None),
        }
    }

    /// A verified zip target and the files unpacked from it (each staged, or in place).
    pub(crate) fn unpacked(
        target: VerifiedTarget,
        files: Vec<(String, FileRecord, Option<PathBuf>)>,
    ) -> Self {
        ReadyFile {
            target,
            contents: Contents::Unpacked(files),
        }
    }

    /// The verified target.
    pub fn target(&self) -> &VerifiedTarget {
        &self.target
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
    /// Fault injection: stop before step N of an install (see [`CrashMode`]).
    crash_at: Option<(usize, CrashMode)>,
    steps: std::cell::Cell<usize>,
}

impl InstallRoot {
    /// Opens (creating if needed) an install root and recovers from any interrupted install.
    pub fn open(root: impl Into<PathBuf>) -> Result<(Self, Recovery), InstallError> {
        let root = root.into();
        create_dir_all(&root.join(STATE_DIR))?;
        let this = InstallRoot {
            root,
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
        read_json(&self.state("installed.json"))
    }

    /// The release kept for rollback, if any.
    pub fn previous(&self) -> Result<Option<Release>, InstallError> {
        read_json(&self.state("previous/release.json"))
    }

    /// Where the verified download of `target` must be staged: beside its destination, so the
    /// final rename is atomic. Creates the folders on the way, refusing symbolic links.
    pub fn staging_path(&self, target: &TargetPath) -> Result<PathBuf, InstallError> {
        check_reserved(target.as_str())?;
        let dest = self.safe_dest(target.as_str())?;
        Ok(staged_name(&dest))
    }

    /// Installs a release atomically: `files` is the complete verified file set of the new
    /// release, each either staged beside its destination or already in place. Files of the
    /// old release that the new one does not list are removed (and kept for rollback).
    pub fn install(&self, version: u64, files: &[ReadyFile]) -> Result<(), InstallError> {
        let mut release = Release {
            version,
            files: BTreeMap::new(),
            packages: BTreeMap::new(),
        };
        let mut sources = BTreeMap::new();
        for file in files {
            let target_path = file.target.path().as_str().to_owned();
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

    /// Unpacks a verified zip target, downloaded to `staged`, beside the destinations of its
    /// files: each entry lands at `PACKAGE/ENTRY`, where PACKAGE is the target path without
    /// `.zip`. Entries are checked before anything is written ([`crate::zipcheck`]).
    pub(crate) fn unpack(
        &self,
        zip: VerifiedTarget,
        staged: &Path,
    ) -> Result<ReadyFile, InstallError> {
        let path = zip.path().as_str();
        let prefix = path.strip_suffix(".zip").unwrap_or(path);
        let scratch_root = self.state("unpack");
        create_dir_all(&scratch_root)?;
        let scratch = scratch_root.join(zip.sha256());
        remove_dir_all_if_exists(&scratch)?;
        let entries = extract_checked(staged, &scratch, &ZipLimits::default())
            .map_err(|e| InstallError::Unpack(path.to_owned(), Box::new(e)))?;
        let mut parts = Vec::with_capacity(entries.len());
        for entry in entries {
            let file_path = format!("{prefix}/{}", entry.path.as_str());
            let target =
                TargetPath::new(file_path.as_str()).map_err(|source| InstallError::BadPath {
                    path: file_path.clone(),
                    source,
                })?;
            let dest_staged = self.staging_path(&target)?;
            let unpacked = scratch.join(entry.path.as_str());
            set_mode(&unpacked)?;
            rename(&unpacked, &dest_staged)?;
            let (length, sha256) = crate::fsutil::hash_file(&dest_staged)
                .map_err(io_err("read", &dest_staged))?
                .ok_or_else(|| InstallError::StagedMismatch(dest_staged.clone()))?;
            let record = FileRecord {
                length,
                sha256: hex::encode(sha256),
            };
            parts.push((file_path, record, Some(dest_staged)));
        }
        remove_dir_all_if_exists(&scratch)?;
        remove_file_if_exists(staged)?;
        Ok(ReadyFile::unpacked(zip, parts))
    }

    /// True when `path` holds exactly the content of `record` (a regular file, not a link).
    pub fn holds(&self, path: &str, record: &FileRecord) -> Result<bool, InstallError> {
        check_reserved(path)?;
        matches_record(&self.root.join(path), record)
    }

    /// Goes back to the previous release. The release rolled back from becomes the previous
    /// one, so a second rollback goes forward again.
    pub fn rollback(&self) -> Result<(), InstallError> {
        let previous = self.previous()?.ok_or(InstallError::NoPrevious)?;
        let kept = self.state("previous/files");
        let mut sources = BTreeMap::new();
        for (path, record) in &previous.files {
            let dest = self.root.join(path);
            if matches_record(&dest, record)? {
                continue;
            }
            let backup = kept.join(path);
            if !matches_record(&backup, record)? {
                return Err(InstallError::StagedMismatch(backup));
            }
            // Stage a copy beside the destination so the rename into place stays atomic.
            let target_dest = self.safe_dest(path)?;
            let staged = staged_name(&target_dest);
            copy_synced(&backup, &staged)?;
            sources.insert(path.clone(), staged);
        }
        self.transact(previous, sources)
    }

    /// Files under the root that the installed release does not list (the updater's own state
    /// and staged files excepted), as target-style paths.
    pub fn unlisted(&self) -> Result<Vec<String>, InstallError> {
        let listed = self.installed()?.map(|r| r.files).unwrap_or_default();
        let mut found = Vec::new();
        walk(&self.root, &self.root, &mut found)?;
        found.retain(|path| !listed.contains_key(path));
        Ok(found)
    }

    /// Moves the given unlisted files into `.herald/quarantine/`, keeping their paths.
    pub fn quarantine(&self, paths: &[String]) -> Result<(), InstallError> {
        let dir = self.state("quarantine");
        for path in paths {
            TargetPath::new(path.as_str()).map_err(|source| InstallError::BadPath {
                path: path.clone(),
                source,
            })?;
            let from = self.root.join(path);
            let to = dir.join(path);
            if let Some(parent) = to.parent() {
                create_dir_all(parent)?;
            }
            rename(&from, &to)?;
        }
        Ok(())
    }

    fn state(&self, name: &str) -> PathBuf {
        self.root.join(STATE_DIR).join(name)
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

    /// The destination of a target path, with every folder on the way created and checked.
    fn safe_dest(&self, path: &str) -> Result<PathBuf, InstallError> {
        let mut dir = self.root.clone();
        let rel = Path::new(path);
        let Some(parent) = rel.parent() else {
            return Ok(self.root.join(path));
        };
        for component in parent.components() {
            let Component::Normal(name) = component else {
                return Err(InstallError::UnsafeFolder(rel.to_path_buf()));
            };
            dir.push(name);
            match fs::symlink_metadata(&dir) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(InstallError::UnsafeFolder(dir)),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    fs::create_dir(&dir).map_err(io_err("create folder", &dir))?;
                }
                Err(err) => return Err(io_err("inspect", &dir)(err)),
            }
        }
        let dest = self.root.join(path);
        if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
            return Err(InstallError::UnsafeFolder(dest));
        }
        Ok(dest)
    }

    /// The install protocol (see the module documentation).
    fn transact(
        &self,
        release: Release,
        sources: BTreeMap<String, PathBuf>,
    ) -> Result<(), InstallError> {
        let previous = self.installed()?;
        let old_files = previous.as_ref().map(|r| &r.files);
        let mut entries = Vec::new();
        for path in release.files.keys() {
            if let Some(source) = sources.get(path) {
                let rel = source
                    .strip_prefix(&self.root)
                    .map_err(|_| InstallError::UnsafeFolder(source.clone()))?;
                entries.push(Entry {
                    path: path.clone(),
                    staged: Some(rel.to_string_lossy().into_owned()),
                    had_old: fs::symlink_metadata(self.root.join(path)).is_ok(),
                });
            }
        }
        for path in old_files.into_iter().flat_map(|f| f.keys()) {
            if !release.files.contains_key(path) && self.root.join(path).exists() {
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
            let staged: Vec<&Path> = sources.values().map(PathBuf::as_path).collect();
            crate::fsutil::sync_filesystem(&self.root, &staged)
                .map_err(io_err("sync staged files under", &self.root))?;
        }
        let txn = self.state("txn");
        remove_dir_all_if_exists(&txn)?;
        create_dir_all(&txn.join("files"))?;
        let mut journal = Journal {
            release,
            previous,
            entries,
            committed: false,
        };
        self.step()?;
        write_json_atomic(&self.state("journal.json"), &journal)?;
        for entry in &journal.entries {
            let dest = self.root.join(&entry.path);
            if entry.had_old {
                self.step()?;
                let backup = txn.join("files").join(&entry.path);
                if let Some(parent) = backup.parent() {
                    create_dir_all(parent)?;
                }
                rename(&dest, &backup)?;
            }
            if let Some(staged) = &entry.staged {
                self.step()?;
                rename(&self.root.join(staged), &dest)?;
            }
        }
        self.step()?;
        write_json_atomic(&self.state("installed.json"), &journal.release)?;
        self.step()?;
        journal.committed = true;
        write_json_atomic(&self.state("journal.json"), &journal)?;
        self.step()?;
        self.finish(&journal)
    }

    /// After the commit point: keep the replaced files as the previous release, drop the
    /// journal. Safe to repeat.
    fn finish(&self, journal: &Journal) -> Result<(), InstallError> {
        let txn = self.state("txn");
        let previous_dir = self.state("previous");
        if txn.exists() {
            match &journal.previous {
                Some(old) => write_json_atomic(&txn.join("release.json"), old)?,
                None => remove_file_if_exists(&txn.join("release.json"))?,
            }
            remove_dir_all_if_exists(&previous_dir)?;
            rename(&txn, &previous_dir)?;
        }
        write_json_atomic(&self.state("installed.json"), &journal.release)?;
        remove_file_if_exists(&self.state("journal.json"))?;
        sync_dir(&self.root.join(STATE_DIR))?;
        // Staged files left by earlier interrupted downloads are orphans now.
        remove_staged(&self.root)
    }

    /// Finishes or undoes an interrupted install.
    fn recover(&self) -> Result<Recovery, InstallError> {
        let Some(journal) = read_json::<Journal>(&self.state("journal.json"))? else {
            remove_dir_all_if_exists(&self.state("txn"))?;
            return Ok(Recovery::Clean);
        };
        if journal.committed {
            self.finish(&journal)?;
            return Ok(Recovery::Finished);
        }
        let txn = self.state("txn");
        for entry in journal.entries.iter().rev() {
            let dest = self.root.join(&entry.path);
            let backup = txn.join("files").join(&entry.path);
            if let Some(staged) = &entry.staged {
                remove_file_if_exists(&self.root.join(staged))?;
            }
            if entry.had_old {
                if backup.exists() {
                    rename(&backup, &dest)?;
                }
            } else {
                remove_file_if_exists(&dest)?;
            }
        }
        match &journal.previous {
            Some(old) => write_json_atomic(&self.state("installed.json"), old)?,
            None => remove_file_if_exists(&self.state("installed.json"))?,
        }
        remove_dir_all_if_exists(&txn)?;
        remove_file_if_exists(&self.state("journal.json"))?;
        sync_dir(&self.root.join(STATE_DIR))?;
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

/// `dir/NAME` → `dir/.NAME.herald-staged`.
fn staged_name(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}{STAGED_SUFFIX}"))
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

/// True when `path` is a regular file (not a link) with exactly this length and SHA-256.
fn matches_record(path: &Path, record: &FileRecord) -> Result<bool, InstallError> {
    let hashed = crate::fsutil::hash_file(path).map_err(io_err("read", path))?;
    Ok(hashed.is_some_and(|(length, sha256)| {
        length == record.length && hex::encode(sha256).eq_ignore_ascii_case(&record.sha256)
    }))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, InstallError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| InstallError::State {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io_err("read", path)(err)),
    }
}

/// Writes JSON atomically and durably.
fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), InstallError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| InstallError::State {
        path: path.to_path_buf(),
        source,
    })?;
    crate::fsutil::write_atomic(path, &bytes).map_err(io_err("write", path))
}

/// Copies a file and syncs the copy, created with mode 0644.
fn copy_synced(from: &Path, to: &Path) -> Result<(), InstallError> {
    let mut src = fs::File::open(from).map_err(io_err("open", from))?;
    let mut dst = create_file(to)?;
    std::io::copy(&mut src, &mut dst).map_err(io_err("copy to", to))?;
    dst.sync_all().map_err(io_err("sync", to))
}

/// Sets mode 0644 (no setuid, not executable by others, not world-writable) on Unix.
fn set_mode(path: &Path) -> Result<(), InstallError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o644))
            .map_err(io_err("set permissions", path))?;
    }
    Ok(())
}

/// Creates (truncating) a file with mode 0644 on Unix.
pub(crate) fn create_file(path: &Path) -> Result<fs::File, InstallError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o644);
    }
    options.open(path).map_err(io_err("create", path))
}

/// Renames and syncs the destination folder (and the source folder if different).
fn rename(from: &Path, to: &Path) -> Result<(), InstallError> {
    fs::rename(from, to).map_err(io_err("rename to", to))?;
    if let Some(parent) = to.parent() {
        sync_dir(parent)?;
    }
    match (from.parent(), to.parent()) {
        (Some(a), Some(b)) if a != b => sync_dir(a),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> Result<(), InstallError> {
    crate::fsutil::sync_dir(dir).map_err(io_err("sync folder", dir))
}

fn create_dir_all(dir: &Path) -> Result<(), InstallError> {
    fs::create_dir_all(dir).map_err(io_err("create folder", dir))
}

fn remove_file_if_exists(path: &Path) -> Result<(), InstallError> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(io_err("remove", path)(err)),
        _ => Ok(()),
    }
}

fn remove_dir_all_if_exists(path: &Path) -> Result<(), InstallError> {
    match fs::remove_dir_all(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(io_err("remove folder", path)(err))
        }
        _ => Ok(()),
    }
}

/// Removes every staged file under `dir` (never entering the state folder or links).
fn remove_staged(dir: &Path) -> Result<(), InstallError> {
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_err("inspect", &path))?;
        let name = entry.file_name();
        if kind.is_dir() && name != STATE_DIR {
            remove_staged(&path)?;
        } else if kind.is_file() && name.to_string_lossy().ends_with(STAGED_SUFFIX) {
            remove_file_if_exists(&path)?;
        }
    }
    Ok(())
}

/// Collects every regular file and link under `dir` (skipping the state folder and staged
/// files) as slash-separated paths relative to `root`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), InstallError> {
    let entries = fs::read_dir(dir).map_err(io_err("list", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        let path = entry.path();
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let rel = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if rel == STATE_DIR || rel.ends_with(STAGED_SUFFIX) {
            continue;
        }
        let kind = entry.file_type().map_err(io_err("inspect", &path))?;
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else {
            out.push(rel);
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
            if matches_record(&root.path().join(path), &record(content))? {
                continue;
            }
            let staged = root.staging_path(&TargetPath::new(*path).unwrap())?;
            fs::write(&staged, content).unwrap();
            sources.insert((*path).to_owned(), staged);
        }
        root.transact(release(version, files), sources)
    }

    /// Every regular file under the root, outside the state folder, with its content.
    fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut found = Vec::new();
        walk(root, root, &mut found).unwrap();
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
        let staged = root.staging_path(&target).unwrap();
        let mut file = create_file(&staged).unwrap();
        file.write_all(b"#!/bin/sh\n").unwrap();
        drop(file);
        root.transact(
            release(1, &[("tool", b"#!/bin/sh\n")]),
            BTreeMap::from([("tool".to_owned(), staged)]),
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
            let err = root
                .staging_path(&TargetPath::new(path).unwrap())
                .unwrap_err();
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
