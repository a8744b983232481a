//! `GET /ui/accounts` and the account forms (admin role only): create (the one-time password
//! shown once), disable, reset the second factor, new one-time password.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::{
    bad_form, blocking, caller_page, csrf_field, form_caller, option, query_value, signed_in, when,
    Nav, PageError,
};
use crate::core::accounts::{self, account_status, mfa_status};
use crate::core::admin::Role;
use crate::core::sessions::Current;
use crate::http::AppState;

/// `GET /ui/accounts` (admin).
pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let current = signed_in(&state, &headers, Role::Admin).await?;
    let console_state = state.clone();
    let all =
        blocking(move || Ok(accounts::list_accounts(console_state.authority.store())?)).await?;
    let now = crate::model::time::now_unix();
    let body = html! {
        h1 { "Accounts" }
        form.card method="post" action="/ui/accounts" {
            h2 { "New account" }
            (csrf_field(&current))
            label for="name" { "Name" }
            input id="name" name="name" type="text" required pattern="[A-Za-z0-9._@-]{1,64}"
                autocomplete="off";
            label for="role" { "Role" }
            select id="role" name="role" {
                (option("auditor", "auditor: reads everything", "auditor"))
                (option("operator", "operator: also revokes and creates endpoint tokens", "auditor"))
                (option("admin", "admin: everything, including accounts", "auditor"))
            }
            button type="submit" { "Create account" }
            p.note { "The account gets a one-time password, shown once; it sets its own password and enrols TOTP at its first sign-in." }
        }
        div.scroll { table id="accounts" {
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Status" }
                th scope="col" { "Second factor" } th scope="col" { "Last sign-in" }
                th scope="col" { span.visually-hidden { "Actions" } }
            } }
            tbody { @for a in &all { tr {
                td { (a.name) }
                td { (a.role) }
                td { (account_status(a, now)) }
                td { (mfa_status(a)) }
                td { (when(a.last_login_at)) }
                td.actions {
                    @if a.disabled_at.is_none() && a.name != current.account.name {
                        (action_form(&current, &a.name, "disable", "Disable"))
                    }
                    @if a.disabled_at.is_none() {
                        (action_form(&current, &a.name, "reset-mfa", "Reset second factor"))
                        (action_form(&current, &a.name, "password", "New one-time password"))
                    }
                }
            } } }
        } }
    };
    Ok(caller_page(&current, Nav::Accounts, "Accounts", body))
}

fn action_form(current: &Current, name: &str, action: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action=(format!("/ui/accounts/{}/{action}", query_value(name))) {
            (csrf_field(current))
            button type="submit" aria-label=(format!("{label}: {name}")) { (label) }
        }
    }
}

/// The page showing a one-time password, once.
fn one_time_password_page(current: &Current, name: &str, password: &str) -> Response {
    caller_page(
        current,
        Nav::Accounts,
        "One-time password",
        html! {
            h1 { "One-time password for " (name) }
            p { "Hand this password to its holder by a safe channel. It works for one sign-in, \
                 at which the holder chooses a password and enrols TOTP. It is shown only now." }
            p { code id="one-time-password" { (password) } }
            p { a href="/ui/accounts" { "Back to the accounts" } }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct NewAccountForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

/// `POST /ui/accounts` (admin).
pub(super) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<NewAccountForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| bad_form(&e))?;
    let current = form_caller(&state, &headers, &form.csrf, Role::Admin).await?;
    let role = Role::parse(&form.role).ok_or_else(|| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "Choose admin, operator or auditor.",
        )
    })?;
    let console_state = state.clone();
    let actor = current.actor();
    let name = form.name.trim().to_owned();
    let (record, password) = blocking(move || {
        Ok(accounts::create_account(
            console_state.authority.store(),
            &name,
            role,
            true,
            &actor,
        )?)
    })
    .await?;
    Ok(one_time_password_page(&current, &record.name, &password))
}

#[derive(Deserialize)]
pub(super) struct ActionForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/accounts/{name}/{disable|reset-mfa|password}` (admin).
pub(super) async fn change(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| bad_form(&e))?;
    let current = form_caller(&state, &headers, &form.csrf, Role::Admin).await?;
    if action == "disable" && name == current.account.name {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "You cannot disable your own account; nothing was changed.",
        ));
    }
    let console_state = state.clone();
    let actor = current.actor();
    let target = name.clone();
    let password = blocking(move || {
        let store = console_state.authority.store();
        match action.as_str() {
            "disable" => accounts::disable_account(store, &target, &actor).map(|()| None),
            "reset-mfa" => accounts::reset_mfa(store, &target, &actor).map(|()| None),
            "password" => accounts::reset_password(store, &target, &actor).map(Some),
            _ => {
                return Err(PageError::new(
                    StatusCode::NOT_FOUND,
                    "There is no such action.",
                ))
            }
        }
        .map_err(PageError::from)
    })
    .await?;
    match password {
        Some(password) => Ok(one_time_password_page(&current, &name, &password)),
        None => Ok(Redirect::to("/ui/accounts").into_response()),
    }
}
