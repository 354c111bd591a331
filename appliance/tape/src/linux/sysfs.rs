//! What sysfs says of an `st` device: the SCSI generic node of the same
//! drive (for the commands `st` does not offer: MODE SENSE, LOG SENSE) and
//! the driver options in effect.
//!
//! `/sys/class/scsi_tape/<name>/` exists for every `st` device node
//! (`st0`, `nst0`, `nst0l`, ...); its `dev` file holds `major:minor`, its
//! `options` file the option bits (as `MTSETDRVBUFFER` sets them), and its
//! `device` link leads to the SCSI device, under which
//! `scsi_generic/sgN/` names the generic node. The sysfs root is a
//! parameter so the tests can point it at a fake tree.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::{Result, TapeError};

/// Where sysfs is mounted.
pub(crate) const SYSFS: &str = "/sys";

fn sysfs_error(path: &Path, e: std::io::Error) -> TapeError {
    TapeError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The class directory of the `st` device `tape` (a path such as
/// `/dev/nst0`, or a link to one such as `/dev/tape/by-id/...-nst`): by the
/// node's name, or else by its device number. `None` when sysfs does not
/// know it (no such device, or not an `st` device).
pub(crate) fn tape_class_dir(sys_root: &Path, tape: &Path) -> Result<Option<PathBuf>> {
    let class = sys_root.join("class/scsi_tape");
    let resolved = fs::canonicalize(tape).unwrap_or_else(|_| tape.to_path_buf());
    if let Some(name) = resolved.file_name() {
        let dir = class.join(name);
        if dir.is_dir() {
            return Ok(Some(dir));
        }
    }
    let Ok(meta) = fs::metadata(&resolved) else { return Ok(None) };
    if !meta.file_type().is_char_device() {
        return Ok(None);
    }
    let wanted = format!("{}:{}", libc::major(meta.rdev()), libc::minor(meta.rdev()));
    let entries = match fs::read_dir(&class) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(sysfs_error(&class, e)),
    };
    for entry in entries {
        let dir = entry.map_err(|e| sysfs_error(&class, e))?.path();
        if fs::read_to_string(dir.join("dev")).is_ok_and(|dev| dev.trim() == wanted) {
            return Ok(Some(dir));
        }
    }
    Ok(None)
}

/// The SCSI generic node (`/dev/sgN`) of the drive behind the `st`
/// device `tape`; `None` when there is none (the `sg` driver not loaded)
/// or sysfs does not know the device.
pub(crate) fn scsi_generic_for_tape(sys_root: &Path, tape: &Path) -> Result<Option<PathBuf>> {
    let Some(dir) = tape_class_dir(sys_root, tape)? else { return Ok(None) };
    let generic = dir.join("device/scsi_generic");
    let entries = match fs::read_dir(&generic) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(sysfs_error(&generic, e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| {
            name.strip_prefix("sg").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    names.sort();
    Ok(names.first().map(|name| Path::new("/dev").join(name)))
}

/// The `st` driver options of `tape` (the `options` file: a hexadecimal
/// bit mask); `None` when sysfs does not have them.
pub(crate) fn st_options(sys_root: &Path, tape: &Path) -> Result<Option<u32>> {
    let Some(dir) = tape_class_dir(sys_root, tape)? else { return Ok(None) };
    let path = dir.join("options");
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(sysfs_error(&path, e)),
    };
    let hex = text.trim();
    let hex = hex.strip_prefix("0x").or_else(|| hex.strip_prefix("0X")).unwrap_or(hex);
    u32::from_str_radix(hex, 16).map(Some).map_err(|e| {
        TapeError::Invalid(format!("{}: {text:?} is not a hexadecimal mask: {e}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sysfs with `nst0` (generic node sg3) and `nst5` (device
    /// number 1:3, the number of /dev/null, generic node sg12).
    fn fake_sysfs() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let devices = root.path().join("devices/pci0000:00/host4/target4:0:1/4:0:1:0");
        fs::create_dir_all(devices.join("scsi_generic/sg3")).unwrap();
        let class = root.path().join("class/scsi_tape");
        fs::create_dir_all(class.join("nst0")).unwrap();
        fs::write(class.join("nst0/dev"), "9:128\n").unwrap();
        fs::write(class.join("nst0/options"), "0x00000809\n").unwrap();
        std::os::unix::fs::symlink(&devices, class.join("nst0/device")).unwrap();
        fs::create_dir_all(class.join("nst5/device/scsi_generic/sg12")).unwrap();
        fs::create_dir_all(class.join("nst5/device/scsi_generic/tape")).unwrap();
        fs::write(class.join("nst5/dev"), "1:3\n").unwrap();
        root
    }

    #[test]
    fn generic_node_by_name() {
        let sys = fake_sysfs();
        let sg = scsi_generic_for_tape(sys.path(), Path::new("/dev/nst0")).unwrap();
        assert_eq!(sg.as_deref(), Some(Path::new("/dev/sg3")));
    }

    #[test]
    fn generic_node_by_device_number() {
        // /dev/null is no tape, but its number (1:3) is nst5's here.
        let sys = fake_sysfs();
        let dir = tape_class_dir(sys.path(), Path::new("/dev/null")).unwrap().unwrap();
        assert!(dir.ends_with("class/scsi_tape/nst5"));
        let sg = scsi_generic_for_tape(sys.path(), Path::new("/dev/null")).unwrap();
        assert_eq!(sg.as_deref(), Some(Path::new("/dev/sg12")), "entries not named sgN are ignored");
    }

    #[test]
    fn unknown_devices_have_no_generic_node() {
        let sys = fake_sysfs();
        assert_eq!(scsi_generic_for_tape(sys.path(), Path::new("/dev/nst9")).unwrap(), None);
        assert_eq!(scsi_generic_for_tape(sys.path(), Path::new("/dev/zero")).unwrap(), None);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(scsi_generic_for_tape(empty.path(), Path::new("/dev/null")).unwrap(), None);
        // A regular file is not a device, whatever its name.
        let file = empty.path().join("nst1");
        fs::write(&file, "").unwrap();
        assert_eq!(tape_class_dir(sys.path(), &file).unwrap(), None);
    }

    #[test]
    fn options_are_read_as_hex() {
        let sys = fake_sysfs();
        assert_eq!(st_options(sys.path(), Path::new("/dev/nst0")).unwrap(), Some(0x809));
        assert_eq!(st_options(sys.path(), Path::new("/dev/null")).unwrap(), None, "nst5 has no options file");
        fs::write(sys.path().join("class/scsi_tape/nst0/options"), "junk").unwrap();
        assert!(st_options(sys.path(), Path::new("/dev/nst0")).is_err());
    }
}
