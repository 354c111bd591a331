//! PBS-style retention (keep-last/hourly/daily/weekly/monthly/yearly).
//! Being written: see `decide`.

/// How many of each period to keep; 0 switches a rule off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepRules {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

/// What retention needs to know of one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneItem {
    /// Snapshot time, epoch seconds (UTC).
    pub time: i64,
    pub protected: bool,
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub keep: bool,
    /// `keep-daily 3`, `protected`, `remove`.
    pub reason: String,
}
