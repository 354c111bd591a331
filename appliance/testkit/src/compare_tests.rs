//! Tests of the comparator itself: each kind of difference is reported, and a
//! faithful copy (`cp -a --sparse=always`) compares equal.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use tempfile::TempDir;

use crate::{Need, build_tricky_tree, compare_trees, flip_byte, needs, write_random_tree};

fn cp_a(src: &Path, dst: &Path, sparse: &str) {
    let status = Command::new("cp")
        .args(["-a", &format!("--sparse={sparse}")])
        .arg(src)
        .arg(dst)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp -a failed: {status}");
}

fn mtime(path: &Path) -> (i64, i64) {
    let meta = fs::symlink_metadata(path).expect("lstat");
    (meta.mtime(), meta.mtime_nsec())
}

fn set_mtime(path: &Path, (sec, nsec): (i64, i64)) {
    let t = TimeSpec::new(sec, nsec);
    utimensat(AT_FDCWD, path, &t, &t, UtimensatFlags::NoFollowSymlink).expect("utimensat");
}

/// A small random tree at `tmp/a` with a hard-link pair, copied to `tmp/b`.
fn pair() -> TempDir {
    let tmp = TempDir::new().expect("tempdir");
    let a = tmp.path().join("a");
    write_random_tree(&a, 12, 3 << 20, 7);
    fs::hard_link(a.join("d00/s00/f00000.bin"), a.join("d00/link")).expect("hard link");
    cp_a(&a, &tmp.path().join("b"), "always");
    assert_eq!(compare_trees(&a, &tmp.path().join("b")), Vec::<String>::new());
    tmp
}

#[test]
fn equal_on_cp_a_copy_of_tricky_tree() {
    if !needs(Need::Root) {
        return;
    }
    let tmp = TempDir::new().expect("tempdir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let info = build_tricky_tree(&a);
    assert!(info.entries > 60, "tree too small: {info:?}");
    assert_eq!(info.link_groups.len(), 2);
    cp_a(&a, &b, "always");
    assert_eq!(compare_trees(&a, &b), Vec::<String>::new());
}

#[test]
fn reports_changed_byte() {
    let tmp = pair();
    let file = tmp.path().join("b/d03/s00/f00003.bin");
    let before = mtime(&file);
    flip_byte(&file, 17);
    set_mtime(&file, before);
    let diffs = compare_trees(&tmp.path().join("a"), &tmp.path().join("b"));
    assert_eq!(diffs, vec!["d03/s00/f00003.bin: contents differ".to_owned()]);
}

#[test]
fn reports_changed_mode() {
    let tmp = pair();
    let file = tmp.path().join("b/d01/s01/f00001.bin");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).expect("chmod");
    let diffs = compare_trees(&tmp.path().join("a"), &tmp.path().join("b"));
    assert_eq!(diffs, vec!["d01/s01/f00001.bin: mode 0o644 != 0o640".to_owned()]);
}

#[test]
fn reports_changed_mtime_nanoseconds() {
    let tmp = pair();
    let dir = tmp.path().join("b/d02");
    let (sec, nsec) = mtime(&dir);
    set_mtime(&dir, (sec, (nsec + 1) % 1_000_000_000));
    let diffs = compare_trees(&tmp.path().join("a"), &tmp.path().join("b"));
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert!(diffs[0].starts_with("d02: mtime "), "{diffs:?}");
}

#[test]
fn reports_broken_link_group() {
    let tmp = pair();
    let dir = tmp.path().join("b/d00");
    let dir_time = mtime(&dir);
    fs::remove_file(dir.join("link")).expect("unlink");
    let status = Command::new("cp")
        .arg("-p")
        .arg(dir.join("s00/f00000.bin"))
        .arg(dir.join("link"))
        .status()
        .expect("cp");
    assert!(status.success());
    set_mtime(&dir, dir_time);
    let diffs = compare_trees(&tmp.path().join("a"), &tmp.path().join("b"));
    assert!(!diffs.is_empty());
    assert!(diffs.iter().all(|d| d.contains("hard-link group")), "{diffs:?}");
    assert!(diffs[0].contains("d00/link") && diffs[0].contains("d00/s00/f00000.bin"), "{diffs:?}");
}

#[test]
fn reports_sparse_file_restored_dense() {
    let tmp = TempDir::new().expect("tempdir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    fs::create_dir(&a).expect("mkdir");
    let file = fs::File::create(a.join("sparse")).expect("create");
    file.set_len(16 << 20).expect("truncate");
    drop(file);
    flip_byte(&a.join("sparse"), 5 << 20);
    cp_a(&a, &b, "never");
    let diffs = compare_trees(&a, &b);
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert!(diffs[0].starts_with("sparse: allocated ") && diffs[0].ends_with("sparseness lost"), "{diffs:?}");
}

#[test]
fn reports_xattr_and_missing_names() {
    let tmp = pair();
    let b = tmp.path().join("b");
    xattr::set(tmp.path().join("a/d04"), "user.k", b"v1").expect("setxattr");
    xattr::set(b.join("d04"), "user.k", b"v2").expect("setxattr");
    let dir_time = mtime(&b.join("d05/s02"));
    fs::remove_file(b.join("d05/s02/f00005.bin")).expect("unlink");
    set_mtime(&b.join("d05/s02"), dir_time);
    let diffs = compare_trees(&tmp.path().join("a"), &b);
    assert_eq!(
        diffs,
        vec![
            "d04: xattr user.k value \"v1\" != \"v2\"".to_owned(),
            "d05/s02/f00005.bin: missing in copy".to_owned(),
        ]
    );
}

#[test]
fn tricky_copy_reports_acl_symlink_time_and_owner() {
    if !needs(Need::Root) {
        return;
    }
    let tmp = TempDir::new().expect("tempdir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let info = build_tricky_tree(&a);
    cp_a(&a, &b, "always");
    let status = Command::new("setfacl")
        .args(["-m", "u:1234:r"])
        .arg(b.join(&info.xattr_dir).join("acl-file"))
        .status()
        .expect("setfacl");
    assert!(status.success());
    let link = b.join("links/dangling");
    let (sec, nsec) = mtime(&link);
    set_mtime(&link, (sec, nsec + 1));
    std::os::unix::fs::lchown(b.join("owners/link-owned"), Some(0), Some(0)).expect("lchown");
    let diffs = compare_trees(&a, &b);
    assert_eq!(diffs.len(), 4, "{diffs:?}");
    assert!(diffs[0].starts_with("links/dangling: mtime "), "{diffs:?}");
    assert_eq!(diffs[1], "owners/link-owned: owner 1234:5678 != 0:0");
    // The new ACL entry narrows the mask, which is the mode's group bits.
    assert_eq!(diffs[2], "xattrs/acl-file: mode 0o664 != 0o644");
    assert!(diffs[3].starts_with("xattrs/acl-file: xattr system.posix_acl_access value "), "{diffs:?}");
}
