//! Reading one file of a snapshot as a byte stream (for downloads), with
//! the holes of a sparse file read back as zeros.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use filevol::archive::{Entry, EntryKind};
use model::SnapshotId;

use crate::Engine;
use crate::ops::{BadRequest, NotFound};
use crate::prevtree::walk_order;
use crate::restore::{resolve, under};
use crate::stream::StreamReader;
use crate::target::SnapshotRead;

/// The logical contents of one regular file in a snapshot.
pub struct FileReader {
    payload: StreamReader,
    /// Where the file's data starts in the payload stream.
    base: u64,
    /// Data extents; a dense file is one extent `[0, size)`.
    extents: Vec<(u64, u64)>,
    size: u64,
    pos: u64,
    /// Index of the first extent that does not end before `pos`, and the
    /// data bytes of the extents before it.
    idx: usize,
    before: u64,
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader").field("size", &self.size).field("pos", &self.pos).finish_non_exhaustive()
    }
}

impl FileReader {
    fn new(payload: StreamReader, e: &Entry) -> Self {
        let extents = e.extents.clone().unwrap_or_else(|| vec![(0, e.size)]);
        FileReader { payload, base: e.payload_offset, extents, size: e.size, pos: 0, idx: 0, before: 0 }
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        while let Some(&(off, len)) = self.extents.get(self.idx) {
            if self.pos < off + len {
                break;
            }
            self.before += len;
            self.idx += 1;
        }
        match self.extents.get(self.idx) {
            Some(&(off, len)) if self.pos >= off => {
                let within = self.pos - off;
                let n = (len - within).min(buf.len() as u64) as usize;
                self.payload.seek_to(self.base + self.before + within);
                let got = self.payload.read_some(&mut buf[..n]).map_err(io::Error::other)?;
                if got == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "payload stream ends early"));
                }
                self.pos += got as u64;
                Ok(got)
            }
            next => {
                let end = next.map_or(self.size, |e| e.0).min(self.size);
                let n = (end - self.pos).min(buf.len() as u64) as usize;
                buf[..n].fill(0);
                self.pos += n as u64;
                Ok(n)
            }
        }
    }
}

impl Engine {
    /// Open the regular file at `path` (`ARCHIVE/inner/path`) of snapshot
    /// `id` for reading; its entry comes along for name, mode and time.
    pub fn open_file(&self, id: &SnapshotId, path: &[u8]) -> Result<(Entry, FileReader)> {
        let m = self.ds.read_manifest(id)?;
        let (a, inner) = resolve(&m, path)?;
        if a.kind == "image" {
            bail!(BadRequest(format!("{} is an image archive; restore it with `cairn restore`", a.name)));
        }
        let shown = String::from_utf8_lossy(path).into_owned();
        for e in self.entries(id, a)? {
            let e = e?;
            if e.path != inner {
                continue;
            }
            if e.kind != EntryKind::File {
                bail!(BadRequest(format!("{shown} is not a regular file")));
            }
            let index = self.ds.read_didx(id, &a.indexes[1])?;
            let payload = StreamReader::new(self.ds.chunk_reader(), index);
            let reader = FileReader::new(payload, &e);
            return Ok((e, reader));
        }
        bail!(NotFound(format!("{shown}: no such file in {id}")))
    }
}

impl Engine {
    /// Write the directory (or file) at `path` (`ARCHIVE[/inner]`) of
    /// snapshot `id` to `out` as a tar stream (GNU format, long names):
    /// directories, regular files (holes read as zeros), symlinks, each
    /// hard-link member as a copy, with modes, owners and mtimes. Device
    /// nodes, fifos and sockets are left out. Names start with the last
    /// component of `path` (the archive name for a whole archive). Returns
    /// the number of entries written.
    pub fn write_tar(&self, id: &SnapshotId, path: &[u8], out: &mut dyn Write) -> Result<u64> {
        let m = self.ds.read_manifest(id)?;
        let (a, inner) = resolve(&m, path)?;
        if a.kind == "image" {
            bail!(BadRequest(format!("{} is an image archive; restore it with `cairn restore`", a.name)));
        }
        let base_len = inner.iter().rposition(|c| *c == b'/').map_or(0, |i| i + 1);
        let index = self.ds.read_didx(id, &a.indexes[1])?;
        let mut payload = Some(StreamReader::new(self.ds.chunk_reader(), index));
        let mut tar = tar::Builder::new(out);
        let (mut found, mut written) = (false, 0u64);
        for e in self.entries(id, a)? {
            let e = e?;
            if under(&e.path, &inner).is_none() {
                if found && walk_order(&e.path, &inner).is_gt() {
                    break;
                }
                continue;
            }
            found = true;
            let mut name = Vec::new();
            if inner.is_empty() {
                name.extend_from_slice(a.name.as_bytes());
                if !e.path.is_empty() {
                    name.push(b'/');
                }
            }
            name.extend_from_slice(&e.path[if inner.is_empty() { 0 } else { base_len }..]);
            let name = Path::new(OsStr::from_bytes(&name));
            let mut h = tar::Header::new_gnu();
            h.set_mode(e.mode & 0o7777);
            h.set_uid(u64::from(e.uid));
            h.set_gid(u64::from(e.gid));
            h.set_mtime(e.mtime.max(0) as u64);
            match e.kind {
                EntryKind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    tar.append_data(&mut h, name, io::empty())?;
                }
                EntryKind::File => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(e.size);
                    let mut file = FileReader::new(payload.take().expect("payload reader"), &e);
                    let appended = tar.append_data(&mut h, name, &mut file);
                    payload = Some(file.payload);
                    appended.with_context(|| format!("{}", name.display()))?;
                }
                EntryKind::Symlink => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    tar.append_link(&mut h, name, Path::new(OsStr::from_bytes(&e.link_target)))?;
                }
                EntryKind::CharDev | EntryKind::BlockDev | EntryKind::Fifo | EntryKind::Socket => continue,
            }
            written += 1;
        }
        if !found {
            bail!(NotFound(format!("{}: no such path in {id}", String::from_utf8_lossy(path))));
        }
        tar.into_inner()?.flush()?;
        Ok(written)
    }
}
