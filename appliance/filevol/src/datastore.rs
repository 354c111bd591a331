//! Opening and creating a datastore, and where everything lives in it:
//!
//! ```text
//! cairn-datastore.json   format marker and chunking parameters
//! chunks/ab/cd/<hex>     chunk blobs, named by blake3 id (ab, cd: first hex digits)
//! snapshots/[ns/N/…]T/I/<time>/   complete snapshots (manifest, state, indexes)
//! writers/               journals and work areas of running backups
//! locks/                 flock files: gc, chunks, one per group
//! quarantine/            corrupt chunks moved aside by verify
//! trash/                 snapshots being deleted
//! catalog.redb           the catalog (a cache, rebuildable from the rest)
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use chunker::CdcParams;
use serde::{Deserialize, Serialize};

use crate::chunkstore::ChunkStore;
use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::{create_dir_all_durable, write_atomic};

pub const CONFIG_FILE: &str = "cairn-datastore.json";
const FORMAT: &str = "cairn-datastore";
const VERSION: u32 = 1;

/// The datastore's own description, `cairn-datastore.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ConfigFile {
    format: String,
    version: u32,
    chunk_min: usize,
    chunk_avg: usize,
    chunk_max: usize,
    zstd_level: i32,
}

/// Settings chosen at `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatastoreConfig {
    pub cdc: CdcParams,
    pub zstd_level: i32,
}

impl Default for DatastoreConfig {
    fn default() -> Self {
        Self { cdc: CdcParams::default(), zstd_level: 3 }
    }
}

/// An open datastore directory.
#[derive(Debug, Clone)]
pub struct Datastore {
    root: PathBuf,
    config: DatastoreConfig,
    chunks: ChunkStore,
}

impl Datastore {
    /// Create a datastore at `root`, or open the one already there.
    /// Refuses a non-empty directory that is not a datastore.
    pub fn init(root: &Path, config: DatastoreConfig) -> Result<(Self, bool)> {
        if root.join(CONFIG_FILE).exists() {
            return Ok((Self::open(root)?, false));
        }
        if root.exists() {
            let mut entries = fs::read_dir(root).at(root)?;
            if !root.is_dir() || entries.next().is_some() {
                return Err(StoreError::NotADatastore(root.to_owned()));
            }
        }
        create_dir_all_durable(root)?;
        for dir in ["chunks", "snapshots", "writers", "locks", "quarantine", "trash"] {
            create_dir_all_durable(&root.join(dir))?;
        }
        let file = ConfigFile {
            format: FORMAT.into(),
            version: VERSION,
            chunk_min: config.cdc.min,
            chunk_avg: config.cdc.avg,
            chunk_max: config.cdc.max,
            zstd_level: config.zstd_level,
        };
        let json = serde_json::to_vec_pretty(&file).expect("config serializes");
        write_atomic(&root.join(CONFIG_FILE), &json)?;
        Ok((Self::open(root)?, true))
    }

    /// Open an existing datastore.
    pub fn open(root: &Path) -> Result<Self> {
        let path = root.join(CONFIG_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NoDatastore(root.to_owned()));
            }
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let bad = |detail: String| StoreError::Format { path: path.clone(), detail };
        let file: ConfigFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if file.format != FORMAT || file.version != VERSION {
            return Err(bad(format!(
                "{} version {} (this build reads {FORMAT} {VERSION})",
                file.format, file.version
            )));
        }
        let cdc = CdcParams { min: file.chunk_min, avg: file.chunk_avg, max: file.chunk_max }
            .validate()
            .map_err(|e| bad(e.to_string()))?;
        let root = root.to_owned();
        // Working directories hold no data and may be missing (a datastore
        // copied without its empty directories); recreate them.
        for dir in ["chunks", "snapshots", "writers", "locks", "quarantine", "trash"] {
            let dir = root.join(dir);
            if !dir.is_dir() {
                create_dir_all_durable(&dir)?;
            }
        }
        let chunks = ChunkStore::new(root.join("chunks"), root.join("quarantine"));
        Ok(Self { config: DatastoreConfig { cdc, zstd_level: file.zstd_level }, chunks, root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> DatastoreConfig {
        self.config
    }

    pub fn chunks(&self) -> &ChunkStore {
        &self.chunks
    }

    pub fn catalog_path(&self) -> PathBuf {
        self.root.join("catalog.redb")
    }

    pub(crate) fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}
