//! Snapshots on tape: backup jobs that write them to a pool's media set
//! (`write`), restores and the media catalog rebuilt from cartridges
//! (`read`), over a job's hold on a library (`deck`). The volumes on the
//! cartridges are `cairn volume`'s (`volfmt`, one session per snapshot),
//! so Bacula's tools and `cairn volume` read a cartridge file too.
//!
//! Which cartridge comes next is `model::tape`'s rule; drives and
//! changers are the `tape` crate's.

mod deck;
mod media;
mod read;
mod write;

pub use deck::MediaLabel;
pub use media::{InventoryRow, MediaCatalog};
pub use read::{ScannedMedium, TapeRestoreReport, TapeScanReport};
pub use write::{TapeBackupOptions, TapeBackupReport, TapeSessionReport};
