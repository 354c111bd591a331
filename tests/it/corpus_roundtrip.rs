//! Full, partial and single-file restores of the tricky corpus compare equal
//! to the source; `ls` names what is there; restore does not overwrite
//! without `--overwrite`; image archives round-trip and stay sparse.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::Value;
use testkit::{build_tricky_tree, content_digest, flip_byte, write_image_file};

use crate::support::{Store, assert_same_tree, run, run_json, run_ok, str_of, u64_of};

const T1: &str = "2026-11-22T03:00:00Z";

#[test]
fn tricky_tree_roundtrip_partial_and_single_file() {
    if !testkit::needs(testkit::Need::Root) {
        return;
    }
    let store = Store::new();
    let src = store.path("src/www");
    let info = build_tricky_tree(&src);
    let id = store.backup(&src, "host/corpus", T1);
    assert_eq!(id, format!("host/corpus/{T1}"));

    let out = store.path("full");
    store.restore(&id, &out, &[]);
    assert_same_tree(&src, &out);
    // The same with writer threads of their own that also create the
    // files (what a machine with 4 cores or more does by default).
    let threaded = store.path("threaded");
    store.restore(&id, &threaded, &["--threads", "4"]);
    assert_same_tree(&src, &threaded);

    for (part, threads) in [("part", "0"), ("part-threaded", "3")] {
        let part = store.path(part);
        store.restore(&id, &part, &["--path", "www/hard/a", "--threads", threads]);
        assert_same_tree(&src.join("hard/a"), &part.join("a"));
        let ino = |p: &str| fs::symlink_metadata(part.join(p)).expect("restored link name").ino();
        assert_eq!(ino("a/one"), ino("a/two"), "partial restore broke the hard link");
    }

    let part2 = store.path("part2");
    store.restore(&id, &part2, &["--path", "hard/b"]);
    assert_same_tree(&src.join("hard/b"), &part2.join("b"));

    let single = store.path("single");
    store.restore(&id, &single, &["--path", "www/data/random-3m.bin"]);
    assert_same_tree(&src.join(&info.single_file), &single.join("random-3m.bin"));
    check_no_overwrite(&store, &id, &src.join(&info.single_file), &single);

    check_ls_text(&store, &id, &src);
    check_ls_json(&store, &id, info.entries);
}

/// A second restore onto an existing file fails and leaves it alone;
/// `--overwrite` replaces it.
fn check_no_overwrite(store: &Store, id: &str, original: &Path, single: &Path) {
    let restored = single.join("random-3m.bin");
    flip_byte(&restored, 1000);
    let damaged = content_digest(&restored).expect("digest");
    let r = run(store.cmd().args(["restore", id]).arg(single).args(["--path", "www/data/random-3m.bin"]));
    assert_eq!(r.code, 1, "restore over an existing file must fail: {r:?}");
    assert!(!r.stderr.trim().is_empty(), "no error message: {r:?}");
    assert_eq!(content_digest(&restored).expect("digest"), damaged, "refused restore changed the file");
    store.restore(id, single, &["--path", "www/data/random-3m.bin", "--overwrite"]);
    assert_same_tree(original, &restored);
}

fn ls_lines(store: &Store, args: &[&str]) -> BTreeSet<String> {
    run_ok(store.cmd().arg("ls").args(args))
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

fn check_ls_text(store: &Store, id: &str, src: &Path) {
    assert_eq!(ls_lines(store, &[id]), BTreeSet::from(["www/".to_owned()]));
    let mut expected = BTreeSet::new();
    for entry in fs::read_dir(src).expect("read source") {
        let entry = entry.expect("entry");
        let name =
            String::from_utf8(entry.file_name().as_bytes().to_vec()).expect("top-level names are UTF-8");
        let slash = if entry.file_type().expect("type").is_dir() { "/" } else { "" };
        expected.insert(format!("www/{name}{slash}"));
    }
    assert_eq!(ls_lines(store, &[id, "www"]), expected);
    let hard: BTreeSet<String> = ["www/hard/a/", "www/hard/b/", "www/hard/c/"].map(String::from).into();
    assert_eq!(ls_lines(store, &[id, "www/hard"]), hard);
    // Recursive: exactly what the source holds under hard/, by name.
    let recursive = ls_lines(store, &[id, "www/hard", "-R"]);
    let mut want = BTreeSet::new();
    list_under(&src.join("hard"), "www/hard", &mut want);
    assert!(want.contains("www/hard/b/three"), "{want:?}");
    assert_eq!(recursive, want);
}

/// Every entry below `dir`, named as `ls` names it under `prefix`
/// (directories with a trailing slash).
fn list_under(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    for entry in fs::read_dir(dir).expect("read source") {
        let entry = entry.expect("entry");
        let name = format!("{prefix}/{}", entry.file_name().to_str().expect("UTF-8 names here"));
        if entry.file_type().expect("type").is_dir() {
            out.insert(format!("{name}/"));
            list_under(&entry.path(), &name, out);
        } else {
            out.insert(name);
        }
    }
}

fn check_ls_json(store: &Store, id: &str, entries: usize) {
    let Value::Array(items) = run_json(store.cmd().args(["ls", id, "www", "-R", "--json"])) else {
        panic!("ls --json is not an array");
    };
    let paths: BTreeSet<String> = items
        .iter()
        .map(|i| str_of(i, "path").trim_end_matches('/').to_owned())
        .filter(|p| p != "www")
        .collect();
    assert_eq!(paths.len(), entries, "ls -R --json lists {} paths, tree has {entries}", paths.len());
    let find = |p: &str| {
        items
            .iter()
            .find(|i| str_of(i, "path").trim_end_matches('/') == p)
            .unwrap_or_else(|| panic!("no {p}"))
    };
    let owned = find("www/owners/user-file");
    assert_eq!((u64_of(owned, "uid"), u64_of(owned, "gid")), (1234, 5678));
    assert_eq!(mode_of(find("www/modes/setuid")) & 0o7777, 0o4755);
    assert_eq!(u64_of(find("www/data/random-3m.bin"), "size"), 3 << 20);
    assert_eq!(u64_of(find("www/sparse/big-sparse.img"), "size"), 5 << 30);
    for key in ["type", "mtime"] {
        assert!(!find("www/links/dangling")[key].is_null(), "ls --json entry lacks {key}");
    }
}

/// The `mode` of an `ls --json` entry, given as a number or an octal string.
fn mode_of(entry: &Value) -> u64 {
    match &entry["mode"] {
        Value::String(s) => u64::from_str_radix(s.trim_start_matches("0o"), 8).expect("octal mode"),
        _ => u64_of(entry, "mode"),
    }
}

#[test]
fn image_archive_roundtrip_keeps_bytes_and_holes() {
    let store = Store::new();
    let dir = store.path("img");
    fs::create_dir(&dir).expect("mkdir");
    let image = dir.join("disk.raw");
    write_image_file(&image, 64, 99);
    let id = store.backup(&image, "vm/disk", T1);
    assert_eq!(ls_lines(&store, &[&id]), BTreeSet::from(["disk.raw.img".to_owned()]));

    let out = store.path("restored.raw");
    store.restore(&id, &out, &[]);
    let meta = fs::metadata(&out).expect("restored image");
    assert_eq!(meta.len(), 64 << 20);
    assert_eq!(
        content_digest(&out).expect("digest"),
        content_digest(&image).expect("digest"),
        "bytes differ"
    );
    let allocated = meta.blocks() * 512;
    assert!(
        allocated <= (40 << 20) + (1 << 20),
        "restored image allocates {allocated} bytes; zeros not sparse"
    );
}
