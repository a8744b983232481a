//! Reading a row of either store into its record: each record is read from the columns of
//! [`super::columns`] one way, whichever database the row comes from.

use crate::model::audit::{AuditEntry, NewAuditEntry};
use crate::store::columns::{
    flag_from_db, group_from_db, release_from_db, state_from_db, version_from_db,
};
use crate::store::{
    AccountRecord, AdminTokenRecord, EndpointCounts, EndpointGroupRecord, EndpointRow,
    EnrollmentTokenRecord, FleetReport, ReleaseStateCount, ReportHour, SessionRecord, StoreError,
};

/// A row of either store, read column by column (0-based), so that each record here is read
/// from a row the same way in both.
pub(crate) trait ColumnRow {
    fn text(&self, index: usize) -> Result<String, StoreError>;
    fn maybe_text(&self, index: usize) -> Result<Option<String>, StoreError>;
    fn int(&self, index: usize) -> Result<i64, StoreError>;
    fn maybe_int(&self, index: usize) -> Result<Option<i64>, StoreError>;
}

/// A `fleet_reports` row as read, before its version and file list are checked.
#[derive(Debug)]
struct RawFleetReport {
    name: String,
    serial: String,
    received_at: i64,
    installed_version: Option<i64>,
    last_check: Option<String>,
    last_result: Option<String>,
    last_error: Option<String>,
    unlisted: String,
    group: String,
    channel: Option<String>,
    release: Option<i64>,
    state: Option<String>,
    reason: Option<String>,
}

impl RawFleetReport {
    fn finish(self) -> Result<FleetReport, StoreError> {
        let installed_version = version_from_db(self.installed_version)?;
        let release = version_from_db(self.release)?;
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

/// An [`ADMIN_TOKEN_COLUMNS`](super::columns::ADMIN_TOKEN_COLUMNS) row.
pub(crate) fn admin_token(row: &dyn ColumnRow) -> Result<AdminTokenRecord, StoreError> {
    Ok(AdminTokenRecord {
        id: row.text(0)?,
        hash: row.text(1)?,
        role: row.text(2)?,
        label: row.text(3)?,
        created_at: row.int(4)?,
        expires_at: row.maybe_int(5)?,
        revoked_at: row.maybe_int(6)?,
        last_used_at: row.maybe_int(7)?,
    })
}

/// A [`TOKEN_COLUMNS`](super::columns::TOKEN_COLUMNS) row.
pub(crate) fn token(row: &dyn ColumnRow) -> Result<EnrollmentTokenRecord, StoreError> {
    Ok(EnrollmentTokenRecord {
        id: row.text(0)?,
        hash: row.text(1)?,
        name: row.text(2)?,
        base: row.text(3)?,
        profile: row.text(4)?,
        created_at: row.int(5)?,
        expires_at: row.int(6)?,
        created_by: row.text(7)?,
        used_at: row.maybe_int(8)?,
        serial: row.maybe_text(9)?,
        spki_sha256: row.maybe_text(10)?,
        revoked_at: row.maybe_int(11)?,
        group: group_from_db(&row.text(12)?)?,
    })
}

/// An [`ENDPOINT_GROUP_COLUMNS`](super::columns::ENDPOINT_GROUP_COLUMNS) row.
pub(crate) fn endpoint_group(row: &dyn ColumnRow) -> Result<EndpointGroupRecord, StoreError> {
    Ok(EndpointGroupRecord {
        name: row.text(0)?,
        group: group_from_db(&row.text(1)?)?,
        changed_at: row.int(2)?,
    })
}

/// An [`AUDIT_COLUMNS`](super::columns::AUDIT_COLUMNS) row.
pub(crate) fn audit(row: &dyn ColumnRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        chain: row.int(0)?,
        seq: row.int(1)?,
        entry: NewAuditEntry {
            time: row.int(2)?,
            actor: row.text(3)?,
            action: row.text(4)?,
            details: row.text(5)?,
        },
        prev_hash: row.text(6)?,
        hash: row.text(7)?,
    })
}

/// An [`ACCOUNT_COLUMNS`](super::columns::ACCOUNT_COLUMNS) row.
pub(crate) fn account(row: &dyn ColumnRow) -> Result<AccountRecord, StoreError> {
    Ok(AccountRecord {
        name: row.text(0)?,
        role: row.text(1)?,
        password_hash: row.text(2)?,
        password_one_time: flag_from_db(row.int(3)?, "password_one_time")?,
        mfa_required: flag_from_db(row.int(4)?, "mfa_required")?,
        totp_secret: row.maybe_text(5)?,
        totp_enrolled_at: row.maybe_int(6)?,
        totp_last_step: row.maybe_int(7)?,
        created_at: row.int(8)?,
        disabled_at: row.maybe_int(9)?,
        failed_logins: row.int(10)?,
        locked_until: row.maybe_int(11)?,
        last_login_at: row.maybe_int(12)?,
    })
}

/// A [`FLEET_COLUMNS`](super::columns::FLEET_COLUMNS) row.
pub(crate) fn fleet_report(row: &dyn ColumnRow) -> Result<FleetReport, StoreError> {
    RawFleetReport {
        name: row.text(0)?,
        serial: row.text(1)?,
        received_at: row.int(2)?,
        installed_version: row.maybe_int(3)?,
        last_check: row.maybe_text(4)?,
        last_result: row.maybe_text(5)?,
        last_error: row.maybe_text(6)?,
        unlisted: row.text(7)?,
        group: row.text(8)?,
        channel: row.maybe_text(9)?,
        release: row.maybe_int(10)?,
        state: row.maybe_text(11)?,
        reason: row.maybe_text(12)?,
    }
    .finish()
}

/// An [`ENDPOINT_COLUMNS`](super::columns::ENDPOINT_COLUMNS) row.
pub(crate) fn endpoint(row: &dyn ColumnRow) -> Result<EndpointRow, StoreError> {
    RawEndpointRow {
        name: row.text(0)?,
        group: row.text(1)?,
        serial: row.maybe_text(2)?,
        not_after: row.maybe_int(3)?,
        revoked_at: row.maybe_int(4)?,
        installed_version: row.maybe_int(5)?,
        last_seen: row.maybe_int(6)?,
        last_result: row.maybe_text(7)?,
        channel: row.maybe_text(8)?,
        offered_release: row.maybe_int(9)?,
        rollout_state: row.maybe_text(10)?,
    }
    .finish()
}

/// A [`RELEASE_COUNTS_QUERY`](super::columns::RELEASE_COUNTS_QUERY) row.
pub(crate) fn release_count(row: &dyn ColumnRow) -> Result<ReleaseStateCount, StoreError> {
    RawReleaseCount {
        channel: row.text(0)?,
        release: row.int(1)?,
        group: row.text(2)?,
        state: row.text(3)?,
        endpoints: row.int(4)?,
    }
    .finish()
}

/// A [`SESSION_COLUMNS`](super::columns::SESSION_COLUMNS) row.
pub(crate) fn session(row: &dyn ColumnRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id_hash: row.text(0)?,
        account: row.text(1)?,
        stage: row.text(2)?,
        created_at: row.int(3)?,
        last_seen_at: row.int(4)?,
        expires_at: row.int(5)?,
    })
}

/// The row of [`endpoint_counts_sql`](super::columns::endpoint_counts_sql).
pub(crate) fn endpoint_counts(row: &dyn ColumnRow) -> Result<EndpointCounts, StoreError> {
    Ok(EndpointCounts {
        total: row.int(0)?,
        valid: row.int(1)?,
        revoked: row.int(2)?,
        expired: row.int(3)?,
        never_reported: row.int(4)?,
        failing: row.int(5)?,
    })
}

/// A row of [`INSTALLED_RELEASE_COUNTS_QUERY`](super::columns::INSTALLED_RELEASE_COUNTS_QUERY): a release (none reported) and its endpoints.
pub(crate) fn installed_release_count(
    row: &dyn ColumnRow,
) -> Result<(Option<u64>, i64), StoreError> {
    Ok((version_from_db(row.maybe_int(0)?)?, row.int(1)?))
}

/// A `fleet_report_hours` row (`hour, reports, failures`).
pub(crate) fn report_hour(row: &dyn ColumnRow) -> Result<ReportHour, StoreError> {
    Ok(ReportHour {
        hour: row.int(0)?,
        reports: row.int(1)?,
        failures: row.int(2)?,
    })
}

/// One row of [`RELEASE_COUNTS_QUERY`](super::columns::RELEASE_COUNTS_QUERY) as read, before its values are checked.
struct RawReleaseCount {
    channel: String,
    release: i64,
    group: String,
    state: String,
    endpoints: i64,
}

impl RawReleaseCount {
    fn finish(self) -> Result<ReleaseStateCount, StoreError> {
        Ok(ReleaseStateCount {
            channel: self.channel,
            release: release_from_db(self.release)?,
            group: group_from_db(&self.group)?,
            state: state_from_db(&self.state)?,
            endpoints: u64::try_from(self.endpoints)
                .map_err(|_| StoreError::Corrupt(format!("count {}", self.endpoints)))?,
        })
    }
}

/// An `endpoints` row as read, before its release numbers and rollout state are checked.
struct RawEndpointRow {
    name: String,
    group: String,
    serial: Option<String>,
    not_after: Option<i64>,
    revoked_at: Option<i64>,
    installed_version: Option<i64>,
    last_seen: Option<i64>,
    last_result: Option<String>,
    channel: Option<String>,
    offered_release: Option<i64>,
    rollout_state: Option<String>,
}

impl RawEndpointRow {
    fn finish(self) -> Result<EndpointRow, StoreError> {
        Ok(EndpointRow {
            name: self.name,
            group: self.group,
            serial: self.serial,
            not_after: self.not_after,
            revoked_at: self.revoked_at,
            installed_version: version_from_db(self.installed_version)?,
            last_seen: self.last_seen,
            last_result: self.last_result,
            channel: self.channel,
            offered_release: version_from_db(self.offered_release)?,
            rollout_state: self
                .rollout_state
                .as_deref()
                .map(state_from_db)
                .transpose()?,
        })
    }
}
