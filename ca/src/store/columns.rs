//! The column lists and row conversions both store backends share, so that their queries read
//! and write the same columns in the same order.

use herald_wire::{Group, RolloutState};

use crate::model::audit::{AuditEntry, NewAuditEntry};
use crate::store::{
    AccountRecord, AdminTokenRecord, AuditQuery, EndpointCounts, EndpointFilter,
    EndpointGroupRecord, EndpointQuery, EndpointRow, EnrollmentTokenRecord, FleetReport,
    ReportHour, SessionRecord, StoreError,
};

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

/// A row of either store, read column by column (0-based), so that each record below is read
/// from a row the same way in both.
pub(crate) trait ColumnRow {
    fn text(&self, index: usize) -> Result<String, StoreError>;
    fn maybe_text(&self, index: usize) -> Result<Option<String>, StoreError>;
    fn int(&self, index: usize) -> Result<i64, StoreError>;
    fn maybe_int(&self, index: usize) -> Result<Option<i64>, StoreError>;
}

/// An [`ADMIN_TOKEN_COLUMNS`] row.
pub(crate) fn admin_token_from_row(row: &dyn ColumnRow) -> Result<AdminTokenRecord, StoreError> {
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

/// A [`TOKEN_COLUMNS`] row.
pub(crate) fn token_from_row(row: &dyn ColumnRow) -> Result<EnrollmentTokenRecord, StoreError> {
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

/// An [`ENDPOINT_GROUP_COLUMNS`] row.
pub(crate) fn endpoint_group_from_row(
    row: &dyn ColumnRow,
) -> Result<EndpointGroupRecord, StoreError> {
    Ok(EndpointGroupRecord {
        name: row.text(0)?,
        group: group_from_db(&row.text(1)?)?,
        changed_at: row.int(2)?,
    })
}

/// An [`AUDIT_COLUMNS`] row.
pub(crate) fn audit_from_row(row: &dyn ColumnRow) -> Result<AuditEntry, StoreError> {
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

/// An [`ACCOUNT_COLUMNS`] row.
pub(crate) fn account_from_row(row: &dyn ColumnRow) -> Result<AccountRecord, StoreError> {
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

/// A [`FLEET_COLUMNS`] row.
pub(crate) fn fleet_report_from_row(row: &dyn ColumnRow) -> Result<FleetReport, StoreError> {
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

/// An [`ENDPOINT_COLUMNS`] row.
pub(crate) fn endpoint_row_from_row(row: &dyn ColumnRow) -> Result<EndpointRow, StoreError> {
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

/// A [`RELEASE_COUNTS_QUERY`] row.
pub(crate) fn release_count_from_row(
    row: &dyn ColumnRow,
) -> Result<crate::store::ReleaseStateCount, StoreError> {
    RawReleaseCount {
        channel: row.text(0)?,
        release: row.int(1)?,
        group: row.text(2)?,
        state: row.text(3)?,
        endpoints: row.int(4)?,
    }
    .finish()
}

/// A [`SESSION_COLUMNS`] row.
pub(crate) fn session_from_row(row: &dyn ColumnRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id_hash: row.text(0)?,
        account: row.text(1)?,
        stage: row.text(2)?,
        created_at: row.int(3)?,
        last_seen_at: row.int(4)?,
        expires_at: row.int(5)?,
    })
}

/// The row of [`endpoint_counts_sql`].
pub(crate) fn endpoint_counts_from_row(row: &dyn ColumnRow) -> Result<EndpointCounts, StoreError> {
    Ok(EndpointCounts {
        total: row.int(0)?,
        valid: row.int(1)?,
        revoked: row.int(2)?,
        expired: row.int(3)?,
        never_reported: row.int(4)?,
        failing: row.int(5)?,
    })
}

/// A row of [`INSTALLED_RELEASE_COUNTS_QUERY`]: a release (none reported) and its endpoints.
pub(crate) fn installed_release_count_from_row(
    row: &dyn ColumnRow,
) -> Result<(Option<u64>, i64), StoreError> {
    Ok((version_from_db(row.maybe_int(0)?)?, row.int(1)?))
}

/// The count of endpoints per installed release, the same in both dialects.
pub(crate) const INSTALLED_RELEASE_COUNTS_QUERY: &str =
    "SELECT installed_version, count(*) FROM endpoints
     GROUP BY installed_version ORDER BY installed_version NULLS FIRST";

/// A `fleet_report_hours` row (`hour, reports, failures`).
pub(crate) fn report_hour_from_row(row: &dyn ColumnRow) -> Result<ReportHour, StoreError> {
    Ok(ReportHour {
        hour: row.int(0)?,
        reports: row.int(1)?,
        failures: row.int(2)?,
    })
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
struct RawReleaseCount {
    channel: String,
    release: i64,
    group: String,
    state: String,
    endpoints: i64,
}

impl RawReleaseCount {
    fn finish(self) -> Result<crate::store::ReleaseStateCount, StoreError> {
        Ok(crate::store::ReleaseStateCount {
            channel: self.channel,
            release: release_from_db(self.release)?,
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

/// The columns of an `admin_accounts` row, in [`crate::store::AccountRecord`] order.
pub(crate) const ACCOUNT_COLUMNS: &str = "name, role, password_hash, password_one_time,
    mfa_required, totp_secret, totp_enrolled_at, totp_last_step, created_at, disabled_at,
    failed_logins, locked_until, last_login_at";

/// The columns of a `console_sessions` row, in [`crate::store::SessionRecord`] order.
pub(crate) const SESSION_COLUMNS: &str =
    "id_hash, account, stage, created_at, last_seen_at, expires_at";

/// The columns of an `endpoints` row, in [`crate::store::EndpointRow`] order.
pub(crate) const ENDPOINT_COLUMNS: &str = "name, grp, serial, not_after, revoked_at,
    installed_version, last_seen, last_result, channel, offered_release, rollout_state";

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

/// The columns of an audit entry, in the order both stores read them.
pub(crate) const AUDIT_COLUMNS: &str = "chain, seq, time, actor, action, details, prev_hash, hash";

/// A statement parameter of a query built at run time, converted by each backend.
#[derive(Debug, Clone)]
pub(crate) enum SqlValue {
    Text(String),
    Int(i64),
}

/// The `WHERE` conditions of a query built at run time and their parameters, with
/// placeholders from `placeholder` (1-based).
struct Conditions<'p> {
    placeholder: &'p dyn Fn(usize) -> String,
    params: Vec<SqlValue>,
    conditions: Vec<String>,
}

impl<'p> Conditions<'p> {
    fn new(placeholder: &'p dyn Fn(usize) -> String) -> Self {
        Conditions {
            placeholder,
            params: Vec::new(),
            conditions: Vec::new(),
        }
    }

    /// Adds parameter `value`; its placeholder.
    fn param(&mut self, value: SqlValue) -> String {
        self.params.push(value);
        (self.placeholder)(self.params.len())
    }

    /// Adds the condition `column op value`, `value` a parameter.
    fn compare(&mut self, column: &str, op: &str, value: SqlValue) {
        let value = self.param(value);
        self.push(format!("{column} {op} {value}"));
    }

    /// Adds a condition all selected rows meet.
    fn push(&mut self, condition: String) {
        self.conditions.push(condition);
    }

    /// The `WHERE` clause of the conditions (empty for none).
    fn where_clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }
}

/// The condition selecting the endpoints in `filter` at the time in parameter `now`
/// (a placeholder); each condition matches one of the partial indexes of `endpoints`.
fn endpoint_filter_condition(filter: EndpointFilter, now: &str) -> String {
    match filter {
        EndpointFilter::Valid => format!("revoked_at IS NULL AND not_after >= {now}"),
        EndpointFilter::Revoked => "revoked_at IS NOT NULL".to_owned(),
        EndpointFilter::Expired => format!("revoked_at IS NULL AND not_after < {now}"),
        EndpointFilter::NeverReported => "last_seen IS NULL".to_owned(),
        EndpointFilter::Failing => "failing = 1".to_owned(),
    }
}

/// The smallest string greater than every string starting with `prefix` (compared byte by
/// byte, as SQLite and PostgreSQL's "C" collation do).
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10ffff}")
}

/// The endpoint page `query` as SQL with placeholders from `placeholder` (1-based) and its
/// parameters.
pub(crate) fn endpoints_page_sql(
    query: &EndpointQuery,
    placeholder: &dyn Fn(usize) -> String,
) -> (String, Vec<SqlValue>) {
    let mut sql = Conditions::new(placeholder);
    if let Some(prefix) = query.prefix.as_deref().filter(|p| !p.is_empty()) {
        let prefix = prefix.to_lowercase();
        let end = sql.param(SqlValue::Text(prefix_end(&prefix)));
        let start = sql.param(SqlValue::Text(prefix));
        sql.push(format!("name_key >= {start} AND name_key < {end}"));
    }
    if let Some(filter) = query.state {
        let now = match filter {
            EndpointFilter::Valid | EndpointFilter::Expired => sql.param(SqlValue::Int(query.now)),
            _ => String::new(),
        };
        sql.push(endpoint_filter_condition(filter, &now));
    }
    if let Some(group) = &query.group {
        sql.compare("grp", "=", SqlValue::Text(group.clone()));
    }
    if let Some(release) = query.release {
        let release = i64::try_from(release).unwrap_or(i64::MAX);
        sql.compare("installed_version", "=", SqlValue::Int(release));
    }
    if let Some(after) = &query.after {
        let key = sql.param(SqlValue::Text(after.to_lowercase()));
        let name = sql.param(SqlValue::Text(after.clone()));
        // The leading `name_key >=` bounds the index scan in both databases.
        sql.push(format!(
            "name_key >= {key} AND (name_key > {key} OR name > {name})"
        ));
    }
    let limit = sql.param(SqlValue::Int(i64::from(query.limit)));
    let conditions = sql.where_clause();
    (
        format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints {conditions}
             ORDER BY name_key, name LIMIT {limit}"
        ),
        sql.params,
    )
}

/// The endpoint counts of [`crate::store::StoreTx::endpoint_counts`] (total, valid, revoked,
/// expired, never reported, failing): one statement, `now` as the placeholder given. The
/// total is counted on the narrowest index and the valid ones derived from it (everything
/// not revoked, not expired and with a certificate), so that only the small states are
/// counted one by one on their partial indexes.
pub(crate) fn endpoint_counts_sql(now: &str) -> String {
    let count = |filter| {
        format!(
            "(SELECT count(*) FROM endpoints WHERE {})",
            endpoint_filter_condition(filter, now)
        )
    };
    format!(
        "SELECT total, total - revoked - expired - uncertified, revoked, expired, unreported,
                failing
         FROM (SELECT (SELECT count(*) FROM endpoints) AS total, {} AS revoked, {} AS expired,
                      {} AS unreported, {} AS failing,
                      (SELECT count(*) FROM endpoints WHERE serial IS NULL) AS uncertified)
              AS counts",
        count(EndpointFilter::Revoked),
        count(EndpointFilter::Expired),
        count(EndpointFilter::NeverReported),
        count(EndpointFilter::Failing),
    )
}

/// The audit page `query` as SQL with placeholders from `placeholder` and its parameters.
pub(crate) fn audit_page_sql(
    query: &AuditQuery,
    placeholder: &dyn Fn(usize) -> String,
) -> (String, Vec<SqlValue>) {
    let mut sql = Conditions::new(placeholder);
    if let Some(before) = query.before {
        sql.compare("seq", "<", SqlValue::Int(before));
    }
    if let Some(actor) = &query.actor {
        sql.compare("actor", "=", SqlValue::Text(actor.clone()));
    }
    if let Some(action) = &query.action {
        sql.compare("action", "=", SqlValue::Text(action.clone()));
    }
    let limit = sql.param(SqlValue::Int(i64::from(query.limit)));
    let conditions = sql.where_clause();
    (
        format!("SELECT {AUDIT_COLUMNS} FROM audit {conditions} ORDER BY seq DESC LIMIT {limit}"),
        sql.params,
    )
}

/// A stored flag (0 or 1) as a boolean; anything else is corrupt.
pub(crate) fn flag_from_db(value: i64, what: &str) -> Result<bool, StoreError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(StoreError::Corrupt(format!("{what} = {other}"))),
    }
}

/// A stored release number as read back (never negative).
pub(crate) fn version_from_db(value: Option<i64>) -> Result<Option<u64>, StoreError> {
    value.map(release_from_db).transpose()
}

/// A stored release number that cannot be absent, as read back.
fn release_from_db(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("release number {value}")))
}
