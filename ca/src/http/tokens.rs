//! Enrollment-token routes of the admin API (create, list, revoke; operator) and the
//! discovery document endpoints start from.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use herald_token_service::{NewTokenRequest, Refusal};

use crate::core::admin::Role;
use crate::core::enrollment::{discovery_document, token_json};
use crate::http::error::ApiError;
use crate::http::{authenticate, blocking, json_response, parse_json, AppState};

/// `GET /.well-known/herald`: where endpoints enroll, renew, report and update.
pub(super) async fn discovery(State(state): State<AppState>) -> Response {
    json_response(StatusCode::OK, &discovery_document(&state.authority))
}

pub(super) async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &headers, Role::Operator)?;
    let request: NewTokenRequest = parse_json(&headers, &body)?;
    let profile = request
        .profile
        .as_deref()
        .unwrap_or(crate::core::policy::DEFAULT_PROFILE);
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
    let service = state.enrollment.clone();
    let created = blocking(move || service.create_token(&request, &caller.actor())).await?;
    Ok(json_response(StatusCode::CREATED, &created))
}

pub(super) async fn list_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Role::Auditor)?;
    let service = state.enrollment.clone();
    let tokens = blocking(move || service.list_tokens()).await?;
    let tokens: Vec<_> = tokens
        .iter()
        .map(|(token, status)| token_json(token, *status))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "tokens": tokens }),
    ))
}

pub(super) async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &headers, Role::Operator)?;
    let service = state.enrollment.clone();
    let revoked = blocking(move || {
        service
            .authority()
            .revoke_token(&id, &caller.actor())
            .map_err(Refusal::from)
    })
    .await?;
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
