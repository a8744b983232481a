//! RFC 5280 revocation reasons.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// An RFC 5280 CRLReason (§5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// unspecified (0)
    Unspecified,
    /// keyCompromise (1)
    KeyCompromise,
    /// cACompromise (2)
    CaCompromise,
    /// affiliationChanged (3)
    AffiliationChanged,
    /// superseded (4)
    Superseded,
    /// cessationOfOperation (5)
    CessationOfOperation,
    /// privilegeWithdrawn (9)
    PrivilegeWithdrawn,
}

/// The reason names accepted on the command line and in the API.
pub(crate) const REASON_NAMES: &[&str] = &[
    "unspecified",
    "key-compromise",
    "ca-compromise",
    "affiliation-changed",
    "superseded",
    "cessation-of-operation",
    "privilege-withdrawn",
];

/// An unknown revocation reason name.
#[derive(Debug, thiserror::Error)]
#[error("unknown revocation reason {0:?}; use one of: {names}", names = REASON_NAMES.join(", "))]
pub struct ReasonParseError(pub String);

/// Every reason offered, in code order.
pub(crate) const ALL: [Reason; 7] = [
    Reason::Unspecified,
    Reason::KeyCompromise,
    Reason::CaCompromise,
    Reason::AffiliationChanged,
    Reason::Superseded,
    Reason::CessationOfOperation,
    Reason::PrivilegeWithdrawn,
];

impl Reason {
    /// The CRLReason code.
    pub fn code(self) -> u8 {
        match self {
            Reason::Unspecified => 0,
            Reason::KeyCompromise => 1,
            Reason::CaCompromise => 2,
            Reason::AffiliationChanged => 3,
            Reason::Superseded => 4,
            Reason::CessationOfOperation => 5,
            Reason::PrivilegeWithdrawn => 9,
        }
    }

    /// From a CRLReason code (certificateHold and removeFromCRL are not used: revocation here
    /// is permanent).
    pub fn from_code(code: u8) -> Option<Self> {
        ALL.into_iter().find(|r| r.code() == code)
    }

    /// The kebab-case name.
    pub fn name(self) -> &'static str {
        ALL.iter()
            .position(|r| *r == self)
            .and_then(|i| REASON_NAMES.get(i))
            .copied()
            .unwrap_or("unspecified")
    }
}

impl FromStr for Reason {
    type Err = ReasonParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        let compact = wanted.replace('-', "");
        REASON_NAMES
            .iter()
            .position(|n| *n == wanted || n.replace('-', "") == compact)
            .and_then(|i| ALL.get(i).copied())
            .ok_or_else(|| ReasonParseError(s.to_owned()))
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reasons_parse_by_name_and_code() {
        assert_eq!(
            "keyCompromise".parse::<Reason>().unwrap(),
            Reason::KeyCompromise
        );
        assert_eq!(
            "key-compromise".parse::<Reason>().unwrap(),
            Reason::KeyCompromise
        );
        assert_eq!(Reason::from_code(9), Some(Reason::PrivilegeWithdrawn));
        assert_eq!(Reason::from_code(6), None, "certificateHold is not offered");
        assert!("bogus".parse::<Reason>().is_err());
    }
}
