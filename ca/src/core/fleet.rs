//! Fleet status: endpoints report the outcome of their update checks over mutual TLS, directly
//! or through relays (`POST /api/v1/status`, the name taken from the endpoint's end-to-end
//! proof or its client certificate, never from the body or a relay),
//! and operators see, per endpoint, its certificate state, installed release, last seen and
//! last error (`GET /api/v1/fleet`, `herald-ca fleet list|show`).

use std::collections::BTreeMap;

use serde::Serialize;

use herald_token_service::{Carrier, Purpose, Refusal, TokenService};
use herald_wire::{Group, RolloutState, StatusReport};

use crate::core::authority::Authority;
use crate::model::audit::NewAuditEntry;
use crate::store::{read_tx, write_tx, CertRecord, FleetReport, ListFilter, Store, StoreError};

/// Why a status report or a client-certificate check was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FleetError {
    /// The client or its report is refused (the refusal says what to tell it).
    #[error("{}", .0.message())]
    Refused(Refusal),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Refusal> for FleetError {
    fn from(refusal: Refusal) -> Self {
        FleetError::Refused(refusal)
    }
}

/// Longest error text kept from a report; the rest is cut (a report is never refused for it,
/// so that an endpoint's queue of reports cannot get stuck).
const MAX_ERROR_CHARS: usize = 4096;
/// Longest short field (`last_check`, `last_result`) kept.
const MAX_SHORT_CHARS: usize = 64;
/// Most unlisted files kept from one report.
const MAX_UNLISTED: usize = 200;

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
    pub(crate) fn name(self) -> &'static str {
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
    /// The group the CA records for it: its next certificate carries this one.
    pub(crate) group: Group,
    /// The group its newest certificate carries, the one it follows until it renews.
    pub(crate) certificate_group: Option<Group>,
    /// The release channel it follows, as reported.
    pub(crate) channel: Option<String>,
    /// The release its rollout policy offers it, as reported.
    pub(crate) release: Option<u64>,
    /// Where it stands with that release, as reported.
    pub(crate) state: Option<RolloutState>,
    /// Why it failed or rolled back, as reported.
    pub(crate) reason: Option<String>,
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
    fleet_in(store, name, None, now)
}

/// [`fleet`], only the endpoints the CA records in `group` (when given).
pub(crate) fn fleet_in(
    store: &dyn Store,
    name: Option<&str>,
    group: Option<&Group>,
    now: i64,
) -> Result<Vec<FleetEntry>, StoreError> {
    let (reports, certs, groups) = read_tx(store, |tx| {
        let reports = tx.fleet_reports(name)?;
        let certs = tx.list_certificates(&ListFilter {
            name: name.map(str::to_owned),
            ..ListFilter::default()
        })?;
        let groups: BTreeMap<String, Group> = match name {
            Some(name) => tx
                .endpoint_group(name)?
                .map(|r| (r.name, r.group))
                .into_iter()
                .collect(),
            None => tx
                .endpoint_groups()?
                .into_iter()
                .map(|r| (r.name, r.group))
                .collect(),
        };
        Ok::<_, StoreError>((reports, certs, groups))
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
    let in_group = |name: &str| {
        group.is_none_or(|wanted| {
            groups
                .get(name)
                .map_or(wanted.is_default(), |g| g == wanted)
        })
    };
    for cert in newest.values() {
        if cert.profile != crate::core::policy::DEFAULT_PROFILE || !in_group(&cert.name) {
            continue;
        }
        let entry = entry(&cert.name, Some(cert), None, &groups, now)?;
        entries.insert(cert.name.clone(), entry);
    }
    for report in reports.iter().filter(|r| in_group(&r.name)) {
        let cert = newest.get(&report.name);
        let entry = entry(&report.name, cert, Some(report), &groups, now)?;
        entries.insert(report.name.clone(), entry);
    }
    Ok(entries.into_values().collect())
}

fn entry(
    name: &str,
    cert: Option<&CertRecord>,
    report: Option<&FleetReport>,
    groups: &BTreeMap<String, Group>,
    now: i64,
) -> Result<FleetEntry, StoreError> {
    let certificate_group = cert
        .map(|c| stored_group(&c.der, &c.serial.to_hex()))
        .transpose()?;
    Ok(FleetEntry {
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
        group: groups.get(name).cloned().unwrap_or_default(),
        certificate_group,
        channel: report.and_then(|r| r.channel.clone()),
        release: report.and_then(|r| r.release),
        state: report.and_then(|r| r.state),
        reason: report.and_then(|r| r.reason.clone()),
    })
}

/// The group a certificate from the store carries; one this CA issued always has a readable
/// group (the pre-signing lint checks it), so a failure means a corrupt record.
fn stored_group(der: &[u8], serial: &str) -> Result<Group, StoreError> {
    crate::core::groups::certificate_group(der)
        .map_err(|e| StoreError::Corrupt(format!("group of certificate {serial}: {e}")))
}

/// A release number of a report: the store keeps release numbers as signed 64-bit integers,
/// like TUF's versions in practice; a larger one is the endpoint's mistake, not the server's.
fn check_release_number(field: &str, version: Option<u64>) -> Result<(), Refusal> {
    match version {
        Some(version) if i64::try_from(version).is_err() => Err(Refusal::bad_request(
            "bad_report",
            format!("{field} {version} is beyond the largest release number"),
        )),
        _ => Ok(()),
    }
}

fn cut(text: Option<String>, max: usize) -> Option<String> {
    text.map(|t| t.chars().take(max).collect())
}

/// The certificate of a mutual-TLS client, as the store knows it; refused when there is
/// none, when the store does not know it, or when it is revoked (also for a connection
/// opened before the revocation).
pub(crate) fn client_record(
    authority: &Authority,
    client: Option<&[u8]>,
) -> Result<CertRecord, FleetError> {
    let client = client.ok_or_else(|| {
        Refusal::new(
            401,
            "client_certificate_required",
            "this needs a client certificate issued by this CA (mutual TLS)",
        )
    })?;
    let serial = herald_token_client::certificate_serial(client).ok_or_else(|| {
        Refusal::bad_request("bad_certificate", "the client certificate cannot be parsed")
    })?;
    let record = authority.certificate(&serial)?.ok_or_else(|| {
        Refusal::new(
            403,
            "unknown_certificate",
            "the client certificate is not recorded by this CA",
        )
    })?;
    if record.revocation.is_some() {
        return Err(Refusal::new(
            403,
            "certificate_revoked",
            "the client certificate is revoked",
        )
        .into());
    }
    Ok(record)
}

/// Stores the status report `body` of the endpoint that proved it. With an end-to-end proof
/// (required when relays carried the report) the endpoint is the one whose key signed the
/// proof over this body; without one, the mutual-TLS client itself. Never a name from the
/// body or from a relay. Reports carried by relays are audited with the chain.
pub(crate) fn record_status(
    authority: &Authority,
    service: &TokenService,
    carrier: &Carrier,
    proof: Option<&[u8]>,
    body: &[u8],
) -> Result<FleetReport, FleetError> {
    let report: StatusReport = serde_json::from_slice(body).map_err(|e| {
        Refusal::bad_request(
            "bad_report",
            format!("the status report is not valid JSON of the expected shape: {e}"),
        )
    })?;
    check_release_number("installed_version", report.installed_version)?;
    check_release_number("release", report.release)?;
    // The group is the one the CA wrote into the certificate that proved the report, never
    // one the report names.
    let (name, serial, der, relays) = if proof.is_some() || carrier.relay_chain.is_some() {
        let proved = service.prove(Purpose::Status, carrier, proof, body)?;
        let issued = proved.certificate.issued;
        let der = pem::parse(&issued.certificate_pem)
            .map_err(|e| StoreError::Corrupt(format!("certificate {}: {e}", issued.serial)))?
            .into_contents();
        (issued.name, issued.serial.to_hex(), der, proved.relays)
    } else {
        let record = client_record(authority, carrier.peer.as_deref().map(Vec::as_slice))?;
        (record.name, record.serial.to_hex(), record.der, Vec::new())
    };
    let group = stored_group(&der, &serial)?;
    let mut unlisted = report.unlisted;
    unlisted.truncate(MAX_UNLISTED);
    for file in &mut unlisted {
        *file = file.chars().take(MAX_ERROR_CHARS).collect();
    }
    let stored = FleetReport {
        name,
        serial,
        received_at: crate::model::time::now_unix(),
        installed_version: report.installed_version,
        last_check: cut(report.last_check, MAX_SHORT_CHARS),
        last_result: cut(report.last_result, MAX_SHORT_CHARS),
        last_error: cut(report.last_error, MAX_ERROR_CHARS),
        unlisted,
        group,
        channel: cut(report.channel, MAX_SHORT_CHARS),
        release: report.release,
        state: report.state,
        reason: cut(report.reason, MAX_ERROR_CHARS),
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
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

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
