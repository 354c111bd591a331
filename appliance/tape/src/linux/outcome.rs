//! What the `st` driver's answers mean for a [`Drive`](crate::Drive): its
//! status (`MTIOCGET`), and the results of `read(2)` and `write(2)` of a
//! block, as pure functions.
//!
//! How `st` reports the tape's conditions (variable block mode, see the
//! kernel's Documentation/scsi/st.rst and drivers/scsi/st.c):
//!
//! - A read of a filemark returns 0 bytes; the head is then past it.
//! - A read at the end of data fails with EIO (the drive's BLANK CHECK),
//!   except the first read after a filemark, which returns 0 bytes. In
//!   both cases MTIOCGET then sets GMT_EOD only if `st` saw the blank
//!   check right after a filemark; otherwise the caller has to find out
//!   (see [`ReadStep::CheckEndOfData`]).
//! - A read into a buffer smaller than the block fails with ENOMEM, and
//!   the drive has moved past the block.
//! - A write that reaches the early warning near the end of the medium
//!   returns its byte count (the block is on tape) and MTIOCGET sets
//!   GMT_EOT. The next write fails with ENOSPC without writing; the one
//!   after it is let through (so a trailer can be written), and so on
//!   alternately until the physical end, where writes fail with ENOSPC
//!   every time.
//! - A write to a write-protected cartridge fails with EACCES (EROFS at
//!   open for a read-write open without O_NONBLOCK).

use std::io;

use super::ioctl::MtGet;
use crate::TapeError;
use crate::drive::{ReadOutcome, WriteOutcome};

/// MTIOCGET's generic status bits (`GMT_*`, <linux/mtio.h>).
pub(crate) mod gmt {
    pub const EOF: u64 = 0x8000_0000;
    pub const BOT: u64 = 0x4000_0000;
    pub const EOT: u64 = 0x2000_0000;
    pub const EOD: u64 = 0x0800_0000;
    pub const WR_PROT: u64 = 0x0400_0000;
    pub const ONLINE: u64 = 0x0100_0000;
    pub const DR_OPEN: u64 = 0x0004_0000;
    pub const CLN: u64 = 0x0000_8000;
}

/// MTIOCGET, decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StStatus {
    /// Just after a filemark (at block 0 of a file other than the first).
    pub after_filemark: bool,
    pub bot: bool,
    /// Past the early warning.
    pub eot: bool,
    /// At the end of data (or of the tape).
    pub eod: bool,
    pub write_protected: bool,
    /// A cartridge is loaded and ready.
    pub online: bool,
    /// No cartridge.
    pub door_open: bool,
    /// The drive asked for cleaning (in its sense data).
    pub cleaning: bool,
    /// Filemarks since the beginning of the tape, when `st` knows.
    pub file_number: Option<u64>,
    /// Blocks since the last filemark, when `st` knows.
    pub block_number: Option<u64>,
    /// Block size, 0 for variable.
    pub block_size: u32,
    pub density: u8,
}

/// Decode MTIOCGET's answer. `mt_dsreg` holds the block size in bits
/// 0-23 and the density code in 24-31; a file or block number of -1 is
/// unknown.
pub(crate) fn decode_status(mt: &MtGet) -> StStatus {
    let gstat = mt.mt_gstat as u64;
    let dsreg = mt.mt_dsreg as u64;
    let bit = |b: u64| gstat & b != 0;
    StStatus {
        after_filemark: bit(gmt::EOF),
        bot: bit(gmt::BOT),
        eot: bit(gmt::EOT),
        eod: bit(gmt::EOD),
        write_protected: bit(gmt::WR_PROT),
        online: bit(gmt::ONLINE),
        door_open: bit(gmt::DR_OPEN),
        cleaning: bit(gmt::CLN),
        file_number: u64::try_from(mt.mt_fileno).ok(),
        block_number: u64::try_from(mt.mt_blkno).ok(),
        block_size: (dsreg & 0x00ff_ffff) as u32,
        density: ((dsreg >> 24) & 0xff) as u8,
    }
}

/// A failed system call on drive `drive` as a [`TapeError`]: the errno
/// values `st` uses for the tape's conditions get their own errors; the
/// rest keep the operation's name.
pub(crate) fn errno_error(err: io::Error, drive: usize, what: &str) -> TapeError {
    match err.raw_os_error() {
        Some(libc::ENOMEDIUM) => TapeError::NoMedium(drive),
        Some(libc::EACCES | libc::EROFS) => TapeError::WriteProtected(drive),
        Some(libc::ENOSPC) => TapeError::EndOfMedium(drive),
        Some(libc::EBUSY) => TapeError::Busy(format!("{what}: {err}")),
        _ => TapeError::Io(io::Error::new(err.kind(), format!("{what}: {err}"))),
    }
}

/// What to do after a `write(2)` of a `len`-byte block.
#[derive(Debug)]
pub(crate) enum WriteStep {
    /// The block is on tape; see [`written`] for what to report.
    Written,
    /// Nothing was written because the head is past the early warning:
    /// write the same block once more (`st` lets every other write
    /// through so a volume can be closed).
    Retry,
    /// EIO: the drive failed or refused the write. The caller may know
    /// why (a WORM cartridge that must not be overwritten).
    Refused(io::Error),
    Fail(TapeError),
}

/// Classify the result of a write. `retried`: this was the second try
/// after an ENOSPC.
pub(crate) fn write_step(result: io::Result<usize>, len: usize, retried: bool, drive: usize) -> WriteStep {
    match result {
        Ok(n) if n == len => WriteStep::Written,
        Ok(n) => WriteStep::Fail(TapeError::Io(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("write: {n} of a {len}-byte block written"),
        ))),
        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && !retried => WriteStep::Retry,
        Err(e) if e.raw_os_error() == Some(libc::EIO) => WriteStep::Refused(e),
        Err(e) => WriteStep::Fail(errno_error(e, drive, "write")),
    }
}

/// What a written block means, from MTIOCGET after it: past the early
/// warning when `st` says so, or when the write needed the retry.
pub(crate) fn written(retried: bool, after: &StStatus) -> WriteOutcome {
    if retried || after.eot { WriteOutcome::EarlyWarning } else { WriteOutcome::Written }
}

/// What to do after a `read(2)` into a `buf_len`-byte buffer.
#[derive(Debug)]
pub(crate) enum ReadStep {
    Done(ReadOutcome),
    /// EIO that `st` does not mark as the end of data: the caller must
    /// check whether the head is at the end of data (a BLANK CHECK) or
    /// this is a read error.
    CheckEndOfData(io::Error),
    Fail(TapeError),
}

/// Whether [`read_step`] needs MTIOCGET's status after `result`.
pub(crate) fn read_needs_status(result: &io::Result<usize>) -> bool {
    match result {
        Ok(n) => *n == 0,
        Err(e) => e.raw_os_error() == Some(libc::EIO),
    }
}

/// Classify the result of a read; `after` is MTIOCGET after it (needed
/// when [`read_needs_status`] says so; `None` reads as no condition).
pub(crate) fn read_step(
    result: io::Result<usize>,
    after: Option<&StStatus>,
    buf_len: usize,
    drive: usize,
) -> ReadStep {
    let eod = after.is_some_and(|s| s.eod);
    match result {
        Ok(0) if eod => ReadStep::Done(ReadOutcome::EndOfData),
        Ok(0) => ReadStep::Done(ReadOutcome::Filemark),
        Ok(n) => ReadStep::Done(ReadOutcome::Block(n)),
        Err(e) if e.raw_os_error() == Some(libc::EIO) && eod => ReadStep::Done(ReadOutcome::EndOfData),
        Err(e) if e.raw_os_error() == Some(libc::EIO) => ReadStep::CheckEndOfData(e),
        Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => ReadStep::Fail(TapeError::Invalid(format!(
            "the block is larger than the {buf_len}-byte buffer (the head has moved past it)"
        ))),
        Err(e) => ReadStep::Fail(errno_error(e, drive, "read")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    fn mtget(gstat: u64, fileno: i32, blkno: i32, dsreg: u64) -> MtGet {
        MtGet {
            mt_gstat: gstat as _,
            mt_fileno: fileno,
            mt_blkno: blkno,
            mt_dsreg: dsreg as _,
            ..MtGet::default()
        }
    }

    #[test]
    fn status_bits_and_registers() {
        // `mt status` of an LTO-5 cartridge at BOT: "41010000 BOT ONLINE
        // IM_REP_EN", density 58h, variable blocks.
        let s = decode_status(&mtget(0x4101_0000, 0, 0, 0x5800_0000));
        assert!(s.bot && s.online && !s.eot && !s.eod && !s.write_protected && !s.door_open);
        assert_eq!((s.file_number, s.block_number, s.block_size, s.density), (Some(0), Some(0), 0, 0x58));
        // No tape, position unknown.
        let s = decode_status(&mtget(gmt::DR_OPEN | 0x0001_0000, -1, -1, 0));
        assert!(s.door_open && !s.online && !s.bot);
        assert_eq!((s.file_number, s.block_number), (None, None));
        // After a filemark, write-protected, 64 KiB fixed blocks, cleaning.
        let s = decode_status(&mtget(gmt::EOF | gmt::WR_PROT | gmt::ONLINE | gmt::CLN, 3, 0, 0x4401_0000));
        assert!(s.after_filemark && s.write_protected && s.cleaning);
        assert_eq!((s.file_number, s.block_size, s.density), (Some(3), 0x01_0000, 0x44));
        let s = decode_status(&mtget(gmt::EOT | gmt::EOD | gmt::ONLINE, 7, 12, 0));
        assert!(s.eot && s.eod);
    }

    #[test]
    fn writes_up_to_and_past_the_early_warning() {
        let plain = StStatus { online: true, ..StStatus::default() };
        let past = StStatus { eot: true, ..plain };
        assert!(matches!(write_step(Ok(4096), 4096, false, 0), WriteStep::Written));
        assert_eq!(written(false, &plain), WriteOutcome::Written);
        // The write that reaches the early warning: written, GMT_EOT.
        assert_eq!(written(false, &past), WriteOutcome::EarlyWarning);
        // The next one: ENOSPC, try again; the retry goes through.
        assert!(matches!(write_step(Err(errno(libc::ENOSPC)), 4096, false, 0), WriteStep::Retry));
        assert!(matches!(write_step(Ok(4096), 4096, true, 0), WriteStep::Written));
        assert_eq!(written(true, &plain), WriteOutcome::EarlyWarning);
        // ENOSPC on the retry too: the physical end.
        assert!(matches!(
            write_step(Err(errno(libc::ENOSPC)), 4096, true, 2),
            WriteStep::Fail(TapeError::EndOfMedium(2))
        ));
    }

    #[test]
    fn write_failures() {
        let fail = |r, len| match write_step(r, len, false, 1) {
            WriteStep::Fail(e) => e,
            other => panic!("{other:?}"),
        };
        assert!(matches!(fail(Err(errno(libc::EACCES)), 10), TapeError::WriteProtected(1)));
        assert!(matches!(fail(Err(errno(libc::EROFS)), 10), TapeError::WriteProtected(1)));
        assert!(matches!(fail(Err(errno(libc::ENOMEDIUM)), 10), TapeError::NoMedium(1)));
        assert!(matches!(fail(Err(errno(libc::EBUSY)), 10), TapeError::Busy(_)));
        assert_eq!(fail(Ok(5), 10).to_string(), "write: 5 of a 10-byte block written");
        assert!(fail(Err(errno(libc::EINVAL)), 10).to_string().starts_with("write: "));
        assert!(matches!(write_step(Err(errno(libc::EIO)), 10, true, 1), WriteStep::Refused(_)));
    }

    #[test]
    fn reads_of_blocks_filemarks_and_the_end_of_data() {
        let plain = StStatus { online: true, ..StStatus::default() };
        let at_eod = StStatus { eod: true, ..plain };
        let done = |step| match step {
            ReadStep::Done(outcome) => outcome,
            other => panic!("{other:?}"),
        };
        assert!(!read_needs_status(&Ok(512)));
        assert_eq!(done(read_step(Ok(512), None, 1024, 0)), ReadOutcome::Block(512));
        assert!(read_needs_status(&Ok(0)));
        assert_eq!(done(read_step(Ok(0), Some(&plain), 1024, 0)), ReadOutcome::Filemark);
        // The first blank check after a filemark: 0 bytes, GMT_EOD.
        assert_eq!(done(read_step(Ok(0), Some(&at_eod), 1024, 0)), ReadOutcome::EndOfData);
        // Later reads there: EIO, GMT_EOD.
        assert!(read_needs_status(&Err(errno(libc::EIO))));
        assert_eq!(done(read_step(Err(errno(libc::EIO)), Some(&at_eod), 1024, 0)), ReadOutcome::EndOfData);
        // EIO without GMT_EOD: the caller checks.
        assert!(matches!(
            read_step(Err(errno(libc::EIO)), Some(&plain), 1024, 0),
            ReadStep::CheckEndOfData(_)
        ));
        assert!(matches!(read_step(Err(errno(libc::EIO)), None, 1024, 0), ReadStep::CheckEndOfData(_)));
    }

    #[test]
    fn read_failures() {
        let fail = |r| match read_step(r, None, 1024, 4) {
            ReadStep::Fail(e) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            fail(Err(errno(libc::ENOMEM))).to_string(),
            "the block is larger than the 1024-byte buffer (the head has moved past it)"
        );
        assert!(matches!(fail(Err(errno(libc::ENOMEDIUM))), TapeError::NoMedium(4)));
        assert!(fail(Err(errno(libc::EINVAL))).to_string().starts_with("read: "));
    }
}
