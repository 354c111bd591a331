//! JSON handlers for jobs and tasks.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use model::prune::KeepRules;
use std::collections::BTreeMap;

use model::{Job, JobSource, PolicyUse, Role, Task};
use serde::{Deserialize, Serialize};

use super::api::{bad_input, parse_group};
use super::auth::Caller;
use super::error::{AppError, AppResult};
use super::state::{AppState, now};

#[derive(Debug, Serialize)]
pub struct JobJson {
    pub name: String,
    pub group: String,
    pub sources: Vec<String>,
    pub schedule: String,
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

impl From<&engine::jobs::JobStatus> for JobJson {
    fn from(s: &engine::jobs::JobStatus) -> Self {
        let t = model::time::format_rfc3339;
        let j = &s.job;
        Self {
            name: j.name.clone(),
            group: j.group.to_string(),
            sources: j.sources.clone(),
            schedule: j.schedule.clone(),
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

/// Job statuses the caller may see.
pub async fn statuses(state: &AppState, caller: &Caller) -> AppResult<Vec<engine::jobs::JobStatus>> {
    let all = state.engine(|e| e.job_statuses(now())).await?;
    Ok(all.into_iter().filter(|s| caller.may(&s.job.group)).collect())
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> AppResult<Json<Vec<JobJson>>> {
    let mut jobs: Vec<JobJson> = statuses(&state, &caller).await?.iter().map(JobJson::from).collect();
    // Parameters may hold credentials (an Authorization header for a
    // source handler): only those who may change jobs see their values.
    if !matches!(caller.role, model::Role::Admin | model::Role::Operator) {
        for j in &mut jobs {
            let params = [&mut j.scheduler, &mut j.retention].into_iter().flatten().map(|p| &mut p.params);
            for p in params.chain(j.source.iter_mut().map(|s| &mut s.params)) {
                p.values_mut().for_each(|v| *v = HIDDEN.into());
            }
        }
    }
    Ok(Json(jobs))
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
    pub fn into_job(self, created: i64) -> AppResult<Job> {
        Ok(Job {
            group: parse_group(&self.group)?,
            name: self.name,
            sources: self.sources.into_iter().filter(|s| !s.trim().is_empty()).collect(),
            schedule: self.schedule.trim().to_owned(),
            tags: self.tags.into_iter().filter(|t| !t.trim().is_empty()).collect(),
            keep: self.keep.into(),
            verify: self.verify,
            created,
            intervals: model::backy::parse_intervals(&self.intervals)
                .map_err(|e| AppError::bad_request(format!("intervals: {e}")))?,
            scheduler: self.scheduler.map(PolicyUse::from),
            retention: self.retention.map(PolicyUse::from),
            source: self.source.map(checked_source).transpose()?,
        })
    }
}

/// A source handler's grants as a job keeps them: hosts as `HOST:PORT`,
/// an absolute directory.
fn checked_source(s: JobSourceJson) -> AppResult<JobSource> {
    if s.grant_dir.as_ref().is_some_and(|d| !d.starts_with('/')) {
        return Err(AppError::bad_request("source.grant_dir must be an absolute path"));
    }
    if s.max_bytes == Some(0) {
        return Err(AppError::bad_request("source.max_bytes must be at least 1 (or absent: no limit)"));
    }
    jobhost::sources::grants(&s.allow_hosts, None).map_err(|e| AppError::bad_request(format!("{e:#}")))?;
    Ok(s.into())
}

/// Create or replace a job (a replaced job keeps its creation time). Its
/// paths must satisfy the server's rules: admins may name any path but the
/// server's own data, operators only paths under `[jobs] source_roots`.
pub async fn save(state: &AppState, caller: &Caller, new: NewJob) -> AppResult<Job> {
    let name = new.name.clone();
    let created = state.engine(move |e| Ok(e.job(&name).map_or(now(), |j| j.created))).await?;
    let job = new.into_job(created)?;
    state.job_paths().check_job(&job, caller.role == Role::Admin).map_err(|e| AppError::forbidden(e.0))?;
    let saved = job.clone();
    state.engine(move |e| e.put_job(&job).map_err(bad_input)).await?;
    Ok(saved)
}

pub async fn put(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(new): Json<NewJob>,
) -> AppResult<(StatusCode, Json<String>)> {
    let job = save(&state, &caller, new).await?;
    Ok((StatusCode::CREATED, Json(job.name)))
}

pub async fn remove(State(state): State<AppState>, Path(name): Path<String>) -> AppResult<Json<bool>> {
    Ok(Json(state.engine(move |e| e.remove_job(&name)).await?))
}

#[derive(Debug, Serialize)]
pub struct Started {
    pub task: Option<u64>,
    pub already_running: bool,
}

/// Job `name`, if the caller may use its group.
pub async fn job(state: &AppState, caller: &Caller, name: &str) -> AppResult<Job> {
    let n = name.to_owned();
    let job = state
        .engine(move |e| e.job(&n))
        .await
        .map_err(|_| AppError::not_found(format!("no job named {name}")))?;
    caller.check(&job.group)?;
    Ok(job)
}

/// Start a job now; shared with the dashboard's button.
pub async fn start(state: &AppState, caller: &Caller, name: &str) -> AppResult<Option<u64>> {
    job(state, caller, name).await?;
    state.runner().start(name, &format!("manual ({})", caller.name)).await.map_err(AppError::from)
}

pub async fn run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> AppResult<(StatusCode, Json<Started>)> {
    let task = start(&state, &caller, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(Started { task, already_running: task.is_none() })))
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

#[derive(Debug, Deserialize)]
pub struct TasksQuery {
    pub job: Option<String>,
    pub limit: Option<usize>,
}

pub async fn tasks(
    State(state): State<AppState>,
    Query(q): Query<TasksQuery>,
) -> AppResult<Json<Vec<TaskJson>>> {
    let limit = q.limit.unwrap_or(100).min(10_000);
    let list = state.engine(move |e| e.tasks(limit, q.job.as_deref())).await?;
    Ok(Json(list.iter().map(TaskJson::from).collect()))
}

pub async fn task(State(state): State<AppState>, Path(id): Path<u64>) -> AppResult<Json<TaskJson>> {
    let t =
        state.engine(move |e| e.task(id)).await.map_err(|_| AppError::not_found(format!("no task {id}")))?;
    Ok(Json(TaskJson::from(&t)))
}
