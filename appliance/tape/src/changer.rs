//! A medium changer: the robot of a library, moving cartridges between
//! elements (storage slots, import/export slots, drives), as SCSI Medium
//! Changer devices describe them (element addresses, READ ELEMENT
//! STATUS, MOVE MEDIUM).

use serde::Serialize;

use crate::{Result, TapeError};

/// The kinds of element a changer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ElementKind {
    /// The robot's hand.
    Transport,
    Storage,
    /// A mail slot: cartridges come in and go out here.
    ImportExport,
    Drive,
}

/// One element and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Element {
    pub kind: ElementKind,
    /// The changer's address for it.
    pub address: u16,
    pub full: bool,
    /// The barcode (primary volume tag) of the cartridge in it.
    pub barcode: Option<String>,
    /// Where the cartridge in it came from, when the changer knows.
    pub source: Option<u16>,
    /// For a drive: its serial number, when the changer reports it.
    pub identifier: Option<String>,
    /// Set when the element is in an abnormal state (ASC/ASCQ text).
    pub exception: Option<String>,
}

/// Everything a changer holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Inventory {
    pub transports: Vec<Element>,
    pub storage: Vec<Element>,
    pub import_export: Vec<Element>,
    pub drives: Vec<Element>,
}

impl Inventory {
    /// Every element, drives first.
    pub fn all(&self) -> impl Iterator<Item = &Element> {
        self.drives.iter().chain(&self.storage).chain(&self.import_export).chain(&self.transports)
    }

    /// The element holding the cartridge `barcode`.
    pub fn find(&self, barcode: &str) -> Option<&Element> {
        self.all().find(|e| e.barcode.as_deref() == Some(barcode))
    }

    /// Drive `n` (0-based, in the changer's order).
    pub fn drive(&self, n: usize) -> Result<&Element> {
        self.drives.get(n).ok_or_else(|| TapeError::Invalid(format!("the library has no drive {n}")))
    }

    /// The first empty storage slot.
    pub fn empty_slot(&self) -> Option<&Element> {
        self.storage.iter().find(|e| !e.full)
    }
}

/// A medium changer.
pub trait Changer: Send {
    fn name(&self) -> String;
    /// What is where.
    fn inventory(&mut self) -> Result<Inventory>;
    /// Move the cartridge in element `from` to the empty element `to`.
    fn move_medium(&mut self, from: u16, to: u16) -> Result<()>;

    /// Load the cartridge `barcode` into drive `drive` (unloading whatever
    /// is there first). A cartridge already there stays.
    fn load(&mut self, barcode: &str, drive: usize) -> Result<()> {
        let inv = self.inventory()?;
        let d = inv.drive(drive)?.clone();
        if d.barcode.as_deref() == Some(barcode) {
            return Ok(());
        }
        let from = inv
            .find(barcode)
            .ok_or_else(|| TapeError::Invalid(format!("no cartridge {barcode} in the library")))?
            .clone();
        if from.kind == ElementKind::Drive {
            return Err(TapeError::Busy(format!("{barcode} is in another drive")));
        }
        if d.full {
            self.unload(drive)?;
        }
        self.move_medium(from.address, d.address)
    }

    /// Put the cartridge in drive `drive` back in the slot it came from,
    /// or the first empty one. Returns its barcode, if it had one; an
    /// empty drive is not an error.
    fn unload(&mut self, drive: usize) -> Result<Option<String>> {
        let inv = self.inventory()?;
        let d = inv.drive(drive)?.clone();
        if !d.full {
            return Ok(None);
        }
        let back = d
            .source
            .and_then(|s| inv.storage.iter().find(|e| e.address == s && !e.full))
            .or_else(|| inv.empty_slot())
            .ok_or_else(|| TapeError::Invalid("no empty slot to unload into".into()))?
            .address;
        self.move_medium(d.address, back)?;
        Ok(d.barcode)
    }

    /// Move the cartridge `barcode` to the first empty import/export slot.
    fn export(&mut self, barcode: &str) -> Result<u16> {
        let inv = self.inventory()?;
        let from = inv
            .find(barcode)
            .ok_or_else(|| TapeError::Invalid(format!("no cartridge {barcode} in the library")))?
            .clone();
        if from.kind == ElementKind::ImportExport {
            return Ok(from.address);
        }
        if from.kind == ElementKind::Drive {
            return Err(TapeError::Busy(format!("{barcode} is in a drive: unload it first")));
        }
        let to = inv
            .import_export
            .iter()
            .find(|e| !e.full)
            .ok_or_else(|| TapeError::Invalid("every import/export slot is full".into()))?
            .address;
        self.move_medium(from.address, to)?;
        Ok(to)
    }
}
