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

fn group(id: &str) -> BackupGroup {
    BackupGroup::new(Namespace::root(), "host", id).unwrap()
}

fn put(w: &crate::Writer, data: &[u8]) -> ChunkId {
    let (id, blob) = encode_blob(data, 3);
    if !w.reference(&id).unwrap() {
        w.store(&id, &blob).unwrap();
    }
    id
}

fn commit(w: crate::Writer, ids: &[(ChunkId, u64)], time: i64) -> model::SnapshotId {
    let mut idx = DynamicIndex::default();
    let mut end = 0;
    for (id, len) in ids {
        end += len;
        idx.entries.push((end, *id));
    }
    let meta = w.write_index("data.meta.didx", &DynamicIndex::default().encode(), 0, 0).unwrap();
    let r = w.write_index("data.payload.didx", &idx.encode(), end, ids.len() as u64).unwrap();
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
    w.commit(&m, time).unwrap()
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
fn gc_keeps_chunks_of_a_running_backup_and_frees_an_aborted_one() {
    let (_d, ds) = store();
    let w = ds.begin_backup(&group("a")).unwrap();
    let x = put(&w, b"written by a backup still running");
    ds.collect_garbage(&mut |_| {}).unwrap();
    assert!(ds.chunks().has(&x).unwrap(), "a live writer's chunk survives gc");
    let id = commit(w, &[(x, 33)], 5_000);
    ds.collect_garbage(&mut |_| {}).unwrap();
    assert!(ds.chunks().has(&x).unwrap());
    assert_eq!(ds.list_snapshots().unwrap(), vec![id]);

    let w = ds.begin_backup(&group("b")).unwrap();
    let y = put(&w, b"written by a backup that was aborted");
    drop(w);
    let stats = ds.collect_garbage(&mut |_| {}).unwrap();
    assert_eq!(stats.removed_chunks, 1);
    assert!(!ds.chunks().has(&y).unwrap());
    assert!(std::fs::read_dir(ds.root().join("writers")).unwrap().next().is_none(), "no writer leftovers");
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
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit(w, &[], 10)));
    assert!(again.is_err(), "second snapshot at the same time is refused");
    assert_eq!(ds.list_snapshots().unwrap(), vec![id]);
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
