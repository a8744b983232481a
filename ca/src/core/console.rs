//! What the web console shows, as plain values: the dashboard's figures and the pages of
//! endpoints, certificates, enrollment tokens and audit entries. Every list, filter and
//! detail page is one or a few indexed queries of a bounded size (the `endpoints` table,
//! keyset paging), never a scan of the fleet, so those pages answer in the same time for ten
//! endpoints or a hundred thousand. The dashboard's totals count rows on narrow indexes, and
//! its rollout progress is the releases summary's one aggregate over an index.

use std::sync::Arc;

use herald_token_service::TokenStatus;

use crate::core::authority::{Authority, PublishedCrl};
use crate::core::fleet::CertState;
use crate::core::releases::{self, ReleaseProgress};
use crate::model::audit::AuditEntry;
use crate::store::{
    read_tx, AuditQuery, CertRecord, EndpointCounts, EndpointFilter, EndpointQuery, EndpointRow,
    EnrollmentTokenRecord, ReportHour, Store, StoreError,
};

/// Rows per page.
pub(crate) const PAGE_SIZE: u32 = 50;
/// The dashboard lists certificates expiring within this many seconds (30 days).
pub(crate) const EXPIRY_WINDOW_SECS: i64 = 30 * 86_400;
/// Hours of reports the dashboard's chart shows.
pub(crate) const CHART_HOURS: i64 = 48;
/// Expiring certificates listed on the dashboard (the count covers all).
const EXPIRING_LISTED: u32 = 10;

/// The state filters of the endpoint listing, by their names in URLs.
pub(crate) const ENDPOINT_FILTERS: [(&str, EndpointFilter); 5] = [
    ("valid", EndpointFilter::Valid),
    ("revoked", EndpointFilter::Revoked),
    ("expired", EndpointFilter::Expired),
    ("never-reported", EndpointFilter::NeverReported),
    ("failing", EndpointFilter::Failing),
];

/// The filter named `name` in URLs.
pub(crate) fn endpoint_filter(name: &str) -> Option<EndpointFilter> {
    ENDPOINT_FILTERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
}

/// The certificate state of an endpoint row at `now`.
pub(crate) fn endpoint_state(row: &EndpointRow, now: i64) -> CertState {
    match (&row.serial, row.revoked_at, row.not_after) {
        (None, _, _) => CertState::None,
        (Some(_), Some(_), _) => CertState::Revoked,
        (Some(_), None, Some(not_after)) if not_after < now => CertState::Expired,
        (Some(_), None, _) => CertState::Valid,
    }
}

/// Whether an endpoint's last check failed.
pub(crate) fn endpoint_failing(row: &EndpointRow) -> bool {
    row.last_result.as_deref() == Some("error")
}

/// Revocation services' health: the CRL being served and the OCSP cache.
#[derive(Debug, Clone)]
pub(crate) struct RevocationHealth {
    /// The CRL being served, if one was produced.
    pub(crate) crl: Option<Arc<PublishedCrl>>,
    /// Pre-signed OCSP responses in the cache.
    pub(crate) ocsp_cached: usize,
    /// notAfter of the OCSP signer's certificate, Unix seconds.
    pub(crate) ocsp_signer_not_after: i64,
}

/// The dashboard's figures.
#[derive(Debug, Clone)]
pub(crate) struct Dashboard {
    /// Endpoints by state.
    pub(crate) counts: EndpointCounts,
    /// Endpoints per installed release (`None`: never reported one), by release.
    pub(crate) releases: Vec<(Option<u64>, i64)>,
    /// Rollout progress: per channel, offered release and group, how many endpoints' latest
    /// reports stand in each state (the releases summary of `herald-ca fleet releases`).
    pub(crate) rollout: Vec<ReleaseProgress>,
    /// Unrevoked certificates expiring within 30 days: how many, and the soonest.
    pub(crate) expiring: (i64, Vec<CertRecord>),
    /// Revocation services.
    pub(crate) revocation: RevocationHealth,
    /// Reports per hour over the last [`CHART_HOURS`] hours, oldest first, hours without
    /// reports included.
    pub(crate) hours: Vec<ReportHour>,
}

/// The dashboard at `now`.
pub(crate) fn dashboard(authority: &Authority, now: i64) -> Result<Dashboard, StoreError> {
    let current_hour = now.div_euclid(3600);
    let first_hour = current_hour - (CHART_HOURS - 1);
    let (counts, releases, rollout, expiring, stored_hours) = read_tx(authority.store(), |tx| {
        Ok::<_, StoreError>((
            tx.endpoint_counts(now)?,
            tx.installed_release_counts()?,
            tx.release_counts()?,
            tx.certificates_expiring(now, now + EXPIRY_WINDOW_SECS, EXPIRING_LISTED)?,
            tx.report_hours(first_hour)?,
        ))
    })?;
    let hours = (first_hour..=current_hour)
        .map(|hour| {
            stored_hours
                .iter()
                .find(|h| h.hour == hour)
                .copied()
                .unwrap_or(ReportHour {
                    hour,
                    reports: 0,
                    failures: 0,
                })
        })
        .collect();
    Ok(Dashboard {
        counts,
        releases,
        rollout: releases::progress(rollout),
        expiring,
        revocation: RevocationHealth {
            crl: authority.served_crl(),
            ocsp_cached: authority.ocsp().cached_responses(),
            ocsp_signer_not_after: authority.ocsp().signer_not_after(),
        },
        hours,
    })
}

/// A page of rows and the key of the next page, if there is one.
#[derive(Debug, Clone)]
pub(crate) struct Page<T, K> {
    /// The rows.
    pub(crate) rows: Vec<T>,
    /// Where the next page starts.
    pub(crate) next: Option<K>,
}

/// Fetches `PAGE_SIZE + 1` rows with `fetch` to learn whether a next page exists.
fn paged<T, K>(
    fetch: impl FnOnce(u32) -> Result<Vec<T>, StoreError>,
    key: impl Fn(&T) -> K,
) -> Result<Page<T, K>, StoreError> {
    let mut rows = fetch(PAGE_SIZE + 1)?;
    let next = if rows.len() > PAGE_SIZE as usize {
        rows.truncate(PAGE_SIZE as usize);
        rows.last().map(key)
    } else {
        None
    };
    Ok(Page { rows, next })
}

/// One page of endpoints matching `query` (its `limit` is the page size).
pub(crate) fn endpoints(
    store: &dyn Store,
    query: EndpointQuery,
) -> Result<Page<EndpointRow, String>, StoreError> {
    paged(
        |limit| {
            read_tx(store, |tx| {
                tx.endpoints_page(&EndpointQuery {
                    limit,
                    ..query.clone()
                })
            })
        },
        |row| row.name.clone(),
    )
}

/// One page of certificates, newest first.
pub(crate) fn certificates(
    store: &dyn Store,
    after: Option<(i64, String)>,
) -> Result<Page<CertRecord, (i64, String)>, StoreError> {
    paged(
        |limit| read_tx(store, |tx| tx.certificates_page(after.clone(), limit)),
        |c| (c.issued_at, c.serial.to_hex()),
    )
}

/// A page of enrollment tokens with their status, keyed by (created_at, id).
pub(crate) type TokenPage = Page<(EnrollmentTokenRecord, TokenStatus), (i64, String)>;

/// One page of enrollment tokens, newest first, with their status at `now`.
pub(crate) fn tokens(
    store: &dyn Store,
    after: Option<(i64, String)>,
    now: i64,
) -> Result<TokenPage, StoreError> {
    paged(
        |limit| {
            let rows = read_tx(store, |tx| tx.enrollment_tokens_page(after.clone(), limit))?;
            rows.into_iter()
                .map(|record| {
                    let view = crate::core::enrollment::token_view(record.clone())
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    let status = herald_token_service::token_status(&view, now);
                    Ok((record, status))
                })
                .collect()
        },
        |(t, _)| (t.created_at, t.id.clone()),
    )
}

/// One page of the audit log, newest first.
pub(crate) fn audit(
    store: &dyn Store,
    query: AuditQuery,
) -> Result<Page<AuditEntry, i64>, StoreError> {
    paged(
        |limit| {
            read_tx(store, |tx| {
                tx.audit_page(&AuditQuery {
                    limit,
                    ..query.clone()
                })
            })
        },
        |e| e.seq,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row(serial: Option<&str>, revoked: Option<i64>, not_after: Option<i64>) -> EndpointRow {
        EndpointRow {
            name: "pos-0001".into(),
            group: "pos".into(),
            serial: serial.map(str::to_owned),
            not_after,
            revoked_at: revoked,
            installed_version: None,
            last_seen: None,
            last_result: None,
            channel: None,
            offered_release: None,
            rollout_state: None,
        }
    }

    #[test]
    fn endpoint_states() {
        assert_eq!(endpoint_state(&row(None, None, None), 10), CertState::None);
        assert_eq!(
            endpoint_state(&row(Some("01"), Some(5), Some(100)), 10),
            CertState::Revoked
        );
        assert_eq!(
            endpoint_state(&row(Some("01"), None, Some(9)), 10),
            CertState::Expired
        );
        assert_eq!(
            endpoint_state(&row(Some("01"), None, Some(10)), 10),
            CertState::Valid
        );
        for (name, filter) in ENDPOINT_FILTERS {
            assert_eq!(endpoint_filter(name), Some(filter));
        }
        assert_eq!(endpoint_filter("bogus"), None);
    }
}
