//! Benchmark: enrollments per second over HTTPS with one, two and three `herald-ca serve`
//! processes sharing one PostgreSQL database, against one server on the SQLite store, in one
//! run. Clients are spread round-robin over the servers' HTTPS URLs (as a load balancer would);
//! each keeps one connection. Tokens are created over the API and client keys generated before
//! the clock starts; each enrollment is token check + proof of possession + issuance + durable
//! store in one transaction. Prints a table with the CPU the `herald-ca` processes and the
//! PostgreSQL processes spent per enrollment (PostgreSQL's counts every client of the
//! database server, so run it on an otherwise idle database). Not run by CI.
//!
//! ```sh
//! cargo build --release -p herald-ca
//! cargo run --release -p herald-ca --example bench-ha -- [ENROLLMENTS] [CLIENTS...]
//! ```
//!
//! ENROLLMENTS per row (default 4,000); CLIENTS the concurrency levels (default 64).
//! PostgreSQL: `HERALD_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! a schema of its own per build, dropped at the end. With
//! `HERALD_BENCH_BEFORE=/path/to/previous/herald-ca`, every row is also measured with that
//! build, just before this one (its own data folder and schema).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

mod bench_common;
#[path = "../tests/pg_support/mod.rs"]
mod pg_support;

use bench_common::http::{
    builds, cpu_secs, create_tokens, csr_pem, enroll_bodies, init_herald, load, per_success_us,
    postgres_cpu_secs, row, serve_herald, Build, Server,
};

const SERVERS: [usize; 3] = [1, 2, 3];

/// Drops the benchmark's PostgreSQL schema, also when the run fails.
struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        pg_support::drop_schema(&self.0);
    }
}

/// One build's CA: its data folder, its store, its running servers and its unspent tokens.
struct Cluster<'b> {
    build: &'b Build,
    dir: PathBuf,
    /// The PostgreSQL schema (kept until the end of the run), or `None` for SQLite.
    schema: Option<Schema>,
    root: Vec<u8>,
    running: Vec<(Server, String)>,
    tokens: std::vec::IntoIter<String>,
}

/// Points the environment that `herald-ca` inherits at `schema`, or at the SQLite store.
fn select_store(schema: Option<&Schema>) {
    match schema {
        Some(schema) => {
            std::env::set_var("HERALD_CA_STORE_URL", pg_support::pg_url());
            std::env::set_var("HERALD_CA_STORE_SCHEMA", &schema.0);
        }
        None => {
            std::env::remove_var("HERALD_CA_STORE_URL");
            std::env::remove_var("HERALD_CA_STORE_SCHEMA");
        }
    }
}

impl<'b> Cluster<'b> {
    /// Initialises a CA in `dir` with `build` on the store the environment names, starts one
    /// server and creates `tokens` tokens.
    fn new(
        rt: &tokio::runtime::Runtime,
        build: &'b Build,
        dir: PathBuf,
        schema: Option<Schema>,
        tokens: usize,
    ) -> Self {
        select_store(schema.as_ref());
        let (root, operator) = init_herald(build, &dir);
        let running = vec![serve_herald(build, &dir)];
        let tokens = rt.block_on(create_tokens(&root, &running[0].1, &operator, tokens));
        Self {
            build,
            dir,
            schema,
            root,
            running,
            tokens: tokens.into_iter(),
        }
    }

    /// Stops all servers but the first (so that idle servers of another build hold no
    /// database connections during a row).
    fn shrink(&mut self) {
        self.running.truncate(1);
    }

    /// Measures one row with `servers` servers (starting more as needed).
    fn measure(
        &mut self,
        rt: &tokio::runtime::Runtime,
        servers: usize,
        clients: usize,
        csrs: &[String],
    ) {
        while self.running.len() < servers {
            select_store(self.schema.as_ref());
            self.running.push(serve_herald(self.build, &self.dir));
        }
        let urls: Vec<String> = self.running[..servers]
            .iter()
            .map(|(_, base)| format!("{base}/api/v1/enroll"))
            .collect();
        let tokens: Vec<String> = self.tokens.by_ref().take(csrs.len()).collect();
        let bodies = enroll_bodies(csrs, &tokens);
        let herald_cpu = || -> f64 {
            self.running[..servers]
                .iter()
                .map(|(server, _)| cpu_secs(server.id()))
                .sum()
        };
        let (herald_before, pg_before) = (herald_cpu(), postgres_cpu_secs());
        let outcome = rt.block_on(load(&self.root, &urls, bodies, clients));
        let herald = per_success_us(herald_cpu() - herald_before, &outcome);
        let pg = if self.schema.is_some() {
            per_success_us(postgres_cpu_secs() - pg_before, &outcome)
        } else {
            "-".to_owned()
        };
        let store = if self.schema.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        let label = format!(
            "{store}{}, {servers} server{}",
            self.build.label,
            if servers == 1 { "" } else { "s" }
        );
        row(&label, clients, &outcome, &[herald, pg]);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let per_row: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4000);
    let mut levels: Vec<usize> = args.filter_map(|a| a.parse().ok()).collect();
    if levels.is_empty() {
        levels.push(64);
    }
    let builds = builds();
    let sqlite_rows = levels.len();
    let pg_rows = SERVERS.len() * levels.len();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let requests = (sqlite_rows + pg_rows) * per_row * builds.len();
    eprintln!("generating {requests} keys and requests, creating tokens (not measured)...");
    let csrs: Vec<String> = (0..requests).map(|_| csr_pem()).collect();
    let mut csrs = csrs.chunks(per_row);
    bench_common::stop_servers_on_signal();
    let tmp = tempfile::tempdir().unwrap();

    let mut sqlite: Vec<Cluster> = builds
        .iter()
        .enumerate()
        .map(|(i, build)| {
            let dir = tmp.path().join(format!("sqlite-{i}"));
            Cluster::new(&rt, build, dir, None, sqlite_rows * per_row)
        })
        .collect();
    let mut pg: Vec<Cluster> = builds
        .iter()
        .enumerate()
        .map(|(i, build)| {
            let schema = Schema(pg_support::unique_schema("herald_bench_ha"));
            let dir = tmp.path().join(format!("pg-{i}"));
            Cluster::new(&rt, build, dir, Some(schema), pg_rows * per_row)
        })
        .collect();

    println!(
        "Enrollment over HTTPS on loopback, {per_row} per row, every certificate and its audit \
         entry durably recorded before the answer"
    );
    println!();
    println!(
        "| store, servers | clients | enrollments | per second | p50 | p99 | herald-ca CPU per enrollment | PostgreSQL CPU per enrollment | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &clients in &levels {
        for cluster in &mut sqlite {
            let batch = csrs.next().unwrap();
            cluster.measure(&rt, 1, clients, batch);
        }
    }
    for &servers in &SERVERS {
        for &clients in &levels {
            for i in 0..pg.len() {
                pg.iter_mut().for_each(Cluster::shrink);
                let batch = csrs.next().unwrap();
                pg[i].measure(&rt, servers, clients, batch);
            }
        }
    }
    drop(sqlite);
    drop(pg);
    bench_common::assert_no_server_left(tmp.path());
}
