//! The endpoint's side of the signed rollout policy: what it remembers (releases that failed
//! or were rolled back, not to be tried again) and the decision of one cycle, from who the
//! endpoint is (read from its own certificate by [`crate::agent::endpoint_identity`], never
//! from its configuration or a server).

use std::collections::BTreeMap;

use herald_manifest::rollout::{Endpoint, RolloutPolicy, Standing};
use herald_token_client::EndpointIdentity;
use herald_wire::{Group, RolloutState};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// Longest reason kept in the memory and sent in a report, in bytes.
pub const MAX_REASON: usize = 8 * 1024;

/// What the endpoint remembers between cycles (`INSTALL_ROOT/.herald/rollout.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// Releases that failed (`failed`) or were rolled back (`rolled_back`), by number, with
    /// why: not installed again until a newer release is published.
    #[serde(default)]
    pub refused: BTreeMap<u64, Refused>,
}

/// A release not to try again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// `failed` or `rolled_back`.
    pub state: RolloutState,
    /// Why (bounded).
    pub reason: String,
}

impl Memory {
    /// Remembers `release` as refused.
    pub fn refuse(&mut self, release: u64, state: RolloutState, reason: &str) {
        self.refused.insert(
            release,
            Refused {
                state,
                reason: bounded(reason),
            },
        );
    }
}

/// `text` cut to [`MAX_REASON`] bytes (on a character boundary).
pub fn bounded(text: &str) -> String {
    if text.len() <= MAX_REASON {
        return text.to_owned();
    }
    let mut end = MAX_REASON;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The decision of one cycle: what to install, and what to report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The channel followed (none without a rollout policy).
    pub channel: Option<String>,
    /// The release the report counts against: the release being rolled out to this endpoint
    /// (its channel's current release, or its pin), the one refused, or, without a policy,
    /// the repository's targets version.
    pub release: Option<u64>,
    /// The release to have installed at the end of the cycle; `None`: stay as it is.
    pub install: Option<u64>,
    /// Where the endpoint stands once the cycle succeeds.
    pub state: Option<RolloutState>,
    /// Why it is held, failed or rolled back.
    pub reason: Option<String>,
    /// Why the policy offers what it offers (none without a policy).
    pub standing: Option<Standing>,
}

/// Decides what this cycle installs and reports.
///
/// Without a policy (`policy` is `None`) the repository's targets version is the release, as
/// it always was. With one, [`RolloutPolicy::evaluate`] decides from the endpoint's name and
/// group (its certificate), its configured channel and its installed release. Then, in both
/// cases, a local `hold` keeps the endpoint where it is, and a release the endpoint refused
/// (failed or rolled back) is not installed again.
pub fn decide(
    policy: Option<&RolloutPolicy>,
    targets_version: u64,
    identity: Option<&EndpointIdentity>,
    config: &Config,
    installed: Option<u64>,
    memory: &Memory,
) -> Decision {
    let mut decision = match policy {
        None => Decision {
            release: Some(targets_version),
            install: Some(targets_version),
            state: Some(RolloutState::Installed),
            ..Decision::default()
        },
        Some(policy) => {
            let group = identity.map_or(Group::DEFAULT, |i| i.group.as_str());
            let offer = policy.evaluate(&Endpoint {
                name: identity.map(|i| i.name.as_str()),
                group,
                channel: config.channel.as_deref(),
                installed,
            });
            let state = match offer.standing {
                Standing::InRollout | Standing::Pinned => RolloutState::Installed,
                Standing::Pending | Standing::Paused | Standing::NoChannel => RolloutState::Pending,
                Standing::Held => RolloutState::Held,
            };
            let reason = match offer.standing {
                Standing::Held => Some("held by the signed rollout policy".to_owned()),
                Standing::Paused => Some("the rollout is paused".to_owned()),
                Standing::NoChannel => {
                    Some(format!("the repository has no channel {}", offer.channel))
                }
                _ => None,
            };
            Decision {
                channel: Some(offer.channel),
                release: offer.release,
                install: offer.install,
                state: Some(state),
                reason,
                standing: Some(offer.standing),
            }
        }
    };
    if config.hold {
        decision.install = None;
        decision.state = Some(RolloutState::Held);
        decision.reason = Some("held by this endpoint's configuration (hold = true)".into());
        return decision;
    }
    if let Some(refused) = decision.install.and_then(|r| memory.refused.get(&r)) {
        decision.release = decision.install;
        decision.install = None;
        decision.state = Some(refused.state);
        decision.reason = Some(refused.reason.clone());
    }
    decision
}

/// Forgets refusals that can no longer matter: with a policy, releases it no longer lists;
/// without one, every version but the repository's current one (a newer version is a newer
/// release, tried afresh).
pub fn prune(memory: &mut Memory, policy: Option<&RolloutPolicy>, targets_version: u64) {
    match policy {
        Some(policy) => memory
            .refused
            .retain(|release, _| policy.releases.contains_key(release)),
        None => memory
            .refused
            .retain(|release, _| *release == targets_version),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn policy() -> RolloutPolicy {
        RolloutPolicy::from_value(&json!({
            "format": 1,
            "channels": {"stable": {"current": 8, "previous": 7, "groups": ["pilot"],
                                    "basis_points": 0}},
            "releases": {"7": {"channel": "stable"}, "8": {"channel": "stable"}}
        }))
        .unwrap()
    }

    fn pilot() -> EndpointIdentity {
        EndpointIdentity {
            name: "EP-0001".into(),
            group: Group::new("pilot").unwrap(),
        }
    }

    #[test]
    fn a_pilot_endpoint_installs_the_current_release() {
        let d = decide(
            Some(&policy()),
            12,
            Some(&pilot()),
            &Config::default(),
            Some(7),
            &Memory::default(),
        );
        assert_eq!(d.install, Some(8));
        assert_eq!(d.state, Some(RolloutState::Installed));
        assert_eq!(d.channel.as_deref(), Some("stable"));
    }

    #[test]
    fn without_a_certificate_the_endpoint_is_in_the_default_group() {
        let d = decide(
            Some(&policy()),
            12,
            None,
            &Config::default(),
            Some(7),
            &Memory::default(),
        );
        assert_eq!((d.release, d.install), (Some(8), Some(7)));
        assert_eq!(d.state, Some(RolloutState::Pending));
    }

    #[test]
    fn a_local_hold_keeps_the_endpoint_where_it_is() {
        let config = Config {
            hold: true,
            ..Config::default()
        };
        for policy in [Some(policy()), None] {
            let d = decide(
                policy.as_ref(),
                12,
                Some(&pilot()),
                &config,
                Some(7),
                &Memory::default(),
            );
            assert_eq!(d.install, None);
            assert_eq!(d.state, Some(RolloutState::Held));
        }
    }

    #[test]
    fn a_refused_release_is_not_tried_again_until_a_newer_one() {
        let mut memory = Memory::default();
        memory.refuse(8, RolloutState::RolledBack, "health_check failed");
        let d = decide(
            Some(&policy()),
            12,
            Some(&pilot()),
            &Config::default(),
            Some(7),
            &memory,
        );
        assert_eq!((d.release, d.install), (Some(8), None));
        assert_eq!(d.state, Some(RolloutState::RolledBack));
        assert_eq!(d.reason.as_deref(), Some("health_check failed"));

        // Without a policy, a newer targets version is a newer release.
        memory.refuse(12, RolloutState::RolledBack, "health_check failed");
        let d = decide(None, 13, None, &Config::default(), Some(11), &memory);
        assert_eq!(d.install, Some(13));
        prune(&mut memory, None, 13);
        assert!(memory.refused.is_empty());
    }

    #[test]
    fn refusals_of_releases_no_longer_listed_are_forgotten() {
        let mut memory = Memory::default();
        memory.refuse(5, RolloutState::Failed, "x");
        memory.refuse(8, RolloutState::RolledBack, "y");
        prune(&mut memory, Some(&policy()), 12);
        assert_eq!(memory.refused.keys().copied().collect::<Vec<_>>(), [8]);
    }

    #[test]
    fn reasons_are_bounded() {
        let long = "é".repeat(MAX_REASON);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_REASON + 3);
        assert!(cut.ends_with("..."));
    }
}
