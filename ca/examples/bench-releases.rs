//! Benchmark: the releases summary (`GET /api/v1/fleet/releases`, `herald-ca fleet
//! releases`) over the latest reports of 100,000 endpoints, on the SQLite store and on
//! PostgreSQL, in one run. Beside Herald's one aggregate query it times the way the fleet view
//! reads reports (every report loaded, then counted in memory), which is what the summary
//! would cost without its index. Prints a table. Not run by CI.
//!
//! ```sh
//! cargo build --release -p herald-ca
//! cargo run --release -p herald-ca --example bench-releases -- [ENDPOINTS] [RUNS]
//! ```
//!
//! ENDPOINTS (default 100,000) reports spread over 2 channels, 3 releases, 8 groups and the 5
//! states; RUNS timed calls per row (default 20) after 2 untimed ones. PostgreSQL:
//! `HERALD_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`); a schema
//! of its own, dropped at the end.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use herald_ca::store::{read_tx, write_tx, FleetReport, Store, StoreError};
use herald_wire::{Group, RolloutState};

mod bench_common;
#[path = "../tests/pg_support/mod.rs"]
mod pg_support;

use bench_common::http::{builds, client, herald_ca, init_herald, run, serve_herald, Build};
use bench_common::percentile_ms;

const GROUPS: [&str; 8] = [
    "default",
    "pilot",
    "kiosks",
    "tills",
    "warehouse",
    "office",
    "lab",
    "field-eu",
];
const STATES: [RolloutState; 5] = [
    RolloutState::Installed,
    RolloutState::Pending,
    RolloutState::Failed,
    RolloutState::RolledBack,
    RolloutState::Held,
];

/// Drops the benchmark's PostgreSQL schema, also when the run fails.
struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        pg_support::drop_schema(&self.0);
    }
}

/// The report of endpoint `i`: most follow `stable`, a fifth `beta`; half the default group;
/// most installed, the rest spread over the other states.
fn report(i: usize, now: i64) -> FleetReport {
    let mix = i.wrapping_mul(2_654_435_761) % 1_000;
    let (channel, release) = if mix < 200 {
        ("beta", 43)
    } else if mix < 700 {
        ("stable", 42)
    } else {
        ("stable", 41)
    };
    let group = if i % 2 == 0 {
        GROUPS[0]
    } else {
        GROUPS[(i / 2) % GROUPS.len()]
    };
    let state = match (i / 7) % 20 {
        0..=13 => STATES[0],
        14..=16 => STATES[1],
        17 => STATES[2],
        18 => STATES[3],
        _ => STATES[4],
    };
    FleetReport {
        name: format!("shop-{i:06}"),
        serial: format!("{:032x}", i as u128 * 7_919),
        received_at: now - (i as i64 % 3_600),
        installed_version: Some(release - u64::from(state != RolloutState::Installed)),
        last_check: Some("2026-12-07T08:00:00Z".to_owned()),
        last_result: Some("up-to-date".to_owned()),
        last_error: (state == RolloutState::Failed).then(|| "download failed: timeout".into()),
        unlisted: Vec::new(),
        group: Group::new(group).unwrap(),
        channel: Some(channel.to_owned()),
        release: Some(release),
        state: Some(state),
        reason: (state == RolloutState::RolledBack).then(|| "health check exited 3".into()),
    }
}

/// Stores the reports of `endpoints` endpoints, 5,000 per transaction.
fn populate(store: &dyn Store, endpoints: usize) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for start in (0..endpoints).step_by(5_000) {
        write_tx(store, |tx| {
            for i in start..(start + 5_000).min(endpoints) {
                tx.put_fleet_report(&report(i, now))?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    }
}

/// Times `f` `runs` times after two untimed calls; returns the sorted times and the value of
/// the last call.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Vec<Duration>, T) {
    f();
    let mut last = f();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        last = f();
        times.push(start.elapsed());
    }
    times.sort();
    (times, last)
}

fn row(store: &str, how: &str, endpoints: usize, rows: usize, times: &[Duration]) {
    println!(
        "| {store} | {how} | {endpoints} | {rows} | {:.1} ms | {:.1} ms | {:.1} ms |",
        percentile_ms(times, 0.0),
        percentile_ms(times, 0.5),
        times.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
}

/// One store: a CA in `dir` (store chosen by the environment), `endpoints` reports, then the
/// rows of the table.
fn measure(
    rt: &tokio::runtime::Runtime,
    build: &Build,
    label: &str,
    dir: &Path,
    endpoints: usize,
    runs: usize,
) {
    let (root, _operator) = init_herald(build, dir);
    let store = herald_ca::open_store(dir).unwrap();
    eprintln!("{label}: storing {endpoints} reports (not measured)...");
    populate(store.as_ref(), endpoints);

    let (times, rows) = time(runs, || {
        read_tx(store.as_ref(), |tx| tx.release_counts()).unwrap()
    });
    row(
        label,
        "store: one aggregate query",
        endpoints,
        rows.len(),
        &times,
    );

    let (times, rows) = time(runs, || {
        let reports = read_tx(store.as_ref(), |tx| tx.fleet_reports(None)).unwrap();
        let mut counts: HashMap<(String, u64, Group, RolloutState), u64> = HashMap::new();
        for r in reports {
            if let (Some(c), Some(v), Some(s)) = (r.channel, r.release, r.state) {
                *counts.entry((c, v, r.group, s)).or_default() += 1;
            }
        }
        counts
    });
    row(
        label,
        "store: every report loaded, counted in memory",
        endpoints,
        rows.len(),
        &times,
    );

    let auditor = String::from_utf8(run(herald_ca(build)
        .args(["admin-token", "create", "--role", "auditor", "--data-dir"])
        .arg(dir)))
    .unwrap()
    .trim()
    .to_owned();
    let (_server, base) = serve_herald(build, dir);
    let https = client(&root);
    let url = format!("{base}/api/v1/fleet/releases");
    let (times, answer) = time(runs, || {
        rt.block_on(async {
            let response = https.get(&url).bearer_auth(&auditor).send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.json::<serde_json::Value>().await.unwrap()
        })
    });
    let rows = answer["releases"].as_array().map_or(0, Vec::len);
    row(
        label,
        "HTTPS GET /api/v1/fleet/releases",
        endpoints,
        rows,
        &times,
    );

    let (times, out) = time(runs.min(5), || {
        run(herald_ca(build)
            .args(["fleet", "releases", "--json", "--data-dir"])
            .arg(dir))
    });
    let answer: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let rows = answer["releases"].as_array().map_or(0, Vec::len);
    row(
        label,
        "herald-ca fleet releases --json (process)",
        endpoints,
        rows,
        &times,
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let endpoints: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // This build only: the summary of the current version is what is measured.
    let build = builds().pop().unwrap();

    println!(
        "Releases summary over the latest reports of {endpoints} endpoints, {runs} timed calls \
         per row"
    );
    println!();
    println!("| store | how | endpoints | summary rows | min | median | max |");
    println!("|---|---|---|---|---|---|---|");

    std::env::remove_var("HERALD_CA_STORE_URL");
    std::env::remove_var("HERALD_CA_STORE_SCHEMA");
    measure(
        &rt,
        &build,
        "SQLite",
        &tmp.path().join("sqlite"),
        endpoints,
        runs,
    );

    let schema = Schema(pg_support::unique_schema("herald_bench_releases"));
    std::env::set_var("HERALD_CA_STORE_URL", pg_support::pg_url());
    std::env::set_var("HERALD_CA_STORE_SCHEMA", &schema.0);
    measure(
        &rt,
        &build,
        "PostgreSQL",
        &tmp.path().join("pg"),
        endpoints,
        runs,
    );
}
