//! Restoring and browsing snapshots: whole archives, subtrees or single
//! files of file archives into a directory; image archives to a file or
//! block device.
//!
//! Paths name an archive first (`www/etc/hosts`); when a snapshot has one
//! archive its name may be left out.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use chunker::ChunkId;
use filevol::archive::MetaReader;
pub use filevol::archive::{Entry, EntryKind, escaped};
use filevol::{Manifest, ManifestArchive};
use model::SnapshotId;

use crate::Engine;
use crate::fsrestore::{Begin, Completed, RestoreOptions, Restorer, Settled};
use crate::ops::{BadRequest, NotFound};
use crate::pipeline::thread_cpu;
use crate::prevtree::walk_order;
use crate::progress::Progress;
use crate::stream::{Fetcher, Slice, StreamReader};
use crate::target::{SnapshotRead, cores};
use crate::writepool::{FileWrite, WritePool};

/// What to restore where.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub snapshot: SnapshotId,
    pub target: PathBuf,
    /// `ARCHIVE[/path/inside]`; `None` restores every archive.
    pub path: Option<Vec<u8>>,
    pub overwrite: bool,
    /// Create no device nodes (see [`RestoreOptions::skip_devices`]).
    pub skip_devices: bool,
    /// Drop setuid/setgid bits and capabilities (see
    /// [`RestoreOptions::clear_setuid`]).
    pub clear_setuid: bool,
    /// Threads that write the files (`None`: one per core, at least
    /// [`DEFER_CREATION_THREADS`], from [`POOL_CORES`] cores on, else none;
    /// 0: the restore's own thread). From [`DEFER_CREATION_THREADS`] on
    /// they also create the files.
    pub threads: Option<usize>,
}

/// What a restore did; `failed` lists files whose data could not be read.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    pub files: u64,
    pub bytes: u64,
    pub warnings: Vec<String>,
    pub failed: Vec<(String, String)>,
    /// Device nodes not created (`skip_devices`).
    pub devices_skipped: u64,
    /// Objects restored without setuid/setgid bits or capabilities
    /// (`clear_setuid`).
    pub setuid_cleared: u64,
}

/// An entry as `ls` shows it, with its snapshot-relative path.
#[derive(Debug, Clone)]
pub struct Listed {
    pub path: Vec<u8>,
    pub archive_kind: &'static str,
    pub entry: Option<Entry>,
    pub size: u64,
}

fn trim(p: &[u8]) -> &[u8] {
    let start = p.iter().position(|c| *c != b'/').unwrap_or(p.len());
    let end = p.iter().rposition(|c| *c != b'/').map_or(start, |e| e + 1);
    &p[start..end.max(start)]
}

/// Split `ARCHIVE/inner` against the manifest's archives.
pub(crate) fn resolve<'m>(m: &'m Manifest, path: &[u8]) -> Result<(&'m ManifestArchive, Vec<u8>)> {
    let path = trim(path);
    let (first, rest) = match path.iter().position(|c| *c == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (path, &b""[..]),
    };
    if let Some(a) = m.archives.iter().find(|a| a.name.as_bytes() == first) {
        return Ok((a, rest.to_vec()));
    }
    if let [only] = m.archives.as_slice() {
        return Ok((only, path.to_vec()));
    }
    let names: Vec<&str> = m.archives.iter().map(|a| a.name.as_str()).collect();
    bail!(NotFound(format!(
        "no archive named {:?} in this snapshot; it has: {}",
        escaped(first),
        names.join(", ")
    )))
}

pub(crate) fn under(path: &[u8], base: &[u8]) -> Option<usize> {
    if base.is_empty() {
        return Some(0);
    }
    if path == base {
        return Some(path.len());
    }
    (path.len() > base.len() && path.starts_with(base) && path[base.len()] == b'/').then_some(base.len() + 1)
}

impl Engine {
    pub(crate) fn entries(&self, id: &SnapshotId, a: &ManifestArchive) -> Result<MetaReader<StreamReader>> {
        Reader::new(&self.ds).entries(id, a)
    }

    /// List archives, or the children (or, `recursive`, all descendants) of a path.
    pub fn list(&self, id: &SnapshotId, path: Option<&[u8]>, recursive: bool) -> Result<Vec<Listed>> {
        Reader::new(&self.ds).list(id, path, recursive)
    }

    /// Restore a snapshot, an archive, a subtree or a file.
    pub fn restore(&self, req: &RestoreRequest, progress: &Progress) -> Result<RestoreReport> {
        Reader::new(&self.ds).restore(req, progress)
    }
}

/// Hand a regular file's data (its `data_len()` bytes from its payload
/// offset) to `take` as slices of the decoded chunks, at most `piece`
/// bytes each, without copying them.
pub(crate) fn each_piece(
    payload: &mut StreamReader,
    e: &Entry,
    piece: usize,
    progress: &Progress,
    take: &mut dyn FnMut(&Slice) -> Result<()>,
) -> Result<()> {
    payload.seek_to(e.payload_offset);
    let mut left = e.data_len();
    while left > 0 {
        let Some(slice) = payload.borrow(left.min(piece as u64))? else {
            bail!("payload stream ends early");
        };
        take(&slice)?;
        let n = slice.2 as u64;
        left -= n;
        progress.add_bytes(n);
    }
    Ok(())
}

/// [`each_piece`] as byte slices.
pub(crate) fn copy_data(
    payload: &mut StreamReader,
    e: &Entry,
    piece: usize,
    progress: &Progress,
    write: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    each_piece(payload, e, piece, progress, &mut |(chunk, at, n)| write(&chunk[*at..at + n]))
}

/// From how many cores on a restore writes files on threads of its own.
pub const POOL_CORES: usize = 2;
/// From how many threads on a restore's write pool also creates the files.
pub const DEFER_CREATION_THREADS: usize = 4;

/// One archive's entries going into a restorer and its write pool.
struct Copy<'r> {
    restorer: &'r mut Restorer,
    pool: &'r mut WritePool,
    report: &'r mut RestoreReport,
    progress: &'r Progress,
    /// Hard-link groups whose first member is still being written: a
    /// later member links to it only once it is complete.
    linking: HashSet<u64>,
}

impl Copy<'_> {
    fn entries(
        &mut self,
        entries: MetaReader<StreamReader>,
        payload: &mut StreamReader,
        inner: &[u8],
        snapshot: &SnapshotId,
    ) -> Result<()> {
        let base_len = match inner.iter().rposition(|c| *c == b'/') {
            Some(i) => i + 1,
            None => 0,
        };
        let mut found = false;
        for e in entries {
            let e = e?;
            if under(&e.path, inner).is_none() {
                if found && walk_order(&e.path, inner).is_gt() {
                    break;
                }
                continue;
            }
            found = true;
            while let Some(done) = self.pool.try_next() {
                self.settle(done)?;
            }
            while e.hardlink != 0 && self.linking.contains(&e.hardlink) {
                let done = self.pool.next().expect("a file of the group is outstanding");
                self.settle(done)?;
            }
            let rel = if inner.is_empty() { &e.path[..] } else { &e.path[base_len..] };
            let begun =
                self.restorer.begin(rel, &e).with_context(|| format!("restoring {}", escaped(&e.path)))?;
            match begun {
                Begin::Done => {
                    self.report.files += 1;
                    self.progress.add_file();
                }
                Begin::Data(sink) => {
                    if e.hardlink != 0 {
                        self.linking.insert(e.hardlink);
                    }
                    let mut file = self.pool.open(sink);
                    let failed = self.data(payload, &e, &mut file).err().map(|err| format!("{err:#}"));
                    self.pool.close(file, failed);
                }
            }
        }
        if !found {
            bail!(NotFound(format!("{}: no such path in {snapshot}", escaped(inner))));
        }
        Ok(())
    }

    /// Hand a file's data to the pool, whole chunks at a time.
    fn data(&mut self, payload: &mut StreamReader, e: &Entry, file: &mut FileWrite) -> Result<()> {
        let pool = &mut *self.pool;
        each_piece(payload, e, usize::MAX, self.progress, &mut |(chunk, at, n)| {
            Ok(pool.add(file, chunk, *at, *n)?)
        })
    }

    fn settle(&mut self, done: Completed) -> Result<()> {
        self.linking.remove(&done.hardlink());
        match self.restorer.settle(done)? {
            Settled::Restored(bytes) => {
                self.report.files += 1;
                self.report.bytes += bytes;
            }
            Settled::Failed(shown, why) => self.report.failed.push((shown, why)),
        }
        self.progress.add_file();
        Ok(())
    }

    /// Take back every file still in the pool.
    fn drain(&mut self) -> Result<()> {
        let mut first = Ok(());
        while let Some(done) = self.pool.next() {
            if let Err(e) = self.settle(done)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}

/// Browses and restores the snapshots of a local datastore or of a server.
pub struct Reader<'a> {
    pub(crate) src: &'a dyn SnapshotRead,
}

impl<'a> Reader<'a> {
    pub fn new(src: &'a dyn SnapshotRead) -> Self {
        Self { src }
    }

    pub(crate) fn entries(&self, id: &SnapshotId, a: &ManifestArchive) -> Result<MetaReader<StreamReader>> {
        let meta = self.src.read_didx(id, &a.indexes[0])?;
        Ok(MetaReader::new(StreamReader::new(self.src.chunk_reader(), meta))?)
    }

    /// List archives, or the children (or, `recursive`, all descendants) of a path.
    pub fn list(&self, id: &SnapshotId, path: Option<&[u8]>, recursive: bool) -> Result<Vec<Listed>> {
        let m = self.src.read_manifest(id)?;
        let Some(path) = path.filter(|p| !trim(p).is_empty()) else {
            return Ok(m.archives.iter().map(|a| self.archive_item(a)).collect());
        };
        let (a, inner) = resolve(&m, path)?;
        if a.kind == "image" {
            return Ok(vec![self.archive_item(a)]);
        }
        let depth = |p: &[u8]| p.split(|c| *c == b'/').filter(|c| !c.is_empty()).count();
        let want = depth(&inner) + 1;
        let mut out = Vec::new();
        let mut found = inner.is_empty();
        for e in self.entries(id, a)? {
            let e = e?;
            if e.path == inner {
                found = true;
                if e.kind != filevol::archive::EntryKind::Dir {
                    out.push(self.item(a, e));
                    break;
                }
                continue;
            }
            if under(&e.path, &inner).is_some() {
                if recursive || depth(&e.path) == want {
                    out.push(self.item(a, e));
                }
            } else if walk_order(&e.path, &inner).is_gt() {
                break;
            }
        }
        if !found {
            bail!(NotFound(format!("{}: no such path in {id}", escaped(path))));
        }
        Ok(out)
    }

    fn archive_item(&self, a: &ManifestArchive) -> Listed {
        let kind = if a.kind == "image" { "image" } else { "archive" };
        Listed { path: a.name.as_bytes().to_vec(), archive_kind: kind, entry: None, size: a.size }
    }

    fn item(&self, a: &ManifestArchive, e: Entry) -> Listed {
        let mut path = a.name.as_bytes().to_vec();
        if !e.path.is_empty() {
            path.push(b'/');
            path.extend_from_slice(&e.path);
        }
        Listed { path, archive_kind: "file", size: e.size, entry: Some(e) }
    }

    /// Restore a snapshot, an archive, a subtree or a file.
    pub fn restore(&self, req: &RestoreRequest, progress: &Progress) -> Result<RestoreReport> {
        let m = self.src.read_manifest(&req.snapshot)?;
        let mut report = RestoreReport::default();
        match &req.path {
            Some(p) if !trim(p).is_empty() => {
                let (a, inner) = resolve(&m, p)?;
                self.restore_archive(req, a, &inner, &req.target, progress, &mut report)?;
            }
            _ if m.archives.len() == 1 => {
                self.restore_archive(req, &m.archives[0], b"", &req.target, progress, &mut report)?;
            }
            _ => {
                // Several archives go to TARGET/ARCHIVE: TARGET is made
                // here, whichever kind of archive comes first.
                std::fs::create_dir_all(&req.target)
                    .with_context(|| format!("cannot create {}", req.target.display()))?;
                for a in &m.archives {
                    let target = req.target.join(&a.name);
                    self.restore_archive(req, a, b"", &target, progress, &mut report)?;
                }
            }
        }
        Ok(report)
    }

    fn restore_archive(
        &self,
        req: &RestoreRequest,
        a: &ManifestArchive,
        inner: &[u8],
        target: &Path,
        progress: &Progress,
        report: &mut RestoreReport,
    ) -> Result<()> {
        if a.kind == "image" {
            if !inner.is_empty() {
                bail!(BadRequest(format!("{} is an image archive; it has no paths inside", a.name)));
            }
            let target = if target.is_dir() { target.join(&a.name) } else { target.to_owned() };
            return self.restore_image(&req.snapshot, a, &target, req.overwrite, progress, report);
        }
        let opts = RestoreOptions {
            overwrite: req.overwrite,
            skip_devices: req.skip_devices,
            clear_setuid: req.clear_setuid,
            ..RestoreOptions::default()
        };
        let mut restorer = Restorer::new(target, opts)?;
        let copied = self.copy_entries(req, a, inner, &mut restorer, progress, report);
        // Even after an error, finish what was restored: symlinks, and the
        // owners, modes and times of the directories made so far.
        let finished = restorer.finish();
        copied?;
        let stats = finished?;
        report.warnings.extend(stats.warnings);
        // A skipped device node was counted as an entry when it was begun.
        report.files = report.files.saturating_sub(stats.devices_skipped);
        report.devices_skipped += stats.devices_skipped;
        report.setuid_cleared += stats.setuid_cleared;
        Ok(())
    }

    /// Restore the entries under `inner`. This thread creates every
    /// directory and special file in archive order and opens each file's
    /// parent; a [`WritePool`] writes the files' data and completes them
    /// (see `writepool`), and with 4 threads or more also creates them in
    /// the parent this thread opened.
    fn copy_entries(
        &self,
        req: &RestoreRequest,
        a: &ManifestArchive,
        inner: &[u8],
        restorer: &mut Restorer,
        progress: &Progress,
        report: &mut RestoreReport,
    ) -> Result<()> {
        let payload_index = self.src.read_didx(&req.snapshot, &a.indexes[1])?;
        let mut payload = StreamReader::new(self.src.chunk_reader(), payload_index);
        let entries = self.entries(&req.snapshot, a)?;
        let started = (std::time::Instant::now(), thread_cpu());
        // The Linux tree on 2 cores: 1.35-1.38 s on this thread alone,
        // 1.33-1.40 s with 2 writers, 1.29-1.32 s with 4 that also create
        // the files (this thread's CPU 1.25, 0.51, 0.22 s); on 1 core 4
        // writers cost 2-3 %, so there they stay off.
        let threads = req.threads.unwrap_or_else(|| {
            let cores = cores();
            if cores >= POOL_CORES { cores.max(DEFER_CREATION_THREADS) } else { 0 }
        });
        if threads >= DEFER_CREATION_THREADS {
            restorer.defer_file_creation();
        }
        let (threads, clock, copied) = std::thread::scope(|scope| {
            let mut pool = WritePool::start(scope, restorer.completer(), threads);
            let mut copy = Copy { restorer, pool: &mut pool, report, progress, linking: HashSet::new() };
            let copied = copy.entries(entries, &mut payload, inner, &req.snapshot);
            // Whatever happened, take back every file handed over: the
            // failed ones are removed, and the directories' times are set
            // only after the last file is complete.
            let drained = copy.drain();
            pool.close_all();
            let (threads, clock) = pool.clock();
            (threads, clock, copied.and(drained))
        });
        tracing::info!(
            wall_s = format!("{:.3}", started.0.elapsed().as_secs_f64()),
            reader_cpu_s = format!("{:.3}", thread_cpu() - started.1),
            writers = threads,
            writers_cpu_s = format!("{:.3}", clock.secs()),
            "restore stages"
        );
        copied
    }

    fn restore_image(
        &self,
        id: &SnapshotId,
        a: &ManifestArchive,
        target: &Path,
        overwrite: bool,
        progress: &Progress,
        report: &mut RestoreReport,
    ) -> Result<()> {
        let fidx = self.src.read_fidx(id, &a.indexes[0])?;
        let device = std::fs::metadata(target).is_ok_and(|m| m.file_type().is_block_device());
        if device {
            if !overwrite {
                bail!(
                    "{} is a block device; restoring image {} onto it replaces its contents: \
                     add --overwrite to do so",
                    target.display(),
                    a.name
                );
            }
            let mut dev = File::open(target).with_context(|| format!("cannot open {}", target.display()))?;
            let capacity = dev.seek(SeekFrom::End(0))?;
            if capacity < fidx.size {
                bail!(
                    "{} holds {capacity} bytes, too small for image {} of {} bytes; nothing was written",
                    target.display(),
                    a.name,
                    fidx.size
                );
            }
        }
        let mut out = if device {
            OpenOptions::new().write(true).open(target)
        } else if overwrite {
            OpenOptions::new().write(true).create(true).truncate(true).open(target)
        } else {
            OpenOptions::new().write(true).create_new(true).open(target)
        }
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
                " (it exists; use --overwrite to replace it)"
            } else {
                ""
            };
            anyhow!("cannot write {}{hint}: {e}", target.display())
        })?;
        let zero = ChunkId::zeros(fidx.chunk_size as usize);
        let mut fetch = Fetcher::new(self.src.chunk_reader(), fidx.ids.clone());
        for i in 0..fetch.len() {
            let len = fidx.chunk_len(i);
            if !device && fidx.ids[i] == zero && len == fidx.chunk_size as u64 {
                out.seek(SeekFrom::Current(len as i64))?;
            } else {
                let data = fetch.get(i).map_err(|e| anyhow!("restoring image {}: {e}", a.name))?;
                if data.len() as u64 != len {
                    bail!(
                        "restoring image {}: chunk {i} holds {} bytes, the index says {len}",
                        a.name,
                        data.len()
                    );
                }
                out.write_all(&data).with_context(|| format!("writing {}", target.display()))?;
            }
            progress.add_bytes(len);
        }
        if !device {
            out.set_len(fidx.size)?;
        }
        out.sync_all().with_context(|| format!("flushing {}", target.display()))?;
        report.files += 1;
        report.bytes += fidx.size;
        Ok(())
    }
}
