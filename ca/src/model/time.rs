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
    use time::{Month, Weekday};
    let t = OffsetDateTime::from_unix_timestamp(unix.max(0)).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    // The names written directly: no name formatted into a string of its own per header.
    let weekday = match t.weekday() {
        Weekday::Monday => "Mon",
        Weekday::Tuesday => "Tue",
        Weekday::Wednesday => "Wed",
        Weekday::Thursday => "Thu",
        Weekday::Friday => "Fri",
        Weekday::Saturday => "Sat",
        Weekday::Sunday => "Sun",
    };
    let month = match t.month() {
        Month::January => "Jan",
        Month::February => "Feb",
        Month::March => "Mar",
        Month::April => "Apr",
        Month::May => "May",
        Month::June => "Jun",
        Month::July => "Jul",
        Month::August => "Aug",
        Month::September => "Sep",
        Month::October => "Oct",
        Month::November => "Nov",
        Month::December => "Dec",
    };
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
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(1_780_000_000), "Thu, 28 May 2026 20:26:40 GMT");
        assert_eq!(http_date(2_524_607_999), "Fri, 31 Dec 2049 23:59:59 GMT");
    }
}
