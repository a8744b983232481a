//! Herald's release signing: key handling, building and signing a repository from a release
//! folder, offline bundles. The `herald-sign` binary is a thin wrapper around [`run`].
//!
//! Repository layout, signing order and the per-file signature statement are described in
//! the crate `herald-manifest` and in ARCHITECTURE.md.

#![forbid(unsafe_code)]

mod build;
mod bundle;
mod check;
mod cli;
mod error;
mod fleet;
mod fsutil;
mod keys;
mod layout;
mod rollout;
mod status;
mod store;
mod targets_doc;
mod timeutil;

pub use check::{verify_repository, RepositorySummary};
pub use cli::{
    Cli, Command, ExpiryArgs, FleetArgs, KeyArgs, PublishArgs, RoleKeyArgs, RolloutCommand,
    SelectArgs, TimeArgs,
};
pub use error::Error;
pub use keys::{generate_key, load_signers, parse_private_key_pem};

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for a failure of the requested operation (bad input, failed verification...).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a usage error.
pub const EXIT_USAGE: u8 = 2;

/// Runs one `herald-sign` command.
pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Keygen {
            out,
            encrypt_env,
            force,
        } => keys::keygen(&out, encrypt_env.as_deref(), force),
        Command::Init {
            repo,
            roles,
            keys,
            expiry,
            time,
        } => build::init(&repo, &roles, &keys, &expiry, &time),
        Command::Release {
            repo,
            from,
            prune,
            link,
            channel,
            pilot_groups,
            percent,
            hooks,
            keys,
            expiry,
            time,
        } => {
            let plan = match channel {
                Some(channel) => Some(build::ReleasePlan {
                    channel,
                    pilot_groups,
                    basis_points: percent.unwrap_or(herald_manifest::rollout::BUCKETS),
                    hooks: hooks.as_deref().map(read_hooks).transpose()?,
                }),
                None => None,
            };
            build::release(
                &repo,
                &from,
                prune,
                link,
                plan.as_ref(),
                &keys,
                &expiry,
                &time,
            )
        }
        Command::Rollout(action) => rollout::run(&action),
        Command::Sign { repo, role, keys } => build::sign(&repo, &role, &keys),
        Command::Timestamp {
            repo,
            with_snapshot,
            keys,
            expiry,
            time,
        } => build::timestamp(&repo, with_snapshot, &keys, &expiry, &time),
        Command::RotateRoot {
            repo,
            roles,
            keys,
            expiry,
            time,
        } => build::rotate_root(&repo, &roles, &keys, &expiry, &time),
        Command::Verify {
            repo,
            root,
            json,
            time,
        } => {
            let now = timeutil::now(&time)?;
            let result = verify_repository(&repo, root.as_deref(), now);
            if json {
                let report = match &result {
                    Ok(summary) => summary.to_json(),
                    Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
                };
                println!("{report}");
            } else if let Ok(summary) = &result {
                println!("{summary}");
            }
            result.map(drop)
        }
        Command::Bundle { repo, out, time } => {
            let now = timeutil::now(&time)?;
            bundle::bundle(&repo, &out, now)
        }
        Command::Status { repo, json, time } => {
            let now = timeutil::now(&time)?;
            status::status(&repo, json, now)
        }
    }
}

/// Reads a release's hooks file (TOML: `pre_install`, `post_install`, `health_check`,
/// `timeout_secs`).
fn read_hooks(path: &std::path::Path) -> Result<herald_manifest::rollout::Hooks, Error> {
    let text = String::from_utf8(fsutil::read(path)?)
        .map_err(|_| Error::Usage(format!("{}: not UTF-8 text", path.display())))?;
    let hooks: herald_manifest::rollout::Hooks =
        toml::from_str(&text).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    hooks
        .check()
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    Ok(hooks)
}
