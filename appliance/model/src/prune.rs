//! PBS-style retention (keep-last/hourly/daily/weekly/monthly/yearly) as a
//! pure function of the snapshots of one group and the keep rules.
//!
//! The rules are applied newest first, in the order last, hourly, daily,
//! weekly, monthly, yearly, and they add up: a period already kept by an
//! earlier rule is not counted again by a later one. Within one rule, the
//! newest snapshot of each period is kept until the rule has taken its count
//! of periods; an older snapshot of a period the rule already took is removed
//! there and then, so no later rule can keep it (this is what PBS does).
//! Periods are calendar periods in UTC; a period without snapshots does not
//! count.
//!
//! Invariant: no clock is read and no time zone but UTC is consulted; the
//! answer depends on the snapshots and the rules alone.
//! Invariant: a protected snapshot is always kept and never uses up a rule's
//! count.

use std::collections::HashSet;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::time::format_rfc3339;

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

impl KeepRules {
    /// True when every rule is off; `decide` then keeps everything.
    pub fn is_empty(&self) -> bool {
        Rule::ALL.iter().all(|&rule| self.count(rule) == 0)
    }

    /// The count configured for `rule`.
    pub fn count(&self, rule: Rule) -> u32 {
        match rule {
            Rule::Last => self.last,
            Rule::Hourly => self.hourly,
            Rule::Daily => self.daily,
            Rule::Weekly => self.weekly,
            Rule::Monthly => self.monthly,
            Rule::Yearly => self.yearly,
        }
    }
}

/// One keep rule, named after its period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Rule {
    /// Every rule, in the order `decide` applies them.
    pub const ALL: [Rule; 6] =
        [Rule::Last, Rule::Hourly, Rule::Daily, Rule::Weekly, Rule::Monthly, Rule::Yearly];

    /// The rule's name as reasons and options spell it: `keep-daily`.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Last => "keep-last",
            Rule::Hourly => "keep-hourly",
            Rule::Daily => "keep-daily",
            Rule::Weekly => "keep-weekly",
            Rule::Monthly => "keep-monthly",
            Rule::Yearly => "keep-yearly",
        }
    }
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

/// Reason given to every snapshot when no rule is set.
pub const KEEP_ALL_REASON: &str = "keep-all (no keep rule)";

/// The UTC period `time` falls in for `rule`: `2026-11-22 03` (hourly),
/// `2026-11-22` (daily), `2026-W47` (ISO week-year and week), `2026-11`
/// (monthly), `2026` (yearly). For keep-last the period is the snapshot
/// itself, written as its RFC 3339 time. A time outside the calendar's range
/// is its own period, `@SECONDS`.
pub fn period_key(rule: Rule, time: i64) -> String {
    let Ok(ts) = Timestamp::from_second(time) else {
        return format!("@{time}");
    };
    let dt = ts.to_zoned(TimeZone::UTC).datetime();
    let (y, m, d, h) = (dt.year(), dt.month(), dt.day(), dt.hour());
    match rule {
        Rule::Last => format_rfc3339(time),
        Rule::Hourly => format!("{y:04}-{m:02}-{d:02} {h:02}"),
        Rule::Daily => format!("{y:04}-{m:02}-{d:02}"),
        Rule::Weekly => {
            let week = dt.date().iso_week_date();
            format!("{:04}-W{:02}", week.year(), week.week())
        }
        Rule::Monthly => format!("{y:04}-{m:02}"),
        Rule::Yearly => format!("{y:04}"),
    }
}

/// How far `decide` got with one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mark {
    Protected,
    Keep(String),
    Remove,
}

/// Decide, for each snapshot of one group, whether to keep it and why.
/// The answer is aligned with `items` (same index); `items` may be in any
/// order. With no rule set every snapshot is kept (callers should refuse
/// that case before deleting anything).
pub fn decide(items: &[PruneItem], rules: &KeepRules) -> Vec<Decision> {
    if rules.is_empty() {
        return items.iter().map(|_| Decision { keep: true, reason: KEEP_ALL_REASON.to_owned() }).collect();
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(items[i].time), i));
    let mut marks: Vec<Option<Mark>> =
        items.iter().map(|item| item.protected.then_some(Mark::Protected)).collect();
    for rule in Rule::ALL {
        let count = rules.count(rule);
        if count > 0 {
            apply_rule(items, &order, &mut marks, rule, count as usize);
        }
    }
    marks
        .into_iter()
        .map(|mark| match mark {
            Some(Mark::Protected) => Decision { keep: true, reason: "protected".to_owned() },
            Some(Mark::Keep(reason)) => Decision { keep: true, reason },
            Some(Mark::Remove) | None => Decision { keep: false, reason: "remove".to_owned() },
        })
        .collect()
}

/// The period a snapshot falls in for one rule, as `decide` compares them:
/// two snapshots share a period exactly when `period_key` gives both the
/// same text (checked by a test), without formatting any text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Period {
    /// keep-last: the snapshot's index.
    Own(usize),
    /// Hours, days, Monday-based weeks or months since the epoch, or the
    /// year.
    Calendar(i64),
    /// A time outside the calendar's range is its own period.
    Outside(i64),
}

fn period(rule: Rule, time: i64, index: usize) -> Period {
    if rule == Rule::Last {
        return Period::Own(index);
    }
    if Timestamp::from_second(time).is_err() {
        return Period::Outside(time);
    }
    let days = time.div_euclid(86_400);
    Period::Calendar(match rule {
        Rule::Last | Rule::Hourly => time.div_euclid(3_600),
        Rule::Daily => days,
        // 1970-01-01 was a Thursday: day -3 began its ISO week.
        Rule::Weekly => (days + 3).div_euclid(7),
        Rule::Monthly => {
            let (y, m) = year_month(days);
            y * 12 + i64::from(m) - 1
        }
        Rule::Yearly => year_month(days).0,
    })
}

/// The proleptic Gregorian year and month (1–12) of a day counted from
/// 1970-01-01 (days in 400-year eras of 146,097 days, years starting on
/// 1 March so that the leap day comes last).
fn year_month(days: i64) -> (i64, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let m = (5 * day_of_year + 2) / 153;
    let month = if m < 10 { m + 3 } else { m - 9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month as u32)
}

/// Apply one rule with count `count` over `order` (newest first), marking
/// the snapshots it keeps and the older ones of the periods it took.
fn apply_rule(items: &[PruneItem], order: &[usize], marks: &mut [Option<Mark>], rule: Rule, count: usize) {
    let key = |i: usize| period(rule, items[i].time, i);
    let already: HashSet<Period> =
        order.iter().filter(|&&i| matches!(marks[i], Some(Mark::Keep(_)))).map(|&i| key(i)).collect();
    let mut taken: HashSet<Period> = HashSet::new();
    for &i in order {
        if marks[i].is_some() {
            continue;
        }
        let period = key(i);
        if already.contains(&period) {
            continue;
        }
        if taken.contains(&period) {
            marks[i] = Some(Mark::Remove);
            continue;
        }
        if taken.len() >= count {
            break;
        }
        taken.insert(period);
        marks[i] = Some(Mark::Keep(format!("{} {}", rule.name(), taken.len())));
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::time::parse_rfc3339;

    fn rules(last: u32, hourly: u32, daily: u32, weekly: u32, monthly: u32, yearly: u32) -> KeepRules {
        KeepRules { last, hourly, daily, weekly, monthly, yearly }
    }

    fn t(text: &str) -> i64 {
        parse_rfc3339(text).unwrap_or_else(|| panic!("bad time in test: {text}"))
    }

    fn check(rules: KeepRules, snapshots: &[(&str, bool)], expect: &[&str]) {
        let items: Vec<PruneItem> =
            snapshots.iter().map(|&(time, protected)| PruneItem { time: t(time), protected }).collect();
        let got = decide(&items, &rules);
        let reasons: Vec<&str> = got.iter().map(|d| d.reason.as_str()).collect();
        assert_eq!(reasons, expect, "rules {rules:?}");
        for d in &got {
            assert_eq!(d.keep, d.reason != "remove", "keep flag disagrees with reason {:?}", d.reason);
        }
    }

    #[test]
    fn period_keys() {
        assert_eq!(period_key(Rule::Hourly, t("2026-11-22T03:59:59Z")), "2026-11-22 03");
        assert_eq!(period_key(Rule::Daily, t("2026-11-22T23:59:59Z")), "2026-11-22");
        assert_eq!(period_key(Rule::Daily, t("2026-11-23T00:30:00+01:00")), "2026-11-22");
        assert_eq!(period_key(Rule::Weekly, t("2026-12-31T12:00:00Z")), "2026-W53");
        assert_eq!(period_key(Rule::Weekly, t("2027-01-01T12:00:00Z")), "2026-W53");
        assert_eq!(period_key(Rule::Weekly, t("2027-01-04T00:00:00Z")), "2027-W01");
        assert_eq!(period_key(Rule::Weekly, t("2025-12-29T00:00:00Z")), "2026-W01");
        assert_eq!(period_key(Rule::Monthly, t("2026-02-28T10:00:00Z")), "2026-02");
        assert_eq!(period_key(Rule::Yearly, t("2026-02-28T10:00:00Z")), "2026");
        assert_eq!(period_key(Rule::Last, t("2026-02-28T10:00:00Z")), "2026-02-28T10:00:00Z");
        assert_eq!(period_key(Rule::Daily, i64::MAX), format!("@{}", i64::MAX));
    }

    #[test]
    fn periods_group_times_exactly_as_their_keys_do() {
        let mut rng = StdRng::seed_from_u64(7);
        let (lo, hi) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
        for round in 0..20_000 {
            // Pairs near each other (so they often share a period), some at
            // the calendar's edges and beyond.
            let a = match round % 4 {
                0 => rng.random_range(lo..=hi),
                1 => rng.random_range(-5_000_000_000..5_000_000_000),
                2 => lo + rng.random_range(-100_000..100_000),
                _ => hi + rng.random_range(-100_000..100_000),
            };
            let b = a.saturating_add(rng.random_range(-40_000_000..40_000_000));
            for rule in Rule::ALL.into_iter().skip(1) {
                let same_period = period(rule, a, 0) == period(rule, b, 1);
                let same_key = period_key(rule, a) == period_key(rule, b);
                assert_eq!(same_period, same_key, "{rule:?} {a} {b}");
            }
        }
        for days in [-719_468i64, -1, 0, 59, 60, 365, 11_016, 2_932_800, -4_371_500] {
            let (y, m) = year_month(days);
            let key = period_key(Rule::Monthly, days * 86_400);
            assert_eq!(format!("{y:04}-{m:02}"), key, "day {days}");
        }
    }

    #[test]
    fn keep_last_only() {
        check(
            rules(2, 0, 0, 0, 0, 0),
            &[
                ("2026-11-20T03:00:00Z", false),
                ("2026-11-22T03:00:00Z", false),
                ("2026-11-21T03:00:00Z", false),
            ],
            &["remove", "keep-last 1", "keep-last 2"],
        );
    }

    #[test]
    fn no_rule_keeps_everything() {
        check(
            KeepRules::default(),
            &[("2026-11-20T03:00:00Z", false), ("2026-11-22T03:00:00Z", true)],
            &[KEEP_ALL_REASON, KEEP_ALL_REASON],
        );
        assert!(KeepRules::default().is_empty());
        assert!(!rules(0, 0, 0, 0, 0, 1).is_empty());
    }

    #[test]
    fn daily_keeps_newest_of_each_day() {
        check(
            rules(0, 0, 2, 0, 0, 0),
            &[
                ("2026-11-22T18:00:00Z", false),
                ("2026-11-22T06:00:00Z", false),
                ("2026-11-21T23:00:00Z", false),
                ("2026-11-21T01:00:00Z", false),
                ("2026-11-20T12:00:00Z", false),
            ],
            &["keep-daily 1", "remove", "keep-daily 2", "remove", "remove"],
        );
    }

    #[test]
    fn hourly_keeps_newest_of_each_hour() {
        check(
            rules(0, 2, 0, 0, 0, 0),
            &[
                ("2026-11-22T03:45:00Z", false),
                ("2026-11-22T03:15:00Z", false),
                ("2026-11-22T01:59:00Z", false),
                ("2026-11-22T00:10:00Z", false),
            ],
            &["keep-hourly 1", "remove", "keep-hourly 2", "remove"],
        );
    }

    #[test]
    fn empty_days_do_not_count() {
        check(
            rules(0, 0, 2, 0, 0, 0),
            &[
                ("2026-11-10T03:00:00Z", false),
                ("2026-11-07T03:00:00Z", false),
                ("2026-11-03T03:00:00Z", false),
            ],
            &["keep-daily 1", "keep-daily 2", "remove"],
        );
    }

    #[test]
    fn weekly_across_iso_year_boundary() {
        let snapshots = [
            ("2027-01-04T02:00:00Z", false), // 2027-W01
            ("2027-01-01T02:00:00Z", false), // 2026-W53
            ("2026-12-31T02:00:00Z", false), // 2026-W53
            ("2026-12-28T02:00:00Z", false), // 2026-W53 (Monday)
            ("2026-12-27T02:00:00Z", false), // 2026-W52 (Sunday)
        ];
        check(
            rules(0, 0, 0, 2, 0, 0),
            &snapshots,
            &["keep-weekly 1", "keep-weekly 2", "remove", "remove", "remove"],
        );
        // the calendar year splits the same ISO week
        check(
            rules(0, 0, 0, 0, 0, 2),
            &snapshots,
            &["keep-yearly 1", "remove", "keep-yearly 2", "remove", "remove"],
        );
    }

    #[test]
    fn rules_add_up() {
        check(
            rules(2, 0, 3, 0, 0, 0),
            &[
                ("2026-11-05T10:00:00Z", false),
                ("2026-11-05T08:00:00Z", false),
                ("2026-11-04T08:00:00Z", false),
                ("2026-11-03T20:00:00Z", false),
                ("2026-11-03T10:00:00Z", false),
                ("2026-11-02T10:00:00Z", false),
                ("2026-11-01T10:00:00Z", false),
            ],
            &[
                "keep-last 1",
                "keep-last 2",
                "keep-daily 1",
                "keep-daily 2",
                "remove",
                "keep-daily 3",
                "remove",
            ],
        );
    }

    #[test]
    fn a_snapshot_removed_by_one_rule_stays_removed() {
        // weekly takes 2026-W53 with 2027-01-01 and removes 2026-12-31 there
        // and then, so monthly cannot keep it for December and keeps 12-27
        check(
            rules(0, 0, 0, 1, 2, 0),
            &[
                ("2027-01-01T08:00:00Z", false),
                ("2026-12-31T08:00:00Z", false),
                ("2026-12-27T08:00:00Z", false),
            ],
            &["keep-weekly 1", "remove", "keep-monthly 1"],
        );
    }

    #[test]
    fn protected_is_kept_and_uses_no_count() {
        check(
            rules(2, 0, 0, 0, 0, 0),
            &[
                ("2026-11-04T03:00:00Z", true),
                ("2026-11-03T03:00:00Z", false),
                ("2026-11-02T03:00:00Z", false),
                ("2026-11-01T03:00:00Z", false),
                ("2026-10-01T03:00:00Z", true),
            ],
            &["protected", "keep-last 1", "keep-last 2", "remove", "protected"],
        );
        // a protected snapshot does not make its day "already included"
        check(
            rules(0, 0, 1, 0, 0, 0),
            &[("2026-11-04T12:00:00Z", true), ("2026-11-04T03:00:00Z", false)],
            &["protected", "keep-daily 1"],
        );
    }

    #[test]
    fn monthly_and_yearly() {
        check(
            rules(0, 0, 0, 0, 2, 2),
            &[
                ("2026-03-10T00:00:00Z", false),
                ("2026-03-01T00:00:00Z", false),
                ("2026-01-20T00:00:00Z", false),
                ("2025-12-31T00:00:00Z", false),
                ("2025-06-30T00:00:00Z", false),
                ("2024-02-01T00:00:00Z", false),
                ("2023-02-01T00:00:00Z", false),
            ],
            &[
                "keep-monthly 1",
                "remove",
                "keep-monthly 2",
                "keep-yearly 1",
                "remove",
                "keep-yearly 2",
                "remove",
            ],
        );
    }

    #[test]
    fn unsorted_input() {
        check(
            rules(1, 0, 2, 0, 0, 0),
            &[
                ("2026-11-21T01:00:00Z", false),
                ("2026-11-22T18:00:00Z", false),
                ("2026-11-20T12:00:00Z", false),
                ("2026-11-22T06:00:00Z", false),
                ("2026-11-21T23:00:00Z", false),
                ("2026-11-19T23:00:00Z", false),
            ],
            &["remove", "keep-last 1", "keep-daily 2", "remove", "keep-daily 1", "remove"],
        );
    }

    fn random_case(rng: &mut StdRng) -> (Vec<PruneItem>, KeepRules) {
        let base = t("2025-01-01T00:00:00Z");
        let len = rng.random_range(0..40);
        let mut times = HashSet::new();
        while times.len() < len {
            // clustered: a few days with several snapshots, spread over ~3 years
            let day = rng.random_range(0..1100i64);
            times.insert(base + day * 86_400 + rng.random_range(0..86_400i64));
        }
        let items =
            times.into_iter().map(|time| PruneItem { time, protected: rng.random_bool(0.1) }).collect();
        let mut pick = || if rng.random_bool(0.4) { 0 } else { rng.random_range(1..6) };
        let rules = rules(pick(), pick(), pick(), pick(), pick(), pick());
        (items, rules)
    }

    fn check_invariants(items: &[PruneItem], rules: &KeepRules, got: &[Decision]) {
        assert_eq!(got.len(), items.len());
        for (item, d) in items.iter().zip(got) {
            if item.protected {
                assert_eq!(d.reason, if rules.is_empty() { KEEP_ALL_REASON } else { "protected" });
            }
        }
        if rules.is_empty() {
            assert!(got.iter().all(|d| d.keep));
            return;
        }
        for rule in Rule::ALL {
            let prefix = format!("{} ", rule.name());
            let mut ordinals: Vec<usize> =
                got.iter().filter_map(|d| d.reason.strip_prefix(&prefix)?.parse().ok()).collect();
            ordinals.sort_unstable();
            assert!(ordinals.len() <= rules.count(rule) as usize, "{rule:?} kept {ordinals:?} of {rules:?}");
            assert_eq!(ordinals, (1..=ordinals.len()).collect::<Vec<_>>(), "{rule:?} ordinals");
            if rule != Rule::Last {
                let periods: HashSet<String> = items
                    .iter()
                    .zip(got)
                    .filter(|(_, d)| d.reason.starts_with(&prefix))
                    .map(|(i, _)| period_key(rule, i.time))
                    .collect();
                assert_eq!(periods.len(), ordinals.len(), "{rule:?} kept two snapshots of one period");
            }
        }
        if let Some(newest) = (0..items.len()).max_by_key(|&i| items[i].time) {
            assert!(got[newest].keep, "newest removed under {rules:?}");
        }
    }

    #[test]
    fn random_sets_keep_invariants() {
        let mut rng = StdRng::seed_from_u64(0x00ca_1234);
        for _ in 0..500 {
            let (mut items, rules) = random_case(&mut rng);
            let got = decide(&items, &rules);
            check_invariants(&items, &rules, &got);
            // the same snapshots in another order get the same verdicts
            let mut paired: Vec<(PruneItem, Decision)> = items.iter().copied().zip(got).collect();
            paired.shuffle(&mut rng);
            items = paired.iter().map(|(item, _)| *item).collect();
            let again = decide(&items, &rules);
            let expect: Vec<Decision> = paired.into_iter().map(|(_, d)| d).collect();
            assert_eq!(again, expect, "order changed the verdicts under {rules:?}");
        }
    }
}
