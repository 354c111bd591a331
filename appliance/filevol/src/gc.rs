//! Garbage collection: mark every chunk a complete snapshot or a live
//! writer references, sweep the rest, shard by shard, in one run.
//!
//! Invariant: no file times are consulted. A chunk is kept if a snapshot
//! index names it or a live (or just committed) writer's journal does; see
//! `writer.rs` for why a chunk a running backup relies on is never swept.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::PathBuf;

use chunker::ChunkId;

use crate::datastore::Datastore;
use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::{LockMode, lock_file};

/// What a collection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    pub snapshots: u64,
    pub removed_chunks: u64,
    pub removed_bytes: u64,
    pub kept_chunks: u64,
    pub kept_bytes: u64,
}

/// Reads new entries of writer journals as they grow.
#[derive(Default)]
struct Journals {
    offsets: HashMap<PathBuf, u64>,
}

impl Journals {
    fn refresh(&mut self, ds: &Datastore, live: &mut HashSet<ChunkId>) -> Result<()> {
        let dir = ds.dir("writers");
        for entry in fs::read_dir(&dir).at(&dir)? {
            let path = entry.at(&dir)?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let live_journal = name.ends_with(".journal");
            if !live_journal && !name.ends_with(".committed") {
                continue;
            }
            if live_journal && lock_file(&path, LockMode::ExclusiveNow)?.is_some() {
                continue; // its writer died: what it wrote is garbage
            }
            let offset = self.offsets.entry(path.clone()).or_default();
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => continue, // renamed meanwhile; seen again
                Err(e) => return Err(StoreError::io(&path, e)),
            };
            file.seek(SeekFrom::Start(*offset)).at(&path)?;
            let mut buf = Vec::new();
            file.read_to_end(&mut buf).at(&path)?;
            let whole = buf.len() / 32 * 32;
            for raw in buf[..whole].chunks_exact(32) {
                live.insert(ChunkId(raw.try_into().expect("32 bytes")));
            }
            *offset += whole as u64;
        }
        Ok(())
    }
}

impl Datastore {
    /// Every chunk id named by a complete snapshot's indexes. A damaged
    /// index stops the collection: without it nothing can be swept safely.
    pub fn mark_snapshots(&self) -> Result<(HashSet<ChunkId>, u64)> {
        let mut live = HashSet::new();
        let snapshots = self.list_snapshots()?;
        for id in &snapshots {
            let manifest = self.read_manifest(id)?;
            for archive in &manifest.archives {
                for r in &archive.indexes {
                    if r.file.ends_with(".fidx") {
                        live.extend(self.read_fidx(id, r)?.ids);
                    } else {
                        live.extend(self.read_didx(id, r)?.entries.into_iter().map(|e| e.1));
                    }
                }
            }
        }
        Ok((live, snapshots.len() as u64))
    }

    /// Run a full mark and sweep. `progress` is called with each finished
    /// shard (0..=255).
    pub fn collect_garbage(&self, progress: &mut dyn FnMut(u8)) -> Result<GcStats> {
        let locks = self.dir("locks");
        let _single = lock_file(&locks.join("gc-run"), LockMode::ExclusiveNow)?.ok_or(StoreError::GcBusy)?;
        self.cleanup_dead_writers()?;
        let _running = lock_file(&locks.join("gc"), LockMode::Exclusive)?;
        self.check_owner()?;
        self.empty_trash()?;
        if self.remote().is_some() {
            // A snapshot whose manifest reached the bucket but whose local
            // rename did not (a crash at commit) is complete: keep it.
            self.sync_from_bucket(false)?;
        }
        let mut journals = Journals::default();
        let mut live = HashSet::new();
        journals.refresh(self, &mut live)?;
        let (marked, snapshots) = self.mark_snapshots()?;
        live.extend(marked);
        let mut stats = GcStats { snapshots, ..Default::default() };
        for shard in 0..=255u8 {
            let _sweep = lock_file(&locks.join("chunks"), LockMode::Exclusive)?;
            journals.refresh(self, &mut live)?;
            for (id, len) in self.chunks().list_shard(shard)? {
                if live.contains(&id) {
                    stats.kept_chunks += 1;
                    stats.kept_bytes += len;
                } else if self.chunks().remove(&id)? {
                    stats.removed_chunks += 1;
                    stats.removed_bytes += len;
                }
            }
            drop(_sweep);
            progress(shard);
        }
        self.remove_committed_journals()?;
        if let Some(r) = self.remote() {
            r.evict();
        }
        Ok(stats)
    }

    fn remove_committed_journals(&self) -> Result<()> {
        let dir = self.dir("writers");
        for entry in fs::read_dir(&dir).at(&dir)? {
            let path = entry.at(&dir)?.path();
            if path.extension().is_some_and(|e| e == "committed") {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(())
    }
}
