//! Tape libraries: what Cairn writes volumes (`volfmt`) to.
//!
//! A [`Drive`] reads and writes blocks and filemarks on the cartridge it
//! holds; a [`Changer`] moves cartridges between storage slots,
//! import/export slots and drives, and knows their barcodes. Two kinds of
//! each: real hardware through Linux's `st` driver and SCSI generic
//! (`SG_IO`) ([`linux`], with the SCSI parsing in [`scsi`]), and a
//! virtual library of file-backed cartridges in a directory ([`virt`]),
//! for tests, demos and sites without a library. [`Library`] opens either
//! from its description (`library.toml`).
//!
//! Invariant: this crate knows nothing of datastores, snapshots or pools;
//! it moves blocks and cartridges. What goes on a tape is `volfmt`'s, and
//! which tape to use is the engine's.

pub mod changer;
pub mod drive;
pub mod library;
pub mod linux;
pub mod scsi;
pub mod virt;

pub use changer::{Changer, Element, ElementKind, Inventory};
pub use drive::{Drive, DriveStatus, ReadOutcome, WriteOutcome};
pub use library::{Library, LibraryConfig};

/// What can go wrong with a drive, a changer or a library.
#[derive(Debug, thiserror::Error)]
pub enum TapeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no cartridge in drive {0}")]
    NoMedium(usize),
    #[error("the cartridge in drive {0} is write-protected")]
    WriteProtected(usize),
    #[error("the cartridge {0} is WORM: what is written on it cannot be overwritten")]
    Worm(String),
    #[error("the cartridge in drive {0} is full (end of medium)")]
    EndOfMedium(usize),
    #[error("the drive or changer is busy: {0}")]
    Busy(String),
    #[error("SCSI: {0}")]
    Scsi(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = TapeError> = std::result::Result<T, E>;
