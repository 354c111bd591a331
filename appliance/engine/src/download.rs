//! Reading one file of a snapshot as a byte stream (for downloads), with
//! the holes of a sparse file read back as zeros; a directory as a tar
//! stream.
//!
//! Invariant: a tar stream never holds an entry beneath a symlink or
//! other non-directory it already holds, nor a path twice, whatever the
//! snapshot's metadata stream says (an extractor such as Python's
//! `tarfile` before 3.14 would write through the link); see [`TarPaths`].

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
        let shown = filevol::archive::escaped(path);
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

/// Why the tar writer left an entry out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TarRefusal {
    #[error("the path is already in the tar stream")]
    Duplicate,
    #[error("out of walk order after {after}")]
    OutOfOrder { after: String },
    #[error("beneath {ancestor}, which is not a directory")]
    BeneathNonDirectory { ancestor: String },
    #[error("not a relative path of plain components")]
    Malformed,
}

/// Whether `path` is relative and made of plain components: not empty, no
/// empty, `.` or `..` component, no NUL (as the archive reader checks;
/// the tar writer checks again rather than trust it).
fn plain_path(path: &[u8]) -> bool {
    !path.is_empty()
        && !path.contains(&0)
        && path.split(|b| *b == b'/').all(|c| !matches!(c, b"" | b"." | b".."))
}

/// The paths a tar stream holds so far, as far as a new entry needs
/// them: entries must come in strict walk order (as every archive
/// Cairn writes does), so a duplicate or an entry beneath an earlier
/// non-directory is found by looking at the entries enclosing the last
/// one. Memory grows with the depth of the tree, not its size.
#[derive(Debug, Default)]
pub struct TarPaths {
    /// The admitted entries that enclose the last one, with it last:
    /// (path, is a directory).
    chain: Vec<(Vec<u8>, bool)>,
    /// The last admitted path.
    last: Option<Vec<u8>>,
}

/// Whether `path` is `base` or lies beneath it.
fn within(path: &[u8], base: &[u8]) -> bool {
    path == base || (path.len() > base.len() && path.starts_with(base) && path[base.len()] == b'/')
}

impl TarPaths {
    /// Admit `path` (a directory when `is_dir`) into the stream, or say
    /// why it must be left out; a refused entry is not recorded.
    pub fn admit(&mut self, path: &[u8], is_dir: bool) -> Result<(), TarRefusal> {
        if !plain_path(path) {
            return Err(TarRefusal::Malformed);
        }
        if let Some(last) = &self.last {
            match walk_order(last, path) {
                std::cmp::Ordering::Equal => return Err(TarRefusal::Duplicate),
                std::cmp::Ordering::Greater => {
                    return Err(TarRefusal::OutOfOrder { after: filevol::archive::escaped(last) });
                }
                std::cmp::Ordering::Less => {}
            }
        }
        while self.chain.last().is_some_and(|(p, _)| !within(path, p)) {
            self.chain.pop();
        }
        if let Some((ancestor, false)) = self.chain.last() {
            return Err(TarRefusal::BeneathNonDirectory { ancestor: filevol::archive::escaped(ancestor) });
        }
        self.chain.push((path.to_vec(), is_dir));
        self.last = Some(path.to_vec());
        Ok(())
    }
}

/// What [`Engine::write_tar`] wrote and left out.
#[derive(Debug, Default, Clone)]
pub struct TarReport {
    pub written: u64,
    /// Entries left out by [`TarPaths`]: (path, shown escaped; why), the
    /// first [`MAX_REFUSALS_KEPT`] of them.
    pub refused: Vec<(String, TarRefusal)>,
    /// How many entries were left out in all.
    pub refused_count: u64,
}

/// How many refused entries a [`TarReport`] names.
pub const MAX_REFUSALS_KEPT: usize = 20;

impl Engine {
    /// Write the directory (or file) at `path` (`ARCHIVE[/inner]`) of
    /// snapshot `id` to `out` as a tar stream (GNU format, long names):
    /// directories, regular files (holes read as zeros), symlinks, each
    /// hard-link member as a copy, with modes, owners and mtimes. Device
    /// nodes, fifos and sockets are left out. Names start with the last
    /// component of `path` (the archive name for a whole archive). An
    /// entry beneath a non-directory already written, a path written
    /// before or one out of walk order is left out (see [`TarPaths`]) and
    /// named in the report.
    pub fn write_tar(&self, id: &SnapshotId, path: &[u8], out: &mut dyn Write) -> Result<TarReport> {
        let m = self.ds.read_manifest(id)?;
        let (a, inner) = resolve(&m, path)?;
        if a.kind == "image" {
            bail!(BadRequest(format!("{} is an image archive; restore it with `cairn restore`", a.name)));
        }
        let base_len = inner.iter().rposition(|c| *c == b'/').map_or(0, |i| i + 1);
        let index = self.ds.read_didx(id, &a.indexes[1])?;
        let mut payload = Some(StreamReader::new(self.ds.chunk_reader(), index));
        let mut tar = tar::Builder::new(out);
        let (mut found, mut report, mut paths) = (false, TarReport::default(), TarPaths::default());
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
            if matches!(
                e.kind,
                EntryKind::CharDev | EntryKind::BlockDev | EntryKind::Fifo | EntryKind::Socket
            ) {
                continue;
            }
            if let Err(why) = paths.admit(&name, e.kind == EntryKind::Dir) {
                report.refused_count += 1;
                if report.refused.len() < MAX_REFUSALS_KEPT {
                    report.refused.push((filevol::archive::escaped(&name), why));
                }
                continue;
            }
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
            report.written += 1;
        }
        if !found {
            bail!(NotFound(format!("{}: no such path in {id}", filevol::archive::escaped(path))));
        }
        tar.into_inner()?.flush()?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admit each `(path, is_dir)` in turn; what was refused, and why.
    fn check(entries: &[(&str, bool)], expect: &[(&str, TarRefusal)]) {
        let mut paths = TarPaths::default();
        let refused: Vec<(&str, TarRefusal)> = entries
            .iter()
            .filter_map(|(p, dir)| paths.admit(p.as_bytes(), *dir).err().map(|why| (*p, why)))
            .collect();
        assert_eq!(refused, expect, "{entries:?}");
    }

    fn beneath(ancestor: &str) -> TarRefusal {
        TarRefusal::BeneathNonDirectory { ancestor: ancestor.into() }
    }

    #[test]
    fn an_honest_walk_is_admitted_whole() {
        check(
            &[("a", true), ("a/b", true), ("a/b/c", false), ("a/b.txt", false), ("a0", false), ("b", false)],
            &[],
        );
        // Parents missing from the stream are no obstacle (tar makes them).
        check(&[("a", true), ("a/b/c/d", false), ("a/e", false)], &[]);
    }

    #[test]
    fn nothing_beneath_a_symlink_or_a_file() {
        check(&[("x", false), ("x/pwned", false)], &[("x/pwned", beneath("x"))]);
        check(
            &[("a", true), ("a/x", false), ("a/x/y/z", true), ("a/y", false)],
            &[("a/x/y/z", beneath("a/x"))],
        );
        // Deeper entries under a refused one are refused too.
        check(
            &[("x", false), ("x/d", true), ("x/d/f", false), ("y", false)],
            &[("x/d", beneath("x")), ("x/d/f", beneath("x"))],
        );
    }

    #[test]
    fn malformed_paths_are_refused() {
        // Found by the tar_paths fuzz target: an empty path admitted as a
        // file, then "/x" once the empty path had left the chain.
        check(
            &[
                ("", false),
                ("\0\u{ff}", false),
                ("/x", false),
                ("a//b", false),
                ("./a", false),
                ("a/..", true),
            ],
            &[
                ("", TarRefusal::Malformed),
                ("\0\u{ff}", TarRefusal::Malformed),
                ("/x", TarRefusal::Malformed),
                ("a//b", TarRefusal::Malformed),
                ("./a", TarRefusal::Malformed),
                ("a/..", TarRefusal::Malformed),
            ],
        );
    }

    #[test]
    fn duplicates_and_entries_out_of_order_are_refused() {
        check(&[("a", true), ("a", false)], &[("a", TarRefusal::Duplicate)]);
        check(&[("a", true), ("a/f", false), ("a/f", false)], &[("a/f", TarRefusal::Duplicate)]);
        // Going back would let a path come twice or a child after its
        // parent was replaced; an honest stream never does.
        check(
            &[("x", false), ("y", false), ("x/pwned", false), ("x", true)],
            &[
                ("x/pwned", TarRefusal::OutOfOrder { after: "y".into() }),
                ("x", TarRefusal::OutOfOrder { after: "y".into() }),
            ],
        );
    }
}
