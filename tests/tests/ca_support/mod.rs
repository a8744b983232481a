//! Shared set-up for the `herald-ca` end-to-end scenarios: a CA initialised in a temporary
//! folder, served by the real binary on loopback ports, driven with openssl, curl and Python.

#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use herald_e2e::herald_bin;

/// The passphrase of the test CA's keys.
pub const PASSPHRASE: &str = "e2e test passphrase";

/// A free loopback port (bound, then released).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local address")
}

/// A `herald-ca` command with the test passphrase in its environment.
pub fn ca_cmd() -> Command {
    let mut cmd = herald_bin("herald-ca");
    cmd.env("HERALD_CA_PASSPHRASE", PASSPHRASE)
        .env_remove("HERALD_DATA_DIR")
        .env("HERALD_LOG", "warn");
    cmd
}

/// Runs a command and returns its output, panicking with stderr if it failed.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// Runs a command that must succeed and returns its standard output as text.
pub fn stdout_of(cmd: &mut Command) -> String {
    String::from_utf8(run_ok(cmd).stdout).expect("UTF-8 output")
}

/// Runs a command and returns its standard output and error together (it may fail).
pub fn combined_output(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A CA in a temporary folder, served on loopback until dropped.
pub struct TestCa {
    /// Keeps the temporary folder alive.
    pub tmp: tempfile::TempDir,
    /// The CA's data folder.
    pub dir: PathBuf,
    /// HTTPS address.
    pub https: SocketAddr,
    /// Plain-HTTP address (OCSP, CRL).
    pub http: SocketAddr,
    server: Option<Child>,
}

impl TestCa {
    /// Initialises a CA (not yet serving).
    pub fn init() -> Self {
        Self::init_with(&[])
    }

    /// Initialises a CA with extra `init` arguments.
    pub fn init_with(extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("ca");
        let https = free_addr();
        let http = free_addr();
        run_ok(
            ca_cmd()
                .args(["init", "--kdf-iterations", "1000", "--data-dir"])
                .arg(&dir)
                .args(["--listen", &https.to_string()])
                .args(["--http-listen", &http.to_string()])
                .args(extra),
        );
        Self {
            tmp,
            dir,
            https,
            http,
            server: None,
        }
    }

    /// Changes a `key = value` line of config.toml (before `serve`).
    pub fn set_config(&self, key: &str, value: &str) {
        let path = self.dir.join("config.toml");
        let text = std::fs::read_to_string(&path).expect("config readable");
        let mut found = false;
        let text: String = text
            .lines()
            .map(|l| {
                if l.split('=').next().map(str::trim) == Some(key) {
                    found = true;
                    format!("{key} = {value}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        assert!(found, "config has no {key}");
        std::fs::write(&path, text).expect("config written");
    }

    /// Adds a `[repository]` section to config.toml (before `serve`): the folder `dir` (taken
    /// from the data folder when relative) served at `/repo/`.
    pub fn serve_repository(&self, dir: &Path, require_client_cert: bool) {
        let path = self.dir.join("config.toml");
        let mut text = std::fs::read_to_string(&path).expect("config readable");
        let dir = dir.to_str().expect("UTF-8 path");
        text.push_str(&format!(
            "\n[repository]\ndir = {dir:?}\nrequire_client_cert = {require_client_cert}\n"
        ));
        std::fs::write(&path, text).expect("config written");
    }

    /// Starts `herald-ca serve` and waits until it answers health checks.
    pub fn serve(&mut self) {
        let child = ca_cmd()
            .args(["serve", "--data-dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve starts");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(self.http).is_ok() && TcpStream::connect(self.https).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("herald-ca serve did not start listening");
    }

    /// Whether the server process is still running.
    pub fn server_alive(&mut self) -> bool {
        self.server
            .as_mut()
            .is_some_and(|c| c.try_wait().map(|s| s.is_none()).unwrap_or(false))
    }

    /// The process id of the running server.
    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// A path inside the data folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Creates an enrollment token for `base` with `profile` with the CLI; returns the secret.
    pub fn cli_token(&self, base: &str, profile: &str) -> String {
        let out = run_ok(
            ca_cmd()
                .args(["token", "create", "--name", base, "--profile", profile])
                .arg("--data-dir")
                .arg(&self.dir),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A path inside the temporary folder (outside the data folder).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Creates a P-256 key and CSR with openssl (asking for a subject the policy must ignore)
    /// and issues a certificate for `name` with the CLI. Returns (key, cert) paths.
    pub fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        self.issue_with(
            name,
            "endpoint",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        )
    }

    /// [`TestCa::issue`] with the certificate profile and openssl's key options (`newkey`).
    pub fn issue_with(&self, name: &str, profile: &str, newkey: &[&str]) -> (PathBuf, PathBuf) {
        let key = self.scratch(&format!("{name}.key"));
        let csr = self.scratch(&format!("{name}.csr"));
        let cert = self.scratch(&format!("{name}.crt"));
        run_ok(
            Command::new("openssl")
                .args(["req", "-new"])
                .args(newkey)
                .args(["-nodes", "-subj", "/CN=chosen-by-requester", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&csr),
        );
        run_ok(
            ca_cmd()
                .args(["cert", "issue", "--data-dir"])
                .arg(&self.dir)
                .arg("--csr")
                .arg(&csr)
                .args(["--name", name, "--profile", profile, "--out"])
                .arg(&cert),
        );
        (key, cert)
    }

    /// Serial (lowercase hex, as the API and store print it) of a PEM certificate file.
    pub fn serial_of(cert: &Path) -> String {
        let out = run_ok(
            Command::new("openssl")
                .args(["x509", "-noout", "-serial", "-in"])
                .arg(cert),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut hex = text
            .trim()
            .trim_start_matches("serial=")
            .to_ascii_lowercase();
        // Herald prints the serial's magnitude bytes: whole bytes, no zero byte in front.
        while hex.len() > 2 && hex.starts_with("00") {
            hex.drain(..2);
        }
        hex
    }

    /// Creates an admin API token with `role` and returns it.
    pub fn admin_token(&self, role: &str) -> String {
        let out = run_ok(
            ca_cmd()
                .args(["admin-token", "create", "--role", role, "--data-dir"])
                .arg(&self.dir),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The chain file (root then intermediate), PEM.
    pub fn chain_pem(&self) -> PathBuf {
        let path = self.scratch("chain.pem");
        let mut text = std::fs::read_to_string(self.file("root.crt")).expect("root");
        text.push_str(&std::fs::read_to_string(self.file("intermediate.crt")).expect("int"));
        std::fs::write(&path, text).expect("chain written");
        path
    }

    /// Base URL of the plain-HTTP listener.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Base URL of the HTTPS listener.
    pub fn https_url(&self) -> String {
        format!("https://{}", self.https)
    }

    /// Runs curl against the HTTPS listener (trusting the CA's root) and returns
    /// (status, body).
    pub fn curl_https(&self, args: &[&str]) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(self.file("root.crt"))
            .args(args)
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The Python interpreter with `cryptography` (HERALD_TEST_PYTHON, else the workspace .venv).
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("HERALD_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(".venv")
        .join("bin")
        .join("python")
}
