//! The HTTP layer: axum routes and handlers for the public revocation endpoints (OCSP, CRL,
//! CA certificates), health, metrics, the admin API, enrollment, status reports, the
//! repository and the web console (`/ui/`, [`console`]). Handlers translate HTTP to calls on the core and back; this is the only layer
//! that knows status codes.
//!
//! Every 4xx/5xx answer of the API carries `{"error":{"code":"...","message":"..."}}` (the
//! console answers HTML pages); the detail of an internal failure goes to the log, not to the
//! client.

mod accounts;
mod admin;
mod certs;
mod console;
pub(crate) mod error;
mod fleet;
pub(crate) mod repo;
mod revocation;
mod tokens;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use herald_token_service::{json_errors, TokenService};

use crate::core::admin::{AdminAuth, Caller, Role};
use crate::core::audit::AuditSigner;
use crate::core::authority::Authority;
use crate::core::enrollment::TokenAuthority;
use crate::core::sessions::ConsoleSettings;
use error::ApiError;
pub(crate) use revocation::OcspFront;

/// Shared state of the handlers.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) authority: Arc<Authority>,
    /// The enrollment and renewal service, with its per-address limits and its count of
    /// anonymous refusals (shared by the routes and `/metrics`).
    pub(crate) enrollment: TokenService,
    /// The audit key, for `GET /api/v1/audit/checkpoint`; `None` if it cannot be opened.
    audit_signer: Option<Arc<AuditSigner>>,
    /// Admin bearer-token checks, with this process's record of their last use.
    admin_auth: Arc<AdminAuth>,
    /// The console's settings and its per-address throttle of failed sign-ins.
    pub(crate) console: Arc<ConsoleSettings>,
}

impl AppState {
    /// The state of a server over `authority`. Inside a Tokio runtime it also starts the task
    /// that writes aggregated refusal audit entries when their interval is over.
    pub(crate) fn new(authority: Arc<Authority>) -> Self {
        let enrollment = TokenService::with_limits(
            Arc::new(TokenAuthority::new(authority.clone())),
            authority.config().enrollment_limits.clone(),
        );
        let audit_signer = match AuditSigner::open(
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
                    let flushed =
                        tokio::task::spawn_blocking(move || service.flush_refusal_audit(false))
                            .await;
                    if let Err(e) = flushed {
                        tracing::error!(error = %e, "writing the refusal audit entries failed");
                    }
                }
            });
        }
        let console = Arc::new(ConsoleSettings::new(&authority.config().console));
        Self {
            authority,
            enrollment,
            audit_signer,
            admin_auth: Arc::default(),
            console,
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
        .route("/metrics", get(revocation::metrics))
        .fallback(not_found)
        .with_state(state)
        .layer(middleware::from_fn(json_errors))
}

fn public_routes(state: AppState) -> Router {
    let router = Router::new().route("/healthz", get(|| async { "ok\n" }));
    // With a listener of its own, /metrics is served there only.
    let router = if state.authority.config().metrics.listen.is_none() {
        router.route("/metrics", get(revocation::metrics))
    } else {
        router
    };
    router
        .route("/ocsp", post(revocation::ocsp_post))
        .route("/ocsp/", post(revocation::ocsp_post))
        .route("/ocsp/{*request}", get(revocation::ocsp_get))
        .route("/crl/{file}", get(revocation::crl))
        .route("/ca/{file}", get(revocation::ca_cert))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(crate::core::ocsp::MAX_REQUEST_BYTES))
        .with_state(state)
}

/// The routes of the HTTPS listener: everything public plus the admin API.
pub(crate) fn full_router(state: AppState) -> Router {
    let admin = Router::new()
        .route(
            "/api/v1/certificates",
            get(certs::list_certs).post(certs::issue_cert),
        )
        .route("/api/v1/certificates/{serial}", get(certs::show_cert))
        .route(
            "/api/v1/certificates/{serial}/revoke",
            post(certs::revoke_cert),
        )
        .route("/api/v1/audit/verify", get(admin::audit_verify))
        .route("/api/v1/audit", get(admin::audit_entries))
        .route("/api/v1/audit/checkpoint", get(admin::audit_checkpoint))
        .route("/.well-known/herald", get(tokens::discovery))
        .route(
            "/api/v1/tokens",
            get(tokens::list_tokens).post(tokens::create_token),
        )
        .route("/api/v1/tokens/{id}/revoke", post(tokens::revoke_token))
        .route(
            "/api/v1/admin-tokens",
            get(admin::list_admin_tokens_api).post(admin::create_admin_token_api),
        )
        .route(
            "/api/v1/admin-tokens/{id}/revoke",
            post(admin::revoke_admin_token_api),
        )
        .route(
            "/api/v1/accounts",
            get(accounts::list).post(accounts::create),
        )
        .route("/api/v1/accounts/{name}/{action}", post(accounts::change))
        .route("/api/v1/fleet", get(fleet::list_fleet))
        .route("/api/v1/fleet/releases", get(fleet::list_releases))
        .route("/api/v1/fleet/{name}", get(fleet::show_fleet))
        .route("/api/v1/fleet/{name}/group", post(fleet::set_fleet_group))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state.clone());
    let status = Router::new()
        .route("/api/v1/status", post(fleet::post_status))
        .layer(DefaultBodyLimit::max(fleet::MAX_REPORT_BYTES))
        .with_state(state.clone());
    let repository = repo::routes(&state).unwrap_or_default();
    let enrollment = herald_token_service::routes(state.enrollment.clone())
        .layer(DefaultBodyLimit::max(64 * 1024));
    let console = console::routes(&state).layer(DefaultBodyLimit::max(64 * 1024));
    // The console answers its own errors as HTML pages; everything else answers JSON.
    public_routes(state)
        .merge(admin)
        .merge(status)
        .merge(repository)
        .merge(enrollment)
        .layer(middleware::from_fn(json_errors))
        .merge(console)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// The caller of an admin endpoint, by the bearer token in `Authorization`, if its role is
/// at least `needed`.
pub(crate) fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    needed: Role,
) -> Result<Caller, ApiError> {
    let token = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthenticated",
                        "use Authorization: Bearer <admin token>",
                    )
                })?,
        ),
    };
    Ok(state
        .admin_auth
        .authenticate(state.authority.store(), token, needed)?)
}

/// Runs blocking core work (store transactions, signing) off the async workers.
pub(crate) async fn blocking<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Into::into),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

pub(crate) fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => ApiError::internal(&e).into_response(),
    }
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
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
