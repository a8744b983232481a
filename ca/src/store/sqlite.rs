//! The SQLite store: the default backend, one file in the data folder.

use std::path::Path;
use std::sync::Mutex;

use herald_wire::{Group, RolloutState};
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension};

use crate::model::audit::{chain_hash, AuditEntry, NewAuditEntry, GENESIS_HASH};
use crate::model::revocation::Reason;
use crate::model::serial::Serial;
use crate::store::columns::{
    unlisted_to_db, version_to_db, RawFleetReport, RawReleaseCount, ADMIN_TOKEN_COLUMNS,
    CERT_COLUMNS, ENDPOINT_GROUP_COLUMNS, FLEET_COLUMNS, RELEASE_COUNTS_QUERY, TOKEN_COLUMNS,
};
use crate::store::schema::{newer_than_supported, MIGRATIONS, SCHEMA_VERSION};
use crate::store::{
    AdminTokenRecord, CertRecord, EndpointGroupRecord, EnrollmentTokenRecord, FleetReport,
    ListFilter, ReleaseStateCount, Revocation, RevokeOutcome, RevokedEntry, Store, StoreError,
    StoreTx, StoredCrl,
};

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
        migrate(&mut conn)?;
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
        let row = self
            .tx
            .query_row(
                &format!("SELECT {CERT_COLUMNS} FROM certificates WHERE serial = ?1"),
                params![serial.to_hex()],
                cert_from_row,
            )
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
                group: row.get(8)?,
                channel: row.get(9)?,
                release: row.get(10)?,
                state: row.get(11)?,
                reason: row.get(12)?,
            })
        })?;
        rows.map(|row| row?.finish()).collect()
    }

    fn release_counts(&self) -> Result<Vec<ReleaseStateCount>, StoreError> {
        let mut stmt = self.tx.prepare_cached(RELEASE_COUNTS_QUERY)?;
        let rows = stmt.query_map([], |row| {
            Ok(RawReleaseCount {
                channel: row.get(0)?,
                release: row.get(1)?,
                group: row.get(2)?,
                state: row.get(3)?,
                endpoints: row.get(4)?,
            })
        })?;
        rows.map(|row| row?.finish()).collect()
    }

    fn endpoint_group(&self, name: &str) -> Result<Option<EndpointGroupRecord>, StoreError> {
        self.tx
            .query_row(
                &format!("SELECT {ENDPOINT_GROUP_COLUMNS} FROM endpoint_groups WHERE name = ?1"),
                params![name],
                endpoint_group_from_row,
            )
            .optional()
            .map_err(StoreError::from)
    }

    fn endpoint_groups(&self) -> Result<Vec<EndpointGroupRecord>, StoreError> {
        let mut stmt = self.tx.prepare(&format!(
            "SELECT {ENDPOINT_GROUP_COLUMNS} FROM endpoint_groups ORDER BY name"
        ))?;
        let rows = stmt.query_map([], endpoint_group_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
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

/// An `endpoint_groups` row.
fn endpoint_group_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<EndpointGroupRecord> {
    Ok(EndpointGroupRecord {
        name: row.get(0)?,
        group: group_at(row, 1)?,
        changed_at: row.get(2)?,
    })
}

/// A group column, checked: a name that is not a valid group fails like any column of the
/// wrong type.
fn group_at(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Group> {
    let name: String = row.get(index)?;
    Group::new(&name)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e)))
}

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
        group: group_at(row, 12)?,
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
