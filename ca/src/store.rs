//! The certificate store: one narrow interface ([`Store`] / [`StoreTx`]) and its SQLite
//! implementation.
//!
//! Every change happens inside [`Store::write`], one transaction committed durably (WAL,
//! group-committed fsync) before the call returns, so a caller can record a certificate together
//! with any other writes (an audit entry, and later a burnt enrollment token) atomically. A
//! PostgreSQL implementation fits behind the same two traits.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::audit::{chain_hash, AuditEntry, NewAuditEntry, GENESIS_HASH};
use crate::revocation::Reason;
use crate::serial::Serial;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// The store could not be opened.
    #[error("cannot open the store {path}: {source}")]
    Open {
        /// The database file.
        path: std::path::PathBuf,
        /// The cause.
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
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
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
    /// Appends an entry to the hash-chained audit log.
    fn append_audit(&self, entry: &NewAuditEntry) -> Result<AuditEntry, StoreError>;
    /// Visits the audit log in order.
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
            return Err(StoreError::Corrupt("transaction body ran twice".into()));
        };
        let result = f(tx);
        let failed = result.is_err();
        out = Some(result);
        if failed {
            // Any error rolls the transaction back; the caller's error is returned below.
            Err(StoreError::Corrupt("rolled back".into()))
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
        (None, Ok(())) => Err(StoreError::Corrupt("transaction body did not run".into()).into()),
    }
}

/// The SQLite store: one database file in WAL mode with group commit. A write transaction
/// commits without waiting for the disk, then waits until the write-ahead log holding its
/// commit has been synced (fsync): concurrent writers share one sync, so throughput does not
/// fall to one transaction per disk flush, and no write returns before it is durable.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    sync: GroupSync,
}

/// Group commit: commits are numbered; one waiter at a time syncs the WAL file, which makes
/// every commit numbered before the sync started durable, and wakes the others.
struct GroupSync {
    wal: std::path::PathBuf,
    state: Mutex<SyncState>,
    synced: std::sync::Condvar,
}

#[derive(Default)]
struct SyncState {
    committed: u64,
    durable: u64,
    syncing: bool,
}

impl GroupSync {
    /// Numbers a commit (call with the connection locked, right after the commit).
    fn committed(&self) -> Result<u64, StoreError> {
        let mut state = self.state.lock().map_err(|_| StoreError::Poisoned)?;
        state.committed += 1;
        Ok(state.committed)
    }

    /// Returns once commit `seq` is on disk.
    fn wait_durable(&self, seq: u64) -> Result<(), StoreError> {
        let mut state = self.state.lock().map_err(|_| StoreError::Poisoned)?;
        loop {
            if state.durable >= seq {
                return Ok(());
            }
            if !state.syncing {
                state.syncing = true;
                let target = state.committed;
                drop(state);
                let result = self.sync_wal();
                state = self.state.lock().map_err(|_| StoreError::Poisoned)?;
                state.syncing = false;
                if result.is_ok() {
                    state.durable = state.durable.max(target);
                }
                self.synced.notify_all();
                result?;
            } else {
                state = self.synced.wait(state).map_err(|_| StoreError::Poisoned)?;
            }
        }
    }

    fn sync_wal(&self) -> Result<(), StoreError> {
        match std::fs::File::open(&self.wal) {
            Ok(file) => file
                .sync_data()
                .map_err(|e| StoreError::Sync(e.to_string())),
            // No WAL file: everything was checkpointed into the database, which SQLite syncs
            // before it removes the log.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Sync(e.to_string())),
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    name TEXT NOT NULL,
    profile TEXT NOT NULL,
    not_before INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    der BLOB NOT NULL,
    revoked_at INTEGER,
    reason INTEGER
);
CREATE INDEX IF NOT EXISTS certificates_name ON certificates(name);
CREATE INDEX IF NOT EXISTS certificates_revoked_entries
    ON certificates(issuer, revoked_at, serial, reason) WHERE revoked_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS crls (
    issuer TEXT PRIMARY KEY,
    last_number INTEGER NOT NULL,
    this_update INTEGER,
    next_update INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS admin_tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    last_used_at INTEGER
);
CREATE TABLE IF NOT EXISTS name_counters (
    base TEXT PRIMARY KEY,
    last_number INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS enrollment_tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    base TEXT NOT NULL,
    profile TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    used_at INTEGER,
    serial TEXT,
    spki_sha256 TEXT,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS fleet_reports (
    name TEXT PRIMARY KEY,
    serial TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    installed_version INTEGER,
    last_check TEXT,
    last_result TEXT,
    last_error TEXT,
    unlisted TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

/// Columns added after a table was first released: `(table, column, type)`. A store created
/// by an older version gets them at open (`ALTER TABLE ... ADD COLUMN`); new stores have them
/// from [`SCHEMA`].
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("admin_tokens", "expires_at", "INTEGER"),
    ("admin_tokens", "revoked_at", "INTEGER"),
    ("admin_tokens", "last_used_at", "INTEGER"),
];

fn migrate_sqlite(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, kind) in ADDED_COLUMNS {
        let present: bool = conn.query_row(
            &format!("SELECT count(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
            params![column],
            |row| row.get(0),
        )?;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
        }
    }
    Ok(())
}

/// The columns of an admin token row, in [`AdminTokenRecord`] order.
pub(crate) const ADMIN_TOKEN_COLUMNS: &str =
    "id, hash, role, label, created_at, expires_at, revoked_at, last_used_at";

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        // NORMAL: commits do not wait for the disk; `run` syncs the WAL itself (group commit).
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        migrate_sqlite(&conn).map_err(open_err)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Self {
            conn: Mutex::new(conn),
            sync: GroupSync {
                wal: wal.into(),
                state: Mutex::new(SyncState::default()),
                synced: std::sync::Condvar::new(),
            },
        })
    }

    fn run(
        &self,
        behavior: rusqlite::TransactionBehavior,
        f: &mut dyn FnMut(&dyn StoreTx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let write = matches!(behavior, rusqlite::TransactionBehavior::Immediate);
        let mut conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        let tx = conn.transaction_with_behavior(behavior)?;
        let result = f(&SqliteTx { tx: &tx });
        match result {
            Ok(()) => {
                tx.commit()?;
                if write {
                    let seq = self.sync.committed()?;
                    // Let the next writer in while this commit waits for the disk.
                    drop(conn);
                    self.sync.wait_durable(seq)?;
                }
                Ok(())
            }
            Err(e) => {
                // Dropping the transaction rolls it back.
                drop(tx);
                Err(e)
            }
        }
    }
}

impl Store for SqliteStore {
    fn write(
        &self,
        f: &mut dyn FnMut(&dyn StoreTx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.run(rusqlite::TransactionBehavior::Immediate, f)
    }

    fn read(
        &self,
        f: &mut dyn FnMut(&dyn StoreTx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.run(rusqlite::TransactionBehavior::Deferred, f)
    }
}

struct SqliteTx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

const CERT_COLUMNS: &str =
    "serial, issuer, name, profile, not_before, not_after, issued_at, der, revoked_at, reason";

/// A certificate row before its serial and reason are checked.
type RawCert = (CertRecord, String, Option<u8>);

fn cert_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawCert> {
    let serial: String = row.get(0)?;
    let revoked_at: Option<i64> = row.get(8)?;
    let reason: Option<u8> = row.get(9)?;
    let record = CertRecord {
        serial: Serial::from_bytes(&[0]),
        issuer: row.get(1)?,
        name: row.get(2)?,
        profile: row.get(3)?,
        not_before: row.get(4)?,
        not_after: row.get(5)?,
        issued_at: row.get(6)?,
        der: row.get(7)?,
        revocation: revoked_at.map(|revoked_at| Revocation {
            revoked_at,
            reason: Reason::Unspecified,
        }),
    };
    Ok((record, serial, reason))
}

fn finish_cert((mut record, serial, reason): RawCert) -> Result<CertRecord, StoreError> {
    record.serial =
        Serial::from_hex(&serial).map_err(|_| StoreError::Corrupt(format!("serial {serial}")))?;
    if let (Some(rev), Some(code)) = (record.revocation.as_mut(), reason) {
        rev.reason = Reason::from_code(code)
            .ok_or_else(|| StoreError::Corrupt(format!("revocation reason {code}")))?;
    }
    Ok(record)
}

impl StoreTx for SqliteTx<'_> {
    fn insert_certificate(&self, r: &CertRecord) -> Result<(), StoreError> {
        let result = self.tx.execute(
            "INSERT INTO certificates (serial, issuer, name, profile, not_before, not_after,
                issued_at, der) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                r.serial.to_hex(),
                r.issuer,
                r.name,
                r.profile,
                r.not_before,
                r.not_after,
                r.issued_at,
                r.der
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::DuplicateSerial(r.serial.to_hex()))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn certificate(&self, serial: &Serial) -> Result<Option<CertRecord>, StoreError> {
        // Prepared once per connection: this lookup answers OCSP misses and TLS client checks.
        let row = self
            .tx
            .prepare_cached(&format!(
                "SELECT {CERT_COLUMNS} FROM certificates WHERE serial = ?1"
            ))?
            .query_row(params![serial.to_hex()], cert_from_row)
            .optional()?;
        row.map(finish_cert).transpose()
    }

    fn list_certificates(&self, filter: &ListFilter) -> Result<Vec<CertRecord>, StoreError> {
        let mut sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE 1=1");
        if filter.name.is_some() {
            sql.push_str(" AND name = ?1");
        } else {
            sql.push_str(" AND ?1 IS NULL");
        }
        match filter.revoked {
            Some(true) => sql.push_str(" AND revoked_at IS NOT NULL"),
            Some(false) => sql.push_str(" AND revoked_at IS NULL"),
            None => {}
        }
        sql.push_str(" ORDER BY issued_at DESC, serial LIMIT ?2");
        let limit = filter.limit.map_or(-1, i64::from);
        let mut stmt = self.tx.prepare(&sql)?;
        let rows = stmt.query_map(params![filter.name, limit], cert_from_row)?;
        rows.map(|row| finish_cert(row?)).collect()
    }

    fn revoke(&self, serial: &Serial, revocation: Revocation) -> Result<RevokeOutcome, StoreError> {
        let Some(existing) = self.certificate(serial)? else {
            return Ok(RevokeOutcome::NotFound);
        };
        if let Some(previous) = existing.revocation {
            return Ok(RevokeOutcome::AlreadyRevoked(previous));
        }
        self.tx.execute(
            "UPDATE certificates SET revoked_at = ?2, reason = ?3
             WHERE serial = ?1 AND revoked_at IS NULL",
            params![
                serial.to_hex(),
                revocation.revoked_at,
                revocation.reason.code()
            ],
        )?;
        self.tx.execute(
            "INSERT INTO meta (key, value) VALUES ('status_epoch', 1)
             ON CONFLICT(key) DO UPDATE SET value = value + 1",
            [],
        )?;
        Ok(RevokeOutcome::Revoked)
    }

    fn for_each_revoked(
        &self,
        issuer: &str,
        visit: &mut dyn FnMut(RevokedEntry),
    ) -> Result<(), StoreError> {
        let mut stmt = self.tx.prepare(
            "SELECT serial, revoked_at, reason FROM certificates
             WHERE issuer = ?1 AND revoked_at IS NOT NULL",
        )?;
        let mut rows = stmt.query(params![issuer])?;
        while let Some(row) = rows.next()? {
            let serial = row
                .get_ref(0)?
                .as_str()
                .map_err(|e| StoreError::Corrupt(format!("serial: {e}")))?;
            let code: u8 = row.get(2)?;
            visit(RevokedEntry {
                serial: Serial::from_hex(serial)
                    .map_err(|_| StoreError::Corrupt(format!("serial {serial}")))?,
                revocation: Revocation {
                    revoked_at: row.get(1)?,
                    reason: Reason::from_code(code)
                        .ok_or_else(|| StoreError::Corrupt(format!("reason {code}")))?,
                },
            });
        }
        Ok(())
    }

    fn next_crl_number(&self, issuer: &str) -> Result<u64, StoreError> {
        let number: i64 = self.tx.query_row(
            "INSERT INTO crls (issuer, last_number) VALUES (?1, 1)
             ON CONFLICT(issuer) DO UPDATE SET last_number = last_number + 1
             RETURNING last_number",
            params![issuer],
            |row| row.get(0),
        )?;
        u64::try_from(number).map_err(|_| StoreError::Corrupt(format!("CRL number {number}")))
    }

    fn save_crl(&self, issuer: &str, crl: &StoredCrl) -> Result<(), StoreError> {
        let number = i64::try_from(crl.number)
            .map_err(|_| StoreError::Corrupt(format!("CRL number {}", crl.number)))?;
        self.tx.execute(
            "UPDATE crls SET this_update = ?2, next_update = ?3
             WHERE issuer = ?1 AND last_number = ?4",
            params![issuer, crl.this_update, crl.next_update, number],
        )?;
        Ok(())
    }

    fn status_epoch(&self) -> Result<i64, StoreError> {
        let epoch = self
            .tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'status_epoch'",
                [],
                |row| row.get(0),
            )
            .optional()?;
        Ok(epoch.unwrap_or(0))
    }

    fn append_audit(&self, entry: &NewAuditEntry) -> Result<AuditEntry, StoreError> {
        let last: Option<(i64, String)> = self
            .tx
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let (seq, prev_hash) = match last {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let hash = chain_hash(&prev_hash, seq, entry);
        self.tx.execute(
            "INSERT INTO audit (seq, time, actor, action, details, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                seq,
                entry.time,
                entry.actor,
                entry.action,
                entry.details,
                prev_hash,
                hash
            ],
        )?;
        Ok(AuditEntry {
            seq,
            entry: entry.clone(),
            prev_hash,
            hash,
        })
    }

    fn for_each_audit(&self, visit: &mut dyn FnMut(AuditEntry)) -> Result<(), StoreError> {
        let mut stmt = self.tx.prepare(
            "SELECT seq, time, actor, action, details, prev_hash, hash FROM audit ORDER BY seq",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            visit(AuditEntry {
                seq: row.get(0)?,
                entry: NewAuditEntry {
                    time: row.get(1)?,
                    actor: row.get(2)?,
                    action: row.get(3)?,
                    details: row.get(4)?,
                },
                prev_hash: row.get(5)?,
                hash: row.get(6)?,
            });
        }
        Ok(())
    }

    fn insert_admin_token(&self, r: &AdminTokenRecord) -> Result<(), StoreError> {
        self.tx.execute(
            &format!(
                "INSERT INTO admin_tokens ({ADMIN_TOKEN_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
            params![
                r.id,
                r.hash,
                r.role,
                r.label,
                r.created_at,
                r.expires_at,
                r.revoked_at,
                r.last_used_at
            ],
        )?;
        Ok(())
    }

    fn admin_token_by_hash(&self, hash: &str) -> Result<Option<AdminTokenRecord>, StoreError> {
        Ok(self
            .tx
            .query_row(
                &format!("SELECT {ADMIN_TOKEN_COLUMNS} FROM admin_tokens WHERE hash = ?1"),
                params![hash],
                admin_token_from_row,
            )
            .optional()?)
    }

    fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError> {
        let mut stmt = self.tx.prepare(&format!(
            "SELECT {ADMIN_TOKEN_COLUMNS} FROM admin_tokens ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([], admin_token_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn revoke_admin_token(&self, id: &str, revoked_at: i64) -> Result<bool, StoreError> {
        Ok(self.tx.execute(
            "UPDATE admin_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, revoked_at],
        )? == 1)
    }

    fn touch_admin_token(&self, id: &str, at: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE admin_tokens SET last_used_at = ?2 WHERE id = ?1",
            params![id, at],
        )?;
        Ok(())
    }

    fn allocate_name_number(&self, base: &str) -> Result<u64, StoreError> {
        let number: i64 = self.tx.query_row(
            "INSERT INTO name_counters (base, last_number) VALUES (?1, 1)
             ON CONFLICT(base) DO UPDATE SET last_number = last_number + 1
             RETURNING last_number",
            params![base],
            |row| row.get(0),
        )?;
        u64::try_from(number).map_err(|_| StoreError::Corrupt(format!("name number {number}")))
    }

    fn insert_enrollment_token(&self, r: &EnrollmentTokenRecord) -> Result<(), StoreError> {
        let result = self.tx.execute(
            &format!(
                "INSERT INTO enrollment_tokens ({TOKEN_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ),
            params![
                r.id,
                r.hash,
                r.name,
                r.base,
                r.profile,
                r.created_at,
                r.expires_at,
                r.created_by,
                r.used_at,
                r.serial,
                r.spki_sha256,
                r.revoked_at
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::Conflict(format!(
                    "an enrollment token with id {} or name {} exists",
                    r.id, r.name
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn enrollment_token_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<EnrollmentTokenRecord>, StoreError> {
        self.token_where("hash", hash)
    }

    fn enrollment_token(&self, id: &str) -> Result<Option<EnrollmentTokenRecord>, StoreError> {
        self.token_where("id", id)
    }

    fn list_enrollment_tokens(&self) -> Result<Vec<EnrollmentTokenRecord>, StoreError> {
        let mut stmt = self.tx.prepare(&format!(
            "SELECT {TOKEN_COLUMNS} FROM enrollment_tokens ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([], token_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn burn_enrollment_token(
        &self,
        id: &str,
        used_at: i64,
        serial: &str,
        spki_sha256: &str,
    ) -> Result<bool, StoreError> {
        let changed = self.tx.execute(
            "UPDATE enrollment_tokens SET used_at = ?2, serial = ?3, spki_sha256 = ?4
             WHERE id = ?1 AND used_at IS NULL AND revoked_at IS NULL",
            params![id, used_at, serial, spki_sha256],
        )?;
        Ok(changed == 1)
    }

    fn revoke_enrollment_token(&self, id: &str, revoked_at: i64) -> Result<bool, StoreError> {
        let changed = self.tx.execute(
            "UPDATE enrollment_tokens SET revoked_at = ?2
             WHERE id = ?1 AND used_at IS NULL AND revoked_at IS NULL",
            params![id, revoked_at],
        )?;
        Ok(changed == 1)
    }

    fn name_in_use(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM certificates WHERE name = ?1)
                 OR EXISTS (SELECT 1 FROM enrollment_tokens WHERE name = ?1)",
            params![name],
            |row| row.get(0),
        )?)
    }

    fn put_fleet_report(&self, r: &FleetReport) -> Result<(), StoreError> {
        let version = r.installed_version.map(version_to_db).transpose()?;
        self.tx.execute(
            &format!(
                "INSERT OR REPLACE INTO fleet_reports ({FLEET_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
            params![
                r.name,
                r.serial,
                r.received_at,
                version,
                r.last_check,
                r.last_result,
                r.last_error,
                unlisted_to_db(&r.unlisted)?,
            ],
        )?;
        Ok(())
    }

    fn fleet_reports(&self, name: Option<&str>) -> Result<Vec<FleetReport>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {FLEET_COLUMNS} FROM fleet_reports
             WHERE ?1 IS NULL OR name = ?1 ORDER BY name"
        ))?;
        let rows = stmt.query_map(params![name], |row| {
            Ok(RawFleetReport {
                name: row.get(0)?,
                serial: row.get(1)?,
                received_at: row.get(2)?,
                installed_version: row.get(3)?,
                last_check: row.get(4)?,
                last_result: row.get(5)?,
                last_error: row.get(6)?,
                unlisted: row.get(7)?,
            })
        })?;
        rows.map(|row| row?.finish()).collect()
    }
}

/// The columns of `fleet_reports`, in the order both stores read and write them.
pub(crate) const FLEET_COLUMNS: &str =
    "name, serial, received_at, installed_version, last_check, last_result, last_error, unlisted";

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
}

impl RawFleetReport {
    pub(crate) fn finish(self) -> Result<FleetReport, StoreError> {
        let installed_version = self
            .installed_version
            .map(|v| {
                u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("release number {v}")))
            })
            .transpose()?;
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
        })
    }
}

/// A release number as the database stores it (a signed 64-bit integer).
pub(crate) fn version_to_db(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| StoreError::Conflict(format!("release number {version}")))
}

/// The unlisted-file list as stored (a JSON array).
pub(crate) fn unlisted_to_db(unlisted: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(unlisted).map_err(|e| StoreError::Corrupt(e.to_string()))
}

const TOKEN_COLUMNS: &str = "id, hash, name, base, profile, created_at, expires_at, created_by,
    used_at, serial, spki_sha256, revoked_at";

fn admin_token_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AdminTokenRecord> {
    Ok(AdminTokenRecord {
        id: row.get(0)?,
        hash: row.get(1)?,
        role: row.get(2)?,
        label: row.get(3)?,
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
        revoked_at: row.get(6)?,
        last_used_at: row.get(7)?,
    })
}

fn token_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<EnrollmentTokenRecord> {
    Ok(EnrollmentTokenRecord {
        id: row.get(0)?,
        hash: row.get(1)?,
        name: row.get(2)?,
        base: row.get(3)?,
        profile: row.get(4)?,
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
        created_by: row.get(7)?,
        used_at: row.get(8)?,
        serial: row.get(9)?,
        spki_sha256: row.get(10)?,
        revoked_at: row.get(11)?,
    })
}

impl SqliteTx<'_> {
    fn token_where(
        &self,
        condition: &str,
        value: &str,
    ) -> Result<Option<EnrollmentTokenRecord>, StoreError> {
        Ok(self
            .tx
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM enrollment_tokens WHERE {condition} = ?1"),
                params![value],
                token_from_row,
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(serial: u8) -> CertRecord {
        CertRecord {
            serial: Serial::from_bytes(&[serial]),
            issuer: "intermediate".into(),
            name: format!("host-{serial}"),
            profile: "endpoint".into(),
            not_before: 0,
            not_after: 10,
            issued_at: i64::from(serial),
            der: vec![serial],
            revocation: None,
        }
    }

    #[test]
    fn duplicate_serial_rejected_and_transaction_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        write_tx(&store, |tx| tx.insert_certificate(&record(1))).unwrap();
        let err = write_tx(&store, |tx| {
            tx.insert_certificate(&record(2))?;
            tx.insert_certificate(&record(1))
        })
        .unwrap_err();
        assert!(matches!(err, StoreError::DuplicateSerial(_)));
        let all: Vec<CertRecord> =
            read_tx(&store, |tx| tx.list_certificates(&ListFilter::default())).unwrap();
        assert_eq!(all.len(), 1, "the failed transaction left nothing behind");
    }

    #[test]
    fn revocation_is_permanent_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        write_tx(&store, |tx| tx.insert_certificate(&record(7))).unwrap();
        let first = Revocation {
            revoked_at: 100,
            reason: Reason::KeyCompromise,
        };
        let serial = Serial::from_bytes(&[7]);
        let out = write_tx(&store, |tx| tx.revoke(&serial, first)).unwrap();
        assert_eq!(out, RevokeOutcome::Revoked);
        let second = Revocation {
            revoked_at: 200,
            reason: Reason::Superseded,
        };
        let out = write_tx(&store, |tx| tx.revoke(&serial, second)).unwrap();
        assert_eq!(out, RevokeOutcome::AlreadyRevoked(first));
        let epoch = read_tx(&store, |tx| tx.status_epoch()).unwrap();
        assert_eq!(epoch, 1);
        let missing = write_tx(&store, |tx| tx.revoke(&Serial::from_bytes(&[9]), first)).unwrap();
        assert_eq!(missing, RevokeOutcome::NotFound);
    }

    #[test]
    fn concurrent_writers_are_all_committed_and_synced() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..25u8 {
                        let mut r = record(1);
                        r.serial = Serial::from_bytes(&[t + 1, i, 0xaa]);
                        write_tx(store.as_ref(), |tx| tx.insert_certificate(&r)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let all = read_tx(store.as_ref(), |tx| {
            tx.list_certificates(&ListFilter::default())
        })
        .unwrap();
        assert_eq!(all.len(), 200);
        let state = store.sync.state.lock().unwrap();
        assert_eq!(state.committed, 200);
        assert_eq!(
            state.durable, 200,
            "every commit waited for a sync covering it"
        );
    }

    fn token(id: &str, name: &str) -> EnrollmentTokenRecord {
        EnrollmentTokenRecord {
            id: id.into(),
            hash: format!("hash-{id}"),
            name: name.into(),
            base: "web".into(),
            profile: "endpoint".into(),
            created_at: 1,
            expires_at: 100,
            created_by: "cli".into(),
            used_at: None,
            serial: None,
            spki_sha256: None,
            revoked_at: None,
        }
    }

    #[test]
    fn enrollment_token_burns_once_and_names_stay_unique() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let n: Vec<u64> = (0..3)
            .map(|_| write_tx(&store, |tx| tx.allocate_name_number("web")).unwrap())
            .collect();
        assert_eq!(n, [1, 2, 3]);
        write_tx(&store, |tx| {
            tx.insert_enrollment_token(&token("a", "web-0001"))
        })
        .unwrap();
        let dup = write_tx(&store, |tx| {
            tx.insert_enrollment_token(&token("b", "web-0001"))
        });
        assert!(matches!(dup, Err(StoreError::Conflict(_))));
        assert!(read_tx(&store, |tx| tx.name_in_use("web-0001")).unwrap());
        assert!(!read_tx(&store, |tx| tx.name_in_use("web-0002")).unwrap());
        let first = write_tx(&store, |tx| tx.burn_enrollment_token("a", 5, "01", "k")).unwrap();
        let second = write_tx(&store, |tx| tx.burn_enrollment_token("a", 6, "02", "j")).unwrap();
        assert!(first && !second, "a token burns exactly once");
        let stored = read_tx(&store, |tx| tx.enrollment_token_by_hash("hash-a"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (stored.used_at, stored.serial.as_deref()),
            (Some(5), Some("01"))
        );
        assert!(!write_tx(&store, |tx| tx.revoke_enrollment_token("a", 7)).unwrap());
    }

    #[test]
    fn crl_numbers_are_monotonic() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let a = write_tx(&store, |tx| tx.next_crl_number("i")).unwrap();
        let b = write_tx(&store, |tx| tx.next_crl_number("i")).unwrap();
        assert_eq!((a, b), (1, 2));
    }
}
