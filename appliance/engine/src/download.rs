//! Reading one file of a snapshot as a byte stream (for downloads), with
//! the holes of a sparse file read back as zeros.

use std::io::{self, Read};

use anyhow::{Result, bail};
use filevol::archive::{Entry, EntryKind};
use model::SnapshotId;

use crate::Engine;
use crate::restore::resolve;
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
            bail!("{} is an image archive; restore it with `cairn restore`", a.name);
        }
        let shown = String::from_utf8_lossy(path).into_owned();
        for e in self.entries(id, a)? {
            let e = e?;
            if e.path != inner {
                continue;
            }
            if e.kind != EntryKind::File {
                bail!("{shown} is not a regular file");
            }
            let index = self.ds.read_didx(id, &a.indexes[1])?;
            let payload = StreamReader::new(self.ds.chunk_reader(), index);
            let extents = e.extents.clone().unwrap_or_else(|| vec![(0, e.size)]);
            let reader = FileReader {
                payload,
                base: e.payload_offset,
                extents,
                size: e.size,
                pos: 0,
                idx: 0,
                before: 0,
            };
            return Ok((e, reader));
        }
        bail!("{shown}: no such file in {id}")
    }
}
