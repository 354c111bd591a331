//! `--exclude` leaves matching names out; files the backup cannot read are
//! skipped, recorded in the snapshot and reported with exit code 3.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use crate::support::{
    Store, as_nobody, cairn, count_of, nobody_store, parse_json, run_code, run_json, run_ok, str_of,
};

#[test]
fn exclude_glob_leaves_matching_files_out() {
    let store = Store::new();
    let src = store.path("src");
    for (rel, data) in [("keep.txt", "k"), ("a.tmp", "t"), ("sub/b.tmp", "t"), ("sub/keep.dat", "d")] {
        let path = src.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, data).expect("write");
    }
    let id = store.backup_with(&[&src], "host/ex", "2026-01-01T00:00:00Z", &["--exclude", "*.tmp"]);
    let listed: Vec<String> =
        run_ok(store.cmd().args(["ls", &id, "src", "-R"])).lines().map(|l| l.trim().to_owned()).collect();
    assert!(listed.iter().all(|l| !l.ends_with(".tmp")), "excluded files listed: {listed:?}");
    assert!(listed.contains(&"src/sub/keep.dat".to_owned()), "{listed:?}");

    let out = store.path("out");
    store.restore(&id, &out, &[]);
    assert!(out.join("keep.txt").is_file() && out.join("sub/keep.dat").is_file());
    assert!(!out.join("a.tmp").exists() && !out.join("sub/b.tmp").exists(), "excluded files restored");
}

/// As root every file is readable, so the backup runs as user 65534 over a
/// tree holding a root-owned file with mode 0.
#[test]
fn unreadable_file_is_skipped_with_exit_3() {
    if !testkit::needs(testkit::Need::Root) {
        return;
    }
    let (tmp, ds) = nobody_store();

    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir src");
    fs::write(src.join("readable.txt"), "fine").expect("write");
    fs::write(src.join("secret"), "hidden").expect("write");
    fs::set_permissions(src.join("secret"), fs::Permissions::from_mode(0o000)).expect("chmod");

    let time = "2026-02-03T04:05:06Z";
    let mut backup = as_nobody(&ds);
    backup.arg("backup").arg(&src).args(["--group", "host/unreadable", "--time", time, "--json"]);
    let summary = parse_json(&run_code(&mut backup, 3));
    let id = str_of(&summary, "id").to_owned();
    assert_eq!(id, format!("host/unreadable/{time}"));
    let Value::Array(errors) = &summary["errors"] else { panic!("errors is not an array: {summary}") };
    assert_eq!(errors.len(), 1, "{summary}");
    assert!(str_of(&errors[0], "path").ends_with("secret"), "{summary}");
    assert!(!str_of(&errors[0], "error").is_empty(), "{summary}");

    let Value::Array(list) = run_json(as_nobody(&ds).args(["snapshots", "--json"])) else {
        panic!("snapshots --json is not an array")
    };
    let snap = list.iter().find(|s| s["id"] == id.as_str()).expect("the snapshot exists");
    assert_eq!(count_of(snap, "errors"), 1, "{snap}");

    let out = tmp.path().join("out");
    run_ok(cairn(&ds).args(["restore", &id]).arg(&out));
    assert_eq!(fs::read(out.join("readable.txt")).expect("restored file"), b"fine");
}
