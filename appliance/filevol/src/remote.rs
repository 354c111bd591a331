//! Datastores whose chunks, indexes and manifests live in an S3 bucket.
//!
//! The datastore directory stays the working copy: its config (with the
//! bucket's address, never the credentials), the catalog, the locks and
//! writer journals, a mirror of every snapshot directory (manifests,
//! states, indexes: small, and needed by every listing), zero-length
//! markers `chunks/ab/cd/<hex>` for the chunks known to be in the bucket,
//! and `cache/ab/<hex>`, the last chunks read (LRU, size-limited).
//!
//! In the bucket (under the prefix):
//!
//! ```text
//! cairn-datastore.json        format marker and chunking parameters
//! cairn-owner.json            the appliance that may write (one at a time)
//! chunks/ab/cd/<hex>          chunk blobs
//! snapshots/…/<time>/…        indexes, state.json, then manifest.json last
//! quarantine/<hex>.<time>     corrupt chunks moved aside by verify
//! ```
//!
//! Invariants: a chunk object is uploaded before its marker is made, and
//! its marker removed before the object is deleted, so a marker always
//! means the bucket has the chunk. A snapshot's manifest is the last
//! object written and the first deleted, so a snapshot in the bucket is
//! complete whenever its manifest is there. Only the owner writes.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bucket::{Bucket, Credentials, S3Location};
use chunker::ChunkId;
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::{create_dir_all_durable, write_atomic};

pub const OWNER_KEY: &str = "cairn-owner.json";

pub use bucket::CounterValues;

/// Requests and bytes this process exchanged with object storage.
pub fn counters() -> CounterValues {
    bucket::counters().values()
}

/// The `backend` of a version-2 `cairn-datastore.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Settings {
    pub kind: String,
    pub endpoint: String,
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub region: String,
    /// Read when `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` are not set.
    pub credentials_file: PathBuf,
    /// Size limit of `cache/`, in bytes (0: no cache).
    pub cache_bytes: u64,
    /// Uploads in flight per backup.
    pub uploads: usize,
    /// This datastore directory's identity, written into the owner object.
    pub instance: String,
}

pub use bucket::DEFAULT_CREDENTIALS_FILE;

/// The local chunk cache's size limit unless chosen (1 GiB).
pub const DEFAULT_CACHE_BYTES: u64 = 1 << 30;
/// Uploads in flight per backup unless chosen.
pub const DEFAULT_UPLOADS: usize = 16;

impl S3Settings {
    /// A bucket with the defaults `cairn init --s3` and `[s3]` use: no
    /// prefix, region `us-east-1`, the key from `DEFAULT_CREDENTIALS_FILE`
    /// (unless the environment has one), a 1 GiB cache, 16 uploads; the
    /// instance id is chosen by `Datastore::init_s3`.
    pub fn new(endpoint: &str, bucket: &str) -> Self {
        Self {
            kind: "s3".into(),
            endpoint: endpoint.to_owned(),
            bucket: bucket.to_owned(),
            prefix: String::new(),
            region: "us-east-1".into(),
            credentials_file: PathBuf::from(DEFAULT_CREDENTIALS_FILE),
            cache_bytes: DEFAULT_CACHE_BYTES,
            uploads: DEFAULT_UPLOADS,
            instance: String::new(),
        }
    }

    pub fn location(&self) -> S3Location {
        S3Location {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            region: self.region.clone(),
        }
    }

    /// `s3://bucket/prefix at endpoint`, for messages.
    pub fn describe(&self) -> String {
        let p = if self.prefix.is_empty() { String::new() } else { format!("/{}", self.prefix) };
        format!("s3://{}{p} at {}", self.bucket, self.endpoint)
    }
}

/// `cairn-owner.json`: which datastore directory may write the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub instance: String,
    pub host: String,
    /// RFC 3339.
    pub claimed: String,
}

/// The bucket side of a datastore, shared by its chunk store and writers.
#[derive(Debug)]
pub struct Remote {
    pub(crate) bucket: Bucket,
    pub(crate) settings: S3Settings,
    cache: PathBuf,
    cache_added: AtomicU64,
    evicting: Mutex<()>,
}

pub fn chunk_key(id: &ChunkId) -> String {
    let hex = id.to_hex();
    format!("chunks/{}/{}/{hex}", &hex[0..2], &hex[2..4])
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn now_text() -> String {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    model::time::format_rfc3339(secs)
}

impl Remote {
    pub(crate) fn connect(root: &Path, settings: S3Settings) -> Result<Self> {
        let creds = Credentials::find(&settings.credentials_file)?;
        let bucket = Bucket::s3(&settings.location(), &creds)?;
        Ok(Self::with_bucket(root, settings, bucket))
    }

    pub(crate) fn with_bucket(root: &Path, settings: S3Settings, bucket: Bucket) -> Self {
        Self {
            bucket,
            settings,
            cache: root.join("cache"),
            cache_added: AtomicU64::new(0),
            evicting: Mutex::new(()),
        }
    }

    pub fn settings(&self) -> &S3Settings {
        &self.settings
    }

    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// The owner object, if any.
    pub fn owner(&self) -> Result<Option<Owner>> {
        match self.bucket.get(OWNER_KEY)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b).map(Some).map_err(|e| StoreError::Format {
                path: PathBuf::from(OWNER_KEY),
                detail: format!("{} in {}", e, self.settings.describe()),
            }),
        }
    }

    /// Fails with `NotOwner` unless this datastore directory holds the claim.
    pub fn check_owner(&self) -> Result<()> {
        match self.owner()? {
            Some(o) if o.instance == self.settings.instance => Ok(()),
            Some(o) => Err(StoreError::NotOwner { host: o.host, since: o.claimed }),
            None => Err(StoreError::NotOwner { host: "nobody (no claim)".into(), since: "-".into() }),
        }
    }

    /// Write the owner object naming this datastore directory.
    pub(crate) fn claim(&self) -> Result<()> {
        let o = Owner { instance: self.settings.instance.clone(), host: hostname(), claimed: now_text() };
        self.bucket.put(OWNER_KEY, serde_json::to_vec_pretty(&o).expect("owner serializes"))?;
        Ok(())
    }

    fn cache_path(&self, id: &ChunkId) -> PathBuf {
        let hex = id.to_hex();
        self.cache.join(&hex[0..2]).join(hex)
    }

    /// A cached blob, marked as just used.
    pub(crate) fn cached(&self, id: &ChunkId) -> Option<Vec<u8>> {
        let p = self.cache_path(id);
        let mut f = fs::File::open(&p).ok()?;
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut buf).ok()?;
        let _ = f.set_modified(SystemTime::now());
        Some(buf)
    }

    pub(crate) fn uncache(&self, id: &ChunkId) {
        let _ = fs::remove_file(self.cache_path(id));
    }

    /// Keep a blob just fetched; evicts the least recently used blobs
    /// once the cache has grown past its limit.
    pub(crate) fn cache_put(&self, id: &ChunkId, blob: &[u8]) {
        let limit = self.settings.cache_bytes;
        if limit == 0 || blob.len() as u64 > limit / 4 {
            return;
        }
        let p = self.cache_path(id);
        let dir = p.parent().expect("cache path has a parent");
        let tmp = dir.join(format!(".{}.{}", id.to_hex(), uuid::Uuid::new_v4().simple()));
        let written = fs::create_dir_all(dir)
            .and_then(|()| OpenOptions::new().write(true).create_new(true).open(&tmp))
            .and_then(|mut f| f.write_all(blob))
            .and_then(|()| fs::rename(&tmp, &p));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
            return;
        }
        let added = self.cache_added.fetch_add(blob.len() as u64, Ordering::Relaxed) + blob.len() as u64;
        if added > limit / 8 {
            self.evict();
        }
    }

    /// The cached blobs (last use, size, path) and their total size.
    fn cache_files(&self) -> (Vec<(SystemTime, u64, PathBuf)>, u64) {
        let mut files = Vec::new();
        let mut total = 0u64;
        for shard in fs::read_dir(&self.cache).into_iter().flatten().flatten() {
            for f in fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                if let Ok(m) = f.metadata() {
                    total += m.len();
                    files.push((m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len(), f.path()));
                }
            }
        }
        (files, total)
    }

    /// Bytes the chunk cache holds now.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_files().1
    }

    /// Remove the least recently used cached blobs until the cache is at
    /// most 90 % of its limit.
    pub fn evict(&self) {
        let Ok(_one) = self.evicting.try_lock() else { return };
        self.cache_added.store(0, Ordering::Relaxed);
        let (mut files, mut total) = self.cache_files();
        if total <= self.settings.cache_bytes {
            return;
        }
        let goal = self.settings.cache_bytes / 10 * 9;
        files.sort();
        for (_, len, path) in files {
            if total <= goal {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

/// Create the local side of an S3 datastore: its directories and the
/// version-2 config naming the bucket.
pub(crate) fn write_local(root: &Path, config_json: &[u8]) -> Result<()> {
    create_dir_all_durable(root)?;
    for dir in ["chunks", "snapshots", "writers", "locks", "quarantine", "trash", "cache"] {
        create_dir_all_durable(&root.join(dir))?;
    }
    write_atomic(&root.join(crate::CONFIG_FILE), config_json)
}

/// Make a zero-length marker for a chunk now in the bucket.
pub(crate) fn mark(marker: &Path) -> Result<()> {
    match OpenOptions::new().write(true).create(true).truncate(false).open(marker) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let parent = marker.parent().expect("marker has a parent");
            fs::create_dir_all(parent).at(parent)?;
            OpenOptions::new().write(true).create(true).truncate(false).open(marker).at(marker).map(|_| ())
        }
        Err(e) => Err(StoreError::io(marker, e)),
    }
}
