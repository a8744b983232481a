//! The endpoint agent: one update cycle (`check`, `apply`), the service loop (`run`), the
//! local status record and the queue of status reports.
//!
//! One cycle, in order:
//! 1. refresh the TUF metadata from the mirrors (section 5 of the specification);
//! 2. list every target of the verified release and find the ones not in place (a file in
//!    place counts only if its content hashes to the verified SHA-256);
//! 3. download those, in parallel, each into a staging file under the state folder, with
//!    length and hash checked while streaming and the release signatures checked after;
//! 4. install the whole release atomically ([`crate::install`]);
//! 5. report files the release does not list (and quarantine them when configured);
//! 6. record the outcome and queue a status report.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use herald_manifest::TargetPath;
use herald_token_client::EndpointIdentity;
use herald_wire::RolloutState;

use crate::config::{Config, ConfigError};
use crate::hooks::{HookEnv, HookFailure, HookKind, HookOrigin, HookSet};
use crate::install::{CrashMode, InstallError, InstallRoot, ReadyFile};
use crate::rollout::{bounded, decide, prune, Decision, Memory};

/// Fault injection for crash tests: when set to N, the process aborts just before step N of
/// the next install, as a power cut would. Never set it in production.
pub const CRASH_AT_STEP_VAR: &str = "HERALD_UPDATE_CRASH_AT_STEP";
use crate::transport::{HttpsConfig, HttpsTransport, Timeouts, TransportConfigError};
use crate::tuf::{init_trusted_root, Client, ClientError, FoundTarget, ReleaseSignatures};

/// Why an agent operation failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum AgentError {
    /// The configuration is incomplete or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A configured file could not be read.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The transport could not be built.
    #[error(transparent)]
    Transport(#[from] TransportConfigError),
    /// The TUF workflow or a download failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Installing failed; the previous release is intact.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// A state file could not be written.
    #[error("{path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A status report could not be signed.
    #[error("signing a status report: {0}")]
    Proof(String),
    /// The client certificate names no usable endpoint identity (name and group).
    #[error("{path}: {reason}")]
    Identity { path: PathBuf, reason: String },
    /// A `pre_install` hook failed: the release was not installed (it is tried again next
    /// cycle).
    #[error("release not installed: {0}")]
    Hook(#[from] HookFailure),
    /// The release installed, failed `post_install` or its health check, and was rolled
    /// back; it is not tried again until a newer release is published.
    #[error("release {release} rolled back to {}: {reason}", .to.map_or_else(|| "nothing".to_owned(), |v| v.to_string()))]
    RolledBack {
        release: u64,
        /// The release restored, if any.
        to: Option<u64>,
        reason: String,
    },
    /// The release installed and failed its health check, and no previous release was kept
    /// to roll back to; it is not tried again until a newer release is published.
    #[error(
        "release {release} is unhealthy and there is no previous release to roll back to: {reason}"
    )]
    Unhealthy { release: u64, reason: String },
}

/// What an update cycle would change, or changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The release (targets metadata version) offered by the repository.
    pub offered_version: u64,
    /// The installed release, if any.
    pub installed_version: Option<u64>,
    /// Targets to download and install, with their lengths.
    pub changed: Vec<(String, u64)>,
    /// Targets already in place with the verified content.
    pub unchanged: usize,
    /// Installed files the new release no longer lists (removed at install).
    pub removed: Vec<String>,
    /// What the rollout policy (or the endpoint's hold, or its memory of refused releases)
    /// decided: the release `offered_version` names, or staying where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}

impl Plan {
    /// True when nothing would change: the endpoint stays where it is (held, refused,
    /// pending without a previous release), or the offered release is installed as listed.
    pub fn is_up_to_date(&self) -> bool {
        if self.decision.as_ref().is_some_and(|d| d.install.is_none()) {
            return true;
        }
        self.changed.is_empty()
            && self.removed.is_empty()
            && self.installed_version == Some(self.offered_version)
    }
}

/// A target of the release to install, where it installs when that is not its own path, and,
/// when it is already in place (or unpacked) with the verified content, that content.
type Work = (FoundTarget, Option<TargetPath>, Option<ReadyFile>);

/// Where `target` installs: `dest`, or its own path when `dest` is `None`.
fn install_path<'a>(target: &'a FoundTarget, dest: &'a Option<TargetPath>) -> &'a TargetPath {
    dest.as_ref().unwrap_or(target.path())
}

/// What one cycle works on: the plan, the targets, and the hooks of the install.
struct Cycle {
    plan: Plan,
    work: Vec<Work>,
    hooks: HookSet,
}

/// The outcome of the last cycle, kept in `STATE_DIR/status.json` and sent as the status
/// report: one type with the server's, from `herald-wire`.
pub use herald_wire::StatusReport;

/// The agent of one endpoint, built from its configuration.
#[derive(Debug)]
pub struct Agent {
    config: Config,
    mirrors: Vec<Url>,
    transport: Arc<HttpsTransport>,
    install: InstallRoot,
    state_dir: PathBuf,
    /// The mutual-TLS identity (key then certificates, PEM), which also signs status reports.
    identity_pem: Option<Vec<u8>>,
}

impl Agent {
    /// Builds the agent: transport, trusted root (copied into the state folder on first use)
    /// and install root (recovering from an interrupted install).
    pub fn new(config: Config) -> Result<Self, AgentError> {
        let mirrors = config.mirror_urls()?;
        Self::with_mirrors(config, mirrors)
    }

    /// Like [`Agent::new`], with the given mirrors instead of the configured ones.
    pub fn with_mirrors(config: Config, mirrors: Vec<Url>) -> Result<Self, AgentError> {
        if mirrors.is_empty() {
            return Err(ConfigError::Missing("mirrors").into());
        }
        for mirror in &mirrors {
            crate::config::check_mirror(mirror, mirror.as_str(), config.allow_plain_http)?;
        }
        let state_dir = config.state_dir()?.to_path_buf();
        let metadata_dir = state_dir.join("metadata");
        if !metadata_dir.join("root.json").exists() {
            let trusted = config
                .trusted_root
                .as_deref()
                .ok_or(ConfigError::Missing("trusted_root"))?;
            init_trusted_root(&metadata_dir, &read(trusted)?)?;
        }
        let https = https_config(&config)?;
        let transport = Arc::new(HttpsTransport::new(&https)?);
        let (mut install, recovery) = InstallRoot::open(config.install_root()?)?;
        tracing::debug!(?recovery, "install root opened");
        if let Some(step) = std::env::var(CRASH_AT_STEP_VAR)
            .ok()
            .and_then(|v| v.parse().ok())
        {
            install.simulate_crash_at(step, CrashMode::Abort);
        }
        Ok(Agent {
            config,
            mirrors,
            transport,
            install,
            state_dir,
            identity_pem: https.client_identity_pem,
        })
    }

    /// The install root.
    pub fn install_root(&self) -> &InstallRoot {
        &self.install
    }

    fn client(&self) -> Result<Client, AgentError> {
        let mut metadata = self
            .mirrors
            .iter()
            .filter_map(|m| m.join("metadata/").ok())
            .collect::<Vec<_>>()
            .into_iter();
        // `with_mirrors` refuses an empty list and mirrors that cannot be a base.
        let first = metadata.next().ok_or(ConfigError::Missing("mirrors"))?;
        let policy = if self.config.require_release_signatures {
            ReleaseSignatures::Required
        } else {
            ReleaseSignatures::WhenDeclared
        };
        Ok(Client::new(
            self.transport.clone(),
            first,
            self.state_dir.join("metadata"),
        )
        .mirrors(metadata)
        .release_signatures(policy))
    }

    fn target_mirrors(&self) -> Vec<Url> {
        self.mirrors
            .iter()
            .filter_map(|m| m.join("targets/").ok())
            .collect()
    }

    /// Refreshes metadata and works out what an install would change, without changing it.
    pub async fn check(&self, now: OffsetDateTime) -> Result<Plan, AgentError> {
        let mut client = self.client()?;
        client.refresh(now).await?;
        Ok(self.plan(&client).await?.plan)
    }

    /// Decides what this cycle installs (the signed rollout policy, if the repository has
    /// one, evaluated for this endpoint; its hold; the releases it refused) and which hooks
    /// run. Refusals that can no longer matter are forgotten.
    fn decide(
        &self,
        client: &Client,
        installed: Option<u64>,
    ) -> Result<(Decision, HookSet, bool), AgentError> {
        let policy = client.rollout_policy()?;
        let targets_version = client.targets().map(|t| t.version).unwrap_or_default();
        let identity = match policy {
            Some(_) => endpoint_identity(&self.config)?,
            None => None,
        };
        let mut memory: Memory = self.install.rollout_memory()?.unwrap_or_default();
        let before = memory.clone();
        prune(&mut memory, policy.as_ref(), targets_version);
        if memory != before {
            self.install.set_rollout_memory(&memory)?;
        }
        let decision = decide(
            policy.as_ref(),
            targets_version,
            identity.as_ref(),
            &self.config,
            installed,
            &memory,
        );
        let mut hooks = HookSet::default();
        if let Some(configured) = &self.config.hooks {
            hooks.add(configured, HookOrigin::Configuration);
        }
        if self.config.allow_release_hooks {
            let signed = decision
                .install
                .and_then(|r| policy.as_ref()?.releases.get(&r)?.hooks.as_ref());
            if let Some(signed) = signed {
                hooks.add(signed, HookOrigin::Release);
            }
        }
        Ok((decision, hooks, policy.is_some()))
    }

    async fn plan(&self, client: &Client) -> Result<Cycle, AgentError> {
        let installed = self.install.installed()?;
        let installed_version = installed.as_ref().map(|r| r.version);
        let (decision, hooks, rollout) = self.decide(client, installed_version)?;
        let Some(offered_version) = decision.install else {
            let plan = Plan {
                offered_version: installed_version.unwrap_or_default(),
                installed_version,
                decision: Some(decision),
                ..Plan::default()
            };
            return Ok(Cycle {
                plan,
                work: Vec::new(),
                hooks,
            });
        };
        // Each target with the path it installs at when that is not its own: below its
        // release folder under a rollout policy. Taken from the list one by one, never copied
        // as a whole.
        let targets: Box<dyn Iterator<Item = (FoundTarget, Option<TargetPath>)>> = if rollout {
            let release = client.release_targets(offered_version)?.into_iter();
            Box::new(release.map(|(t, dest)| (t, Some(dest))))
        } else {
            Box::new(client.all_targets().await?.into_iter().map(|t| (t, None)))
        };
        let mut plan = Plan {
            offered_version,
            installed_version,
            decision: Some(decision),
            ..Plan::default()
        };
        let mut work: Vec<Work> = Vec::with_capacity(targets.size_hint().0);
        for (target, dest) in targets {
            let at = install_path(&target, &dest);
            if self.is_package(at) {
                let ready = self.package_in_place(client, &target, &dest, installed.as_ref())?;
                if ready.is_some() {
                    plan.unchanged += 1;
                } else {
                    plan.changed.push((at.as_str().to_owned(), target.length()));
                }
                work.push((target, dest, ready));
                continue;
            }
            // Hashed through the install root's handles: a link is never followed.
            let in_place = self
                .install
                .hash(at.as_str())?
                .and_then(|(length, sha256)| client.verify_digest(&target, length, &sha256).ok());
            match in_place {
                Some(verified) => {
                    plan.unchanged += 1;
                    let ready = ReadyFile::in_place(verified, dest.clone());
                    work.push((target, dest, Some(ready)));
                }
                None => {
                    plan.changed.push((at.as_str().to_owned(), target.length()));
                    work.push((target, dest, None));
                }
            }
        }
        if let Some(installed) = installed {
            let mut listed: std::collections::BTreeSet<&str> = work
                .iter()
                .map(|(target, dest, _)| install_path(target, dest).as_str())
                .collect();
            // Files of a package that is still listed are replaced, not removed.
            for (package, record) in &installed.packages {
                if work
                    .iter()
                    .any(|(target, dest, _)| install_path(target, dest).as_str() == package)
                {
                    listed.extend(record.files.iter().map(String::as_str));
                }
            }
            plan.removed = installed
                .files
                .keys()
                .filter(|p| !listed.contains(p.as_str()))
                .cloned()
                .collect();
        }
        Ok(Cycle { plan, work, hooks })
    }

    /// True when the target installing at `dest` is a zip package to unpack (configuration
    /// `unpack_zip`).
    fn is_package(&self, dest: &TargetPath) -> bool {
        self.config.unpack_zip && dest.as_str().ends_with(".zip")
    }

    /// The package's unpacked files, when the installed ones come from this very zip (same
    /// verified length and SHA-256) and are all in place with their recorded content.
    fn package_in_place(
        &self,
        client: &Client,
        target: &FoundTarget,
        dest: &Option<TargetPath>,
        installed: Option<&crate::install::Release>,
    ) -> Result<Option<ReadyFile>, AgentError> {
        let at = install_path(target, dest);
        let Some(record) = installed.and_then(|r| r.packages.get(at.as_str())) else {
            return Ok(None);
        };
        let Some(sha256) = hex::decode(&record.zip.sha256).ok() else {
            return Ok(None);
        };
        let Ok(verified) = client.verify_digest(target, record.zip.length, &sha256) else {
            return Ok(None);
        };
        let mut parts = Vec::with_capacity(record.files.len());
        for path in &record.files {
            let Some(file) = installed.and_then(|r| r.files.get(path)) else {
                return Ok(None);
            };
            if !self.install.holds(path, file)? {
                return Ok(None);
            }
            parts.push((path.clone(), file.clone(), None));
        }
        Ok(Some(ReadyFile::unpacked(verified, dest.clone(), parts)))
    }

    /// One update cycle: refresh, decide, download what changed, run the hooks, install
    /// atomically (rolling back when the new release fails its checks), report.
    pub async fn apply(&self, now: OffsetDateTime) -> Result<Plan, AgentError> {
        let mut decided = None;
        let result = self.apply_inner(now, &mut decided).await;
        let mut status = match &result {
            Ok(plan) => StatusReport {
                installed_version: self.install.installed().ok().flatten().map(|r| r.version),
                last_check: Some(herald_token_client::rfc3339(now.unix_timestamp())),
                last_result: Some(if plan.changed.is_empty() && plan.removed.is_empty() {
                    "up-to-date".into()
                } else {
                    "installed".into()
                }),
                last_error: None,
                unlisted: self.install.unlisted().unwrap_or_default(),
                ..StatusReport::default()
            },
            Err(err) => StatusReport {
                installed_version: self.install.installed().ok().flatten().map(|r| r.version),
                last_check: Some(herald_token_client::rfc3339(now.unix_timestamp())),
                last_result: Some("error".into()),
                last_error: Some(err.to_string()),
                unlisted: self.install.unlisted().unwrap_or_default(),
                ..StatusReport::default()
            },
        };
        if let Some(decision) = decided {
            status.channel = decision.channel.clone();
            match &result {
                Ok(_) => {
                    status.release = decision.release;
                    status.state = decision.state;
                    status.reason = decision.reason.clone();
                }
                Err(err) => {
                    status.release = decision.install.or(decision.release);
                    status.state = Some(match err {
                        AgentError::RolledBack { .. } => RolloutState::RolledBack,
                        _ => RolloutState::Failed,
                    });
                    status.reason = Some(bounded(&err.to_string()));
                }
            }
        }
        self.record(&status)?;
        result
    }

    async fn apply_inner(
        &self,
        now: OffsetDateTime,
        decided: &mut Option<Decision>,
    ) -> Result<Plan, AgentError> {
        let mut client = self.client()?;
        client.refresh(now).await?;
        let Cycle { plan, work, hooks } = self.plan(&client).await?;
        decided.clone_from(&plan.decision);
        if plan.is_up_to_date() {
            tracing::info!(version = plan.offered_version, "up to date");
            return Ok(plan);
        }
        let total: u64 = plan.changed.iter().map(|(_, len)| len).sum();
        let progress = Progress::new(total);
        let mirrors = self.target_mirrors();
        let parallel = self.config.parallel_downloads.max(1);
        let client = &client;
        let ready: Vec<ReadyFile> = futures_util::stream::iter(work)
            .map(|(target, dest, ready)| {
                let mirrors = &mirrors;
                let progress = &progress;
                async move {
                    if let Some(ready) = ready {
                        return Ok::<_, AgentError>(ready);
                    }
                    let at = install_path(&target, &dest);
                    let staging = self.install.stage(at)?;
                    let package = self.is_package(at);
                    let verified = client.download_target(&target, mirrors, &staging).await?;
                    progress.add(target.length());
                    if package {
                        return Ok(self.install.unpack(verified, dest, staging)?);
                    }
                    Ok(ReadyFile::staged(verified, dest, staging))
                }
            })
            .buffer_unordered(parallel)
            .try_collect()
            .await?;
        progress.finish();
        let release = plan.offered_version;
        let env = HookEnv {
            release,
            previous: plan.installed_version,
            channel: plan.decision.as_ref().and_then(|d| d.channel.clone()),
            install_root: self.install.path().to_path_buf(),
            rolled_back_from: None,
        };
        run_hooks(&hooks, HookKind::PreInstall, &env).await?;
        self.install.install(release, &ready)?;
        tracing::info!(
            version = release,
            changed = plan.changed.len(),
            removed = plan.removed.len(),
            "release installed"
        );
        let checked = match run_hooks(&hooks, HookKind::PostInstall, &env).await {
            Ok(()) => run_hooks(&hooks, HookKind::HealthCheck, &env).await,
            Err(failure) => Err(failure),
        };
        if let Err(failure) = checked {
            return Err(self.roll_back_unhealthy(&hooks, env, failure).await);
        }
        let unlisted = self.install.unlisted()?;
        if !unlisted.is_empty() {
            tracing::warn!(files = ?unlisted, "files not listed by the release");
            if self.config.quarantine_unlisted {
                self.install.quarantine(&unlisted)?;
            }
        }
        Ok(plan)
    }

    /// After a release failed `post_install` or its health check: rolls back to the
    /// previous release, runs the configured `post_install` hooks for it, and remembers the
    /// release as refused. Returns the error that ends the cycle.
    async fn roll_back_unhealthy(
        &self,
        hooks: &HookSet,
        env: HookEnv,
        failure: HookFailure,
    ) -> AgentError {
        let release = env.release;
        let mut reason = failure.to_string();
        tracing::error!(release, %reason, "release failed its checks; rolling back");
        let (state, error) = match self.install.rollback() {
            Ok(()) => {
                let to = self.install.installed().ok().flatten().map(|r| r.version);
                let restored = HookEnv {
                    release: to.unwrap_or_default(),
                    previous: Some(release),
                    rolled_back_from: Some(release),
                    ..env
                };
                if let Err(again) =
                    run_hooks(&hooks.configured(), HookKind::PostInstall, &restored).await
                {
                    reason.push_str(&format!("; after the rollback, {again}"));
                }
                let error = AgentError::RolledBack {
                    release,
                    to,
                    reason: reason.clone(),
                };
                (RolloutState::RolledBack, error)
            }
            Err(InstallError::NoPrevious) => {
                let error = AgentError::Unhealthy {
                    release,
                    reason: reason.clone(),
                };
                (RolloutState::Failed, error)
            }
            Err(other) => {
                reason.push_str(&format!("; the rollback failed: {other}"));
                (RolloutState::Failed, AgentError::Install(other))
            }
        };
        if let Err(err) = self.refuse(release, state, &reason) {
            return err;
        }
        error
    }

    /// Remembers `release` as refused (not installed again until a newer release).
    fn refuse(&self, release: u64, state: RolloutState, reason: &str) -> Result<(), AgentError> {
        let mut memory: Memory = self.install.rollout_memory()?.unwrap_or_default();
        memory.refuse(release, state, reason);
        self.install.set_rollout_memory(&memory)?;
        Ok(())
    }

    /// Goes back to the previous release and records it. The next cycle installs what the
    /// repository offers again: to keep the machine where it is, set `hold = true` in its
    /// configuration.
    pub fn rollback(&self, now: OffsetDateTime) -> Result<(), AgentError> {
        let from = self.install.installed()?.map(|r| r.version);
        self.install.rollback()?;
        let to = self.install.installed()?.map(|r| r.version);
        let reason = "rolled back on the endpoint (herald-update rollback)";
        let status = StatusReport {
            installed_version: to,
            last_check: Some(herald_token_client::rfc3339(now.unix_timestamp())),
            last_result: Some("rolled-back".into()),
            last_error: None,
            unlisted: self.install.unlisted()?,
            release: from,
            state: Some(RolloutState::RolledBack),
            reason: Some(reason.into()),
            ..StatusReport::default()
        };
        self.record(&status)
    }

    /// Writes the status and queues a report of it.
    fn record(&self, status: &StatusReport) -> Result<(), AgentError> {
        let bytes = serde_json::to_vec_pretty(status).map_err(|e| AgentError::State {
            path: self.state_dir.join("status.json"),
            source: std::io::Error::other(e),
        })?;
        let write = |path: PathBuf| {
            herald_files::write_public(&path, &bytes)
                .map_err(|source| AgentError::State { path, source })
        };
        write(self.state_dir.join("status.json"))?;
        if self.config.status_url.is_some() {
            let queue = self.state_dir.join("reports");
            std::fs::create_dir_all(&queue).map_err(|source| AgentError::State {
                path: queue.clone(),
                source,
            })?;
            let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
            write(queue.join(format!("{nanos:024}.json")))?;
        }
        Ok(())
    }

    /// Sends queued status reports, oldest first; each is removed only once the server
    /// acknowledged it (HTTP 2xx). Returns how many were sent.
    pub async fn send_reports(&self) -> Result<usize, AgentError> {
        let Some(url) = self.config.status_url()? else {
            return Ok(0);
        };
        let queue = self.state_dir.join("reports");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&queue) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(_) => return Ok(0),
        };
        files.retain(|p| p.extension().is_some_and(|e| e == "json"));
        files.sort();
        let mut sent = 0;
        // Each report is signed with the identity's key, so that it can cross relays and the
        // server attributes it to this endpoint alone.
        // An identity that cannot sign (a key that is not PKCS#8) still reports over mutual
        // TLS directly; relays refuse such reports.
        let signer = self.identity_pem.as_deref().and_then(|pem| {
            herald_token_client::Signer::from_identity_pem(&String::from_utf8_lossy(pem))
                .map_err(|e| tracing::warn!(error = %e, "status reports go unsigned"))
                .ok()
        });
        for file in files {
            let body = read(&file)?;
            let mut headers = Vec::new();
            if let Some(signer) = &signer {
                let now = OffsetDateTime::now_utc().unix_timestamp();
                let proof = signer
                    .header(herald_token_client::Purpose::Status, &body, now)
                    .map_err(|e| AgentError::Proof(e.to_string()))?;
                headers.push((herald_wire::PROOF_HEADER, proof));
            }
            if let Err(err) = self.transport.post_json(&url, body, &headers).await {
                tracing::warn!(error = %err, "status report not sent; kept for later");
                break;
            }
            std::fs::remove_file(&file).map_err(|source| AgentError::State {
                path: file.clone(),
                source,
            })?;
            sent += 1;
        }
        Ok(sent)
    }
}

/// Runs the hooks of `kind` in a blocking task.
async fn run_hooks(hooks: &HookSet, kind: HookKind, env: &HookEnv) -> Result<(), HookFailure> {
    if hooks.of(kind).next().is_none() {
        return Ok(());
    }
    let (hooks, env) = (hooks.clone(), env.clone());
    let program = hooks
        .of(kind)
        .next()
        .map(|c| c.argv.first().cloned().unwrap_or_default())
        .unwrap_or_default();
    tokio::task::spawn_blocking(move || crate::hooks::run_kind(&hooks, kind, &env))
        .await
        .unwrap_or_else(|e| {
            Err(HookFailure {
                kind,
                origin: HookOrigin::Configuration,
                program,
                outcome: crate::hooks::HookOutcome::NotStarted(e.to_string()),
                output: String::new(),
            })
        })
}

/// Runs forever: renew the identity when due, a cycle, reports, then a wait of the interval
/// plus jitter; after failures the wait doubles each time, up to six hours. The agent is built
/// anew each cycle, so a renewed certificate is used at once.
pub async fn run_service(config: Config) -> ! {
    let mut failures: u32 = 0;
    let identity = crate::enroll::IdentityFiles::in_state_dir(
        config.state_dir.as_deref().unwrap_or(Path::new(".")),
    );
    loop {
        if identity.exists() {
            match crate::enroll::renew_if_due(&identity, false).await {
                Ok(Some(name)) => tracing::info!(%name, "certificate renewed"),
                Ok(None) => {}
                Err(err) => tracing::warn!(error = %err, "certificate renewal failed"),
            }
        }
        let outcome = match Agent::new(config.clone()) {
            Ok(agent) => {
                let result = agent.apply(crate::tuf::system_now()).await.map(drop);
                if let Err(err) = agent.send_reports().await {
                    tracing::warn!(error = %err, "sending status reports failed");
                }
                result
            }
            Err(err) => Err(err),
        };
        match outcome {
            Ok(()) => failures = 0,
            Err(err) => {
                failures = failures.saturating_add(1);
                tracing::error!(error = %err, failures, "update cycle failed");
            }
        }
        let wait = next_wait(
            config.interval_secs,
            config.jitter_secs,
            failures,
            rand_fraction(),
        );
        tracing::debug!(?wait, "waiting for the next cycle");
        tokio::time::sleep(wait).await;
    }
}

/// The wait before the next cycle: the interval doubled per consecutive failure (at most six
/// hours), plus `fraction` (0 to 1) of the jitter.
pub fn next_wait(interval: u64, jitter: u64, failures: u32, fraction: f64) -> Duration {
    const MAX: u64 = 6 * 3600;
    let base = interval
        .max(1)
        .saturating_mul(1u64 << failures.min(20))
        .min(MAX.max(interval));
    let extra = (jitter as f64 * fraction.clamp(0.0, 1.0)) as u64;
    Duration::from_secs(base.saturating_add(extra))
}

/// A random number in [0, 1) from the operating system's generator.
fn rand_fraction() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// Reads the status recorded by the last cycle.
pub fn read_status(state_dir: &Path) -> Result<Option<StatusReport>, AgentError> {
    let path = state_dir.join("status.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AgentError::State {
                path,
                source: std::io::Error::other(e),
            }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AgentError::Read { path, source }),
    }
}

/// Where the transport's trust anchors come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorSource {
    /// The configured `ca_bundle`.
    Bundle(PathBuf),
    /// The root stored by `herald-update enroll` (`identity/ca.pem`).
    Enrolled(PathBuf),
    /// The operating system's roots.
    System,
}

/// Where the transport's client certificate comes from.
#[derive(Debug, Clone)]
pub enum IdentitySource {
    /// The configured `client_cert` and `client_key`.
    Files {
        /// Certificate chain, PEM.
        cert: PathBuf,
        /// Private key, PEM.
        key: PathBuf,
    },
    /// The identity written by `herald-update enroll`.
    Enrolled(crate::enroll::IdentityFiles),
    /// No client certificate.
    None,
}

/// The endpoint's name and group, read from the client certificate the configuration uses
/// (the configured `client_cert`, else the enrolled identity's `cert.pem`); `None` without
/// one. A certificate that names no usable identity fails the cycle rather than be guessed
/// at.
pub fn endpoint_identity(config: &Config) -> Result<Option<EndpointIdentity>, AgentError> {
    let cert = match tls_sources(config).1 {
        IdentitySource::Files { cert, .. } => cert,
        IdentitySource::Enrolled(files) => files.cert_pem(),
        IdentitySource::None => return Ok(None),
    };
    let pem = std::fs::read(&cert).map_err(|source| AgentError::Read {
        path: cert.clone(),
        source,
    })?;
    let der = herald_token_client::first_certificate_der(&String::from_utf8_lossy(&pem))
        .ok_or_else(|| AgentError::Identity {
            path: cert.clone(),
            reason: "no certificate in the file".into(),
        })?;
    herald_token_client::identity_of_certificate(&der)
        .map(Some)
        .map_err(|e| AgentError::Identity {
            path: cert,
            reason: e.to_string(),
        })
}

/// The trust anchors and client identity a configuration really uses.
///
/// Without `ca_bundle`, `client_cert` and `client_key`, the identity written by
/// `herald-update enroll` in the state folder is used (its root as trust anchor, its key and
/// certificate for mutual TLS); without either, the system roots and no client certificate.
pub fn tls_sources(config: &Config) -> (AnchorSource, IdentitySource) {
    let enrolled = config
        .state_dir
        .as_deref()
        .map(crate::enroll::IdentityFiles::in_state_dir)
        .filter(crate::enroll::IdentityFiles::exists);
    let anchors = match (&config.ca_bundle, &enrolled) {
        (Some(bundle), _) => AnchorSource::Bundle(bundle.clone()),
        (None, Some(identity)) => AnchorSource::Enrolled(identity.ca_pem()),
        (None, None) => AnchorSource::System,
    };
    let identity = match (&config.client_cert, &config.client_key, enrolled) {
        (Some(cert), Some(key), _) => IdentitySource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        // `Config::validate` refuses one of `client_cert` and `client_key` without the other.
        (None, None, Some(identity)) => IdentitySource::Enrolled(identity),
        _ => IdentitySource::None,
    };
    (anchors, identity)
}

/// The transport settings of a configuration (see [`tls_sources`]).
pub fn https_config(config: &Config) -> Result<HttpsConfig, AgentError> {
    let (anchors, identity) = tls_sources(config);
    let trust_anchors_pem = match anchors {
        AnchorSource::Bundle(path) | AnchorSource::Enrolled(path) => Some(read(&path)?),
        AnchorSource::System => None,
    };
    let client_identity_pem = match identity {
        IdentitySource::Files { cert, key } => {
            let mut pem = read(&key)?;
            pem.push(b'\n');
            pem.extend(read(&cert)?);
            Some(pem)
        }
        IdentitySource::Enrolled(identity) => Some(read(&identity.identity_pem())?),
        IdentitySource::None => None,
    };
    Ok(HttpsConfig {
        trust_anchors_pem,
        client_identity_pem,
        proxy: config.proxy.clone(),
        no_proxy: config.no_proxy.clone(),
        timeouts: Timeouts::default(),
        allow_plain_http: config.allow_plain_http,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, AgentError> {
    std::fs::read(path).map_err(|source| AgentError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A progress bar on an interactive terminal; log lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        if bar.is_none() {
            tracing::info!(bytes = total, "downloading");
        }
        Progress { bar }
    }

    fn add(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_doubles_after_failures_and_is_capped() {
        assert_eq!(next_wait(300, 60, 0, 0.0), Duration::from_secs(300));
        assert_eq!(next_wait(300, 60, 0, 0.5), Duration::from_secs(330));
        assert_eq!(next_wait(300, 60, 2, 0.0), Duration::from_secs(1200));
        assert_eq!(next_wait(300, 0, 30, 0.0), Duration::from_secs(6 * 3600));
        assert_eq!(next_wait(0, 0, 0, 0.0), Duration::from_secs(1));
    }

    #[test]
    fn huge_interval_and_jitter_do_not_overflow() {
        assert_eq!(
            next_wait(u64::MAX, u64::MAX, 3, 1.0),
            Duration::from_secs(u64::MAX)
        );
    }

    #[test]
    fn up_to_date_only_when_nothing_changes() {
        let mut plan = Plan {
            offered_version: 3,
            installed_version: Some(3),
            ..Plan::default()
        };
        assert!(plan.is_up_to_date());
        plan.removed.push("old".into());
        assert!(!plan.is_up_to_date());
        plan.removed.clear();
        plan.installed_version = Some(2);
        assert!(!plan.is_up_to_date());
    }
}
