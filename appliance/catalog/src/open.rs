//! Opening the catalog file: waiting for other cairn processes that hold
//! it, creating it when missing, and checking its schema version.
//!
//! redb lets one process (one `Database`) have a file open at a time, so
//! every open waits with a growing backoff while another holder finishes.
//!
//! Invariant: an open never migrates or rewrites rows; the only write it
//! makes is the schema version and empty tables of a new catalog.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use redb::{Builder, Database, DatabaseError, ReadableDatabase, ReadableTable, TableError};

use crate::CatalogError;
use crate::schema::{META, MIN_READER_KEY, READER_VERSION, SCHEMA_VERSION, SCHEMA_VERSION_KEY, SNAPSHOTS};

/// The first pause between attempts to open a busy catalog.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(200);
/// Page cache per open; catalogs are small and opens short-lived.
const CACHE_BYTES: usize = 32 << 20;

/// Open (creating if missing) the redb file at `path`, retrying while
/// another holder has it open, for at most `max_wait`.
pub(crate) fn open_database(path: &Path, max_wait: Duration) -> Result<Database, CatalogError> {
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut builder = Builder::new();
    builder.set_cache_size(CACHE_BYTES);
    loop {
        match builder.create(path) {
            Ok(db) => return Ok(db),
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                let waited = started.elapsed();
                if waited >= max_wait {
                    return Err(CatalogError::Busy { path: path.to_owned(), waited });
                }
                tracing::debug!(path = %path.display(), ?waited, "catalog busy, waiting");
                thread::sleep(backoff.min(max_wait - waited));
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(source) => return Err(CatalogError::Open { path: path.to_owned(), source }),
        }
    }
}

/// Make sure `db` holds a schema this build understands, with no rows
/// newer than it reads, initializing a new (empty) catalog.
pub(crate) fn check_schema(db: &Database, path: &Path) -> Result<(), CatalogError> {
    let read = db.begin_read()?;
    match read.open_table(META) {
        Ok(meta) => {
            if let Some(version) = meta.get(SCHEMA_VERSION_KEY)? {
                accept_version(version.value(), path)?;
                let needs = meta.get(MIN_READER_KEY)?.map_or(1, |v| v.value());
                if needs > READER_VERSION {
                    return Err(CatalogError::ReaderTooOld {
                        path: path.to_owned(),
                        needs,
                        reads: READER_VERSION,
                    });
                }
                return Ok(());
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(err) => return Err(err.into()),
    }
    drop(read);

    let write = db.begin_write()?;
    {
        let mut meta = write.open_table(META)?;
        let found = meta.get(SCHEMA_VERSION_KEY)?.map(|v| v.value());
        match found {
            Some(version) => return accept_version(version, path),
            None => {
                meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)?;
            }
        }
        write.open_table(SNAPSHOTS)?;
    }
    write.commit()?;
    tracing::debug!(path = %path.display(), version = SCHEMA_VERSION, "catalog initialized");
    Ok(())
}

/// Accept the current version; refuse newer ones and, as no migrations
/// exist yet, older ones.
fn accept_version(found: u64, path: &Path) -> Result<(), CatalogError> {
    match found {
        SCHEMA_VERSION => Ok(()),
        newer if newer > SCHEMA_VERSION => {
            Err(CatalogError::SchemaTooNew { path: path.to_owned(), found, supported: SCHEMA_VERSION })
        }
        _ => Err(CatalogError::SchemaUnsupported { path: path.to_owned(), found }),
    }
}
