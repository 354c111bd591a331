//! The media catalog: tape pools, cartridges, media sets and which
//! snapshot is on which cartridges. Pools are the operator's records;
//! the rest can be rebuilt from the cartridges (`cairn tape scan`), which
//! `replace_tape_media` takes whole.

use model::SnapshotId;
use model::tape::{Allocation, MediaPool, MediaSet, Medium, MediumState, TapeCopy, TapePart};
use redb::{ReadableDatabase, ReadableTableMetadata, TableError};
use serde::{Deserialize, Serialize};

use crate::schema::{TAPE_COPIES, TAPE_MEDIA, TAPE_POOLS, TAPE_SETS};
use crate::{Catalog, CatalogError, corrupt};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PoolRowV1 {
    pub name: String,
    pub allocation: String,
    pub retention: Option<i64>,
    pub worm: bool,
}

impl From<&MediaPool> for PoolRowV1 {
    fn from(p: &MediaPool) -> Self {
        PoolRowV1 {
            name: p.name.clone(),
            allocation: p.allocation.as_str().into(),
            retention: p.retention,
            worm: p.worm,
        }
    }
}

impl TryFrom<PoolRowV1> for MediaPool {
    type Error = String;
    fn try_from(r: PoolRowV1) -> Result<Self, String> {
        let allocation =
            Allocation::parse(&r.allocation).ok_or_else(|| format!("allocation {:?}", r.allocation))?;
        Ok(MediaPool { name: r.name, allocation, retention: r.retention, worm: r.worm })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MediumRowV1 {
    pub barcode: String,
    pub state: String,
    pub set: Option<String>,
    pub seq: u32,
    pub worm: bool,
    pub labelled: Option<i64>,
    pub written: Option<i64>,
    pub bytes: u64,
    pub files: u32,
    pub reason: Option<String>,
}

impl From<&Medium> for MediumRowV1 {
    fn from(m: &Medium) -> Self {
        MediumRowV1 {
            barcode: m.barcode.clone(),
            state: m.state.as_str().into(),
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

impl TryFrom<MediumRowV1> for Medium {
    type Error = String;
    fn try_from(r: MediumRowV1) -> Result<Self, String> {
        let state = MediumState::parse(&r.state).ok_or_else(|| format!("state {:?}", r.state))?;
        Ok(Medium {
            barcode: r.barcode,
            state,
            set: r.set,
            seq: r.seq,
            worm: r.worm,
            labelled: r.labelled,
            written: r.written,
            bytes: r.bytes,
            files: r.files,
            reason: r.reason,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MediaSetRowV1 {
    pub id: String,
    pub pool: String,
    pub created: i64,
    pub closed: Option<i64>,
    pub media: Vec<String>,
    pub sessions: u32,
}

impl From<&MediaSet> for MediaSetRowV1 {
    fn from(s: &MediaSet) -> Self {
        MediaSetRowV1 {
            id: s.id.clone(),
            pool: s.pool.clone(),
            created: s.created,
            closed: s.closed,
            media: s.media.clone(),
            sessions: s.sessions,
        }
    }
}

impl TryFrom<MediaSetRowV1> for MediaSet {
    type Error = String;
    fn try_from(r: MediaSetRowV1) -> Result<Self, String> {
        Ok(MediaSet {
            id: r.id,
            pool: r.pool,
            created: r.created,
            closed: r.closed,
            media: r.media,
            sessions: r.sessions,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TapeCopyRowV1 {
    pub snapshot: String,
    pub set: String,
    pub pool: String,
    pub session: u32,
    pub written: i64,
    /// (barcode, file) per piece.
    pub parts: Vec<(String, u32)>,
    pub files: u64,
    pub bytes: u64,
    /// (name, kind) per archive.
    pub archives: Vec<(String, String)>,
}

impl From<&TapeCopy> for TapeCopyRowV1 {
    fn from(c: &TapeCopy) -> Self {
        TapeCopyRowV1 {
            snapshot: c.snapshot.to_string(),
            set: c.set.clone(),
            pool: c.pool.clone(),
            session: c.session,
            written: c.written,
            parts: c.parts.iter().map(|p| (p.barcode.clone(), p.file)).collect(),
            files: c.files,
            bytes: c.bytes,
            archives: c.archives.clone(),
        }
    }
}

impl TryFrom<TapeCopyRowV1> for TapeCopy {
    type Error = String;
    fn try_from(r: TapeCopyRowV1) -> Result<Self, String> {
        let snapshot =
            SnapshotId::parse(&r.snapshot, &model::Namespace::root()).map_err(|e| e.to_string())?;
        Ok(TapeCopy {
            snapshot,
            set: r.set,
            pool: r.pool,
            session: r.session,
            written: r.written,
            parts: r.parts.into_iter().map(|(barcode, file)| TapePart { barcode, file }).collect(),
            files: r.files,
            bytes: r.bytes,
            archives: r.archives,
        })
    }
}

fn copy_key(set: &str, session: u32) -> String {
    format!("{set}\0{session:010}")
}

fn json<R: Serialize>(key: &str, row: &R) -> Result<Vec<u8>, CatalogError> {
    serde_json::to_vec(row).map_err(|e| corrupt(key, e.to_string()))
}

/// Rows to write in one transaction.
#[derive(Debug, Default)]
pub struct TapeChange<'a> {
    pub media: &'a [Medium],
    pub sets: &'a [MediaSet],
    pub copies: &'a [TapeCopy],
    /// Copies gone (their cartridges were written over): (set, session).
    pub drop_copies: &'a [(String, u32)],
    /// Sets gone (none of their cartridges holds them any more).
    pub drop_sets: &'a [String],
}

impl Catalog {
    pub fn put_pool(&self, pool: &MediaPool) -> Result<(), CatalogError> {
        self.put(TAPE_POOLS, &pool.name, &PoolRowV1::from(pool))
    }

    pub fn get_pool(&self, name: &str) -> Result<Option<MediaPool>, CatalogError> {
        self.get::<PoolRowV1, _>(TAPE_POOLS, name)
    }

    pub fn list_pools(&self) -> Result<Vec<MediaPool>, CatalogError> {
        self.list::<PoolRowV1, _>(TAPE_POOLS)
    }

    pub fn remove_pool(&self, name: &str) -> Result<bool, CatalogError> {
        self.remove(TAPE_POOLS, name)
    }

    pub fn get_medium(&self, barcode: &str) -> Result<Option<Medium>, CatalogError> {
        self.get::<MediumRowV1, _>(TAPE_MEDIA, barcode)
    }

    pub fn list_media(&self) -> Result<Vec<Medium>, CatalogError> {
        self.list::<MediumRowV1, _>(TAPE_MEDIA)
    }

    pub fn get_media_set(&self, id: &str) -> Result<Option<MediaSet>, CatalogError> {
        self.get::<MediaSetRowV1, _>(TAPE_SETS, id)
    }

    pub fn list_media_sets(&self) -> Result<Vec<MediaSet>, CatalogError> {
        self.list::<MediaSetRowV1, _>(TAPE_SETS)
    }

    /// Every snapshot on tape, by set and session.
    pub fn list_tape_copies(&self) -> Result<Vec<TapeCopy>, CatalogError> {
        self.list::<TapeCopyRowV1, _>(TAPE_COPIES)
    }

    /// Write media, sets and copies in one transaction.
    pub fn put_tape(&self, change: &TapeChange<'_>) -> Result<(), CatalogError> {
        let write = self.db.begin_write()?;
        {
            let mut media = write.open_table(TAPE_MEDIA)?;
            for m in change.media {
                media.insert(m.barcode.as_str(), json(&m.barcode, &MediumRowV1::from(m))?.as_slice())?;
            }
            let mut sets = write.open_table(TAPE_SETS)?;
            for s in change.sets {
                sets.insert(s.id.as_str(), json(&s.id, &MediaSetRowV1::from(s))?.as_slice())?;
            }
            let mut copies = write.open_table(TAPE_COPIES)?;
            for c in change.copies {
                let key = copy_key(&c.set, c.session);
                copies.insert(key.as_str(), json(&key, &TapeCopyRowV1::from(c))?.as_slice())?;
            }
            for (set, session) in change.drop_copies {
                copies.remove(copy_key(set, *session).as_str())?;
            }
            for s in change.drop_sets {
                sets.remove(s.as_str())?;
            }
        }
        write.commit()?;
        Ok(())
    }

    /// Replace what the catalog knows of the cartridges `scanned` with
    /// what was read from them: their media rows, the sets they belong
    /// to and those sets' copies (a scan of some cartridges leaves the
    /// others' rows alone). One transaction.
    pub fn replace_tape_media(
        &self,
        scanned: &[String],
        change: &TapeChange<'_>,
    ) -> Result<(), CatalogError> {
        let write = self.db.begin_write()?;
        {
            let mut media = write.open_table(TAPE_MEDIA)?;
            for b in scanned {
                media.remove(b.as_str())?;
            }
            let mut copies = write.open_table(TAPE_COPIES)?;
            for s in change.sets {
                let lo = copy_key(&s.id, 0);
                let hi = copy_key(&s.id, u32::MAX);
                copies.retain_in(lo.as_str()..=hi.as_str(), |_, _| false)?;
            }
        }
        write.commit()?;
        self.put_tape(change)
    }

    /// How many rows each tape table holds (for status pages and tests).
    pub fn tape_counts(&self) -> Result<[usize; 4], CatalogError> {
        let read = self.db.begin_read()?;
        let mut out = [0; 4];
        for (i, t) in [TAPE_POOLS, TAPE_MEDIA, TAPE_SETS, TAPE_COPIES].into_iter().enumerate() {
            out[i] = match read.open_table(t) {
                Ok(t) => t.len()? as usize,
                Err(TableError::TableDoesNotExist(_)) => 0,
                Err(e) => return Err(e.into()),
            };
        }
        Ok(out)
    }
}
