//! Tests of the writer/GC protocol on a real temporary datastore.

use chunker::{ChunkId, encode_blob};
use model::{BackupGroup, Namespace};

use crate::snapshot::{MANIFEST_FORMAT, MANIFEST_VERSION};
use crate::{
    Datastore, DatastoreConfig, DynamicIndex, Manifest, ManifestArchive, ManifestStats, SourceHandler,
};

fn store() -> (tempfile::TempDir, Datastore) {
    let dir = tempfile::tempdir().unwrap();
    let (ds, created) = Datastore::init(&dir.path().join("ds"), DatastoreConfig::default()).unwrap();
    assert!(created);
    (dir, ds)
}

pub(crate) fn group(id: &str) -> BackupGroup {
    BackupGroup::new(Namespace::root(), "host", id).unwrap()
}

pub(crate) fn put(w: &crate::Writer, data: &[u8]) -> ChunkId {
    let (id, blob) = encode_blob(data, 3);
    if !w.reference(&id).unwrap() {
        w.store(&id, &blob).unwrap();
    }
    id
}

pub(crate) fn commit(w: crate::Writer, ids: &[(ChunkId, u64)], time: i64) -> model::SnapshotId {
    try_commit(w, ids, time).unwrap()
}

fn try_commit(w: crate::Writer, ids: &[(ChunkId, u64)], time: i64) -> crate::Result<model::SnapshotId> {
    let mut idx = DynamicIndex::default();
    let mut end = 0;
    for (id, len) in ids {
        end += len;
        idx.entries.push((end, *id));
    }
    let meta = w.write_index("data.meta.didx", &DynamicIndex::default().encode(), 0, 0)?;
    let r = w.write_index("data.payload.didx", &idx.encode(), end, ids.len() as u64)?;
    let g = w.group().clone();
    let m = Manifest {
        format: MANIFEST_FORMAT.into(),
        version: MANIFEST_VERSION,
        ns: String::new(),
        backup_type: g.kind.clone(),
        backup_id: g.id.clone(),
        time: model::time::format_rfc3339(time),
        tags: vec![],
        archives: vec![ManifestArchive {
            name: "data".into(),
            kind: "file".into(),
            size: end,
            indexes: vec![meta, r],
            source_stat: None,
            entries: 0,
        }],
        stats: ManifestStats::default(),
        errors: vec![],
        source: SourceHandler { name: "test".into(), version: "1".into(), digest: None },
        created_by: "test".into(),
    };
    w.commit(&m, time)
}

/// The names in `writers/`, sorted.
fn writer_files(ds: &Datastore) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(ds.root().join("writers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn gc_frees_exactly_unreferenced_chunks() {
    let (_d, ds) = store();
    let w = ds.begin_backup(&group("a")).unwrap();
    let a = put(&w, b"chunk a");
    let b = put(&w, b"chunk b");
    let snap = commit(w, &[(a, 7), (b, 7)], 1_000);
    let w = ds.begin_backup(&group("b")).unwrap();
    let c = put(&w, b"chunk c");
    commit(w, &[(c, 7), (a, 7)], 2_000);

    let stats = ds.collect_garbage(&mut |_| {}).unwrap();
    assert_eq!((stats.removed_chunks, stats.kept_chunks), (0, 3));
    ds.remove_snapshot(&snap).unwrap();
    let stats = ds.collect_garbage(&mut |_| {}).unwrap();
    assert_eq!((stats.removed_chunks, stats.kept_chunks), (1, 2));
    assert!(!ds.chunks().has(&b).unwrap());
    assert!(ds.chunks().has(&a).unwrap() && ds.chunks().has(&c).unwrap());
}

#[test]
fn gc_keeps_chunks_of_a_running_backup_and_frees_a_killed_one() {
    let (_d, ds) = store();
    let w = ds.begin_backup(&group("a")).unwrap();
    let x = put(&w, b"written by a backup still running");
    ds.collect_garbage(&mut |_| {}).unwrap();
    assert!(ds.chunks().has(&x).unwrap(), "a live writer's chunk survives gc");
    let id = commit(w, &[(x, 33)], 5_000);
    ds.collect_garbage(&mut |_| {}).unwrap();
    assert!(ds.chunks().has(&x).unwrap());
    assert_eq!(ds.list_snapshots().unwrap(), vec![id]);

    // A backup that dies as a killed process does: no destructor runs, its
    // lock goes with it, its journal and work area stay behind.
    let w = ds.begin_backup(&group("b")).unwrap();
    let uuid = w.uuid().to_owned();
    let y = put(&w, b"written by a backup that was killed");
    w.die();
    assert_eq!(writer_files(&ds), [format!("{uuid}.journal"), format!("{uuid}.work")]);
    let stats = ds.collect_garbage(&mut |_| {}).unwrap();
    assert_eq!(stats.removed_chunks, 1);
    assert!(!ds.chunks().has(&y).unwrap());
    assert!(writer_files(&ds).is_empty(), "no writer leftovers");
}

#[test]
fn a_chunk_stays_once_reference_said_the_store_has_it() {
    let (_d, ds) = store();
    // x belongs to a snapshot that is then deleted: garbage, until a
    // running backup relies on it.
    let w = ds.begin_backup(&group("a")).unwrap();
    let x = put(&w, b"shared chunk");
    let old = commit(w, &[(x, 12)], 1_000);
    ds.remove_snapshot(&old).unwrap();
    let w = ds.begin_backup(&group("b")).unwrap();
    assert!(w.reference(&x).unwrap(), "the store still has it");
    let stats = ds.collect_garbage(&mut |_| {}).unwrap();
    assert!(ds.chunks().has(&x).unwrap(), "gc kept what a live writer relies on: {stats:?}");
    commit(w, &[(x, 12)], 2_000);
    ds.collect_garbage(&mut |_| {}).unwrap();
    assert!(ds.chunks().has(&x).unwrap(), "and the committed snapshot keeps it");
}

#[test]
fn a_backup_committed_during_gc_leaves_a_committed_journal_for_that_gc() {
    let (_d, ds) = store();
    let w = ds.begin_backup(&group("a")).unwrap();
    let uuid = w.uuid().to_owned();
    let x = put(&w, b"committed while gc runs");
    // A gc is running: it holds locks/gc.
    let gc = crate::fsutil::lock_file(&ds.root().join("locks/gc"), crate::fsutil::LockMode::ExclusiveNow)
        .unwrap()
        .expect("no gc running yet");
    commit(w, &[(x, 23)], 3_000);
    assert_eq!(writer_files(&ds), [format!("{uuid}.committed")], "the running gc still reads its journal");
    drop(gc);
    // The next cleanup, once no gc runs, removes it; the chunk stays.
    ds.collect_garbage(&mut |_| {}).unwrap();
    assert!(writer_files(&ds).is_empty());
    assert!(ds.chunks().has(&x).unwrap());
}

#[test]
fn a_group_takes_one_backup_at_a_time_and_snapshots_do_not_collide() {
    let (_d, ds) = store();
    let w = ds.begin_backup(&group("a")).unwrap();
    assert!(matches!(ds.begin_backup(&group("a")), Err(crate::StoreError::GroupBusy(_))));
    let other = ds.begin_backup(&group("b")).unwrap();
    let id = commit(w, &[], 10);
    drop(other);
    let w = ds.begin_backup(&group("a")).unwrap();
    let again = try_commit(w, &[], 10);
    assert!(
        matches!(&again, Err(crate::StoreError::SnapshotExists(s)) if *s == id.to_string()),
        "a second snapshot at the same time is refused as existing: {again:?}"
    );
    assert_eq!(ds.list_snapshots().unwrap(), vec![id]);
    assert!(writer_files(&ds).is_empty(), "the refused writer left nothing");
}

#[test]
fn init_refuses_a_foreign_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), b"x").unwrap();
    assert!(matches!(
        Datastore::init(dir.path(), DatastoreConfig::default()),
        Err(crate::StoreError::NotADatastore(_))
    ));
    assert!(matches!(Datastore::open(&dir.path().join("nope")), Err(crate::StoreError::NoDatastore(_))));
}

#[test]
fn manifests_with_unsafe_archive_names_or_wrong_indexes_are_refused() {
    let (_d, ds) = store();
    let w = ds.begin_backup(&group("a")).unwrap();
    let x = put(&w, b"x");
    let id = commit(w, &[(x, 1)], 7_000);
    let good = ds.read_manifest(&id).unwrap();
    assert!(good.check().is_ok());
    let with = |f: &dyn Fn(&mut Manifest)| {
        let mut m = good.clone();
        f(&mut m);
        m.check()
    };
    for bad in ["../x", "/etc/cron.d/x", "a/b", "..", ".", "", "nul\0"] {
        let err = with(&|m| m.archives[0].name = bad.into()).unwrap_err();
        assert!(err.contains("invalid archive name"), "{bad:?}: {err}");
    }
    assert!(with(&|m| drop(m.archives[0].indexes.pop())).unwrap_err().contains("index files"));
    assert!(with(&|m| m.archives[0].kind = "tape".into()).unwrap_err().contains("unknown kind"));
    assert!(
        with(&|m| m.archives[0].indexes[0].file = "../../x.didx".into()).unwrap_err().contains("index file")
    );
    assert!(with(&|m| m.archives.push(m.archives[0].clone())).unwrap_err().contains("twice"));

    // The same check guards reading: a tampered manifest.json is an error.
    let path = ds.snapshot_dir(&id).join("manifest.json");
    let text =
        std::fs::read_to_string(&path).unwrap().replace("\"name\": \"data\"", "\"name\": \"../../evil\"");
    std::fs::write(&path, text).unwrap();
    assert!(ds.read_manifest(&id).is_err());
}

/// Every chunk of every visible snapshot reads back whole.
fn all_visible_whole(ds: &Datastore) -> Vec<model::SnapshotId> {
    let visible = ds.list_snapshots().unwrap();
    for id in &visible {
        let m = ds.read_manifest(id).unwrap_or_else(|e| panic!("{id}: {e}"));
        for r in m.archives.iter().flat_map(|a| &a.indexes) {
            let idx = ds.read_didx(id, r).unwrap_or_else(|e| panic!("{id}/{}: {e}", r.file));
            for (_, chunk) in idx.entries {
                ds.chunks().check(&chunk).unwrap_or_else(|e| panic!("{id}: chunk {chunk}: {e}"));
            }
        }
    }
    visible
}

/// Fault injection (see `fault.rs`): a backup whose N-th durable step
/// (write, sync, rename, directory sync) fails, for every N until one
/// passes them all, never leaves a snapshot that is visible but not whole;
/// it fails with the I/O error, the earlier snapshot stays whole, and
/// cleanup and gc leave nothing behind.
#[test]
fn a_failed_durable_step_never_leaves_a_partial_snapshot() {
    failed_durable_steps(false);
}

/// The same, with chunks written by `store_unsettled` and settled (in
/// reverse order, as syncer threads may) before the commit.
#[test]
fn a_failed_durable_step_of_a_settled_chunk_never_leaves_a_partial_snapshot() {
    failed_durable_steps(true);
}

fn failed_durable_steps(unsettled: bool) {
    let mut n = 1;
    loop {
        let (_d, ds) = store();
        let w = ds.begin_backup(&group("a")).unwrap();
        let a = put(&w, b"a chunk of the first snapshot");
        let first = commit(w, &[(a, 29)], 1_000);

        let w = ds.begin_backup(&group("a")).unwrap();
        crate::fault::arm(n);
        let result = (move || {
            let (mut ids, mut left) = (Vec::new(), Vec::new());
            for data in [&b"new chunk one"[..], b"new chunk two", b"a chunk of the first snapshot"] {
                let (id, blob) = encode_blob(data, 3);
                if !w.reference(&id)? {
                    if unsettled {
                        left.extend(w.store_unsettled(&id, &blob)?);
                    } else {
                        w.store(&id, &blob)?;
                    }
                }
                ids.push((id, data.len() as u64));
            }
            assert_eq!(left.len(), if unsettled { 2 } else { 0 });
            for chunk in left.into_iter().rev() {
                w.settle(chunk)?;
            }
            try_commit(w, &ids, 2_000)
        })();
        let passed = crate::fault::disarm();
        let visible = all_visible_whole(&ds);
        match &result {
            Ok(id) => assert_eq!(visible, vec![first.clone(), id.clone()], "step {n}"),
            Err(e) => {
                assert!(e.to_string().contains("injected fault"), "step {n}: {e}");
                // Failing after the snapshot was renamed into place (syncing
                // its directory) leaves it visible: it must then be whole.
                assert!(visible.first() == Some(&first) && visible.len() <= 2, "step {n}: {visible:?}");
            }
        }
        ds.collect_garbage(&mut |_| {}).unwrap();
        assert_eq!(all_visible_whole(&ds), visible, "step {n}: gc changed what is visible");
        assert!(writer_files(&ds).is_empty(), "step {n}: leftovers {:?}", writer_files(&ds));
        if passed < n {
            assert!(result.is_ok(), "no fault was injected, yet the backup failed");
            assert!(n > 10, "only {} durable steps were exercised", n - 1);
            break;
        }
        n += 1;
    }
}

#[test]
fn a_chunk_left_unsettled_keeps_its_snapshot_from_being_committed() {
    let (_d, ds) = store();
    let data = b"a chunk written and not yet synced";
    let (id, blob) = encode_blob(data, 3);

    let w = ds.begin_backup(&group("a")).unwrap();
    let left = w.store_unsettled(&id, &blob).unwrap().expect("a local store leaves the sync");
    assert!(w.reference(&id).unwrap(), "the writer uses its own unsettled chunk");
    assert!(!ds.chunks().has(&id).unwrap(), "not in the store before it is settled");
    drop(left);
    let e = try_commit(w, &[(id, data.len() as u64)], 1_000).unwrap_err();
    assert!(matches!(e, crate::StoreError::Unsettled(1)), "{e}");
    assert!(ds.list_snapshots().unwrap().is_empty());
    assert!(writer_files(&ds).is_empty(), "leftovers {:?}", writer_files(&ds));
    assert!(!ds.chunks().has(&id).unwrap());

    let w = ds.begin_backup(&group("a")).unwrap();
    let left = w.store_unsettled(&id, &blob).unwrap().unwrap();
    // Only the writer that wrote a chunk settles it.
    let other = ds.begin_backup(&group("b")).unwrap();
    let theirs = other.store_unsettled(&id, &blob).unwrap().unwrap();
    let e = w.settle(theirs).unwrap_err();
    assert!(e.to_string().contains("written by another backup"), "{e}");
    drop(other);
    assert_eq!(w.settle(left).unwrap(), blob.len() as u64);
    assert_eq!(w.counters.new_chunks.load(std::sync::atomic::Ordering::Relaxed), 1);
    let snap = try_commit(w, &[(id, data.len() as u64)], 1_000).unwrap();
    assert_eq!(all_visible_whole(&ds), vec![snap]);
    assert_eq!(ds.chunks().read(&id).unwrap(), data);
}

#[test]
fn a_work_area_goes_with_its_owner_and_with_a_dead_one() {
    let (_d, ds) = store();
    let a = ds.work_area().unwrap();
    std::fs::write(a.path().join("f"), b"x").unwrap();
    ds.cleanup_dead_writers().unwrap();
    assert!(a.path().join("f").exists(), "a live owner's area stays");
    assert_eq!(writer_files(&ds).len(), 2);
    drop(a);
    assert!(writer_files(&ds).is_empty(), "dropped, it is gone");

    // An owner killed with -9: no destructor, its lock released by the
    // kernel. Its area is what a new area (lock free) and files look like.
    let a = ds.work_area().unwrap();
    let (dir, lock) = (a.path().to_owned(), a.path().with_extension("area-lock"));
    std::mem::forget(a);
    let held = writer_files(&ds);
    assert_eq!(held.len(), 2);
    ds.cleanup_dead_writers().unwrap();
    assert_eq!(writer_files(&ds), held, "the lock is still held by this process");
    // Release the lock as the kernel does when its process dies: the
    // lock's open file is gone; a new file at the same path is unlocked.
    std::fs::remove_file(&lock).unwrap();
    std::fs::write(&lock, b"").unwrap();
    std::fs::write(dir.join("left"), b"y").unwrap();
    ds.collect_garbage(&mut |_| {}).unwrap();
    assert!(writer_files(&ds).is_empty(), "gc removes a dead owner's area: {:?}", writer_files(&ds));
}

/// Backups of different groups start at once while others look for dead
/// writers: a journal just created and not yet locked is never taken for
/// a dead writer's (it was, and the backup failed on a vanished journal).
#[test]
fn writers_starting_at_once_never_remove_each_others_journals() {
    let (_tmp, ds) = store();
    std::thread::scope(|scope| {
        for t in 0..6 {
            let ds = ds.clone();
            scope.spawn(move || {
                let group = BackupGroup::parse(&format!("host/g{t}"), &Namespace::root()).unwrap();
                for _ in 0..60 {
                    let w = ds.begin_backup(&group).expect("a backup starts");
                    let area = ds.work_area().expect("a work area is made");
                    assert!(area.path().exists(), "a work area removed under its owner");
                    drop((w, area));
                }
            });
        }
    });
    assert!(writer_files(&ds).is_empty(), "{:?}", writer_files(&ds));
}
