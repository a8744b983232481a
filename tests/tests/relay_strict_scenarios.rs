//! A relay is as strict as the CA: repository files only for unrevoked clients of this CA
//! (checked against a CRL the relay keeps fresh), paths with dot segments refused before
//! anything is forwarded or cached, a cache bounded in bytes, and files larger than that bound
//! streamed through. The requests with odd paths are sent with `curl --path-as-is`, since
//! HTTP client libraries normalise dot segments away.

#![allow(clippy::unwrap_used)]

mod ca_support;
mod enroll_support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ca_support::{ca_cmd, run_ok};
use enroll_support::{client_with, code, runtime, wait_listening, RelayProcess, Site};

/// A static file server (the update repository mirror) logging its requests, stopped when
/// dropped.
struct Mirror {
    child: std::process::Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mirror {
    /// Serves the files `(name, content)` over plain HTTP.
    fn serve(files: &[(&str, &[u8])]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let log = dir.path().join("requests.log");
        let addr = ca_support::free_addr();
        let child = Command::new("python3")
            .args(["-m", "http.server", &addr.port().to_string()])
            .args(["--bind", "127.0.0.1", "--directory"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_listening(addr);
        Self {
            child,
            addr,
            log,
            _dir: dir,
        }
    }

    /// How many times the mirror was asked for `/name`.
    fn fetches(&self, name: &str) -> usize {
        let needle = format!("\"GET /{name} ");
        std::fs::read_to_string(&self.log)
            .unwrap()
            .matches(&needle)
            .count()
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA whose discovery document lists `mirror`, and a relay in front of it started with the
/// extra `relay` arguments `extra`.
fn site_and_relay(mirror: &Mirror, extra: &[&str]) -> (Site, RelayProcess) {
    let site = Site::start_with(|ca| {
        ca.set_config("repository_urls", &format!("[\"http://{}/\"]", mirror.addr));
    });
    let relay = RelayProcess::start_with(
        &site.ca,
        "relay",
        &site.ca.https_url(),
        &site.cli_token("relay", "relay"),
        &site.fingerprint(),
        extra,
    );
    (site, relay)
}

/// An endpoint certificate issued by the CA.
struct Endpoint {
    /// Certificate then issuing CA, PEM (what a client sends).
    chain: PathBuf,
    key: PathBuf,
}

impl Endpoint {
    fn issue(site: &Site, name: &str) -> Self {
        let (key, cert) = site.ca.issue(name);
        let chain = site.ca.scratch(&format!("{name}-chain.pem"));
        let mut text = std::fs::read_to_string(&cert).unwrap();
        text.push_str(&std::fs::read_to_string(site.ca.file("intermediate.crt")).unwrap());
        std::fs::write(&chain, text).unwrap();
        Self { chain, key }
    }

    /// An HTTPS client presenting this certificate.
    fn client(&self, site: &Site) -> reqwest::Client {
        let mut identity = std::fs::read(&self.key).unwrap();
        identity.extend(std::fs::read(&self.chain).unwrap());
        client_with(&site.root_pem, Some(&identity))
    }
}

/// GETs `url` exactly as written (no dot-segment removal) with curl; returns the status and
/// the body.
fn curl_as_is(site: &Site, endpoint: Option<&Endpoint>, url: &str) -> (u16, Vec<u8>) {
    curl(site, endpoint, &["--path-as-is"], url)
}

/// Requests `url` with curl and the extra arguments `args`; returns the status and the body.
fn curl(site: &Site, endpoint: Option<&Endpoint>, args: &[&str], url: &str) -> (u16, Vec<u8>) {
    let body = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-w", "%{http_code}"])
        .args(args)
        .arg("--cacert")
        .arg(site.ca.file("root.crt"))
        .arg("-o")
        .arg(body.path());
    if let Some(endpoint) = endpoint {
        cmd.arg("--cert")
            .arg(&endpoint.chain)
            .arg("--key")
            .arg(&endpoint.key);
    }
    let out = cmd.arg(url).output().unwrap();
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (status, std::fs::read(body.path()).unwrap())
}

fn error_code(body: &[u8]) -> String {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    code(&json).to_owned()
}

/// `len` bytes that are not all alike.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn anonymous_access_to_relay_repository_refused() {
    let mirror = Mirror::serve(&[("1.root.json", b"version one")]);
    let (site, relay) = site_and_relay(&mirror, &[]);
    let url = format!("{}/repo/0/1.root.json", relay.url);
    let (status, body) = curl_as_is(&site, None, &url);
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    assert_eq!(error_code(&body), "client_certificate_required");
    assert_eq!(
        mirror.fetches("1.root.json"),
        0,
        "nothing fetched for a stranger"
    );
    // The same request with a certificate of the CA is served.
    let endpoint = Endpoint::issue(&site, "reader");
    let (status, body) = curl_as_is(&site, Some(&endpoint), &url);
    assert_eq!(status, 200);
    assert_eq!(body, b"version one");
}

#[test]
fn revoked_endpoint_refused_by_relay_and_enrolled_endpoint_served() {
    let mirror = Mirror::serve(&[("1.root.json", b"version one")]);
    let (site, relay) = site_and_relay(&mirror, &["--crl-refresh-secs", "1"]);
    let url = format!("{}/repo/0/1.root.json", relay.url);
    let kept = Endpoint::issue(&site, "kept");
    let lost = Endpoint::issue(&site, "lost");
    let rt = runtime();
    let fetch = |endpoint: &Endpoint| {
        let client = endpoint.client(&site);
        let url = url.clone();
        rt.block_on(async move {
            let r = client.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.bytes().await.unwrap().to_vec())
        })
    };
    assert_eq!(fetch(&kept), (200, b"version one".to_vec()));
    assert_eq!(fetch(&lost), (200, b"version one".to_vec()));

    run_ok(
        ca_cmd()
            .args(["cert", "revoke", "--data-dir"])
            .arg(&site.ca.dir)
            .arg("lost"),
    );
    // The CA publishes a new CRL within a second or so; the relay fetches it every second.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, body) = loop {
        let (status, body) = fetch(&lost);
        if status != 200 {
            break (status, body);
        }
        assert!(
            Instant::now() < deadline,
            "the relay kept serving a revoked endpoint"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert_eq!(error_code(&body), "certificate_revoked");
    // The endpoint that was not revoked is still served.
    assert_eq!(fetch(&kept), (200, b"version one".to_vec()));
}

#[test]
fn repository_through_a_chain_of_two_relays_needs_a_client_certificate() {
    let mirror = Mirror::serve(&[("1.root.json", b"version one")]);
    let (site, near) = site_and_relay(&mirror, &[]);
    let far = RelayProcess::start(
        &site.ca,
        "far",
        &near.url,
        &site.cli_token("relay", "relay"),
        &site.fingerprint(),
    );
    let url = format!("{}/repo/0/1.root.json", far.url);
    let (status, body) = curl_as_is(&site, None, &url);
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    // The far relay fetches from the near one with its own relay certificate.
    let endpoint = Endpoint::issue(&site, "reader");
    let (status, body) = curl_as_is(&site, Some(&endpoint), &url);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, b"version one");
}

/// Spellings of `big.bin` (60 of them): dot segments in several encodings, and percent-encoded
/// letters of the name.
fn spellings() -> Vec<String> {
    let mut all = Vec::new();
    for n in 1..=10 {
        all.push(format!("{}big.bin", "./".repeat(n)));
        all.push(format!("{}big.bin", "%2e/".repeat(n)));
        all.push(format!("{}big.bin", "%2E/".repeat(n)));
        all.push(format!("{}big.bin", "x/../".repeat(n)));
    }
    let name: Vec<char> = "big.bin".chars().collect();
    for mask in 1..=20u32 {
        let spelled: String = name
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if mask & (1 << i) != 0 {
                    format!("%{:02X}", *c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect();
        all.push(spelled);
    }
    all
}

#[test]
fn dot_segment_variants_do_not_grow_relay_cache() {
    const SIZE: usize = 4 * 1024 * 1024;
    let content = pattern(SIZE);
    let mirror = Mirror::serve(&[("big.bin", &content)]);
    let (site, relay) = site_and_relay(&mirror, &[]);
    let endpoint = Endpoint::issue(&site, "reader");
    let (status, body) = curl_as_is(
        &site,
        Some(&endpoint),
        &format!("{}/repo/0/big.bin", relay.url),
    );
    assert_eq!(status, 200);
    assert_eq!(body, content);
    let before = relay.resident_bytes();

    let variants = spellings();
    assert_eq!(variants.len(), 60);
    for variant in &variants {
        let (status, body) = curl_as_is(
            &site,
            Some(&endpoint),
            &format!("{}/repo/0/{variant}", relay.url),
        );
        // Either refused, or served as the one file it names.
        match status {
            400 => assert_eq!(error_code(&body), "bad_path", "{variant}"),
            200 => assert!(body == content, "{variant}: other content"),
            other => panic!("{variant}: HTTP {other}"),
        }
    }
    // The relay fetched and held the file once.
    assert_eq!(mirror.fetches("big.bin"), 1);
    let grown = relay.resident_bytes().saturating_sub(before);
    assert!(
        grown < 2 * SIZE as u64,
        "the relay grew by {grown} bytes for 60 spellings of one {SIZE}-byte file"
    );
}

#[test]
fn ocsp_dot_segments_do_not_reach_upstream_metrics() {
    let mirror = Mirror::serve(&[("1.root.json", b"version one")]);
    let (site, relay) = site_and_relay(&mirror, &[]);
    // The CA does answer its metrics.
    let (status, metrics) = curl_as_is(&site, None, &format!("{}/metrics", site.ca.https_url()));
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&metrics).contains("herald_ca_"));
    for path in [
        "/ocsp/../metrics",
        "/ocsp/%2e%2e/metrics",
        "/ocsp/.%2E/metrics",
        "/ocsp/%2E./metrics",
        "/ocsp/x/../../metrics",
        "/ocsp/./../metrics",
        "/crl/../metrics",
        "/crl/%2e%2e",
        "/ca/..",
        "/ocsp/..%2fmetrics",
    ] {
        let (status, body) = curl_as_is(&site, None, &format!("{}{path}", relay.url));
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("herald_ca_"),
            "{path} reached the metrics: {text}"
        );
        assert_eq!(status, 400, "{path}: {text}");
        assert_eq!(error_code(&body), "bad_path", "{path}");
    }
}

#[test]
fn large_file_streams_through_relay() {
    // Larger than the relay's cache bound, and than any answer the relay ever held in memory.
    const SIZE: usize = 65 * 1024 * 1024;
    const CACHE: usize = 8 * 1024 * 1024;
    let content = pattern(SIZE);
    let mirror = Mirror::serve(&[("big.bin", &content), ("small.json", b"{}")]);
    let (site, relay) = site_and_relay(&mirror, &["--cache-max-bytes", &CACHE.to_string()]);
    let endpoint = Endpoint::issue(&site, "reader");
    let client = endpoint.client(&site);
    let before = relay.resident_bytes();
    let rt = runtime();
    for _ in 0..2 {
        let url = format!("{}/repo/0/big.bin", relay.url);
        let client = client.clone();
        let (status, length, body) = rt.block_on(async move {
            let r = client.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            let length = r.content_length();
            (status, length, r.bytes().await.unwrap())
        });
        assert_eq!(status, 200);
        assert_eq!(length, Some(SIZE as u64));
        assert!(body.as_ref() == content.as_slice(), "content differs");
    }
    // Not held: each request streamed it from the mirror.
    assert_eq!(mirror.fetches("big.bin"), 2);
    let grown = relay.resident_bytes().saturating_sub(before);
    assert!(
        grown < (SIZE / 2) as u64,
        "the relay grew by {grown} bytes while streaming a {SIZE}-byte file"
    );
    // Small files are still cached.
    for _ in 0..2 {
        let (status, _) = curl_as_is(
            &site,
            Some(&endpoint),
            &format!("{}/repo/0/small.json", relay.url),
        );
        assert_eq!(status, 200);
    }
    assert_eq!(mirror.fetches("small.json"), 1);
}

#[test]
fn relay_discovery_never_built_from_the_host_header() {
    let mirror = Mirror::serve(&[("1.root.json", b"version one")]);
    let (site, relay) = site_and_relay(&mirror, &[]);
    let body = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("curl")
        .args([
            "-s",
            "-w",
            "%{http_code}",
            "-H",
            "Host: attacker.example",
            "--cacert",
        ])
        .arg(site.ca.file("root.crt"))
        .arg("-o")
        .arg(body.path())
        .arg(format!("{}/.well-known/herald", relay.url))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "200");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(body.path()).unwrap()).unwrap();
    // The relay's own address: the DNS name of its TLS certificate and its listening port.
    assert_eq!(
        doc["enroll_url"],
        format!("{}/api/v1/enroll", relay.url).as_str(),
        "{doc}"
    );
    assert!(!doc.to_string().contains("attacker"), "{doc}");
}

#[test]
fn relay_errors_answer_the_json_error_body() {
    let mirror = Mirror::serve(&[("1.root.json", b"version one")]);
    let (site, relay) = site_and_relay(&mirror, &[]);
    let endpoint = Endpoint::issue(&site, "reader");
    // The mirror's own error page (HTML) is not passed on as it is.
    let missing = format!("{}/repo/0/2.root.json", relay.url);
    let (status, body) = curl(&site, Some(&endpoint), &[], &missing);
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert_eq!(error_code(&body), "not_found");
    // No such route, no such method.
    let (status, body) = curl(&site, None, &[], &format!("{}/nope", relay.url));
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));
    let enroll = format!("{}/api/v1/enroll", relay.url);
    let (status, body) = curl(&site, None, &[], &enroll);
    assert_eq!(
        (status, error_code(&body).as_str()),
        (405, "method_not_allowed")
    );
    // A body over the relay's limit, refused before anything is forwarded.
    let big = site.ca.scratch("big.json");
    std::fs::write(&big, vec![b' '; 128 * 1024]).unwrap();
    let data = format!("@{}", big.display());
    let post = [
        "-H",
        "content-type: application/json",
        "--data-binary",
        &data,
    ];
    let (status, body) = curl(&site, None, &post, &enroll);
    assert_eq!((status, error_code(&body).as_str()), (413, "too_large"));
}
