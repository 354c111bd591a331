//! The file that keeps a host's [`CacheKey`]: 32 random bytes, made on
//! first use with mode 0600 in a directory made with mode 0700, and
//! refused afterwards unless it is still a regular file of this user that
//! no one else can read or write. Where the file lives is the caller's
//! choice; it must be outside what it protects (the datastore's cache).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::artifact::CacheKey;

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheKeyError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error(
        "{} is not a cache key this user alone can read ({why}); remove it and a new one is made",
        path.display()
    )]
    Unsafe { path: PathBuf, why: String },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CacheKeyError + 'a {
    move |source| CacheKeyError::Io { action, path: path.to_owned(), source }
}

impl CacheKey {
    /// The key kept in `path`, made there first if there is none (two
    /// processes doing so at once agree on one).
    pub fn load_or_create(path: &Path) -> Result<CacheKey, CacheKeyError> {
        match read(path) {
            Err(CacheKeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                create(path)?;
                read(path)
            }
            other => other,
        }
    }
}

/// Write a fresh key under a temporary name, then link it to `path`,
/// which fails if another process linked its own first (then that one
/// stands).
fn create(path: &Path) -> Result<(), CacheKeyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err("create", dir))?;
    let key = CacheKey::generate().map_err(io_err("make a key for", path))?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(key.as_bytes()).and_then(|()| f.sync_all()));
    let linked = written.and_then(|()| match fs::hard_link(&tmp, path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    });
    let _ = fs::remove_file(&tmp);
    linked.map_err(io_err("write", path))?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("sync", dir))
}

/// The key in `path`, checked: a regular file (not followed through a
/// symlink) of this user, mode without group or other bits, 32 bytes.
fn read(path: &Path) -> Result<CacheKey, CacheKeyError> {
    let unsafe_key = |why: String| CacheKeyError::Unsafe { path: path.to_owned(), why };
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits() | nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(io_err("open", path))?;
    let meta = file.metadata().map_err(io_err("stat", path))?;
    if !meta.file_type().is_file() {
        return Err(unsafe_key("not a regular file".into()));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(unsafe_key(format!("owned by user {}, not by this one", meta.uid())));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(unsafe_key(format!("mode {:o} lets others at it", meta.permissions().mode() & 0o777)));
    }
    let mut bytes = Vec::with_capacity(CacheKey::LEN + 1);
    (&mut file).take(CacheKey::LEN as u64 + 1).read_to_end(&mut bytes).map_err(io_err("read", path))?;
    let key: [u8; CacheKey::LEN] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| unsafe_key(format!("{} bytes, not {}", b.len(), CacheKey::LEN)))?;
    Ok(CacheKey::from_bytes(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state/cairn/policy-cache.key");
        let key = CacheKey::load_or_create(&path).expect("create");
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (32, 0o600));
        let parent = fs::metadata(path.parent().expect("dir")).expect("stat dir");
        assert_eq!(parent.permissions().mode() & 0o777, 0o700);
        assert_eq!(CacheKey::load_or_create(&path).expect("load"), key);
        assert_eq!(fs::read_dir(path.parent().expect("dir")).expect("ls").count(), 1, "no temporary left");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = CacheKey::load_or_create(&path).expect_err("readable by others").to_string();
        assert!(err.contains("mode 644"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        fs::write(&path, b"short").expect("damage");
        assert!(CacheKey::load_or_create(&path).expect_err("short").to_string().contains("5 bytes"));
        fs::remove_file(&path).expect("rm");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &path).expect("symlink");
        assert!(CacheKey::load_or_create(&path).is_err(), "a symlink is not followed");
    }
}
