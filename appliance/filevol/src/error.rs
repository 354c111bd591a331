//! The datastore's error type: callers branch on these variants.

use std::path::{Path, PathBuf};

use chunker::{BlobError, ChunkId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "disk full while writing {path}: free space (or run `cairn gc`), then retry; nothing partial was committed"
    )]
    DiskFull { path: PathBuf },
    #[error("{0} is not a Cairn datastore and not empty; choose an empty or new directory for `cairn init`")]
    NotADatastore(PathBuf),
    #[error("no datastore at {0}; create one with `cairn init` (or pass --datastore)")]
    NoDatastore(PathBuf),
    #[error("{path}: damaged or of an unsupported format: {detail}")]
    Format { path: PathBuf, detail: String },
    #[error("chunk {0} is missing from the datastore; run `cairn verify` to find the affected snapshots")]
    ChunkMissing(ChunkId),
    #[error(
        "chunk {id} is corrupt ({source}); run `cairn verify` to quarantine it and name the affected snapshots"
    )]
    ChunkCorrupt { id: ChunkId, source: BlobError },
    #[error("{path}: damaged index: {detail}")]
    BadIndex { path: PathBuf, detail: String },
    #[error("snapshot {0} already exists; pass a different --time or wait a second")]
    SnapshotExists(String),
    #[error("{0} chunks of this backup were written but never made durable; the snapshot was not committed")]
    Unsettled(u64),
    #[error("snapshot {0} not found; list snapshots with `cairn snapshots`")]
    SnapshotNotFound(String),
    #[error(
        "group {0} is busy: another backup or prune of it is running (on a server, possibly a remote backup whose client stopped; its session ends after `session_idle` seconds without requests); retry when it finishes"
    )]
    GroupBusy(String),
    #[error("another garbage collection is running on this datastore; retry when it finishes")]
    GcBusy,
    /// Reading from a remote server failed (network, refused, bad answer).
    #[error("{0}")]
    Remote(String),
    #[error(transparent)]
    Bucket(#[from] bucket::BucketError),
    #[error(
        "the datastore's bucket is claimed by another appliance ({host}, since {since}): this one may read it (list, restore, verify) but not write; `cairn datastore takeover` moves the claim here"
    )]
    NotOwner { host: String, since: String },
    #[error("{0} is already a datastore; `cairn init --s3` needs a new, empty directory")]
    AlreadyADatastore(PathBuf),
    #[error("{0} already holds a Cairn datastore; attach to it with `cairn init --s3 … --existing`")]
    BucketHoldsDatastore(String),
    #[error(
        "{0} holds objects but no Cairn datastore (no cairn-datastore.json); choose an empty bucket or another --prefix"
    )]
    BucketNotADatastore(String),
    #[error("{0} is empty: there is no datastore to attach; leave out --existing to create one")]
    NoDatastoreInBucket(String),
}

impl StoreError {
    /// Wrap an I/O error with the path it concerns; ENOSPC becomes `DiskFull`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        if source.raw_os_error() == Some(nix::libc::ENOSPC) {
            Self::DiskFull { path: path.to_owned() }
        } else {
            Self::Io { path: path.to_owned(), source }
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attach a path to I/O results.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| StoreError::io(path, e))
    }
}
