//! `GET /ui/certificates` (newest first; search by serial or exact name),
//! `GET /ui/certificates/{serial}` and `POST /ui/certificates/{serial}/revoke` (operator).

use std::collections::HashMap;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::{
    bad_form, blocking, caller_page, csrf_field, form_caller, page_position, query_param,
    query_value, signed_in, when, Nav, PageError,
};
use crate::core::admin::Role;
use crate::core::authority::RevokeTarget;
use crate::core::console;
use crate::core::sessions::Current;
use crate::http::AppState;
use crate::model::encoding::pem_certificate;
use crate::model::revocation::{Reason, ALL as ALL_REASONS};
use crate::model::serial::Serial;
use crate::store::{read_tx, CertRecord, ListFilter};

fn status(cert: &CertRecord, now: i64) -> Markup {
    match cert.revocation {
        Some(r) => {
            html! { span.badge.revoked { "revoked" } " " (when(Some(r.revoked_at))) " (" (r.reason) ")" }
        }
        None if cert.not_after < now => html! { span.badge.expired { "expired" } },
        None => html! { span.badge.valid { "valid" } },
    }
}

fn table(certs: &[CertRecord], now: i64) -> Markup {
    html! {
        div.scroll { table id="certificates" {
            thead { tr {
                th scope="col" { "Serial" } th scope="col" { "Name" } th scope="col" { "Profile" }
                th scope="col" { "Issued" } th scope="col" { "Expires" } th scope="col" { "Status" }
            } }
            tbody { @for c in certs { tr {
                td { a href=(format!("/ui/certificates/{}", c.serial.to_hex())) { code { (c.serial.to_hex()) } } }
                td { (c.name) }
                td { (c.profile) }
                td { (when(Some(c.issued_at))) }
                td { (when(Some(c.not_after))) }
                td { (status(c, now)) }
            } } }
        } }
    }
}

/// `GET /ui/certificates?q=&after=ISSUED:SERIAL`.
pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let current = signed_in(&state, &headers, Role::Auditor).await?;
    let q = query_param(&params, "q");
    let after = page_position(&params)?;
    let console_state = state.clone();
    let search = q.clone();
    let (certs, next) = blocking(move || {
        let store = console_state.authority.store();
        match search {
            // A serial, else an exact name: both indexed.
            Some(q) => {
                let by_serial = match Serial::from_hex(&q) {
                    Ok(serial) => read_tx(store, |tx| tx.certificate(&serial))?,
                    Err(_) => None,
                };
                let certs = match by_serial {
                    Some(cert) => vec![cert],
                    None => read_tx(store, |tx| {
                        tx.list_certificates(&ListFilter {
                            name: Some(q.clone()),
                            revoked: None,
                            limit: Some(console::PAGE_SIZE),
                        })
                    })?,
                };
                Ok((certs, None))
            }
            None => {
                let page = console::certificates(store, after)?;
                Ok((page.rows, page.next))
            }
        }
    })
    .await?;
    let now = crate::model::time::now_unix();
    let body = html! {
        h1 { "Certificates" }
        form.filters method="get" action="/ui/certificates" role="search" {
            div { label for="q" { "Serial (hex) or name" }
                input id="q" name="q" type="search" value=(q.clone().unwrap_or_default()); }
            button type="submit" { "Search" }
        }
        @if certs.is_empty() { p { "No certificate matches." } } @else { (table(&certs, now)) }
        nav.pager aria-label="Pages" {
            @if params.contains_key("after") { a href="/ui/certificates" { "First page" } }
            @if let Some((issued, serial)) = &next {
                a rel="next" href=(format!("/ui/certificates?after={issued}:{}", query_value(serial))) { "Next page" }
            }
        }
    };
    Ok(caller_page(
        &current,
        Nav::Certificates,
        "Certificates",
        body,
    ))
}

fn parse_serial(text: &str) -> Result<Serial, PageError> {
    Serial::from_hex(text).map_err(|e| PageError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

/// `GET /ui/certificates/{serial}`.
pub(super) async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(serial): Path<String>,
) -> Result<Response, PageError> {
    let current = signed_in(&state, &headers, Role::Auditor).await?;
    let serial = parse_serial(&serial)?;
    let console_state = state.clone();
    let cert = blocking(move || Ok(console_state.authority.certificate(&serial)?))
        .await?
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, "No certificate has this serial."))?;
    let now = crate::model::time::now_unix();
    let hex = cert.serial.to_hex();
    let body = html! {
        h1 { "Certificate " code { (hex) } }
        dl.facts {
            dt { "Name" } dd { (cert.name) }
            dt { "Profile" } dd { (cert.profile) }
            dt { "Issuer" } dd { (cert.issuer) }
            dt { "Valid from" } dd { (when(Some(cert.not_before))) }
            dt { "Valid until" } dd { (when(Some(cert.not_after))) }
            dt { "Issued" } dd { (when(Some(cert.issued_at))) }
            dt { "Status" } dd id="cert-status" { (status(&cert, now)) }
        }
        @if cert.profile == crate::core::policy::DEFAULT_PROFILE {
            p { a href=(format!("/ui/endpoints/{}", query_value(&cert.name))) { "The endpoint " (cert.name) } }
        }
        details { summary { "PEM" } pre { (pem_certificate(&cert.der)) } }
        @if cert.revocation.is_none() {
            (revoke_section(&current, &hex, &format!("/ui/certificates/{hex}")))
        }
    };
    Ok(caller_page(
        &current,
        Nav::Certificates,
        "Certificate",
        body,
    ))
}

/// The revocation form: a reason and an explicit confirmation.
pub(super) fn revoke_form(current: &Current, serial: &str, return_to: &str) -> Markup {
    html! {
        form.card.danger method="post" action=(format!("/ui/certificates/{serial}/revoke")) {
            (csrf_field(current))
            input type="hidden" name="return_to" value=(return_to);
            p { "Revocation is permanent: the certificate " code { (serial) }
                " is listed in the next CRL and OCSP answers revoked from now on." }
            label for="reason" { "Reason" }
            select id="reason" name="reason" {
                @for reason in ALL_REASONS {
                    option value=(reason.to_string()) { (reason.to_string()) }
                }
            }
            div.check {
                input id="confirm" name="confirm" type="checkbox" value="yes" required;
                label for="confirm" { "I confirm the revocation of " code { (serial) } }
            }
            button.danger type="submit" id="revoke" { "Revoke certificate" }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    return_to: String,
}

/// `POST /ui/certificates/{serial}/revoke` (operator).
pub(super) async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(serial): Path<String>,
    form: Result<Form<RevokeForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| bad_form(&e))?;
    let current = form_caller(&state, &headers, &form.csrf, Role::Operator).await?;
    let serial = parse_serial(&serial)?;
    if form.confirm != "yes" {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "Tick the confirmation to revoke; nothing was changed.",
        ));
    }
    let reason: Reason =
        form.reason
            .parse()
            .map_err(|e: crate::model::revocation::ReasonParseError| {
                PageError::new(StatusCode::BAD_REQUEST, e.to_string())
            })?;
    let console_state = state.clone();
    let actor = current.actor();
    let target = serial.clone();
    let revoked = blocking(move || {
        console_state
            .authority
            .revoke(&RevokeTarget::Serial(target), reason, &actor)
            .map_err(|e| match e {
                crate::core::authority::RevokeError::NotFound(_) => {
                    PageError::new(StatusCode::NOT_FOUND, "No certificate has this serial.")
                }
                other => PageError::internal(&other),
            })
    })
    .await?;
    tracing::info!(account = %current.account.name, serial = %serial, revoked = revoked.len(),
        "console: certificate revoked");
    let to = if safe_return(&form.return_to) {
        form.return_to
    } else {
        format!("/ui/certificates/{}", serial.to_hex())
    };
    Ok(Redirect::to(&to).into_response())
}

/// Whether `to` is a console page to return to after a form: a path under `/ui/` of
/// letters, digits, `/`, `-`, `_`, `.` and percent escapes (never another site or a header).
fn safe_return(to: &str) -> bool {
    to.starts_with("/ui/")
        && !to.starts_with("/ui//")
        && to
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'%'))
}

/// The revocation form, for roles that may revoke.
pub(super) fn revoke_section(current: &Current, serial: &str, return_to: &str) -> Markup {
    html! {
        @if current.role >= Role::Operator {
            h2 { "Revoke" }
            (revoke_form(current, serial, return_to))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_returned_to() {
        assert!(safe_return("/ui/endpoints/pos%2D0001"));
        assert!(safe_return("/ui/certificates/0a1b"));
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/ui//evil.example",
            "/api/v1/fleet",
            "/ui/x\r\nSet-Cookie: a=b",
            "/ui/x?y=z",
            "/ui/é",
        ] {
            assert!(!safe_return(bad), "{bad}");
        }
    }
}
