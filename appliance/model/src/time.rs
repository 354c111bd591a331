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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = parse_rfc3339("2026-11-22T03:00:00Z").unwrap();
        assert_eq!(format_rfc3339(t), "2026-11-22T03:00:00Z");
        assert_eq!(parse_rfc3339("2026-11-22T04:00:00+01:00"), Some(t));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
