//! Fleet routes: endpoints' status reports (`POST /api/v1/status`, mutual TLS or an
//! end-to-end proof through relays) and the fleet view for the auditor role.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;

use herald_token_service::ClientCertificate;

use crate::core::admin::Role;
use crate::core::fleet::{fleet, record_status};
use crate::http::error::ApiError;
use crate::http::{authenticate, blocking, json_response, AppState};

/// Largest status report accepted, bytes.
pub(crate) const MAX_REPORT_BYTES: usize = 256 * 1024;

/// `POST /api/v1/status`: stores the report of the endpoint that proved it (see
/// [`record_status`]).
pub(crate) async fn post_status(
    State(state): State<AppState>,
    client: Option<Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let authority = state.authority.clone();
    let carrier = herald_token_service::carrier(client.as_deref(), &headers)?;
    let proof = headers
        .get(herald_token_service::PROOF_HEADER)
        .map(|v| v.as_bytes().to_vec());
    let service = state.enrollment.clone();
    let stored =
        blocking(move || record_status(&authority, &service, &carrier, proof.as_deref(), &body))
            .await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "acknowledged": true,
            "name": stored.name,
            "received_at": stored.received_at,
        }),
    ))
}

/// `GET /api/v1/fleet` (auditor): every endpoint.
pub(crate) async fn list_fleet(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Role::Auditor)?;
    let authority = state.authority.clone();
    let entries =
        blocking(move || fleet(authority.store(), None, crate::model::time::now_unix())).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "endpoints": entries }),
    ))
}

/// `GET /api/v1/fleet/{name}` (auditor): one endpoint.
pub(crate) async fn show_fleet(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Role::Auditor)?;
    let authority = state.authority.clone();
    let entries = blocking(move || {
        fleet(
            authority.store(),
            Some(&name),
            crate::model::time::now_unix(),
        )
    })
    .await?;
    match entries.into_iter().next() {
        Some(entry) => Ok(json_response(StatusCode::OK, &entry)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no endpoint with this name",
        )),
    }
}
