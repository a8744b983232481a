//! Time-based one-time passwords (TOTP, RFC 6238): HMAC-SHA-1 over the number of 30-second
//! steps since the Unix epoch, dynamically truncated to six digits (RFC 4226), which every
//! authenticator app computes. Written over `ring`'s HMAC, the crate's one cryptography
//! library (ARCHITECTURE.md says why no TOTP crate is used); the RFC's test vectors pin it.

use ring::hmac;

/// Seconds per time step.
pub(crate) const STEP_SECS: i64 = 30;
/// Digits of a code.
pub(crate) const DIGITS: u32 = 6;
/// Steps accepted before and after the current one (clock skew of up to 30 seconds).
pub(crate) const SKEW_STEPS: i64 = 1;
/// Bytes of a new secret (160 bits, RFC 4226's recommendation).
pub(crate) const SECRET_BYTES: usize = 20;

/// The time step of Unix time `unix`.
pub(crate) fn step_at(unix: i64) -> i64 {
    unix.div_euclid(STEP_SECS)
}

/// The HOTP value of `secret` at counter `step`, `digits` long (RFC 4226 section 5.3).
pub(crate) fn code_at(secret: &[u8], step: i64, digits: u32) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &step.to_be_bytes());
    let mac = mac.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    binary % 10u32.pow(digits)
}

/// The step at which `code` (six digits, spaces ignored) is valid for `secret` at `now`,
/// within [`SKEW_STEPS`]; `None` if it is not a valid code now.
pub(crate) fn matching_step(secret: &[u8], code: &str, now: i64) -> Option<i64> {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() != DIGITS as usize || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let wanted: u32 = digits.parse().ok()?;
    let current = step_at(now);
    // Every candidate is computed, so the time taken does not tell which step matched.
    let mut found = None;
    for step in current - SKEW_STEPS..=current + SKEW_STEPS {
        if code_at(secret, step, DIGITS) == wanted && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// RFC 4648 base32 without padding, the form authenticator apps take secrets in.
pub(crate) fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer = 0u32;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The `otpauth://` URI an authenticator app scans (the de-facto Key URI format): issuer
/// `issuer`, account `account`, SHA-1, six digits, 30 seconds.
pub(crate) fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let issuer = utf8_percent_encode(issuer, NON_ALPHANUMERIC).to_string();
    let account = utf8_percent_encode(account, NON_ALPHANUMERIC).to_string();
    format!(
        "otpauth://totp/{issuer}:{account}?secret={}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        base32(secret)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B: the SHA-1 seed and its eight-digit values.
    const RFC_SECRET: &[u8] = b"12345678901234567890";
    const RFC_VECTORS: [(i64, u32); 6] = [
        (59, 94_287_082),
        (1_111_111_109, 7_081_804),
        (1_111_111_111, 14_050_471),
        (1_234_567_890, 89_005_924),
        (2_000_000_000, 69_279_037),
        (20_000_000_000, 65_353_130),
    ];

    #[test]
    fn rfc6238_test_vectors() {
        for (time, expected) in RFC_VECTORS {
            assert_eq!(
                code_at(RFC_SECRET, step_at(time), 8),
                expected,
                "T = {time}"
            );
            // Six digits are the last six of the same truncation.
            assert_eq!(code_at(RFC_SECRET, step_at(time), 6), expected % 1_000_000);
        }
    }

    #[test]
    fn rfc4226_hotp_test_vectors() {
        let expected = [
            755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871,
            520_489,
        ];
        for (counter, value) in expected.iter().enumerate() {
            assert_eq!(code_at(RFC_SECRET, counter as i64, 6), *value);
        }
    }

    #[test]
    fn codes_accepted_within_one_step_of_skew_only() {
        let now = 1_111_111_111;
        let code = |t: i64| format!("{:06}", code_at(RFC_SECRET, step_at(t), 6));
        assert_eq!(
            matching_step(RFC_SECRET, &code(now), now),
            Some(step_at(now))
        );
        assert_eq!(
            matching_step(RFC_SECRET, &code(now - 30), now),
            Some(step_at(now) - 1)
        );
        assert_eq!(
            matching_step(RFC_SECRET, &code(now + 30), now),
            Some(step_at(now) + 1)
        );
        assert_eq!(matching_step(RFC_SECRET, &code(now - 90), now), None);
        assert_eq!(matching_step(RFC_SECRET, &code(now + 90), now), None);
        let spaced = format!("{} {}", &code(now)[..3], &code(now)[3..]);
        assert_eq!(matching_step(RFC_SECRET, &spaced, now), Some(step_at(now)));
        for bad in ["", "12345", "1234567", "12345a", "-12345", "１２３４５６"] {
            assert_eq!(matching_step(RFC_SECRET, bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        for (input, output) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), output);
        }
        assert_eq!(base32(RFC_SECRET), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn otpauth_uri_names_issuer_account_and_secret() {
        assert_eq!(
            otpauth_uri("Herald", "ops alice", b"12345678901234567890"),
            "otpauth://totp/Herald:ops%20alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Herald&algorithm=SHA1&digits=6&period=30"
        );
    }
}
