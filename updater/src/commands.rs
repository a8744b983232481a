//! The service commands of `herald-update`: check, apply, run, status, rollback, doctor and
//! import-bundle.

use std::path::Path;

use crate::agent::{read_status, Agent, AgentError, Plan};
use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::install::InstallRoot;
use crate::tuf::system_now;
use crate::zipcheck::{extract_checked, ZipCheckError, ZipLimits};

/// Why a service command failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum CommandError {
    /// The agent failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The bundle was refused.
    #[error("bundle {path}: {source}")]
    Bundle {
        path: std::path::PathBuf,
        #[source]
        source: ZipCheckError,
    },
    /// Output could not be encoded.
    #[error("cannot encode output: {0}")]
    Json(#[from] serde_json::Error),
    /// Enrollment failed.
    #[error("enrollment failed: {0}")]
    Enroll(#[from] crate::enroll::EnrollError),
    /// Some doctor checks failed.
    #[error("{0} check(s) failed")]
    Doctor(usize),
}

/// Runs a service command (everything but `tuf-client` and `enroll`).
pub(crate) async fn run(cli: &Cli, config: Config) -> Result<(), CommandError> {
    match &cli.command {
        Command::Check { json } => {
            let agent = Agent::new(config)?;
            let plan = agent.check(system_now()).await?;
            print_plan(&plan, *json, false)?;
        }
        Command::Apply => {
            let agent = Agent::new(config)?;
            let result = agent.apply(system_now()).await;
            if let Err(err) = agent.send_reports().await {
                tracing::warn!(error = %err, "status reports kept for later");
            }
            print_plan(&result?, false, true)?;
        }
        Command::Run => {
            tracing::info!("herald-update running");
            crate::agent::run_service(config).await;
        }
        Command::Status { json } => {
            let mut status =
                read_status(config.state_dir().map_err(AgentError::from)?)?.unwrap_or_default();
            // The install root is the truth about what is installed (the status file may
            // predate a crash); opening it finishes or undoes an interrupted install.
            let (root, _) = InstallRoot::open(config.install_root().map_err(AgentError::from)?)
                .map_err(AgentError::from)?;
            status.installed_version = root
                .installed()
                .map_err(AgentError::from)?
                .map(|r| r.version);
            if *json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                let or_never = |v: &Option<String>| v.clone().unwrap_or_else(|| "never".into());
                match status.installed_version {
                    Some(v) => println!("installed release: {v}"),
                    None => println!("installed release: none"),
                }
                println!("last check:        {}", or_never(&status.last_check));
                println!("last result:       {}", or_never(&status.last_result));
                if let Some(err) = &status.last_error {
                    println!("last error:        {err}");
                }
                if let Some(channel) = &status.channel {
                    println!("channel:           {channel}");
                }
                if let (Some(release), Some(state)) = (status.release, status.state) {
                    println!("rollout:           release {release}, {}", state.as_str());
                }
                if let Some(reason) = &status.reason {
                    println!("reason:            {reason}");
                }
                for file in &status.unlisted {
                    println!("unlisted file:     {file}");
                }
            }
        }
        Command::Rollback => {
            let agent = Agent::new(config)?;
            agent.rollback(system_now())?;
            let version = agent.install_root().installed().map_err(AgentError::from)?;
            println!(
                "rolled back to release {}",
                version.map(|r| r.version).unwrap_or_default()
            );
        }
        Command::Doctor => {
            let failed = crate::doctor::run(&config).await;
            if failed > 0 {
                return Err(CommandError::Doctor(failed));
            }
        }
        Command::ImportBundle { file } => import_bundle(config, file).await?,
        Command::Enroll {
            server,
            token,
            root_fingerprint,
            state_dir,
        } => {
            let state_dir = state_dir
                .clone()
                .or_else(|| config.state_dir.clone())
                .ok_or(crate::config::ConfigError::Missing("state_dir"))
                .map_err(AgentError::from)?;
            let server = url::Url::parse(server).map_err(|source| {
                AgentError::from(crate::config::ConfigError::Mirror {
                    value: server.clone(),
                    source,
                })
            })?;
            let files = crate::enroll::IdentityFiles::in_state_dir(&state_dir);
            let enrolled = crate::enroll::enroll(&server, token, root_fingerprint, &files).await?;
            println!("enrolled as {}", enrolled.name);
            println!("identity written to {}", enrolled.identity_dir.display());
        }
        Command::Renew { force } => {
            let state_dir = config.state_dir().map_err(AgentError::from)?;
            let files = crate::enroll::IdentityFiles::in_state_dir(state_dir);
            match crate::enroll::renew_if_due(&files, *force).await? {
                Some(name) => println!("renewed the certificate of {name}"),
                None => println!("the certificate is not due for renewal (--force renews now)"),
            }
        }
        Command::TufClient(_) => unreachable!("dispatched by crate::run"),
    }
    Ok(())
}

/// Installs from an offline bundle: the zip is checked entry by entry and unpacked into the
/// state folder, then served to the same update cycle as a `file://` mirror.
async fn import_bundle(config: Config, file: &Path) -> Result<(), CommandError> {
    let state_dir = config.state_dir().map_err(AgentError::from)?.to_path_buf();
    let unpacked = state_dir.join("bundle");
    remove_dir_if_exists(&unpacked)
        .and_then(|()| std::fs::create_dir_all(&state_dir))
        .map_err(|source| AgentError::State {
            path: unpacked.clone(),
            source,
        })?;
    extract_checked(file, &unpacked, &ZipLimits::default()).map_err(|source| {
        CommandError::Bundle {
            path: file.to_path_buf(),
            source,
        }
    })?;
    let mirror = url::Url::from_directory_path(&unpacked).map_err(|()| AgentError::State {
        path: unpacked.clone(),
        source: std::io::Error::other("bundle folder is not an absolute path"),
    })?;
    let agent = Agent::with_mirrors(config, vec![mirror])?;
    let result = agent.apply(system_now()).await;
    let _ = remove_dir_if_exists(&unpacked);
    print_plan(&result?, false, true)?;
    Ok(())
}

fn remove_dir_if_exists(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Prints what a cycle would change (`done` false) or changed (`done` true).
fn print_plan(plan: &Plan, json: bool, done: bool) -> Result<(), CommandError> {
    if json {
        println!("{}", serde_json::to_string_pretty(plan)?);
        return Ok(());
    }
    let before = plan
        .installed_version
        .map_or_else(|| "none".to_owned(), |v| v.to_string());
    if let Some(decision) = &plan.decision {
        if let Some(channel) = &decision.channel {
            let release = decision
                .release
                .map_or_else(|| "none".to_owned(), |v| v.to_string());
            let state = decision.state.map_or("unknown", |s| s.as_str());
            println!("channel {channel}: release {release}, {state}");
        }
        if decision.install.is_none() {
            let why = decision.reason.as_deref().unwrap_or("nothing to install");
            println!("staying at release {before}: {why}");
            return Ok(());
        }
    }
    if plan.is_up_to_date() {
        println!("release {} installed, up to date", plan.offered_version);
        return Ok(());
    }
    let (head, install, remove) = if done {
        ("installed, was", "installed", "removed")
    } else {
        ("offered, installed", "to install", "to remove")
    };
    println!("release {} {head} {before}", plan.offered_version);
    let bytes: u64 = plan.changed.iter().map(|(_, len)| len).sum();
    println!(
        "{} file(s) {install} ({bytes} bytes), {} unchanged, {} {remove}",
        plan.changed.len(),
        plan.unchanged,
        plan.removed.len()
    );
    for (path, len) in &plan.changed {
        println!("  + {path} ({len} bytes)");
    }
    for path in &plan.removed {
        println!("  - {path}");
    }
    Ok(())
}
