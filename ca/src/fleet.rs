//! Fleet status: endpoints report the outcome of their update checks over mutual TLS, directly
//! or through relays (`POST /api/v1/status`, the name taken from the endpoint's end-to-end
//! proof or its client certificate, never from the body or a relay),
//! and operators see, per endpoint, its certificate state, installed release, last seen and
//! last error (`GET /api/v1/fleet`, `herald-ca fleet list|show`).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde::Serialize;

use herald_token_service::{ClientCertificate, Purpose};
use herald_wire::StatusReport;

use crate::api::{authenticate, json_response, ApiError, AppState, Role};
use crate::audit::NewAuditEntry;
use crate::authority::Authority;
use crate::serial::Serial;
use crate::store::{read_tx, write_tx, CertRecord, FleetReport, ListFilter, Store, StoreError};

/// Longest error text kept from a report; the rest is cut (a report is never refused for it,
/// so that an endpoint's queue of reports cannot get stuck).
const MAX_ERROR_CHARS: usize = 4096;
/// Longest short field (`last_check`, `last_result`) kept.
const MAX_SHORT_CHARS: usize = 64;
/// Most unlisted files kept from one report.
const MAX_UNLISTED: usize = 200;
/// Largest report body accepted, bytes.
pub(crate) const MAX_REPORT_BYTES: usize = 256 * 1024;

/// The state of an endpoint's newest certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum CertState {
    /// Within its validity period and not revoked.
    Valid,
    /// Revoked.
    Revoked,
    /// Past its notAfter.
    Expired,
    /// No certificate carries this name (a report from a name whose records were lost).
    None,
}

impl CertState {
    fn name(self) -> &'static str {
        match self {
            CertState::Valid => "valid",
            CertState::Revoked => "revoked",
            CertState::Expired => "expired",
            CertState::None => "none",
        }
    }
}

/// One endpoint as `fleet list` and `GET /api/v1/fleet` show it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FleetEntry {
    /// The endpoint's name.
    pub(crate) name: String,
    /// State of its newest certificate.
    pub(crate) certificate: CertState,
    /// Serial (hex) of its newest certificate.
    pub(crate) serial: Option<String>,
    /// notAfter of its newest certificate, Unix seconds.
    pub(crate) not_after: Option<i64>,
    /// The installed release it last reported.
    pub(crate) installed_version: Option<u64>,
    /// When its last report arrived, Unix seconds.
    pub(crate) last_seen: Option<i64>,
    /// When it last checked for updates (RFC 3339, as reported).
    pub(crate) last_check: Option<String>,
    /// The outcome of that check.
    pub(crate) last_result: Option<String>,
    /// Its last error.
    pub(crate) last_error: Option<String>,
    /// Files in its install root that its release does not list.
    pub(crate) unlisted: Vec<String>,
}

fn cert_state(cert: Option<&CertRecord>, now: i64) -> CertState {
    match cert {
        None => CertState::None,
        Some(c) if c.revocation.is_some() => CertState::Revoked,
        Some(c) if c.not_after < now => CertState::Expired,
        Some(_) => CertState::Valid,
    }
}

/// The fleet: every endpoint that holds an `endpoint`-profile certificate or has reported,
/// ordered by name; or only `name`.
pub(crate) fn fleet(
    store: &dyn Store,
    name: Option<&str>,
    now: i64,
) -> Result<Vec<FleetEntry>, StoreError> {
    let (reports, certs) = read_tx(store, |tx| {
        let reports = tx.fleet_reports(name)?;
        let certs = tx.list_certificates(&ListFilter {
            name: name.map(str::to_owned),
            ..ListFilter::default()
        })?;
        Ok::<_, StoreError>((reports, certs))
    })?;
    let mut newest: BTreeMap<String, CertRecord> = BTreeMap::new();
    for cert in certs {
        let keep = newest
            .get(&cert.name)
            .is_none_or(|kept| cert.issued_at > kept.issued_at);
        if keep {
            newest.insert(cert.name.clone(), cert);
        }
    }
    let mut entries: BTreeMap<String, FleetEntry> = BTreeMap::new();
    for cert in newest.values() {
        if cert.profile != crate::policy::DEFAULT_PROFILE {
            continue;
        }
        entries.insert(cert.name.clone(), entry(&cert.name, Some(cert), None, now));
    }
    for report in &reports {
        let cert = newest.get(&report.name);
        entries.insert(
            report.name.clone(),
            entry(&report.name, cert, Some(report), now),
        );
    }
    Ok(entries.into_values().collect())
}

fn entry(
    name: &str,
    cert: Option<&CertRecord>,
    report: Option<&FleetReport>,
    now: i64,
) -> FleetEntry {
    FleetEntry {
        name: name.to_owned(),
        certificate: cert_state(cert, now),
        serial: cert.map(|c| c.serial.to_hex()),
        not_after: cert.map(|c| c.not_after),
        installed_version: report.and_then(|r| r.installed_version),
        last_seen: report.map(|r| r.received_at),
        last_check: report.and_then(|r| r.last_check.clone()),
        last_result: report.and_then(|r| r.last_result.clone()),
        last_error: report.and_then(|r| r.last_error.clone()),
        unlisted: report.map(|r| r.unlisted.clone()).unwrap_or_default(),
    }
}

/// Endpoint-supplied text as it may be printed on a terminal (see [`crate::text`]).
fn shown(text: Option<&str>, none: &str) -> String {
    crate::text::escape_untrusted(text.unwrap_or(none)).into_owned()
}

/// Renders the fleet as a table for `fleet list`. Every field an endpoint supplied is
/// escaped: a report cannot move the cursor, clear the screen or hide text.
pub(crate) fn table(entries: &[FleetEntry]) -> String {
    let mut out = format!(
        "{:<24} {:<8} {:>8} {:<20} {:<12} {}\n",
        "NAME", "CERT", "RELEASE", "LAST SEEN", "RESULT", "LAST ERROR"
    );
    for e in entries {
        let release = e
            .installed_version
            .map_or_else(|| "-".to_owned(), |v| v.to_string());
        let seen = e
            .last_seen
            .map_or_else(|| "never".to_owned(), crate::commands::format_time);
        out.push_str(&format!(
            "{:<24} {:<8} {:>8} {:<20} {:<12} {}\n",
            shown(Some(&e.name), "-"),
            e.certificate.name(),
            release,
            seen,
            shown(e.last_result.as_deref(), "-"),
            shown(e.last_error.as_deref(), "-"),
        ));
    }
    out
}

/// Renders one endpoint for `fleet show`, endpoint-supplied text escaped as in [`table`].
pub(crate) fn details(e: &FleetEntry) -> String {
    let or = |v: Option<String>, none: &str| v.unwrap_or_else(|| none.to_owned());
    let mut lines = vec![
        format!("name:              {}", shown(Some(&e.name), "-")),
        format!("certificate:       {}", e.certificate.name()),
        format!("serial:            {}", or(e.serial.clone(), "-")),
        format!(
            "valid until:       {}",
            or(e.not_after.map(crate::commands::format_time), "-")
        ),
        format!(
            "installed release: {}",
            or(e.installed_version.map(|v| v.to_string()), "none reported")
        ),
        format!(
            "last seen:         {}",
            or(e.last_seen.map(crate::commands::format_time), "never")
        ),
        format!("last check:        {}", shown(e.last_check.as_deref(), "-")),
        format!(
            "last result:       {}",
            shown(e.last_result.as_deref(), "-")
        ),
        format!("last error:        {}", shown(e.last_error.as_deref(), "-")),
    ];
    for file in &e.unlisted {
        lines.push(format!("unlisted file:     {}", shown(Some(file), "-")));
    }
    lines.join("\n") + "\n"
}

fn cut(text: Option<String>, max: usize) -> Option<String> {
    text.map(|t| t.chars().take(max).collect())
}

/// The certificate of a mutual-TLS client, as the store knows it; refused when there is
/// none, when the store does not know it, or when it is revoked (also for a connection
/// opened before the revocation).
pub(crate) fn client_record(
    authority: &Authority,
    client: Option<&ClientCertificate>,
) -> Result<CertRecord, ApiError> {
    use der::Decode;
    let client = client.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "client_certificate_required",
            "this needs a client certificate issued by this CA (mutual TLS)",
        )
    })?;
    let cert = x509_cert::Certificate::from_der(&client.0).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_certificate",
            "the client certificate cannot be parsed",
        )
    })?;
    let serial = Serial::from_der_integer(cert.tbs_certificate.serial_number.as_bytes());
    let record = authority.certificate(&serial)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "unknown_certificate",
            "the client certificate is not recorded by this CA",
        )
    })?;
    if record.revocation.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "certificate_revoked",
            "the client certificate is revoked",
        ));
    }
    Ok(record)
}

/// `POST /api/v1/status`: stores the report of the endpoint that proved it. With an
/// end-to-end proof (required when relays carried the report) the endpoint is the one whose
/// key signed the proof over this body; without one, the mutual-TLS client itself. Never a
/// name from the body or from a relay. Reports carried by relays are audited with the chain.
pub(crate) async fn post_status(
    State(state): State<AppState>,
    client: Option<Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let authority = state.authority.clone();
    let report: StatusReport = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_report",
            format!("the status report is not valid JSON of the expected shape: {e}"),
        )
    })?;
    let carrier = herald_token_service::carrier(client.as_deref(), &headers)?;
    let proof = headers
        .get(herald_token_service::PROOF_HEADER)
        .map(|v| v.as_bytes().to_vec());
    let service = crate::api::token_service(&state);
    let stored = tokio::task::spawn_blocking(move || {
        let (name, serial, relays) = if proof.is_some() || carrier.relay_chain.is_some() {
            let proved = service.prove(Purpose::Status, &carrier, proof.as_deref(), &body)?;
            let issued = proved.certificate.issued;
            (issued.name, issued.serial.to_hex(), proved.relays)
        } else {
            let record = client_record(&authority, client.as_deref())?;
            (record.name, record.serial.to_hex(), Vec::new())
        };
        let mut unlisted = report.unlisted;
        unlisted.truncate(MAX_UNLISTED);
        for file in &mut unlisted {
            *file = file.chars().take(MAX_ERROR_CHARS).collect();
        }
        let stored = FleetReport {
            name,
            serial,
            received_at: crate::now_unix(),
            installed_version: report.installed_version,
            last_check: cut(report.last_check, MAX_SHORT_CHARS),
            last_result: cut(report.last_result, MAX_SHORT_CHARS),
            last_error: cut(report.last_error, MAX_ERROR_CHARS),
            unlisted,
        };
        write_tx(authority.store(), |tx| {
            tx.put_fleet_report(&stored)?;
            if !relays.is_empty() {
                tx.append_audit(&NewAuditEntry::now(
                    "endpoint",
                    "status-relayed",
                    serde_json::json!({
                        "name": stored.name,
                        "serial": stored.serial,
                        "relays": relays,
                    }),
                ))?;
            }
            Ok::<_, StoreError>(())
        })?;
        Ok::<_, ApiError>(stored)
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "acknowledged": true,
            "name": stored.name,
            "received_at": stored.received_at,
        }),
    ))
}

/// `GET /api/v1/fleet` (auditor): every endpoint.
pub(crate) async fn list_fleet(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Role::Auditor)?;
    let authority = state.authority.clone();
    let entries =
        tokio::task::spawn_blocking(move || fleet(authority.store(), None, crate::now_unix()))
            .await
            .map_err(|e| ApiError::internal(&e))??;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "endpoints": entries }),
    ))
}

/// `GET /api/v1/fleet/{name}` (auditor): one endpoint.
pub(crate) async fn show_fleet(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers, Role::Auditor)?;
    let authority = state.authority.clone();
    let entries = tokio::task::spawn_blocking(move || {
        fleet(authority.store(), Some(&name), crate::now_unix())
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    match entries.into_iter().next() {
        Some(entry) => Ok(json_response(StatusCode::OK, &entry)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no endpoint with this name",
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::{Revocation, SqliteStore};
    use crate::Reason;

    fn cert(serial: u8, name: &str, profile: &str, issued_at: i64) -> CertRecord {
        CertRecord {
            serial: Serial::from_bytes(&[serial]),
            issuer: "intermediate".to_owned(),
            name: name.to_owned(),
            profile: profile.to_owned(),
            not_before: issued_at,
            not_after: issued_at + 100,
            issued_at,
            der: vec![0x30, 0x00],
            revocation: None,
        }
    }

    fn seen(name: &str, version: u64) -> FleetReport {
        FleetReport {
            name: name.to_owned(),
            serial: "01".to_owned(),
            received_at: 1_000,
            installed_version: Some(version),
            last_check: None,
            last_result: Some("installed".to_owned()),
            last_error: None,
            unlisted: Vec::new(),
        }
    }

    #[test]
    fn fleet_joins_reports_with_newest_certificate_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        write_tx(&store, |tx| {
            // pos-0001: renewed; the old certificate revoked, the newest valid.
            tx.insert_certificate(&cert(1, "pos-0001", "endpoint", 900))?;
            tx.insert_certificate(&cert(2, "pos-0001", "endpoint", 950))?;
            tx.revoke(
                &Serial::from_bytes(&[1]),
                Revocation {
                    revoked_at: 960,
                    reason: Reason::Superseded,
                },
            )?;
            // pos-0002: revoked. pos-0003: expired, never reported. A server certificate
            // is no endpoint.
            tx.insert_certificate(&cert(3, "pos-0002", "endpoint", 950))?;
            tx.revoke(
                &Serial::from_bytes(&[3]),
                Revocation {
                    revoked_at: 990,
                    reason: Reason::KeyCompromise,
                },
            )?;
            tx.insert_certificate(&cert(4, "pos-0003", "endpoint", 100))?;
            tx.insert_certificate(&cert(5, "web.example", "server", 950))?;
            tx.put_fleet_report(&seen("pos-0001", 7))?;
            tx.put_fleet_report(&seen("pos-0002", 6))?;
            // A report whose certificate record is gone.
            tx.put_fleet_report(&seen("lost-0001", 1))
        })
        .unwrap();
        let fleet = fleet(&store, None, 1_000).unwrap();
        let view: Vec<(&str, CertState, Option<u64>)> = fleet
            .iter()
            .map(|e| (e.name.as_str(), e.certificate, e.installed_version))
            .collect();
        assert_eq!(
            view,
            [
                ("lost-0001", CertState::None, Some(1)),
                ("pos-0001", CertState::Valid, Some(7)),
                ("pos-0002", CertState::Revoked, Some(6)),
                ("pos-0003", CertState::Expired, None),
            ]
        );
        assert_eq!(fleet[1].serial.as_deref(), Some("02"));
        assert_eq!(fleet[3].last_seen, None);
        let one = super::fleet(&store, Some("pos-0002"), 1_000).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].certificate, CertState::Revoked);
        assert!(table(&fleet).contains("pos-0003"));
        assert!(details(&one[0]).contains("certificate:       revoked"));
    }

    #[test]
    fn terminal_escapes_in_report_are_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let mut report = seen("pos-0001", 3);
        report.last_error = Some("disk full\x1b[2J\x1b]0;owned\x07\rok\u{9b}1A".to_owned());
        report.last_result = Some("failed\x1b[8m".to_owned());
        report.unlisted = vec!["evil\u{202e}txt.exe\n/fake line".to_owned()];
        write_tx(&store, |tx| {
            tx.insert_certificate(&cert(1, "pos-0001", "endpoint", 900))?;
            tx.put_fleet_report(&report)
        })
        .unwrap();
        let fleet = fleet(&store, None, 1_000).unwrap();
        let printed = [table(&fleet), details(&fleet[0])];
        for text in &printed {
            let lines: Vec<&str> = text.lines().collect();
            for line in &lines {
                assert!(
                    !line.chars().any(|c| c.is_control() || c == '\u{202e}'),
                    "raw control character printed: {line:?}"
                );
            }
            assert!(text.contains("disk full\\x1b[2J\\x1b]0;owned\\x07\\rok\\u{9b}1A"));
        }
        assert!(printed[1].contains("unlisted file:     evil\\u{202e}txt.exe\\n/fake line\n"));
        assert_eq!(
            printed[1].lines().count(),
            10,
            "one line per field: {}",
            printed[1]
        );
    }

    #[test]
    fn oversized_fields_are_cut_not_refused() {
        let long = "x".repeat(MAX_ERROR_CHARS + 10);
        assert_eq!(
            cut(Some(long), MAX_ERROR_CHARS).map(|s| s.chars().count()),
            Some(MAX_ERROR_CHARS)
        );
        assert_eq!(cut(None, 3), None);
    }
}
