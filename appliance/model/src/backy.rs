//! backy's schedule and retention model, natively: a job names tagged
//! intervals with keep counts (`daily=1d:9 weekly=7d:5`). Each tag's slots
//! fall at multiples of its interval plus a per-job offset; a tag is due
//! when no good run carried it since its latest slot, and the job runs
//! once carrying every due tag (after downtime, one catch-up run makes up
//! for all missed slots). Each tag keeps its KEEP newest snapshots and any
//! carrying it younger than KEEP × INTERVAL; a snapshot stays while any of
//! its tags keeps it; a `manual:` tag never expires.
//!
//! The example policies `schedule-backy` and `retention-tags` are these
//! functions behind the WIT interface, so component and built-in agree.

/// One tagged interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInterval {
    pub tag: String,
    /// Seconds.
    pub seconds: i64,
    /// Snapshots the tag keeps (0: the scheduler's use only).
    pub keep: usize,
}

/// `1d`, `12h`, `30m`, `2w` in seconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let n: i64 = text[..split].parse().ok()?;
    let unit = match &text[split..] {
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    (n > 0).then(|| n.checked_mul(unit)).flatten().filter(|s| *s <= 10 * 366 * 86_400)
}

/// `30m`, `12h`, `1d`, `2w` from seconds.
pub fn format_duration(seconds: i64) -> String {
    match seconds {
        s if s % 604_800 == 0 => format!("{}w", s / 604_800),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s => format!("{}m", s / 60),
    }
}

/// Whether `tag` may name an interval: printable, no spaces, commas, `=`
/// or `:`, and not a `manual:` tag.
fn tag_ok(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 64
        && !tag.chars().any(|c| c.is_control() || c.is_whitespace() || ",=:".contains(c))
}

/// One `TAG=INTERVAL[:KEEP]` (`keep_required`: the `:KEEP` must be there).
pub fn parse_interval(tag: &str, value: &str, keep_required: bool) -> Result<TagInterval, String> {
    let bad = || {
        if keep_required {
            format!("{tag}={value:?}: expected INTERVAL:KEEP, e.g. 1d:9")
        } else {
            format!("{tag}={value:?}: expected an interval such as 1d, 12h, 7d (optionally :KEEP)")
        }
    };
    if !tag_ok(tag) {
        return Err(bad());
    }
    let (interval, keep) = match value.split_once(':') {
        Some((i, k)) => (i, Some(k)),
        None if keep_required => return Err(bad()),
        None => (value, None),
    };
    let seconds = parse_duration(interval).ok_or_else(bad)?;
    let keep = match keep {
        Some(k) => k.parse::<usize>().ok().filter(|k| *k > 0 && *k <= 100_000).ok_or_else(bad)?,
        None => 0,
    };
    Ok(TagInterval { tag: tag.to_owned(), seconds, keep })
}

/// `daily=1d:9 weekly=7d:5` (spaces or commas between).
pub fn parse_intervals(text: &str) -> Result<Vec<TagInterval>, String> {
    let mut out: Vec<TagInterval> = Vec::new();
    for item in text.split([' ', ',']).filter(|s| !s.is_empty()) {
        let (tag, value) =
            item.split_once('=').ok_or_else(|| format!("{item:?}: expected TAG=INTERVAL:KEEP"))?;
        let iv = parse_interval(tag, value, true)?;
        if out.iter().any(|o| o.tag == iv.tag) {
            return Err(format!("tag {tag} is named twice"));
        }
        out.push(iv);
    }
    Ok(out)
}

/// The text form [`parse_intervals`] reads.
pub fn format_intervals(intervals: &[TagInterval]) -> String {
    let parts: Vec<String> = intervals
        .iter()
        .map(|i| {
            if i.keep > 0 {
                format!("{}={}:{}", i.tag, format_duration(i.seconds), i.keep)
            } else {
                format!("{}={}", i.tag, format_duration(i.seconds))
            }
        })
        .collect();
    parts.join(" ")
}

/// A stable per-job offset (32-bit FNV-1a of its name), so jobs spread
/// over their intervals instead of all starting at midnight.
pub fn spread_of(job: &str) -> i64 {
    job.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193)) as i64
}

/// A past run, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastRun {
    pub time: i64,
    pub ok: bool,
    pub tags: Vec<String>,
}

/// What is due at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The tags of the intervals due now (empty: nothing to run).
    pub tags: Vec<String>,
    /// The next slot of any interval.
    pub next: i64,
}

/// The tags due at `now` (see the module's rule), and the next slot.
pub fn due(intervals: &[TagInterval], spread: i64, runs: &[PastRun], now: i64) -> Due {
    let mut tags = Vec::new();
    let mut next = i64::MAX;
    for iv in intervals {
        let offset = spread.rem_euclid(iv.seconds);
        let last_slot = (now - offset).div_euclid(iv.seconds) * iv.seconds + offset;
        let last_good = runs.iter().filter(|r| r.ok && r.tags.contains(&iv.tag)).map(|r| r.time).max();
        if last_good.is_none_or(|t| t < last_slot) {
            tags.push(iv.tag.clone());
        }
        next = next.min(last_slot + iv.seconds);
    }
    Due { tags, next }
}

/// A snapshot, as tag retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedSnapshot {
    pub time: i64,
    pub tags: Vec<String>,
    pub protected: bool,
}

/// Keep or remove each snapshot, with a reason (see the module's rule);
/// protected snapshots are always kept. Intervals with a keep count of 0
/// keep nothing.
pub fn keep_by_tags(
    snapshots: &[TaggedSnapshot],
    intervals: &[TagInterval],
    now: i64,
) -> Vec<(bool, String)> {
    let mut reason: Vec<Option<String>> = vec![None; snapshots.len()];
    for (i, s) in snapshots.iter().enumerate() {
        if s.protected {
            reason[i] = Some("protected".into());
        } else if let Some(t) = s.tags.iter().find(|t| t.starts_with("manual:")) {
            reason[i] = Some(format!("manual tag {t}"));
        }
    }
    for r in intervals.iter().filter(|r| r.keep > 0) {
        let mut with: Vec<usize> =
            (0..snapshots.len()).filter(|&i| snapshots[i].tags.contains(&r.tag)).collect();
        with.sort_by_key(|&i| std::cmp::Reverse(snapshots[i].time));
        let window = now.saturating_sub(r.seconds.saturating_mul(r.keep as i64));
        for (rank, &i) in with.iter().enumerate() {
            if reason[i].is_some() {
                continue;
            }
            if rank < r.keep {
                reason[i] = Some(format!("tag {} (keep {})", r.tag, r.keep));
            } else if snapshots[i].time > window {
                reason[i] =
                    Some(format!("tag {} (younger than {} x {})", r.tag, r.keep, format_duration(r.seconds)));
            }
        }
    }
    reason
        .into_iter()
        .map(|r| match r {
            Some(reason) => (true, reason),
            None => (false, "remove: no tag keeps it".into()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_and_print_back() {
        let iv = parse_intervals("daily=1d:9, weekly=7d:5 hourly=2h:3").unwrap();
        assert_eq!(iv[1], TagInterval { tag: "weekly".into(), seconds: 604_800, keep: 5 });
        assert_eq!(format_intervals(&iv), "daily=1d:9 weekly=1w:5 hourly=2h:3");
        for bad in
            ["daily=1d", "daily=1x:3", "daily=0d:3", "=1d:3", "manual:x=1d:2", "d=1d:0", "a=1d:1 a=2d:1"]
        {
            assert!(parse_intervals(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_catch_up_run_carries_every_missed_tag() {
        let iv = parse_intervals("daily=1d:7 weekly=7d:4").unwrap();
        let day = 86_400;
        // Never ran: both are due.
        assert_eq!(due(&iv, 0, &[], 100 * day).tags, ["daily", "weekly"]);
        // Ran daily and weekly ten days ago, down since: one run, both tags.
        let old = PastRun { time: 90 * day, ok: true, tags: vec!["daily".into(), "weekly".into()] };
        assert_eq!(due(&iv, 0, std::slice::from_ref(&old), 100 * day + 5).tags, ["daily", "weekly"]);
        // Ran today after the daily slot: nothing due until tomorrow's slot.
        let today = PastRun { time: 100 * day + 10, ok: true, tags: vec!["daily".into(), "weekly".into()] };
        let d = due(&iv, 0, std::slice::from_ref(&today), 100 * day + 20);
        assert!(d.tags.is_empty());
        assert_eq!(d.next, 101 * day);
        // A failed run does not count.
        let failed = PastRun { ok: false, ..today };
        assert_eq!(due(&iv, 0, &[failed], 100 * day + 20).tags, ["daily", "weekly"]);
    }

    #[test]
    fn tags_keep_their_newest_and_manual_never_expires() {
        let iv = parse_intervals("daily=1d:2").unwrap();
        let day = 86_400;
        let snap = |d: i64, tags: &[&str], protected| TaggedSnapshot {
            time: d * day,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            protected,
        };
        let snaps = [
            snap(1, &["daily"], false),
            snap(2, &["daily", "manual:before-upgrade"], false),
            snap(3, &["daily"], true),
            snap(4, &["daily"], false),
            snap(5, &["daily"], false),
            snap(5, &[], false),
        ];
        let d = keep_by_tags(&snaps, &iv, 10 * day);
        let keep: Vec<bool> = d.iter().map(|x| x.0).collect();
        assert_eq!(keep, [false, true, true, true, true, false], "{d:?}");
        assert_eq!(d[1].1, "manual tag manual:before-upgrade");
        assert_eq!(d[2].1, "protected");
        assert_eq!(d[4].1, "tag daily (keep 2)");
    }
}
