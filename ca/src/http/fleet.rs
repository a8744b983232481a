//! Fleet routes: endpoints' status reports (`POST /api/v1/status`, mutual TLS or an
//! end-to-end proof through relays), the fleet view and the releases summary for the auditor
//! role, and an endpoint's group for the operator role.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;

use herald_token_service::ClientCertificate;
use herald_wire::Group;
use serde::Deserialize;

use crate::core::admin::Role;
use crate::core::fleet::{fleet, fleet_in, record_status};
use crate::core::groups::set_group;
use crate::core::releases::releases;
use crate::http::error::ApiError;
use crate::http::{authenticate, blocking, json_response, parse_json, AppState};

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

/// A group named in a request, checked.
fn group_param(text: &str) -> Result<Group, ApiError> {
    Group::new(text).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_group", e.to_string()))
}

/// `GET /api/v1/fleet` (auditor): every endpoint, or those of `?group=NAME`.
pub(crate) async fn list_fleet(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Role::Auditor)?;
    let group = query.get("group").map(|g| group_param(g)).transpose()?;
    let authority = state.authority.clone();
    let entries = blocking(move || {
        fleet_in(
            authority.store(),
            None,
            group.as_ref(),
            crate::model::time::now_unix(),
        )
    })
    .await?;
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

/// `POST /api/v1/fleet/{name}/group` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupBody {
    group: String,
}

/// `POST /api/v1/fleet/{name}/group` (operator): records the endpoint's group, audited. Its
/// certificate carries the new group from its next renewal on.
pub(crate) async fn set_fleet_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &headers, Role::Operator)?;
    let request: GroupBody = parse_json(&headers, &body)?;
    let group = group_param(&request.group)?;
    let authority = state.authority.clone();
    let change = blocking(move || {
        set_group(
            authority.store(),
            &authority.config().profiles,
            &name,
            &group,
            &caller.actor(),
        )
    })
    .await?;
    Ok(json_response(StatusCode::OK, &change))
}

/// `GET /api/v1/fleet/releases` (auditor): per channel, release and group, how many
/// endpoints' latest reports are installed, pending, failed, rolled back or held.
pub(crate) async fn list_releases(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Role::Auditor)?;
    let authority = state.authority.clone();
    let rows = blocking(move || releases(authority.store())).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "releases": rows }),
    ))
}
