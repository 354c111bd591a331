//! [`StDrive`]: a tape drive through Linux's `st` driver, on a
//! non-rewinding device (`/dev/nst0`), with the drive's SCSI generic node
//! for what `st` does not report (WORM, TapeAlert flags).
//!
//! - Blocks are variable-length: each is one `write(2)` or `read(2)` of
//!   the whole block (the block size is set to 0, variable, whenever a
//!   cartridge is found loaded).
//! - Positions are SCSI logical object numbers: `st` is switched to
//!   `MT_ST_SCSI2LOGICAL` at open, so MTSEEK and MTIOCPOS use them rather
//!   than device-specific addresses (the option is global for the drive
//!   and needs root; if it cannot be set, it must already be on, else
//!   [`StDrive::open`] fails). MTSEEK takes a signed 32-bit count and
//!   MTIOCPOS reads the 32-bit short form of READ POSITION, so positions
//!   past 2^31 - 1 are out of reach (an error, not a wrong position).
//! - Spacing back over filemarks (MTBSF) leaves the head before the last
//!   filemark passed, on its beginning-of-tape side; to read the file
//!   that follows that filemark, space forward over one filemark after.
//! - `st` lets one process open the device at a time, looks for a
//!   cartridge only when the device is opened, and writes a filemark when
//!   the device is closed (or rewound, or unloaded) right after a write.
//!   So the device is opened again when `st` says no cartridge is ready
//!   (the changer may have loaded one since; nothing was written then),
//!   and after an eject. It is opened without waiting for the drive: a
//!   cartridge still being loaded makes the operations fail with
//!   [`TapeError::Busy`] until it is ready (`status().loaded`).
//!
//! Invariant: `st`'s own idea of the position stays right, because every
//! movement of the tape goes through `st`; the generic node is only used
//! for commands that do not move it (MODE SENSE, LOG SENSE, READ
//! ATTRIBUTE).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};

use super::ioctl::{self, MT_ST_SCSI2LOGICAL, MT_ST_SETBOOLEANS, op};
use super::outcome::{
    ReadStep, StStatus, WriteStep, decode_status, errno_error, read_needs_status, read_step, write_step,
    written,
};
use super::sg::{CommandError, SgDevice, Transport, drive_error};
use super::sysfs;
use crate::drive::{Drive, DriveStatus, ReadOutcome, WriteOutcome};
use crate::scsi::{self, MediumKind, ModeForm};
use crate::{Result, TapeError};

/// Timeout of the generic node's status commands.
const STATUS_TIMEOUT: Duration = Duration::from_secs(60);

/// A tape drive through `st`.
pub struct StDrive {
    path: PathBuf,
    /// The drive's number in its library, for errors.
    index: usize,
    /// `None` after an eject, until the next use.
    file: Option<File>,
    /// Variable block mode is set for the loaded cartridge.
    prepared: bool,
    /// The drive's SCSI generic node, when sysfs showed one that opened.
    sg: Option<SgDevice>,
}

/// Open an `st` device read-write without waiting for a cartridge (and
/// without failing on a write-protected one), then make it blocking.
fn open_st(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let flags = OFlag::from_bits_truncate(fcntl(&file, FcntlArg::F_GETFL)?);
    fcntl(&file, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    Ok(file)
}

fn io_error(path: &Path, what: &str, e: io::Error) -> TapeError {
    TapeError::Io(io::Error::new(e.kind(), format!("{}: {what}: {e}", path.display())))
}

impl StDrive {
    /// Open the non-rewinding `st` device `path` (`/dev/nst0` or a link to
    /// it), whether or not a cartridge is loaded.
    pub fn open(path: &Path) -> Result<StDrive> {
        let file = open_st(path).map_err(|e| io_error(path, "open", e))?;
        let count = MT_ST_SETBOOLEANS | MT_ST_SCSI2LOGICAL;
        if let Err(e) = ioctl::mt_op(file.as_fd(), op::MTSETDRVBUFFER, count) {
            let on = sysfs::st_options(Path::new(sysfs::SYSFS), path)?
                .is_some_and(|o| o & MT_ST_SCSI2LOGICAL as u32 != 0);
            if !on {
                return Err(TapeError::Invalid(format!(
                    "{}: cannot switch st to logical object numbers ({e}); run as root, or set \
                     the scsi2logical option first (mt-st: stsetoptions scsi2logical)",
                    path.display()
                )));
            }
        }
        let sg = match sysfs::scsi_generic_for_tape(Path::new(sysfs::SYSFS), path) {
            Ok(Some(sg_path)) => SgDevice::open(&sg_path)
                .inspect_err(|e| tracing::warn!("{}: no SCSI generic node: {e}", path.display()))
                .ok(),
            Ok(None) => {
                tracing::warn!("{}: no SCSI generic node (is the sg driver loaded?)", path.display());
                None
            }
            Err(e) => {
                tracing::warn!("{}: looking for its SCSI generic node: {e}", path.display());
                None
            }
        };
        let mut drive = StDrive { path: path.to_path_buf(), index: 0, file: Some(file), prepared: false, sg };
        drive.loaded()?;
        Ok(drive)
    }

    /// This drive's number in its library: the errors that name a drive
    /// (no medium, write-protected, end of medium) carry it. 0 unless set.
    pub fn with_index(mut self, index: usize) -> StDrive {
        self.index = index;
        self
    }

    /// The drive's SCSI generic node, when one was found and opened.
    pub fn sg_path(&self) -> Option<&Path> {
        self.sg.as_ref().map(SgDevice::path)
    }

    /// The open device, opened again if it was closed.
    fn file(&mut self) -> Result<&mut File> {
        let file = match self.file.take() {
            Some(file) => file,
            None => {
                self.prepared = false;
                open_st(&self.path).map_err(|e| io_error(&self.path, "open", e))?
            }
        };
        Ok(self.file.insert(file))
    }

    fn fd(&mut self) -> Result<BorrowedFd<'_>> {
        let file: &File = self.file()?;
        Ok(file.as_fd())
    }

    /// Close and open the device again, so `st` looks for a cartridge.
    fn reopen(&mut self) -> Result<()> {
        self.file = None;
        self.fd().map(drop)
    }

    fn st_status(&mut self) -> Result<StStatus> {
        let mt = ioctl::mt_get(self.fd()?).map_err(|e| io_error(&self.path, "MTIOCGET", e.into()))?;
        Ok(decode_status(&mt))
    }

    /// What `st` says, after opening the device again if it saw no
    /// cartridge ready; sets variable block mode once per cartridge.
    fn loaded(&mut self) -> Result<StStatus> {
        let mut st = self.st_status()?;
        if !st.online {
            self.reopen()?;
            st = self.st_status()?;
        }
        if !st.online {
            self.prepared = false;
        } else if !self.prepared {
            if st.block_size != 0 {
                self.mt_now(op::MTSETBLK, 0, "set variable block mode")?;
            }
            self.prepared = true;
        }
        Ok(st)
    }

    /// [`Self::loaded`], or an error when no cartridge is ready: none
    /// there, or one not ready yet.
    fn ensure_loaded(&mut self) -> Result<()> {
        if self.prepared {
            return Ok(());
        }
        let st = self.loaded()?;
        if st.online {
            Ok(())
        } else if st.door_open {
            Err(TapeError::NoMedium(self.index))
        } else {
            Err(TapeError::Busy(format!("{}: the cartridge is not ready", self.name())))
        }
    }

    /// Map a failed system call (see [`Self::forget`]).
    fn error(&mut self, e: io::Error, what: &str) -> TapeError {
        let e = errno_error(e, self.index, &format!("{}: {what}", self.path.display()));
        self.forget(e)
    }

    /// Pass `e` on, forgetting the cartridge if it says there is none (it
    /// may have been taken out behind `st`'s back).
    fn forget(&mut self, e: TapeError) -> TapeError {
        if matches!(e, TapeError::NoMedium(_)) {
            self.prepared = false;
        }
        e
    }

    /// Tape operation `op` now, loaded or not.
    fn mt_now(&mut self, op: libc::c_short, count: i32, what: &str) -> Result<()> {
        match ioctl::mt_op(self.fd()?, op, count) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.error(e.into(), what)),
        }
    }

    /// Tape operation `op` on the loaded cartridge.
    fn mt(&mut self, op: libc::c_short, count: i32, what: &str) -> Result<()> {
        self.ensure_loaded()?;
        self.mt_now(op, count, what)
    }

    fn count(&self, n: u32, what: &str) -> Result<i32> {
        i32::try_from(n)
            .map_err(|_| TapeError::Invalid(format!("{}: {what} {n}: too many", self.path.display())))
    }

    /// Whether the loaded cartridge is WORM, from the Medium Configuration
    /// mode page, or else the cartridge memory's MEDIUM TYPE.
    fn worm(&self) -> Result<bool> {
        let sg = self.sg.as_ref().ok_or_else(|| TapeError::Invalid("no SCSI generic node".into()))?;
        let what = |name: &str| format!("{}: {name}", sg.path().display());
        match sg.read(&scsi::mode_sense10(scsi::PAGE_MEDIUM_CONFIGURATION, 0, true, 255), 255, STATUS_TIMEOUT)
        {
            Ok(data) => return Ok(scsi::parse_medium_configuration(&data, ModeForm::Ten)?.worm),
            Err(CommandError::Check(sense)) if sense.key == scsi::SenseKey::IllegalRequest => {}
            Err(CommandError::Check(sense)) => {
                return Err(drive_error(&sense, self.index, &what("MODE SENSE")));
            }
            Err(e) => return Err(e.into_error(&what("MODE SENSE"))),
        }
        let data = sg
            .read(&scsi::read_attribute(scsi::MAM_MEDIUM_TYPE, 0, 512), 512, STATUS_TIMEOUT)
            .map_err(|e| match e {
                CommandError::Check(sense) => drive_error(&sense, self.index, &what("READ ATTRIBUTE")),
                e => e.into_error(&what("READ ATTRIBUTE")),
            })?;
        Ok(scsi::medium_kind(&scsi::parse_attributes(&data)?) == Some(MediumKind::Worm))
    }

    fn tape_alerts(&self) -> Result<Vec<crate::drive::TapeAlert>> {
        let sg = self.sg.as_ref().ok_or_else(|| TapeError::Invalid("no SCSI generic node".into()))?;
        let data = sg
            .read(&scsi::log_sense(scsi::PAGE_TAPE_ALERT, 0, 1024), 1024, STATUS_TIMEOUT)
            .map_err(|e| e.into_error(&format!("{}: LOG SENSE", sg.path().display())))?;
        scsi::parse_tape_alerts(&data)
    }

    /// After an EIO that `st` did not mark as the end of data: the head is
    /// at the end of data if going there does not move it. If it does, it
    /// goes back, and the read error stands.
    fn end_of_data_or(&mut self, read_error: io::Error) -> Result<ReadOutcome> {
        let here = self.position()?;
        self.seek_end_of_data()?;
        if self.position()? == here {
            return Ok(ReadOutcome::EndOfData);
        }
        self.locate(here)?;
        Err(self.error(read_error, "read"))
    }
}

impl Drive for StDrive {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn status(&mut self) -> Result<DriveStatus> {
        // `st` first: it should see a new cartridge's unit attention
        // before the generic node does.
        let st = self.loaded()?;
        let mut status = DriveStatus {
            loaded: st.online,
            write_protected: st.write_protected,
            cleaning_needed: st.cleaning,
            at_bot: st.bot,
            at_eod: st.eod,
            at_eom: st.eot,
            file_number: st.file_number,
            block_size: st.block_size,
            density: st.density,
            ..DriveStatus::default()
        };
        if st.online {
            status.position = ioctl::mt_pos(self.fd()?).ok().and_then(|p| u64::try_from(p).ok());
        }
        if self.sg.is_some() {
            if st.online {
                match self.worm() {
                    Ok(worm) => status.worm = worm,
                    Err(e) => tracing::warn!("{}: WORM unknown: {e}", self.name()),
                }
            }
            match self.tape_alerts() {
                Ok(alerts) => {
                    status.cleaning_needed |= alerts.iter().any(|a| scsi::CLEANING_FLAGS.contains(&a.flag));
                    status.alerts = alerts;
                }
                Err(e) => tracing::warn!("{}: TapeAlert flags unknown: {e}", self.name()),
            }
        }
        Ok(status)
    }

    fn rewind(&mut self) -> Result<()> {
        self.mt(op::MTREW, 1, "rewind")
    }

    fn read_block(&mut self, buf: &mut [u8]) -> Result<ReadOutcome> {
        self.ensure_loaded()?;
        let result = self.file()?.read(buf);
        let after = if read_needs_status(&result) { Some(self.st_status()?) } else { None };
        match read_step(result, after.as_ref(), buf.len(), self.index) {
            ReadStep::Done(outcome) => Ok(outcome),
            ReadStep::CheckEndOfData(e) => self.end_of_data_or(e),
            ReadStep::Fail(e) => Err(self.forget(e)),
        }
    }

    fn write_block(&mut self, block: &[u8]) -> Result<WriteOutcome> {
        if block.is_empty() {
            return Err(TapeError::Invalid(format!("{}: an empty block cannot be written", self.name())));
        }
        self.ensure_loaded()?;
        let mut result = self.file()?.write(block);
        let mut retried = false;
        loop {
            match write_step(result, block.len(), retried, self.index) {
                WriteStep::Written => return Ok(written(retried, &self.st_status()?)),
                WriteStep::Retry => {
                    retried = true;
                    result = self.file()?.write(block);
                }
                // `st` turns the drive's refusal to overwrite a WORM
                // cartridge into EIO: say so when the cartridge is WORM.
                WriteStep::Refused(e) => {
                    return Err(if self.worm().unwrap_or(false) {
                        TapeError::Worm(format!("in {}", self.name()))
                    } else {
                        self.error(e, "write")
                    });
                }
                WriteStep::Fail(e) => return Err(self.forget(e)),
            }
        }
    }

    fn write_filemarks(&mut self, count: u32) -> Result<()> {
        let n = self.count(count, "filemarks")?;
        self.mt(op::MTWEOF, n, "write filemarks")
    }

    fn space_filemarks(&mut self, count: i32) -> Result<()> {
        match count {
            0 => Ok(()),
            n if n > 0 => self.mt(op::MTFSF, n, "space forward over filemarks"),
            // The head ends before the last filemark passed (see the
            // module documentation).
            n => self.mt(op::MTBSF, n.checked_neg().unwrap_or(i32::MAX), "space back over filemarks"),
        }
    }

    fn space_blocks(&mut self, count: i32) -> Result<()> {
        match count {
            0 => Ok(()),
            n if n > 0 => self.mt(op::MTFSR, n, "space forward over blocks"),
            n => self.mt(op::MTBSR, n.checked_neg().unwrap_or(i32::MAX), "space back over blocks"),
        }
    }

    fn locate(&mut self, position: u64) -> Result<()> {
        let n = i32::try_from(position).map_err(|_| {
            TapeError::Invalid(format!("{}: position {position} is past what st can locate", self.name()))
        })?;
        self.mt(op::MTSEEK, n, "locate")
    }

    fn position(&mut self) -> Result<u64> {
        self.ensure_loaded()?;
        let pos = match ioctl::mt_pos(self.fd()?) {
            Ok(pos) => pos,
            Err(e) => return Err(self.error(e.into(), "read position")),
        };
        u64::try_from(pos).map_err(|_| TapeError::Scsi(format!("{}: position {pos}", self.name())))
    }

    fn seek_end_of_data(&mut self) -> Result<()> {
        self.mt(op::MTEOM, 1, "space to end of data")
    }

    fn eject(&mut self) -> Result<()> {
        if !self.loaded()?.door_open {
            self.mt_now(op::MTOFFL, 1, "unload")?;
        }
        self.file = None;
        self.prepared = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_reports_the_path() {
        let err = StDrive::open(Path::new("/nonexistent/nst0")).err().unwrap().to_string();
        assert!(err.starts_with("/nonexistent/nst0: open: "), "{err}");
    }

    #[test]
    fn open_refuses_what_is_not_an_st_device() {
        // /dev/null opens, but takes no MTSETDRVBUFFER, and sysfs knows no
        // st options for it.
        let err = StDrive::open(Path::new("/dev/null")).err().unwrap().to_string();
        assert!(err.starts_with("/dev/null: cannot switch st to logical object numbers"), "{err}");
    }
}
