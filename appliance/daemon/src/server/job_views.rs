//! Dashboard pages for jobs and tasks.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::auth::Caller;
use super::error::{AppError, AppResult};
use super::jobs_api::{self, KeepJson, NewJob};
use super::state::AppState;
use super::views::{Chrome, render};

/// A job as its table rows show it.
pub struct JobRow {
    pub name: String,
    pub group: String,
    pub schedule: String,
    pub sla: &'static str,
    pub newest: String,
    pub next: String,
    pub last_task: Option<u64>,
    pub last_state: &'static str,
}

pub async fn job_rows(state: &AppState, caller: &Caller) -> AppResult<Vec<JobRow>> {
    let t = |v: Option<i64>| v.map_or("—".to_owned(), model::time::format_rfc3339);
    Ok(jobs_api::statuses(state, caller)
        .await?
        .iter()
        .map(|s| JobRow {
            name: s.job.name.clone(),
            group: s.job.group.to_string(),
            schedule: describe_schedule(&s.job),
            sla: s.sla.as_str(),
            newest: t(s.newest_good),
            next: t(s.next_run),
            last_task: s.last_task.as_ref().map(|t| t.id),
            last_state: s.last_task.as_ref().map_or("", |t| t.state.as_str()),
        })
        .collect())
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    chrome: Chrome,
    jobs: Vec<JobRow>,
    message: Option<String>,
}

async fn jobs_page(state: &AppState, caller: &Caller, message: Option<String>) -> AppResult<Response> {
    let jobs = job_rows(state, caller).await?;
    render(&JobsPage { chrome: Chrome::new(state, caller), jobs, message })
}

pub async fn jobs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> AppResult<Response> {
    jobs_page(&state, &caller, None).await
}

/// The new-job form: numbers as text (empty means 0), sources one per line.
#[derive(Debug, Deserialize)]
pub struct JobForm {
    name: String,
    group: String,
    sources: String,
    schedule: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    keep_last: String,
    #[serde(default)]
    keep_daily: String,
    #[serde(default)]
    keep_weekly: String,
    #[serde(default)]
    keep_monthly: String,
    verify: Option<String>,
    /// backy's named intervals instead of a cron schedule.
    #[serde(default)]
    intervals: String,
}

fn count(field: &str, text: &str) -> AppResult<u32> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    text.parse().map_err(|_| AppError::bad_request(format!("{field} must be a whole number, not {text:?}")))
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<JobForm>,
) -> AppResult<Response> {
    let has_intervals = !f.intervals.trim().is_empty();
    let new = NewJob {
        name: f.name.trim().to_owned(),
        group: f.group.trim().to_owned(),
        sources: f.sources.lines().map(|l| l.trim().to_owned()).collect(),
        schedule: f.schedule,
        intervals: f.intervals,
        scheduler: None,
        retention: None,
        source: None,
        tags: f.tags.split([',', ' ']).map(str::to_owned).collect(),
        // With named intervals, their counts keep (the keep fields, which
        // have defaults, are for a cron job).
        keep: if has_intervals {
            KeepJson::default()
        } else {
            KeepJson {
                last: count("keep last", &f.keep_last)?,
                daily: count("keep daily", &f.keep_daily)?,
                weekly: count("keep weekly", &f.keep_weekly)?,
                monthly: count("keep monthly", &f.keep_monthly)?,
                ..KeepJson::default()
            }
        },
        verify: f.verify.is_some(),
    };
    let job = jobs_api::save(&state, new).await?;
    jobs_page(&state, &caller, Some(format!("Saved job {}.", job.name))).await
}

pub async fn run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> AppResult<Response> {
    match jobs_api::start(&state, &caller, &name).await? {
        Some(id) => Ok(Redirect::to(&format!("/tasks/{id}")).into_response()),
        None => jobs_page(&state, &caller, Some(format!("Job {name} is already running."))).await,
    }
}

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    chrome: Chrome,
    id: u64,
    state: &'static str,
    running: bool,
    kind: String,
    job: String,
    trigger: String,
    started: String,
    finished: String,
    snapshot: String,
    snapshot_link: Option<String>,
    log: Vec<String>,
}

pub async fn task(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> AppResult<Response> {
    let t =
        state.engine(move |e| e.task(id)).await.map_err(|_| AppError::not_found(format!("no task {id}")))?;
    let page = TaskPage {
        chrome: Chrome::new(&state, &caller),
        id,
        state: t.state.as_str(),
        running: t.state == model::TaskState::Running,
        kind: t.kind.clone(),
        job: t.job.clone().unwrap_or_else(|| "—".into()),
        trigger: t.trigger.clone(),
        started: model::time::format_rfc3339(t.started),
        finished: t.finished.map_or("—".into(), model::time::format_rfc3339),
        snapshot: t.snapshot.clone().unwrap_or_default(),
        snapshot_link: t
            .snapshot
            .as_deref()
            .and_then(|s| model::SnapshotId::parse(s, &model::Namespace::root()).ok())
            .map(|id| super::views::snapshot_path(&id)),
        log: t.log,
    };
    render(&page)
}

/// How a job is scheduled, in a few words.
pub fn describe_schedule(job: &model::Job) -> String {
    match (&job.scheduler, job.intervals.is_empty()) {
        (Some(p), _) => format!("policy {}", p.name),
        (None, false) => model::backy::format_intervals(&job.intervals),
        (None, true) => job.schedule.clone(),
    }
}
