//! Console accounts over the admin API (admin role): list, create (the one-time password in
//! the answer, once), disable, reset the second factor, new one-time password.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use crate::core::accounts::{self, account_json};
use crate::core::admin::Role;
use crate::http::error::ApiError;
use crate::http::{authenticate, blocking, json_response, parse_json, AppState};

/// `GET /api/v1/accounts` (admin).
pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Role::Admin)?;
    let authority = state.authority.clone();
    let all = blocking(move || accounts::list_accounts(authority.store())).await?;
    let now = crate::model::time::now_unix();
    let all: Vec<_> = all.iter().map(|a| account_json(a, now)).collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "accounts": all }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccountBody {
    name: String,
    role: String,
    /// Require a second factor (default true).
    #[serde(default = "yes")]
    mfa_required: bool,
}

fn yes() -> bool {
    true
}

/// `POST /api/v1/accounts` (admin): `{"name", "role", "mfa_required"}`.
pub(super) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &headers, Role::Admin)?;
    let request: NewAccountBody = parse_json(&headers, &body)?;
    let role = Role::parse(&request.role).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_role",
            format!(
                "unknown role {:?}: admin, operator or auditor",
                request.role
            ),
        )
    })?;
    let authority = state.authority.clone();
    let (record, password) = blocking(move || {
        accounts::create_account(
            authority.store(),
            &request.name,
            role,
            request.mfa_required,
            &caller.actor(),
        )
    })
    .await?;
    let mut value = account_json(&record, crate::model::time::now_unix());
    value["one_time_password"] = serde_json::Value::String(password);
    Ok(json_response(StatusCode::CREATED, &value))
}

/// `POST /api/v1/accounts/{name}/{disable|reset-mfa|password}` (admin).
pub(super) async fn change(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &headers, Role::Admin)?;
    let authority = state.authority.clone();
    let target = name.clone();
    let password = blocking(move || {
        let store = authority.store();
        let actor = caller.actor();
        match action.as_str() {
            "disable" => accounts::disable_account(store, &target, &actor).map(|()| None),
            "reset-mfa" => accounts::reset_mfa(store, &target, &actor).map(|()| None),
            "password" => accounts::reset_password(store, &target, &actor).map(Some),
            _ => Err(accounts::AccountError::Rejected(format!(
                "no action {action:?}: disable, reset-mfa or password"
            ))),
        }
    })
    .await?;
    let mut value = serde_json::json!({ "account": name });
    if let Some(password) = password {
        value["one_time_password"] = serde_json::Value::String(password);
    }
    Ok(json_response(StatusCode::OK, &value))
}
