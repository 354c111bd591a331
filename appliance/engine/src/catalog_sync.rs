//! Keeping the catalog equal to the datastore: snapshot rows are built
//! from each snapshot's manifest and state; `reconcile` adds what a crash
//! between commit and catalog update left out and drops what is gone.

use std::collections::HashSet;

use anyhow::{Context, Result};
use catalog::Catalog;
use filevol::{Manifest, SnapshotState};
use model::{ArchiveKind, ArchiveSummary, SnapshotId, SnapshotInfo, VerifyState};

use crate::Engine;

pub(crate) fn info_from(id: &SnapshotId, m: &Manifest, s: &SnapshotState) -> SnapshotInfo {
    SnapshotInfo {
        id: id.clone(),
        tags: m.tags.clone(),
        size: m.stats.size,
        stored: m.stats.stored,
        duration_ms: m.stats.duration_ms,
        files: m.stats.files,
        errors: m.errors.len() as u64,
        protected: s.protected,
        notes: s.notes.clone(),
        verify: VerifyState::parse(&s.verify_state).unwrap_or_default(),
        verify_time: s.verify_time,
        archives: m
            .archives
            .iter()
            .map(|a| ArchiveSummary {
                name: a.name.clone(),
                kind: ArchiveKind::parse(&a.kind).unwrap_or(ArchiveKind::File),
                size: a.size,
            })
            .collect(),
    }
}

impl Engine {
    pub(crate) fn catalog(&self) -> Result<Catalog> {
        let path = self.ds.catalog_path();
        Catalog::open(&path).with_context(|| format!("opening the catalog {}", path.display()))
    }

    /// The catalog row of a snapshot, read from the datastore.
    pub fn info_from_disk(&self, id: &SnapshotId) -> Result<SnapshotInfo> {
        let m = self.ds.read_manifest(id)?;
        let s = self.ds.read_state(id)?;
        Ok(info_from(id, &m, &s))
    }

    pub(crate) fn catalog_add(&self, id: &SnapshotId) -> Result<()> {
        let info = self.info_from_disk(id)?;
        self.catalog()?.upsert_snapshot(&info)?;
        Ok(())
    }

    /// Make the catalog list exactly the snapshots on disk.
    pub fn reconcile(&self) -> Result<()> {
        let on_disk: HashSet<SnapshotId> = self.ds.list_snapshots()?.into_iter().collect();
        let cat = self.catalog()?;
        let known: HashSet<SnapshotId> = cat.snapshot_ids()?.into_iter().collect();
        for id in known.difference(&on_disk) {
            cat.remove_snapshot(id)?;
        }
        for id in on_disk.difference(&known) {
            match self.info_from_disk(id) {
                Ok(info) => cat.upsert_snapshot(&info)?,
                Err(e) => tracing::warn!("snapshot {id} left out of the catalog: {e:#}"),
            }
        }
        Ok(())
    }

    /// Rebuild the catalog from the datastore alone: the snapshots listed,
    /// and those left out because their manifest or state cannot be read
    /// (with why). One damaged snapshot does not keep the others out; its
    /// files stay on disk, and `gc` refuses to run while it is unreadable.
    pub fn rebuild_catalog(&self) -> Result<(usize, Vec<(SnapshotId, String)>)> {
        let (mut infos, mut left_out) = (Vec::new(), Vec::new());
        for id in self.ds.list_snapshots()? {
            match self.info_from_disk(&id) {
                Ok(info) => infos.push(info),
                Err(e) => left_out.push((id, format!("{e:#}"))),
            }
        }
        self.catalog()?.replace_all(&infos)?;
        Ok((infos.len(), left_out))
    }
}
