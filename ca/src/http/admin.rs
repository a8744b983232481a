//! Admin-credential routes (admin role) and the audit log's routes (auditor role): entries,
//! verification and signed checkpoints.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use crate::core::admin::{
    admin_token_expiry, admin_token_json, create_admin_token, list_admin_tokens,
    revoke_admin_token, Role,
};
use crate::http::error::ApiError;
use crate::http::{authenticate, blocking, json_response, parse_json, AppState};

pub(super) async fn audit_verify(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Role::Auditor)?;
    let authority = state.authority.clone();
    let report = blocking(move || crate::core::audit::verify(authority.store())).await?;
    Ok(json_response(StatusCode::OK, &report))
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
pub(super) async fn list_admin_tokens_api(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Role::Admin)?;
    let authority = state.authority.clone();
    let tokens = blocking(move || list_admin_tokens(authority.store())).await?;
    let now = crate::model::time::now_unix();
    let tokens: Vec<_> = tokens.iter().map(|t| admin_token_json(t, now)).collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "admin_tokens": tokens }),
    ))
}

/// `POST /api/v1/admin-tokens` (admin): a new admin credential, its secret shown once.
pub(super) async fn create_admin_token_api(
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
    let (record, token) = blocking(move || {
        create_admin_token(
            authority.store(),
            role,
            &request.label,
            expires_at,
            &caller.actor(),
        )
    })
    .await?;
    let mut value = admin_token_json(&record, crate::model::time::now_unix());
    value["token"] = serde_json::Value::String(token);
    Ok(json_response(StatusCode::CREATED, &value))
}

/// `POST /api/v1/admin-tokens/{id}/revoke` (admin): cuts a credential off at once.
pub(super) async fn revoke_admin_token_api(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &headers, Role::Admin)?;
    let authority = state.authority.clone();
    let revoked =
        blocking(move || revoke_admin_token(authority.store(), &id, &caller.actor())).await?;
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
pub(super) async fn audit_entries(
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
    let entries = blocking(move || {
        let mut out = Vec::new();
        crate::core::audit::entries(authority.store(), from, limit, &mut |e| out.push(e))
            .map(|()| out)
    })
    .await?;
    let next = entries.last().map(|e| e.seq + 1);
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "entries": entries, "next": next }),
    ))
}

/// `GET /api/v1/audit/checkpoint` (auditor): a checkpoint of the head, signed by the audit key.
pub(super) async fn audit_checkpoint(
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
    let checkpoint = blocking(move || signer.checkpoint(authority.store())).await?;
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
