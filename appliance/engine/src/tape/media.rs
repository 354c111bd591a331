//! The media catalog as operators see it: pools, and a library's
//! inventory joined with what the catalog knows of each cartridge.

use anyhow::{Result, anyhow, bail};
use model::tape::{MediaPool, MediaSet, Medium, TapeCopy, is_cleaning};
use serde::Serialize;

use crate::Engine;

/// One element of a library and the cartridge in it.
#[derive(Debug, Clone, Serialize)]
pub struct InventoryRow {
    /// `drive`, `slot`, `import-export`.
    pub kind: &'static str,
    /// The changer's address; for drives, the drive's number.
    pub address: u16,
    pub barcode: Option<String>,
    /// The media catalog's state, `unknown` for a cartridge never seen,
    /// `cleaning` for a cleaning cartridge.
    pub state: Option<String>,
    pub pool: Option<String>,
    pub set: Option<String>,
    pub seq: Option<u32>,
    pub worm: bool,
    pub bytes: u64,
    pub sessions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The whole media catalog.
#[derive(Debug, Clone, Default)]
pub struct MediaCatalog {
    pub pools: Vec<MediaPool>,
    pub media: Vec<Medium>,
    pub sets: Vec<MediaSet>,
    pub copies: Vec<TapeCopy>,
}

impl Engine {
    /// Add or change a media pool.
    pub fn put_pool(&self, pool: &MediaPool) -> Result<()> {
        MediaPool::check_name(&pool.name).map_err(|e| anyhow!(e))?;
        if pool.retention.is_some_and(|r| r < 0) {
            bail!("a retention cannot be negative");
        }
        Ok(self.catalog()?.put_pool(pool)?)
    }

    /// Remove a pool that no media set belongs to.
    pub fn remove_pool(&self, name: &str) -> Result<bool> {
        let cat = self.catalog()?;
        let sets = cat.list_media_sets()?.into_iter().filter(|s| s.pool == name).count();
        if sets > 0 {
            bail!("pool {name} has {sets} media sets on tape; it stays while they do");
        }
        Ok(cat.remove_pool(name)?)
    }

    pub fn media_catalog(&self) -> Result<MediaCatalog> {
        let cat = self.catalog()?;
        Ok(MediaCatalog {
            pools: cat.list_pools()?,
            media: cat.list_media()?,
            sets: cat.list_media_sets()?,
            copies: cat.list_tape_copies()?,
        })
    }

    /// The snapshots of `groups` for a tape job, oldest first in each
    /// group; with `latest`, only each group's newest.
    pub fn snapshots_of_groups(
        &self,
        groups: &[model::BackupGroup],
        latest: bool,
    ) -> Result<Vec<model::SnapshotId>> {
        let mut out = Vec::new();
        for g in groups {
            let mut snaps: Vec<model::SnapshotId> =
                self.snapshots(Some(g))?.into_iter().map(|s| s.id).collect();
            snaps.sort_by_key(|s| s.time);
            if latest {
                snaps = snaps.pop().into_iter().collect();
            }
            out.extend(snaps);
        }
        Ok(out)
    }

    /// Clean drive `n` of `lib` with one of its cleaning cartridges now,
    /// whatever the drive says; returns the cartridge used.
    pub fn tape_clean(&self, lib: &tape::Library, n: usize) -> Result<String> {
        let mut deck = super::deck::Deck::new(lib)?;
        let cleaned = deck.reserve_drive(n).and_then(|()| deck.clean(true));
        let release = deck.release();
        let cleaner = cleaned?.ok_or_else(|| anyhow!("drive {n} was not cleaned"))?;
        release?;
        Ok(cleaner)
    }

    /// What is where in `lib`, with the catalog's word on each cartridge.
    /// Touches no drive.
    pub fn tape_inventory(&self, lib: &tape::Library) -> Result<Vec<InventoryRow>> {
        let inv = lib.changer()?.inventory()?;
        let mc = self.media_catalog()?;
        let mut rows = Vec::new();
        for (i, e) in inv.drives.iter().enumerate() {
            rows.push(row(&mc, "drive", i as u16, e.barcode.clone()));
        }
        for e in inv.storage.iter() {
            rows.push(row(&mc, "slot", e.address, e.barcode.clone()));
        }
        for e in inv.import_export.iter() {
            rows.push(row(&mc, "import-export", e.address, e.barcode.clone()));
        }
        Ok(rows)
    }
}

fn row(mc: &MediaCatalog, kind: &'static str, address: u16, barcode: Option<String>) -> InventoryRow {
    let m = barcode.as_ref().and_then(|b| mc.media.iter().find(|m| &m.barcode == b));
    let set = m.and_then(|m| m.set.clone());
    let pool = set.as_ref().and_then(|s| mc.sets.iter().find(|x| &x.id == s)).map(|s| s.pool.clone());
    let state = match (&barcode, m) {
        (None, _) => None,
        (Some(b), None) if is_cleaning(b) => Some("cleaning".into()),
        (Some(_), None) => Some("unknown".into()),
        (Some(_), Some(m)) => Some(m.state.as_str().to_owned()),
    };
    let sessions = barcode
        .as_ref()
        .map_or(0, |b| mc.copies.iter().filter(|c| c.parts.iter().any(|p| &p.barcode == b)).count());
    InventoryRow {
        kind,
        address,
        barcode,
        state,
        pool,
        set,
        seq: m.map(|m| m.seq).filter(|s| *s > 0),
        worm: m.is_some_and(|m| m.worm),
        bytes: m.map_or(0, |m| m.bytes),
        sessions,
        reason: m.and_then(|m| m.reason.clone()),
    }
}
