//! Set-up shared by the herald-ca benchmark programs.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use herald_ca::store::{write_tx, CertRecord, Revocation, StoreError};
use herald_ca::{init, Authority, CaKeyType, InitOptions, KeyAccess, KeyProtection, Serial};

pub(crate) mod http;

/// Makes an interruption of the program stop the servers it started (they run in process
/// groups of their own, out of reach of the terminal's Ctrl-C).
pub(crate) fn stop_servers_on_signal() {
    herald_e2e::servers::stop_all_on_signal();
}

/// Fails the program when a server it started, or any process naming its work folder
/// `work`, is still running: every server must have been stopped with its whole group.
pub(crate) fn assert_no_server_left(work: &Path) {
    if let Err(left) = herald_e2e::servers::check_none_left(&[work]) {
        eprintln!("{left}");
        panic!("servers were left running after the benchmark");
    }
    eprintln!("no server process left running");
}

/// A CA in `dir` (unencrypted keys: benchmarks only) serving on the given addresses.
pub(crate) fn bench_ca(dir: &Path, https: SocketAddr, http: SocketAddr) -> Authority {
    init(
        dir,
        &InitOptions {
            name: "Bench".into(),
            key_type: CaKeyType::EcdsaP256,
            protection: KeyProtection::InsecureUnencrypted,
            listen: https,
            http_listen: Some(http),
            public_url: format!("http://{http}"),
            tls_names: vec!["localhost".into()],
            name_domain: "endpoints.herald.internal".into(),
        },
        &herald_ca::open_configured_store,
    )
    .unwrap();
    Authority::open(
        dir,
        &KeyAccess { passphrase: None },
        herald_ca::open_store(dir).unwrap(),
    )
    .unwrap()
}

/// Records `n` certificates with random serials (revoked when `revoke` gives a revocation for
/// their index), in one transaction; returns the serials.
pub(crate) fn record_certs(
    ca: &Authority,
    n: usize,
    revoke: impl Fn(usize) -> Option<Revocation>,
) -> Vec<Serial> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut serials = Vec::with_capacity(n);
    write_tx(ca.store(), |tx| {
        for i in 0..n {
            let serial = herald_ca::random_serial().unwrap();
            tx.insert_certificate(&CertRecord {
                serial: serial.clone(),
                issuer: herald_ca::ISSUER_ID.into(),
                name: format!("bench-{i}"),
                profile: "endpoint".into(),
                not_before: now,
                not_after: now + 86400 * 90,
                issued_at: now,
                der: vec![0],
                revocation: None,
            })?;
            if let Some(revocation) = revoke(i) {
                tx.revoke(&serial, revocation)?;
            }
            serials.push(serial);
        }
        Ok::<_, StoreError>(())
    })
    .unwrap();
    serials
}

/// The `p` quantile (0 to 1) of sorted latencies, in milliseconds.
pub(crate) fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// What an issuance load produced.
pub(crate) struct LoadResult {
    /// Latencies of the successful calls, sorted.
    pub(crate) latencies: Vec<Duration>,
    /// Failed calls.
    pub(crate) errors: u64,
    /// Wall-clock seconds.
    pub(crate) elapsed: f64,
}

/// Runs `clients` threads for `seconds`, each calling `issue(client, n, csr)` in a loop with a
/// request of its own (made beforehand: the work measured is the CA's, not the clients' key
/// generation). `issue` returns an error text on failure; the first is printed.
pub(crate) fn issue_load(
    clients: usize,
    seconds: u64,
    issue: impl Fn(usize, usize, &str) -> Result<(), String> + Send + Sync + 'static,
) -> LoadResult {
    let csrs: Vec<String> = (0..clients)
        .map(|_| {
            let key = rcgen::KeyPair::generate().unwrap();
            rcgen::CertificateParams::default()
                .serialize_request(&key)
                .unwrap()
                .pem()
                .unwrap()
        })
        .collect();
    let issue = std::sync::Arc::new(issue);
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    let start = std::time::Instant::now();
    let handles: Vec<_> = csrs
        .into_iter()
        .enumerate()
        .map(|(c, csr)| {
            let issue = issue.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut n = 0;
                while std::time::Instant::now() < deadline {
                    n += 1;
                    let t = std::time::Instant::now();
                    match issue(c, n, &csr) {
                        Ok(()) => lat.push(t.elapsed()),
                        Err(e) => {
                            if errors == 0 && c == 0 {
                                eprintln!("issuance failed: {e}");
                            }
                            errors += 1;
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (lat, e) = h.join().unwrap();
        latencies.extend(lat);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    LoadResult {
        latencies,
        errors,
        elapsed,
    }
}
