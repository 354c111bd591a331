//! `schedule-backy`: backy's scheduler as a Cairn `scheduler` policy.
//!
//! The job's parameters name tagged intervals (`daily=1d`, `weekly=7d`).
//! Each tag's slots fall at multiples of its interval plus a per-job
//! offset (`spread`, in seconds; by default derived from the job name, so
//! jobs spread over the interval instead of all starting at midnight). A
//! tag is due when no good run carried it since its latest slot. The job
//! runs when any tag is due, once, carrying every due tag: after downtime
//! a single catch-up run makes up for all missed slots.

// The bindings in a module of their own, where the lint that the glue
// generated for `decide` trips (its arguments are the flattened job record)
// can be allowed without allowing it for this crate's own functions.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "scheduler" });
}
use bindings::*;

use model::backy::{PastRun, due, parse_interval, spread_of};

struct Backy;

impl Guest for Backy {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "schedule-backy".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "backy's scheduler: tagged intervals with a per-job offset; one catch-up run carries every missed tag.".into(),
            params: vec![
                Param { key: "TAG".into(), value: "interval for runs carrying TAG, e.g. daily=1d weekly=7d (m, h, d, w)".into() },
                Param { key: "spread".into(), value: "offset of the slots in seconds (default: from the job name)".into() },
            ],
        }
    }

    fn decide(job: Job, recent_runs: Vec<Run>, now: i64) -> Result<Schedule, String> {
        // The same rules as a job's built-in named intervals.
        let mut intervals = Vec::new();
        let mut spread = None;
        for p in &job.params {
            if p.key == "spread" {
                spread = Some(
                    p.value.parse::<i64>().map_err(|_| format!("spread={:?}: expected seconds", p.value))?,
                );
            } else {
                intervals.push(parse_interval(&p.key, &p.value, false)?);
            }
        }
        if intervals.is_empty() {
            return Err("give at least one tagged interval, e.g. daily=1d".into());
        }
        let runs: Vec<PastRun> = recent_runs
            .iter()
            .map(|r| PastRun { time: r.time, ok: r.outcome == "ok", tags: r.tags.clone() })
            .collect();
        let d = due(&intervals, spread.unwrap_or_else(|| spread_of(&job.name)), &runs, now);
        if d.tags.is_empty() {
            return Ok(Schedule {
                run_now: false,
                tags: vec![],
                next_check: d.next,
                reason: "no tag is due".into(),
            });
        }
        let reason = format!("due: {}", d.tags.join(", "));
        Ok(Schedule { run_now: true, tags: d.tags, next_check: d.next, reason })
    }
}

export!(Backy with_types_in bindings);
