//! `schedule-window`: a Cairn `scheduler` policy that runs a job only inside
//! a daily maintenance window (UTC) and not twice within a minimum gap.
//!
//! Parameters (from the job): `window=22:00-04:00` (may wrap midnight),
//! `min-gap=20h` (m, h or d), `tags=daily` (comma-separated tags for the
//! run). Only successful runs count towards the gap: after a failure the
//! job runs again at the next check inside the window.

// The bindings in a module of their own, where the lint that the glue
// generated for `decide` trips (its arguments are the flattened job record)
// can be allowed without allowing it for this crate's own functions.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "scheduler" });
}
use bindings::*;

struct Window;

const DAY: i64 = 86_400;
/// How often to look again while inside the window.
const RECHECK: i64 = 15 * 60;

impl Guest for Window {
    fn describe() -> PolicyInfo {
        let p = |k: &str, v: &str| Param { key: k.into(), value: v.into() };
        PolicyInfo {
            name: "schedule-window".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Run only inside a daily maintenance window (UTC), and not twice within a minimum gap.".into(),
            params: vec![
                p("window", "HH:MM-HH:MM in UTC, may wrap midnight (default 22:00-04:00)"),
                p(
                    "min-gap",
                    "no new run within this long after a successful one: 30m, 20h, 1d (default 20h)",
                ),
                p("tags", "comma-separated tags for each run (default daily)"),
            ],
        }
    }

    fn decide(job: Job, recent_runs: Vec<Run>, now: i64) -> Result<Schedule, String> {
        let get = |k: &str| job.params.iter().find(|p| p.key == k).map(|p| p.value.as_str());
        let (start, end) = window(get("window").unwrap_or("22:00-04:00"))?;
        let gap = duration(get("min-gap").unwrap_or("20h"))?;
        let tags: Vec<String> = get("tags")
            .unwrap_or("daily")
            .split(',')
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        let last_ok = recent_runs.iter().filter(|r| r.outcome == "ok").map(|r| r.time).max();
        let day_start = now - now.rem_euclid(DAY);
        let inside = in_window(now - day_start, start, end);
        let next_open = next_window_start(now, day_start, start);
        if !inside {
            return Ok(Schedule {
                run_now: false,
                tags: vec![],
                next_check: next_open,
                reason: format!(
                    "outside the window {}; it opens at {}",
                    hm_range(start, end),
                    hm(next_open.rem_euclid(DAY))
                ),
            });
        }
        if let Some(t) = last_ok
            && now - t < gap
        {
            let due = t + gap;
            return Ok(Schedule {
                run_now: false,
                tags: vec![],
                next_check: (now + RECHECK).min(due).max(now + 60),
                reason: format!("last good run {} min ago, under the {} min gap", (now - t) / 60, gap / 60),
            });
        }
        Ok(Schedule {
            run_now: true,
            tags,
            next_check: now + RECHECK,
            reason: match last_ok {
                Some(t) => format!("inside the window and {} h since the last good run", (now - t) / 3_600),
                None => "inside the window and no good run yet".into(),
            },
        })
    }
}

/// Seconds after midnight of `HH:MM-HH:MM`.
fn window(text: &str) -> Result<(i64, i64), String> {
    let bad = || format!("window={text:?}: expected HH:MM-HH:MM");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let hm = |s: &str| -> Result<i64, String> {
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if !(0..24).contains(&h) || !(0..60).contains(&m) {
            return Err(bad());
        }
        Ok(h * 3_600 + m * 60)
    };
    let (start, end) = (hm(a)?, hm(b)?);
    if start == end {
        return Err(format!("window={text:?}: start and end are the same"));
    }
    Ok((start, end))
}

fn duration(text: &str) -> Result<i64, String> {
    let bad = || format!("min-gap={text:?}: expected a number and m, h or d");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: i64 = text[..split].parse().map_err(|_| bad())?;
    let unit = match &text[split..] {
        "m" => 60,
        "h" => 3_600,
        "d" => DAY,
        _ => return Err(bad()),
    };
    Ok(n * unit)
}

fn in_window(t: i64, start: i64, end: i64) -> bool {
    if start < end { t >= start && t < end } else { t >= start || t < end }
}

fn next_window_start(now: i64, day_start: i64, start: i64) -> i64 {
    let today = day_start + start;
    if today > now { today } else { today + DAY }
}

fn hm(seconds_of_day: i64) -> String {
    format!("{:02}:{:02}", seconds_of_day / 3_600, seconds_of_day % 3_600 / 60)
}

fn hm_range(start: i64, end: i64) -> String {
    format!("{}-{}", hm(start), hm(end))
}

export!(Window with_types_in bindings);
