//! An endpoint's status report.

use serde::{Deserialize, Serialize};

/// The outcome of an endpoint's last update cycle: the body of `POST /api/v1/status` and the
/// endpoint's own `STATE_DIR/status.json`. Unknown fields are ignored, so that newer
/// endpoints can report more.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The installed release (targets metadata version).
    pub installed_version: Option<u64>,
    /// When the last cycle ran (RFC 3339).
    pub last_check: Option<String>,
    /// `installed`, `up-to-date`, `rolled-back` or `error`.
    pub last_result: Option<String>,
    /// The last error, if the last cycle failed.
    pub last_error: Option<String>,
    /// Files in the install root that the installed release does not list.
    #[serde(default)]
    pub unlisted: Vec<String>,
    /// The release channel the endpoint follows (`stable`, `beta`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The release (targets version) the signed rollout policy is rolling out to this
    /// endpoint now: its channel's current release, or the release it is pinned to; after a
    /// failure, the release that failed. `state` says where the endpoint stands with it (a
    /// `pending` endpoint still runs the channel's previous release), so that the reports of
    /// one rollout count against one release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<u64>,
    /// Where the endpoint stands with that release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<RolloutState>,
    /// Why it failed or was rolled back (bounded output of the failing hook or check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where an endpoint stands with the release its rollout policy offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// The offered release is installed and healthy.
    Installed,
    /// The endpoint is not (yet) in the rollout of the newest release.
    Pending,
    /// Installing the offered release failed; the previous one stays.
    Failed,
    /// The offered release was installed, failed its health check and was rolled back.
    RolledBack,
    /// The endpoint is held at its release (by signed policy or its own configuration).
    Held,
}

impl RolloutState {
    /// The name used on the wire and in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Installed => "installed",
            RolloutState::Pending => "pending",
            RolloutState::Failed => "failed",
            RolloutState::RolledBack => "rolled_back",
            RolloutState::Held => "held",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rollout_fields_are_optional_and_named_in_snake_case() {
        let old: StatusReport =
            serde_json::from_str(r#"{"installed_version":3,"unlisted":[]}"#).unwrap();
        assert_eq!(old.state, None);
        let text = serde_json::to_string(&old).unwrap();
        assert!(
            !text.contains("state"),
            "absent rollout fields are not written: {text}"
        );
        let new: StatusReport = serde_json::from_str(
            r#"{"channel":"beta","release":8,"state":"rolled_back","reason":"health check"}"#,
        )
        .unwrap();
        assert_eq!(new.state, Some(RolloutState::RolledBack));
        assert_eq!(RolloutState::RolledBack.as_str(), "rolled_back");
        assert!(serde_json::from_str::<StatusReport>(r#"{"state":"gone"}"#).is_err());
    }
}
