//! The `scheduler` world: host bindings, the call, and the checks on the
//! answer.

use wasmtime::component::Component;

use crate::error::PolicyError;
use crate::sandbox::{Limits, Sandbox};
use crate::{Policy, PolicyInfo};

// The scheduler's records are the same in 0.1.0 and 0.2.0: both versions'
// bindings use the 0.1.0 types, checked against each component's own when
// it is instantiated.
mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/since_v0.1.0",
        world: "scheduler",
        with: { "cairn:policy/types": crate::retention::wit },
    });
}

mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit/since_v0.2.0",
        world: "scheduler",
        with: { "cairn:policy/types": crate::retention::wit },
    });
}

use crate::WitVersion;
use crate::retention::wit;
use crate::sandbox::State;
use wasmtime::Store;

/// A scheduler's bindings, of the version it was built against.
enum Scheduler {
    V0_1(v0_1::Scheduler),
    V0_2(v0_2::Scheduler),
}

impl Scheduler {
    fn instantiate(
        store: &mut Store<State>,
        component: &Component,
        sandbox: &Sandbox,
        version: WitVersion,
    ) -> wasmtime::Result<Self> {
        Ok(match version {
            WitVersion::V0_1 => {
                Scheduler::V0_1(v0_1::Scheduler::instantiate(store, component, sandbox.linker())?)
            }
            WitVersion::V0_2 => {
                Scheduler::V0_2(v0_2::Scheduler::instantiate(store, component, sandbox.linker())?)
            }
        })
    }

    fn call_describe(&self, store: &mut Store<State>) -> wasmtime::Result<wit::PolicyInfo> {
        match self {
            Scheduler::V0_1(b) => b.call_describe(store),
            Scheduler::V0_2(b) => b.call_describe(store),
        }
    }

    fn call_decide(
        &self,
        store: &mut Store<State>,
        job: &wit::Job,
        runs: &[wit::Run],
        now: i64,
    ) -> wasmtime::Result<Result<wit::Schedule, String>> {
        match self {
            Scheduler::V0_1(b) => b.call_decide(store, job, runs, now),
            Scheduler::V0_2(b) => b.call_decide(store, job, runs, now),
        }
    }
}

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
    version: WitVersion,
    limits: &Limits,
) -> Result<PolicyInfo, PolicyError> {
    sandbox.describe(
        limits,
        |store| Scheduler::instantiate(store, component, sandbox, version),
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
    let s = sandbox.call(
        policy,
        limits,
        |store| Scheduler::instantiate(store, &policy.component, sandbox, policy.wit),
        |bindings, store| bindings.call_decide(store, &job, &runs, now),
    )?;
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
