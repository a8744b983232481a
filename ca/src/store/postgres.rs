//! The PostgreSQL store: the same [`Store`] / [`StoreTx`] interface as the SQLite store, for
//! several `herald-ca` servers sharing one database (see docs/ha.md).
//!
//! The store trait is synchronous and is called both from blocking threads and from async
//! handlers of the server's runtime. A blocking PostgreSQL client cannot run inside a Tokio
//! runtime, so this store owns a small private runtime of its own: `tokio-postgres`
//! connections pooled by `deadpool-postgres` live there, and every statement is handed to it
//! and waited for on the calling thread. That works from any context (CLI, blocking pool,
//! async handler) and keeps the trait unchanged.
//!
//! Correctness across servers rests on the database, never on process memory:
//! - write transactions run at READ COMMITTED; every check-then-write is one conditional
//!   statement (`INSERT ... ON CONFLICT`, `UPDATE ... WHERE used_at IS NULL`), so concurrent
//!   servers serialise on the row and exactly one wins;
//! - the hash-chained audit log is appended under a transaction-scoped advisory lock, so its
//!   sequence numbers and hashes form one chain whatever server writes;
//! - read transactions are REPEATABLE READ, READ ONLY (one consistent snapshot);
//! - writes commit asynchronously and then wait for a flush shared with concurrent writers
//!   (group commit, see [`FLUSH`]), so locks are not held across a disk flush;
//! - a revocation bumps the status epoch and sends `NOTIFY herald_status` in its transaction;
//!   each server LISTENs and wakes its refresh loop at once (see
//!   [`Store::wait_status_change`]).

use std::cell::Cell;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures_util::StreamExt;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, NoTls, Row};

use crate::model::audit::{chain_hash, AuditEntry, NewAuditEntry, GENESIS_HASH};
use crate::model::revocation::Reason;
use crate::model::serial::Serial;
use crate::store::columns::{
    group_from_db, unlisted_to_db, version_to_db, RawFleetReport, RawReleaseCount,
    ADMIN_TOKEN_COLUMNS, CERT_COLUMNS, ENDPOINT_GROUP_COLUMNS, FLEET_COLUMNS, RELEASE_COUNTS_QUERY,
    TOKEN_COLUMNS,
};
use crate::store::schema::{newer_than_supported, MIGRATIONS, SCHEMA_VERSION};
use crate::store::{
    AdminTokenRecord, CertRecord, EndpointGroupRecord, EnrollmentTokenRecord, FleetReport,
    ListFilter, ReleaseStateCount, Revocation, RevokeOutcome, RevokedEntry, Store, StoreError,
    StoreTx, StoredCrl,
};

/// A write transaction. It commits without waiting for the disk (`synchronous_commit` off for
/// this transaction only), so that the locks it holds (the audit chain's, a token's row) are
/// released at once; [`FLUSH`] then waits until it is durable.
const WRITE_BEGIN: &str =
    "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL synchronous_commit TO off";

/// Group commit: a transaction with a transaction id commits with `synchronous_commit` on, so
/// PostgreSQL returns only once the WAL up to its commit record, which follows the writer's,
/// is flushed (and, with synchronous replication, on the standby). Concurrent flushes share one
/// fsync. No write returns before it is durable.
const FLUSH: &str = "BEGIN; SELECT txid_current(); COMMIT";

/// A read transaction: one consistent snapshot.
const READ_BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// The LISTEN/NOTIFY channel of status changes.
const STATUS_CHANNEL: &str = "herald_status";

/// Advisory lock key (with the schema's hash) serialising audit appends.
const AUDIT_LOCK: i32 = 0x4845_5241; // "HERA"

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://user@host:port/database` (any libpq-style URL `tokio-postgres` accepts).
    pub url: String,
    /// The schema holding Herald's tables; created if missing.
    pub schema: String,
    /// Most pooled connections.
    pub pool_size: usize,
    /// How long to wait for a connection (to connect, or for a free pooled one).
    pub connect_timeout: Duration,
}

/// The PostgreSQL store.
pub struct PgStore {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pool: Pool,
    status: Arc<StatusSignal>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgStore")
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks; a store may be dropped inside the server's runtime.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Status-change notifications received, and how many a waiter has consumed.
#[derive(Default)]
struct StatusSignal {
    state: Mutex<(u64, u64)>,
    changed: Condvar,
}

impl StatusSignal {
    fn bump(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.0 += 1;
            self.changed.notify_all();
        }
    }

    fn wait(&self, timeout: Duration) {
        let Ok(state) = self.state.lock() else {
            return;
        };
        let Ok((mut state, _)) = self
            .changed
            .wait_timeout_while(state, timeout, |s| s.0 == s.1)
        else {
            return;
        };
        state.1 = state.0;
    }
}

/// Whether `schema` is a plain SQL identifier (it is interpolated into statements).
fn valid_schema(schema: &str) -> bool {
    let mut chars = schema.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && schema.len() <= 63
}

/// A database error: connection-level failures are [`StoreError::Unavailable`] (the API
/// answers 503), statement errors [`StoreError::Backend`].
fn pg_error(e: &tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            // 08: connection exception; 57P: operator intervention (shutdown); 53300: too
            // many connections.
            if code.starts_with("08") || code.starts_with("57P") || code == "53300" {
                StoreError::Unavailable(format!("{code}: {}", db.message()))
            } else {
                StoreError::Backend(format!("{code}: {}", db.message()))
            }
        }
        None => StoreError::Unavailable(e.to_string()),
    }
}

fn pool_error(e: &deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(e),
        other => StoreError::Unavailable(other.to_string()),
    }
}

impl PgStore {
    /// Connects, creates the schema if needed, applies pending migrations (one server at a
    /// time, under an advisory lock) and refuses a database whose schema is newer than this
    /// build. Starts listening for status changes.
    pub fn open(options: &PgOptions) -> Result<Self, StoreError> {
        if !valid_schema(&options.schema) {
            return Err(StoreError::Backend(format!(
                "invalid PostgreSQL schema name {:?} (letters, digits and _ only)",
                options.schema
            )));
        }
        let mut config = tokio_postgres::Config::from_str(&options.url)
            .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("herald-ca");
        }
        config.options(format!("-c search_path={}", options.schema));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("herald-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot start the database runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot build the connection pool: {e}")))?;
        let store = Self {
            runtime: Some(runtime),
            handle,
            pool,
            status: Arc::new(StatusSignal::default()),
        };
        store.migrate(&options.schema)?;
        let status = store.status.clone();
        store.handle.spawn(listen_loop(config, status));
        Ok(store)
    }

    /// How many status changes this store was told of (NOTIFY messages, plus one for each
    /// (re)connection of its listener).
    pub fn status_notifications(&self) -> u64 {
        self.status.state.lock().map(|s| s.0).unwrap_or(0)
    }

    /// Runs `fut` on the store's runtime and waits for it on the calling thread.
    fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| StoreError::Unavailable("the database runtime stopped".into()))
    }

    fn connection(&self) -> Result<Arc<Object>, StoreError> {
        let pool = self.pool.clone();
        let object = self
            .block(async move { pool.get().await })?
            .map_err(|e| pool_error(&e))?;
        Ok(Arc::new(object))
    }

    fn migrate(&self, schema: &str) -> Result<(), StoreError> {
        let client = self.connection()?;
        let schema = schema.to_owned();
        self.block(async move { migrate(&client, &schema).await })?
    }

    fn run(
        &self,
        write: bool,
        f: &mut dyn FnMut(&dyn StoreTx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let begin = if write { WRITE_BEGIN } else { READ_BEGIN };
        let client = self.connection()?;
        // Until `open` is cleared, dropping `tx` (an error below, or a panic in `f`) rolls
        // back, so a connection never returns to the pool inside a transaction.
        let tx = PgTx {
            store: self,
            client,
            open: Cell::new(true),
        };
        tx.batch(begin)?;
        f(&tx)?;
        tx.batch("COMMIT")?;
        if write {
            tx.batch(FLUSH)?;
        }
        tx.open.set(false);
        Ok(())
    }
}

async fn migrate(client: &Object, schema: &str) -> Result<(), StoreError> {
    let err = |e: tokio_postgres::Error| pg_error(&e);
    client
        .execute("SELECT pg_advisory_lock(hashtext($1))", &[&schema])
        .await
        .map_err(err)?;
    let result = async {
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 CREATE TABLE IF NOT EXISTS herald_schema (version INTEGER NOT NULL);"
            ))
            .await
            .map_err(err)?;
        // No row yet: a new schema, at version 0.
        let current: i32 = client
            .query_opt("SELECT max(version) FROM herald_schema", &[])
            .await
            .map_err(err)?
            .and_then(|row| row.get::<_, Option<i32>>(0))
            .unwrap_or(0);
        let current = u32::try_from(current).map_err(|_| {
            StoreError::Corrupt(format!("schema {schema} records version {current}"))
        })?;
        if current > SCHEMA_VERSION {
            return Err(StoreError::Backend(newer_than_supported(
                &format!("the database schema {schema}"),
                current,
            )));
        }
        for (index, step) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let sql = step.postgres;
            let version = index + 1;
            client
                .batch_execute(&format!(
                    "BEGIN; {sql}; DELETE FROM herald_schema;
                     INSERT INTO herald_schema (version) VALUES ({version}); COMMIT;"
                ))
                .await
                .map_err(err)?;
            tracing::info!(schema, version, "PostgreSQL store migrated");
        }
        Ok(())
    }
    .await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock(hashtext($1))", &[&schema])
        .await;
    if result.is_ok() {
        unlock.map_err(err)?;
    }
    result
}

/// Keeps one connection LISTENing for status changes, reconnecting after a loss. Every
/// (re)connection counts as a change, since notifications may have been missed meanwhile.
async fn listen_loop(config: tokio_postgres::Config, status: Arc<StatusSignal>) {
    loop {
        if let Ok((client, mut connection)) = config.connect(NoTls).await {
            let signal = status.clone();
            let driver = tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(AsyncMessage::Notification(_)) => signal.bump(),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            });
            if client
                .batch_execute(&format!("LISTEN {STATUS_CHANNEL}"))
                .await
                .is_ok()
            {
                status.bump();
                let _ = driver.await;
            } else {
                driver.abort();
            }
            tracing::warn!("lost the PostgreSQL status-change listener; reconnecting");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl Store for PgStore {
    fn write(
        &self,
        f: &mut dyn FnMut(&dyn StoreTx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.run(true, f)
    }

    fn read(
        &self,
        f: &mut dyn FnMut(&dyn StoreTx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.run(false, f)
    }

    fn wait_status_change(&self, timeout: Duration) {
        self.status.wait(timeout);
    }
}

/// An owned statement parameter (statements run on the store's runtime).
type Param = Box<dyn ToSql + Sync + Send>;

/// Builds a page's parameters from the last row of the previous page (none for the first).
type PageParams<'a> = dyn Fn(Option<&Row>) -> Result<Vec<Param>, StoreError> + 'a;

fn p<T: ToSql + Sync + Send + 'static>(value: T) -> Param {
    Box::new(value)
}

struct PgTx<'a> {
    store: &'a PgStore,
    client: Arc<Object>,
    open: Cell<bool>,
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        if self.open.get() {
            // Fails only if the connection is gone, which the pool then discards.
            let _ = self.batch("ROLLBACK");
        }
    }
}

impl PgTx<'_> {
    fn batch(&self, sql: &'static str) -> Result<(), StoreError> {
        let client = self.client.clone();
        self.store
            .block(async move { client.batch_execute(sql).await })?
            .map_err(|e| pg_error(&e))
    }

    fn query(&self, sql: &str, params: Vec<Param>) -> Result<Vec<Row>, StoreError> {
        let client = self.client.clone();
        let sql = sql.to_owned();
        self.store
            .block(async move {
                let statement = client.prepare_cached(&sql).await?;
                let refs: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                client.query(&statement, &refs).await
            })?
            .map_err(|e| pg_error(&e))
    }

    /// Visits the rows of a keyset-paginated query (`... WHERE key > $n ORDER BY key LIMIT
    /// 10000`) page by page, so a million-entry CRL or audit log is never held in memory at
    /// once. `params` builds a page's parameters from the last row of the previous page.
    fn paged(
        &self,
        sql: &str,
        params: &PageParams<'_>,
        visit: &mut dyn FnMut(&Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        const PAGE: usize = 10_000;
        let mut last: Option<Row> = None;
        loop {
            let rows = self.query(sql, params(last.as_ref())?)?;
            let full = rows.len() == PAGE;
            for row in &rows {
                visit(row)?;
            }
            if !full {
                return Ok(());
            }
            last = rows.into_iter().last();
        }
    }

    fn query_opt(&self, sql: &str, params: Vec<Param>) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    fn affected(&self, sql: &str, params: Vec<Param>) -> Result<bool, StoreError> {
        Ok(!self.query(sql, params)?.is_empty())
    }

    fn token_where(
        &self,
        column: &str,
        value: &str,
    ) -> Result<Option<EnrollmentTokenRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {TOKEN_COLUMNS} FROM enrollment_tokens WHERE {column} = $1"),
            vec![p(value.to_owned())],
        )?
        .map(|row| token_from_row(&row))
        .transpose()
    }
}

fn get<'r, T: tokio_postgres::types::FromSql<'r>>(
    row: &'r Row,
    index: usize,
) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|e| StoreError::Corrupt(format!("column {index}: {e}")))
}

fn serial_from(hex: &str) -> Result<Serial, StoreError> {
    Serial::from_hex(hex).map_err(|_| StoreError::Corrupt(format!("serial {hex}")))
}

fn revocation_from(
    revoked_at: Option<i64>,
    reason: Option<i32>,
) -> Result<Option<Revocation>, StoreError> {
    match (revoked_at, reason) {
        (None, _) => Ok(None),
        (Some(revoked_at), Some(code)) => {
            let reason = u8::try_from(code)
                .ok()
                .and_then(Reason::from_code)
                .ok_or_else(|| StoreError::Corrupt(format!("reason {code}")))?;
            Ok(Some(Revocation { revoked_at, reason }))
        }
        (Some(_), None) => Err(StoreError::Corrupt("revoked without a reason".into())),
    }
}

fn cert_from_row(row: &Row) -> Result<CertRecord, StoreError> {
    Ok(CertRecord {
        serial: serial_from(get(row, 0)?)?,
        issuer: get(row, 1)?,
        name: get(row, 2)?,
        profile: get(row, 3)?,
        not_before: get(row, 4)?,
        not_after: get(row, 5)?,
        issued_at: get(row, 6)?,
        der: get(row, 7)?,
        revocation: revocation_from(get(row, 8)?, get(row, 9)?)?,
    })
}

fn admin_token_from_row(row: &Row) -> Result<AdminTokenRecord, StoreError> {
    Ok(AdminTokenRecord {
        id: get(row, 0)?,
        hash: get(row, 1)?,
        role: get(row, 2)?,
        label: get(row, 3)?,
        created_at: get(row, 4)?,
        expires_at: get(row, 5)?,
        revoked_at: get(row, 6)?,
        last_used_at: get(row, 7)?,
    })
}

fn token_from_row(row: &Row) -> Result<EnrollmentTokenRecord, StoreError> {
    Ok(EnrollmentTokenRecord {
        id: get(row, 0)?,
        hash: get(row, 1)?,
        name: get(row, 2)?,
        base: get(row, 3)?,
        profile: get(row, 4)?,
        created_at: get(row, 5)?,
        expires_at: get(row, 6)?,
        created_by: get(row, 7)?,
        used_at: get(row, 8)?,
        serial: get(row, 9)?,
        spki_sha256: get(row, 10)?,
        revoked_at: get(row, 11)?,
        group: group_from_db(get(row, 12)?)?,
    })
}

fn endpoint_group_from_row(row: &Row) -> Result<EndpointGroupRecord, StoreError> {
    Ok(EndpointGroupRecord {
        name: get(row, 0)?,
        group: group_from_db(get(row, 1)?)?,
        changed_at: get(row, 2)?,
    })
}

fn counter(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value}")))
}

impl StoreTx for PgTx<'_> {
    fn insert_certificate(&self, r: &CertRecord) -> Result<(), StoreError> {
        let (revoked_at, reason) = match r.revocation {
            Some(rev) => (Some(rev.revoked_at), Some(i32::from(rev.reason.code()))),
            None => (None, None),
        };
        let inserted = self.affected(
            &format!(
                "INSERT INTO certificates ({CERT_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (serial) DO NOTHING RETURNING 1"
            ),
            vec![
                p(r.serial.to_hex()),
                p(r.issuer.clone()),
                p(r.name.clone()),
                p(r.profile.clone()),
                p(r.not_before),
                p(r.not_after),
                p(r.issued_at),
                p(r.der.clone()),
                p(revoked_at),
                p(reason),
            ],
        )?;
        if inserted {
            Ok(())
        } else {
            Err(StoreError::DuplicateSerial(r.serial.to_hex()))
        }
    }

    fn certificate(&self, serial: &Serial) -> Result<Option<CertRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {CERT_COLUMNS} FROM certificates WHERE serial = $1"),
            vec![p(serial.to_hex())],
        )?
        .map(|row| cert_from_row(&row))
        .transpose()
    }

    fn list_certificates(&self, filter: &ListFilter) -> Result<Vec<CertRecord>, StoreError> {
        let revoked = match filter.revoked {
            Some(true) => " AND revoked_at IS NOT NULL",
            Some(false) => " AND revoked_at IS NULL",
            None => "",
        };
        let sql = format!(
            "SELECT {CERT_COLUMNS} FROM certificates
             WHERE ($1::TEXT IS NULL OR name = $1){revoked}
             ORDER BY issued_at DESC, serial LIMIT $2"
        );
        let limit: Option<i64> = filter.limit.map(i64::from);
        self.query(&sql, vec![p(filter.name.clone()), p(limit)])?
            .iter()
            .map(cert_from_row)
            .collect()
    }

    fn revoke(&self, serial: &Serial, revocation: Revocation) -> Result<RevokeOutcome, StoreError> {
        // One conditional update: of concurrent revocations (on any server) exactly one
        // changes the row; the others wait for its commit and then see it revoked.
        let changed = self.affected(
            "UPDATE certificates SET revoked_at = $2, reason = $3
             WHERE serial = $1 AND revoked_at IS NULL RETURNING 1",
            vec![
                p(serial.to_hex()),
                p(revocation.revoked_at),
                p(i32::from(revocation.reason.code())),
            ],
        )?;
        if !changed {
            return Ok(match self.certificate(serial)? {
                None => RevokeOutcome::NotFound,
                Some(CertRecord {
                    revocation: Some(previous),
                    ..
                }) => RevokeOutcome::AlreadyRevoked(previous),
                Some(_) => {
                    return Err(StoreError::Corrupt(format!(
                        "certificate {} neither revoked nor revocable",
                        serial.to_hex()
                    )))
                }
            });
        }
        self.query(
            "INSERT INTO meta (key, value) VALUES ('status_epoch', 1)
             ON CONFLICT (key) DO UPDATE SET value = meta.value + 1 RETURNING value",
            Vec::new(),
        )?;
        // Delivered to every listening server when (and only if) the transaction commits.
        self.query(
            "SELECT pg_notify($1, $2)",
            vec![p(STATUS_CHANNEL.to_owned()), p(serial.to_hex())],
        )?;
        Ok(RevokeOutcome::Revoked)
    }

    fn for_each_revoked(
        &self,
        issuer: &str,
        visit: &mut dyn FnMut(RevokedEntry),
    ) -> Result<(), StoreError> {
        self.paged(
            "SELECT serial, revoked_at, reason FROM certificates
             WHERE issuer = $1 AND revoked_at IS NOT NULL AND serial > $2
             ORDER BY serial LIMIT 10000",
            &|last| {
                let after: String = last.map(|row| get(row, 0)).transpose()?.unwrap_or_default();
                Ok(vec![p(issuer.to_owned()), p(after)])
            },
            &mut |row| {
                if let Some(revocation) = revocation_from(get(row, 1)?, get(row, 2)?)? {
                    visit(RevokedEntry {
                        serial: serial_from(get(row, 0)?)?,
                        revocation,
                    });
                }
                Ok(())
            },
        )
    }

    fn next_crl_number(&self, issuer: &str) -> Result<u64, StoreError> {
        let row = self.query_opt(
            "INSERT INTO crls (issuer, last_number) VALUES ($1, 1)
             ON CONFLICT (issuer) DO UPDATE SET last_number = crls.last_number + 1
             RETURNING last_number",
            vec![p(issuer.to_owned())],
        )?;
        let row = row.ok_or_else(|| StoreError::Corrupt("no CRL number returned".into()))?;
        counter(get(&row, 0)?, "CRL number")
    }

    fn save_crl(&self, issuer: &str, crl: &StoredCrl) -> Result<(), StoreError> {
        let number = i64::try_from(crl.number)
            .map_err(|_| StoreError::OutOfRange(format!("CRL number {}", crl.number)))?;
        self.query(
            "UPDATE crls SET this_update = $2, next_update = $3
             WHERE issuer = $1 AND last_number = $4",
            vec![
                p(issuer.to_owned()),
                p(crl.this_update),
                p(crl.next_update),
                p(number),
            ],
        )?;
        Ok(())
    }

    fn status_epoch(&self) -> Result<i64, StoreError> {
        match self.query_opt(
            "SELECT value FROM meta WHERE key = 'status_epoch'",
            Vec::new(),
        )? {
            Some(row) => get(&row, 0),
            None => Ok(0),
        }
    }

    fn append_audit(&self, entry: &NewAuditEntry) -> Result<AuditEntry, StoreError> {
        // Held until commit: one chain, whichever server appends.
        self.query(
            "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
            vec![p(AUDIT_LOCK)],
        )?;
        let last = self.query_opt(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            Vec::new(),
        )?;
        let (seq, prev_hash) = match last {
            Some(row) => (get::<i64>(&row, 0)? + 1, get::<String>(&row, 1)?),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let hash = chain_hash(&prev_hash, seq, entry);
        self.query(
            "INSERT INTO audit (seq, time, actor, action, details, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                p(seq),
                p(entry.time),
                p(entry.actor.clone()),
                p(entry.action.clone()),
                p(entry.details.clone()),
                p(prev_hash.clone()),
                p(hash.clone()),
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
        self.paged(
            "SELECT seq, time, actor, action, details, prev_hash, hash FROM audit
             WHERE seq > $1 ORDER BY seq LIMIT 10000",
            &|last| {
                let after: i64 = last.map(|row| get(row, 0)).transpose()?.unwrap_or(0);
                Ok(vec![p(after)])
            },
            &mut |row| {
                visit(AuditEntry {
                    seq: get(row, 0)?,
                    entry: NewAuditEntry {
                        time: get(row, 1)?,
                        actor: get(row, 2)?,
                        action: get(row, 3)?,
                        details: get(row, 4)?,
                    },
                    prev_hash: get(row, 5)?,
                    hash: get(row, 6)?,
                });
                Ok(())
            },
        )
    }

    fn insert_admin_token(&self, r: &AdminTokenRecord) -> Result<(), StoreError> {
        let inserted = self.affected(
            &format!(
                "INSERT INTO admin_tokens ({ADMIN_TOKEN_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING 1"
            ),
            vec![
                p(r.id.clone()),
                p(r.hash.clone()),
                p(r.role.clone()),
                p(r.label.clone()),
                p(r.created_at),
                p(r.expires_at),
                p(r.revoked_at),
                p(r.last_used_at),
            ],
        )?;
        if inserted {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!(
                "an admin token with id {} exists",
                r.id
            )))
        }
    }

    fn admin_token_by_hash(&self, hash: &str) -> Result<Option<AdminTokenRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {ADMIN_TOKEN_COLUMNS} FROM admin_tokens WHERE hash = $1"),
            vec![p(hash.to_owned())],
        )?
        .map(|row| admin_token_from_row(&row))
        .transpose()
    }

    fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError> {
        self.query(
            &format!("SELECT {ADMIN_TOKEN_COLUMNS} FROM admin_tokens ORDER BY created_at, id"),
            Vec::new(),
        )?
        .iter()
        .map(admin_token_from_row)
        .collect()
    }

    fn revoke_admin_token(&self, id: &str, revoked_at: i64) -> Result<bool, StoreError> {
        self.affected(
            "UPDATE admin_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL
             RETURNING 1",
            vec![p(id.to_owned()), p(revoked_at)],
        )
    }

    fn touch_admin_token(&self, id: &str, at: i64) -> Result<(), StoreError> {
        self.query(
            "UPDATE admin_tokens SET last_used_at = $2 WHERE id = $1",
            vec![p(id.to_owned()), p(at)],
        )?;
        Ok(())
    }

    fn allocate_name_number(&self, base: &str) -> Result<u64, StoreError> {
        let row = self
            .query_opt(
                "INSERT INTO name_counters (base, last_number) VALUES ($1, 1)
                 ON CONFLICT (base) DO UPDATE SET last_number = name_counters.last_number + 1
                 RETURNING last_number",
                vec![p(base.to_owned())],
            )?
            .ok_or_else(|| StoreError::Corrupt("no name number returned".into()))?;
        counter(get(&row, 0)?, "name number")
    }

    fn insert_enrollment_token(&self, r: &EnrollmentTokenRecord) -> Result<(), StoreError> {
        let inserted = self.affected(
            &format!(
                "INSERT INTO enrollment_tokens ({TOKEN_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT DO NOTHING RETURNING 1"
            ),
            vec![
                p(r.id.clone()),
                p(r.hash.clone()),
                p(r.name.clone()),
                p(r.base.clone()),
                p(r.profile.clone()),
                p(r.created_at),
                p(r.expires_at),
                p(r.created_by.clone()),
                p(r.used_at),
                p(r.serial.clone()),
                p(r.spki_sha256.clone()),
                p(r.revoked_at),
                p(r.group.as_str().to_owned()),
            ],
        )?;
        if inserted {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!(
                "an enrollment token with id {} or name {} exists",
                r.id, r.name
            )))
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
        self.query(
            &format!("SELECT {TOKEN_COLUMNS} FROM enrollment_tokens ORDER BY created_at, id"),
            Vec::new(),
        )?
        .iter()
        .map(token_from_row)
        .collect()
    }

    fn burn_enrollment_token(
        &self,
        id: &str,
        used_at: i64,
        serial: &str,
        spki_sha256: &str,
    ) -> Result<bool, StoreError> {
        self.affected(
            "UPDATE enrollment_tokens SET used_at = $2, serial = $3, spki_sha256 = $4
             WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL RETURNING 1",
            vec![
                p(id.to_owned()),
                p(used_at),
                p(serial.to_owned()),
                p(spki_sha256.to_owned()),
            ],
        )
    }

    fn revoke_enrollment_token(&self, id: &str, revoked_at: i64) -> Result<bool, StoreError> {
        self.affected(
            "UPDATE enrollment_tokens SET revoked_at = $2
             WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL RETURNING 1",
            vec![p(id.to_owned()), p(revoked_at)],
        )
    }

    fn name_in_use(&self, name: &str) -> Result<bool, StoreError> {
        let row = self
            .query_opt(
                "SELECT EXISTS (SELECT 1 FROM certificates WHERE name = $1)
                     OR EXISTS (SELECT 1 FROM enrollment_tokens WHERE name = $1)",
                vec![p(name.to_owned())],
            )?
            .ok_or_else(|| StoreError::Corrupt("no row from EXISTS".into()))?;
        get(&row, 0)
    }

    fn put_fleet_report(&self, r: &FleetReport) -> Result<(), StoreError> {
        let version = r.installed_version.map(version_to_db).transpose()?;
        let release = r.release.map(version_to_db).transpose()?;
        self.query(
            &format!(
                "INSERT INTO fleet_reports ({FLEET_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (name) DO UPDATE SET serial = EXCLUDED.serial,
                     received_at = EXCLUDED.received_at,
                     installed_version = EXCLUDED.installed_version,
                     last_check = EXCLUDED.last_check, last_result = EXCLUDED.last_result,
                     last_error = EXCLUDED.last_error, unlisted = EXCLUDED.unlisted,
                     group_name = EXCLUDED.group_name, channel = EXCLUDED.channel,
                     offered_release = EXCLUDED.offered_release,
                     rollout_state = EXCLUDED.rollout_state,
                     rollout_reason = EXCLUDED.rollout_reason"
            ),
            vec![
                p(r.name.clone()),
                p(r.serial.clone()),
                p(r.received_at),
                p(version),
                p(r.last_check.clone()),
                p(r.last_result.clone()),
                p(r.last_error.clone()),
                p(unlisted_to_db(&r.unlisted)?),
                p(r.group.as_str().to_owned()),
                p(r.channel.clone()),
                p(release),
                p(r.state.map(|s| s.as_str().to_owned())),
                p(r.reason.clone()),
            ],
        )?;
        Ok(())
    }

    fn fleet_reports(&self, name: Option<&str>) -> Result<Vec<FleetReport>, StoreError> {
        self.query(
            &format!(
                "SELECT {FLEET_COLUMNS} FROM fleet_reports
                 WHERE $1::TEXT IS NULL OR name = $1 ORDER BY name"
            ),
            vec![p(name.map(str::to_owned))],
        )?
        .iter()
        .map(|row| {
            RawFleetReport {
                name: get(row, 0)?,
                serial: get(row, 1)?,
                received_at: get(row, 2)?,
                installed_version: get(row, 3)?,
                last_check: get(row, 4)?,
                last_result: get(row, 5)?,
                last_error: get(row, 6)?,
                unlisted: get(row, 7)?,
                group: get(row, 8)?,
                channel: get(row, 9)?,
                release: get(row, 10)?,
                state: get(row, 11)?,
                reason: get(row, 12)?,
            }
            .finish()
        })
        .collect()
    }

    fn release_counts(&self) -> Result<Vec<ReleaseStateCount>, StoreError> {
        self.query(RELEASE_COUNTS_QUERY, Vec::new())?
            .iter()
            .map(|row| {
                RawReleaseCount {
                    channel: get(row, 0)?,
                    release: get(row, 1)?,
                    group: get(row, 2)?,
                    state: get(row, 3)?,
                    endpoints: get(row, 4)?,
                }
                .finish()
            })
            .collect()
    }

    fn endpoint_group(&self, name: &str) -> Result<Option<EndpointGroupRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {ENDPOINT_GROUP_COLUMNS} FROM endpoint_groups WHERE name = $1"),
            vec![p(name.to_owned())],
        )?
        .map(|row| endpoint_group_from_row(&row))
        .transpose()
    }

    fn endpoint_groups(&self) -> Result<Vec<EndpointGroupRecord>, StoreError> {
        self.query(
            &format!("SELECT {ENDPOINT_GROUP_COLUMNS} FROM endpoint_groups ORDER BY name"),
            Vec::new(),
        )?
        .iter()
        .map(endpoint_group_from_row)
        .collect()
    }

    fn set_endpoint_group(&self, r: &EndpointGroupRecord) -> Result<(), StoreError> {
        self.query(
            &format!(
                "INSERT INTO endpoint_groups ({ENDPOINT_GROUP_COLUMNS}) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET group_name = EXCLUDED.group_name,
                     changed_at = EXCLUDED.changed_at"
            ),
            vec![
                p(r.name.clone()),
                p(r.group.as_str().to_owned()),
                p(r.changed_at),
            ],
        )?;
        Ok(())
    }
}
