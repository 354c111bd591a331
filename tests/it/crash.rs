//! `kill -9` of a backup at many points leaves a datastore that lists only
//! complete snapshots, verifies, takes the next backup, collects garbage and
//! restores equal to the source.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use testkit::{RandomTree, write_random_tree};

use crate::support::{Store, assert_same_tree, run_code, run_ok, str_of};

const MIB: u64 = 1 << 20;
const KILLS: u32 = 12;
const GROUP: &str = "host/crash";

fn time(n: u32) -> String {
    format!("2026-09-01T{:02}:{:02}:00Z", n / 60, n % 60)
}

/// Gives every file a new mtime so the next backup must re-read it all.
fn touch_all(src: &Path, tree: &RandomTree, round: u32) {
    let t = TimeSpec::new(1_760_000_000 + i64::from(round) * 100, 1 + i64::from(round));
    for rel in &tree.files {
        utimensat(AT_FDCWD, &src.join(rel), &t, &t, UtimensatFlags::NoFollowSymlink).expect("utimensat");
    }
}

/// Kill delays from 20 ms up to 95% of a full backup, evenly spread.
fn delays(full: Duration) -> Vec<Duration> {
    let (first, last) = (Duration::from_millis(20), full.mul_f64(0.95).max(Duration::from_millis(40)));
    (0..KILLS).map(|k| first + (last - first).mul_f64(f64::from(k) / f64::from(KILLS - 1))).collect()
}

/// What `writers/` holds (journals and work areas of backups).
fn writers(store: &Store) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store.ds.join("writers"))
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn ids(store: &Store) -> BTreeSet<String> {
    store.snapshots().iter().map(|s| str_of(s, "id").to_owned()).collect()
}

/// Measures one full backup of `src` into a scratch datastore.
fn full_backup_duration(src: &Path) -> Duration {
    let scratch = Store::new();
    let started = Instant::now();
    scratch.backup(src, GROUP, &time(0));
    started.elapsed()
}

#[test]
fn kill_9_during_backup_leaves_a_consistent_store() {
    let store = Store::new();
    let src = store.path("src");
    let tree = write_random_tree(&src, 150, 184 * MIB, 60);
    let full = full_backup_duration(&src);
    let mut last = String::new();
    let mut killed_mid_way = 0;
    for (round, delay) in (0u32..).zip(delays(full)) {
        // New content in fresh/ gives every round chunks to write.
        write_random_tree(&src.join("fresh"), 16, 16 * MIB, 1000 + u64::from(round));
        touch_all(&src, &tree, round);
        let before = ids(&store);
        let killed_id = format!("{GROUP}/{}", time(2 * round + 1));
        let mut child = store
            .cmd()
            .arg("backup")
            .arg(&src)
            .args(["--group", GROUP, "--time", &time(2 * round + 1)])
            .stdout(store.log("killed.out"))
            .stderr(store.log("killed.err"))
            .spawn()
            .expect("start backup");
        std::thread::sleep(delay);
        let finished = child.try_wait().expect("poll backup").is_some();
        child.kill().expect("kill -9");
        let status = child.wait().expect("reap backup");
        if finished {
            let err = std::fs::read_to_string(store.path("killed.err")).unwrap_or_default();
            assert!(status.success(), "round {round}: backup failed by itself: {status}\n{err}");
        }
        // A backup killed just after its commit leaves a complete snapshot:
        // either outcome is fine as long as nothing else appears and verify
        // (below) finds it whole. One that exited by itself must be there.
        let after = ids(&store);
        let mut with_it = before.clone();
        with_it.insert(killed_id.clone());
        assert!(
            after == with_it || (after == before && !finished),
            "round {round}: kill after {delay:?} (finished by itself: {finished}): {after:?}, before {before:?}"
        );
        if after == before && !writers(&store).is_empty() {
            // Killed mid-way (after it began writing, before its commit):
            // its journal and work area are all it left.
            killed_mid_way += 1;
        }
        run_code(store.cmd().args(["verify", "--all"]), 0);
        last = store.backup(&src, GROUP, &time(2 * round + 2));
        run_ok(store.cmd().arg("gc"));
        assert_eq!(writers(&store), Vec::<String>::new(), "round {round}: gc left a dead backup's files");
    }
    assert!(killed_mid_way >= 1, "no round killed a backup mid-way: the test proved nothing");
    run_code(store.cmd().args(["verify", "--all"]), 0);
    let out = store.path("out");
    store.restore(&last, &out, &[]);
    assert_same_tree(&src, &out);
}
