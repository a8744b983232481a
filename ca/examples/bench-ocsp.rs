//! Benchmark: OCSP responses per second, p50/p99 latency and server CPU per response, with the
//! same load generator (a Rust client in this program: 64 keep-alive connections on loopback,
//! reconnecting when a server closes; wrk cannot drive `openssl ocsp`) and the same mix of requests over
//! 10,000 certificates, for herald-ca (pre-signed GET and POST, and nonce requests signed per
//! request), `openssl ocsp -multi 4`, and nginx serving one static OCSP response (the ceiling
//! for serving pre-signed bytes). Prints a table. Not run by CI.
//!
//! ```sh
//! cargo build --release -p herald-ca --bin herald-ca --example bench-ocsp
//! target/release/examples/bench-ocsp [SECONDS] [[LABEL=]HERALD_CA ...]
//! ```
//! Each `HERALD_CA` is a `herald-ca` binary to measure (default: the one built beside this
//! program), one after the other in the same run, with the same load generator, data and
//! peers, so that two builds can be compared; `LABEL` names its rows (default: the path).
//! Needs `nginx` and `openssl` on PATH (`apt-get install nginx openssl`).

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use der::asn1::{Any, OctetString};
use der::{Decode, Encode};
use herald_ca::{Authority, KeyAccess, Serial};
use herald_e2e::servers::ServerProcess;

mod bench_common;
use x509_ocsp::{CertId, OcspRequest, Request, TbsRequest, Version};

const CERTS: usize = 10_000;
const CONNECTIONS: u32 = 64;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn wait_until_listening(addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

fn wait_for(addr: SocketAddr) {
    assert!(wait_until_listening(addr), "{addr} never listened");
}

/// CPU seconds (user + system) of a process and all its descendants.
fn tree_cpu_secs(root: u32) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    let mut pids = descendants(root);
    pids.push(root);
    for pid in pids {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            let after = stat.rsplit(')').next().unwrap_or("");
            let f: Vec<&str> = after.split_whitespace().collect();
            let get = |n: usize| f.get(n).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            total += (get(11) + get(12)) / ticks;
        }
    }
    total
}

struct Row {
    name: String,
    rps: f64,
    p50: String,
    p99: String,
    cpu_us: f64,
    errors: String,
}

/// One kind of request: method, and the bodies (POST) or base64 paths (GET) of the mix.
#[derive(Clone)]
struct Mix {
    post: bool,
    items: Vec<Vec<u8>>,
}

/// Sends one request and reads the response; returns (status 200, connection kept).
fn exchange(
    stream: &mut TcpStream,
    mix: &Mix,
    item: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<(bool, bool)> {
    let mut req = Vec::with_capacity(256 + item.len());
    if mix.post {
        req.extend_from_slice(
            format!(
                "POST /ocsp HTTP/1.1\r\nHost: bench\r\nContent-Type: application/ocsp-request\r\nContent-Length: {}\r\n\r\n",
                item.len()
            )
            .as_bytes(),
        );
        req.extend_from_slice(item);
    } else {
        req.extend_from_slice(b"GET /ocsp/");
        req.extend_from_slice(item);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: bench\r\n\r\n");
    }
    stream.write_all(&req)?;
    buf.clear();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let ok = head.starts_with("http/1.1 200") || head.starts_with("http/1.0 200");
            let keep = head.starts_with("http/1.1") && !head.contains("connection: close");
            return Ok((ok, keep));
        }
    }
}

/// Drives `CONNECTIONS` client connections for `seconds` and measures the server's CPU.
fn load(name: &str, addr: SocketAddr, mix: &Mix, seconds: u32, server_pid: u32) -> Row {
    let cpu_before = tree_cpu_secs(server_pid);
    let deadline = Instant::now() + Duration::from_secs(u64::from(seconds));
    let start = Instant::now();
    let handles: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let mix = mix.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut buf = Vec::new();
                let mut i = c as usize * 7919;
                let mut conn: Option<TcpStream> = None;
                while Instant::now() < deadline {
                    if conn.is_none() {
                        match TcpStream::connect(addr) {
                            Ok(s) => {
                                let _ = s.set_nodelay(true);
                                conn = Some(s);
                            }
                            Err(_) => {
                                errors += 1;
                                std::thread::sleep(Duration::from_millis(1));
                                continue;
                            }
                        }
                    }
                    let Some(stream) = conn.as_mut() else {
                        continue;
                    };
                    i = (i + 1) % mix.items.len();
                    let t = Instant::now();
                    match exchange(stream, &mix, &mix.items[i], &mut buf) {
                        Ok((ok, keep)) => {
                            lat.push(t.elapsed());
                            if !ok {
                                errors += 1;
                            }
                            if !keep {
                                conn = None;
                            }
                        }
                        Err(_) => {
                            errors += 1;
                            conn = None;
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (lat, e) = h.join().unwrap();
        all.extend(lat);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = tree_cpu_secs(server_pid) - cpu_before;
    all.sort();
    let pct = |p: f64| format!("{:.2} ms", bench_common::percentile_ms(&all, p));
    let total = all.len() as f64;
    Row {
        name: name.to_owned(),
        rps: total / elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        cpu_us: if total > 0.0 { cpu / total * 1e6 } else { 0.0 },
        errors: errors.to_string(),
    }
}

fn cert_id(name_hash: &[u8], key_hash: &[u8], serial: &Serial) -> CertId {
    let mut bytes = serial.as_bytes().to_vec();
    if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    CertId {
        hash_algorithm: spki::AlgorithmIdentifierOwned {
            oid: "1.3.14.3.2.26".parse().unwrap(),
            parameters: Some(Any::null()),
        },
        issuer_name_hash: OctetString::new(name_hash).unwrap(),
        issuer_key_hash: OctetString::new(key_hash).unwrap(),
        serial_number: x509_cert::serial_number::SerialNumber::new(&bytes).unwrap(),
    }
}

fn request_der(id: CertId, nonce: Option<[u8; 16]>) -> Vec<u8> {
    let request_extensions = nonce.map(|n| {
        vec![x509_cert::ext::Extension {
            extn_id: "1.3.6.1.5.5.7.48.1.2".parse().unwrap(),
            critical: false,
            extn_value: OctetString::new(OctetString::new(&n[..]).unwrap().to_der().unwrap())
                .unwrap(),
        }]
    });
    OcspRequest {
        tbs_request: TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: vec![Request {
                req_cert: id,
                single_request_extensions: None,
            }],
            request_extensions,
        },
        optional_signature: None,
    }
    .to_der()
    .unwrap()
}

fn descendants(root: u32) -> Vec<u32> {
    let mut pids = vec![root];
    let mut i = 0;
    while let Some(&pid) = pids.get(i) {
        i += 1;
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
            pids.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    pids.remove(0);
    pids
}

/// The `herald-ca` builds to measure, with the label of their rows: the arguments after the
/// first (`[LABEL=]PATH`), else the binary built beside this program.
fn herald_bins() -> Vec<(String, PathBuf)> {
    let given: Vec<(String, PathBuf)> = std::env::args()
        .skip(2)
        .map(|arg| match arg.split_once('=') {
            Some((label, path)) => (format!("herald-ca ({label})"), PathBuf::from(path)),
            None => (format!("herald-ca ({arg})"), PathBuf::from(arg)),
        })
        .collect();
    if !given.is_empty() {
        return given;
    }
    let beside = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("herald-ca");
    vec![("herald-ca".into(), beside)]
}

fn main() {
    let seconds: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    // `openssl ocsp -multi` and nginx fork workers: each server runs in a process group of
    // its own and is stopped with the whole group (also when this program is interrupted).
    bench_common::stop_servers_on_signal();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let https = free_addr();
    let http = free_addr();
    let ca = bench_common::bench_ca(&dir, https, http);
    let serials = bench_common::record_certs(&ca, CERTS, |_| None);

    let issuer = x509_cert::Certificate::from_der(ca.intermediate_der()).unwrap();
    let name = issuer.tbs_certificate.subject.to_der().unwrap();
    let key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let sha1 = |d: &[u8]| {
        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, d)
            .as_ref()
            .to_vec()
    };
    let (name_hash, key_hash) = (sha1(&name), sha1(key));
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let plain: Vec<String> = serials
        .iter()
        .map(|s| b64(&request_der(cert_id(&name_hash, &key_hash, s), None)))
        .collect();
    let mut nonce = [0u8; 16];
    let with_nonce: Vec<String> = serials
        .iter()
        .enumerate()
        .map(|(i, s)| {
            nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
            b64(&request_der(cert_id(&name_hash, &key_hash, s), Some(nonce)))
        })
        .collect();
    drop(ca);

    let decode = |v: &Vec<String>| -> Vec<Vec<u8>> {
        v.iter()
            .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap())
            .collect()
    };
    let get_mix = Mix {
        post: false,
        items: plain.iter().map(|b| b.clone().into_bytes()).collect(),
    };
    let post_mix = Mix {
        post: true,
        items: decode(&plain),
    };
    let nonce_mix = Mix {
        post: true,
        items: decode(&with_nonce),
    };

    let mut rows = Vec::new();

    // herald-ca, as a separate process like in production; each build in turn on the same
    // data.
    for (label, bin) in herald_bins() {
        let server = ServerProcess::spawn(
            "herald-ca serve",
            Command::new(&bin)
                .args(["serve", "--data-dir"])
                .arg(&dir)
                .env("HERALD_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("build herald-ca first: cargo build --release -p herald-ca");
        wait_for(http);
        let pid = server.id();
        // Warm the pre-signed cache (the first request for each certificate signs it).
        let _ = load("warm-up", http, &get_mix, 3, pid);
        let _ = load("warm-up", http, &post_mix, 2, pid);
        for (what, mix) in [
            ("GET pre-signed", &get_mix),
            ("POST pre-signed", &post_mix),
            ("POST nonce (signed per request)", &nonce_mix),
        ] {
            rows.push(load(&format!("{label} {what}"), http, mix, seconds, pid));
        }
        drop(server);
    }

    // openssl ocsp -multi 4 with the same certificates.
    let odir = tmp.path().join("openssl");
    std::fs::create_dir_all(&odir).unwrap();
    let mut index = String::new();
    for (i, s) in serials.iter().enumerate() {
        let _ = writeln!(
            index,
            "V\t301231000000Z\t\t{}\tunknown\t/CN=bench-{i}",
            s.to_hex().to_uppercase()
        );
    }
    std::fs::write(odir.join("index.txt"), index).unwrap();
    let oaddr = free_addr();
    let openssl = ServerProcess::spawn(
        "openssl ocsp",
        Command::new("openssl")
            .args(["ocsp", "-index"])
            .arg(odir.join("index.txt"))
            .args([
                "-port",
                &oaddr.port().to_string(),
                "-multi",
                "4",
                "-nmin",
                "240",
            ])
            .current_dir(&odir)
            .arg("-rsigner")
            .arg(dir.join("ocsp.crt"))
            .arg("-rkey")
            .arg(dir.join("ocsp.key"))
            .arg("-CA")
            .arg(dir.join("intermediate.crt"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(odir.join("stderr")).unwrap()),
    )
    .unwrap();
    if !wait_until_listening(oaddr) {
        panic!(
            "openssl ocsp did not start: {}",
            std::fs::read_to_string(odir.join("stderr")).unwrap_or_default()
        );
    }
    let pid = openssl.id();
    rows.push(load(
        "openssl ocsp -multi 4, POST",
        oaddr,
        &post_mix,
        seconds,
        pid,
    ));
    rows.push(load(
        "openssl ocsp -multi 4, POST nonce",
        oaddr,
        &nonce_mix,
        seconds,
        pid,
    ));
    drop(openssl);

    // nginx serving one static pre-signed response.
    let ndir = tmp.path().join("nginx");
    std::fs::create_dir_all(ndir.join("root/ocsp")).unwrap();
    std::fs::create_dir_all(ndir.join("logs")).unwrap();
    let one = herald_ca_response(&dir, &plain[0]);
    std::fs::write(ndir.join("root/ocsp/static"), one).unwrap();
    let naddr = free_addr();
    std::fs::write(
        ndir.join("nginx.conf"),
        format!(
            "daemon off; worker_processes 2; error_log {0}/logs/error.log; pid {0}/nginx.pid;\n\
             events {{ worker_connections 4096; }}\n\
             http {{ access_log off; server {{ listen {naddr}; root {0}/root;\n\
             location /ocsp/ {{ default_type application/ocsp-response; try_files /ocsp/static =404; }} }} }}\n",
            ndir.display()
        ),
    )
    .unwrap();
    let nginx = ServerProcess::spawn(
        "nginx",
        Command::new("nginx")
            .arg("-p")
            .arg(&ndir)
            .arg("-c")
            .arg(ndir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("nginx runs (apt-get install nginx)");
    wait_for(naddr);
    let pid = nginx.id();
    rows.push(load(
        "nginx static response (ceiling)",
        naddr,
        &get_mix,
        seconds,
        pid,
    ));
    drop(nginx);
    bench_common::assert_no_server_left(tmp.path());

    println!(
        "OCSP, {CERTS} certificates, {CONNECTIONS} keep-alive client connections for {seconds} s on loopback"
    );
    println!("| server | responses/s | p50 | p99 | server CPU per response | errors |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} | {} | {} | {:.1} µs | {} |",
            r.name, r.rps, r.p50, r.p99, r.cpu_us, r.errors
        );
    }
}

/// One OCSP response from herald-ca's own responder, for nginx to serve as a static file.
fn herald_ca_response(dir: &Path, b64_request: &str) -> Vec<u8> {
    let ca = Authority::open(
        dir,
        &KeyAccess { passphrase: None },
        herald_ca::open_store(dir).unwrap(),
    )
    .unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64_request)
        .unwrap();
    ca.ocsp_respond(&der).der.to_vec()
}
