//! `GET /ui/audit` (newest first, filter by actor and action) and `GET /ui/audit/verify`
//! (the hash chain checked whole).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;

use super::{
    blocking, caller_page, query_param, query_value, signed_in, untrusted, when, Nav, PageError,
};
use crate::core::admin::Role;
use crate::core::console;
use crate::http::AppState;
use crate::store::AuditQuery;

/// `GET /ui/audit?actor=&action=&before=SEQ`.
pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let current = signed_in(&state, &headers, Role::Auditor).await?;
    let param = |name: &str| query_param(&params, name);
    let actor = param("actor");
    let action = param("action");
    let before = param("before")
        .map(|b| {
            b.parse::<i64>()
                .map_err(|_| PageError::new(StatusCode::BAD_REQUEST, "bad page position"))
        })
        .transpose()?;
    let query = AuditQuery {
        before,
        actor: actor.clone(),
        action: action.clone(),
        limit: console::PAGE_SIZE,
    };
    let console_state = state.clone();
    let found =
        blocking(move || Ok(console::audit(console_state.authority.store(), query)?)).await?;
    let mut filters = String::new();
    for (name, value) in [("actor", &actor), ("action", &action)] {
        if let Some(value) = value {
            filters.push_str(&format!("&{name}={}", query_value(value)));
        }
    }
    let body = html! {
        h1 { "Audit log" }
        p { a.button href="/ui/audit/verify" { "Verify the hash chain" } }
        form.filters method="get" action="/ui/audit" role="search" {
            div { label for="actor" { "Actor" }
                input id="actor" name="actor" type="text" value=(actor.clone().unwrap_or_default())
                    placeholder="account:alice"; }
            div { label for="action" { "Action" }
                input id="action" name="action" type="text" value=(action.clone().unwrap_or_default())
                    placeholder="revoke"; }
            button type="submit" { "Filter" }
        }
        @if found.rows.is_empty() { p { "No entry matches." } } @else {
            div.scroll { table id="audit" {
                thead { tr {
                    th scope="col" class="num" { "#" } th scope="col" { "Time" } th scope="col" { "Actor" }
                    th scope="col" { "Action" } th scope="col" { "Details" }
                } }
                tbody { @for e in &found.rows { tr {
                    td.num { (e.seq) }
                    td { (when(Some(e.entry.time))) }
                    td { a href=(format!("/ui/audit?actor={}", query_value(&e.entry.actor))) { (untrusted(&e.entry.actor)) } }
                    td { a href=(format!("/ui/audit?action={}", query_value(&e.entry.action))) { (untrusted(&e.entry.action)) } }
                    td { code.details { (untrusted(&e.entry.details)) } }
                } } }
            } }
        }
        nav.pager aria-label="Pages" {
            @if before.is_some() {
                a href=(format!("/ui/audit?{}", filters.trim_start_matches('&'))) { "Newest" }
            }
            @if let Some(next) = found.next {
                a rel="next" href=(format!("/ui/audit?before={next}{filters}")) { "Older entries" }
            }
        }
    };
    Ok(caller_page(&current, Nav::Audit, "Audit log", body))
}

/// `GET /ui/audit/verify`: walks the whole chain (as `herald-ca audit verify`).
pub(super) async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let current = signed_in(&state, &headers, Role::Auditor).await?;
    let console_state = state.clone();
    let report =
        blocking(move || Ok(crate::core::audit::verify(console_state.authority.store())?)).await?;
    let body = html! {
        h1 { "Audit log verification" }
        @match &report.first_break {
            None => p.ok id="verify-result" role="status" {
                "The chain is intact: " (report.entries) " entries, head " code { (report.head) } "." },
            Some(b) => p.error id="verify-result" role="alert" {
                "The chain is broken at entry " (b.seq) ": " (b.problem) },
        }
        p { "A checkpoint signed by the CA's audit key (" code { "herald-ca audit checkpoint" }
            ") kept elsewhere also detects a cut or recomputed log." }
        p { a href="/ui/audit" { "Back to the audit log" } }
    };
    Ok(caller_page(
        &current,
        Nav::Audit,
        "Audit verification",
        body,
    ))
}
