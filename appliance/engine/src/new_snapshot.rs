//! What every kind of backup shares, the walk of a directory tree
//! (`backup.rs`) and a source handler's items (`items.rs`): where it goes,
//! how a stream's chunk list becomes a stored index, and the manifest of
//! the new snapshot.

use anyhow::Result;
use filevol::{
    DatastoreConfig, DynamicIndex, IndexRef, Manifest, ManifestArchive, ManifestError, ManifestStats,
    SourceHandler,
};
use model::{BackupGroup, SnapshotId};

use crate::pipeline::StreamIndex;
use crate::target::{ChunkSink, SnapshotRead};

/// Where a backup goes: the chunk sink, the previous snapshot of the group
/// (for change detection and dedup) and the datastore's settings.
pub struct BackupTarget<'a> {
    pub sink: &'a dyn ChunkSink,
    pub prev_src: &'a dyn SnapshotRead,
    pub prev: Option<(SnapshotId, Manifest)>,
    pub config: DatastoreConfig,
}

/// The manifest of a new snapshot of `group` at `time`.
pub(crate) fn new_manifest(
    group: &BackupGroup,
    time: i64,
    tags: &[String],
    archives: Vec<ManifestArchive>,
    stats: ManifestStats,
    errors: Vec<ManifestError>,
    source: SourceHandler,
) -> Manifest {
    Manifest {
        format: filevol::snapshot::MANIFEST_FORMAT.into(),
        version: filevol::snapshot::MANIFEST_VERSION,
        ns: group.ns.to_string(),
        backup_type: group.kind.clone(),
        backup_id: group.id.clone(),
        time: group.at(time).time_text(),
        tags: tags.to_vec(),
        archives,
        stats,
        errors,
        source,
        created_by: concat!("cairn ", env!("CARGO_PKG_VERSION")).into(),
    }
}

pub(crate) fn index_ref(
    writer: &dyn ChunkSink,
    file: &str,
    index: &StreamIndex,
) -> Result<(IndexRef, DynamicIndex)> {
    let mut didx = DynamicIndex::default();
    let mut end = 0;
    for (id, len) in &index.chunks {
        end += len;
        didx.entries.push((end, *id));
    }
    let r = writer.write_index(file, &didx.encode(), end, didx.entries.len() as u64)?;
    Ok((r, didx))
}
