//! Real tape hardware on Linux: [`StDrive`], a drive through the `st`
//! driver (`/dev/nstN`), and [`SgChanger`], a medium changer through SCSI
//! generic (`/dev/sgN`), both sending the CDBs of [`crate::scsi`] with
//! `SG_IO` where `st` does not do what is needed.
//!
//! Invariant: the unsafe code (the ioctls) is in `ioctl` alone; the rest
//! is safe Rust over it, and what the driver and the devices answer is
//! interpreted by pure functions (`outcome`, `sg::check`,
//! [`crate::scsi`]) that the tests exercise without hardware.

mod changer;
mod ioctl;
mod outcome;
mod sg;
mod st;
mod sysfs;

pub use changer::SgChanger;
pub use st::StDrive;
