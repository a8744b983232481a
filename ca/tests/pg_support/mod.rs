//! PostgreSQL set-up shared by the store suite, the HA scenarios and the HA benchmark: the
//! server's URL (127.0.0.1:5432, user `postgres`, database `test`, or
//! `HERALD_TEST_POSTGRES_URL`), schema names no other test or run uses, and plain SQL.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

/// The test database.
pub fn pg_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema name no other test, process or run uses (`prefix_PID_NANOS_N`).
pub fn unique_schema(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{prefix}_{}_{nanos}_{n}", std::process::id())
}

/// Runs one SQL batch on the test database. Works from any thread, also one that drives a
/// Tokio runtime (it runs on a thread of its own).
pub fn run_sql(sql: &str) {
    let sql = sql.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
                .await
                .expect("PostgreSQL at 127.0.0.1:5432 (user postgres, database test)");
            let driver = tokio::spawn(connection);
            client.batch_execute(&sql).await.unwrap();
            drop(client);
            let _ = driver.await;
        });
    })
    .join()
    .unwrap();
}

/// The first column of the first row `sql` returns, as text (empty if none).
pub fn query_text(sql: &str) -> String {
    let sql = sql.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
                .await
                .expect("PostgreSQL at 127.0.0.1:5432 (user postgres, database test)");
            let driver = tokio::spawn(connection);
            let row = client.query_one(&sql, &[]).await.unwrap();
            let text: Option<String> = row.get(0);
            drop(client);
            let _ = driver.await;
            text.unwrap_or_default()
        })
    })
    .join()
    .unwrap()
}

/// Drops a schema and everything in it.
pub fn drop_schema(schema: &str) {
    run_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
}
