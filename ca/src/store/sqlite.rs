//! The SQLite store: the default backend, one file in the data folder.

use std::path::Path;
use std::sync::Mutex;

use herald_wire::RolloutState;
use rusqlite::{params, Connection, OptionalExtension};

use crate::model::audit::{chain_hash, AuditEntry, NewAuditEntry, GENESIS_HASH};
use crate::model::revocation::Reason;
use crate::model::serial::Serial;
use crate::store::columns::{
    audit_page_sql, endpoint_counts_sql, endpoints_page_sql, unlisted_to_db, version_to_db,
    SqlValue, ACCOUNT_COLUMNS, ADMIN_TOKEN_COLUMNS, AUDIT_COLUMNS, CERT_COLUMNS,
    ENDPOINT_GROUP_COLUMNS, FLEET_COLUMNS, INSTALLED_RELEASE_COUNTS_QUERY, RELEASE_COUNTS_QUERY,
    SESSION_COLUMNS, TOKEN_COLUMNS,
};
use crate::store::group_commit::GroupCommit;
use crate::store::rows::{self, ColumnRow};
use crate::store::schema::{newer_than_supported, MIGRATIONS, SCHEMA_VERSION};
use crate::store::{
    AccountRecord, AdminTokenRecord, AuditQuery, CertRecord, EndpointCounts, EndpointGroupRecord,
    EndpointQuery, EndpointRow, EnrollmentTokenRecord, FleetReport, ListFilter, ReleaseStateCount,
    ReportHour, Revocation, RevokeOutcome, RevokedEntry, SessionRecord, Store, StoreError, StoreTx,
    StoredCrl,
};

/// The SQLite store: one database file in WAL mode with group commit. A write transaction
/// commits without waiting for the disk, then waits until the write-ahead log holding its
/// commit has been synced (fsync): concurrent writers share one sync, so throughput does not
/// fall to one transaction per disk flush, and no write returns before it is durable. Pages
/// are copied from the log into the database file (checkpoints) by a thread of its own, so a
/// writer rarely does that work (and its fsync) while it holds the store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Read transactions run here, so that they never wait for a writer's turn (WAL lets a
    /// reader see the last commit while a write is in progress).
    reader: Mutex<Connection>,
    sync: GroupCommit,
    wal: WalSync,
    /// Wakes the checkpoint thread; it ends when this is dropped.
    checkpoints: std::sync::mpsc::SyncSender<()>,
}

/// Commits between two wake-ups of the checkpoint thread.
const CHECKPOINT_EVERY_COMMITS: u64 = 100;

/// Log size (pages) at which a writer checkpoints itself, as SQLite does by default at 1,000
/// pages: a backstop, since the checkpoint thread has then copied most pages already, and the
/// log restarts only after a checkpoint that a writer completes (under constant load the
/// thread's checkpoints always leave the newest commits behind).
const WRITER_CHECKPOINT_PAGES: u32 = 8_000;

/// Copies committed pages from the log into the database file whenever woken, on a connection
/// of its own (PASSIVE: writers and readers are never blocked).
fn spawn_checkpointer(path: &Path) -> Result<std::sync::mpsc::SyncSender<()>, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open(path).map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open_err)?;
    let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("herald-sqlite-checkpoint".into())
        .spawn(move || {
            while woken.recv().is_ok() {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "checkpointing the store's log failed");
                }
            }
        })
        .map_err(|e| StoreError::Backend(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(wake)
}

/// Makes the WAL file durable: one `fdatasync` covers every commit written to it.
struct WalSync {
    wal: std::path::PathBuf,
}

impl WalSync {
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

/// Columns of version 3 that stores written before the schema was versioned may lack:
/// `(table, column, type)`.
const UNVERSIONED_ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("admin_tokens", "expires_at", "INTEGER"),
    ("admin_tokens", "revoked_at", "INTEGER"),
    ("admin_tokens", "last_used_at", "INTEGER"),
];

/// Brings the database to [`SCHEMA_VERSION`], one step per transaction (see
/// [`crate::store::schema`]). A store written before versions were recorded (version 0 with
/// tables present) is first brought to version 3, which is what those releases held at most,
/// whichever of its tables and columns it already has.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Backend(newer_than_supported(
            "the SQLite store",
            current,
        )));
    }
    let mut current = current;
    if current == 0 {
        let unversioned: bool = conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table'",
            [],
            |row| row.get(0),
        )?;
        if unversioned {
            let tx = conn.transaction()?;
            tx.execute_batch(MIGRATIONS[0].sqlite)?;
            tx.execute_batch(MIGRATIONS[1].sqlite)?;
            for (table, column, kind) in UNVERSIONED_ADDED_COLUMNS {
                let present: bool = tx.query_row(
                    &format!(
                        "SELECT count(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"
                    ),
                    params![column],
                    |row| row.get(0),
                )?;
                if !present {
                    tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
                }
            }
            tx.pragma_update(None, "user_version", 3)?;
            tx.commit()?;
            current = 3;
        }
    }
    for (index, step) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(step.sqlite)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        // NORMAL: commits do not wait for the disk; `run` syncs the WAL itself (group commit).
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
            .map_err(open_err)?;
        migrate(&mut conn)?;
        let reader = Connection::open(path).map_err(open_err)?;
        reader
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Self {
            conn: Mutex::new(conn),
            reader: Mutex::new(reader),
            sync: GroupCommit::default(),
            wal: WalSync { wal: wal.into() },
            checkpoints: spawn_checkpointer(path)?,
        })
    }

    fn run(
        &self,
        behavior: rusqlite::TransactionBehavior,
        f: &mut dyn FnMut(&dyn StoreTx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let write = matches!(behavior, rusqlite::TransactionBehavior::Immediate);
        let connection = if write { &self.conn } else { &self.reader };
        let mut conn = connection.lock().map_err(|_| StoreError::Poisoned)?;
        let tx = conn.transaction_with_behavior(behavior)?;
        let result = f(&SqliteTx { tx: &tx });
        match result {
            Ok(()) => {
                tx.commit()?;
                if write {
                    let seq = self.sync.committed()?;
                    // Let the next writer in while this commit waits for the disk.
                    drop(conn);
                    if seq % CHECKPOINT_EVERY_COMMITS == 0 {
                        // Full: a checkpoint is pending already.
                        let _ = self.checkpoints.try_send(());
                    }
                    self.sync.wait_durable(seq, &|| self.wal.sync_wal())?;
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
        let result = self
            .tx
            .prepare_cached(
                "INSERT INTO certificates (serial, issuer, name, profile, not_before, not_after,
                    issued_at, der) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                r.serial.to_hex(),
                r.issuer,
                r.name,
                r.profile,
                r.not_before,
                r.not_after,
                r.issued_at,
                r.der
            ]);
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
            .map_err(|_| StoreError::OutOfRange(format!("CRL number {}", crl.number)))?;
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

    fn append_audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError> {
        // One process writes a SQLite store (under its write lock): one chain, 0.
        let last: Option<(i64, String)> = self
            .tx
            .prepare_cached(
                "SELECT seq, hash FROM audit WHERE chain = 0 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let (seq, prev_hash) = match last {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let hash = chain_hash(&prev_hash, seq, entry);
        self.tx
            .prepare_cached(
                "INSERT INTO audit (chain, seq, time, actor, action, details, prev_hash, hash)
                 VALUES (0, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                seq,
                entry.time,
                entry.actor,
                entry.action,
                entry.details,
                prev_hash,
                hash
            ])?;
        Ok(())
    }

    fn for_each_audit(&self, visit: &mut dyn FnMut(AuditEntry)) -> Result<(), StoreError> {
        // One chain (0) in a SQLite store: in sequence is in chain order.
        let mut stmt = self
            .tx
            .prepare(&format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq"))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            visit(rows::audit(row)?);
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
        self.first(
            &format!("SELECT {ADMIN_TOKEN_COLUMNS} FROM admin_tokens WHERE hash = ?1"),
            params![hash],
            rows::admin_token,
        )
    }

    fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError> {
        self.all(
            &format!("SELECT {ADMIN_TOKEN_COLUMNS} FROM admin_tokens ORDER BY created_at, id"),
            [],
            rows::admin_token,
        )
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
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
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
                r.revoked_at,
                r.group.as_str()
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
        self.all(
            &format!("SELECT {TOKEN_COLUMNS} FROM enrollment_tokens ORDER BY created_at, id"),
            [],
            rows::token,
        )
    }

    fn burn_enrollment_token(
        &self,
        id: &str,
        used_at: i64,
        serial: &str,
        spki_sha256: &str,
    ) -> Result<bool, StoreError> {
        let changed = self
            .tx
            .prepare_cached(
                "UPDATE enrollment_tokens SET used_at = ?2, serial = ?3, spki_sha256 = ?4
                 WHERE id = ?1 AND used_at IS NULL AND revoked_at IS NULL",
            )?
            .execute(params![id, used_at, serial, spki_sha256])?;
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
        let release = r.release.map(version_to_db).transpose()?;
        self.tx.execute(
            &format!(
                "INSERT OR REPLACE INTO fleet_reports ({FLEET_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
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
                r.group.as_str(),
                r.channel,
                release,
                r.state.map(RolloutState::as_str),
                r.reason,
            ],
        )?;
        Ok(())
    }

    fn fleet_reports(&self, name: Option<&str>) -> Result<Vec<FleetReport>, StoreError> {
        // Two statements: `?1 IS NULL OR name = ?1` would scan every report for one name.
        let condition = if name.is_some() {
            "WHERE name = ?1"
        } else {
            "WHERE ?1 IS NULL"
        };
        self.all(
            &format!("SELECT {FLEET_COLUMNS} FROM fleet_reports {condition} ORDER BY name"),
            params![name],
            rows::fleet_report,
        )
    }

    fn insert_account(&self, r: &AccountRecord) -> Result<(), StoreError> {
        let result = self.tx.execute(
            &format!(
                "INSERT INTO admin_accounts ({ACCOUNT_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ),
            account_values(r).as_slice(),
        );
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::Conflict(format!(
                    "an account named {} exists",
                    r.name
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn account(&self, name: &str) -> Result<Option<AccountRecord>, StoreError> {
        self.first(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM admin_accounts WHERE name = ?1"),
            params![name],
            rows::account,
        )
    }

    fn list_accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
        self.all(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM admin_accounts ORDER BY name"),
            [],
            rows::account,
        )
    }

    fn update_account(&self, r: &AccountRecord) -> Result<bool, StoreError> {
        Ok(self.tx.execute(
            "UPDATE admin_accounts SET role = ?2, password_hash = ?3, password_one_time = ?4,
                 mfa_required = ?5, totp_secret = ?6, totp_enrolled_at = ?7,
                 totp_last_step = ?8, created_at = ?9, disabled_at = ?10,
                 failed_logins = ?11, locked_until = ?12, last_login_at = ?13
             WHERE name = ?1",
            account_values(r).as_slice(),
        )? == 1)
    }

    fn count_login_failure(
        &self,
        name: &str,
        lock_after: i64,
        locked_until: i64,
    ) -> Result<Option<(i64, Option<i64>)>, StoreError> {
        Ok(self
            .tx
            .query_row(
                "UPDATE admin_accounts SET failed_logins = failed_logins + 1,
                     locked_until = CASE WHEN failed_logins + 1 >= ?2 THEN ?3
                                         ELSE locked_until END
                 WHERE name = ?1 RETURNING failed_logins, locked_until",
                params![name, lock_after, locked_until],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    }

    fn accept_totp_step(&self, name: &str, step: i64) -> Result<bool, StoreError> {
        Ok(self.tx.execute(
            "UPDATE admin_accounts SET totp_last_step = ?2
             WHERE name = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
            params![name, step],
        )? == 1)
    }

    fn replace_recovery_codes(
        &self,
        account: &str,
        hashes: &[String],
        created_at: i64,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "DELETE FROM recovery_codes WHERE account = ?1",
            params![account],
        )?;
        for hash in hashes {
            self.tx.execute(
                "INSERT INTO recovery_codes (account, hash, created_at) VALUES (?1, ?2, ?3)",
                params![account, hash, created_at],
            )?;
        }
        Ok(())
    }

    fn use_recovery_code(&self, account: &str, hash: &str, at: i64) -> Result<bool, StoreError> {
        Ok(self.tx.execute(
            "UPDATE recovery_codes SET used_at = ?3
             WHERE account = ?1 AND hash = ?2 AND used_at IS NULL",
            params![account, hash, at],
        )? == 1)
    }

    fn recovery_codes_left(&self, account: &str) -> Result<i64, StoreError> {
        Ok(self.tx.query_row(
            "SELECT count(*) FROM recovery_codes WHERE account = ?1 AND used_at IS NULL",
            params![account],
            |row| row.get(0),
        )?)
    }

    fn insert_session(&self, r: &SessionRecord) -> Result<(), StoreError> {
        self.tx.execute(
            &format!(
                "INSERT INTO console_sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ),
            params![
                r.id_hash,
                r.account,
                r.stage,
                r.created_at,
                r.last_seen_at,
                r.expires_at
            ],
        )?;
        Ok(())
    }

    fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.first(
            &format!("SELECT {SESSION_COLUMNS} FROM console_sessions WHERE id_hash = ?1"),
            params![id_hash],
            rows::session,
        )
    }

    fn touch_session(&self, id_hash: &str, at: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE console_sessions SET last_seen_at = ?2 WHERE id_hash = ?1",
            params![id_hash, at],
        )?;
        Ok(())
    }

    fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        Ok(self.tx.execute(
            "DELETE FROM console_sessions WHERE id_hash = ?1",
            params![id_hash],
        )? == 1)
    }

    fn delete_sessions_of(&self, account: &str) -> Result<u64, StoreError> {
        let n = self.tx.execute(
            "DELETE FROM console_sessions WHERE account = ?1",
            params![account],
        )?;
        Ok(n as u64)
    }

    fn delete_expired_sessions(&self, now: i64, idle_before: i64) -> Result<u64, StoreError> {
        let n = self.tx.execute(
            "DELETE FROM console_sessions WHERE expires_at <= ?1 OR last_seen_at < ?2",
            params![now, idle_before],
        )?;
        Ok(n as u64)
    }

    fn endpoints_page(&self, query: &EndpointQuery) -> Result<Vec<EndpointRow>, StoreError> {
        let (sql, values) = endpoints_page_sql(query, &|i| format!("?{i}"));
        self.all(
            &sql,
            rusqlite::params_from_iter(values.iter()),
            rows::endpoint,
        )
    }

    fn endpoint_counts(&self, now: i64) -> Result<EndpointCounts, StoreError> {
        self.first(
            &endpoint_counts_sql("?1"),
            params![now],
            rows::endpoint_counts,
        )?
        .ok_or(StoreError::Db(rusqlite::Error::QueryReturnedNoRows))
    }

    fn installed_release_counts(&self) -> Result<Vec<(Option<u64>, i64)>, StoreError> {
        self.all(
            INSTALLED_RELEASE_COUNTS_QUERY,
            [],
            rows::installed_release_count,
        )
    }

    fn certificates_expiring(
        &self,
        from: i64,
        until: i64,
        limit: u32,
    ) -> Result<(i64, Vec<CertRecord>), StoreError> {
        let count: i64 = self.tx.query_row(
            "SELECT count(*) FROM certificates
             WHERE revoked_at IS NULL AND not_after >= ?1 AND not_after < ?2",
            params![from, until],
            |row| row.get(0),
        )?;
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {CERT_COLUMNS} FROM certificates
             WHERE revoked_at IS NULL AND not_after >= ?1 AND not_after < ?2
             ORDER BY not_after LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![from, until, limit], cert_from_row)?;
        let certs = rows
            .map(|row| finish_cert(row?))
            .collect::<Result<_, _>>()?;
        Ok((count, certs))
    }

    fn certificates_page(
        &self,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<CertRecord>, StoreError> {
        let rows = match after {
            None => {
                let mut stmt = self.tx.prepare_cached(&format!(
                    "SELECT {CERT_COLUMNS} FROM certificates
                     ORDER BY issued_at DESC, serial LIMIT ?1"
                ))?;
                let rows = stmt.query_map(params![limit], cert_from_row)?;
                rows.collect::<Result<Vec<_>, _>>()?
            }
            Some((issued_at, serial)) => {
                let mut stmt = self.tx.prepare_cached(&format!(
                    "SELECT {CERT_COLUMNS} FROM certificates
                     WHERE issued_at <= ?1 AND (issued_at < ?1 OR serial > ?2)
                     ORDER BY issued_at DESC, serial LIMIT ?3"
                ))?;
                let rows = stmt.query_map(params![issued_at, serial, limit], cert_from_row)?;
                rows.collect::<Result<Vec<_>, _>>()?
            }
        };
        rows.into_iter().map(finish_cert).collect()
    }

    fn report_hours(&self, from_hour: i64) -> Result<Vec<ReportHour>, StoreError> {
        self.all(
            "SELECT hour, reports, failures FROM fleet_report_hours
             WHERE hour >= ?1 ORDER BY hour",
            params![from_hour],
            rows::report_hour,
        )
    }

    fn audit_page(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let (sql, values) = audit_page_sql(query, &|i| format!("?{i}"));
        self.all(&sql, rusqlite::params_from_iter(values.iter()), rows::audit)
    }

    fn enrollment_tokens_page(
        &self,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<EnrollmentTokenRecord>, StoreError> {
        match after {
            None => self.all(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM enrollment_tokens
                     ORDER BY created_at DESC, id DESC LIMIT ?1"
                ),
                params![limit],
                rows::token,
            ),
            Some((created_at, id)) => self.all(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM enrollment_tokens
                     WHERE created_at <= ?1 AND (created_at < ?1 OR id < ?2)
                     ORDER BY created_at DESC, id DESC LIMIT ?3"
                ),
                params![created_at, id, limit],
                rows::token,
            ),
        }
    }

    fn release_counts(&self) -> Result<Vec<ReleaseStateCount>, StoreError> {
        self.all(RELEASE_COUNTS_QUERY, [], rows::release_count)
    }

    fn endpoint_group(&self, name: &str) -> Result<Option<EndpointGroupRecord>, StoreError> {
        self.first(
            &format!("SELECT {ENDPOINT_GROUP_COLUMNS} FROM endpoint_groups WHERE name = ?1"),
            params![name],
            rows::endpoint_group,
        )
    }

    fn endpoint_groups(&self) -> Result<Vec<EndpointGroupRecord>, StoreError> {
        self.all(
            &format!("SELECT {ENDPOINT_GROUP_COLUMNS} FROM endpoint_groups ORDER BY name"),
            [],
            rows::endpoint_group,
        )
    }

    fn set_endpoint_group(&self, r: &EndpointGroupRecord) -> Result<(), StoreError> {
        self.tx.execute(
            &format!(
                "INSERT INTO endpoint_groups ({ENDPOINT_GROUP_COLUMNS}) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET group_name = excluded.group_name,
                     changed_at = excluded.changed_at"
            ),
            params![r.name, r.group.as_str(), r.changed_at],
        )?;
        Ok(())
    }
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            SqlValue::Text(text) => text.to_sql(),
            SqlValue::Int(value) => value.to_sql(),
        }
    }
}

impl ColumnRow for rusqlite::Row<'_> {
    fn text(&self, index: usize) -> Result<String, StoreError> {
        Ok(self.get(index)?)
    }

    fn maybe_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(index)?)
    }

    fn int(&self, index: usize) -> Result<i64, StoreError> {
        Ok(self.get(index)?)
    }

    fn maybe_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(index)?)
    }
}

/// The values of an [`ACCOUNT_COLUMNS`] row, in its order.
fn account_values(r: &AccountRecord) -> [&dyn rusqlite::ToSql; 13] {
    [
        &r.name,
        &r.role,
        &r.password_hash,
        &r.password_one_time,
        &r.mfa_required,
        &r.totp_secret,
        &r.totp_enrolled_at,
        &r.totp_last_step,
        &r.created_at,
        &r.disabled_at,
        &r.failed_logins,
        &r.locked_until,
        &r.last_login_at,
    ]
}

/// Reads one row into a record.
type ReadRow<T> = fn(&dyn ColumnRow) -> Result<T, StoreError>;

impl SqliteTx<'_> {
    /// The rows `sql` selects with `params`, each read by `read`.
    fn all<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        read: ReadRow<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self.tx.prepare_cached(sql)?;
        let rows = stmt.query_and_then(params, |row| read(row))?;
        rows.collect()
    }

    /// The first row `sql` selects with `params`, if any, read by `read`.
    fn first<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        read: ReadRow<T>,
    ) -> Result<Option<T>, StoreError> {
        let mut stmt = self.tx.prepare_cached(sql)?;
        let mut rows = stmt.query_and_then(params, |row| read(row))?;
        rows.next().transpose()
    }

    fn token_where(
        &self,
        condition: &str,
        value: &str,
    ) -> Result<Option<EnrollmentTokenRecord>, StoreError> {
        self.first(
            &format!("SELECT {TOKEN_COLUMNS} FROM enrollment_tokens WHERE {condition} = ?1"),
            params![value],
            rows::token,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::{read_tx, write_tx};

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
    fn log_checkpointed_into_the_database_by_its_own_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = SqliteStore::open(&path).unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        // Fewer log pages than a writer's own checkpoint needs: only the thread copies them.
        for i in 0..CHECKPOINT_EVERY_COMMITS {
            let mut r = record(1);
            r.serial = Serial::from_bytes(&i.to_be_bytes());
            write_tx(&store, |tx| tx.insert_certificate(&r)).unwrap();
        }
        let wal = std::fs::metadata(dir.path().join("db-wal")).unwrap().len();
        assert!(
            wal < 1_000 * (4096 + 24),
            "the log stays below SQLite's own checkpoint threshold"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while size() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file never received the logged pages"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
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
}
