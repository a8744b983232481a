//! Issuance policy: profiles (lifetime, key types, usage) and name rules.
//!
//! A request never chooses its own subject: the caller (an operator, or the token service for an
//! enrollment) supplies the name, and the profile decides everything else.

use herald_wire::Group;
use serde::{Deserialize, Serialize};

use crate::core::csr::KeyKind;

/// What a profile's certificates are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Usage {
    /// Endpoint identity: EKU clientAuth.
    Client,
    /// TLS server: EKU serverAuth.
    Server,
}

/// An issuance profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Certificate lifetime in hours (capped by the issuer's own expiry).
    pub validity_hours: u32,
    /// Key types accepted: `ecdsa-p256`, `ecdsa-p384`, `ed25519`, `rsa`.
    pub allowed_key_types: Vec<String>,
    /// Smallest RSA modulus accepted, in bits.
    #[serde(default = "default_min_rsa_bits")]
    pub min_rsa_bits: u32,
    /// Extended key usage.
    pub usage: Usage,
    /// Whether its certificates may renew through `POST /api/v1/renew`. Absent: client
    /// profiles (endpoints, relays) renew, server profiles do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewable: Option<bool>,
}

fn default_min_rsa_bits() -> u32 {
    2048
}

/// The name of the default profile.
pub const DEFAULT_PROFILE: &str = "endpoint";

/// Minutes notBefore is set in the past, for clients whose clocks run slow.
pub const BACKDATE_MINUTES: i64 = 5;

impl Profile {
    /// The default endpoint profile: 90 days, clientAuth, modern key types.
    pub fn endpoint() -> Self {
        Self {
            validity_hours: 90 * 24,
            allowed_key_types: ["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa"]
                .map(str::to_owned)
                .to_vec(),
            min_rsa_bits: default_min_rsa_bits(),
            usage: Usage::Client,
            renewable: None,
        }
    }

    /// Whether certificates of this profile renew through the API (see `renewable`).
    pub fn renews(&self) -> bool {
        self.renewable.unwrap_or(self.usage == Usage::Client)
    }

    /// The profile of the server's own TLS certificate.
    pub fn server() -> Self {
        Self {
            validity_hours: 365 * 24,
            usage: Usage::Server,
            ..Self::endpoint()
        }
    }

    /// Checks a request's key against the profile.
    pub fn check_key(&self, key: KeyKind) -> Result<(), PolicyError> {
        if !self
            .allowed_key_types
            .iter()
            .any(|k| k == key.policy_name())
        {
            return Err(PolicyError::KeyTypeNotAllowed(key.policy_name().to_owned()));
        }
        if let KeyKind::Rsa(bits) = key {
            if bits < self.min_rsa_bits {
                return Err(PolicyError::KeyTooSmall {
                    bits,
                    min: self.min_rsa_bits,
                });
            }
        }
        Ok(())
    }
}

/// A request the policy refuses.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum PolicyError {
    /// The profile does not exist.
    #[error("unknown profile {0:?}")]
    UnknownProfile(String),
    /// The key type is not allowed by the profile.
    #[error("key type {0} is not allowed by this profile")]
    KeyTypeNotAllowed(String),
    /// The RSA key is too small.
    #[error("RSA key of {bits} bits is below the minimum of {min}")]
    KeyTooSmall { bits: u32, min: u32 },
    /// The name is not acceptable.
    #[error("invalid name {0:?}: use 1 to 63 letters, digits, '-' or '.', starting with a letter or digit")]
    BadName(String),
    /// The certificate's DNS name (the name, under `[ca] name_domain` for endpoints) is not
    /// a valid host name.
    #[error("invalid certificate DNS name {name:?}: {problem}")]
    BadDnsName { name: String, problem: String },
    /// A group was asked for a certificate of a server profile, which carries none.
    #[error("certificates of a server profile carry no group (asked for group {0})")]
    GroupOnServerProfile(String),
}

/// Checks that `group` fits `profile`: certificates of client profiles carry any group;
/// server certificates carry none, so only the default group is accepted for them.
pub fn check_group(profile: &Profile, group: &Group) -> Result<(), PolicyError> {
    if profile.usage == Usage::Server && !group.is_default() {
        return Err(PolicyError::GroupOnServerProfile(group.to_string()));
    }
    Ok(())
}

/// Checks a subject name: a DNS-compatible name of 1 to 63 characters (it becomes the subject
/// common name and a dNSName subject alternative name).
pub fn check_name(name: &str) -> Result<(), PolicyError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && !name.ends_with('.')
        && !name.ends_with('-')
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(PolicyError::BadName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dns_rules() {
        assert!(check_name("LAPTOP-ACME-0042").is_ok());
        assert!(check_name("host.example").is_ok());
        for bad in ["", "-x", "a b", "x..y", "é", "a/../b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn small_rsa_and_unlisted_types_refused() {
        let p = Profile::endpoint();
        assert!(p.check_key(KeyKind::Rsa(1024)).is_err());
        assert!(p.check_key(KeyKind::Rsa(2048)).is_ok());
        let only_p256 = Profile {
            allowed_key_types: vec!["ecdsa-p256".into()],
            ..Profile::endpoint()
        };
        assert!(only_p256.check_key(KeyKind::Ed25519).is_err());
    }

    #[test]
    fn only_client_profiles_take_a_group() {
        let pilot = Group::new("pilot").expect("a valid group name");
        assert!(check_group(&Profile::endpoint(), &pilot).is_ok());
        assert!(check_group(&Profile::server(), &Group::default()).is_ok());
        assert!(matches!(
            check_group(&Profile::server(), &pilot),
            Err(PolicyError::GroupOnServerProfile(_))
        ));
    }

    #[test]
    fn client_profiles_renew_server_profiles_do_not_unless_configured() {
        assert!(Profile::endpoint().renews());
        assert!(!Profile::server().renews());
        let pinned = Profile {
            renewable: Some(false),
            ..Profile::endpoint()
        };
        assert!(!pinned.renews());
    }
}
