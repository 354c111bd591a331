//! Listing, protecting, pruning and collecting garbage.

use anyhow::{Result, bail};
use filevol::GcStats;
use model::prune::{KeepRules, PruneItem, decide};
use model::{BackupGroup, SnapshotId, SnapshotInfo};

use crate::Engine;

/// Decides `(keep, reason)` for each of a group's snapshots, aligned.
pub type Decider<'a> = dyn FnMut(&BackupGroup, &[SnapshotInfo]) -> Result<Vec<(bool, String)>> + 'a;

/// A request the caller must change (shown to them as is).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// A request that conflicts with the state of the datastore.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Something the caller named (a path, an archive, a file) is not there
/// (shown to them as is).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// The verdict of prune on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneEntry {
    pub id: SnapshotId,
    pub keep: bool,
    pub reason: String,
}

impl Engine {
    /// Snapshots from the catalog, optionally of one group; oldest first
    /// within each group.
    pub fn snapshots(&self, group: Option<&BackupGroup>) -> Result<Vec<SnapshotInfo>> {
        Ok(self.catalog()?.list_snapshots(group)?)
    }

    /// Summaries of the snapshots (of one group, or all), cheaper to read
    /// than full rows.
    pub fn snapshot_summaries(&self, group: Option<&BackupGroup>) -> Result<Vec<model::SnapshotSummary>> {
        Ok(self.catalog()?.snapshot_summaries(group)?)
    }

    /// Every snapshot's summary, with the catalog's generation they were
    /// read at, unless the generation is still `known` (`None`: nothing
    /// changed since).
    pub fn snapshot_summaries_since(
        &self,
        known: Option<u64>,
    ) -> Result<(u64, Option<Vec<model::SnapshotSummary>>)> {
        self.read_since(known, |cat| cat.snapshot_summaries(None))
    }

    /// Every snapshot's full row, unless the catalog's snapshot generation
    /// is still `known` (see `snapshot_summaries_since`).
    pub fn snapshots_since(&self, known: Option<u64>) -> Result<(u64, Option<Vec<SnapshotInfo>>)> {
        self.read_since(known, |cat| cat.list_snapshots(None))
    }

    /// The catalog's snapshot generation, and `read` of it unless that
    /// generation is still `known`.
    fn read_since<T>(
        &self,
        known: Option<u64>,
        read: impl FnOnce(&catalog::Catalog) -> Result<T, catalog::CatalogError>,
    ) -> Result<(u64, Option<T>)> {
        let cat = self.catalog()?;
        let generation = cat.snapshots_generation()?;
        if known == Some(generation) {
            return Ok((generation, None));
        }
        Ok((generation, Some(read(&cat)?)))
    }

    /// A page of a group's snapshots and the group's count (see
    /// `Catalog::snapshot_page`).
    pub fn snapshot_page(
        &self,
        group: &BackupGroup,
        newest_first: bool,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<SnapshotInfo>, usize)> {
        Ok(self.catalog()?.snapshot_page(group, newest_first, offset, limit)?)
    }

    pub fn snapshot(&self, id: &SnapshotId) -> Result<SnapshotInfo> {
        match self.catalog()?.get_snapshot(id)? {
            Some(info) => Ok(info),
            None => bail!(filevol::StoreError::SnapshotNotFound(id.to_string())),
        }
    }

    /// Set or clear the protected flag.
    pub fn set_protected(&self, id: &SnapshotId, protected: bool) -> Result<()> {
        let mut state = self.ds.read_state(id)?;
        state.protected = protected;
        self.ds.write_state(id, &state)?;
        self.catalog()?.set_protected(id, protected)?;
        Ok(())
    }

    /// Replace a snapshot's notes (at most 64 KiB of text).
    pub fn set_notes(&self, id: &SnapshotId, notes: &str) -> Result<()> {
        if notes.len() > 64 << 10 {
            bail!(BadRequest("notes are limited to 64 KiB".into()));
        }
        let mut state = self.ds.read_state(id)?;
        state.notes = notes.to_owned();
        self.ds.write_state(id, &state)?;
        self.catalog()?.set_notes(id, notes)?;
        Ok(())
    }

    /// Delete one snapshot (its chunks stay until `gc`). A protected
    /// snapshot is refused; a backup or prune of the group must not run.
    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        let _lock = self.ds.lock_group(&id.group)?;
        if self.ds.read_state(id)?.protected {
            bail!(Refused(format!("snapshot {id} is protected; unprotect it first")));
        }
        self.ds.remove_snapshot(id)?;
        self.catalog()?.remove_snapshot(id)?;
        Ok(())
    }

    /// Decide (and unless `dry_run`, remove) by keep rules. Oldest first.
    pub fn prune(&self, group: &BackupGroup, rules: &KeepRules, dry_run: bool) -> Result<Vec<PruneEntry>> {
        if rules.is_empty() {
            bail!(
                "no keep rule given: pass at least one --keep-* option (prune would otherwise keep everything)"
            );
        }
        self.prune_with(group, dry_run, &mut |_, infos| {
            let items: Vec<PruneItem> =
                infos.iter().map(|i| PruneItem { time: i.id.time, protected: i.protected }).collect();
            Ok(decide(&items, rules).into_iter().map(|d| (d.keep, d.reason)).collect())
        })
    }

    /// Prune `group` with any decider: it gets the group and its snapshots (under
    /// the group lock unless `dry_run`) and returns `(keep, reason)` for
    /// each, aligned. A decider error removes nothing; a protected snapshot
    /// is kept whatever the decider says.
    pub fn prune_with(
        &self,
        group: &BackupGroup,
        dry_run: bool,
        decider: &mut Decider<'_>,
    ) -> Result<Vec<PruneEntry>> {
        let _lock = if dry_run { None } else { Some(self.ds.lock_group(group)?) };
        let infos = self.snapshots(Some(group))?;
        let decisions = decider(group, &infos)?;
        if decisions.len() != infos.len() {
            bail!(
                "retention gave {} decisions for {} snapshots; nothing removed",
                decisions.len(),
                infos.len()
            );
        }
        let mut out: Vec<PruneEntry> = infos
            .into_iter()
            .zip(decisions)
            .map(|(i, (keep, reason))| {
                if i.protected && !keep {
                    PruneEntry { id: i.id, keep: true, reason: "protected".into() }
                } else {
                    PruneEntry { id: i.id, keep, reason }
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        if !dry_run {
            let cat = self.catalog()?;
            for e in out.iter_mut().filter(|e| !e.keep) {
                // Protection is read again from the snapshot itself: it may
                // have been set while the decider ran.
                if self.ds.read_state(&e.id)?.protected {
                    e.keep = true;
                    e.reason = "protected".into();
                    continue;
                }
                self.ds.remove_snapshot(&e.id)?;
                cat.remove_snapshot(&e.id)?;
            }
        }
        Ok(out)
    }

    /// Mark and sweep; see `filevol::gc`.
    pub fn gc(&self, progress: &mut dyn FnMut(u8)) -> Result<GcStats> {
        Ok(self.ds.collect_garbage(progress)?)
    }
}

impl Engine {
    /// Size and free space (for unprivileged writers) of the file system
    /// holding the datastore, in bytes.
    pub fn disk_space(&self) -> Result<(u64, u64)> {
        let st = nix::sys::statvfs::statvfs(self.ds.root())?;
        let unit = st.fragment_size() as u64;
        Ok((st.blocks() as u64 * unit, st.blocks_available() as u64 * unit))
    }
}
