//! One storage test suite, run against both stores: SQLite (a temporary file) and PostgreSQL
//! (127.0.0.1:5432, user `postgres`, database `test`; each test in its own schema, dropped at
//! the end, so parallel tests and runs never collide). Override the server with
//! `HERALD_TEST_POSTGRES_URL`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use herald_ca::store::{
    read_tx, write_tx, AccountRecord, AdminTokenRecord, AuditQuery, CertRecord, EndpointCounts,
    EndpointFilter, EndpointGroupRecord, EndpointQuery, EndpointRow, EnrollmentTokenRecord,
    FleetReport, ListFilter, PgOptions, PgStore, ReleaseStateCount, ReportHour, Revocation,
    RevokeOutcome, SessionRecord, SqliteStore, Store, StoreError, StoredCrl, SCHEMA_VERSION,
};
use herald_ca::{verify_audit_log, NewAuditEntry, Reason, Serial};
use herald_wire::{Group, RolloutState};

mod pg_support;
use pg_support::{pg_url, query_text, run_sql as admin_sql};

/// A PostgreSQL schema for one test, dropped when this goes out of scope.
struct PgSchema {
    name: String,
}

impl PgSchema {
    fn new() -> Self {
        Self {
            name: pg_support::unique_schema("herald_test"),
        }
    }

    fn options(&self) -> PgOptions {
        PgOptions {
            url: pg_url(),
            schema: self.name.clone(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
        }
    }

    fn open(&self) -> PgStore {
        PgStore::open(&self.options()).unwrap()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        pg_support::drop_schema(&self.name);
    }
}

/// Runs `check` against a fresh SQLite store and a fresh PostgreSQL store. For PostgreSQL,
/// `check` gets two store handles on the same database, as two servers would have.
fn both(check: impl Fn(&dyn Store, &dyn Store)) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open(&dir.path().join("herald.db")).unwrap());
    check(sqlite.as_ref(), sqlite.as_ref());
    let schema = PgSchema::new();
    let (a, b) = (schema.open(), schema.open());
    check(&a, &b);
}

fn record(serial: &[u8], name: &str) -> CertRecord {
    CertRecord {
        serial: Serial::from_bytes(serial),
        issuer: "intermediate".into(),
        name: name.into(),
        profile: "endpoint".into(),
        not_before: 0,
        not_after: 10,
        issued_at: i64::from(serial[0]),
        der: serial.to_vec(),
        revocation: None,
    }
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
        group: Group::default(),
    }
}

/// Runs `f` on `threads` threads at once, alternating between the two stores.
fn concurrently<T: Send>(
    a: &dyn Store,
    b: &dyn Store,
    threads: usize,
    f: impl Fn(&dyn Store, usize) -> T + Sync,
) -> Vec<T> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let store = if i % 2 == 0 { a } else { b };
                let f = &f;
                scope.spawn(move || f(store, i))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn duplicate_serial_rejected_and_transaction_rolled_back() {
    both(|a, b| {
        write_tx(a, |tx| tx.insert_certificate(&record(&[1], "one"))).unwrap();
        let err = write_tx(b, |tx| {
            tx.insert_certificate(&record(&[2], "two"))?;
            tx.insert_certificate(&record(&[1], "again"))
        })
        .unwrap_err();
        assert!(matches!(err, StoreError::DuplicateSerial(_)), "{err}");
        let all = read_tx(a, |tx| tx.list_certificates(&ListFilter::default())).unwrap();
        assert_eq!(all.len(), 1, "the failed transaction left nothing behind");
        let one = read_tx(b, |tx| tx.certificate(&Serial::from_bytes(&[1]))).unwrap();
        assert_eq!(one.unwrap().name, "one");
    });
}

#[test]
fn certificates_listed_by_name_and_status_newest_first() {
    both(|a, b| {
        for (serial, name) in [(1u8, "x"), (2, "y"), (3, "x")] {
            write_tx(a, |tx| tx.insert_certificate(&record(&[serial], name))).unwrap();
        }
        let revocation = Revocation {
            revoked_at: 5,
            reason: Reason::Superseded,
        };
        write_tx(b, |tx| tx.revoke(&Serial::from_bytes(&[3]), revocation)).unwrap();
        let xs = read_tx(b, |tx| {
            tx.list_certificates(&ListFilter {
                name: Some("x".into()),
                ..ListFilter::default()
            })
        })
        .unwrap();
        let serials: Vec<String> = xs.iter().map(|c| c.serial.to_hex()).collect();
        assert_eq!(serials, ["03", "01"]);
        let revoked = read_tx(a, |tx| {
            tx.list_certificates(&ListFilter {
                revoked: Some(true),
                ..ListFilter::default()
            })
        })
        .unwrap();
        assert_eq!(revoked.len(), 1);
        assert_eq!(revoked[0].revocation, Some(revocation));
        let limited = read_tx(a, |tx| {
            tx.list_certificates(&ListFilter {
                limit: Some(2),
                revoked: Some(false),
                ..ListFilter::default()
            })
        })
        .unwrap();
        assert_eq!(limited.len(), 2);
        let der = read_tx(a, |tx| tx.certificate(&Serial::from_bytes(&[2]))).unwrap();
        assert_eq!(der.unwrap().der, vec![2]);
    });
}

#[test]
fn revocation_is_permanent_counted_and_listed_for_the_crl() {
    both(|a, b| {
        write_tx(a, |tx| tx.insert_certificate(&record(&[7], "h"))).unwrap();
        let first = Revocation {
            revoked_at: 100,
            reason: Reason::KeyCompromise,
        };
        let serial = Serial::from_bytes(&[7]);
        assert_eq!(
            write_tx(a, |tx| tx.revoke(&serial, first)).unwrap(),
            RevokeOutcome::Revoked
        );
        let second = Revocation {
            revoked_at: 200,
            reason: Reason::Superseded,
        };
        assert_eq!(
            write_tx(b, |tx| tx.revoke(&serial, second)).unwrap(),
            RevokeOutcome::AlreadyRevoked(first)
        );
        assert_eq!(read_tx(b, |tx| tx.status_epoch()).unwrap(), 1);
        let missing = write_tx(b, |tx| tx.revoke(&Serial::from_bytes(&[9]), first)).unwrap();
        assert_eq!(missing, RevokeOutcome::NotFound);
        let mut entries = Vec::new();
        read_tx(b, |tx| {
            tx.for_each_revoked("intermediate", &mut |e| entries.push(e))
        })
        .unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].serial, serial);
        assert_eq!(entries[0].revocation, first);
    });
}

#[test]
fn concurrent_revocations_of_one_certificate_one_wins() {
    both(|a, b| {
        write_tx(a, |tx| tx.insert_certificate(&record(&[4], "h"))).unwrap();
        let serial = Serial::from_bytes(&[4]);
        let outcomes = concurrently(a, b, 8, |store, i| {
            let revocation = Revocation {
                revoked_at: i64::try_from(i).unwrap(),
                reason: Reason::Unspecified,
            };
            write_tx(store, |tx| tx.revoke(&serial, revocation)).unwrap()
        });
        let won = outcomes
            .iter()
            .filter(|o| **o == RevokeOutcome::Revoked)
            .count();
        assert_eq!(won, 1, "{outcomes:?}");
        assert_eq!(read_tx(a, |tx| tx.status_epoch()).unwrap(), 1);
    });
}

#[test]
fn crl_numbers_only_grow_across_servers() {
    both(|a, b| {
        let numbers = concurrently(a, b, 8, |store, _| {
            (0..5)
                .map(|_| write_tx(store, |tx| tx.next_crl_number("intermediate")).unwrap())
                .collect::<Vec<u64>>()
        });
        for per_thread in &numbers {
            assert!(per_thread.windows(2).all(|w| w[0] < w[1]), "{per_thread:?}");
        }
        let mut all: Vec<u64> = numbers.into_iter().flatten().collect();
        all.sort_unstable();
        assert_eq!(all, (1..=40).collect::<Vec<u64>>(), "no number given twice");
        let crl = StoredCrl {
            number: 40,
            this_update: 10,
            next_update: 20,
            der: Vec::new(),
        };
        write_tx(a, |tx| tx.save_crl("intermediate", &crl)).unwrap();
        assert_eq!(
            write_tx(b, |tx| tx.next_crl_number("intermediate")).unwrap(),
            41
        );
    });
}

#[test]
fn audit_chain_unbroken_under_concurrent_appends() {
    both(|a, b| {
        concurrently(a, b, 8, |store, i| {
            for j in 0..5 {
                let entry = NewAuditEntry {
                    time: 1,
                    actor: format!("t{i}"),
                    action: "test".into(),
                    details: format!("{{\"j\":{j}}}"),
                };
                write_tx(store, |tx| tx.append_audit(&entry)).unwrap();
            }
        });
        let report = verify_audit_log(a).unwrap();
        assert_eq!(report.entries, 40);
        assert!(report.first_break.is_none(), "{:?}", report.first_break);
    });
}

#[test]
fn postgres_servers_append_to_audit_chains_of_their_own_without_waiting() {
    let schema = PgSchema::new();
    let (a, b) = (schema.open(), schema.open());
    assert_ne!(
        a.audit_chain(),
        b.audit_chain(),
        "each server claims a chain"
    );
    let entry = |actor: &str| NewAuditEntry {
        time: 7,
        actor: actor.into(),
        action: "test".into(),
        // Multi-byte text: the database hashes UTF-8 lengths as the chain hash does.
        details: r#"{"name":"café ✓ 名前"}"#.into(),
    };
    let (appended_tx, appended) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let a = &a;
        scope.spawn(move || {
            write_tx(a, |tx| {
                tx.append_audit(&entry("a"))?;
                // A statement that needs an answer: the append goes to the database with it,
                // and `a`'s transaction stays open until released.
                tx.status_epoch()?;
                appended_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                Ok::<_, StoreError>(())
            })
            .unwrap();
        });
        appended.recv().unwrap();
        let (done_tx, done) = std::sync::mpsc::channel();
        let (b, entry) = (&b, &entry);
        scope.spawn(move || {
            write_tx(b, |tx| tx.append_audit(&entry("b"))).unwrap();
            done_tx.send(()).unwrap();
        });
        let waited = done.recv_timeout(Duration::from_secs(10));
        release.send(()).unwrap();
        assert!(waited.is_ok(), "b's append waited for a's open transaction");
    });
    let report = verify_audit_log(&a).unwrap();
    assert_eq!(report.first_break, None);
    assert_eq!(report.entries, 2);
    assert_eq!(report.chains.len(), 2);
}

#[test]
fn admin_token_found_by_hash_only() {
    both(|a, b| {
        let record = AdminTokenRecord {
            id: "id1".into(),
            hash: "ab".repeat(32),
            role: "admin".into(),
            label: "ops".into(),
            created_at: 3,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        write_tx(a, |tx| tx.insert_admin_token(&record)).unwrap();
        let found = read_tx(b, |tx| tx.admin_token_by_hash(&"ab".repeat(32))).unwrap();
        assert_eq!(found.unwrap().label, "ops");
        assert!(read_tx(b, |tx| tx.admin_token_by_hash("cd"))
            .unwrap()
            .is_none());
    });
}

#[test]
fn admin_token_lifecycle_listed_revoked_once_and_last_use_kept() {
    both(|a, b| {
        let token = |id: &str, hash: &str, expires_at| AdminTokenRecord {
            id: id.into(),
            hash: hash.repeat(32),
            role: "operator".into(),
            label: id.into(),
            created_at: 5,
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        write_tx(a, |tx| {
            tx.insert_admin_token(&token("t1", "01", Some(1_000)))?;
            tx.insert_admin_token(&token("t2", "02", None))
        })
        .unwrap();
        write_tx(b, |tx| tx.touch_admin_token("t1", 700)).unwrap();
        assert!(write_tx(a, |tx| tx.revoke_admin_token("t2", 800)).unwrap());
        assert!(
            !write_tx(b, |tx| tx.revoke_admin_token("t2", 900)).unwrap(),
            "revoked once"
        );
        assert!(!write_tx(b, |tx| tx.revoke_admin_token("nope", 900)).unwrap());
        let all = read_tx(b, |tx| tx.list_admin_tokens()).unwrap();
        let view: Vec<_> = all
            .iter()
            .map(|t| (t.id.as_str(), t.expires_at, t.revoked_at, t.last_used_at))
            .collect();
        assert_eq!(
            view,
            [
                ("t1", Some(1_000), None, Some(700)),
                ("t2", None, Some(800), None)
            ]
        );
    });
}

#[test]
fn admin_tokens_of_an_older_store_migrated() {
    // SQLite: the admin_tokens table as released before expiry, revocation and last use.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE admin_tokens (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE,
             role TEXT NOT NULL, label TEXT NOT NULL, created_at INTEGER NOT NULL);
         INSERT INTO admin_tokens VALUES ('old', 'hash-old', 'admin', 'before', 1);",
    )
    .unwrap();
    drop(conn);
    let sqlite = SqliteStore::open(&path).unwrap();
    // PostgreSQL: a schema at version 2.
    let schema = PgSchema::new();
    drop(schema.open());
    admin_sql(&format!(
        "SET search_path TO {0};
         ALTER TABLE admin_tokens DROP COLUMN expires_at, DROP COLUMN revoked_at,
             DROP COLUMN last_used_at;
         UPDATE herald_schema SET version = 2;
         INSERT INTO admin_tokens VALUES ('old', 'hash-old', 'admin', 'before', 1);",
        schema.name
    ));
    let pg = schema.open();
    for store in [&sqlite as &dyn Store, &pg] {
        let old = read_tx(store, |tx| tx.admin_token_by_hash("hash-old"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (old.label.as_str(), old.expires_at, old.revoked_at),
            ("before", None, None)
        );
        assert!(write_tx(store, |tx| tx.revoke_admin_token("old", 9)).unwrap());
    }
}

#[test]
fn concurrent_token_burns_exactly_one_wins() {
    both(|a, b| {
        write_tx(a, |tx| tx.insert_enrollment_token(&token("t", "web-0001"))).unwrap();
        let wins = concurrently(a, b, 16, |store, i| {
            write_tx(store, |tx| {
                tx.burn_enrollment_token("t", 5, &format!("{i:02x}"), "spki")
            })
            .unwrap()
        });
        assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
        let stored = read_tx(b, |tx| tx.enrollment_token_by_hash("hash-t"))
            .unwrap()
            .unwrap();
        assert_eq!(stored.used_at, Some(5));
        assert!(
            !write_tx(a, |tx| tx.revoke_enrollment_token("t", 9)).unwrap(),
            "a used token cannot be revoked"
        );
    });
}

#[test]
fn concurrent_name_allocations_never_collide() {
    both(|a, b| {
        let numbers = concurrently(a, b, 8, |store, _| {
            (0..10)
                .map(|_| write_tx(store, |tx| tx.allocate_name_number("web")).unwrap())
                .collect::<Vec<u64>>()
        });
        let mut all: Vec<u64> = numbers.into_iter().flatten().collect();
        all.sort_unstable();
        assert_eq!(all, (1..=80).collect::<Vec<u64>>());
        assert_eq!(write_tx(b, |tx| tx.allocate_name_number("db")).unwrap(), 1);
    });
}

#[test]
fn enrollment_token_with_taken_name_is_a_conflict() {
    both(|a, b| {
        write_tx(a, |tx| tx.insert_enrollment_token(&token("a", "web-0001"))).unwrap();
        let dup = write_tx(b, |tx| tx.insert_enrollment_token(&token("b", "web-0001")));
        assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
        write_tx(a, |tx| tx.insert_certificate(&record(&[8], "cert-name"))).unwrap();
        assert!(read_tx(b, |tx| tx.name_in_use("web-0001")).unwrap());
        assert!(read_tx(b, |tx| tx.name_in_use("cert-name")).unwrap());
        assert!(!read_tx(b, |tx| tx.name_in_use("web-0002")).unwrap());
        write_tx(b, |tx| tx.insert_enrollment_token(&token("c", "web-0003"))).unwrap();
        assert!(write_tx(a, |tx| tx.revoke_enrollment_token("c", 4)).unwrap());
        let listed = read_tx(a, |tx| tx.list_enrollment_tokens()).unwrap();
        let ids: Vec<&str> = listed.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(listed[1].revoked_at, Some(4));
        assert!(read_tx(a, |tx| tx.enrollment_token("c")).unwrap().is_some());
    });
}

#[test]
fn postgres_schema_newer_than_this_build_refused() {
    let schema = PgSchema::new();
    drop(schema.open());
    admin_sql(&format!(
        "UPDATE {}.herald_schema SET version = {}",
        schema.name,
        SCHEMA_VERSION + 1
    ));
    let err = PgStore::open(&schema.options()).unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err}");
    assert!(err.to_string().contains("upgrade herald-ca"), "{err}");
}

#[test]
fn sqlite_schema_newer_than_this_build_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err}");
    assert!(err.to_string().contains("upgrade herald-ca"), "{err}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        version,
        SCHEMA_VERSION + 1,
        "the newer database is not touched"
    );
}

#[test]
fn both_stores_record_the_schema_version_they_migrated_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let sqlite: u32 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(sqlite, SCHEMA_VERSION);
    let indexes: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'certificates_%' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let schema = PgSchema::new();
    drop(schema.open());
    let pg_version = query_text(&format!(
        "SELECT version::text FROM {}.herald_schema",
        schema.name
    ));
    assert_eq!(pg_version.trim(), SCHEMA_VERSION.to_string());
    let pg_indexes = query_text(&format!(
        "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes \
         WHERE schemaname = '{}' AND indexname LIKE 'certificates\\_%' \
         AND indexname <> 'certificates_pkey'",
        schema.name
    ));
    assert_eq!(
        pg_indexes.trim(),
        indexes.join(","),
        "the two dialects define the same certificate indexes"
    );
}

#[test]
fn postgres_migrations_applied_once_by_concurrent_servers() {
    let schema = PgSchema::new();
    let stores: Vec<PgStore> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3).map(|_| scope.spawn(|| schema.open())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    write_tx(&stores[0], |tx| tx.insert_certificate(&record(&[1], "a"))).unwrap();
    assert_eq!(
        read_tx(&stores[2], |tx| tx
            .list_certificates(&ListFilter::default()))
        .unwrap()
        .len(),
        1
    );
}

#[test]
fn postgres_unreachable_is_unavailable() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let err = PgStore::open(&PgOptions {
        url: format!("postgres://postgres@127.0.0.1:{port}/test"),
        schema: "herald".into(),
        pool_size: 2,
        connect_timeout: Duration::from_secs(2),
    })
    .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
}

#[test]
fn postgres_connection_lost_mid_transaction_writes_nothing() {
    let schema = PgSchema::new();
    let app = format!("{}_app", schema.name);
    let mut options = schema.options();
    options.url = format!("{}?application_name={app}", pg_url());
    let store = PgStore::open(&options).unwrap();
    let err = write_tx(&store, |tx| {
        tx.insert_certificate(&record(&[1], "half"))?;
        // The database drops every connection of this store before the commit.
        admin_sql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{app}'"
        ));
        tx.insert_certificate(&record(&[2], "half"))
    })
    .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    let other = schema.open();
    let all = read_tx(&other, |tx| tx.list_certificates(&ListFilter::default())).unwrap();
    assert!(all.is_empty(), "nothing half-written: {all:?}");
    // The pool replaces the dead connection: the store works again.
    write_tx(&store, |tx| tx.insert_certificate(&record(&[3], "after"))).unwrap();
}

#[test]
fn postgres_revocation_wakes_other_servers() {
    let schema = PgSchema::new();
    let (a, b) = (schema.open(), schema.open());
    write_tx(&a, |tx| tx.insert_certificate(&record(&[5], "n"))).unwrap();
    let revocation = Revocation {
        revoked_at: 1,
        reason: Reason::KeyCompromise,
    };
    // Wait until `b` listens (its listener counts its first connection as a change).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while b.status_notifications() == 0 {
        assert!(std::time::Instant::now() < deadline, "b never listened");
        b.wait_status_change(Duration::from_millis(100));
    }
    let before = b.status_notifications();
    write_tx(&a, |tx| tx.revoke(&Serial::from_bytes(&[5]), revocation)).unwrap();
    while b.status_notifications() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "b was never told of the revocation"
        );
        b.wait_status_change(Duration::from_millis(100));
    }
    assert_eq!(read_tx(&b, |tx| tx.status_epoch()).unwrap(), 1);
}

#[test]
fn postgres_panic_in_transaction_rolls_back_before_the_connection_is_reused() {
    let schema = PgSchema::new();
    let mut options = schema.options();
    options.pool_size = 1;
    let store = PgStore::open(&options).unwrap();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = write_tx(&store, |tx| {
            tx.insert_certificate(&record(&[1], "half"))?;
            panic!("caller bug in the middle of a transaction");
            #[allow(unreachable_code)]
            Ok::<_, StoreError>(())
        });
    }));
    assert!(panicked.is_err());
    // The only connection is reused: a later transaction must not commit the panicked one's
    // insert.
    write_tx(&store, |tx| tx.insert_certificate(&record(&[2], "next"))).unwrap();
    let names: Vec<String> = read_tx(&store, |tx| tx.list_certificates(&ListFilter::default()))
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["next"]);
}

#[test]
fn postgres_crl_and_audit_longer_than_a_page_read_whole_in_order() {
    let schema = PgSchema::new();
    let store = schema.open();
    let n = 10_005;
    admin_sql(&format!(
        "INSERT INTO {s}.certificates
             (serial, issuer, name, profile, not_before, not_after, issued_at, der, revoked_at, reason)
         SELECT '1' || lpad(to_hex(i), 7, '0'), 'intermediate', 'n', 'endpoint', 0, 1, 0, '\\x00', 5, 1
         FROM generate_series(1, {n}) AS i;
         INSERT INTO {s}.audit (chain, seq, time, actor, action, details, prev_hash, hash)
         SELECT 0, i, 0, 'a', 'b', '{{}}', 'p', 'h' FROM generate_series(1, {n}) AS i;",
        s = schema.name
    ));
    let mut serials = Vec::new();
    read_tx(&store as &dyn Store, |tx| {
        tx.for_each_revoked("intermediate", &mut |e| serials.push(e.serial.to_hex()))
    })
    .unwrap();
    assert_eq!(serials.len(), n);
    assert!(
        serials.windows(2).all(|w| w[0] < w[1]),
        "in order, none twice"
    );
    let mut seqs = Vec::new();
    read_tx(&store as &dyn Store, |tx| {
        tx.for_each_audit(&mut |e| seqs.push(e.seq))
    })
    .unwrap();
    assert_eq!(seqs, (1..=i64::try_from(n).unwrap()).collect::<Vec<i64>>());
}

fn report(name: &str, version: u64, error: Option<&str>, at: i64) -> FleetReport {
    FleetReport {
        name: name.to_owned(),
        serial: format!("{at:032x}"),
        received_at: at,
        installed_version: Some(version),
        last_check: Some("2026-11-21T10:00:00Z".to_owned()),
        last_result: Some(
            if error.is_some() {
                "error"
            } else {
                "installed"
            }
            .to_owned(),
        ),
        last_error: error.map(str::to_owned),
        unlisted: vec!["a.tmp".to_owned(), "b/c.log".to_owned()],
        ..FleetReport::default()
    }
}

#[test]
fn newest_report_per_endpoint_kept_in_both_stores() {
    both(|store, _| {
        write_tx(store, |tx| {
            tx.put_fleet_report(&report("pos-0002", 4, None, 10))
        })
        .unwrap();
        write_tx(store, |tx| {
            tx.put_fleet_report(&report("pos-0001", 3, None, 11))
        })
        .unwrap();
        let newer = report("pos-0002", 4, Some("mirror unreachable"), 12);
        write_tx(store, |tx| tx.put_fleet_report(&newer)).unwrap();

        let all = read_tx(store, |tx| tx.fleet_reports(None)).unwrap();
        assert_eq!(all, vec![report("pos-0001", 3, None, 11), newer.clone()]);
        let one = read_tx(store, |tx| tx.fleet_reports(Some("pos-0002"))).unwrap();
        assert_eq!(one, vec![newer]);
        let none = read_tx(store, |tx| tx.fleet_reports(Some("pos-0009"))).unwrap();
        assert!(none.is_empty());
    });
}

#[test]
fn empty_report_round_trips_in_both_stores() {
    both(|store, _| {
        let empty = FleetReport {
            name: "kiosk-0001".to_owned(),
            serial: "01".to_owned(),
            received_at: 5,
            ..FleetReport::default()
        };
        write_tx(store, |tx| tx.put_fleet_report(&empty)).unwrap();
        assert_eq!(
            read_tx(store, |tx| tx.fleet_reports(None)).unwrap(),
            vec![empty.clone()]
        );
    });
}

#[test]
fn release_number_too_large_refused_with_nothing_written() {
    both(|store, _| {
        let result = write_tx(store, |tx| {
            tx.put_fleet_report(&report("pos-0001", 1, None, 1))?;
            tx.put_fleet_report(&report("pos-0002", u64::MAX, None, 2))
        });
        assert!(
            matches!(result, Err(StoreError::OutOfRange(_))),
            "{result:?}"
        );
        assert!(read_tx(store, |tx| tx.fleet_reports(None))
            .unwrap()
            .is_empty());
    });
}

fn account(name: &str) -> AccountRecord {
    AccountRecord {
        name: name.to_owned(),
        role: "operator".to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".to_owned(),
        password_one_time: true,
        mfa_required: true,
        totp_secret: None,
        totp_enrolled_at: None,
        totp_last_step: None,
        created_at: 1,
        disabled_at: None,
        failed_logins: 0,
        locked_until: None,
        last_login_at: None,
    }
}

#[test]
fn console_accounts_stored_and_failures_counted_across_servers() {
    both(|a, b| {
        write_tx(a, |tx| tx.insert_account(&account("alice"))).unwrap();
        let taken = write_tx(b, |tx| tx.insert_account(&account("alice")));
        assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
        let mut changed = account("alice");
        changed.password_one_time = false;
        changed.totp_secret = Some("00ff".to_owned());
        changed.totp_enrolled_at = Some(5);
        assert!(write_tx(b, |tx| tx.update_account(&changed)).unwrap());
        assert!(!write_tx(b, |tx| tx.update_account(&account("nobody"))).unwrap());
        assert_eq!(
            read_tx(a, |tx| tx.account("alice")).unwrap().unwrap(),
            changed
        );
        // Concurrent failures on two servers all count; the fifth locks.
        concurrently(a, b, 8, |store, _| {
            write_tx(store, |tx| tx.count_login_failure("alice", 5, 1_000)).unwrap()
        });
        let counted = read_tx(a, |tx| tx.account("alice")).unwrap().unwrap();
        assert_eq!(
            (counted.failed_logins, counted.locked_until),
            (8, Some(1_000))
        );
        assert_eq!(
            write_tx(a, |tx| tx.count_login_failure("nobody", 5, 1_000)).unwrap(),
            None
        );
        // A TOTP step is accepted once, whoever asks first; only later steps after it.
        let accepted = concurrently(a, b, 8, |store, _| {
            write_tx(store, |tx| tx.accept_totp_step("alice", 100)).unwrap()
        });
        assert_eq!(accepted.iter().filter(|ok| **ok).count(), 1);
        assert!(!write_tx(a, |tx| tx.accept_totp_step("alice", 99)).unwrap());
        assert!(write_tx(b, |tx| tx.accept_totp_step("alice", 101)).unwrap());
        write_tx(a, |tx| tx.insert_account(&account("bob"))).unwrap();
        let names: Vec<String> = read_tx(b, |tx| tx.list_accounts())
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names, ["alice", "bob"]);
    });
}

#[test]
fn recovery_codes_used_once_and_sessions_expire() {
    both(|a, b| {
        let hashes: Vec<String> = (0..3).map(|i| format!("code-{i}")).collect();
        write_tx(a, |tx| tx.replace_recovery_codes("alice", &hashes, 1)).unwrap();
        let used = concurrently(a, b, 6, |store, _| {
            write_tx(store, |tx| tx.use_recovery_code("alice", "code-1", 2)).unwrap()
        });
        assert_eq!(used.iter().filter(|ok| **ok).count(), 1);
        assert!(!write_tx(a, |tx| tx.use_recovery_code("bob", "code-0", 2)).unwrap());
        assert_eq!(read_tx(b, |tx| tx.recovery_codes_left("alice")).unwrap(), 2);
        write_tx(a, |tx| tx.replace_recovery_codes("alice", &[], 3)).unwrap();
        assert_eq!(read_tx(b, |tx| tx.recovery_codes_left("alice")).unwrap(), 0);

        let session = |id: &str, account: &str, seen: i64, expires: i64| SessionRecord {
            id_hash: id.to_owned(),
            account: account.to_owned(),
            stage: "active".to_owned(),
            created_at: 0,
            last_seen_at: seen,
            expires_at: expires,
        };
        write_tx(a, |tx| {
            tx.insert_session(&session("s1", "alice", 100, 1_000))?;
            tx.insert_session(&session("s2", "alice", 100, 1_000))?;
            tx.insert_session(&session("s3", "bob", 10, 1_000))?;
            tx.insert_session(&session("s4", "bob", 100, 150))
        })
        .unwrap();
        write_tx(b, |tx| tx.touch_session("s1", 120)).unwrap();
        assert_eq!(
            read_tx(a, |tx| tx.session("s1")).unwrap(),
            Some(session("s1", "alice", 120, 1_000))
        );
        // At 200, idle since before 50 or past expiry: s3 (idle) and s4 (expired) go.
        assert_eq!(
            write_tx(a, |tx| tx.delete_expired_sessions(200, 50)).unwrap(),
            2
        );
        assert_eq!(read_tx(b, |tx| tx.session("s3")).unwrap(), None);
        assert!(write_tx(b, |tx| tx.delete_session("s2")).unwrap());
        assert!(!write_tx(b, |tx| tx.delete_session("s2")).unwrap());
        assert_eq!(write_tx(a, |tx| tx.delete_sessions_of("alice")).unwrap(), 1);
        assert_eq!(read_tx(b, |tx| tx.session("s1")).unwrap(), None);
    });
}

fn cert_of(serial: u8, name: &str, profile: &str, issued_at: i64, not_after: i64) -> CertRecord {
    CertRecord {
        profile: profile.to_owned(),
        issued_at,
        not_after,
        ..record(&[serial, 0xee], name)
    }
}

/// Two certificates of `kiosk-0001` (the newer one revoked; group `kiosks`), a `server`
/// certificate (not an endpoint), `Lab-0001` (issued by hand, no token, no group recorded,
/// never reported), and reports of `kiosk-0001` and of `ghost-0001` (group `pilot`, no
/// certificate; its check failed, and so did the release its rollout offered).
fn small_fleet(store: &dyn Store) {
    write_tx(store, |tx| {
        tx.insert_enrollment_token(&EnrollmentTokenRecord {
            base: "kiosk".to_owned(),
            ..token("t1", "kiosk-0001")
        })?;
        tx.insert_certificate(&cert_of(1, "kiosk-0001", "endpoint", 100, 1_000))?;
        tx.insert_certificate(&cert_of(2, "kiosk-0001", "endpoint", 200, 2_000))?;
        tx.insert_certificate(&cert_of(3, "web.example", "server", 200, 2_000))?;
        tx.insert_certificate(&cert_of(4, "Lab-0001", "endpoint", 150, 400))?;
        // Recorded after the certificate (as enrollment does) and before the report.
        tx.set_endpoint_group(&group_record("kiosk-0001", "kiosks", 100))?;
        tx.set_endpoint_group(&group_record("ghost-0001", "pilot", 100))?;
        Ok::<_, StoreError>(())
    })
    .unwrap();
    write_tx(store, |tx| {
        let revoked = Revocation {
            revoked_at: 250,
            reason: Reason::KeyCompromise,
        };
        tx.revoke(&Serial::from_bytes(&[2, 0xee]), revoked)?;
        tx.put_fleet_report(&report("kiosk-0001", 3, None, 300))?;
        tx.put_fleet_report(&FleetReport {
            channel: Some("stable".to_owned()),
            release: Some(2),
            state: Some(RolloutState::Failed),
            ..report("ghost-0001", 1, Some("disk full"), 310)
        })?;
        tx.put_fleet_report(&report("kiosk-0001", 3, None, 3_700))
    })
    .unwrap();
}

fn group_record(name: &str, in_group: &str, at: i64) -> EndpointGroupRecord {
    EndpointGroupRecord {
        name: name.to_owned(),
        group: group(in_group),
        changed_at: at,
    }
}

fn page(store: &dyn Store, query: EndpointQuery) -> Vec<String> {
    read_tx(store, |tx| tx.endpoints_page(&query))
        .unwrap()
        .into_iter()
        .map(|row| row.name)
        .collect()
}

#[test]
fn endpoints_view_follows_certificates_revocations_and_reports() {
    both(|store, other| {
        small_fleet(store);
        let all = |limit| EndpointQuery {
            now: 500,
            limit,
            ..EndpointQuery::default()
        };
        let rows = read_tx(other, |tx| tx.endpoints_page(&all(10))).unwrap();
        assert_eq!(
            rows,
            vec![
                EndpointRow {
                    name: "ghost-0001".into(),
                    group: "pilot".into(),
                    serial: None,
                    not_after: None,
                    revoked_at: None,
                    installed_version: Some(1),
                    last_seen: Some(310),
                    last_result: Some("error".into()),
                    channel: Some("stable".into()),
                    offered_release: Some(2),
                    rollout_state: Some(RolloutState::Failed),
                },
                EndpointRow {
                    name: "kiosk-0001".into(),
                    group: "kiosks".into(),
                    serial: Some(Serial::from_bytes(&[2, 0xee]).to_hex()),
                    not_after: Some(2_000),
                    revoked_at: Some(250),
                    installed_version: Some(3),
                    last_seen: Some(3_700),
                    last_result: Some("installed".into()),
                    channel: None,
                    offered_release: None,
                    rollout_state: None,
                },
                EndpointRow {
                    name: "Lab-0001".into(),
                    group: "default".into(),
                    serial: Some(Serial::from_bytes(&[4, 0xee]).to_hex()),
                    not_after: Some(400),
                    revoked_at: None,
                    installed_version: None,
                    last_seen: None,
                    last_result: None,
                    channel: None,
                    offered_release: None,
                    rollout_state: None,
                },
            ],
            "ordered by lower-case name; the newest endpoint certificate counts"
        );
        // Keyset paging.
        assert_eq!(page(other, all(2)), ["ghost-0001", "kiosk-0001"]);
        let next = EndpointQuery {
            after: Some("kiosk-0001".into()),
            ..all(2)
        };
        assert_eq!(page(other, next), ["Lab-0001"]);
        // Filters, each on an index.
        let by = |q: EndpointQuery| page(other, q);
        let state = |f| EndpointQuery {
            state: Some(f),
            ..all(10)
        };
        assert_eq!(by(state(EndpointFilter::Revoked)), ["kiosk-0001"]);
        assert_eq!(by(state(EndpointFilter::Expired)), ["Lab-0001"]);
        assert!(by(state(EndpointFilter::Valid)).is_empty());
        assert_eq!(by(state(EndpointFilter::NeverReported)), ["Lab-0001"]);
        assert_eq!(by(state(EndpointFilter::Failing)), ["ghost-0001"]);
        assert_eq!(
            by(EndpointQuery {
                now: 300,
                ..state(EndpointFilter::Valid)
            }),
            ["Lab-0001"]
        );
        let in_group = |g: &str| EndpointQuery {
            group: Some(g.into()),
            ..all(10)
        };
        assert_eq!(by(in_group("kiosks")), ["kiosk-0001"]);
        assert_eq!(by(in_group("pilot")), ["ghost-0001"]);
        assert_eq!(by(in_group("default")), ["Lab-0001"], "no group recorded");
        let release = EndpointQuery {
            release: Some(1),
            ..all(10)
        };
        assert_eq!(by(release), ["ghost-0001"]);
        let prefix = EndpointQuery {
            prefix: Some("LA".into()),
            ..all(10)
        };
        assert_eq!(by(prefix), ["Lab-0001"], "prefixes ignore case");
        let none = EndpointQuery {
            prefix: Some("kiosk-0001x".into()),
            ..all(10)
        };
        assert!(by(none).is_empty());
        assert_eq!(
            read_tx(other, |tx| tx.endpoint_counts(500)).unwrap(),
            EndpointCounts {
                total: 3,
                valid: 0,
                revoked: 1,
                expired: 1,
                never_reported: 1,
                failing: 1,
            }
        );
        assert_eq!(
            read_tx(other, |tx| tx.installed_release_counts()).unwrap(),
            vec![(None, 1), (Some(1), 1), (Some(3), 1)]
        );
        assert_eq!(
            read_tx(other, |tx| tx.report_hours(0)).unwrap(),
            vec![
                ReportHour {
                    hour: 0,
                    reports: 2,
                    failures: 1
                },
                ReportHour {
                    hour: 1,
                    reports: 1,
                    failures: 0
                },
            ],
            "every report counted once, in the hour it arrived"
        );
        assert_eq!(read_tx(other, |tx| tx.report_hours(1)).unwrap().len(), 1);
        // An operator moves an endpoint: the view follows; a new certificate keeps the move.
        write_tx(store, |tx| {
            tx.set_endpoint_group(&group_record("kiosk-0001", "pilot", 400))?;
            tx.insert_certificate(&cert_of(5, "kiosk-0001", "endpoint", 400, 3_000))
        })
        .unwrap();
        assert_eq!(by(in_group("pilot")), ["ghost-0001", "kiosk-0001"]);
        assert!(by(in_group("kiosks")).is_empty());
    });
}

#[test]
fn audit_tokens_and_certificates_paged_newest_first() {
    both(|store, other| {
        for i in 0..5 {
            let actor = if i % 2 == 0 { "account:alice" } else { "cli" };
            write_tx(store, |tx| {
                tx.append_audit(&NewAuditEntry::now(
                    actor,
                    "revoke",
                    serde_json::json!({"i": i}),
                ))?;
                tx.append_audit(&NewAuditEntry::now(
                    actor,
                    "issue",
                    serde_json::json!({"i": i}),
                ))
            })
            .unwrap();
        }
        let seqs = |q: AuditQuery| -> Vec<i64> {
            read_tx(other, |tx| tx.audit_page(&q))
                .unwrap()
                .into_iter()
                .map(|e| e.seq)
                .collect()
        };
        assert_eq!(
            seqs(AuditQuery {
                limit: 3,
                ..AuditQuery::default()
            }),
            [10, 9, 8]
        );
        assert_eq!(
            seqs(AuditQuery {
                before: Some(8),
                limit: 3,
                ..AuditQuery::default()
            }),
            [7, 6, 5]
        );
        assert_eq!(
            seqs(AuditQuery {
                actor: Some("account:alice".into()),
                action: Some("revoke".into()),
                limit: 10,
                ..AuditQuery::default()
            }),
            [9, 5, 1]
        );

        write_tx(store, |tx| {
            for (i, at) in [(1, 10), (2, 30), (3, 20), (4, 30)] {
                tx.insert_enrollment_token(&EnrollmentTokenRecord {
                    created_at: at,
                    hash: format!("h{i}"),
                    ..token(&format!("t{i}"), &format!("web-000{i}"))
                })?;
                tx.insert_certificate(&cert_of(
                    i,
                    &format!("web-000{i}"),
                    "endpoint",
                    at,
                    at + 100,
                ))?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
        let tokens = |after| -> Vec<String> {
            read_tx(other, |tx| tx.enrollment_tokens_page(after, 2))
                .unwrap()
                .into_iter()
                .map(|t| t.id)
                .collect()
        };
        assert_eq!(tokens(None), ["t4", "t2"]);
        assert_eq!(tokens(Some((30, "t2".to_owned()))), ["t3", "t1"]);
        let certs = |after| -> Vec<String> {
            read_tx(other, |tx| tx.certificates_page(after, 2))
                .unwrap()
                .into_iter()
                .map(|c| c.name)
                .collect()
        };
        assert_eq!(certs(None), ["web-0002", "web-0004"]);
        let last = Serial::from_bytes(&[4, 0xee]).to_hex();
        assert_eq!(certs(Some((30, last))), ["web-0003", "web-0001"]);
        let (count, soonest) = read_tx(other, |tx| tx.certificates_expiring(115, 200, 1)).unwrap();
        assert_eq!(count, 3, "web-0003 and web-0002/4 expire in [115, 200)");
        assert_eq!(soonest.len(), 1);
        assert_eq!(soonest[0].name, "web-0003");
    });
}

#[test]
fn endpoints_of_an_older_store_backfilled_by_the_migration() {
    // A fleet written by this version, then the store put back at schema version 4 (before
    // the console: no endpoints table, no triggers), so that the migration runs on the data.
    let undo_v5 = "DROP TABLE endpoints; DROP TABLE fleet_report_hours; DROP TABLE admin_accounts;
        DROP TABLE recovery_codes; DROP TABLE console_sessions; DROP INDEX audit_actor;
        DROP INDEX audit_action; DROP INDEX enrollment_tokens_created;
        DROP INDEX certificates_expiry;";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");
    small_fleet(&SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(&format!(
            "{UNDO_V7_SQLITE} DROP TRIGGER endpoints_on_revoke; {undo_v5}
             ALTER TABLE audit DROP COLUMN chain; PRAGMA user_version = 4;"
        ))
        .unwrap();
    let schema = PgSchema::new();
    small_fleet(&schema.open());
    admin_sql(&format!(
        "SET search_path TO {0};
         DROP TRIGGER endpoints_on_issue ON certificates;
         DROP TRIGGER endpoints_on_revoke ON certificates;
         DROP TRIGGER endpoints_on_report ON fleet_reports;
         DROP FUNCTION endpoints_on_issue(); DROP FUNCTION endpoints_on_revoke();
         DROP FUNCTION endpoints_on_report(); {undo_v5}
         UPDATE herald_schema SET version = 4;",
        schema.name
    ));
    let sqlite = SqliteStore::open(&path).unwrap();
    let pg = schema.open();
    for store in [&sqlite as &dyn Store, &pg] {
        let q = EndpointQuery {
            now: 500,
            limit: 10,
            ..EndpointQuery::default()
        };
        assert_eq!(page(store, q), ["ghost-0001", "kiosk-0001", "Lab-0001"]);
        let counts = read_tx(store, |tx| tx.endpoint_counts(500)).unwrap();
        assert_eq!(
            (counts.revoked, counts.failing, counts.never_reported),
            (1, 1, 1)
        );
    }
}

fn group(name: &str) -> Group {
    Group::new(name).unwrap()
}

/// A report of the rollout fields: `channel`, `release`, `state`, sent with a certificate
/// of `group`.
fn rollout(
    name: &str,
    channel: &str,
    release: u64,
    in_group: &str,
    state: RolloutState,
) -> FleetReport {
    FleetReport {
        name: name.to_owned(),
        serial: "01".to_owned(),
        received_at: 1,
        group: group(in_group),
        channel: Some(channel.to_owned()),
        release: Some(release),
        state: Some(state),
        reason: (state == RolloutState::RolledBack).then(|| "health check: exit 3".to_owned()),
        ..FleetReport::default()
    }
}

#[test]
fn rollout_fields_and_group_of_a_report_round_trip_in_both_stores() {
    both(|a, b| {
        let sent = rollout("pos-0001", "beta", 8, "pilot", RolloutState::RolledBack);
        write_tx(a, |tx| tx.put_fleet_report(&sent)).unwrap();
        assert_eq!(read_tx(b, |tx| tx.fleet_reports(None)).unwrap(), [sent]);
        // A newer report replaces every field, the rollout ones included.
        let newer = FleetReport {
            name: "pos-0001".to_owned(),
            serial: "02".to_owned(),
            received_at: 2,
            ..FleetReport::default()
        };
        write_tx(b, |tx| tx.put_fleet_report(&newer)).unwrap();
        assert_eq!(read_tx(a, |tx| tx.fleet_reports(None)).unwrap(), [newer]);
    });
}

#[test]
fn releases_summary_counts_each_endpoints_latest_report_once_in_both_stores() {
    use RolloutState::{Failed, Held, Installed, Pending, RolledBack};
    both(|a, b| {
        write_tx(a, |tx| {
            for (i, state) in [Installed, Installed, Installed, RolledBack, Pending]
                .into_iter()
                .enumerate()
            {
                tx.put_fleet_report(&rollout(&format!("pilot-{i}"), "stable", 7, "pilot", state))?;
            }
            for (i, state) in [Pending, Pending, Failed, Held].into_iter().enumerate() {
                tx.put_fleet_report(&rollout(
                    &format!("rest-{i}"),
                    "stable",
                    7,
                    "default",
                    state,
                ))?;
            }
            tx.put_fleet_report(&rollout("beta-0", "beta", 8, "default", Installed))?;
            // Reports of agents without a rollout policy, or with half of its fields, are
            // not counted.
            tx.put_fleet_report(&report("old-0001", 6, None, 3))?;
            tx.put_fleet_report(&FleetReport {
                channel: None,
                ..rollout("half-0001", "stable", 7, "pilot", Installed)
            })
        })
        .unwrap();
        // pilot-0 now reports a failure: its earlier `installed` no longer counts.
        write_tx(b, |tx| {
            tx.put_fleet_report(&rollout("pilot-0", "stable", 7, "pilot", Failed))
        })
        .unwrap();
        let counts = read_tx(b, |tx| tx.release_counts()).unwrap();
        let mut seen: Vec<(String, u64, String, RolloutState, u64)> = counts
            .into_iter()
            .map(|c: ReleaseStateCount| {
                (
                    c.channel,
                    c.release,
                    c.group.to_string(),
                    c.state,
                    c.endpoints,
                )
            })
            .collect();
        seen.sort();
        let row = |c: &str, r: u64, g: &str, s: RolloutState, n: u64| {
            (c.to_owned(), r, g.to_owned(), s, n)
        };
        assert_eq!(
            seen,
            [
                row("beta", 8, "default", Installed, 1),
                row("stable", 7, "default", Pending, 2),
                row("stable", 7, "default", Failed, 1),
                row("stable", 7, "default", Held, 1),
                row("stable", 7, "pilot", Installed, 2),
                row("stable", 7, "pilot", Pending, 1),
                row("stable", 7, "pilot", Failed, 1),
                row("stable", 7, "pilot", RolledBack, 1),
            ]
        );
    });
}

#[test]
fn endpoint_group_recorded_replaced_and_listed_in_both_stores() {
    both(|a, b| {
        assert_eq!(
            read_tx(a, |tx| tx.endpoint_group("pos-0001")).unwrap(),
            None
        );
        let record = |name: &str, g: &str, at: i64| EndpointGroupRecord {
            name: name.to_owned(),
            group: group(g),
            changed_at: at,
        };
        write_tx(a, |tx| {
            tx.set_endpoint_group(&record("pos-0002", "kiosks", 1))?;
            tx.set_endpoint_group(&record("pos-0001", "pilot", 2))
        })
        .unwrap();
        write_tx(b, |tx| {
            tx.set_endpoint_group(&record("pos-0001", "default", 3))
        })
        .unwrap();
        assert_eq!(
            read_tx(a, |tx| tx.endpoint_group("pos-0001")).unwrap(),
            Some(record("pos-0001", "default", 3))
        );
        assert_eq!(
            read_tx(b, |tx| tx.endpoint_groups()).unwrap(),
            [
                record("pos-0001", "default", 3),
                record("pos-0002", "kiosks", 1)
            ]
        );
    });
}

#[test]
fn enrollment_token_keeps_its_group_in_both_stores() {
    both(|a, b| {
        let pilot = EnrollmentTokenRecord {
            group: group("pilot"),
            ..token("p", "kiosk-0001")
        };
        write_tx(a, |tx| tx.insert_enrollment_token(&pilot)).unwrap();
        let stored = read_tx(b, |tx| tx.enrollment_token_by_hash("hash-p"))
            .unwrap()
            .unwrap();
        assert_eq!(stored.group, group("pilot"));
        assert_eq!(
            read_tx(b, |tx| tx.list_enrollment_tokens()).unwrap(),
            [pilot]
        );
    });
}

/// Takes a SQLite store of this version back to schema version 6 (before endpoint groups and
/// rollout fields): the objects and columns step 7 adds are removed. The triggers of the
/// `endpoints` view go too (step 7 writes them anew).
const UNDO_V7_SQLITE: &str = "
    DROP TRIGGER endpoints_on_issue; DROP TRIGGER endpoints_on_report;
    DROP TABLE endpoint_groups; DROP INDEX fleet_reports_releases;
    ALTER TABLE enrollment_tokens DROP COLUMN group_name;
    ALTER TABLE fleet_reports DROP COLUMN group_name;
    ALTER TABLE fleet_reports DROP COLUMN channel;
    ALTER TABLE fleet_reports DROP COLUMN offered_release;
    ALTER TABLE fleet_reports DROP COLUMN rollout_state;
    ALTER TABLE fleet_reports DROP COLUMN rollout_reason;
    ALTER TABLE endpoints DROP COLUMN channel;
    ALTER TABLE endpoints DROP COLUMN offered_release;
    ALTER TABLE endpoints DROP COLUMN rollout_state;";

#[test]
fn store_at_version_6_upgraded_to_groups_and_rollout_fields() {
    // A fleet written by this version, then put back at schema version 6, where the console's
    // group of an endpoint was the base name of its token.
    let v6_groups = "UPDATE endpoints SET grp = 'kiosk' WHERE name = 'kiosk-0001';
        UPDATE endpoints SET grp = name WHERE name <> 'kiosk-0001';";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");
    small_fleet(&SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(&format!(
            "{UNDO_V7_SQLITE} {v6_groups} PRAGMA user_version = 6;"
        ))
        .unwrap();
    let schema = PgSchema::new();
    small_fleet(&schema.open());
    admin_sql(&format!(
        "SET search_path TO {0};
         DROP TABLE endpoint_groups; DROP FUNCTION endpoints_on_group();
         ALTER TABLE enrollment_tokens DROP COLUMN group_name;
         ALTER TABLE fleet_reports DROP COLUMN group_name, DROP COLUMN channel,
             DROP COLUMN offered_release, DROP COLUMN rollout_state,
             DROP COLUMN rollout_reason;
         ALTER TABLE endpoints DROP COLUMN channel, DROP COLUMN offered_release,
             DROP COLUMN rollout_state;
         {v6_groups}
         UPDATE herald_schema SET version = 6;",
        schema.name
    ));
    let sqlite = SqliteStore::open(&path).unwrap();
    let pg = schema.open();
    for store in [&sqlite as &dyn Store, &pg] {
        // Nothing recorded a group before: tokens, reports and endpoints are in `default`.
        let token = read_tx(store, |tx| tx.enrollment_token("t1"))
            .unwrap()
            .unwrap();
        assert!(token.group.is_default());
        let reports = read_tx(store, |tx| tx.fleet_reports(None)).unwrap();
        assert_eq!(reports.len(), 2);
        assert!(reports
            .iter()
            .all(|r| r.group.is_default() && r.state.is_none()));
        assert!(read_tx(store, |tx| tx.release_counts()).unwrap().is_empty());
        assert!(read_tx(store, |tx| tx.endpoint_groups())
            .unwrap()
            .is_empty());
        let all = EndpointQuery {
            now: 500,
            limit: 10,
            ..EndpointQuery::default()
        };
        let rows = read_tx(store, |tx| tx.endpoints_page(&all)).unwrap();
        assert_eq!(rows.len(), 3);
        assert!(
            rows.iter()
                .all(|r| r.group == "default" && r.rollout_state.is_none()),
            "{rows:?}"
        );
        // The view's triggers of version 7 are in place: a recorded group and a report's
        // rollout fields reach the endpoint's row.
        write_tx(store, |tx| {
            tx.set_endpoint_group(&group_record("kiosk-0001", "kiosks", 600))?;
            tx.put_fleet_report(&rollout(
                "kiosk-0001",
                "stable",
                4,
                "kiosks",
                RolloutState::Installed,
            ))
        })
        .unwrap();
        let kiosks = EndpointQuery {
            group: Some("kiosks".into()),
            ..all.clone()
        };
        let rows = read_tx(store, |tx| tx.endpoints_page(&kiosks)).unwrap();
        assert_eq!(
            rows.iter()
                .map(|r| (r.name.as_str(), r.offered_release, r.rollout_state))
                .collect::<Vec<_>>(),
            [("kiosk-0001", Some(4), Some(RolloutState::Installed))]
        );
        assert_eq!(read_tx(store, |tx| tx.release_counts()).unwrap().len(), 1);
    }
}

#[test]
fn enrollment_records_the_group_without_another_postgres_round_trip() {
    let schema = PgSchema::new();
    let pg = schema.open();
    write_tx(&pg, |tx| {
        tx.insert_enrollment_token(&token("t1", "pos-0001"))?;
        tx.insert_enrollment_token(&token("t2", "pos-0002"))
    })
    .unwrap();
    // The store calls of an enrollment's transaction: the certificate, the token burnt, the
    // endpoint's group (from this version on), the audit entry, the commit.
    let enroll = |id: &str, name: &str, serial: u8, group_of: Option<&str>| {
        let before = pg.transaction_round_trips();
        write_tx(&pg, |tx| {
            let cert = cert_of(serial, name, "endpoint", 100, 1_000);
            tx.insert_certificate(&cert)?;
            assert!(tx.burn_enrollment_token(id, 100, &cert.serial.to_hex(), "spki")?);
            if let Some(g) = group_of {
                tx.set_endpoint_group(&group_record(name, g, 100))?;
            }
            tx.append_audit(&NewAuditEntry::now(
                "test",
                "certificate-issue",
                serde_json::json!({}),
            ))
        })
        .unwrap();
        pg.transaction_round_trips() - before
    };
    let without_group = enroll("t1", "pos-0001", 1, None);
    let with_group = enroll("t2", "pos-0002", 2, Some("pilot"));
    assert_eq!(
        (without_group, with_group),
        (2, 2),
        "BEGIN + certificate + burn, then the rest with COMMIT"
    );
    assert_eq!(
        read_tx(&pg, |tx| tx.endpoint_group("pos-0002"))
            .unwrap()
            .map(|r| r.group),
        Some(group("pilot"))
    );
}
