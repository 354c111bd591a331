//! The remote backup protocol's handlers (see `crate::protocol`): backup
//! sessions that receive chunks, indexes and a manifest, and reader
//! sessions that serve one snapshot's indexes and chunks.
//!
//! Invariants: a session belongs to the caller who opened it (anyone else
//! gets 404); a backup session's writer holds the group lock and its
//! journal until `finish` commits or the session ends (abort, idle expiry,
//! shutdown), and dropping it leaves nothing visible; chunk uploads are
//! checked against their digest before they are stored, and the answer is
//! the same whether the store had the chunk or not.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine::target::SnapshotRead;
use engine::{ChunkId, DynamicIndex, FixedIndex, IndexRef, Manifest, Writer, check_blob};
use model::{BackupGroup, Namespace, Role, SnapshotId};

use super::auth::Caller;
use super::error::{AppError, AppResult};
use super::state::AppState;
use crate::protocol::{
    BackupSession, BackupStart, Finished, ReaderSession, ReaderStart, StoreSettings, index_name_ok,
};

/// How many sessions one server keeps open at once.
const MAX_SESSIONS: usize = 256;

/// The open sessions of a server.
#[derive(Default)]
pub struct Sessions {
    backups: Mutex<HashMap<String, Arc<Upload>>>,
    readers: Mutex<HashMap<String, Arc<Reading>>>,
}

/// A backup in progress.
struct Upload {
    owner: String,
    time: i64,
    group: BackupGroup,
    /// `None` once finished or aborted.
    writer: RwLock<Option<Writer>>,
    /// Chunks of the group's previous snapshot: what the client may name
    /// without uploading.
    known: HashSet<ChunkId>,
    uploaded: Mutex<HashSet<ChunkId>>,
    indexes: Mutex<HashMap<String, IndexRef>>,
    touched: Mutex<Instant>,
}

/// A snapshot opened for reading.
struct Reading {
    owner: String,
    id: SnapshotId,
    manifest: Manifest,
    chunks: HashSet<ChunkId>,
    touched: Mutex<Instant>,
}

impl Sessions {
    /// Drop sessions idle for longer than `idle`; returns how many.
    pub fn expire(&self, idle: Duration) -> usize {
        let fresh = |t: &Mutex<Instant>| t.lock().expect("lock").elapsed() < idle;
        let mut backups = self.backups.lock().expect("lock");
        let before = backups.len();
        backups.retain(|id, s| {
            let keep = fresh(&s.touched);
            if !keep {
                tracing::warn!(session = %id, group = %s.group, "backup session idle too long: aborted");
            }
            keep
        });
        let mut n = before - backups.len();
        let mut readers = self.readers.lock().expect("lock");
        let before = readers.len();
        readers.retain(|_, s| fresh(&s.touched));
        n += before - readers.len();
        n
    }

    /// Abort every backup in progress (shutdown).
    pub fn clear(&self) {
        self.backups.lock().expect("lock").clear();
        self.readers.lock().expect("lock").clear();
    }

    fn backup(&self, caller: &Caller, id: &str) -> AppResult<Arc<Upload>> {
        let s = self.backups.lock().expect("lock").get(id).cloned();
        owned(s, caller, |u| (&u.owner, &u.touched))
            .ok_or_else(|| AppError::not_found(format!("no backup session {id}")))
    }

    fn reader(&self, caller: &Caller, id: &str) -> AppResult<Arc<Reading>> {
        let s = self.readers.lock().expect("lock").get(id).cloned();
        owned(s, caller, |r| (&r.owner, &r.touched))
            .ok_or_else(|| AppError::not_found(format!("no reader session {id}")))
    }

    fn room(&self) -> AppResult<()> {
        let n = self.backups.lock().expect("lock").len() + self.readers.lock().expect("lock").len();
        if n >= MAX_SESSIONS {
            return Err(AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many open backup and reader sessions; retry later",
            ));
        }
        Ok(())
    }
}

/// The session if `caller` opened it, marked as just used; `None` for
/// anyone else (who must not learn that it exists).
fn owned<T>(
    session: Option<Arc<T>>,
    caller: &Caller,
    lease: impl Fn(&T) -> (&String, &Mutex<Instant>),
) -> Option<Arc<T>> {
    let s = session?;
    let (owner, touched) = lease(&s);
    if *owner != caller.principal {
        return None;
    }
    *touched.lock().expect("lock") = Instant::now();
    Some(s)
}

fn session_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

fn parse_chunk(text: &str) -> AppResult<ChunkId> {
    ChunkId::from_hex(text).ok_or_else(|| AppError::bad_request(format!("{text:?} is not a chunk id")))
}

/// Open a reader session over a snapshot whose manifest is known.
fn open_reader(
    state: &AppState,
    caller: &Caller,
    id: SnapshotId,
    manifest: Manifest,
    chunks: HashSet<ChunkId>,
) -> ReaderSession {
    let session = session_id();
    let reading = Reading {
        owner: caller.principal.clone(),
        id: id.clone(),
        manifest: manifest.clone(),
        chunks,
        touched: Mutex::new(Instant::now()),
    };
    state.sessions().readers.lock().expect("lock").insert(session.clone(), Arc::new(reading));
    ReaderSession { session, snapshot: id.to_string(), manifest }
}

/// `POST /api/v1/backup`: open a backup session for a group.
pub async fn start_backup(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<BackupStart>,
) -> AppResult<Json<BackupSession>> {
    let group = BackupGroup::parse(&req.group, &Namespace::root())?;
    if caller.role == Role::Auditor {
        return Err(AppError::forbidden("auditors may read but not back up"));
    }
    caller.check(&group)?;
    state.sessions().room()?;
    let time = req.time;
    let g = group.clone();
    let (writer, previous, known, settings) = state
        .engine(move |e| {
            let (writer, previous) = e.begin_remote_backup(&g, time)?;
            let known = match &previous {
                Some((id, m)) => e.datastore().chunk_ids(id, m)?,
                None => HashSet::new(),
            };
            Ok((writer, previous, known, StoreSettings::from(e.datastore().config())))
        })
        .await?;
    let previous = previous.map(|(id, m)| open_reader(&state, &caller, id, m, known.clone()));
    let session = session_id();
    let snapshot = group.at(time).to_string();
    tracing::info!(session = %session, snapshot = %snapshot, by = %caller.name, "backup session opened");
    let upload = Upload {
        owner: caller.principal.clone(),
        time,
        group,
        writer: RwLock::new(Some(writer)),
        known,
        uploaded: Mutex::new(HashSet::new()),
        indexes: Mutex::new(HashMap::new()),
        touched: Mutex::new(Instant::now()),
    };
    state.sessions().backups.lock().expect("lock").insert(session.clone(), Arc::new(upload));
    Ok(Json(BackupSession { session, snapshot, settings, previous }))
}

/// Run `call` with the session's writer, off the async workers.
async fn with_writer<T, F>(upload: Arc<Upload>, call: F) -> AppResult<T>
where
    T: Send + 'static,
    F: FnOnce(&Upload, &Writer) -> AppResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let guard = upload.writer.read().expect("lock");
        let writer = guard.as_ref().ok_or_else(|| AppError::not_found("the backup session has ended"))?;
        call(&upload, writer)
    })
    .await
    .map_err(|e| AppError::from(anyhow::anyhow!("upload task failed: {e}")))?
}

/// `PUT /api/v1/backup/{session}/chunks/{id}`: a chunk blob, checked
/// against its id before it is stored.
pub async fn upload_chunk(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((session, chunk)): Path<(String, String)>,
    body: Bytes,
) -> AppResult<StatusCode> {
    let upload = state.sessions().backup(&caller, &session)?;
    let id = parse_chunk(&chunk)?;
    with_writer(upload, move |upload, writer| {
        check_blob(&id, &body).map_err(|e| AppError::bad_request(format!("chunk {id} rejected: {e}")))?;
        if !writer.reference(&id).map_err(anyhow::Error::from)? {
            writer.store(&id, &body).map_err(anyhow::Error::from)?;
        }
        upload.uploaded.lock().expect("lock").insert(id);
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// `PUT /api/v1/backup/{session}/indexes/{file}`: an index of the new
/// snapshot; every chunk it names must be known or uploaded.
pub async fn upload_index(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((session, file)): Path<(String, String)>,
    body: Bytes,
) -> AppResult<Json<IndexRef>> {
    let upload = state.sessions().backup(&caller, &session)?;
    if !index_name_ok(&file) {
        return Err(AppError::bad_request(format!("{file:?} is not an index file name")));
    }
    with_writer(upload, move |upload, writer| {
        let bad = |e: engine::IndexError| AppError::bad_request(format!("index {file} rejected: {}", e.0));
        let (ids, length): (Vec<ChunkId>, u64) = if file.ends_with(".fidx") {
            let f = FixedIndex::decode(&body).map_err(bad)?;
            (f.ids, f.size)
        } else {
            let d = DynamicIndex::decode(&body).map_err(bad)?;
            let len = d.len_bytes();
            (d.entries.into_iter().map(|(_, c)| c).collect(), len)
        };
        {
            let uploaded = upload.uploaded.lock().expect("lock");
            for id in &ids {
                if uploaded.contains(id) {
                    continue;
                }
                if !upload.known.contains(id) {
                    return Err(AppError::bad_request(format!(
                        "index {file} names chunk {id}, which was neither uploaded in this session nor \
                         part of the group's previous snapshot"
                    )));
                }
                if !writer.reference(id).map_err(anyhow::Error::from)? {
                    return Err(AppError::new(
                        StatusCode::CONFLICT,
                        format!(
                            "chunk {id} of the previous snapshot is gone (pruned meanwhile?); back up again"
                        ),
                    ));
                }
            }
        }
        let mut indexes = upload.indexes.lock().expect("lock");
        if indexes.contains_key(&file) {
            return Err(AppError::new(StatusCode::CONFLICT, format!("index {file} was already uploaded")));
        }
        let r = writer.write_index(&file, &body, length, ids.len() as u64).map_err(anyhow::Error::from)?;
        indexes.insert(file, r.clone());
        Ok(Json(r))
    })
    .await
}

/// `POST /api/v1/backup/{session}/finish`: check the manifest against the
/// session and commit the snapshot.
pub async fn finish_backup(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(session): Path<String>,
    Json(mut manifest): Json<Manifest>,
) -> AppResult<Json<Finished>> {
    let upload = state.sessions().backup(&caller, &session)?;
    let id = upload.group.at(upload.time);
    let same_snapshot = manifest.ns == id.group.ns.to_string()
        && manifest.backup_type == id.group.kind
        && manifest.backup_id == id.group.id
        && manifest.time == id.time_text();
    if !same_snapshot {
        return Err(AppError::bad_request(format!("the manifest is not that of snapshot {id}")));
    }
    manifest.check().map_err(|e| AppError::bad_request(format!("manifest rejected: {e}")))?;
    {
        let indexes = upload.indexes.lock().expect("lock");
        for a in &manifest.archives {
            for r in &a.indexes {
                if indexes.get(&r.file) != Some(r) {
                    return Err(AppError::bad_request(format!(
                        "archive {} names index {}, which this session did not receive as described",
                        a.name, r.file
                    )));
                }
            }
        }
    }
    let writer = upload.writer.write().expect("lock").take();
    let writer = writer.ok_or_else(|| AppError::not_found("the backup session has ended"))?;
    // The server's own counts of what this backup added.
    let c = &writer.counters;
    manifest.stats.new_chunks = c.new_chunks.load(std::sync::atomic::Ordering::Relaxed);
    manifest.stats.stored = c.stored_bytes.load(std::sync::atomic::Ordering::Relaxed);
    state.sessions().backups.lock().expect("lock").remove(&session);
    let time = upload.time;
    let m = manifest.clone();
    let id = state.engine(move |e| e.commit_backup(writer, &m, time)).await?;
    tracing::info!(session = %session, snapshot = %id, by = %caller.name, "remote backup committed");
    Ok(Json(Finished { snapshot: id.to_string(), manifest }))
}

/// `DELETE /api/v1/backup/{session}`: abort; nothing becomes visible.
pub async fn abort_backup(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(session): Path<String>,
) -> AppResult<StatusCode> {
    state.sessions().backup(&caller, &session)?;
    let upload = state.sessions().backups.lock().expect("lock").remove(&session);
    if let Some(upload) = upload {
        // Dropping the writer removes its work area and journal.
        tokio::task::spawn_blocking(move || drop(upload.writer.write().expect("lock").take()))
            .await
            .map_err(|e| AppError::from(anyhow::anyhow!("abort failed: {e}")))?;
        tracing::info!(session = %session, "backup session aborted by the client");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/reader`: open a snapshot for reading.
pub async fn start_reader(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<ReaderStart>,
) -> AppResult<Json<ReaderSession>> {
    let id = SnapshotId::parse(&req.snapshot, &Namespace::root())?;
    caller.check(&id.group)?;
    state.sessions().room()?;
    let sid = id.clone();
    let (manifest, chunks) = state
        .engine(move |e| {
            let m = e.datastore().read_manifest(&sid)?;
            let chunks = e.datastore().chunk_ids(&sid, &m)?;
            Ok((m, chunks))
        })
        .await?;
    Ok(Json(open_reader(&state, &caller, id, manifest, chunks)))
}

fn octets(bytes: Vec<u8>) -> Response {
    let mut res = bytes.into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    res
}

/// `GET /api/v1/reader/{session}/indexes/{file}`.
pub async fn read_index(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((session, file)): Path<(String, String)>,
) -> AppResult<Response> {
    let reading = state.sessions().reader(&caller, &session)?;
    let r = reading
        .manifest
        .archives
        .iter()
        .flat_map(|a| &a.indexes)
        .find(|r| r.file == file)
        .cloned()
        .ok_or_else(|| AppError::not_found(format!("snapshot {} has no index {file}", reading.id)))?;
    let id = reading.id.clone();
    let bytes = state.engine(move |e| Ok(e.datastore().read_index_bytes(&id, &r)?)).await?;
    Ok(octets(bytes))
}

/// `GET /api/v1/reader/{session}/chunks/{id}`: a chunk blob of the snapshot,
/// as stored (the client decodes and checks it).
pub async fn read_chunk(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((session, chunk)): Path<(String, String)>,
) -> AppResult<Response> {
    let reading = state.sessions().reader(&caller, &session)?;
    let id = parse_chunk(&chunk)?;
    if !reading.chunks.contains(&id) {
        return Err(AppError::not_found(format!("snapshot {} has no chunk {id}", reading.id)));
    }
    let blob = state.engine(move |e| Ok(e.datastore().chunks().read_blob(&id)?)).await?;
    Ok(octets(blob))
}

/// `DELETE /api/v1/reader/{session}`.
pub async fn close_reader(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(session): Path<String>,
) -> AppResult<StatusCode> {
    state.sessions().reader(&caller, &session)?;
    state.sessions().readers.lock().expect("lock").remove(&session);
    Ok(StatusCode::NO_CONTENT)
}
