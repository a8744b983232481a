//! `GET /ui/tokens` (newest first), `POST /ui/tokens` (operator: a new enrollment token,
//! shown once with the `herald-update enroll` command to paste) and
//! `POST /ui/tokens/{id}/revoke` (operator).

use std::collections::HashMap;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use herald_token_service::{NewTokenRequest, Refusal, TokenStatus};
use maud::html;
use serde::Deserialize;

use super::{
    bad_form, blocking, caller_page, csrf_field, form_caller, layout, option, page, page_position,
    query_value, signed_in, when, Nav, PageError,
};
use crate::core::admin::Role;
use crate::core::console;
use crate::core::sessions::Current;
use crate::http::AppState;
use herald_token_client::sha256_hex;

/// Token lifetimes offered by the form.
const TTLS: [(&str, &str); 4] = [
    ("1h", "1 hour"),
    ("24h", "24 hours"),
    ("7d", "7 days"),
    ("30d", "30 days"),
];

/// The profiles `current` may create tokens for (`[token_policy]`).
fn allowed_profiles(state: &AppState, current: &Current) -> Vec<String> {
    let config = state.authority.config();
    config
        .profiles
        .keys()
        .filter(|p| config.token_policy.allows(current.role.name(), p))
        .cloned()
        .collect()
}

/// `GET /ui/tokens?after=CREATED:ID`.
pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let current = signed_in(&state, &headers, Role::Auditor).await?;
    let after = page_position(&params)?;
    let now = crate::model::time::now_unix();
    let console_state = state.clone();
    let found = blocking(move || {
        Ok(console::tokens(
            console_state.authority.store(),
            after,
            now,
        )?)
    })
    .await?;
    let profiles = allowed_profiles(&state, &current);
    let may_create = current.role >= Role::Operator && !profiles.is_empty();
    let body = html! {
        h1 { "Enrollment tokens" }
        @if may_create {
            form.card method="post" action="/ui/tokens" {
                h2 { "New token" }
                (csrf_field(&current))
                label for="name" { "Base name (the endpoint becomes NAME-NNNN)" }
                input id="name" name="name" type="text" required pattern="[A-Za-z0-9-]+"
                    autocomplete="off";
                label for="ttl" { "Valid for" }
                select id="ttl" name="ttl" { @for (value, label) in TTLS { (option(value, label, "24h")) } }
                label for="profile" { "Profile" }
                select id="profile" name="profile" {
                    @for p in &profiles { (option(p, p, crate::core::policy::DEFAULT_PROFILE)) }
                }
                label for="group" { "Group (the endpoint's certificate carries it; empty: default)" }
                input id="group" name="group" type="text" pattern="[a-z0-9][a-z0-9-]{0,31}"
                    autocomplete="off";
                button type="submit" id="create-token" { "Create token" }
            }
        }
        @if found.rows.is_empty() { p { "No enrollment tokens yet." } } @else {
            div.scroll { table id="tokens" {
                thead { tr {
                    th scope="col" { "Id" } th scope="col" { "Name" } th scope="col" { "Profile" }
                    th scope="col" { "Group" }
                    th scope="col" { "Status" } th scope="col" { "Expires" } th scope="col" { "Created by" }
                    th scope="col" { "Certificate" }
                    @if current.role >= Role::Operator { th scope="col" { span.visually-hidden { "Actions" } } }
                } }
                tbody { @for (t, status) in &found.rows { tr {
                    td { code { (t.id) } }
                    td { (t.name) }
                    td { (t.profile) }
                    td { (t.group) }
                    td { span class=(format!("badge {}", status.as_str())) { (status.as_str()) } }
                    td { (when(Some(t.expires_at))) }
                    td { (t.created_by) }
                    td { @match &t.serial {
                        Some(s) => a href=(format!("/ui/certificates/{s}")) { code { (s) } },
                        None => "-",
                    } }
                    @if current.role >= Role::Operator { td {
                        @if *status == TokenStatus::Pending {
                            form.inline method="post" action=(format!("/ui/tokens/{}/revoke", t.id)) {
                                (csrf_field(&current))
                                button type="submit" aria-label=(format!("Revoke token {}", t.id)) { "Revoke" }
                            }
                        }
                    } }
                } } }
            } }
        }
        nav.pager aria-label="Pages" {
            @if params.contains_key("after") { a href="/ui/tokens" { "First page" } }
            @if let Some((created, id)) = &found.next {
                a rel="next" href=(format!("/ui/tokens?after={created}:{}", query_value(id))) { "Next page" }
            }
        }
    };
    Ok(caller_page(
        &current,
        Nav::Tokens,
        "Enrollment tokens",
        body,
    ))
}

#[derive(Deserialize)]
pub(super) struct NewTokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    ttl: String,
    #[serde(default)]
    profile: String,
    #[serde(default)]
    group: String,
}

fn refusal(r: &Refusal) -> PageError {
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        PageError::internal(&r.message())
    } else {
        PageError::new(status, r.message().to_owned())
    }
}

/// `POST /ui/tokens` (operator; the profile as `[token_policy]` allows the role).
pub(super) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<NewTokenForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| bad_form(&e))?;
    let current = form_caller(&state, &headers, &form.csrf, Role::Operator).await?;
    let profile = Some(form.profile.clone())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| crate::core::policy::DEFAULT_PROFILE.to_owned());
    if !state
        .authority
        .config()
        .token_policy
        .allows(current.role.name(), &profile)
    {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            format!(
                "The {} role may not create {profile} tokens (config.toml [token_policy]).",
                current.role.name()
            ),
        ));
    }
    let request = NewTokenRequest {
        name: form.name,
        ttl: Some(form.ttl).filter(|t| !t.is_empty()),
        profile: Some(profile),
        group: Some(form.group).filter(|g| !g.is_empty()),
    };
    let service = state.enrollment.clone();
    let actor = current.actor();
    let created = blocking(move || {
        service
            .create_token(&request, &actor)
            .map_err(|r| refusal(&r))
    })
    .await?;
    let server = state
        .authority
        .config()
        .api_base()
        .unwrap_or_else(|| "https://CA-ADDRESS:PORT".to_owned());
    let command = format!(
        "herald-update enroll --server {server} --token {} --root-fingerprint {} --state-dir /var/lib/herald-update",
        created.token,
        sha256_hex(state.authority.root_der())
    );
    let body = html! {
        h1 { "Token created" }
        p { "The token for " strong id="new-name" { (created.name) } " (profile " (created.profile)
            ", group " span id="new-group" { (created.group) } ") is valid until " (created.expires_at)
            ". It is shown only now: only its hash is stored." }
        dl.facts {
            dt { "Token" } dd { code id="new-token" { (created.token) } }
        }
        h2 { "On the endpoint" }
        pre id="enroll-command" { (command) }
        p { a href="/ui/tokens" { "Back to the tokens" } }
    };
    Ok(page(
        StatusCode::CREATED,
        layout("Token created", Some((&current, Nav::Tokens)), body),
    ))
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/tokens/{id}/revoke` (operator).
pub(super) async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| bad_form(&e))?;
    let current = form_caller(&state, &headers, &form.csrf, Role::Operator).await?;
    let service = state.enrollment.clone();
    let actor = current.actor();
    let revoked = blocking(move || {
        service
            .authority()
            .revoke_token(&id, &actor)
            .map_err(|e| refusal(&Refusal::from(e)))
    })
    .await?;
    if !revoked {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            "No pending token has this id; nothing was changed.",
        ));
    }
    Ok(Redirect::to("/ui/tokens").into_response())
}
