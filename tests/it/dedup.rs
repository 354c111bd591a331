//! Deduplication: an unchanged re-run stores almost nothing, a 1% change
//! stores little, and two groups with the same data share chunks.

use testkit::{chunk_files, flip_byte, write_random_tree};

use crate::support::{Store, assert_same_tree, manifest, run_json, str_of, u64_of};

const MIB: u64 = 1 << 20;

#[test]
fn rerun_and_small_change_store_little() {
    let store = Store::new();
    let src = store.path("src");
    let tree = write_random_tree(&src, 400, 40 * MIB, 11);

    let first = store.backup_json(&src, "host/dedup", "2026-03-01T00:00:00Z");
    assert_eq!(u64_of(&first, "files"), 400, "{first}");
    assert!(u64_of(&first, "size") >= 40 * MIB, "{first}");
    assert!(u64_of(&first, "stored") >= 39 * MIB, "random data must be stored once: {first}");

    let second = store.backup_json(&src, "host/dedup", "2026-03-01T01:00:00Z");
    let (size, stored) = (u64_of(&second, "size"), u64_of(&second, "stored"));
    assert!(size >= 40 * MIB, "{second}");
    assert!(stored * 100 < size, "unchanged re-run stored {stored} of {size} bytes: {second}");

    // 1% of the files change by one byte each.
    for rel in tree.files.iter().step_by(100) {
        flip_byte(&src.join(rel), 0);
    }
    let third = store.backup_json(&src, "host/dedup", "2026-03-01T02:00:00Z");
    let (stored, new_chunks) = (u64_of(&third, "stored"), u64_of(&third, "new_chunks"));
    // Each changed file can disturb at most the chunk it sits in and the next
    // (a chunk is at most 4 MiB), plus the metadata stream.
    assert!(new_chunks <= 3 * 4 + 2, "{third}");
    assert!(stored < size / 5, "a 1% change stored {stored} of {size} bytes: {third}");

    let out = store.path("out");
    store.restore(str_of(&third, "id"), &out, &[]);
    assert_same_tree(&src, &out);
}

#[test]
fn groups_share_chunks_globally() {
    let store = Store::new();
    let src = store.path("src");
    write_random_tree(&src, 50, 12 * MIB, 12);
    store.backup(&src, "host/one", "2026-03-02T00:00:00Z");
    let before = chunk_files(&store.ds);
    assert!(!before.is_empty(), "no chunk files under chunks/");

    let other = store.backup_json(&src, "host/two", "2026-03-02T00:00:00Z");
    let (size, stored) = (u64_of(&other, "size"), u64_of(&other, "stored"));
    assert!(stored * 100 < size, "same data in a second group stored {stored} of {size}: {other}");
    let after = chunk_files(&store.ds);
    assert!(after.is_superset(&before));
    assert!(after.len() <= before.len() + 2, "{} chunks before, {} after", before.len(), after.len());
}

/// Directories are listed and files read by several threads ahead of the
/// one that cuts chunks, but in walk order, and chunk boundaries are
/// hashed in segments on threads of their own: the same tree backed up
/// into two datastores with one thread and with eight (one listing thread
/// and eight, one boundary scanner and two) makes byte-identical indexes
/// (and so the same chunks), whichever thread finished first. The tree
/// mixes many small files (read whole by the read-ahead threads), files
/// over 1 MiB (opened ahead, read in blocks on a thread beside the
/// reader), an empty file, a hard link and a sparse file.
#[test]
fn reading_files_on_several_threads_keeps_the_snapshot_deterministic() {
    let a = Store::new();
    let b = Store::new();
    let src = a.path("src");
    write_random_tree(&src.join("small"), 600, 6 * MIB, 31);
    write_random_tree(&src.join("big"), 6, 18 * MIB, 32);
    std::fs::write(src.join("empty"), b"").unwrap();
    std::fs::hard_link(src.join("big/d00/s00/f00000.bin"), src.join("hard")).unwrap();
    let sparse = std::fs::File::create(src.join("sparse")).unwrap();
    sparse.set_len(64 * MIB).unwrap();
    std::os::unix::fs::FileExt::write_at(&sparse, b"data in a hole", 40 * MIB).unwrap();
    drop(sparse);
    let time = "2026-03-02T00:00:00Z";
    let backup = |s: &Store, threads: &str| {
        let args = ["--group", "host/order", "--time", time, "--json", "--threads", threads];
        run_json(s.cmd().arg("backup").arg(&src).args(args))
    };
    let one = backup(&a, "1");
    let two = backup(&b, "8");
    assert_eq!(one["files"], two["files"]);
    let indexes = |s: &Store| manifest(&s.ds, "host/order", time)["archives"][0]["indexes"].clone();
    assert_eq!(indexes(&a), indexes(&b), "two backups of one tree differ");
    let out = a.path("out");
    a.restore(str_of(&one, "id"), &out, &[]);
    assert_same_tree(&src, &out);
}

/// Changed files' data waits to be written after the run of reused chunks
/// around it, up to a limit: with more changed data than that, a changed
/// hard-linked file (which does not wait), a new file and a deleted one,
/// every snapshot still restores to its tree, the payload stream grows by
/// about the bytes read, not by the chunks around them, and an unchanged
/// run after it (whose files' data now lies in and after those runs)
/// stores next to nothing.
#[test]
fn changes_past_the_waiting_limit_restore_whole() {
    let store = Store::new();
    let src = store.path("src");
    let tree = write_random_tree(&src, 120, 48 * MIB, 13);
    let linked = src.join(&tree.files[40]);
    std::fs::hard_link(&linked, src.join("linked-too")).expect("hard link");
    store.backup(&src, "host/wait", "2026-03-03T00:00:00Z");

    // About 16 MiB changed: twice the bytes that may wait.
    let mut changed = 0;
    for rel in tree.files.iter().step_by(3) {
        flip_byte(&src.join(rel), 7);
        changed += std::fs::metadata(src.join(rel)).expect("stat").len();
    }
    flip_byte(&linked, 1);
    std::fs::remove_file(src.join(&tree.files[61])).expect("delete");
    std::fs::write(src.join(&tree.files[62]).with_extension("new"), vec![7u8; 300_000]).expect("new file");
    assert!(changed > 2 * 8 * MIB, "{changed} bytes changed");
    let second = store.backup_json(&src, "host/wait", "2026-03-03T01:00:00Z");
    let out = store.path("out2");
    store.restore(str_of(&second, "id"), &out, &[]);
    assert_same_tree(&src, &out);

    let payload = |time: &str| -> u64 {
        let m = manifest(&store.ds, "host/wait", time);
        m["archives"][0]["indexes"][1]["length"].as_u64().expect("payload length")
    };
    let grown = payload("2026-03-03T01:00:00Z") - payload("2026-03-03T00:00:00Z");
    assert!(grown <= changed + 8 * MIB, "the payload stream grew by {grown} bytes for {changed} changed");

    // Unchanged on top of that: runs go through the data written after
    // the runs before.
    let third = store.backup_json(&src, "host/wait", "2026-03-03T02:00:00Z");
    assert!(u64_of(&third, "stored") < MIB, "{third}");
    let out = store.path("out3");
    store.restore(str_of(&third, "id"), &out, &[]);
    assert_same_tree(&src, &out);
}
