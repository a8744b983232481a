//! Endpoint groups.
//!
//! Every endpoint belongs to one group (`pilot`, `kiosks`, `default`, ...). The CA records it
//! (set by the enrollment token, changed by an operator) and writes it into the endpoint's
//! certificate as the one organizationalUnitName (OU) of the Subject; a certificate without
//! an OU is in [`Group::DEFAULT`]. The endpoint reads its group from its own certificate, so
//! a relay or a mirror cannot forge it, and the CA never takes a group from a report.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A valid group name: 1 to [`Group::MAX_LEN`] characters of `a-z`, `0-9` and `-`, starting
/// with a letter or digit.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group(String);

/// A group name that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid group {0:?}: use 1 to 32 characters of a-z, 0-9 and '-', starting with a letter \
     or digit"
)]
pub struct GroupError(pub String);

impl Group {
    /// The group of an endpoint nobody placed in another one (and of a certificate without
    /// an organizationalUnitName).
    pub const DEFAULT: &'static str = "default";
    /// Longest group name, in characters.
    pub const MAX_LEN: usize = 32;

    /// Checks `name` and makes it a group.
    pub fn new(name: &str) -> Result<Self, GroupError> {
        let valid = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(GroupError(name.to_owned()))
        }
    }

    /// The group's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is [`Group::DEFAULT`].
    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }
}

impl Default for Group {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Group({})", self.0)
    }
}

impl std::str::FromStr for Group {
    type Err = GroupError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::new(text)
    }
}

impl AsRef<str> for Group {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Group {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Group {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn group_names_are_short_lowercase_letters_digits_and_dashes() {
        for good in ["default", "pilot", "kiosks-eu-2", "0day", &"a".repeat(32)] {
            assert_eq!(Group::new(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "-pilot",
            "Pilot",
            "pi lot",
            "pilot_1",
            "pilot.eu",
            "pilöt",
            &"a".repeat(33),
        ] {
            assert_eq!(Group::new(bad), Err(GroupError(bad.to_owned())), "{bad:?}");
        }
        assert!(Group::default().is_default());
        assert!(!Group::new("pilot").unwrap().is_default());
    }

    #[test]
    fn groups_deserialize_only_when_valid() {
        let group: Group = serde_json::from_str("\"kiosks\"").unwrap();
        assert_eq!(serde_json::to_string(&group).unwrap(), "\"kiosks\"");
        assert!(serde_json::from_str::<Group>("\"KIOSKS\"").is_err());
    }
}
