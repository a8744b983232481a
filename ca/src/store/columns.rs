//! The column lists and row conversions both store backends share, so that their queries read
//! and write the same columns in the same order.

use herald_wire::{Group, RolloutState};

use crate::store::{FleetReport, StoreError};

/// The columns of a certificate row, in the order both stores read them.
pub(crate) const CERT_COLUMNS: &str =
    "serial, issuer, name, profile, not_before, not_after, issued_at, der, revoked_at, reason";

/// The columns of an admin token row, in [`AdminTokenRecord`] order.
pub(crate) const ADMIN_TOKEN_COLUMNS: &str =
    "id, hash, role, label, created_at, expires_at, revoked_at, last_used_at";

/// The columns of `fleet_reports`, in the order both stores read and write them.
pub(crate) const FLEET_COLUMNS: &str =
    "name, serial, received_at, installed_version, last_check, last_result, last_error, unlisted,
    group_name, channel, offered_release, rollout_state, rollout_reason";

/// A `fleet_reports` row as read, before its version and file list are checked.
#[derive(Debug)]
pub(crate) struct RawFleetReport {
    pub(crate) name: String,
    pub(crate) serial: String,
    pub(crate) received_at: i64,
    pub(crate) installed_version: Option<i64>,
    pub(crate) last_check: Option<String>,
    pub(crate) last_result: Option<String>,
    pub(crate) last_error: Option<String>,
    pub(crate) unlisted: String,
    pub(crate) group: String,
    pub(crate) channel: Option<String>,
    pub(crate) release: Option<i64>,
    pub(crate) state: Option<String>,
    pub(crate) reason: Option<String>,
}

impl RawFleetReport {
    pub(crate) fn finish(self) -> Result<FleetReport, StoreError> {
        let installed_version = self.installed_version.map(version_from_db).transpose()?;
        let release = self.release.map(version_from_db).transpose()?;
        let state = self.state.as_deref().map(state_from_db).transpose()?;
        let unlisted = serde_json::from_str(&self.unlisted)
            .map_err(|e| StoreError::Corrupt(format!("unlisted files of {}: {e}", self.name)))?;
        Ok(FleetReport {
            name: self.name,
            serial: self.serial,
            received_at: self.received_at,
            installed_version,
            last_check: self.last_check,
            last_result: self.last_result,
            last_error: self.last_error,
            unlisted,
            group: group_from_db(&self.group)?,
            channel: self.channel,
            release,
            state,
            reason: self.reason,
        })
    }
}

/// A release number as stored, checked.
fn version_from_db(version: i64) -> Result<u64, StoreError> {
    u64::try_from(version).map_err(|_| StoreError::Corrupt(format!("release number {version}")))
}

/// A group name as stored, checked.
pub(crate) fn group_from_db(name: &str) -> Result<Group, StoreError> {
    Group::new(name).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A rollout state as stored ([`RolloutState::as_str`]), checked.
pub(crate) fn state_from_db(name: &str) -> Result<RolloutState, StoreError> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|_| StoreError::Corrupt(format!("rollout state {name:?}")))
}

/// The aggregate behind [`crate::store::StoreTx::release_counts`], the same in both dialects:
/// it groups on the columns of the `fleet_reports_releases` index, in its order, and its
/// condition is the index's, so both databases answer from the index.
pub(crate) const RELEASE_COUNTS_QUERY: &str = "
    SELECT channel, offered_release, group_name, rollout_state, COUNT(*)
    FROM fleet_reports
    WHERE channel IS NOT NULL AND offered_release IS NOT NULL AND rollout_state IS NOT NULL
    GROUP BY channel, offered_release, group_name, rollout_state
    ORDER BY channel, offered_release, group_name, rollout_state";

/// One row of [`RELEASE_COUNTS_QUERY`] as read, before its values are checked.
pub(crate) struct RawReleaseCount {
    pub(crate) channel: String,
    pub(crate) release: i64,
    pub(crate) group: String,
    pub(crate) state: String,
    pub(crate) endpoints: i64,
}

impl RawReleaseCount {
    pub(crate) fn finish(self) -> Result<crate::store::ReleaseStateCount, StoreError> {
        Ok(crate::store::ReleaseStateCount {
            channel: self.channel,
            release: version_from_db(self.release)?,
            group: group_from_db(&self.group)?,
            state: state_from_db(&self.state)?,
            endpoints: u64::try_from(self.endpoints)
                .map_err(|_| StoreError::Corrupt(format!("count {}", self.endpoints)))?,
        })
    }
}

/// The columns of `endpoint_groups`, in [`crate::store::EndpointGroupRecord`] order.
pub(crate) const ENDPOINT_GROUP_COLUMNS: &str = "name, group_name, changed_at";

/// A release number as the database stores it (a signed 64-bit integer).
pub(crate) fn version_to_db(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| StoreError::OutOfRange(format!("release number {version}")))
}

/// The unlisted-file list as stored (a JSON array).
pub(crate) fn unlisted_to_db(unlisted: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(unlisted).map_err(|e| StoreError::Backend(format!("unlisted files: {e}")))
}

/// The columns of an enrollment token row, in the order both stores read them.
pub(crate) const TOKEN_COLUMNS: &str =
    "id, hash, name, base, profile, created_at, expires_at, created_by,
    used_at, serial, spki_sha256, revoked_at, group_name";
