//! The Cairn datastore: a directory holding the chunk store, snapshot
//! directories (manifest, state, indexes) and the writer journals that let
//! garbage collection run beside backups.
//!
//! Invariant: filevol knows nothing of tokio, HTTP or the catalog; the
//! datastore alone is enough to rebuild the catalog.

pub mod archive;
mod chunkstore;
mod datastore;
mod error;
mod fault;
pub mod fsutil;
mod gc;
pub mod index;
mod policies;
pub mod remote;
mod remote_sync;
pub mod snapshot;
mod writer;

pub use chunkstore::{ChunkStore, check_blob, decode_checked};
pub use datastore::{CONFIG_FILE, DEFAULT_ZSTD_LEVEL, Datastore, DatastoreConfig};
pub use error::{Result, StoreError};
pub use gc::GcStats;
pub use index::{DynamicIndex, FixedIndex, IndexError};
pub use remote::{DEFAULT_CACHE_BYTES, DEFAULT_CREDENTIALS_FILE, DEFAULT_UPLOADS, Owner, S3Settings};
pub use remote_sync::SyncStats;
pub use snapshot::{
    IndexRef, Manifest, ManifestArchive, ManifestError, ManifestStats, SnapshotState, SourceHandler,
    SourceStat,
};
pub use writer::{Unsettled, WorkArea, WriteCounters, Writer};

#[cfg(test)]
mod remote_tests;
#[cfg(test)]
mod tests;
