//! Group and channel names.
//!
//! An endpoint belongs to one group (`pilot`, `kiosks`, `default`, ...), carried in its
//! certificate's Subject as exactly one organizationalUnitName (OU) attribute; a certificate
//! without one is in [`DEFAULT_GROUP`]. Release channels (`stable`, `beta`, ...) are named by
//! the same rule, checked by [`is_valid_name`]: 1 to [`MAX_NAME_LEN`] characters of
//! `[a-z0-9-]`, starting with a letter or a digit.

/// The group of an endpoint whose certificate names none.
pub const DEFAULT_GROUP: &str = "default";

/// The longest group or channel name.
pub const MAX_NAME_LEN: usize = 32;

/// True when `name` is a valid group or channel name: 1 to [`MAX_NAME_LEN`] characters of
/// lowercase ASCII letters, digits and `-`, the first a letter or a digit.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes[0] != b'-'
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_rule() {
        for good in [
            "default",
            "pilot",
            "k1",
            "0day",
            "a",
            "stable-2",
            &"x".repeat(32),
        ] {
            assert!(is_valid_name(good), "{good:?}");
        }
        for bad in [
            "",
            "-pilot",
            "Pilot",
            "pi lot",
            "pilot_1",
            "pilot/1",
            "pilot.1",
            "é",
            &"x".repeat(33),
        ] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }
}
