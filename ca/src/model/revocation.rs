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
    /// aACompromise (10)
    AaCompromise,
}

/// The kebab-case reason names Herald prints, in the order of [`ALL`].
pub(crate) const REASON_NAMES: &[&str] = &[
    "unspecified",
    "key-compromise",
    "ca-compromise",
    "affiliation-changed",
    "superseded",
    "cessation-of-operation",
    "privilege-withdrawn",
    "aa-compromise",
];

/// RFC 5280's own names (ASN.1 identifiers), in the order of [`ALL`]; accepted beside the
/// kebab-case ones.
const RFC5280_NAMES: &[&str] = &[
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
    "aACompromise",
];

/// RFC 5280 reasons that are recognised but not offered, with why.
const REFUSED: &[(&str, &str, &str)] = &[
    (
        "certificateHold",
        "certificate-hold",
        "revocation in Herald is permanent and a hold could never be released",
    ),
    (
        "removeFromCRL",
        "remove-from-crl",
        "it is only used in delta CRLs, which Herald does not publish",
    ),
];

/// A revocation reason name that is unknown or not offered.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum ReasonParseError {
    /// Not a reason name.
    #[error("unknown revocation reason {0:?}; use one of: {names} (or RFC 5280's names: {rfc})",
        names = REASON_NAMES.join(", "), rfc = RFC5280_NAMES.join(", "))]
    Unknown(String),
    /// An RFC 5280 reason Herald does not offer.
    #[error("revocation reason {name} is not offered: {why}")]
    NotOffered {
        name: &'static str,
        why: &'static str,
    },
}

/// Every reason offered, in code order.
pub(crate) const ALL: [Reason; 8] = [
    Reason::Unspecified,
    Reason::KeyCompromise,
    Reason::CaCompromise,
    Reason::AffiliationChanged,
    Reason::Superseded,
    Reason::CessationOfOperation,
    Reason::PrivilegeWithdrawn,
    Reason::AaCompromise,
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
            Reason::AaCompromise => 10,
        }
    }

    /// From a CRLReason code (certificateHold and removeFromCRL are not used: revocation here
    /// is permanent, and there are no delta CRLs).
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

    /// Accepts the kebab-case names (`key-compromise`) and RFC 5280's (`keyCompromise`), in
    /// any case, with `-` or `_` between words or none.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let compact = |n: &str| n.to_ascii_lowercase().replace(['-', '_'], "");
        let wanted = compact(s.trim());
        if let Some((name, _, why)) = REFUSED
            .iter()
            .find(|(rfc, kebab, _)| compact(rfc) == wanted || compact(kebab) == wanted)
        {
            return Err(ReasonParseError::NotOffered { name, why });
        }
        REASON_NAMES
            .iter()
            .zip(RFC5280_NAMES)
            .position(|(kebab, rfc)| compact(kebab) == wanted || compact(rfc) == wanted)
            .and_then(|i| ALL.get(i).copied())
            .ok_or_else(|| ReasonParseError::Unknown(s.to_owned()))
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

    #[test]
    fn every_rfc5280_reason_name_is_accepted_or_refused_with_why() {
        for (name, reason) in [
            ("unspecified", Reason::Unspecified),
            ("keyCompromise", Reason::KeyCompromise),
            ("cACompromise", Reason::CaCompromise),
            ("affiliationChanged", Reason::AffiliationChanged),
            ("superseded", Reason::Superseded),
            ("cessationOfOperation", Reason::CessationOfOperation),
            ("privilegeWithdrawn", Reason::PrivilegeWithdrawn),
            ("aACompromise", Reason::AaCompromise),
            ("aa-compromise", Reason::AaCompromise),
            ("cessation-of-operation", Reason::CessationOfOperation),
        ] {
            assert_eq!(name.parse::<Reason>().unwrap(), reason, "{name}");
            assert_eq!(Reason::from_code(reason.code()), Some(reason));
        }
        for name in ["certificateHold", "removeFromCRL", "certificate-hold"] {
            let err = name.parse::<Reason>().unwrap_err();
            assert!(
                matches!(err, ReasonParseError::NotOffered { .. }),
                "{name}: {err}"
            );
        }
        assert!(matches!(
            "bogus".parse::<Reason>(),
            Err(ReasonParseError::Unknown(_))
        ));
        assert_eq!(Reason::AaCompromise.name(), "aa-compromise");
    }
}
