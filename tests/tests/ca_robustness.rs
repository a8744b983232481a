//! The server survives what broke the peers: clients that connect and send nothing, send half
//! a request, hang up mid-request or send huge headers, and 1,000 idle connections, while it
//! keeps answering others.

#![allow(clippy::unwrap_used)]

mod ca_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ca_support::TestCa;

/// A CA whose clients get `secs` seconds to send their request headers.
fn ca_with_header_timeout(secs: u64) -> TestCa {
    let mut ca = TestCa::init();
    ca.set_config("header_timeout_secs", &secs.to_string());
    ca.serve();
    ca
}

fn healthz(ca: &TestCa) -> String {
    let mut s = TcpStream::connect(ca.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Reads until the server closes the connection; fails if it is still open after 30 s.
fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("server kept an idle connection open: {e}"),
        }
    }
}

#[test]
fn client_sending_nothing_is_disconnected() {
    let ca = ca_with_header_timeout(1);
    let mut idle = TcpStream::connect(ca.http).unwrap();
    read_until_closed(&mut idle);
    // The TLS listener too: a client that never starts its handshake is dropped.
    let mut idle_tls = TcpStream::connect(ca.https).unwrap();
    read_until_closed(&mut idle_tls);
    assert!(healthz(&ca).ends_with("ok\n"));
}

#[test]
fn half_request_is_cut_off() {
    let ca = ca_with_header_timeout(1);
    let mut half = TcpStream::connect(ca.http).unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let answer = read_until_closed(&mut half);
    let text = String::from_utf8_lossy(&answer);
    assert!(
        !text.contains("ok\n"),
        "no answer to an unfinished request: {text}"
    );
    assert!(healthz(&ca).ends_with("ok\n"));
}

#[test]
fn client_hanging_up_mid_request_leaves_server_serving() {
    let mut ca = ca_with_header_timeout(5);
    for _ in 0..20 {
        let mut s = TcpStream::connect(ca.http).unwrap();
        s.write_all(
            b"POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\n\
              Content-Length: 4000\r\n\r\n\x30\x82\x0f",
        )
        .unwrap();
        drop(s);
        let mut t = TcpStream::connect(ca.https).unwrap();
        t.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            .unwrap();
        drop(t);
    }
    assert!(healthz(&ca).ends_with("ok\n"));
    assert!(ca.server_alive());
}

#[test]
fn oversized_request_headers_are_refused() {
    let ca = ca_with_header_timeout(5);
    let mut s = TcpStream::connect(ca.http).unwrap();
    let big = "a".repeat(64 * 1024);
    let _ = write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"
    );
    let answer = read_until_closed(&mut s);
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431"),
        "headers beyond the bound refused: {text}"
    );
    assert!(healthz(&ca).ends_with("ok\n"));
}

#[test]
fn thousand_idle_connections_do_not_stop_answers_to_others() {
    let mut ca = TestCa::init();
    ca.set_config("header_timeout_secs", "60");
    // Every connection here comes from 127.0.0.1: lift the cap per client address, which
    // slow_clients.rs covers, to see the listener itself hold them all and still answer.
    ca.set_config("max_connections_per_client", "2000");
    ca.serve();
    let mut idle = Vec::with_capacity(1000);
    for i in 0..1000 {
        let addr = if i % 2 == 0 { ca.http } else { ca.https };
        idle.push(TcpStream::connect(addr).unwrap());
    }
    assert!(healthz(&ca).ends_with("ok\n"), "plain HTTP still answers");
    let (status, body) = ca.curl_https(&[&format!("{}/healthz", ca.https_url())]);
    assert_eq!(
        (status, body.as_str()),
        (200, "ok\n"),
        "HTTPS still answers"
    );
    drop(idle);
}

#[test]
fn connection_limit_queues_clients_until_idle_ones_time_out() {
    let mut ca = TestCa::init();
    ca.set_config("max_connections", "4");
    ca.set_config("header_timeout_secs", "3");
    ca.serve();
    // Four idle clients take every slot of the plain-HTTP listener.
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(ca.http).unwrap())
        .collect();
    // A fifth client waits in the backlog: no answer while the slots are held...
    let mut fifth = TcpStream::connect(ca.http).unwrap();
    write!(
        fifth,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    fifth
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = fifth.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            || e.kind() == std::io::ErrorKind::TimedOut),
        "served beyond the connection limit: {early:?}"
    );
    // ...and is served once the idle ones are dropped by the header timeout.
    fifth
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut out = String::new();
    fifth.read_to_string(&mut out).unwrap();
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("ok\n"),
        "{out}"
    );
    drop(idle);
}
