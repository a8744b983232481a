//! The whole fleet on one machine, as the README's quickstart runs it: the real binaries, real
//! HTTPS on loopback. `herald-ca quickstart` → enrollment token → `herald-update enroll` →
//! `herald-sign release` into the repository the CA serves → the updater installs it over
//! mutual TLS → the fleet shows the endpoint at that release → a second release installs →
//! the endpoint's certificate is revoked → OCSP says revoked, the CRL lists it, the next update
//! is refused by the server and recorded → (re-enrolled) a tampered file on the repository is
//! refused and the installed release stays intact. And the updater needs nothing from the
//! server but files: a plain static HTTPS server (Python's) hosts the same repository.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use herald_e2e::{herald_bin, quickstart_command};

mod ca_support;
mod release_support;
use ca_support::{run_ok, stdout_of};
use release_support::{write_release, Endpoint, Signer};

/// `herald-ca quickstart`, stopped when dropped, with what it printed.
struct Quickstart {
    child: Child,
    data_dir: PathBuf,
    https: String,
    http: String,
    fingerprint: String,
    admin_token: String,
    enrollment_token: String,
    endpoint_name: String,
}

impl Quickstart {
    fn start(data_dir: &Path) -> Self {
        let mut child = quickstart_command(data_dir)
            .env("HERALD_LOG", "warn")
            .env_remove("HERALD_CA_PASSPHRASE")
            .spawn()
            .expect("quickstart starts");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut printed = Vec::new();
        for line in lines.by_ref() {
            let line = line.expect("UTF-8 output");
            let done = line.starts_with("Stop with Ctrl-C");
            printed.push(line);
            if done {
                break;
            }
        }
        // Keep draining standard output so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let value = |prefix: &str| {
            printed
                .iter()
                .find_map(|l| l.trim().strip_prefix(prefix))
                .unwrap_or_else(|| panic!("quickstart printed no {prefix:?}:\n{printed:#?}"))
                .trim()
                .to_owned()
        };
        let url_in = |prefix: &str, scheme: &str| {
            let line = value(prefix);
            let rest = line.split(scheme).nth(1).expect("a URL").to_owned();
            rest.split([' ', '/']).next().expect("host:port").to_owned()
        };
        let enrollment = value("enrollment token:");
        let mut words = enrollment.split_whitespace();
        let enrollment_token = words.next().expect("token").to_owned();
        let endpoint_name = words
            .nth(1)
            .expect("endpoint name")
            .trim_end_matches(',')
            .to_owned();
        Self {
            https: url_in("admin API, OCSP, CRL over HTTPS:", "https://"),
            http: url_in("Herald CA: OCSP, CRL and health on", "http://"),
            fingerprint: value("root fingerprint:"),
            admin_token: value("admin token:"),
            enrollment_token,
            endpoint_name,
            data_dir: data_dir.to_path_buf(),
            child,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.data_dir.join(name)
    }

    /// The repository quickstart serves: beside the data folder, never in it.
    fn repo(&self) -> PathBuf {
        let name = self.data_dir.file_name().expect("data folder name");
        let name = name.to_str().expect("UTF-8 name");
        let base = name.strip_suffix("-data").unwrap_or(name);
        self.data_dir.with_file_name(format!("{base}-repository"))
    }

    /// `curl` trusting the CA's root, with the admin token when `admin`.
    fn curl(&self, admin: bool, args: &[&str]) -> Command {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--cacert"]).arg(self.file("root.crt"));
        if admin {
            cmd.args(["-H", &format!("Authorization: Bearer {}", self.admin_token)]);
        }
        cmd.args(args);
        cmd
    }

    /// An admin API POST of `body` to `path`; returns the JSON answer.
    fn admin_post(&self, path: &str, body: &str) -> serde_json::Value {
        let url = format!("https://{}{path}", self.https);
        let out = stdout_of(&mut self.curl(
            true,
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                body,
                &url,
            ],
        ));
        serde_json::from_str(&out).unwrap_or_else(|_| panic!("POST {path} answered {out:?}"))
    }

    /// An endpoint in `dir` updating from the repository quickstart serves.
    fn endpoint(&self, dir: &Path) -> Endpoint {
        Endpoint::new(
            dir,
            &self.https,
            &self.repo().join("metadata/1.root.json"),
            "",
        )
    }

    /// `herald-update enroll` of `endpoint` with `token`; returns its name.
    fn enroll(&self, endpoint: &Endpoint, token: &str) -> String {
        endpoint.enroll(&format!("https://{}", self.https), token, &self.fingerprint)
    }

    fn fleet_show(&self, name: &str) -> serde_json::Value {
        let out = stdout_of(
            herald_bin("herald-ca")
                .args(["fleet", "show", name, "--json", "--data-dir"])
                .arg(&self.data_dir),
        );
        serde_json::from_str(&out).expect("fleet show --json prints JSON")
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_failed_with(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{what}: expected a failure");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    stderr
}

#[test]
fn quickstart_enroll_release_update_revoke_and_tamper() {
    let tmp = tempfile::tempdir().unwrap();
    let qs = Quickstart::start(&tmp.path().join("herald-data"));
    assert_eq!(qs.fingerprint.len(), 64, "a SHA-256 fingerprint in hex");
    assert!(qs.admin_token.starts_with("hca_"), "{}", qs.admin_token);

    // The signer creates the repository the CA serves, and a first release.
    let signer = Signer::new(tmp.path());
    signer.init(&qs.repo());
    let dist = tmp.path().join("dist");
    write_release(&dist, "1");
    signer.release(&qs.repo(), &dist);

    // The repository is for enrolled endpoints only.
    let anonymous = stdout_of(&mut qs.curl(
        false,
        &[
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            &format!("https://{}/repo/metadata/timestamp.json", qs.https),
        ],
    ));
    assert_eq!(
        anonymous, "401",
        "repository served without a client certificate"
    );

    // Enroll with the token quickstart printed; update once over mutual TLS.
    let endpoint = qs.endpoint(&tmp.path().join("endpoint"));
    let name = qs.enroll(&endpoint, &qs.enrollment_token);
    assert_eq!(name, qs.endpoint_name);
    endpoint.apply_ok("first update");
    assert_eq!(endpoint.installed("app.txt"), "my app, release 1\n");
    assert_eq!(endpoint.installed("bin/tool"), "tool 1\n");

    // The fleet shows the endpoint at that release, by the name in its certificate.
    let shown = qs.fleet_show(&name);
    assert_eq!(shown["certificate"], "valid");
    assert_eq!(shown["installed_version"], 1);
    assert_eq!(shown["last_result"], "installed");
    assert!(shown["last_seen"].as_i64().is_some(), "{shown}");
    let api: serde_json::Value = serde_json::from_str(&stdout_of(
        &mut qs.curl(true, &[&format!("https://{}/api/v1/fleet", qs.https)]),
    ))
    .unwrap();
    let listed = api["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} missing from GET /api/v1/fleet: {api}"));
    assert_eq!(listed["installed_version"], 1);
    let table = stdout_of(
        herald_bin("herald-ca")
            .args(["fleet", "list", "--data-dir"])
            .arg(&qs.data_dir),
    );
    assert!(table.contains(&name), "{table}");

    // A second release installs.
    write_release(&dist, "2");
    signer.release(&qs.repo(), &dist);
    endpoint.apply_ok("second update");
    assert_eq!(endpoint.installed("app.txt"), "my app, release 2\n");
    assert_eq!(qs.fleet_show(&name)["installed_version"], 2);

    // The operator revokes the endpoint's certificate through the admin API.
    let serial = qs.fleet_show(&name)["serial"]
        .as_str()
        .expect("serial")
        .to_owned();
    let revoked = qs.admin_post(
        &format!("/api/v1/certificates/{serial}/revoke"),
        r#"{"reason":"key-compromise"}"#,
    );
    assert_eq!(
        revoked["revoked"][0]["serial"],
        serial.as_str(),
        "{revoked}"
    );

    // OCSP says revoked (openssl as the client), and the CRL lists the serial.
    let cert = endpoint.state.join("identity/cert.pem");
    let ocsp = stdout_of(
        Command::new("openssl")
            .args(["ocsp", "-issuer"])
            .arg(qs.file("intermediate.crt"))
            .arg("-cert")
            .arg(&cert)
            .arg("-CAfile")
            .arg(qs.file("root.crt"))
            .args(["-url", &format!("http://{}/ocsp", qs.http)]),
    );
    assert!(ocsp.contains(": revoked"), "{ocsp}");
    let crl = tmp.path().join("intermediate.crl");
    run_ok(
        Command::new("curl")
            .args(["-sSf", "-o"])
            .arg(&crl)
            .arg(format!("http://{}/crl/intermediate.crl", qs.http)),
    );
    let crl_text = stdout_of(
        Command::new("openssl")
            .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
            .arg(&crl),
    );
    assert!(
        crl_text
            .to_ascii_uppercase()
            .contains(&format!("SERIAL NUMBER: {}", serial.to_ascii_uppercase())),
        "serial {serial} not in the CRL:\n{crl_text}"
    );

    // The next update is refused by the server; the endpoint records the failure, keeps its
    // report queued, and its installed release is untouched.
    let out = endpoint.apply();
    assert_failed_with(&out, "update with a revoked certificate");
    let status = endpoint.status();
    assert_eq!(status["last_result"], "error", "{status}");
    let error = status["last_error"].as_str().unwrap_or_default();
    // TLS 1.3 checks the client certificate after the client's last handshake message, so
    // the client sees the server's certificate_revoked alert or, when it was already writing
    // its request, the connection the server closed (hyper reports a connection closed
    // before the request went out as "connection was not ready").
    let refused_in_tls = [
        "CertificateRevoked",
        "reset",
        "closed",
        "EOF",
        "end of file",
        "broken pipe",
        "Incomplete",
        "connection was not ready",
    ]
    .iter()
    .any(|sign| error.contains(sign));
    assert!(refused_in_tls, "{status}");
    assert_eq!(status["installed_version"], 2);
    assert_eq!(endpoint.installed("app.txt"), "my app, release 2\n");
    let queued = std::fs::read_dir(endpoint.state.join("reports"))
        .unwrap()
        .count();
    assert!(queued >= 1, "the failure report is kept for later");
    let shown = qs.fleet_show(&name);
    assert_eq!(shown["certificate"], "revoked");
    assert_eq!(shown["installed_version"], 2);

    // The operator gives the endpoint a new identity; a third release is published, and one of
    // its files is then altered on the repository.
    let token = qs.admin_post("/api/v1/tokens", r#"{"name":"demo"}"#);
    let new_name = qs.enroll(&endpoint, token["token"].as_str().expect("token"));
    assert_ne!(new_name, name, "a revoked name is never handed out again");
    write_release(&dist, "3");
    signer.release(&qs.repo(), &dist);
    let tampered = find_target(&qs.repo().join("targets"), "app.txt", "release 3");
    // Same length, other content: only the hash check can tell.
    std::fs::write(&tampered, "my app, release X\n").unwrap();
    let out = endpoint.apply();
    let refused = assert_failed_with(&out, "update with a tampered file");
    assert!(refused.contains("SHA-256 mismatch"), "{refused}");
    assert_eq!(endpoint.installed("app.txt"), "my app, release 2\n");
    assert_eq!(endpoint.installed("bin/tool"), "tool 2\n");
    let status = endpoint.status();
    assert_eq!(status["installed_version"], 2, "{status}");
    assert_eq!(status["last_result"], "error", "{status}");
    // The new identity delivers the queued reports: the fleet records the failure.
    let shown = qs.fleet_show(&new_name);
    assert_eq!(shown["certificate"], "valid");
    assert_eq!(shown["last_result"], "error", "{shown}");
    let error = shown["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("SHA-256 mismatch"), "{shown}");
    assert_eq!(shown["installed_version"], 2);
}

/// The stored target file named `name` whose content contains `marker`.
fn find_target(dir: &Path, name: &str, marker: &str) -> PathBuf {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            continue;
        }
        let file_name = path.file_name().unwrap().to_string_lossy().to_string();
        if file_name.ends_with(&format!(".{name}"))
            && std::fs::read_to_string(&path).is_ok_and(|t| t.contains(marker))
        {
            return path;
        }
    }
    panic!("no target {name} with {marker:?} in {}", dir.display());
}

/// A static HTTPS file server (Python's `http.server` with TLS), stopped when dropped.
struct StaticServer {
    child: Child,
    port: u16,
}

const STATIC_SERVER: &str = r#"
import functools, http.server, ssl, sys
root, cert, key = sys.argv[1:4]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

impl StaticServer {
    fn start(root: &Path, cert: &Path, key: &Path) -> Self {
        let python = std::env::var("HERALD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(python)
            .args(["-c", STATIC_SERVER])
            .arg(root)
            .arg(cert)
            .arg(key)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("port printed");
        let port = line.trim().parse().expect("a port number");
        Self { child, port }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn plain_static_https_server_hosts_the_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let signer = Signer::new(tmp.path());
    signer.init(&repo);
    let dist = tmp.path().join("dist");
    write_release(&dist, "1");
    signer.release(&repo, &dist);
    // The web server's own certificate, self-signed: the updater trusts it as its ca_bundle.
    let (cert, key) = (tmp.path().join("web.crt"), tmp.path().join("web.key"));
    run_ok(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    let server = StaticServer::start(&repo, &cert, &key);
    let (install, state) = (tmp.path().join("app"), tmp.path().join("state"));
    let config = tmp.path().join("endpoint.toml");
    std::fs::write(
        &config,
        format!(
            "install_root = {:?}\nstate_dir = {:?}\nmirrors = [\"https://127.0.0.1:{}/\"]\n\
             trusted_root = {:?}\nca_bundle = {:?}\nrequire_release_signatures = true\n",
            install.display().to_string(),
            state.display().to_string(),
            server.port,
            repo.join("metadata/1.root.json").display().to_string(),
            cert.display().to_string(),
        ),
    )
    .unwrap();
    run_ok(
        herald_bin("herald-update")
            .arg("--config")
            .arg(&config)
            .arg("apply")
            .env("HERALD_LOG", "warn"),
    );
    assert_eq!(
        std::fs::read_to_string(install.join("app.txt")).unwrap(),
        "my app, release 1\n"
    );
}
