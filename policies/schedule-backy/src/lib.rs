//! `schedule-backy`: backy's scheduler as a Cairn `scheduler` policy.
//!
//! The job's parameters name tagged intervals (`daily=1d`, `weekly=7d`).
//! Each tag's slots fall at multiples of its interval plus a per-job
//! offset (`spread`, in seconds; by default derived from the job name, so
//! jobs spread over the interval instead of all starting at midnight). A
//! tag is due when no good run carried it since its latest slot. The job
//! runs when any tag is due, once, carrying every due tag: after downtime
//! a single catch-up run makes up for all missed slots.

wit_bindgen::generate!({ path: "../../wit", world: "scheduler" });

struct Backy;

struct Interval {
    tag: String,
    seconds: i64,
}

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
        let mut intervals = Vec::new();
        let mut spread = None;
        for p in &job.params {
            if p.key == "spread" {
                spread = Some(p.value.parse::<i64>().map_err(|_| format!("spread={:?}: expected seconds", p.value))?);
            } else {
                intervals.push(Interval { tag: p.key.clone(), seconds: duration(&p.key, &p.value)? });
            }
        }
        if intervals.is_empty() {
            return Err("give at least one tagged interval, e.g. daily=1d".into());
        }
        let spread = spread.unwrap_or_else(|| fnv(&job.name) as i64);
        let mut due = Vec::new();
        let mut next = i64::MAX;
        for iv in &intervals {
            let offset = spread.rem_euclid(iv.seconds);
            let last_slot = (now - offset).div_euclid(iv.seconds) * iv.seconds + offset;
            let last_good = recent_runs
                .iter()
                .filter(|r| r.outcome == "ok" && r.tags.contains(&iv.tag))
                .map(|r| r.time)
                .max();
            if last_good.is_none_or(|t| t < last_slot) {
                due.push(iv.tag.clone());
            }
            next = next.min(last_slot + iv.seconds);
        }
        if due.is_empty() {
            return Ok(Schedule { run_now: false, tags: vec![], next_check: next, reason: "no tag is due".into() });
        }
        let reason = format!("due: {}", due.join(", "));
        Ok(Schedule { run_now: true, tags: due, next_check: next, reason })
    }
}

fn duration(key: &str, text: &str) -> Result<i64, String> {
    let bad = || format!("{key}={text:?}: expected an interval such as 1d, 12h, 7d");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: i64 = text[..split].parse().map_err(|_| bad())?;
    let unit = match &text[split..] {
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    if n <= 0 {
        return Err(bad());
    }
    Ok(n * unit)
}

/// 32-bit FNV-1a: a stable offset per job name.
fn fnv(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}

export!(Backy);
