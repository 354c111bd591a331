//! The remote backup protocol's handlers (see the `protocol` crate): backup
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
use std::time::Instant;

use axum::Extension;
use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine::target::SnapshotRead;
use engine::{ChunkId, DynamicIndex, FixedIndex, IndexRef, Manifest, Writer, check_blob};
use model::{BackupGroup, Namespace, Role, SnapshotId};

use super::caller::Caller;
use super::error::{AppError, AppResult};
use super::sessions::{Reading, Upload, session_id};
use super::state::{AppState, now};
use protocol::{
    BackupSession, BackupStart, Finished, MAX_CHUNK_BODY, ReaderSession, ReaderStart, StoreSettings,
    index_name_ok,
};

/// The open sessions of a server, and the uploads in flight per caller.
fn parse_chunk(text: &str) -> AppResult<ChunkId> {
    ChunkId::from_hex(text).ok_or_else(|| AppError::bad_request(format!("{text:?} is not a chunk id")))
}

/// A reader session over a snapshot whose manifest is known, not yet open.
fn reader_session(
    caller: &Caller,
    id: SnapshotId,
    manifest: Manifest,
    chunks: HashSet<ChunkId>,
) -> (String, Arc<Reading>) {
    let reading = Reading {
        owner: caller.principal.clone(),
        id,
        manifest,
        chunks,
        touched: Mutex::new(Instant::now()),
    };
    (session_id(), Arc::new(reading))
}

/// Whether a remote backup may be dated `time`, given the server's clock
/// and the group's newest snapshot. Nobody may date a snapshot ahead of the
/// server's clock (beyond a small skew): it would outlive every real one
/// under keep rules and look fresh to SLA checks forever. A backup client
/// may not date one in the past either, nor before the group's newest
/// snapshot; admins and operators may, to import old backups.
pub fn check_time(role: Role, time: i64, now: i64, newest: Option<i64>) -> Result<(), String> {
    use model::time::{FUTURE_SKEW, format_rfc3339, from_the_future, round_trips};
    if !round_trips(time) {
        return Err(format!("{time} is not a valid snapshot time (an RFC 3339 time with a four-digit year)"));
    }
    if from_the_future(time, now) {
        return Err(format!(
            "snapshot time {} is ahead of the server's clock ({}) by more than {FUTURE_SKEW} s; \
             check the client's clock",
            format_rfc3339(time),
            format_rfc3339(now)
        ));
    }
    if role == Role::BackupClient {
        if time < now - FUTURE_SKEW {
            return Err(format!(
                "snapshot time {} is behind the server's clock ({}) by more than {FUTURE_SKEW} s; \
                 a backup client cannot date snapshots in the past (drop --time, or ask an operator)",
                format_rfc3339(time),
                format_rfc3339(now)
            ));
        }
        if let Some(newest) = newest
            && time <= newest
        {
            return Err(format!(
                "snapshot time {} is not after the group's newest snapshot ({}); try again in a second",
                format_rfc3339(time),
                format_rfc3339(newest)
            ));
        }
    }
    Ok(())
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
    // The reader for the previous snapshot is counted when both are inserted.
    state.sessions().room(&caller.principal, 1, 0)?;
    let (asked, role) = (req.time, caller.role);
    let g = group.clone();
    let (writer, previous, known, settings, time) = state
        .engine(move |e| {
            let newest = || Ok::<_, anyhow::Error>(e.datastore().list_group(&g)?.last().map(|id| id.time));
            // Undated: now, or a second after the group's newest snapshot.
            let time = match asked {
                Some(t) => t,
                None => newest()?.map_or(now(), |n| now().max(n + 1)),
            };
            model::time::round_trips(time)
                .then_some(())
                .ok_or_else(|| engine::ops::BadRequest(format!("{time} is not a valid snapshot time")))?;
            let (writer, previous) = e.begin_remote_backup(&g, time)?;
            // The group is locked now: its newest snapshot cannot change.
            check_time(role, time, now(), newest()?).map_err(engine::ops::BadRequest)?;
            let known = match &previous {
                Some((id, m)) => e.datastore().chunk_lengths(id, m)?,
                None => HashMap::new(),
            };
            Ok((writer, previous, known, StoreSettings::from(e.datastore().config()), time))
        })
        .await?;
    let reader = previous.map(|(id, m)| {
        let chunks = known.keys().copied().collect();
        reader_session(&caller, id, m, chunks)
    });
    let previous = reader.as_ref().map(|(session, r)| ReaderSession {
        session: session.clone(),
        snapshot: r.id.to_string(),
        manifest: r.manifest.clone(),
    });
    let session = session_id();
    let snapshot = group.at(time).to_string();
    let upload = Upload {
        owner: caller.principal.clone(),
        role: caller.role,
        time,
        group,
        writer: RwLock::new(Some(writer)),
        known,
        uploaded: Mutex::new(HashMap::new()),
        indexes: Mutex::new(HashMap::new()),
        touched: Mutex::new(Instant::now()),
    };
    if let Err((e, upload)) =
        state.sessions().insert(&caller.principal, Some((session.clone(), Arc::new(upload))), reader)
    {
        // Dropping the writer removes its work area: off the async workers.
        tokio::task::spawn_blocking(move || drop(upload)).await.ok();
        return Err(e);
    }
    tracing::info!(session = %session, snapshot = %snapshot, by = %caller.name, "backup session opened");
    let uploads = state.sessions().uploads_per_caller();
    Ok(Json(BackupSession { session, snapshot, settings, previous, uploads }))
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
/// against its id before it is stored. The body is read only once the
/// caller holds one of its upload permits.
pub async fn upload_chunk(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((session, chunk)): Path<(String, String)>,
    body: Body,
) -> AppResult<StatusCode> {
    let upload = state.sessions().backup(&caller, &session)?;
    let id = parse_chunk(&chunk)?;
    let _permit = match state.sessions().upload_permit(&caller.principal) {
        Ok(permit) => permit,
        Err(busy) => {
            discard(body).await;
            return Err(busy);
        }
    };
    let body = to_bytes(body, MAX_CHUNK_BODY).await.map_err(|_| {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a chunk upload is at most {} bytes, or it was cut short", MAX_CHUNK_BODY),
        )
    })?;
    with_writer(upload, move |upload, writer| {
        let plain =
            check_blob(&id, &body).map_err(|e| AppError::bad_request(format!("chunk {id} rejected: {e}")))?;
        // The same work whether or not the store had the chunk, so the
        // answer's timing does not tell either.
        writer.store_uniformly(&id, &body).map_err(anyhow::Error::from)?;
        upload.uploaded.lock().expect("lock").insert(id, (plain, body.len() as u64));
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// Read a refused upload's body and keep none of it, so the connection
/// stays usable and the client reads the answer instead of a connection
/// closed under the body it still sends. At most as much as a chunk may
/// be, for at most [`DISCARD_FOR`]: a body that never ends holds nothing.
async fn discard(body: Body) {
    use futures_util::StreamExt;
    let drain = async {
        let mut stream = body.into_data_stream();
        let mut read = 0;
        while let Some(Ok(frame)) = stream.next().await {
            read += frame.len();
            if read > MAX_CHUNK_BODY {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_FOR, drain).await;
}

/// How long a refused upload's body is read.
const DISCARD_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// `PUT /api/v1/backup/{session}/indexes/{file}`: an index of the new
/// snapshot; every chunk it names must be known or uploaded.
pub async fn upload_index(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((session, file)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> AppResult<Json<IndexRef>> {
    let upload = state.sessions().backup(&caller, &session)?;
    if !index_name_ok(&file) {
        return Err(AppError::bad_request(format!("{file:?} is not an index file name")));
    }
    with_writer(upload, move |upload, writer| {
        let bad = |e: engine::IndexError| AppError::bad_request(format!("index {file} rejected: {}", e.0));
        let (chunks, length): (Vec<(ChunkId, u64)>, u64) = if file.ends_with(".fidx") {
            let f = FixedIndex::decode(&body).map_err(bad)?;
            (f.chunk_lengths().collect(), f.size)
        } else {
            let d = DynamicIndex::decode(&body).map_err(bad)?;
            (d.chunk_lengths().collect(), d.len_bytes())
        };
        {
            let uploaded = upload.uploaded.lock().expect("lock");
            for (id, len) in &chunks {
                let holds = match (uploaded.get(id), upload.known.get(id)) {
                    (Some((plain, _)), _) => *plain,
                    (None, Some(plain)) => *plain,
                    (None, None) => {
                        return Err(AppError::bad_request(format!(
                            "index {file} names chunk {id}, which was neither uploaded in this session nor \
                             part of the group's previous snapshot"
                        )));
                    }
                };
                if holds != *len {
                    return Err(AppError::bad_request(format!(
                        "index {file} gives chunk {id} {len} bytes, but it holds {holds}"
                    )));
                }
                if !uploaded.contains_key(id) && !writer.reference(id).map_err(anyhow::Error::from)? {
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
        let r = writer.write_index(&file, &body, length, chunks.len() as u64).map_err(anyhow::Error::from)?;
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
    let (new_chunks, stored) = upload.added(&writer);
    manifest.stats.new_chunks = new_chunks;
    manifest.stats.stored = stored;
    state.sessions().open.lock().expect("lock").backups.remove(&session);
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
    let upload = state.sessions().open.lock().expect("lock").backups.remove(&session);
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
    state.sessions().room(&caller.principal, 0, 1)?;
    let sid = id.clone();
    let (manifest, chunks) = state
        .engine(move |e| {
            let m = e.datastore().read_manifest(&sid)?;
            let chunks = e.datastore().chunk_ids(&sid, &m)?;
            Ok((m, chunks))
        })
        .await?;
    let (session, reading) = reader_session(&caller, id, manifest, chunks);
    let answer = ReaderSession {
        session: session.clone(),
        snapshot: reading.id.to_string(),
        manifest: reading.manifest.clone(),
    };
    state.sessions().insert(&caller.principal, None, Some((session, reading))).map_err(|(e, _)| e)?;
    Ok(Json(answer))
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
    state.sessions().open.lock().expect("lock").readers.remove(&session);
    Ok(StatusCode::NO_CONTENT)
}
