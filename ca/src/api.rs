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
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
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

/// Longest lifetime of an admin token with an expiry: ten years.
const MAX_ADMIN_TOKEN_SECS: i64 = 10 * 366 * 86_400;

/// Parses an admin token's lifetime (`30d`, `12h`; one minute to ten years) into its expiry
/// time, Unix seconds.
pub(crate) fn admin_token_expiry(text: &str) -> Result<i64, String> {
    herald_token_service::parse_duration(text)
        .filter(|secs| (60..=MAX_ADMIN_TOKEN_SECS).contains(secs))
        .map(|secs| crate::now_unix() + secs)
        .ok_or_else(|| {
            format!("bad expiry {text:?}: use a number with s, m, h or d, from 1m to 3660d")
        })
}

/// Creates an admin token; returns its record and the secret (shown once, stored as a hash).
pub(crate) fn create_admin_token(
    store: &dyn Store,
    role: Role,
    label: &str,
    expires_at: Option<i64>,
    actor: &str,
) -> Result<(AdminTokenRecord, String), StoreError> {
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
        expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    write_tx(store, |tx| {
        tx.insert_admin_token(&record)?;
        tx.append_audit(&NewAuditEntry::now(
            actor,
            "admin-token-create",
            serde_json::json!({
                "id": id, "role": role.name(), "label": label, "expires_at": expires_at
            }),
        ))?;
        Ok::<_, StoreError>(())
    })?;
    Ok((record, token))
}

/// Revokes an admin token at once (audited); `false` if it is unknown or already revoked.
pub(crate) fn revoke_admin_token(
    store: &dyn Store,
    id: &str,
    actor: &str,
) -> Result<bool, StoreError> {
    write_tx(store, |tx| {
        let revoked = tx.revoke_admin_token(id, crate::now_unix())?;
        if revoked {
            tx.append_audit(&NewAuditEntry::now(
                actor,
                "admin-token-revoke",
                serde_json::json!({ "id": id }),
            ))?;
        }
        Ok::<_, StoreError>(revoked)
    })
}

/// The state of an admin token at `now`: `active`, `expired` or `revoked`.
pub(crate) fn admin_token_status(record: &AdminTokenRecord, now: i64) -> &'static str {
    if record.revoked_at.is_some() {
        "revoked"
    } else if record.expires_at.is_some_and(|at| at <= now) {
        "expired"
    } else {
        "active"
    }
}

/// An admin token as `admin-token list --json` and `GET /api/v1/admin-tokens` show it.
pub(crate) fn admin_token_json(record: &AdminTokenRecord, now: i64) -> serde_json::Value {
    serde_json::json!({
        "id": record.id,
        "role": record.role,
        "label": record.label,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "revoked_at": record.revoked_at,
        "last_used_at": record.last_used_at,
        "status": admin_token_status(record, now),
    })
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
    /// The enrollment and renewal service, with its per-address limits and its count of
    /// anonymous refusals (shared by the routes and `/metrics`).
    enrollment: TokenService,
    /// The audit key, for `GET /api/v1/audit/checkpoint`; `None` if it cannot be opened.
    audit_signer: Option<Arc<crate::audit::AuditSigner>>,
    /// When this process last recorded the use of each admin token (so that a burst of calls
    /// with one token writes its last use once, not once per call).
    last_use_written: Arc<std::sync::Mutex<HashMap<String, i64>>>,
}

impl AppState {
    /// The state of a server over `authority`. Inside a Tokio runtime it also starts the task
    /// that writes aggregated refusal audit entries when their interval is over.
    pub(crate) fn new(authority: Arc<Authority>) -> Self {
        let enrollment = TokenService::with_limits(
            Arc::new(TokenAuthority::new(authority.clone())),
            authority.config().enrollment_limits.clone(),
        );
        let audit_signer = match crate::audit::AuditSigner::open(
            authority.layout(),
            authority.key_passphrase(),
            authority.config().ca.insecure_unencrypted_keys,
        ) {
            Ok(signer) => Some(Arc::new(signer)),
            Err(e) => {
                tracing::warn!(error = %e, "the audit key cannot be opened; no checkpoints over the API");
                None
            }
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let service = enrollment.clone();
            let period = std::time::Duration::from_secs(
                authority
                    .config()
                    .enrollment_limits
                    .unknown_token_audit_secs
                    .clamp(1, 60),
            );
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(period);
                loop {
                    tick.tick().await;
                    let service = service.clone();
                    let _ = tokio::task::spawn_blocking(move || service.flush_refusal_audit(false))
                        .await;
                }
            });
        }
        Self {
            authority,
            enrollment,
            audit_signer,
            last_use_written: Arc::default(),
        }
    }

    /// Records that admin token `id` was used at `now`, at most once a minute per token and
    /// process (a burst of concurrent calls with one token writes once; a failure to record a
    /// last use is logged, not fatal).
    fn note_use(&self, id: &str, now: i64) {
        {
            let mut written = self
                .last_use_written
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if written
                .get(id)
                .is_some_and(|at| now - at < LAST_USE_RESOLUTION_SECS)
            {
                return;
            }
            written.insert(id.to_owned(), now);
        }
        if let Err(e) = write_tx(self.authority.store(), |tx| tx.touch_admin_token(id, now)) {
            tracing::warn!(error = %e, "cannot record the last use of an admin token");
        }
    }
}

/// The routes of the plain-HTTP listener: revocation, CA certificates, health, metrics.
pub(crate) fn public_router(state: AppState) -> Router {
    public_routes(state).layer(middleware::from_fn(json_errors))
}

/// `/metrics` alone, for the listener of `[metrics] listen`.
pub(crate) fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
        .layer(middleware::from_fn(json_errors))
}

fn public_routes(state: AppState) -> Router {
    let router = Router::new().route("/healthz", get(|| async { "ok\n" }));
    // With a listener of its own, /metrics is served there only.
    let router = if state.authority.config().metrics.listen.is_none() {
        router.route("/metrics", get(metrics))
    } else {
        router
    };
    router
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
        .route("/api/v1/audit", get(audit_entries))
        .route("/api/v1/audit/checkpoint", get(audit_checkpoint))
        .route("/.well-known/herald", get(discovery))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}/revoke", post(revoke_token))
        .route(
            "/api/v1/admin-tokens",
            get(list_admin_tokens).post(create_admin_token_api),
        )
        .route(
            "/api/v1/admin-tokens/{id}/revoke",
            post(revoke_admin_token_api),
        )
        .route("/api/v1/fleet", get(crate::fleet::list_fleet))
        .route("/api/v1/fleet/{name}", get(crate::fleet::show_fleet))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state.clone());
    let status = Router::new()
        .route("/api/v1/status", post(crate::fleet::post_status))
        .layer(DefaultBodyLimit::max(crate::fleet::MAX_REPORT_BYTES))
        .with_state(state.clone());
    let repository = crate::repo::routes(&state).unwrap_or_default();
    let enrollment = herald_token_service::routes(state.enrollment.clone())
        .layer(DefaultBodyLimit::max(64 * 1024));
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

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.authority.config().metrics.require_token {
        if let Err(e) = authenticate(&state, &headers, Role::Auditor) {
            return e.into_response();
        }
    }
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
        (
            "herald_ca_enrollments_unknown_token_total",
            "Enrollments refused for an unknown token (audited in aggregate per source).",
            state.enrollment.unknown_token_refusals(),
        ),
        (
            "herald_ca_rate_limited_total",
            "Enrollment and renewal requests answered 429 (per-address limits).",
            state.enrollment.limiter().limited_total(),
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

/// An HTTP date (RFC 9110 IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`); before 1970 is 1970.
fn http_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = time::OffsetDateTime::from_unix_timestamp(unix.max(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let day = DAYS
        .get(usize::from(t.weekday().number_days_from_monday()))
        .unwrap_or(&"Thu");
    let month = MONTHS
        .get(usize::from(u8::from(t.month())).saturating_sub(1))
        .unwrap_or(&"Jan");
    format!(
        "{day}, {:02} {month} {:04} {:02}:{:02}:{:02} GMT",
        t.day(),
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
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
            Body::from(Bytes::from_owner(ArcBytes(answer.der))),
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
    ocsp_get_response(&state.authority, req.uri().path(), &headers)
}

/// The answer to `GET /ocsp/{base64}`.
fn ocsp_get_response(authority: &Authority, path: &str, headers: &HeaderMap) -> Response {
    // Use the raw path, not the router's decoded parameter: the request may contain '/' and
    // '%2F' alike, and '+' must stay '+'.
    let raw = path.strip_prefix("/ocsp/").unwrap_or("");
    let answer = match crate::ocsp::decode_get_path(raw) {
        Some(der) => authority.ocsp_respond(&der),
        // Not base64 at all: answer like a garbage DER request.
        None => authority.ocsp_respond(&[]),
    };
    ocsp_response(headers, answer)
}

/// Answers OCSP requests ahead of the router, without its layers (routing, the JSON error
/// layer, extractors): `GET /ocsp/{base64}`, and `POST /ocsp` or `/ocsp/` whose
/// `Content-Length` is within the request limit. The answers are the routes' own, byte for
/// byte. Any other request, including every OCSP request the router would refuse (another
/// method, no or too large a length), goes to the router.
#[derive(Clone)]
pub(crate) struct OcspFront {
    authority: Arc<Authority>,
}

/// The OCSP requests [`OcspFront`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OcspFrontRoute {
    /// `GET /ocsp/{base64}`.
    Get,
    /// `POST /ocsp` with a body of known length within the limit.
    Post,
}

impl OcspFront {
    pub(crate) fn new(authority: Arc<Authority>) -> Self {
        Self { authority }
    }

    /// Which route this request takes, if this path answers it.
    pub(crate) fn route<B>(req: &axum::http::Request<B>) -> Option<OcspFrontRoute> {
        let path = req.uri().path();
        match *req.method() {
            Method::GET if path.len() > "/ocsp/".len() && path.starts_with("/ocsp/") => {
                Some(OcspFrontRoute::Get)
            }
            Method::POST
                if (path == "/ocsp" || path == "/ocsp/")
                    && !req.headers().contains_key(header::TRANSFER_ENCODING)
                    && req
                        .headers()
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<usize>().ok())
                        .is_some_and(|len| len <= crate::ocsp::MAX_REQUEST_BYTES) =>
            {
                Some(OcspFrontRoute::Post)
            }
            _ => None,
        }
    }

    /// The answer to a request [`OcspFront::route`] chose.
    pub(crate) async fn answer<B>(
        &self,
        route: OcspFrontRoute,
        req: axum::http::Request<B>,
    ) -> Response
    where
        B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let mut response = self.respond(route, req).await;
        // As the router does for every route: the length of a body of known size.
        let size = axum::body::HttpBody::size_hint(response.body()).exact();
        if let Some(size) =
            size.filter(|_| !response.headers().contains_key(header::CONTENT_LENGTH))
        {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        }
        response
    }

    async fn respond<B>(&self, route: OcspFrontRoute, req: axum::http::Request<B>) -> Response
    where
        B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        match route {
            OcspFrontRoute::Get => {
                ocsp_get_response(&self.authority, req.uri().path(), req.headers())
            }
            OcspFrontRoute::Post => {
                let (parts, body) = req.into_parts();
                match axum::body::to_bytes(Body::new(body), crate::ocsp::MAX_REQUEST_BYTES).await {
                    Ok(body) => ocsp_response(&parts.headers, self.authority.ocsp_respond(&body)),
                    // The body broke off: what the route answers then.
                    Err(_) => error_body(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        StatusCode::BAD_REQUEST
                            .canonical_reason()
                            .unwrap_or("error"),
                    ),
                }
            }
        }
    }
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
    role: Role,
}

impl Caller {
    fn actor(&self) -> String {
        format!("admin-token:{}", self.id)
    }
}

/// How often the last use of an admin token is written (a write per call would make every
/// read a store write).
const LAST_USE_RESOLUTION_SECS: i64 = 60;

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
    let store = state.authority.store();
    let record = read_tx(store, |tx| tx.admin_token_by_hash(&hash))?
        .ok_or_else(|| unauthenticated("unknown admin token"))?;
    let now = crate::now_unix();
    match admin_token_status(&record, now) {
        "revoked" => return Err(unauthenticated("this admin token was revoked")),
        "expired" => return Err(unauthenticated("this admin token has expired")),
        _ => {}
    }
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
    if record
        .last_used_at
        .is_none_or(|at| now - at >= LAST_USE_RESOLUTION_SECS)
    {
        state.note_use(&record.id, now);
    }
    Ok(Caller {
        id: record.id,
        role,
    })
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

/// The HTTPS base URL endpoints use for enrollment, renewal, status and the repository: the
/// configured `[enrollment] api_url`, else the HTTPS listener's own address when it is a
/// specific one. Never the client's `Host` header: whoever sends the request chooses that, so
/// a discovery document built from it could send endpoints anywhere (or poison a cache in
/// front of the server). Without a configured address the URLs are left out, and endpoints
/// use the server URL they were given.
pub(crate) fn api_base(config: &crate::config::Config) -> Option<String> {
    if let Some(url) = &config.enrollment.api_url {
        return Some(url.trim_end_matches('/').to_owned());
    }
    let listen = config.server.listen;
    (!listen.ip().is_unspecified()).then(|| format!("https://{listen}"))
}

async fn discovery(State(state): State<AppState>) -> Response {
    let pem = |der: &[u8]| {
        der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der).unwrap_or_default()
    };
    let config = state.authority.config();
    let base = api_base(config);
    let mut repository_urls = config.enrollment.repository_urls.clone();
    if let (true, true, Some(base)) = (
        repository_urls.is_empty(),
        config.repository.is_some(),
        &base,
    ) {
        repository_urls.push(format!("{base}{}/", crate::repo::REPO_PATH));
    }
    let url = |path: &str| base.as_ref().map(|base| format!("{base}{path}"));
    json_response(
        StatusCode::OK,
        &herald_token_service::client::Discovery {
            root_pem: pem(state.authority.root_der()),
            intermediate_pem: Some(pem(state.authority.intermediate_der())),
            enroll_url: url("/api/v1/enroll"),
            renew_url: url("/api/v1/renew"),
            status_url: url("/api/v1/status"),
            ocsp_url: Some(config.ocsp_url()),
            crl_url: Some(config.crl_url(ISSUER_ID)),
            repository_urls,
        },
    )
}

/// The token service over this authority.
pub(crate) fn token_service(state: &AppState) -> TokenService {
    state.enrollment.clone()
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
    let profile = request
        .profile
        .as_deref()
        .unwrap_or(crate::policy::DEFAULT_PROFILE);
    if !state
        .authority
        .config()
        .token_policy
        .allows(caller.role.name(), profile)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_profile",
            format!(
                "the {} role may not create {profile} tokens (config.toml [token_policy])",
                caller.role.name()
            ),
        ));
    }
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAdminTokenBody {
    role: String,
    #[serde(default)]
    label: String,
    /// Lifetime (`30d`); none: no expiry.
    #[serde(default)]
    expires: Option<String>,
}

/// `GET /api/v1/admin-tokens` (admin): every admin credential with its state and last use.
async fn list_admin_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Role::Admin)?;
    let authority = state.authority.clone();
    let tokens = tokio::task::spawn_blocking(move || {
        read_tx(authority.store(), |tx| tx.list_admin_tokens())
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    let now = crate::now_unix();
    let tokens: Vec<_> = tokens.iter().map(|t| admin_token_json(t, now)).collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "admin_tokens": tokens }),
    ))
}

/// `POST /api/v1/admin-tokens` (admin): a new admin credential, its secret shown once.
async fn create_admin_token_api(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &headers, Role::Admin)?;
    let request: NewAdminTokenBody = parse_json(&headers, &body)?;
    let bad = |code, m: String| ApiError::new(StatusCode::BAD_REQUEST, code, m);
    let role = Role::parse(&request.role).ok_or_else(|| {
        bad(
            "bad_role",
            format!(
                "unknown role {:?}: admin, operator or auditor",
                request.role
            ),
        )
    })?;
    let expires_at = request
        .expires
        .as_deref()
        .map(admin_token_expiry)
        .transpose()
        .map_err(|m| bad("bad_expiry", m))?;
    let authority = state.authority.clone();
    let (record, token) = tokio::task::spawn_blocking(move || {
        create_admin_token(
            authority.store(),
            role,
            &request.label,
            expires_at,
            &caller.actor(),
        )
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    let mut value = admin_token_json(&record, crate::now_unix());
    value["token"] = serde_json::Value::String(token);
    Ok(json_response(StatusCode::CREATED, &value))
}

/// `POST /api/v1/admin-tokens/{id}/revoke` (admin): cuts a credential off at once.
async fn revoke_admin_token_api(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &headers, Role::Admin)?;
    let authority = state.authority.clone();
    let revoked = tokio::task::spawn_blocking(move || {
        revoke_admin_token(authority.store(), &id, &caller.actor())
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    if !revoked {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no active admin token with this id",
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"revoked": true}),
    ))
}

/// `GET /api/v1/audit?from=SEQ&limit=N` (auditor): entries in order, as `audit export`.
async fn audit_entries(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Role::Auditor)?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", m);
    let from: i64 = match query.get("from") {
        None => 1,
        Some(v) => v.parse().map_err(|_| bad(format!("bad from {v}")))?,
    };
    let limit: usize = match query.get("limit") {
        None => 1000,
        Some(v) => v
            .parse()
            .ok()
            .filter(|l| (1..=10_000).contains(l))
            .ok_or_else(|| bad(format!("limit must be 1 to 10000, not {v}")))?,
    };
    let authority = state.authority.clone();
    let entries = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        crate::audit::entries(authority.store(), from, limit, &mut |e| out.push(e)).map(|()| out)
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    let next = entries.last().map(|e| e.seq + 1);
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "entries": entries, "next": next }),
    ))
}

/// `GET /api/v1/audit/checkpoint` (auditor): a checkpoint of the head, signed by the audit key.
async fn audit_checkpoint(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Role::Auditor)?;
    let signer = state.audit_signer.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_audit_key",
            "this server cannot open its audit key; see the server log",
        )
    })?;
    let authority = state.authority.clone();
    let checkpoint = tokio::task::spawn_blocking(move || signer.checkpoint(authority.store()))
        .await
        .map_err(|e| ApiError::internal(&e))??;
    match checkpoint {
        Ok(checkpoint) => Ok(json_response(StatusCode::OK, &checkpoint)),
        Err(broken) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "audit_broken",
            format!(
                "the audit log is broken at entry {}: {}",
                broken.seq, broken.problem
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use axum::http::HeaderName;
    use base64::Engine;
    use der::{Decode, Encode};
    use tower::ServiceExt;

    use crate::authority::{init, InitOptions, KeyAccess};
    use crate::keys::{CaKeyType, KeyProtection};
    use crate::store::CertRecord;

    /// A CA with one issued certificate; its serial.
    fn authority() -> (tempfile::TempDir, Arc<Authority>, Serial) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let addr = "127.0.0.1:9".parse().unwrap();
        init(
            &dir,
            &InitOptions {
                name: "Front".into(),
                key_type: CaKeyType::EcdsaP256,
                protection: KeyProtection::InsecureUnencrypted,
                listen: addr,
                http_listen: Some(addr),
                public_url: "http://ca.example".into(),
                tls_names: vec!["localhost".into()],
                name_domain: "endpoints.herald.internal".into(),
            },
        )
        .unwrap();
        let authority = Authority::open(&dir, &KeyAccess { passphrase: None }).unwrap();
        let serial = Serial::from_bytes(&[0x5a; 16]);
        write_tx(authority.store(), |tx| {
            tx.insert_certificate(&CertRecord {
                serial: serial.clone(),
                issuer: ISSUER_ID.into(),
                name: "front-1".into(),
                profile: "endpoint".into(),
                not_before: 0,
                not_after: i64::MAX,
                issued_at: 0,
                der: vec![0],
                revocation: None,
            })
        })
        .unwrap();
        (tmp, Arc::new(authority), serial)
    }

    /// An OCSP request for `serial` (SHA-1 CertID), with `nonce` if given.
    fn ocsp_request(authority: &Authority, serial: &Serial, nonce: Option<&[u8]>) -> Vec<u8> {
        let issuer = x509_cert::Certificate::from_der(authority.intermediate_der()).unwrap();
        let name = issuer.tbs_certificate.subject.to_der().unwrap();
        let key = issuer
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        let sha1 = |d: &[u8]| {
            der::asn1::OctetString::new(
                ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, d).as_ref(),
            )
            .unwrap()
        };
        x509_ocsp::OcspRequest {
            tbs_request: x509_ocsp::TbsRequest {
                version: x509_ocsp::Version::V1,
                requestor_name: None,
                request_list: vec![x509_ocsp::Request {
                    req_cert: x509_ocsp::CertId {
                        hash_algorithm: spki::AlgorithmIdentifierOwned {
                            oid: const_oid::db::rfc5912::ID_SHA_1,
                            parameters: Some(der::asn1::Any::null()),
                        },
                        issuer_name_hash: sha1(&name),
                        issuer_key_hash: sha1(key),
                        serial_number: x509_cert::serial_number::SerialNumber::new(
                            serial.as_bytes(),
                        )
                        .unwrap(),
                    },
                    single_request_extensions: None,
                }],
                request_extensions: nonce.map(|n| {
                    vec![x509_cert::ext::Extension {
                        extn_id: const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE,
                        critical: false,
                        // RFC 9654: the value is an OCTET STRING.
                        extn_value: der::asn1::OctetString::new(
                            der::asn1::OctetString::new(n).unwrap().to_der().unwrap(),
                        )
                        .unwrap(),
                    }]
                }),
            },
            optional_signature: None,
        }
        .to_der()
        .unwrap()
    }

    fn request(method: Method, uri: &str, headers: &[(HeaderName, &str)], body: &[u8]) -> Request {
        let mut builder = axum::http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(name, *value);
        }
        builder.body(Body::from(body.to_vec())).unwrap()
    }

    /// Status, headers (but the max-age, which counts seconds down) and body.
    async fn parts(response: Response) -> (StatusCode, Vec<(String, String)>, Bytes) {
        let status = response.status();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                let v = v.to_str().unwrap();
                // max-age counts seconds down: left out.
                let v = match v.split_once(", ") {
                    Some((max_age, rest)) if max_age.starts_with("max-age=") => rest,
                    _ => v,
                };
                (k.to_string(), v.to_owned())
            })
            .collect();
        (
            status,
            headers,
            axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn ocsp_front_answers_as_the_router_does() {
        let (_tmp, authority, serial) = authority();
        let router = public_router(AppState::new(authority.clone()));
        let front = OcspFront::new(authority.clone());
        let plain = ocsp_request(&authority, &serial, None);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&plain);
        let len = plain.len().to_string();
        let ocsp_type = (header::CONTENT_TYPE, "application/ocsp-request");
        let mut same = vec![
            request(Method::GET, &format!("/ocsp/{b64}"), &[], b""),
            request(
                Method::GET,
                &format!("/ocsp/{}", b64.replace('/', "%2F")),
                &[],
                b"",
            ),
            request(Method::GET, "/ocsp/!!!", &[], b""),
            request(
                Method::POST,
                "/ocsp",
                &[ocsp_type.clone(), (header::CONTENT_LENGTH, &len)],
                &plain,
            ),
            request(
                Method::POST,
                "/ocsp/",
                &[(header::CONTENT_LENGTH, &len)],
                &plain,
            ),
            request(
                Method::POST,
                "/ocsp",
                &[(header::CONTENT_LENGTH, "3")],
                b"abc",
            ),
        ];
        // The pre-signed response's ETag, for a conditional request.
        let (_, headers, _) = parts(
            front
                .answer(
                    OcspFrontRoute::Post,
                    request(Method::POST, "/ocsp", &[], &plain),
                )
                .await,
        )
        .await;
        let etag = headers.iter().find(|(k, _)| k == "etag").unwrap().1.clone();
        same.push(request(
            Method::GET,
            &format!("/ocsp/{b64}"),
            &[(header::IF_NONE_MATCH, &etag)],
            b"",
        ));
        for req in same {
            let described = format!("{} {}", req.method(), req.uri());
            let (method, uri, headers) = (
                req.method().clone(),
                req.uri().clone(),
                req.headers().clone(),
            );
            let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap();
            let rebuild = || {
                let mut r = axum::http::Request::builder()
                    .method(method.clone())
                    .uri(uri.clone())
                    .body(Body::from(body.clone()))
                    .unwrap();
                *r.headers_mut() = headers.clone();
                r
            };
            let route = OcspFront::route(&rebuild())
                .unwrap_or_else(|| panic!("{described} is answered ahead of the router"));
            let ahead = parts(front.answer(route, rebuild()).await).await;
            let routed = parts(router.clone().oneshot(rebuild()).await.unwrap()).await;
            assert_eq!(ahead, routed, "{described}");
        }

        // A nonce: signed afresh by both, the nonce echoed, never cached.
        let with_nonce = ocsp_request(&authority, &serial, Some(&[4; 16]));
        let len = with_nonce.len().to_string();
        let post = || {
            request(
                Method::POST,
                "/ocsp",
                &[(header::CONTENT_LENGTH, &len)],
                &with_nonce,
            )
        };
        let (status, headers, body) = parts(front.answer(OcspFrontRoute::Post, post()).await).await;
        let (routed_status, routed_headers, routed_body) =
            parts(router.clone().oneshot(post()).await.unwrap()).await;
        // (ECDSA signatures differ in length by a byte or two.)
        let without_length = |headers: &[(String, String)]| -> Vec<(String, String)> {
            headers
                .iter()
                .filter(|(k, _)| k != "content-length")
                .cloned()
                .collect()
        };
        assert_eq!(
            (status, without_length(&headers)),
            (routed_status, without_length(&routed_headers))
        );
        assert!(headers.contains(&("cache-control".into(), "no-store".into())));
        for body in [body, routed_body] {
            let response = x509_ocsp::OcspResponse::from_der(&body).unwrap();
            let basic = x509_ocsp::BasicOcspResponse::from_der(
                response.response_bytes.unwrap().response.as_bytes(),
            )
            .unwrap();
            assert_eq!(
                basic.tbs_response_data.nonce().unwrap().0.as_bytes(),
                [4; 16]
            );
        }

        // What the router refuses (or serves otherwise) stays with the router.
        for (method, uri, headers) in [
            (Method::GET, "/ocsp/", vec![]),
            (Method::HEAD, &*format!("/ocsp/{b64}"), vec![]),
            (Method::PUT, "/ocsp", vec![(header::CONTENT_LENGTH, "3")]),
            (Method::POST, "/ocspx", vec![(header::CONTENT_LENGTH, "3")]),
            (Method::POST, "/ocsp", vec![]),
            (
                Method::POST,
                "/ocsp",
                vec![(header::CONTENT_LENGTH, "8193")],
            ),
            (Method::POST, "/ocsp", vec![(header::CONTENT_LENGTH, "x")]),
            (
                Method::POST,
                "/ocsp",
                vec![
                    (header::CONTENT_LENGTH, "3"),
                    (header::TRANSFER_ENCODING, "chunked"),
                ],
            ),
        ] {
            let described = format!("{method} {uri} {headers:?}");
            assert_eq!(
                OcspFront::route(&request(method, uri, &headers, b"abc")),
                None,
                "{described}"
            );
        }
    }

    #[test]
    fn http_dates_are_imf_fixdate() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(-5), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(1_780_000_000), "Thu, 28 May 2026 20:26:40 GMT");
        assert_eq!(http_date(2_524_607_999), "Fri, 31 Dec 2049 23:59:59 GMT");
    }
}
