//! Records: a 12-byte header (file index and stream as signed 32-bit
//! integers, the data size as an unsigned one, all big-endian), then the
//! data. A record that does not fit in the rest of a block continues in
//! the next: each piece after the first is led by a header with the
//! stream negated and the number of bytes still to come. A header is
//! never split between blocks.

/// Bytes of a record header.
pub const RECORD_HEADER: usize = 12;

/// A whole record, its pieces joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The file's number in its session (from 1), or a label type (< 0).
    pub file_index: i32,
    pub stream: i32,
    pub data: Vec<u8>,
}

/// A record header as written: `size` is the bytes of data still to come
/// from this piece on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub file_index: i32,
    pub stream: i32,
    pub size: u32,
}

impl RecordHeader {
    pub fn encode(&self) -> [u8; RECORD_HEADER] {
        let mut b = [0u8; RECORD_HEADER];
        b[0..4].copy_from_slice(&self.file_index.to_be_bytes());
        b[4..8].copy_from_slice(&self.stream.to_be_bytes());
        b[8..12].copy_from_slice(&self.size.to_be_bytes());
        b
    }

    pub fn parse(b: &[u8]) -> RecordHeader {
        let i = |o: usize| i32::from_be_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        RecordHeader { file_index: i(0), stream: i(4), size: i(8) as u32 }
    }
}
