//! `GET /ui/`: the dashboard: endpoints by state, reports per hour, rollout progress per
//! release and group, installed releases, revocation services, expiring certificates.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use maud::html;

use super::{
    blocking, caller_page, chart, query_value, signed_in, trusted_markup, untrusted, when, Nav,
    PageError,
};
use crate::core::admin::Role;
use crate::core::console;
use crate::http::AppState;

pub(super) async fn page_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let current = signed_in(&state, &headers, Role::Auditor).await?;
    let console_state = state.clone();
    let now = crate::model::time::now_unix();
    let dashboard =
        blocking(move || Ok(console::dashboard(&console_state.authority, now)?)).await?;
    let c = dashboard.counts;
    let states = [
        ("Valid", c.valid, "valid"),
        ("Revoked", c.revoked, "revoked"),
        ("Expired", c.expired, "expired"),
        ("Never reported", c.never_reported, "never-reported"),
        ("Failing", c.failing, "failing"),
    ];
    let health = &dashboard.revocation;
    let body = html! {
        h1 { "Dashboard" }
        section aria-labelledby="states" {
            h2 id="states" { "Endpoints by state" }
            ul.tiles {
                li { a href="/ui/endpoints" { span.n { (c.total) } span { "All endpoints" } } }
                @for (label, n, filter) in states {
                    li { a href=(format!("/ui/endpoints?state={filter}")) {
                        span.n { (n) } span { (label) } } }
                }
            }
        }
        section aria-labelledby="reports" {
            h2 id="reports" { "Status reports per hour (UTC)" }
            (trusted_markup(chart::reports_svg(&dashboard.hours)))
            p.legend { span.key.ok {} "reports " span.key.bad {} "failed checks" }
        }
        section aria-labelledby="releases" {
            h2 id="releases" { "Releases" }
            @if dashboard.rollout.is_empty() {
                p.note id="rollout-none" { "No endpoint has reported a release that a rollout policy offers it yet." }
            } @else {
                div.scroll { table id="rollout" {
                    caption.visually-hidden { "Rollout progress per channel, release and group" }
                    thead { tr {
                        th scope="col" { "Channel" } th scope="col" class="num" { "Release" } th scope="col" { "Group" }
                        th scope="col" class="num" { "Installed" } th scope="col" class="num" { "Pending" }
                        th scope="col" class="num" { "Failed" } th scope="col" class="num" { "Rolled back" }
                        th scope="col" class="num" { "Held" }
                    } }
                    tbody {
                        @for r in &dashboard.rollout {
                            tr {
                                td { (untrusted(&r.channel)) }
                                td.num { (r.release) }
                                td { a href=(format!("/ui/endpoints?group={}", query_value(r.group.as_str()))) { (r.group) } }
                                td class="num installed" { (r.installed) }
                                td class="num pending" { (r.pending) }
                                td class="num failed" { (r.failed) }
                                td class="num rolled-back" { (r.rolled_back) }
                                td class="num held" { (r.held) }
                            }
                        }
                    }
                } }
                p.note { "Each endpoint counts once, by its latest report, under the group of the certificate that proved the report (an endpoint moved to another group counts there once it reports with its next certificate)." }
            }
        }
        div.columns {
            section aria-labelledby="installed" {
                h2 id="installed" { "Installed releases" }
                table {
                    thead { tr { th scope="col" { "Installed release" } th scope="col" class="num" { "Endpoints" } } }
                    tbody {
                        @for (release, n) in &dashboard.releases {
                            tr {
                                td { @match release {
                                    Some(r) => a href=(format!("/ui/endpoints?release={r}")) { "release " (r) },
                                    None => "none reported",
                                } }
                                td.num { (n) }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="revocation" {
                h2 id="revocation" { "Revocation services" }
                dl {
                    dt { "CRL" }
                    dd { @match &health.crl {
                        Some(crl) => {
                            "number " (crl.number) ", produced " (when(Some(crl.this_update)))
                            " (" (age(now - crl.this_update)) " ago), next update "
                            (when(Some(crl.next_update)))
                        }
                        None => "not produced yet",
                    } }
                    dt { "OCSP" }
                    dd { (health.ocsp_cached) " pre-signed responses cached; signer certificate valid until "
                        (when(Some(health.ocsp_signer_not_after))) }
                }
            }
        }
        section aria-labelledby="expiring" {
            h2 id="expiring" { "Certificates expiring within 30 days: " (dashboard.expiring.0) }
            @if !dashboard.expiring.1.is_empty() {
                table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Profile" } th scope="col" { "Serial" } th scope="col" { "Expires" } } }
                    tbody {
                        @for cert in &dashboard.expiring.1 {
                            tr {
                                td { (cert.name) }
                                td { (cert.profile) }
                                td { a href=(format!("/ui/certificates/{}", cert.serial.to_hex())) { code { (cert.serial.to_hex()) } } }
                                td { (when(Some(cert.not_after))) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(caller_page(&current, Nav::Dashboard, "Dashboard", body))
}

/// A duration for people: `42 s`, `17 min`, `3 h`.
fn age(secs: i64) -> String {
    match secs.max(0) {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}
