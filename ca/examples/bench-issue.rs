//! Benchmark: certificates issued per second with every certificate durably stored (SQLite,
//! WAL synced by group commit) before it is returned, at 64 concurrent clients calling the authority
//! core (CSR verification, policy, signing, recording with its audit entry). Prints a table.
//! Not run by CI.
//!
//! ```sh
//! cargo run --release -p herald-ca --example bench-issue -- [SECONDS]
//! ```

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

mod bench_common;

const CLIENTS: usize = 64;

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let tmp = tempfile::tempdir().unwrap();
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let ca = Arc::new(bench_common::bench_ca(&tmp.path().join("ca"), addr, addr));
    let load = bench_common::issue_load(CLIENTS, seconds, move |c, n, csr| {
        ca.issue(csr.as_bytes(), &format!("dev-{c}-{n}"), "endpoint", "bench")
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let (all, errors, elapsed) = (load.latencies, load.errors, load.elapsed);
    let pct = |p: f64| bench_common::percentile_ms(&all, p);
    println!("Issuance, {CLIENTS} concurrent clients, {seconds} s, each certificate committed (fsync) before return");
    println!("| certificates | per second | p50 | p99 | errors |");
    println!("|---|---|---|---|---|");
    println!(
        "| {} | {:.0} | {:.1} ms | {:.1} ms | {errors} |",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99)
    );
}
