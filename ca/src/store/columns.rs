//! The column lists and row conversions both store backends share, so that their queries read
//! and write the same columns in the same order.

use herald_wire::{Group, RolloutState};

use crate::store::{AuditQuery, EndpointFilter, EndpointQuery, StoreError};

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

/// A group name as stored, checked.
pub(crate) fn group_from_db(name: &str) -> Result<Group, StoreError> {
    Group::new(name).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A rollout state as stored ([`RolloutState::as_str`]), checked.
pub(crate) fn state_from_db(name: &str) -> Result<RolloutState, StoreError> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|_| StoreError::Corrupt(format!("rollout state {name:?}")))
}

/// The count of endpoints per installed release, the same in both dialects.
pub(crate) const INSTALLED_RELEASE_COUNTS_QUERY: &str =
    "SELECT installed_version, count(*) FROM endpoints
     GROUP BY installed_version ORDER BY installed_version NULLS FIRST";

/// The aggregate behind [`crate::store::StoreTx::release_counts`], the same in both dialects:
/// it groups on the columns of the `fleet_reports_releases` index, in its order, and its
/// condition is the index's, so both databases answer from the index.
pub(crate) const RELEASE_COUNTS_QUERY: &str = "
    SELECT channel, offered_release, group_name, rollout_state, COUNT(*)
    FROM fleet_reports
    WHERE channel IS NOT NULL AND offered_release IS NOT NULL AND rollout_state IS NOT NULL
    GROUP BY channel, offered_release, group_name, rollout_state
    ORDER BY channel, offered_release, group_name, rollout_state";

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
pub(crate) fn release_from_db(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("release number {value}")))
}
