//! Snapshot times: whole seconds since the Unix epoch, written as RFC 3339 in
//! UTC with a `Z` suffix (`2026-11-22T03:00:00Z`).

use jiff::Timestamp;

/// Format epoch seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(epoch: i64) -> String {
    match Timestamp::from_second(epoch) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => format!("@{epoch}"),
    }
}

/// Parse an RFC 3339 time (any offset) into epoch seconds; sub-second
/// precision is truncated.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    text.parse::<Timestamp>().ok().map(|t| t.as_second())
}

/// How far ahead of the clock a snapshot time may lie before it counts as
/// from the future: clocks of clients and servers drift a little.
pub const FUTURE_SKEW: i64 = 300;

/// Whether `time` is a valid snapshot time: it prints as RFC 3339 with four
/// digits of year and parses back to itself.
pub fn round_trips(time: i64) -> bool {
    let text = format_rfc3339(time);
    text.len() == 20 && parse_rfc3339(&text) == Some(time)
}

/// Whether a snapshot taken at `time` lies in the future at `now` (beyond
/// `FUTURE_SKEW`): such a snapshot is suspicious, never fresh.
pub fn from_the_future(time: i64, now: i64) -> bool {
    time > now.saturating_add(FUTURE_SKEW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_times_round_trip_or_are_refused() {
        assert!(round_trips(0));
        assert!(round_trips(parse_rfc3339("2100-01-01T00:00:00Z").unwrap()));
        assert!(round_trips(parse_rfc3339("9999-12-30T00:00:00Z").unwrap()));
        assert!(!round_trips(parse_rfc3339("9999-12-30T00:00:00Z").unwrap() + 3 * 86_400));
        assert!(!round_trips(-100_000_000_000));
        assert!(!round_trips(i64::MAX));
        assert!(!round_trips(i64::MIN));
        let now = 1_800_000_000;
        assert!(!from_the_future(now + FUTURE_SKEW, now));
        assert!(from_the_future(now + FUTURE_SKEW + 1, now));
        assert!(!from_the_future(now - 86_400, now));
        assert!(!from_the_future(i64::MIN, i64::MAX));
    }

    #[test]
    fn round_trip() {
        let t = parse_rfc3339("2026-11-22T03:00:00Z").unwrap();
        assert_eq!(format_rfc3339(t), "2026-11-22T03:00:00Z");
        assert_eq!(parse_rfc3339("2026-11-22T04:00:00+01:00"), Some(t));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
