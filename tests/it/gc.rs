//! Garbage collection frees what prune released and nothing else, and is
//! safe to run again and again while a large backup is writing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::{chunk_files, write_random_tree};

use crate::support::{Store, assert_same_tree, run_code, run_json, run_ok, u64_of};

const MIB: u64 = 1 << 20;

#[test]
fn gc_after_prune_frees_chunks_and_keeps_the_rest_whole() {
    let store = Store::new();
    let trees: Vec<_> = (0..3).map(|i| store.path(&format!("t{i}"))).collect();
    let mut ids = Vec::new();
    for (i, tree) in trees.iter().enumerate() {
        write_random_tree(tree, 20, 4 * MIB, 40 + i as u64);
        ids.push(store.backup(tree, "host/gc", &format!("2026-07-0{}T00:00:00Z", i + 1)));
    }
    let keep_other = store.backup(&trees[0], "host/other", "2026-07-01T00:00:00Z");
    let before = chunk_files(&store.ds).len() as u64;

    run_ok(store.cmd().args(["prune", "host/gc", "--keep-last", "1"]));
    let report = run_json(store.cmd().args(["gc", "--json"]));
    let removed = u64_of(&report, "removed_chunks");
    assert!(removed > 0 && u64_of(&report, "removed_bytes") >= 3 * MIB, "{report}");
    let after = chunk_files(&store.ds).len() as u64;
    assert_eq!(after, before - removed, "{report}");
    assert_eq!(u64_of(&report, "kept_chunks"), after, "{report}");
    assert!(u64_of(&report, "kept_bytes") > 0, "{report}");

    let again = run_json(store.cmd().args(["gc", "--json"]));
    assert_eq!(u64_of(&again, "removed_chunks"), 0, "{again}");

    run_code(store.cmd().args(["verify", "--all"]), 0);
    for (id, tree) in [(&ids[2], &trees[2]), (&keep_other, &trees[0])] {
        let out = store.path(&format!("out-{}", id.replace('/', "_")));
        store.restore(id, &out, &[]);
        assert_same_tree(tree, &out);
    }
}

#[test]
fn gc_during_a_large_backup_loses_nothing() {
    let store = Store::new();
    let (big, small) = (store.path("big"), store.path("small"));
    write_random_tree(&big, 120, 300 * MIB, 50);
    write_random_tree(&small, 20, 8 * MIB, 51);

    let mut child = store
        .cmd()
        .arg("backup")
        .arg(&big)
        .args(["--group", "host/g2", "--time", "2026-08-01T00:00:00Z"])
        .stdout(store.log("big.out"))
        .stderr(store.log("big.err"))
        .spawn()
        .expect("start the large backup");
    let small_id = store.backup(&small, "host/g1", "2026-08-01T00:00:00Z");

    let started = Instant::now();
    let mut during = 0;
    while child.try_wait().expect("poll backup").is_none() {
        run_ok(store.cmd().arg("gc"));
        during += 1;
        std::thread::sleep(Duration::from_millis(50));
        assert!(started.elapsed() < Duration::from_secs(300), "large backup does not finish");
    }
    let status = child.wait().expect("large backup status");
    let read = |name: &str| std::fs::read_to_string(store.path(name)).expect("backup log");
    assert!(status.success(), "large backup failed: {status}\n{}", read("big.err"));
    assert!(during >= 1, "no gc ran while the backup was writing");
    let stdout = read("big.out");
    let big_id = stdout.lines().rev().find(|l| !l.trim().is_empty()).expect("snapshot id").trim().to_owned();
    run_ok(store.cmd().arg("gc"));

    run_code(store.cmd().args(["verify", "--all"]), 0);
    for (id, tree) in [(&big_id, &big), (&small_id, &small)] {
        let target = store.path(&format!("out-{}", id.replace('/', "_")));
        store.restore(id, &target, &[]);
        assert_same_tree(tree, &target);
    }
}

/// A backup that reuses chunks only an older snapshot of another group
/// holds: the backup is stopped (SIGSTOP) once its journal names those
/// chunks, the older snapshot is pruned and gc runs while the backup is
/// certainly alive and mid-way; every chunk it referenced must still be
/// there, and the snapshot it then finishes must restore whole.
#[test]
fn gc_never_frees_a_chunk_a_running_backup_references() {
    let store = Store::new();
    let (shared, empty) = (store.path("shared"), store.path("empty"));
    write_random_tree(&shared, 30, 24 * MIB, 80);
    std::fs::create_dir_all(&empty).expect("mkdir");
    store.backup(&shared, "host/old", "2026-08-01T00:00:00Z");
    let old_chunks = chunk_files(&store.ds);
    store.backup(&empty, "host/old", "2026-08-02T00:00:00Z");

    // The new group's tree: a copy of the shared data first (walk order is
    // by name), deduplicated against host/old, then a large unique part.
    let new = store.path("new");
    copy_dir(&shared, &new.join("a-shared"));
    write_random_tree(&new.join("z-unique"), 60, 200 * MIB, 81);

    let mut child = store
        .cmd()
        .arg("backup")
        .arg(&new)
        .args(["--group", "host/new", "--time", "2026-08-03T00:00:00Z"])
        .stdout(store.log("new.out"))
        .stderr(store.log("new.err"))
        .spawn()
        .expect("start backup");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // Wait until the journal names most of the old chunks (all of the
    // shared payload but the last, which also holds new bytes).
    let started = Instant::now();
    let referenced = loop {
        let named: BTreeSet<_> =
            journaled(&store.ds).into_iter().filter(|p| old_chunks.contains(p)).collect();
        if named.len() * 10 >= old_chunks.len() * 8 {
            break named;
        }
        assert!(child.try_wait().expect("poll").is_none(), "the backup ended before it was stopped");
        assert!(started.elapsed() < Duration::from_secs(120), "the journal never named the old chunks");
        std::thread::sleep(Duration::from_millis(2));
    };
    stop_outside_the_chunk_lock(&store.ds, pid);
    assert!(child.try_wait().expect("poll").is_none(), "the backup ended before it was stopped");

    run_ok(store.cmd().args(["prune", "host/old", "--keep-last", "1"]));
    let report = run_json(store.cmd().args(["gc", "--json"]));
    let missing: Vec<_> = referenced.iter().filter(|p| !p.exists()).collect();
    assert!(missing.is_empty(), "gc freed {} chunks a running backup referenced: {report}", missing.len());
    assert!(u64_of(&report, "removed_chunks") > 0, "gc swept nothing, so it proved nothing: {report}");
    assert!(child.try_wait().expect("poll").is_none(), "the backup died while stopped");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("continue the backup");

    let read = |name: &str| std::fs::read_to_string(store.path(name)).expect("log");
    assert!(child.wait().expect("status").success(), "backup failed: {}", read("new.err"));
    let id = read("new.out").lines().last().expect("id").trim().to_owned();
    run_ok(store.cmd().arg("gc"));
    run_code(store.cmd().args(["verify", "--all"]), 0);
    let out = store.path("out");
    store.restore(&id, &out, &[]);
    assert_same_tree(&new, &out);
}

/// The chunk files the live journals under `writers/` name.
fn journaled(ds: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(ds.join("writers")).expect("writers/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "journal") {
            let bytes = std::fs::read(&path).unwrap_or_default();
            for id in bytes.chunks_exact(32) {
                let hex = hex::encode(id);
                out.insert(ds.join("chunks").join(&hex[0..2]).join(&hex[2..4]).join(&hex));
            }
        }
    }
    out
}

/// Stop `pid` at a moment it holds no lock on `locks/chunks` (else gc
/// would wait for it for ever).
fn stop_outside_the_chunk_lock(ds: &Path, pid: nix::unistd::Pid) {
    use nix::sys::signal::{Signal, kill};
    let lock = std::fs::File::open(ds.join("locks/chunks")).expect("locks/chunks");
    for _ in 0..1000 {
        kill(pid, Signal::SIGSTOP).expect("stop the backup");
        wait_stopped(pid);
        match nix::fcntl::Flock::lock(
            lock.try_clone().expect("dup"),
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        ) {
            Ok(held) => {
                drop(held);
                return;
            }
            Err(_) => {
                kill(pid, Signal::SIGCONT).expect("continue the backup");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    panic!("the backup always held the chunk lock");
}

/// Wait until every thread of `pid` has stopped.
fn wait_stopped(pid: nix::unistd::Pid) {
    let started = Instant::now();
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    loop {
        let all = std::fs::read_dir(&tasks).expect("tasks").all(|t| {
            let stat = std::fs::read_to_string(t.expect("task").path().join("stat")).unwrap_or_default();
            // The state follows the command name in parentheses.
            stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T'))
        });
        if all {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the backup did not stop");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("readdir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}
