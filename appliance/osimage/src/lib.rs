//! The appliance's operating system, as Cairn manages it: nothing here
//! knows HTTP, tokio or the datastore.
//!
//! - `keys`: the Ed25519 key pair that signs update bundles.
//! - `bundle`: the update bundle format (`docs/formats.md`, "Update
//!   bundles"): a signed manifest, then the root file system and one unified
//!   kernel image per slot.
//! - `version`: the version order systemd-boot sorts its entries by.
//! - `slots`: the two root slots, the boot entries on the EFI system
//!   partition with systemd-boot's boot counting, the appliance's state
//!   (which slot runs, whether an update was rolled back), and applying a
//!   bundle to the slot that is not running.
//! - `datadisk`: which disk becomes the data disk on first boot.
//! - `network`: `cairn-network.toml` on the EFI partition, as a
//!   systemd-networkd unit.

pub mod bundle;
pub mod datadisk;
pub mod keys;
pub mod network;
pub mod slots;
pub mod version;

pub use bundle::{Bundle, BundleError, Manifest, Section};
pub use slots::{Layout, Slot, Status};
