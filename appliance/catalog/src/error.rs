//! The one error type of the catalog crate, with messages that say what to
//! do next.

use std::path::PathBuf;
use std::time::Duration;

use model::SnapshotId;

/// Everything that can go wrong with the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Another process kept the catalog open for longer than we waited.
    #[error(
        "catalog {} is still in use by another cairn process after waiting {} s; \
         wait for running backups, prunes or garbage collection to finish and try again",
        path.display(), waited.as_secs()
    )]
    Busy { path: PathBuf, waited: Duration },

    /// redb refused to open the file for a reason other than another holder.
    #[error(
        "cannot open catalog {}: {source}; check that the file is readable and writable and the disk \
         has space, or move it aside and run `cairn catalog rebuild`",
        path.display()
    )]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },

    /// The catalog was written by a newer cairn.
    #[error(
        "catalog {} has schema version {found} but this cairn understands up to {supported}; \
         upgrade cairn to open it",
        path.display()
    )]
    SchemaTooNew { path: PathBuf, found: u64, supported: u64 },

    /// The catalog holds rows with fields this build does not know.
    #[error(
        "catalog {} was written by a newer cairn (its rows need reader version {needs}, this cairn \
         reads version {reads}); upgrade cairn to open it: an older one would drop what it does not know",
        path.display()
    )]
    ReaderTooOld { path: PathBuf, needs: u64, reads: u64 },

    /// The catalog has a schema version no migration leads from.
    #[error(
        "catalog {} has schema version {found}, which this cairn cannot migrate; \
         move it aside and run `cairn catalog rebuild`",
        path.display()
    )]
    SchemaUnsupported { path: PathBuf, found: u64 },

    /// No row for this snapshot.
    #[error(
        "snapshot {0} is not in the catalog; check the name with `cairn snapshots`, \
         or run `cairn catalog rebuild` if the datastore has it"
    )]
    NotFound(SnapshotId),

    /// A stored row cannot be read back.
    #[error("catalog row {key:?} is unreadable ({reason}); run `cairn catalog rebuild`")]
    Corrupt { key: String, reason: String },

    /// A row could not be serialized.
    #[error("cannot encode the catalog row of snapshot {id}: {source}")]
    Encode {
        id: SnapshotId,
        #[source]
        source: serde_json::Error,
    },

    /// Storage, transaction or table failure inside redb.
    #[error(
        "catalog database error: {0}; if it persists, move catalog.redb aside and run `cairn catalog rebuild`"
    )]
    Database(#[source] redb::Error),
}

macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for CatalogError {
            fn from(err: $ty) -> Self {
                Self::Database(err.into())
            }
        }
    )*};
}

from_redb!(redb::StorageError, redb::TransactionError, redb::TableError, redb::CommitError);
