//! A chunk of a tree's file data as the pieces of the buffers the files
//! were read into: `cdcpool` cuts the stream into them, the pipeline's
//! workers gather them, and the pipeline's budget counts what they keep
//! resident.

use std::sync::Arc;

/// Bytes a big file is read in: each block is a buffer of the stream.
pub const READ_BLOCK: usize = 1 << 20;

/// The bytes `[start, end)` of a buffer the stream was pushed in, shared
/// by the chunks (and the scanner) that need them.
#[derive(Clone)]
pub struct Piece {
    buf: Arc<Vec<u8>>,
    start: usize,
    end: usize,
}

impl Piece {
    /// The bytes `[start, end)` of `buf`.
    pub fn new(buf: Arc<Vec<u8>>, start: usize, end: usize) -> Self {
        assert!(start <= end && end <= buf.len(), "a piece out of its buffer");
        Self { buf, start, end }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The buffer, if this was the last piece of it alive.
    pub fn into_buffer(self) -> Option<Vec<u8>> {
        Arc::try_unwrap(self.buf).ok()
    }
}

/// A chunk: the pieces it is made of, in order.
pub type Pieces = Vec<Piece>;

/// The bytes of a chunk in pieces.
pub fn len(pieces: &[Piece]) -> usize {
    pieces.iter().map(|p| p.end - p.start).sum()
}

/// Gather `pieces` into `into` (emptied first).
pub fn gather(pieces: &[Piece], into: &mut Vec<u8>) {
    into.clear();
    into.reserve(len(pieces));
    for p in pieces {
        into.extend_from_slice(p.bytes());
    }
}

/// What the pieces keep resident: the capacity of each buffer they are
/// cut from, once per chunk (a buffer two chunks share counts in both).
pub fn resident(pieces: &[Piece]) -> u64 {
    let mut last: Option<&Arc<Vec<u8>>> = None;
    let mut sum = 0;
    for p in pieces {
        if !last.is_some_and(|l| Arc::ptr_eq(l, &p.buf)) {
            sum += p.buf.capacity() as u64;
        }
        last = Some(&p.buf);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk counts each buffer it is cut from once, by capacity; the
    /// last piece alive of a buffer gives it back.
    #[test]
    fn pieces_count_their_buffers_once_and_give_them_back() {
        let a = Arc::new(Vec::with_capacity(1000));
        let b = Arc::new(vec![7u8; 10]);
        let pieces =
            vec![Piece::new(a.clone(), 0, 0), Piece::new(a.clone(), 0, 0), Piece::new(b.clone(), 2, 5)];
        assert_eq!(resident(&pieces), 1000 + b.capacity() as u64);
        let mut into = vec![1, 2, 3];
        gather(&pieces, &mut into);
        assert_eq!(into, [7, 7, 7]);
        drop((a, b));
        let back: Vec<Option<Vec<u8>>> = pieces.into_iter().map(Piece::into_buffer).collect();
        assert!(back[0].is_none());
        assert_eq!(back[1].as_ref().map(Vec::capacity), Some(1000));
        assert_eq!(back[2].as_deref(), Some(&[7u8; 10][..]));
    }
}
