//! A real HTTPS server on loopback for the updater's scenario tests, with a `localhost`
//! certificate made when the test process starts (so no test depends on today's date).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use axum::Router;
use herald_keys_example::ephemeral::{TlsServerFiles, TlsServerPki};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use url::Url;

/// This test process's TLS PKI, made on first use.
fn pki() -> &'static TlsServerPki {
    static PKI: OnceLock<TlsServerPki> = OnceLock::new();
    PKI.get_or_init(|| TlsServerPki::localhost().unwrap())
}

/// PEM of the test root CA: the trust anchor for the test server.
pub fn trust_anchor() -> Vec<u8> {
    pki().root_pem.clone().into_bytes()
}

/// Writes the test PKI's root, server certificate and key into `dir` (for configuration
/// files and servers such as nginx).
pub fn write_pki(dir: &Path) -> TlsServerFiles {
    pki().write(dir).unwrap()
}

fn server_config() -> rustls::ServerConfig {
    let pki = pki();
    let certs = rustls_pemfile::certs(&mut pki.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut pki.key_pem.as_bytes())
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap()
}

/// Serves `router` over HTTPS on 127.0.0.1 until the test ends; returns its base URL.
pub async fn serve_https(router: Router) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config()));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            // As production servers do: no Nagle delay on small responses.
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let service = TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Url::parse(&format!("https://localhost:{}/", addr.port())).unwrap()
}

/// A base URL where nothing listens (a closed port on loopback).
pub async fn dead_mirror() -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    Url::parse(&format!("https://localhost:{port}/")).unwrap()
}

/// Serves `router` over plain HTTP on 127.0.0.1 until the test ends; returns its base URL.
pub async fn serve_http(router: Router) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Url::parse(&format!("http://127.0.0.1:{}/", addr.port())).unwrap()
}

/// A router serving the files of `dir` (with range requests).
pub fn dir_router(dir: &std::path::Path) -> Router {
    Router::new().fallback_service(tower_http::services::ServeDir::new(dir))
}

/// The raw request paths a server received, in order.
#[derive(Clone, Default)]
pub struct RequestLog(Arc<std::sync::Mutex<Vec<String>>>);

impl RequestLog {
    /// Every path requested so far.
    pub fn paths(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A router serving the files of `dir` by the raw request path, escapes left as they are (as
/// a static server holding the encoded names serves them): `/metadata/1.%3F.json` is the file
/// named `1.%3F.json`. Each request path is added to `log`.
pub fn raw_dir_router(dir: &std::path::Path, log: RequestLog) -> Router {
    let dir = dir.to_path_buf();
    Router::new().fallback(move |uri: axum::http::Uri| {
        let (dir, log) = (dir.clone(), log.clone());
        async move {
            use axum::response::IntoResponse;
            let raw = uri.path().to_owned();
            log.0.lock().unwrap().push(raw.clone());
            let mut file = dir;
            for segment in raw.trim_start_matches('/').split('/') {
                if segment.is_empty() || segment == "." || segment == ".." {
                    return axum::http::StatusCode::NOT_FOUND.into_response();
                }
                file.push(segment);
            }
            match tokio::fs::read(&file).await {
                Ok(bytes) => bytes.into_response(),
                Err(_) => axum::http::StatusCode::NOT_FOUND.into_response(),
            }
        }
    })
}

/// The Python interpreter with python-tuf installed (see scripts/install-test-deps).
pub fn python() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("HERALD_TEST_PYTHON") {
        return path.into();
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "python-tuf is needed: run scripts/install-test-deps (or scripts/test)"
    );
    venv
}

/// A python-tuf repository in a temporary folder, driven by tests/python/tufrepo.py.
pub struct PyRepo {
    pub dir: tempfile::TempDir,
}

impl PyRepo {
    /// A new repository, initialised with `init_args`.
    pub fn new(init_args: &[&str]) -> Self {
        let repo = PyRepo {
            dir: tempfile::tempdir().unwrap(),
        };
        let mut args = vec!["init"];
        args.extend_from_slice(init_args);
        repo.run(&args);
        repo
    }

    /// Runs one tufrepo.py command; panics with its output if it fails.
    pub fn run(&self, args: &[&str]) {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/tufrepo.py");
        let out = std::process::Command::new(python())
            .arg(script)
            .arg(self.dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tufrepo.py {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The folder a server serves.
    pub fn published(&self) -> std::path::PathBuf {
        self.dir.path().join("published")
    }

    /// A published metadata file.
    pub fn metadata(&self, name: &str) -> std::path::PathBuf {
        self.published().join("metadata").join(name)
    }
}

/// A Herald repository made with `herald-sign` and the example keys (with release keys).
pub struct SignedRepo {
    pub dir: tempfile::TempDir,
}

impl SignedRepo {
    /// `herald-sign init` with the example keys, the example release key declared.
    pub fn new() -> Self {
        Self::with_release_key(&herald_keys_example::signing::public_key("release"))
    }

    /// `herald-sign init` with the example role keys and the given release public key.
    pub fn with_release_key(release_pub: &std::path::Path) -> Self {
        let repo = SignedRepo {
            dir: tempfile::tempdir().unwrap(),
        };
        let public = herald_keys_example::signing::public_key;
        let root_key = herald_keys_example::signing::private_key("root");
        repo.sign(&[
            "init".as_ref(),
            "--repo".as_ref(),
            repo.path().as_os_str(),
            "--root-pub".as_ref(),
            public("root").as_os_str(),
            "--targets-pub".as_ref(),
            public("targets").as_os_str(),
            "--snapshot-pub".as_ref(),
            public("snapshot").as_os_str(),
            "--timestamp-pub".as_ref(),
            public("timestamp").as_os_str(),
            "--release-pub".as_ref(),
            release_pub.as_os_str(),
            "--key".as_ref(),
            root_key.as_os_str(),
        ]);
        repo
    }

    /// The repository folder (served as a mirror).
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("repo")
    }

    /// Runs `herald-sign ARGS`, panicking on failure.
    pub fn sign(&self, args: &[&std::ffi::OsStr]) {
        use clap::Parser;
        let mut argv: Vec<&std::ffi::OsStr> = vec!["herald-sign".as_ref()];
        argv.extend_from_slice(args);
        let cli = herald_signing::Cli::try_parse_from(argv).unwrap();
        herald_signing::run(cli).unwrap();
    }

    /// Publishes the files of `files` as a release signed with the example keys and
    /// `release_key` (pruning targets not in it).
    pub fn release_with(&self, files: &[(&str, &[u8])], release_key: &std::path::Path) {
        let folder = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let file = folder.path().join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, content).unwrap();
        }
        self.release_dir(folder.path(), release_key, &["--prune".as_ref()]);
    }

    /// `herald-sign release` of a folder with the example role keys and `release_key`.
    pub fn release_dir(
        &self,
        folder: &std::path::Path,
        release_key: &std::path::Path,
        extra: &[&std::ffi::OsStr],
    ) {
        let key = herald_keys_example::signing::private_key;
        let role_keys = [key("targets"), key("snapshot"), key("timestamp")];
        let repo = self.path();
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "release".as_ref(),
            "--repo".as_ref(),
            repo.as_os_str(),
            "--from".as_ref(),
            folder.as_os_str(),
        ];
        args.extend_from_slice(extra);
        for k in role_keys.iter().map(|k| k.as_path()).chain([release_key]) {
            args.extend(["--key".as_ref(), k.as_os_str()]);
        }
        self.sign(&args);
    }

    /// Publishes a release signed with the example keys.
    pub fn release(&self, files: &[(&str, &[u8])]) {
        self.release_with(files, &herald_keys_example::signing::private_key("release"));
    }
}

/// Every file of the install root `root` (outside the updater's state, and without verified
/// downloads kept for a resume) with its content; empty when `root` does not exist yet.
pub fn tree(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            if rel == ".herald" || rel.ends_with(".herald-staged") {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// `files` as [`tree`] returns them.
pub fn as_tree(files: &[(&str, &[u8])]) -> std::collections::BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .map(|(p, c)| ((*p).to_owned(), c.to_vec()))
        .collect()
}
