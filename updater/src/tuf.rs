//! The TUF 1.0.x client workflow (specification section 5), on top of the verification steps
//! of `herald-manifest`.
//!
//! [`Client::refresh`] runs the steps in order, each taking the verified result of the step
//! before; [`Client::find_target`] walks delegations (5.7); [`Client::download_target`] fetches
//! a target with its length and hash checked while streaming and then checks its per-file
//! release signatures. Trusted metadata is persisted under non-versioned names in the
//! metadata folder, written atomically, and only after it verified: a rejected update never
//! replaces what was trusted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use herald_manifest::{
    RoleType, TargetFile, TargetPath, VerifiedRoot, VerifiedSnapshot, VerifiedTarget,
    VerifiedTargets, VerifiedTimestamp, VerifyError,
};
use time::OffsetDateTime;
use url::Url;

use crate::download::{download_verified, DownloadError, ExpectedFile};
use crate::transport::{fetch_bounded, FetchError, Transport};

/// Names a delegated role may not take (their metadata files belong to top-level roles).
const TOP_LEVEL_ROLES: [&str; 4] = ["root", "timestamp", "snapshot", "targets"];

/// Size caps and counts that bound what a repository can make the client do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest root metadata accepted. Default 512 KiB.
    pub max_root_size: u64,
    /// Largest timestamp metadata accepted. Default 16 KiB.
    pub max_timestamp_size: u64,
    /// Largest snapshot metadata accepted when the timestamp lists no length. Default 32 MiB.
    pub max_snapshot_size: u64,
    /// Largest targets metadata accepted when the snapshot lists no length. Default 256 MiB.
    pub max_targets_size: u64,
    /// Most root versions walked in one refresh. Default 32.
    pub max_root_rotations: u64,
    /// Most delegated roles visited looking for one target. Default 32.
    pub max_delegations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_root_size: 512 * 1024,
            max_timestamp_size: 16 * 1024,
            max_snapshot_size: 32 * 1024 * 1024,
            max_targets_size: 256 * 1024 * 1024,
            max_root_rotations: 32,
            max_delegations: 32,
        }
    }
}

/// Whether targets must carry per-file release signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReleaseSignatures {
    /// Checked when the root declares release keys (default).
    #[default]
    WhenDeclared,
    /// Required: a repository whose root declares no release keys is refused.
    Required,
}

/// Why the client workflow failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum ClientError {
    /// No trusted root is stored in the metadata folder.
    #[error("no trusted root in {0}: initialise the client with a trusted root first")]
    NoTrustedRoot(PathBuf),
    /// Metadata could not be fetched.
    #[error("fetching {role} metadata: {source}")]
    Fetch {
        role: String,
        #[source]
        source: Box<FetchError>,
    },
    /// Metadata did not verify.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `refresh` must run before targets are looked up.
    #[error("metadata not refreshed yet")]
    NotRefreshed,
    /// The target is not listed by any trusted role.
    #[error("target {0} is not listed in the repository's verified metadata")]
    TargetNotFound(String),
    /// The repository declares no release keys, but they are required.
    #[error("the repository's root declares no release keys, and release signatures are required")]
    ReleaseKeysRequired,
    /// The target could not be downloaded.
    #[error(transparent)]
    Download(Box<DownloadError>),
    /// A role name cannot be used in a URL or file name.
    #[error("role name {0:?} is not usable")]
    BadRoleName(String),
    /// A release's file has no valid path below the release folder.
    #[error("target {path}: not a valid path inside its release: {source}")]
    ReleasePath {
        path: String,
        #[source]
        source: herald_manifest::PathError,
    },
    /// The signed rollout policy cannot be used.
    #[error("targets metadata: {0}")]
    Policy(#[from] herald_manifest::rollout::PolicyError),
}

impl From<DownloadError> for ClientError {
    fn from(err: DownloadError) -> Self {
        ClientError::Download(Box::new(err))
    }
}

/// A TUF client bound to one repository and one metadata folder.
pub struct Client {
    transport: Arc<dyn Transport>,
    metadata_urls: Vec<Url>,
    metadata_dir: PathBuf,
    limits: Limits,
    release_signatures: ReleaseSignatures,
    state: Option<Trusted>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("metadata_urls", &self.metadata_urls)
            .field("metadata_dir", &self.metadata_dir)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The verified top-level metadata after a refresh.
#[derive(Debug)]
struct Trusted {
    root: VerifiedRoot,
    snapshot: VerifiedSnapshot,
    targets: Arc<VerifiedTargets>,
    now: OffsetDateTime,
}

/// A target found in verified metadata, with the role that lists it. Only the length and
/// SHA-256 are kept; the rest of the entry is read from the role when needed, so a list of
/// every target of a large repository stays small.
#[derive(Debug)]
pub struct FoundTarget {
    path: TargetPath,
    length: u64,
    sha256: Option<String>,
    role: Arc<VerifiedTargets>,
}

impl FoundTarget {
    fn new(path: TargetPath, entry: &TargetFile, role: Arc<VerifiedTargets>) -> Self {
        FoundTarget {
            path,
            length: entry.length,
            sha256: entry.sha256().map(str::to_owned),
            role,
        }
    }

    /// The target path.
    pub fn path(&self) -> &TargetPath {
        &self.path
    }

    /// The declared length.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// The declared SHA-256, hex, if listed.
    pub fn sha256(&self) -> Option<&str> {
        self.sha256.as_deref()
    }

    /// The length and every supported listed digest the file must have.
    fn expected(&self) -> Result<ExpectedFile, VerifyError> {
        let entry = self
            .role
            .target(&self.path)
            .ok_or_else(|| VerifyError::NotListed(self.path.to_string()))?;
        Ok(ExpectedFile {
            length: entry.length,
            digests: entry.expected_digests(&self.path)?,
        })
    }
}

/// Stores `root_bytes` as the trusted root of a metadata folder, after checking that it is a
/// root signed by its own threshold. No network is used.
pub fn init_trusted_root(metadata_dir: &Path, root_bytes: &[u8]) -> Result<(), ClientError> {
    VerifiedRoot::trust_anchor(root_bytes)?;
    std::fs::create_dir_all(metadata_dir).map_err(|source| ClientError::Io {
        path: metadata_dir.to_path_buf(),
        source,
    })?;
    write_local(metadata_dir, "root.json", root_bytes)
}

fn write_local(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ClientError> {
    let path = dir.join(name);
    herald_files::write_public(&path, bytes).map_err(|source| ClientError::Io { path, source })
}

/// The system clock, read through the C library (so time-faking tools apply).
pub fn system_now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

impl Client {
    /// A client for the repository whose metadata is under `metadata_url`, keeping trusted
    /// metadata in `metadata_dir` (which must hold a trusted `root.json`).
    pub fn new(transport: Arc<dyn Transport>, metadata_url: Url, metadata_dir: PathBuf) -> Self {
        Client {
            transport,
            metadata_urls: vec![metadata_url],
            metadata_dir,
            limits: Limits::default(),
            release_signatures: ReleaseSignatures::default(),
            state: None,
        }
    }

    /// Adds metadata mirrors, tried in order after the first URL when a fetch fails.
    pub fn mirrors(mut self, more: impl IntoIterator<Item = Url>) -> Self {
        self.metadata_urls.extend(more);
        self
    }

    /// Sets the size caps.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets whether per-file release signatures are required.
    pub fn release_signatures(mut self, policy: ReleaseSignatures) -> Self {
        self.release_signatures = policy;
        self
    }

    /// The verified root after a refresh.
    pub fn root(&self) -> Option<&VerifiedRoot> {
        self.state.as_ref().map(|s| &s.root)
    }

    /// The verified top-level targets after a refresh.
    pub fn targets(&self) -> Option<&VerifiedTargets> {
        self.state.as_ref().map(|s| s.targets.as_ref())
    }

    /// Runs the TUF 1.0 client workflow up to and including top-level targets (5.2 to 5.6).
    pub async fn refresh(&mut self, now: OffsetDateTime) -> Result<(), ClientError> {
        self.state = None;
        // 5.2: load the trusted root.
        let root_bytes = self
            .read_local("root.json")?
            .ok_or_else(|| ClientError::NoTrustedRoot(self.metadata_dir.clone()))?;
        let mut root = VerifiedRoot::trust_anchor(&root_bytes)?;
        let original = root.get().clone();

        // 5.3: update the root, one version at a time, a bounded number of steps.
        let first = root.version.saturating_add(1);
        let last = first.saturating_add(self.limits.max_root_rotations);
        for version in first..last {
            let name = format!("{version}.root.json");
            let bytes = match self.fetch(&name, "root", self.limits.max_root_size).await {
                Ok(bytes) => bytes,
                Err(ClientError::Fetch { source, .. }) if source.is_not_found() => break,
                Err(err) => return Err(err),
            };
            root = root.verify_next_root(&bytes)?;
            self.write_local("root.json", root.bytes())?;
        }
        // 5.3.10: the final root must not have expired (freeze attack).
        root.check_expiry(now)?;
        // 5.3.11: after a rotation of timestamp or snapshot keys, forget the metadata they
        // signed, so versions pushed up by compromised keys cannot block updates
        // (fast-forward attack recovery).
        if original.role(RoleType::Timestamp) != root.role(RoleType::Timestamp) {
            self.remove_local("timestamp.json")?;
        }
        if original.role(RoleType::Snapshot) != root.role(RoleType::Snapshot) {
            self.remove_local("snapshot.json")?;
        }

        // Previously trusted metadata, for rollback checks. Only signatures matter here:
        // expiry is not checked on the old copies (hence the epoch as `now`).
        let old_timestamp = self.read_local("timestamp.json")?.and_then(|b| {
            root.verify_timestamp(&b, None, OffsetDateTime::UNIX_EPOCH)
                .ok()
        });
        let old_snapshot = match &old_timestamp {
            Some(ts) => self.read_local("snapshot.json")?.and_then(|b| {
                root.verify_snapshot(&b, ts, None, OffsetDateTime::UNIX_EPOCH)
                    .ok()
            }),
            None => None,
        };

        // 5.4: timestamp.
        let bytes = self
            .fetch(
                "timestamp.json",
                "timestamp",
                self.limits.max_timestamp_size,
            )
            .await?;
        // A timestamp of the trusted version is not taken, whatever its content: the trusted
        // one is kept (5.4.3), and with it the snapshot it names.
        let timestamp = root.verify_timestamp(&bytes, old_timestamp.as_ref(), now)?;
        if old_timestamp.as_ref().map(|old| old.bytes()) != Some(timestamp.bytes()) {
            self.write_local("timestamp.json", timestamp.bytes())?;
        }

        // 5.5: snapshot (the local copy is reused when it is the one the timestamp lists).
        let snapshot = self
            .snapshot(&root, &timestamp, old_snapshot.as_ref(), now)
            .await?;

        // 5.6: top-level targets.
        let targets = self
            .targets_role("targets", &snapshot, root.consistent_snapshot, |bytes| {
                root.verify_targets(bytes, &snapshot, now)
            })
            .await?;
        self.state = Some(Trusted {
            root,
            snapshot,
            targets: Arc::new(targets),
            now,
        });
        Ok(())
    }

    async fn snapshot(
        &self,
        root: &VerifiedRoot,
        timestamp: &VerifiedTimestamp,
        old: Option<&VerifiedSnapshot>,
        now: OffsetDateTime,
    ) -> Result<VerifiedSnapshot, ClientError> {
        if let Some(local) = self.read_local("snapshot.json")? {
            if let Ok(snapshot) = root.verify_snapshot(&local, timestamp, old, now) {
                return Ok(snapshot);
            }
        }
        let meta = timestamp
            .snapshot_meta()
            .ok_or_else(|| VerifyError::MissingMeta {
                role: "timestamp".into(),
                entry: "snapshot.json".into(),
            })?;
        let name = self.versioned(root, meta.version, "snapshot");
        let max = meta.length.unwrap_or(self.limits.max_snapshot_size);
        let bytes = self.fetch(&name, "snapshot", max).await?;
        let snapshot = root.verify_snapshot(&bytes, timestamp, old, now)?;
        self.write_local("snapshot.json", snapshot.bytes())?;
        Ok(snapshot)
    }

    /// Loads a targets role (top-level or delegated): the local copy if it is the version
    /// the snapshot lists, otherwise a download, verified by `verify`. The bytes read or
    /// fetched are handed to `verify`, which keeps them: a large targets file is held in
    /// memory once.
    async fn targets_role(
        &self,
        role: &str,
        snapshot: &VerifiedSnapshot,
        consistent_snapshot: bool,
        verify: impl Fn(Vec<u8>) -> Result<VerifiedTargets, VerifyError>,
    ) -> Result<VerifiedTargets, ClientError> {
        let encoded = encode_role(role)?;
        let local_name = format!("{encoded}.json");
        if let Some(local) = self.read_local(&local_name)? {
            if let Ok(targets) = verify(local) {
                return Ok(targets);
            }
        }
        let meta =
            snapshot
                .meta
                .get(&format!("{role}.json"))
                .ok_or_else(|| VerifyError::MissingMeta {
                    role: "snapshot".into(),
                    entry: format!("{role}.json"),
                })?;
        let name = if consistent_snapshot {
            format!("{}.{encoded}.json", meta.version)
        } else {
            format!("{encoded}.json")
        };
        let max = meta.length.unwrap_or(self.limits.max_targets_size);
        let bytes = self.fetch(&name, role, max).await?;
        let targets = verify(bytes)?;
        self.write_local(&local_name, targets.bytes())?;
        Ok(targets)
    }

    fn versioned(&self, root: &VerifiedRoot, version: u64, role: &str) -> String {
        if root.consistent_snapshot {
            format!("{version}.{role}.json")
        } else {
            format!("{role}.json")
        }
    }

    /// Finds `path` in the verified metadata (TUF 1.0 step 5.7): the top-level targets, then
    /// delegated roles in pre-order depth-first order, stopping after a terminating role,
    /// visiting at most `max_delegations` roles.
    pub async fn find_target(&self, path: &TargetPath) -> Result<FoundTarget, ClientError> {
        let state = self.state.as_ref().ok_or(ClientError::NotRefreshed)?;
        if state.root.release.is_none() && self.release_signatures == ReleaseSignatures::Required {
            return Err(ClientError::ReleaseKeysRequired);
        }
        let mut to_visit: Vec<(String, Option<Arc<VerifiedTargets>>)> =
            vec![("targets".into(), None)];
        let mut visited = BTreeSet::new();
        while let Some((name, parent)) = to_visit.pop() {
            if visited.len() > self.limits.max_delegations {
                break;
            }
            if !visited.insert(name.clone()) {
                continue;
            }
            let role = match parent {
                None => state.targets.clone(),
                Some(parent) => Arc::new(self.delegated_role(state, &parent, &name).await?),
            };
            if let Some(entry) = role.target(path) {
                return Ok(FoundTarget::new(path.clone(), &entry, role));
            }
            let mut children = Vec::new();
            for child in role.delegations_for(path) {
                children.push((child.name.clone(), Some(Arc::clone(&role))));
                if child.terminating {
                    to_visit.clear();
                    break;
                }
            }
            children.reverse();
            to_visit.extend(children);
        }
        Err(ClientError::TargetNotFound(path.to_string()))
    }

    /// Loads and verifies the delegated role `name` of `parent`.
    async fn delegated_role(
        &self,
        state: &Trusted,
        parent: &VerifiedTargets,
        name: &str,
    ) -> Result<VerifiedTargets, ClientError> {
        if TOP_LEVEL_ROLES.contains(&name) {
            return Err(ClientError::BadRoleName(name.to_owned()));
        }
        let consistent = state.root.consistent_snapshot;
        self.targets_role(name, &state.snapshot, consistent, |bytes| {
            parent.verify_delegated(name, bytes, &state.snapshot, state.now)
        })
        .await
    }

    /// Every target the verified metadata lists, each resolved as [`Client::find_target`]
    /// resolves it: a path listed by several roles belongs to the role the delegation order
    /// trusts, and a path listed only by a role not trusted for it is left out.
    pub async fn all_targets(&self) -> Result<Vec<FoundTarget>, ClientError> {
        let state = self.state.as_ref().ok_or(ClientError::NotRefreshed)?;
        let mut paths: BTreeSet<TargetPath> = state.targets.paths().cloned().collect();
        let mut queue: std::collections::VecDeque<(String, Arc<VerifiedTargets>)> =
            child_roles(&state.targets).collect();
        let mut seen = BTreeSet::new();
        while let Some((name, parent)) = queue.pop_front() {
            if seen.len() >= self.limits.max_delegations {
                break;
            }
            if !seen.insert(name.clone()) {
                continue;
            }
            let role = Arc::new(self.delegated_role(state, &parent, &name).await?);
            paths.extend(role.paths().cloned());
            queue.extend(child_roles(&role));
        }
        let mut found = Vec::with_capacity(paths.len());
        for path in paths {
            match state.targets.target(&path) {
                Some(entry) => {
                    found.push(FoundTarget::new(path, &entry, Arc::clone(&state.targets)))
                }
                None => match self.find_target(&path).await {
                    Ok(target) => found.push(target),
                    Err(ClientError::TargetNotFound(_)) => {}
                    Err(err) => return Err(err),
                },
            }
        }
        Ok(found)
    }

    /// The rollout policy the verified top-level targets carry, checked; `None` when the
    /// repository has none.
    pub fn rollout_policy(
        &self,
    ) -> Result<Option<herald_manifest::rollout::RolloutPolicy>, ClientError> {
        let state = self.state.as_ref().ok_or(ClientError::NotRefreshed)?;
        Ok(state.targets.rollout_policy()?)
    }

    /// The files of `release` (the targets under `releases/N/` of the top-level targets
    /// metadata, which also carries the policy naming the release), each with the path it
    /// installs at (below the release folder). Delegated roles cannot add to a release.
    pub fn release_targets(
        &self,
        release: u64,
    ) -> Result<Vec<(FoundTarget, TargetPath)>, ClientError> {
        let state = self.state.as_ref().ok_or(ClientError::NotRefreshed)?;
        if state.root.release.is_none() && self.release_signatures == ReleaseSignatures::Required {
            return Err(ClientError::ReleaseKeysRequired);
        }
        herald_manifest::rollout::release_targets(&state.targets, release)
            .map(|(path, dest, entry)| {
                let dest = dest.map_err(|source| ClientError::ReleasePath {
                    path: path.to_string(),
                    source,
                })?;
                let found = FoundTarget::new(path.clone(), &entry, Arc::clone(&state.targets));
                Ok((found, dest))
            })
            .collect()
    }

    /// Checks that the file at `file` is `target` (every listed hash the client supports),
    /// with its release signatures.
    pub fn verify_file(
        &self,
        target: &FoundTarget,
        file: &Path,
    ) -> Result<Option<VerifiedTarget>, ClientError> {
        let state = self.state.as_ref().ok_or(ClientError::NotRefreshed)?;
        let algorithms = target.expected()?.digests.into_keys();
        let hashed =
            crate::fsutil::hash_file_with(file, algorithms).map_err(|source| ClientError::Io {
                path: file.to_path_buf(),
                source,
            })?;
        let Some(digests) = hashed else {
            return Ok(None);
        };
        Ok(state
            .root
            .verify_target_digests(&target.role, &target.path, &digests)
            .ok())
    }

    /// Checks that a file of `length` bytes with this SHA-256 is `target`, with its release
    /// signatures (for content the caller has already hashed). A target that also lists
    /// SHA-384 or SHA-512 fails this check: its file must be hashed again
    /// ([`Client::verify_file`]).
    pub fn verify_digest(
        &self,
        target: &FoundTarget,
        length: u64,
        sha256: &[u8],
    ) -> Result<VerifiedTarget, ClientError> {
        let state = self.state.as_ref().ok_or(ClientError::NotRefreshed)?;
        Ok(state
            .root
            .verify_target_digest(&target.role, &target.path, length, sha256)?)
    }

    /// Downloads `target` from the first of `mirrors` that delivers it into `staging`, checks
    /// length and every listed hash the client supports (SHA-256, SHA-384, SHA-512) while
    /// streaming, then the release signatures.
    pub async fn download_target(
        &self,
        target: &FoundTarget,
        mirrors: &[Url],
        staging: &(impl crate::download::Staging + ?Sized),
    ) -> Result<VerifiedTarget, ClientError> {
        let state = self.state.as_ref().ok_or(ClientError::NotRefreshed)?;
        let expected = target.expected()?;
        let remote =
            if state.root.consistent_snapshot {
                // Consistent snapshots store a target under any of its listed hashes: the first
                // supported one (SHA-256 when listed) is asked for.
                let (_, name_hash) = expected.digests.first_key_value().ok_or_else(|| {
                    VerifyError::NoSupportedHash {
                        what: format!("target {}", target.path),
                        listed: String::new(),
                    }
                })?;
                target.path.with_hash_prefix(&hex::encode(name_hash))
            } else {
                target.path.as_str().to_owned()
            };
        let digests = download_verified(
            self.transport.as_ref(),
            mirrors,
            &remote,
            staging,
            &expected,
        )
        .await?;
        let verified = state
            .root
            .verify_target_digests(&target.role, &target.path, &digests);
        match verified {
            Ok(verified) => Ok(verified),
            Err(err) => {
                // Listed and hashed correctly but not signed: nothing of it may stay.
                let _ = staging.discard();
                Err(err.into())
            }
        }
    }

    /// Fetches a metadata file from the first mirror that has it. A mirror that fails is
    /// skipped. When none delivers, "not found" wins if any mirror said so (the file does not
    /// exist yet, e.g. the next root version); otherwise the last failure is returned.
    async fn fetch(&self, name: &str, role: &str, max: u64) -> Result<Vec<u8>, ClientError> {
        let mut last = None;
        for base in &self.metadata_urls {
            let url = metadata_url(base, name)
                .ok_or_else(|| ClientError::BadRoleName(name.to_owned()))?;
            match fetch_bounded(self.transport.as_ref(), &url, max).await {
                Ok(bytes) => return Ok(bytes),
                Err(err) => {
                    tracing::debug!(%url, error = %err, "metadata mirror failed");
                    if !last.as_ref().is_some_and(FetchError::is_not_found) {
                        last = Some(err);
                    }
                }
            }
        }
        let source = last.unwrap_or(FetchError::NoMirror);
        Err(ClientError::Fetch {
            role: role.to_owned(),
            source: Box::new(source),
        })
    }

    fn read_local(&self, name: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let path = self.metadata_dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ClientError::Io { path, source }),
        }
    }

    fn write_local(&self, name: &str, bytes: &[u8]) -> Result<(), ClientError> {
        write_local(&self.metadata_dir, name, bytes)
    }

    fn remove_local(&self, name: &str) -> Result<(), ClientError> {
        let path = self.metadata_dir.join(name);
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(ClientError::Io { path, source: err })
            }
            _ => Ok(()),
        }
    }
}

/// The roles `role` delegates to, each with `role` as its parent.
fn child_roles(
    role: &Arc<VerifiedTargets>,
) -> impl Iterator<Item = (String, Arc<VerifiedTargets>)> + '_ {
    role.delegations
        .iter()
        .flat_map(|d| d.roles.iter())
        .map(move |r| (r.name.clone(), Arc::clone(role)))
}

/// Every byte but the unreserved characters of RFC 3986 is encoded.
const ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// `name` with every byte but the unreserved characters of RFC 3986 percent-encoded, as
/// python-tuf's `quote(name, "")`: the result holds no `/`, `?`, `#` or `%` of its own.
fn quote(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, ENCODE).to_string()
}

/// A name as one safe path segment: percent-encoded as python-tuf's `quote(name, "")`, so
/// it never contains `/` and is never `.` or `..` (dots alone are encoded).
pub fn encode_name(name: &str) -> String {
    match name {
        "." => "%2E".to_owned(),
        ".." => "%2E%2E".to_owned(),
        _ => quote(name),
    }
}

/// A role name as it appears in metadata file names, remote and local (`NAME.json`,
/// `VERSION.NAME.json`): percent-encoded as python-tuf does (`?` is `%3F`, `/` is `%2F`), so
/// the file name is one segment that stays in the metadata folder and under the metadata URL.
fn encode_role(role: &str) -> Result<String, ClientError> {
    if role.is_empty() {
        return Err(ClientError::BadRoleName(role.to_owned()));
    }
    Ok(quote(role))
}

/// The URL of the metadata file `name` under a metadata base URL. `name` is one path segment
/// already percent-encoded ([`encode_role`]) and is appended as it is, so the server sees a
/// role name's escapes (`%3F`, `%2F`) and not escapes of them. `None` for anything but
/// unreserved characters and `%` escapes, or a dot-only name.
fn metadata_url(base: &Url, name: &str) -> Option<Url> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~%".contains(&b);
    if name.is_empty() || name.bytes().any(|b| !allowed(b)) || name.bytes().all(|b| b == b'.') {
        return None;
    }
    let mut url = base.clone();
    let dir = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{dir}/{name}"));
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_needing_escaping_keep_their_escapes_in_urls() {
        let base = Url::parse("https://repo.example/metadata/").expect("valid URL");
        for (role, encoded) in [
            ("?", "%3F"),
            ("#", "%23"),
            ("/delegatedrole", "%2Fdelegatedrole"),
            ("../delegatedrole", "..%2Fdelegatedrole"),
            ("a b%", "a%20b%25"),
        ] {
            let name = format!("7.{}.json", encode_role(role).expect("a name"));
            assert_eq!(name, format!("7.{encoded}.json"));
            let url = metadata_url(&base, &name).expect("a URL");
            assert_eq!(
                url.as_str(),
                format!("https://repo.example/metadata/7.{encoded}.json")
            );
        }
        let no_slash = Url::parse("https://repo.example/metadata").expect("valid URL");
        assert_eq!(
            metadata_url(&no_slash, "timestamp.json")
                .expect("a URL")
                .as_str(),
            "https://repo.example/metadata/timestamp.json"
        );
    }

    #[test]
    fn metadata_url_refuses_anything_but_one_encoded_segment() {
        let base = Url::parse("https://repo.example/metadata/").expect("valid URL");
        for bad in ["", ".", "..", "a/b.json", "a?.json", "a#.json", "../x"] {
            assert!(metadata_url(&base, bad).is_none(), "{bad:?}");
        }
    }
}
