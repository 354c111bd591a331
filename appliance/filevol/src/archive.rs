//! File archive entries: the metadata stream of a file archive, its byte
//! encoding and a reader that is safe on hostile input.
//!
//! A file archive is two content-defined chunked streams: the metadata
//! stream (a header, then one length-prefixed [`Entry`] per filesystem
//! object, in walk order: depth first, each directory's children sorted by
//! name bytes, a directory before its children) and the payload stream (the
//! data extents of regular files, concatenated).
//!
//! # Metadata stream, version 1
//!
//! All integers are little-endian. The stream starts with an 8-byte header:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | magic `CRNM` |
//! | 4 | 1 | format version, 1 |
//! | 5 | 3 | reserved, 0 |
//!
//! Then entries follow until the end of the stream, each a `u32` body length
//! followed by the body (at most 16 MiB). Offsets below are relative to the
//! body start; `P`, `L`, `N` are the path, link target and extent counts.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 1 | kind: 0 dir, 1 file, 2 symlink, 3 fifo, 4 char device, 5 block device, 6 socket |
//! | 1 | 1 | flags: bit 0 = the extent list is present (sparse file); other bits 0 |
//! | 2 | 2 | reserved, 0 |
//! | 4 | 4 | mode: permission bits incl. setuid/setgid/sticky (at most `0o7777`) |
//! | 8 | 4 | uid |
//! | 12 | 4 | gid |
//! | 16 | 4 | mtime nanoseconds (below 10⁹) |
//! | 20 | 4 | ctime nanoseconds (below 10⁹) |
//! | 24 | 8 | mtime, seconds since the epoch (signed) |
//! | 32 | 8 | ctime, seconds since the epoch (signed) |
//! | 40 | 8 | inode number |
//! | 48 | 8 | size: logical size of a regular file, else 0 |
//! | 56 | 8 | rdev: device number of a device node, else 0 |
//! | 64 | 8 | hard-link group, 0 = none (regular files only) |
//! | 72 | 8 | payload offset (regular files only, else 0) |
//! | 80 | 4 | `P`: path length (at most 4096) |
//! | 84 | P | path: relative, `/`-separated raw bytes; empty = the archive root |
//! | 84+P | 4 | `L`: link target length (symlinks: 1 to 4096, else 0) |
//! | 88+P | L | link target, raw bytes |
//! | 88+P+L | 4 | `N`: extent count (0 when flag bit 0 is clear; at most 524288) |
//! | 92+P+L | 16·N | extents: `u64` offset, `u64` length; sorted, disjoint, non-empty, within size |
//! | 92+P+L+16·N | 4 | `X`: xattr count (at most 65536) |
//! | … | … | X times: `u32` name length (1 to 255), name, `u32` value length (at most 65536), value; names strictly ascending |
//!
//! The body ends exactly after the last xattr. A dense regular file has no
//! extent list: its data is `[0, size)`. A sparse file lists its data
//! extents; everything else reads as zeros. From the payload offset, the
//! payload stream holds the file's data: `size` bytes for a dense file, the
//! extents' bytes concatenated for a sparse one ([`Entry::data_len`]).
//!
//! Invariant: the reader never panics, never follows a length it has not
//! bounded first, and yields only entries that pass [`check_entry`].

use std::io::Read;

/// Magic at the start of every metadata stream.
pub const META_MAGIC: [u8; 4] = *b"CRNM";
/// Metadata stream format version this code writes and reads.
pub const META_VERSION: u8 = 1;
/// Largest entry body the reader accepts.
pub const MAX_ENTRY_LEN: usize = 16 << 20;
/// Longest path and longest symlink target.
pub const MAX_PATH_LEN: usize = 4096;
/// Most extents one sparse file may list.
pub const MAX_EXTENTS: usize = 1 << 19;
/// Most extended attributes on one entry.
pub const MAX_XATTRS: usize = 1 << 16;
/// Longest extended attribute name (Linux `XATTR_NAME_MAX`).
pub const MAX_XATTR_NAME: usize = 255;
/// Largest extended attribute value (Linux `XATTR_SIZE_MAX`).
pub const MAX_XATTR_VALUE: usize = 1 << 16;

const FIXED_LEN: usize = 80;
const FLAG_EXTENTS: u8 = 1;

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

impl EntryKind {
    /// The kind's byte code in the metadata stream.
    pub fn code(self) -> u8 {
        match self {
            EntryKind::Dir => 0,
            EntryKind::File => 1,
            EntryKind::Symlink => 2,
            EntryKind::Fifo => 3,
            EntryKind::CharDev => 4,
            EntryKind::BlockDev => 5,
            EntryKind::Socket => 6,
        }
    }

    /// The kind for a byte code, `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => EntryKind::Dir,
            1 => EntryKind::File,
            2 => EntryKind::Symlink,
            3 => EntryKind::Fifo,
            4 => EntryKind::CharDev,
            5 => EntryKind::BlockDev,
            6 => EntryKind::Socket,
            _ => return None,
        })
    }
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

/// What can go wrong reading a metadata stream.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading the metadata stream failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a Cairn metadata stream (bad magic); the archive index may be damaged: run `cairn verify`")]
    BadMagic,
    #[error(
        "metadata stream format version {0} is not supported (this cairn reads version {META_VERSION}); \
         upgrade cairn to read it"
    )]
    UnsupportedVersion(u8),
    #[error(
        "the metadata stream ends in the middle of an entry; the snapshot is damaged: run `cairn verify`"
    )]
    Truncated,
    #[error("invalid path {path:?} in the archive: {reason}")]
    BadPath { path: String, reason: &'static str },
    #[error("invalid entry in the metadata stream: {0}; the snapshot is damaged: run `cairn verify`")]
    Invalid(String),
}

/// The 8-byte header that starts every metadata stream.
pub fn stream_header() -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&META_MAGIC);
    h[4] = META_VERSION;
    h
}

/// Check an archive path: relative, `/`-separated, no empty, `.` or `..`
/// component, no NUL, no leading or trailing `/`, at most
/// [`MAX_PATH_LEN`] bytes. The empty path (the archive root) is valid.
pub fn validate_path(path: &[u8]) -> Result<(), ArchiveError> {
    let bad = |reason| Err(ArchiveError::BadPath { path: escaped(path), reason });
    if path.is_empty() {
        return Ok(());
    }
    if path.len() > MAX_PATH_LEN {
        return bad("longer than 4096 bytes");
    }
    if path.contains(&0) {
        return bad("contains a NUL byte");
    }
    if path[0] == b'/' {
        return bad("absolute path");
    }
    for comp in path.split(|c| *c == b'/') {
        match comp {
            b"" => return bad("empty component (a doubled or trailing '/')"),
            b"." | b".." => return bad("'.' or '..' component"),
            _ => {}
        }
    }
    Ok(())
}

pub use model::human::escaped;

fn invalid<T>(msg: impl Into<String>) -> Result<T, ArchiveError> {
    Err(ArchiveError::Invalid(msg.into()))
}

/// Check everything the format promises about one entry (see the module
/// doc); [`MetaReader`] yields only entries that pass.
pub fn check_entry(e: &Entry) -> Result<(), ArchiveError> {
    validate_path(&e.path)?;
    if e.path.is_empty() && e.kind != EntryKind::Dir {
        return invalid("the archive root is not a directory");
    }
    if e.mode > 0o7777 {
        return invalid(format!("mode {:o} has bits beyond 0o7777", e.mode));
    }
    if e.mtime_nsec >= 1_000_000_000 || e.ctime_nsec >= 1_000_000_000 {
        return invalid("nanoseconds of a timestamp out of range");
    }
    if e.kind == EntryKind::Symlink {
        if e.link_target.is_empty() || e.link_target.len() > MAX_PATH_LEN || e.link_target.contains(&0) {
            return invalid("symlink target empty, longer than 4096 bytes or containing NUL");
        }
    } else if !e.link_target.is_empty() {
        return invalid("link target on an entry that is not a symlink");
    }
    if !matches!(e.kind, EntryKind::CharDev | EntryKind::BlockDev) && e.rdev != 0 {
        return invalid("device number on an entry that is not a device");
    }
    if e.kind == EntryKind::File {
        check_extents(e)?;
    } else if e.size != 0 || e.extents.is_some() || e.hardlink != 0 || e.payload_offset != 0 {
        return invalid("size, extents, hard-link group or payload on an entry that is not a regular file");
    }
    check_xattrs(&e.xattrs)
}

fn check_extents(e: &Entry) -> Result<(), ArchiveError> {
    let mut data_len = e.size;
    if let Some(ext) = &e.extents {
        if ext.len() > MAX_EXTENTS {
            return invalid("too many extents");
        }
        let mut end = 0u64;
        data_len = 0;
        for &(off, len) in ext {
            let Some(stop) = off.checked_add(len) else { return invalid("extent overflows") };
            if len == 0 || off < end || stop > e.size {
                return invalid("extents empty, unsorted, overlapping or beyond the file size");
            }
            end = stop;
            data_len += len;
        }
    }
    if e.payload_offset.checked_add(data_len).is_none() {
        return invalid("payload offset overflows");
    }
    Ok(())
}

fn check_xattrs(xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), ArchiveError> {
    if xattrs.len() > MAX_XATTRS {
        return invalid("too many extended attributes");
    }
    for (i, (name, value)) in xattrs.iter().enumerate() {
        if name.is_empty() || name.len() > MAX_XATTR_NAME || name.contains(&0) {
            return invalid("extended attribute name empty, longer than 255 bytes or containing NUL");
        }
        if value.len() > MAX_XATTR_VALUE {
            return invalid("extended attribute value larger than 64 KiB");
        }
        if i > 0 && xattrs[i - 1].0 >= *name {
            return invalid("extended attributes not sorted by name or duplicated");
        }
    }
    Ok(())
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Append one entry (`u32` length + body, layout in the module doc).
///
/// The caller keeps entries within the limits [`check_entry`] enforces
/// (the walker does); an entry outside them is written but later refused
/// by [`MetaReader`].
pub fn encode_entry(e: &Entry, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    let flags = if e.extents.is_some() { FLAG_EXTENTS } else { 0 };
    out.extend_from_slice(&[e.kind.code(), flags, 0, 0]);
    for v in [e.mode, e.uid, e.gid, e.mtime_nsec, e.ctime_nsec] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&e.mtime.to_le_bytes());
    out.extend_from_slice(&e.ctime.to_le_bytes());
    for v in [e.ino, e.size, e.rdev, e.hardlink, e.payload_offset] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    put_bytes(out, &e.path);
    put_bytes(out, &e.link_target);
    let ext = e.extents.as_deref().unwrap_or(&[]);
    out.extend_from_slice(&(ext.len() as u32).to_le_bytes());
    for (off, len) in ext {
        out.extend_from_slice(&off.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(&(e.xattrs.len() as u32).to_le_bytes());
    for (name, value) in &e.xattrs {
        put_bytes(out, name);
        put_bytes(out, value);
    }
    let body_len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
}

/// Where an encoded entry holds its payload offset: after the length word,
/// kind and flags (4 bytes), five `u32`, two `i64` and four `u64` fields.
const PAYLOAD_OFFSET_AT: usize = 4 + 4 + 5 * 4 + 2 * 8 + 4 * 8;

/// Rewrite the payload offset of the entry [`encode_entry`] wrote at the
/// start of `encoded`: for a writer that places a file's data after its
/// entry is encoded.
pub fn set_encoded_payload_offset(encoded: &mut [u8], offset: u64) {
    encoded[PAYLOAD_OFFSET_AT..PAYLOAD_OFFSET_AT + 8].copy_from_slice(&offset.to_le_bytes());
}

/// A bounds-checked cursor over one entry body.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ArchiveError> {
        match self.b.get(self.pos..).and_then(|rest| rest.get(..n)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => invalid("a field runs past the end of its entry"),
        }
    }

    fn u32(&mut self) -> Result<u32, ArchiveError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn u64(&mut self) -> Result<u64, ArchiveError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    /// A `u32` length (at most `max`) followed by that many bytes.
    fn bytes(&mut self, max: usize, what: &str) -> Result<Vec<u8>, ArchiveError> {
        let n = self.u32()? as usize;
        if n > max {
            return invalid(format!("{what} of {n} bytes exceeds the limit of {max}"));
        }
        Ok(self.take(n)?.to_vec())
    }

    /// A `u32` count, at most `max` and at most what the rest could hold
    /// with `min_each` bytes per item.
    fn count(&mut self, max: usize, min_each: usize, what: &str) -> Result<usize, ArchiveError> {
        let n = self.u32()? as usize;
        let room = (self.b.len() - self.pos) / min_each;
        if n > max || n > room {
            return invalid(format!("{what} count {n} exceeds the limit or the entry length"));
        }
        Ok(n)
    }
}

/// Decode one entry body and check it.
pub fn decode_entry(body: &[u8]) -> Result<Entry, ArchiveError> {
    let mut c = Cursor { b: body, pos: 0 };
    let head = c.take(4)?;
    let Some(kind) = EntryKind::from_code(head[0]) else {
        return invalid(format!("unknown entry kind {}", head[0]));
    };
    let flags = head[1];
    if flags & !FLAG_EXTENTS != 0 || head[2] != 0 || head[3] != 0 {
        return invalid("unknown flags or nonzero reserved bytes");
    }
    let (mode, uid, gid, mtime_nsec, ctime_nsec) = (c.u32()?, c.u32()?, c.u32()?, c.u32()?, c.u32()?);
    let (mtime, ctime) = (c.u64()? as i64, c.u64()? as i64);
    let (ino, size, rdev, hardlink, payload_offset) = (c.u64()?, c.u64()?, c.u64()?, c.u64()?, c.u64()?);
    debug_assert_eq!(c.pos, FIXED_LEN);
    let path = c.bytes(MAX_PATH_LEN, "path")?;
    let link_target = c.bytes(MAX_PATH_LEN, "link target")?;
    let n = c.count(MAX_EXTENTS, 16, "extent")?;
    if n > 0 && flags & FLAG_EXTENTS == 0 {
        return invalid("extents listed without the extent flag");
    }
    let mut ext = Vec::with_capacity(n);
    for _ in 0..n {
        ext.push((c.u64()?, c.u64()?));
    }
    let extents = (flags & FLAG_EXTENTS != 0).then_some(ext);
    let n = c.count(MAX_XATTRS, 8, "xattr")?;
    let mut xattrs = Vec::with_capacity(n);
    for _ in 0..n {
        let name = c.bytes(MAX_XATTR_NAME, "xattr name")?;
        xattrs.push((name, c.bytes(MAX_XATTR_VALUE, "xattr value")?));
    }
    if c.pos != body.len() {
        return invalid("trailing bytes after the last field of an entry");
    }
    let e = Entry {
        path,
        kind,
        mode,
        uid,
        gid,
        mtime,
        mtime_nsec,
        ctime,
        ctime_nsec,
        ino,
        size,
        rdev,
        link_target,
        hardlink,
        payload_offset,
        extents,
        xattrs,
    };
    check_entry(&e)?;
    Ok(e)
}

/// Reads entries from a metadata stream; iteration ends at a clean end of
/// the stream between entries and stops after the first error.
pub struct MetaReader<R: Read> {
    r: R,
    buf: Vec<u8>,
    done: bool,
}

impl<R: Read> std::fmt::Debug for MetaReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaReader").field("done", &self.done).finish_non_exhaustive()
    }
}

/// Fill `buf` completely; `Ok(false)` when the stream ended before the
/// first byte, `Truncated` when it ended after it.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<bool, ArchiveError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(ArchiveError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

impl<R: Read> MetaReader<R> {
    /// Start reading: checks the stream header.
    pub fn new(mut r: R) -> Result<Self, ArchiveError> {
        let mut h = [0u8; 8];
        if !read_full(&mut r, &mut h)? {
            return Err(ArchiveError::Truncated);
        }
        if h[..4] != META_MAGIC {
            return Err(ArchiveError::BadMagic);
        }
        if h[4] != META_VERSION {
            return Err(ArchiveError::UnsupportedVersion(h[4]));
        }
        if h[5..] != [0, 0, 0] {
            return invalid("nonzero reserved bytes in the stream header");
        }
        Ok(Self { r, buf: Vec::new(), done: false })
    }

    fn read_entry(&mut self) -> Result<Option<Entry>, ArchiveError> {
        let mut len = [0u8; 4];
        if !read_full(&mut self.r, &mut len)? {
            return Ok(None);
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_ENTRY_LEN {
            return invalid(format!("entry of {len} bytes exceeds the 16 MiB limit"));
        }
        self.buf.clear();
        // Grows only as bytes arrive, so a lying length costs nothing.
        (&mut self.r).take(len as u64).read_to_end(&mut self.buf)?;
        if self.buf.len() != len {
            return Err(ArchiveError::Truncated);
        }
        decode_entry(&self.buf).map(Some)
    }
}

impl<R: Read> Iterator for MetaReader<R> {
    type Item = Result<Entry, ArchiveError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.read_entry().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    fn base(path: &[u8], kind: EntryKind) -> Entry {
        Entry {
            path: path.to_vec(),
            kind,
            mode: 0o644,
            uid: 1000,
            gid: 100,
            mtime: 1_700_000_000,
            mtime_nsec: 123_456_789,
            ctime: -5,
            ctime_nsec: 999_999_999,
            ino: 42,
            size: 0,
            rdev: 0,
            link_target: Vec::new(),
            hardlink: 0,
            payload_offset: 0,
            extents: None,
            xattrs: Vec::new(),
        }
    }

    #[test]
    fn the_payload_offset_of_an_encoded_entry_can_be_rewritten() {
        for e in sample().into_iter().filter(|e| e.kind == EntryKind::File) {
            let mut buf = vec![9u8; 3];
            encode_entry(&e, &mut buf);
            set_encoded_payload_offset(&mut buf[3..], 0x0102_0304);
            let back = decode_entry(&buf[7..]).unwrap();
            assert_eq!(back.payload_offset, 0x0102_0304);
            assert_eq!(Entry { payload_offset: e.payload_offset, ..back }, e);
            assert_eq!(buf[..3], [9, 9, 9]);
        }
    }

    fn sample() -> Vec<Entry> {
        let mut root = base(b"", EntryKind::Dir);
        root.mode = 0o1777;
        root.xattrs = vec![(b"system.posix_acl_default".to_vec(), vec![2, 0, 0, 0, 1, 0, 7, 0])];
        let mut file = base(b"d/caf\xe9\nname", EntryKind::File);
        file.size = 10;
        file.payload_offset = 7;
        file.hardlink = 3;
        file.xattrs = vec![(b"user.a".to_vec(), vec![]), (b"user.b".to_vec(), vec![0, 255, 1])];
        let mut sparse = base(b"d/sparse", EntryKind::File);
        sparse.size = 5 << 30;
        sparse.extents = Some(vec![(0, 4096), (9 << 29, 1 << 20)]);
        sparse.payload_offset = u64::MAX - (1 << 21);
        let mut holes = base(b"d/all-holes", EntryKind::File);
        holes.size = 1 << 40;
        holes.extents = Some(vec![]);
        let mut link = base(b"d/link", EntryKind::Symlink);
        link.link_target = b"../\xff/target".to_vec();
        let mut chr = base(b"dev/null", EntryKind::CharDev);
        chr.rdev = (1 << 8) | 3;
        let mut blk = base(b"dev/sda", EntryKind::BlockDev);
        blk.rdev = 8 << 8;
        vec![
            root,
            base(b"d", EntryKind::Dir),
            file,
            sparse,
            holes,
            link,
            chr,
            blk,
            base(b"fifo", EntryKind::Fifo),
            base(b"sock", EntryKind::Socket),
        ]
    }

    fn stream(entries: &[Entry]) -> Vec<u8> {
        let mut out = stream_header().to_vec();
        for e in entries {
            encode_entry(e, &mut out);
        }
        out
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Entry>, ArchiveError> {
        MetaReader::new(bytes)?.collect()
    }

    #[test]
    fn round_trip_every_kind() {
        let entries = sample();
        for e in &entries {
            check_entry(e).unwrap();
        }
        let bytes = stream(&entries);
        assert_eq!(read_all(&bytes).unwrap(), entries);
        assert_eq!(entries[3].data_len(), 4096 + (1 << 20));
        assert_eq!(entries[4].data_len(), 0);
    }

    #[test]
    fn fixed_part_matches_documented_offsets() {
        let mut e = base(b"ab", EntryKind::Symlink);
        e.link_target = b"t".to_vec();
        let mut out = Vec::new();
        encode_entry(&e, &mut out);
        let body = &out[4..];
        assert_eq!(u32::from_le_bytes(out[..4].try_into().unwrap()) as usize, body.len());
        assert_eq!(body.len(), FIXED_LEN + 4 + 2 + 4 + 1 + 4 + 4);
        assert_eq!(body[0], 2);
        assert_eq!(&body[4..8], &0o644u32.to_le_bytes());
        assert_eq!(&body[16..20], &123_456_789u32.to_le_bytes());
        assert_eq!(&body[32..40], &(-5i64).to_le_bytes());
        assert_eq!(&body[40..48], &42u64.to_le_bytes());
        assert_eq!(&body[80..86], &[2, 0, 0, 0, b'a', b'b']);
        assert_eq!(&stream_header(), b"CRNM\x01\0\0\0");
    }

    #[test]
    fn escaped_shows_every_control_character_visibly() {
        assert_eq!(escaped(b"caf\xc3\xa9/x y"), "caf\u{e9}/x y");
        assert_eq!(escaped(b"\x1b]0;owned\x07"), "\\x1b]0;owned\\x07");
        assert_eq!(escaped(b"a\nb\tc\rd\\e\x7f"), "a\\nb\\tc\\rd\\\\e\\x7f");
        assert_eq!(escaped("\u{9b}31m\u{202e}txt".as_bytes()), "\\u{009b}31m\\u{202e}txt");
        assert_eq!(escaped(b"caf\xe9"), "caf\\xe9");
        for b in 0..=255u8 {
            let shown = escaped(&[b]);
            assert!(!shown.chars().any(|c| c.is_control()), "{b:#x} -> {shown:?}");
        }
    }

    #[test]
    fn validate_path_rules() {
        for ok in [&b""[..], b"a", b"a/b", b"...", b"a/.b", b"\xff\n"] {
            validate_path(ok).unwrap();
        }
        for bad in [&b"/"[..], b"/a", b"a/", b"a//b", b".", b"..", b"a/../b", b"a/./b", b"a\0b"] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
        assert!(validate_path(&vec![b'a'; MAX_PATH_LEN + 1]).is_err());
    }

    fn rejects(e: &Entry) {
        let bytes = stream(std::slice::from_ref(e));
        assert!(
            matches!(read_all(&bytes), Err(ArchiveError::Invalid(_) | ArchiveError::BadPath { .. })),
            "{e:?}"
        );
    }

    #[test]
    fn invalid_entries_are_refused() {
        let mut f = base(b"f", EntryKind::File);
        f.size = 100;
        for ext in [vec![(10, 10), (5, 10)], vec![(0, 10), (9, 2)], vec![(90, 11)], vec![(0, 0)]] {
            rejects(&Entry { extents: Some(ext), ..f.clone() });
        }
        rejects(&Entry { extents: Some(vec![(u64::MAX, 2)]), ..f.clone() });
        rejects(&base(b"../x", EntryKind::Dir));
        rejects(&base(b"", EntryKind::File));
        rejects(&Entry { mode: 0o10644, ..f.clone() });
        rejects(&Entry { mtime_nsec: 1_000_000_000, ..f.clone() });
        rejects(&base(b"l", EntryKind::Symlink));
        rejects(&Entry { size: 3, ..base(b"d", EntryKind::Dir) });
        let unsorted = vec![(b"user.b".to_vec(), vec![]), (b"user.a".to_vec(), vec![])];
        rejects(&Entry { xattrs: unsorted, ..f.clone() });
        rejects(&Entry { xattrs: vec![(vec![b'n'; 256], vec![])], ..f });
        let mut bytes = stream(&[base(b"x", EntryKind::Fifo)]);
        bytes[12] = 7;
        assert!(matches!(read_all(&bytes), Err(ArchiveError::Invalid(_))));
    }

    #[test]
    fn header_and_truncation() {
        assert!(matches!(MetaReader::new(&b"CRNX\x01\0\0\0"[..]), Err(ArchiveError::BadMagic)));
        assert!(matches!(MetaReader::new(&b"CRNM\x02\0\0\0"[..]), Err(ArchiveError::UnsupportedVersion(2))));
        assert!(matches!(MetaReader::new(&b"CRN"[..]), Err(ArchiveError::Truncated)));
        assert_eq!(read_all(&stream_header()).unwrap(), vec![]);
        let bytes = stream(&sample());
        let mut ends = vec![stream_header().len()];
        let mut pos = 8;
        while pos < bytes.len() {
            pos += 4 + u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
            ends.push(pos);
        }
        for cut in 8..bytes.len() {
            let r = read_all(&bytes[..cut]);
            if ends.contains(&cut) {
                assert_eq!(r.unwrap().len(), ends.iter().position(|e| *e == cut).unwrap());
            } else {
                assert!(matches!(r, Err(ArchiveError::Truncated)), "cut at {cut}: {r:?}");
            }
        }
        let mut huge = stream_header().to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(read_all(&huge), Err(ArchiveError::Invalid(_))));
    }

    #[test]
    fn hostile_streams_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0xC0FFEE);
        let good = stream(&sample());
        for round in 0..20_000 {
            let mut bytes = if round % 4 == 0 {
                let mut b = stream_header().to_vec();
                let n = rng.random_range(0..400);
                b.extend((0..n).map(|_| rng.random::<u8>()));
                b
            } else {
                good.clone()
            };
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] ^= 1 << rng.random_range(0..8);
            }
            if rng.random_bool(0.2) {
                bytes.truncate(rng.random_range(0..bytes.len()));
            }
            if let Ok(reader) = MetaReader::new(&bytes[..]) {
                let mut n = 0;
                for item in reader {
                    if let Ok(e) = item {
                        check_entry(&e).unwrap();
                    }
                    n += 1;
                    assert!(n <= bytes.len());
                }
            }
        }
    }
}
