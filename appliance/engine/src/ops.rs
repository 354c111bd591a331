//! Listing, protecting, pruning and collecting garbage.

use anyhow::{Result, bail};
use filevol::GcStats;
use model::prune::{KeepRules, PruneItem, decide};
use model::{BackupGroup, SnapshotId, SnapshotInfo};

use crate::Engine;

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

    /// Decide (and unless `dry_run`, remove) by keep rules. Oldest first.
    pub fn prune(&self, group: &BackupGroup, rules: &KeepRules, dry_run: bool) -> Result<Vec<PruneEntry>> {
        if rules.is_empty() {
            bail!(
                "no keep rule given: pass at least one --keep-* option (prune would otherwise keep everything)"
            );
        }
        let _lock = if dry_run { None } else { Some(self.ds.lock_group(group)?) };
        let infos = self.snapshots(Some(group))?;
        let items: Vec<PruneItem> =
            infos.iter().map(|i| PruneItem { time: i.id.time, protected: i.protected }).collect();
        let decisions = decide(&items, rules);
        let mut out: Vec<PruneEntry> = infos
            .into_iter()
            .zip(decisions)
            .map(|(i, d)| PruneEntry { id: i.id, keep: d.keep, reason: d.reason })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        if !dry_run {
            let cat = self.catalog()?;
            for e in out.iter().filter(|e| !e.keep) {
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
