//! JSON handlers of `/api/v1`: each extracts, makes one engine call and
//! returns a DTO.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use engine::access::TokenSpec;
use model::{BackupGroup, Namespace, Role, SnapshotId, SnapshotInfo, SnapshotSummary};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::error::{AppError, AppResult, bad_input};
use super::input::{NsQuery, PathQuery, parse_group, parse_role, snapshot_id};
use super::state::{AppState, now};
use dto::{ListedJson, SnapshotJson, TokenJson, UserJson};

pub async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(Debug, Serialize)]
pub struct StatusJson {
    pub version: &'static str,
    /// The datastore's path and its file system's size: not for backup
    /// clients, who see only their own groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datastore: Option<String>,
    pub snapshots: usize,
    pub groups: usize,
    /// Logical bytes of every snapshot.
    pub logical_bytes: u64,
    /// Bytes the snapshots added to the chunk store when made.
    pub stored_bytes: u64,
    pub dedup_factor: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_total_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_free_bytes: Option<u64>,
    pub fingerprint: Option<String>,
}

/// Summaries of the snapshots a caller may see.
pub async fn visible_summaries(state: &AppState, caller: &Caller) -> AppResult<Arc<Vec<SnapshotSummary>>> {
    let all = state.summaries().await?;
    if caller.role != Role::BackupClient {
        return Ok(all);
    }
    Ok(Arc::new(all.iter().filter(|s| caller.may(&s.id.group)).cloned().collect()))
}

/// Datastore figures, shared by the status route, metrics and the overview page.
pub async fn status_of(state: &AppState, caller: &Caller) -> AppResult<StatusJson> {
    status_from(state, caller, &visible_summaries(state, caller).await?).await
}

/// Datastore figures from summaries already read; the datastore's path and
/// disk only for callers who see the whole datastore.
pub async fn status_from(
    state: &AppState,
    caller: &Caller,
    all: &[SnapshotSummary],
) -> AppResult<StatusJson> {
    let whole = caller.role != Role::BackupClient;
    let (disk, root) = if whole {
        let (disk, root) =
            state.engine(|e| Ok((e.disk_space()?, e.datastore().root().display().to_string()))).await?;
        (Some(disk), Some(root))
    } else {
        (None, None)
    };
    let logical: u64 = all.iter().map(|s| s.size).sum();
    let stored: u64 = all.iter().map(|s| s.stored).sum();
    let groups: std::collections::BTreeSet<_> = all.iter().map(|s| &s.id.group).collect();
    Ok(StatusJson {
        version: env!("CARGO_PKG_VERSION"),
        datastore: root,
        snapshots: all.len(),
        groups: groups.len(),
        logical_bytes: logical,
        stored_bytes: stored,
        dedup_factor: if stored == 0 { 1.0 } else { logical as f64 / stored as f64 },
        disk_total_bytes: disk.map(|d| d.0),
        disk_free_bytes: disk.map(|d| d.1),
        fingerprint: state.fingerprint().map(str::to_owned),
    })
}

pub async fn status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> AppResult<Json<StatusJson>> {
    Ok(Json(status_of(&state, &caller).await?))
}

/// The snapshots a caller may see, of one group or all, as the API lists
/// them (straight from the cached rows).
pub async fn visible_snapshots(
    state: &AppState,
    caller: &Caller,
    group: Option<BackupGroup>,
) -> AppResult<Vec<SnapshotJson>> {
    if let Some(g) = &group {
        caller.check(g)?;
    }
    let all = state.snapshots().await?;
    Ok(all
        .iter()
        .filter(|s| group.as_ref().is_none_or(|g| s.id.group == *g) && caller.may(&s.id.group))
        .map(SnapshotJson::from)
        .collect())
}

#[derive(Debug, Serialize)]
pub struct GroupJson {
    pub ns: String,
    /// `[ns/NAME/]TYPE/ID`.
    pub group: String,
    /// `TYPE/ID`: the group in API and page paths (with `?ns=`).
    pub path: String,
    pub snapshots: usize,
    pub last: String,
    pub last_verify: &'static str,
    pub size: u64,
    pub stored: u64,
}

/// Groups with their snapshot counts, from a list of snapshots (sorted by group).
pub fn groups_of(snaps: &[SnapshotSummary]) -> Vec<GroupJson> {
    let mut out: BTreeMap<(String, String), GroupJson> = BTreeMap::new();
    for s in snaps {
        let key = (s.id.group.ns.to_string(), s.id.group.to_string());
        let g = out.entry(key.clone()).or_insert_with(|| GroupJson {
            path: format!("{}/{}", s.id.group.kind, s.id.group.id),
            ns: key.0,
            group: key.1,
            snapshots: 0,
            last: String::new(),
            last_verify: "none",
            size: 0,
            stored: 0,
        });
        g.snapshots += 1;
        g.last = s.id.time_text();
        g.last_verify = s.verify.as_str();
        g.size = s.size;
        g.stored += s.stored;
    }
    out.into_values().collect()
}

pub async fn groups(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> AppResult<Json<Vec<GroupJson>>> {
    Ok(Json(groups_of(&visible_summaries(&state, &caller).await?)))
}

/// `?group=TYPE/ID&ns=&offset=&limit=` (paging needs a group; the total
/// comes back in `x-total-count`).
#[derive(Debug, Deserialize)]
pub struct SnapshotsQuery {
    pub group: Option<String>,
    #[serde(default)]
    pub ns: String,
    pub offset: Option<usize>,
    pub limit: Option<usize>,
}

pub async fn snapshots(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<SnapshotsQuery>,
) -> AppResult<Response> {
    let group = match &q.group {
        Some(g) => Some(BackupGroup::parse(g, &Namespace::parse(&q.ns)?)?),
        None => None,
    };
    let (list, total) = match (group, q.offset.is_some() || q.limit.is_some()) {
        (Some(g), true) => {
            caller.check(&g)?;
            let (offset, limit) = (q.offset.unwrap_or(0), q.limit.unwrap_or(usize::MAX));
            let (page, total) = state.engine(move |e| e.snapshot_page(&g, false, offset, limit)).await?;
            (page.iter().map(SnapshotJson::from).collect(), total)
        }
        (None, true) => return Err(AppError::bad_request("offset and limit need a group")),
        (group, false) => {
            let list = visible_snapshots(&state, &caller, group).await?;
            let n = list.len();
            (list, n)
        }
    };
    let mut res = Json(list).into_response();
    res.headers_mut().insert("x-total-count", HeaderValue::from(total));
    Ok(res)
}

/// Look up one snapshot the caller may see.
async fn one(state: &AppState, caller: &Caller, id: SnapshotId) -> AppResult<SnapshotInfo> {
    caller.check(&id.group)?;
    state.engine(move |e| e.snapshot(&id)).await
}

pub async fn snapshot(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((kind, id, time)): Path<(String, String, String)>,
    Query(q): Query<NsQuery>,
) -> AppResult<Json<SnapshotJson>> {
    let id = snapshot_id(&kind, &id, &time, &q.ns)?;
    Ok(Json(SnapshotJson::from(&one(&state, &caller, id).await?)))
}

async fn set_protected(state: AppState, id: SnapshotId, protected: bool) -> AppResult<Json<SnapshotJson>> {
    let info = state
        .engine(move |e| {
            e.set_protected(&id, protected)?;
            e.snapshot(&id)
        })
        .await?;
    Ok(Json(SnapshotJson::from(&info)))
}

pub async fn protect(
    State(state): State<AppState>,
    Path((kind, id, time)): Path<(String, String, String)>,
    Query(q): Query<NsQuery>,
) -> AppResult<Json<SnapshotJson>> {
    set_protected(state, snapshot_id(&kind, &id, &time, &q.ns)?, true).await
}

pub async fn unprotect(
    State(state): State<AppState>,
    Path((kind, id, time)): Path<(String, String, String)>,
    Query(q): Query<NsQuery>,
) -> AppResult<Json<SnapshotJson>> {
    set_protected(state, snapshot_id(&kind, &id, &time, &q.ns)?, false).await
}

pub async fn files(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((kind, id, time)): Path<(String, String, String)>,
    Query(q): Query<PathQuery>,
) -> AppResult<Json<Vec<ListedJson>>> {
    let id = snapshot_id(&kind, &id, &time, &q.ns)?;
    caller.check(&id.group)?;
    let path = q.path;
    let items = state.engine(move |e| e.list(&id, Some(path.as_bytes()), false)).await?;
    Ok(Json(items.iter().map(ListedJson::new).collect()))
}

/// Stream one file of a snapshot.
pub async fn download(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((kind, id, time)): Path<(String, String, String)>,
    Query(q): Query<PathQuery>,
) -> AppResult<Response> {
    let id = snapshot_id(&kind, &id, &time, &q.ns)?;
    caller.check(&id.group)?;
    let path = q.path.clone();
    let (entry, reader) = state.engine(move |e| e.open_file(&id, path.as_bytes())).await?;
    let size = reader.size();
    let body = Body::from_stream(super::stream::from_reader(reader));
    let name =
        String::from_utf8_lossy(entry.path.rsplit(|c| *c == b'/').next().unwrap_or(b"file")).into_owned();
    let mut res = attachment(body, &name, "application/octet-stream");
    res.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    Ok(res)
}

/// A download answer: the body with its type and a file name to save as.
fn attachment(body: Body, file_name: &str, content_type: &'static str) -> Response {
    let disposition =
        format!("attachment; filename*=UTF-8''{}", super::input::urlencoding(file_name).replace('/', "%2F"));
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

/// `GET …/tar?path=ARCHIVE/dir`: a directory (or a whole archive) as a
/// tar stream.
pub async fn download_tar(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((kind, id, time)): Path<(String, String, String)>,
    Query(q): Query<PathQuery>,
    request: Option<Extension<super::finish::RequestId>>,
) -> AppResult<Response> {
    let id = snapshot_id(&kind, &id, &time, &q.ns)?;
    caller.check(&id.group)?;
    let path = q.path.clone();
    // Answer "no such path" as an error status before streaming starts.
    let (check_id, check_path) = (id.clone(), path.clone());
    state.engine(move |e| e.list(&check_id, Some(check_path.as_bytes()), false)).await?;
    let request = request.map(|Extension(r)| r.0).unwrap_or_default();
    let body = Body::from_stream(super::stream::from_writer(move |out| {
        let engine = state.engine_handle();
        let report = engine.write_tar(&id, path.as_bytes(), out)?;
        for (name, why) in &report.refused {
            tracing::warn!(request = %request, snapshot = %id, "tar download: left out {name}: {why}");
        }
        if report.refused_count > 0 {
            tracing::warn!(
                request = %request,
                snapshot = %id,
                "tar download: left out {} entries that would be written through a non-directory, \
                 twice or out of order; the snapshot's metadata is damaged or hostile",
                report.refused_count
            );
        }
        Ok(())
    }));
    let last = q.path.trim_matches('/').rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or("snapshot");
    Ok(attachment(body, &format!("{last}.tar"), "application/x-tar"))
}

pub async fn users(State(state): State<AppState>) -> AppResult<Json<Vec<UserJson>>> {
    let users = state.engine(|e| e.users()).await?;
    Ok(Json(users.iter().map(UserJson::from).collect()))
}

#[derive(Debug, Deserialize)]
pub struct NewUser {
    pub name: String,
    pub password: String,
    pub role: String,
}

pub async fn set_user(State(state): State<AppState>, Json(u): Json<NewUser>) -> AppResult<Json<UserJson>> {
    let role = parse_role(&u.role)?;
    let user =
        state.engine(move |e| e.set_password(&u.name, &u.password, role, now()).map_err(bad_input)).await?;
    Ok(Json(UserJson::from(&user)))
}

pub async fn remove_user(State(state): State<AppState>, Path(name): Path<String>) -> AppResult<Json<bool>> {
    let gone = state.engine(move |e| e.remove_user(&name, now()).map_err(bad_input)).await?;
    state.forget_tokens();
    Ok(Json(gone))
}

pub async fn tokens(State(state): State<AppState>) -> AppResult<Json<Vec<TokenJson>>> {
    let tokens = state.engine(|e| e.tokens()).await?;
    Ok(Json(tokens.iter().map(TokenJson::from).collect()))
}

#[derive(Debug, Deserialize)]
pub struct NewToken {
    pub name: String,
    pub role: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

pub async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(t): Json<NewToken>,
) -> AppResult<Json<TokenJson>> {
    Ok(Json(make_token(&state, &caller, t).await?))
}

/// Shared by the API and the users page.
pub async fn make_token(state: &AppState, caller: &Caller, t: NewToken) -> AppResult<TokenJson> {
    let spec = TokenSpec {
        name: t.name,
        owner: caller.name.clone(),
        role: parse_role(&t.role)?,
        groups: t
            .groups
            .iter()
            .filter(|g| !g.trim().is_empty())
            .map(|g| parse_group(g))
            .collect::<Result<_, _>>()?,
        expires: None,
    };
    let (text, token) = state.engine(move |e| e.create_token(&spec, now()).map_err(bad_input)).await?;
    Ok(TokenJson { token: Some(text), ..TokenJson::from(&token) })
}

pub async fn revoke_token(State(state): State<AppState>, Path(id): Path<String>) -> AppResult<Json<bool>> {
    let gone = state.engine(move |e| e.revoke_token(&id)).await?;
    state.forget_tokens();
    Ok(Json(gone))
}
