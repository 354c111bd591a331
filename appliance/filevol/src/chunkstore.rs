//! The chunk store: one file per chunk blob at `chunks/ab/cd/<hex>`.
//!
//! Invariant: a chunk file under its final name is always complete and
//! durable (written elsewhere, fsynced, then renamed in); readers never see
//! partial chunks. Nothing here deletes a chunk except `remove` (called by
//! the sweep) and `quarantine` (which moves it aside).
//!
//! In an S3 datastore the blobs are objects in the bucket; the files under
//! `chunks/` are zero-length markers of what the bucket holds (so `has`
//! asks no one), and reads go through the LRU cache (see `remote.rs`).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chunker::{ChunkId, decode_blob, verify_blob};

use crate::error::{IoContext, Result, StoreError};
use crate::remote::{Remote, chunk_key};

#[derive(Debug, Clone)]
pub struct ChunkStore {
    root: PathBuf,
    quarantine: PathBuf,
    remote: Option<Arc<Remote>>,
}

impl ChunkStore {
    pub(crate) fn new(root: PathBuf, quarantine: PathBuf, remote: Option<Arc<Remote>>) -> Self {
        Self { root, quarantine, remote }
    }

    /// Whether the blobs live in an S3 bucket (reads are round trips).
    pub fn in_bucket(&self) -> bool {
        self.remote.is_some()
    }

    pub(crate) fn remote(&self) -> Option<&Remote> {
        self.remote.as_deref()
    }

    /// A blob straight from the bucket.
    fn fetch(&self, r: &Remote, id: &ChunkId) -> Result<Vec<u8>> {
        r.bucket.get(&chunk_key(id))?.ok_or(StoreError::ChunkMissing(*id))
    }

    /// `chunks/ab/cd/<hex>`
    pub fn path(&self, id: &ChunkId) -> PathBuf {
        let hex = id.to_hex();
        self.root.join(&hex[0..2]).join(&hex[2..4]).join(hex)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn has(&self, id: &ChunkId) -> Result<bool> {
        let p = self.path(id);
        match fs::symlink_metadata(&p) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io(&p, e)),
        }
    }

    /// The stored blob bytes of a chunk (in an S3 datastore, from the
    /// cache or else the bucket; only a blob that checks out is cached).
    pub fn read_blob(&self, id: &ChunkId) -> Result<Vec<u8>> {
        if let Some(r) = self.remote() {
            if let Some(b) = r.cached(id) {
                return Ok(b);
            }
            let b = self.fetch(r, id)?;
            if check_blob(id, &b).is_ok() {
                r.cache_put(id, &b);
            }
            return Ok(b);
        }
        let p = self.path(id);
        match fs::read(&p) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(StoreError::ChunkMissing(*id)),
            Err(e) => Err(StoreError::io(&p, e)),
        }
    }

    /// Read, decompress and check a chunk against its id. (A damaged
    /// cached copy is dropped and the bucket's read instead.)
    pub fn read(&self, id: &ChunkId) -> Result<Vec<u8>> {
        if let Some(r) = self.remote() {
            if let Some(b) = r.cached(id) {
                if let Ok(data) = decode_checked(id, &b) {
                    return Ok(data);
                }
                r.uncache(id);
            }
            let b = self.fetch(r, id)?;
            let data = decode_checked(id, &b)?;
            r.cache_put(id, &b);
            return Ok(data);
        }
        decode_checked(id, &self.read_blob(id)?)
    }

    /// Read a chunk and check it against its id without keeping its
    /// content; returns its plain length. In an S3 datastore the bucket's
    /// copy is read, never the cache: this is what verify trusts.
    pub fn check(&self, id: &ChunkId) -> Result<u64> {
        if let Some(r) = self.remote() {
            return check_blob(id, &self.fetch(r, id)?);
        }
        check_blob(id, &self.read_blob(id)?)
    }

    /// Move a corrupt chunk to `quarantine/<hex>.<unix time>`; never deletes.
    /// Returns the new path, or `None` if the chunk was already gone (or,
    /// in a bucket another appliance owns, left where it is).
    pub fn quarantine(&self, id: &ChunkId, now: i64) -> Result<Option<PathBuf>> {
        if let Some(r) = self.remote() {
            match r.check_owner() {
                Err(StoreError::NotOwner { .. }) => return Ok(None),
                other => other?,
            }
            let to = format!("quarantine/{}.{now}", id.to_hex());
            match r.bucket.copy(&chunk_key(id), &to) {
                Err(bucket::BucketError::NotFound(_)) => return Ok(None),
                other => other?,
            }
            self.remove(id)?;
            return Ok(Some(PathBuf::from(format!("{}: {to}", r.settings.describe()))));
        }
        let from = self.path(id);
        let to = self.quarantine.join(format!("{}.{now}", id.to_hex()));
        match fs::rename(&from, &to) {
            Ok(()) => {
                crate::fsutil::fsync_dir(&self.quarantine)?;
                crate::fsutil::fsync_dir(from.parent().unwrap_or(&self.root))?;
                Ok(Some(to))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&from, e)),
        }
    }

    /// Every chunk file in shard `ab` (the first byte of the id): (id, size).
    /// In an S3 datastore, the bucket's objects.
    pub fn list_shard(&self, shard: u8) -> Result<Vec<(ChunkId, u64)>> {
        if let Some(r) = self.remote() {
            let objects = r.bucket.list(&format!("chunks/{shard:02x}"))?;
            return Ok(objects
                .into_iter()
                .filter_map(|(key, len)| {
                    let name = key.rsplit('/').next()?;
                    Some((ChunkId::from_hex(name)?, len))
                })
                .collect());
        }
        self.list_local_shard(shard)
    }

    /// The files (or, in an S3 datastore, markers) under `chunks/ab/`.
    pub(crate) fn list_local_shard(&self, shard: u8) -> Result<Vec<(ChunkId, u64)>> {
        let dir = self.root.join(format!("{shard:02x}"));
        let mut out = Vec::new();
        let subdirs = match fs::read_dir(&dir) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(StoreError::io(&dir, e)),
        };
        for sub in subdirs {
            let sub = sub.at(&dir)?.path();
            for f in fs::read_dir(&sub).at(&sub)? {
                let f = f.at(&sub)?;
                let name = f.file_name();
                if let Some(id) = name.to_str().and_then(ChunkId::from_hex) {
                    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                    out.push((id, len));
                }
            }
        }
        Ok(out)
    }

    /// Delete a chunk file (sweep only). In an S3 datastore the marker
    /// goes first, then the object: a marker never outlives its object.
    pub(crate) fn remove(&self, id: &ChunkId) -> Result<bool> {
        if let Some(r) = self.remote() {
            let marker = self.path(id);
            match fs::remove_file(&marker) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(StoreError::io(&marker, e)),
                _ => {}
            }
            r.uncache(id);
            r.bucket.delete(&chunk_key(id))?;
            return Ok(true);
        }
        let p = self.path(id);
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io(&p, e)),
        }
    }
}

/// `decode_checked` without keeping the content (see
/// `chunker::verify_blob`); returns the plain length.
pub fn check_blob(id: &ChunkId, blob: &[u8]) -> Result<u64> {
    match verify_blob(blob) {
        Ok(h) if h.id == *id => Ok(u64::from(h.plain_len)),
        Ok(h) => Err(StoreError::ChunkCorrupt {
            id: *id,
            source: chunker::BlobError::Digest { expected: *id, actual: h.id },
        }),
        Err(source) => Err(StoreError::ChunkCorrupt { id: *id, source }),
    }
}

/// Decode a blob that should hold chunk `id`: decompressed and checked
/// against the id (a blob of another chunk is corrupt too).
pub fn decode_checked(id: &ChunkId, blob: &[u8]) -> Result<Vec<u8>> {
    match decode_blob(blob) {
        Ok((got, data)) if got == *id => Ok(data),
        Ok((got, _)) => Err(StoreError::ChunkCorrupt {
            id: *id,
            source: chunker::BlobError::Digest { expected: *id, actual: got },
        }),
        Err(source) => Err(StoreError::ChunkCorrupt { id: *id, source }),
    }
}
