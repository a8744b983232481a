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
}
