//! HTTPS enrollment load shared by the benchmarks that drive real `herald-ca serve` processes:
//! starting servers, creating tokens, sending enrollments from concurrent clients.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A server process in a process group of its own, stopped with the whole group when dropped.
pub(crate) use herald_e2e::servers::ServerProcess as Server;

pub(crate) fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub(crate) fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {addr}");
}

/// Runs `cmd`, panics unless it succeeds; returns its standard output.
pub(crate) fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A `herald-ca` binary a benchmark measures.
#[derive(Debug, Clone)]
pub(crate) struct Build {
    /// Appended to row labels: empty for this build, ` (before)` for the previous one.
    pub(crate) label: &'static str,
    pub(crate) bin: PathBuf,
}

/// The builds to measure, in the order each row is measured: the previous version's
/// `herald-ca` if `HERALD_BENCH_BEFORE` names it (so before and after run in the same
/// program run, alternating), then the release `herald-ca` next to the example.
pub(crate) fn builds() -> Vec<Build> {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("herald-ca");
    assert!(
        bin.is_file(),
        "{} missing: run `cargo build --release -p herald-ca` first",
        bin.display()
    );
    let mut builds = Vec::new();
    if let Some(before) = std::env::var_os("HERALD_BENCH_BEFORE") {
        let before = PathBuf::from(before);
        assert!(before.is_file(), "{} missing", before.display());
        builds.push(Build {
            label: " (before)",
            bin: before,
        });
    }
    builds.push(Build { label: "", bin });
    builds
}

/// `build`'s `herald-ca`. It inherits the environment, so `HERALD_CA_STORE_URL` and
/// `HERALD_CA_STORE_SCHEMA` choose its store.
pub(crate) fn herald_ca(build: &Build) -> Command {
    let mut cmd = Command::new(&build.bin);
    cmd.env("HERALD_CA_PASSPHRASE", "benchmark passphrase")
        .env("HERALD_LOG", "error");
    cmd
}

/// CPU seconds (user + system, all threads) a process has used so far.
pub(crate) fn cpu_secs(pid: u32) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name: state is 0, utime 11, stime 12.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let get = |n: usize| {
        fields
            .get(n)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (get(11) + get(12)) / ticks
}

/// CPU seconds used so far by every process named `postgres` on the machine (the server and
/// its backends; other users of the same server count too).
pub(crate) fn postgres_cpu_secs() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "postgres")
        })
        .map(cpu_secs)
        .sum()
}

/// Microseconds of `cpu` (seconds) per success of `outcome`, as a table cell.
pub(crate) fn per_success_us(cpu: f64, (lat, _, _): &Outcome) -> String {
    if lat.is_empty() {
        return "-".to_owned();
    }
    format!("{:.0} µs", cpu * 1e6 / lat.len() as f64)
}

/// An HTTPS client trusting only `root_pem`, keeping one connection.
pub(crate) fn client(root_pem: &[u8]) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60));
    for cert in reqwest::Certificate::from_pem_bundle(root_pem).unwrap() {
        builder = builder.add_root_certificate(cert);
    }
    builder.build().unwrap()
}

/// One measured load: (sorted latencies of the successes, errors, wall time).
pub(crate) type Outcome = (Vec<Duration>, usize, Duration);

/// Sends `bodies` from `clients` concurrent clients, each with its own connection; client `i`
/// posts to `urls[i % urls.len()]` (round-robin over servers, as a load balancer would).
pub(crate) async fn load(
    root_pem: &[u8],
    urls: &[String],
    bodies: Vec<String>,
    clients: usize,
) -> Outcome {
    let per = bodies.len().div_ceil(clients);
    let mut chunks: Vec<Vec<String>> = Vec::new();
    let mut rest = bodies;
    while !rest.is_empty() {
        let tail = rest.split_off(per.min(rest.len()));
        chunks.push(rest);
        rest = tail;
    }
    // Connect every client before the clock starts.
    let mut workers = Vec::new();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let url = urls[i % urls.len()].clone();
        let c = client(root_pem);
        let _ = c.get(&url).send().await;
        workers.push((c, url, chunk));
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (c, url, chunk) in workers {
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            for body in chunk {
                let t = Instant::now();
                let ok = match c
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let good = r.status().is_success();
                        let text = r.bytes().await.unwrap_or_default();
                        good && !text.is_empty()
                    }
                    Err(_) => false,
                };
                if ok {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        });
    }
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        let (lat, e) = r.unwrap();
        all.extend(lat);
        errors += e;
    }
    let wall = start.elapsed();
    all.sort();
    (all, errors, wall)
}

/// Prints one table row: label, clients, successes, per second, p50, p99, the `extra` cells,
/// errors.
pub(crate) fn row(label: &str, clients: usize, (lat, errors, wall): &Outcome, extra: &[String]) {
    let extra: String = extra.iter().map(|cell| format!(" {cell} |")).collect();
    println!(
        "| {label} | {clients} | {} | {:.0} | {:.1} ms | {:.1} ms |{extra} {errors} |",
        lat.len(),
        lat.len() as f64 / wall.as_secs_f64(),
        super::percentile_ms(lat, 0.5),
        super::percentile_ms(lat, 0.99)
    );
}

/// Initialises a CA in `dir` with `build` (store chosen by the environment); returns the root
/// PEM and an operator token.
pub(crate) fn init_herald(build: &Build, dir: &Path) -> (Vec<u8>, String) {
    run(herald_ca(build)
        .args(["init", "--kdf-iterations", "1000", "--data-dir"])
        .arg(dir)
        .args([
            "--listen",
            &free_addr().to_string(),
            "--http-listen",
            &free_addr().to_string(),
        ]));
    let operator = String::from_utf8(run(herald_ca(build)
        .args(["admin-token", "create", "--role", "operator", "--data-dir"])
        .arg(dir)))
    .unwrap()
    .trim()
    .to_owned();
    (std::fs::read(dir.join("root.crt")).unwrap(), operator)
}

/// Starts one `herald-ca serve` of `build` on `dir` with addresses of its own; returns it and
/// its HTTPS URL.
pub(crate) fn serve_herald(build: &Build, dir: &Path) -> (Server, String) {
    let (https, http) = (free_addr(), free_addr());
    let server = Server::spawn(
        "herald-ca serve",
        herald_ca(build)
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--listen", &https.to_string()])
            .args(["--http-listen", &http.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    wait_listening(https);
    wait_listening(http);
    (server, format!("https://{https}"))
}

/// Creates `n` enrollment tokens through the API at `base`, from 32 concurrent callers.
pub(crate) async fn create_tokens(
    root: &[u8],
    base: &str,
    operator: &str,
    n: usize,
) -> Vec<String> {
    let c = client(root);
    let mut tasks = tokio::task::JoinSet::new();
    let per = n.div_ceil(32);
    for w in 0..32 {
        let c = c.clone();
        let url = format!("{base}/api/v1/tokens");
        let operator = operator.to_owned();
        let count = per.min(n.saturating_sub(w * per));
        tasks.spawn(async move {
            let mut out = Vec::new();
            for _ in 0..count {
                let r = c
                    .post(&url)
                    .bearer_auth(&operator)
                    .header("content-type", "application/json")
                    .body(r#"{"name":"bench","ttl":"1d"}"#)
                    .send()
                    .await
                    .unwrap();
                let v: serde_json::Value = r.json().await.unwrap();
                out.push(v["token"].as_str().unwrap().to_owned());
            }
            out
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.unwrap());
    }
    all
}

/// A PKCS#10 request for a fresh ECDSA P-256 key.
pub(crate) fn csr_pem() -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
}

/// `POST /api/v1/enroll` bodies pairing each request with a token.
pub(crate) fn enroll_bodies(csrs: &[String], tokens: &[String]) -> Vec<String> {
    csrs.iter()
        .zip(tokens)
        .map(|(csr, token)| serde_json::json!({"token": token, "csr": csr}).to_string())
        .collect()
}
