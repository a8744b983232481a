//! Certificate routes of the admin API: list, show, issue from a CSR (admin), revoke
//! (operator).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use crate::core::admin::Role;
use crate::core::authority::RevokeTarget;
use crate::http::error::ApiError;
use crate::http::{authenticate, blocking, json_response, parse_json, AppState};
use crate::model::encoding::pem_certificate;
use crate::model::revocation::{Reason, ReasonParseError};
use crate::model::serial::Serial;
use crate::store::ListFilter;

pub(super) async fn list_certs(
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

pub(super) async fn show_cert(
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
    let pem = pem_certificate(&cert.der);
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

pub(super) async fn issue_cert(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &headers, Role::Admin)?;
    let req: IssueBody = parse_json(&headers, &body)?;
    let authority = state.authority.clone();
    let issued = blocking(move || {
        let profile = req
            .profile
            .as_deref()
            .unwrap_or(crate::core::policy::DEFAULT_PROFILE);
        authority.issue(req.csr.as_bytes(), &req.name, profile, &caller.actor())
    })
    .await?;
    Ok(json_response(StatusCode::CREATED, &issued))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    #[serde(default)]
    reason: Option<String>,
}

pub(super) async fn revoke_cert(
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
        .map_err(|e: ReasonParseError| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_reason", e.to_string())
        })?;
    let authority = state.authority.clone();
    let actor = caller.actor();
    let revoked =
        blocking(move || authority.revoke(&RevokeTarget::Serial(serial), reason, &actor)).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"revoked": revoked, "already_revoked": revoked.is_empty()}),
    ))
}
