//! Chunk ids: the blake3 digest of a chunk's plain (uncompressed) bytes.

use std::fmt;

/// The blake3-256 digest of a chunk's plain data; its name in the store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }

    /// The id of `len` zero bytes, which image archives see often.
    pub fn zeros(len: usize) -> Self {
        let mut h = blake3::Hasher::new();
        let block = [0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(block.len());
            h.update(&block[..n]);
            left -= n;
        }
        Self(*h.finalize().as_bytes())
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}
