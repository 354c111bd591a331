//! Unchanged files are not read again. On a tmpfs mounted `strictatime`
//! every read moves a file's atime; `cairn` runs as an unprivileged user
//! over root's files, so it cannot open them with `O_NOATIME` and each read
//! shows. An unchanged re-run must leave every atime where it was, while a
//! changed file is read (the positive control).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::{flip_byte, write_random_tree};

use crate::support::{
    Tmpfs, as_nobody, assert_same_tree, cairn, manifest, nobody_store, parse_json, run_code, run_ok, str_of,
};

const MIB: u64 = 1 << 20;

fn atimes(root: &Path, files: &[PathBuf]) -> BTreeMap<PathBuf, (i64, i64)> {
    files
        .iter()
        .map(|rel| {
            let m = fs::metadata(root.join(rel)).expect("stat");
            (rel.clone(), (m.atime(), m.atime_nsec()))
        })
        .collect()
}

fn backup(ds: &Path, sources: &[&Path], time: &str) -> serde_json::Value {
    let mut cmd = as_nobody(ds);
    cmd.arg("backup").args(sources).args(["--group", "host/atime", "--time", time, "--json"]);
    parse_json(&run_code(&mut cmd, 0))
}

#[test]
fn unchanged_files_and_images_are_not_read_again() {
    if !testkit::needs(testkit::Need::Root) {
        return;
    }
    let (tmp, ds) = nobody_store();

    let mnt = tmp.path().join("strict");
    let _tmpfs = Tmpfs::mount_with(&mnt, 64, "strictatime");
    let src = mnt.join("tree");
    let tree = write_random_tree(&src, 40, 8 * MIB, 95);
    let image = mnt.join("disk.raw");
    fs::write(&image, vec![5u8; 9 * MIB as usize]).expect("write image");

    let first = backup(&ds, &[&src, &image], "2026-06-01T00:00:00Z");
    let before = atimes(&src, &tree.files);
    let image_before = fs::metadata(&image).expect("stat").atime_nsec();
    std::thread::sleep(Duration::from_millis(50));

    let second = backup(&ds, &[&src, &image], "2026-06-02T00:00:00Z");
    assert_eq!(atimes(&src, &tree.files), before, "an unchanged re-run read unchanged files");
    assert_eq!(fs::metadata(&image).expect("stat").atime_nsec(), image_before, "unchanged image re-read");

    // Only the changed files are read: an unchanged file after one, which
    // may start in the chunk that ends the file before the changed one,
    // goes on in the same run of reused chunks, and the changed files'
    // new bytes go after that run.
    let changed = [&tree.files[7], &tree.files[20]];
    for f in changed {
        flip_byte(&src.join(f), 3);
    }
    let before = atimes(&src, &tree.files);
    std::thread::sleep(Duration::from_millis(50));
    let third = backup(&ds, &[&src], "2026-06-03T00:00:00Z");
    let after = atimes(&src, &tree.files);
    let read: Vec<&PathBuf> = tree.files.iter().filter(|f| before[*f] != after[*f]).collect();
    assert_eq!(read, changed, "files read by the third backup");
    // The payload stream grows by the bytes read, not by a chunk written
    // a second time.
    let size = |f: &PathBuf| fs::metadata(src.join(f)).expect("stat").len();
    let payload = |time: &str| -> u64 {
        let m = manifest(&ds, "host/atime", time);
        let tree =
            m["archives"].as_array().expect("archives").iter().find(|a| a["kind"] == "file").expect("tree");
        tree["indexes"][1]["length"].as_u64().expect("payload length")
    };
    let grown = payload("2026-06-03T00:00:00Z") - payload("2026-06-02T00:00:00Z");
    assert!(grown <= read.iter().map(|f| size(f)).sum::<u64>(), "the payload stream grew by {grown} bytes");

    for (snap, dir) in [(&first, "out1"), (&second, "out2")] {
        let out = tmp.path().join(dir);
        run_ok(cairn(&ds).args(["restore", str_of(snap, "id")]).arg(&out));
        assert_eq!(fs::read(out.join("disk.raw.img")).expect("image"), vec![5u8; 9 * MIB as usize]);
    }
    let out = tmp.path().join("out3");
    run_ok(cairn(&ds).args(["restore", str_of(&third, "id")]).arg(&out));
    assert_same_tree(&src, &out);
}
