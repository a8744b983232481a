//! How `fleet list`, `fleet show` and `fleet releases` print the fleet.

use crate::core::fleet::FleetEntry;
use crate::core::releases::ReleaseProgress;
use crate::model::time::format_time;

/// Endpoint-supplied text as it may be printed on a terminal (see [`crate::model::text`]).
fn shown(text: Option<&str>, none: &str) -> String {
    crate::model::text::escape_untrusted(text.unwrap_or(none)).into_owned()
}

/// Renders the fleet as a table for `fleet list`. Every field an endpoint supplied is
/// escaped: a report cannot move the cursor, clear the screen or hide text.
pub(crate) fn table(entries: &[FleetEntry]) -> String {
    let mut out = format!(
        "{:<24} {:<8} {:<16} {:>8} {:<11} {:<20} {:<12} {}\n",
        "NAME", "CERT", "GROUP", "RELEASE", "ROLLOUT", "LAST SEEN", "RESULT", "LAST ERROR"
    );
    for e in entries {
        let release = e
            .installed_version
            .map_or_else(|| "-".to_owned(), |v| v.to_string());
        let seen = e.last_seen.map_or_else(|| "never".to_owned(), format_time);
        out.push_str(&format!(
            "{:<24} {:<8} {:<16} {:>8} {:<11} {:<20} {:<12} {}\n",
            shown(Some(&e.name), "-"),
            e.certificate.name(),
            group_shown(e),
            release,
            e.state.map_or("-", |s| s.as_str()),
            seen,
            shown(e.last_result.as_deref(), "-"),
            shown(e.last_error.as_deref(), "-"),
        ));
    }
    out
}

/// The recorded group, and the certificate's while it still differs (`pilot<-default`: moved
/// to `pilot`, not renewed yet).
fn group_shown(e: &FleetEntry) -> String {
    match &e.certificate_group {
        Some(carried) if *carried != e.group => format!("{}<-{carried}", e.group),
        _ => e.group.to_string(),
    }
}

/// Renders the releases summary for `fleet releases`; channel names come from endpoints'
/// reports and are escaped.
pub(crate) fn releases_table(rows: &[ReleaseProgress]) -> String {
    let mut out = format!(
        "{:<16} {:>8} {:<16} {:>9} {:>8} {:>7} {:>11} {:>6}\n",
        "CHANNEL", "RELEASE", "GROUP", "INSTALLED", "PENDING", "FAILED", "ROLLED BACK", "HELD"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<16} {:>8} {:<16} {:>9} {:>8} {:>7} {:>11} {:>6}\n",
            shown(Some(&r.channel), "-"),
            r.release,
            r.group,
            r.installed,
            r.pending,
            r.failed,
            r.rolled_back,
            r.held,
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
        format!("group:             {}", e.group),
        format!(
            "certificate group: {}",
            or(e.certificate_group.as_ref().map(ToString::to_string), "-")
        ),
        format!("serial:            {}", or(e.serial.clone(), "-")),
        format!(
            "valid until:       {}",
            or(e.not_after.map(format_time), "-")
        ),
        format!(
            "installed release: {}",
            or(e.installed_version.map(|v| v.to_string()), "none reported")
        ),
        format!(
            "last seen:         {}",
            or(e.last_seen.map(format_time), "never")
        ),
        format!("last check:        {}", shown(e.last_check.as_deref(), "-")),
        format!(
            "last result:       {}",
            shown(e.last_result.as_deref(), "-")
        ),
        format!("last error:        {}", shown(e.last_error.as_deref(), "-")),
        format!("channel:           {}", shown(e.channel.as_deref(), "-")),
        format!(
            "offered release:   {}",
            or(e.release.map(|v| v.to_string()), "-")
        ),
        format!("rollout state:     {}", e.state.map_or("-", |s| s.as_str())),
        format!("rollout reason:    {}", shown(e.reason.as_deref(), "-")),
    ];
    for file in &e.unlisted {
        lines.push(format!("unlisted file:     {}", shown(Some(file), "-")));
    }
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::core::fleet::{fleet, fleet_in, CertState};
    use crate::model::revocation::Reason;
    use crate::model::serial::Serial;
    use crate::store::{
        write_tx, CertRecord, EndpointGroupRecord, FleetReport, Revocation, SqliteStore, StoreError,
    };
    use herald_wire::Group;

    /// A certificate record whose DER is a real certificate for `name` in `group` (no OU for
    /// `None`, as certificates from before groups).
    fn cert_in(
        serial: u8,
        name: &str,
        profile: &str,
        issued_at: i64,
        group: Option<&str>,
    ) -> CertRecord {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(group) = group {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationalUnitName, group);
        }
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        CertRecord {
            serial: Serial::from_bytes(&[serial]),
            issuer: "intermediate".to_owned(),
            name: name.to_owned(),
            profile: profile.to_owned(),
            not_before: issued_at,
            not_after: issued_at + 100,
            issued_at,
            der: params.self_signed(&key).unwrap().der().to_vec(),
            revocation: None,
        }
    }

    fn cert(serial: u8, name: &str, profile: &str, issued_at: i64) -> CertRecord {
        cert_in(serial, name, profile, issued_at, None)
    }

    fn seen(name: &str, version: u64) -> FleetReport {
        FleetReport {
            name: name.to_owned(),
            serial: "01".to_owned(),
            received_at: 1_000,
            installed_version: Some(version),
            last_result: Some("installed".to_owned()),
            ..FleetReport::default()
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
        let one = crate::core::fleet::fleet(&store, Some("pos-0002"), 1_000).unwrap();
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
            16,
            "one line per field: {}",
            printed[1]
        );
    }

    #[test]
    fn fleet_filtered_by_recorded_group_shows_both_groups_until_renewal() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let pilot = Group::new("pilot").unwrap();
        write_tx(&store, |tx| {
            tx.insert_certificate(&cert_in(1, "pos-0001", "endpoint", 900, Some("pilot")))?;
            // Moved to pilot by an operator, not renewed yet: its certificate says default.
            tx.insert_certificate(&cert_in(2, "pos-0002", "endpoint", 900, Some("default")))?;
            tx.insert_certificate(&cert(3, "pos-0003", "endpoint", 900))?;
            for name in ["pos-0001", "pos-0002"] {
                tx.set_endpoint_group(&EndpointGroupRecord {
                    name: name.to_owned(),
                    group: pilot.clone(),
                    changed_at: 950,
                })?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
        let in_pilot = fleet_in(&store, None, Some(&pilot), 1_000).unwrap();
        let names: Vec<&str> = in_pilot.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["pos-0001", "pos-0002"]);
        let in_default = fleet_in(&store, None, Some(&Group::default()), 1_000).unwrap();
        assert_eq!(in_default.len(), 1);
        assert_eq!(in_default[0].name, "pos-0003");
        assert_eq!(in_default[0].certificate_group, Some(Group::default()));
        let listed = table(&in_pilot);
        assert!(listed.contains(" pilot "), "{listed}");
        assert!(listed.contains(" pilot<-default "), "{listed}");
    }

    #[test]
    fn releases_table_escapes_reported_channel_names() {
        let rows = [ReleaseProgress {
            channel: "beta\x1b[2J".to_owned(),
            release: 7,
            group: Group::default(),
            installed: 3,
            rolled_back: 1,
            ..ReleaseProgress::default()
        }];
        let printed = releases_table(&rows);
        assert!(printed.contains("beta\\x1b[2J"), "{printed}");
        assert!(!printed.contains('\x1b'));
        let line = printed.lines().nth(1).unwrap();
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            columns,
            ["beta\\x1b[2J", "7", "default", "3", "0", "0", "1", "0"]
        );
    }
}
