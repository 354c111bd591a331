//! The catalog: a redb file (`catalog.redb` in the datastore directory)
//! caching which snapshots the datastore holds and their state, so listings
//! need not walk the datastore. It can always be rebuilt from the datastore
//! (`replace_all` takes the result of such a walk).
//!
//! Code map: `schema` (table definitions, schema version), `key` (ordered
//! row keys), `row` (serialized rows and their conversions), `open`
//! (waiting for other holders, schema check), `error`; `access`, `jobs`
//! and `policies` keep the server's own records, `tape` the media catalog
//! (its rows beside it).
//!
//! Invariant: callers open, do their work and drop quickly — one process
//! may have the file open at a time and others wait for it.
//! Invariant: nothing outside this crate sees redb types or serialized rows.
//! Invariant: the catalog never reads the datastore; it stores what it is told.

mod access;
mod error;
mod jobs;
mod key;
mod open;
mod policies;
mod row;
mod schema;
mod tape;

use std::path::{Path, PathBuf};
use std::time::Duration;

use model::{BackupGroup, SnapshotId, SnapshotInfo, SnapshotSummary, VerifyState};
use redb::{Database, ReadableDatabase, ReadableTable, Table};

pub use error::CatalogError;
pub use policies::RemovedPolicy;
pub use schema::{READER_VERSION, SCHEMA_VERSION};
pub use tape::TapeChange;

use key::{group_range, snapshot_key};
use row::{SnapshotIdRowV1, SnapshotRowV1, SnapshotSummaryRowV1};
use schema::{META, MIN_READER_KEY, SNAPSHOTS, SNAPSHOTS_GENERATION_KEY};

/// The catalog file's name inside a datastore directory.
pub const FILE_NAME: &str = "catalog.redb";

/// How long `Catalog::open` waits for another process to close the file.
pub const DEFAULT_OPEN_WAIT: Duration = Duration::from_secs(60);

/// An open catalog. Holding it keeps other processes out; drop it soon.
pub struct Catalog {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Catalog {
    /// Open the catalog at `path`, creating it if missing. While another
    /// process has it open, retry with a growing backoff for up to
    /// `DEFAULT_OPEN_WAIT`, then fail with `CatalogError::Busy`.
    pub fn open(path: &Path) -> Result<Catalog, CatalogError> {
        Self::open_waiting(path, DEFAULT_OPEN_WAIT)
    }

    /// `open`, waiting at most `max_wait` for other holders (zero: try once).
    pub fn open_waiting(path: &Path, max_wait: Duration) -> Result<Catalog, CatalogError> {
        let db = open::open_database(path, max_wait)?;
        open::check_schema(&db, path)?;
        Ok(Catalog { db, path: path.to_owned() })
    }

    /// The file this catalog was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Insert or replace the row of `info.id`.
    pub fn upsert_snapshot(&self, info: &SnapshotInfo) -> Result<(), CatalogError> {
        let write = self.db.begin_write()?;
        {
            let mut table = write.open_table(SNAPSHOTS)?;
            insert(&mut table, info)?;
        }
        bump_generation(&write)?;
        write.commit()?;
        Ok(())
    }

    /// Remove the row of `id`; false if there was none.
    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<bool, CatalogError> {
        let write = self.db.begin_write()?;
        let existed = {
            let mut table = write.open_table(SNAPSHOTS)?;
            table.remove(snapshot_key(id).as_str())?.is_some()
        };
        bump_generation(&write)?;
        write.commit()?;
        Ok(existed)
    }

    /// A number that changes whenever a snapshot row does (in this process
    /// or another): equal numbers mean equal rows.
    pub fn snapshots_generation(&self) -> Result<u64, CatalogError> {
        let read = self.db.begin_read()?;
        match read.open_table(META) {
            Ok(meta) => Ok(meta.get(SNAPSHOTS_GENERATION_KEY)?.map_or(0, |v| v.value())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// The row of `id`, if the catalog has one.
    pub fn get_snapshot(&self, id: &SnapshotId) -> Result<Option<SnapshotInfo>, CatalogError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(SNAPSHOTS)?;
        let key = snapshot_key(id);
        let found = table.get(key.as_str())?;
        found.map(|row| decode(&key, row.value())).transpose()
    }

    /// Every snapshot, or those of `group`, sorted by namespace, group type,
    /// group id, then time (oldest first).
    pub fn list_snapshots(&self, group: Option<&BackupGroup>) -> Result<Vec<SnapshotInfo>, CatalogError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(SNAPSHOTS)?;
        let rows = rows_of(&table, group)?;
        rows.map(|entry| {
            let (key, value) = entry?;
            decode(key.value(), value.value())
        })
        .collect()
    }

    /// Summaries of every snapshot (or those of `group`), in the order of
    /// `list_snapshots`.
    pub fn snapshot_summaries(
        &self,
        group: Option<&BackupGroup>,
    ) -> Result<Vec<SnapshotSummary>, CatalogError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(SNAPSHOTS)?;
        let rows = rows_of(&table, group)?;
        rows.map(|entry| {
            let (key, value) = entry?;
            let row: SnapshotSummaryRowV1 =
                serde_json::from_slice(value.value()).map_err(|e| corrupt(key.value(), e.to_string()))?;
            SnapshotSummary::try_from(row).map_err(|e| corrupt(key.value(), e.to_string()))
        })
        .collect()
    }

    /// One page of the snapshots of `group`: `limit` rows after skipping
    /// `offset`, counted from the newest when `newest_first` (and then
    /// returned newest first), else from the oldest. Also returns how many
    /// the group has. Only the rows returned are decoded.
    pub fn snapshot_page(
        &self,
        group: &BackupGroup,
        newest_first: bool,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<SnapshotInfo>, usize), CatalogError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(SNAPSHOTS)?;
        let (start, end) = group_range(group);
        let total = table.range::<&str>(start.as_str()..end.as_str())?.count();
        let rows = table.range::<&str>(start.as_str()..end.as_str())?;
        let decode_entry = |entry: Result<
            (redb::AccessGuard<'_, &str>, redb::AccessGuard<'_, &[u8]>),
            redb::StorageError,
        >| {
            let (key, value) = entry?;
            decode(key.value(), value.value())
        };
        let page: Result<Vec<_>, _> = if newest_first {
            rows.rev().skip(offset).take(limit).map(decode_entry).collect()
        } else {
            rows.skip(offset).take(limit).map(decode_entry).collect()
        };
        Ok((page?, total))
    }

    /// The ids of every snapshot, in the order of `list_snapshots`.
    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>, CatalogError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(SNAPSHOTS)?;
        table
            .range::<&str>(..)?
            .map(|entry| {
                let (key, value) = entry?;
                let row: SnapshotIdRowV1 =
                    serde_json::from_slice(value.value()).map_err(|e| corrupt(key.value(), e.to_string()))?;
                SnapshotId::try_from(row).map_err(|e| corrupt(key.value(), e.to_string()))
            })
            .collect()
    }

    /// Replace every row with `infos`, in one transaction (a rebuild).
    pub fn replace_all(&self, infos: &[SnapshotInfo]) -> Result<(), CatalogError> {
        let write = self.db.begin_write()?;
        write.delete_table(SNAPSHOTS)?;
        {
            let mut table = write.open_table(SNAPSHOTS)?;
            for info in infos {
                insert(&mut table, info)?;
            }
        }
        bump_generation(&write)?;
        write.commit()?;
        Ok(())
    }

    /// Record the outcome of a verification of `id` at `time` (epoch seconds).
    pub fn set_verify(&self, id: &SnapshotId, state: VerifyState, time: i64) -> Result<(), CatalogError> {
        self.update(id, |info| {
            info.verify = state;
            info.verify_time = Some(time);
        })
    }

    /// Set or clear the protected flag of `id`.
    pub fn set_protected(&self, id: &SnapshotId, protected: bool) -> Result<(), CatalogError> {
        self.update(id, |info| info.protected = protected)
    }

    pub fn set_notes(&self, id: &SnapshotId, notes: &str) -> Result<(), CatalogError> {
        self.update(id, |info| info.notes = notes.to_owned())
    }

    /// Read, change and write back the row of `id` in one transaction.
    fn update(&self, id: &SnapshotId, change: impl FnOnce(&mut SnapshotInfo)) -> Result<(), CatalogError> {
        let write = self.db.begin_write()?;
        {
            let mut table = write.open_table(SNAPSHOTS)?;
            let key = snapshot_key(id);
            let found = table.get(key.as_str())?.map(|row| decode(&key, row.value())).transpose()?;
            let Some(mut info) = found else {
                return Err(CatalogError::NotFound(id.clone()));
            };
            change(&mut info);
            insert(&mut table, &info)?;
        }
        bump_generation(&write)?;
        write.commit()?;
        Ok(())
    }
}

/// Record that a row needing reader version `needs` was written, in the
/// transaction that writes it (the key only ever grows).
pub(crate) fn raise_min_reader(write: &redb::WriteTransaction, needs: u64) -> Result<(), CatalogError> {
    let mut meta = write.open_table(META)?;
    let now = meta.get(MIN_READER_KEY)?.map_or(1, |v| v.value());
    if needs > now {
        meta.insert(MIN_READER_KEY, needs)?;
    }
    Ok(())
}

/// Count one more change of `SNAPSHOTS`, in the transaction that makes it.
fn bump_generation(write: &redb::WriteTransaction) -> Result<(), CatalogError> {
    let mut meta = write.open_table(META)?;
    let now = meta.get(SNAPSHOTS_GENERATION_KEY)?.map_or(0, |v| v.value());
    meta.insert(SNAPSHOTS_GENERATION_KEY, now.wrapping_add(1))?;
    Ok(())
}

/// The rows of `group`'s snapshots, or of all snapshots.
fn rows_of<'t>(
    table: &'t redb::ReadOnlyTable<&'static str, &'static [u8]>,
    group: Option<&BackupGroup>,
) -> Result<redb::Range<'t, &'static str, &'static [u8]>, CatalogError> {
    Ok(match group {
        Some(group) => {
            let (start, end) = group_range(group);
            table.range::<&str>(start.as_str()..end.as_str())?
        }
        None => table.range::<&str>(..)?,
    })
}

fn insert(table: &mut Table<&str, &[u8]>, info: &SnapshotInfo) -> Result<(), CatalogError> {
    let bytes = serde_json::to_vec(&SnapshotRowV1::from(info))
        .map_err(|source| CatalogError::Encode { id: info.id.clone(), source })?;
    table.insert(snapshot_key(&info.id).as_str(), bytes.as_slice())?;
    Ok(())
}

pub(crate) fn corrupt(key: &str, reason: String) -> CatalogError {
    CatalogError::Corrupt { key: key.to_owned(), reason }
}

/// Turn a stored row back into a `SnapshotInfo`, checking it belongs under `key`.
fn decode(key: &str, bytes: &[u8]) -> Result<SnapshotInfo, CatalogError> {
    let row: SnapshotRowV1 = serde_json::from_slice(bytes).map_err(|e| corrupt(key, e.to_string()))?;
    let info = SnapshotInfo::try_from(row).map_err(|e| corrupt(key, e.to_string()))?;
    if snapshot_key(&info.id) != key {
        return Err(corrupt(key, format!("row names snapshot {}, stored under another key", info.id)));
    }
    Ok(info)
}

/// The golden catalog's generator, shared by the tests, names this crate.
#[cfg(test)]
extern crate self as catalog;
#[cfg(test)]
mod tests;
