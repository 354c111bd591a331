//! The Linux ioctls this crate uses, and the only unsafe code in it: the
//! magnetic tape ioctls of the `st` driver (`MTIOCTOP`, `MTIOCGET`,
//! `MTIOCPOS`, <linux/mtio.h>) and `SG_IO` of the SCSI generic driver
//! (<scsi/sg.h>), behind safe functions.
//!
//! Invariant: the `#[repr(C)]` structs here match the kernel's layouts
//! exactly (the tests check their sizes and the ioctl numbers against the
//! values the C headers give), and every pointer handed to the kernel
//! points into a buffer that outlives the call and is as long as the
//! length given with it.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;
use std::time::Duration;

use libc::{c_int, c_long, c_short, c_uchar, c_uint, c_ushort, c_void};
use nix::errno::Errno;

/// `struct mtop`: a magnetic tape operation and its count.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MtOp {
    pub mt_op: c_short,
    pub mt_count: c_int,
}

/// `struct mtget`: the `st` driver's status of the drive.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MtGet {
    pub mt_type: c_long,
    pub mt_resid: c_long,
    pub mt_dsreg: c_long,
    pub mt_gstat: c_long,
    pub mt_erreg: c_long,
    /// `__kernel_daddr_t`, an `int`.
    pub mt_fileno: c_int,
    pub mt_blkno: c_int,
}

/// `struct mtpos`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MtPos {
    pub mt_blkno: c_long,
}

/// `struct sg_io_hdr` (interface `'S'`, version 3).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SgIoHdr {
    interface_id: c_int,
    dxfer_direction: c_int,
    cmd_len: c_uchar,
    mx_sb_len: c_uchar,
    iovec_count: c_ushort,
    dxfer_len: c_uint,
    dxferp: *mut c_void,
    cmdp: *mut c_uchar,
    sbp: *mut c_uchar,
    timeout: c_uint,
    flags: c_uint,
    pack_id: c_int,
    usr_ptr: *mut c_void,
    status: c_uchar,
    masked_status: c_uchar,
    msg_status: c_uchar,
    sb_len_wr: c_uchar,
    host_status: c_ushort,
    driver_status: c_ushort,
    resid: c_int,
    duration: c_uint,
    info: c_uint,
}

/// The `st` operations (`mt_op`) this crate uses, from <linux/mtio.h>.
pub(crate) mod op {
    use libc::c_short;
    /// Space forward over filemarks; the head ends after the last one.
    pub const MTFSF: c_short = 1;
    /// Space backward over filemarks; the head ends before (on the
    /// beginning-of-tape side of) the last one.
    pub const MTBSF: c_short = 2;
    pub const MTFSR: c_short = 3;
    pub const MTBSR: c_short = 4;
    pub const MTWEOF: c_short = 5;
    pub const MTREW: c_short = 6;
    /// Rewind and unload.
    pub const MTOFFL: c_short = 7;
    /// To the end of recorded data.
    pub const MTEOM: c_short = 12;
    pub const MTSETBLK: c_short = 20;
    /// LOCATE to a block (a logical object with MT_ST_SCSI2LOGICAL).
    pub const MTSEEK: c_short = 22;
    pub const MTSETDRVBUFFER: c_short = 24;
}

/// MTSETDRVBUFFER arguments: set the option bits given.
pub(crate) const MT_ST_SETBOOLEANS: c_int = 0x3000_0000;
/// Option: MTSEEK and MTIOCPOS use SCSI logical object numbers, not
/// device-specific block addresses.
pub(crate) const MT_ST_SCSI2LOGICAL: c_int = 0x800;

/// The `SG_IO` request number (not an `_IOWR` code, a plain constant).
pub(crate) const SG_IO: u32 = 0x2285;
const SG_INTERFACE_ID: c_int = b'S' as c_int;
const SG_DXFER_NONE: c_int = -1;
const SG_DXFER_FROM_DEV: c_int = -3;

mod sys {
    use super::{MtGet, MtOp, MtPos, SgIoHdr};
    nix::ioctl_write_ptr!(mtioctop, b'm', 1, MtOp);
    nix::ioctl_read!(mtiocget, b'm', 2, MtGet);
    nix::ioctl_read!(mtiocpos, b'm', 3, MtPos);
    nix::ioctl_readwrite_bad!(sg_io, super::SG_IO, SgIoHdr);
}

/// Run tape operation `op` `count` times (MTIOCTOP).
pub(crate) fn mt_op(fd: BorrowedFd<'_>, op: c_short, count: c_int) -> Result<(), Errno> {
    let request = MtOp { mt_op: op, mt_count: count };
    // SAFETY: `request` is a live `struct mtop` for the whole call; the
    // kernel only reads it.
    unsafe { sys::mtioctop(fd.as_raw_fd(), &request) }.map(drop)
}

/// The `st` driver's status (MTIOCGET).
pub(crate) fn mt_get(fd: BorrowedFd<'_>) -> Result<MtGet, Errno> {
    let mut status = MtGet::default();
    // SAFETY: `status` is a live, writable `struct mtget` for the whole
    // call; the kernel writes at most its size.
    unsafe { sys::mtiocget(fd.as_raw_fd(), &mut status) }?;
    Ok(status)
}

/// The drive's position (MTIOCPOS: READ POSITION).
pub(crate) fn mt_pos(fd: BorrowedFd<'_>) -> Result<c_long, Errno> {
    let mut pos = MtPos::default();
    // SAFETY: as for `mt_get`, with a `struct mtpos`.
    unsafe { sys::mtiocpos(fd.as_raw_fd(), &mut pos) }?;
    Ok(pos.mt_blkno)
}

/// The data phase of a SCSI command. (No command this crate sends has
/// data for the device, so there is no variant for that direction.)
pub(crate) enum SgData<'a> {
    None,
    /// Data from the device into this buffer (up to its length).
    FromDevice(&'a mut [u8]),
}

/// How a command sent with `SG_IO` ended. The status fields are raw: see
/// `super::sg::check` for what they mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SgReply {
    /// The SCSI status byte (00h GOOD, 02h CHECK CONDITION, ...).
    pub status: u8,
    pub host_status: u16,
    pub driver_status: u16,
    /// The sense data the device returned, if any.
    pub sense: Vec<u8>,
    /// Bytes of the data phase that were asked for but not transferred.
    pub resid: i32,
}

/// Room for the sense data: descriptor-format sense of LTO drives fits
/// in 96 bytes; 252 is the most any device returns.
const SENSE_LEN: usize = 252;

/// Send `cdb` (6 to 16 bytes) with `data` through the SCSI generic file
/// `fd`, waiting up to `timeout`. An `Err` means the command could not be
/// sent or the kernel refused it; how the device answered is in the reply.
pub(crate) fn sg_io(
    fd: BorrowedFd<'_>,
    cdb: &[u8],
    data: SgData<'_>,
    timeout: Duration,
) -> std::io::Result<SgReply> {
    let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg);
    if !(6..=16).contains(&cdb.len()) {
        return Err(invalid(format!("a {}-byte CDB (SG_IO takes 6 to 16)", cdb.len())));
    }
    let (direction, pointer, len) = match data {
        SgData::None => (SG_DXFER_NONE, ptr::null_mut(), 0),
        SgData::FromDevice(buf) => (SG_DXFER_FROM_DEV, buf.as_mut_ptr().cast(), buf.len()),
    };
    let dxfer_len = c_uint::try_from(len).map_err(|_| invalid(format!("a {len}-byte transfer")))?;
    let mut cdb_copy = [0u8; 16];
    cdb_copy[..cdb.len()].copy_from_slice(cdb);
    let mut sense = [0u8; SENSE_LEN];
    let mut hdr = SgIoHdr {
        interface_id: SG_INTERFACE_ID,
        dxfer_direction: direction,
        cmd_len: cdb.len() as c_uchar,
        mx_sb_len: SENSE_LEN as c_uchar,
        iovec_count: 0,
        dxfer_len,
        dxferp: pointer,
        cmdp: cdb_copy.as_mut_ptr(),
        sbp: sense.as_mut_ptr(),
        timeout: c_uint::try_from(timeout.as_millis()).unwrap_or(c_uint::MAX),
        flags: 0,
        pack_id: 0,
        usr_ptr: ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    };
    // SAFETY: `hdr` is a live `struct sg_io_hdr`; `cmdp` points to
    // `cmd_len` readable bytes of `cdb_copy`, `sbp` to `mx_sb_len` writable
    // bytes of `sense`, and `dxferp` to `dxfer_len` writable bytes of the
    // caller's buffer (null with length 0 when there is no data phase).
    // All of them outlive the call, which completes the command before it
    // returns.
    unsafe { sys::sg_io(fd.as_raw_fd(), &mut hdr) }.map_err(std::io::Error::from)?;
    let sense_len = usize::from(hdr.sb_len_wr).min(SENSE_LEN);
    Ok(SgReply {
        status: hdr.status,
        host_status: hdr.host_status,
        driver_status: hdr.driver_status,
        sense: sense[..sense_len].to_vec(),
        resid: hdr.resid,
    })
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    /// Sizes and offsets as the C compiler lays out <linux/mtio.h> and
    /// <scsi/sg.h> (LP64: x86_64, aarch64; ILP32 for 32-bit targets).
    #[test]
    fn structs_match_the_kernel_headers() {
        assert_eq!(size_of::<MtOp>(), 8);
        assert_eq!(size_of::<MtPos>(), size_of::<c_long>());
        #[cfg(target_pointer_width = "64")]
        {
            assert_eq!(size_of::<MtGet>(), 48);
            assert_eq!((offset_of!(MtGet, mt_fileno), offset_of!(MtGet, mt_blkno)), (40, 44));
            assert_eq!(size_of::<SgIoHdr>(), 88);
            assert_eq!(offset_of!(SgIoHdr, dxferp), 16);
            assert_eq!(offset_of!(SgIoHdr, timeout), 40);
            assert_eq!(offset_of!(SgIoHdr, status), 64);
            assert_eq!(offset_of!(SgIoHdr, host_status), 68);
            assert_eq!(offset_of!(SgIoHdr, resid), 72);
            assert_eq!(offset_of!(SgIoHdr, info), 80);
        }
        #[cfg(target_pointer_width = "32")]
        {
            assert_eq!(size_of::<MtGet>(), 28);
            assert_eq!(size_of::<SgIoHdr>(), 64);
        }
    }

    /// MTIOCTOP = _IOW('m', 1, struct mtop), MTIOCGET = _IOR('m', 2,
    /// struct mtget), MTIOCPOS = _IOR('m', 3, struct mtpos), with the
    /// values <linux/mtio.h> gives on x86_64 and aarch64.
    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        let top = nix::request_code_write!(b'm', 1, size_of::<MtOp>()) as u64;
        let get = nix::request_code_read!(b'm', 2, size_of::<MtGet>()) as u64;
        let pos = nix::request_code_read!(b'm', 3, size_of::<MtPos>()) as u64;
        #[cfg(all(target_pointer_width = "64", any(target_arch = "x86_64", target_arch = "aarch64")))]
        assert_eq!((top, get, pos), (0x4008_6d01, 0x8030_6d02, 0x8008_6d03));
        // The generic encoding: direction in bits 30-31, size in 16-29,
        // type in 8-15, number in 0-7.
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "x86"))]
        for (code, dir, nr, size) in [
            (top, 1u64, 1u64, size_of::<MtOp>()),
            (get, 2, 2, size_of::<MtGet>()),
            (pos, 2, 3, size_of::<MtPos>()),
        ] {
            assert_eq!(code, dir << 30 | (size as u64) << 16 | u64::from(b'm') << 8 | nr);
        }
        assert_eq!(SG_IO, 0x2285);
        assert_eq!(SG_INTERFACE_ID, 0x53);
    }

    #[test]
    fn sg_io_refuses_bad_cdbs_before_any_ioctl() {
        let file = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsFd;
        for cdb in [&[0u8; 5][..], &[0; 17]] {
            let err = sg_io(file.as_fd(), cdb, SgData::None, Duration::from_secs(1)).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        }
        // A file that is not a SCSI generic device: the kernel says so.
        let err = sg_io(file.as_fd(), &[0; 6], SgData::None, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL)), "{err}");
    }
}
