//! The time a run uses, and lifetimes.

use herald_manifest::tuf_time;
use time::{Duration, OffsetDateTime};

use crate::cli::TimeArgs;
use crate::Error;

/// The time of this run: `--now` / HERALD_SIGN_NOW, else SOURCE_DATE_EPOCH, else the clock,
/// truncated to whole seconds (TUF dates have no fractions).
pub(crate) fn now(args: &TimeArgs) -> Result<OffsetDateTime, Error> {
    let given = match &args.now {
        Some(text) => Some(parse_time(text)?),
        None => match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(text) => Some(parse_time(&text)?),
            Err(_) => None,
        },
    };
    let t = given.unwrap_or_else(OffsetDateTime::now_utc);
    OffsetDateTime::from_unix_timestamp(t.unix_timestamp())
        .map_err(|e| Error::Usage(format!("time out of range: {e}")))
}

fn parse_time(text: &str) -> Result<OffsetDateTime, Error> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return OffsetDateTime::from_unix_timestamp(secs)
            .map_err(|e| Error::Usage(format!("time {text:?} out of range: {e}")));
    }
    tuf_time::parse(text).map_err(|_| {
        Error::Usage(format!(
            "time {text:?}: expected YYYY-MM-DDTHH:MM:SSZ or seconds since the Unix epoch"
        ))
    })
}

/// Parses a lifetime: a positive number followed by `d`, `h`, `m` or `s`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, Error> {
    let bad = || {
        Error::Usage(format!(
            "duration {text:?}: expected a positive number followed by d, h, m or s (e.g. 90d)"
        ))
    };
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| bad())?;
    if n <= 0 {
        return Err(bad());
    }
    let seconds = match unit {
        "d" => n.checked_mul(86_400),
        "h" => n.checked_mul(3_600),
        "m" => n.checked_mul(60),
        "s" => Some(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(Duration::seconds(seconds))
}

/// `now + lifetime`, checked.
pub(crate) fn expiry(now: OffsetDateTime, lifetime: &str) -> Result<OffsetDateTime, Error> {
    now.checked_add(parse_duration(lifetime)?)
        .ok_or_else(|| Error::Usage(format!("lifetime {lifetime:?} out of range")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("2d").unwrap(), Duration::days(2));
        assert_eq!(parse_duration("90m").unwrap(), Duration::minutes(90));
        for bad in ["", "d", "0d", "-1d", "5w", "1.5d", "99999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn now_accepts_both_forms() {
        let a = now(&TimeArgs {
            now: Some("2030-01-01T00:00:00Z".into()),
        })
        .unwrap();
        let b = now(&TimeArgs {
            now: Some(a.unix_timestamp().to_string()),
        })
        .unwrap();
        assert_eq!(a, b);
        assert!(now(&TimeArgs {
            now: Some("yesterday".into())
        })
        .is_err());
    }
}
