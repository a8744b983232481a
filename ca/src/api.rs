//! HTTP handlers: the public revocation endpoints (OCSP, CRL, CA certificates), health,
//! metrics, and the admin API. Handlers only translate HTTP to calls on the [`Authority`].
//!
//! Every 4xx answer carries `{"error":{"code":"...","message":"..."}}`; the detail of an
//! internal failure goes to the log, not to the client.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;

use herald_token_service::{NewTokenRequest, Refusal, TokenService};

use crate::authority::{Authority, IssueError, RevokeError, RevokeTarget, ISSUER_ID};
use crate::enrollment::TokenAuthority;
use crate::ocsp::OcspAnswer;
use crate::serial::Serial;
use crate::store::{read_tx, write_tx, AdminTokenRecord, ListFilter, Store, StoreError};
use crate::{NewAuditEntry, Reason};

/// Admin roles, from least to most privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Role {
    /// Read-only.
    Auditor,
    /// Reads, revocation, enrollment tokens.
    Operator,
    /// Everything, including issuing from a CSR.
    Admin,
}

impl Role {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "auditor" => Some(Role::Auditor),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Auditor => "auditor",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

fn sha256_hex(data: &[u8]) -> String {
    crate::authority::sha256_hex(data)
}

/// Creates an admin token; returns its id and the secret (shown once, stored as a hash).
pub(crate) fn create_admin_token(
    store: &dyn Store,
    role: Role,
    label: &str,
    actor: &str,
) -> Result<(String, String), StoreError> {
    let rng = SystemRandom::new();
    let mut secret = [0u8; 32];
    let mut id = [0u8; 8];
    rng.fill(&mut secret)
        .and_then(|()| rng.fill(&mut id))
        .map_err(|_| StoreError::Corrupt("random generator failed".into()))?;
    let id = crate::hex(&id);
    let token = format!("hca_{id}_{}", crate::hex(&secret));
    let record = AdminTokenRecord {
        id: id.clone(),
        hash: sha256_hex(token.as_bytes()),
        role: role.name().to_owned(),
        label: label.to_owned(),
        created_at: crate::now_unix(),
    };
    write_tx(store, |tx| {
        tx.insert_admin_token(&record)?;
        tx.append_audit(&NewAuditEntry::now(
            actor,
            "admin-token-create",
            serde_json::json!({"id": id, "role": role.name(), "label": label}),
        ))?;
        Ok::<_, StoreError>(())
    })?;
    Ok((id, token))
}

/// An API error: status, stable code, public message.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

fn error_body(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_body(self.status, self.code, &self.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => {
                tracing::error!(error = %detail, "database unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the certificate store is unavailable; nothing was recorded, retry later",
                )
            }
            other => ApiError::internal(&other),
        }
    }
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Csr(e) => ApiError::new(StatusCode::BAD_REQUEST, "bad_csr", e.to_string()),
            IssueError::Policy(e) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "policy", e.to_string())
            }
            IssueError::Store(e) => e.into(),
            other => ApiError::internal(&other),
        }
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) authority: Arc<Authority>,
    /// The proofs of renewals and status reports seen recently (shared by every handler).
    pub(crate) proofs: herald_token_service::ReplayGuard,
}

/// The routes of the plain-HTTP listener: revocation, CA certificates, health, metrics.
pub(crate) fn public_router(state: AppState) -> Router {
    public_routes(state).layer(middleware::from_fn(json_errors))
}

fn public_routes(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/ocsp", post(ocsp_post))
        .route("/ocsp/", post(ocsp_post))
        .route("/ocsp/{*request}", get(ocsp_get))
        .route("/crl/{file}", get(crl))
        .route("/ca/{file}", get(ca_cert))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(crate::ocsp::MAX_REQUEST_BYTES))
        .with_state(state)
}

/// The routes of the HTTPS listener: everything public plus the admin API.
pub(crate) fn full_router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/api/v1/certificates", get(list_certs).post(issue_cert))
        .route("/api/v1/certificates/{serial}", get(show_cert))
        .route("/api/v1/certificates/{serial}/revoke", post(revoke_cert))
        .route("/api/v1/audit/verify", get(audit_verify))
        .route("/.well-known/herald", get(discovery))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}/revoke", post(revoke_token))
        .route("/api/v1/fleet", get(crate::fleet::list_fleet))
        .route("/api/v1/fleet/{name}", get(crate::fleet::show_fleet))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state.clone());
    let status = Router::new()
        .route("/api/v1/status", post(crate::fleet::post_status))
        .layer(DefaultBodyLimit::max(crate::fleet::MAX_REPORT_BYTES))
        .with_state(state.clone());
    let repository = crate::repo::routes(&state).unwrap_or_default();
    let enrollment =
        herald_token_service::routes(token_service(&state)).layer(DefaultBodyLimit::max(64 * 1024));
    public_routes(state)
        .merge(admin)
        .merge(status)
        .merge(repository)
        .merge(enrollment)
        .layer(middleware::from_fn(json_errors))
}

/// Turns any 4xx/5xx produced outside the handlers (unknown method, body too large, bad
/// path) into the JSON error shape.
async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json_or_ocsp = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.contains("ocsp"));
    if (status.is_client_error() || status.is_server_error()) && !is_json_or_ocsp {
        let code = match status {
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::NOT_FOUND => "not_found",
            s if s.is_server_error() => "internal",
            _ => "bad_request",
        };
        let message = status.canonical_reason().unwrap_or("error").to_owned();
        return error_body(status, code, &message);
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn metrics(State(state): State<AppState>) -> Response {
    let m = &state.authority.metrics;
    let crl_number = state.authority.published_crl_number();
    let mut out = String::new();
    for (name, help, value) in [
        (
            "herald_ca_certificates_issued_total",
            "Certificates issued by this process.",
            m.issued.load(Ordering::Relaxed),
        ),
        (
            "herald_ca_certificates_revoked_total",
            "Certificates revoked by this process.",
            m.revoked.load(Ordering::Relaxed),
        ),
        (
            "herald_ca_crls_produced_total",
            "CRLs produced by this process.",
            m.crls.load(Ordering::Relaxed),
        ),
        (
            "herald_ca_ocsp_cached_total",
            "OCSP requests answered from the pre-signed cache.",
            m.ocsp_cached.load(Ordering::Relaxed),
        ),
        (
            "herald_ca_ocsp_signed_total",
            "OCSP responses signed on request.",
            m.ocsp_signed.load(Ordering::Relaxed),
        ),
        (
            "herald_ca_ocsp_refused_total",
            "OCSP requests refused (malformed, unauthorized).",
            m.ocsp_refused.load(Ordering::Relaxed),
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
        ));
    }
    out.push_str(&format!(
        "# HELP herald_ca_crl_number Number of the current CRL.\n# TYPE herald_ca_crl_number gauge\nherald_ca_crl_number {crl_number}\n"
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn http_date(unix: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    httpdate_fmt(t)
}

fn httpdate_fmt(t: std::time::SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    dt.format(&time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    ))
    .unwrap_or_default()
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

fn cached_response(
    headers: &HeaderMap,
    content_type: &'static str,
    body: Body,
    etag: &str,
    this_update: i64,
    next_update: i64,
) -> Response {
    let now = crate::now_unix();
    let max_age = (next_update - now).max(0);
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ETAG, etag)
        .header(header::LAST_MODIFIED, http_date(this_update))
        .header(header::EXPIRES, http_date(next_update))
        .header(
            header::CACHE_CONTROL,
            format!("max-age={max_age}, public, no-transform, must-revalidate"),
        );
    if not_modified(headers, etag) {
        builder = builder.status(StatusCode::NOT_MODIFIED);
        return builder.body(Body::empty()).unwrap_or_default();
    }
    builder.body(body).unwrap_or_default()
}

fn ocsp_response(headers: &HeaderMap, answer: OcspAnswer) -> Response {
    match answer.cache {
        Some(c) => cached_response(
            headers,
            "application/ocsp-response",
            Body::from(Bytes::from_owner(ArcBytes(answer.der))),
            &c.etag,
            c.this_update,
            c.next_update,
        ),
        None => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/ocsp-response"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            answer.der.to_vec(),
        )
            .into_response(),
    }
}

/// Shares the cached response bytes with the HTTP body without copying.
struct ArcBytes(Arc<[u8]>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

async fn ocsp_post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = state.authority.ocsp_respond(&body);
    ocsp_response(&headers, answer)
}

async fn ocsp_get(State(state): State<AppState>, headers: HeaderMap, req: Request) -> Response {
    // Use the raw path, not the router's decoded parameter: the request may contain '/' and
    // '%2F' alike, and '+' must stay '+'.
    let path = req.uri().path();
    let raw = path.strip_prefix("/ocsp/").unwrap_or("");
    let answer = match crate::ocsp::decode_get_path(raw) {
        Some(der) => state.authority.ocsp_respond(&der),
        // Not base64 at all: answer like a garbage DER request.
        None => state.authority.ocsp_respond(&[]),
    };
    ocsp_response(&headers, answer)
}

async fn crl(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    if file != format!("{ISSUER_ID}.crl") {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such CRL",
        ));
    }
    let authority = state.authority.clone();
    let crl = tokio::task::spawn_blocking(move || authority.current_crl())
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::internal(&e))?;
    Ok(cached_response(
        &headers,
        "application/pkix-crl",
        Body::from(crl.der.clone()),
        &crl.etag,
        crl.this_update,
        crl.next_update,
    ))
}

async fn ca_cert(
    State(state): State<AppState>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let der = match file.as_str() {
        "root.crt" => state.authority.root_der().to_vec(),
        "intermediate.crt" => state.authority.intermediate_der().to_vec(),
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such certificate",
            ))
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/pkix-cert"),
            (header::CACHE_CONTROL, "max-age=86400, public"),
        ],
        der,
    )
        .into_response())
}

/// The caller of an admin endpoint, authenticated by bearer token.
pub(crate) struct Caller {
    id: String,
}

impl Caller {
    fn actor(&self) -> String {
        format!("admin-token:{}", self.id)
    }
}

pub(crate) fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    needed: Role,
) -> Result<Caller, ApiError> {
    let unauthenticated = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", m);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthenticated("an admin token is required (Authorization: Bearer ...)"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| unauthenticated("use Authorization: Bearer <admin token>"))?;
    let hash = sha256_hex(token.as_bytes());
    let record = read_tx(state.authority.store(), |tx| tx.admin_token_by_hash(&hash))?
        .ok_or_else(|| unauthenticated("unknown admin token"))?;
    let role = Role::parse(&record.role)
        .ok_or_else(|| ApiError::internal(&format!("stored role {}", record.role)))?;
    if role < needed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this needs the {} role; the token has {}",
                needed.name(),
                role.name()
            ),
        ));
    }
    Ok(Caller { id: record.id })
}

pub(crate) fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => ApiError::internal(&e).into_response(),
    }
}

async fn list_certs(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Role::Auditor)?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", m);
    let filter = ListFilter {
        name: query.get("name").cloned(),
        revoked: match query.get("revoked").map(String::as_str) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => return Err(bad(format!("revoked must be true or false, not {other}"))),
        },
        limit: match query.get("limit") {
            None => Some(1000),
            Some(l) => Some(l.parse().map_err(|_| bad(format!("bad limit {l}")))?),
        },
    };
    let certs = state.authority.list(&filter)?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "certificates": certs }),
    ))
}

fn parse_serial(text: &str) -> Result<Serial, ApiError> {
    Serial::from_hex(text)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_serial", e.to_string()))
}

async fn show_cert(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(serial): Path<String>,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Role::Auditor)?;
    let serial = parse_serial(&serial)?;
    let cert = state
        .authority
        .certificate(&serial)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such certificate"))?;
    let pem = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &cert.der)
        .unwrap_or_default();
    let mut value = serde_json::to_value(&cert).map_err(|e| ApiError::internal(&e))?;
    value["certificate_pem"] = serde_json::Value::String(pem);
    Ok(json_response(StatusCode::OK, &value))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueBody {
    csr: String,
    name: String,
    #[serde(default)]
    profile: Option<String>,
}

fn parse_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let ct_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.starts_with("application/json"));
    if !ct_ok {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))
}

async fn issue_cert(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &headers, Role::Admin)?;
    let req: IssueBody = parse_json(&headers, &body)?;
    let authority = state.authority.clone();
    let issued = tokio::task::spawn_blocking(move || {
        let profile = req
            .profile
            .as_deref()
            .unwrap_or(crate::policy::DEFAULT_PROFILE);
        authority.issue(req.csr.as_bytes(), &req.name, profile, &caller.actor())
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    Ok(json_response(StatusCode::CREATED, &issued))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn revoke_cert(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(serial): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &headers, Role::Operator)?;
    let serial = parse_serial(&serial)?;
    let req: RevokeBody = if body.is_empty() {
        RevokeBody::default()
    } else {
        parse_json(&headers, &body)?
    };
    let reason: Reason = req
        .reason
        .as_deref()
        .unwrap_or("unspecified")
        .parse()
        .map_err(|e: crate::ReasonParseError| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_reason", e.to_string())
        })?;
    let authority = state.authority.clone();
    let actor = caller.actor();
    let result = tokio::task::spawn_blocking(move || {
        authority.revoke(&RevokeTarget::Serial(serial), reason, &actor)
    })
    .await
    .map_err(|e| ApiError::internal(&e))?;
    match result {
        Ok(revoked) => Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({"revoked": revoked, "already_revoked": revoked.is_empty()}),
        )),
        Err(RevokeError::NotFound(what)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no certificate matches {what}"),
        )),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

async fn audit_verify(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Role::Auditor)?;
    let authority = state.authority.clone();
    let report = tokio::task::spawn_blocking(move || crate::audit::verify(authority.store()))
        .await
        .map_err(|e| ApiError::internal(&e))??;
    Ok(json_response(StatusCode::OK, &report))
}

/// The HTTPS base URL for the enrollment API: configured, or the host the client asked for.
fn api_base(state: &AppState, headers: &HeaderMap) -> String {
    let config = state.authority.config();
    if let Some(url) = &config.enrollment.api_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '@']))
        .map(str::to_owned)
        .unwrap_or_else(|| config.server.listen.to_string());
    format!("https://{host}")
}

async fn discovery(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let pem = |der: &[u8]| {
        der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der).unwrap_or_default()
    };
    let config = state.authority.config();
    let base = api_base(&state, &headers);
    let mut repository_urls = config.enrollment.repository_urls.clone();
    if repository_urls.is_empty() && config.repository.is_some() {
        repository_urls.push(format!("{base}{}/", crate::repo::REPO_PATH));
    }
    json_response(
        StatusCode::OK,
        &herald_token_service::client::Discovery {
            root_pem: pem(state.authority.root_der()),
            intermediate_pem: Some(pem(state.authority.intermediate_der())),
            enroll_url: Some(format!("{base}/api/v1/enroll")),
            renew_url: Some(format!("{base}/api/v1/renew")),
            status_url: Some(format!("{base}/api/v1/status")),
            ocsp_url: Some(config.ocsp_url()),
            crl_url: Some(config.crl_url(ISSUER_ID)),
            repository_urls,
        },
    )
}

/// The token service over this authority.
pub(crate) fn token_service(state: &AppState) -> TokenService {
    TokenService::with_replay_guard(
        Arc::new(TokenAuthority::new(state.authority.clone())),
        state.proofs.clone(),
    )
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, r.code(), r.message())
    }
}

async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &headers, Role::Operator)?;
    let request: NewTokenRequest = parse_json(&headers, &body)?;
    let service = token_service(&state);
    let created =
        tokio::task::spawn_blocking(move || service.create_token(&request, &caller.actor()))
            .await
            .map_err(|e| ApiError::internal(&e))??;
    Ok(json_response(StatusCode::CREATED, &created))
}

async fn list_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Role::Auditor)?;
    let service = token_service(&state);
    let tokens = tokio::task::spawn_blocking(move || service.list_tokens())
        .await
        .map_err(|e| ApiError::internal(&e))??;
    let tokens: Vec<serde_json::Value> = tokens
        .into_iter()
        .map(|(token, status)| crate::commands::token_json(&token, status))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "tokens": tokens }),
    ))
}

async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &headers, Role::Operator)?;
    let service = token_service(&state);
    let revoked =
        tokio::task::spawn_blocking(move || service.authority().revoke_token(&id, &caller.actor()))
            .await
            .map_err(|e| ApiError::internal(&e))?
            .map_err(Refusal::from)?;
    if !revoked {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no pending token with this id",
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"revoked": true}),
    ))
}
