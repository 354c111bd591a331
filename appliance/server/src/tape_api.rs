//! Tapes from the API and the dashboard: the library (drives, slots,
//! barcodes, pools, media sets, which snapshot is where), pools, and tape
//! backups and restores as tasks with logs, under the worker limit like
//! every task. A restore from the server puts the snapshot back into the
//! datastore (never into a path a caller names).

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};
use engine::jobs::Maintenance;
use model::tape::{Allocation, MediaPool};
use model::{BackupGroup, Namespace, SnapshotId};
use serde::Deserialize;

use super::auth::Caller;
use super::error::{AppError, AppResult, bad_input};
use super::maint_api::start;
use super::page::{Chrome, Flash, render_flash};
use super::state::AppState;
use dto::{PoolJson, Started, TapeLibraryJson};

fn library(state: &AppState) -> AppResult<std::path::PathBuf> {
    state.tape_library().map(std::path::Path::to_path_buf).ok_or_else(|| {
        AppError::not_found("this server has no tape library: set [tape] library in its configuration")
    })
}

/// The library and the media catalog.
async fn read_library(state: &AppState) -> AppResult<TapeLibraryJson> {
    let path = library(state)?;
    state
        .engine(move |e| {
            let lib = tape::Library::open(&path)?;
            let elements = e.tape_inventory(&lib)?;
            let catalog = e.media_catalog()?;
            Ok(TapeLibraryJson {
                library: path.display().to_string(),
                elements,
                catalog: dto::MediaCatalogJson::from(&catalog),
            })
        })
        .await
}

/// `GET /api/v1/tape`.
pub async fn show(State(state): State<AppState>) -> AppResult<Json<TapeLibraryJson>> {
    Ok(Json(read_library(&state).await?))
}

#[derive(Debug, Deserialize)]
pub struct PoolRequest {
    pub name: String,
    /// `continue` (default) or `new-set`.
    #[serde(default)]
    pub allocation: Option<String>,
    /// Seconds a closed set is kept; absent or null: forever.
    #[serde(default)]
    pub retention_secs: Option<i64>,
    #[serde(default)]
    pub worm: bool,
}

fn pool_of(r: &PoolRequest) -> AppResult<MediaPool> {
    let a = r.allocation.as_deref().unwrap_or("continue");
    let allocation = Allocation::parse(a)
        .ok_or_else(|| AppError::bad_request(format!("allocation {a:?}: continue or new-set")))?;
    Ok(MediaPool { name: r.name.trim().to_owned(), allocation, retention: r.retention_secs, worm: r.worm })
}

async fn save_pool(state: &AppState, pool: MediaPool) -> AppResult<PoolJson> {
    state
        .engine(move |e| {
            e.put_pool(&pool).map_err(bad_input)?;
            Ok(PoolJson::from(&pool))
        })
        .await
}

/// `GET /api/v1/tape/pools`.
pub async fn pools(State(state): State<AppState>) -> AppResult<Json<Vec<PoolJson>>> {
    let pools = state.engine(|e| Ok(e.media_catalog()?.pools)).await?;
    Ok(Json(pools.iter().map(PoolJson::from).collect()))
}

/// `POST /api/v1/tape/pools`.
pub async fn put_pool(
    State(state): State<AppState>,
    Json(body): Json<PoolRequest>,
) -> AppResult<(StatusCode, Json<PoolJson>)> {
    let pool = pool_of(&body)?;
    Ok((StatusCode::CREATED, Json(save_pool(&state, pool).await?)))
}

#[derive(Debug, Deserialize)]
pub struct BackupRequest {
    pub pool: String,
    /// Groups (`TYPE/ID`) whose snapshots the pool lacks.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Snapshots (`TYPE/ID/TIME`).
    #[serde(default)]
    pub snapshots: Vec<String>,
    /// With `groups`: only each group's newest snapshot.
    #[serde(default)]
    pub latest: bool,
    #[serde(default)]
    pub ns: String,
    /// Drives to write with at once (default 1).
    #[serde(default)]
    pub drives: Option<usize>,
}

/// The snapshots a backup request names.
async fn chosen(state: &AppState, r: &BackupRequest) -> AppResult<Vec<SnapshotId>> {
    let ns = Namespace::parse(&r.ns)?;
    let mut ids =
        r.snapshots.iter().map(|s| SnapshotId::parse(s.trim(), &ns)).collect::<Result<Vec<_>, _>>()?;
    let groups = r.groups.iter().map(|g| BackupGroup::parse(g.trim(), &ns)).collect::<Result<Vec<_>, _>>()?;
    let latest = r.latest;
    let from_groups = state.engine(move |e| e.snapshots_of_groups(&groups, latest)).await?;
    ids.extend(from_groups);
    if ids.is_empty() {
        return Err(AppError::bad_request("name snapshots or groups with snapshots to write"));
    }
    Ok(ids)
}

async fn start_backup(state: &AppState, caller: &Caller, r: &BackupRequest) -> AppResult<Started> {
    let library = library(state)?;
    let pool = r.pool.trim().to_owned();
    let known = pool.clone();
    if state.engine(move |e| Ok(e.media_catalog()?.pools.iter().all(|p| p.name != known))).await? {
        return Err(AppError::bad_request(format!("there is no media pool {pool}")));
    }
    let ids = chosen(state, r).await?;
    let drives = r.drives.unwrap_or(1).max(1);
    start(state, caller, Maintenance::TapeBackup { library, pool, ids, drives }).await
}

/// `POST /api/v1/tape/backup`: a tape backup task.
pub async fn backup(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<BackupRequest>,
) -> AppResult<(StatusCode, Json<Started>)> {
    Ok((StatusCode::ACCEPTED, Json(start_backup(&state, &caller, &body).await?)))
}

#[derive(Debug, Deserialize)]
pub struct RestoreRequest {
    pub snapshot: String,
    #[serde(default)]
    pub ns: String,
    /// The copy in this pool (default: the newest).
    #[serde(default)]
    pub pool: Option<String>,
}

async fn start_restore(state: &AppState, caller: &Caller, r: &RestoreRequest) -> AppResult<Started> {
    let library = library(state)?;
    let id = SnapshotId::parse(r.snapshot.trim(), &Namespace::parse(&r.ns)?)?;
    let pool = r.pool.clone().filter(|p| !p.trim().is_empty());
    let (lookup, p) = (id.clone(), pool.clone());
    state.engine(move |e| e.tape_copy(&lookup, p.as_deref()).map_err(bad_input)).await?;
    start(state, caller, Maintenance::TapeRestore { library, id, pool }).await
}

/// `POST /api/v1/tape/restore`: a task that puts a snapshot back into the
/// datastore from tape.
pub async fn restore(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<RestoreRequest>,
) -> AppResult<(StatusCode, Json<Started>)> {
    Ok((StatusCode::ACCEPTED, Json(start_restore(&state, &caller, &body).await?)))
}

#[derive(Template)]
#[template(path = "tape.html")]
struct TapePage {
    chrome: Chrome,
    /// `None` when the server has no library.
    lib: Option<TapeLibraryJson>,
    groups: Vec<String>,
    flash: Flash,
}

impl TapePage {
    fn size(&self, bytes: &u64) -> String {
        model::human::size(*bytes)
    }

    fn when(&self, t: &Option<i64>) -> String {
        t.map(model::time::format_rfc3339).unwrap_or_default()
    }

    fn at(&self, t: &i64) -> String {
        model::time::format_rfc3339(*t)
    }

    fn retention(&self, p: &PoolJson) -> String {
        p.retention_secs.map_or_else(|| "forever".to_owned(), model::backy::format_duration)
    }

    fn short<'a>(&self, id: &'a str) -> &'a str {
        id.get(..8).unwrap_or(id)
    }
}

async fn tape_page(state: &AppState, caller: &Caller, flash: Flash) -> AppResult<Response> {
    let lib = match state.tape_library() {
        Some(_) => Some(read_library(state).await?),
        None => None,
    };
    let groups = state
        .engine(|e| {
            let mut g: Vec<String> = e.snapshots(None)?.iter().map(|s| s.id.group.to_string()).collect();
            g.dedup();
            g.sort();
            g.dedup();
            Ok(g)
        })
        .await?;
    let page = TapePage { chrome: Chrome::new(state, caller), lib, groups, flash };
    render_flash(&page, &page.flash)
}

/// `GET /tape`: the library page.
pub async fn page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> AppResult<Response> {
    tape_page(&state, &caller, Flash::default()).await
}

#[derive(Debug, Deserialize)]
pub struct BackupForm {
    pool: String,
    group: String,
    #[serde(default)]
    latest: Option<String>,
}

/// Where a started task is shown (the library page while one like it
/// runs already).
fn to_task(started: Started) -> AppResult<Response> {
    Ok(match started.task {
        Some(id) => Redirect::to(&format!("/tasks/{id}")).into_response(),
        None => Redirect::to("/tape").into_response(),
    })
}

/// `POST /tape/backup`: the page's backup form.
pub async fn backup_form(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<BackupForm>,
) -> AppResult<Response> {
    let r = BackupRequest {
        pool: f.pool,
        groups: vec![f.group],
        snapshots: Vec::new(),
        latest: f.latest.is_some(),
        ns: String::new(),
        drives: None,
    };
    match start_backup(&state, &caller, &r).await {
        Ok(started) => to_task(started),
        Err(e) => tape_page(&state, &caller, Flash::refused(e)?).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct RestoreForm {
    snapshot: String,
}

/// `POST /tape/restore`: the page's restore buttons.
pub async fn restore_form(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<RestoreForm>,
) -> AppResult<Response> {
    let r = RestoreRequest { snapshot: f.snapshot, ns: String::new(), pool: None };
    match start_restore(&state, &caller, &r).await {
        Ok(started) => to_task(started),
        Err(e) => tape_page(&state, &caller, Flash::refused(e)?).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct PoolForm {
    name: String,
    allocation: String,
    /// `30d`, `12w`, or empty for forever.
    #[serde(default)]
    retention: String,
    #[serde(default)]
    worm: Option<String>,
}

/// `POST /tape/pools`: the page's pool form (admins).
pub async fn pool_form(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<PoolForm>,
) -> AppResult<Response> {
    let outcome = async {
        let retention = match f.retention.trim() {
            "" | "forever" => None,
            t => Some(model::backy::parse_duration(t).ok_or_else(|| {
                AppError::bad_request(format!(
                    "retention {t:?}: a time such as 30d or 12w, or empty for forever"
                ))
            })?),
        };
        let r = PoolRequest {
            name: f.name.clone(),
            allocation: Some(f.allocation.clone()),
            retention_secs: retention,
            worm: f.worm.is_some(),
        };
        let pool = save_pool(&state, pool_of(&r)?).await?;
        Ok(format!("Saved pool {}", pool.name))
    }
    .await;
    tape_page(&state, &caller, Flash::outcome(outcome)?).await
}
