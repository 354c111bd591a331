//! SCSI commands through a SCSI generic device (`/dev/sgN`): the one place
//! both backends send CDBs from, and what a reply's status, host and
//! driver bytes and sense data mean.

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ioctl::{SgData, SgReply, sg_io};
use crate::scsi::{Sense, SenseKey, parse_sense};
use crate::{Result, TapeError};

/// How a command failed.
#[derive(Debug)]
pub(crate) enum CommandError {
    /// CHECK CONDITION, with the device's sense data.
    Check(Sense),
    /// Anything else: not sent, a transport or driver failure, a busy
    /// device, sense data that could not be parsed.
    Failed(TapeError),
}

impl CommandError {
    /// The error for a command described by `what` (its name and
    /// operands): a CHECK CONDITION becomes [`TapeError::Scsi`] with the
    /// sense text.
    pub(crate) fn into_error(self, what: &str) -> TapeError {
        match self {
            CommandError::Check(sense) => TapeError::Scsi(format!("{what}: {sense}")),
            CommandError::Failed(TapeError::Scsi(msg)) => TapeError::Scsi(format!("{what}: {msg}")),
            CommandError::Failed(e) => e,
        }
    }

    pub(crate) fn sense(&self) -> Option<&Sense> {
        match self {
            CommandError::Check(sense) => Some(sense),
            CommandError::Failed(_) => None,
        }
    }
}

/// The host adapter's status names (`DID_*`, <scsi/scsi_status.h>).
fn host_status_name(status: u16) -> &'static str {
    match status {
        0x01 => "no connection",
        0x02 => "bus busy",
        0x03 => "timed out",
        0x04 => "bad target",
        0x05 => "aborted",
        0x06 => "parity error",
        0x07 => "internal error",
        0x08 => "reset",
        0x09 => "bad interrupt",
        0x0a => "passed through",
        0x0b => "soft error, retry",
        0x0e => "transport disrupted",
        0x0f => "transport failfast",
        _ => "unknown",
    }
}

/// What a reply means: `Ok` with the bytes transferred of the `asked`
/// ones, or why the command failed. A CHECK CONDITION whose sense says the
/// command succeeded after all (RECOVERED ERROR, or NO SENSE with nothing
/// to report) is a success.
pub(crate) fn check(reply: &SgReply, asked: usize) -> Result<usize, CommandError> {
    let failed = |msg: String| Err(CommandError::Failed(TapeError::Scsi(msg)));
    if reply.host_status != 0 {
        let name = host_status_name(reply.host_status);
        return failed(format!("host status {:#06x} ({name})", reply.host_status));
    }
    // DRIVER_SENSE (08h) in the low nibble: sense data is there, even
    // where an adapter reported the status byte as GOOD.
    let driver = reply.driver_status & 0x0f;
    let check_condition = reply.status == 0x02 || (driver == 0x08 && !reply.sense.is_empty());
    if driver != 0 && driver != 0x08 {
        return failed(format!("driver status {:#06x}", reply.driver_status));
    }
    let transferred = asked.saturating_sub(usize::try_from(reply.resid).unwrap_or(0));
    if check_condition {
        if reply.sense.is_empty() {
            return failed("CHECK CONDITION without sense data".into());
        }
        let sense = parse_sense(&reply.sense).map_err(CommandError::Failed)?;
        let nothing_to_report = sense.key == SenseKey::NoSense
            && (sense.asc, sense.ascq) == (0, 0)
            && !(sense.filemark || sense.eom || sense.ili);
        if sense.key == SenseKey::RecoveredError || nothing_to_report {
            tracing::debug!("command succeeded with sense: {sense}");
            return Ok(transferred);
        }
        return Err(CommandError::Check(sense));
    }
    match reply.status {
        0x00 | 0x04 => Ok(transferred),
        0x08 => Err(CommandError::Failed(TapeError::Busy("the device is busy (SCSI status BUSY)".into()))),
        0x18 => Err(CommandError::Failed(TapeError::Busy("reserved by another initiator".into()))),
        0x28 => Err(CommandError::Failed(TapeError::Busy("task set full".into()))),
        0x40 => failed("command aborted (TASK ABORTED)".into()),
        other => failed(format!("SCSI status {other:#04x}")),
    }
}

/// A drive's sense data as a [`TapeError`] for drive `drive`: no medium,
/// write-protected, WORM, the end of the medium and busy conditions get
/// their own errors; anything else is [`TapeError::Scsi`] with the sense
/// text.
pub(crate) fn drive_error(sense: &Sense, drive: usize, what: &str) -> TapeError {
    if sense.is_medium_not_present() {
        TapeError::NoMedium(drive)
    } else if sense.is_write_protected() {
        TapeError::WriteProtected(drive)
    } else if sense.is_worm_overwrite() {
        TapeError::Worm(format!("in drive {drive}"))
    } else if sense.is_volume_overflow() {
        TapeError::EndOfMedium(drive)
    } else if sense.is_in_progress() {
        TapeError::Busy(format!("{what}: {sense}"))
    } else {
        TapeError::Scsi(format!("{what}: {sense}"))
    }
}

/// What SCSI commands are sent through: a [`SgDevice`], or in tests a
/// fake device.
pub(crate) trait Transport: Send {
    /// A name for errors and logs.
    fn path(&self) -> &Path;
    /// Run `cdb`, which reads up to `len` bytes from the device: what
    /// arrived.
    fn read(&self, cdb: &[u8], len: usize, timeout: Duration) -> Result<Vec<u8>, CommandError>;
    /// Run `cdb`, which has no data phase.
    fn run(&self, cdb: &[u8], timeout: Duration) -> Result<(), CommandError>;
}

/// An open SCSI generic device.
pub(crate) struct SgDevice {
    file: File,
    path: PathBuf,
}

impl SgDevice {
    /// Open `path` for SCSI commands (read-write, as the sg driver wants
    /// for commands that are not read-only; non-blocking, so the open does
    /// not wait for other users' exclusive opens).
    pub(crate) fn open(path: &Path) -> Result<SgDevice> {
        let file =
            OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(
                |e| TapeError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
            )?;
        Ok(SgDevice { file, path: path.to_path_buf() })
    }

    fn send(&self, cdb: &[u8], data: SgData<'_>, timeout: Duration) -> Result<SgReply, CommandError> {
        sg_io(self.file.as_fd(), cdb, data, timeout).map_err(|e| {
            let msg = match e.raw_os_error() {
                Some(libc::ENOTTY) | Some(libc::EINVAL) => {
                    format!("{}: not a SCSI generic device ({e})", self.path.display())
                }
                _ => format!("{}: SG_IO: {e}", self.path.display()),
            };
            CommandError::Failed(TapeError::Io(std::io::Error::new(e.kind(), msg)))
        })
    }
}

impl Transport for SgDevice {
    fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self, cdb: &[u8], len: usize, timeout: Duration) -> Result<Vec<u8>, CommandError> {
        let mut buf = vec![0u8; len];
        let reply = self.send(cdb, SgData::FromDevice(&mut buf), timeout)?;
        let n = check(&reply, len)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn run(&self, cdb: &[u8], timeout: Duration) -> Result<(), CommandError> {
        let reply = self.send(cdb, SgData::None, timeout)?;
        check(&reply, 0).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::testdata::fixture;

    fn reply(status: u8, host_status: u16, driver_status: u16, sense: Vec<u8>, resid: i32) -> SgReply {
        SgReply { status, host_status, driver_status, sense, resid }
    }

    #[test]
    fn good_status_counts_the_residue() {
        assert_eq!(check(&reply(0, 0, 0, vec![], 0), 96).unwrap(), 96);
        assert_eq!(check(&reply(0, 0, 0, vec![], 60), 96).unwrap(), 36);
        assert_eq!(check(&reply(0, 0, 0, vec![], 200), 96).unwrap(), 0);
        assert_eq!(check(&reply(0, 0, 0, vec![], -4), 96).unwrap(), 96);
    }

    #[test]
    fn check_condition_carries_the_parsed_sense() {
        let sense = fixture("sense_changer_source_empty.hex");
        let err = check(&reply(0x02, 0, 0x08, sense.clone(), 0), 0).unwrap_err();
        assert_eq!(err.sense().map(|s| (s.asc, s.ascq)), Some((0x3b, 0x0e)));
        assert_eq!(
            err.into_error("/dev/sg5: MOVE MEDIUM 1002h to 0100h").to_string(),
            "SCSI: /dev/sg5: MOVE MEDIUM 1002h to 0100h: ILLEGAL REQUEST: medium source element empty (3Bh/0Eh)"
        );
        // Some adapters report GOOD status with DRIVER_SENSE.
        assert!(check(&reply(0, 0, 0x08, sense, 0), 0).unwrap_err().sense().is_some());
    }

    #[test]
    fn recovered_errors_are_successes() {
        let recovered = vec![0x70, 0, 0x01, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x5d, 0, 0, 0, 0, 0];
        assert_eq!(check(&reply(0x02, 0, 0x08, recovered, 0), 16).unwrap(), 16);
        let nothing = vec![0x70, 0, 0x00, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(check(&reply(0x02, 0, 0x08, nothing, 0), 16).unwrap(), 16);
        // NO SENSE with a filemark is a condition to report.
        let filemark = fixture("sense_read_filemark.hex");
        assert!(check(&reply(0x02, 0, 0x08, filemark, 0), 16).is_err());
    }

    #[test]
    fn transport_driver_and_status_failures() {
        let msg = |r: SgReply| check(&r, 0).unwrap_err().into_error("INQUIRY").to_string();
        assert_eq!(msg(reply(0, 0x03, 0, vec![], 0)), "SCSI: INQUIRY: host status 0x0003 (timed out)");
        assert_eq!(msg(reply(0, 0, 0x06, vec![], 0)), "SCSI: INQUIRY: driver status 0x0006");
        assert_eq!(msg(reply(0x02, 0, 0, vec![], 0)), "SCSI: INQUIRY: CHECK CONDITION without sense data");
        assert!(msg(reply(0x02, 0, 0x08, vec![0x70, 0], 0)).contains("sense data: 2 bytes"));
        assert!(matches!(
            check(&reply(0x08, 0, 0, vec![], 0), 0),
            Err(CommandError::Failed(TapeError::Busy(_)))
        ));
        assert!(matches!(
            check(&reply(0x18, 0, 0, vec![], 0), 0),
            Err(CommandError::Failed(TapeError::Busy(_)))
        ));
        assert_eq!(msg(reply(0x22, 0, 0, vec![], 0)), "SCSI: INQUIRY: SCSI status 0x22");
    }

    #[test]
    fn drive_sense_maps_to_drive_errors() {
        let sense = |name: &str| parse_sense(&fixture(name)).unwrap();
        assert!(matches!(
            drive_error(&sense("sense_write_protected.hex"), 2, "WRITE"),
            TapeError::WriteProtected(2)
        ));
        assert!(matches!(
            drive_error(&sense("sense_write_volume_overflow.hex"), 1, "WRITE"),
            TapeError::EndOfMedium(1)
        ));
        let not_present = parse_sense(&[0x70, 0, 0x02, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x3a, 0x00]).unwrap();
        assert!(matches!(drive_error(&not_present, 0, "MODE SENSE"), TapeError::NoMedium(0)));
        let becoming_ready = parse_sense(&[0x70, 0, 0x02, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x04, 0x01]).unwrap();
        assert!(matches!(drive_error(&becoming_ready, 0, "LOG SENSE"), TapeError::Busy(_)));
        let worm = parse_sense(&[0x70, 0, 0x07, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x30, 0x0c]).unwrap();
        assert_eq!(
            drive_error(&worm, 3, "WRITE").to_string(),
            "the cartridge in drive 3 is WORM: what is written on it cannot be overwritten"
        );
        assert_eq!(
            drive_error(&sense("sense_read_blank_check.hex"), 0, "READ").to_string(),
            "SCSI: READ: BLANK CHECK: end-of-data detected (00h/05h)"
        );
    }
}
