//! The scheduler host against `schedule-window` and `schedule-backy` built
//! from source: their descriptions and every case in their `cases/`.

use std::collections::BTreeMap;

use policy::{Host, JobRun, Limits, ScheduleJob, World};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    now: String,
    job: CaseJob,
    #[serde(default)]
    runs: Vec<CaseRun>,
    expect: Option<Expect>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct CaseJob {
    name: String,
    group: String,
    #[serde(default)]
    params: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct CaseRun {
    time: String,
    outcome: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    duration_seconds: u64,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Expect {
    run_now: bool,
    tags: Vec<String>,
    next_check: String,
    reason: String,
}

fn time(t: &str) -> i64 {
    model::time::parse_rfc3339(t).unwrap_or_else(|| panic!("bad time {t}"))
}

#[test]
fn scheduler_examples_pass_their_cases() {
    let host = Host::new().expect("host");
    for (example, param) in [("schedule-window", "window"), ("schedule-backy", "spread")] {
        let bytes = std::fs::read(policy_guests::example(example)).expect("component");
        let p = host.load(&bytes, &Limits::default()).expect("load");
        assert_eq!((p.world, p.info.name.as_str()), (World::Scheduler, example));
        assert!(p.info.params.iter().any(|(k, _)| k == param), "{:?}", p.info);
        let ran = run_cases(&host, &p, example);
        assert!(ran >= 5, "only {ran} cases for {example}");
        // A scheduler is not a retention policy.
        let err = host
            .retention(&p, "host/h", &[], 0, &[], &Limits::default())
            .expect_err("wrong world")
            .to_string();
        assert!(err.contains("not a retention policy"), "{err}");
    }
}

fn run_cases(host: &Host, p: &policy::Policy, example: &str) -> usize {
    let dir = policy_guests::policies_dir().join(example).join("cases");
    let mut ran = 0;
    for entry in std::fs::read_dir(&dir).expect("cases") {
        let path = entry.expect("entry").path();
        let case: Case = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        let job = ScheduleJob {
            name: case.job.name,
            group: case.job.group,
            params: case.job.params.into_iter().collect(),
        };
        let runs: Vec<JobRun> = case
            .runs
            .iter()
            .map(|r| JobRun {
                time: time(&r.time),
                outcome: r.outcome.clone(),
                tags: r.tags.clone(),
                duration_seconds: r.duration_seconds,
            })
            .collect();
        match (host.schedule(p, &job, &runs, time(&case.now), &Limits::default()), case.expect, case.error) {
            (Ok(d), Some(want), None) => {
                let got = Expect {
                    run_now: d.run_now,
                    tags: d.tags,
                    next_check: model::time::format_rfc3339(d.next_check),
                    reason: d.reason,
                };
                assert_eq!(got, want, "{}", path.display());
            }
            (Err(e), None, Some(want)) => assert!(e.to_string().contains(&want), "{}: {e}", path.display()),
            (got, _, want) => panic!("{}: got {got:?}, wanted error {want:?}", path.display()),
        }
        ran += 1;
    }
    ran
}
