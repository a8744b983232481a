//! Benchmark: end-to-end enrollments per second over HTTPS on loopback, at 1, 16 and 64
//! concurrent clients, against `herald-ca serve` (SQLite store) and, in the same run, cfssl's
//! `serve` sign endpoint with its SQLite store (Debian package `golang-cfssl`) on the same
//! certificate requests. Tokens and client keys are made before the clock starts; each
//! Herald enrollment is token check + proof of possession + issuance + durable store in one
//! transaction. Each client keeps one HTTPS connection. Server CPU per enrollment is the
//! server process's user + system time during the level divided by its enrollments. Prints a
//! table. Not run by CI.
//!
//! ```sh
//! cargo build --release -p herald-ca
//! cargo run --release -p herald-ca --example bench-enroll -- [SCALE]
//! ```
//! SCALE (default 1) multiplies the number of enrollments per level (500, 4,000, 8,000).
//! With `HERALD_BENCH_BEFORE=/path/to/previous/herald-ca`, each level is measured with that
//! build too, just before this one, on a data folder of its own.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};

mod bench_common;
use bench_common::http::{
    builds, cpu_secs, create_tokens, csr_pem, enroll_bodies, free_addr, init_herald, load,
    per_success_us, row, run, serve_herald, wait_listening, Server,
};

const LEVELS: [(usize, usize); 3] = [(1, 500), (16, 4000), (64, 8000)];

/// Starts `cfssl serve` with TLS and a SQLite certificate store; `None` if cfssl is missing.
fn start_cfssl(dir: &Path) -> Option<(Server, String, Vec<u8>)> {
    if Command::new("cfssl").arg("version").output().is_err() {
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    let sh = |script: &str| {
        run(Command::new("sh").arg("-c").arg(script).current_dir(dir));
    };
    std::fs::write(
        dir.join("ca-csr.json"),
        r#"{"CN":"Bench cfssl CA","key":{"algo":"ecdsa","size":256}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("tls-csr.json"),
        r#"{"CN":"127.0.0.1","hosts":["127.0.0.1"],"key":{"algo":"ecdsa","size":256}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"signing":{"default":{"expiry":"2160h","usages":["digital signature","client auth","server auth"]}}}"#,
    )
    .unwrap();
    sh("cfssl gencert -initca ca-csr.json 2>/dev/null | cfssljson -bare ca");
    sh("cfssl gencert -ca ca.pem -ca-key ca-key.pem -config config.json tls-csr.json 2>/dev/null | cfssljson -bare tls");
    // cfssl's certdb schema (certdb/sqlite/migrations of the cfssl sources).
    let db = dir.join("certs.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE certificates (serial_number blob NOT NULL,
            authority_key_identifier blob NOT NULL, ca_label blob, status blob NOT NULL,
            reason int, expiry timestamp, revoked_at timestamp, pem blob NOT NULL,
            PRIMARY KEY(serial_number, authority_key_identifier));
         CREATE TABLE ocsp_responses (serial_number blob NOT NULL,
            authority_key_identifier blob NOT NULL, body blob NOT NULL, expiry timestamp,
            PRIMARY KEY(serial_number, authority_key_identifier));",
    )
    .unwrap();
    drop(conn);
    std::fs::write(
        dir.join("db.json"),
        format!(r#"{{"driver":"sqlite3","data_source":"{}"}}"#, db.display()),
    )
    .unwrap();
    let addr = free_addr();
    let server = Server::spawn(
        "cfssl serve",
        Command::new("cfssl")
            .args([
                "serve",
                "-address",
                "127.0.0.1",
                "-port",
                &addr.port().to_string(),
            ])
            .args([
                "-ca",
                "ca.pem",
                "-ca-key",
                "ca-key.pem",
                "-config",
                "config.json",
            ])
            .args([
                "-db-config",
                "db.json",
                "-tls-cert",
                "tls.pem",
                "-tls-key",
                "tls-key.pem",
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    wait_listening(addr);
    let root = std::fs::read(dir.join("ca.pem")).unwrap();
    Some((server, format!("https://{addr}"), root))
}

fn main() {
    let scale: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let levels: Vec<(usize, usize)> = LEVELS.iter().map(|&(c, n)| (c, n * scale)).collect();
    let builds = builds();
    let per_build: usize = levels.iter().map(|l| l.1).sum();
    let total = per_build * builds.len();
    bench_common::stop_servers_on_signal();
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    eprintln!("generating {total} keys and requests (not measured)...");
    let csrs: Vec<String> = (0..total).map(|_| csr_pem()).collect();

    eprintln!("creating {total} enrollment tokens (not measured)...");
    // One data folder, server and token set per build.
    let heralds: Vec<_> = builds
        .iter()
        .enumerate()
        .map(|(i, build)| {
            let dir = tmp.path().join(format!("herald-{i}"));
            let (root, operator) = init_herald(build, &dir);
            let (server, base) = serve_herald(build, &dir);
            let tokens = rt.block_on(create_tokens(&root, &base, &operator, per_build));
            (build, root, server, base, tokens)
        })
        .collect();
    let cfssl = start_cfssl(&tmp.path().join("cfssl"));

    println!(
        "Enrollment over HTTPS on loopback, SQLite stores, every certificate durably recorded"
    );
    println!();
    println!(
        "| server | clients | certificates | per second | p50 | p99 | server CPU per certificate | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut offset = 0;
    for &(clients, n) in &levels {
        for (i, (build, root, server, base, tokens)) in heralds.iter().enumerate() {
            let csrs = &csrs[per_build * i..];
            let bodies = enroll_bodies(&csrs[offset..offset + n], &tokens[offset..offset + n]);
            let cpu = cpu_secs(server.id());
            let outcome = rt.block_on(load(
                root,
                &[format!("{base}/api/v1/enroll")],
                bodies,
                clients,
            ));
            let cpu = per_success_us(cpu_secs(server.id()) - cpu, &outcome);
            row(
                &format!("herald-ca{} POST /api/v1/enroll", build.label),
                clients,
                &outcome,
                &[cpu],
            );
        }
        let slice = &csrs[offset..offset + n];
        if let Some((cf_server, cf_base, cf_root)) = &cfssl {
            let bodies: Vec<String> = slice
                .iter()
                .map(|csr| serde_json::json!({"certificate_request": csr}).to_string())
                .collect();
            let cpu = cpu_secs(cf_server.id());
            let outcome = rt.block_on(load(
                cf_root,
                &[format!("{cf_base}/api/v1/cfssl/sign")],
                bodies,
                clients,
            ));
            let cpu = per_success_us(cpu_secs(cf_server.id()) - cpu, &outcome);
            row("cfssl serve /api/v1/cfssl/sign", clients, &outcome, &[cpu]);
        }
        offset += n;
    }
    if cfssl.is_none() {
        println!();
        println!("cfssl is not installed (Debian package golang-cfssl): only herald-ca measured.");
    }
    drop(heralds);
    drop(cfssl);
    bench_common::assert_no_server_left(tmp.path());
}
