//! Durable file operations: write to a temporary name, fsync, rename, fsync
//! the directory; and advisory locks (flock) on lock files.
//!
//! Invariant: a file written through `write_atomic` is either absent or
//! complete under its final name after a crash.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{IoContext, Result, StoreError};

/// fsync a directory so renames and creations inside it are durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    crate::fault::point(dir, "directory sync")?;
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// The directory holding `path`: `.` for a bare relative name.
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Write `data` to `path` atomically and durably (temp file in the same
/// directory, fsync, rename, fsync directory).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp).at(&tmp)?;
        f.write_all(data).at(&tmp)?;
        f.sync_all().at(&tmp)?;
        fs::rename(&tmp, path).at(path)?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Create `dir` and any missing parents, fsyncing each parent that gained
/// an entry.
pub fn create_dir_all_durable(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all_durable(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(StoreError::io(dir, e)),
    }
    fsync_dir(parent_dir(dir))
}

/// How to wait for a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
    SharedNow,
    ExclusiveNow,
}

/// Take an flock on `path` (created if missing) through a fresh open file
/// description, so threads of one process lock independently. `Ok(None)`
/// means a non-blocking attempt found the lock taken.
pub fn lock_file(path: &Path, mode: LockMode) -> Result<Option<Flock<File>>> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).at(path)?;
    let arg = match mode {
        LockMode::Shared => FlockArg::LockShared,
        LockMode::Exclusive => FlockArg::LockExclusive,
        LockMode::SharedNow => FlockArg::LockSharedNonblock,
        LockMode::ExclusiveNow => FlockArg::LockExclusiveNonblock,
    };
    match Flock::lock(file, arg) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(StoreError::io(path, std::io::Error::from(e))),
    }
}
