//! The golden fixture `tests/data/golden-v1`: a datastore written by format
//! version 1 (see `tests/data/make-golden-v1.sh`). Every later build must
//! verify it, list it and restore it exactly as recorded there.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{Store, run_code, run_json, run_ok};

const SNAP: &str = "host/golden/2026-01-02T03:04:05Z";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/golden-v1")
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}

fn expected(name: &str) -> Value {
    serde_json::from_slice(&fs::read(fixture().join(name)).expect("fixture file")).expect("fixture json")
}

#[test]
fn golden_v1_datastore_reads_verifies_and_restores() {
    if !testkit::needs(testkit::Need::Root) {
        return;
    }
    let store = Store::new();
    fs::remove_dir_all(&store.ds).expect("drop the empty store");
    copy_tree(&fixture().join("datastore"), &store.ds);

    // The catalog is rebuilt from the files alone on first open.
    let snaps = store.snapshots();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0]["id"], SNAP);
    assert_eq!(snaps[0]["tags"], serde_json::json!(["golden"]));
    assert_eq!(snaps[0]["size"], 1_118_630 + 5296);

    let verify = run_json(store.cmd().args(["verify", "--all", "--json"]));
    let want = serde_json::json!([{"id": SNAP, "state": "ok", "bad_chunks": [], "problems": []}]);
    assert_eq!(verify, want, "verify of the fixture");

    assert_eq!(run_json(store.cmd().args(["ls", "--json", SNAP])), expected("ls.json"));
    assert_eq!(run_json(store.cmd().args(["ls", "-R", "--json", SNAP, "www"])), expected("ls-www.json"));

    let out = store.path("out");
    run_ok(store.cmd().args(["restore", SNAP]).arg(&out));
    let mut seen = BTreeMap::new();
    collect_digests(&out, &out, &mut seen);
    let want: BTreeMap<String, String> = serde_json::from_value(expected("files.json")).expect("files.json");
    assert_eq!(seen, want, "restored file contents differ from the fixture's record");

    let www = out.join("www");
    let hello = fs::metadata(www.join("hello.txt")).expect("hello.txt");
    assert_eq!(hello.ino(), fs::metadata(www.join("sub/hard.txt")).expect("hard.txt").ino(), "hard link");
    assert_eq!(hello.mtime_nsec(), 123_456_789);
    assert_eq!(xattr_get(&www.join("hello.txt"), "user.golden").as_deref(), Some(&b"fixture v1"[..]));
    let link = fs::symlink_metadata(www.join("link")).expect("link");
    assert!(link.file_type().is_symlink());
    assert_eq!((link.uid(), link.gid()), (1234, 5678));
    assert_eq!(fs::read_link(www.join("link")).expect("readlink").as_os_str().as_bytes(), b"hello.txt");
    assert!(fs::symlink_metadata(www.join("fifo")).expect("fifo").file_type().is_fifo());
    assert_eq!(fs::metadata(www.join("empty-dir")).expect("dir").mode() & 0o7777, 0o1777);
    let sparse = fs::metadata(www.join("sparse")).expect("sparse");
    assert!(sparse.blocks() * 512 < 64 * 1024, "sparse file restored dense: {} blocks", sparse.blocks());

    // The fixture's datastore takes new backups and stays verifiable.
    let id = store.backup(&www, "host/golden", "2026-01-03T00:00:00Z");
    run_code(store.cmd().args(["verify", &id]), 0);
}

fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    let out = std::process::Command::new("getfattr")
        .args(["--only-values", "-n", name])
        .arg(path)
        .output()
        .expect("getfattr (Debian package attr)");
    out.status.success().then_some(out.stdout)
}

fn collect_digests(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in fs::read_dir(dir).expect("read restored dir") {
        let entry = entry.expect("entry");
        let ft = entry.file_type().expect("type");
        if ft.is_dir() {
            collect_digests(root, &entry.path(), out);
        } else if ft.is_file() {
            let rel = entry.path().strip_prefix(root).expect("under root").as_os_str().as_bytes().to_vec();
            let hex: String = rel.iter().map(|b| format!("{b:02x}")).collect();
            let digest = Sha256::digest(fs::read(entry.path()).expect("read"));
            out.insert(hex, digest.iter().map(|b| format!("{b:02x}")).collect());
        }
    }
}

/// The golden volume `tests/data/golden-volume-v1/Vol1` (volume format
/// version 1, written from the golden datastore's snapshot by
/// `tests/data/make-golden-volume-v1.sh`): every later build lists it and
/// extracts from it, with no datastore, exactly what a restore of the
/// golden datastore gives.
#[test]
fn golden_volume_v1_lists_and_extracts_as_the_datastore_restores() {
    if !testkit::needs(testkit::Need::Root) {
        return;
    }
    let volume = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/golden-volume-v1/Vol1");
    let store = Store::new();
    let listed = run_json(store.cmd().args(["volume", "ls", "--json"]).arg(&volume));
    assert_eq!(listed[0]["snapshot"], SNAP, "{listed}");
    assert_eq!(
        (listed[0]["files"].as_u64(), listed.as_array().map(Vec::len)),
        (Some(12), Some(1)),
        "{listed}"
    );

    let from_volume = store.path("from-volume");
    run_ok(store.cmd().args(["volume", "extract"]).arg(&volume).arg(&from_volume));
    fs::remove_dir_all(&store.ds).expect("drop the empty store");
    copy_tree(&fixture().join("datastore"), &store.ds);
    let from_datastore = store.path("from-datastore");
    run_ok(store.cmd().args(["restore", SNAP]).arg(&from_datastore));
    // The file archive whole; the image archive's bytes (an image has no
    // times of its own: both are dated when they are written).
    crate::support::assert_same_tree(&from_datastore.join("www"), &from_volume.join("www"));
    assert_eq!(
        fs::read(from_volume.join("disk.img")).unwrap(),
        fs::read(from_datastore.join("disk.img")).unwrap()
    );
    let names = |d: &Path| {
        let mut n: Vec<_> = fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
        n.sort();
        n
    };
    assert_eq!(names(&from_volume), names(&from_datastore));
}
