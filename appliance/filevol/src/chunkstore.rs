//! The chunk store: one file per chunk blob at `chunks/ab/cd/<hex>`.
//!
//! Invariant: a chunk file under its final name is always complete and
//! durable (written elsewhere, fsynced, then renamed in); readers never see
//! partial chunks. Nothing here deletes a chunk except `remove` (called by
//! the sweep) and `quarantine` (which moves it aside).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use chunker::{ChunkId, decode_blob, verify_blob};

use crate::error::{IoContext, Result, StoreError};

#[derive(Debug, Clone)]
pub struct ChunkStore {
    root: PathBuf,
    quarantine: PathBuf,
}

impl ChunkStore {
    pub(crate) fn new(root: PathBuf, quarantine: PathBuf) -> Self {
        Self { root, quarantine }
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

    /// The stored blob bytes of a chunk.
    pub fn read_blob(&self, id: &ChunkId) -> Result<Vec<u8>> {
        let p = self.path(id);
        match fs::read(&p) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(StoreError::ChunkMissing(*id)),
            Err(e) => Err(StoreError::io(&p, e)),
        }
    }

    /// Read, decompress and check a chunk against its id.
    pub fn read(&self, id: &ChunkId) -> Result<Vec<u8>> {
        decode_checked(id, &self.read_blob(id)?)
    }

    /// Read a chunk and check it against its id without keeping its
    /// content; returns its plain length.
    pub fn check(&self, id: &ChunkId) -> Result<u64> {
        check_blob(id, &self.read_blob(id)?)
    }

    /// Move a corrupt chunk to `quarantine/<hex>.<unix time>`; never deletes.
    /// Returns the new path, or `None` if the chunk was already gone.
    pub fn quarantine(&self, id: &ChunkId, now: i64) -> Result<Option<PathBuf>> {
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
    pub fn list_shard(&self, shard: u8) -> Result<Vec<(ChunkId, u64)>> {
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

    /// Delete a chunk file (sweep only).
    pub(crate) fn remove(&self, id: &ChunkId) -> Result<bool> {
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
