//! Servers stay fair under slow and greedy clients: one client holding thousands of slow
//! connections on every listener of `herald-ca serve` and of `herald-ca relay` does not keep
//! another client from its OCSP answers, CRLs, health checks and enrollment; its connections
//! are closed after the request deadline; the server's memory stays bounded. A client whose
//! request body is over the limit gets its 413 and a clean close, not a reset.
//!
//! The greedy client connects from 127.0.0.1, the well-behaved one from 127.0.0.2 (Linux
//! routes all of 127/8 to the loopback interface), so the cap per client address protects it.

#![allow(clippy::unwrap_used)]

mod ca_support;
mod enroll_support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use ca_support::{run_ok, TestCa};
use enroll_support::{client_builder, enroll, key_and_csr, runtime, RelayProcess, Site};

/// Slow connections the greedy client opens on each listener.
const GREEDY_CONNECTIONS: usize = 4100;

/// Seconds a whole request may take in these scenarios (the servers' `request_timeout_secs`
/// and `handshake_timeout_secs`): well beyond what opening the slow connections takes, so
/// that the connections opened first are still held while the other client is served. On a
/// busy machine opening them takes 5 to 20 seconds: the server falls behind the greedy
/// client's connects, its accept queue overflows and the kernel makes those connects retry
/// their SYN after a second.
const DEADLINE_SECS: u64 = 45;

/// The relay's cap of connections per client address in its scenario (set with
/// `--max-connections-per-client`; fewer TLS handshakes than the default keeps it quick).
const RELAY_CAP: usize = 64;

/// Slow requests with a never-ending body (after a complete TLS handshake) among the
/// greedy client's connections to the relay: more than its cap.
const SLOW_BODIES: usize = RELAY_CAP + 16;

/// The servers' default cap of connections per client address.
const PER_CLIENT_CAP: usize = 256;

/// Largest resident memory accepted for a server under the flood, bytes.
const MAX_RSS: u64 = 128 * 1024 * 1024;

/// One flood at a time: the scenarios of this file share the machine's file descriptors.
static FLOOD: Mutex<()> = Mutex::new(());

/// The start of an OCSP request over HTTP/1.1 whose announced body never comes.
const SLOW_OCSP_POST: &[u8] = b"POST /ocsp HTTP/1.1\r\nHost: x\r\n\
    Content-Type: application/ocsp-request\r\nContent-Length: 4000\r\n\r\n\x30\x82\x0f";

/// The start of a TLS ClientHello that is never finished.
const SLOW_CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";

/// Raises this process's open-file limit to the hard limit and returns how many slow
/// connections per listener it allows for `listeners` listeners (at most
/// [`GREEDY_CONNECTIONS`]).
fn greedy_count(listeners: usize) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            eprintln!("cannot raise the open-file limit: {e}");
        }
    }
    let soft = getrlimit(Resource::Nofile)
        .current
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let count = (soft.saturating_sub(512) / listeners).min(GREEDY_CONNECTIONS);
    if count < GREEDY_CONNECTIONS {
        eprintln!(
            "open-file limit {soft}: {count} slow connections per listener instead of \
             {GREEDY_CONNECTIONS}"
        );
    }
    count
}

/// Opens `count` connections to `addr` from 127.0.0.1, each sending `opening` and then
/// nothing more.
fn hold_connections(addr: SocketAddr, count: usize, opening: &[u8]) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            // A connection the server refused at once may already be reset.
            let _ = s.write_all(opening);
            s
        })
        .collect()
}

/// Asserts that the server closes every connection of `held` within `within`.
fn assert_all_closed(held: Vec<TcpStream>, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    let total = held.len();
    let mut open = 0;
    for mut s in held {
        let mut buf = [0u8; 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match s.read(&mut buf) {
                Ok(0) => break,
                // An answer (408, 503, ...) before the close is fine.
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionReset
                        || e.kind() == std::io::ErrorKind::ConnectionAborted =>
                {
                    break
                }
                Err(_) => {
                    open += 1;
                    break;
                }
            }
        }
    }
    assert_eq!(
        open, 0,
        "{open} of {total} slow connections on {what} still open after the deadline"
    );
}

/// How many connections of `held` the server still keeps open (nothing to read yet).
fn count_open(held: &[TcpStream]) -> usize {
    held.iter()
        .filter(|&s| {
            s.set_nonblocking(true).unwrap();
            let mut reader: &TcpStream = s;
            let open = matches!(
                reader.read(&mut [0u8; 1]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            );
            s.set_nonblocking(false).unwrap();
            open
        })
        .count()
}

/// Waits until the server has dealt with every connection of `held` (closing those beyond
/// the greedy client's cap), then asserts that it keeps no more than the cap open.
fn assert_capped(held: &[TcpStream], cap: usize, what: &str) {
    let waited = Instant::now();
    let mut open = count_open(held);
    while open > cap && waited.elapsed() < Duration::from_secs(DEADLINE_SECS) {
        std::thread::sleep(Duration::from_millis(100));
        open = count_open(held);
    }
    assert!(
        open <= cap,
        "the server keeps {open} connections of the greedy client open on {what}, more than \
         the cap of {cap} per client address"
    );
}

/// Asserts that the greedy client still holds connections on `what`: the checks before ran
/// under the flood.
fn assert_still_held(held: &[TcpStream], what: &str) {
    assert!(
        count_open(held) > 0,
        "the slow connections on {what} were closed before the other client was served"
    );
}

/// The resident memory of process `pid`, bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

fn assert_memory_bounded(pid: u32, what: &str) {
    let rss = rss(pid);
    eprintln!("{what}: resident memory under the flood {} MiB", rss >> 20);
    assert!(
        rss < MAX_RSS,
        "{what} grew to {} MiB under the flood",
        rss >> 20
    );
}

/// A client trusting `root_pem` that connects from 127.0.0.2.
fn polite_client(root_pem: &str) -> reqwest::ClientBuilder {
    client_builder(root_pem, None).local_address(IpAddr::from([127, 0, 0, 2]))
}

/// A request body that starts and never ends.
fn endless_body() -> reqwest::Body {
    let start =
        futures_util::stream::once(async { Ok::<_, std::io::Error>(b"{\"token\": \"".to_vec()) });
    reqwest::Body::wrap_stream(start.chain(futures_util::stream::pending()))
}

/// Awaits `answer`, failing unless it comes within a second.
async fn within_a_second<T>(what: &str, answer: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(1), answer)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within a second under the flood"))
}

/// GETs `url`, expecting 200; returns the body.
async fn get_ok(client: &reqwest::Client, url: String) -> Vec<u8> {
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.bytes().await.unwrap().to_vec()
}

/// POSTs the OCSP request to `url`, expecting a 200 OCSP response; returns its body.
async fn ocsp_ok(client: &reqwest::Client, url: String, request: Vec<u8>) -> Vec<u8> {
    let response = client
        .post(&url)
        .header("content-type", "application/ocsp-request")
        .body(request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{url}");
    assert_eq!(
        response.headers()["content-type"],
        "application/ocsp-response"
    );
    response.bytes().await.unwrap().to_vec()
}

/// An OCSP request (DER, no nonce) for a certificate the CA issued.
fn ocsp_request(ca: &TestCa) -> Vec<u8> {
    let (_, cert) = ca.issue("watched");
    let request = ca.scratch("ocsp-request.der");
    run_ok(
        Command::new("openssl")
            .args(["ocsp", "-no_nonce", "-issuer"])
            .arg(ca.file("intermediate.crt"))
            .arg("-cert")
            .arg(&cert)
            .arg("-reqout")
            .arg(&request),
    );
    std::fs::read(&request).unwrap()
}

/// Enrolls a new key with `token` at `base`, expecting a certificate.
async fn enroll_ok(client: &reqwest::Client, base: &str, token: &str) {
    let (_, csr) = key_and_csr("polite");
    let (status, body) = enroll(client, base, token, &csr).await;
    assert_eq!(status, 200, "enrollment refused: {body}");
    assert_eq!(body["name"], "polite-0001", "{body}");
}

#[test]
fn slow_clients_do_not_starve_ocsp() {
    let _flood = FLOOD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let count = greedy_count(2);
    let site = Site::start_with(|ca| {
        ca.set_config("request_timeout_secs", &DEADLINE_SECS.to_string());
        ca.set_config("handshake_timeout_secs", &DEADLINE_SECS.to_string());
    });
    let ca = &site.ca;
    let request = ocsp_request(ca);
    let token = ca.cli_token("polite", "endpoint");

    // The greedy client: requests whose body never comes on the plain-HTTP listener,
    // handshakes that never finish on the HTTPS listener.
    let started = Instant::now();
    let (slow_http, slow_https) = std::thread::scope(|s| {
        let http = s.spawn(|| hold_connections(ca.http, count, SLOW_OCSP_POST));
        let https = hold_connections(ca.https, count, SLOW_CLIENT_HELLO);
        (http.join().unwrap(), https)
    });
    eprintln!(
        "{} slow connections opened in {:?}",
        2 * count,
        started.elapsed()
    );
    assert_capped(&slow_http, PER_CLIENT_CAP, "the plain-HTTP listener");
    assert_capped(&slow_https, PER_CLIENT_CAP, "the HTTPS listener");

    // Another client is answered at once, on both listeners.
    let rt = runtime();
    rt.block_on(async {
        let client = polite_client(&site.root_pem).build().unwrap();
        let http = ca.http_url();
        let https = ca.https_url();
        let health = within_a_second("/healthz", get_ok(&client, format!("{http}/healthz"))).await;
        assert_eq!(health, b"ok\n");
        let crl = within_a_second(
            "CRL download",
            get_ok(&client, format!("{http}/crl/intermediate.crl")),
        )
        .await;
        assert_eq!(crl.first(), Some(&0x30), "a DER CRL");
        within_a_second(
            "OCSP request",
            ocsp_ok(&client, format!("{http}/ocsp"), request.clone()),
        )
        .await;
        let health = within_a_second(
            "/healthz over HTTPS",
            get_ok(&client, format!("{https}/healthz")),
        )
        .await;
        assert_eq!(health, b"ok\n");
        within_a_second(
            "OCSP request over HTTPS",
            ocsp_ok(&client, format!("{https}/ocsp"), request.clone()),
        )
        .await;
        within_a_second("enrollment", enroll_ok(&client, &https, &token)).await;
    });
    assert_still_held(&slow_http, "the plain-HTTP listener");
    assert_still_held(&slow_https, "the HTTPS listener");
    assert_memory_bounded(ca.server_pid().unwrap(), "herald-ca serve");

    // The greedy connections are closed after the deadline.
    let within = Duration::from_secs(DEADLINE_SECS + 20);
    assert_all_closed(slow_http, within, "the plain-HTTP listener");
    assert_all_closed(slow_https, within, "the HTTPS listener");
}

#[test]
fn slow_clients_do_not_starve_the_relay() {
    let _flood = FLOOD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let count = greedy_count(1);
    let site = Site::start();
    let ca = &site.ca;
    let request = ocsp_request(ca);
    let deadline = DEADLINE_SECS.to_string();
    let relay = RelayProcess::start_with(
        ca,
        "fair",
        &ca.https_url(),
        &ca.cli_token("relay", "relay"),
        &site.fingerprint(),
        &[
            "--request-timeout-secs",
            &deadline,
            "--handshake-timeout-secs",
            &deadline,
            "--max-connections-per-client",
            &RELAY_CAP.to_string(),
        ],
    );
    let token = ca.cli_token("polite", "endpoint");

    let rt = runtime();
    rt.block_on(async {
        // The greedy client completes TLS handshakes and sends enrollment requests whose
        // bodies never end, more than its cap allows...
        let greedy = client_builder(&site.root_pem, None)
            .local_address(IpAddr::from([127, 0, 0, 1]))
            .resolve("localhost", relay.addr)
            .build()
            .unwrap();
        let finished = Arc::new(AtomicUsize::new(0));
        let mut slow = tokio::task::JoinSet::new();
        for _ in 0..SLOW_BODIES {
            let request = greedy
                .post(format!("{}/api/v1/enroll", relay.url))
                .header("content-type", "application/json")
                .body(endless_body());
            let finished = finished.clone();
            slow.spawn(async move {
                let answer = request.send().await;
                finished.fetch_add(1, Ordering::SeqCst);
                answer.map(|r| r.status())
            });
        }
        // (those beyond the cap are closed at once: wait for that, for a bounded time)...
        let waited = Instant::now();
        while finished.load(Ordering::SeqCst) < SLOW_BODIES - RELAY_CAP
            && waited.elapsed() < Duration::from_secs(DEADLINE_SECS)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // ...then opens the rest of its connections and sends nothing on them.
        let silent = tokio::task::spawn_blocking(move || {
            hold_connections(relay.addr, count - SLOW_BODIES, b"")
        })
        .await
        .unwrap();
        eprintln!("{count} slow connections opened in {:?}", waited.elapsed());
        let pending = SLOW_BODIES - finished.load(Ordering::SeqCst);
        assert!(
            pending <= RELAY_CAP,
            "the relay serves {pending} slow requests of one client, more than the cap of \
             {RELAY_CAP}"
        );
        let silent = tokio::task::spawn_blocking(move || {
            assert_capped(&silent, RELAY_CAP - pending, "the relay's listener");
            silent
        })
        .await
        .unwrap();

        let client = polite_client(&site.root_pem)
            .resolve("localhost", relay.addr)
            .build()
            .unwrap();
        let url = &relay.url;
        let health = within_a_second("/healthz", get_ok(&client, format!("{url}/healthz"))).await;
        assert_eq!(health, b"ok\n");
        let crl = within_a_second(
            "CRL download",
            get_ok(&client, format!("{url}/crl/intermediate.crl")),
        )
        .await;
        assert_eq!(crl.first(), Some(&0x30), "a DER CRL");
        within_a_second(
            "OCSP request",
            ocsp_ok(&client, format!("{url}/ocsp"), request),
        )
        .await;
        within_a_second("enrollment", enroll_ok(&client, url, &token)).await;

        assert!(
            finished.load(Ordering::SeqCst) < SLOW_BODIES,
            "the slow requests ended before the other client was served"
        );
        assert_memory_bounded(relay.pid(), "herald-ca relay");

        // Every slow request ends, unanswered, after the deadline.
        let all_ended = tokio::time::timeout(Duration::from_secs(DEADLINE_SECS + 20), async {
            let mut answered = Vec::new();
            while let Some(ended) = slow.join_next().await {
                if let Ok(status) = ended.unwrap() {
                    answered.push(status);
                }
            }
            answered
        })
        .await;
        let answered = all_ended.unwrap_or_else(|_| {
            panic!(
                "{} slow requests still open on the relay after the deadline",
                SLOW_BODIES - finished.load(Ordering::SeqCst)
            )
        });
        assert!(
            answered.iter().all(|status| !status.is_success()),
            "a request whose body never ended was answered: {answered:?}"
        );
        tokio::task::spawn_blocking(move || {
            assert_all_closed(
                silent,
                Duration::from_secs(DEADLINE_SECS),
                "the relay's listener",
            )
        })
        .await
        .unwrap();
    });
}

#[test]
fn slow_request_body_is_cut_off_on_both_listeners() {
    let mut ca = TestCa::init();
    ca.set_config("request_timeout_secs", "2");
    ca.serve();
    // Plain HTTP: the announced body never comes; the connection is closed unanswered.
    let slow = hold_connections(ca.http, 1, SLOW_OCSP_POST);
    assert_all_closed(slow, Duration::from_secs(30), "the plain-HTTP listener");
    // HTTPS: a request body that starts and never ends.
    let root = std::fs::read_to_string(ca.file("root.crt")).unwrap();
    runtime().block_on(async {
        let client = client_builder(&root, None).build().unwrap();
        let sent = tokio::time::timeout(
            Duration::from_secs(30),
            client
                .post(format!("{}/api/v1/enroll", ca.https_url()))
                .header("content-type", "application/json")
                .body(endless_body())
                .send(),
        )
        .await
        .expect("the server kept a request with an endless body open");
        assert!(
            sent.as_ref().map_or(true, |r| r.status() == 408),
            "a request whose body never ended was answered: {sent:?}"
        );
    });
}

#[test]
fn oversized_body_gets_its_413_and_a_clean_close_not_a_reset() {
    let mut ca = TestCa::init();
    ca.serve();
    // A request whose announced body is over the OCSP route's limit: the server answers 413
    // without reading the body, so most of it is still unread when the server is done.
    let body = vec![0x30u8; 128 * 1024];
    let head = format!(
        "POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut s = TcpStream::connect(ca.http).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    // The server may stop reading before all of it is sent.
    let _ = s.write_all(&body);
    // The client reads only after the server has finished with the connection.
    std::thread::sleep(Duration::from_millis(500));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let read = s.read_to_end(&mut answer);
    // A reset instead of a close can make a client drop the answer before reading it (curl
    // then reports a failed transfer); the server must close the connection cleanly.
    assert!(
        read.is_ok(),
        "the connection was not closed cleanly ({read:?}) after: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        answer.starts_with(b"HTTP/1.1 413"),
        "no 413: {:?}",
        String::from_utf8_lossy(&answer)
    );
}
