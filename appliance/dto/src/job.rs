//! Jobs and tasks: `cairn job list --json`, the API's `/jobs` and
//! `/tasks`, and the job a client sends (`NewJob`, also what the
//! dashboard's job form becomes).

use std::collections::BTreeMap;

use engine::jobs::JobStatus;
use model::prune::KeepRules;
use model::{BackupGroup, Job, JobSource, Namespace, PolicyUse, Task};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize)]
pub struct JobJson {
    pub name: String,
    pub group: String,
    pub sources: Vec<String>,
    /// The cron schedule as stored (empty when intervals or a scheduler
    /// policy decide).
    pub schedule: String,
    /// How the job is scheduled, in a few words: the cron schedule, the
    /// intervals, or `policy NAME`.
    pub schedule_text: String,
    pub tags: Vec<String>,
    pub keep: KeepJson,
    /// backy's named intervals, `daily=1d:9 weekly=1w:5` (empty if none).
    pub intervals: String,
    pub scheduler: Option<PolicyUseJson>,
    pub retention: Option<PolicyUseJson>,
    pub source: Option<JobSourceJson>,
    pub verify: bool,
    pub sla: &'static str,
    pub newest_good: Option<String>,
    pub next_run: Option<String>,
    pub interval_seconds: i64,
    pub last_task: Option<u64>,
    pub last_state: Option<&'static str>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct KeepJson {
    #[serde(default)]
    pub last: u32,
    #[serde(default)]
    pub hourly: u32,
    #[serde(default)]
    pub daily: u32,
    #[serde(default)]
    pub weekly: u32,
    #[serde(default)]
    pub monthly: u32,
    #[serde(default)]
    pub yearly: u32,
}

impl From<&KeepRules> for KeepJson {
    fn from(k: &KeepRules) -> Self {
        Self {
            last: k.last,
            hourly: k.hourly,
            daily: k.daily,
            weekly: k.weekly,
            monthly: k.monthly,
            yearly: k.yearly,
        }
    }
}

impl From<KeepJson> for KeepRules {
    fn from(k: KeepJson) -> Self {
        Self {
            last: k.last,
            hourly: k.hourly,
            daily: k.daily,
            weekly: k.weekly,
            monthly: k.monthly,
            yearly: k.yearly,
        }
    }
}

/// A stored policy a job uses, with its parameters.
#[derive(Debug, Serialize, Deserialize)]
pub struct PolicyUseJson {
    pub name: String,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

impl From<&PolicyUse> for PolicyUseJson {
    fn from(p: &PolicyUse) -> Self {
        Self { name: p.name.clone(), params: p.params.iter().cloned().collect() }
    }
}

impl From<PolicyUseJson> for PolicyUse {
    fn from(p: PolicyUseJson) -> Self {
        Self { name: p.name, params: p.params.into_iter().collect() }
    }
}

/// A job's source handler and its grants.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobSourceJson {
    pub handler: String,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    #[serde(default)]
    pub grant_dir: Option<String>,
    /// The most data the handler may yield in one backup, bytes.
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

impl From<&JobSource> for JobSourceJson {
    fn from(s: &JobSource) -> Self {
        Self {
            handler: s.handler.clone(),
            params: s.params.iter().cloned().collect(),
            allow_hosts: s.allow_hosts.clone(),
            grant_dir: s.grant_dir.clone(),
            max_bytes: s.max_bytes,
        }
    }
}

impl From<JobSourceJson> for JobSource {
    fn from(s: JobSourceJson) -> Self {
        Self {
            handler: s.handler,
            params: s.params.into_iter().collect(),
            allow_hosts: s.allow_hosts,
            grant_dir: s.grant_dir,
            max_bytes: s.max_bytes,
        }
    }
}

impl From<&JobStatus> for JobJson {
    fn from(s: &JobStatus) -> Self {
        let t = model::time::format_rfc3339;
        let j = &s.job;
        Self {
            name: j.name.clone(),
            group: j.group.to_string(),
            sources: j.sources.clone(),
            schedule: j.schedule.clone(),
            schedule_text: j.describe_schedule(),
            tags: j.tags.clone(),
            keep: KeepJson::from(&j.keep),
            intervals: model::backy::format_intervals(&j.intervals),
            scheduler: j.scheduler.as_ref().map(PolicyUseJson::from),
            retention: j.retention.as_ref().map(PolicyUseJson::from),
            source: j.source.as_ref().map(JobSourceJson::from),
            verify: j.verify,
            sla: s.sla.as_str(),
            newest_good: s.newest_good.map(t),
            next_run: s.next_run.map(t),
            interval_seconds: s.interval,
            last_task: s.last_task.as_ref().map(|t| t.id),
            last_state: s.last_task.as_ref().map(|t| t.state.as_str()),
        }
    }
}

/// What read-only callers see instead of a parameter's value.
pub const HIDDEN: &str = "(hidden)";

/// A job as the API and the job form send it.
#[derive(Debug, Deserialize)]
pub struct NewJob {
    pub name: String,
    pub group: String,
    /// Paths on the server (or `source`).
    #[serde(default)]
    pub sources: Vec<String>,
    /// A cron schedule (or `intervals`, or `scheduler`).
    #[serde(default)]
    pub schedule: String,
    #[serde(default)]
    pub intervals: String,
    #[serde(default)]
    pub scheduler: Option<PolicyUseJson>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub keep: KeepJson,
    #[serde(default)]
    pub retention: Option<PolicyUseJson>,
    #[serde(default)]
    pub source: Option<JobSourceJson>,
    #[serde(default)]
    pub verify: bool,
}

impl NewJob {
    /// The job to store, created at `created`; an error says what is
    /// wrong with what the caller sent. (What needs the datastore, the
    /// schedule's and the policies' checks, is `Engine::put_job`'s.)
    pub fn into_job(self, created: i64) -> Result<Job, String> {
        Ok(Job {
            group: BackupGroup::parse(&self.group, &Namespace::root()).map_err(|e| e.to_string())?,
            name: self.name,
            sources: self.sources.into_iter().filter(|s| !s.trim().is_empty()).collect(),
            schedule: self.schedule.trim().to_owned(),
            tags: self.tags.into_iter().filter(|t| !t.trim().is_empty()).collect(),
            keep: self.keep.into(),
            verify: self.verify,
            created,
            intervals: model::backy::parse_intervals(&self.intervals)
                .map_err(|e| format!("intervals: {e}"))?,
            scheduler: self.scheduler.map(PolicyUse::from),
            retention: self.retention.map(PolicyUse::from),
            source: self.source.map(JobSource::from),
        })
    }
}

#[derive(Debug, Serialize)]
pub struct Started {
    pub task: Option<u64>,
    pub already_running: bool,
}

#[derive(Debug, Serialize)]
pub struct TaskJson {
    pub id: u64,
    pub kind: String,
    pub job: Option<String>,
    pub trigger: String,
    pub state: &'static str,
    pub started: String,
    pub finished: Option<String>,
    pub snapshot: Option<String>,
    pub log: Vec<String>,
}

impl From<&Task> for TaskJson {
    fn from(t: &Task) -> Self {
        Self {
            id: t.id,
            kind: t.kind.clone(),
            job: t.job.clone(),
            trigger: t.trigger.clone(),
            state: t.state.as_str(),
            started: model::time::format_rfc3339(t.started),
            finished: t.finished.map(model::time::format_rfc3339),
            snapshot: t.snapshot.clone(),
            log: t.log.clone(),
        }
    }
}
