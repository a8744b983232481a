//! Benchmark: how fast the web console's pages answer with a large fleet in the store.
//!
//! Fills a CA's store with N endpoints (default 100,000; names `siteG-NNNNNN` in groups
//! `siteG` of 1,000, each with its enrollment token, recorded group and certificate; 90%
//! reported a release (1 to 3) and where they stand with the release 4 of channel `stable`
//! that a rollout offers them, 2% of those failing, 1% of the certificates revoked, 1% expired)
//! and as many audit entries,
//! starts the release `herald-ca serve` on it, signs in to the console over HTTPS (an account
//! without a second factor, made for the benchmark) and requests each page 50 times, one
//! request at a time, over one keep-alive connection. Prints a table of latencies per page.
//! The target: every page under 100 ms. `HERALD_CA_STORE_URL` (and `HERALD_CA_STORE_SCHEMA`,
//! a schema that does not exist yet; dropped at the end) run it on PostgreSQL, with a
//! `VACUUM ANALYZE` after the load, as autovacuum would do. Not run by CI.
//!
//! ```sh
//! cargo build --release -p herald-ca --bin herald-ca --example bench-console
//! target/release/examples/bench-console [ENDPOINTS]
//! ```

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use herald_ca::store::{
    write_tx, CertRecord, EndpointGroupRecord, EnrollmentTokenRecord, FleetReport, Revocation,
    StoreError,
};
use herald_ca::{NewAuditEntry, Reason};
use herald_e2e::console::sign_in_without_mfa;
use herald_wire::{Group, RolloutState};

mod bench_common;
use bench_common::http::{builds, herald_ca, init_herald, run, serve_herald};
use bench_common::percentile_ms;

const REQUESTS: usize = 50;
const BATCH: usize = 10_000;

fn name_of(i: usize) -> String {
    format!("site{}-{i:06}", i / 1000)
}

/// A certificate whose Subject carries `group` as its organizationalUnitName, as the CA writes
/// it (the detail page reads the group back from the stored certificate).
fn certificate_in(group: &Group, key: &rcgen::KeyPair) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, group.as_str());
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, group.as_str());
    params.self_signed(key).unwrap().der().to_vec()
}

/// Records `n` endpoints (token, certificate, report) and `n` audit entries.
fn fill(dir: &std::path::Path, n: usize) {
    let store = herald_ca::open_store(dir).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let key = rcgen::KeyPair::generate().unwrap();
    let certificates: Vec<Vec<u8>> = (0..n.div_ceil(1000))
        .map(|g| certificate_in(&Group::new(&format!("site{g}")).unwrap(), &key))
        .collect();
    for start in (0..n).step_by(BATCH) {
        write_tx(store.as_ref(), |tx| {
            for i in start..(start + BATCH).min(n) {
                let name = name_of(i);
                let group = Group::new(&format!("site{}", i / 1000)).unwrap();
                tx.insert_enrollment_token(&EnrollmentTokenRecord {
                    id: format!("{i:016x}"),
                    hash: format!("{i:064x}"),
                    name: name.clone(),
                    base: format!("site{}", i / 1000),
                    profile: "endpoint".into(),
                    created_at: now - 86_400,
                    expires_at: now,
                    created_by: "bench".into(),
                    used_at: Some(now - 86_000),
                    serial: None,
                    spki_sha256: None,
                    revoked_at: None,
                    group: group.clone(),
                })?;
                let serial = herald_ca::random_serial().unwrap();
                let expired = i % 100 == 7;
                tx.insert_certificate(&CertRecord {
                    serial: serial.clone(),
                    issuer: herald_ca::ISSUER_ID.into(),
                    name: name.clone(),
                    profile: "endpoint".into(),
                    not_before: now - 86_000,
                    not_after: if expired { now - 10 } else { now + 86_400 * 90 },
                    issued_at: now - 86_000 + (i % 3600) as i64,
                    der: certificates[i / 1000].clone(),
                    revocation: None,
                })?;
                tx.set_endpoint_group(&EndpointGroupRecord {
                    name: name.clone(),
                    group: group.clone(),
                    changed_at: now - 86_000,
                })?;
                if i % 100 == 3 {
                    tx.revoke(
                        &serial,
                        Revocation {
                            revoked_at: now - 100,
                            reason: Reason::KeyCompromise,
                        },
                    )?;
                }
                if i % 10 != 0 {
                    let failing = i % 50 == 1;
                    tx.put_fleet_report(&FleetReport {
                        name,
                        serial: serial.to_hex(),
                        received_at: now - (i % (48 * 3600)) as i64,
                        installed_version: Some((i % 3 + 1) as u64),
                        last_check: Some("2026-01-01T00:00:00Z".into()),
                        last_result: Some(if failing { "error" } else { "up-to-date" }.into()),
                        last_error: failing.then(|| "mirror unreachable".into()),
                        unlisted: Vec::new(),
                        group,
                        channel: Some("stable".into()),
                        release: Some(4),
                        state: Some(match i % 7 {
                            0..=2 => RolloutState::Installed,
                            3 | 4 => RolloutState::Pending,
                            5 => RolloutState::Failed,
                            _ => RolloutState::RolledBack,
                        }),
                        reason: None,
                    })?;
                }
                tx.append_audit(&NewAuditEntry::now(
                    if i % 2 == 0 { "cli" } else { "account:bench" },
                    "bench",
                    serde_json::json!({ "i": i }),
                ))?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    }
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(100_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    if std::env::var_os("HERALD_BENCH_KEEP").is_some() {
        eprintln!("data folder kept: {}", dir.display());
        std::mem::forget(tmp);
    }
    // This build only: the console of the current version is what is measured.
    let build = builds().pop().unwrap();
    let (root, _operator) = init_herald(&build, &dir);
    let started = Instant::now();
    fill(&dir, n);
    eprintln!(
        "{n} endpoints recorded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let postgres = postgres().await;
    if let Some((client, schema)) = &postgres {
        // What autovacuum does soon after a bulk load: statistics and the visibility map.
        client
            .batch_execute(&format!("SET search_path TO {schema}"))
            .await
            .unwrap();
        client
            .batch_execute(
                "VACUUM ANALYZE endpoints, certificates, fleet_reports, enrollment_tokens, audit",
            )
            .await
            .unwrap();
    }
    let added = run(herald_ca(&build)
        .args([
            "admin", "user", "add", "bench", "--role", "admin", "--no-mfa", "--json",
        ])
        .arg("--data-dir")
        .arg(&dir));
    let added: serde_json::Value = serde_json::from_slice(&added).unwrap();
    let once = added["one_time_password"].as_str().unwrap().to_owned();
    let (server, base) = serve_herald(&build, &dir);
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let session =
        sign_in_without_mfa(&http, &base, "bench", &once, "benchmark password 1234").await;
    let middle = name_of(n / 2);
    let pages = [
        ("dashboard", "/ui/".to_owned()),
        ("endpoints, first page", "/ui/endpoints".to_owned()),
        (
            "endpoints, page in the middle",
            format!("/ui/endpoints?after={middle}"),
        ),
        (
            "endpoints, name prefix",
            format!("/ui/endpoints?q=site{}", n / 2000),
        ),
        (
            "endpoints, revoked",
            "/ui/endpoints?state=revoked".to_owned(),
        ),
        (
            "endpoints, expired",
            "/ui/endpoints?state=expired".to_owned(),
        ),
        (
            "endpoints, failing",
            "/ui/endpoints?state=failing".to_owned(),
        ),
        (
            "endpoints, never reported",
            "/ui/endpoints?state=never-reported".to_owned(),
        ),
        (
            "endpoints, group",
            format!("/ui/endpoints?group=site{}", n / 3000),
        ),
        (
            "endpoints, release 2, revoked",
            "/ui/endpoints?release=2&state=revoked".to_owned(),
        ),
        ("endpoint detail", format!("/ui/endpoints/{middle}")),
        ("certificates, first page", "/ui/certificates".to_owned()),
        (
            "certificates, by name",
            format!("/ui/certificates?q={middle}"),
        ),
        ("enrollment tokens", "/ui/tokens".to_owned()),
        ("audit log", "/ui/audit".to_owned()),
        (
            "audit log, by actor",
            "/ui/audit?actor=account%3Abench".to_owned(),
        ),
    ];
    println!(
        "Console pages, {n} endpoints, {REQUESTS} sequential requests each (HTTPS, keep-alive)"
    );
    println!();
    println!("| page | p50 (ms) | p95 (ms) | max (ms) | bytes |");
    println!("|---|---:|---:|---:|---:|");
    for (label, path) in pages {
        let mut latencies = Vec::with_capacity(REQUESTS);
        let mut bytes = 0;
        for i in 0..REQUESTS + 3 {
            let t = Instant::now();
            let response = http
                .get(format!("{base}{path}"))
                .header("cookie", format!("__Host-herald-session={session}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{path}");
            bytes = response.bytes().await.unwrap().len();
            if i >= 3 {
                latencies.push(t.elapsed());
            }
        }
        latencies.sort();
        println!(
            "| {label} | {:.1} | {:.1} | {:.1} | {bytes} |",
            percentile_ms(&latencies, 0.5),
            percentile_ms(&latencies, 0.95),
            percentile_ms(&latencies, 1.0),
        );
    }
    drop(server);
    if let Some((client, schema)) = postgres {
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }
}

/// A connection to the PostgreSQL store `HERALD_CA_STORE_URL` names, and its schema.
async fn postgres() -> Option<(tokio_postgres::Client, String)> {
    let url = std::env::var("HERALD_CA_STORE_URL").ok()?;
    let schema = std::env::var("HERALD_CA_STORE_SCHEMA").unwrap_or_else(|_| "herald".into());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    Some((client, schema))
}
