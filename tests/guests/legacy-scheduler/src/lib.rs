//! A scheduler built against `cairn:policy@0.1.0`: the host keeps running
//! components of that version. It runs a job when its last run is an hour
//! old (or it has none), tagged `hourly`, and asks again an hour later.

// The bindings in a module of their own, where the lint that the glue
// generated for `decide` trips (its arguments, flattened, are more than
// seven) can be allowed without allowing it for this crate's own functions.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ path: "../../../wit/since_v0.1.0", world: "scheduler" });
}
use bindings::*;

struct Hourly;

impl Guest for Hourly {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "legacy-scheduler".into(),
            version: "0.1.0".into(),
            description: "runs a job every hour".into(),
            params: vec![],
        }
    }

    fn decide(job: Job, recent_runs: Vec<Run>, now: i64) -> Result<Schedule, String> {
        let last = recent_runs.iter().map(|r| r.time).max();
        let run_now = last.is_none_or(|t| now - t >= 3_600);
        Ok(Schedule {
            run_now,
            tags: if run_now { vec!["hourly".into()] } else { vec![] },
            next_check: now + 3_600,
            reason: format!("{} of {}: last run {last:?}", job.name, job.group),
        })
    }
}

bindings::export!(Hourly with_types_in bindings);
