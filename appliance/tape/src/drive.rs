//! A tape drive: blocks and filemarks on the cartridge it holds.
//!
//! Positions are SCSI logical object numbers: every block and every
//! filemark counts one, from 0 at the beginning of the tape.

use crate::Result;

/// What a read found at the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// A block of this many bytes (the buffer holds it).
    Block(usize),
    /// A filemark (the head is now past it).
    Filemark,
    /// The end of what was written.
    EndOfData,
}

/// What a write of a block did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written, with room to spare.
    Written,
    /// Written, but the drive is past the early warning near the end of
    /// the medium: close the volume (a filemark or two fit) and go on on
    /// another cartridge.
    EarlyWarning,
}

/// A tape alert flag (SCSI TapeAlert log page 0x2e), by number and name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TapeAlert {
    pub flag: u8,
    pub name: String,
}

/// What a drive says of itself and its cartridge.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DriveStatus {
    /// A cartridge is loaded and ready.
    pub loaded: bool,
    pub write_protected: bool,
    /// The cartridge is write-once (WORM).
    pub worm: bool,
    pub cleaning_needed: bool,
    /// At the beginning of the tape.
    pub at_bot: bool,
    /// At the end of what was written.
    pub at_eod: bool,
    /// Past the early warning.
    pub at_eom: bool,
    /// The logical object number of the head, when known.
    pub position: Option<u64>,
    /// Filemarks passed since the beginning of the tape, when known.
    pub file_number: Option<u64>,
    /// Fixed block size, 0 for variable.
    pub block_size: u32,
    pub density: u8,
    pub alerts: Vec<TapeAlert>,
}

/// A tape drive.
///
/// Invariant: a write happens at the head and makes everything after it
/// unreadable (as on tape); on a WORM cartridge only at the end of data.
pub trait Drive: Send {
    /// A name for logs and errors (`/dev/nst0`, `virtual drive 1`).
    fn name(&self) -> String;
    fn status(&mut self) -> Result<DriveStatus>;
    fn rewind(&mut self) -> Result<()>;
    /// Read the block at the head into `buf` (which must hold the
    /// largest block); a block larger than `buf` is an error.
    fn read_block(&mut self, buf: &mut [u8]) -> Result<ReadOutcome>;
    fn write_block(&mut self, block: &[u8]) -> Result<WriteOutcome>;
    /// Write `count` filemarks (and flush the drive's buffer to tape).
    fn write_filemarks(&mut self, count: u32) -> Result<()>;
    /// Move the head over `count` filemarks: forward when positive (to
    /// just after the last one passed), backward when negative (to just
    /// before it).
    fn space_filemarks(&mut self, count: i32) -> Result<()>;
    /// Move the head over `count` blocks (not across a filemark).
    fn space_blocks(&mut self, count: i32) -> Result<()>;
    /// Move the head to logical object `position`.
    fn locate(&mut self, position: u64) -> Result<()>;
    /// The logical object number of the head.
    fn position(&mut self) -> Result<u64>;
    /// Move the head to the end of data (to append there).
    fn seek_end_of_data(&mut self) -> Result<()>;
    /// Rewind and let go of the cartridge, so a changer can take it.
    fn eject(&mut self) -> Result<()>;
}

impl<D: Drive + ?Sized> Drive for Box<D> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn status(&mut self) -> Result<DriveStatus> {
        (**self).status()
    }
    fn rewind(&mut self) -> Result<()> {
        (**self).rewind()
    }
    fn read_block(&mut self, buf: &mut [u8]) -> Result<ReadOutcome> {
        (**self).read_block(buf)
    }
    fn write_block(&mut self, block: &[u8]) -> Result<WriteOutcome> {
        (**self).write_block(block)
    }
    fn write_filemarks(&mut self, count: u32) -> Result<()> {
        (**self).write_filemarks(count)
    }
    fn space_filemarks(&mut self, count: i32) -> Result<()> {
        (**self).space_filemarks(count)
    }
    fn space_blocks(&mut self, count: i32) -> Result<()> {
        (**self).space_blocks(count)
    }
    fn locate(&mut self, position: u64) -> Result<()> {
        (**self).locate(position)
    }
    fn position(&mut self) -> Result<u64> {
        (**self).position()
    }
    fn seek_end_of_data(&mut self) -> Result<()> {
        (**self).seek_end_of_data()
    }
    fn eject(&mut self) -> Result<()> {
        (**self).eject()
    }
}
