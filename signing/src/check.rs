//! `herald-sign verify`: an offline check of a whole repository.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use herald_manifest::{
    sha256_hex, Envelope, RoleType, TargetPath, Targets, VerifiedRoot, VerifiedTargets,
};
use time::OffsetDateTime;

use crate::fsutil::{read, walk_files};
use crate::layout::{parse_envelope, typed, Layout, MetadataName};
use crate::Error;

/// What `verify` found in a valid repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySummary {
    /// Newest root version.
    pub root_version: u64,
    /// Current targets version.
    pub targets_version: u64,
    /// Current snapshot version.
    pub snapshot_version: u64,
    /// Timestamp version.
    pub timestamp_version: u64,
    /// Targets listed by the current targets metadata (delegated roles included).
    pub targets: usize,
    /// Whether root declares release keys (per-file signatures checked).
    pub release_signatures: bool,
}

impl RepositorySummary {
    /// The summary as a JSON object, with `"ok": true`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": true,
            "root_version": self.root_version,
            "targets_version": self.targets_version,
            "snapshot_version": self.snapshot_version,
            "timestamp_version": self.timestamp_version,
            "targets": self.targets,
            "release_signatures": self.release_signatures,
        })
    }
}

impl fmt::Display for RepositorySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "repository OK: root v{}, targets v{} ({} target(s){}), snapshot v{}, timestamp v{}",
            self.root_version,
            self.targets_version,
            self.targets,
            if self.release_signatures {
                ", release signatures verified"
            } else {
                ""
            },
            self.snapshot_version,
            self.timestamp_version
        )
    }
}

fn verify_err(file: &str) -> impl FnOnce(herald_manifest::VerifyError) -> Error + '_ {
    move |source| Error::Verify {
        file: file.into(),
        source,
    }
}

/// Verifies a repository folder as a client would, and more: the whole root chain from
/// version 1 (and, if `trusted_root` is given, that it is part of that chain), the current
/// timestamp, snapshot, targets and delegated targets at `now` (and the consistency of the
/// rollout policy the targets metadata carries), every listed target's
/// content and release signatures, every older metadata version's signatures, that every
/// metadata file is in canonical form, and that every file under `targets/` is content
/// that some targets version lists.
pub fn verify_repository(
    repo: &Path,
    trusted_root: Option<&Path>,
    now: OffsetDateTime,
) -> Result<RepositorySummary, Error> {
    let layout = Layout::new(repo);
    let chain = layout.root_chain()?;
    let root = chain
        .last()
        .ok_or_else(|| Error::Repository("no root metadata".into()))?;
    if let Some(path) = trusted_root {
        let trusted = read(path)?;
        if !chain.iter().any(|r| r.bytes() == trusted.as_slice()) {
            return Err(Error::Repository(format!(
                "{}: the trusted root is not part of the repository's root chain",
                path.display()
            )));
        }
    }
    if read(&layout.metadata("root.json"))? != root.bytes() {
        return Err(Error::Repository(format!(
            "metadata/root.json differs from metadata/{}.root.json (the newest root)",
            root.version
        )));
    }
    root.check_expiry(now).map_err(verify_err("root.json"))?;

    let ts_bytes = read(&layout.metadata("timestamp.json"))?;
    let timestamp = root
        .verify_timestamp(&ts_bytes, None, now)
        .map_err(verify_err("metadata/timestamp.json"))?;
    let snapshot_version = timestamp
        .snapshot_meta()
        .map(|m| m.version)
        .unwrap_or_default();
    let file = format!("metadata/{snapshot_version}.snapshot.json");
    let snapshot = root
        .verify_snapshot(
            &read(&layout.versioned(snapshot_version, "snapshot"))?,
            &timestamp,
            None,
            now,
        )
        .map_err(verify_err(&file))?;
    let targets_version = snapshot
        .meta
        .get("targets.json")
        .map(|m| m.version)
        .unwrap_or_default();
    let file = format!("metadata/{targets_version}.targets.json");
    let targets = root
        .verify_targets(
            &read(&layout.versioned(targets_version, "targets"))?,
            &snapshot,
            now,
        )
        .map_err(verify_err(&file))?;
    targets
        .rollout_policy()
        .map_err(|e| Error::Repository(format!("{file}: {e}")))?;
    let mut roles: Vec<VerifiedTargets> = Vec::new();
    for (name, meta) in &snapshot.meta {
        let Some(role) = name.strip_suffix(".json") else {
            continue;
        };
        if role == "targets" {
            continue;
        }
        let file = format!("metadata/{}.{name}", meta.version);
        let bytes = read(&layout.versioned(meta.version, role))?;
        roles.push(
            targets
                .verify_delegated(role, &bytes, &snapshot, now)
                .map_err(verify_err(&file))?,
        );
    }
    roles.insert(0, targets);

    let mut count = 0;
    for role in &roles {
        for (path, entry) in role.targets() {
            let sha = entry.sha256().unwrap_or_default();
            let stored = layout.targets_dir().join(path.with_hash_prefix(sha));
            root.verify_target_content(role, path, &read(&stored)?)
                .map_err(verify_err(&format!(
                    "targets/{}",
                    path.with_hash_prefix(sha)
                )))?;
            count += 1;
        }
    }

    let listed = check_all_metadata_files(&layout, &chain)?;
    check_all_target_files(&layout, &listed)?;

    Ok(RepositorySummary {
        root_version: root.version,
        targets_version: roles.first().map_or(0, |t| t.version),
        snapshot_version,
        timestamp_version: timestamp.version,
        targets: count,
        release_signatures: root.release.is_some(),
    })
}

/// Checks every file of `metadata/`: a known name, canonical form, and for versioned
/// snapshot and targets files (older ones included) a threshold of signatures under some
/// root of the chain. Returns the `(path, sha256)` pairs listed by any targets version.
fn check_all_metadata_files(
    layout: &Layout,
    chain: &[VerifiedRoot],
) -> Result<BTreeSet<(String, String)>, Error> {
    let mut listed = BTreeSet::new();
    for (name, path) in walk_files(&layout.metadata_dir())? {
        let file = format!("metadata/{name}");
        let kind = MetadataName::parse(&name)
            .ok_or_else(|| Error::Repository(format!("{file}: unexpected file in metadata/")))?;
        let bytes = read(&path)?;
        let env = parse_envelope(&file, &bytes)?;
        if env.to_canonical_bytes().ok().as_deref() != Some(&bytes[..]) {
            return Err(Error::Repository(format!(
                "{file}: not in canonical JSON form (herald-sign writes canonical JSON; the file was changed)"
            )));
        }
        if let MetadataName::Versioned(version, role) = kind {
            check_versioned(&file, version, &role, &bytes, &env, chain, &mut listed)?;
        }
    }
    Ok(listed)
}

fn check_versioned(
    file: &str,
    version: u64,
    role: &str,
    bytes: &[u8],
    env: &Envelope,
    chain: &[VerifiedRoot],
    listed: &mut BTreeSet<(String, String)>,
) -> Result<(), Error> {
    if env.version() != Some(version) {
        return Err(Error::Repository(format!(
            "{file}: the file name says version {version}, the content {:?}",
            env.version()
        )));
    }
    let role_type = match role {
        "root" => return Ok(()), // verified as a chain already
        "snapshot" => RoleType::Snapshot,
        "targets" => RoleType::Targets,
        // Delegated targets: signatures checked through the current chain only.
        _ => {
            collect_listed(file, env, listed)?;
            return Ok(());
        }
    };
    let mut last_error = None;
    for root in chain.iter().rev() {
        match root.check_role_signatures(role_type, bytes) {
            Ok(()) => {
                last_error = None;
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    if let Some(source) = last_error {
        return Err(Error::Verify {
            file: file.into(),
            source,
        });
    }
    if role_type == RoleType::Targets {
        collect_listed(file, env, listed)?;
    }
    Ok(())
}

fn collect_listed(
    file: &str,
    env: &Envelope,
    listed: &mut BTreeSet<(String, String)>,
) -> Result<(), Error> {
    let targets: Targets = typed(file, env)?;
    for (path, entry) in targets.targets {
        if let Some(sha) = entry.sha256() {
            listed.insert((path.as_str().to_owned(), sha.to_ascii_lowercase()));
        }
    }
    Ok(())
}

/// Checks every file of `targets/`: named `SHA256.NAME`, content with that SHA-256, and
/// listed as `NAME` (with its folder) by some targets version.
fn check_all_target_files(
    layout: &Layout,
    listed: &BTreeSet<(String, String)>,
) -> Result<(), Error> {
    let dir = layout.targets_dir();
    if !dir.exists() {
        return Ok(());
    }
    for (rel, path) in walk_files(&dir)? {
        let file = format!("targets/{rel}");
        let (folder, name) = match rel.rsplit_once('/') {
            Some((d, n)) => (Some(d), n),
            None => (None, rel.as_str()),
        };
        let bad_name = || Error::Repository(format!("{file}: not a hash-prefixed target file"));
        let (sha, plain) = name.split_once('.').ok_or_else(bad_name)?;
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad_name());
        }
        let target = match folder {
            Some(d) => format!("{d}/{plain}"),
            None => plain.to_owned(),
        };
        TargetPath::new(target.clone()).map_err(|e| Error::Repository(format!("{file}: {e}")))?;
        if sha256_hex(&read(&path)?) != sha.to_ascii_lowercase() {
            return Err(Error::Repository(format!(
                "{file}: content does not match the SHA-256 in its name"
            )));
        }
        if !listed.contains(&(target.clone(), sha.to_ascii_lowercase())) {
            return Err(Error::Repository(format!(
                "{file}: no targets metadata lists {target} with this hash"
            )));
        }
    }
    Ok(())
}
