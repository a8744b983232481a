//! Any bytes as a rollout policy: reading and checking it never panics, and a policy that
//! passes the check only ever offers releases it lists, whoever the endpoint is.
#![no_main]

use herald_manifest::rollout::{Endpoint, RolloutPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(policy) = RolloutPolicy::from_value(&value) else {
        return;
    };
    let mut channels: Vec<Option<&str>> = policy.channels.keys().map(|c| Some(c.as_str())).collect();
    channels.push(None);
    let names: Vec<&str> = policy
        .holds
        .endpoints
        .iter()
        .chain(policy.pins.iter().flat_map(|p| p.endpoints.iter()))
        .map(String::as_str)
        .chain(["EP-0001", ""])
        .collect();
    let groups: Vec<&str> = policy
        .group_channels
        .keys()
        .chain(policy.channels.values().flat_map(|c| c.groups.iter()))
        .map(String::as_str)
        .chain(["default"])
        .collect();
    for &channel in &channels {
        for &name in &names {
            for &group in &groups {
                for installed in [None, policy.releases.keys().next().copied()] {
                    let offer = policy.evaluate(&Endpoint {
                        name: Some(name),
                        group,
                        channel,
                        installed,
                    });
                    if let Some(release) = offer.install {
                        assert!(
                            policy.releases.contains_key(&release),
                            "offered release {release}, which the policy does not list"
                        );
                    }
                }
            }
        }
    }
    assert!(policy
        .needed_releases()
        .iter()
        .all(|r| policy.releases.contains_key(r)));
});
