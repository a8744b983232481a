//! The store layer: one narrow interface ([`Store`] / [`StoreTx`]) with the records it holds,
//! and its two backends, [`SqliteStore`] (the default, one file) and [`PgStore`] (shared by
//! several servers), chosen by `open`. Below it only the model.
//!
//! Every change happens inside [`Store::write`], one transaction committed durably (group
//! commit in both backends) before the call returns, so a caller records a certificate together
//! with its other writes (the audit entry, the burnt enrollment token) atomically.

mod columns;
mod group_commit;
pub(crate) mod open;
mod postgres;
mod rows;
mod schema;
mod sqlite;

pub use postgres::{PgOptions, PgStore};
pub use schema::SCHEMA_VERSION;
pub use sqlite::SqliteStore;

use herald_wire::{Group, RolloutState};
use serde::Serialize;

use crate::model::audit::{AuditEntry, NewAuditEntry};
use crate::model::revocation::Reason;
use crate::model::serial::Serial;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// The store could not be opened.
    #[error("cannot open the store {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        source: rusqlite::Error,
    },
    /// A certificate with this serial is already recorded.
    #[error("serial {0} is already recorded")]
    DuplicateSerial(String),
    /// A stored value is not what this version wrote.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The write-ahead log could not be synced to disk: the last write may not be durable.
    #[error("cannot sync the store to disk: {0}")]
    Sync(String),
    /// The store's lock was poisoned by a panic in another thread.
    #[error("the store lock is poisoned")]
    Poisoned,
    /// A uniqueness or state condition of the write no longer holds (a concurrent writer got
    /// there first: an enrollment token already burnt, a name already taken). The transaction
    /// is rolled back.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database server cannot be reached or the connection was lost; the transaction was
    /// not committed (or, if the connection broke during the commit, was not acknowledged).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database server refused a statement, or its schema does not fit this version.
    #[error("database error: {0}")]
    Backend(String),
    /// A value handed to the store does not fit its column (a number beyond the database's
    /// signed 64-bit integers); nothing was written.
    #[error("cannot store {0}: out of range")]
    OutOfRange(String),
    /// The caller's transaction body failed, so the transaction was rolled back (the caller
    /// sees its own error, not this one).
    #[error("the transaction was rolled back")]
    RolledBack,
}

/// A certificate as recorded in the store.
#[derive(Debug, Clone, Serialize)]
pub struct CertRecord {
    /// Serial number.
    pub serial: Serial,
    /// The issuing CA's identifier (`intermediate`).
    pub issuer: String,
    /// The subject name given by policy.
    pub name: String,
    /// The profile the certificate was issued under.
    pub profile: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// When it was issued, Unix seconds.
    pub issued_at: i64,
    /// The certificate, DER.
    #[serde(skip)]
    pub der: Vec<u8>,
    /// Revocation, if revoked.
    pub revocation: Option<Revocation>,
}

/// A revocation record.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Revocation {
    /// When the CA processed the revocation, Unix seconds.
    pub revoked_at: i64,
    /// The RFC 5280 reason.
    pub reason: Reason,
}

/// One entry of a CRL, streamed from the store.
#[derive(Debug, Clone)]
pub struct RevokedEntry {
    /// Serial number.
    pub serial: Serial,
    /// The revocation.
    pub revocation: Revocation,
}

/// A CRL just produced. The store keeps its number and dates; the DER is served from memory
/// and produced anew after a restart (a new number), so the store never holds large blobs.
#[derive(Debug, Clone)]
pub struct StoredCrl {
    /// CRL number.
    pub number: u64,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: i64,
    /// The CRL, DER.
    pub der: Vec<u8>,
}

/// An admin credential as stored: only the SHA-256 hash of the token.
#[derive(Debug, Clone, Serialize)]
pub struct AdminTokenRecord {
    /// Public identifier.
    pub id: String,
    /// Hex SHA-256 of the secret token.
    #[serde(skip)]
    pub hash: String,
    /// Role name.
    pub role: String,
    /// Free-text label.
    pub label: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// After this time (Unix seconds) the token is refused; `None`: no expiry.
    pub expires_at: Option<i64>,
    /// When the token was revoked (Unix seconds); a revoked token is refused.
    pub revoked_at: Option<i64>,
    /// When the token last authenticated a call (Unix seconds, to the minute).
    pub last_used_at: Option<i64>,
}

/// A one-time enrollment token as stored: only the SHA-256 hash of the secret.
///
/// State: *pending* (`used_at`, `revoked_at` both `None`), *used* (`used_at` set, with the
/// serial and public-key hash of the certificate it paid for), or *revoked* (`revoked_at`
/// set). *Expired* is pending with `expires_at` in the past; it is derived, not stored.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EnrollmentTokenRecord {
    /// Public identifier (hex), used by `token list` / `token revoke`.
    pub id: String,
    /// Hex SHA-256 of the secret token.
    #[serde(skip)]
    pub hash: String,
    /// The unique name allocated to the token (`BASE-NNNN`); unique across all tokens.
    pub name: String,
    /// The base name the operator asked for.
    pub base: String,
    /// The issuance profile.
    pub profile: String,
    /// The group the endpoint enrolling with it joins.
    pub group: Group,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
    /// Who created it (audit actor).
    pub created_by: String,
    /// When it was burnt, Unix seconds.
    pub used_at: Option<i64>,
    /// Serial (hex) of the certificate it was burnt for.
    pub serial: Option<String>,
    /// Hex SHA-256 of the DER SubjectPublicKeyInfo of the certificate it was burnt for (to
    /// recognise a retry after a lost response).
    pub spki_sha256: Option<String>,
    /// When an operator revoked it, Unix seconds.
    pub revoked_at: Option<i64>,
}

/// What `revoke` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Newly revoked.
    Revoked,
    /// It was already revoked; the first revocation stands.
    AlreadyRevoked(Revocation),
    /// No such certificate.
    NotFound,
}

/// Filter for listing certificates.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only certificates with this name.
    pub name: Option<String>,
    /// Only revoked (`Some(true)`) or only not revoked (`Some(false)`).
    pub revoked: Option<bool>,
    /// At most this many, newest first.
    pub limit: Option<u32>,
}

/// The last status report of one endpoint (`POST /api/v1/status`), one per name: a newer
/// report replaces the older.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FleetReport {
    /// The endpoint's name, taken from its client certificate.
    pub name: String,
    /// Serial (hex) of the certificate the report was sent with.
    pub serial: String,
    /// When the server received the report, Unix seconds.
    pub received_at: i64,
    /// The installed release, as the endpoint reported it.
    pub installed_version: Option<u64>,
    /// When the endpoint last checked for updates (RFC 3339, as reported).
    pub last_check: Option<String>,
    /// The outcome of that check (`installed`, `up-to-date`, `rolled-back`, `error`).
    pub last_result: Option<String>,
    /// The last error the endpoint reported, if its last check failed.
    pub last_error: Option<String>,
    /// Files in the endpoint's install root that its release does not list.
    pub unlisted: Vec<String>,
    /// The group of the certificate the report was proved with (its organizationalUnitName,
    /// written by this CA): the group the endpoint evaluated its rollout policy for. Never
    /// taken from the report.
    pub group: Group,
    /// The release channel the endpoint follows, as reported.
    pub channel: Option<String>,
    /// The release its signed rollout policy offers it now, as reported.
    pub release: Option<u64>,
    /// Where it stands with that release, as reported.
    pub state: Option<RolloutState>,
    /// Why it failed or rolled back, as reported (cut to a bounded length).
    pub reason: Option<String>,
}

/// The group the CA records for an endpoint: set from its enrollment token, changed by an
/// operator. Certificates issued for the name carry it (renewal included). A name without a
/// record is in [`Group::DEFAULT`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EndpointGroupRecord {
    /// The endpoint's name.
    pub name: String,
    /// Its group.
    pub group: Group,
    /// When the group was set, Unix seconds.
    pub changed_at: i64,
}

/// How many endpoints' latest reports stand in `state` for one channel, release and group
/// (one row of the releases summary, before the states are spread into columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseStateCount {
    /// The channel.
    pub channel: String,
    /// The release offered.
    pub release: u64,
    /// The group of the certificates the reports were proved with.
    pub group: Group,
    /// The state reported.
    pub state: RolloutState,
    /// Number of endpoints.
    pub endpoints: u64,
}

/// A console account: who signs in to `/ui/` with a password and a second factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// The account name (sign-in name; unique).
    pub name: String,
    /// Role name (`admin`, `operator`, `auditor`).
    pub role: String,
    /// The password's Argon2id hash (PHC string); never the password.
    pub password_hash: String,
    /// The password was set by an administrator and must be replaced at the next sign-in.
    pub password_one_time: bool,
    /// A second factor (TOTP) is required to sign in (the default).
    pub mfa_required: bool,
    /// The TOTP secret (hex): pending until `totp_enrolled_at` is set.
    pub totp_secret: Option<String>,
    /// When the TOTP secret was confirmed with a first code, Unix seconds.
    pub totp_enrolled_at: Option<i64>,
    /// The last TOTP time step accepted (a code is accepted once).
    pub totp_last_step: Option<i64>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// When the account was disabled (it cannot sign in), Unix seconds.
    pub disabled_at: Option<i64>,
    /// Failed sign-in attempts since the last success.
    pub failed_logins: i64,
    /// Sign-ins are refused until this time (Unix seconds) after repeated failures.
    pub locked_until: Option<i64>,
    /// The last successful sign-in, Unix seconds.
    pub last_login_at: Option<i64>,
}

/// A console session: the store knows only the SHA-256 of its random identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Hex SHA-256 of the session identifier held in the browser's cookie.
    pub id_hash: String,
    /// The account signed in.
    pub account: String,
    /// How far the sign-in got: `second-factor`, `setup` or `active`.
    pub stage: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last request seen (to the minute), Unix seconds.
    pub last_seen_at: i64,
    /// Absolute expiry, Unix seconds.
    pub expires_at: i64,
}

/// One endpoint of the fleet as the `endpoints` table keeps it (certificates and status
/// reports maintain it; see schema versions 5 and 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRow {
    /// The endpoint's name.
    pub name: String,
    /// Its group as the CA records it (see [`EndpointGroupRecord`]; `default` if none is).
    pub group: String,
    /// Serial (hex) of its newest endpoint certificate; `None` if it only reported.
    pub serial: Option<String>,
    /// notAfter of that certificate, Unix seconds.
    pub not_after: Option<i64>,
    /// When that certificate was revoked, Unix seconds.
    pub revoked_at: Option<i64>,
    /// The installed release it last reported.
    pub installed_version: Option<u64>,
    /// When its last report arrived, Unix seconds.
    pub last_seen: Option<i64>,
    /// The outcome of its last check.
    pub last_result: Option<String>,
    /// The release channel its last report named.
    pub channel: Option<String>,
    /// The release its rollout policy offered it, as last reported.
    pub offered_release: Option<u64>,
    /// Where it stood with that release, as last reported.
    pub rollout_state: Option<RolloutState>,
}

/// A state filter of the endpoint listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointFilter {
    /// Newest certificate within its validity and not revoked.
    Valid,
    /// Newest certificate revoked.
    Revoked,
    /// Newest certificate past its notAfter, not revoked.
    Expired,
    /// Never sent a status report.
    NeverReported,
    /// Its last check failed.
    Failing,
}

/// One page of the endpoint listing, ordered by lower-case name: every condition indexed.
#[derive(Debug, Clone, Default)]
pub struct EndpointQuery {
    /// Only names starting with this (compared lower-case).
    pub prefix: Option<String>,
    /// Only endpoints in this state.
    pub state: Option<EndpointFilter>,
    /// Only this group.
    pub group: Option<String>,
    /// Only endpoints that reported this installed release.
    pub release: Option<u64>,
    /// Only names after this one (the last of the previous page).
    pub after: Option<String>,
    /// The time states are judged at, Unix seconds.
    pub now: i64,
    /// At most this many.
    pub limit: u32,
}

/// How many endpoints are in each state (the states overlap: a valid endpoint may never
/// have reported).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EndpointCounts {
    /// Every endpoint.
    pub total: i64,
    /// Newest certificate valid.
    pub valid: i64,
    /// Newest certificate revoked.
    pub revoked: i64,
    /// Newest certificate expired.
    pub expired: i64,
    /// Never reported.
    pub never_reported: i64,
    /// Last check failed.
    pub failing: i64,
}

/// Status reports received in one hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportHour {
    /// Hours since the Unix epoch.
    pub hour: i64,
    /// Reports received.
    pub reports: i64,
    /// Of which reported a failed check.
    pub failures: i64,
}

/// One page of the audit log, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only entries before this sequence number.
    pub before: Option<i64>,
    /// Only entries by this actor.
    pub actor: Option<String>,
    /// Only entries with this action.
    pub action: Option<String>,
    /// At most this many.
    pub limit: u32,
}

/// Operations available inside one store transaction.
pub trait StoreTx {
    /// Records a newly issued certificate; fails with [`StoreError::DuplicateSerial`] if the
    /// serial was ever used.
    fn insert_certificate(&self, record: &CertRecord) -> Result<(), StoreError>;
    /// The certificate with this serial.
    fn certificate(&self, serial: &Serial) -> Result<Option<CertRecord>, StoreError>;
    /// Certificates, newest first.
    fn list_certificates(&self, filter: &ListFilter) -> Result<Vec<CertRecord>, StoreError>;
    /// Marks a certificate revoked; a revocation is permanent.
    fn revoke(&self, serial: &Serial, revocation: Revocation) -> Result<RevokeOutcome, StoreError>;
    /// Visits every revoked certificate of `issuer` (for the CRL), in serial order.
    fn for_each_revoked(
        &self,
        issuer: &str,
        visit: &mut dyn FnMut(RevokedEntry),
    ) -> Result<(), StoreError>;
    /// Allocates the next CRL number of `issuer` (monotonic, starting at 1).
    fn next_crl_number(&self, issuer: &str) -> Result<u64, StoreError>;
    /// Records the number and dates of the CRL just produced for `issuer`.
    fn save_crl(&self, issuer: &str, crl: &StoredCrl) -> Result<(), StoreError>;
    /// A counter bumped on every status change (revocation), so that other processes sharing
    /// the store notice changes.
    fn status_epoch(&self) -> Result<i64, StoreError>;
    /// Appends an entry to this store's chain of the hash-chained audit log, as part of the
    /// transaction. The PostgreSQL store sends the append with the commit (so the head of its
    /// chain is held for the shortest time); a failure to append fails the transaction.
    fn append_audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError>;
    /// Visits the audit log in order: chain by chain, each in sequence.
    fn for_each_audit(&self, visit: &mut dyn FnMut(AuditEntry)) -> Result<(), StoreError>;
    /// Records an admin token (hash only).
    fn insert_admin_token(&self, record: &AdminTokenRecord) -> Result<(), StoreError>;
    /// The admin token with this SHA-256 hash (hex).
    fn admin_token_by_hash(&self, hash: &str) -> Result<Option<AdminTokenRecord>, StoreError>;
    /// Every admin token, oldest first.
    fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError>;
    /// Revokes an admin token; `false` if it is unknown or already revoked.
    fn revoke_admin_token(&self, id: &str, revoked_at: i64) -> Result<bool, StoreError>;
    /// Records that an admin token authenticated a call at `at`.
    fn touch_admin_token(&self, id: &str, at: i64) -> Result<(), StoreError>;

    /// Allocates the next number for names derived from `base` and returns it: 1 for the
    /// first call with a base, then 2, 3, ... A number allocated by a committed transaction is
    /// never returned again for that base (a rolled-back allocation may be). Atomic: concurrent
    /// transactions (also from other processes or servers sharing the store) serialise on the
    /// per-base counter row (SQLite: the write lock; PostgreSQL: `INSERT ... ON CONFLICT DO
    /// UPDATE ... RETURNING` on a row keyed by base).
    fn allocate_name_number(&self, base: &str) -> Result<u64, StoreError>;
    /// Records a new enrollment token. Fails with [`StoreError::Conflict`] when a token with
    /// the same `id`, `hash` or `name` exists (all three are unique).
    fn insert_enrollment_token(&self, record: &EnrollmentTokenRecord) -> Result<(), StoreError>;
    /// The enrollment token whose secret hashes (SHA-256, hex) to `hash`.
    fn enrollment_token_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<EnrollmentTokenRecord>, StoreError>;
    /// The enrollment token with this identifier.
    fn enrollment_token(&self, id: &str) -> Result<Option<EnrollmentTokenRecord>, StoreError>;
    /// Every enrollment token, oldest first.
    fn list_enrollment_tokens(&self) -> Result<Vec<EnrollmentTokenRecord>, StoreError>;
    /// Burns a pending token: sets `used_at`, `serial` and `spki_sha256` only if the token is
    /// neither used nor revoked, as one conditional update. Returns `false` (and changes
    /// nothing) if it was already used or revoked, so of concurrent burns exactly one wins.
    /// Expiry is the caller's check.
    fn burn_enrollment_token(
        &self,
        id: &str,
        used_at: i64,
        serial: &str,
        spki_sha256: &str,
    ) -> Result<bool, StoreError>;
    /// Revokes a pending token (sets `revoked_at`) only if it is neither used nor revoked;
    /// returns whether it changed.
    fn revoke_enrollment_token(&self, id: &str, revoked_at: i64) -> Result<bool, StoreError>;
    /// True when a certificate or an enrollment token already carries `name` (a name that
    /// was ever issued, even if revoked, is never handed out again).
    fn name_in_use(&self, name: &str) -> Result<bool, StoreError>;
    /// Records an endpoint's status report, replacing its previous one.
    fn put_fleet_report(&self, report: &FleetReport) -> Result<(), StoreError>;
    /// The stored reports ordered by name: all of them, or only `name`'s.
    fn fleet_reports(&self, name: Option<&str>) -> Result<Vec<FleetReport>, StoreError>;

    /// Records a new console account; [`StoreError::Conflict`] if the name is taken.
    fn insert_account(&self, record: &AccountRecord) -> Result<(), StoreError>;
    /// The console account with this name.
    fn account(&self, name: &str) -> Result<Option<AccountRecord>, StoreError>;
    /// Every console account, by name.
    fn list_accounts(&self) -> Result<Vec<AccountRecord>, StoreError>;
    /// Writes every field of `record` over the account of the same name; `false` if there
    /// is none.
    fn update_account(&self, record: &AccountRecord) -> Result<bool, StoreError>;
    /// Counts a failed sign-in of `name` as one statement (concurrent failures all count):
    /// when the count reaches `lock_after`, `locked_until` is set. Returns the new count and
    /// lock, `None` if there is no such account.
    fn count_login_failure(
        &self,
        name: &str,
        lock_after: i64,
        locked_until: i64,
    ) -> Result<Option<(i64, Option<i64>)>, StoreError>;
    /// Accepts TOTP time step `step` for `name` only if it is later than the last one
    /// accepted, as one conditional update, so a code is never accepted twice (also by two
    /// servers at once).
    fn accept_totp_step(&self, name: &str, step: i64) -> Result<bool, StoreError>;
    /// Replaces the recovery codes of `account` with these hashes.
    fn replace_recovery_codes(
        &self,
        account: &str,
        hashes: &[String],
        created_at: i64,
    ) -> Result<(), StoreError>;
    /// Uses the unused recovery code with this hash; `false` if there is none.
    fn use_recovery_code(&self, account: &str, hash: &str, at: i64) -> Result<bool, StoreError>;
    /// How many unused recovery codes `account` has left.
    fn recovery_codes_left(&self, account: &str) -> Result<i64, StoreError>;
    /// Records a new console session.
    fn insert_session(&self, record: &SessionRecord) -> Result<(), StoreError>;
    /// The session whose identifier hashes to `id_hash`.
    fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Records that a session was used at `at`.
    fn touch_session(&self, id_hash: &str, at: i64) -> Result<(), StoreError>;
    /// Ends a session; `false` if there was none.
    fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError>;
    /// Ends every session of `account`; returns how many.
    fn delete_sessions_of(&self, account: &str) -> Result<u64, StoreError>;
    /// Removes sessions past their absolute expiry (`expires_at <= now`) or idle since
    /// before `idle_before`; returns how many.
    fn delete_expired_sessions(&self, now: i64, idle_before: i64) -> Result<u64, StoreError>;
    /// One page of endpoints (see [`EndpointQuery`]).
    fn endpoints_page(&self, query: &EndpointQuery) -> Result<Vec<EndpointRow>, StoreError>;
    /// How many endpoints are in each state at `now`.
    fn endpoint_counts(&self, now: i64) -> Result<EndpointCounts, StoreError>;
    /// How many endpoints reported each installed release (`None`: none reported), by
    /// release.
    fn installed_release_counts(&self) -> Result<Vec<(Option<u64>, i64)>, StoreError>;
    /// Unrevoked certificates whose notAfter is in `[from, until)`: how many, and the first
    /// `limit` of them, soonest first.
    fn certificates_expiring(
        &self,
        from: i64,
        until: i64,
        limit: u32,
    ) -> Result<(i64, Vec<CertRecord>), StoreError>;
    /// Certificates newest first, after `(issued_at, serial)` of the previous page's last.
    fn certificates_page(
        &self,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<CertRecord>, StoreError>;
    /// Status reports per hour, from `from_hour` on.
    fn report_hours(&self, from_hour: i64) -> Result<Vec<ReportHour>, StoreError>;
    /// One page of the audit log (see [`AuditQuery`]).
    fn audit_page(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    /// Enrollment tokens newest first, after `(created_at, id)` of the previous page's last.
    fn enrollment_tokens_page(
        &self,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<EnrollmentTokenRecord>, StoreError>;
    /// Counts the stored reports that carry a channel, a release and a state, per channel,
    /// release, group and state, ordered by those four. One aggregate query over the
    /// `fleet_reports_releases` index; no report is loaded.
    fn release_counts(&self) -> Result<Vec<ReleaseStateCount>, StoreError>;
    /// The group recorded for `name`, if any.
    fn endpoint_group(&self, name: &str) -> Result<Option<EndpointGroupRecord>, StoreError>;
    /// Every recorded group, ordered by name.
    fn endpoint_groups(&self) -> Result<Vec<EndpointGroupRecord>, StoreError>;
    /// Records the group of an endpoint, replacing the one recorded before.
    fn set_endpoint_group(&self, record: &EndpointGroupRecord) -> Result<(), StoreError>;
}

/// A transactional store. `write` commits durably before returning; `read` sees a consistent
/// snapshot.
pub trait Store: Send + Sync + 'static {
    /// Runs `f` in a write transaction, committed if `f` succeeds, rolled back otherwise.
    fn write(
        &self,
        f: &mut dyn FnMut(&dyn StoreTx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Runs `f` in a read transaction.
    fn read(
        &self,
        f: &mut dyn FnMut(&dyn StoreTx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Blocks until another server or process sharing the store may have changed a
    /// certificate's status, or `timeout` passes. Stores told of changes (PostgreSQL
    /// LISTEN/NOTIFY) return early; the default just waits.
    fn wait_status_change(&self, timeout: std::time::Duration) {
        std::thread::sleep(timeout);
    }
}

/// Runs `f` in a write transaction and returns its value.
pub fn write_tx<R, E: From<StoreError>>(
    store: &dyn Store,
    f: impl FnOnce(&dyn StoreTx) -> Result<R, E>,
) -> Result<R, E> {
    run_tx(store, true, f)
}

/// Runs `f` in a read transaction and returns its value.
pub fn read_tx<R, E: From<StoreError>>(
    store: &dyn Store,
    f: impl FnOnce(&dyn StoreTx) -> Result<R, E>,
) -> Result<R, E> {
    run_tx(store, false, f)
}

fn run_tx<R, E: From<StoreError>>(
    store: &dyn Store,
    write: bool,
    f: impl FnOnce(&dyn StoreTx) -> Result<R, E>,
) -> Result<R, E> {
    let mut f = Some(f);
    let mut out: Option<Result<R, E>> = None;
    let mut body = |tx: &dyn StoreTx| -> Result<(), StoreError> {
        let Some(f) = f.take() else {
            return Err(StoreError::Backend("the transaction body ran twice".into()));
        };
        let result = f(tx);
        let failed = result.is_err();
        out = Some(result);
        if failed {
            // Any error rolls the transaction back; the caller's error is returned below.
            Err(StoreError::RolledBack)
        } else {
            Ok(())
        }
    };
    let status = if write {
        store.write(&mut body)
    } else {
        store.read(&mut body)
    };
    match (out, status) {
        (Some(Err(e)), _) => Err(e),
        (_, Err(e)) => Err(e.into()),
        (Some(Ok(v)), Ok(())) => Ok(v),
        (None, Ok(())) => {
            Err(StoreError::Backend("the transaction body did not run".into()).into())
        }
    }
}
