//! Tape media as JSON: pools, cartridges, media sets, snapshots on tape
//! (`cairn tape pool list|media --json` and, with the tape API, the
//! server).

use model::tape::{MediaPool, MediaSet, Medium, TapeCopy};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct PoolJson {
    pub name: String,
    /// `continue` or `new-set`.
    pub allocation: &'static str,
    /// Seconds a closed media set is kept; null: forever.
    pub retention_secs: Option<i64>,
    pub worm: bool,
}

impl From<&MediaPool> for PoolJson {
    fn from(p: &MediaPool) -> Self {
        PoolJson {
            name: p.name.clone(),
            allocation: p.allocation.as_str(),
            retention_secs: p.retention,
            worm: p.worm,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MediumJson {
    pub barcode: String,
    pub state: &'static str,
    pub set: Option<String>,
    pub seq: u32,
    pub worm: bool,
    pub labelled: Option<i64>,
    pub written: Option<i64>,
    pub bytes: u64,
    pub files: u32,
    pub reason: Option<String>,
}

impl From<&Medium> for MediumJson {
    fn from(m: &Medium) -> Self {
        MediumJson {
            barcode: m.barcode.clone(),
            state: m.state.as_str(),
            set: m.set.clone(),
            seq: m.seq,
            worm: m.worm,
            labelled: m.labelled,
            written: m.written,
            bytes: m.bytes,
            files: m.files,
            reason: m.reason.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MediaSetJson {
    pub id: String,
    pub pool: String,
    pub created: i64,
    pub closed: Option<i64>,
    pub media: Vec<String>,
    pub sessions: u32,
}

impl From<&MediaSet> for MediaSetJson {
    fn from(s: &MediaSet) -> Self {
        MediaSetJson {
            id: s.id.clone(),
            pool: s.pool.clone(),
            created: s.created,
            closed: s.closed,
            media: s.media.clone(),
            sessions: s.sessions,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TapePartJson {
    pub barcode: String,
    pub file: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchiveJson {
    pub name: String,
    pub kind: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TapeCopyJson {
    pub snapshot: String,
    pub set: String,
    pub pool: String,
    pub session: u32,
    pub written: i64,
    pub files: u64,
    pub bytes: u64,
    pub parts: Vec<TapePartJson>,
    pub archives: Vec<ArchiveJson>,
}

impl From<&TapeCopy> for TapeCopyJson {
    fn from(c: &TapeCopy) -> Self {
        TapeCopyJson {
            snapshot: c.snapshot.to_string(),
            set: c.set.clone(),
            pool: c.pool.clone(),
            session: c.session,
            written: c.written,
            files: c.files,
            bytes: c.bytes,
            parts: c
                .parts
                .iter()
                .map(|p| TapePartJson { barcode: p.barcode.clone(), file: p.file })
                .collect(),
            archives: c
                .archives
                .iter()
                .map(|(n, k)| ArchiveJson { name: n.clone(), kind: k.clone() })
                .collect(),
        }
    }
}

/// The whole media catalog.
#[derive(Debug, Clone, Serialize)]
pub struct MediaCatalogJson {
    pub pools: Vec<PoolJson>,
    pub media: Vec<MediumJson>,
    pub sets: Vec<MediaSetJson>,
    pub copies: Vec<TapeCopyJson>,
}

impl From<&engine::tape::MediaCatalog> for MediaCatalogJson {
    fn from(mc: &engine::tape::MediaCatalog) -> Self {
        MediaCatalogJson {
            pools: mc.pools.iter().map(PoolJson::from).collect(),
            media: mc.media.iter().map(MediumJson::from).collect(),
            sets: mc.sets.iter().map(MediaSetJson::from).collect(),
            copies: mc.copies.iter().map(TapeCopyJson::from).collect(),
        }
    }
}

/// A library: what is in each element, and the media catalog.
#[derive(Debug, Clone, Serialize)]
pub struct TapeLibraryJson {
    /// The library's description (a virtual library's directory or a
    /// `library.toml`).
    pub library: String,
    /// Drives, slots and import/export slots with their cartridges.
    pub elements: Vec<engine::tape::InventoryRow>,
    #[serde(flatten)]
    pub catalog: MediaCatalogJson,
}
