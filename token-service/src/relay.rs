//! The relay: a site's stand-in for the server. Endpoints talk to it exactly as to the
//! server; it forwards enrollment and renewal upstream (to the server or to another relay)
//! over its own mutual-TLS identity, and caches CRLs, OCSP responses and update-repository
//! files for the site.
//!
//! It holds no CA key and decides nothing: request bodies are forwarded byte for byte, so
//! proof of possession (the request's signature) and token binding are checked by the
//! authority, and the endpoint checks that the certificate it gets back is for its own key.
//!
//! Renewal and status reports carry the endpoint's end-to-end proof (a signature of its current
//! key over the request, [`herald_token_client::proof`]) in a header the relay passes on
//! unchanged: the authority takes the endpoint's identity from the proof, never from a relay.
//!
//! Every forwarded request carries the [`herald_wire::RELAY_CHAIN`] header: the relay checks
//! that the last entry it received names its own TLS client (the relay before it), then
//! appends its own certificate serial. The authority checks that its TLS client is the relay
//! named last and that every relay named holds a valid relay certificate, and audits the
//! chain.
//!
//! Paths with dot segments are refused before routing ([`paths`]); repository files are
//! served only to unrevoked clients of this CA ([`access`]); the cache is bounded in bytes and
//! streams what does not fit ([`cache`]).

mod access;
mod cache;
mod paths;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};

use herald_token_client::{
    certificate_serial, certifies, fetch_discovery, first_certificate_der, first_pem_block,
    pinned_client_builder, pinned_root, require_https, BootstrapError,
};
use herald_wire::{
    Discovery, EnrollRequest, IssuedCertificate, Serial, ENROLL_PATH, PROOF_HEADER, RELAY_CHAIN,
    RENEW_PATH, STATUS_PATH, WELL_KNOWN_PATH,
};

use crate::guard::{AddressLimiter, EnrollmentLimits};
use crate::http::{json_errors, json_ok, rate_limited, ClientCertificate};
use crate::refusal::Refusal;

pub use cache::DEFAULT_CACHE_MAX_BYTES;

/// The content type of forwarded enrollment and renewal requests.
fn json_type() -> (&'static str, String) {
    ("content-type", "application/json".to_owned())
}

/// Largest CRL the relay accepts from its upstream.
const MAX_CRL: usize = 16 * 1024 * 1024;

/// Largest answer forwarded without the cache (enrollment and renewal answers).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Errors setting up a relay.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum RelayError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The upstream could not be reached or refused.
    #[error("upstream {url}: {message}")]
    Upstream { url: String, message: String },
    /// The upstream's root does not match the pinned fingerprint.
    #[error("the upstream's root certificate has fingerprint {found}, not the pinned {expected}")]
    FingerprintMismatch { expected: String, found: String },
    /// The relay has no identity yet and no token to enroll with.
    #[error("no relay identity in {0}: give --token (a relay enrollment token) on first start")]
    NotEnrolled(PathBuf),
    /// Key, request or certificate handling failed.
    #[error("identity: {0}")]
    Identity(String),
    /// The relay's public URL is not an `https://` URL with a host.
    #[error("public URL {0}: only https:// with a host is accepted")]
    PublicUrl(String),
}

/// The relay's identity files in its state folder.
#[derive(Debug, Clone)]
pub struct RelayState {
    dir: PathBuf,
}

impl RelayState {
    /// The state folder.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// Private key then certificate chain, PEM (mode 0600).
    pub fn identity_pem(&self) -> PathBuf {
        self.dir.join("identity.pem")
    }

    /// The pinned root, PEM.
    pub fn root_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RelayError + '_ {
    move |source| RelayError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn upstream_err(url: &str, message: impl std::fmt::Display) -> RelayError {
    RelayError::Upstream {
        url: url.to_owned(),
        message: message.to_string(),
    }
}

fn identity_error(e: reqwest::Error) -> RelayError {
    RelayError::Identity(e.to_string())
}

/// What every client of the relay shares: the pinned root, the relay's identity if any, the
/// connection pool and the user agent.
fn client_builder(
    root_pem: Option<&[u8]>,
    identity_pem: Option<&[u8]>,
) -> Result<reqwest::ClientBuilder, RelayError> {
    Ok(pinned_client_builder(root_pem, identity_pem)
        .map_err(identity_error)?
        .pool_max_idle_per_host(256)
        .user_agent(concat!("herald-relay/", env!("CARGO_PKG_VERSION"))))
}

fn http_client(
    root_pem: Option<&[u8]>,
    identity_pem: Option<&[u8]>,
) -> Result<reqwest::Client, RelayError> {
    client_builder(root_pem, identity_pem)?
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(identity_error)
}

/// The client for cached and streamed answers: no bound on a whole transfer (a large file
/// over a thin uplink takes its time), but on connecting and on each wait for data.
fn files_client(root_pem: &[u8], identity_pem: &[u8]) -> Result<reqwest::Client, RelayError> {
    client_builder(Some(root_pem), Some(identity_pem))?
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(identity_error)
}

/// Enrolls the relay with `token` unless it already has an identity: the upstream's root must
/// match `root_fingerprint`; the key is generated here and never leaves the state folder.
/// Returns the name of the relay's certificate, or `None` if it was enrolled before.
pub async fn enroll_relay(
    upstream: &str,
    token: Option<&str>,
    root_fingerprint: &str,
    state: &RelayState,
) -> Result<Option<String>, RelayError> {
    if state.identity_pem().is_file() {
        return Ok(None);
    }
    let token = token.ok_or_else(|| RelayError::NotEnrolled(state.dir.clone()))?;
    let base = upstream.trim_end_matches('/');
    let (root_pem, discovery) = pinned_root(base, root_fingerprint)
        .await
        .map_err(|e| match e {
            BootstrapError::FingerprintMismatch { expected, found } => {
                RelayError::FingerprintMismatch { expected, found }
            }
            other => upstream_err(base, other),
        })?;
    let verified = http_client(Some(root_pem.as_bytes()), None)?;
    let enroll_url = discovery
        .enroll_url
        .unwrap_or_else(|| format!("{base}{ENROLL_PATH}"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| RelayError::Identity(e.to_string()))?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.serialize_request(&key))
        .and_then(|r| r.pem())
        .map_err(|e| RelayError::Identity(e.to_string()))?;
    let response = verified
        .post(&enroll_url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(
            serde_json::to_vec(&EnrollRequest {
                token: token.to_owned(),
                csr,
            })
            .map_err(|e| RelayError::Identity(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| upstream_err(&enroll_url, e))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| upstream_err(&enroll_url, e))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(upstream_err(&enroll_url, format!("HTTP {status}: {text}")));
    }
    let issued: IssuedCertificate =
        serde_json::from_slice(&body).map_err(|e| upstream_err(&enroll_url, e))?;
    if !certifies(
        &issued.certificate_pem,
        &rcgen::PublicKeyData::subject_public_key_info(&key),
    ) {
        return Err(RelayError::Identity(
            "the issued certificate is not for the relay's key".into(),
        ));
    }
    let mut identity = key.serialize_pem();
    identity.push_str(issued.certificate_pem.trim_end());
    identity.push('\n');
    identity.push_str(&issued.chain_pem);
    std::fs::create_dir_all(&state.dir).map_err(io_err(&state.dir))?;
    herald_files::write_private(&state.identity_pem(), identity.as_bytes())
        .map_err(io_err(&state.identity_pem()))?;
    herald_files::write_public(&state.root_pem(), first_pem_block(&root_pem).as_bytes())
        .map_err(io_err(&state.root_pem()))?;
    Ok(Some(issued.name))
}

/// How long an upstream answer may be cached, decided from its headers.
type CachePolicy<'a> = &'a (dyn Fn(&reqwest::header::HeaderMap) -> Option<Duration> + Sync);

/// Where a relay is reached, and what it keeps for how long.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// The HTTPS base URL endpoints reach this relay at: its discovery document points there.
    /// Configured, never taken from a request's `Host` header.
    pub public_url: String,
    /// How long repository files stay cached.
    pub repository_ttl: Duration,
    /// Most bytes of upstream answers held in the cache; larger answers are streamed.
    pub cache_max_bytes: usize,
}

/// The relay's forwarding state.
pub struct Relay {
    upstream: String,
    client: reqwest::Client,
    files_client: reqwest::Client,
    root_pem: String,
    /// The serial of the relay's own certificate (its entry in relay chains).
    serial: Serial,
    /// The relay's own HTTPS base URL (no trailing slash).
    public_url: String,
    repository_ttl: Duration,
    discovery: Mutex<Option<(Discovery, Instant)>>,
    cache: cache::ResponseCache,
    clients: access::ClientCheck,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay forwarding to `upstream` with the identity in `state`, caching as `options`
    /// say.
    pub fn open(
        upstream: &str,
        state: &RelayState,
        options: &RelayOptions,
    ) -> Result<Self, RelayError> {
        require_https(upstream).map_err(|e| upstream_err(upstream, e))?;
        require_https(&options.public_url)
            .map_err(|_| RelayError::PublicUrl(options.public_url.clone()))?;
        let identity =
            std::fs::read(state.identity_pem()).map_err(io_err(&state.identity_pem()))?;
        let root_pem =
            std::fs::read_to_string(state.root_pem()).map_err(io_err(&state.root_pem()))?;
        let text = String::from_utf8_lossy(&identity);
        let serial = text
            .find("-----BEGIN CERTIFICATE-----")
            .and_then(|at| first_certificate_der(&text[at..]))
            .and_then(|der| certificate_serial(&der))
            .ok_or_else(|| {
                RelayError::Identity(format!(
                    "{}: no certificate after the key",
                    state.identity_pem().display()
                ))
            })?;
        Ok(Self {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: http_client(Some(root_pem.as_bytes()), Some(&identity))?,
            files_client: files_client(root_pem.as_bytes(), &identity)?,
            clients: access::ClientCheck::new(&root_pem)?,
            root_pem,
            serial,
            public_url: options.public_url.trim_end_matches('/').to_owned(),
            repository_ttl: options.repository_ttl,
            discovery: Mutex::new(None),
            cache: cache::ResponseCache::new(options.cache_max_bytes),
        })
    }

    /// The pinned root, PEM (to verify endpoints' client certificates).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The upstream's discovery document, kept for a minute.
    async fn upstream_discovery(&self) -> Result<Discovery, Refusal> {
        if let Ok(guard) = self.discovery.lock() {
            if let Some((doc, until)) = guard.as_ref() {
                if Instant::now() < *until {
                    return Ok(doc.clone());
                }
            }
        }
        let doc = match fetch_discovery(&self.client, &self.upstream).await {
            Ok(doc) => doc,
            // Upstream unreachable: the last document still says where things are, so cached
            // revocation data and repository files keep being served.
            Err(e) => {
                let stale = self
                    .discovery
                    .lock()
                    .ok()
                    .and_then(|g| g.as_ref().map(|(doc, _)| doc.clone()));
                return stale.ok_or_else(|| bad_gateway(upstream_err(&self.upstream, e)));
            }
        };
        if let Ok(mut guard) = self.discovery.lock() {
            *guard = Some((doc.clone(), Instant::now() + Duration::from_secs(60)));
        }
        Ok(doc)
    }

    /// The upstream URL of a revocation path (`/ocsp...`, `/crl/...`, `/ca/...`): the OCSP
    /// and CRL URLs of the upstream share its revocation base.
    fn revocation_url(&self, doc: &Discovery, path: &str) -> String {
        let origin = doc
            .ocsp_url
            .as_deref()
            .and_then(|ocsp| ocsp.strip_suffix("/ocsp"))
            .unwrap_or(&self.upstream);
        format!("{origin}{path}")
    }

    /// Fetches the upstream's current CRL and puts it in force for client checks; returns its
    /// nextUpdate.
    pub async fn refresh_revocation(&self) -> Result<std::time::SystemTime, RelayError> {
        let doc = self
            .upstream_discovery()
            .await
            .map_err(|r| upstream_err(&self.upstream, r))?;
        let file = doc
            .crl_url
            .as_deref()
            .and_then(|u| u.rsplit('/').next())
            .filter(|f| !f.is_empty())
            .ok_or_else(|| upstream_err(&self.upstream, "the discovery document names no CRL"))?;
        let url = self.revocation_url(&doc, &format!("/crl/{file}"));
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| upstream_err(&url, e))?;
        if !response.status().is_success() {
            return Err(upstream_err(&url, format!("HTTP {}", response.status())));
        }
        if response
            .content_length()
            .is_some_and(|l| l > MAX_CRL as u64)
        {
            return Err(upstream_err(&url, "CRL too large"));
        }
        let crl = response.bytes().await.map_err(|e| upstream_err(&url, e))?;
        if crl.len() > MAX_CRL {
            return Err(upstream_err(&url, "CRL too large"));
        }
        let issuers = doc.intermediate_pem.as_deref().ok_or_else(|| {
            upstream_err(&self.upstream, "the discovery document names no issuing CA")
        })?;
        self.clients.install(&crl, issuers)
    }

    /// Fetches the CRL once, then keeps it fresh in the background: every `every` (and at
    /// the CRL's nextUpdate, when an upstream relay's cached copy expires), and every few
    /// seconds while the upstream fails. Client checks fail closed once the CRL in force is
    /// past its nextUpdate.
    pub async fn keep_revocation_fresh(
        self: &Arc<Self>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let retry = every.min(Duration::from_secs(5));
        let wait_after = move |outcome: Result<std::time::SystemTime, RelayError>| match outcome {
            Ok(next_update) => next_update
                .duration_since(std::time::SystemTime::now())
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_secs(1))
                .min(every),
            Err(e) => {
                tracing::warn!(error = %e, "could not refresh the CRL; the one in force (if any) is used until its nextUpdate");
                retry
            }
        };
        let mut wait = wait_after(self.refresh_revocation().await);
        let relay = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(wait).await;
                wait = wait_after(relay.refresh_revocation().await);
            }
        })
    }

    /// Forwards a request upstream; answers with the upstream's status, type and body.
    /// With `cache_for`, the answer goes through the byte-bounded cache (the function decides
    /// from the answer's headers how long it may be kept), see [`cache`].
    async fn forward(
        &self,
        method: Method,
        url: String,
        body: Bytes,
        extra: Vec<(&'static str, String)>,
        cache_for: Option<CachePolicy<'_>>,
    ) -> Response {
        if let Some(policy) = cache_for {
            return self.forward_cached(method, url, body, extra, policy).await;
        }
        let mut request = self.client.request(method, &url).body(body);
        for (name, value) in extra {
            request = request.header(name, value);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return bad_gateway(upstream_err(&url, e)).into_response(),
        };
        let status =
            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let headers = cache::kept_headers(response.headers());
        let body = match response.bytes().await {
            Ok(b) if b.len() <= MAX_BODY => b,
            Ok(_) => {
                return Refusal::new(502, "upstream_too_large", "answer too large").into_response()
            }
            Err(e) => return bad_gateway(upstream_err(&url, e)).into_response(),
        };
        let mut response = (status, body).into_response();
        for (name, value) in headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

fn bad_gateway(e: RelayError) -> Refusal {
    tracing::warn!(error = %e, "upstream failed");
    Refusal::new(502, "upstream_unavailable", e.to_string())
}

/// The relay's routes: discovery, enrollment, renewal, OCSP, CRL, CA certificates and
/// repository files.
///
/// Enrollment and renewal are rate-limited per client address as on the server
/// ([`rate_limited`]): a client guessing tokens through the relay is refused with `429` here,
/// before the server sees it. Every error answer has the JSON error body ([`json_errors`]).
pub fn relay_routes(relay: Arc<Relay>) -> Router {
    let forwarded = rate_limited(
        Router::new()
            .route(ENROLL_PATH, post(enroll))
            .route(RENEW_PATH, post(renew))
            .with_state(relay.clone()),
        Arc::new(AddressLimiter::new(EnrollmentLimits::default())),
    );
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(WELL_KNOWN_PATH, get(discovery))
        .route(
            STATUS_PATH,
            post(status).layer(axum::extract::DefaultBodyLimit::max(MAX_REPORT_BYTES)),
        )
        .route("/ocsp", post(revocation))
        .route("/ocsp/", post(revocation))
        .route("/ocsp/{*request}", get(revocation))
        .route("/crl/{file}", get(revocation))
        .route("/ca/{file}", get(revocation))
        .route("/repo/{index}/{*path}", get(repository))
        .with_state(relay)
        .merge(forwarded)
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn(paths::refuse_dot_segments))
        .layer(axum::middleware::from_fn(json_errors))
}

/// The upstream's discovery document with every URL pointing at this relay's configured
/// public address (never at whatever `Host` the client sent).
async fn discovery(State(relay): State<Arc<Relay>>) -> Result<Response, Refusal> {
    let doc = relay.upstream_discovery().await?;
    Ok(json_ok(&relayed(doc, &relay.public_url)))
}

/// `doc` as served by a relay at `base`: the roots as they are, every URL at the relay.
fn relayed(doc: Discovery, base: &str) -> Discovery {
    let crl_url = doc
        .crl_url
        .as_deref()
        .and_then(|u| u.rsplit('/').next())
        .map(|file| format!("{base}/crl/{file}"));
    Discovery {
        enroll_url: Some(format!("{base}{ENROLL_PATH}")),
        renew_url: Some(format!("{base}{RENEW_PATH}")),
        status_url: Some(format!("{base}{STATUS_PATH}")),
        ocsp_url: Some(format!("{base}/ocsp")),
        crl_url,
        repository_urls: (0..doc.repository_urls.len())
            .map(|i| format!("{base}/repo/{i}/"))
            .collect(),
        root_pem: doc.root_pem,
        intermediate_pem: doc.intermediate_pem,
    }
}

/// Largest status report forwarded (the authority's own bound).
const MAX_REPORT_BYTES: usize = 256 * 1024;

impl Relay {
    /// The relay chain to send upstream: the one received (whose last entry must name the
    /// TLS client, a relay before this one) plus this relay's own serial.
    fn relay_chain(
        &self,
        client: Option<&ClientCertificate>,
        headers: &HeaderMap,
    ) -> Result<String, Refusal> {
        let Some(received) = headers.get(RELAY_CHAIN) else {
            return Ok(self.serial.to_hex());
        };
        let bad = |m: &str| Refusal::new(403, "bad_relay_chain", m.to_owned());
        let received = received
            .to_str()
            .map_err(|_| bad("the relay chain is not text"))?;
        let sender = client
            .and_then(|c| certificate_serial(&c.0))
            .ok_or_else(|| bad("a relay chain needs the sending relay's client certificate"))?;
        let last = received.rsplit(',').next().map(str::trim).unwrap_or("");
        if !last.eq_ignore_ascii_case(&sender.to_hex()) {
            return Err(bad(
                "the last entry of the relay chain does not name the sending client",
            ));
        }
        Ok(format!("{received},{}", self.serial))
    }

    /// Forwards a POST upstream as a pipe: the body unchanged, the endpoint's proof (if any)
    /// unchanged, and the relay chain with this relay appended.
    async fn pipe(
        &self,
        path: &str,
        client: Option<&ClientCertificate>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        let chain = match self.relay_chain(client, headers) {
            Ok(chain) => chain,
            Err(refusal) => return refusal.into_response(),
        };
        let mut extra = vec![json_type(), (RELAY_CHAIN, chain)];
        if let Some(proof) = headers.get(PROOF_HEADER).and_then(|v| v.to_str().ok()) {
            extra.push((PROOF_HEADER, proof.to_owned()));
        }
        let url = format!("{}{path}", self.upstream);
        self.forward(Method::POST, url, body, extra, None).await
    }
}

async fn enroll(
    State(relay): State<Arc<Relay>>,
    client: Option<Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    relay
        .pipe(ENROLL_PATH, client.as_deref(), &headers, body)
        .await
}

/// Renewal and status reports come over mutual TLS, as at the authority.
fn require_client(client: Option<&ClientCertificate>) -> Result<(), Refusal> {
    match client {
        Some(_) => Ok(()),
        None => Err(Refusal::new(
            401,
            "client_certificate_required",
            "this needs mutual TLS with the current certificate",
        )),
    }
}

async fn renew(
    State(relay): State<Arc<Relay>>,
    client: Option<Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    pipe_from_client(&relay, RENEW_PATH, client.as_deref(), &headers, body).await
}

async fn status(
    State(relay): State<Arc<Relay>>,
    client: Option<Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    pipe_from_client(&relay, STATUS_PATH, client.as_deref(), &headers, body).await
}

/// Forwards a request that needs mutual TLS (renewal, status report) to `path` upstream.
async fn pipe_from_client(
    relay: &Relay,
    path: &str,
    client: Option<&ClientCertificate>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = require_client(client) {
        return refusal.into_response();
    }
    relay.pipe(path, client, headers, body).await
}

/// OCSP, CRL and CA certificates: forwarded to the upstream's revocation URLs and cached
/// until the answer's nextUpdate (its `max-age`).
async fn revocation(
    State(relay): State<Arc<Relay>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let doc = relay.upstream_discovery().await?;
    // The path has no dot segments (see `paths`), so the upstream gets the path asked for.
    let url = relay.revocation_url(&doc, uri.path());
    // OCSP POST bodies keep their type (application/ocsp-request).
    let content_type: Vec<(&'static str, String)> = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| ("content-type", v.to_owned()))
        .into_iter()
        .collect();
    Ok(relay
        .forward(method, url, body, content_type, Some(&cache::max_age))
        .await)
}

/// `GET /repo/N/PATH`: a file of the N-th repository mirror, for clients of this CA only,
/// cached under its canonical path.
async fn repository(
    State(relay): State<Arc<Relay>>,
    client: Option<Extension<ClientCertificate>>,
    uri: Uri,
) -> Result<Response, Refusal> {
    relay.clients.check(client.as_deref())?;
    // The raw path, not the router's decoded parameter: its canonical spelling is both the
    // upstream URL and the cache key.
    let (index, raw) = uri
        .path()
        .strip_prefix("/repo/")
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(|| Refusal::bad_request("bad_path", "bad repository path"))?;
    let index: usize = index
        .parse()
        .map_err(|_| Refusal::bad_request("bad_path", "the mirror index must be a number"))?;
    let path = paths::canonical_repository_path(raw)?;
    let doc = relay.upstream_discovery().await?;
    let mirror = doc
        .repository_urls
        .get(index)
        .ok_or_else(|| Refusal::new(404, "not_found", "no such repository mirror"))?;
    let url = format!("{}/{path}", mirror.trim_end_matches('/'));
    let ttl = relay.repository_ttl;
    let policy = move |_: &reqwest::header::HeaderMap| Some(ttl);
    Ok(relay
        .forward(Method::GET, url, Bytes::new(), Vec::new(), Some(&policy))
        .await)
}
