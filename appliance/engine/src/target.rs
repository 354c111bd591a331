//! Where backups write and restores read: the local datastore, or a server
//! reached over the network (implemented by the daemon's client). The
//! backup pipeline, change detection and restore see only these traits, so
//! a remote backup chunks, hashes and compresses exactly as a local one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;
use chunker::ChunkId;
use filevol::{
    ChunkStore, Datastore, DynamicIndex, FixedIndex, IndexRef, Manifest, StoreError, Unsettled,
    WriteCounters, Writer,
};
use model::SnapshotId;

/// Reads chunks by id: decompressed and checked against the id.
pub trait ChunkRead: Send + Sync {
    fn read_chunk(&self, id: &ChunkId) -> Result<Vec<u8>, StoreError>;

    /// How many chunks to fetch at once: one per core for a local disk,
    /// up to [`LOCAL_READS`]; more over a network, where each read waits
    /// for a round trip.
    fn parallel_reads(&self) -> usize {
        local_reads()
    }
}

/// Chunks to read at once from a local disk: one per core, up to
/// [`LOCAL_READS`].
fn local_reads() -> usize {
    cores().min(LOCAL_READS)
}

/// Chunks read and decoded at once from a local disk, at most, whatever
/// the cores: each read holds up to a 4 MiB chunk ahead of the writers,
/// and a core decodes and checks about 1.3 GB/s of chunks (`verify --all`
/// read 2.2 GiB in 1.7 CPU seconds), so 8 outrun the 2 GB/s a restore
/// aims at.
pub const LOCAL_READS: usize = 8;

/// The cores this process plans its threads for (at least 1): the
/// machine's, unless [`plan_for_cores`] said otherwise.
pub fn cores() -> usize {
    match PLANNED_CORES.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    }
}

static PLANNED_CORES: AtomicUsize = AtomicUsize::new(0);

/// Size every per-core pool of this process (a backup's workers, file
/// readers, boundary scanners and chunk syncers) as on a machine with `n`
/// cores: fewer to leave cores to other work, or more. For a command-line
/// run (`cairn backup --threads`), set before the work starts.
pub fn plan_for_cores(n: usize) {
    PLANNED_CORES.store(n.max(1), Ordering::Relaxed);
}

impl ChunkRead for ChunkStore {
    fn read_chunk(&self, id: &ChunkId) -> Result<Vec<u8>, StoreError> {
        self.read(id)
    }

    /// A bucket answers each read after a round trip: many at once.
    fn parallel_reads(&self) -> usize {
        if self.in_bucket() { cores().max(16) } else { local_reads() }
    }
}

/// Reads committed snapshots: manifests, index files and chunks.
pub trait SnapshotRead: Send + Sync {
    fn read_manifest(&self, id: &SnapshotId) -> Result<Manifest, StoreError>;
    /// An index file, checked against the manifest's digest.
    fn read_index_bytes(&self, id: &SnapshotId, r: &IndexRef) -> Result<Vec<u8>, StoreError>;
    fn chunk_reader(&self) -> Arc<dyn ChunkRead>;

    fn read_didx(&self, id: &SnapshotId, r: &IndexRef) -> Result<DynamicIndex, StoreError> {
        let bytes = self.read_index_bytes(id, r)?;
        DynamicIndex::decode(&bytes).map_err(|e| bad_index(id, r, e.0))
    }

    fn read_fidx(&self, id: &SnapshotId, r: &IndexRef) -> Result<FixedIndex, StoreError> {
        let bytes = self.read_index_bytes(id, r)?;
        FixedIndex::decode(&bytes).map_err(|e| bad_index(id, r, e.0))
    }

    /// Every chunk the indexes of snapshot `id` (with `manifest`) name.
    fn chunk_ids(&self, id: &SnapshotId, manifest: &Manifest) -> Result<HashSet<ChunkId>, StoreError> {
        let mut set = HashSet::new();
        for r in manifest.archives.iter().flat_map(|a| &a.indexes) {
            if r.file.ends_with(".fidx") {
                set.extend(self.read_fidx(id, r)?.ids);
            } else {
                set.extend(self.read_didx(id, r)?.entries.into_iter().map(|(_, c)| c));
            }
        }
        Ok(set)
    }

    /// Every chunk the indexes of snapshot `id` name, with the plain length
    /// its indexes give it. A chunk given two different lengths is an error:
    /// one chunk id has one content.
    fn chunk_lengths(
        &self,
        id: &SnapshotId,
        manifest: &Manifest,
    ) -> Result<HashMap<ChunkId, u64>, StoreError> {
        let mut map = HashMap::new();
        for r in manifest.archives.iter().flat_map(|a| &a.indexes) {
            let lengths: Vec<(ChunkId, u64)> = if r.file.ends_with(".fidx") {
                self.read_fidx(id, r)?.chunk_lengths().collect()
            } else {
                self.read_didx(id, r)?.chunk_lengths().collect()
            };
            for (chunk, len) in lengths {
                if let Some(other) = map.insert(chunk, len)
                    && other != len
                {
                    return Err(bad_index(
                        id,
                        r,
                        format!("chunk {chunk} is given {len} bytes here and {other} bytes elsewhere"),
                    ));
                }
            }
        }
        Ok(map)
    }
}

fn bad_index(id: &SnapshotId, r: &IndexRef, detail: String) -> StoreError {
    StoreError::BadIndex { path: format!("{id}/{}", r.file).into(), detail }
}

impl SnapshotRead for Datastore {
    fn read_manifest(&self, id: &SnapshotId) -> Result<Manifest, StoreError> {
        Datastore::read_manifest(self, id)
    }

    fn read_index_bytes(&self, id: &SnapshotId, r: &IndexRef) -> Result<Vec<u8>, StoreError> {
        Datastore::read_index_bytes(self, id, r)
    }

    fn chunk_reader(&self) -> Arc<dyn ChunkRead> {
        Arc::new(self.chunks().clone())
    }

    fn read_didx(&self, id: &SnapshotId, r: &IndexRef) -> Result<DynamicIndex, StoreError> {
        Datastore::read_didx(self, id, r)
    }

    fn read_fidx(&self, id: &SnapshotId, r: &IndexRef) -> Result<FixedIndex, StoreError> {
        Datastore::read_fidx(self, id, r)
    }
}

/// Where a backup in progress puts its chunks and indexes.
///
/// Invariant: after `reference(id)` answered `true`, or `store(id, ..)`
/// succeeded, an index naming `id` may be written. A chunk left by
/// `store_unsettled` must be settled before the backup commits (a local
/// writer refuses to commit otherwise).
pub trait ChunkSink: Sync {
    /// Whether the target already has chunk `id` for this backup (and
    /// keeps it until the backup ends).
    fn reference(&self, id: &ChunkId) -> Result<bool>;
    /// Store a new chunk, an encoded blob holding `id`. A sink that sends
    /// the blob on may take the buffer (`std::mem::take`), so it need not
    /// copy it; one that writes it leaves it, and the pipeline fills it
    /// again with a later chunk.
    fn store(&self, id: &ChunkId, blob: &mut Vec<u8>) -> Result<()>;
    /// `store`, leaving the wait for the disk to `settle` (run off the
    /// pipeline's workers, see `syncers`); `None` when nothing is left.
    fn store_unsettled(&self, id: &ChunkId, blob: &mut Vec<u8>) -> Result<Option<Unsettled>> {
        self.store(id, blob).map(|()| None)
    }
    /// Finish what `store_unsettled` left: the chunk is durable and stored.
    fn settle(&self, chunk: Unsettled) -> Result<()> {
        Err(anyhow::anyhow!("chunk {} was left unsettled by a target that cannot settle it", chunk.id()))
    }
    /// How many threads should settle chunks beside the workers (0: none
    /// is ever left unsettled).
    fn syncers(&self) -> usize {
        0
    }
    /// Write an index file of the snapshot being made.
    fn write_index(&self, file: &str, bytes: &[u8], length: u64, chunks: u64) -> Result<IndexRef>;
    fn counters(&self) -> &WriteCounters;

    /// How many pipeline workers should hash, compress and store at once:
    /// one per core locally; more when `store` waits on a network, so the
    /// cores keep compressing while uploads are in flight.
    fn workers(&self) -> usize {
        cores()
    }
}

impl ChunkSink for Writer {
    fn reference(&self, id: &ChunkId) -> Result<bool> {
        Ok(Writer::reference(self, id)?)
    }

    fn store(&self, id: &ChunkId, blob: &mut Vec<u8>) -> Result<()> {
        Writer::store(self, id, blob)?;
        Ok(())
    }

    fn store_unsettled(&self, id: &ChunkId, blob: &mut Vec<u8>) -> Result<Option<Unsettled>> {
        Ok(Writer::store_unsettled(self, id, blob)?)
    }

    fn settle(&self, chunk: Unsettled) -> Result<()> {
        Writer::settle(self, chunk)?;
        Ok(())
    }

    /// A local datastore's chunks wait for the disk's sync; the threads
    /// that wait for it use no CPU, so the workers keep compressing. An S3
    /// datastore uploads in `store` and settles nothing.
    fn syncers(&self) -> usize {
        if self.datastore().remote().is_some() { 0 } else { cores().clamp(2, 8) }
    }

    fn write_index(&self, file: &str, bytes: &[u8], length: u64, chunks: u64) -> Result<IndexRef> {
        Ok(Writer::write_index(self, file, bytes, length, chunks)?)
    }

    fn counters(&self) -> &WriteCounters {
        &self.counters
    }
}
