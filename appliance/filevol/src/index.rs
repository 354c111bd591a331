//! Index files: the ordered chunk lists of archive streams.
//!
//! Dynamic index (`.didx`, format v1): for content-defined streams.
//!
//! ```text
//! offset size field
//!      0    4 magic "CRND"
//!      4    1 format version (1)
//!      5    3 reserved, 0
//!      8    8 chunk count N (u64 LE)
//!     16    8 stream length in bytes (u64 LE) = end offset of the last chunk
//!     24    8 reserved, 0
//!     32 40*N entries: end offset of the chunk in the stream (u64 LE), chunk id (32 bytes)
//! ```
//!
//! Fixed index (`.fidx`, format v1): for images cut into equal chunks.
//!
//! ```text
//! offset size field
//!      0    4 magic "CRNF"
//!      4    1 format version (1)
//!      5    3 reserved, 0
//!      8    8 chunk count N (u64 LE)
//!     16    8 image size in bytes (u64 LE)
//!     24    4 chunk size in bytes (u32 LE); every chunk but the last is this long
//!     28    4 reserved, 0
//!     32 32*N chunk ids
//! ```

use chunker::ChunkId;

pub const DIDX_MAGIC: [u8; 4] = *b"CRND";
pub const FIDX_MAGIC: [u8; 4] = *b"CRNF";
pub const INDEX_VERSION: u8 = 1;
const HEADER: usize = 32;

/// Why index bytes were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IndexError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, IndexError> {
    Err(IndexError(msg.into()))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn id_at(b: &[u8], at: usize) -> ChunkId {
    let mut a = [0u8; 32];
    a.copy_from_slice(&b[at..at + 32]);
    ChunkId(a)
}

fn check_header(b: &[u8], magic: [u8; 4], entry: usize) -> Result<usize, IndexError> {
    if b.len() < HEADER {
        return err("shorter than its header");
    }
    if b[0..4] != magic {
        return err("bad magic");
    }
    if b[4] != INDEX_VERSION {
        return err(format!("format version {} is not supported (this build reads 1)", b[4]));
    }
    if b[5..8] != [0, 0, 0] {
        return err("reserved header bytes are not zero");
    }
    let count = u64_at(b, 8);
    if (b.len() - HEADER) as u64 != count.saturating_mul(entry as u64) {
        return err(format!("length {} does not match {count} entries", b.len()));
    }
    Ok(count as usize)
}

/// The chunks of a content-defined stream, with their end offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicIndex {
    /// (end offset in the stream, chunk id), strictly increasing offsets.
    pub entries: Vec<(u64, ChunkId)>,
}

impl DynamicIndex {
    pub fn len_bytes(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.0)
    }

    /// Start offset of chunk `i`.
    pub fn start(&self, i: usize) -> u64 {
        if i == 0 { 0 } else { self.entries[i - 1].0 }
    }

    /// Each chunk with the plain length the index gives it.
    pub fn chunk_lengths(&self) -> impl Iterator<Item = (ChunkId, u64)> + '_ {
        self.entries.iter().enumerate().map(|(i, (end, id))| (*id, end - self.start(i)))
    }

    /// Index of the chunk holding stream byte `offset`.
    pub fn chunk_at(&self, offset: u64) -> Option<usize> {
        let i = self.entries.partition_point(|e| e.0 <= offset);
        (i < self.entries.len()).then_some(i)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 40 * self.entries.len());
        out.extend_from_slice(&DIDX_MAGIC);
        out.extend_from_slice(&[INDEX_VERSION, 0, 0, 0]);
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.len_bytes().to_le_bytes());
        out.extend_from_slice(&[0; 8]);
        for (end, id) in &self.entries {
            out.extend_from_slice(&end.to_le_bytes());
            out.extend_from_slice(&id.0);
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, IndexError> {
        let count = check_header(b, DIDX_MAGIC, 40)?;
        if b[24..32] != [0; 8] {
            return err("reserved header bytes are not zero");
        }
        let mut entries = Vec::with_capacity(count);
        let mut last = 0u64;
        for i in 0..count {
            let at = HEADER + 40 * i;
            let end = u64_at(b, at);
            if end <= last {
                return err(format!("entry {i}: offsets must increase"));
            }
            last = end;
            entries.push((end, id_at(b, at + 8)));
        }
        if u64_at(b, 16) != last {
            return err("stream length does not match the last entry");
        }
        Ok(Self { entries })
    }
}

/// The chunks of an image: equal-sized except the last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixedIndex {
    pub size: u64,
    pub chunk_size: u32,
    pub ids: Vec<ChunkId>,
}

impl FixedIndex {
    /// Length of chunk `i`.
    pub fn chunk_len(&self, i: usize) -> u64 {
        let start = i as u64 * self.chunk_size as u64;
        (self.size - start).min(self.chunk_size as u64)
    }

    /// Each chunk with the plain length the index gives it.
    pub fn chunk_lengths(&self) -> impl Iterator<Item = (ChunkId, u64)> + '_ {
        self.ids.iter().enumerate().map(|(i, id)| (*id, self.chunk_len(i)))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 32 * self.ids.len());
        out.extend_from_slice(&FIDX_MAGIC);
        out.extend_from_slice(&[INDEX_VERSION, 0, 0, 0]);
        out.extend_from_slice(&(self.ids.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.chunk_size.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        for id in &self.ids {
            out.extend_from_slice(&id.0);
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, IndexError> {
        let count = check_header(b, FIDX_MAGIC, 32)?;
        let size = u64_at(b, 16);
        let chunk_size = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
        if b[28..32] != [0; 4] {
            return err("reserved header bytes are not zero");
        }
        if chunk_size == 0 || size.div_ceil(chunk_size as u64) != count as u64 {
            return err("image size, chunk size and chunk count disagree");
        }
        let ids = (0..count).map(|i| id_at(b, HEADER + 32 * i)).collect();
        Ok(Self { size, chunk_size, ids })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let d = DynamicIndex { entries: vec![(10, ChunkId::of(b"a")), (25, ChunkId::of(b"b"))] };
        let bytes = d.encode();
        assert_eq!(DynamicIndex::decode(&bytes).unwrap(), d);
        assert_eq!(d.chunk_at(0), Some(0));
        assert_eq!(d.chunk_at(10), Some(1));
        assert_eq!(d.chunk_at(25), None);
        assert!(DynamicIndex::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut bad = bytes.clone();
        bad[32] = 30; // first end beyond second
        assert!(DynamicIndex::decode(&bad).is_err());

        let f = FixedIndex { size: 10 << 20, chunk_size: 4 << 20, ids: vec![ChunkId::of(b"x"); 3] };
        let bytes = f.encode();
        assert_eq!(FixedIndex::decode(&bytes).unwrap(), f);
        assert_eq!(f.chunk_len(2), 2 << 20);
        let lens: Vec<u64> = f.chunk_lengths().map(|(_, n)| n).collect();
        assert_eq!(lens, [4 << 20, 4 << 20, 2 << 20]);
        let dlens: Vec<(ChunkId, u64)> = d.chunk_lengths().collect();
        assert_eq!(dlens, [(ChunkId::of(b"a"), 10), (ChunkId::of(b"b"), 15)]);
        let mut bad = bytes.clone();
        bad[8] = 4;
        assert!(FixedIndex::decode(&bad).is_err());
        // Reserved bytes must be zero (found by the index fuzz target).
        for at in [5, 28] {
            let mut bad = bytes.clone();
            bad[at] = 1;
            assert!(FixedIndex::decode(&bad).is_err(), "reserved byte {at}");
        }
        let d = DynamicIndex { entries: vec![(10, ChunkId::of(b"a"))] }.encode();
        for at in [6, 24, 31] {
            let mut bad = d.clone();
            bad[at] = 43;
            assert!(DynamicIndex::decode(&bad).is_err(), "reserved byte {at}");
        }
    }
}
