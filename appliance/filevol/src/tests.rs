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
            indexes: vec![r],
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
