//! The remote protocol's open sessions: backup sessions (a writer, what
//! was uploaded) and reader sessions (one snapshot), each owned by the
//! caller that opened it, with the per-caller and total limits on how
//! many may be open and how many chunk uploads may be in flight. The
//! handlers that use them are in `remote`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use engine::{ChunkId, IndexRef, Manifest, Writer};
use model::{BackupGroup, Role, SnapshotId};
use tokio::sync::Semaphore;

use crate::caller::Caller;
use crate::error::{AppError, AppResult};
use crate::limits::Limits;

pub struct Sessions {
    pub(crate) limits: Limits,
    /// Both tables under one lock, so counting and inserting are one step.
    pub(crate) open: Mutex<Open>,
    /// Chunk uploads in flight, per principal.
    pub(crate) uploads: Mutex<HashMap<String, Arc<Semaphore>>>,
}

#[derive(Default)]
pub(crate) struct Open {
    pub(crate) backups: HashMap<String, Arc<Upload>>,
    pub(crate) readers: HashMap<String, Arc<Reading>>,
}

/// A backup in progress.
pub(crate) struct Upload {
    pub(crate) owner: String,
    /// Backup clients get figures that do not tell what other groups hold.
    pub(crate) role: Role,
    pub(crate) time: i64,
    pub(crate) group: BackupGroup,
    /// `None` once finished or aborted.
    pub(crate) writer: RwLock<Option<Writer>>,
    /// Chunks of the group's previous snapshot with their plain lengths:
    /// what the client may name without uploading.
    pub(crate) known: HashMap<ChunkId, u64>,
    /// Chunks uploaded in this session: (plain length, blob size).
    pub(crate) uploaded: Mutex<HashMap<ChunkId, (u64, u64)>>,
    pub(crate) indexes: Mutex<HashMap<String, IndexRef>>,
    pub(crate) touched: Mutex<Instant>,
}

/// A snapshot opened for reading.
pub(crate) struct Reading {
    pub(crate) owner: String,
    pub(crate) id: SnapshotId,
    pub(crate) manifest: Manifest,
    pub(crate) chunks: HashSet<ChunkId>,
    pub(crate) touched: Mutex<Instant>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

/// Why a session could not be opened.
pub(crate) fn full(what: &str, limit: usize, per_caller: bool) -> AppError {
    if per_caller {
        AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "this caller already holds {limit} open {what} sessions (the limit per token or user); \
                 finish or abort one, or wait until idle ones expire"
            ),
        )
    } else {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the server holds {limit} open {what} sessions, its limit; retry later"),
        )
    }
}

/// Whether `more` sessions of one kind fit beside those open (`owners`,
/// one per session) for `principal`, under (per caller, total).
pub(crate) fn room_for<'a>(
    what: &str,
    owners: impl ExactSizeIterator<Item = &'a str>,
    principal: &str,
    more: usize,
    (per_caller, total): (usize, usize),
) -> AppResult<()> {
    if more == 0 {
        return Ok(());
    }
    let open = owners.len();
    let mine = owners.filter(|o| *o == principal).count();
    if mine + more > per_caller {
        return Err(full(what, per_caller, true));
    }
    if open + more > total {
        return Err(full(what, total, false));
    }
    Ok(())
}

impl Sessions {
    pub fn new(limits: Limits) -> Self {
        Self { limits, open: Mutex::default(), uploads: Mutex::default() }
    }

    /// Drop sessions idle for longer than `idle`; returns how many.
    pub fn expire(&self, idle: Duration) -> usize {
        let fresh = |t: &Mutex<Instant>| t.lock().expect("lock").elapsed() < idle;
        let mut open = self.open.lock().expect("lock");
        let before = open.backups.len() + open.readers.len();
        open.backups.retain(|id, s| {
            let keep = fresh(&s.touched);
            if !keep {
                tracing::warn!(session = %id, group = %s.group, "backup session idle too long: aborted");
            }
            keep
        });
        open.readers.retain(|_, s| fresh(&s.touched));
        before - open.backups.len() - open.readers.len()
    }

    /// Abort every backup in progress (shutdown).
    pub fn clear(&self) {
        let mut open = self.open.lock().expect("lock");
        open.backups.clear();
        open.readers.clear();
    }

    pub(crate) fn backup(&self, caller: &Caller, id: &str) -> AppResult<Arc<Upload>> {
        let s = self.open.lock().expect("lock").backups.get(id).cloned();
        owned(s, caller, |u| (&u.owner, &u.touched))
            .ok_or_else(|| AppError::not_found(format!("no backup session {id}")))
    }

    pub(crate) fn reader(&self, caller: &Caller, id: &str) -> AppResult<Arc<Reading>> {
        let s = self.open.lock().expect("lock").readers.get(id).cloned();
        owned(s, caller, |r| (&r.owner, &r.touched))
            .ok_or_else(|| AppError::not_found(format!("no reader session {id}")))
    }

    /// Whether `principal` may open `backups` more backup sessions and
    /// `readers` more reader sessions, checked against the tables as they
    /// are under the lock.
    pub(crate) fn room_in(
        &self,
        open: &Open,
        principal: &str,
        backups: usize,
        readers: usize,
    ) -> AppResult<()> {
        let l = &self.limits;
        let owners = open.backups.values().map(|u| u.owner.as_str());
        room_for("backup", owners, principal, backups, (l.backup_sessions_per_caller, l.backup_sessions))?;
        let owners = open.readers.values().map(|r| r.owner.as_str());
        room_for("reader", owners, principal, readers, (l.reader_sessions_per_caller, l.reader_sessions))
    }

    /// A quick check before expensive work; `insert` checks again.
    pub(crate) fn room(&self, principal: &str, backups: usize, readers: usize) -> AppResult<()> {
        let open = self.open.lock().expect("lock");
        self.room_in(&open, principal, backups, readers)
    }

    /// Count and insert in one step under the lock. On refusal the
    /// sessions are handed back for the caller to drop off the async
    /// workers.
    pub(crate) fn insert(
        &self,
        principal: &str,
        backup: Option<(String, Arc<Upload>)>,
        reader: Option<(String, Arc<Reading>)>,
    ) -> Result<(), (AppError, Option<Arc<Upload>>)> {
        let mut open = self.open.lock().expect("lock");
        if let Err(e) = self.room_in(&open, principal, backup.is_some() as usize, reader.is_some() as usize) {
            return Err((e, backup.map(|(_, u)| u)));
        }
        if let Some((id, u)) = backup {
            open.backups.insert(id, u);
        }
        if let Some((id, r)) = reader {
            open.readers.insert(id, r);
        }
        Ok(())
    }

    /// A permit for one chunk upload of `principal`, or 429.
    /// Chunk uploads one caller may have in flight.
    pub(crate) fn uploads_per_caller(&self) -> usize {
        self.limits.uploads_per_caller
    }

    pub(crate) fn upload_permit(&self, principal: &str) -> AppResult<tokio::sync::OwnedSemaphorePermit> {
        let sem = self
            .uploads
            .lock()
            .expect("lock")
            .entry(principal.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.limits.uploads_per_caller)))
            .clone();
        sem.try_acquire_owned().map_err(|_| {
            AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{} chunk uploads of this caller are already in flight (the limit); \
                     retry when one has finished",
                    self.limits.uploads_per_caller
                ),
            )
        })
    }
}

/// The session if `caller` opened it, marked as just used; `None` for
/// anyone else (who must not learn that it exists).
pub(crate) fn owned<T>(
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

pub(crate) fn session_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

impl Upload {
    /// What this backup added, as its caller may learn it: the server's own
    /// counts for admins and operators; for a backup client, every chunk it
    /// uploaded that the group's previous snapshot did not name, at its
    /// uploaded size, whether or not another group already held it (the
    /// true figures would tell a tenant what other tenants store).
    pub(crate) fn added(&self, writer: &Writer) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &writer.counters;
        let (true_new, true_stored) = (c.new_chunks.load(Relaxed), c.stored_bytes.load(Relaxed));
        if self.role != Role::BackupClient {
            return (true_new, true_stored);
        }
        let uploaded = self.uploaded.lock().expect("lock");
        let fresh = uploaded.iter().filter(|(id, _)| !self.known.contains_key(id));
        let (n, bytes) = fresh.fold((0, 0), |(n, b), (_, (_, size))| (n + 1, b + size));
        tracing::info!(group = %self.group, new_chunks = true_new, stored = true_stored, "stored by a backup client's session");
        (n, bytes)
    }
}
