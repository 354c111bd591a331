//! The S3 datastore's protocol on a bucket in memory: uploads, markers,
//! the working copy, the claim, attach, takeover and the sweep. (The same
//! runs against a real Garage cluster in `tests/it/s3.rs`.)

use bucket::Bucket;
use chunker::encode_blob;

use crate::remote::{S3Settings, chunk_key};
use crate::tests::{commit, group, put};
use crate::{Datastore, DatastoreConfig, StoreError};

fn settings(instance: &str) -> S3Settings {
    S3Settings {
        cache_bytes: 1 << 20,
        uploads: 4,
        instance: instance.into(),
        ..S3Settings::new("memory:", "memory")
    }
}

/// A datastore in directory `name` under `dir` over `b` (created, or with
/// `existing` attached).
fn s3_store(dir: &tempfile::TempDir, name: &str, existing: bool, b: &Bucket) -> crate::Result<Datastore> {
    Datastore::init_s3(
        &dir.path().join(name),
        DatastoreConfig::default(),
        settings(name),
        existing,
        Some(b.clone()),
    )
}

fn keys(b: &Bucket, prefix: &str) -> Vec<String> {
    b.list(prefix).unwrap().into_iter().map(|(k, _)| k).collect()
}

#[test]
fn a_backup_lands_in_the_bucket_and_a_second_machine_attaches_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let b = Bucket::memory();
    let ds = s3_store(&dir, "a", false, &b).unwrap();
    assert!(b.get("cairn-datastore.json").unwrap().is_some());
    let w = ds.begin_backup(&group("web")).unwrap();
    let one = put(&w, b"chunk one");
    let two = put(&w, b"chunk two");
    let snap = commit(w, &[(one, 9), (two, 9)], 1_700_000_000);
    // Every chunk, index and the manifest are objects; markers are empty files.
    assert_eq!(keys(&b, "chunks").len(), 2);
    let snap_keys = keys(&b, "snapshots");
    assert!(snap_keys.iter().any(|k| k.ends_with("/manifest.json")), "{snap_keys:?}");
    assert!(snap_keys.iter().any(|k| k.ends_with("/data.payload.didx")));
    assert_eq!(std::fs::metadata(ds.chunks().path(&one)).unwrap().len(), 0);
    assert!(ds.chunks().has(&one).unwrap());
    assert_eq!(ds.chunks().read(&one).unwrap(), b"chunk one");
    // A second backup uploads nothing it already has. (Counted by this
    // test's bucket: the process's counters also count the other tests'.)
    let puts = b.puts();
    assert!(puts > 0);
    let w = ds.begin_backup(&group("web")).unwrap();
    assert!(w.reference(&one).unwrap());
    drop(w);
    assert_eq!(b.puts(), puts);

    // Attach from an empty directory: the snapshot is there; the claim is
    // not ours, so reading works and writing does not.
    let other = s3_store(&dir, "b", true, &b).unwrap();
    assert_eq!(other.list_snapshots().unwrap(), vec![snap.clone()]);
    assert!(other.chunks().has(&two).unwrap());
    assert_eq!(other.chunks().read(&two).unwrap(), b"chunk two");
    assert!(matches!(other.begin_backup(&group("web")), Err(StoreError::NotOwner { .. })));
    assert!(matches!(other.remove_snapshot(&snap), Err(StoreError::NotOwner { .. })));
    assert!(matches!(other.collect_garbage(&mut |_| {}), Err(StoreError::NotOwner { .. })));
    // Takeover: now the first machine may not write.
    other.take_over().unwrap();
    assert!(matches!(ds.begin_backup(&group("web")), Err(StoreError::NotOwner { .. })));
    let w = other.begin_backup(&group("web")).unwrap();
    let three = put(&w, b"chunk three");
    commit(w, &[(three, 11)], 1_700_000_100);
    assert_eq!(other.list_snapshots().unwrap().len(), 2);

    // Attaching where a datastore exists, or creating over one, is refused.
    let e = s3_store(&dir, "c", false, &b).unwrap_err();
    assert!(matches!(e, StoreError::BucketHoldsDatastore(_)), "{e}");
}

#[test]
fn a_bucket_holding_something_else_or_nothing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = Bucket::memory();
    let e = s3_store(&dir, "a", true, &b).unwrap_err();
    assert!(matches!(e, StoreError::NoDatastoreInBucket(_)), "{e}");
    b.put("photos/cat.jpg", vec![1, 2, 3]).unwrap();
    for existing in [false, true] {
        let e = s3_store(&dir, "b", existing, &b).unwrap_err();
        assert!(matches!(e, StoreError::BucketNotADatastore(_)), "{e}");
    }
    assert_eq!(keys(&b, ""), vec!["photos/cat.jpg".to_owned()]);
    assert!(!dir.path().join("b").join("cairn-datastore.json").exists());
}

#[test]
fn prune_and_gc_free_objects_and_a_dead_writers_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let b = Bucket::memory();
    let ds = s3_store(&dir, "a", false, &b).unwrap();
    let w = ds.begin_backup(&group("web")).unwrap();
    let keep = put(&w, b"kept");
    let old = commit(w, &[(keep, 4)], 1_700_000_000);
    let w = ds.begin_backup(&group("web")).unwrap();
    let gone = put(&w, b"only in the old one");
    let _ = put(&w, b"kept");
    let newer = commit(w, &[(keep, 4), (gone, 19)], 1_700_000_100);
    ds.remove_snapshot(&newer).unwrap();
    assert!(
        !keys(&b, "snapshots").iter().any(|k| k.contains("2023-11-14T22:15:00Z")),
        "{:?}",
        keys(&b, "snapshots")
    );
    // A writer that dies after uploading leaves objects nobody names.
    let w = ds.begin_backup(&group("db")).unwrap();
    let orphan = put(&w, b"from a killed backup");
    w.die();
    let st = ds.collect_garbage(&mut |_| {}).unwrap();
    assert_eq!((st.removed_chunks, st.kept_chunks), (2, 1), "{st:?}");
    assert_eq!(keys(&b, "chunks"), vec![chunk_key(&keep)]);
    assert!(!ds.chunks().has(&gone).unwrap());
    assert!(!ds.chunks().has(&orphan).unwrap());
    assert_eq!(ds.list_snapshots().unwrap(), vec![old]);
}

#[test]
fn a_snapshot_in_the_bucket_but_not_renamed_here_survives_gc() {
    let dir = tempfile::tempdir().unwrap();
    let b = Bucket::memory();
    let ds = s3_store(&dir, "a", false, &b).unwrap();
    let w = ds.begin_backup(&group("web")).unwrap();
    let one = put(&w, b"one");
    let snap = commit(w, &[(one, 3)], 1_700_000_000);
    // As if the machine died between the manifest's upload and the rename.
    std::fs::remove_dir_all(ds.snapshot_dir(&snap)).unwrap();
    let st = ds.collect_garbage(&mut |_| {}).unwrap();
    assert_eq!(st.removed_chunks, 0);
    assert_eq!(ds.list_snapshots().unwrap(), vec![snap]);
    assert_eq!(keys(&b, "chunks").len(), 1);
}

#[test]
fn verify_reads_the_bucket_and_quarantines_there_and_the_cache_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let b = Bucket::memory();
    let mut s = settings("a");
    s.cache_bytes = 64 << 10;
    let ds = Datastore::init_s3(&dir.path().join("a"), DatastoreConfig::default(), s, false, Some(b.clone()))
        .unwrap();
    let w = ds.begin_backup(&group("web")).unwrap();
    let mut ids = Vec::new();
    for i in 0..40u8 {
        let data: Vec<u8> = (0..4096u32).map(|j| (j as u8) ^ i).collect();
        let (id, blob) = encode_blob(&data, 0);
        w.store(&id, &blob).unwrap();
        ids.push(id);
    }
    drop(w);
    for id in &ids {
        ds.chunks().read(id).unwrap();
    }
    let cached: u64 = walk_sizes(&ds.root().join("cache"));
    assert!(cached <= 64 << 10, "cache holds {cached} bytes");
    // Damage one object in the bucket: the cached copy does not hide it.
    let key = chunk_key(&ids[39]);
    let mut blob = b.get(&key).unwrap().unwrap();
    let last = blob.len() - 1;
    blob[last] ^= 0xff;
    b.put(&key, blob).unwrap();
    assert!(matches!(ds.chunks().check(&ids[39]), Err(StoreError::ChunkCorrupt { .. })));
    let moved = ds.chunks().quarantine(&ids[39], 1_700_000_000).unwrap().unwrap();
    assert!(moved.to_string_lossy().contains("quarantine/"));
    assert!(b.get(&key).unwrap().is_none());
    assert_eq!(keys(&b, "quarantine").len(), 1);
    assert!(!ds.chunks().has(&ids[39]).unwrap());
}

fn walk_sizes(dir: &std::path::Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        n += if m.is_dir() { walk_sizes(&e.path()) } else { m.len() };
    }
    n
}

#[test]
fn a_hostile_key_in_the_bucket_never_becomes_a_path_outside_the_working_copy() {
    let dir = tempfile::tempdir().unwrap();
    let b = Bucket::memory();
    let ds = s3_store(&dir, "a", false, &b).unwrap();
    for key in [
        "snapshots/../../escape/manifest.json",
        "snapshots/host/x/../../../../escape2/manifest.json",
        "snapshots//host/manifest.json",
    ] {
        b.put(key, b"{}".to_vec()).unwrap();
    }
    ds.sync_from_bucket(true).unwrap();
    assert!(!dir.path().join("escape").exists() && !dir.path().join("escape2").exists());
    assert!(ds.list_snapshots().unwrap().is_empty());
}

#[test]
fn gc_beside_a_running_backup_keeps_what_it_uploaded_and_what_it_reuses() {
    let dir = tempfile::tempdir().unwrap();
    let b = Bucket::memory();
    let ds = s3_store(&dir, "a", false, &b).unwrap();
    let w = ds.begin_backup(&group("web")).unwrap();
    let old = put(&w, b"in an old snapshot");
    let first = commit(w, &[(old, 18)], 1_700_000_000);
    let w = ds.begin_backup(&group("web")).unwrap();
    let new = put(&w, b"uploaded by a running backup");
    assert!(w.reference(&old).unwrap());
    // The old snapshot goes, and gc runs while the backup still runs.
    ds.remove_snapshot(&first).unwrap();
    let st = ds.collect_garbage(&mut |_| {}).unwrap();
    assert_eq!(st.removed_chunks, 0, "{st:?}");
    commit(w, &[(old, 18), (new, 28)], 1_700_000_100);
    let st = ds.collect_garbage(&mut |_| {}).unwrap();
    assert_eq!((st.removed_chunks, st.kept_chunks), (0, 2), "{st:?}");
    assert_eq!(keys(&b, "chunks").len(), 2);
    assert_eq!(ds.chunks().read(&old).unwrap(), b"in an old snapshot");
}
