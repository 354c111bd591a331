//! A backup in progress: its journal, work area and commit.
//!
//! Garbage collection runs beside backups without relying on file times.
//! The protocol (see ARCHITECTURE.md):
//!
//! * A writer owns `writers/<uuid>.journal` and holds an exclusive flock on
//!   it while alive; a journal whose lock can be taken belongs to a dead
//!   writer, whose chunks are garbage.
//! * Before a writer relies on a chunk (dedup against an existing one, or
//!   renaming a new one into the store), it appends the id to its journal
//!   while holding a shared flock on `locks/chunks`.
//! * GC sweeps one shard at a time under an exclusive flock on
//!   `locks/chunks`, after re-reading every live journal. So a chunk either
//!   was journaled before the sweep looked (and is kept) or is checked for
//!   existence after the sweep finished (and rewritten if it was swept).
//! * At commit the snapshot directory is renamed into place; then, if no
//!   GC is running (shared flock on `locks/gc` available), the journal is
//!   deleted, else it is renamed `<uuid>.committed` and the running GC keeps
//!   honouring it.
//!
//! Invariant: a snapshot becomes visible only after every chunk it names
//! and every index is durable.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chunker::ChunkId;
use model::{BackupGroup, SnapshotId};
use nix::fcntl::Flock;

use crate::datastore::Datastore;
use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::{LockMode, create_dir_all_durable, fsync_dir, lock_file};
use crate::snapshot::{IndexRef, MANIFEST_FILE, Manifest, STATE_FILE, SnapshotState};

/// Counters of what a writer added to the store.
#[derive(Debug, Default)]
pub struct WriteCounters {
    pub new_chunks: AtomicU64,
    pub stored_bytes: AtomicU64,
    pub reused_chunks: AtomicU64,
}

/// A backup of one group in progress. Dropping it without `commit` aborts
/// the backup and leaves nothing visible.
#[derive(Debug)]
pub struct Writer {
    ds: Datastore,
    group: BackupGroup,
    uuid: String,
    journal: Flock<File>,
    journal_path: PathBuf,
    work: PathBuf,
    known: Mutex<HashSet<ChunkId>>,
    touched: Mutex<HashSet<PathBuf>>,
    seq: AtomicU64,
    pub counters: WriteCounters,
    committed: bool,
    /// Chunks written by `store_unsettled` and not yet settled: commit
    /// refuses while any is left.
    unsettled: AtomicU64,
    /// S3 datastores: chunk uploads in flight, and the chunks uploaded
    /// (their markers are made once every upload has finished).
    uploads: Option<bucket::Uploads>,
    uploaded: Mutex<Vec<ChunkId>>,
    _group_lock: Flock<File>,
}

impl Datastore {
    /// Start a backup of `group`. Fails with `GroupBusy` if another backup
    /// or prune of the group is running.
    pub fn begin_backup(&self, group: &BackupGroup) -> Result<Writer> {
        let group_lock = self.lock_group(group)?;
        self.check_owner()?;
        self.cleanup_dead_writers()?;
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        let writers = self.dir("writers");
        let new = writers.join(format!("{uuid}.journal.new"));
        let journal_path = writers.join(format!("{uuid}.journal"));
        let journal = {
            // Between its creation and its lock, a journal would look dead
            // to another process's cleanup.
            let _creating = self.writers_lock()?;
            let file = OpenOptions::new().append(true).create_new(true).open(&new).at(&new)?;
            let journal = Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, e)| StoreError::io(&new, e.into()))?;
            fs::rename(&new, &journal_path).at(&journal_path)?;
            journal
        };
        let work = writers.join(format!("{uuid}.work"));
        fs::create_dir_all(work.join("snapshot")).at(&work)?;
        Ok(Writer {
            ds: self.clone(),
            group: group.clone(),
            uuid,
            journal,
            journal_path,
            work,
            known: Mutex::new(HashSet::new()),
            touched: Mutex::new(HashSet::new()),
            seq: AtomicU64::new(0),
            counters: WriteCounters::default(),
            committed: false,
            unsettled: AtomicU64::new(0),
            uploads: self.remote().map(|r| r.bucket.uploads(r.settings.uploads)),
            uploaded: Mutex::new(Vec::new()),
            _group_lock: group_lock,
        })
    }

    /// Exclusive lock of a group for backup and prune.
    pub fn lock_group(&self, group: &BackupGroup) -> Result<Flock<File>> {
        let name = blake3::hash(group.to_string().as_bytes()).to_hex();
        let path = self.dir("locks").join(format!("group-{}", &name[..24]));
        lock_file(&path, LockMode::ExclusiveNow)?.ok_or_else(|| StoreError::GroupBusy(group.to_string()))
    }

    /// A scratch directory inside the datastore (same file system as its
    /// chunks), for work such as putting a volume's session back: removed
    /// when the `WorkArea` is dropped, and by the next writer or gc when
    /// its process died (its lock is free).
    pub fn work_area(&self) -> Result<WorkArea> {
        let writers = self.dir("writers");
        let uuid = uuid::Uuid::new_v4();
        let lock_path = writers.join(format!("{uuid}.area-lock"));
        let creating = self.writers_lock()?;
        let lock = lock_file(&lock_path, LockMode::ExclusiveNow)?
            .ok_or_else(|| StoreError::io(&lock_path, std::io::Error::other("a new lock file is taken")))?;
        drop(creating);
        let dir = writers.join(format!("{uuid}.area"));
        fs::create_dir(&dir).at(&dir)?;
        Ok(WorkArea { dir, lock_path, _lock: lock })
    }

    /// Held while a writer's journal or work area is created and locked,
    /// and while dead writers are looked for: a file created and not yet
    /// locked is not taken for a dead writer's.
    fn writers_lock(&self) -> Result<Flock<File>> {
        let path = self.dir("locks").join("writers");
        Ok(lock_file(&path, LockMode::Exclusive)?.expect("blocking lock returns a guard"))
    }

    /// Remove journals and work areas of writers that died (kill -9, power
    /// loss): their lock is free. Their chunks become garbage for `gc`.
    pub fn cleanup_dead_writers(&self) -> Result<()> {
        let writers = self.dir("writers");
        let _no_new_writers = self.writers_lock()?;
        let gc_idle = lock_file(&self.dir("locks").join("gc"), LockMode::SharedNow)?;
        for entry in fs::read_dir(&writers).at(&writers)? {
            let path = entry.at(&writers)?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if name.ends_with(".journal") || name.ends_with(".journal.new") {
                if let Some(_dead) = lock_file(&path, LockMode::ExclusiveNow)? {
                    let uuid = name.split('.').next().unwrap_or_default();
                    remove_dir_if_exists(&writers.join(format!("{uuid}.work")))?;
                    remove_if_exists(&path)?;
                }
            } else if name.ends_with(".committed") && gc_idle.is_some() {
                remove_if_exists(&path)?;
            } else if let Some(uuid) = name.strip_suffix(".area-lock") {
                if let Some(_dead) = lock_file(&path, LockMode::ExclusiveNow)? {
                    remove_dir_if_exists(&writers.join(format!("{uuid}.area")))?;
                    remove_if_exists(&path)?;
                }
            } else if let Some(uuid) = name.strip_suffix(".area")
                && !writers.join(format!("{uuid}.area-lock")).exists()
            {
                remove_dir_if_exists(&path)?;
            } else if let Some(uuid) = name.strip_suffix(".work")
                && !writers.join(format!("{uuid}.journal")).exists()
                && !writers.join(format!("{uuid}.journal.new")).exists()
            {
                remove_dir_if_exists(&path)?;
            }
        }
        Ok(())
    }
}

/// A chunk written into a writer's work area by `Writer::store_unsettled`,
/// waiting for `Writer::settle` to make it durable and put it into the
/// store. Dropped unsettled, its file goes with the work area.
#[derive(Debug)]
pub struct Unsettled {
    /// The uuid of the writer that wrote it: only that one settles it.
    writer: String,
    file: File,
    tmp: PathBuf,
    id: ChunkId,
    len: u64,
}

impl Unsettled {
    pub fn id(&self) -> &ChunkId {
        &self.id
    }
}

/// A scratch directory of a live process (see `Datastore::work_area`).
#[derive(Debug)]
pub struct WorkArea {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: Flock<File>,
}

impl WorkArea {
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for WorkArea {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(&self.lock_path);
    }
}

fn remove_if_exists(p: &Path) -> Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(StoreError::io(p, e)),
        _ => Ok(()),
    }
}

fn remove_dir_if_exists(p: &Path) -> Result<()> {
    match fs::remove_dir_all(p) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(StoreError::io(p, e)),
        _ => Ok(()),
    }
}

impl Writer {
    pub fn datastore(&self) -> &Datastore {
        &self.ds
    }

    pub fn group(&self) -> &BackupGroup {
        &self.group
    }

    fn journal_locked(&self, id: &ChunkId) -> Result<()> {
        (&*self.journal).write_all(&id.0).at(&self.journal_path)
    }

    fn chunk_lock(&self) -> Result<Flock<File>> {
        let path = self.ds.dir("locks").join("chunks");
        Ok(lock_file(&path, LockMode::Shared)?.expect("blocking lock returns a guard"))
    }

    /// Declare that this backup uses chunk `id`; returns whether the store
    /// already has it, or this writer wrote it and has yet to settle it
    /// (`store_unsettled`: then `commit` waits for nothing and refuses
    /// until it is settled). After `true`, the chunk stays until this
    /// writer ends.
    pub fn reference(&self, id: &ChunkId) -> Result<bool> {
        if self.known.lock().expect("lock").contains(id) {
            return Ok(true);
        }
        let _guard = self.chunk_lock()?;
        self.journal_locked(id)?;
        let present = self.ds.chunks().has(id)?;
        if present {
            self.known.lock().expect("lock").insert(*id);
        }
        Ok(present)
    }

    /// Store a new chunk blob (already encoded) durably under its id.
    /// Returns the bytes written. (In an S3 datastore the upload starts
    /// here and is finished by `commit`.) Locally it is `store_unsettled`
    /// and `settle` one after the other.
    pub fn store(&self, id: &ChunkId, blob: &[u8]) -> Result<u64> {
        if let Some(up) = &self.uploads {
            return self.upload(up, id, blob).map(|()| blob.len() as u64);
        }
        let chunk = self.write_unsettled(id, blob)?;
        self.settle(chunk)
    }

    /// `store`, in two steps: write the blob into this writer's work area
    /// now, and leave the wait for the disk (sync, journal, rename into the
    /// store) to [`Writer::settle`], which another thread may run. Returns
    /// `None` when the chunk is stored already (an S3 datastore uploads it
    /// here). From here on `reference(id)` answers `true`; `commit` refuses
    /// while a chunk written here is not settled, so a snapshot still names
    /// only durable chunks.
    pub fn store_unsettled(&self, id: &ChunkId, blob: &[u8]) -> Result<Option<Unsettled>> {
        if self.uploads.is_some() {
            return self.store(id, blob).map(|_| None);
        }
        self.write_unsettled(id, blob).map(Some)
    }

    /// A new file in the work area for a chunk on its way into the store.
    fn tmp_path(&self) -> PathBuf {
        self.work.join(format!("chunk-{}", self.seq.fetch_add(1, Ordering::Relaxed)))
    }

    fn write_unsettled(&self, id: &ChunkId, blob: &[u8]) -> Result<Unsettled> {
        let tmp = self.tmp_path();
        match self.write_unsynced(&tmp, blob) {
            Ok(file) => {
                self.unsettled.fetch_add(1, Ordering::Relaxed);
                self.known.lock().expect("lock").insert(*id);
                let writer = self.uuid.clone();
                Ok(Unsettled { writer, file, tmp, id: *id, len: blob.len() as u64 })
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Make a chunk written by `store_unsettled` durable and put it into the
    /// store, as `store` does after writing. Returns the bytes stored.
    pub fn settle(&self, chunk: Unsettled) -> Result<u64> {
        let Unsettled { writer, file, tmp, id, len } = chunk;
        if writer != self.uuid {
            // Settling it here would journal it in the wrong journal and
            // count it off this writer's own unsettled chunks.
            return Err(StoreError::io(
                &tmp,
                std::io::Error::other(format!("chunk {id} was written by another backup")),
            ));
        }
        let result = (|| {
            crate::fault::point(&tmp, "chunk sync")?;
            file.sync_data().at(&tmp)?;
            drop(file);
            let _guard = self.chunk_lock()?;
            self.journal_locked(&id)?;
            self.rename_into_store(&tmp, &id, len)
        })();
        match result {
            Ok(n) => {
                let left = self.unsettled.fetch_sub(1, Ordering::Relaxed);
                debug_assert!(left > 0, "a writer settled more chunks than it left");
                Ok(n)
            }
            Err(e) => {
                // The writer cannot commit now (the chunk stays counted);
                // nor does it answer for the chunk any more.
                self.known.lock().expect("lock").remove(&id);
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Store a chunk blob (already checked against `id`) doing the same work
    /// whether or not the store has it: the blob is written and synced,
    /// then renamed into place, or discarded when the chunk is already
    /// there. So how long it takes does not tell a caller whether the store
    /// held the chunk. Returns whether it was new; after it returns, the
    /// chunk stays until this writer ends (as after `reference`).
    pub fn store_uniformly(&self, id: &ChunkId, blob: &[u8]) -> Result<bool> {
        if let Some(up) = &self.uploads {
            // Uploaded either way, so the answer takes as long.
            let present = {
                let _guard = self.chunk_lock()?;
                self.journal_locked(id)?;
                self.ds.chunks().has(id)?
            };
            self.start_upload(up, id, blob, !present)?;
            return Ok(!present);
        }
        let tmp = self.tmp_path();
        let result = self.write_tmp(&tmp, blob).and_then(|()| {
            let _guard = self.chunk_lock()?;
            self.journal_locked(id)?;
            if self.ds.chunks().has(id)? {
                self.known.lock().expect("lock").insert(*id);
                fs::remove_file(&tmp).at(&tmp)?;
                return Ok(false);
            }
            self.rename_into_store(&tmp, id, blob.len() as u64).map(|_| true)
        });
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Journal the chunk, then start its upload: the sweep keeps a
    /// journaled chunk, and lists the bucket only under the lock.
    fn upload(&self, up: &bucket::Uploads, id: &ChunkId, blob: &[u8]) -> Result<()> {
        {
            let _guard = self.chunk_lock()?;
            self.journal_locked(id)?;
        }
        self.start_upload(up, id, blob, true)
    }

    fn start_upload(&self, up: &bucket::Uploads, id: &ChunkId, blob: &[u8], new: bool) -> Result<()> {
        up.put(crate::remote::chunk_key(id), blob.to_vec())?;
        self.known.lock().expect("lock").insert(*id);
        if new {
            self.uploaded.lock().expect("lock").push(*id);
            self.counters.new_chunks.fetch_add(1, Ordering::Relaxed);
            self.counters.stored_bytes.fetch_add(blob.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Wait for every upload, then mark the chunks as in the bucket.
    fn finish_uploads(&self) -> Result<()> {
        let Some(up) = &self.uploads else { return Ok(()) };
        up.finish()?;
        let ids: Vec<ChunkId> = std::mem::take(&mut *self.uploaded.lock().expect("lock"));
        for id in ids {
            crate::remote::mark(&self.ds.chunks().path(&id))?;
        }
        Ok(())
    }

    fn write_tmp(&self, tmp: &Path, blob: &[u8]) -> Result<()> {
        let f = self.write_unsynced(tmp, blob)?;
        crate::fault::point(tmp, "chunk sync")?;
        f.sync_data().at(tmp)
    }

    fn write_unsynced(&self, tmp: &Path, blob: &[u8]) -> Result<File> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(tmp).at(tmp)?;
        crate::fault::point(tmp, "chunk write")?;
        f.write_all(blob).at(tmp)?;
        Ok(f)
    }

    /// Rename a synced blob into the store; the caller holds the chunk lock
    /// and has journaled `id`.
    fn rename_into_store(&self, tmp: &Path, id: &ChunkId, len: u64) -> Result<u64> {
        let dest = self.ds.chunks().path(id);
        crate::fault::point(&dest, "chunk rename")?;
        if let Err(e) = fs::rename(tmp, &dest) {
            if e.kind() != ErrorKind::NotFound {
                return Err(StoreError::io(&dest, e));
            }
            let parent = dest.parent().expect("chunk path has a parent");
            fs::create_dir_all(parent).at(parent)?;
            let mut touched = self.touched.lock().expect("lock");
            touched.insert(parent.parent().expect("shard dir").to_owned());
            touched.insert(self.ds.chunks().root().to_owned());
            drop(touched);
            fs::rename(tmp, &dest).at(&dest)?;
        }
        self.touched.lock().expect("lock").insert(dest.parent().expect("parent").to_owned());
        self.known.lock().expect("lock").insert(*id);
        self.counters.new_chunks.fetch_add(1, Ordering::Relaxed);
        self.counters.stored_bytes.fetch_add(len, Ordering::Relaxed);
        Ok(len)
    }

    /// Write an index file into the snapshot being built.
    pub fn write_index(&self, file: &str, bytes: &[u8], length: u64, chunks: u64) -> Result<IndexRef> {
        let path = self.work.join("snapshot").join(file);
        let mut f = OpenOptions::new().write(true).create_new(true).open(&path).at(&path)?;
        crate::fault::point(&path, "index write")?;
        f.write_all(bytes).at(&path)?;
        crate::fault::point(&path, "index sync")?;
        f.sync_all().at(&path)?;
        Ok(IndexRef {
            file: file.to_owned(),
            blake3: blake3::hash(bytes).to_hex().to_string(),
            length,
            chunks,
        })
    }

    /// Make the snapshot durable and visible under its final name.
    pub fn commit(mut self, manifest: &Manifest, time: i64) -> Result<SnapshotId> {
        let id = self.group.at(time);
        let final_dir = self.ds.snapshot_dir(&id);
        if final_dir.exists() {
            return Err(StoreError::SnapshotExists(id.to_string()));
        }
        let unsettled = self.unsettled.load(Ordering::SeqCst);
        if unsettled > 0 {
            return Err(StoreError::Unsettled(unsettled));
        }
        self.finish_uploads()?;
        let touched: Vec<PathBuf> = self.touched.lock().expect("lock").drain().collect();
        for dir in touched {
            fsync_dir(&dir)?;
        }
        let snap = self.work.join("snapshot");
        let write = |name: &str, bytes: Vec<u8>| -> Result<()> {
            let p = snap.join(name);
            let mut f = OpenOptions::new().write(true).create_new(true).open(&p).at(&p)?;
            crate::fault::point(&p, "manifest write")?;
            f.write_all(&bytes).at(&p)?;
            crate::fault::point(&p, "manifest sync")?;
            f.sync_all().at(&p)
        };
        write(MANIFEST_FILE, serde_json::to_vec_pretty(manifest).expect("manifest serializes"))?;
        let state = SnapshotState { verify_state: "none".into(), ..Default::default() };
        write(STATE_FILE, serde_json::to_vec_pretty(&state).expect("state serializes"))?;
        fsync_dir(&snap)?;
        if let Some(r) = self.ds.remote() {
            r.check_owner()?;
            crate::fault::point(&final_dir, "snapshot upload")?;
            self.ds.upload_snapshot(&snap, &id)?;
        }
        let parent = final_dir.parent().expect("snapshot dir has a parent");
        create_dir_all_durable(parent)?;
        crate::fault::point(&final_dir, "snapshot rename")?;
        match fs::rename(&snap, &final_dir) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(nix::libc::ENOTEMPTY) | Some(nix::libc::EEXIST)) => {
                return Err(StoreError::SnapshotExists(id.to_string()));
            }
            Err(e) => return Err(StoreError::io(&final_dir, e)),
        }
        fsync_dir(parent)?;
        self.committed = true;
        self.release_journal()?;
        Ok(id)
    }

    fn release_journal(&self) -> Result<()> {
        let gc_idle = lock_file(&self.ds.dir("locks").join("gc"), LockMode::SharedNow)?;
        if gc_idle.is_some() {
            remove_if_exists(&self.journal_path)?;
        } else {
            let done = self.journal_path.with_extension("committed");
            fs::rename(&self.journal_path, &done).at(&done)?;
        }
        drop(gc_idle);
        remove_dir_if_exists(&self.work)
    }

    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// End as a killed process would: its locks released by the kernel,
    /// its journal and work area left behind (tests of gc and cleanup).
    #[cfg(test)]
    pub(crate) fn die(mut self) {
        self.committed = true;
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.work);
            let _ = fs::remove_file(&self.journal_path);
        }
    }
}
