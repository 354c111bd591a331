//! Changing snapshots and running maintenance from the API and the
//! dashboard: notes, delete, verify, prune and gc (the last three as tasks
//! under the worker limit, like job runs).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};
use engine::jobs::Maintenance;
use model::prune::KeepRules;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::error::{AppError, AppResult};
use super::input::{NsQuery, snapshot_id};
use super::page::{group_page_path, snapshot_path};
use super::state::AppState;
use dto::SnapshotJson;
use dto::{KeepJson, Started};

/// Queue `what` as a task started by `caller`.
pub async fn start(state: &AppState, caller: &Caller, what: Maintenance) -> AppResult<Started> {
    let task = state.runner().start_maintenance(what, &format!("manual ({})", caller.name)).await?;
    Ok(Started { task, already_running: task.is_none() })
}

/// `DELETE /api/v1/snapshots/{type}/{id}/{time}`.
pub async fn delete_snapshot(
    State(state): State<AppState>,
    Path((kind, id, time)): Path<(String, String, String)>,
    Query(q): Query<NsQuery>,
) -> AppResult<StatusCode> {
    let sid = snapshot_id(&kind, &id, &time, &q.ns)?;
    state.engine(move |e| e.remove_snapshot(&sid)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct NotesJson {
    pub notes: String,
}

/// `PUT /api/v1/snapshots/{type}/{id}/{time}/notes`.
pub async fn set_notes(
    State(state): State<AppState>,
    Path((kind, id, time)): Path<(String, String, String)>,
    Query(q): Query<NsQuery>,
    Json(body): Json<NotesJson>,
) -> AppResult<Json<SnapshotJson>> {
    let sid = snapshot_id(&kind, &id, &time, &q.ns)?;
    let info = state
        .engine(move |e| {
            e.set_notes(&sid, &body.notes)?;
            e.snapshot(&sid)
        })
        .await?;
    Ok(Json(SnapshotJson::from(&info)))
}

/// `POST /api/v1/snapshots/{type}/{id}/{time}/verify`: a verify task.
pub async fn verify_snapshot(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((kind, id, time)): Path<(String, String, String)>,
    Query(q): Query<NsQuery>,
) -> AppResult<(StatusCode, Json<Started>)> {
    let sid = snapshot_id(&kind, &id, &time, &q.ns)?;
    let lookup = sid.clone();
    state.engine(move |e| e.snapshot(&lookup)).await?;
    Ok((StatusCode::ACCEPTED, Json(start(&state, &caller, Maintenance::Verify(vec![sid])).await?)))
}

#[derive(Debug, Deserialize)]
pub struct PruneJson {
    #[serde(default)]
    pub keep: KeepJson,
    /// Only say what would happen.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize)]
pub struct DecisionJson {
    pub id: String,
    pub keep: bool,
    pub reason: String,
}

/// `POST /api/v1/groups/{type}/{id}/prune`: the decisions of a dry run, or
/// a prune task.
pub async fn prune_group(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((kind, id)): Path<(String, String)>,
    Query(q): Query<NsQuery>,
    Json(body): Json<PruneJson>,
) -> AppResult<Response> {
    let group = model::BackupGroup::parse(&format!("{kind}/{id}"), &model::Namespace::parse(&q.ns)?)?;
    let keep = KeepRules::from(body.keep);
    if keep.is_empty() {
        return Err(AppError::bad_request(
            "give at least one keep rule (prune would otherwise keep everything)",
        ));
    }
    if body.dry_run {
        let g = group.clone();
        let decisions = state.engine(move |e| e.prune(&g, &keep, true)).await?;
        let out: Vec<DecisionJson> = decisions
            .into_iter()
            .map(|d| DecisionJson { id: d.id.to_string(), keep: d.keep, reason: d.reason })
            .collect();
        return Ok(Json(out).into_response());
    }
    let started = start(&state, &caller, Maintenance::Prune { group, keep }).await?;
    Ok((StatusCode::ACCEPTED, Json(started)).into_response())
}

/// `POST /api/v1/gc`: a garbage collection task.
pub async fn gc(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> AppResult<(StatusCode, Json<Started>)> {
    Ok((StatusCode::ACCEPTED, Json(start(&state, &caller, Maintenance::Gc).await?)))
}

/// Where a started task is shown (or the fallback while it is already running).
fn task_page(started: &Started, fallback: &str) -> Response {
    match started.task {
        Some(id) => Redirect::to(&format!("/tasks/{id}")).into_response(),
        None => Redirect::to(fallback).into_response(),
    }
}

/// The snapshot page's "Verify" button.
pub async fn verify_form(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((kind, id, time)): Path<(String, String, String)>,
    Query(q): Query<NsQuery>,
) -> AppResult<Response> {
    let sid = snapshot_id(&kind, &id, &time, &q.ns)?;
    let back = snapshot_path(&sid);
    let started = start(&state, &caller, Maintenance::Verify(vec![sid])).await?;
    Ok(task_page(&started, &back))
}

#[derive(Debug, Deserialize)]
pub struct DeleteForm {
    /// The confirmation checkbox.
    #[serde(default)]
    confirm: Option<String>,
}

/// The snapshot page's "Delete" button (with its confirmation box).
pub async fn delete_form(
    State(state): State<AppState>,
    Path((kind, id, time)): Path<(String, String, String)>,
    Query(q): Query<NsQuery>,
    Form(f): Form<DeleteForm>,
) -> AppResult<Response> {
    let sid = snapshot_id(&kind, &id, &time, &q.ns)?;
    if f.confirm.is_none() {
        return Err(AppError::bad_request("tick the confirmation box to delete the snapshot"));
    }
    let back = group_page_path(&sid.group);
    state.engine(move |e| e.remove_snapshot(&sid)).await?;
    Ok(Redirect::to(&back).into_response())
}

#[derive(Debug, Deserialize)]
pub struct NotesForm {
    notes: String,
}

/// The snapshot page's notes form.
pub async fn notes_form(
    State(state): State<AppState>,
    Path((kind, id, time)): Path<(String, String, String)>,
    Query(q): Query<NsQuery>,
    Form(f): Form<NotesForm>,
) -> AppResult<Response> {
    let sid = snapshot_id(&kind, &id, &time, &q.ns)?;
    let back = snapshot_path(&sid);
    state.engine(move |e| e.set_notes(&sid, &f.notes)).await?;
    Ok(Redirect::to(&back).into_response())
}
