//! Cairn's services: backup, restore, verify, prune, garbage collection and
//! catalog upkeep, over a `filevol` datastore and its `catalog`.
//!
//! Invariant: no tokio here yet and no HTTP, JSON or terminal output; the
//! daemon renders what these calls return. The datastore is the truth; the
//! catalog is a cache reconciled with it on open.

pub mod access;
pub mod backup;
mod catalog_sync;
mod cdcpool;
pub mod clock;
pub mod download;
pub mod fsrestore;
pub mod fswalk;
pub mod items;
pub mod job_paths;
pub mod jobs;
mod new_snapshot;
pub mod ops;
mod payload;
mod pieces;
mod pipeline;
mod policies;
mod prefetch;
mod prevtree;
pub mod progress;
mod readahead;
pub mod restore;
mod stream;
pub mod tape;
pub mod target;
pub mod verify;
pub mod volume;
pub mod volume_extract;
mod writepool;

use std::path::Path;

use anyhow::Result;
use filevol::Datastore;

pub use backup::{BackupOptions, BackupReport};
pub use catalog::CatalogError;
pub use chunker::CdcParams;
pub use chunker::ChunkId;
pub use filevol::{
    CONFIG_FILE, DEFAULT_CREDENTIALS_FILE, DEFAULT_ZSTD_LEVEL, DatastoreConfig, DynamicIndex, FixedIndex,
    GcStats, IndexError, IndexRef, Manifest, Owner, S3Settings, SourceHandler, StoreError, SyncStats,
    WriteCounters, Writer, check_blob, decode_checked,
};
pub use progress::Progress;

/// Requests and bytes this process exchanged with object storage.
pub fn bucket_counters() -> filevol::remote::CounterValues {
    filevol::remote::counters()
}

/// The services over one datastore.
#[derive(Debug, Clone)]
pub struct Engine {
    ds: Datastore,
}

impl Engine {
    /// Open the datastore at `root` and bring its catalog up to date.
    pub fn open(root: &Path) -> Result<Self> {
        let engine = Self { ds: Datastore::open(root)? };
        engine.reconcile()?;
        engine.import_legacy_policies();
        Ok(engine)
    }

    /// Open without touching the catalog (for `catalog rebuild`, when the
    /// catalog may be damaged).
    pub fn open_raw(root: &Path) -> Result<Self> {
        Ok(Self { ds: Datastore::open(root)? })
    }

    /// Create (or open) a datastore; returns whether it was created.
    pub fn init(root: &Path, config: DatastoreConfig) -> Result<(Self, bool)> {
        let (ds, created) = Datastore::init(root, config)?;
        let engine = Self { ds };
        engine.reconcile()?;
        engine.import_legacy_policies();
        Ok((engine, created))
    }

    /// Create an S3 datastore at `root` over an empty bucket, or attach
    /// to the one in it (`existing`): its snapshots are fetched and the
    /// catalog built from them.
    pub fn init_s3(
        root: &Path,
        config: DatastoreConfig,
        settings: S3Settings,
        existing: bool,
    ) -> Result<Self> {
        let ds = Datastore::init_s3(root, config, settings, existing, None)?;
        let engine = Self { ds };
        engine.reconcile()?;
        Ok(engine)
    }

    pub fn datastore(&self) -> &Datastore {
        &self.ds
    }
}
