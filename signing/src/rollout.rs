//! `herald-sign rollout`: each action changes the signed rollout policy and publishes it as a
//! new targets version (then snapshot and timestamp), with the same files listed.

use herald_manifest::rollout::{percent_text, Pin, RolloutPolicy, Selector, DEFAULT_CHANNEL};
use herald_manifest::RoleType;

use crate::build::{
    next_targets_doc, policy_of, publish_targets, require_signer, rollout_text, set_policy, Context,
};
use crate::cli::{PublishArgs, RolloutCommand, SelectArgs};
use crate::fleet;
use crate::layout::Layout;
use crate::Error;

/// Runs one `herald-sign rollout` action.
pub(crate) fn run(command: &RolloutCommand) -> Result<(), Error> {
    match command {
        RolloutCommand::Status { repo, json } => status(&Layout::new(repo), *json),
        RolloutCommand::Advance {
            channel,
            percent,
            pilot_groups,
            fleet,
            publish,
        } => {
            if percent.is_none() && pilot_groups.is_empty() {
                return Err(Error::Usage(
                    "advance: give the new share (--percent) or pilot groups (--pilot-group)"
                        .into(),
                ));
            }
            change(publish, |policy| {
                let c = channel_mut(policy, channel)?;
                if c.paused {
                    return Err(Error::Repository(format!(
                        "the rollout of release {} on channel {channel} is paused: resume it \
                         before widening it",
                        c.current
                    )));
                }
                let (release, basis_points) = (c.current, c.basis_points);
                if let Some(p) = *percent {
                    if p < basis_points {
                        return Err(Error::Usage(format!(
                            "advance only widens: release {release} on channel {channel} is at \
                             {}; to stop it use `rollout pause` or `rollout abort`",
                            percent_text(basis_points)
                        )));
                    }
                }
                if let (Some(url), Some(max)) = (&fleet.fleet_url, fleet.max_failure_rate) {
                    fleet::check_failure_rate(&fleet::FleetQuery {
                        url,
                        token_file: fleet.admin_token_file.as_deref(),
                        ca_cert: fleet.ca_cert.as_deref(),
                        channel,
                        release,
                        max_basis_points: max,
                    })?;
                }
                let c = channel_mut(policy, channel)?;
                if let Some(p) = *percent {
                    c.basis_points = p;
                }
                for group in pilot_groups {
                    if !c.groups.contains(group) {
                        c.groups.push(group.clone());
                    }
                }
                Ok(format!(
                    "release {release} on channel {channel} {}",
                    rollout_text(policy, channel)
                ))
            })
        }
        RolloutCommand::Pause { channel, publish } => set_paused(publish, channel, true),
        RolloutCommand::Resume { channel, publish } => set_paused(publish, channel, false),
        RolloutCommand::Abort { channel, publish } => change(publish, |policy| {
            let c = channel_mut(policy, channel)?;
            let aborted = c.current;
            let previous = c.previous.ok_or_else(|| {
                Error::Repository(format!(
                    "channel {channel} has no previous release to return to (release \
                     {aborted} is its first); publish a fixed release instead"
                ))
            })?;
            c.current = previous;
            c.previous = None;
            c.groups.clear();
            c.basis_points = herald_manifest::rollout::BUCKETS;
            c.paused = false;
            Ok(format!(
                "aborted release {aborted} on channel {channel}: release {previous} is current \
                 again, for every endpoint"
            ))
        }),
        RolloutCommand::Hold { select, publish } => change(publish, |policy| {
            add_names(&mut policy.holds, select);
            Ok(format!("held {}", who(select)))
        }),
        RolloutCommand::Unhold { select, publish } => change(publish, |policy| {
            remove_names(&mut policy.holds, select);
            Ok(format!("released {} from holds", who(select)))
        }),
        RolloutCommand::Pin {
            release,
            select,
            publish,
        } => change(publish, |policy| {
            if !policy.releases.contains_key(release) {
                return Err(Error::Repository(format!(
                    "release {release} is not listed (listed: {}); only a channel's current or \
                     previous release, or one already pinned, can be pinned",
                    list(policy.releases.keys())
                )));
            }
            unpin(policy, select);
            let mut names = Selector::default();
            add_names(&mut names, select);
            policy.pins.push(Pin {
                release: *release,
                endpoints: names.endpoints,
                groups: names.groups,
            });
            Ok(format!("pinned {} to release {release}", who(select)))
        }),
        RolloutCommand::Unpin { select, publish } => change(publish, |policy| {
            unpin(policy, select);
            Ok(format!("unpinned {}", who(select)))
        }),
        RolloutCommand::Follow {
            group,
            channel,
            publish,
        } => change(publish, |policy| {
            if channel == DEFAULT_CHANNEL {
                policy.group_channels.remove(group);
            } else {
                policy.group_channels.insert(group.clone(), channel.clone());
            }
            Ok(format!("group {group} follows channel {channel}"))
        }),
    }
}

/// Loads the newest targets, lets `edit` change its policy (returning what it did), and
/// publishes the result as the next targets version. Nothing is written when `edit` fails or
/// changes nothing.
fn change(
    publish: &PublishArgs,
    edit: impl FnOnce(&mut RolloutPolicy) -> Result<String, Error>,
) -> Result<(), Error> {
    let ctx = Context::open(&publish.repo, &publish.keys, &publish.time)?;
    require_signer(&ctx.root, RoleType::Targets, &ctx.signers)?;
    let mut doc = next_targets_doc(&ctx.layout, ctx.now)?;
    let before = policy_of(&doc)?.ok_or_else(|| {
        Error::Repository(
            "the repository has no rollout policy yet: publish a release with \
             `herald-sign release --channel CHANNEL` first"
                .into(),
        )
    })?;
    let mut policy = before.clone();
    let summary = edit(&mut policy)?;
    if policy == before {
        return Err(Error::Usage(format!(
            "nothing to change ({summary} already)"
        )));
    }
    set_policy(&mut doc, &policy)?;
    publish_targets(&ctx, doc, &publish.expiry, &summary)
}

fn set_paused(publish: &PublishArgs, channel: &str, paused: bool) -> Result<(), Error> {
    change(publish, |policy| {
        let c = channel_mut(policy, channel)?;
        c.paused = paused;
        let verb = if paused { "paused" } else { "resumed" };
        Ok(format!(
            "{verb} the rollout of release {} on channel {channel}",
            c.current
        ))
    })
}

fn channel_mut<'a>(
    policy: &'a mut RolloutPolicy,
    channel: &str,
) -> Result<&'a mut herald_manifest::rollout::Channel, Error> {
    let known = list(policy.channels.keys());
    policy.channels.get_mut(channel).ok_or_else(|| {
        Error::Repository(format!(
            "no channel {channel} in the rollout policy (channels: {known})"
        ))
    })
}

fn add_names(selector: &mut Selector, select: &SelectArgs) {
    for e in &select.endpoints {
        if !selector.endpoints.contains(e) {
            selector.endpoints.push(e.clone());
        }
    }
    for g in &select.groups {
        if !selector.groups.contains(g) {
            selector.groups.push(g.clone());
        }
    }
}

fn remove_names(selector: &mut Selector, select: &SelectArgs) {
    selector.endpoints.retain(|e| !select.endpoints.contains(e));
    selector.groups.retain(|g| !select.groups.contains(g));
}

/// Removes the endpoints and groups of `select` from every pin, and pins left naming nobody.
fn unpin(policy: &mut RolloutPolicy, select: &SelectArgs) {
    for pin in &mut policy.pins {
        pin.endpoints.retain(|e| !select.endpoints.contains(e));
        pin.groups.retain(|g| !select.groups.contains(g));
    }
    policy
        .pins
        .retain(|p| !p.endpoints.is_empty() || !p.groups.is_empty());
}

fn who(select: &SelectArgs) -> String {
    let mut names: Vec<String> = select
        .endpoints
        .iter()
        .map(|e| format!("endpoint {e}"))
        .collect();
    names.extend(select.groups.iter().map(|g| format!("group {g}")));
    names.join(", ")
}

fn list<T: ToString>(items: impl Iterator<Item = T>) -> String {
    let items: Vec<String> = items.map(|i| i.to_string()).collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// `herald-sign rollout status`: the policy of the newest targets version.
fn status(layout: &Layout, json: bool) -> Result<(), Error> {
    let (version, bytes) = layout
        .newest("targets")?
        .ok_or_else(|| Error::Repository("no targets metadata yet".into()))?;
    let file = format!("metadata/{version}.targets.json");
    let env = crate::layout::parse_envelope(&file, &bytes)?;
    let targets: herald_manifest::Targets = crate::layout::typed(&file, &env)?;
    let policy = targets
        .rollout_policy()
        .map_err(|e| Error::Repository(format!("{file}: {e}")))?;
    let Some(policy) = policy else {
        if json {
            println!(
                "{}",
                serde_json::json!({"targets_version": version, "policy": null})
            );
        } else {
            println!("targets version {version}: no rollout policy (every endpoint installs every target)");
        }
        return Ok(());
    };
    if json {
        let out = serde_json::json!({"targets_version": version, "policy": policy.to_value()});
        println!("{out}");
        return Ok(());
    }
    println!("targets version {version}");
    for (name, c) in &policy.channels {
        println!(
            "channel {name}: release {} {}",
            c.current,
            rollout_text(&policy, name)
        );
    }
    for (group, channel) in &policy.group_channels {
        println!("group {group} follows channel {channel}");
    }
    if !policy.holds.is_empty() {
        println!(
            "held: {}",
            who(&SelectArgs {
                endpoints: policy.holds.endpoints.clone(),
                groups: policy.holds.groups.clone(),
            })
        );
    }
    for pin in &policy.pins {
        println!(
            "pinned to release {}: {}",
            pin.release,
            who(&SelectArgs {
                endpoints: pin.endpoints.clone(),
                groups: pin.groups.clone(),
            })
        );
    }
    println!("releases listed: {}", list(policy.releases.keys()));
    Ok(())
}
