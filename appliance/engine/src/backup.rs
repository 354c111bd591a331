//! Backups: every source becomes an archive of one new snapshot. A
//! directory becomes a file archive (metadata + payload streams), a regular
//! file or block device an image archive (fixed 4 MiB chunks).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chunker::{ChunkId, FIXED_IMAGE_CHUNK, StreamChunker};
use filevol::archive::{
    Entry, EntryKind, check_entry, encode_entry, set_encoded_payload_offset, stream_header,
};
use filevol::{
    DatastoreConfig, DynamicIndex, FixedIndex, IndexRef, Manifest, ManifestArchive, ManifestError,
    ManifestStats, SourceHandler, SourceStat, Writer,
};
use model::{BackupGroup, SnapshotId};

use crate::Engine;
use crate::fswalk::{Source, WalkItem, WalkOptions, Walker, open_data};
use crate::new_snapshot::{index_ref, new_manifest};
use crate::payload::{PayloadBuilder, Placement};
use crate::pieces::READ_BLOCK;
use crate::pipeline::{self, Pipeline, StreamIndex, Work};
use crate::prevtree::{PrevTree, unchanged};
use crate::progress::Progress;
use crate::readahead::{
    FetchResult, Fetched, LOOKAHEAD, ReadAhead, ReadAheadTimes, Ticket, fill, read_in_blocks, walk_on_thread,
};
use crate::target::{ChunkSink, SnapshotRead};

/// Where a backup goes (defined with the other parts every kind of
/// backup shares).
pub use crate::new_snapshot::BackupTarget;

const META: usize = 0;
/// Encoded entries held back while data waits for a run to end
/// (`TreeBuilder::held`): beyond this much, what waits is placed where the
/// run ends anyway, and at twice this much in any case
/// (`TreeBuilder::settle_due`).
const HELD_MAX: usize = 4 << 20;

/// `free_backup_time` naps this long between looks at the clock…
const TIME_WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(100);
/// …at most this many times (3 s: room for a clock step, not a stuck one).
const TIME_WAIT_STEPS: u32 = 30;

/// What to back up and how.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub group: BackupGroup,
    pub sources: Vec<PathBuf>,
    pub tags: Vec<String>,
    pub excludes: Vec<String>,
    pub one_file_system: bool,
    /// Snapshot time, epoch seconds.
    pub time: i64,
}

/// What a backup did.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub id: SnapshotId,
    pub stats: ManifestStats,
    pub errors: Vec<ManifestError>,
}

/// Name archives after their sources: `www`, `root` for `/`, `disk.raw.img`
/// (`.img` is added to an image's name unless it already ends so).
pub fn archive_names(sources: &[(PathBuf, bool)]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (path, is_image) in sources {
        let base =
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "root".into());
        let mut clean: String = base
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
            .collect();
        if !clean.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            clean.insert(0, 'x');
        }
        if *is_image && !clean.ends_with(".img") {
            clean.push_str(".img");
        }
        let mut name = clean.clone();
        let mut n = 2;
        while names.contains(&name) {
            name = format!("{clean}-{n}");
            n += 1;
        }
        names.push(name);
    }
    names
}

struct Ctx<'a> {
    src: &'a dyn SnapshotRead,
    config: DatastoreConfig,
    writer: &'a dyn ChunkSink,
    prev: Option<(SnapshotId, Manifest)>,
    progress: &'a Progress,
    errors: Vec<ManifestError>,
    files: u64,
}

impl Engine {
    /// Back up `opts.sources` into a new snapshot of `opts.group`.
    pub fn backup(&self, opts: &BackupOptions, progress: &Progress) -> Result<BackupReport> {
        self.backup_with(&opts.group, opts.time, |target| back_up(target, opts, progress))
    }

    /// Back up what `source` yields (a source handler's items) into a new
    /// snapshot of `opts.group`.
    pub fn backup_items(
        &self,
        opts: &crate::items::SourceBackup,
        source: &mut dyn crate::items::ItemSource,
        progress: &Progress,
    ) -> Result<BackupReport> {
        self.backup_with(&opts.group, opts.time, |target| {
            crate::items::back_up_items(target, opts, source, progress)
        })
    }

    /// The time for a new snapshot of `group` taken now: `clock()`, unless
    /// the group already has a snapshot in that second (the previous
    /// backup finished within it); then `sleep` until `clock()` gives a
    /// second that is free, in at most `TIME_WAIT_STEPS` naps, after which
    /// the taken time is returned and the backup fails as before.
    pub fn free_backup_time(
        &self,
        group: &BackupGroup,
        clock: &dyn Fn() -> i64,
        sleep: &dyn Fn(std::time::Duration),
    ) -> i64 {
        let mut time = clock();
        for _ in 0..TIME_WAIT_STEPS {
            if !self.ds.snapshot_dir(&group.at(time)).exists() {
                break;
            }
            sleep(TIME_WAIT_STEP);
            time = clock().max(time);
        }
        time
    }

    /// Begin a local backup of `group` at `time`, let `run` store its data
    /// and make its manifest, and commit it.
    pub(crate) fn backup_with(
        &self,
        group: &BackupGroup,
        time: i64,
        run: impl FnOnce(&BackupTarget<'_>) -> Result<Manifest>,
    ) -> Result<BackupReport> {
        let id = group.at(time);
        if self.ds.snapshot_dir(&id).exists() {
            bail!(filevol::StoreError::SnapshotExists(id.to_string()));
        }
        let writer = self.ds.begin_backup(group)?;
        let target = BackupTarget {
            sink: &writer,
            prev_src: &self.ds,
            prev: self.latest_manifest(group)?,
            config: self.ds.config(),
        };
        let manifest = run(&target)?;
        let (stats, errors) = (manifest.stats.clone(), manifest.errors.clone());
        let id = writer.commit(&manifest, time)?;
        self.catalog_add(&id)?;
        Ok(BackupReport { id, stats, errors })
    }

    /// Start a backup whose data arrives from a client: the writer for
    /// `group` at `time`, and the group's newest snapshot with its manifest
    /// (what the client may deduplicate against).
    pub fn begin_remote_backup(
        &self,
        group: &BackupGroup,
        time: i64,
    ) -> Result<(Writer, Option<(SnapshotId, Manifest)>)> {
        let id = group.at(time);
        if self.ds.snapshot_dir(&id).exists() {
            bail!(filevol::StoreError::SnapshotExists(id.to_string()));
        }
        let writer = self.ds.begin_backup(group)?;
        Ok((writer, self.latest_manifest(group)?))
    }

    /// Make a backup begun with `begin_remote_backup` visible.
    pub fn commit_backup(&self, writer: Writer, manifest: &Manifest, time: i64) -> Result<SnapshotId> {
        let id = writer.commit(manifest, time)?;
        self.catalog_add(&id)?;
        Ok(id)
    }

    fn latest_manifest(&self, group: &BackupGroup) -> Result<Option<(SnapshotId, Manifest)>> {
        for id in self.ds.list_group(group)?.into_iter().rev() {
            match self.ds.read_manifest(&id) {
                Ok(m) => return Ok(Some((id, m))),
                Err(e) => tracing::warn!("ignoring unreadable snapshot {id} for change detection: {e}"),
            }
        }
        Ok(None)
    }
}

/// Read, chunk and store `opts.sources` into `target`; returns the
/// manifest of the new snapshot, for the caller to commit.
pub fn back_up(target: &BackupTarget<'_>, opts: &BackupOptions, progress: &Progress) -> Result<Manifest> {
    let start = Instant::now();
    let mut sources = Vec::new();
    for s in &opts.sources {
        let abs = std::path::absolute(s).with_context(|| format!("{}", s.display()))?;
        let meta = std::fs::metadata(&abs).with_context(|| format!("cannot back up {}", abs.display()))?;
        let ft = meta.file_type();
        if !(meta.is_dir() || meta.is_file() || ft.is_block_device()) {
            bail!("{}: not a directory, regular file or block device", abs.display());
        }
        sources.push((abs, !meta.is_dir()));
    }
    let names = archive_names(&sources);
    let writer = target.sink;
    let mut cx = Ctx {
        src: target.prev_src,
        config: target.config,
        writer,
        prev: target.prev.clone(),
        progress,
        errors: Vec::new(),
        files: 0,
    };
    let mut archives = Vec::new();
    for ((path, is_image), name) in sources.iter().zip(&names) {
        let archive =
            if *is_image { cx.backup_image(path, name)? } else { cx.backup_tree(path, name, opts)? };
        archives.push(archive);
    }
    let c = writer.counters();
    let stats = ManifestStats {
        files: cx.files,
        size: archives.iter().map(|a| a.size).sum(),
        stored: c.stored_bytes.load(Ordering::Relaxed),
        new_chunks: c.new_chunks.load(Ordering::Relaxed),
        reused_chunks: c.reused_chunks.load(Ordering::Relaxed),
        duration_ms: start.elapsed().as_millis() as u64,
    };
    let builtin =
        SourceHandler { name: "builtin-fs".into(), version: env!("CARGO_PKG_VERSION").into(), digest: None };
    Ok(new_manifest(
        &opts.group,
        opts.time,
        &opts.tags,
        archives,
        stats,
        std::mem::take(&mut cx.errors),
        builtin,
    ))
}

impl Ctx<'_> {
    fn prev_archive(&self, name: &str, kind: &str) -> Option<(SnapshotId, ManifestArchive)> {
        let (id, m) = self.prev.as_ref()?;
        let a = m.archives.iter().find(|a| a.name == name && a.kind == kind)?;
        Some((id.clone(), a.clone()))
    }

    fn backup_tree(&mut self, root: &Path, name: &str, opts: &BackupOptions) -> Result<ManifestArchive> {
        let mut prev = match self.prev_archive(name, "file") {
            Some((id, a)) => match PrevTree::open(self.src, &id, &a) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!("change detection off for {name}: previous snapshot unreadable: {e:#}");
                    None
                }
            },
            None => None,
        };
        let walk_opts = WalkOptions {
            excludes: opts.excludes.clone(),
            one_file_system: opts.one_file_system,
            threads: crate::target::cores().clamp(1, 32),
        };
        let walker =
            Walker::new(root, &walk_opts).with_context(|| format!("cannot walk {}", root.display()))?;
        let listings = walker.times();
        let failed = AtomicBool::new(false);
        let cfg = self.config;
        let ahead_times = ReadAheadTimes::default();
        let (streams, size, entries) = std::thread::scope(|scope| -> Result<_> {
            let mut pipe = Pipeline::start(scope, self.writer, 2, cfg.zstd_level, &failed);
            let ahead = ReadAhead::start(scope, crate::target::cores(), &ahead_times);
            let mut tree = TreeBuilder {
                meta: StreamChunker::new(cfg.cdc),
                payload: PayloadBuilder::new(cfg.cdc),
                read_block: Vec::new(),
                links: HashMap::new(),
                buf: Vec::with_capacity(1 << 20),
                held: Vec::new(),
                waiting: HashMap::new(),
                placed: None,
                size: 0,
                entries: 0,
            };
            let walk = walk_on_thread(scope, walker, &ahead_times);
            let produced = tree.run(self, walk.into_iter(), prev.as_mut(), &ahead, &mut pipe);
            let threads = ahead.threads;
            drop(ahead);
            let streams = pipeline::first_error(produced, pipe.finish())?;
            let f = ahead_times.pool.figures();
            tracing::info!(
                threads,
                files = f.jobs,
                by_reader = f.by_taker,
                busy_s = format!("{:.3}", f.busy_s),
                cpu_s = format!("{:.3}", f.cpu_s),
                reader_waited_s = format!("{:.3}", f.waited_s),
                walk_cpu_s = format!("{:.3}", ahead_times.walk_cpu()),
                big_files = ahead_times.big_files().0,
                big_files_cpu_s = format!("{:.3}", ahead_times.big_files().1),
                "tree read-ahead"
            );
            tree.payload.log_scan_times();
            Ok((streams, tree.size, tree.entries))
        })?;
        let l = listings.figures();
        tracing::info!(
            threads = walk_opts.threads,
            dirs = l.jobs,
            by_walk = l.by_taker,
            busy_s = format!("{:.3}", l.busy_s),
            cpu_s = format!("{:.3}", l.cpu_s),
            walk_waited_s = format!("{:.3}", l.waited_s),
            "directory listings"
        );
        let (meta_ref, _) = index_ref(self.writer, &format!("{name}.meta.didx"), &streams[META])?;
        let (payload_ref, _) =
            index_ref(self.writer, &format!("{name}.payload.didx"), &streams[crate::payload::PAYLOAD])?;
        Ok(ManifestArchive {
            name: name.to_owned(),
            kind: "file".into(),
            size,
            indexes: vec![meta_ref, payload_ref],
            source_stat: None,
            entries,
        })
    }
}

/// The entry being stored and the ticket its data waits on, if any.
type Current<'a> = Option<(&'a mut Entry, &'a mut Option<u64>)>;

/// Where a hard-link group's data sits: payload offset, size and sparse
/// extents of its first member, as stored.
type LinkData = (u64, u64, Option<Vec<(u64, u64)>>);

struct TreeBuilder {
    meta: StreamChunker,
    payload: PayloadBuilder,
    /// Hard-link group → (payload offset, extents) of its first member.
    links: HashMap<u64, LinkData>,
    buf: Vec<u8>,
    /// Encoded entries held back while new bytes wait for the payload's
    /// run to end (`PayloadBuilder::place_new`): an entry cannot go into
    /// the metadata stream before the one before it.
    held: Vec<u8>,
    /// Entries in `held` whose data waits: by their ticket from
    /// `PayloadBuilder`, where the entry starts in `held`.
    waiting: HashMap<u64, usize>,
    /// Set by `file_data` when the file's data waits: its ticket.
    placed: Option<u64>,
    /// A read block the last file did not fill (`Pipeline::blocks`).
    read_block: Vec<u8>,
    size: u64,
    entries: u64,
}

impl TreeBuilder {
    /// Walk, hand each file to be read to the read-ahead pool as the walk
    /// reaches it (at most `LOOKAHEAD` ahead), and store the entries and
    /// their data in walk order.
    fn run(
        &mut self,
        cx: &mut Ctx<'_>,
        mut walker: impl Iterator<Item = WalkItem>,
        mut prev: Option<&mut PrevTree>,
        ahead: &ReadAhead<'_>,
        pipe: &mut Pipeline<'_>,
    ) -> Result<()> {
        self.push_meta(&stream_header(), pipe)?;
        let mut queue: VecDeque<Planned> = VecDeque::with_capacity(LOOKAHEAD);
        let mut first_links = HashSet::new();
        loop {
            while queue.len() < LOOKAHEAD {
                let Some(item) = walker.next() else { break };
                queue.push_back(plan(item, prev.as_deref_mut(), &mut first_links, ahead)?);
            }
            let Some(next) = queue.pop_front() else { break };
            if self.settle_due(&next, &queue, prev.as_deref()) {
                self.payload.settle(pipe)?;
                self.placed_now(None, pipe)?;
            }
            match next {
                Planned::Error { path, message } => {
                    cx.errors.push(ManifestError {
                        path: String::from_utf8_lossy(&path).into_owned(),
                        error: message,
                    });
                }
                Planned::Entry { mut entry, source, old, fetch } => {
                    let payload = prev.as_deref().map(|p| &p.payload);
                    let file = FileSource { path: &source, old, fetch, ahead };
                    let mut waits = None;
                    if entry.kind == EntryKind::File {
                        let stored = self.file_data(cx, &mut entry, file, payload, pipe);
                        waits = self.placed.take();
                        // Files that waited may have been placed (this one
                        // among them) whether or not it was stored.
                        self.placed_now(Some((&mut entry, &mut waits)), pipe)?;
                        if !stored? {
                            continue;
                        }
                    }
                    // Never write an entry the reader would refuse (a path
                    // over 4096 bytes, say): it would end the stream there.
                    if let Err(e) = check_entry(&entry) {
                        let path = String::from_utf8_lossy(&entry.path).into_owned();
                        cx.errors.push(ManifestError { path, error: e.to_string() });
                        continue;
                    }
                    if entry.kind == EntryKind::File {
                        cx.files += 1;
                        cx.progress.add_file();
                    }
                    self.entries += 1;
                    if waits.is_some() || !self.waiting.is_empty() {
                        if let Some(ticket) = waits {
                            self.waiting.insert(ticket, self.held.len());
                        }
                        encode_entry(&entry, &mut self.held);
                        continue;
                    }
                    let mut buf = std::mem::take(&mut self.buf);
                    buf.clear();
                    encode_entry(&entry, &mut buf);
                    self.push_meta(&buf, pipe)?;
                    self.buf = buf;
                }
            }
        }
        self.payload.settle(pipe)?;
        self.placed_now(None, pipe)?;
        anyhow::ensure!(
            !self.payload.waiting() && self.waiting.is_empty() && self.held.is_empty(),
            "file entries left waiting for their data's place"
        );
        pipe.push(META, &mut self.meta, &[], true)?;
        self.payload.flush(pipe)
    }

    /// Whether what waits is placed before `next` (`queue` follows it).
    /// Past the limits (held entries, waiting files), only where the
    /// current run ends anyway: when neither `next` nor any file planned
    /// after it goes on in the run. Placing what waits ends the run, and
    /// a later file going on in it would start in the chunk the run wrote
    /// last, and be read again. At twice the limits, in any case.
    fn settle_due(&self, next: &Planned, queue: &VecDeque<Planned>, prev: Option<&PrevTree>) -> bool {
        if self.held.is_empty() && !self.payload.waiting() {
            return false;
        }
        if self.held.len() > 2 * HELD_MAX || self.payload.full(2) {
            tracing::debug!(held = self.held.len(), "placing at twice the limits");
            return true;
        }
        if self.held.len() <= HELD_MAX && !self.payload.full(1) {
            return false;
        }
        let Some(prev) = prev else { return true };
        let goes_on = |p: &Planned| match p {
            Planned::Entry { entry, old: Some(old), .. } if entry.kind == EntryKind::File => {
                old.data_len() > 0 && self.payload.goes_on(&prev.payload, old.payload_offset)
            }
            _ => false,
        };
        let due = !goes_on(next) && !queue.iter().any(goes_on);
        if due {
            tracing::debug!(held = self.held.len(), "placing past the limits where the run ends");
        }
        due
    }

    /// Set the offsets of the files placed since the last call: `entry`'s
    /// if it is the one `waits` names (then no longer waiting), else in the
    /// held entries; once none waits, write the held entries out.
    fn placed_now(&mut self, mut current: Current<'_>, pipe: &mut Pipeline<'_>) -> Result<()> {
        for (ticket, at) in self.payload.take_resolved() {
            if let Some((entry, waits)) = current.as_mut()
                && **waits == Some(ticket)
            {
                entry.payload_offset = at;
                **waits = None;
            } else if let Some(start) = self.waiting.remove(&ticket) {
                set_encoded_payload_offset(&mut self.held[start..], at);
            }
        }
        if self.waiting.is_empty() && !self.held.is_empty() {
            let mut held = std::mem::take(&mut self.held);
            self.push_meta(&held, pipe)?;
            held.clear();
            self.held = held;
        }
        Ok(())
    }

    fn push_meta(&mut self, bytes: &[u8], pipe: &mut Pipeline<'_>) -> Result<()> {
        pipe.push(META, &mut self.meta, bytes, false)
    }

    /// Put a file's data into the payload stream; `false` = skip the entry.
    fn file_data(
        &mut self,
        cx: &mut Ctx<'_>,
        entry: &mut Entry,
        file: FileSource<'_, '_>,
        prev_payload: Option<&DynamicIndex>,
        pipe: &mut Pipeline<'_>,
    ) -> Result<bool> {
        if entry.hardlink != 0
            && let Some((off, size, ext)) = self.links.get(&entry.hardlink)
        {
            // Every member describes the data stored once for the group,
            // even if the file changed between the two stats.
            entry.payload_offset = *off;
            entry.size = *size;
            entry.extents = ext.clone();
            self.size += entry.size;
            return Ok(true);
        }
        self.size += entry.size;
        let mut reused = None;
        if let (Some(old), Some(payload)) = (&file.old, prev_payload) {
            let (off, len, ext) = (old.payload_offset, old.data_len(), old.extents.clone());
            if let Some(placed) =
                self.payload.reuse(payload, off, len, entry.hardlink == 0, cx.writer, pipe)?
            {
                reused = Some((placed, ext));
            }
        }
        match reused {
            Some((placed, ext)) => {
                entry.payload_offset = self.offset(placed);
                entry.extents = ext;
                cx.progress.add_bytes(entry.size);
            }
            None => {
                // A member of a hard-link group does not wait: the group's
                // other names take its offset as soon as it is stored.
                let may_wait = entry.hardlink == 0;
                let placed = self.payload.place_new(entry.data_len(), may_wait, pipe)?;
                entry.payload_offset = self.offset(placed);
                let fetched = file.fetch.map(|rx| file.ahead.take(rx));
                if let Err(e) = self.read_file(cx, entry, file.path, fetched, file.ahead, pipe) {
                    if pipe_failed(&e) {
                        return Err(e);
                    }
                    let path = String::from_utf8_lossy(&entry.path).into_owned();
                    cx.errors.push(ManifestError { path, error: format!("{e:#}") });
                    return Ok(false);
                }
            }
        }
        if entry.hardlink != 0 {
            self.links.insert(entry.hardlink, (entry.payload_offset, entry.size, entry.extents.clone()));
        }
        Ok(true)
    }

    /// The offset of data placed at once, or 0 (set later) for data that
    /// waits, noted in `placed`.
    fn offset(&mut self, placed: Placement) -> u64 {
        match placed {
            Placement::At(at) => at,
            Placement::Waits(ticket) => {
                self.placed = Some(ticket);
                0
            }
        }
    }

    /// Store a file's data: read ahead by the pool (`fetched`), or opened
    /// and read here.
    fn read_file(
        &mut self,
        cx: &mut Ctx<'_>,
        entry: &mut Entry,
        source: &Source,
        fetched: Option<FetchResult>,
        ahead: &ReadAhead<'_>,
        pipe: &mut Pipeline<'_>,
    ) -> Result<()> {
        let offset = entry.payload_offset;
        let mut data = match fetched {
            None => open_data(source, entry).map_err(|e| anyhow::anyhow!(SourceError(e.to_string())))?,
            Some(Err(message)) => return Err(anyhow::anyhow!(SourceError(message))),
            Some(Ok((opened, fetched))) => {
                // The entry as the open file describes it (as `open_data`
                // would have refreshed it here).
                *entry = opened;
                entry.payload_offset = offset;
                match fetched {
                    Fetched::Open(data) => data,
                    Fetched::Whole(bytes, changed) => {
                        cx.progress.add_bytes(bytes.len() as u64);
                        self.payload.push(bytes, pipe)?;
                        if changed {
                            let path = String::from_utf8_lossy(&entry.path).into_owned();
                            let error = "file changed while it was read; stored as read".into();
                            cx.errors.push(ManifestError { path, error });
                        }
                        return Ok(());
                    }
                }
            }
        };
        // Read in blocks that become part of the payload stream, recycled
        // once stored (a fresh 1 MiB per block would be zeroed each time).
        // A block is filled before it goes, however the file's extents
        // split the reads: what it keeps resident is its capacity. A file
        // of more than one block is read on a thread beside this one.
        let source_error = |message: String| anyhow::anyhow!(SourceError(message));
        let blocks = pipe.blocks();
        let mut spare = std::mem::take(&mut self.read_block);
        let mut empty = || match std::mem::take(&mut spare) {
            b if b.len() == READ_BLOCK => b,
            _ => blocks.block(),
        };
        let changed = if entry.data_len() > READ_BLOCK as u64 {
            let (payload, progress) = (&mut self.payload, cx.progress);
            let take = |block: Vec<u8>| {
                progress.add_bytes(block.len() as u64);
                payload.push(block, pipe)
            };
            let (left, changed) = read_in_blocks(data, &mut empty, take, source_error, ahead.times())?;
            let mut left = left.into_iter();
            self.read_block = left.next().unwrap_or_default();
            left.for_each(|block| blocks.give_back(block));
            changed
        } else {
            loop {
                let mut block = empty();
                let filled = fill(&mut data, &mut block).map_err(source_error)?;
                if filled == 0 {
                    // Kept for the next file.
                    self.read_block = block;
                    break;
                }
                block.truncate(filled);
                cx.progress.add_bytes(filled as u64);
                self.payload.push(block, pipe)?;
                if filled < READ_BLOCK {
                    break;
                }
            }
            data.changed_while_reading()
        };
        if changed {
            let path = String::from_utf8_lossy(&entry.path).into_owned();
            cx.errors
                .push(ManifestError { path, error: "file changed while it was read; stored as read".into() });
        }
        Ok(())
    }
}

/// A walk item, with what the walk already knows about a file's data.
enum Planned {
    Error {
        path: Vec<u8>,
        message: String,
    },
    Entry {
        entry: Entry,
        source: Source,
        /// The previous snapshot's entry, when the file is unchanged.
        old: Option<Box<Entry>>,
        /// The file, being read ahead.
        fetch: Option<Ticket>,
    },
}

/// Where a file's data comes from.
struct FileSource<'a, 't> {
    path: &'a Source,
    old: Option<Box<Entry>>,
    fetch: Option<Ticket>,
    ahead: &'a ReadAhead<'t>,
}

/// Look a walked file up in the previous snapshot (in walk order, as the
/// lookup needs) and hand it to the read-ahead pool unless its data will
/// be reused: unchanged, or a further name of a hard-link group.
fn plan(
    item: WalkItem,
    prev: Option<&mut PrevTree>,
    first_links: &mut HashSet<u64>,
    ahead: &ReadAhead<'_>,
) -> Result<Planned> {
    let (entry, source) = match item {
        WalkItem::Error { path, message } => return Ok(Planned::Error { path, message }),
        WalkItem::Entry { entry, source } => (entry, source),
    };
    if entry.kind != EntryKind::File {
        return Ok(Planned::Entry { entry, source, old: None, fetch: None });
    }
    if entry.hardlink != 0 && !first_links.insert(entry.hardlink) {
        return Ok(Planned::Entry { entry, source, old: None, fetch: None });
    }
    let old = match prev {
        Some(prev) => {
            prev.lookup(&entry.path)?.filter(|old| unchanged(old, &entry)).map(|o| Box::new(o.clone()))
        }
        None => None,
    };
    let fetch = old.is_none().then(|| ahead.submit(source.clone(), entry.clone()));
    Ok(Planned::Entry { entry, source, old, fetch })
}

/// A source file could not be read: reported and skipped, not fatal.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SourceError(String);

fn pipe_failed(e: &anyhow::Error) -> bool {
    e.downcast_ref::<SourceError>().is_none()
}

fn source_stat(meta: &std::fs::Metadata) -> SourceStat {
    SourceStat {
        size: meta.len(),
        mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
        ino: meta.ino(),
        dev: meta.dev(),
    }
}

impl Ctx<'_> {
    fn backup_image(&mut self, path: &Path, name: &str) -> Result<ManifestArchive> {
        let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let meta = file.metadata().with_context(|| path.display().to_string())?;
        let size = if meta.file_type().is_block_device() { file.seek(SeekFrom::End(0))? } else { meta.len() };
        file.seek(SeekFrom::Start(0))?;
        let stat = SourceStat { size, ..source_stat(&meta) };
        let file_name = format!("{name}.fidx");
        if meta.is_file()
            && let Some((pid, pa)) = self.prev_archive(name, "image")
            && pa.source_stat == Some(stat)
            && let Some(r) = self.reuse_image(&pid, &pa, &file_name)?
        {
            self.progress.add_bytes(size);
            self.files += 1;
            return Ok(image_archive(name, size, r, stat));
        }
        let failed = AtomicBool::new(false);
        let level = self.config.zstd_level;
        let zero = ChunkId::zeros(FIXED_IMAGE_CHUNK);
        let index = std::thread::scope(|scope| -> Result<StreamIndex> {
            let mut pipe = Pipeline::start(scope, self.writer, 1, level, &failed);
            let produced = (|| -> Result<()> {
                let mut left = size;
                while left > 0 {
                    let n = left.min(FIXED_IMAGE_CHUNK as u64) as usize;
                    let mut buf = pipe.buffer(n);
                    (&mut file)
                        .take(n as u64)
                        .read_to_end(&mut buf)
                        .with_context(|| format!("reading {}", path.display()))?;
                    if buf.len() != n {
                        bail!("{} ended early: it shrank while being read", path.display());
                    }
                    left -= n as u64;
                    self.progress.add_bytes(n as u64);
                    if n == FIXED_IMAGE_CHUNK && is_zero(&buf) && self.writer.reference(&zero)? {
                        pipe.send(0, Work::Reuse(zero, n as u64))?;
                    } else {
                        pipe.send(0, Work::Data(buf))?;
                    }
                }
                Ok(())
            })();
            Ok(pipeline::first_error(produced, pipe.finish())?.remove(0))
        })?;
        self.files += 1;
        let fidx = FixedIndex {
            size,
            chunk_size: FIXED_IMAGE_CHUNK as u32,
            ids: index.chunks.iter().map(|c| c.0).collect(),
        };
        let r = self.writer.write_index(&file_name, &fidx.encode(), size, fidx.ids.len() as u64)?;
        Ok(image_archive(name, size, r, stat))
    }

    /// An unchanged image file: take the previous index if all its chunks are there.
    fn reuse_image(&self, pid: &SnapshotId, pa: &ManifestArchive, file: &str) -> Result<Option<IndexRef>> {
        let Some(r) = pa.indexes.first() else { return Ok(None) };
        let Ok(fidx) = self.src.read_fidx(pid, r) else { return Ok(None) };
        for id in &fidx.ids {
            if !self.writer.reference(id)? {
                return Ok(None);
            }
        }
        self.writer.counters().reused_chunks.fetch_add(fidx.ids.len() as u64, Ordering::Relaxed);
        Ok(Some(self.writer.write_index(file, &fidx.encode(), fidx.size, fidx.ids.len() as u64)?))
    }
}

/// The manifest entry of an image archive with its one fixed index.
fn image_archive(name: &str, size: u64, index: IndexRef, stat: SourceStat) -> ManifestArchive {
    ManifestArchive {
        name: name.into(),
        kind: "image".into(),
        size,
        indexes: vec![index],
        source_stat: Some(stat),
        entries: 0,
    }
}

/// Whether `buf` holds only zero bytes (word at a time).
fn is_zero(buf: &[u8]) -> bool {
    let (words, tail) = buf.as_chunks::<8>();
    words.iter().all(|w| u64::from_ne_bytes(*w) == 0) && tail.iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use model::Namespace;

    use super::*;

    /// A backup without a given time whose second is taken waits for the
    /// next one instead of failing; the clock and the sleep are injected.
    #[test]
    fn a_taken_second_is_waited_out() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a"), b"a").unwrap();
        let (engine, _) = Engine::init(&dir.path().join("ds"), DatastoreConfig::default()).unwrap();
        let group = BackupGroup::new(Namespace::root(), "host", "a").unwrap();
        let t0 = 1_800_000_000;
        let opts = BackupOptions {
            group: group.clone(),
            sources: vec![src],
            tags: vec![],
            excludes: vec![],
            one_file_system: false,
            time: t0,
        };
        engine.backup(&opts, &Progress::default()).unwrap();

        // The clock stays in t0 for two reads, then moves on.
        let (reads, sleeps) = (Cell::new(0), Cell::new(0));
        let clock = || {
            reads.set(reads.get() + 1);
            if reads.get() <= 2 { t0 } else { t0 + 1 }
        };
        let sleep = |_| sleeps.set(sleeps.get() + 1);
        let time = engine.free_backup_time(&group, &clock, &sleep);
        assert_eq!((time, sleeps.get()), (t0 + 1, 2));
        let second = engine.backup(&BackupOptions { time, ..opts.clone() }, &Progress::default()).unwrap();
        assert_eq!(second.id, group.at(t0 + 1));

        // A free second is taken at once; a clock that stays in a taken
        // second is given up on, and the backup fails as before.
        sleeps.set(0);
        assert_eq!(engine.free_backup_time(&group, &|| t0 + 2, &sleep), t0 + 2);
        assert_eq!(sleeps.get(), 0);
        assert_eq!(engine.free_backup_time(&group, &|| t0 + 1, &sleep), t0 + 1);
        assert_eq!(sleeps.get(), TIME_WAIT_STEPS);
    }
}
