//! Benchmark: enrollments per second over HTTPS with one, two and three `herald-ca serve`
//! processes sharing one PostgreSQL database, against one server on the SQLite store, in one
//! run. Clients are spread round-robin over the servers' HTTPS URLs (as a load balancer would);
//! each keeps one connection. Tokens are created over the API and client keys generated before
//! the clock starts; each enrollment is token check + proof of possession + issuance + durable
//! store in one transaction. Prints a table. Not run by CI.
//!
//! ```sh
//! cargo build --release -p herald-ca
//! cargo run --release -p herald-ca --example bench-ha -- [ENROLLMENTS] [CLIENTS...]
//! ```
//!
//! ENROLLMENTS per row (default 4,000); CLIENTS the concurrency levels (default 64).
//! PostgreSQL: `HERALD_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! a schema of its own, dropped at the end.

#![allow(clippy::unwrap_used)]

use std::path::Path;

mod bench_common;
#[path = "../tests/pg_support/mod.rs"]
mod pg_support;

use bench_common::http::{
    create_tokens, csr_pem, enroll_bodies, init_herald, load, row, serve_herald,
};

const SERVERS: [usize; 3] = [1, 2, 3];

/// Drops the benchmark's PostgreSQL schema, also when the run fails.
struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        pg_support::drop_schema(&self.0);
    }
}

/// Initialises a CA in `dir`, then for each count in `servers` starts servers up to that count
/// and measures one row per concurrency level. `csrs` has one request per enrollment made.
fn measure(
    rt: &tokio::runtime::Runtime,
    store: &str,
    dir: &Path,
    servers: &[usize],
    levels: &[usize],
    per_row: usize,
    csrs: &[String],
) {
    let (root, operator) = init_herald(dir);
    let mut running = vec![serve_herald(dir)];
    let tokens = rt.block_on(create_tokens(&root, &running[0].1, &operator, csrs.len()));
    let mut offset = 0;
    for &n in servers {
        while running.len() < n {
            running.push(serve_herald(dir));
        }
        let urls: Vec<String> = running
            .iter()
            .map(|(_, base)| format!("{base}/api/v1/enroll"))
            .collect();
        let label = format!("{store}, {n} server{}", if n == 1 { "" } else { "s" });
        for &clients in levels {
            let range = offset..offset + per_row;
            let bodies = enroll_bodies(&csrs[range.clone()], &tokens[range]);
            let outcome = rt.block_on(load(&root, &urls, bodies, clients));
            row(&label, clients, &outcome);
            offset += per_row;
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let per_row: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4000);
    let mut levels: Vec<usize> = args.filter_map(|a| a.parse().ok()).collect();
    if levels.is_empty() {
        levels.push(64);
    }
    let rows = (1 + SERVERS.len()) * levels.len();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    eprintln!(
        "generating {} keys and requests, creating tokens (not measured)...",
        rows * per_row
    );
    let csrs: Vec<String> = (0..rows * per_row).map(|_| csr_pem()).collect();
    let (sqlite_csrs, pg_csrs) = csrs.split_at(levels.len() * per_row);
    bench_common::stop_servers_on_signal();
    let tmp = tempfile::tempdir().unwrap();

    println!(
        "Enrollment over HTTPS on loopback, {per_row} per row, every certificate and its audit \
         entry durably recorded before the answer"
    );
    println!();
    println!("| store, servers | clients | enrollments | per second | p50 | p99 | errors |");
    println!("|---|---|---|---|---|---|---|");

    std::env::remove_var("HERALD_CA_STORE_URL");
    std::env::remove_var("HERALD_CA_STORE_SCHEMA");
    measure(
        &rt,
        "SQLite",
        &tmp.path().join("sqlite"),
        &[1],
        &levels,
        per_row,
        sqlite_csrs,
    );

    let schema = Schema(pg_support::unique_schema("herald_bench_ha"));
    std::env::set_var("HERALD_CA_STORE_URL", pg_support::pg_url());
    std::env::set_var("HERALD_CA_STORE_SCHEMA", &schema.0);
    measure(
        &rt,
        "PostgreSQL",
        &tmp.path().join("pg"),
        &SERVERS,
        &levels,
        per_row,
        pg_csrs,
    );
    bench_common::assert_no_server_left(tmp.path());
}
