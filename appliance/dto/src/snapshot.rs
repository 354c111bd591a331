//! Snapshots and their contents: `cairn snapshots --json`, `cairn ls
//! --json` and the API's snapshot and file listings.

use engine::restore::{EntryKind, Listed};
use model::SnapshotInfo;
use serde::Serialize;

#[derive(Serialize)]
pub struct SnapshotJson {
    id: String,
    group: String,
    time: String,
    tags: Vec<String>,
    size: u64,
    stored: u64,
    duration_ms: u64,
    files: u64,
    errors: u64,
    protected: bool,
    notes: String,
    verify_state: &'static str,
    verify_time: Option<String>,
    archives: Vec<ArchiveJson>,
}

#[derive(Serialize)]
struct ArchiveJson {
    name: String,
    kind: &'static str,
    size: u64,
}

impl From<&SnapshotInfo> for SnapshotJson {
    fn from(i: &SnapshotInfo) -> Self {
        Self {
            id: i.id.to_string(),
            group: i.id.group.to_string(),
            time: i.id.time_text(),
            tags: i.tags.clone(),
            size: i.size,
            stored: i.stored,
            duration_ms: i.duration_ms,
            files: i.files,
            errors: i.errors,
            protected: i.protected,
            notes: i.notes.clone(),
            verify_state: i.verify.as_str(),
            verify_time: i.verify_time.map(model::time::format_rfc3339),
            archives: i
                .archives
                .iter()
                .map(|a| ArchiveJson { name: a.name.clone(), kind: a.kind.as_str(), size: a.size })
                .collect(),
        }
    }
}

#[derive(Serialize)]
pub struct ListedJson {
    /// The path, with invalid UTF-8 replaced by U+FFFD; `path_hex` then
    /// carries the exact bytes.
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_hex: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    mtime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtime_nsec: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rdev: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hardlink: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    sparse: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    xattrs: Vec<String>,
}

impl ListedJson {
    pub fn new(l: &Listed) -> Self {
        let e = l.entry.as_ref();
        let hex = |b: &[u8]| b.iter().map(|c| format!("{c:02x}")).collect::<String>();
        Self {
            path: String::from_utf8_lossy(&l.path).into_owned(),
            path_hex: std::str::from_utf8(&l.path).is_err().then(|| hex(&l.path)),
            kind: kind_name(l),
            size: l.size,
            mode: e.map(|e| e.mode),
            uid: e.map(|e| e.uid),
            gid: e.map(|e| e.gid),
            mtime: e.map(|e| model::time::format_rfc3339(e.mtime)),
            mtime_nsec: e.map(|e| e.mtime_nsec),
            target: e
                .filter(|e| e.kind == EntryKind::Symlink)
                .map(|e| String::from_utf8_lossy(&e.link_target).into_owned()),
            rdev: e.filter(|e| matches!(e.kind, EntryKind::CharDev | EntryKind::BlockDev)).map(|e| e.rdev),
            hardlink: e.map(|e| e.hardlink).filter(|h| *h != 0),
            sparse: e.is_some_and(|e| e.extents.is_some()),
            xattrs: e
                .map(|e| e.xattrs.iter().map(|(n, _)| String::from_utf8_lossy(n).into_owned()).collect())
                .unwrap_or_default(),
        }
    }
}

pub fn kind_name(l: &Listed) -> &'static str {
    match l.entry.as_ref().map(|e| e.kind) {
        None => l.archive_kind,
        Some(EntryKind::Dir) => "dir",
        Some(EntryKind::File) => "file",
        Some(EntryKind::Symlink) => "symlink",
        Some(EntryKind::Fifo) => "fifo",
        Some(EntryKind::CharDev) => "chardev",
        Some(EntryKind::BlockDev) => "blockdev",
        Some(EntryKind::Socket) => "socket",
    }
}
