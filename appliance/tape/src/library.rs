//! A library as the rest of Cairn sees it: a changer and its drives,
//! opened from a description (`library.toml`) whatever their kind.
//!
//! ```toml
//! kind = "virtual"        # a directory of file-backed cartridges
//! drives = 2
//! slots = 16
//! import_export = 2
//! ```
//! or, for real hardware (drives in the changer's order):
//! ```toml
//! kind = "scsi"
//! changer = "/dev/sg3"
//! drives = ["/dev/nst0", "/dev/nst1"]
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::changer::Changer;
use crate::drive::Drive;
use crate::virt::{VirtualConfig, VirtualLibrary};
use crate::{Result, TapeError};

/// What a library is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LibraryConfig {
    Virtual(VirtualConfig),
    Scsi(ScsiConfig),
}

/// A real library: a SCSI medium changer and its drives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScsiConfig {
    /// The changer's SCSI generic node.
    pub changer: PathBuf,
    /// The drives' non-rewinding `st` nodes, in the changer's order.
    pub drives: Vec<PathBuf>,
}

/// An open library.
#[derive(Debug, Clone)]
pub enum Library {
    Virtual(VirtualLibrary),
    Scsi(ScsiConfig),
}

impl Library {
    /// Open the library described by `path`: a directory holding
    /// `library.toml` (a virtual library's), or such a file itself.
    pub fn open(path: &Path) -> Result<Library> {
        let (file, dir) = if path.is_dir() {
            (path.join("library.toml"), path.to_owned())
        } else {
            (path.to_owned(), path.parent().unwrap_or(Path::new(".")).to_owned())
        };
        let text = std::fs::read_to_string(&file)
            .map_err(|e| TapeError::Invalid(format!("cannot read {}: {e}", file.display())))?;
        let config: LibraryConfig =
            toml::from_str(&text).map_err(|e| TapeError::Invalid(format!("{}: {e}", file.display())))?;
        Ok(match config {
            LibraryConfig::Virtual(c) => Library::Virtual(VirtualLibrary::open(&dir, c)?),
            LibraryConfig::Scsi(c) => {
                if c.drives.is_empty() {
                    return Err(TapeError::Invalid(format!("{}: a library needs a drive", file.display())));
                }
                Library::Scsi(c)
            }
        })
    }

    /// What names this library among others: a virtual library's
    /// directory, a real one's changer.
    pub fn identity(&self) -> String {
        match self {
            Library::Virtual(v) => {
                std::fs::canonicalize(v.dir()).unwrap_or_else(|_| v.dir().to_owned()).display().to_string()
            }
            Library::Scsi(c) => c.changer.display().to_string(),
        }
    }

    /// How many drives it has.
    pub fn drives(&self) -> usize {
        match self {
            Library::Virtual(v) => v.drives(),
            Library::Scsi(c) => c.drives.len(),
        }
    }

    pub fn changer(&self) -> Result<Box<dyn Changer>> {
        Ok(match self {
            Library::Virtual(v) => Box::new(v.changer()),
            Library::Scsi(c) => Box::new(crate::linux::SgChanger::open(&c.changer)?),
        })
    }

    /// Open drive `n` (0-based, in the changer's order).
    pub fn drive(&self, n: usize) -> Result<Box<dyn Drive>> {
        Ok(match self {
            Library::Virtual(v) => Box::new(v.drive(n)?),
            Library::Scsi(c) => {
                let path = c
                    .drives
                    .get(n)
                    .ok_or_else(|| TapeError::Invalid(format!("the library has no drive {n}")))?;
                Box::new(crate::linux::StDrive::open(path)?.with_index(n))
            }
        })
    }

    /// The virtual library, if it is one.
    pub fn as_virtual(&self) -> Option<&VirtualLibrary> {
        match self {
            Library::Virtual(v) => Some(v),
            Library::Scsi(_) => None,
        }
    }
}
