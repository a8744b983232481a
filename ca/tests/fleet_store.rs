//! Fleet status reports in both stores, SQLite (a temporary file) and PostgreSQL
//! (127.0.0.1:5432, user `postgres`, database `test`, or `HERALD_TEST_POSTGRES_URL`; a schema
//! of its own, dropped at the end): one report per endpoint, the newest replacing the older,
//! read back whole, filtered by name, and a release number the database cannot hold refused
//! with nothing written.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use herald_ca::store::{read_tx, write_tx, FleetReport, SqliteStore, Store, StoreError};
use herald_ca::store_pg::{PgOptions, PgStore};

fn pg_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A PostgreSQL schema used by one test, dropped when this goes out of scope.
struct Schema(String);

impl Schema {
    fn new(prefix: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Self(format!("{prefix}_{}_{nanos}", std::process::id()))
    }

    fn open(&self) -> PgStore {
        PgStore::open(&PgOptions {
            url: pg_url(),
            schema: self.0.clone(),
            pool_size: 2,
            connect_timeout: Duration::from_secs(5),
        })
        .expect("PostgreSQL at 127.0.0.1:5432 (user postgres, database test)")
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await
                {
                    let driver = tokio::spawn(connection);
                    let _ = client.batch_execute(&sql).await;
                    drop(client);
                    let _ = driver.await;
                }
            });
        })
        .join();
    }
}

/// Runs `check` against a fresh SQLite store, then a fresh PostgreSQL store.
fn both(prefix: &str, check: impl Fn(&dyn Store)) {
    let dir = tempfile::tempdir().unwrap();
    check(&SqliteStore::open(&dir.path().join("herald.db")).unwrap());
    let schema = Schema::new(prefix);
    check(&schema.open());
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
    }
}

#[test]
fn newest_report_per_endpoint_kept_in_both_stores() {
    both("herald_fleet_newest", |store| {
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
    both("herald_fleet_empty", |store| {
        let empty = FleetReport {
            name: "kiosk-0001".to_owned(),
            serial: "01".to_owned(),
            received_at: 5,
            installed_version: None,
            last_check: None,
            last_result: None,
            last_error: None,
            unlisted: Vec::new(),
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
    both("herald_fleet_large", |store| {
        let result = write_tx(store, |tx| {
            tx.put_fleet_report(&report("pos-0001", 1, None, 1))?;
            tx.put_fleet_report(&report("pos-0002", u64::MAX, None, 2))
        });
        assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
        assert!(read_tx(store, |tx| tx.fleet_reports(None))
            .unwrap()
            .is_empty());
    });
}
