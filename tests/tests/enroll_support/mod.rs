//! Shared set-up for the enrollment and relay scenarios: a served CA with an operator token,
//! an HTTPS client pinned to its root, key pairs and certificate requests made here.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::process::Command;

use crate::ca_support::{ca_cmd, run_ok, TestCa};

/// A served CA plus what a client needs to talk to it.
pub struct Site {
    /// The CA.
    pub ca: TestCa,
    /// An operator admin token.
    pub operator: String,
    /// The root certificate, PEM.
    pub root_pem: String,
}

impl Site {
    /// Initialises and serves a CA, and creates an operator token.
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// Like [`Site::start`], changing the CA's configuration before it serves.
    pub fn start_with(configure: impl FnOnce(&TestCa)) -> Self {
        let mut ca = TestCa::init();
        configure(&ca);
        ca.serve();
        let operator = ca.admin_token("operator");
        let root_pem = std::fs::read_to_string(ca.file("root.crt")).expect("root readable");
        Self {
            ca,
            operator,
            root_pem,
        }
    }

    /// The root's SHA-256 fingerprint (hex), as an endpoint pins it.
    pub fn fingerprint(&self) -> String {
        let out = run_ok(
            Command::new("openssl")
                .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
                .arg(self.ca.file("root.crt")),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .rsplit('=')
            .next()
            .expect("fingerprint line")
            .replace(':', "")
            .to_ascii_lowercase()
    }

    /// An HTTPS client trusting only the CA's root.
    pub fn client(&self) -> reqwest::Client {
        client_with(&self.root_pem, None)
    }

    /// Creates an enrollment token over the API; returns the JSON answer.
    pub async fn create_token(&self, client: &reqwest::Client, base: &str) -> serde_json::Value {
        let (status, body) = post(
            client
                .post(format!("{}/api/v1/tokens", self.ca.https_url()))
                .bearer_auth(&self.operator),
            &serde_json::json!({ "name": base }),
        )
        .await;
        assert_eq!(status, 201, "token creation failed: {body}");
        body
    }

    /// The audit actions recorded so far, in order (read from the store with sqlite3).
    pub fn audit_actions(&self) -> Vec<String> {
        sql_lines(
            &self.ca.file("herald.db"),
            "SELECT action FROM audit ORDER BY seq",
        )
    }

    /// The details (JSON) of the audit entries with `action`, in order.
    pub fn audit_details(&self, action: &str) -> Vec<serde_json::Value> {
        sql_lines(
            &self.ca.file("herald.db"),
            &format!("SELECT details FROM audit WHERE action = '{action}' ORDER BY seq"),
        )
        .iter()
        .map(|line| serde_json::from_str(line).expect("audit details are JSON"))
        .collect()
    }

    /// Two relays in a chain: `near` forwards to the CA, `far` forwards to `near`.
    pub fn two_relays(&self) -> (RelayProcess, RelayProcess) {
        let fingerprint = self.fingerprint();
        let near = RelayProcess::start(
            &self.ca,
            "near",
            &self.ca.https_url(),
            &self.cli_token("relay", "relay"),
            &fingerprint,
        );
        let far = RelayProcess::start(
            &self.ca,
            "far",
            &near.url,
            &self.cli_token("relay", "relay"),
            &fingerprint,
        );
        (near, far)
    }

    /// Creates a token for `base` with `profile` with the CLI; returns the secret.
    pub fn cli_token(&self, base: &str, profile: &str) -> String {
        self.ca.cli_token(base, profile)
    }

    /// Runs SQL against the CA's store (simulating the passage of time, for instance).
    pub fn sql(&self, statement: &str) {
        sql_lines(&self.ca.file("herald.db"), statement);
    }

    /// Number of certificates the store holds for `name`.
    pub fn certificates_named(&self, name: &str) -> usize {
        let out = run_ok(
            ca_cmd()
                .args(["cert", "list", "--json", "--name", name, "--data-dir"])
                .arg(&self.ca.dir),
        );
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON list");
        list.as_array().expect("array").len()
    }
}

/// Runs SQL with Python's sqlite3 module and returns the first column of each row.
fn sql_lines(db: &Path, statement: &str) -> Vec<String> {
    let out = run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(
                "import sqlite3,sys\n\
                 c=sqlite3.connect(sys.argv[1],timeout=30)\n\
                 rows=c.execute(sys.argv[2]).fetchall()\n\
                 c.commit()\n\
                 print('\\n'.join(str(r[0]) for r in rows))",
            )
            .arg(db)
            .arg(statement),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// An HTTPS client trusting `root_pem`, optionally presenting `identity_pem` (key + chain).
pub fn client_with(root_pem: &str, identity_pem: Option<&[u8]>) -> reqwest::Client {
    client_builder(root_pem, identity_pem)
        .build()
        .expect("client")
}

/// The builder of [`client_with`], for scenarios that need more options.
pub fn client_builder(root_pem: &str, identity_pem: Option<&[u8]>) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .pool_max_idle_per_host(64)
        .timeout(std::time::Duration::from_secs(120));
    for cert in reqwest::Certificate::from_pem_bundle(root_pem.as_bytes()).expect("root PEM") {
        builder = builder.add_root_certificate(cert);
    }
    if let Some(identity) = identity_pem {
        builder = builder.identity(reqwest::Identity::from_pem(identity).expect("identity PEM"));
    }
    builder
}

/// Sends a JSON POST; returns the status and the JSON answer.
pub async fn post(
    request: reqwest::RequestBuilder,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = request
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("body read");
    let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, value)
}

/// A new P-256 key and a PKCS#10 request for it asking for `cn` (which policy ignores).
pub fn key_and_csr(cn: &str) -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::new(vec![format!("{cn}.example")]).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let csr = params
        .serialize_request(&key)
        .expect("request")
        .pem()
        .expect("PEM");
    (key, csr)
}

/// Sends `POST /api/v1/enroll` to `base`.
pub async fn enroll(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    csr: &str,
) -> (u16, serde_json::Value) {
    post(
        client.post(format!("{base}/api/v1/enroll")),
        &serde_json::json!({ "token": token, "csr": csr }),
    )
    .await
}

/// A proof (header value) for `body` signed with the key of `identity_pem` (key then chain),
/// made `age_secs` seconds ago.
pub fn proof(
    identity_pem: &[u8],
    purpose: herald_token_service::Purpose,
    body: &[u8],
    age_secs: i64,
) -> String {
    let signer =
        herald_token_service::Signer::from_identity_pem(&String::from_utf8_lossy(identity_pem))
            .expect("identity signs");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    signer
        .header(purpose, body, now - age_secs)
        .expect("proof signed")
}

/// The body of a renewal request for `csr`.
pub fn renewal_body(csr: &str) -> String {
    serde_json::json!({ "csr": csr }).to_string()
}

/// Sends a JSON `body` to `url` with extra `headers`; returns the status and the JSON answer.
pub async fn post_with(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, serde_json::Value), reqwest::Error> {
    let mut request = client.post(url).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.body(body.to_owned()).send().await?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    ))
}

/// Sends `POST /api/v1/renew` to `base` with a fresh proof signed by `identity_pem` (the
/// current key and certificate); `client` may or may not present that identity over TLS.
pub async fn renew(
    client: &reqwest::Client,
    base: &str,
    identity_pem: &[u8],
    csr: &str,
) -> Result<(u16, serde_json::Value), reqwest::Error> {
    let body = renewal_body(csr);
    let proof = proof(
        identity_pem,
        herald_token_service::Purpose::Renew,
        body.as_bytes(),
        0,
    );
    post_with(
        client,
        &format!("{base}/api/v1/renew"),
        &body,
        &[(herald_token_service::PROOF_HEADER, &proof)],
    )
    .await
}

/// The identity file an endpoint keeps: key then certificate chain.
pub fn identity(key: &rcgen::KeyPair, issued: &serde_json::Value) -> Vec<u8> {
    let mut pem = key.serialize_pem();
    pem.push_str(issued["certificate_pem"].as_str().expect("certificate"));
    pem.push_str(issued["chain_pem"].as_str().expect("chain"));
    pem.into_bytes()
}

/// The error code of a JSON error answer.
pub fn code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("(none)")
}

/// A runtime for one scenario.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A second `herald-ca serve` on the same data folder (and so the same store), stopped when
/// dropped.
pub struct SecondServer {
    child: std::process::Child,
    /// Its HTTPS address.
    pub https: std::net::SocketAddr,
}

impl SecondServer {
    /// Starts it and waits until it listens.
    pub fn start(ca: &TestCa) -> Self {
        let https = crate::ca_support::free_addr();
        let http = crate::ca_support::free_addr();
        let child = ca_cmd()
            .args(["serve", "--data-dir"])
            .arg(&ca.dir)
            .args([
                "--listen",
                &https.to_string(),
                "--http-listen",
                &http.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("second server starts");
        wait_listening(https);
        Self { child, https }
    }
}

impl Drop for SecondServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something accepts connections on `addr`.
pub fn wait_listening(addr: std::net::SocketAddr) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listens on {addr}");
}

/// A TLS server certificate for `localhost` from the CA (server profile), with its key and
/// the issuing CA appended: what a relay (or a test proxy) serves endpoints with.
pub fn localhost_tls(ca: &TestCa, label: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = ca.scratch(&format!("{label}-tls.key"));
    let csr = ca.scratch(&format!("{label}-tls.csr"));
    let cert = ca.scratch(&format!("{label}-tls.crt"));
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&csr),
    );
    run_ok(
        ca_cmd()
            .args([
                "cert",
                "issue",
                "--profile",
                "server",
                "--name",
                "localhost",
            ])
            .arg("--data-dir")
            .arg(&ca.dir)
            .arg("--csr")
            .arg(&csr)
            .arg("--out")
            .arg(&cert),
    );
    let mut chain = std::fs::read_to_string(&cert).expect("certificate");
    chain.push_str(&std::fs::read_to_string(ca.file("intermediate.crt")).expect("issuing CA"));
    std::fs::write(&cert, chain).expect("chain written");
    (cert, key)
}

/// A `herald-ca relay`, stopped when dropped.
pub struct RelayProcess {
    child: std::process::Child,
    /// Its base URL (`https://localhost:PORT`).
    pub url: String,
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
}

impl RelayProcess {
    /// Enrolls (with `token`) and starts a relay forwarding to `upstream`.
    pub fn start(ca: &TestCa, label: &str, upstream: &str, token: &str, fingerprint: &str) -> Self {
        Self::start_with(ca, label, upstream, token, fingerprint, &[])
    }

    /// Like [`RelayProcess::start`], with extra `relay` arguments.
    pub fn start_with(
        ca: &TestCa,
        label: &str,
        upstream: &str,
        token: &str,
        fingerprint: &str,
        extra: &[&str],
    ) -> Self {
        let (cert, key) = localhost_tls(ca, label);
        let addr = crate::ca_support::free_addr();
        let child = herald_e2e::herald_bin("herald-ca")
            .args([
                "relay",
                "--upstream",
                upstream,
                "--root-fingerprint",
                fingerprint,
            ])
            .args(["--token", token, "--listen", &addr.to_string()])
            .arg("--state-dir")
            .arg(ca.scratch(&format!("{label}-state")))
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .args(extra)
            .env("HERALD_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("relay starts");
        wait_listening(addr);
        Self {
            child,
            url: format!("https://localhost:{}", addr.port()),
            addr,
        }
    }

    /// The relay's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl RelayProcess {
    /// The relay's resident memory (VmRSS), bytes.
    pub fn resident_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("relay process status readable");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS line");
        kib * 1024
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a token for `base` in `group` over the API (operator); returns the answer.
pub async fn token_in_group(site: &Site, base: &str, group: &str) -> serde_json::Value {
    let (status, created) = post(
        site.client()
            .post(format!("{}/api/v1/tokens", site.ca.https_url()))
            .bearer_auth(&site.operator),
        &serde_json::json!({ "name": base, "group": group }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    created
}

/// Enrolls with `token`; returns the name, the identity (key then chain) and the answer.
pub async fn enroll_with(site: &Site, token: &str) -> (String, Vec<u8>, serde_json::Value) {
    let (key, csr) = key_and_csr("asks-for-nothing");
    let (status, issued) = enroll(&site.client(), &site.ca.https_url(), token, &csr).await;
    assert_eq!(status, 200, "{issued}");
    let name = issued["name"].as_str().unwrap().to_owned();
    (name, identity(&key, &issued), issued)
}

/// `POST /api/v1/fleet/{name}/group` with `bearer`.
pub async fn set_group(
    site: &Site,
    name: &str,
    group: &str,
    bearer: &str,
) -> (u16, serde_json::Value) {
    post(
        site.client()
            .post(format!("{}/api/v1/fleet/{name}/group", site.ca.https_url()))
            .bearer_auth(bearer),
        &serde_json::json!({ "group": group }),
    )
    .await
}

/// Sends a status report over mutual TLS with `identity`.
pub async fn report(site: &Site, identity: &[u8], body: serde_json::Value) {
    let endpoint = client_with(&site.root_pem, Some(identity));
    let (status, ack) = post(
        endpoint.post(format!("{}/api/v1/status", site.ca.https_url())),
        &body,
    )
    .await;
    assert_eq!(status, 200, "{ack}");
}

/// The organizationalUnitName values of a PEM certificate, as OpenSSL reads its Subject.
pub fn units_of(site: &Site, label: &str, certificate_pem: &str) -> Vec<String> {
    let file = site.ca.scratch(&format!("{label}.pem"));
    std::fs::write(&file, certificate_pem).expect("certificate written");
    let out = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
            .arg(&file),
    );
    let subject = String::from_utf8_lossy(&out.stdout);
    let subject = subject.trim().trim_start_matches("subject=");
    subject
        .split(',')
        .filter_map(|part| part.strip_prefix("OU="))
        .map(str::to_owned)
        .collect()
}
