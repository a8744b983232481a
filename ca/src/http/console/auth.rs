//! Signing in and out: password, then a TOTP or recovery code (or, at the first sign-in, a
//! new password and TOTP enrolment), each step issuing a new session identifier.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use base64::Engine as _;
use maud::{html, Markup};
use serde::Deserialize;

use super::{
    bad_form, blocking, client_ip, cookie, csrf_field, csrf_refused, layout, page, session,
    set_cookie, with_session, PageError, LOGIN_COOKIE, SESSION_COOKIE,
};
use crate::core::accounts::{self, NextStep, SignInError, TOTP_ISSUER};
use crate::core::sessions::{self, Current, Stage};
use crate::core::totp;
use crate::http::AppState;

/// Seconds the sign-in form's CSRF cookie lives.
const LOGIN_FORM_SECS: i64 = 3600;

fn login_page(token: &str, message: Option<&str>, status: StatusCode) -> Response {
    let mut response = step_page(
        status,
        "Sign in",
        message,
        "/ui/login",
        html! {
            input type="hidden" name="csrf" value=(token);
            label for="username" { "Account" }
            input id="username" name="username" type="text" autocomplete="username"
                required autofocus;
            label for="password" { "Password" }
            input id="password" name="password" type="password"
                autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        },
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, token, Some(LOGIN_FORM_SECS)),
    );
    response
}

/// The page of a sign-in step: `title`, the refusal `message` if any, and the form posting
/// `fields` to `action`.
fn step_page(
    status: StatusCode,
    title: &str,
    message: Option<&str>,
    action: &str,
    fields: Markup,
) -> Response {
    page(
        status,
        layout(
            title,
            None,
            html! {
                h1 { (title) }
                @if let Some(message) = message {
                    p.error role="alert" { (message) }
                }
                form.card method="post" action=(action) { (fields) }
            },
        ),
    )
}

/// The CSRF field of a sign-in in progress and whose it is.
fn signing_in_as(current: &Current) -> Markup {
    html! {
        (csrf_field(current))
        p { "Signing in as " strong { (current.account.name) } "." }
    }
}

/// `GET /ui/login`: the sign-in form, with a fresh CSRF token in a cookie and the form.
pub(super) async fn login_form() -> Result<Response, PageError> {
    let token = sessions::random_token()?;
    Ok(login_page(&token, None, StatusCode::OK))
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// Refuses a sign-in step: counts it against the address and shows the form again.
fn refused(state: &AppState, ip: IpAddr, error: &SignInError) -> String {
    state.console.throttle.record_failure(ip);
    match error {
        SignInError::Locked(until) => format!(
            "Too many failed attempts: this account is locked until {}.",
            crate::model::time::format_time(*until)
        ),
        other => format!("Sign-in refused: {other}."),
    }
}

/// The address of a sign-in step, or `429` when this address failed too often.
pub(super) fn admitted(
    state: &AppState,
    peer: Option<&Extension<ConnectInfo<SocketAddr>>>,
) -> Result<IpAddr, Box<Response>> {
    let ip = client_ip(peer);
    state.console.throttle.admit(ip).map_err(|wait| {
        let secs = wait.as_secs().max(1);
        let mut response = PageError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many failed sign-ins from your address: try again in {secs} seconds."),
        )
        .into_response();
        if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        Box::new(response)
    })?;
    Ok(ip)
}

/// Runs a sign-in step off the async workers: `check` the caller's secret, then, when it
/// passes, `then` with what it found. A refusal comes back as the message to show (counted
/// against `ip`); a store failure is an error.
pub(super) async fn sign_in_step<P: 'static, T: Send + 'static>(
    state: &AppState,
    ip: IpAddr,
    check: impl FnOnce(&AppState, i64) -> Result<P, SignInError> + Send + 'static,
    then: impl FnOnce(&AppState, P, i64) -> Result<T, PageError> + Send + 'static,
) -> Result<Result<T, String>, PageError> {
    let console = state.clone();
    let outcome = blocking(move || {
        let now = crate::model::time::now_unix();
        match check(&console, now) {
            Ok(passed) => Ok(Ok(then(&console, passed, now)?)),
            Err(SignInError::Store(e)) => Err(e.into()),
            Err(other) => Ok(Err(other)),
        }
    })
    .await?;
    Ok(outcome.map_err(|error| refused(state, ip, &error)))
}

/// `POST /ui/login`: the password.
pub(super) async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| bad_form(&e))?;
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !sessions::constant_time_eq(expected, &form.csrf) {
        return Err(csrf_refused());
    }
    let ip = match admitted(&state, peer.as_ref()) {
        Ok(ip) => ip,
        Err(response) => return Ok(*response),
    };
    let name = form.username.trim().to_owned();
    let account = name.clone();
    let outcome = sign_in_step(
        &state,
        ip,
        move |console, now| {
            let store = console.authority.store();
            accounts::sign_in_password(store, console.console.lockout, &name, &form.password, now)
        },
        move |console, step, now| {
            let stage = match step {
                NextStep::Setup => Stage::Setup,
                NextStep::SecondFactor => Stage::SecondFactor,
                NextStep::Done => Stage::Active,
            };
            let store = console.authority.store();
            let id = sessions::start(store, &console.console, &account, stage, now)?;
            Ok((stage, id))
        },
    )
    .await?;
    match outcome {
        Ok((stage, id)) => {
            let to = match stage {
                Stage::Setup => "/ui/setup",
                Stage::SecondFactor => "/ui/login/code",
                Stage::Active => "/ui/",
            };
            let mut response = with_session(to, &id);
            response
                .headers_mut()
                .append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", Some(0)));
            Ok(response)
        }
        Err(message) => {
            let token = sessions::random_token()?;
            Ok(login_page(&token, Some(&message), StatusCode::UNAUTHORIZED))
        }
    }
}

/// The session of a sign-in in progress at `stage`, else back to the start.
async fn pending(
    state: &AppState,
    headers: &HeaderMap,
    stage: Stage,
) -> Result<Current, PageError> {
    match session(state, headers).await? {
        Some(current) if current.stage == stage => Ok(current),
        Some(current) if current.stage == Stage::Active => Err(PageError::Redirect("/ui/".into())),
        _ => Err(PageError::SignIn),
    }
}

/// [`pending`] for a form: also the session's CSRF token must be `csrf`.
async fn pending_form(
    state: &AppState,
    headers: &HeaderMap,
    stage: Stage,
    csrf: &str,
) -> Result<Current, PageError> {
    let current = pending(state, headers, stage).await?;
    if !sessions::csrf_matches(&current.id, csrf) {
        return Err(csrf_refused());
    }
    Ok(current)
}

fn second_factor_page(current: &Current, message: Option<&str>, status: StatusCode) -> Response {
    step_page(
        status,
        "Second factor",
        message,
        "/ui/login/code",
        html! {
            (signing_in_as(current))
            label for="code" { "Code from your authenticator app, or a recovery code" }
            input id="code" name="code" type="text" inputmode="numeric"
                autocomplete="one-time-code" required autofocus;
            button type="submit" { "Continue" }
        },
    )
}

/// `GET /ui/login/code`: the second-factor form.
pub(super) async fn second_factor_form(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let current = pending(&state, &headers, Stage::SecondFactor).await?;
    Ok(second_factor_page(&current, None, StatusCode::OK))
}

#[derive(Deserialize)]
pub(super) struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

/// `POST /ui/login/code`: a TOTP or recovery code.
pub(super) async fn second_factor(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| bad_form(&e))?;
    let current = pending_form(&state, &headers, Stage::SecondFactor, &form.csrf).await?;
    let ip = match admitted(&state, peer.as_ref()) {
        Ok(ip) => ip,
        Err(response) => return Ok(*response),
    };
    let name = current.account.name.clone();
    let signing_in = current.clone();
    let outcome = sign_in_step(
        &state,
        ip,
        move |console, now| {
            let store = console.authority.store();
            accounts::sign_in_second_factor(store, console.console.lockout, &name, &form.code, now)
        },
        move |console, (), now| {
            let store = console.authority.store();
            Ok(sessions::advance(
                store,
                &console.console,
                &signing_in,
                Stage::Active,
                now,
            )?)
        },
    )
    .await?;
    match outcome {
        Ok(id) => Ok(with_session("/ui/", &id)),
        Err(message) => Ok(second_factor_page(
            &current,
            Some(&message),
            StatusCode::UNAUTHORIZED,
        )),
    }
}

/// The set-up form: a new password and/or TOTP enrolment with its QR code and secret.
fn setup_page(
    current: &Current,
    needs: &accounts::SetupNeeds,
    message: Option<&str>,
    status: StatusCode,
) -> Response {
    let enrolment = needs.totp_secret.as_ref().map(|secret| {
        let uri = totp::otpauth_uri(TOTP_ISSUER, &current.account.name, secret);
        let qr = qrcode::QrCode::new(uri.as_bytes())
            .map(|code| {
                code.render::<qrcode::render::svg::Color<'_>>()
                    .min_dimensions(200, 200)
                    .build()
            })
            .ok();
        (totp::base32(secret), qr)
    });
    step_page(
        status,
        "Set up your account",
        message,
        "/ui/setup",
        html! {
            (signing_in_as(current))
            @if needs.password {
                h2 { "Choose your password" }
                p { "The password you signed in with works once. Choose your own (at least "
                    (accounts::MIN_PASSWORD_CHARS) " characters)." }
                label for="new_password" { "New password" }
                input id="new_password" name="new_password" type="password"
                    autocomplete="new-password" required minlength=(accounts::MIN_PASSWORD_CHARS);
                label for="new_password2" { "New password again" }
                input id="new_password2" name="new_password2" type="password"
                    autocomplete="new-password" required minlength=(accounts::MIN_PASSWORD_CHARS);
            }
            @if let Some((secret, qr)) = &enrolment {
                h2 { "Add Herald to your authenticator app" }
                p { "Scan the code with an authenticator app (TOTP), or type the secret into it." }
                @if let Some(svg) = qr {
                    img.qr src=(format!("data:image/svg+xml;base64,{}",
                        base64::engine::general_purpose::STANDARD.encode(svg)))
                        alt="QR code of the TOTP secret shown below as text"
                        width="200" height="200";
                }
                p { "Secret: " code id="totp-secret" { (secret) } }
                label for="code" { "The code your app shows now" }
                input id="code" name="code" type="text" inputmode="numeric"
                    autocomplete="one-time-code" required;
            }
            button type="submit" { "Save and sign in" }
        },
    )
}

/// `GET /ui/setup`.
pub(super) async fn setup_form(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let current = pending(&state, &headers, Stage::Setup).await?;
    let console = state.clone();
    let name = current.account.name.clone();
    let needs =
        blocking(move || Ok(accounts::setup_needs(console.authority.store(), &name)?)).await?;
    Ok(setup_page(&current, &needs, None, StatusCode::OK))
}

#[derive(Deserialize)]
pub(super) struct SetupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password2: String,
    #[serde(default)]
    code: String,
}

/// `POST /ui/setup`: the new password and the first code; then the recovery codes, once.
pub(super) async fn setup(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SetupForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| bad_form(&e))?;
    let current = pending_form(&state, &headers, Stage::Setup, &form.csrf).await?;
    let console = state.clone();
    let signing_in = current.clone();
    let outcome = blocking(move || {
        let now = crate::model::time::now_unix();
        let store = console.authority.store();
        let name = &signing_in.account.name;
        if form.new_password != form.new_password2 {
            let needs = accounts::setup_needs(store, name)?;
            return Ok(Err((needs, "The two new passwords differ.".to_owned())));
        }
        let password = Some(form.new_password.as_str()).filter(|p| !p.is_empty());
        let code = Some(form.code.as_str()).filter(|c| !c.is_empty());
        match accounts::complete_setup(store, name, password, code, now) {
            Ok(codes) => {
                let id =
                    sessions::advance(store, &console.console, &signing_in, Stage::Active, now)?;
                Ok(Ok((id, codes)))
            }
            Err(accounts::AccountError::Rejected(message)) => {
                let needs = accounts::setup_needs(store, name)?;
                Ok(Err((needs, message)))
            }
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    match outcome {
        Ok((id, None)) => Ok(with_session("/ui/", &id)),
        Ok((id, Some(codes))) => {
            let mut response = page(StatusCode::OK, recovery_codes_page(&codes));
            response
                .headers_mut()
                .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &id, None));
            Ok(response)
        }
        Err((needs, message)) => Ok(setup_page(
            &current,
            &needs,
            Some(&message),
            StatusCode::BAD_REQUEST,
        )),
    }
}

fn recovery_codes_page(codes: &[String]) -> Markup {
    layout(
        "Recovery codes",
        None,
        html! {
            h1 { "Your recovery codes" }
            p { "Keep these codes somewhere safe. Each one signs you in once in place of a code \
                 from your app, if you lose it. They are shown only now." }
            ol.codes id="recovery-codes" {
                @for code in codes { li { code { (code) } } }
            }
            p { a.button href="/ui/" { "Continue to the dashboard" } }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/logout`: ends the session.
pub(super) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| bad_form(&e))?;
    if let Some(current) = session(&state, &headers).await? {
        if !sessions::csrf_matches(&current.id, &form.csrf) {
            return Err(csrf_refused());
        }
        let console = state.clone();
        blocking(move || Ok(sessions::end(console.authority.store(), &current)?)).await?;
    }
    let mut response = Redirect::to("/ui/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", Some(0)));
    Ok(response)
}
