//! Tokens: the secret's format and hash, name allocation format, time-to-live parsing.

use herald_token_client::sha256_hex;
use herald_wire::{Group, Serial};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;

/// Default lifetime of an enrollment token: 24 hours.
pub const DEFAULT_TTL_SECS: i64 = 24 * 3600;
/// Longest lifetime accepted: 90 days.
pub const MAX_TTL_SECS: i64 = 90 * 24 * 3600;
/// Longest base name: the allocated `BASE-NNNN` must stay a DNS label (63 characters).
const MAX_BASE_LEN: usize = 50;

/// Problems with a token request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// The base name cannot form a DNS-style name.
    #[error("base name {0:?} must be 1 to 50 letters, digits or '-', starting with a letter or digit and not ending with '-'")]
    BadBase(String),
    /// The time-to-live is not understood or out of range.
    #[error("ttl {0:?} must be a number followed by s, m, h or d, between 1 minute and 90 days")]
    BadTtl(String),
    /// The random generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// An enrollment token as the token service sees it (the authority stores it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    /// Public identifier.
    pub id: String,
    /// The allocated unique name.
    pub name: String,
    /// The issuance profile.
    pub profile: String,
    /// The group the enrolling endpoint joins.
    pub group: Group,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
    /// When it was burnt.
    pub used_at: Option<i64>,
    /// Serial of the certificate it paid for.
    pub serial: Option<Serial>,
    /// SHA-256 (hex) of the public key it paid for.
    pub spki_sha256: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
}

/// The state of a token at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStatus {
    /// Unused, unexpired, not revoked.
    Pending,
    /// Burnt by an enrollment.
    Used,
    /// Past its expiry without being used.
    Expired,
    /// Revoked by an operator.
    Revoked,
}

impl TokenStatus {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Pending => "pending",
            TokenStatus::Used => "used",
            TokenStatus::Expired => "expired",
            TokenStatus::Revoked => "revoked",
        }
    }
}

/// The status of `token` at `now` (Unix seconds).
pub fn token_status(token: &TokenRecord, now: i64) -> TokenStatus {
    if token.used_at.is_some() {
        TokenStatus::Used
    } else if token.revoked_at.is_some() {
        TokenStatus::Revoked
    } else if now >= token.expires_at {
        TokenStatus::Expired
    } else {
        TokenStatus::Pending
    }
}

/// A token just created: the secret is shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedToken {
    /// Public identifier.
    pub id: String,
    /// The secret to hand to the endpoint.
    pub token: String,
    /// The allocated unique name.
    pub name: String,
    /// Expiry, RFC 3339.
    pub expires_at: String,
    /// The issuance profile.
    pub profile: String,
    /// The group the enrolling endpoint joins.
    pub group: Group,
}

/// A new token: `(id, secret)`. The secret is `het_<id>_<256 random bits in hex>`; only its
/// hash is stored.
pub fn new_secret() -> Result<(String, String), TokenError> {
    let rng = SystemRandom::new();
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rng.fill(&mut id)
        .and_then(|()| rng.fill(&mut secret))
        .map_err(|_| TokenError::Random)?;
    let id = hex::encode(id);
    let token = format!("het_{id}_{}", hex::encode(secret));
    Ok((id, token))
}

/// Hex SHA-256 of a token secret (what the store keeps).
pub fn hash_secret(secret: &str) -> String {
    sha256_hex(secret.trim().as_bytes())
}

/// Checks a base name.
pub fn validate_base(base: &str) -> Result<(), TokenError> {
    let ok = !base.is_empty()
        && base.len() <= MAX_BASE_LEN
        && base.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && base
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && !base.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(TokenError::BadBase(base.to_owned()))
    }
}

/// The unique name for allocation `number` of `base`: `BASE-0001`, ..., `BASE-9999`,
/// `BASE-10000`, ...
pub fn format_name(base: &str, number: u64) -> String {
    format!("{base}-{number:04}")
}

/// Parses a time-to-live such as `90m`, `24h`, `7d` or `3600s` into seconds.
pub fn parse_ttl(text: &str) -> Result<i64, TokenError> {
    parse_duration(text)
        .filter(|secs| (60..=MAX_TTL_SECS).contains(secs))
        .ok_or_else(|| TokenError::BadTtl(text.to_owned()))
}

/// A duration written as a number with `s`, `m`, `h` or `d` (`90m`, `30d`), in seconds;
/// `None` when it is not of that form or overflows (callers check the range).
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    let split = text.len().checked_sub(1)?;
    let (digits, unit) = text.split_at_checked(split)?;
    let value: i64 = digits.parse().ok()?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    value.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ttl_units_and_bounds() {
        assert_eq!(parse_ttl("24h"), Ok(86400));
        assert_eq!(parse_ttl("90m"), Ok(5400));
        assert_eq!(parse_ttl("7d"), Ok(7 * 86400));
        for bad in [
            "",
            "h",
            "10",
            "5s",
            "-1h",
            "91d",
            "1y",
            "99999999999999999d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn names_are_padded_and_bases_checked() {
        assert_eq!(format_name("web", 1), "web-0001");
        assert_eq!(format_name("web", 12345), "web-12345");
        assert!(validate_base("kiosk-paris").is_ok());
        for bad in ["", "-a", "a-", "a.b", "a b", &"x".repeat(51)] {
            assert!(validate_base(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn secrets_are_distinct_and_hashed() {
        let (id1, s1) = new_secret().unwrap();
        let (id2, s2) = new_secret().unwrap();
        assert_ne!(id1, id2);
        assert_ne!(s1, s2);
        assert!(s1.starts_with(&format!("het_{id1}_")));
        assert_eq!(hash_secret(&s1).len(), 64);
        assert_ne!(hash_secret(&s1), hash_secret(&s2));
    }

    #[test]
    fn status_follows_use_revocation_and_expiry() {
        let mut t = TokenRecord {
            id: "a".into(),
            name: "web-0001".into(),
            profile: "endpoint".into(),
            group: Group::default(),
            expires_at: 100,
            used_at: None,
            serial: None,
            spki_sha256: None,
            revoked_at: None,
        };
        assert_eq!(token_status(&t, 50), TokenStatus::Pending);
        assert_eq!(token_status(&t, 100), TokenStatus::Expired);
        t.revoked_at = Some(60);
        assert_eq!(token_status(&t, 70), TokenStatus::Revoked);
        t.revoked_at = None;
        t.used_at = Some(60);
        assert_eq!(token_status(&t, 200), TokenStatus::Used);
    }
}
