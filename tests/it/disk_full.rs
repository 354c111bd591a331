//! A full disk fails the backup with a clear error, leaves no snapshot
//! behind, and the datastore goes on working once space is freed.

use testkit::write_random_tree;

use crate::support::{Store, Tmpfs, assert_same_tree, run, run_code, run_json, run_ok, u64_of};

const MIB: u64 = 1 << 20;

#[test]
fn disk_full_fails_the_backup_cleanly() {
    if !testkit::needs(testkit::Need::Root) {
        return;
    }
    let store = Store::new();
    let mount = store.path("small-disk");
    let _tmpfs = Tmpfs::mount(&mount, 24);
    let ds = mount.join("ds");
    let cairn = || crate::support::cairn(&ds);
    run_ok(cairn().arg("init"));

    let small = store.path("small");
    write_random_tree(&small, 10, 2 * MIB, 70);
    let kept = {
        let r = run_ok(cairn().arg("backup").arg(&small).args([
            "--group",
            "host/a",
            "--time",
            "2026-05-01T00:00:00Z",
        ]));
        r.lines().last().expect("snapshot id").trim().to_owned()
    };

    let big = store.path("big");
    write_random_tree(&big, 40, 48 * MIB, 71);
    let r =
        run(cairn().arg("backup").arg(&big).args(["--group", "host/b", "--time", "2026-05-01T00:00:00Z"]));
    assert_eq!(r.code, 1, "backup onto a full disk must fail: {r:?}");
    assert!(r.stderr.contains("disk full"), "error does not say the disk is full: {}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);

    let list = run_json(cairn().args(["snapshots", "--json"]));
    assert_eq!(list.as_array().map(Vec::len), Some(1), "a failed backup left a snapshot: {list}");
    assert_eq!(list[0]["id"], kept.as_str());

    // gc frees what the failed backup wrote; then everything works again.
    let gc = run_json(cairn().args(["gc", "--json"]));
    assert!(u64_of(&gc, "removed_chunks") > 0, "the failed backup's chunks were not collected: {gc}");
    run_code(cairn().args(["verify", "--all"]), 0);
    let out = store.path("out");
    run_ok(cairn().args(["restore", &kept]).arg(&out));
    assert_same_tree(&small, &out);
    let again = store.path("again");
    write_random_tree(&again, 5, MIB, 72);
    run_ok(cairn().arg("backup").arg(&again).args(["--group", "host/b", "--time", "2026-05-02T00:00:00Z"]));
}
