//! The web console at `/ui/` on the HTTPS listener: server-rendered HTML (maud templates
//! compiled into the binary), usable without JavaScript, under a strict Content-Security-Policy
//! (no script at all, styles and images from this origin only, no framing).
//!
//! Every page needs a session of an enabled account (else: the sign-in page); every POST also
//! needs the session's CSRF token and the role the action needs, checked here whatever the
//! page showed (an auditor forging a revoke form gets 403), and a same-origin `Origin` when the
//! browser sends one. Cookies are `__Host-` cookies: `Secure; HttpOnly; SameSite=Strict;
//! Path=/`.

mod account;
mod accounts;
mod audit;
mod auth;
mod certs;
mod chart;
mod dashboard;
mod endpoints;
mod tokens;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::core::accounts::AccountError;
use crate::core::admin::Role;
use crate::core::sessions::{self, Current, SessionError, Stage};
use crate::http::AppState;
use crate::store::StoreError;

/// The session cookie.
const SESSION_COOKIE: &str = "__Host-herald-session";
/// The cookie holding the sign-in form's CSRF token (before there is a session).
const LOGIN_COOKIE: &str = "__Host-herald-login";
/// The policy of every console response: no script, nothing from elsewhere, no framing,
/// forms posting only here.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The style sheet, compiled in.
const STYLE: &str = include_str!("style.css");

/// The console's routes (empty when `[console] enabled = false`).
pub(crate) fn routes(state: &AppState) -> Router {
    if !state.console.enabled {
        return Router::new();
    }
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(dashboard::page_handler))
        .route("/ui/style.css", get(style))
        .route("/ui/login", get(auth::login_form).post(auth::login))
        .route(
            "/ui/login/code",
            get(auth::second_factor_form).post(auth::second_factor),
        )
        .route("/ui/setup", get(auth::setup_form).post(auth::setup))
        .route("/ui/logout", post(auth::logout))
        .route("/ui/account", get(account::show))
        .route("/ui/account/password", post(account::change_password))
        .route("/ui/endpoints", get(endpoints::list))
        .route("/ui/endpoints/{name}", get(endpoints::show))
        .route("/ui/certificates", get(certs::list))
        .route("/ui/certificates/{serial}", get(certs::show))
        .route("/ui/certificates/{serial}/revoke", post(certs::revoke))
        .route("/ui/tokens", get(tokens::list).post(tokens::create))
        .route("/ui/tokens/{id}/revoke", post(tokens::revoke))
        .route("/ui/audit", get(audit::list))
        .route("/ui/audit/verify", get(audit::verify))
        .route("/ui/accounts", get(accounts::list).post(accounts::create))
        .route("/ui/accounts/{name}/{action}", post(accounts::change))
        .route("/ui/{*rest}", get(not_found).post(not_found))
        .layer(middleware::from_fn(guard))
        .with_state(state.clone())
}

/// Headers of every console response, and the refusal of cross-origin POSTs.
async fn guard(request: Request, next: Next) -> Response {
    if request.method() == Method::POST && !same_origin(request.headers()) {
        return PageError::new(
            StatusCode::FORBIDDEN,
            "This form was sent from another site; it was refused.",
        )
        .into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Whether a POST comes from a page of this server. A current browser says where a request
/// comes from in `Sec-Fetch-Site`; others name the page's origin in `Origin`. Requests with
/// neither (not from a browser) are judged by their CSRF token alone.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    match (text("origin"), text("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin == format!("https://{host}"),
        (Some(_), None) => false,
    }
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

async fn not_found() -> PageError {
    PageError::new(StatusCode::NOT_FOUND, "There is no such page.")
}

/// An HTML page as the response.
pub(super) fn page(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// A page for the signed-in `current`, under navigation entry `nav`.
pub(super) fn caller_page(current: &Current, nav: Nav, title: &str, body: Markup) -> Response {
    page(StatusCode::OK, layout(title, Some((current, nav)), body))
}

/// What a console handler answers when it cannot show its page.
#[derive(Debug)]
pub(super) enum PageError {
    /// A page with this status and message.
    Message(StatusCode, String),
    /// The same for a signed-in caller: with the navigation and the sign-out button.
    ForCaller(StatusCode, String, Box<Current>),
    /// Not signed in (or the session ended): to the sign-in page.
    SignIn,
    /// Somewhere else.
    Redirect(String),
}

impl PageError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        PageError::Message(status, message.into())
    }

    fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "console: internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something failed on the server; the server's log says what.",
        )
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn => Redirect::to("/ui/login").into_response(),
            PageError::Redirect(to) => Redirect::to(&to).into_response(),
            PageError::Message(status, message) => message_page(status, &message, None),
            PageError::ForCaller(status, message, current) => {
                message_page(status, &message, Some(&current))
            }
        }
    }
}

/// A page saying `message`, with the navigation when someone is signed in.
fn message_page(status: StatusCode, message: &str, current: Option<&Current>) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    page(
        status,
        layout(
            title,
            current.map(|c| (c, Nav::Dashboard)),
            html! {
                h1 { (title) }
                p.error role="alert" { (message) }
                p { a href="/ui/" { "Back to the dashboard" } }
            },
        ),
    )
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => {
                tracing::error!(error = %detail, "console: database unavailable");
                PageError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The certificate store is unavailable; nothing was changed. Try again later.",
                )
            }
            other => PageError::internal(&other),
        }
    }
}

impl From<SessionError> for PageError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Store(e) => e.into(),
            other => PageError::internal(&other),
        }
    }
}

impl From<AccountError> for PageError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Store(e) => e.into(),
            AccountError::NotFound(_) => PageError::new(StatusCode::NOT_FOUND, e.to_string()),
            AccountError::Exists(_) | AccountError::BadName(_) | AccountError::Rejected(_) => {
                PageError::new(StatusCode::BAD_REQUEST, e.to_string())
            }
            AccountError::Crypto(_) => PageError::internal(&e),
        }
    }
}

/// Runs blocking core work (store transactions, password hashing, signing) off the async
/// workers.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PageError> + Send + 'static,
) -> Result<T, PageError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(PageError::internal(&e)),
    }
}

/// The value of cookie `name` in the request.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value for a `__Host-` cookie (`Max-Age=0` removes it).
fn set_cookie(name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let age = max_age.map_or_else(String::new, |s| format!("; Max-Age={s}"));
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("__Host-herald-invalid=; Max-Age=0"))
}

/// A redirect to `to` that sets the session cookie to `id`.
fn with_session(to: &str, id: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, id, None));
    response
}

/// The client's address (per-address throttling).
fn client_ip(peer: Option<&Extension<ConnectInfo<SocketAddr>>>) -> IpAddr {
    peer.map_or(
        IpAddr::from([0, 0, 0, 0]),
        |Extension(ConnectInfo(addr))| addr.ip(),
    )
}

/// The session of this request at `stage`, if any.
async fn session(state: &AppState, headers: &HeaderMap) -> Result<Option<Current>, PageError> {
    let Some(id) = cookie(headers, SESSION_COOKIE).map(str::to_owned) else {
        return Ok(None);
    };
    let state = state.clone();
    blocking(move || {
        let now = crate::model::time::now_unix();
        Ok(sessions::resume(
            state.authority.store(),
            &state.console,
            &id,
            now,
        )?)
    })
    .await
}

/// The signed-in caller of a page, if its role is at least `needed`: otherwise to the
/// sign-in page (no session, or one still signing in) or 403.
pub(super) async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    needed: Role,
) -> Result<Current, PageError> {
    let current = session(state, headers).await?;
    let current = match current {
        Some(c) if c.stage == Stage::Active => c,
        Some(c) if c.stage == Stage::Setup => return Err(PageError::Redirect("/ui/setup".into())),
        Some(_) => return Err(PageError::Redirect("/ui/login/code".into())),
        None => return Err(PageError::SignIn),
    };
    if current.role < needed {
        return Err(role_refused(current, needed, ""));
    }
    Ok(current)
}

/// [`signed_in`] for a form: also the session's CSRF token must be `csrf`.
pub(super) async fn form_caller(
    state: &AppState,
    headers: &HeaderMap,
    csrf: &str,
    needed: Role,
) -> Result<Current, PageError> {
    let current = signed_in(state, headers, Role::Auditor).await?;
    if !sessions::csrf_matches(&current.id, csrf) {
        return Err(csrf_refused());
    }
    if current.role < needed {
        tracing::warn!(account = %current.account.name, role = current.role.name(),
            needed = needed.name(), "console: a form was refused for the caller's role");
        return Err(role_refused(current, needed, " Nothing was changed."));
    }
    Ok(current)
}

/// 403 for `current`, whose role is below `needed`; `outcome` follows the reason.
fn role_refused(current: Current, needed: Role, outcome: &str) -> PageError {
    let message = format!(
        "This needs the {} role; your account has the {} role.{outcome}",
        needed.name(),
        current.role.name()
    );
    PageError::ForCaller(StatusCode::FORBIDDEN, message, Box::new(current))
}

/// A form that failed to parse.
pub(super) fn bad_form(rejection: &FormRejection) -> PageError {
    PageError::new(
        StatusCode::BAD_REQUEST,
        format!("The form is malformed: {rejection}"),
    )
}

fn csrf_refused() -> PageError {
    PageError::new(
        StatusCode::FORBIDDEN,
        "The form's security token is missing or stale; nothing was changed. Reload the page \
         and send the form again.",
    )
}

/// The hidden CSRF field of a form of `current`.
pub(super) fn csrf_field(current: &Current) -> Markup {
    html! { input type="hidden" name="csrf" value=(current.csrf()); }
}

/// A time for people (`2026-12-07 05:27:22Z`), `-` for none.
pub(super) fn when(time: Option<i64>) -> String {
    time.map_or_else(|| "-".to_owned(), crate::model::time::format_time)
}

/// Text that came from an endpoint or a request, control and direction characters shown
/// escaped (HTML escaping is maud's).
pub(super) fn untrusted(text: &str) -> String {
    crate::model::text::escape_untrusted(text).into_owned()
}

/// Query parameter `name`, trimmed; `None` when absent or empty.
pub(super) fn query_param(params: &HashMap<String, String>, name: &str) -> Option<String> {
    params
        .get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The page position `after=TIME:KEY` of a list in time order, if given.
pub(super) fn page_position(
    params: &HashMap<String, String>,
) -> Result<Option<(i64, String)>, PageError> {
    params
        .get("after")
        .map(|text| {
            text.split_once(':')
                .and_then(|(t, key)| Some((t.parse::<i64>().ok()?, key.to_owned())))
                .ok_or_else(|| PageError::new(StatusCode::BAD_REQUEST, "bad page position"))
        })
        .transpose()
}

/// A query string parameter made safe for a link (percent-encoded).
pub(super) fn query_value(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Nav {
    Dashboard,
    Endpoints,
    Certificates,
    Tokens,
    Audit,
    Accounts,
    /// The caller's own account (linked from its name in the header).
    Account,
}

/// The page around `body`: head, skip link, navigation for `current` (none while signing
/// in), main content.
pub(super) fn layout(title: &str, current: Option<(&Current, Nav)>, body: Markup) -> Markup {
    let entries = [
        (Nav::Dashboard, "/ui/", "Dashboard", Role::Auditor),
        (Nav::Endpoints, "/ui/endpoints", "Endpoints", Role::Auditor),
        (
            Nav::Certificates,
            "/ui/certificates",
            "Certificates",
            Role::Auditor,
        ),
        (
            Nav::Tokens,
            "/ui/tokens",
            "Enrollment tokens",
            Role::Auditor,
        ),
        (Nav::Audit, "/ui/audit", "Audit log", Role::Auditor),
        (Nav::Accounts, "/ui/accounts", "Accounts", Role::Admin),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Herald console" }
                link rel="stylesheet" href="/ui/style.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    span.brand { "Herald" }
                    @if let Some((current, active)) = current {
                        nav aria-label="Main" {
                            ul {
                                @for (nav, href, label, role) in entries {
                                    @if current.role >= role {
                                        li {
                                            @if nav == active {
                                                a href=(href) aria-current="page" { (label) }
                                            } @else {
                                                a href=(href) { (label) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        form.signout method="post" action="/ui/logout" {
                            (csrf_field(current))
                            span.who {
                                @if active == Nav::Account {
                                    a href="/ui/account" aria-current="page"
                                        title="Your account" { (current.account.name) }
                                } @else {
                                    a href="/ui/account" title="Your account" {
                                        (current.account.name)
                                    }
                                }
                                " (" (current.role.name()) ")"
                            }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" tabindex="-1" { (body) }
            }
        }
    }
}

/// An HTML `<option>` with `selected` when `value == chosen`.
pub(super) fn option(value: &str, label: &str, chosen: &str) -> Markup {
    html! {
        @if value == chosen {
            option value=(value) selected { (label) }
        } @else {
            option value=(value) { (label) }
        }
    }
}

/// Literal markup (an SVG made here, never text from outside).
pub(super) fn trusted_markup(svg: String) -> PreEscaped<String> {
    PreEscaped(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).expect("header value"));
        }
        h
    }

    #[test]
    fn cross_site_posts_are_recognised() {
        assert!(same_origin(&headers(&[])));
        assert!(same_origin(&headers(&[
            ("host", "ca.example:8443"),
            ("origin", "https://ca.example:8443"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "ca.example:8443"),
            ("origin", "https://evil.example"),
        ])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!same_origin(&headers(&[
            ("host", "ca.example:8443"),
            ("origin", "null"),
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "ca.example:8443"),
            ("origin", "http://ca.example:8443"),
        ])));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let h = headers(&[
            ("cookie", "a=1; __Host-herald-session=abc"),
            ("cookie", "other=2"),
        ]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "other"), Some("2"));
        assert_eq!(cookie(&h, "herald-session"), None);
        let set = set_cookie(SESSION_COOKIE, "abc", None);
        assert_eq!(
            set.to_str().unwrap_or(""),
            "__Host-herald-session=abc; Path=/; Secure; HttpOnly; SameSite=Strict"
        );
    }
}
