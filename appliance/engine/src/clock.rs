//! The one wall clock of Cairn: everything that needs "now" (snapshot
//! times, tasks, tokens and sessions, schedules) asks here, so a test or a
//! port to another clock changes one place. Functions below take the time
//! as an argument.

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
