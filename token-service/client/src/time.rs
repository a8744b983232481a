//! RFC 3339 times as the protocol writes them (`2026-12-07T05:27:22Z`).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Unix seconds as an RFC 3339 UTC time. A time RFC 3339 cannot express (outside the years
/// 0 to 9999) is written as its number of seconds, never as an empty string.
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_and_out_of_range() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_621_242), "2026-12-07T05:27:22Z");
        assert_eq!(rfc3339(i64::MAX), i64::MAX.to_string());
    }
}
