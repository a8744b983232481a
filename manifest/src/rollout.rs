//! The rollout policy (Herald extension): who gets which release, and when.
//!
//! The policy is the `x-herald-rollout` member of the top-level targets metadata's `signed`
//! part, so it is signed by the targets keys, versioned with the targets metadata and covered
//! by TUF's snapshot and timestamp: a mirror that changes a percentage breaks a signature, and
//! an older rollout step is an older targets version, refused as a rollback.
//!
//! ```json
//! "x-herald-rollout": {
//!   "format": 1,
//!   "channels": {"stable": {"current": 8, "previous": 7, "groups": ["pilot"],
//!                           "basis_points": 1000, "paused": false}},
//!   "releases": {"7": {"channel": "stable"}, "8": {"channel": "stable",
//!                "hooks": {"health_check": ["/usr/local/bin/acme-health"]}}},
//!   "group_channels": {"testers": "beta"},
//!   "holds": {"endpoints": ["KIOSK-0007"], "groups": []},
//!   "pins": [{"release": 7, "endpoints": [], "groups": ["kiosks"]}]
//! }
//! ```
//!
//! A release is named by the targets metadata version that published it; its files are the
//! targets under `releases/N/` (listed by the same top-level targets metadata), installed at
//! their paths below that prefix. Every release a channel (current or previous) or a pin
//! names stays listed, so phased endpoints can stay on the previous one.
//!
//! Membership ([`bucket`]) is deterministic per endpoint and release: the SHA-256 of
//! `herald-rollout-v1`, NUL, the endpoint's name, NUL, the release number in decimal; its
//! first 8 bytes as a big-endian integer modulo 10,000 give the endpoint's bucket. An endpoint
//! is in a rollout at `basis_points` B when its bucket is below B (10,000 basis points are
//! 100%), so widening from 10% to 50% keeps the first 10% in.
//!
//! [`RolloutPolicy::evaluate`] decides, for one endpoint, which release it should have now.
//! Like the rest of this crate it does no I/O.

use std::collections::BTreeMap;

use herald_wire::Group;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::listing::TargetsIndex;
use crate::metadata::{TargetFile, Targets};
use crate::path::{PathError, TargetPath};
use crate::verify::VerifiedTargets;

/// Name of the targets member holding the rollout policy.
pub const ROLLOUT_FIELD: &str = "x-herald-rollout";

/// The policy format this crate reads and writes. A policy of another format is refused:
/// an endpoint never guesses what a newer policy means.
pub const POLICY_FORMAT: u32 = 1;

/// Number of membership buckets: basis points of the fleet (10,000 is 100%).
pub const BUCKETS: u32 = 10_000;

/// The channel an endpoint follows when neither its configuration nor the policy's
/// `group_channels` names one.
pub const DEFAULT_CHANNEL: &str = "stable";

/// The folder of the repository's targets holding one folder per release (`releases/N/`).
pub const RELEASES_DIR: &str = "releases";

/// Domain separation string of the membership hash.
pub const MEMBERSHIP_DOMAIN: &str = "herald-rollout-v1";

/// Longest hook time limit accepted, in seconds.
pub const MAX_HOOK_TIMEOUT_SECS: u64 = 3600;

/// Why a rollout policy cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The policy is not the JSON shape of a policy.
    #[error("rollout policy: {0}")]
    Shape(String),
    /// The policy is of a format this version does not know.
    #[error(
        "rollout policy format {0} is not supported (this version reads format {POLICY_FORMAT})"
    )]
    Format(u32),
    /// A group, channel or endpoint name is not valid.
    #[error("rollout policy: {what} {name:?} is not a valid name")]
    BadName {
        /// What the name names.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A release is named that the policy does not list.
    #[error("rollout policy: {what} names release {release}, which is not listed")]
    UnknownRelease {
        /// Where it is named.
        what: String,
        /// The release.
        release: u64,
    },
    /// A channel names a release of another channel.
    #[error("rollout policy: channel {channel:?} names release {release} of channel {listed:?}")]
    WrongChannel {
        /// The channel.
        channel: String,
        /// The release.
        release: u64,
        /// The release's own channel.
        listed: String,
    },
    /// A channel's previous release is its current one.
    #[error("rollout policy: channel {0:?} has the same current and previous release")]
    SameRelease(String),
    /// A share of the fleet above 100%.
    #[error("rollout policy: channel {channel:?} rolls out to {basis_points} basis points (at most {BUCKETS})")]
    BasisPoints {
        /// The channel.
        channel: String,
        /// The value.
        basis_points: u32,
    },
    /// A hook names no program, or its time limit is out of range.
    #[error("rollout policy: release {release}: {problem}")]
    Hook {
        /// The release.
        release: u64,
        /// What is wrong.
        problem: String,
    },
    /// A pin names nobody.
    #[error("rollout policy: the pin to release {0} names no endpoint and no group")]
    EmptyPin(u64),
}

/// The signed rollout policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutPolicy {
    /// The policy format ([`POLICY_FORMAT`]).
    pub format: u32,
    /// The channels, by name.
    #[serde(default)]
    pub channels: BTreeMap<String, Channel>,
    /// Every release whose files the repository lists, by release number.
    #[serde(default)]
    pub releases: BTreeMap<u64, ReleaseInfo>,
    /// The channel each group follows (groups not listed follow [`DEFAULT_CHANNEL`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_channels: BTreeMap<String, String>,
    /// Endpoints and groups held at the release they have.
    #[serde(default, skip_serializing_if = "Selector::is_empty")]
    pub holds: Selector,
    /// Endpoints and groups pinned to a release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<Pin>,
}

/// One channel: its current release, the one before, and how far the current one is rolled
/// out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// The release being rolled out (or fully out).
    pub current: u64,
    /// The release endpoints outside the rollout keep (none for a channel's first release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<u64>,
    /// Groups that get the current release at once (pilot groups).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Share of the other endpoints that get it, in basis points (10,000 is 100%).
    pub basis_points: u32,
    /// When true, no endpoint installs the current release that has not already.
    #[serde(default)]
    pub paused: bool,
}

/// A listed release: its channel and its own signed hooks, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseInfo {
    /// The channel it was published to.
    pub channel: String,
    /// Commands the release asks endpoints to run (only endpoints configured to allow
    /// release hooks run them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
}

/// Commands run around an install: each an argument vector (no shell), empty for none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Run after the release's files are downloaded and verified, before they are installed;
    /// a failure cancels the install.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_install: Vec<String>,
    /// Run after the install; a failure rolls the install back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_install: Vec<String>,
    /// Run after `post_install`; a failure (or running out of time) rolls the install back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_check: Vec<String>,
    /// Time limit of each command, in seconds (1 to [`MAX_HOOK_TIMEOUT_SECS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

impl Hooks {
    /// The commands by name (`pre_install`, `post_install`, `health_check`).
    pub fn commands(&self) -> [(&'static str, &[String]); 3] {
        [
            ("pre_install", &self.pre_install),
            ("post_install", &self.post_install),
            ("health_check", &self.health_check),
        ]
    }

    /// Checks that each command names a program and that the time limit is in range.
    pub fn check(&self) -> Result<(), String> {
        for (name, argv) in self.commands() {
            if argv.first().is_some_and(|program| program.is_empty()) {
                return Err(format!("hook {name}: the program name is empty"));
            }
        }
        if let Some(t) = self.timeout_secs {
            if t == 0 || t > MAX_HOOK_TIMEOUT_SECS {
                return Err(format!(
                    "hook timeout_secs = {t}: allowed range is 1 to {MAX_HOOK_TIMEOUT_SECS}"
                ));
            }
        }
        Ok(())
    }

    /// True when no command is set.
    pub fn is_empty(&self) -> bool {
        self.commands().iter().all(|(_, argv)| argv.is_empty())
    }
}

/// Endpoints (by name) and groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Endpoint names (certificate common names).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Group names.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Selector {
    /// True when it names nobody.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty() && self.groups.is_empty()
    }

    /// True when it names the endpoint `name` (if known) or its `group`.
    pub fn matches(&self, name: Option<&str>, group: &str) -> bool {
        name.is_some_and(|n| self.endpoints.iter().any(|e| e == n))
            || self.groups.iter().any(|g| g == group)
    }
}

/// A pin: the endpoints and groups named stay on (or go to) `release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// The release.
    pub release: u64,
    /// Endpoint names.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Group names.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Pin {
    fn selector(&self) -> Selector {
        Selector {
            endpoints: self.endpoints.clone(),
            groups: self.groups.clone(),
        }
    }
}

/// What the policy knows of one endpoint when it evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint<'a> {
    /// Its name (certificate common name), if it has a certificate. An endpoint without a
    /// name is in a percentage rollout only at 100%.
    pub name: Option<&'a str>,
    /// Its group (from its certificate; `default` without one).
    pub group: &'a str,
    /// The channel its configuration names, if any (it overrides the policy's mapping).
    pub channel: Option<&'a str>,
    /// The release it has installed, if any.
    pub installed: Option<u64>,
}

/// Why the policy offers what it offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// The endpoint is in the rollout of its channel's current release.
    InRollout,
    /// The endpoint is not (yet) in the rollout: it keeps the previous release.
    Pending,
    /// The rollout is paused and the endpoint had not installed the current release.
    Paused,
    /// A hold in the policy keeps the endpoint where it is.
    Held,
    /// A pin in the policy names the endpoint's release.
    Pinned,
    /// The endpoint's channel does not exist in the policy.
    NoChannel,
}

/// What the policy offers one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The channel the endpoint follows.
    pub channel: String,
    /// The release being rolled out to it (its channel's current release, or its pin): the
    /// release its status reports count against.
    pub release: Option<u64>,
    /// The release it should have installed now; `None`: stay as it is.
    pub install: Option<u64>,
    /// Why.
    pub standing: Standing,
}

/// The membership bucket (0 to 9,999) of an endpoint for a release: the first 8 bytes of
/// SHA-256(`herald-rollout-v1` NUL NAME NUL RELEASE-IN-DECIMAL), big-endian, modulo 10,000.
pub fn bucket(endpoint: &str, release: u64) -> u32 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(MEMBERSHIP_DOMAIN.as_bytes());
    ctx.update(&[0]);
    ctx.update(endpoint.as_bytes());
    ctx.update(&[0]);
    ctx.update(release.to_string().as_bytes());
    let digest = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    (u64::from_be_bytes(first) % u64::from(BUCKETS)) as u32
}

/// A share in basis points as a percentage for people: `10%`, `0.5%`, `12.34%`.
pub fn percent_text(basis_points: u32) -> String {
    let (whole, frac) = (basis_points / 100, basis_points % 100);
    match frac {
        0 => format!("{whole}%"),
        f if f % 10 == 0 => format!("{whole}.{}%", f / 10),
        f => format!("{whole}.{f:02}%"),
    }
}

/// Parses a share of the fleet (`10%`, `0.5%`, `10`: a percentage, at most two decimals)
/// into basis points.
pub fn parse_percent(text: &str) -> Option<u32> {
    let number = text.trim().trim_end_matches('%').trim();
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || frac.len() > 2 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u32 = whole.parse().ok()?;
    let frac: u32 = format!("{frac:0<2}").parse().ok()?;
    let bp = whole.checked_mul(100)?.checked_add(frac)?;
    (bp <= BUCKETS).then_some(bp)
}

/// The folder of a release's files among the targets: `releases/N/`.
pub fn release_prefix(release: u64) -> String {
    format!("{RELEASES_DIR}/{release}/")
}

/// The targets of `release` listed by `targets` (the verified top-level targets metadata),
/// each with its install path (its path below `releases/N/`; a path that is not valid there,
/// `C:x`, is an error), in path order. Only the release's own entries are read: the search
/// starts at `releases/N` in the sorted index.
pub fn release_targets(
    targets: &VerifiedTargets,
    release: u64,
) -> impl Iterator<Item = (&TargetPath, Result<TargetPath, PathError>, TargetFile)> {
    let prefix = release_prefix(release);
    // `releases/N` is a valid path sorting just before every path under `releases/N/`.
    let start = TargetPath::new(format!("{RELEASES_DIR}/{release}")).ok();
    start
        .into_iter()
        .flat_map(move |start| targets.targets_from(&start))
        .skip_while({
            let prefix = prefix.clone();
            move |(path, _)| !path.as_str().starts_with(&prefix)
        })
        .map_while(move |(path, file)| Some((path, path.below(&prefix)?, file)))
}

/// The release a target path belongs to (`releases/N/...`), if any.
pub fn release_of_path(path: &TargetPath) -> Option<u64> {
    let rest = path
        .as_str()
        .strip_prefix(RELEASES_DIR)?
        .strip_prefix('/')?;
    let (number, _) = rest.split_once('/')?;
    if number.starts_with('0') {
        return None;
    }
    number.parse().ok()
}

impl Targets {
    /// The rollout policy this targets metadata carries, checked ([`RolloutPolicy::check`]);
    /// `None` for a repository without one (every endpoint installs every target).
    pub fn rollout_policy(&self) -> Result<Option<RolloutPolicy>, PolicyError> {
        policy_of(self.rollout.as_ref())
    }
}

impl TargetsIndex {
    /// The rollout policy this verified targets metadata carries, checked
    /// ([`RolloutPolicy::check`]); `None` for a repository without one (every endpoint
    /// installs every target).
    pub fn rollout_policy(&self) -> Result<Option<RolloutPolicy>, PolicyError> {
        policy_of(self.rollout.as_ref())
    }
}

fn policy_of(member: Option<&Value>) -> Result<Option<RolloutPolicy>, PolicyError> {
    member.map(RolloutPolicy::from_value).transpose()
}

/// How a channel is named (by the rule of group names, [`Group`]), as error messages say it.
pub const CHANNEL_NAME_RULE: &str =
    "expected 1 to 32 characters of a-z, 0-9 and '-', starting with a letter or digit";

/// Whether `name` is a valid channel name ([`CHANNEL_NAME_RULE`]): channels follow the naming
/// rule of groups, checked by [`Group::new`].
pub fn is_valid_channel(name: &str) -> bool {
    Group::new(name).is_ok()
}

fn check_channel(name: &str) -> Result<(), PolicyError> {
    check_name("channel", name, is_valid_channel(name))
}

fn check_group(name: &str) -> Result<(), PolicyError> {
    check_name("group", name, Group::new(name).is_ok())
}

fn check_name(what: &'static str, name: &str, valid: bool) -> Result<(), PolicyError> {
    if valid {
        Ok(())
    } else {
        Err(PolicyError::BadName {
            what,
            name: name.to_owned(),
        })
    }
}

impl RolloutPolicy {
    /// An empty policy of the current format.
    pub fn new() -> Self {
        RolloutPolicy {
            format: POLICY_FORMAT,
            ..RolloutPolicy::default()
        }
    }

    /// Reads and checks a policy from its JSON value.
    pub fn from_value(value: &Value) -> Result<Self, PolicyError> {
        if let Some(format) = value.get("format").and_then(Value::as_u64) {
            if format != u64::from(POLICY_FORMAT) {
                return Err(PolicyError::Format(
                    u32::try_from(format).unwrap_or(u32::MAX),
                ));
            }
        }
        let policy =
            RolloutPolicy::deserialize(value).map_err(|e| PolicyError::Shape(e.to_string()))?;
        policy.check()?;
        Ok(policy)
    }

    /// The policy as a JSON value (for the targets metadata).
    pub fn to_value(&self) -> Value {
        // Strings, integers, booleans, lists and maps with string or integer keys: this
        // cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Checks that the policy is consistent: known format; valid channel, group and release
    /// names; every release a channel or pin names is listed, in the right channel; shares at
    /// most 100%; hooks that name a program and a time limit in range.
    pub fn check(&self) -> Result<(), PolicyError> {
        if self.format != POLICY_FORMAT {
            return Err(PolicyError::Format(self.format));
        }
        let listed = |what: String, release: u64| {
            self.releases
                .get(&release)
                .ok_or(PolicyError::UnknownRelease { what, release })
        };
        for (name, channel) in &self.channels {
            check_channel(name)?;
            for release in std::iter::once(channel.current).chain(channel.previous) {
                let info = listed(format!("channel {name:?}"), release)?;
                if &info.channel != name {
                    return Err(PolicyError::WrongChannel {
                        channel: name.clone(),
                        release,
                        listed: info.channel.clone(),
                    });
                }
            }
            if channel.previous == Some(channel.current) {
                return Err(PolicyError::SameRelease(name.clone()));
            }
            if channel.basis_points > BUCKETS {
                return Err(PolicyError::BasisPoints {
                    channel: name.clone(),
                    basis_points: channel.basis_points,
                });
            }
            for group in &channel.groups {
                check_group(group)?;
            }
        }
        for (release, info) in &self.releases {
            check_channel(&info.channel)?;
            if let Some(hooks) = &info.hooks {
                hooks.check().map_err(|problem| PolicyError::Hook {
                    release: *release,
                    problem,
                })?;
            }
        }
        for (group, channel) in &self.group_channels {
            check_group(group)?;
            check_channel(channel)?;
        }
        let pin_selectors = self.pins.iter().map(Pin::selector);
        for selector in std::iter::once(self.holds.clone()).chain(pin_selectors) {
            for group in &selector.groups {
                check_group(group)?;
            }
            for endpoint in &selector.endpoints {
                if endpoint.is_empty() || endpoint.chars().any(char::is_control) {
                    return Err(PolicyError::BadName {
                        what: "endpoint",
                        name: endpoint.clone(),
                    });
                }
            }
        }
        for pin in &self.pins {
            listed("a pin".into(), pin.release)?;
            if pin.endpoints.is_empty() && pin.groups.is_empty() {
                return Err(PolicyError::EmptyPin(pin.release));
            }
        }
        Ok(())
    }

    /// The channel an endpoint follows: its configuration's, else its group's in the
    /// policy, else [`DEFAULT_CHANNEL`].
    pub fn channel_of<'a>(&'a self, endpoint: &Endpoint<'a>) -> &'a str {
        endpoint
            .channel
            .or_else(|| self.group_channels.get(endpoint.group).map(String::as_str))
            .unwrap_or(DEFAULT_CHANNEL)
    }

    /// Which release `endpoint` should have now, in this order:
    ///
    /// 1. a hold naming the endpoint or its group keeps it where it is ([`Standing::Held`]);
    /// 2. a pin naming the endpoint (endpoint pins before group pins, first listed first)
    ///    gives the pinned release ([`Standing::Pinned`]);
    /// 3. otherwise its channel: an endpoint in one of the channel's pilot groups, or whose
    ///    [`bucket`] for the current release is below the channel's basis points (every
    ///    endpoint at 100%), gets the current release ([`Standing::InRollout`]) unless the
    ///    rollout is paused and it had not installed it yet ([`Standing::Paused`]); the others
    ///    get the previous release, or stay where they are when there is none
    ///    ([`Standing::Pending`]).
    pub fn evaluate(&self, endpoint: &Endpoint<'_>) -> Offer {
        let channel_name = self.channel_of(endpoint).to_owned();
        let channel = self.channels.get(&channel_name);
        let current = channel.map(|c| c.current);
        let offer = |release: Option<u64>, install: Option<u64>, standing| Offer {
            channel: channel_name.clone(),
            release,
            install,
            standing,
        };
        if self.holds.matches(endpoint.name, endpoint.group) {
            return offer(current, None, Standing::Held);
        }
        let pinned = self
            .pins
            .iter()
            .find(|p| {
                endpoint
                    .name
                    .is_some_and(|n| p.endpoints.iter().any(|e| e == n))
            })
            .or_else(|| {
                self.pins
                    .iter()
                    .find(|p| p.groups.iter().any(|g| g == endpoint.group))
            });
        if let Some(pin) = pinned {
            return offer(Some(pin.release), Some(pin.release), Standing::Pinned);
        }
        let Some(channel) = channel else {
            return offer(None, None, Standing::NoChannel);
        };
        if channel.includes(endpoint.name, endpoint.group) {
            if !channel.paused || endpoint.installed == Some(channel.current) {
                return offer(current, current, Standing::InRollout);
            }
            return offer(current, channel.previous, Standing::Paused);
        }
        offer(current, channel.previous, Standing::Pending)
    }

    /// Every release the policy still needs listed: each channel's current and previous
    /// release and every pinned release.
    pub fn needed_releases(&self) -> std::collections::BTreeSet<u64> {
        self.channels
            .values()
            .flat_map(|c| std::iter::once(c.current).chain(c.previous))
            .chain(self.pins.iter().map(|p| p.release))
            .collect()
    }
}

impl Channel {
    /// True when the endpoint is in the rollout of the current release: its group is a
    /// pilot group, the rollout is at 100%, or its bucket is below the share.
    pub fn includes(&self, name: Option<&str>, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
            || self.basis_points >= BUCKETS
            || name.is_some_and(|n| bucket(n, self.current) < self.basis_points)
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
            "channels": {
                "stable": {"current": 8, "previous": 7, "groups": ["pilot"],
                           "basis_points": 1000, "paused": false},
                "beta": {"current": 9, "groups": [], "basis_points": 10000}
            },
            "releases": {"7": {"channel": "stable"}, "8": {"channel": "stable"},
                         "9": {"channel": "beta"}},
            "group_channels": {"testers": "beta"},
            "holds": {"endpoints": ["HELD-0001"], "groups": ["frozen"]},
            "pins": [{"release": 7, "groups": ["kiosks"]}]
        }))
        .unwrap()
    }

    fn endpoint<'a>(name: &'a str, group: &'a str) -> Endpoint<'a> {
        Endpoint {
            name: Some(name),
            group,
            channel: None,
            installed: Some(7),
        }
    }

    /// Endpoint names in and out of the 10% rollout of release 8.
    fn names_by_membership() -> (String, String) {
        let names: Vec<String> = (0..1000).map(|i| format!("EP-{i:04}")).collect();
        let inside = names.iter().find(|n| bucket(n, 8) < 1000).unwrap().clone();
        let outside = names.iter().find(|n| bucket(n, 8) >= 1000).unwrap().clone();
        (inside, outside)
    }

    #[test]
    fn bucket_is_the_documented_hash() {
        let digest = ring::digest::digest(&ring::digest::SHA256, b"herald-rollout-v1\0EP-0001\08");
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_ref()[..8]);
        assert_eq!(
            u64::from(bucket("EP-0001", 8)),
            u64::from_be_bytes(first) % 10_000
        );
        assert_ne!(bucket("EP-0001", 8), bucket("EP-0001", 9), "per release");
    }

    #[test]
    fn buckets_spread_evenly() {
        let inside = (0..10_000)
            .filter(|i| bucket(&format!("EP-{i:05}"), 42) < 1000)
            .count();
        assert!((800..1200).contains(&inside), "{inside} of 10,000 at 10%");
    }

    #[test]
    fn endpoints_in_the_share_get_the_current_release_the_others_the_previous() {
        let policy = policy();
        let (inside, outside) = names_by_membership();
        let offer = policy.evaluate(&endpoint(&inside, "default"));
        assert_eq!(
            (offer.install, offer.standing),
            (Some(8), Standing::InRollout)
        );
        let offer = policy.evaluate(&endpoint(&outside, "default"));
        assert_eq!(
            (offer.install, offer.standing),
            (Some(7), Standing::Pending)
        );
        assert_eq!(offer.release, Some(8), "pending counts against release 8");
    }

    #[test]
    fn widening_keeps_everyone_already_in() {
        let mut policy = policy();
        let names: Vec<String> = (0..500).map(|i| format!("EP-{i:04}")).collect();
        let in_at = |policy: &RolloutPolicy| -> Vec<String> {
            names
                .iter()
                .filter(|n| policy.evaluate(&endpoint(n, "default")).install == Some(8))
                .cloned()
                .collect()
        };
        let first = in_at(&policy);
        policy.channels.get_mut("stable").unwrap().basis_points = 5000;
        let wider = in_at(&policy);
        assert!(first.iter().all(|n| wider.contains(n)));
        assert!(wider.len() > first.len());
    }

    #[test]
    fn pilot_groups_are_in_at_zero_percent() {
        let mut policy = policy();
        policy.channels.get_mut("stable").unwrap().basis_points = 0;
        let (inside, _) = names_by_membership();
        assert_eq!(
            policy.evaluate(&endpoint(&inside, "pilot")).install,
            Some(8)
        );
        assert_eq!(
            policy.evaluate(&endpoint(&inside, "default")).install,
            Some(7)
        );
    }

    #[test]
    fn pause_stops_new_installs_but_keeps_those_done() {
        let mut policy = policy();
        policy.channels.get_mut("stable").unwrap().paused = true;
        let (inside, _) = names_by_membership();
        let offer = policy.evaluate(&endpoint(&inside, "default"));
        assert_eq!((offer.install, offer.standing), (Some(7), Standing::Paused));
        let mut done = endpoint(&inside, "default");
        done.installed = Some(8);
        assert_eq!(policy.evaluate(&done).install, Some(8));
    }

    #[test]
    fn channels_come_from_configuration_then_group_then_default() {
        let policy = policy();
        let (_, outside) = names_by_membership();
        assert_eq!(
            policy.evaluate(&endpoint(&outside, "testers")).install,
            Some(9)
        );
        let mut configured = endpoint(&outside, "testers");
        configured.channel = Some("stable");
        assert_eq!(policy.evaluate(&configured).install, Some(7));
        configured.channel = Some("nightly");
        let offer = policy.evaluate(&configured);
        assert_eq!((offer.install, offer.standing), (None, Standing::NoChannel));
    }

    #[test]
    fn holds_come_before_pins_and_pins_before_the_channel() {
        let policy = policy();
        let (inside, _) = names_by_membership();
        let held = policy.evaluate(&endpoint("HELD-0001", "kiosks"));
        assert_eq!((held.install, held.standing), (None, Standing::Held));
        assert_eq!(
            policy.evaluate(&endpoint(&inside, "frozen")).standing,
            Standing::Held
        );
        let pinned = policy.evaluate(&endpoint(&inside, "kiosks"));
        assert_eq!(
            (pinned.install, pinned.standing),
            (Some(7), Standing::Pinned)
        );
    }

    #[test]
    fn an_endpoint_without_a_name_is_in_only_at_full_rollout() {
        let mut policy = policy();
        let nameless = Endpoint {
            name: None,
            group: "default",
            channel: None,
            installed: None,
        };
        assert_eq!(policy.evaluate(&nameless).install, Some(7));
        policy.channels.get_mut("stable").unwrap().basis_points = BUCKETS;
        assert_eq!(policy.evaluate(&nameless).install, Some(8));
    }

    #[test]
    fn inconsistent_policies_are_refused() {
        let base = policy().to_value();
        let mut cases: Vec<(Value, &str)> = Vec::new();
        let mut v = base.clone();
        v["channels"]["stable"]["current"] = json!(5);
        cases.push((v, "not listed"));
        let mut v = base.clone();
        v["channels"]["stable"]["previous"] = json!(9);
        cases.push((v, "of channel"));
        let mut v = base.clone();
        v["channels"]["stable"]["basis_points"] = json!(10001);
        cases.push((v, "basis points"));
        let mut v = base.clone();
        v["channels"]["Stable"] = v["channels"]["stable"].clone();
        cases.push((v, "not a valid name"));
        let mut v = base.clone();
        v["format"] = json!(2);
        cases.push((v, "format 2"));
        let mut v = base.clone();
        v["pins"] = json!([{"release": 7}]);
        cases.push((v, "names no endpoint"));
        let mut v = base.clone();
        v["releases"]["8"]["hooks"] = json!({"health_check": [""]});
        cases.push((v, "program name is empty"));
        let mut v = base.clone();
        v["releases"]["8"]["hooks"] = json!({"timeout_secs": 0});
        cases.push((v, "timeout_secs"));
        let mut v = base.clone();
        v["group_channels"] = json!({"Testers": "beta"});
        cases.push((v, "group \"Testers\" is not a valid name"));
        let mut v = base.clone();
        v["holds"] = json!({"groups": ["-kiosks"]});
        cases.push((v, "group \"-kiosks\" is not a valid name"));
        let mut v = base;
        v["percent"] = json!(100);
        cases.push((v, "unknown field"));
        for (value, expected) in cases {
            let err = RolloutPolicy::from_value(&value).unwrap_err();
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn channels_are_named_by_the_rule_of_groups() {
        for name in [
            "stable",
            "beta-2",
            "0day",
            "",
            "-beta",
            "Beta",
            "be ta",
            &"b".repeat(33),
        ] {
            assert_eq!(is_valid_channel(name), Group::new(name).is_ok(), "{name:?}");
        }
        assert!(is_valid_channel(DEFAULT_CHANNEL));
        assert!(!is_valid_channel("Stable"));
    }

    #[test]
    fn percentages_parse_to_basis_points_and_back() {
        for (text, bp) in [
            ("10%", 1000),
            ("0.5%", 50),
            ("12.34", 1234),
            ("100%", 10000),
        ] {
            assert_eq!(parse_percent(text), Some(bp), "{text}");
        }
        assert_eq!(percent_text(1000), "10%");
        assert_eq!(percent_text(50), "0.5%");
        assert_eq!(percent_text(1234), "12.34%");
        for bad in ["", "%", "101%", "1.234%", "-1%", "ten", "1e2"] {
            assert_eq!(parse_percent(bad), None, "{bad}");
        }
    }

    #[test]
    fn release_targets_are_the_files_under_the_release_folder() {
        let mut targets = Targets::new(9, time::OffsetDateTime::UNIX_EPOCH);
        for path in [
            "app.bin",
            "releases/7/app.bin",
            "releases/7-x/other",
            "releases/7/lib/x.so",
            "releases/70/app.bin",
            "releases/8/app.bin",
        ] {
            targets.targets.insert(
                TargetPath::new(path).unwrap(),
                TargetFile {
                    length: 1,
                    hashes: BTreeMap::new(),
                    custom: None,
                },
            );
        }
        let document = json!({"signed": targets, "signatures": []}).to_string();
        let verified = crate::verify::unchecked_targets(document.as_bytes());
        assert_eq!(verified.rollout_policy(), Ok(None));
        let found: Vec<(String, String)> = release_targets(&verified, 7)
            .map(|(full, rest, _)| (full.to_string(), rest.unwrap().to_string()))
            .collect();
        assert_eq!(
            found,
            [
                ("releases/7/app.bin".to_owned(), "app.bin".to_owned()),
                ("releases/7/lib/x.so".to_owned(), "lib/x.so".to_owned())
            ]
        );
        assert_eq!(
            release_of_path(&TargetPath::new("releases/70/app.bin").unwrap()),
            Some(70)
        );
        assert_eq!(release_of_path(&TargetPath::new("app.bin").unwrap()), None);
    }
}
