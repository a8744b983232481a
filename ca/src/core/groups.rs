//! Endpoint groups on the CA's side. The CA records one group per endpoint name
//! (`endpoint_groups`): the enrollment token sets it, an operator changes it
//! ([`set_group`], `herald-ca fleet set-group`, `POST /api/v1/fleet/{name}/group`), and every
//! certificate issued for the name afterwards carries it as the one organizationalUnitName of
//! its Subject (renewal included), which is how the endpoint learns it without trusting a
//! relay or a mirror. A status report never changes it: the CA counts a report under the group
//! of the certificate that proved it ([`certificate_group`]).

use std::collections::BTreeMap;

use herald_wire::{Group, GroupError};
use serde::Serialize;

use crate::core::policy::{Profile, Usage};
use crate::model::audit::NewAuditEntry;
use crate::store::{write_tx, EndpointGroupRecord, ListFilter, Store, StoreError, StoreTx};

/// Why the group of a certificate cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GroupReadError {
    /// The certificate is not DER X.509.
    #[error("the certificate cannot be parsed: {0}")]
    Parse(der::Error),
    /// An organizationalUnitName is not text.
    #[error("an organizationalUnitName is not UTF-8 or printable text")]
    NotText,
    /// The Subject holds more than one organizationalUnitName.
    #[error("the subject holds {0} organizationalUnitNames (at most one, the group)")]
    SeveralUnits(usize),
    /// The organizationalUnitName is not a group name.
    #[error(transparent)]
    Invalid(#[from] GroupError),
}

/// The organizationalUnitName values of a Subject, in order.
pub(crate) fn organizational_units(
    subject: &x509_cert::name::Name,
) -> Result<Vec<&str>, GroupReadError> {
    let mut units = Vec::new();
    for rdn in subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid != const_oid::db::rfc4519::OU {
                continue;
            }
            let text_tag = matches!(
                der::Tagged::tag(&atv.value),
                der::Tag::Utf8String | der::Tag::PrintableString
            );
            let text =
                std::str::from_utf8(atv.value.value()).map_err(|_| GroupReadError::NotText)?;
            if !text_tag {
                return Err(GroupReadError::NotText);
            }
            units.push(text);
        }
    }
    Ok(units)
}

/// The group a Subject names: its one organizationalUnitName, or [`Group::DEFAULT`] without
/// one.
pub(crate) fn subject_group(subject: &x509_cert::name::Name) -> Result<Group, GroupReadError> {
    match organizational_units(subject)?.as_slice() {
        [] => Ok(Group::default()),
        [unit] => Ok(Group::new(unit)?),
        units => Err(GroupReadError::SeveralUnits(units.len())),
    }
}

/// The group a certificate (DER) carries.
pub(crate) fn certificate_group(der: &[u8]) -> Result<Group, GroupReadError> {
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(der).map_err(GroupReadError::Parse)?;
    subject_group(&cert.tbs_certificate.subject)
}

/// The group the CA records for `name` ([`Group::DEFAULT`] when none was ever set).
pub(crate) fn recorded_group(tx: &dyn StoreTx, name: &str) -> Result<Group, StoreError> {
    Ok(tx
        .endpoint_group(name)?
        .map_or_else(Group::default, |record| record.group))
}

/// An operator's change of an endpoint's group, as `fleet set-group` and the API report it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct GroupChange {
    /// The endpoint.
    pub(crate) name: String,
    /// Its group from now on (its next certificate carries it).
    pub(crate) group: Group,
    /// The group recorded before.
    pub(crate) previous: Group,
    /// The group its newest certificate carries (until it renews).
    pub(crate) certificate_group: Group,
}

/// Why an endpoint's group cannot be changed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetGroupError {
    /// No certificate carries this name.
    #[error("no endpoint named {0} (see `herald-ca fleet list`)")]
    NoEndpoint(String),
    /// The name's certificates are not of a client profile (server certificates carry no
    /// group).
    #[error("{name} holds a certificate of the {profile} profile, which is not a client profile: only endpoint (client) certificates carry a group")]
    NotAClient {
        /// The name.
        name: String,
        /// The profile of its newest certificate.
        profile: String,
    },
    /// The newest certificate's group cannot be read.
    #[error("the newest certificate of {name}: {source}")]
    Certificate {
        /// The name.
        name: String,
        /// What is wrong with it.
        source: GroupReadError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Records `group` as the group of the endpoint `name` (which must hold a certificate of a
/// client profile among `profiles`, the CA's), with an `endpoint-group-set` audit entry by
/// `actor`, in one transaction.
/// The endpoint's certificate changes at its next renewal. Setting the group it already has
/// writes nothing.
pub(crate) fn set_group(
    store: &dyn Store,
    profiles: &BTreeMap<String, Profile>,
    name: &str,
    group: &Group,
    actor: &str,
) -> Result<GroupChange, SetGroupError> {
    write_tx(store, |tx| {
        let newest = tx
            .list_certificates(&ListFilter {
                name: Some(name.to_owned()),
                limit: Some(1),
                ..ListFilter::default()
            })?
            .into_iter()
            .next()
            .ok_or_else(|| SetGroupError::NoEndpoint(name.to_owned()))?;
        let client = profiles
            .get(&newest.profile)
            .is_some_and(|p| p.usage == Usage::Client);
        if !client {
            return Err(SetGroupError::NotAClient {
                name: name.to_owned(),
                profile: newest.profile,
            });
        }
        let certificate_group =
            certificate_group(&newest.der).map_err(|source| SetGroupError::Certificate {
                name: name.to_owned(),
                source,
            })?;
        let previous = recorded_group(tx, name)?;
        if previous != *group {
            let now = crate::model::time::now_unix();
            tx.set_endpoint_group(&EndpointGroupRecord {
                name: name.to_owned(),
                group: group.clone(),
                changed_at: now,
            })?;
            tx.append_audit(&NewAuditEntry::now(
                actor,
                "endpoint-group-set",
                serde_json::json!({
                    "name": name,
                    "group": group,
                    "previous": previous,
                }),
            ))?;
        }
        Ok(GroupChange {
            name: name.to_owned(),
            group: group.clone(),
            previous,
            certificate_group,
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn subject(units: &[&str]) -> x509_cert::name::Name {
        let mut text = String::from("CN=pos-0001");
        for unit in units {
            text.push_str(&format!(",OU={unit}"));
        }
        text.push_str(",O=Herald");
        text.parse().unwrap()
    }

    #[test]
    fn subject_without_unit_is_in_the_default_group() {
        assert_eq!(subject_group(&subject(&[])).unwrap(), Group::default());
    }

    #[test]
    fn subject_unit_is_the_group() {
        assert_eq!(
            subject_group(&subject(&["pilot"])).unwrap().as_str(),
            "pilot"
        );
    }

    #[test]
    fn two_units_or_an_invalid_one_are_refused() {
        assert!(matches!(
            subject_group(&subject(&["pilot", "kiosks"])),
            Err(GroupReadError::SeveralUnits(2))
        ));
        assert!(matches!(
            subject_group(&subject(&["Pilot"])),
            Err(GroupReadError::Invalid(_))
        ));
    }
}
