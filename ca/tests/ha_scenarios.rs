//! High availability: several real `herald-ca serve` processes on one PostgreSQL database
//! (127.0.0.1:5432, user `postgres`, database `test`, a schema of its own per test, dropped at
//! the end). Issuance over the HTTPS admin API, OCSP checked with `openssl ocsp`.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_ca::store::{read_tx, CertRecord, ListFilter, Store};
use herald_ca::store::{PgOptions, PgStore};

const PASSPHRASE: &str = "ha test passphrase";

mod pg_support;
use pg_support::{drop_schema, pg_url};

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// One running `herald-ca serve`.
struct Server {
    child: Child,
    https: SocketAddr,
    http: SocketAddr,
}

/// A CA whose servers share one PostgreSQL schema.
struct Cluster {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    schema: String,
    store_url: String,
    admin_token: String,
    servers: Vec<Server>,
    client: reqwest::Client,
}

impl Cluster {
    /// Initialises the CA on PostgreSQL (through `store_url`) and starts `n` servers.
    fn start(n: usize, store_url: &str) -> Self {
        Self::start_with(n, store_url, |_| {})
    }

    /// Like [`Cluster::start`], with `configure` editing config.toml's text before the servers
    /// start.
    fn start_with(n: usize, store_url: &str, configure: impl Fn(&mut String)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let schema = pg_support::unique_schema("herald_ha");
        let mut cluster = Self {
            _tmp: tmp,
            dir,
            schema,
            store_url: store_url.to_owned(),
            admin_token: String::new(),
            servers: Vec::new(),
            client: reqwest::Client::new(),
        };
        let (https, http) = (free_addr(), free_addr());
        cluster.run_ok(
            cluster
                .cmd()
                .args(["init", "--kdf-iterations", "1000", "--data-dir"])
                .arg(&cluster.dir)
                .args(["--listen", &https.to_string()])
                .args(["--http-listen", &http.to_string()]),
        );
        let out = cluster.run_ok(
            cluster
                .cmd()
                .args(["admin-token", "create", "--role", "admin", "--data-dir"])
                .arg(&cluster.dir),
        );
        cluster.admin_token = String::from_utf8(out).unwrap().trim().to_owned();
        let root = std::fs::read(cluster.dir.join("root.crt")).unwrap();
        cluster.client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let config = cluster.dir.join("config.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        // Few connections per server: the tests' servers share one PostgreSQL with everything
        // else (its default limit is 100 connections).
        text.push_str("\n[store]\npool_size = 4\n");
        configure(&mut text);
        std::fs::write(&config, text).unwrap();
        for _ in 0..n {
            cluster.spawn_server();
        }
        cluster
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald-ca"));
        cmd.env("HERALD_CA_PASSPHRASE", PASSPHRASE)
            .env("HERALD_CA_STORE_URL", &self.store_url)
            .env("HERALD_CA_STORE_SCHEMA", &self.schema)
            .env("HERALD_LOG", "warn")
            .env_remove("HERALD_DATA_DIR");
        cmd
    }

    fn run_ok(&self, cmd: &mut Command) -> Vec<u8> {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn spawn_server(&mut self) {
        let (https, http) = (free_addr(), free_addr());
        let child = self
            .cmd()
            .args(["serve", "--data-dir"])
            .arg(&self.dir)
            .args(["--listen", &https.to_string()])
            .args(["--http-listen", &http.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(http).is_err() || TcpStream::connect(https).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.servers.push(Server { child, https, http });
    }

    /// A direct handle on the shared store, as the test's own "server".
    fn store(&self) -> PgStore {
        PgStore::open(&PgOptions {
            url: pg_url(),
            schema: self.schema.clone(),
            pool_size: 2,
            connect_timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    /// Issues a certificate for `name` through server `i`'s admin API; returns the status
    /// and the JSON body.
    async fn issue(&self, i: usize, name: &str, csr: &str) -> (u16, serde_json::Value) {
        let body = serde_json::json!({"csr": csr, "name": name});
        self.post(i, "/api/v1/certificates", &body, true).await
    }

    /// Enrolls with a one-time token through server `i`.
    async fn enroll(&self, i: usize, token: &str, csr: &str) -> (u16, serde_json::Value) {
        let body = serde_json::json!({"token": token, "csr": csr});
        self.post(i, "/api/v1/enroll", &body, false).await
    }

    /// Creates an enrollment token for `base` through server `i`: (name, token).
    async fn create_token(&self, i: usize, base: &str) -> (String, String) {
        let body = serde_json::json!({"name": base});
        let (status, body) = self.post(i, "/api/v1/tokens", &body, true).await;
        assert_eq!(status, 201, "{body}");
        (
            body["name"].as_str().unwrap().to_owned(),
            body["token"].as_str().unwrap().to_owned(),
        )
    }

    /// POSTs JSON to server `i` (status 0 when the server cannot be reached).
    async fn post(
        &self,
        i: usize,
        path: &str,
        body: &serde_json::Value,
        admin: bool,
    ) -> (u16, serde_json::Value) {
        let url = format!("https://localhost:{}{path}", self.servers[i].https.port());
        let mut request = self.client.post(url).json(body);
        if admin {
            request = request.bearer_auth(&self.admin_token);
        }
        let response = request.send().await;
        match response {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(serde_json::Value::Null))
            }
            Err(_) => (0, serde_json::Value::Null),
        }
    }

    async fn revoke(&self, i: usize, serial: &str) {
        let url = format!(
            "https://localhost:{}/api/v1/certificates/{serial}/revoke",
            self.servers[i].https.port()
        );
        let r = self
            .client
            .post(url)
            .bearer_auth(&self.admin_token)
            .json(&serde_json::json!({"reason": "keyCompromise"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "revoke: {}", r.status());
    }

    /// `good`, `revoked` or `unknown` from server `i`'s OCSP responder, per `openssl ocsp`.
    fn ocsp_status(&self, i: usize, cert: &Path) -> String {
        let out = Command::new("openssl")
            .args(["ocsp", "-no_nonce", "-noverify", "-issuer"])
            .arg(self.dir.join("intermediate.crt"))
            .arg("-cert")
            .arg(cert)
            .arg("-url")
            .arg(format!("http://{}/ocsp", self.servers[i].http))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for status in ["revoked", "good", "unknown"] {
            if text.contains(&format!(": {status}")) {
                return status.to_owned();
            }
        }
        format!("no status: {text}{}", String::from_utf8_lossy(&out.stderr))
    }

    fn certificates(&self) -> Vec<CertRecord> {
        let store = self.store();
        read_tx(&store as &dyn Store, |tx| {
            tx.list_certificates(&ListFilter::default())
        })
        .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
        drop_schema(&self.schema);
    }
}

fn csr() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
}

/// Issues `count` certificates through the admin API, spread over the servers, `parallel` at
/// a time; returns the acknowledged ones as (name, serial, certificate PEM).
async fn issue_load(
    cluster: &Arc<Cluster>,
    count: usize,
    parallel: usize,
    servers: &[usize],
) -> Vec<(String, String, String)> {
    let requests = (0..count).map(|i| (format!("host-{i}"), None)).collect();
    load(cluster, requests, parallel, servers).await
}

/// Sends `requests` (name, and the enrollment token if it is an enrollment, else an admin
/// issuance for the name) round-robin over `servers`, `parallel` at a time; returns the
/// acknowledged ones as (name, serial, certificate PEM).
async fn load(
    cluster: &Arc<Cluster>,
    requests: Vec<(String, Option<String>)>,
    parallel: usize,
    servers: &[usize],
) -> Vec<(String, String, String)> {
    let requests = Arc::new(requests);
    let count = requests.len();
    let csr = csr();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..parallel)
        .map(|_| {
            let (cluster, csr, acked, next, requests) = (
                cluster.clone(),
                csr.clone(),
                acked.clone(),
                next.clone(),
                requests.clone(),
            );
            let servers = servers.to_vec();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= count {
                        return;
                    }
                    let (name, token) = &requests[i];
                    let server = servers[i % servers.len()];
                    let (status, body) = match token {
                        None => cluster.issue(server, name, &csr).await,
                        Some(token) => cluster.enroll(server, token, &csr).await,
                    };
                    if (200..300).contains(&status) {
                        assert_eq!(body["name"], name.as_str(), "issued for the wrong name");
                        let serial = body["serial"].as_str().unwrap().to_owned();
                        let pem = body["certificate_pem"].as_str().unwrap().to_owned();
                        acked.lock().unwrap().push((name.clone(), serial, pem));
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    acked
}

/// Every acknowledged certificate is in the store, byte for byte, once; certificate serials and
/// names never repeat; the audit chain is whole. Certificates chain to the root (openssl).
fn assert_acknowledged_stored_once(cluster: &Cluster, acked: &[(String, String, String)]) {
    let stored = cluster.certificates();
    let serials: HashSet<String> = stored.iter().map(|c| c.serial.to_hex()).collect();
    assert_eq!(serials.len(), stored.len(), "a serial repeats in the store");
    let mut per_name: HashMap<&str, usize> = HashMap::new();
    for c in &stored {
        *per_name.entry(c.name.as_str()).or_default() += 1;
    }
    let by_serial: HashMap<String, &CertRecord> =
        stored.iter().map(|c| (c.serial.to_hex(), c)).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (k, (name, serial, pem)) in acked.iter().enumerate() {
        let record = by_serial
            .get(serial)
            .unwrap_or_else(|| panic!("acknowledged {serial} is not in the store"));
        assert_eq!(&record.name, name);
        assert_eq!(per_name[name.as_str()], 1, "{name} issued twice");
        let (_, der) = der::pem::decode_vec(pem.as_bytes()).unwrap();
        assert_eq!(record.der, der, "stored DER differs from what was returned");
        let path = dir.path().join(format!("{k}.pem"));
        std::fs::write(&path, pem).unwrap();
        files.push(path);
    }
    let store = cluster.store();
    let report = herald_ca::verify_audit_log(&store).unwrap();
    assert!(report.first_break.is_none(), "{:?}", report.first_break);
    if files.is_empty() {
        return;
    }
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(cluster.dir.join("root.crt"))
        .arg("-untrusted")
        .arg(cluster.dir.join("intermediate.crt"))
        .args(&files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches(": OK").count(), files.len(), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_concurrent_issuance_no_serial_or_name_repeats() {
    let cluster = Arc::new(Cluster::start(3, &pg_url()));
    let acked = issue_load(&cluster, 60, 12, &[0, 1, 2]).await;
    assert_eq!(
        acked.len(),
        60,
        "every request on a healthy cluster succeeds"
    );
    assert_acknowledged_stored_once(&cluster, &acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_on_one_server_seen_by_the_others_ocsp() {
    let cluster = Arc::new(Cluster::start(3, &pg_url()));
    let acked = issue_load(&cluster, 1, 1, &[0]).await;
    let (_, serial, pem) = &acked[0];
    let cert = cluster.dir.join("victim.pem");
    std::fs::write(&cert, pem).unwrap();
    // Servers 1 and 2 answer (and cache) "good" first.
    assert_eq!(cluster.ocsp_status(1, &cert), "good");
    assert_eq!(cluster.ocsp_status(2, &cert), "good");
    cluster.revoke(0, serial).await;
    // The documented bound is about one second (NOTIFY, with a one-second poll behind it);
    // the deadline here only stops a broken build from hanging.
    let deadline = Instant::now() + Duration::from_secs(20);
    for server in [1, 2] {
        loop {
            let status = cluster.ocsp_status(server, &cert);
            if status == "revoked" {
                break;
            }
            assert_eq!(status, "good");
            assert!(Instant::now() < deadline, "server {server} still says good");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_killed_mid_load_acknowledged_enrollments_stored_once() {
    let cluster = Arc::new(Cluster::start(3, &pg_url()));
    let mut requests = Vec::new();
    for i in 0..90 {
        let (name, token) = cluster.create_token(i % 3, "node").await;
        requests.push((name, Some(token)));
    }
    let load = {
        let cluster = cluster.clone();
        tokio::spawn(async move { load(&cluster, requests, 9, &[0, 1, 2]).await })
    };
    // Kill server 1 once some of the load went through.
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.certificates().len() < 2 + 15 {
        assert!(Instant::now() < deadline, "no progress under load");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = cluster.servers[1].child.id();
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let acked = load.await.unwrap();
    assert!(acked.len() < 90, "requests to the killed server failed");
    assert!(
        acked.len() >= 60,
        "the other two servers kept issuing: {}",
        acked.len()
    );
    assert_acknowledged_stored_once(&cluster, &acked);
}

/// A TCP relay to PostgreSQL that the test can cut, as a network failure would.
struct CuttableLink {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl CuttableLink {
    fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (up2, open2) = (up.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: connection closed at once
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let mut open = open2.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Self { addr, up, open }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_unreachable_issuance_503_ocsp_answers_from_cache() {
    let link = CuttableLink::start("127.0.0.1:5432".parse().unwrap());
    let url = format!("postgres://postgres@{}/test", link.addr);
    let cluster = Arc::new(Cluster::start(1, &url));
    let acked = issue_load(&cluster, 1, 1, &[0]).await;
    let cert = cluster.dir.join("cached.pem");
    std::fs::write(&cert, &acked[0].2).unwrap();
    assert_eq!(cluster.ocsp_status(0, &cert), "good");
    let before = cluster.certificates().len();

    link.cut();
    let (status, body) = cluster.issue(0, "during-outage", &csr()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    assert_eq!(
        cluster.ocsp_status(0, &cert),
        "good",
        "OCSP answers from its cache while the database is away"
    );
    assert_eq!(cluster.certificates().len(), before, "nothing half-written");

    link.restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = cluster.issue(0, "after-outage", &csr()).await;
        if status == 201 {
            break;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "issuance never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(cluster.certificates().len(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_unreachable_ocsp_serves_cached_response_until_next_update() {
    let link = CuttableLink::start("127.0.0.1:5432".parse().unwrap());
    let url = format!("postgres://postgres@{}/test", link.addr);
    // One-minute responses: re-signed after 30 s, valid for 60 s.
    let cluster = Arc::new(Cluster::start_with(1, &url, |config| {
        *config = config.replace("validity_minutes = 240", "validity_minutes = 1");
    }));
    let acked = issue_load(&cluster, 1, 1, &[0]).await;
    let cert = cluster.dir.join("cached.pem");
    std::fs::write(&cert, &acked[0].2).unwrap();
    assert_eq!(cluster.ocsp_status(0, &cert), "good");
    let cached_at = Instant::now();
    link.cut();
    // Past the re-signing point the responder needs the store, which is unreachable: it
    // serves the cached response, still before its nextUpdate, instead of an error.
    tokio::time::sleep(Duration::from_secs(32).saturating_sub(cached_at.elapsed())).await;
    assert_eq!(cluster.ocsp_status(0, &cert), "good");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_one_token_enrolled_exactly_once() {
    let cluster = Arc::new(Cluster::start(3, &pg_url()));
    let (name, token) = cluster.create_token(0, "web").await;
    // 30 endpoints race with the same token (each its own key) on all three servers.
    let attempts: Vec<_> = (0..30)
        .map(|i| {
            let (cluster, token) = (cluster.clone(), token.clone());
            tokio::spawn(async move { cluster.enroll(i % 3, &token, &csr()).await })
        })
        .collect();
    let mut won = Vec::new();
    for attempt in attempts {
        let (status, body) = attempt.await.unwrap();
        if (200..300).contains(&status) {
            won.push(body);
        } else {
            assert!((400..500).contains(&status), "{status} {body}");
        }
    }
    assert_eq!(won.len(), 1, "exactly one enrollment succeeds: {won:?}");
    assert_eq!(won[0]["name"], name.as_str());
    let with_name: Vec<_> = cluster
        .certificates()
        .into_iter()
        .filter(|c| c.name == name)
        .collect();
    assert_eq!(with_name.len(), 1, "one certificate for the token's name");
    assert_eq!(
        with_name[0].serial.to_hex(),
        won[0]["serial"].as_str().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_concurrent_token_creation_names_distinct() {
    let cluster = Arc::new(Cluster::start(3, &pg_url()));
    let creations: Vec<_> = (0..60)
        .map(|i| {
            let cluster = cluster.clone();
            tokio::spawn(async move { cluster.create_token(i % 3, "site").await })
        })
        .collect();
    let mut names = HashSet::new();
    for creation in creations {
        let (name, _) = creation.await.unwrap();
        assert!(names.insert(name.clone()), "{name} allocated twice");
    }
    assert_eq!(names.len(), 60);
}
