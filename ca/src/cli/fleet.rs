//! How `fleet list` and `fleet show` print the fleet.

use crate::core::fleet::FleetEntry;
use crate::model::time::format_time;

/// Endpoint-supplied text as it may be printed on a terminal (see [`crate::model::text`]).
fn shown(text: Option<&str>, none: &str) -> String {
    crate::model::text::escape_untrusted(text.unwrap_or(none)).into_owned()
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
        let seen = e.last_seen.map_or_else(|| "never".to_owned(), format_time);
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
    use crate::core::fleet::{fleet, CertState};
    use crate::model::revocation::Reason;
    use crate::model::serial::Serial;
    use crate::store::{write_tx, CertRecord, FleetReport, Revocation, SqliteStore};

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
            10,
            "one line per field: {}",
            printed[1]
        );
    }
}
