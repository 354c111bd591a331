//! JSON handlers for jobs and tasks.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
pub use dto::{HIDDEN, JobJson, NewJob, Started, TaskJson};
use model::{Job, Role};
use serde::Deserialize;

use super::auth::Caller;
use super::error::bad_input;
use super::error::{AppError, AppResult};
use super::state::{AppState, now};

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

/// Create or replace a job (a replaced job keeps its creation time). Its
/// paths must satisfy the server's rules: admins may name any path but the
/// server's own data, operators only paths under `[jobs] source_roots`.
pub async fn save(state: &AppState, caller: &Caller, new: NewJob) -> AppResult<Job> {
    let name = new.name.clone();
    let created = state.engine(move |e| Ok(e.job(&name).map_or(now(), |j| j.created))).await?;
    let job = new.into_job(created).map_err(AppError::bad_request)?;
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
