//! The signed-in caller's own account: changing its password (any role).

use std::net::SocketAddr;

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use maud::html;
use serde::Deserialize;

use super::auth::{admitted, sign_in_step};
use super::{bad_form, csrf_field, form_caller, layout, page, signed_in, Nav, PageError};
use crate::core::accounts::{self, AccountError};
use crate::core::admin::Role;
use crate::core::sessions::{self, Current};
use crate::http::AppState;

/// What the page says above the form.
enum Notice<'a> {
    None,
    Changed,
    Refused(&'a str),
}

/// The account page of `current` with the password form.
fn account_page(current: &Current, notice: Notice<'_>, status: StatusCode) -> Response {
    let min = accounts::MIN_PASSWORD_CHARS;
    page(
        status,
        layout(
            "Your account",
            Some((current, Nav::Account)),
            html! {
                h1 { "Your account" }
                p { "Signed in as " strong { (current.account.name) } " with the "
                    (current.role.name()) " role." }
                @match notice {
                    Notice::None => {}
                    Notice::Changed => {
                        p.ok role="status" id="password-changed" {
                            "Your password was changed. Your other sessions were signed out."
                        }
                    }
                    Notice::Refused(message) => { p.error role="alert" { (message) } }
                }
                h2 { "Change your password" }
                form.card method="post" action="/ui/account/password" {
                    (csrf_field(current))
                    input type="text" name="username" autocomplete="username"
                        value=(current.account.name) hidden readonly;
                    label for="current_password" { "Current password" }
                    input id="current_password" name="current_password" type="password"
                        autocomplete="current-password" required;
                    label for="new_password" { "New password (at least " (min) " characters)" }
                    input id="new_password" name="new_password" type="password"
                        autocomplete="new-password" required minlength=(min);
                    label for="new_password2" { "New password again" }
                    input id="new_password2" name="new_password2" type="password"
                        autocomplete="new-password" required minlength=(min);
                    button type="submit" { "Change password" }
                }
            },
        ),
    )
}

/// `GET /ui/account`.
pub(super) async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let current = signed_in(&state, &headers, Role::Auditor).await?;
    Ok(account_page(&current, Notice::None, StatusCode::OK))
}

#[derive(Deserialize)]
pub(super) struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password2: String,
}

/// `POST /ui/account/password`: the current password (a wrong one is a failed sign-in,
/// throttled and counted towards the lockout like one) and the new one twice. The other
/// sessions of the account end; this one stays.
pub(super) async fn change_password(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<PasswordForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| bad_form(&e))?;
    let current = form_caller(&state, &headers, &form.csrf, Role::Auditor).await?;
    let refuse = |message: &str| {
        Ok(account_page(
            &current,
            Notice::Refused(message),
            StatusCode::BAD_REQUEST,
        ))
    };
    if form.new_password != form.new_password2 {
        return refuse("The two new passwords differ; nothing was changed.");
    }
    if let Err(e) = accounts::check_new_password(&form.new_password) {
        return refuse(&format!("{e}; nothing was changed."));
    }
    let ip = match admitted(&state, peer.as_ref()) {
        Ok(ip) => ip,
        Err(response) => return Ok(*response),
    };
    let name = current.account.name.clone();
    let changing = current.clone();
    let outcome = sign_in_step(
        &state,
        ip,
        move |console, now| {
            let store = console.authority.store();
            accounts::confirm_password(
                store,
                console.console.lockout,
                &name,
                &form.current_password,
                now,
            )
        },
        move |console, (), _| match sessions::change_password(
            console.authority.store(),
            &changing,
            &form.new_password,
        ) {
            Ok(()) => Ok(Ok(())),
            Err(AccountError::Rejected(message)) => Ok(Err(message)),
            Err(e) => Err(e.into()),
        },
    )
    .await?;
    match outcome {
        Ok(Ok(())) => Ok(account_page(&current, Notice::Changed, StatusCode::OK)),
        Ok(Err(message)) => refuse(&format!("{message}; nothing was changed.")),
        Err(message) => Ok(account_page(
            &current,
            Notice::Refused(&format!("{message} Nothing was changed.")),
            StatusCode::UNAUTHORIZED,
        )),
    }
}
