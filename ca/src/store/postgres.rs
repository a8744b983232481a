//! The PostgreSQL store: the same [`Store`] / [`StoreTx`] interface as the SQLite store, for
//! several `herald-ca` servers sharing one database (see docs/ha.md).
//!
//! The store trait is synchronous and is called both from blocking threads and from async
//! handlers of the server's runtime. A blocking PostgreSQL client cannot run inside a Tokio
//! runtime, so this store owns a small private runtime of its own: `tokio-postgres`
//! connections pooled by `deadpool-postgres` live there (their sockets, connection tasks and
//! timers), and each round trip is polled to completion on the calling thread inside that
//! runtime's context, parked until the runtime's workers wake it. That works from any context
//! (CLI, blocking pool, async handler) and keeps the trait unchanged.
//!
//! Correctness across servers rests on the database, never on process memory:
//! - write transactions run at READ COMMITTED; every check-then-write is one conditional
//!   statement (`INSERT ... ON CONFLICT`, `UPDATE ... WHERE used_at IS NULL`), so concurrent
//!   servers serialise on the row and exactly one wins;
//! - the hash-chained audit log has a chain per server: each store claims a chain at open
//!   (a session advisory lock on a connection of its own) and appends to it with one
//!   statement that advances the chain's head row and computes the entry's hash in the
//!   database, so two writers of one chain serialise on its head row (and never fork it),
//!   while servers never wait for each other's appends;
//! - read transactions are REPEATABLE READ, READ ONLY (one consistent snapshot);
//! - statements are prepared once per connection and pipelined: `BEGIN` goes with the first
//!   statement, statements whose answer nobody waits for (the certificate row, the
//!   endpoint's group, audit entries) go with the next one that needs an answer or with
//!   `COMMIT`, and a read's `COMMIT` is not waited for, so an enrollment waits for three round
//!   trips (`BEGIN` + token read; `BEGIN` + certificate + token burn; the endpoint's group +
//!   audit entry + `COMMIT`) and for a flush it shares with the writers waiting at the time;
//! - writes commit asynchronously and then wait for a flush shared with concurrent writers
//!   (group commit, see [`FLUSH`]), so locks are not held across a disk flush;
//! - a revocation bumps the status epoch and sends `NOTIFY herald_status` in its transaction;
//!   each server LISTENs and wakes its refresh loop at once (see
//!   [`Store::wait_status_change`]).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures_util::StreamExt;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, NoTls, Row};

use crate::model::audit::{AuditEntry, NewAuditEntry, GENESIS_HASH};
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

/// A write transaction. It commits without waiting for the disk (`synchronous_commit` off for
/// this transaction only), so that the locks it holds (the audit chain's, a token's row) are
/// released at once; [`FLUSH`] then waits until it is durable.
const WRITE_BEGIN: &str =
    "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL synchronous_commit TO off";

/// The flush of group commit ([`GroupCommit`]): a transaction with a transaction id commits
/// with `synchronous_commit` on, so PostgreSQL answers only once the WAL up to its commit
/// record, which follows every commit that returned before it started, is flushed (and, with
/// synchronous replication, on the standby). One flush serves every writer of this server
/// waiting at the time; concurrent flushes of several servers share one fsync.
const FLUSH: &str = "BEGIN; SELECT txid_current(); COMMIT";

/// A read transaction: one consistent snapshot.
const READ_BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// The LISTEN/NOTIFY channel of status changes.
const STATUS_CHANNEL: &str = "herald_status";

/// Appends an audit entry to chain `$1`: advances the chain's head row and computes the
/// entry's hash from the previous one (as `model::audit::chain_hash` does), in one statement.
/// Concurrent appends to one chain wait for the head row and then see its new value, so the
/// chain never forks. A missing head row leaves `seq` NULL, which fails the statement.
const AUDIT_APPEND: &str = "
WITH head AS (
    UPDATE audit_chains SET seq = seq + 1, prev_hash = hash,
        hash = encode(sha256(herald_hash_part(hash) || herald_hash_part((seq + 1)::TEXT)
            || herald_hash_part($2::BIGINT::TEXT) || herald_hash_part($3::TEXT)
            || herald_hash_part($4::TEXT) || herald_hash_part($5::TEXT)), 'hex')
    WHERE chain = $1
    RETURNING seq, prev_hash, hash
)
INSERT INTO audit (chain, seq, time, actor, action, details, prev_hash, hash)
VALUES ($1, (SELECT seq FROM head), $2, $3, $4, $5,
    (SELECT prev_hash FROM head), (SELECT hash FROM head))";

/// Most audit chains a store looks through for one that no running process holds.
const MAX_AUDIT_CHAINS: i32 = 10_000;

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
    /// The audit chain this store appends to.
    chain: i64,
    /// Write commits waiting for a flush.
    flush: GroupCommit,
    /// Round trips that transactions have waited for.
    round_trips: AtomicU64,
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
        let mut store = Self {
            runtime: Some(runtime),
            handle,
            pool,
            status: Arc::new(StatusSignal::default()),
            chain: 0,
            flush: GroupCommit::default(),
            round_trips: AtomicU64::new(0),
        };
        store.migrate(&options.schema)?;
        let claim = config.clone();
        store.chain = store.block(async move { claim_chain(claim).await })??;
        let status = store.status.clone();
        store.handle.spawn(listen_loop(config, status));
        Ok(store)
    }

    /// How many round trips the transactions of this store have waited for so far (a
    /// pipeline of statements sent together and their answers read; not the shared flush of
    /// group commit, nor a read's `COMMIT`, which nobody waits for). For tests and benchmarks
    /// that check what a transaction costs.
    pub fn transaction_round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// The audit chain this store appends to (claimed at open; see the module docs).
    pub fn audit_chain(&self) -> i64 {
        self.chain
    }

    /// How many status changes this store was told of (NOTIFY messages, plus one for each
    /// (re)connection of its listener).
    pub fn status_notifications(&self) -> u64 {
        self.status.state.lock().map(|s| s.0).unwrap_or(0)
    }

    /// Runs `fut` to completion on the calling thread, in the store runtime's context. The
    /// futures run here talk to connection tasks, timers and sockets of that runtime, whose
    /// workers drive them and wake this thread; no worker has to run the future itself, which
    /// saves a hand-over to another thread and back on every round trip.
    fn block<T>(&self, fut: impl Future<Output = T>) -> Result<T, StoreError> {
        let _context = self.handle.enter();
        Ok(run_here(fut))
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
        // The connection is the transaction's from here on (if it is lost, so is the
        // transaction). Until `open` is cleared, dropping `tx` (an error below, or a panic in
        // `f`) rolls back what was sent, so a connection never returns to the pool inside a
        // transaction.
        let tx = PgTx {
            store: self,
            client: RefCell::new(Some(self.connection()?)),
            begin: Cell::new(Some(if write { WRITE_BEGIN } else { READ_BEGIN })),
            deferred: RefCell::new(Vec::new()),
            open: Cell::new(true),
        };
        f(&tx)?;
        let nothing_sent = tx.begin.get().is_some() && tx.deferred.borrow().is_empty();
        if nothing_sent {
            tx.open.set(false);
        } else if write {
            // If the transaction failed, its COMMIT rolls it back and the failure is returned.
            tx.round_trip(None, Some("COMMIT"))?;
            tx.open.set(false);
            let seq = self.flush.committed()?;
            // The connection goes back to the pool while this writer waits; the one that runs
            // the flush takes a connection for it.
            drop(tx);
            self.flush.wait_durable(seq, &|| {
                let client = self.connection()?;
                self.block(async move { client.batch_execute(FLUSH).await })?
                    .map_err(|e| pg_error(&e))
            })?;
        } else if let Some(client) = tx.client.borrow_mut().take() {
            // A read has its answers: its COMMIT is sent without waiting for the reply, and
            // the connection goes back to the pool once the transaction has ended.
            tx.open.set(false);
            self.handle.spawn(async move {
                if let Err(e) = client.batch_execute("COMMIT").await {
                    tracing::debug!(error = %e, "ending a read transaction failed");
                }
            });
        }
        Ok(())
    }
}

/// Wakes a thread parked in [`run_here`].
struct Unpark(std::thread::Thread);

impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` on this thread, parking between polls until its waker is called.
fn run_here<T>(fut: impl Future<Output = T>) -> T {
    let mut fut = std::pin::pin!(fut);
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    loop {
        if let std::task::Poll::Ready(value) = fut.as_mut().poll(&mut cx) {
            return value;
        }
        // A wake-up that came before the park makes it return at once.
        std::thread::park();
    }
}

/// Claims an audit chain for this store: the first chain whose session advisory lock no
/// other process holds, on a connection of its own kept for the store's lifetime (its task
/// runs on the store's runtime and ends with it). The chain's head row is created if new. If
/// that connection is lost, another process may claim the same chain: appends of both then
/// wait for each other on its head row, and the chain stays whole.
async fn claim_chain(config: tokio_postgres::Config) -> Result<i64, StoreError> {
    let err = |e: tokio_postgres::Error| pg_error(&e);
    let (client, connection) = config.connect(NoTls).await.map_err(err)?;
    let driver = tokio::spawn(connection);
    for chain in 0..MAX_AUDIT_CHAINS {
        let claimed: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext(current_schema() || '.audit_chain'), $1)",
                &[&chain],
            )
            .await
            .map_err(err)?
            .try_get(0)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if !claimed {
            continue;
        }
        client
            .execute(
                "INSERT INTO audit_chains (chain, seq, prev_hash, hash) VALUES ($1, 0, '', $2)
                 ON CONFLICT (chain) DO NOTHING",
                &[&i64::from(chain), &GENESIS_HASH],
            )
            .await
            .map_err(err)?;
        tokio::spawn(async move {
            // Holds the claim for as long as the connection lives.
            let _claim = client;
            if driver.await.is_ok() {
                tracing::warn!(
                    chain,
                    "lost the connection holding this server's audit chain"
                );
            }
        });
        return Ok(i64::from(chain));
    }
    Err(StoreError::Backend(format!(
        "all {MAX_AUDIT_CHAINS} audit chains are held by running processes"
    )))
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

/// A statement sent later, in the same round trip as the next statement whose rows are
/// needed, or as `COMMIT`: its failure must be a database error (a constraint), which aborts
/// the transaction, so that a `COMMIT` in the same pipeline rolls it back.
struct Deferred {
    sql: String,
    params: Vec<Param>,
    /// Maps the statement's error (a duplicate serial, say) to the store's error.
    error: Box<dyn FnOnce(&tokio_postgres::Error) -> StoreError + Send + Sync>,
}

/// A statement's parameters as `tokio-postgres` takes them.
fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// What one round trip sends, in order.
struct Pipeline {
    begin: Option<&'static str>,
    deferred: Vec<Deferred>,
    /// The statement whose rows are wanted, if any.
    query: Option<(String, Vec<Param>)>,
    /// A simple-protocol statement sent last (`COMMIT`), if any.
    end: Option<&'static str>,
}

/// Sends every statement of `pipeline` without waiting for the answers in between (one round
/// trip; statements already prepared on this connection are not prepared again), then reads
/// the answers in order. The first failure is returned; the statements after it failed only
/// because the transaction was aborted.
async fn send(client: &Object, pipeline: Pipeline) -> Result<Vec<Row>, StoreError> {
    let err = |e: &tokio_postgres::Error| pg_error(e);
    let mut deferred_statements = Vec::with_capacity(pipeline.deferred.len());
    for d in &pipeline.deferred {
        deferred_statements.push(client.prepare_cached(&d.sql).await.map_err(|e| err(&e))?);
    }
    let query_statement = match &pipeline.query {
        Some((sql, _)) => Some(client.prepare_cached(sql).await.map_err(|e| err(&e))?),
        None => None,
    };
    type Answer<'f> =
        Pin<Box<dyn Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 'f>>;
    let deferred_params: Vec<Vec<&(dyn ToSql + Sync)>> =
        pipeline.deferred.iter().map(|d| refs(&d.params)).collect();
    let query_params = pipeline.query.as_ref().map(|(_, params)| refs(params));
    let mut answers: Vec<Answer<'_>> = Vec::new();
    if let Some(begin) = pipeline.begin {
        answers.push(Box::pin(async move {
            client.batch_execute(begin).await.map(|()| Vec::new())
        }));
    }
    for (statement, params) in deferred_statements.iter().zip(&deferred_params) {
        answers.push(Box::pin(client.query(statement, params)));
    }
    if let (Some(statement), Some(params)) = (&query_statement, &query_params) {
        answers.push(Box::pin(client.query(statement, params)));
    }
    if let Some(end) = pipeline.end {
        answers.push(Box::pin(async move {
            client.batch_execute(end).await.map(|()| Vec::new())
        }));
    }
    // `join_all` polls the futures in order, so the requests go out in order.
    let mut results = futures_util::future::join_all(answers).await.into_iter();
    if pipeline.begin.is_some() {
        if let Some(Err(e)) = results.next() {
            return Err(err(&e));
        }
    }
    for d in pipeline.deferred {
        if let Some(Err(e)) = results.next() {
            return Err((d.error)(&e));
        }
    }
    let rows = if pipeline.query.is_some() {
        match results.next() {
            Some(Ok(rows)) => rows,
            Some(Err(e)) => return Err(err(&e)),
            None => Vec::new(),
        }
    } else {
        Vec::new()
    };
    if let Some(Err(e)) = results.next() {
        return Err(err(&e));
    }
    Ok(rows)
}

/// A transaction on a connection of the pool; its first round trip carries `BEGIN`.
struct PgTx<'a> {
    store: &'a PgStore,
    /// The connection, until a read hands it to its `COMMIT`.
    client: RefCell<Option<Arc<Object>>>,
    /// `BEGIN ...`, until it is sent with the first statement.
    begin: Cell<Option<&'static str>>,
    /// Statements waiting for the next round trip.
    deferred: RefCell<Vec<Deferred>>,
    open: Cell<bool>,
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        let began = self.begin.get().is_none();
        if self.open.get() && began {
            if let Some(client) = self.client.borrow().clone() {
                // Fails only if the connection is gone, which the pool then discards.
                let _ = self
                    .store
                    .block(async move { client.batch_execute("ROLLBACK").await });
            }
        }
    }
}

impl PgTx<'_> {
    /// One round trip: `BEGIN` if not sent yet, the deferred statements, then `query` and
    /// `end`. Returns `query`'s rows.
    fn round_trip(
        &self,
        query: Option<(String, Vec<Param>)>,
        end: Option<&'static str>,
    ) -> Result<Vec<Row>, StoreError> {
        let pipeline = Pipeline {
            begin: self.begin.take(),
            deferred: std::mem::take(&mut *self.deferred.borrow_mut()),
            query,
            end,
        };
        let client = self
            .client
            .borrow()
            .clone()
            .ok_or_else(|| StoreError::Backend("the transaction has ended".into()))?;
        self.store.round_trips.fetch_add(1, Ordering::Relaxed);
        self.store
            .block(async move { send(&client, pipeline).await })?
    }

    fn query(&self, sql: &str, params: Vec<Param>) -> Result<Vec<Row>, StoreError> {
        self.round_trip(Some((sql.to_owned(), params)), None)
    }

    /// Sends `sql` with the next round trip. Its failure must be a database error (see
    /// [`Deferred`]); `error` maps it.
    fn defer(
        &self,
        sql: String,
        params: Vec<Param>,
        error: Box<dyn FnOnce(&tokio_postgres::Error) -> StoreError + Send + Sync>,
    ) {
        self.deferred
            .borrow_mut()
            .push(Deferred { sql, params, error });
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
        .map(|row| rows::token(&row))
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

impl ColumnRow for Row {
    fn text(&self, index: usize) -> Result<String, StoreError> {
        get(self, index)
    }

    fn maybe_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        get(self, index)
    }

    fn int(&self, index: usize) -> Result<i64, StoreError> {
        get(self, index)
    }

    fn maybe_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        get(self, index)
    }
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

fn counter(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value}")))
}

impl StoreTx for PgTx<'_> {
    fn insert_certificate(&self, r: &CertRecord) -> Result<(), StoreError> {
        let (revoked_at, reason) = match r.revocation {
            Some(rev) => (Some(rev.revoked_at), Some(i32::from(rev.reason.code()))),
            None => (None, None),
        };
        // Sent with the next statement (the token burn) or the commit: a serial already
        // recorded violates the primary key, which aborts the transaction.
        let serial = r.serial.to_hex();
        self.defer(
            format!(
                "INSERT INTO certificates ({CERT_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
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
            Box::new(move |e| {
                if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                    StoreError::DuplicateSerial(serial)
                } else {
                    pg_error(e)
                }
            }),
        );
        Ok(())
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
        // Two statements: a generic plan of `$1 IS NULL OR name = $1` scans the table.
        let limit: Option<i64> = filter.limit.map(i64::from);
        let (by_name, params) = match &filter.name {
            Some(name) => ("name = $2", vec![p(limit), p(name.clone())]),
            None => ("TRUE", vec![p(limit)]),
        };
        let sql = format!(
            "SELECT {CERT_COLUMNS} FROM certificates
             WHERE {by_name}{revoked}
             ORDER BY issued_at DESC, serial LIMIT $1"
        );
        self.query(&sql, params)?
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

    fn append_audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError> {
        // Sent with the commit, so this chain's head row is held only while the commit runs.
        self.defer(
            AUDIT_APPEND.to_owned(),
            vec![
                p(self.store.chain),
                p(entry.time),
                p(entry.actor.clone()),
                p(entry.action.clone()),
                p(entry.details.clone()),
            ],
            Box::new(pg_error),
        );
        Ok(())
    }

    fn for_each_audit(&self, visit: &mut dyn FnMut(AuditEntry)) -> Result<(), StoreError> {
        self.paged(
            &format!(
                "SELECT {AUDIT_COLUMNS} FROM audit
                 WHERE (chain, seq) > ($1, $2) ORDER BY chain, seq LIMIT 10000"
            ),
            &|last| {
                let (chain, seq): (i64, i64) = match last {
                    Some(row) => (get(row, 0)?, get(row, 1)?),
                    None => (i64::MIN, 0),
                };
                Ok(vec![p(chain), p(seq)])
            },
            &mut |row| {
                visit(rows::audit(row)?);
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
        .map(|row| rows::admin_token(&row))
        .transpose()
    }

    fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError> {
        self.query(
            &format!("SELECT {ADMIN_TOKEN_COLUMNS} FROM admin_tokens ORDER BY created_at, id"),
            Vec::new(),
        )?
        .iter()
        .map(|row| rows::admin_token(row))
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
        .map(|row| rows::token(row))
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
        // Two statements: a generic plan of `$1 IS NULL OR name = $1` scans every report.
        let (condition, params) = match name {
            Some(name) => ("WHERE name = $1", vec![p(name.to_owned())]),
            None => ("", Vec::new()),
        };
        self.query(
            &format!("SELECT {FLEET_COLUMNS} FROM fleet_reports {condition} ORDER BY name"),
            params,
        )?
        .iter()
        .map(|row| rows::fleet_report(row))
        .collect()
    }

    fn insert_account(&self, r: &AccountRecord) -> Result<(), StoreError> {
        let inserted = self.affected(
            &format!(
                "INSERT INTO admin_accounts ({ACCOUNT_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT DO NOTHING RETURNING 1"
            ),
            account_params(r),
        )?;
        if inserted {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!(
                "an account named {} exists",
                r.name
            )))
        }
    }

    fn account(&self, name: &str) -> Result<Option<AccountRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM admin_accounts WHERE name = $1"),
            vec![p(name.to_owned())],
        )?
        .map(|row| rows::account(&row))
        .transpose()
    }

    fn list_accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
        self.query(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM admin_accounts ORDER BY name"),
            Vec::new(),
        )?
        .iter()
        .map(|row| rows::account(row))
        .collect()
    }

    fn update_account(&self, r: &AccountRecord) -> Result<bool, StoreError> {
        self.affected(
            "UPDATE admin_accounts SET role = $2, password_hash = $3, password_one_time = $4,
                 mfa_required = $5, totp_secret = $6, totp_enrolled_at = $7,
                 totp_last_step = $8, created_at = $9, disabled_at = $10,
                 failed_logins = $11, locked_until = $12, last_login_at = $13
             WHERE name = $1 RETURNING 1",
            account_params(r),
        )
    }

    fn count_login_failure(
        &self,
        name: &str,
        lock_after: i64,
        locked_until: i64,
    ) -> Result<Option<(i64, Option<i64>)>, StoreError> {
        self.query_opt(
            "UPDATE admin_accounts SET failed_logins = failed_logins + 1,
                 locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3
                                     ELSE locked_until END
             WHERE name = $1 RETURNING failed_logins, locked_until",
            vec![p(name.to_owned()), p(lock_after), p(locked_until)],
        )?
        .map(|row| Ok((get(&row, 0)?, get(&row, 1)?)))
        .transpose()
    }

    fn accept_totp_step(&self, name: &str, step: i64) -> Result<bool, StoreError> {
        self.affected(
            "UPDATE admin_accounts SET totp_last_step = $2
             WHERE name = $1 AND (totp_last_step IS NULL OR totp_last_step < $2) RETURNING 1",
            vec![p(name.to_owned()), p(step)],
        )
    }

    fn replace_recovery_codes(
        &self,
        account: &str,
        hashes: &[String],
        created_at: i64,
    ) -> Result<(), StoreError> {
        self.query(
            "DELETE FROM recovery_codes WHERE account = $1",
            vec![p(account.to_owned())],
        )?;
        for hash in hashes {
            self.query(
                "INSERT INTO recovery_codes (account, hash, created_at) VALUES ($1, $2, $3)",
                vec![p(account.to_owned()), p(hash.clone()), p(created_at)],
            )?;
        }
        Ok(())
    }

    fn use_recovery_code(&self, account: &str, hash: &str, at: i64) -> Result<bool, StoreError> {
        self.affected(
            "UPDATE recovery_codes SET used_at = $3
             WHERE account = $1 AND hash = $2 AND used_at IS NULL RETURNING 1",
            vec![p(account.to_owned()), p(hash.to_owned()), p(at)],
        )
    }

    fn recovery_codes_left(&self, account: &str) -> Result<i64, StoreError> {
        let row = self
            .query_opt(
                "SELECT count(*) FROM recovery_codes WHERE account = $1 AND used_at IS NULL",
                vec![p(account.to_owned())],
            )?
            .ok_or_else(|| StoreError::Corrupt("no row from count".into()))?;
        get(&row, 0)
    }

    fn insert_session(&self, r: &SessionRecord) -> Result<(), StoreError> {
        self.query(
            &format!(
                "INSERT INTO console_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
            ),
            vec![
                p(r.id_hash.clone()),
                p(r.account.clone()),
                p(r.stage.clone()),
                p(r.created_at),
                p(r.last_seen_at),
                p(r.expires_at),
            ],
        )?;
        Ok(())
    }

    fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {SESSION_COLUMNS} FROM console_sessions WHERE id_hash = $1"),
            vec![p(id_hash.to_owned())],
        )?
        .map(|row| rows::session(&row))
        .transpose()
    }

    fn touch_session(&self, id_hash: &str, at: i64) -> Result<(), StoreError> {
        self.query(
            "UPDATE console_sessions SET last_seen_at = $2 WHERE id_hash = $1",
            vec![p(id_hash.to_owned()), p(at)],
        )?;
        Ok(())
    }

    fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        self.affected(
            "DELETE FROM console_sessions WHERE id_hash = $1 RETURNING 1",
            vec![p(id_hash.to_owned())],
        )
    }

    fn delete_sessions_of(&self, account: &str) -> Result<u64, StoreError> {
        let rows = self.query(
            "DELETE FROM console_sessions WHERE account = $1 RETURNING 1",
            vec![p(account.to_owned())],
        )?;
        Ok(rows.len() as u64)
    }

    fn delete_expired_sessions(&self, now: i64, idle_before: i64) -> Result<u64, StoreError> {
        let rows = self.query(
            "DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen_at < $2
             RETURNING 1",
            vec![p(now), p(idle_before)],
        )?;
        Ok(rows.len() as u64)
    }

    fn endpoints_page(&self, query: &EndpointQuery) -> Result<Vec<EndpointRow>, StoreError> {
        let (sql, values) = endpoints_page_sql(query, &|i| format!("${i}"));
        self.query(&sql, pg_values(values))?
            .iter()
            .map(|row| rows::endpoint(row))
            .collect()
    }

    fn endpoint_counts(&self, now: i64) -> Result<EndpointCounts, StoreError> {
        let row = self
            .query_opt(&endpoint_counts_sql("$1::BIGINT"), vec![p(now)])?
            .ok_or_else(|| StoreError::Corrupt("no row from the endpoint counts".into()))?;
        rows::endpoint_counts(&row)
    }

    fn installed_release_counts(&self) -> Result<Vec<(Option<u64>, i64)>, StoreError> {
        self.query(INSTALLED_RELEASE_COUNTS_QUERY, Vec::new())?
            .iter()
            .map(|row| rows::installed_release_count(row))
            .collect()
    }

    fn certificates_expiring(
        &self,
        from: i64,
        until: i64,
        limit: u32,
    ) -> Result<(i64, Vec<CertRecord>), StoreError> {
        let row = self
            .query_opt(
                "SELECT count(*) FROM certificates
                 WHERE revoked_at IS NULL AND not_after >= $1 AND not_after < $2",
                vec![p(from), p(until)],
            )?
            .ok_or_else(|| StoreError::Corrupt("no row from count".into()))?;
        let certs = self
            .query(
                &format!(
                    "SELECT {CERT_COLUMNS} FROM certificates
                     WHERE revoked_at IS NULL AND not_after >= $1 AND not_after < $2
                     ORDER BY not_after LIMIT $3"
                ),
                vec![p(from), p(until), p(i64::from(limit))],
            )?
            .iter()
            .map(cert_from_row)
            .collect::<Result<_, _>>()?;
        Ok((get(&row, 0)?, certs))
    }

    fn certificates_page(
        &self,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<CertRecord>, StoreError> {
        let rows = match after {
            None => self.query(
                &format!(
                    "SELECT {CERT_COLUMNS} FROM certificates
                     ORDER BY issued_at DESC, serial LIMIT $1"
                ),
                vec![p(i64::from(limit))],
            )?,
            Some((issued_at, serial)) => self.query(
                &format!(
                    "SELECT {CERT_COLUMNS} FROM certificates
                     WHERE issued_at <= $1 AND (issued_at < $1 OR serial > $2)
                     ORDER BY issued_at DESC, serial LIMIT $3"
                ),
                vec![p(issued_at), p(serial), p(i64::from(limit))],
            )?,
        };
        rows.iter().map(cert_from_row).collect()
    }

    fn report_hours(&self, from_hour: i64) -> Result<Vec<ReportHour>, StoreError> {
        self.query(
            "SELECT hour, reports, failures FROM fleet_report_hours
             WHERE hour >= $1 ORDER BY hour",
            vec![p(from_hour)],
        )?
        .iter()
        .map(|row| rows::report_hour(row))
        .collect()
    }

    fn audit_page(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let (sql, values) = audit_page_sql(query, &|i| format!("${i}"));
        self.query(&sql, pg_values(values))?
            .iter()
            .map(|row| rows::audit(row))
            .collect()
    }

    fn enrollment_tokens_page(
        &self,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<EnrollmentTokenRecord>, StoreError> {
        let rows = match after {
            None => self.query(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM enrollment_tokens
                     ORDER BY created_at DESC, id DESC LIMIT $1"
                ),
                vec![p(i64::from(limit))],
            )?,
            Some((created_at, id)) => self.query(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM enrollment_tokens
                     WHERE created_at <= $1 AND (created_at < $1 OR id < $2)
                     ORDER BY created_at DESC, id DESC LIMIT $3"
                ),
                vec![p(created_at), p(id), p(i64::from(limit))],
            )?,
        };
        rows.iter().map(|row| rows::token(row)).collect()
    }

    fn release_counts(&self) -> Result<Vec<ReleaseStateCount>, StoreError> {
        self.query(RELEASE_COUNTS_QUERY, Vec::new())?
            .iter()
            .map(|row| rows::release_count(row))
            .collect()
    }

    fn endpoint_group(&self, name: &str) -> Result<Option<EndpointGroupRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {ENDPOINT_GROUP_COLUMNS} FROM endpoint_groups WHERE name = $1"),
            vec![p(name.to_owned())],
        )?
        .map(|row| rows::endpoint_group(&row))
        .transpose()
    }

    fn endpoint_groups(&self) -> Result<Vec<EndpointGroupRecord>, StoreError> {
        self.query(
            &format!("SELECT {ENDPOINT_GROUP_COLUMNS} FROM endpoint_groups ORDER BY name"),
            Vec::new(),
        )?
        .iter()
        .map(|row| rows::endpoint_group(row))
        .collect()
    }

    fn set_endpoint_group(&self, r: &EndpointGroupRecord) -> Result<(), StoreError> {
        // Sent with the next statement or the commit (nobody waits for its answer), so that
        // an enrollment records the group without another round trip; its only failures are
        // the database's, which abort the transaction.
        self.defer(
            format!(
                "INSERT INTO endpoint_groups ({ENDPOINT_GROUP_COLUMNS}) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET group_name = EXCLUDED.group_name,
                     changed_at = EXCLUDED.changed_at"
            ),
            vec![
                p(r.name.clone()),
                p(r.group.as_str().to_owned()),
                p(r.changed_at),
            ],
            Box::new(pg_error),
        );
        Ok(())
    }
}

fn pg_values(values: Vec<SqlValue>) -> Vec<Param> {
    values
        .into_iter()
        .map(|value| match value {
            SqlValue::Text(text) => p(text),
            SqlValue::Int(n) => p(n),
        })
        .collect()
}

fn account_params(r: &AccountRecord) -> Vec<Param> {
    vec![
        p(r.name.clone()),
        p(r.role.clone()),
        p(r.password_hash.clone()),
        p(i64::from(r.password_one_time)),
        p(i64::from(r.mfa_required)),
        p(r.totp_secret.clone()),
        p(r.totp_enrolled_at),
        p(r.totp_last_step),
        p(r.created_at),
        p(r.disabled_at),
        p(r.failed_logins),
        p(r.locked_until),
        p(r.last_login_at),
    ]
}
