//! The clock and the two ways Herald writes a time: for people (`2026-12-07 05:27:22Z`) and
//! for HTTP headers (IMF-fixdate, RFC 9110 §5.6.7).

use time::OffsetDateTime;

/// The current time, Unix seconds.
pub(crate) fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// A Unix time as `YYYY-MM-DD hh:mm:ssZ`; a time outside the calendar's range is printed as
/// its number of seconds.
pub(crate) fn format_time(unix: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => unix.to_string(),
    }
}

/// A Unix time as an HTTP date (`Mon, 07 Dec 2026 05:27:22 GMT`); times before 1970 are
/// written as the epoch.
pub(crate) fn http_date(unix: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(unix.max(0)).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let weekday = &t.weekday().to_string()[..3];
    let month = &t.month().to_string()[..3];
    format!(
        "{weekday}, {:02} {month} {:04} {:02}:{:02}:{:02} GMT",
        t.day(),
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_for_people_and_for_http_headers() {
        assert_eq!(format_time(1_796_621_242), "2026-12-07 05:27:22Z");
        assert_eq!(format_time(i64::MAX), i64::MAX.to_string());
        assert_eq!(http_date(1_796_621_242), "Mon, 07 Dec 2026 05:27:22 GMT");
        assert_eq!(http_date(-5), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
