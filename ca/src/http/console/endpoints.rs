//! `GET /ui/endpoints` (search by name prefix, filter by state, group and release, pages of
//! 50 in name order; each row shows the endpoint's group, installed release and the release
//! its rollout offers it) and `GET /ui/endpoints/{name}` (group, certificates, installed and
//! offered release, last report, unlisted files, revocation).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use herald_wire::RolloutState;
use maud::{html, Markup};

use super::certs::revoke_section;
use super::{
    blocking, caller_page, option, query_param, query_value, signed_in, untrusted, when, Nav,
    PageError,
};
use crate::core::admin::Role;
use crate::core::console::{self, endpoint_failing, endpoint_filter, endpoint_state};
use crate::core::fleet::CertState;
use crate::http::AppState;
use crate::store::{read_tx, EndpointQuery, ListFilter};

fn state_badge(state: CertState) -> Markup {
    html! { span class=(format!("badge {}", state.name())) { (state.name()) } }
}

/// The release a rollout policy offers an endpoint and where it stands with it, as reported.
fn offered(release: Option<u64>, state: Option<RolloutState>) -> Markup {
    html! {
        @match release {
            Some(release) => {
                "release " (release)
                @if let Some(state) = state {
                    " " span class=(format!("badge rollout-{}", state.as_str())) { (state.as_str()) }
                }
            }
            None => "-",
        }
    }
}

/// `GET /ui/endpoints?q=&state=&group=&release=&after=`.
pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let current = signed_in(&state, &headers, Role::Auditor).await?;
    let param = |name: &str| query_param(&params, name);
    let bad = |m: String| PageError::new(StatusCode::BAD_REQUEST, m);
    let prefix = param("q");
    let filter_name = param("state").unwrap_or_default();
    let filter = match filter_name.as_str() {
        "" => None,
        name => Some(endpoint_filter(name).ok_or_else(|| bad(format!("no state {name:?}")))?),
    };
    let group = param("group");
    let release = param("release")
        .map(|r| {
            r.parse::<u64>()
                .map_err(|_| bad(format!("release {r:?} is not a number")))
        })
        .transpose()?;
    let now = crate::model::time::now_unix();
    let query = EndpointQuery {
        prefix: prefix.clone(),
        state: filter,
        group: group.clone(),
        release,
        after: param("after"),
        now,
        limit: console::PAGE_SIZE,
    };
    let console_state = state.clone();
    let found =
        blocking(move || Ok(console::endpoints(console_state.authority.store(), query)?)).await?;
    let filters = {
        let mut link = String::new();
        for (name, value) in [
            ("q", prefix.clone()),
            ("state", Some(filter_name.clone()).filter(|s| !s.is_empty())),
            ("group", group.clone()),
            ("release", release.map(|r| r.to_string())),
        ] {
            if let Some(value) = value {
                link.push_str(&format!("&{name}={}", query_value(&value)));
            }
        }
        link
    };
    let body = html! {
        h1 { "Endpoints" }
        form.filters method="get" action="/ui/endpoints" role="search" {
            div { label for="q" { "Name starts with" }
                input id="q" name="q" type="search" value=(prefix.clone().unwrap_or_default()); }
            div { label for="state" { "State" }
                select id="state" name="state" {
                    (option("", "any", &filter_name))
                    @for (name, _) in console::ENDPOINT_FILTERS { (option(name, name, &filter_name)) }
                } }
            div { label for="group" { "Group" }
                input id="group" name="group" type="text" value=(group.clone().unwrap_or_default()); }
            div { label for="release" { "Release" }
                input id="release" name="release" type="text" inputmode="numeric"
                    value=(release.map(|r| r.to_string()).unwrap_or_default()); }
            button type="submit" { "Search" }
        }
        @if found.rows.is_empty() {
            p { "No endpoint matches." }
        } @else {
            div.scroll { table id="endpoints" {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Group" } th scope="col" { "Certificate" }
                    th scope="col" class="num" { "Release" } th scope="col" { "Offered by rollout" }
                    th scope="col" { "Last seen" } th scope="col" { "Last result" }
                } }
                tbody {
                    @for row in &found.rows {
                        tr {
                            td { a href=(format!("/ui/endpoints/{}", query_value(&row.name))) { (row.name) } }
                            td { a href=(format!("/ui/endpoints?group={}", query_value(&row.group))) { (row.group) } }
                            td { (state_badge(endpoint_state(row, now))) }
                            td.num { (row.installed_version.map_or_else(|| "-".to_owned(), |v| v.to_string())) }
                            td { (offered(row.offered_release, row.rollout_state)) }
                            td { (when(row.last_seen)) }
                            td { @if endpoint_failing(row) { span.badge.failing { "error" } }
                                 @else { (untrusted(row.last_result.as_deref().unwrap_or("-"))) } }
                        }
                    }
                }
            } }
        }
        nav.pager aria-label="Pages" {
            @if params.contains_key("after") {
                a href=(format!("/ui/endpoints?{}", filters.trim_start_matches('&'))) { "First page" }
            }
            @if let Some(next) = &found.next {
                a rel="next" href=(format!("/ui/endpoints?after={}{filters}", query_value(next))) { "Next page" }
            }
        }
    };
    Ok(caller_page(&current, Nav::Endpoints, "Endpoints", body))
}

/// `GET /ui/endpoints/{name}`.
pub(super) async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let current = signed_in(&state, &headers, Role::Auditor).await?;
    let console_state = state.clone();
    let now = crate::model::time::now_unix();
    let lookup = name.clone();
    let (entry, certs) = blocking(move || {
        let store = console_state.authority.store();
        let entry = crate::core::fleet::fleet(store, Some(&lookup), now)?
            .into_iter()
            .next();
        let certs = read_tx(store, |tx| {
            tx.list_certificates(&ListFilter {
                name: Some(lookup.clone()),
                revoked: None,
                limit: Some(20),
            })
        })?;
        Ok((entry, certs))
    })
    .await?;
    let entry = entry.ok_or_else(|| {
        PageError::new(
            StatusCode::NOT_FOUND,
            format!("No endpoint is named {}.", untrusted(&name)),
        )
    })?;
    let revocable = entry.serial.clone().filter(|_| {
        entry.certificate == CertState::Valid || entry.certificate == CertState::Expired
    });
    let body = html! {
        h1 { "Endpoint " (untrusted(&entry.name)) }
        dl.facts {
            dt { "Certificate" } dd id="cert-state" { (state_badge(entry.certificate)) }
            dt { "Serial" } dd { @match &entry.serial {
                Some(s) => a href=(format!("/ui/certificates/{s}")) { code { (s) } },
                None => "-",
            } }
            dt { "Valid until" } dd { (when(entry.not_after)) }
            dt { "Group" } dd id="group" { a href=(format!("/ui/endpoints?group={}", query_value(entry.group.as_str()))) { (entry.group) } }
            @if let Some(carried) = entry.certificate_group.as_ref().filter(|g| **g != entry.group) {
                dt { "Group of its certificate" } dd { (carried) " (until its next certificate)" }
            }
            dt { "Installed release" } dd { (entry.installed_version.map_or_else(|| "none reported".to_owned(), |v| v.to_string())) }
            dt { "Channel" } dd { (untrusted(entry.channel.as_deref().unwrap_or("-"))) }
            dt { "Offered by rollout" } dd id="offered" { (offered(entry.release, entry.state)) }
            @if let Some(reason) = &entry.reason {
                dt { "Rollout reason" } dd { (untrusted(reason)) }
            }
            dt { "Last seen" } dd { (when(entry.last_seen)) }
            dt { "Last check" } dd { (untrusted(entry.last_check.as_deref().unwrap_or("-"))) }
            dt { "Last result" } dd { (untrusted(entry.last_result.as_deref().unwrap_or("-"))) }
            dt { "Last error" } dd { (untrusted(entry.last_error.as_deref().unwrap_or("-"))) }
        }
        h2 { "Unlisted files" }
        @if entry.unlisted.is_empty() {
            p { "None reported." }
        } @else {
            ul.files { @for file in &entry.unlisted { li { code { (untrusted(file)) } } } }
        }
        h2 { "Certificates" }
        div.scroll { table {
            thead { tr { th scope="col" { "Serial" } th scope="col" { "Profile" } th scope="col" { "Issued" } th scope="col" { "Expires" } th scope="col" { "Status" } } }
            tbody { @for c in &certs { tr {
                td { a href=(format!("/ui/certificates/{}", c.serial.to_hex())) { code { (c.serial.to_hex()) } } }
                td { (c.profile) }
                td { (when(Some(c.issued_at))) }
                td { (when(Some(c.not_after))) }
                td { @match c.revocation {
                    Some(r) => { "revoked " (when(Some(r.revoked_at))) " (" (r.reason) ")" }
                    None => "not revoked",
                } }
            } } }
        } }
        @if let Some(serial) = revocable {
            (revoke_section(&current, &serial, &format!("/ui/endpoints/{}", query_value(&entry.name))))
        }
    };
    Ok(caller_page(&current, Nav::Endpoints, "Endpoint", body))
}
