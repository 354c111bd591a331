//! Snapshot directories: `snapshots/[ns/A/ns/B/]TYPE/ID/TIME/` holding
//! `manifest.json` (immutable, written once at commit), `state.json`
//! (protected flag, notes, verify state; rewritten atomically) and the
//! archive indexes named in the manifest.
//!
//! Invariant: a snapshot directory exists under its final name only when
//! it is complete; backups build it under `writers/` and rename it in.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use model::{BackupGroup, Namespace, SnapshotId};
use serde::{Deserialize, Serialize};

use crate::datastore::Datastore;
use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::{fsync_dir, write_atomic};
use crate::index::{DynamicIndex, FixedIndex};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const STATE_FILE: &str = "state.json";
pub const MANIFEST_FORMAT: &str = "cairn-snapshot";
pub const MANIFEST_VERSION: u32 = 1;

/// `manifest.json`: what a snapshot holds. Written once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// Namespace path (`a/b`, empty for the root).
    pub ns: String,
    pub backup_type: String,
    pub backup_id: String,
    /// RFC 3339 UTC, whole seconds.
    pub time: String,
    pub tags: Vec<String>,
    pub archives: Vec<ManifestArchive>,
    pub stats: ManifestStats,
    /// Source objects that could not be read and were left out.
    pub errors: Vec<ManifestError>,
    /// The source handler that made this snapshot.
    pub source: SourceHandler,
    pub created_by: String,
}

impl Manifest {
    /// Structural checks a reader relies on, whatever wrote the file:
    /// archive names are single safe path components (restore joins them to
    /// its target), unique, and each kind has its index files.
    pub fn check(&self) -> std::result::Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for a in &self.archives {
            let name = a.name.as_str();
            let safe = !name.is_empty()
                && name.len() <= 255
                && name != "."
                && name != ".."
                && !name.contains(['/', '\0']);
            if !safe {
                return Err(format!("invalid archive name {name:?}"));
            }
            if !seen.insert(name) {
                return Err(format!("archive name {name:?} appears twice"));
            }
            let want = match a.kind.as_str() {
                "file" => 2,
                "image" => 1,
                other => return Err(format!("archive {name:?} has unknown kind {other:?}")),
            };
            if a.indexes.len() != want {
                return Err(format!("archive {name:?} lists {} index files, not {want}", a.indexes.len()));
            }
            for i in &a.indexes {
                let f = i.file.as_str();
                if f.is_empty() || f.contains(['/', '\0']) || f == "." || f == ".." {
                    return Err(format!("archive {name:?} names an invalid index file {f:?}"));
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestArchive {
    pub name: String,
    /// `file` or `image`.
    pub kind: String,
    /// Logical bytes: file data, or the image size.
    pub size: u64,
    /// File archives: `NAME.meta.didx`, `NAME.payload.didx`; images: `NAME.fidx`.
    pub indexes: Vec<IndexRef>,
    /// Images: the source's stat at backup time, for change detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_stat: Option<SourceStat>,
    /// Entries in a file archive.
    #[serde(default)]
    pub entries: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexRef {
    pub file: String,
    /// blake3 of the index file, hex.
    pub blake3: String,
    /// Stream length (or image size) in bytes.
    pub length: u64,
    pub chunks: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStat {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
    pub dev: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestStats {
    pub files: u64,
    pub size: u64,
    /// Bytes of chunk blobs this backup added to the store.
    pub stored: u64,
    pub new_chunks: u64,
    pub reused_chunks: u64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestError {
    /// Archive-relative path (lossy UTF-8 for display).
    pub path: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceHandler {
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// `state.json`: what may change after a snapshot is made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotState {
    #[serde(default)]
    pub protected: bool,
    #[serde(default)]
    pub notes: String,
    /// `none`, `ok` or `failed`.
    #[serde(default = "none_text")]
    pub verify_state: String,
    #[serde(default)]
    pub verify_time: Option<i64>,
}

fn none_text() -> String {
    "none".into()
}

fn group_rel(group: &BackupGroup) -> PathBuf {
    let mut p = PathBuf::new();
    for c in group.ns.components() {
        p.push("ns");
        p.push(c);
    }
    p.push(&group.kind);
    p.push(&group.id);
    p
}

impl Datastore {
    pub fn group_dir(&self, group: &BackupGroup) -> PathBuf {
        self.dir("snapshots").join(group_rel(group))
    }

    pub fn snapshot_dir(&self, id: &SnapshotId) -> PathBuf {
        self.group_dir(&id.group).join(id.time_text())
    }

    pub fn read_manifest(&self, id: &SnapshotId) -> Result<Manifest> {
        let path = self.snapshot_dir(id).join(MANIFEST_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StoreError::SnapshotNotFound(id.to_string()));
            }
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Format { path: path.clone(), detail: e.to_string() })?;
        if m.format != MANIFEST_FORMAT || m.version != MANIFEST_VERSION {
            let detail = format!("{} version {} (this build reads version 1)", m.format, m.version);
            return Err(StoreError::Format { path, detail });
        }
        if let Err(detail) = m.check() {
            return Err(StoreError::Format { path, detail });
        }
        Ok(m)
    }

    pub fn read_state(&self, id: &SnapshotId) -> Result<SnapshotState> {
        let path = self.snapshot_dir(id).join(STATE_FILE);
        match fs::read(&path) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|e| StoreError::Format { path, detail: e.to_string() })
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if self.snapshot_dir(id).is_dir() {
                    Ok(SnapshotState { verify_state: none_text(), ..Default::default() })
                } else {
                    Err(StoreError::SnapshotNotFound(id.to_string()))
                }
            }
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// Rewrite a snapshot's state. In an S3 datastore the bucket's copy
    /// too, when this appliance holds the claim (a reader keeps its own).
    pub fn write_state(&self, id: &SnapshotId, state: &SnapshotState) -> Result<()> {
        let dir = self.snapshot_dir(id);
        if !dir.join(MANIFEST_FILE).is_file() {
            return Err(StoreError::SnapshotNotFound(id.to_string()));
        }
        let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
        write_atomic(&dir.join(STATE_FILE), &bytes)?;
        if let Some(r) = self.remote() {
            match r.check_owner() {
                Ok(()) => r.bucket.put(&format!("{}/{STATE_FILE}", self.snapshot_key(id)), bytes)?,
                Err(StoreError::NotOwner { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Read an index file of a snapshot, checking it against the manifest's digest.
    pub fn read_index_bytes(&self, id: &SnapshotId, r: &IndexRef) -> Result<Vec<u8>> {
        let path = self.snapshot_dir(id).join(&r.file);
        let bytes = fs::read(&path).at(&path)?;
        if blake3::hash(&bytes).to_hex().as_str() != r.blake3 {
            return Err(StoreError::BadIndex {
                path,
                detail: "content does not match the manifest digest".into(),
            });
        }
        Ok(bytes)
    }

    pub fn read_didx(&self, id: &SnapshotId, r: &IndexRef) -> Result<DynamicIndex> {
        let bytes = self.read_index_bytes(id, r)?;
        DynamicIndex::decode(&bytes)
            .map_err(|e| StoreError::BadIndex { path: self.snapshot_dir(id).join(&r.file), detail: e.0 })
    }

    pub fn read_fidx(&self, id: &SnapshotId, r: &IndexRef) -> Result<FixedIndex> {
        let bytes = self.read_index_bytes(id, r)?;
        FixedIndex::decode(&bytes)
            .map_err(|e| StoreError::BadIndex { path: self.snapshot_dir(id).join(&r.file), detail: e.0 })
    }

    /// All complete snapshots, sorted (namespace, type, id, time).
    pub fn list_snapshots(&self) -> Result<Vec<SnapshotId>> {
        let mut out = Vec::new();
        self.walk_ns(&self.dir("snapshots"), &Namespace::root(), &mut out)?;
        out.sort();
        Ok(out)
    }

    /// The snapshots of one group, oldest first.
    pub fn list_group(&self, group: &BackupGroup) -> Result<Vec<SnapshotId>> {
        let mut out = Vec::new();
        self.collect_times(&self.group_dir(group), group, &mut out)?;
        out.sort();
        Ok(out)
    }

    fn walk_ns(&self, dir: &Path, ns: &Namespace, out: &mut Vec<SnapshotId>) -> Result<()> {
        for (name, path) in subdirs(dir)? {
            if name == "ns" {
                for (child, cpath) in subdirs(&path)? {
                    let text = if ns.is_root() { child.clone() } else { format!("{ns}/{child}") };
                    if let Ok(child_ns) = Namespace::parse(&text) {
                        self.walk_ns(&cpath, &child_ns, out)?;
                    }
                }
                continue;
            }
            for (id, ipath) in subdirs(&path)? {
                if let Ok(group) = BackupGroup::new(ns.clone(), &name, &id) {
                    self.collect_times(&ipath, &group, out)?;
                }
            }
        }
        Ok(())
    }

    fn collect_times(&self, dir: &Path, group: &BackupGroup, out: &mut Vec<SnapshotId>) -> Result<()> {
        for (name, path) in subdirs(dir)? {
            if let Some(t) = model::time::parse_rfc3339(&name)
                && model::time::format_rfc3339(t) == name
                && path.join(MANIFEST_FILE).is_file()
            {
                out.push(group.at(t));
            }
        }
        Ok(())
    }

    /// Delete a snapshot: rename it into `trash/` (atomic: it stops being
    /// visible at once), then remove the files. Its chunks stay until `gc`.
    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        let dir = self.snapshot_dir(id);
        if !dir.join(MANIFEST_FILE).is_file() {
            return Err(StoreError::SnapshotNotFound(id.to_string()));
        }
        self.check_owner()?;
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        let trash = self.dir("trash").join(&uuid);
        // In a bucket: name what to delete there before it goes here, so a
        // crash in between is finished by the next `empty_trash`.
        let pending = self.dir("trash").join(format!("{uuid}.prefix"));
        if self.remote().is_some() {
            write_atomic(&pending, self.snapshot_key(id).as_bytes())?;
        }
        fs::rename(&dir, &trash).at(&dir)?;
        fsync_dir(dir.parent().unwrap_or(self.root()))?;
        if self.remote().is_some() {
            self.delete_bucket_snapshot(&self.snapshot_key(id))?;
            fs::remove_file(&pending).at(&pending)?;
        }
        fs::remove_dir_all(&trash).at(&trash)?;
        Ok(())
    }

    /// Remove leftovers of interrupted deletions.
    pub fn empty_trash(&self) -> Result<()> {
        if self.remote().is_some() {
            self.finish_bucket_deletions()?;
        }
        for (_, path) in subdirs(&self.dir("trash"))? {
            fs::remove_dir_all(&path).at(&path)?;
        }
        Ok(())
    }
}

/// (name, path) of the sub-directories of `dir`; a missing dir is empty.
fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.at(dir)?;
        if e.file_type().at(&e.path())?.is_dir()
            && let Ok(name) = e.file_name().into_string()
        {
            out.push((name, e.path()));
        }
    }
    Ok(out)
}
