//! Backups of sources that are not filesystems: a source handler (a
//! `source` policy, run by the daemon) yields items with their data, and
//! they become an ordinary file archive, so browsing, download, verify,
//! prune and a plain restore (`--raw`) work on them as on any other. The
//! engine does not know WebAssembly: the caller adapts the handler to
//! [`ItemSource`] and [`ItemSink`].
//!
//! Items must come in the archive's walk order (depth first, each
//! directory's children sorted by name bytes), which is also the order
//! they are handed back on restore; directories an item needs and the
//! handler did not yield are added (mode 0755, the item's mtime).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Result, bail};
use chunker::StreamChunker;
use filevol::archive::{Entry, EntryKind, check_entry, encode_entry, stream_header};
use filevol::{Manifest, ManifestArchive, ManifestStats, SourceHandler};
use model::SnapshotId;

use crate::new_snapshot::{BackupTarget, index_ref, new_manifest};
use crate::payload::{PAYLOAD, PayloadBuilder};
use crate::pipeline::{self, Pipeline};
use crate::prevtree::walk_order;
use crate::progress::Progress;
use crate::restore::{Reader, copy_data};
use crate::stream::StreamReader;

const META: usize = 0;

/// An item of a source, as a handler describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Relative, `/`-separated, no `.` or `..` components.
    pub path: String,
    pub kind: ItemKind,
    pub mode: u32,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
    /// Symlink target, else empty.
    pub target: String,
}

/// A file, a directory or a symbolic link (the shared `model` type).
pub use model::ItemKind;

/// One step of a source backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The next item; a file's data follows as `Data` steps.
    Item(Item),
    Data(Vec<u8>),
    End,
}

/// Where a source backup's steps come from.
pub trait ItemSource {
    fn next(&mut self) -> Result<Step>;
}

/// Where a restore through a handler sends the items, in archive order.
pub trait ItemSink {
    fn item(&mut self, item: &Item) -> Result<()>;
    fn data(&mut self, data: &[u8]) -> Result<()>;
}

/// What to name the source backup and which handler made it.
#[derive(Debug, Clone)]
pub struct SourceBackup {
    pub group: model::BackupGroup,
    pub tags: Vec<String>,
    /// Snapshot time, epoch seconds.
    pub time: i64,
    /// The archive's name (the handler's name).
    pub archive: String,
    pub handler: SourceHandler,
}

/// Read `source` to its end into one file archive of a new snapshot in
/// `target`; returns the manifest for the caller to commit. Any error
/// (the handler's, an item out of order, a bad path) fails the whole
/// backup: nothing partial is committed.
pub fn back_up_items(
    target: &BackupTarget<'_>,
    opts: &SourceBackup,
    source: &mut dyn ItemSource,
    progress: &Progress,
) -> Result<Manifest> {
    let start = Instant::now();
    let cfg = target.config;
    let failed = AtomicBool::new(false);
    let (streams, built) = std::thread::scope(|scope| -> Result<_> {
        let mut pipe = Pipeline::start(scope, target.sink, 2, cfg.zstd_level, &failed);
        let mut b = Builder {
            meta: StreamChunker::new(cfg.cdc),
            payload: PayloadBuilder::new(cfg.cdc),
            dirs: Vec::new(),
            last: Vec::new(),
            pending: None,
            buf: Vec::new(),
            size: 0,
            files: 0,
            entries: 0,
            time: opts.time,
        };
        let produced = b.run(source, progress, &mut pipe);
        let streams = pipeline::first_error(produced, pipe.finish())?;
        Ok((streams, b))
    })?;
    let name = &opts.archive;
    let (meta_ref, _) = index_ref(target.sink, &format!("{name}.meta.didx"), &streams[META])?;
    let (payload_ref, _) = index_ref(target.sink, &format!("{name}.payload.didx"), &streams[PAYLOAD])?;
    let archive = ManifestArchive {
        name: name.clone(),
        kind: "file".into(),
        size: built.size,
        indexes: vec![meta_ref, payload_ref],
        source_stat: None,
        entries: built.entries,
    };
    let c = target.sink.counters();
    let stats = ManifestStats {
        files: built.files,
        size: built.size,
        stored: c.stored_bytes.load(Ordering::Relaxed),
        new_chunks: c.new_chunks.load(Ordering::Relaxed),
        reused_chunks: c.reused_chunks.load(Ordering::Relaxed),
        duration_ms: start.elapsed().as_millis() as u64,
    };
    Ok(new_manifest(
        &opts.group,
        opts.time,
        &opts.tags,
        vec![archive],
        stats,
        Vec::new(),
        opts.handler.clone(),
    ))
}

struct Builder {
    meta: StreamChunker,
    payload: PayloadBuilder,
    /// The directories enclosing the last entry, outermost first.
    dirs: Vec<Vec<u8>>,
    /// The last entry's path (walk order is checked against it).
    last: Vec<u8>,
    /// A file whose data is still arriving.
    pending: Option<Entry>,
    buf: Vec<u8>,
    size: u64,
    files: u64,
    entries: u64,
    time: i64,
}

fn entry(path: Vec<u8>, kind: EntryKind, mode: u32, mtime: i64) -> Entry {
    Entry {
        path,
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime,
        mtime_nsec: 0,
        ctime: mtime,
        ctime_nsec: 0,
        ino: 0,
        size: 0,
        rdev: 0,
        link_target: Vec::new(),
        hardlink: 0,
        payload_offset: 0,
        extents: None,
        xattrs: Vec::new(),
    }
}

impl Builder {
    fn run(
        &mut self,
        source: &mut dyn ItemSource,
        progress: &Progress,
        pipe: &mut Pipeline<'_>,
    ) -> Result<()> {
        self.push_meta(&stream_header(), pipe)?;
        let root = entry(Vec::new(), EntryKind::Dir, 0o755, self.time);
        self.write(&root, pipe)?;
        loop {
            match source.next()? {
                Step::Item(item) => {
                    self.close_file(pipe)?;
                    self.open(item, pipe)?;
                }
                Step::Data(data) => {
                    let Some(file) = &mut self.pending else {
                        bail!(
                            "the source handler sent data after {}, which is not a file",
                            String::from_utf8_lossy(&self.last)
                        );
                    };
                    file.size += data.len() as u64;
                    self.size += data.len() as u64;
                    progress.add_bytes(data.len() as u64);
                    self.payload.push(data, pipe)?;
                }
                Step::End => break,
            }
        }
        self.close_file(pipe)?;
        pipe.push(META, &mut self.meta, &[], true)?;
        self.payload.flush(pipe)
    }

    /// Check an item's place in walk order, add the directories it needs,
    /// and write it (a file once its data has arrived).
    fn open(&mut self, item: Item, pipe: &mut Pipeline<'_>) -> Result<()> {
        let path = item.path.as_bytes().to_vec();
        if path.is_empty() {
            bail!("the source handler yielded an item with an empty path");
        }
        filevol::archive::validate_path(&path)
            .map_err(|e| anyhow::anyhow!("the source handler yielded a bad path: {e}"))?;
        if !walk_order(&self.last, &path).is_lt() {
            bail!(
                "the source handler yielded {} after {}: items must come depth first, each \
                 directory's children sorted by name",
                item.path,
                String::from_utf8_lossy(&self.last)
            );
        }
        // Leave the directories this item is not in, then add the ones it
        // needs that were not yielded.
        while let Some(d) = self.dirs.last() {
            if path.len() > d.len() && path.starts_with(d) && path[d.len()] == b'/' {
                break;
            }
            self.dirs.pop();
        }
        let mut at = self.dirs.last().map_or(0, |d| d.len() + 1);
        while let Some(slash) = path[at..].iter().position(|c| *c == b'/') {
            let dir = path[..at + slash].to_vec();
            if dir == self.last {
                bail!(
                    "the source handler yielded {}, but {} is not a directory",
                    item.path,
                    String::from_utf8_lossy(&dir)
                );
            }
            let e = entry(dir.clone(), EntryKind::Dir, 0o755, item.mtime);
            self.write(&e, pipe)?;
            self.dirs.push(dir);
            at += slash + 1;
        }
        let kind = match item.kind {
            ItemKind::File => EntryKind::File,
            ItemKind::Directory => EntryKind::Dir,
            ItemKind::Symlink => EntryKind::Symlink,
        };
        let mut e = entry(path.clone(), kind, item.mode & 0o7777, item.mtime);
        e.link_target = item.target.into_bytes();
        match kind {
            EntryKind::File => {
                e.payload_offset = self.payload.pos();
                self.last = path;
                self.pending = Some(e);
                return Ok(());
            }
            EntryKind::Dir => self.dirs.push(path.clone()),
            _ => {}
        }
        self.write(&e, pipe)?;
        self.last = path;
        Ok(())
    }

    fn close_file(&mut self, pipe: &mut Pipeline<'_>) -> Result<()> {
        if let Some(e) = self.pending.take() {
            self.files += 1;
            self.write(&e, pipe)?;
        }
        Ok(())
    }

    fn write(&mut self, e: &Entry, pipe: &mut Pipeline<'_>) -> Result<()> {
        check_entry(e).map_err(|err| {
            anyhow::anyhow!(
                "the source handler yielded a bad item {}: {err}",
                String::from_utf8_lossy(&e.path)
            )
        })?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        encode_entry(e, &mut buf);
        let pushed = self.push_meta(&buf, pipe);
        self.buf = buf;
        self.entries += 1;
        if e.path.is_empty() {
            self.last.clear();
        } else {
            self.last = e.path.clone();
        }
        pushed
    }

    fn push_meta(&mut self, bytes: &[u8], pipe: &mut Pipeline<'_>) -> Result<()> {
        pipe.push(META, &mut self.meta, bytes, false)
    }
}

impl crate::Engine {
    /// Hand an archive of a local snapshot to `sink` (see [`Reader::replay`]).
    pub fn replay(
        &self,
        id: &SnapshotId,
        archive: &str,
        sink: &mut dyn ItemSink,
        progress: &Progress,
    ) -> Result<()> {
        Reader::new(&self.ds).replay(id, archive, sink, progress)
    }
}

impl Reader<'_> {
    /// Hand a file archive's items and data to `sink` in archive order
    /// (the archive root itself is not handed over). Used to restore
    /// through the source handler that made the archive.
    pub fn replay(
        &self,
        id: &SnapshotId,
        archive: &str,
        sink: &mut dyn ItemSink,
        progress: &Progress,
    ) -> Result<()> {
        let m = self.src.read_manifest(id)?;
        let Some(a) = m.archives.iter().find(|a| a.name == archive) else {
            bail!("{id} has no archive {archive}");
        };
        if a.kind != "file" {
            bail!("{archive} is an {} archive, not a file archive", a.kind);
        }
        let payload_index = self.src.read_didx(id, &a.indexes[1])?;
        let mut payload = StreamReader::new(self.src.chunk_reader(), payload_index);
        for e in self.entries(id, a)? {
            let e = e?;
            if e.path.is_empty() {
                continue;
            }
            let kind = match e.kind {
                EntryKind::File => ItemKind::File,
                EntryKind::Dir => ItemKind::Directory,
                EntryKind::Symlink => ItemKind::Symlink,
                other => bail!(
                    "{}: a {other:?} cannot be handed to a source handler",
                    String::from_utf8_lossy(&e.path)
                ),
            };
            let item = Item {
                path: String::from_utf8(e.path.clone())
                    .map_err(|_| anyhow::anyhow!("{}: not UTF-8", String::from_utf8_lossy(&e.path)))?,
                kind,
                mode: e.mode,
                mtime: e.mtime,
                target: String::from_utf8_lossy(&e.link_target).into_owned(),
            };
            sink.item(&item)?;
            if kind != ItemKind::File {
                continue;
            }
            copy_data(&mut payload, &e, 1 << 20, progress, &mut |data| sink.data(data))?;
            progress.add_file();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Engine;
    use filevol::DatastoreConfig;
    use model::{BackupGroup, Namespace};

    /// Steps from a list, as a handler would yield them.
    struct Steps(std::vec::IntoIter<Step>);

    impl ItemSource for Steps {
        fn next(&mut self) -> Result<Step> {
            Ok(self.0.next().unwrap_or(Step::End))
        }
    }

    #[derive(Default)]
    struct Collect(Vec<(Item, Vec<u8>)>);

    impl ItemSink for Collect {
        fn item(&mut self, item: &Item) -> Result<()> {
            self.0.push((item.clone(), Vec::new()));
            Ok(())
        }
        fn data(&mut self, data: &[u8]) -> Result<()> {
            self.0.last_mut().unwrap().1.extend_from_slice(data);
            Ok(())
        }
    }

    fn item(path: &str, kind: ItemKind) -> Item {
        let target = if kind == ItemKind::Symlink { "dump.sql".into() } else { String::new() };
        Item { path: path.into(), kind, mode: 0o640, mtime: 1_700_000_000, target }
    }

    fn opts(time: i64) -> SourceBackup {
        SourceBackup {
            group: BackupGroup::new(Namespace::root(), "host", "db").unwrap(),
            tags: vec!["daily".into()],
            time,
            archive: "source-test".into(),
            handler: SourceHandler {
                name: "source-test".into(),
                version: "1.0".into(),
                digest: Some("ab".repeat(32)),
            },
        }
    }

    #[test]
    fn items_become_an_archive_and_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::init(&dir.path().join("ds"), DatastoreConfig::default()).unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let steps = vec![
            Step::Item(item("a", ItemKind::Directory)),
            Step::Item(item("a/dump.sql", ItemKind::File)),
            Step::Data(big[..1_000_000].to_vec()),
            Step::Data(big[1_000_000..].to_vec()),
            Step::Item(item("a/latest", ItemKind::Symlink)),
            // No `b` or `b/c` yielded: the host adds them.
            Step::Item(item("b/c/empty", ItemKind::File)),
            Step::Item(item("z.txt", ItemKind::File)),
            Step::Data(b"hello".to_vec()),
        ];
        let report = engine
            .backup_items(&opts(1_700_000_100), &mut Steps(steps.into_iter()), &Progress::default())
            .unwrap();
        assert_eq!(report.stats.files, 3);
        assert_eq!(report.stats.size, 3_000_005);
        let m = engine.datastore().read_manifest(&report.id).unwrap();
        assert_eq!(m.source.name, "source-test");
        assert_eq!(m.source.digest.as_deref(), Some(&*"ab".repeat(32)));
        assert_eq!(m.tags, vec!["daily".to_owned()]);

        // The archive browses like any other (added directories included).
        let listed: Vec<String> = engine
            .list(&report.id, Some(b"source-test"), true)
            .unwrap()
            .iter()
            .map(|l| String::from_utf8_lossy(&l.path).into_owned())
            .collect();
        assert_eq!(
            listed,
            [
                "source-test/a",
                "source-test/a/dump.sql",
                "source-test/a/latest",
                "source-test/b",
                "source-test/b/c",
                "source-test/b/c/empty",
                "source-test/z.txt"
            ]
        );

        let mut back = Collect::default();
        engine.replay(&report.id, "source-test", &mut back, &Progress::default()).unwrap();
        let paths: Vec<&str> = back.0.iter().map(|(i, _)| i.path.as_str()).collect();
        assert_eq!(paths, ["a", "a/dump.sql", "a/latest", "b", "b/c", "b/c/empty", "z.txt"]);
        assert_eq!(back.0[1].1, big, "the file's data comes back byte for byte");
        assert_eq!(back.0[1].0, item("a/dump.sql", ItemKind::File));
        assert_eq!(back.0[2].0.target, "dump.sql");
        assert_eq!(back.0[3].0.mode, 0o755, "an added directory");
        assert_eq!(back.0[6].1, b"hello");
    }

    #[test]
    fn a_bad_stream_fails_the_backup_and_leaves_nothing() {
        let cases: Vec<(Vec<Step>, &str)> = vec![
            (vec![Step::Item(item("b", ItemKind::File)), Step::Item(item("a", ItemKind::File))], "a after b"),
            (vec![Step::Item(item("a", ItemKind::File)), Step::Item(item("a", ItemKind::File))], "a after a"),
            (vec![Step::Item(item("d", ItemKind::Directory)), Step::Data(b"x".to_vec())], "not a file"),
            (
                vec![Step::Item(item("f", ItemKind::File)), Step::Item(item("f/g", ItemKind::File))],
                "not a directory",
            ),
            (vec![Step::Item(item("../etc/passwd", ItemKind::File))], "bad path"),
            (vec![Step::Item(item("/abs", ItemKind::File))], "bad path"),
            (vec![Step::Item(Item { target: String::new(), ..item("l", ItemKind::Symlink) })], "bad item"),
        ];
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = Engine::init(&dir.path().join("ds"), DatastoreConfig::default()).unwrap();
        for (n, (steps, expect)) in cases.into_iter().enumerate() {
            let err = engine
                .backup_items(
                    &opts(1_700_000_000 + n as i64),
                    &mut Steps(steps.into_iter()),
                    &Progress::default(),
                )
                .unwrap_err();
            assert!(format!("{err:#}").contains(expect), "{err:#} should say {expect:?}");
        }
        let group = BackupGroup::new(Namespace::root(), "host", "db").unwrap();
        assert!(
            engine.datastore().list_group(&group).expect("the group lists").is_empty(),
            "no snapshot is visible"
        );
    }
}
