//! The fleet's progress, read from the Herald CA's `GET /api/v1/fleet/releases` (auditor
//! role), so that `rollout advance` refuses to widen a rollout that is failing.

use std::path::Path;

use herald_manifest::rollout::{percent_text, BUCKETS};
use serde::Deserialize;

use crate::fsutil::read;
use crate::Error;

/// Path of the fleet releases summary below the CA's base URL.
pub(crate) const RELEASES_PATH: &str = "api/v1/fleet/releases";

/// Largest summary accepted, in bytes.
const MAX_SUMMARY_BYTES: usize = 4 * 1024 * 1024;

/// The summary: one row per channel, release and group, counting each endpoint's latest
/// report once.
#[derive(Debug, Deserialize)]
struct Summary {
    releases: Vec<Row>,
}

#[derive(Debug, Deserialize)]
struct Row {
    channel: String,
    release: u64,
    #[serde(default)]
    installed: u64,
    #[serde(default)]
    failed: u64,
    #[serde(default)]
    rolled_back: u64,
}

/// What `advance` asks of the fleet.
#[derive(Debug)]
pub(crate) struct FleetQuery<'a> {
    /// The CA's base URL.
    pub(crate) url: &'a str,
    /// The admin token's file.
    pub(crate) token_file: Option<&'a Path>,
    /// The CA's root certificate.
    pub(crate) ca_cert: Option<&'a Path>,
    /// The channel.
    pub(crate) channel: &'a str,
    /// The release being rolled out.
    pub(crate) release: u64,
    /// The highest failure rate accepted, in basis points.
    pub(crate) max_basis_points: u32,
}

/// Endpoints that failed or rolled back a release, and those that reached an outcome with
/// it (installed, failed or rolled back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FailureRate {
    pub(crate) bad: u64,
    pub(crate) outcomes: u64,
}

impl FailureRate {
    /// (failed + rolled back) / (installed + failed + rolled back) over every group of the
    /// channel's release.
    fn of(rows: &[Row], channel: &str, release: u64) -> Self {
        let mut rate = FailureRate {
            bad: 0,
            outcomes: 0,
        };
        for row in rows
            .iter()
            .filter(|r| r.channel == channel && r.release == release)
        {
            let bad = row.failed.saturating_add(row.rolled_back);
            rate.bad = rate.bad.saturating_add(bad);
            rate.outcomes = rate
                .outcomes
                .saturating_add(bad)
                .saturating_add(row.installed);
        }
        rate
    }

    /// True when the rate is above `max` basis points.
    pub(crate) fn exceeds(&self, max: u32) -> bool {
        u128::from(self.bad) * u128::from(BUCKETS) > u128::from(max) * u128::from(self.outcomes)
    }

    /// The rate as a percentage, rounded down to a basis point.
    fn text(&self) -> String {
        if self.outcomes == 0 {
            return "no outcome reported yet".into();
        }
        let bp = u128::from(self.bad) * u128::from(BUCKETS) / u128::from(self.outcomes);
        percent_text(u32::try_from(bp).unwrap_or(BUCKETS))
    }
}

/// Reads the fleet summary and fails when the release's failure rate is above the maximum.
pub(crate) fn check_failure_rate(query: &FleetQuery<'_>) -> Result<(), Error> {
    let url = summary_url(query.url)?;
    let body = fetch(query, &url)?;
    let summary: Summary = serde_json::from_slice(&body).map_err(|e| Error::Fleet {
        url: url.clone(),
        reason: format!("not a fleet releases summary: {e}"),
    })?;
    let rate = FailureRate::of(&summary.releases, query.channel, query.release);
    println!(
        "fleet: release {} on channel {}: {} failed or rolled back of {} with an outcome ({}); \
         threshold {}",
        query.release,
        query.channel,
        rate.bad,
        rate.outcomes,
        rate.text(),
        percent_text(query.max_basis_points)
    );
    if rate.exceeds(query.max_basis_points) {
        return Err(Error::Repository(format!(
            "refusing to widen the rollout of release {} on channel {}: its failure rate {} \
             ({} failed or rolled back of {}) is above the threshold {}",
            query.release,
            query.channel,
            rate.text(),
            rate.bad,
            rate.outcomes,
            percent_text(query.max_basis_points)
        )));
    }
    Ok(())
}

/// `BASE/api/v1/fleet/releases`, `https://` only.
fn summary_url(base: &str) -> Result<String, Error> {
    let url = herald_token_client::require_https(base).map_err(|e| Error::Fleet {
        url: base.to_owned(),
        reason: e.to_string(),
    })?;
    let base = if url.path().ends_with('/') {
        url
    } else {
        let mut with_slash = url.clone();
        with_slash.set_path(&format!("{}/", url.path()));
        with_slash
    };
    base.join(RELEASES_PATH)
        .map(|u| u.to_string())
        .map_err(|e| Error::Fleet {
            url: base.to_string(),
            reason: e.to_string(),
        })
}

fn fetch(query: &FleetQuery<'_>, url: &str) -> Result<Vec<u8>, Error> {
    let fleet_err = |reason: String| Error::Fleet {
        url: url.to_owned(),
        reason,
    };
    let (Some(token_file), Some(ca_cert)) = (query.token_file, query.ca_cert) else {
        return Err(Error::Usage(
            "--fleet-url needs --admin-token-file and --ca-cert".into(),
        ));
    };
    let token = String::from_utf8(read(token_file)?)
        .map_err(|_| fleet_err(format!("{}: not UTF-8 text", token_file.display())))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(fleet_err(format!("{}: empty", token_file.display())));
    }
    let mut bearer =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            fleet_err(format!(
                "{}: not a usable token (control characters)",
                token_file.display()
            ))
        })?;
    bearer.set_sensitive(true);
    let ca = read(ca_cert)?;
    let client = herald_token_client::pinned_client_builder(Some(&ca), None)
        .map(|b| {
            b.default_headers(reqwest::header::HeaderMap::from_iter([(
                reqwest::header::AUTHORIZATION,
                bearer,
            )]))
        })
        .and_then(reqwest::ClientBuilder::build)
        .map_err(|e| fleet_err(herald_token_client::error_chain(&e)))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fleet_err(format!("cannot start the runtime: {e}")))?;
    runtime
        .block_on(herald_token_client::get_limited(
            &client,
            url,
            MAX_SUMMARY_BYTES,
        ))
        .map_err(|e| fleet_err(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rows() -> Vec<Row> {
        let summary: Summary = serde_json::from_str(
            r#"{"releases":[
              {"channel":"stable","release":8,"group":"pilot","installed":3,"pending":1,
               "failed":0,"rolled_back":1,"held":0},
              {"channel":"stable","release":8,"group":"default","installed":45,"pending":40,
               "failed":1,"rolled_back":0,"held":2},
              {"channel":"stable","release":7,"group":"default","installed":10,"failed":9,
               "rolled_back":0},
              {"channel":"beta","release":8,"group":"default","installed":0,"failed":5,
               "rolled_back":5}
            ]}"#,
        )
        .unwrap();
        summary.releases
    }

    #[test]
    fn failure_rate_counts_every_group_of_the_channel_and_release_only() {
        let rate = FailureRate::of(&rows(), "stable", 8);
        assert_eq!(
            rate,
            FailureRate {
                bad: 2,
                outcomes: 50
            }
        );
        assert_eq!(rate.text(), "4%");
        assert!(rate.exceeds(200), "4% is above 2%");
        assert!(!rate.exceeds(400), "4% is not above 4%");
        let none = FailureRate::of(&rows(), "stable", 9);
        assert!(!none.exceeds(0));
        assert_eq!(none.text(), "no outcome reported yet");
    }

    #[test]
    fn summary_url_is_below_the_base_and_https_only() {
        assert_eq!(
            summary_url("https://ca.example:8443").unwrap(),
            "https://ca.example:8443/api/v1/fleet/releases"
        );
        assert_eq!(
            summary_url("https://ca.example/herald").unwrap(),
            "https://ca.example/herald/api/v1/fleet/releases"
        );
        assert!(summary_url("http://ca.example").is_err());
    }
}
