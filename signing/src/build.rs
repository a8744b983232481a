//! Building and signing: `init`, `release`, `sign`, `timestamp`, `rotate-root`.
//!
//! Write order keeps every published state valid: target files first, then targets
//! metadata, snapshot, and `timestamp.json` last. Metadata that does not yet meet its
//! threshold is never published where clients look for it: a root waits in `staged/`, a
//! timestamp in `staged/timestamp.json`; unpublished targets or snapshot versions are
//! harmless because no timestamp points at them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use herald_manifest::rollout::{
    percent_text, release_of_path, release_prefix, Channel, Hooks, ReleaseInfo, RolloutPolicy,
    BUCKETS,
};
use herald_manifest::{
    envelope_canonical_bytes, sign_canonical, Ed25519Signer, Envelope, KeyId, MetaFile, PublicKey,
    ReleaseKeys, RoleKeys, RoleType, Root, Signer, Snapshot, TargetPath, Targets, Timestamp,
    VerifiedRoot,
};
use time::OffsetDateTime;

use crate::cli::{ExpiryArgs, KeyArgs, RoleKeyArgs, TimeArgs};
use crate::fsutil::{read, walk_files, write_atomic};
use crate::keys::{load_signers, read_public_key};
use crate::layout::{parse_envelope, role_from_name, typed, Layout};
use crate::store::store_targets;
use crate::targets_doc::{Entry, TargetsDoc};
use crate::timeutil::{expiry, now};
use crate::Error;

/// What every command that signs with the current root starts from.
pub(crate) struct Context {
    pub(crate) layout: Layout,
    pub(crate) root: VerifiedRoot,
    pub(crate) now: OffsetDateTime,
    pub(crate) signers: Vec<Ed25519Signer>,
}

impl Context {
    /// The repository's verified current root, the run's time and the keys given.
    pub(crate) fn open(repo: &Path, keys: &KeyArgs, time: &TimeArgs) -> Result<Self, Error> {
        let layout = Layout::new(repo);
        let root = layout.current_root()?;
        Ok(Context {
            layout,
            root,
            now: now(time)?,
            signers: load_signers(keys)?,
        })
    }
}

/// The signers among `signers` whose key IDs are in `keyids`.
fn signers_for<'a>(signers: &'a [Ed25519Signer], keyids: &[KeyId]) -> Vec<&'a Ed25519Signer> {
    signers
        .iter()
        .filter(|s| keyids.contains(s.key_id()))
        .collect()
}

/// Fails unless at least one of `signers` is listed for `role`.
pub(crate) fn require_signer(
    root: &Root,
    role: RoleType,
    signers: &[Ed25519Signer],
) -> Result<(), Error> {
    if signers_for(signers, &role_keyids(root, role)).is_empty() {
        return Err(Error::Key {
            origin: "--key/--key-env".into(),
            reason: format!("none of the keys given is a {} key", role.as_str()),
        });
    }
    Ok(())
}

/// Whether at least one of `signers` is listed for `role`.
fn has_signer(root: &Root, role: RoleType, signers: &[Ed25519Signer]) -> bool {
    require_signer(root, role, signers).is_ok()
}

fn role_keyids(root: &Root, role: RoleType) -> Vec<KeyId> {
    root.role(role)
        .map(|r| r.keyids.clone())
        .unwrap_or_default()
}

/// Signs `env` with every signer listed for `role` in `root`; returns how many signed.
fn sign_for_role(
    env: &mut Envelope,
    root: &Root,
    role: RoleType,
    signers: &[Ed25519Signer],
    file: &str,
) -> Result<usize, Error> {
    let mine = signers_for(signers, &role_keyids(root, role));
    for s in &mine {
        env.sign(*s).map_err(|source| Error::Envelope {
            file: file.into(),
            source,
        })?;
    }
    Ok(mine.len())
}

fn envelope_bytes(env: &Envelope, file: &str) -> Result<Vec<u8>, Error> {
    env.to_canonical_bytes().map_err(|e| Error::Envelope {
        file: file.into(),
        source: e.into(),
    })
}

fn to_envelope<T: serde::Serialize>(value: &T, file: &str) -> Result<Envelope, Error> {
    Envelope::from_typed(value).map_err(|source| Error::Envelope {
        file: file.into(),
        source,
    })
}

/// Collects the public keys and thresholds given on the command line into `root`, replacing
/// the roles mentioned.
fn apply_role_args(root: &mut Root, args: &RoleKeyArgs) -> Result<(), Error> {
    let specs = [
        (RoleType::Root, &args.root_pub, args.root_threshold),
        (RoleType::Targets, &args.targets_pub, args.targets_threshold),
        (
            RoleType::Snapshot,
            &args.snapshot_pub,
            args.snapshot_threshold,
        ),
        (
            RoleType::Timestamp,
            &args.timestamp_pub,
            args.timestamp_threshold,
        ),
    ];
    for (role, files, threshold) in specs {
        let name = role.as_str();
        if !files.is_empty() {
            let keys = files
                .iter()
                .map(|f| read_public_key(f))
                .collect::<Result<Vec<PublicKey>, Error>>()?;
            let keyids = keys.iter().map(PublicKey::key_id).collect::<Vec<_>>();
            for (id, key) in keyids.iter().zip(keys) {
                root.keys.insert(id.clone(), key);
            }
            let mut unique = keyids.clone();
            unique.sort();
            unique.dedup();
            root.roles.insert(
                name.into(),
                RoleKeys {
                    keyids: unique,
                    threshold: threshold.unwrap_or(1),
                },
            );
        } else if let Some(t) = threshold {
            let role_keys = root.roles.get_mut(name).ok_or_else(|| {
                Error::Usage(format!("--{name}-threshold given but no --{name}-pub key"))
            })?;
            role_keys.threshold = t;
        }
        let role_keys = root
            .roles
            .get(name)
            .ok_or_else(|| Error::Usage(format!("role {name} needs at least one --{name}-pub")))?;
        check_threshold_arg(name, role_keys.threshold, role_keys.keyids.len())?;
    }
    if !args.release_pub.is_empty() {
        let mut keys = BTreeMap::new();
        for f in &args.release_pub {
            let key = read_public_key(f)?;
            keys.insert(key.key_id(), key);
        }
        root.release = Some(ReleaseKeys {
            keys,
            threshold: args.release_threshold.unwrap_or(1),
        });
    } else if let Some(t) = args.release_threshold {
        let release = root
            .release
            .as_mut()
            .ok_or_else(|| Error::Usage("--release-threshold given but no --release-pub".into()))?;
        release.threshold = t;
    }
    if let Some(release) = &root.release {
        check_threshold_arg("release", release.threshold, release.keys.len())?;
    }
    // Keep only keys some role still uses.
    let used: Vec<KeyId> = root
        .roles
        .values()
        .flat_map(|r| r.keyids.iter().cloned())
        .collect();
    root.keys.retain(|id, _| used.contains(id));
    Ok(())
}

fn check_threshold_arg(role: &str, threshold: u32, keys: usize) -> Result<(), Error> {
    if threshold == 0 || threshold as usize > keys {
        return Err(Error::Usage(format!(
            "{role} threshold {threshold} must be between 1 and the number of {role} keys ({keys})"
        )));
    }
    Ok(())
}

/// `herald-sign init`.
pub(crate) fn init(
    repo: &Path,
    roles: &RoleKeyArgs,
    keys: &KeyArgs,
    expiry_args: &ExpiryArgs,
    time: &TimeArgs,
) -> Result<(), Error> {
    let layout = Layout::new(repo);
    if !layout.versions("root")?.is_empty() || layout.staged_dir().join("1.root.json").exists() {
        return Err(Error::Repository(format!(
            "{}: the repository already has root metadata",
            repo.display()
        )));
    }
    let now = now(time)?;
    let signers = load_signers(keys)?;
    let mut root = Root::new(
        1,
        expiry(now, &expiry_args.expires_root)?,
        BTreeMap::new(),
        BTreeMap::new(),
    );
    apply_role_args(&mut root, roles)?;
    fs::create_dir_all(layout.targets_dir()).map_err(Error::io(&layout.targets_dir()))?;
    publish_root(&layout, None, &root, &signers)
}

/// `herald-sign rotate-root`.
pub(crate) fn rotate_root(
    repo: &Path,
    roles: &RoleKeyArgs,
    keys: &KeyArgs,
    expiry_args: &ExpiryArgs,
    time: &TimeArgs,
) -> Result<(), Error> {
    let Context {
        layout,
        root: current,
        now,
        signers,
    } = Context::open(repo, keys, time)?;
    let mut root = current.get().clone();
    root.version = current.version + 1;
    root.expires = expiry(now, &expiry_args.expires_root)?;
    apply_role_args(&mut root, roles)?;
    publish_root(&layout, Some(&current), &root, &signers)
}

/// Signs a new root with the keys of the old and new root role, then publishes it if both
/// thresholds are met, or stages it for more signatures.
fn publish_root(
    layout: &Layout,
    previous: Option<&VerifiedRoot>,
    root: &Root,
    signers: &[Ed25519Signer],
) -> Result<(), Error> {
    let file = format!("{}.root.json", root.version);
    let mut env = to_envelope(root, &file)?;
    let mut keyids = role_keyids(root, RoleType::Root);
    if let Some(prev) = previous {
        keyids.extend(role_keyids(prev, RoleType::Root));
    }
    for s in signers_for(signers, &keyids) {
        env.sign(s).map_err(|source| Error::Envelope {
            file: file.clone(),
            source,
        })?;
    }
    store_root(
        layout,
        previous,
        root.version,
        &envelope_bytes(&env, &file)?,
    )
}

/// Publishes root bytes into `metadata/` when they verify against `previous` (or by
/// themselves for version 1), otherwise keeps them in `staged/`.
fn store_root(
    layout: &Layout,
    previous: Option<&VerifiedRoot>,
    version: u64,
    bytes: &[u8],
) -> Result<(), Error> {
    let verdict = match previous {
        None => VerifiedRoot::trust_anchor(bytes),
        Some(prev) => prev.verify_next_root(bytes),
    };
    let published = [
        layout.versioned(version, "root"),
        layout.metadata("root.json"),
    ];
    let staged = layout.staged_dir().join(format!("{version}.root.json"));
    publish_or_stage(&published, &staged, bytes, verdict.map(drop), "root")
}

/// Writes `bytes` to every `published` path (and drops the staged copy) when `verdict` is
/// good; otherwise keeps them at `staged`, out of clients' reach, for more signatures.
fn publish_or_stage(
    published: &[PathBuf],
    staged: &Path,
    bytes: &[u8],
    verdict: Result<(), herald_manifest::VerifyError>,
    role: &str,
) -> Result<(), Error> {
    match verdict {
        Ok(()) => {
            for path in published {
                write_atomic(path, bytes)?;
            }
            if staged.exists() {
                fs::remove_file(staged).map_err(Error::io(staged))?;
            }
            for path in published {
                println!("published {}", path.display());
            }
        }
        Err(e) => {
            write_atomic(staged, bytes)?;
            println!(
                "{role} metadata is not complete yet ({e}); staged as {}: add signatures with \
                 `herald-sign sign --role {role}`",
                staged.display()
            );
        }
    }
    Ok(())
}

/// Characters TUF clients put into URLs without escaping them (python-tuf's `ngclient` joins
/// the target path to the base URL as is), so that a target named with one could never be
/// downloaded: `#` starts a fragment, `?` a query, `%` an escape.
const URL_UNSAFE: [char; 3] = ['#', '?', '%'];

/// The target path of a file of the release folder.
fn release_path(rel: String) -> Result<TargetPath, Error> {
    if let Some(c) = rel.chars().find(|c| URL_UNSAFE.contains(c)) {
        return Err(Error::Repository(format!(
            "release folder: {rel:?} contains {c:?}, which TUF clients do not escape in URLs; \
             rename the file"
        )));
    }
    TargetPath::new(rel).map_err(|e| Error::Repository(format!("release folder: {e}")))
}

/// How `herald-sign release --channel` publishes a release: to which channel, to whom first,
/// with which signed hooks.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReleasePlan {
    /// The channel.
    pub(crate) channel: String,
    /// Groups that get the release at once.
    pub(crate) pilot_groups: Vec<String>,
    /// Share of the other endpoints that get it, in basis points.
    pub(crate) basis_points: u32,
    /// Commands the release asks endpoints to run.
    pub(crate) hooks: Option<Hooks>,
}

/// `herald-sign release`.
#[allow(clippy::too_many_arguments)] // one per command-line option group
pub(crate) fn release(
    repo: &Path,
    from: &Path,
    prune: bool,
    link: bool,
    plan: Option<&ReleasePlan>,
    keys: &KeyArgs,
    expiry_args: &ExpiryArgs,
    time: &TimeArgs,
) -> Result<(), Error> {
    let ctx = Context::open(repo, keys, time)?;
    require_signer(&ctx.root, RoleType::Targets, &ctx.signers)?;
    let release_signers: Vec<&dyn Signer> = match &ctx.root.release {
        Some(release) => {
            let ids: Vec<KeyId> = release.keys.keys().cloned().collect();
            let mine: Vec<&dyn Signer> = signers_for(&ctx.signers, &ids)
                .into_iter()
                .map(|s| s as &dyn Signer)
                .collect();
            if mine.len() < release.threshold as usize {
                return Err(Error::Key {
                    origin: "--key/--key-env".into(),
                    reason: format!(
                        "root requires {} release signature(s) per file; {} release key(s) given",
                        release.threshold,
                        mine.len()
                    ),
                });
            }
            mine
        }
        None => Vec::new(),
    };
    let mut doc = next_targets_doc(&ctx.layout, ctx.now)?;
    // A release published to a channel lives under `releases/N/`, N the targets version
    // that publishes it.
    let prefix = plan.map(|_| release_prefix(doc.version));
    let files = walk_files(from)?
        .into_iter()
        .map(|(rel, path)| {
            // The path inside the release is checked on its own too: it is where endpoints
            // install the file.
            let target = release_path(rel.clone())?;
            let target = match &prefix {
                Some(prefix) => release_path(format!("{prefix}{rel}"))?,
                None => target,
            };
            Ok((target, path))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let count = files.len();
    let stored = store_targets(&ctx.layout, files, link, &release_signers)?;
    if prune {
        // Files of the releases a rollout policy names are not the release folder's to drop.
        doc.entries
            .retain(|path, _| doc.rollout.is_some() && release_of_path(path).is_some());
    }
    for (path, length, sha256, signatures) in stored {
        doc.entries.insert(
            path,
            Entry::Fresh {
                length,
                sha256,
                signatures,
            },
        );
    }
    let summary = match plan {
        Some(plan) => {
            let mut policy = policy_of(&doc)?.unwrap_or_else(RolloutPolicy::new);
            add_release(&mut policy, doc.version, plan);
            set_policy(&mut doc, &policy)?;
            format!(
                "release {} on channel {} ({count} file(s)), {}",
                doc.version,
                plan.channel,
                rollout_text(&policy, &plan.channel)
            )
        }
        None => format!("{count} file(s) from the release"),
    };
    publish_targets(&ctx, doc, expiry_args, &summary)
}

/// Publishes release `version` as the channel's current release. The channel's current
/// release becomes its previous one if it had reached every endpoint (100%, not paused);
/// otherwise the previous one stays (the unfinished release is superseded). Releases no
/// channel or pin names any more are dropped.
fn add_release(policy: &mut RolloutPolicy, version: u64, plan: &ReleasePlan) {
    policy.releases.insert(
        version,
        ReleaseInfo {
            channel: plan.channel.clone(),
            hooks: plan.hooks.clone().filter(|h| !h.is_empty()),
        },
    );
    let previous = policy.channels.get(&plan.channel).and_then(|c| {
        if c.basis_points >= BUCKETS && !c.paused {
            Some(c.current)
        } else {
            c.previous
        }
    });
    policy.channels.insert(
        plan.channel.clone(),
        Channel {
            current: version,
            previous,
            groups: plan.pilot_groups.clone(),
            basis_points: plan.basis_points,
            paused: false,
        },
    );
}

/// The rollout policy of a targets document under construction, checked.
pub(crate) fn policy_of(doc: &TargetsDoc) -> Result<Option<RolloutPolicy>, Error> {
    doc.rollout
        .as_ref()
        .map(RolloutPolicy::from_value)
        .transpose()
        .map_err(|e| Error::Repository(format!("targets version {}: {e}", doc.version - 1)))
}

/// Stores `policy` in `doc` after checking it, and drops the releases it no longer names:
/// their entries in the policy and their files from the targets.
pub(crate) fn set_policy(doc: &mut TargetsDoc, policy: &RolloutPolicy) -> Result<(), Error> {
    let mut policy = policy.clone();
    let needed = policy.needed_releases();
    policy
        .releases
        .retain(|release, _| needed.contains(release));
    policy
        .check()
        .map_err(|e| Error::Repository(e.to_string()))?;
    doc.entries
        .retain(|path, _| release_of_path(path).is_none_or(|r| needed.contains(&r)));
    doc.rollout = Some(policy.to_value());
    Ok(())
}

/// One line saying how far a channel's current release is rolled out.
pub(crate) fn rollout_text(policy: &RolloutPolicy, channel: &str) -> String {
    let Some(c) = policy.channels.get(channel) else {
        return format!("no channel {channel}");
    };
    let mut text = format!("rolled out to {}", percent_text(c.basis_points));
    if !c.groups.is_empty() {
        text.push_str(&format!(" and group(s) {}", c.groups.join(", ")));
    }
    if c.paused {
        text.push_str(", paused");
    }
    match c.previous {
        Some(p) => text.push_str(&format!("; the others keep release {p}")),
        None => text.push_str("; the others keep what they have"),
    }
    text
}

/// The newest targets metadata, as the start of the next version (version and expiry still
/// those of the newest; [`publish_targets`] sets them).
pub(crate) fn next_targets_doc(layout: &Layout, now: OffsetDateTime) -> Result<TargetsDoc, Error> {
    let mut doc = match layout.newest("targets")? {
        Some((v, bytes)) => {
            let file = format!("metadata/{v}.targets.json");
            let env = parse_envelope(&file, &bytes)?;
            TargetsDoc::from_previous(typed::<Targets>(&file, &env)?)
        }
        None => TargetsDoc::from_previous(Targets::new(0, now)),
    };
    doc.version += 1;
    Ok(doc)
}

/// Signs targets version `doc.version` with the targets keys given and writes it; then,
/// when it meets its threshold and snapshot and timestamp keys are given, publishes a new
/// snapshot and timestamp. `summary` says what the version holds.
pub(crate) fn publish_targets(
    ctx: &Context,
    mut doc: TargetsDoc,
    expiry_args: &ExpiryArgs,
    summary: &str,
) -> Result<(), Error> {
    let Context {
        layout,
        root,
        now,
        signers,
    } = ctx;
    let version = doc.version;
    doc.expires = expiry(*now, &expiry_args.expires_targets)?;
    let file = format!("{version}.targets.json");
    let listed = doc.entries.len();
    let canonical = doc.canonical().map_err(|e| Error::Envelope {
        file: file.clone(),
        source: e.into(),
    })?;
    drop(doc);
    let mine: Vec<&dyn Signer> = signers_for(signers, &role_keyids(root, RoleType::Targets))
        .into_iter()
        .map(|s| s as &dyn Signer)
        .collect();
    let sigs = sign_canonical(&canonical, &mine).map_err(|e| Error::Key {
        origin: "targets key".into(),
        reason: e.to_string(),
    })?;
    let bytes = envelope_canonical_bytes(&sigs, &canonical).map_err(|e| Error::Envelope {
        file: file.clone(),
        source: e.into(),
    })?;
    let path = layout.versioned(version, "targets");
    write_atomic(&path, &bytes)?;
    println!(
        "wrote {} ({summary}, {listed} target(s) listed)",
        path.display()
    );
    if let Err(e) = root.check_signatures(RoleType::Targets, &canonical, &sigs) {
        println!(
            "targets version {version} is not complete yet ({e}): add signatures with \
             `herald-sign sign --role targets`, then run `herald-sign timestamp --with-snapshot`"
        );
        return Ok(());
    }
    drop(canonical);
    if !has_signer(root, RoleType::Snapshot, signers)
        || !has_signer(root, RoleType::Timestamp, signers)
    {
        println!(
            "no snapshot or timestamp key given: publish targets version {version} with \
             `herald-sign timestamp --with-snapshot` and those keys"
        );
        return Ok(());
    }
    publish_snapshot_and_timestamp(
        layout,
        root,
        signers,
        *now,
        expiry_args,
        Some((version, bytes)),
    )
}

/// Writes a new snapshot listing the newest targets metadata, then a new timestamp.
fn publish_snapshot_and_timestamp(
    layout: &Layout,
    root: &VerifiedRoot,
    signers: &[Ed25519Signer],
    now: OffsetDateTime,
    expiry_args: &ExpiryArgs,
    checked_targets: Option<(u64, Vec<u8>)>,
) -> Result<(), Error> {
    require_signer(root, RoleType::Snapshot, signers)?;
    require_signer(root, RoleType::Timestamp, signers)?;
    let (targets_version, targets_bytes) = match checked_targets {
        Some(known) => known,
        None => {
            let (version, bytes) = layout.newest("targets")?.ok_or_else(|| {
                Error::Repository("no targets metadata: run `herald-sign release`".into())
            })?;
            root.check_role_signatures(RoleType::Targets, &bytes)
                .map_err(|source| Error::Verify {
                    file: format!("metadata/{version}.targets.json"),
                    source,
                })?;
            (version, bytes)
        }
    };
    let version = layout.versions("snapshot")?.last().map_or(1, |v| v + 1);
    let snapshot = Snapshot::new(
        version,
        expiry(now, &expiry_args.expires_snapshot)?,
        BTreeMap::from([(
            "targets.json".to_owned(),
            MetaFile::of_bytes(targets_version, &targets_bytes),
        )]),
    );
    let file = format!("{version}.snapshot.json");
    let mut env = to_envelope(&snapshot, &file)?;
    sign_for_role(&mut env, root, RoleType::Snapshot, signers, &file)?;
    let bytes = envelope_bytes(&env, &file)?;
    let path = layout.versioned(version, "snapshot");
    write_atomic(&path, &bytes)?;
    println!("wrote {}", path.display());
    if let Err(e) = root.check_role_signatures(RoleType::Snapshot, &bytes) {
        println!(
            "snapshot version {version} is not complete yet ({e}): add signatures with \
             `herald-sign sign --role snapshot`, then run `herald-sign timestamp`"
        );
        return Ok(());
    }
    publish_timestamp(layout, root, signers, now, expiry_args)
}

/// Writes a new timestamp listing the newest snapshot (which must meet its threshold).
fn publish_timestamp(
    layout: &Layout,
    root: &VerifiedRoot,
    signers: &[Ed25519Signer],
    now: OffsetDateTime,
    expiry_args: &ExpiryArgs,
) -> Result<(), Error> {
    require_signer(root, RoleType::Timestamp, signers)?;
    let (snapshot_version, snapshot_bytes) = layout.newest("snapshot")?.ok_or_else(|| {
        Error::Repository("no snapshot metadata: run `herald-sign release` first".into())
    })?;
    root.check_role_signatures(RoleType::Snapshot, &snapshot_bytes)
        .map_err(|source| Error::Verify {
            file: format!("metadata/{snapshot_version}.snapshot.json"),
            source,
        })?;
    let previous = read_timestamp_version(layout)?;
    let version = previous.map_or(1, |v| v + 1);
    let timestamp = Timestamp::new(
        version,
        expiry(now, &expiry_args.expires_timestamp)?,
        MetaFile::of_bytes(snapshot_version, &snapshot_bytes),
    );
    let file = "timestamp.json";
    let mut env = to_envelope(&timestamp, file)?;
    sign_for_role(&mut env, root, RoleType::Timestamp, signers, file)?;
    store_timestamp(layout, root, &envelope_bytes(&env, file)?)
}

/// The version of the newest timestamp, published or staged.
fn read_timestamp_version(layout: &Layout) -> Result<Option<u64>, Error> {
    let mut best = None;
    for path in [
        layout.metadata("timestamp.json"),
        layout.staged_dir().join("timestamp.json"),
    ] {
        if path.exists() {
            let file = path.display().to_string();
            let env = parse_envelope(&file, &read(&path)?)?;
            best = best.max(env.version());
        }
    }
    Ok(best)
}

/// Publishes a timestamp if it meets its threshold, otherwise stages it.
fn store_timestamp(layout: &Layout, root: &VerifiedRoot, bytes: &[u8]) -> Result<(), Error> {
    publish_or_stage(
        &[layout.metadata("timestamp.json")],
        &layout.staged_dir().join("timestamp.json"),
        bytes,
        root.check_role_signatures(RoleType::Timestamp, bytes),
        "timestamp",
    )
}

/// `herald-sign timestamp`.
pub(crate) fn timestamp(
    repo: &Path,
    with_snapshot: bool,
    keys: &KeyArgs,
    expiry_args: &ExpiryArgs,
    time: &TimeArgs,
) -> Result<(), Error> {
    let Context {
        layout,
        root,
        now,
        signers,
    } = Context::open(repo, keys, time)?;
    if with_snapshot {
        publish_snapshot_and_timestamp(&layout, &root, &signers, now, expiry_args, None)
    } else {
        publish_timestamp(&layout, &root, &signers, now, expiry_args)
    }
}

/// `herald-sign sign --role root`: signs the staged root if there is one (publishing it
/// once it meets the old and new thresholds), otherwise adds a signature to the newest
/// published root.
fn sign_root(layout: &Layout, signers: &[Ed25519Signer]) -> Result<(), Error> {
    let staged = fs::read_dir(layout.staged_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter_map(|n| {
            let version = n.strip_suffix(".root.json")?.parse::<u64>().ok()?;
            Some((version, n))
        })
        .max();
    // A first root can wait in staged/ before any root is published.
    let first_staged = staged.as_ref().is_some_and(|(v, _)| *v == 1);
    let chain = if first_staged {
        Vec::new()
    } else {
        layout.root_chain()?
    };
    let (path, previous) = match staged {
        Some((_, name)) => (layout.staged_dir().join(name), chain.last()),
        None => {
            let current = chain
                .last()
                .ok_or_else(|| Error::Repository("no root metadata".into()))?;
            let previous = chain.len().checked_sub(2).and_then(|i| chain.get(i));
            (layout.versioned(current.version, "root"), previous)
        }
    };
    let file = path.display().to_string();
    let mut env = parse_envelope(&file, &read(&path)?)?;
    let new_root: Root = typed(&file, &env)?;
    let mut keyids = role_keyids(&new_root, RoleType::Root);
    if let Some(prev) = previous {
        keyids.extend(role_keyids(prev, RoleType::Root));
    }
    let mine = signers_for(signers, &keyids);
    if mine.is_empty() {
        return Err(Error::Key {
            origin: "--key/--key-env".into(),
            reason: "none of the keys given is a root key".into(),
        });
    }
    for s in mine {
        env.sign(s).map_err(|source| Error::Envelope {
            file: file.clone(),
            source,
        })?;
    }
    store_root(
        layout,
        previous,
        new_root.version,
        &envelope_bytes(&env, &file)?,
    )
}

/// `herald-sign sign --role ROLE`.
pub(crate) fn sign(repo: &Path, role: &str, keys: &KeyArgs) -> Result<(), Error> {
    let role = role_from_name(role)?;
    let layout = Layout::new(repo);
    let signers = load_signers(keys)?;
    if role == RoleType::Root {
        return sign_root(&layout, &signers);
    }
    let current = layout.current_root()?;
    let none_applies = |role: &str| Error::Key {
        origin: "--key/--key-env".into(),
        reason: format!("none of the keys given is a {role} key"),
    };
    match role {
        RoleType::Root => sign_root(&layout, &signers),
        RoleType::Timestamp => {
            let staged = layout.staged_dir().join("timestamp.json");
            let path = if staged.exists() {
                staged
            } else {
                layout.metadata("timestamp.json")
            };
            let file = path.display().to_string();
            let mut env = parse_envelope(&file, &read(&path)?)?;
            if sign_for_role(&mut env, &current, RoleType::Timestamp, &signers, &file)? == 0 {
                return Err(none_applies("timestamp"));
            }
            store_timestamp(&layout, &current, &envelope_bytes(&env, &file)?)
        }
        RoleType::Targets | RoleType::Snapshot => {
            let name = role.as_str();
            let (version, bytes) = layout
                .newest(name)?
                .ok_or_else(|| Error::Repository(format!("no {name} metadata to sign")))?;
            let file = format!("metadata/{version}.{name}.json");
            let mut env = parse_envelope(&file, &bytes)?;
            if sign_for_role(&mut env, &current, role, &signers, &file)? == 0 {
                return Err(none_applies(name));
            }
            let bytes = envelope_bytes(&env, &file)?;
            write_atomic(&layout.versioned(version, name), &bytes)?;
            let next = if role == RoleType::Targets {
                "herald-sign timestamp --with-snapshot"
            } else {
                "herald-sign timestamp"
            };
            match current.check_role_signatures(role, &bytes) {
                Ok(()) => {
                    println!("signed {file}; it meets its threshold: publish it with `{next}`")
                }
                Err(e) => println!("signed {file}; not complete yet ({e})"),
            }
            Ok(())
        }
    }
}
