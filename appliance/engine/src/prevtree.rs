//! The previous snapshot's entries of an archive, looked up in walk order
//! for change detection without loading them all: both walks visit paths
//! in the same order (components compared as bytes), so one forward
//! cursor serves every lookup.

use std::cmp::Ordering;

use anyhow::{Context, Result};
use filevol::archive::{Entry, EntryKind, MetaReader};
use filevol::{DynamicIndex, ManifestArchive};
use model::SnapshotId;

use crate::stream::StreamReader;
use crate::target::SnapshotRead;

/// Compare two archive paths in walk order.
pub fn walk_order(a: &[u8], b: &[u8]) -> Ordering {
    let mut ai = a.split(|c| *c == b'/').filter(|c| !c.is_empty());
    let mut bi = b.split(|c| *c == b'/').filter(|c| !c.is_empty());
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match x.cmp(y) {
                Ordering::Equal => continue,
                o => return o,
            },
        }
    }
}

pub struct PrevTree {
    entries: MetaReader<StreamReader>,
    current: Option<Entry>,
    pub payload: DynamicIndex,
}

impl PrevTree {
    pub fn open(src: &dyn SnapshotRead, id: &SnapshotId, archive: &ManifestArchive) -> Result<Self> {
        let [meta, payload] = archive.indexes.as_slice() else {
            anyhow::bail!("archive {} of {id} is not a file archive", archive.name);
        };
        let meta = src.read_didx(id, meta)?;
        let payload = src.read_didx(id, payload)?;
        let reader = StreamReader::new(src.chunk_reader(), meta);
        let mut entries = MetaReader::new(reader).with_context(|| format!("reading entries of {id}"))?;
        let current = entries.next().transpose()?;
        Ok(Self { entries, current, payload })
    }

    /// The previous entry at `path`, if the previous walk had one.
    pub fn lookup(&mut self, path: &[u8]) -> Result<Option<&Entry>> {
        while let Some(cur) = &self.current {
            match walk_order(&cur.path, path) {
                Ordering::Less => self.current = self.entries.next().transpose()?,
                Ordering::Equal => return Ok(self.current.as_ref()),
                Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }
}

/// Same file by the metadata change detection rule: size, mtime, ctime and
/// inode all equal.
pub fn unchanged(prev: &Entry, now: &Entry) -> bool {
    prev.kind == EntryKind::File
        && now.kind == EntryKind::File
        && prev.size == now.size
        && prev.mtime == now.mtime
        && prev.mtime_nsec == now.mtime_nsec
        && prev.ctime == now.ctime
        && prev.ctime_nsec == now.ctime_nsec
        && prev.ino == now.ino
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_order_matches_depth_first_sorted() {
        let walk: [&[u8]; 6] = [b"", b"a", b"a/b", b"a/b/c", b"a.txt", b"b"];
        for w in walk.windows(2) {
            assert_eq!(walk_order(w[0], w[1]), Ordering::Less, "{:?} < {:?}", w[0], w[1]);
        }
        assert_eq!(walk_order(b"a/b", b"a/b"), Ordering::Equal);
    }
}
