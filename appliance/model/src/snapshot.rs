//! What Cairn knows of a snapshot beyond its id: the catalog's row, the
//! table `cairn snapshots` prints, and what retention decides on.

use crate::SnapshotId;

/// Outcome of the last verification of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyState {
    /// Never verified.
    #[default]
    None,
    /// Every chunk re-read and re-hashed correctly.
    Ok,
    /// At least one chunk is missing or corrupt.
    Failed,
}

impl VerifyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Ok => "ok",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "none" => Some(Self::None),
            "ok" => Some(Self::Ok),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// The kind of an archive inside a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// A directory tree: metadata stream + payload stream.
    File,
    /// A regular file or block device, fixed 4 MiB chunks.
    Image,
}

impl ArchiveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Image => "image",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "file" => Some(Self::File),
            "image" => Some(Self::Image),
            _ => None,
        }
    }
}

/// One archive of a snapshot, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSummary {
    pub name: String,
    pub kind: ArchiveKind,
    /// Logical bytes (file data, or image size).
    pub size: u64,
}

/// Everything the catalog keeps of one complete snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: SnapshotId,
    pub tags: Vec<String>,
    /// Logical bytes of all archives.
    pub size: u64,
    /// Bytes of chunk blobs this snapshot added to the store when it was made.
    pub stored: u64,
    pub duration_ms: u64,
    /// Entries (files, dirs, …) in all file archives.
    pub files: u64,
    /// Source objects that could not be read and were skipped.
    pub errors: u64,
    pub protected: bool,
    pub notes: String,
    pub verify: VerifyState,
    /// When `verify` was last set (epoch seconds).
    pub verify_time: Option<i64>,
    pub archives: Vec<ArchiveSummary>,
}

/// The few facts of a snapshot that overviews add up (cheaper to read
/// than a whole `SnapshotInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSummary {
    pub id: SnapshotId,
    pub size: u64,
    pub stored: u64,
    pub verify: VerifyState,
}
