//! The streamable volume format: what Cairn writes to tapes and volume
//! files, in the block, record and label layout Bacula and Bareos share
//! ("BB02"), so that Bacula's own tools (`bls`, `bextract`) list and
//! restore a Cairn volume, and this crate alone reads it back.
//!
//! A volume is a sequence of blocks ([`block`]); each block holds records
//! of one session ([`record`]), and a record longer than the room left in
//! a block continues in the next. Labels are records with a negative file
//! index ([`label`]): the volume label in block 0, and a start and an end
//! label around each session (one snapshot). Files are an attribute record
//! ([`attr`]) followed by data records, in the streams of [`stream`].
//! Every byte is described in `docs/formats.md`.
//!
//! Invariant: this crate knows nothing of datastores, snapshots or
//! threads; it turns records into bytes and bytes into records, and every
//! reader checks what it reads (a volume comes from a tape nobody trusts).

pub mod attr;
pub mod block;
pub mod label;
pub mod reader;
pub mod record;
pub mod stream;
pub mod writer;

#[cfg(test)]
mod tests;

pub use attr::{Attributes, FileType, Stat};
pub use block::{BLOCK_HEADER, DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
pub use label::{SessionLabel, VolumeLabel};
pub use reader::{Event, VolumeReader};
pub use record::Record;
pub use writer::VolumeWriter;

/// What can be wrong with a volume or a request to write one.
#[derive(Debug, thiserror::Error)]
pub enum VolError {
    #[error("reading or writing the volume failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("block {block}: {reason}")]
    BadBlock { block: u64, reason: String },
    #[error(
        "block {block}: its checksum does not match (stored {stored:08x}, computed {computed:08x}); the block is damaged"
    )]
    Checksum { block: u64, stored: u32, computed: u32 },
    #[error("bad record in block {block}: {reason}")]
    BadRecord { block: u64, reason: String },
    #[error("bad label: {0}")]
    BadLabel(String),
    #[error("bad attribute record: {0}")]
    BadAttributes(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = VolError> = std::result::Result<T, E>;
