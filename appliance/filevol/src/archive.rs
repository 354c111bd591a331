//! File archive entries: the metadata stream of a file archive.
//!
//! A file archive is two content-defined chunked streams: the metadata
//! stream (a header, then one length-prefixed [`Entry`] per filesystem
//! object, in walk order: depth first, each directory's children sorted by
//! name bytes, a directory before its children) and the payload stream (the
//! data extents of regular files, concatenated). Byte layout: docs/formats.md.

/// The type of a filesystem object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
    Fifo,
    CharDev,
    BlockDev,
    Socket,
}

/// One filesystem object of a file archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative path inside the archive, components joined by `/`, as raw
    /// bytes (any byte but `/` and NUL may appear in a name). The archive
    /// root directory itself has the empty path.
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// ctime and inode are recorded for change detection only; restore
    /// cannot set them.
    pub ctime: i64,
    pub ctime_nsec: u32,
    pub ino: u64,
    /// Logical size of a regular file in bytes (0 for other kinds).
    pub size: u64,
    /// Device number of character and block devices.
    pub rdev: u64,
    /// Target of a symlink, as raw bytes (never followed).
    pub link_target: Vec<u8>,
    /// Hard-link group: 0 for none, else a number shared by every name of
    /// one inode in this archive. All members carry the same payload
    /// offset; the data is stored once.
    pub hardlink: u64,
    /// Regular files: offset of the file's first data byte in the payload
    /// stream. The file occupies `data_len()` payload bytes from here.
    pub payload_offset: u64,
    /// Regular files: `None` for a dense file (data = `[0, size)`), or the
    /// data extents `(offset, length)` of a sparse file, sorted, disjoint;
    /// everything else reads as zeros.
    pub extents: Option<Vec<(u64, u64)>>,
    /// Extended attributes (name, value) sorted by name, including POSIX
    /// ACLs (`system.posix_acl_access`, `system.posix_acl_default`).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    /// Payload bytes this file occupies: the sum of its extents.
    pub fn data_len(&self) -> u64 {
        match (&self.kind, &self.extents) {
            (EntryKind::File, None) => self.size,
            (EntryKind::File, Some(ext)) => ext.iter().map(|e| e.1).sum(),
            _ => 0,
        }
    }
}
