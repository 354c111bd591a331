//! `cairn tape` on a virtual library: snapshots written to pools of
//! file-backed cartridges, spanning cartridges, read back by `cairn tape
//! restore`, by `cairn volume extract` and by Bacula's `bextract` given
//! the cartridge files in order; WORM and cleaning cartridges, a label
//! destroyed mid-set, just-in-time drives, and the media catalog rebuilt
//! from the cartridges.

use std::path::{Path, PathBuf};

use serde_json::Value;
use testkit::Need;

use crate::support::{Store, run, run_json, run_ok, until_logged};

/// A virtual library of 2 MiB cartridges (1 MiB before the early
/// warning) in the store's directory.
fn library(store: &Store, extra: &[&str]) -> PathBuf {
    let lib = store.path("library");
    run_ok(
        store
            .cmd()
            .args(["tape", "library", "create"])
            .arg(&lib)
            .args(["--drives", "2", "--slots", "10", "--capacity", "2M"])
            .args(extra),
    );
    lib
}

fn tape(store: &Store, lib: &Path) -> std::process::Command {
    let mut c = store.cmd();
    c.arg("tape").arg("--library").arg(lib);
    c
}

fn pool(store: &Store, name: &str, extra: &[&str]) {
    run_ok(store.cmd().args(["tape", "pool", "add", name]).args(extra));
}

fn media(store: &Store) -> Value {
    run_json(store.cmd().args(["tape", "media", "--json"]))
}

/// A tape job in the background whose log is read as it comes, so that
/// a test knows when the job has begun to wait for a drive instead of
/// guessing how long starting takes on a busy machine.
struct Background {
    child: std::process::Child,
    waiting: std::sync::mpsc::Receiver<()>,
    /// The job's log so far.
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

/// What the deck logs when every drive is in use.
const WAITING: &str = "every drive is in use: waiting for one";

fn background(cmd: &mut std::process::Command) -> Background {
    use std::io::BufRead;
    let mut child = cmd
        .env("CAIRN_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, waiting) = std::sync::mpsc::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line);
                if line.contains(WAITING) {
                    let _ = tx.send(());
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        })
    };
    Background { child, waiting, log, reader }
}

impl Background {
    /// Block until the job logs that it waits for a drive; fail, showing
    /// its log, if it ends first or takes over two minutes.
    fn until_waiting(&self) {
        if let Err(e) = self.waiting.recv_timeout(std::time::Duration::from_secs(120)) {
            panic!("the job never waited for a drive ({e}); its log:\n{}", self.log.lock().unwrap());
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The job's JSON report, once it has ended well.
    fn report(self) -> Value {
        let out = self.child.wait_with_output().unwrap();
        self.reader.join().unwrap();
        let log = self.log.lock().unwrap();
        assert!(out.status.success(), "{}: {log}", out.status);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {log}"))
    }
}

/// Regular files under `root`, relative, with their bytes.
fn files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.strip_prefix(root).unwrap().to_owned(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn same_files(a: &Path, b: &Path, what: &str) {
    let (fa, fb) = (files(a), files(b));
    assert!(!fa.is_empty(), "{what}: the source has files");
    assert_eq!(
        fa.iter().map(|f| &f.0).collect::<Vec<_>>(),
        fb.iter().map(|f| &f.0).collect::<Vec<_>>(),
        "{what}: the same names"
    );
    for ((name, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(x == y, "{what}: {} differs", name.display());
    }
}

/// A snapshot larger than a cartridge spans several: it comes back byte
/// for byte from `cairn tape restore`, from `cairn volume extract` and
/// Bacula's `bextract` given the cartridge files in order, and into a new
/// datastore whose media catalog was rebuilt from the cartridges alone.
#[test]
fn a_session_spans_cartridges_and_reads_back_whole_every_way() {
    let store = Store::new();
    let src = store.path("src");
    testkit::write_random_tree(&src, 12, 3 << 20, 41);
    let id = store.backup(&src, "host/big", "2026-04-01T00:00:00Z");
    let lib = library(&store, &[]);
    pool(&store, "weekly", &[]);

    let r = run_json(tape(&store, &lib).args([
        "backup",
        &id,
        "--pool",
        "weekly",
        "--block-size",
        "64K",
        "--json",
    ]));
    let parts = r["sessions"][0]["parts"].as_array().expect("parts").clone();
    assert!(parts.len() >= 3, "3 MiB of random data spans cartridges of 1 MiB to the warning: {r}");
    assert_eq!(parts[0], serde_json::json!(["CRN001L9", 1]), "after the label's file: {r}");
    for p in &parts[1..] {
        assert_eq!(p[1], 1, "a continuation starts after its cartridge's label: {r}");
    }
    let barcodes: Vec<String> = parts.iter().map(|p| p[0].as_str().unwrap().to_owned()).collect();
    assert_eq!(r["media"].as_array().unwrap().len(), barcodes.len(), "{r}");

    // Every cartridge but the last is full; each names the one before.
    let m = media(&store);
    for (i, b) in barcodes.iter().enumerate() {
        let row = m["media"].as_array().unwrap().iter().find(|x| x["barcode"] == b.as_str()).expect("a row");
        let want = if i + 1 < barcodes.len() { "full" } else { "writable" };
        assert_eq!(row["state"], want, "{b}: {m}");
        assert_eq!(row["seq"], i as u64 + 1, "{b}: {m}");
    }

    let out = store.path("out-tape");
    let done = run_json(tape(&store, &lib).args(["restore", &id, "--json"]).arg(&out));
    assert_eq!(done["media"].as_array().unwrap().len(), barcodes.len(), "{done}");
    same_files(&src, &out, "cairn tape restore");

    // The cartridge files are volume files: cairn volume reads them in order.
    let carts: Vec<PathBuf> = barcodes.iter().map(|b| lib.join("cartridges").join(b)).collect();
    let out = store.path("out-volume");
    let r = run(store.cmd().args(["volume", "extract"]).args(&carts).arg(&out));
    assert_eq!(r.code, 0, "{r:?}");
    same_files(&src, &out, "cairn volume extract");

    if testkit::needs(Need::Bacula) {
        let bacula = testkit::bacula::Bacula::new(&lib.join("cartridges"), 1 << 20);
        let out = store.path("out-bacula");
        let said = bacula.extract(&barcodes.join("|"), &out).expect("bextract");
        same_files(&src, &out.join("src"), &format!("bextract\n{said}"));
    }

    // Disaster recovery: a new datastore, the media catalog rebuilt from
    // the cartridges, the snapshot put back from tape.
    let store2 = Store::new();
    run_ok(store2.cmd().arg("init"));
    let scan = run_json(tape(&store2, &lib).args(["scan", "--json"]));
    assert_eq!(scan["copies"], 1, "{scan}");
    let back = run_json(tape(&store2, &lib).args(["restore", &id, "--json"]));
    assert_eq!(back["state"], "added", "{back}");
    let out = store2.path("out");
    store2.restore(&id, &out, &[]);
    same_files(&src, &out, "restored from tape into a new datastore");
    run_ok(store2.cmd().args(["verify", &id]));
}

/// The media catalog (pools, cartridges, media sets, which snapshot is
/// where) rebuilt by `cairn tape scan` equals the one lost.
#[test]
fn the_media_catalog_rebuilt_from_the_cartridges_equals_the_one_lost() {
    let store = Store::new();
    let src = store.path("src");
    testkit::write_random_tree(&src, 6, 1536 << 10, 7);
    let a = store.backup(&src, "host/a", "2026-04-01T00:00:00Z");
    std::fs::write(src.join("more"), vec![7u8; 300 << 10]).unwrap();
    let b = store.backup(&src, "host/a", "2026-04-02T00:00:00Z");
    let small = store.path("small");
    testkit::write_random_tree(&small, 3, 100 << 10, 8);
    let c = store.backup(&small, "host/c", "2026-04-03T00:00:00Z");
    let lib = library(&store, &["--worm", "2"]);
    pool(&store, "cont", &[]);
    pool(&store, "sets", &["--allocation", "new-set", "--retention", "30d"]);
    pool(&store, "vault", &["--worm"]);
    run_ok(tape(&store, &lib).args(["backup", &a, "--pool", "cont", "--block-size", "64K"]));
    run_ok(tape(&store, &lib).args(["backup", &c, "--pool", "cont"]));
    run_ok(tape(&store, &lib).args(["backup", &b, &c, "--pool", "sets", "--block-size", "128K"]));
    run_ok(tape(&store, &lib).args(["backup", &c, "--pool", "vault"]));
    let before = media(&store);
    assert_eq!(before["copies"].as_array().unwrap().len(), 5, "{before}");
    assert_eq!(before["sets"].as_array().unwrap().len(), 3, "{before}");

    // The catalog is lost (the datastore rebuilds its snapshot rows, not
    // the media catalog).
    std::fs::remove_file(store.ds.join("catalog.redb")).unwrap();
    let empty = media(&store);
    assert_eq!(empty["media"], serde_json::json!([]), "{empty}");
    assert_eq!(empty["pools"], serde_json::json!([]), "{empty}");

    run_ok(tape(&store, &lib).arg("scan"));
    let after = media(&store);
    for key in ["pools", "media", "sets", "copies"] {
        assert_eq!(after[key], before[key], "{key} after the scan:\n{after}\nbefore:\n{before}");
    }
}

/// A cartridge whose label was destroyed is marked in error when the job
/// comes to append to it, and the job goes on on a blank cartridge in
/// the same media set; a cartridge written elsewhere is never overwritten.
#[test]
fn a_destroyed_label_mid_set_is_marked_and_the_job_goes_on() {
    let store = Store::new();
    let src = store.path("src");
    testkit::write_random_tree(&src, 3, 200 << 10, 3);
    let a = store.backup(&src, "host/a", "2026-04-01T00:00:00Z");
    std::fs::write(src.join("new"), b"new file").unwrap();
    let b = store.backup(&src, "host/a", "2026-04-02T00:00:00Z");
    let lib = library(&store, &[]);
    pool(&store, "p", &[]);
    run_ok(tape(&store, &lib).args(["backup", &a, "--pool", "p"]));
    let first = lib.join("cartridges/CRN001L9");
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[40] ^= 0xff;
    std::fs::write(&first, &bytes).unwrap();

    let r = run(tape(&store, &lib).args(["backup", &b, "--pool", "p", "--json"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("CRN001L9") && r.stderr.contains("label cannot be read"), "{r:?}");
    let m = media(&store);
    let row = |b: &str| m["media"].as_array().unwrap().iter().find(|x| x["barcode"] == b).cloned().expect(b);
    assert_eq!(row("CRN001L9")["state"], "error", "{m}");
    assert_eq!(row("CRN002L9")["state"], "writable", "{m}");
    assert_eq!(row("CRN002L9")["set"], row("CRN001L9")["set"], "the same media set: {m}");
    assert_eq!(std::fs::read(&first).unwrap(), bytes, "the damaged cartridge was not written");
    let out = store.path("out");
    run_ok(tape(&store, &lib).args(["restore", &b]).arg(&out));
    same_files(&src, &out, "the snapshot written after the error");

    // A cartridge holding someone else's volume is passed over, untouched.
    let foreign = lib.join("cartridges/CRN003L9");
    run_ok(
        store.cmd().args(["volume", "write", &a, "--label", "CRN003L9", "--to"]).arg(store.path("elsewhere")),
    );
    std::fs::copy(store.path("elsewhere"), &foreign).unwrap();
    let index: Vec<u8> = {
        let len = std::fs::metadata(&foreign).unwrap().len();
        let blocks = len / (256 << 10) + 1;
        let mut idx = Vec::new();
        let mut left = len;
        for _ in 0..blocks {
            let n = left.min(256 << 10) as u32;
            if n > 0 {
                idx.extend(n.to_le_bytes());
            }
            left -= u64::from(n);
        }
        idx
    };
    std::fs::write(lib.join("cartridges/CRN003L9.index"), &index).unwrap();
    let before = std::fs::read(&foreign).unwrap();
    run_ok(tape(&store, &lib).args(["label", "CRN004L9", "--pool", "p"]));
    let c = store.backup(&src, "host/a", "2026-04-03T00:00:00Z");
    run_ok(tape(&store, &lib).args(["backup", &c, "--pool", "p"]));
    assert_eq!(std::fs::read(&foreign).unwrap(), before, "a foreign cartridge was written");
    let r = run(tape(&store, &lib).args(["label", "CRN003L9", "--pool", "p"]));
    assert_eq!(r.code, 1, "{r:?}");
}

/// A WORM cartridge is never written again: not relabelled, and not
/// recycled when its set expires, while a plain cartridge of an expired
/// set is; a cleaning cartridge is never chosen.
#[test]
fn worm_and_cleaning_cartridges_are_never_reused() {
    let store = Store::new();
    let src = store.path("src");
    testkit::write_random_tree(&src, 3, 100 << 10, 5);
    let lib = store.path("library");
    run_ok(store.cmd().args(["tape", "library", "create"]).arg(&lib).args([
        "--drives",
        "1",
        "--slots",
        "4",
        "--capacity",
        "1M",
        "--cartridges",
        "3",
        "--worm",
        "1",
        "--cleaning",
        "1",
    ]));
    pool(&store, "plain", &["--allocation", "new-set", "--retention", "0"]);
    pool(&store, "worm", &["--allocation", "new-set", "--retention", "0", "--worm"]);
    let ids: Vec<String> =
        (1..=3).map(|d| store.backup(&src, "host/w", &format!("2026-04-0{d}T00:00:00Z"))).collect();

    // The WORM pool takes the WORM cartridge, and never again once full.
    let r = run_json(tape(&store, &lib).args(["backup", &ids[0], "--pool", "worm", "--json"]));
    assert_eq!(r["media"], serde_json::json!(["CRN003LZ"]), "{r}");
    let worm = std::fs::read(lib.join("cartridges/CRN003LZ")).unwrap();
    let r = run(tape(&store, &lib).args(["backup", &ids[1], "--pool", "worm"]));
    assert_eq!(r.code, 1, "its set expired, yet a WORM cartridge is not recycled: {r:?}");
    assert!(r.stderr.contains("no cartridge"), "{r:?}");
    assert!(!r.stderr.contains("CLN001L1"), "the cleaning cartridge was never tried: {r:?}");
    let r = run(tape(&store, &lib).args(["label", "CRN003LZ", "--pool", "worm"]));
    assert_eq!(r.code, 1, "relabelling a WORM cartridge: {r:?}");
    assert_eq!(std::fs::read(lib.join("cartridges/CRN003LZ")).unwrap(), worm, "the WORM cartridge changed");

    // A plain pool with a zero retention recycles its own expired set.
    let r = run_json(tape(&store, &lib).args(["backup", &ids[0], "--pool", "plain", "--json"]));
    assert_eq!(r["media"], serde_json::json!(["CRN001L9"]), "{r}");
    let r = run_json(tape(&store, &lib).args(["backup", &ids[1], "--pool", "plain", "--json"]));
    assert_eq!(
        r["media"],
        serde_json::json!(["CRN001L9"]),
        "the expired set's cartridge is written again: {r}"
    );
    let m = media(&store);
    let copies: Vec<&str> = m["copies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["pool"] == "plain")
        .map(|c| c["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(copies, [ids[1].as_str()], "the overwritten copy is gone from the catalog: {m}");
    let inv = run_json(tape(&store, &lib).args(["inventory", "--json"]));
    let cln =
        inv.as_array().unwrap().iter().find(|e| e["barcode"] == "CLN001L1").expect("the cleaning cartridge");
    assert_eq!((cln["kind"].as_str(), cln["state"].as_str()), (Some("slot"), Some("cleaning")), "{inv}");
}

/// Drives are reserved just in time: a job with nothing to write never
/// opens one, a job takes the drive that is free, and waits while none is.
#[test]
fn drives_are_reserved_just_in_time() {
    let store = Store::new();
    let src = store.path("src");
    testkit::write_random_tree(&src, 3, 100 << 10, 9);
    let a = store.backup(&src, "host/j", "2026-04-01T00:00:00Z");
    let lib = library(&store, &[]);
    pool(&store, "p", &[]);
    run_ok(tape(&store, &lib).args(["backup", &a, "--pool", "p"]));

    // Both drives held elsewhere: a job with nothing to write (its snapshot
    // is in the pool already) still finishes, touching no drive.
    let vlib = tape::Library::open(&lib).unwrap();
    let v = vlib.as_virtual().unwrap();
    let d0 = v.drive(0).unwrap();
    let d1 = v.drive(1).unwrap();
    let r = run_json(tape(&store, &lib).args(["backup", &a, "--pool", "p", "--json"]));
    assert_eq!(
        (r["sessions"].as_array().unwrap().len(), r["drives"].clone()),
        (0, serde_json::json!([])),
        "{r}"
    );

    // Drive 0 held: the job takes drive 1.
    drop(d1);
    let b = store.backup(&src, "host/j", "2026-04-02T00:00:00Z");
    let r = run_json(tape(&store, &lib).args(["backup", &b, "--pool", "p", "--json"]));
    assert_eq!(r["drives"], serde_json::json!([1]), "{r}");

    // Every drive held: the job waits until one comes free.
    let d1 = v.drive(1).unwrap();
    let c = store.backup(&src, "host/j", "2026-04-03T00:00:00Z");
    let mut job = background(tape(&store, &lib).args(["backup", &c, "--pool", "p", "--json"]));
    job.until_waiting();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    assert!(job.running(), "the job waits for a drive");
    drop(d0);
    let r = job.report();
    assert_eq!(r["drives"], serde_json::json!([0]), "{r}");
    assert!(r["drive_wait_secs"].as_f64().unwrap() >= 1.0, "{r}");
    drop(d1);
}

/// Tape jobs over the API run as tasks with logs, under the access levels
/// of the route table: an auditor reads the library, only an admin adds a
/// pool, an operator writes a group to it and puts a snapshot back into the
/// datastore from tape, a backup client sees nothing of the library.
#[test]
fn tape_jobs_over_the_api_run_as_tasks_with_logs() {
    use crate::serve::{Server, pinned_client, token};
    let store = Store::new();
    let src = store.path("src");
    testkit::write_random_tree(&src, 4, 300 << 10, 12);
    let id = store.backup(&src, "host/api", "2026-05-01T00:00:00Z");
    let lib = library(&store, &[]);
    let server = Server::start_with(&store, &["--tape-library", &lib.display().to_string()]);
    let client = pinned_client(&server.fingerprint);
    let admin = token(&store, "adm", "admin", None);
    let operator = token(&store, "ops", "operator", None);
    let auditor = token(&store, "aud", "auditor", None);
    let backup_client = token(&store, "bc", "backup-client", Some("host/api"));

    let get = |t: &str, path: &str| client.get(server.url(path)).bearer_auth(t).send().unwrap();
    let post = |t: &str, path: &str, body: Value| {
        client.post(server.url(path)).bearer_auth(t).json(&body).send().unwrap()
    };
    assert_eq!(get(&backup_client, "/api/v1/tape").status(), 403);
    let pool = serde_json::json!({"name": "api", "allocation": "continue"});
    assert_eq!(post(&operator, "/api/v1/tape/pools", pool.clone()).status(), 403, "only an admin adds pools");
    assert_eq!(post(&admin, "/api/v1/tape/pools", pool).status(), 201);
    let bad =
        post(&operator, "/api/v1/tape/backup", serde_json::json!({"pool": "nope", "groups": ["host/api"]}));
    assert_eq!(bad.status(), 400);

    let wait = |task: u64| server.ended_task(&client, &auditor, task, 60);
    let started =
        post(&operator, "/api/v1/tape/backup", serde_json::json!({"pool": "api", "groups": ["host/api"]}));
    assert_eq!(started.status(), 202);
    let started: Value = started.json().unwrap();
    let task = wait(started["task"].as_u64().expect("a task id"));
    assert_eq!(task["state"], "ok", "{task}");
    let log = task["log"].to_string();
    assert!(log.contains(&format!("{id}: session 1")) && log.contains("CRN001L9 file 1"), "{task}");

    let shown: Value = get(&auditor, "/api/v1/tape").json().unwrap();
    let drives: Vec<&Value> =
        shown["elements"].as_array().unwrap().iter().filter(|e| e["kind"] == "drive").collect();
    assert_eq!(drives.len(), 2, "{shown}");
    assert_eq!(shown["copies"][0]["snapshot"], id.as_str(), "{shown}");
    assert_eq!(shown["pools"][0]["name"], "api", "{shown}");

    // The snapshot is lost from the datastore; the operator puts it back
    // from tape.
    let gone =
        client.delete(server.url(&format!("/api/v1/snapshots/{id}"))).bearer_auth(&operator).send().unwrap();
    assert_eq!(gone.status(), 204);
    assert_eq!(post(&auditor, "/api/v1/tape/restore", serde_json::json!({"snapshot": id})).status(), 403);
    let started: Value =
        post(&operator, "/api/v1/tape/restore", serde_json::json!({"snapshot": id})).json().unwrap();
    let task = wait(started["task"].as_u64().expect("a task id"));
    assert_eq!(task["state"], "ok", "{task}");
    assert!(task["log"].to_string().contains("is back in the datastore"), "{task}");
    let out = store.path("out");
    store.restore(&id, &out, &[]);
    same_files(&src, &out, "put back from tape over the API");
    let (status, _) = server.stop();
    assert!(status.success());
}

/// Two jobs writing to one pool at once share the mounted cartridge:
/// their sessions are interleaved block by block (as Bacula's storage
/// daemon interleaves jobs on a volume), and each is listed and restored
/// whole afterwards, by `cairn tape restore` and by Bacula's tools.
#[test]
fn two_jobs_append_to_one_mounted_volume_at_once() {
    use crate::serve::{Server, pinned_client, token};
    let store = Store::new();
    let (a_src, b_src) = (store.path("a"), store.path("b"));
    testkit::write_random_tree(&a_src, 8, 32 << 20, 51);
    testkit::write_random_tree(&b_src, 8, 32 << 20, 52);
    let a = store.backup(&a_src, "host/a", "2026-06-01T00:00:00Z");
    let b = store.backup(&b_src, "host/b", "2026-06-01T00:00:00Z");
    let lib = store.path("library");
    run_ok(store.cmd().args(["tape", "library", "create"]).arg(&lib).args([
        "--drives",
        "2",
        "--slots",
        "4",
        "--capacity",
        "1G",
    ]));
    pool(&store, "shared", &[]);
    let server = Server::start_with(&store, &["--tape-library", &lib.display().to_string(), "-v"]);
    let client = pinned_client(&server.fingerprint);
    let operator = token(&store, "ops", "operator", None);
    let post = |group: &str| -> u64 {
        let r: Value = client
            .post(server.url("/api/v1/tape/backup"))
            .bearer_auth(&operator)
            .json(&serde_json::json!({"pool": "shared", "groups": [group]}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        r["task"].as_u64().unwrap_or_else(|| panic!("{r}"))
    };
    // Both drives are busy elsewhere while the two jobs start: the first
    // waits for a drive with its first blocks ready, the second joins it
    // meanwhile, more than a second later (so the two jobs' clocks differ);
    // once a drive is free both write at once.
    let vlib = tape::Library::open(&lib).unwrap();
    let held = [vlib.as_virtual().unwrap().drive(0).unwrap(), vlib.as_virtual().unwrap().drive(1).unwrap()];
    // The server's log says when each step has happened, however slow the
    // machine: the first job waits, then the second has joined it.
    let log = store.path("serve.stderr");
    let ta = post("host/a");
    until_logged(&log, WAITING);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let tb = post("host/b");
    until_logged(&log, "pool shared is being written");
    drop(held);
    let wait = |task: u64| server.ended_task(&client, &operator, task, 120);
    let (ra, rb) = (wait(ta), wait(tb));
    assert_eq!((ra["state"].as_str(), rb["state"].as_str()), (Some("ok"), Some("ok")), "{ra}\n{rb}");
    let (_, printed) = server.stop();
    let _ = printed;

    // One cartridge, one drive: the second job's session went onto the
    // first one's cartridge, its blocks between the other's.
    let m = media(&store);
    let copies = m["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 2, "{m}");
    assert!(copies.iter().all(|c| c["parts"][0]["barcode"] == "CRN001L9"), "{m}");
    let data = std::fs::read(lib.join("cartridges/CRN001L9")).unwrap();
    let mut sessions = Vec::new();
    let mut at = 0;
    while at + 24 <= data.len() {
        let len = u32::from_be_bytes(data[at + 4..at + 8].try_into().unwrap()) as usize;
        let session = u32::from_be_bytes(data[at + 16..at + 20].try_into().unwrap());
        if session != 0 {
            sessions.push(session);
        }
        at += len;
    }
    let switches = sessions.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(switches >= 3, "the sessions' blocks interleave ({switches} switches): {sessions:?}");

    for (id, src) in [(&a, &a_src), (&b, &b_src)] {
        let out = store.path(&format!("out-{}", id.replace('/', "-")));
        run_ok(tape(&store, &lib).args(["restore", id]).arg(&out));
        same_files(src, &out, &format!("{id} restored from the interleaved volume"));
    }
    // `cairn volume` lists each session with its own snapshot and files,
    // and extracts each whole, from the cartridge file alone.
    let cartridge = lib.join("cartridges/CRN001L9");
    let listed = run_json(store.cmd().args(["volume", "ls", "--json"]).arg(&cartridge));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    for (n, s) in listed.iter().enumerate() {
        let (id, src) = if s["snapshot"] == a.as_str() { (&a, &a_src) } else { (&b, &b_src) };
        assert_eq!(s["snapshot"], id.as_str(), "{listed:?}");
        assert_eq!(s["files"], s["files_seen"], "each session's own files: {listed:?}");
        let out = store.path(&format!("out-volume-{n}"));
        run_ok(
            store
                .cmd()
                .args(["volume", "extract", "--session", &(n + 1).to_string()])
                .arg(&cartridge)
                .arg(&out),
        );
        same_files(src, &out, &format!("cairn volume extract --session {}", n + 1));
    }
    if testkit::needs(Need::Bacula) {
        let bacula = testkit::bacula::Bacula::new(&lib.join("cartridges"), 1 << 20);
        let listed = bacula.sessions("CRN001L9").expect("bls -j");
        assert_eq!(listed.len(), 2, "{listed:?}");
        // Sessions written at once share the writing job's VolSessionTime,
        // as a Bacula storage daemon's do: bextract, given one session,
        // stops at the first record of a session with a later time.
        assert_eq!(listed[0].session_time, listed[1].session_time, "{listed:?}");
        // Bacula restores one job of such a volume through a bootstrap
        // file naming its session.
        for (session, src) in listed.iter().zip([&a_src, &b_src]) {
            let out = store.path(&format!("out-bacula-{}", session.session_id));
            let said = bacula.extract_session("CRN001L9", session, &out).expect("bextract -b");
            let name = src.file_name().unwrap();
            same_files(
                src,
                &out.join(name),
                &format!("bextract -b of session {}\n{said}", session.session_id),
            );
        }
    }
}

/// One job spreads its snapshots over two drives at once: each drive
/// writes its own cartridge of the same media set, every snapshot comes
/// back whole, and the media catalog rebuilt from the cartridges is the
/// one the job wrote.
#[test]
fn one_job_writes_with_two_drives_at_once() {
    let store = Store::new();
    let (a_src, b_src) = (store.path("a"), store.path("b"));
    // Large enough that one drive's snapshot is still being written when
    // the other drive starts.
    testkit::write_random_tree(&a_src, 6, 64 << 20, 61);
    testkit::write_random_tree(&b_src, 6, 64 << 20, 62);
    let a = store.backup(&a_src, "host/a", "2026-07-01T00:00:00Z");
    let b = store.backup(&b_src, "host/b", "2026-07-01T00:00:00Z");
    let lib = store.path("library");
    run_ok(store.cmd().args(["tape", "library", "create"]).arg(&lib).args([
        "--drives",
        "2",
        "--slots",
        "4",
        "--capacity",
        "1G",
    ]));
    pool(&store, "wide", &[]);
    let r =
        run_json(tape(&store, &lib).args(["backup", &a, &b, "--pool", "wide", "--drives", "2", "--json"]));
    let mut drives: Vec<u64> = r["drives"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
    drives.sort();
    assert_eq!(drives, [0, 1], "{r}");
    let cartridges: Vec<&str> =
        r["sessions"].as_array().unwrap().iter().map(|s| s["parts"][0][0].as_str().unwrap()).collect();
    assert_eq!(cartridges.len(), 2, "{r}");
    assert_ne!(cartridges[0], cartridges[1], "each drive its own cartridge: {r}");
    let before = media(&store);
    let sets = before["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 1, "{before}");
    assert_eq!(sets[0]["media"].as_array().unwrap().len(), 2, "one set, both cartridges: {before}");
    for (id, src) in [(&a, &a_src), (&b, &b_src)] {
        let out = store.path(&format!("out-{}", id.replace('/', "-")));
        run_ok(tape(&store, &lib).args(["restore", id]).arg(&out));
        same_files(src, &out, id);
    }
    std::fs::remove_file(store.ds.join("catalog.redb")).unwrap();
    run_ok(tape(&store, &lib).arg("scan"));
    let after = media(&store);
    for key in ["pools", "media", "sets", "copies"] {
        assert_eq!(after[key], before[key], "{key} after the scan:\n{after}\nbefore:\n{before}");
    }
}

/// Two drives, three jobs at once: the one with nothing to write finishes
/// without a drive while both are busy elsewhere; the other two wait for
/// drives only once they have data, and then write in parallel, one
/// drive each.
#[test]
fn two_drives_serve_three_jobs_just_in_time() {
    let store = Store::new();
    let (a_src, b_src) = (store.path("a"), store.path("b"));
    testkit::write_random_tree(&a_src, 8, 48 << 20, 71);
    testkit::write_random_tree(&b_src, 8, 48 << 20, 72);
    let a = store.backup(&a_src, "host/a", "2026-08-01T00:00:00Z");
    let b = store.backup(&b_src, "host/b", "2026-08-01T00:00:00Z");
    let lib = store.path("library");
    run_ok(store.cmd().args(["tape", "library", "create"]).arg(&lib).args([
        "--drives",
        "2",
        "--slots",
        "6",
        "--capacity",
        "1G",
    ]));
    pool(&store, "one", &[]);
    pool(&store, "two", &[]);
    run_ok(tape(&store, &lib).args(["backup", &a, "--pool", "two"]));

    let vlib = tape::Library::open(&lib).unwrap();
    let held = [vlib.as_virtual().unwrap().drive(0).unwrap(), vlib.as_virtual().unwrap().drive(1).unwrap()];
    let spawn =
        |id: &str, pool: &str| background(tape(&store, &lib).args(["backup", id, "--pool", pool, "--json"]));
    let (ja, jb, jc) = (spawn(&a, "one"), spawn(&b, "two"), spawn(&a, "two"));
    let c = jc.report();
    assert_eq!(
        (c["drives"].clone(), c["skipped"].clone()),
        (serde_json::json!([]), serde_json::json!([a])),
        "{c}"
    );
    // Both others have data by now and wait: hold the drives a second more.
    ja.until_waiting();
    jb.until_waiting();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    drop(held);
    let (ra, rb) = (ja.report(), jb.report());
    for r in [&ra, &rb] {
        assert_eq!(r["sessions"].as_array().unwrap().len(), 1, "{r}");
        assert!(r["drive_wait_secs"].as_f64().unwrap() >= 1.0, "it waited for a drive: {r}");
    }
    assert_ne!(ra["drives"], rb["drives"], "one drive each:\n{ra}\n{rb}");
}

/// A tape job killed in the middle of a session leaves blocks after the
/// cartridge's last filemark and no copy in the catalog: nothing of it is
/// listed as on tape, the next job ends the cut file with a filemark and
/// writes its session in a file of its own, and both restore and scan
/// pass over the cut session.
#[test]
fn a_session_cut_short_on_tape_is_never_listed_and_the_next_job_goes_on() {
    let store = Store::new();
    let src = store.path("src");
    testkit::write_random_tree(&src, 3, 400 << 10, 81);
    let a = store.backup(&src, "host/cut", "2026-09-01T00:00:00Z");
    std::fs::write(src.join("more"), vec![9u8; 100 << 10]).unwrap();
    let b = store.backup(&src, "host/cut", "2026-09-02T00:00:00Z");
    let lib = library(&store, &[]);
    pool(&store, "p", &[]);
    run_ok(tape(&store, &lib).args(["backup", &a, "--pool", "p"]));

    // What a job killed mid-session leaves: the start of a session (here,
    // a copy of the first session's first blocks) after the last filemark,
    // and no row in the catalog.
    let data_path = lib.join("cartridges/CRN001L9");
    let index_path = lib.join("cartridges/CRN001L9.index");
    let data = std::fs::read(&data_path).unwrap();
    let index = std::fs::read(&index_path).unwrap();
    let objects: Vec<u32> = index.chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
    // Objects: label, filemark, the session's blocks, filemark.
    assert_eq!((objects[1], *objects.last().unwrap()), (0, 0), "{objects:?}");
    let first: usize = objects[0] as usize;
    // The session's first block only: its end label is in a later one.
    assert!(objects.len() > 4, "the first session takes more than one block: {objects:?}");
    let cut: Vec<u32> = objects[2..3].to_vec();
    // The cut session is session 2, of a later job (another session time).
    let mut grown = data.clone();
    let mut at = first;
    for n in &cut {
        let mut block = data[at..at + *n as usize].to_vec();
        let number = u32::from_be_bytes(block[8..12].try_into().unwrap());
        let time = u32::from_be_bytes(block[20..24].try_into().unwrap());
        volfmt::block::seal(&mut block, number, 2, time + 60);
        grown.extend_from_slice(&block);
        at += *n as usize;
    }
    let mut grown_index = index.clone();
    for n in &cut {
        grown_index.extend(n.to_le_bytes());
    }
    std::fs::write(&data_path, &grown).unwrap();
    std::fs::write(&index_path, &grown_index).unwrap();
    assert_eq!(media(&store)["copies"].as_array().unwrap().len(), 1);

    let r = run(tape(&store, &lib).args(["backup", &b, "--pool", "p", "--json"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("cut short"), "{r:?}");
    let report: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        report["sessions"][0]["parts"][0],
        serde_json::json!(["CRN001L9", 3]),
        "file 2 holds the cut session: {report}"
    );
    let out = store.path("out");
    run_ok(tape(&store, &lib).args(["restore", &b]).arg(&out));
    same_files(&src, &out, "the session after the cut one");
    let before = media(&store);
    std::fs::remove_file(store.ds.join("catalog.redb")).unwrap();
    run_ok(tape(&store, &lib).arg("scan"));
    let after = media(&store);
    assert_eq!(after["copies"], before["copies"], "the cut session is not taken for a copy");
}

/// A drive that says it needs cleaning is cleaned with the library's
/// cleaning cartridge when a job takes it, before any data goes through
/// it; the cleaning cartridge goes back to its slot and holds no data.
#[test]
fn a_drive_that_needs_cleaning_is_cleaned_before_a_job_writes() {
    let store = Store::new();
    let src = store.path("src");
    testkit::write_random_tree(&src, 3, 200 << 10, 91);
    let id = store.backup(&src, "host/clean", "2026-10-01T00:00:00Z");
    let lib = library(&store, &["--cleaning", "1"]);
    pool(&store, "p", &[]);
    let vlib = tape::Library::open(&lib).unwrap();
    let v = vlib.as_virtual().unwrap();
    v.set_needs_cleaning(0, true).unwrap();
    let other = v.drive(1).unwrap();
    let r = run_json(tape(&store, &lib).args(["backup", &id, "--pool", "p", "--json"]));
    drop(other);
    assert_eq!(r["drives"], serde_json::json!([0]), "{r}");
    assert_eq!(r["cleaned"], serde_json::json!(["drive 0 with CLN001L1"]), "{r}");
    assert_eq!(r["media"], serde_json::json!(["CRN001L9"]), "{r}");
    let mut d = v.drive(0).unwrap();
    use tape::Drive;
    assert!(!d.status().unwrap().cleaning_needed, "the drive is clean");
    let inv = run_json(tape(&store, &lib).args(["inventory", "--json"]));
    let cln = inv.as_array().unwrap().iter().find(|e| e["barcode"] == "CLN001L1").unwrap();
    assert_eq!(cln["kind"], "slot", "{inv}");
    assert_eq!(std::fs::metadata(lib.join("cartridges/CLN001L1")).unwrap().len(), 0, "no data on it");
    // By hand: `cairn tape clean`, whatever the drive says.
    v.set_needs_cleaning(1, true).unwrap();
    let said = run_ok(tape(&store, &lib).args(["clean", "--drive", "1"]));
    assert_eq!(said.trim(), "drive 1 cleaned with CLN001L1");
    assert!(!v.drive(1).unwrap().status().unwrap().cleaning_needed);
    // A clean drive is not cleaned again.
    drop(d);
    let b = store.backup(&src, "host/clean", "2026-10-02T00:00:00Z");
    let r = run_json(tape(&store, &lib).args(["backup", &b, "--pool", "p", "--json"]));
    assert!(r.get("cleaned").is_none(), "{r}");
}

/// A job that runs out of cartridges mid-session fails with a clear
/// error and lists nothing of the cut session as on tape; the full
/// cartridge is recorded as full.
#[test]
fn a_job_out_of_cartridges_fails_and_lists_nothing_cut() {
    let store = Store::new();
    let src = store.path("src");
    testkit::write_random_tree(&src, 6, 4 << 20, 95);
    let id = store.backup(&src, "host/big", "2026-11-01T00:00:00Z");
    let lib = store.path("library");
    run_ok(store.cmd().args(["tape", "library", "create"]).arg(&lib).args([
        "--drives",
        "1",
        "--slots",
        "2",
        "--cartridges",
        "1",
        "--capacity",
        "2M",
    ]));
    pool(&store, "p", &[]);
    let r = run(tape(&store, &lib).args(["backup", &id, "--pool", "p", "--block-size", "64K"]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("no cartridge in the library can be written for pool p"), "{r:?}");
    let m = media(&store);
    assert_eq!(m["copies"], serde_json::json!([]), "{m}");
    assert_eq!(m["media"][0]["barcode"], "CRN001L9", "{m}");
    assert_eq!(m["media"][0]["state"], "full", "{m}");
}
