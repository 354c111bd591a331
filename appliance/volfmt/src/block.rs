//! Blocks: the unit a volume is written and read in. A block is a 24-byte
//! header, then records of one session, and ends exactly at its last
//! record byte (no padding: blocks on a file are as long as they are
//! full; the last one of a session may be short).
//!
//! Header, all big-endian: CRC-32 (IEEE, as zlib computes it) of every
//! byte after it; the block's length with the header; its number (0 for
//! the volume label's block, then one more each block); `BB02`; the
//! session id and session time of every record in it.

use crate::{Result, VolError};

/// Bytes of a block header.
pub const BLOCK_HEADER: usize = 24;
/// The block format's magic.
pub const BLOCK_ID: &[u8; 4] = b"BB02";
/// Block size Cairn writes unless told otherwise.
pub const DEFAULT_BLOCK_SIZE: usize = 256 << 10;
/// The smallest and largest block size Cairn writes.
pub const MIN_BLOCK_SIZE: usize = 64 << 10;
pub const MAX_BLOCK_SIZE: usize = 4 << 20;
/// The longest block a reader accepts (what Bacula's readers accept).
pub const MAX_READ_BLOCK: usize = 20_000_000;

/// A block header as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    pub checksum: u32,
    /// Bytes of the block, header included.
    pub len: u32,
    pub number: u32,
    pub session_id: u32,
    pub session_time: u32,
}

impl BlockHeader {
    /// Parse the first 24 bytes of a block; `at` names it in errors.
    pub fn parse(b: &[u8; BLOCK_HEADER], at: u64) -> Result<BlockHeader> {
        let u = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        if &b[12..16] != BLOCK_ID {
            return Err(VolError::BadBlock {
                block: at,
                reason: format!("not a BB02 block (id {:?})", String::from_utf8_lossy(&b[12..16])),
            });
        }
        let h =
            BlockHeader { checksum: u(0), len: u(4), number: u(8), session_id: u(16), session_time: u(20) };
        if (h.len as usize) < BLOCK_HEADER || h.len as usize > MAX_READ_BLOCK {
            return Err(VolError::BadBlock {
                block: at,
                reason: format!("impossible block length {}", h.len),
            });
        }
        Ok(h)
    }
}

/// The checksum of a whole block (header included): CRC-32 of every byte
/// after the checksum field.
pub fn checksum(block: &[u8]) -> u32 {
    crc32fast::hash(&block[4..])
}

/// Fill in the header of `block` (its first 24 bytes, the records after
/// them): length, number, id, session, then the checksum over it all.
pub fn seal(block: &mut [u8], number: u32, session_id: u32, session_time: u32) {
    let len = u32::try_from(block.len()).expect("a block fits in u32");
    block[4..8].copy_from_slice(&len.to_be_bytes());
    block[8..12].copy_from_slice(&number.to_be_bytes());
    block[12..16].copy_from_slice(BLOCK_ID);
    block[16..20].copy_from_slice(&session_id.to_be_bytes());
    block[20..24].copy_from_slice(&session_time.to_be_bytes());
    let crc = checksum(block);
    block[0..4].copy_from_slice(&crc.to_be_bytes());
}
