//! Tests of the public catalog API against real redb files in temp dirs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use model::{ArchiveKind, ArchiveSummary, BackupGroup, Namespace, SnapshotId, SnapshotInfo, VerifyState};
use redb::{Database, ReadableDatabase};

use super::*;
use crate::schema::{META, SCHEMA_VERSION_KEY};

fn group(ns: &str, kind: &str, id: &str) -> BackupGroup {
    BackupGroup::new(Namespace::parse(ns).unwrap(), kind, id).unwrap()
}

fn info(id: SnapshotId) -> SnapshotInfo {
    SnapshotInfo {
        id,
        tags: vec![],
        size: 0,
        stored: 0,
        duration_ms: 0,
        files: 0,
        errors: 0,
        protected: false,
        notes: String::new(),
        verify: VerifyState::None,
        verify_time: None,
        archives: vec![],
    }
}

fn full_info() -> SnapshotInfo {
    SnapshotInfo {
        id: group("prod/eu", "host", "web01").at(1_795_000_000),
        tags: vec!["daily".into(), "weekly".into()],
        size: 10 << 30,
        stored: 123_456_789,
        duration_ms: 61_000,
        files: 42_000,
        errors: 3,
        protected: true,
        notes: "before the upgrade\nsecond line \u{e9}".into(),
        verify: VerifyState::Failed,
        verify_time: Some(1_795_100_000),
        archives: vec![
            ArchiveSummary { name: "root".into(), kind: ArchiveKind::File, size: 9 << 30 },
            ArchiveSummary { name: "disk0".into(), kind: ArchiveKind::Image, size: 1 << 30 },
        ],
    }
}

fn ids(infos: &[SnapshotInfo]) -> Vec<String> {
    infos.iter().map(|i| i.id.to_string()).collect()
}

fn temp_catalog() -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::open(&dir.path().join(FILE_NAME)).unwrap();
    (dir, cat)
}

#[test]
fn full_row_round_trips() {
    let (_dir, cat) = temp_catalog();
    let full = full_info();
    assert_eq!(cat.get_snapshot(&full.id).unwrap(), None);
    cat.upsert_snapshot(&full).unwrap();
    assert_eq!(cat.get_snapshot(&full.id).unwrap(), Some(full.clone()));

    let changed = SnapshotInfo { notes: "changed".into(), archives: vec![], ..full.clone() };
    cat.upsert_snapshot(&changed).unwrap();
    assert_eq!(cat.list_snapshots(None).unwrap(), vec![changed]);
}

#[test]
fn listing_is_sorted_and_filters_by_group() {
    let (_dir, cat) = temp_catalog();
    let web = group("", "host", "web01");
    let inserted = [
        web.at(300),
        group("", "vm", "100").at(5),
        web.at(100),
        group("lab", "host", "web01").at(1),
        group("", "ct", "100").at(7),
        group("", "host", "web01-old").at(50),
        web.at(-20),
        web.at(200),
    ];
    for id in &inserted {
        cat.upsert_snapshot(&info(id.clone())).unwrap();
    }
    let mut expect: Vec<SnapshotId> = inserted.to_vec();
    expect.sort();
    let all = cat.list_snapshots(None).unwrap();
    assert_eq!(all.iter().map(|i| i.id.clone()).collect::<Vec<_>>(), expect);
    assert_eq!(cat.snapshot_ids().unwrap(), expect);
    assert_eq!(ids(&all)[0], "ct/100/1970-01-01T00:00:07Z");
    assert_eq!(ids(&all)[7], "ns/lab/host/web01/1970-01-01T00:00:01Z");

    let one = cat.list_snapshots(Some(&web)).unwrap();
    assert_eq!(one.iter().map(|i| i.id.time).collect::<Vec<_>>(), [-20, 100, 200, 300]);
    assert!(one.iter().all(|i| i.id.group == web));
    assert!(cat.list_snapshots(Some(&group("", "host", "nothing"))).unwrap().is_empty());
}

#[test]
fn remove_reports_whether_a_row_existed() {
    let (_dir, cat) = temp_catalog();
    let id = group("", "host", "a").at(1);
    cat.upsert_snapshot(&info(id.clone())).unwrap();
    assert!(cat.remove_snapshot(&id).unwrap());
    assert!(!cat.remove_snapshot(&id).unwrap());
    assert!(cat.snapshot_ids().unwrap().is_empty());
}

#[test]
fn replace_all_replaces_everything() {
    let (_dir, cat) = temp_catalog();
    let a = group("", "host", "a");
    for t in 0..5 {
        cat.upsert_snapshot(&info(a.at(t))).unwrap();
    }
    let fresh = vec![info(a.at(10)), full_info(), info(group("", "host", "b").at(3))];
    cat.replace_all(&fresh).unwrap();
    let mut expect = fresh.clone();
    expect.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(cat.list_snapshots(None).unwrap(), expect);

    cat.replace_all(&[]).unwrap();
    assert!(cat.list_snapshots(None).unwrap().is_empty());
}

#[test]
fn verify_and_protected_are_updated_in_place() {
    let (_dir, cat) = temp_catalog();
    let base = SnapshotInfo { protected: false, verify: VerifyState::None, verify_time: None, ..full_info() };
    cat.upsert_snapshot(&base).unwrap();

    cat.set_verify(&base.id, VerifyState::Ok, 1_800_000_000).unwrap();
    cat.set_protected(&base.id, true).unwrap();
    let got = cat.get_snapshot(&base.id).unwrap().unwrap();
    let expect = SnapshotInfo {
        verify: VerifyState::Ok,
        verify_time: Some(1_800_000_000),
        protected: true,
        ..base.clone()
    };
    assert_eq!(got, expect);
    cat.set_protected(&base.id, false).unwrap();
    assert!(!cat.get_snapshot(&base.id).unwrap().unwrap().protected);

    let unknown = group("", "host", "ghost").at(1);
    assert!(
        matches!(cat.set_verify(&unknown, VerifyState::Ok, 1), Err(CatalogError::NotFound(id)) if id == unknown)
    );
    assert!(matches!(cat.set_protected(&unknown, true), Err(CatalogError::NotFound(_))));
    assert_eq!(cat.get_snapshot(&unknown).unwrap(), None);
}

#[test]
fn reopen_keeps_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let full = full_info();
    {
        let cat = Catalog::open(&path).unwrap();
        cat.upsert_snapshot(&full).unwrap();
        cat.set_verify(&full.id, VerifyState::Ok, 7).unwrap();
    }
    let cat = Catalog::open(&path).unwrap();
    let got = cat.get_snapshot(&full.id).unwrap().unwrap();
    assert_eq!(got, SnapshotInfo { verify: VerifyState::Ok, verify_time: Some(7), ..full });
    assert_eq!(cat.path(), path);
}

#[test]
fn a_second_open_waits_for_the_first_to_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let first = Catalog::open(&path).unwrap();
    assert!(matches!(
        Catalog::open_waiting(&path, Duration::from_millis(50)),
        Err(CatalogError::Busy { .. })
    ));

    // The waiter's log says when it found the catalog busy: the first is
    // dropped only after that, so the second open has certainly waited.
    let waiter = open_once_busy(&path);
    assert!(!waiter.is_finished(), "second open did not wait for the first");
    first.upsert_snapshot(&full_info()).unwrap();
    let released = Instant::now();
    drop(first);
    let (opened, ids) = waiter.join().unwrap();
    assert!(opened >= released);
    assert_eq!(ids, vec![full_info().id]);
}

/// Open the catalog at `path` on a thread of its own, and return once
/// that open has logged that it found the catalog busy. The thread
/// answers when its open returned, and the snapshot ids it then read.
fn open_once_busy(path: &Path) -> thread::JoinHandle<(Instant, Vec<SnapshotId>)> {
    let (log_tx, log_rx) = mpsc::channel::<String>();
    let waiter = {
        let path = path.to_owned();
        thread::spawn(move || {
            let logs = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_writer(move || LineSender(log_tx.clone()))
                .finish();
            let cat = tracing::subscriber::with_default(logs, || Catalog::open(&path).unwrap());
            (Instant::now(), cat.snapshot_ids().unwrap())
        })
    };
    loop {
        let line = log_rx.recv_timeout(Duration::from_secs(30)).expect("the open never found it busy");
        if line.contains("catalog busy, waiting") {
            return waiter;
        }
    }
}

/// A log writer that sends what it is given to a channel.
struct LineSender(mpsc::Sender<String>);

impl std::io::Write for LineSender {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.send(String::from_utf8_lossy(buf).into_owned());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn busy_error_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let _held = Catalog::open(&path).unwrap();
    let started = Instant::now();
    let err = Catalog::open_waiting(&path, Duration::from_millis(250)).unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(matches!(err, CatalogError::Busy { .. }));
    assert!(err.to_string().contains("try again"), "{err}");
}

/// Set when this test binary runs as the child of `other_processes_are_waited_for`.
const HOLD_ENV: &str = "CAIRN_CATALOG_TEST_HOLD";

#[test]
fn other_processes_are_waited_for() {
    if let Ok(path) = std::env::var(HOLD_ENV) {
        // child: hold the catalog, announce it, and let go when told to
        let path = Path::new(&path);
        let cat = Catalog::open(path).unwrap();
        cat.upsert_snapshot(&full_info()).unwrap();
        std::fs::write(path.with_extension("held"), b"").unwrap();
        let started = Instant::now();
        while !path.with_extension("release").exists() && started.elapsed() < Duration::from_secs(120) {
            thread::sleep(Duration::from_millis(10));
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["tests::other_processes_are_waited_for", "--exact", "--test-threads=1"])
        .env(HOLD_ENV, &path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !path.with_extension("held").exists() {
        assert!(started.elapsed() < Duration::from_secs(30), "child never opened the catalog");
        thread::sleep(Duration::from_millis(10));
    }
    assert!(matches!(Catalog::open_waiting(&path, Duration::ZERO), Err(CatalogError::Busy { .. })));
    // The child lets go only once this process's open has found the
    // catalog busy (its log says so): that open has certainly waited.
    let waiter = open_once_busy(&path);
    std::fs::write(path.with_extension("release"), b"").unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(waiter.join().unwrap().1, vec![full_info().id]);
}

fn set_schema_version(path: &Path, version: u64) {
    let db = Database::create(path).unwrap();
    let write = db.begin_write().unwrap();
    write.open_table(META).unwrap().insert(SCHEMA_VERSION_KEY, version).unwrap();
    write.commit().unwrap();
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    drop(Catalog::open(&path).unwrap());
    set_schema_version(&path, 99);
    let err = Catalog::open(&path).unwrap_err();
    assert!(
        matches!(err, CatalogError::SchemaTooNew { found: 99, supported: SCHEMA_VERSION, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade cairn"), "{err}");

    set_schema_version(&path, 0);
    assert!(matches!(Catalog::open(&path), Err(CatalogError::SchemaUnsupported { found: 0, .. })));
}

#[test]
fn new_catalog_records_its_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    drop(Catalog::open(&path).unwrap());
    let db = Database::create(&path).unwrap();
    let read = db.begin_read().unwrap();
    let version = read.open_table(META).unwrap().get(SCHEMA_VERSION_KEY).unwrap().map(|v| v.value());
    assert_eq!(version, Some(SCHEMA_VERSION));
}

#[test]
fn unreadable_rows_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let id = group("", "host", "a").at(1);
    drop(Catalog::open(&path).unwrap());
    {
        let db = Database::create(&path).unwrap();
        let write = db.begin_write().unwrap();
        let garbage: &[u8] = b"{not json";
        write.open_table(SNAPSHOTS).unwrap().insert(snapshot_key(&id).as_str(), garbage).unwrap();
        write.commit().unwrap();
    }
    let cat = Catalog::open(&path).unwrap();
    let err = cat.get_snapshot(&id).unwrap_err();
    assert!(matches!(err, CatalogError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("cairn catalog rebuild"), "{err}");
    assert!(matches!(cat.list_snapshots(None), Err(CatalogError::Corrupt { .. })));
    // a rebuild heals it
    cat.replace_all(&[info(id.clone())]).unwrap();
    assert_eq!(cat.snapshot_ids().unwrap(), vec![id]);
}

#[test]
fn a_row_under_the_wrong_key_is_refused() {
    let (_dir, cat) = temp_catalog();
    let full = full_info();
    let other = group("", "host", "other").at(1);
    {
        let write = cat.db.begin_write().unwrap();
        let bytes = serde_json::to_vec(&SnapshotRowV1::from(&full)).unwrap();
        write.open_table(SNAPSHOTS).unwrap().insert(snapshot_key(&other).as_str(), bytes.as_slice()).unwrap();
        write.commit().unwrap();
    }
    assert!(matches!(cat.get_snapshot(&other), Err(CatalogError::Corrupt { .. })));
}

#[test]
fn pages_and_summaries_read_only_what_they_return() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::open(&dir.path().join("c.redb")).unwrap();
    let g = group("", "host", "a");
    for t in 0..10 {
        cat.upsert_snapshot(&SnapshotInfo { stored: 5, ..info(g.at(1_000 + t)) }).unwrap();
    }
    cat.upsert_snapshot(&info(group("", "host", "b").at(5))).unwrap();
    let (page, total) = cat.snapshot_page(&g, true, 2, 3).unwrap();
    assert_eq!(total, 10);
    assert_eq!(page.iter().map(|s| s.id.time).collect::<Vec<_>>(), [1_007, 1_006, 1_005]);
    let (page, _) = cat.snapshot_page(&g, false, 8, 5).unwrap();
    assert_eq!(page.iter().map(|s| s.id.time).collect::<Vec<_>>(), [1_008, 1_009]);
    let all = cat.snapshot_summaries(None).unwrap();
    assert_eq!(all.len(), 11);
    assert_eq!(cat.snapshot_summaries(Some(&g)).unwrap().iter().map(|s| s.stored).sum::<u64>(), 50);
}

#[test]
fn the_generation_moves_with_every_snapshot_write_and_only_then() {
    let (_dir, cat) = temp_catalog();
    let g = group("", "host", "a");
    let gen0 = cat.snapshots_generation().unwrap();
    cat.upsert_snapshot(&info(g.at(1))).unwrap();
    let gen1 = cat.snapshots_generation().unwrap();
    assert_ne!(gen0, gen1);
    cat.list_snapshots(None).unwrap();
    cat.snapshot_summaries(None).unwrap();
    assert_eq!(cat.snapshots_generation().unwrap(), gen1, "reads change nothing");
    cat.set_protected(&g.at(1), true).unwrap();
    let gen2 = cat.snapshots_generation().unwrap();
    assert_ne!(gen1, gen2);
    cat.replace_all(&[info(g.at(2))]).unwrap();
    let gen3 = cat.snapshots_generation().unwrap();
    assert_ne!(gen2, gen3);
    cat.remove_snapshot(&g.at(2)).unwrap();
    assert_ne!(cat.snapshots_generation().unwrap(), gen3);
}

/// The records of the golden catalog, as its generator writes them.
#[allow(dead_code)]
#[path = "../examples/golden_catalog.rs"]
mod golden_catalog;

fn min_reader(path: &Path) -> Option<u64> {
    let db = Database::create(path).unwrap();
    let read = db.begin_read().unwrap();
    read.open_table(META).unwrap().get(crate::schema::MIN_READER_KEY).unwrap().map(|v| v.value())
}

/// A catalog whose rows need a newer reader is refused with a message
/// that says to upgrade, instead of being read with fields dropped.
#[test]
fn a_catalog_needing_a_newer_reader_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    drop(Catalog::open(&path).unwrap());
    {
        let db = Database::create(&path).unwrap();
        let write = db.begin_write().unwrap();
        write.open_table(META).unwrap().insert(crate::schema::MIN_READER_KEY, READER_VERSION + 1).unwrap();
        write.commit().unwrap();
    }
    let err = Catalog::open(&path).unwrap_err();
    assert!(matches!(err, CatalogError::ReaderTooOld { reads: READER_VERSION, .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("written by a newer cairn") && text.contains("upgrade"), "{text}");
}

/// Writing a job row with the fields of reader version 2 records that in
/// the catalog; a plain row does not; removing the job lowers nothing.
#[test]
fn job_rows_with_newer_fields_raise_the_minimum_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let r = golden_catalog::records();
    let cat = Catalog::open(&path).unwrap();
    cat.put_job(&r.plain_job).unwrap();
    drop(cat);
    assert_eq!(min_reader(&path).unwrap_or(1), 1);
    let cat = Catalog::open(&path).unwrap();
    cat.put_job(&r.full_job).unwrap();
    assert!(cat.remove_job(&r.full_job.name).unwrap());
    drop(cat);
    assert_eq!(min_reader(&path), Some(2));
    assert_eq!(READER_VERSION, 2, "a new reader version needs a row of it in this test");
}

/// Job row fields by the reader version that added them. A field added to
/// `JobRowV1` must be added here under a new `READER_VERSION`, and
/// `reader_version()` must name it.
#[test]
fn job_row_fields_belong_to_a_reader_version() {
    const V1: &[&str] = &["name", "group", "sources", "schedule", "tags", "keep", "verify", "created"];
    const V2: &[&str] = &["intervals", "scheduler", "retention", "source"];
    let keys = |job: &model::Job| {
        let row = crate::row::JobRowV1::from(job);
        let value = serde_json::to_value(&row).unwrap();
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        (keys, row.reader_version())
    };
    let sorted = |lists: &[&[&str]]| {
        let mut all: Vec<String> = lists.concat().iter().map(|s| s.to_string()).collect();
        all.sort();
        all
    };
    let r = golden_catalog::records();
    assert_eq!(keys(&r.plain_job), (sorted(&[V1]), 1));
    assert_eq!(keys(&r.full_job), (sorted(&[V1, V2]), 2));
    // Each field of version 2 alone needs version 2.
    let plain = r.plain_job.clone();
    let alone = [
        model::Job { intervals: r.full_job.intervals.clone(), ..plain.clone() },
        model::Job { scheduler: r.full_job.scheduler.clone(), ..plain.clone() },
        model::Job { retention: r.full_job.retention.clone(), ..plain.clone() },
        model::Job { source: r.full_job.source.clone(), ..plain.clone() },
    ];
    for job in &alone {
        assert_eq!(keys(job).1, 2, "{job:?}");
    }
}

/// `tests/data/golden-catalog-v1/catalog.redb`, written by schema version 1
/// (reader version 2) with `examples/golden_catalog.rs`: every build opens
/// it and reads back every record.
#[test]
fn golden_catalog_v1_reads_every_record() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/golden-catalog-v1/catalog.redb");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    std::fs::copy(&fixture, &path).expect("the golden catalog is in tests/data");
    let want = golden_catalog::records();
    let cat = Catalog::open(&path).unwrap();
    assert_eq!(cat.list_users().unwrap(), vec![want.user]);
    assert_eq!(cat.list_tokens().unwrap(), vec![want.token]);
    assert_eq!(cat.get_session(&want.session.0).unwrap(), Some(want.session.1));
    let jobs = cat.list_jobs().unwrap();
    assert_eq!(jobs, vec![want.full_job, want.plain_job], "jobs by name");
    assert_eq!(cat.recent_tasks(10, None).unwrap(), vec![want.task]);
    assert_eq!(cat.list_snapshots(None).unwrap(), vec![want.snapshot]);
}
