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
//!
//! An S3 datastore (version 2 of the config, with a `backend`) keeps the
//! same directories as its working copy, plus `cache/`; see `remote.rs`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chunker::CdcParams;
use serde::{Deserialize, Serialize};

use crate::chunkstore::ChunkStore;
use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::{create_dir_all_durable, write_atomic};
use crate::remote::{Remote, S3Settings};

pub const CONFIG_FILE: &str = "cairn-datastore.json";
const FORMAT: &str = "cairn-datastore";
/// A local datastore's config, and the marker object in a bucket.
const VERSION: u32 = 1;
/// The config of a datastore whose chunks live in a bucket.
const VERSION_S3: u32 = 2;

/// The datastore's own description, `cairn-datastore.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ConfigFile {
    format: String,
    version: u32,
    chunk_min: usize,
    chunk_avg: usize,
    chunk_max: usize,
    zstd_level: i32,
    /// Version 2: where the chunks, indexes and manifests live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backend: Option<S3Settings>,
}

impl ConfigFile {
    fn new(config: DatastoreConfig, backend: Option<S3Settings>) -> Self {
        Self {
            format: FORMAT.into(),
            version: if backend.is_some() { VERSION_S3 } else { VERSION },
            chunk_min: config.cdc.min,
            chunk_avg: config.cdc.avg,
            chunk_max: config.cdc.max,
            zstd_level: config.zstd_level,
            backend,
        }
    }

    /// Check the format and the chunking parameters.
    fn parse(bytes: &[u8], path: &Path) -> Result<(Self, DatastoreConfig)> {
        let bad = |detail: String| StoreError::Format { path: path.to_owned(), detail };
        let file: ConfigFile = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let known = match &file.backend {
            None => file.version == VERSION,
            Some(b) => file.version == VERSION_S3 && b.kind == "s3",
        };
        if file.format != FORMAT || !known {
            return Err(bad(format!(
                "{} version {} (this build reads {FORMAT} {VERSION}, and {VERSION_S3} with an s3 backend)",
                file.format, file.version
            )));
        }
        let cdc = CdcParams { min: file.chunk_min, avg: file.chunk_avg, max: file.chunk_max }
            .validate()
            .map_err(|e| bad(e.to_string()))?;
        let config = DatastoreConfig { cdc, zstd_level: file.zstd_level };
        Ok((file, config))
    }
}

/// Settings chosen at `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatastoreConfig {
    pub cdc: CdcParams,
    pub zstd_level: i32,
}

/// The zstd level of a new datastore. Level 1, as Proxmox Backup Server
/// uses: on the Linux tree it compresses 16 % faster than level 3 and
/// stores 10 % more (`docs/benchmarks.md`).
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

impl Default for DatastoreConfig {
    fn default() -> Self {
        Self { cdc: CdcParams::default(), zstd_level: DEFAULT_ZSTD_LEVEL }
    }
}

/// An open datastore directory.
#[derive(Debug, Clone)]
pub struct Datastore {
    root: PathBuf,
    config: DatastoreConfig,
    chunks: ChunkStore,
    remote: Option<Arc<Remote>>,
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
        let file = ConfigFile::new(config, None);
        let json = serde_json::to_vec_pretty(&file).expect("config serializes");
        write_atomic(&root.join(CONFIG_FILE), &json)?;
        Ok((Self::open(root)?, true))
    }

    /// Open an existing datastore. No request goes to a bucket yet.
    pub fn open(root: &Path) -> Result<Self> {
        Self::open_with(root, None)
    }

    /// Open, giving an S3 datastore this bucket instead of the one its
    /// config names (tests run on a bucket in memory).
    pub fn open_with(root: &Path, bucket: Option<bucket::Bucket>) -> Result<Self> {
        let path = root.join(CONFIG_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NoDatastore(root.to_owned()));
            }
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let (file, config) = ConfigFile::parse(&bytes, &path)?;
        let root = root.to_owned();
        // Working directories hold no data and may be missing (a datastore
        // copied without its empty directories); recreate them.
        for dir in ["chunks", "snapshots", "writers", "locks", "quarantine", "trash", "cache"] {
            let dir = root.join(dir);
            if !dir.is_dir() && (dir.file_name() != Some("cache".as_ref()) || file.backend.is_some()) {
                create_dir_all_durable(&dir)?;
            }
        }
        let remote = match (file.backend, bucket) {
            (None, _) => None,
            (Some(s), Some(b)) => Some(Arc::new(Remote::with_bucket(&root, s, b))),
            (Some(s), None) => Some(Arc::new(Remote::connect(&root, s)?)),
        };
        let chunks = ChunkStore::new(root.join("chunks"), root.join("quarantine"), remote.clone());
        Ok(Self { config, chunks, root, remote })
    }

    /// Create an S3 datastore at `root` over an empty bucket (prefix), or
    /// with `existing`, attach to the datastore already in it: its
    /// snapshots are fetched into the working copy and the chunk markers
    /// made from a listing. The claim is taken when nobody holds it;
    /// otherwise the datastore opens for reading only. `bucket`: as in
    /// `open_with`.
    pub fn init_s3(
        root: &Path,
        config: DatastoreConfig,
        mut settings: S3Settings,
        existing: bool,
        bucket: Option<bucket::Bucket>,
    ) -> Result<Self> {
        if settings.instance.is_empty() {
            settings.instance = uuid::Uuid::new_v4().to_string();
        }
        settings.prefix = settings.prefix.trim_matches('/').to_owned();
        if root.join(CONFIG_FILE).exists() {
            return Err(StoreError::AlreadyADatastore(root.to_owned()));
        }
        if root.exists() {
            let mut entries = fs::read_dir(root).at(root)?;
            if !root.is_dir() || entries.next().is_some() {
                return Err(StoreError::NotADatastore(root.to_owned()));
            }
        }
        let remote = match bucket.clone() {
            Some(b) => Remote::with_bucket(root, settings.clone(), b),
            None => Remote::connect(root, settings.clone())?,
        };
        let where_ = settings.describe();
        remote.bucket.probe()?;
        let marker = remote.bucket.get(CONFIG_FILE)?;
        let config = if existing {
            let Some(bytes) = marker else {
                if remote.bucket.list("")?.is_empty() {
                    return Err(StoreError::NoDatastoreInBucket(where_));
                }
                return Err(StoreError::BucketNotADatastore(where_));
            };
            let (file, config) =
                ConfigFile::parse(&bytes, &PathBuf::from(format!("{where_}: {CONFIG_FILE}")))?;
            if file.backend.is_some() {
                return Err(StoreError::BucketNotADatastore(where_));
            }
            config
        } else {
            if marker.is_some() {
                return Err(StoreError::BucketHoldsDatastore(where_));
            }
            if !remote.bucket.list("")?.is_empty() {
                return Err(StoreError::BucketNotADatastore(where_));
            }
            let json = serde_json::to_vec_pretty(&ConfigFile::new(config, None)).expect("config serializes");
            remote.bucket.put_new(CONFIG_FILE, json)?;
            config
        };
        if !existing || remote.owner()?.is_none() {
            remote.claim()?;
        }
        let json =
            serde_json::to_vec_pretty(&ConfigFile::new(config, Some(settings))).expect("config serializes");
        crate::remote::write_local(root, &json)?;
        let ds = Self::open_with(root, bucket)?;
        if existing {
            ds.rebuild_markers()?;
            ds.sync_from_bucket(true)?;
        }
        Ok(ds)
    }

    /// The bucket side, for an S3 datastore.
    pub fn remote(&self) -> Option<&Remote> {
        self.remote.as_deref()
    }

    /// Fails with `NotOwner` when another datastore directory holds the
    /// bucket's claim; always passes on a local datastore.
    pub fn check_owner(&self) -> Result<()> {
        match &self.remote {
            Some(r) => r.check_owner(),
            None => Ok(()),
        }
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
