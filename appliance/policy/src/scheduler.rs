//! The `scheduler` world: host bindings, the call, and the checks on the
//! answer.

use wasmtime::component::Component;

use crate::error::PolicyError;
use crate::sandbox::{Limits, Sandbox, describe_failure};
use crate::{Policy, PolicyInfo};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "scheduler",
        with: { "cairn:policy/types": crate::retention::wit },
    });
}

use crate::retention::wit;
use bindings::Scheduler;

/// The job a scheduler decides about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleJob {
    pub name: String,
    /// `TYPE/ID`.
    pub group: String,
    pub params: Vec<(String, String)>,
}

/// One past run of the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    /// Start, epoch seconds.
    pub time: i64,
    /// `ok`, `failed` or `partial`.
    pub outcome: String,
    pub tags: Vec<String>,
    pub duration_seconds: u64,
}

/// A validated answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleDecision {
    pub run_now: bool,
    pub tags: Vec<String>,
    /// When to ask again, epoch seconds (after `now`, within a year).
    pub next_check: i64,
    pub reason: String,
}

const YEAR: i64 = 366 * 86_400;

pub fn describe(
    sandbox: &Sandbox,
    component: &Component,
    limits: &Limits,
) -> Result<PolicyInfo, PolicyError> {
    sandbox.describe(
        limits,
        |store| Scheduler::instantiate(store, component, sandbox.linker()),
        |bindings, store| bindings.call_describe(store),
    )
}

pub fn decide(
    sandbox: &Sandbox,
    policy: &Policy,
    job: &ScheduleJob,
    runs: &[JobRun],
    now: i64,
    limits: &Limits,
) -> Result<ScheduleDecision, PolicyError> {
    let call_err = |message: String| PolicyError::Call { policy: policy.label(), message };
    let job = wit::Job {
        name: job.name.clone(),
        group: job.group.clone(),
        params: job.params.iter().map(|(k, v)| wit::Param { key: k.clone(), value: v.clone() }).collect(),
    };
    let runs: Vec<wit::Run> = runs
        .iter()
        .map(|r| wit::Run {
            time: r.time,
            outcome: r.outcome.clone(),
            tags: r.tags.clone(),
            duration_seconds: r.duration_seconds,
        })
        .collect();
    let mut store = sandbox.store(limits);
    let bindings = Scheduler::instantiate(&mut store, &policy.component, sandbox.linker())
        .map_err(|e| call_err(describe_failure(&e, limits, &store.data().stderr)))?;
    let s = match bindings.call_decide(&mut store, &job, &runs, now) {
        Ok(Ok(s)) => s,
        Ok(Err(message)) => return Err(call_err(format!("it returned an error: {}", crate::clip(&message)))),
        Err(e) => return Err(call_err(describe_failure(&e, limits, &store.data().stderr))),
    };
    if s.next_check <= now || s.next_check > now.saturating_add(YEAR) {
        return Err(call_err(format!(
            "it asked to be asked again at {}, not within a year after now",
            s.next_check
        )));
    }
    if s.tags.len() > 16
        || s.tags
            .iter()
            .any(|t| t.is_empty() || t.len() > 64 || t.contains(',') || t.chars().any(char::is_control))
    {
        return Err(call_err(
            "its tags are not up to 16 printable names of 1 to 64 characters without commas".into(),
        ));
    }
    if s.reason.len() > 200 || s.reason.chars().any(char::is_control) {
        return Err(call_err("its reason is over 200 bytes or not printable".into()));
    }
    Ok(ScheduleDecision { run_now: s.run_now, tags: s.tags, next_check: s.next_check, reason: s.reason })
}
