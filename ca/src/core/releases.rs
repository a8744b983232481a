//! Rollout progress: how many endpoints stand where with each release, per channel and group
//! (`herald-ca fleet releases`, `GET /api/v1/fleet/releases`). The signed rollout policy
//! decides who gets what; the CA only counts what endpoints report. Each endpoint counts once,
//! by its latest report, under the group of the certificate that proved that report.

use std::collections::BTreeMap;

use herald_wire::{Group, RolloutState};
use serde::Serialize;

use crate::store::{read_tx, ReleaseStateCount, Store, StoreError};

/// One release of one channel in one group: how many endpoints' latest reports stand in each
/// state.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub(crate) struct ReleaseProgress {
    /// The channel.
    pub(crate) channel: String,
    /// The release (targets version) the endpoints' policy offers them.
    pub(crate) release: u64,
    /// The group.
    pub(crate) group: Group,
    /// Installed and healthy.
    pub(crate) installed: u64,
    /// Not (yet) in the rollout.
    pub(crate) pending: u64,
    /// Installing failed; the previous release stays.
    pub(crate) failed: u64,
    /// Installed, failed its health check, rolled back.
    pub(crate) rolled_back: u64,
    /// Held at their release.
    pub(crate) held: u64,
}

impl ReleaseProgress {
    fn count_mut(&mut self, state: RolloutState) -> &mut u64 {
        match state {
            RolloutState::Installed => &mut self.installed,
            RolloutState::Pending => &mut self.pending,
            RolloutState::Failed => &mut self.failed,
            RolloutState::RolledBack => &mut self.rolled_back,
            RolloutState::Held => &mut self.held,
        }
    }
}

/// The progress of every release that endpoints report, ordered by channel, release and
/// group. One aggregate query in the store (reports without a channel, release or state,
/// sent by agents that follow no rollout policy, are not counted).
pub(crate) fn releases(store: &dyn Store) -> Result<Vec<ReleaseProgress>, StoreError> {
    Ok(progress(read_tx(store, |tx| tx.release_counts())?))
}

/// The store's counts per channel, release, group and state ([`crate::store::StoreTx::release_counts`]),
/// one row per channel, release and group with the states as columns, in that order.
pub(crate) fn progress(counts: Vec<ReleaseStateCount>) -> Vec<ReleaseProgress> {
    let mut rows: BTreeMap<(String, u64, Group), ReleaseProgress> = BTreeMap::new();
    for count in counts {
        let key = (count.channel, count.release, count.group);
        let row = rows
            .entry(key)
            .or_insert_with_key(|(channel, release, group)| ReleaseProgress {
                channel: channel.clone(),
                release: *release,
                group: group.clone(),
                ..ReleaseProgress::default()
            });
        *row.count_mut(count.state) += count.endpoints;
    }
    rows.into_values().collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::{write_tx, FleetReport, SqliteStore};

    fn report(
        name: &str,
        channel: &str,
        release: u64,
        group: &str,
        state: RolloutState,
    ) -> FleetReport {
        FleetReport {
            name: name.to_owned(),
            serial: "01".to_owned(),
            received_at: 1,
            group: Group::new(group).unwrap(),
            channel: Some(channel.to_owned()),
            release: Some(release),
            state: Some(state),
            ..FleetReport::default()
        }
    }

    #[test]
    fn states_become_columns_per_channel_release_and_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        write_tx(&store, |tx| {
            tx.put_fleet_report(&report(
                "a-1",
                "stable",
                7,
                "pilot",
                RolloutState::Installed,
            ))?;
            tx.put_fleet_report(&report(
                "a-2",
                "stable",
                7,
                "pilot",
                RolloutState::RolledBack,
            ))?;
            tx.put_fleet_report(&report(
                "a-3",
                "stable",
                7,
                "default",
                RolloutState::Pending,
            ))?;
            tx.put_fleet_report(&report(
                "a-4",
                "stable",
                7,
                "pilot",
                RolloutState::Installed,
            ))?;
            tx.put_fleet_report(&report("a-5", "beta", 8, "default", RolloutState::Held))?;
            // An agent without a rollout policy is not counted.
            tx.put_fleet_report(&FleetReport {
                name: "old-1".to_owned(),
                installed_version: Some(3),
                ..FleetReport::default()
            })
        })
        .unwrap();
        let rows = releases(&store).unwrap();
        let pilot = ReleaseProgress {
            channel: "stable".into(),
            release: 7,
            group: Group::new("pilot").unwrap(),
            installed: 2,
            rolled_back: 1,
            ..ReleaseProgress::default()
        };
        let stable_default = ReleaseProgress {
            channel: "stable".into(),
            release: 7,
            group: Group::default(),
            pending: 1,
            ..ReleaseProgress::default()
        };
        let beta = ReleaseProgress {
            channel: "beta".into(),
            release: 8,
            group: Group::default(),
            held: 1,
            ..ReleaseProgress::default()
        };
        assert_eq!(rows, [beta, stable_default, pilot]);
    }
}
